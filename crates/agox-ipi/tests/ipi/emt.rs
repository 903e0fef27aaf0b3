//! ASE's SocketClient serving ASE's EMT: the same numbers as the in-process EMT
//! (to the unit round trip), and bit for bit what ASE's own server gets.

use std::time::Duration;

use agox_atoms::emt::Emt;
use agox_atoms::optimize::{relax, BfgsParams, FireParams, OptimizerKind, RelaxOptions};
use agox_atoms::{Atoms, Calculator};
use agox_ipi::{Client, SocketCalculator, Transport};

use crate::support::{
    ase_command, assert_agree, cluster, config, rattled, reference, workdir, Tolerance, Traces,
};

/// Cu, a triclinic Cu cell (its cell must cross the wire transposed and come back).
fn triclinic_cu() -> Atoms {
    let a = 3.6;
    let base = Atoms::fcc_cubic(29, a, [2, 2, 2]);
    let cell = [
        [2.0 * a, 0.0, 0.0],
        [0.6, 2.0 * a, 0.0],
        [0.4, -0.5, 2.0 * a],
    ];
    // Positions in the sheared frame: fractional coordinates of the cubic cell.
    let positions = base
        .positions
        .iter()
        .map(|p| {
            let f = p.map(|x| x / (2.0 * a));
            [0, 1, 2].map(|k| f[0] * cell[0][k] + f[1] * cell[1][k] + f[2] * cell[2][k])
        })
        .collect();
    rattled(
        &Atoms::new(base.numbers, positions)
            .unwrap()
            .with_cell(cell, [true; 3]),
        0.05,
        3,
    )
}

#[test]
fn clusters_and_a_periodic_cell_match_the_in_process_emt() {
    let dir = workdir();
    let mut emt = Emt::new();
    // One client per composition: the protocol sends no elements.
    let cases: Vec<Vec<Atoms>> = vec![
        (0..4).map(|s| cluster(&[79, 29], 12, s)).collect(),
        vec![
            cluster(&[78, 28, 46], 19, 7),
            rattled(&cluster(&[78, 28, 46], 19, 7), 0.1, 8),
        ],
        vec![triclinic_cu(), rattled(&triclinic_cu(), 0.05, 9)],
    ];
    for (k, structures) in cases.iter().enumerate() {
        let cfg = config(ase_command("emt"), &dir.path().join(format!("c{k}")));
        let mut calc = SocketCalculator::new(cfg).unwrap();
        let mut traces = None;
        for (i, atoms) in structures.iter().enumerate() {
            let got = calc.calculate(atoms, true).unwrap();
            traces.get_or_insert_with(|| Traces::of(calc.client()));
            emt.reset();
            let want = emt.calculate(atoms, true).unwrap();
            assert_agree(
                &format!("case {k}.{i}"),
                (got.energy, &got.forces),
                (want.energy, &want.forces),
                Tolerance::Relative(1e-10),
            );
            match (got.stress, want.stress) {
                (Some(s), Some(w)) => {
                    for (a, b) in s.iter().zip(w) {
                        assert!(
                            (a - b).abs() <= 1e-10 * w.iter().fold(1e-3f64, |m, x| m.max(x.abs()))
                        );
                    }
                }
                (None, None) => assert!(atoms.pbc == [false; 3]),
                (s, w) => panic!("case {k}.{i}: stress {s:?} vs {w:?}"),
            }
        }
        assert_eq!(
            calc.client().stats().starts,
            1,
            "one client for all structures"
        );
        drop(calc);
        traces.unwrap().assert_gone();
    }
}

#[test]
fn results_equal_ases_socketio_calculator_bit_for_bit() {
    let dir = workdir();
    for (k, structures) in [
        (0..3)
            .map(|s| cluster(&[79, 29], 13, 20 + s))
            .collect::<Vec<_>>(),
        vec![triclinic_cu(), rattled(&triclinic_cu(), 0.05, 11)],
    ]
    .into_iter()
    .enumerate()
    {
        let ase = reference("emt", "socketio", &structures);
        let mut client = Client::new(config(
            ase_command("emt"),
            &dir.path().join(format!("b{k}")),
        ))
        .unwrap();
        for (atoms, want) in structures.iter().zip(&ase) {
            let got = client.evaluate(atoms).unwrap();
            assert_agree(
                &format!("case {k}"),
                (got.energy, &got.forces),
                (want.energy, &want.forces),
                Tolerance::Bits,
            );
            let stress = agox_ipi::units::stress_from_virial(&got.virial, &atoms.cell, atoms.pbc);
            match (stress, want.stress) {
                (Some(s), Some(w)) => {
                    for (a, b) in s.iter().zip(w) {
                        // The volume comes from another determinant than numpy's.
                        assert!(
                            (a - b).abs() <= 1e-14 * b.abs().max(1e-3),
                            "stress {a} vs {b}"
                        );
                    }
                }
                (None, None) => {}
                (s, w) => panic!("stress {s:?} vs {w:?}"),
            }
        }
        let traces = Traces::of(&client);
        drop(client);
        traces.assert_gone();
    }
}

#[test]
fn bfgs_and_fire_relax_through_one_client_as_in_process() {
    let dir = workdir();
    let start = cluster(&[29], 10, 42);
    for (name, optimizer) in [
        ("bfgs", OptimizerKind::Bfgs(BfgsParams::default())),
        ("fire", OptimizerKind::Fire(FireParams::default())),
    ] {
        let opts = RelaxOptions {
            fmax: 0.05,
            steps: 300,
            optimizer,
            confinement: None,
        };
        let mut local = start.clone();
        let want = relax(&mut local, &mut Emt::new(), &opts).unwrap();

        let mut calc =
            SocketCalculator::new(config(ase_command("emt"), &dir.path().join(name))).unwrap();
        let mut remote = start.clone();
        let got = relax(&mut remote, &mut calc, &opts).unwrap();
        assert!(got.converged && want.converged, "{name}");
        // The unit round trip perturbs the last bits only: the same path.
        assert_eq!(got.steps, want.steps, "{name}");
        assert!(
            (got.evaluation.energy - want.evaluation.energy).abs() < 1e-9,
            "{name}"
        );
        for (a, b) in remote
            .positions
            .iter()
            .flatten()
            .zip(local.positions.iter().flatten())
        {
            assert!((a - b).abs() < 1e-8, "{name}: {a} vs {b}");
        }
        let stats = calc.client().stats();
        assert_eq!(
            (stats.starts, stats.evaluations),
            (1, got.steps as u64 + 1),
            "{name}"
        );
        let traces = Traces::of(calc.client());
        drop(calc);
        traces.assert_gone();
    }
}

#[test]
fn tcp_on_loopback_with_an_os_chosen_port() {
    let dir = workdir();
    let command = ase_command("emt").replace("--unix {unix}", "--host {host} --port {port}");
    let cfg = config(command, dir.path()).transport(Transport::Tcp { port: 0 });
    let mut client = Client::new(cfg).unwrap();
    let agox_ipi::Address::Tcp { port } = *client.address() else {
        panic!("not tcp")
    };
    assert_ne!(port, 0);
    assert!(client
        .rendered_command()
        .contains(&format!("--port {port}")));
    let atoms = cluster(&[79], 6, 1);
    let got = client.evaluate(&atoms).unwrap();
    let want = Emt::new().calculate(&atoms, false).unwrap();
    assert_agree(
        "tcp",
        (got.energy, &got.forces),
        (want.energy, &want.forces),
        Tolerance::Relative(1e-10),
    );
    let traces = Traces::of(&client);
    drop(client);
    traces.assert_gone();
}

#[test]
fn a_client_that_needs_init_gets_it() {
    let dir = workdir();
    let command = crate::support::faulty_command("--needinit");
    let mut client =
        Client::new(config(command, dir.path()).timeout(Duration::from_secs(30))).unwrap();
    let atoms = cluster(&[29], 5, 2);
    let a = client.evaluate(&atoms).unwrap();
    let b = client.evaluate(&atoms).unwrap();
    assert_eq!(a.energy.to_bits(), b.energy.to_bits());
    let traces = Traces::of(&client);
    drop(client);
    traces.assert_gone();
}
