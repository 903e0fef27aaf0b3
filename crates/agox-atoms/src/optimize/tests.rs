//! Unit tests of the relaxation driver with small private calculators.

use super::*;
use serde_json::Value;

/// Plain Lennard-Jones (σ = ε = 1, no cutoff, ASE's rc = 100 shift), enough to
/// check the optimizers against ASE's LJ paths before the real potential exists.
struct TestLj;

impl Calculator for TestLj {
    fn name(&self) -> &'static str {
        "test-lj"
    }
    fn calculate(&mut self, atoms: &Atoms, _stress: bool) -> Result<Evaluation, CalcError> {
        let n = atoms.len();
        let e0 = 4.0 * (1e-24 - 1e-12);
        let mut energy = 0.0;
        let mut forces = vec![[0.0; 3]; n];
        for i in 0..n {
            for j in i + 1..n {
                let d: Vec<f64> = (0..3)
                    .map(|k| atoms.positions[j][k] - atoms.positions[i][k])
                    .collect();
                let r2 = d.iter().map(|x| x * x).sum::<f64>();
                let c6 = 1.0 / (r2 * r2 * r2);
                energy += 4.0 * (c6 * c6 - c6) - e0;
                // dE/dr · 1/r
                let g = (-48.0 * c6 * c6 + 24.0 * c6) / r2;
                for k in 0..3 {
                    forces[i][k] += g * d[k];
                    forces[j][k] -= g * d[k];
                }
            }
        }
        Ok(Evaluation {
            energy,
            forces,
            stress: None,
            energies: None,
        })
    }
}

/// Independent harmonic wells around given centres: E = ½ k |r − c|².
struct Wells {
    centres: Vec<[f64; 3]>,
    k: f64,
}

impl Calculator for Wells {
    fn name(&self) -> &'static str {
        "wells"
    }
    fn calculate(&mut self, atoms: &Atoms, _stress: bool) -> Result<Evaluation, CalcError> {
        let mut energy = 0.0;
        let mut forces = Vec::with_capacity(atoms.len());
        for (r, c) in atoms.positions.iter().zip(&self.centres) {
            let d = [r[0] - c[0], r[1] - c[1], r[2] - c[2]];
            energy += 0.5 * self.k * (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
            forces.push([-self.k * d[0], -self.k * d[1], -self.k * d[2]]);
        }
        Ok(Evaluation {
            energy,
            forces,
            stress: None,
            energies: None,
        })
    }
}

fn relax_json() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/reference/relax.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Relaxes `atoms` in the test LJ to fmax 0.05, returning the result and the energy
/// after every step.
fn relax_traced(atoms: &mut Atoms, kind: OptimizerKind, steps: usize) -> (RelaxResult, Vec<f64>) {
    let mut energies = Vec::new();
    let opts = RelaxOptions {
        fmax: 0.05,
        steps,
        optimizer: kind,
        confinement: None,
    };
    let result = relax_with(atoms, &mut TestLj, &opts, |_, _, e| {
        energies.push(e.energy);
        StepControl::Continue
    })
    .unwrap();
    (result, energies)
}

fn atoms_from(entry: &Value) -> Atoms {
    let positions = entry["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let p = p.as_array().unwrap();
            [
                p[0].as_f64().unwrap(),
                p[1].as_f64().unwrap(),
                p[2].as_f64().unwrap(),
            ]
        })
        .collect();
    let numbers = entry["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z.as_u64().unwrap() as u8)
        .collect();
    Atoms {
        numbers,
        positions,
        ..Default::default()
    }
}

/// The LJ7 paths are stable in ASE (sensitivity test), so the energy trace must
/// follow ASE's step by step: this pins the algorithms down, not just the minimum.
#[test]
fn lj7_traces_follow_ase() {
    let data = relax_json();
    let entry = data["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "relax_lj_7")
        .unwrap();
    for (name, kind) in [
        ("BFGS", OptimizerKind::Bfgs(BfgsParams::default())),
        ("FIRE", OptimizerKind::Fire(FireParams::default())),
    ] {
        let reference = &entry[name];
        let trace: Vec<f64> = reference["energy_trace"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let mut atoms = atoms_from(entry);
        let (result, ours) = relax_traced(&mut atoms, kind, 10_000);
        assert!(result.converged);
        assert_eq!(
            result.steps,
            reference["n_steps"].as_u64().unwrap() as usize,
            "{name} steps"
        );
        assert_eq!(ours.len(), trace.len());
        for (k, (a, b)) in ours.iter().zip(&trace).enumerate() {
            assert!((a - b).abs() < 1e-8, "{name} step {k}: {a} vs {b}");
        }
        let final_positions = reference["final_positions"].as_array().unwrap();
        for (p, q) in atoms.positions.iter().zip(final_positions) {
            for k in 0..3 {
                assert!((p[k] - q[k].as_f64().unwrap()).abs() < 1e-7);
            }
        }
    }
}

/// Fixed atoms never move, their forces do not count for fmax, and a fixed
/// atom's huge force does not stop convergence of the others.
#[test]
fn fixed_atoms_do_not_move() {
    for kind in [
        OptimizerKind::Bfgs(BfgsParams::default()),
        OptimizerKind::Fire(FireParams::default()),
    ] {
        let mut atoms = Atoms {
            numbers: vec![1; 3],
            positions: vec![[5.0, 0.0, 0.0], [0.3, 0.2, 0.1], [1.4, 1.0, -0.5]],
            fixed: vec![0],
            ..Default::default()
        };
        let mut calc = Wells {
            centres: vec![[0.0; 3], [0.0; 3], [1.0, 1.0, 1.0]],
            k: 2.0,
        };
        let opts = RelaxOptions {
            fmax: 1e-4,
            steps: 1000,
            optimizer: kind,
            confinement: None,
        };
        let result = relax(&mut atoms, &mut calc, &opts).unwrap();
        assert!(result.converged, "{kind:?}");
        assert_eq!(atoms.positions[0], [5.0, 0.0, 0.0]);
        assert!(
            result.evaluation.forces[0][0] < -9.0,
            "raw force on the fixed atom is reported"
        );
        for (p, c) in atoms.positions[1..].iter().zip(&calc.centres[1..]) {
            for k in 0..3 {
                assert!((p[k] - c[k]).abs() < 1e-4);
            }
        }
    }
}

/// With everything fixed nothing moves and the run converges at once.
#[test]
fn all_fixed_converges_immediately() {
    let mut atoms = Atoms {
        numbers: vec![1; 2],
        positions: vec![[1.0; 3], [2.0; 3]],
        fixed: vec![0, 1],
        ..Default::default()
    };
    let mut calc = Wells {
        centres: vec![[0.0; 3]; 2],
        k: 1.0,
    };
    let result = relax(&mut atoms, &mut calc, &RelaxOptions::default()).unwrap();
    assert!(result.converged && result.steps == 0 && result.fmax == 0.0);
}

/// AGOX 3.11 `BoxConstraint` + ASE 3.29 BFGS / FIRE on two atoms pulled towards
/// wells outside a 2 Å box (only atom 0 confined): energies after each step,
/// computed with ASE 3.29 and AGOX 3.11.1 (script in docs/atoms.md, "Local optimization").
const AGOX_BOX_BFGS: [f64; 22] = [
    16.045,
    15.589845918367349,
    14.052584987677243,
    12.595100315532825,
    11.21739190193408,
    9.91945974688102,
    9.3120900259674,
    8.40543689619457,
    7.900573892151234,
    7.379412803469754,
    6.933961119825956,
    6.509167755314245,
    6.134599279399037,
    5.794702450043336,
    5.497585456348937,
    5.2389845847143155,
    5.021165103460098,
    4.842898421240342,
    4.704869577077062,
    4.606674343826459,
    4.548570972983926,
    4.531326809292578,
];
/// First 32 energies of the FIRE run; it never converges (the confined atom keeps
/// trying to cross the wall); after 500 steps E = 4.695473805485251.
const AGOX_BOX_FIRE: [f64; 32] = [
    16.045,
    15.725704499999999,
    15.099853390449999,
    14.192418130621043,
    13.14686970354244,
    12.14132127646384,
    11.175772849385236,
    10.250224422306633,
    9.364675995228033,
    8.922602385204023,
    8.488960513105203,
    8.070199738337282,
    7.6709245406013435,
    7.2943945298273745,
    6.942877999881244,
    6.617896099184671,
    6.32038858030646,
    6.050824253342128,
    5.809272692709398,
    5.595449021441194,
    5.408740533341506,
    5.2482221426581885,
    5.112666789507719,
    5.000556587434962,
    4.910100257569912,
    4.83926181319137,
    4.785804160952154,
    4.747349089250719,
    4.721452163734786,
    4.705687844273724,
    4.69773741756073,
    4.695470852689426,
];

/// The box holds the confined atom inside, damps its force near the wall and
/// reproduces AGOX's BoxConstraint path under BFGS and FIRE.
#[test]
fn box_matches_agox_box_constraint() {
    for (kind, reference, converges) in [
        (
            OptimizerKind::Bfgs(BfgsParams::default()),
            &AGOX_BOX_BFGS[..],
            true,
        ),
        (
            OptimizerKind::Fire(FireParams::default()),
            &AGOX_BOX_FIRE[..],
            false,
        ),
    ] {
        let mut atoms = Atoms {
            numbers: vec![1; 2],
            positions: vec![[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
            ..Default::default()
        };
        let mut calc = Wells {
            centres: vec![[5.0, 1.3, 1.0], [5.0, 1.0, 1.0]],
            k: 1.0,
        };
        let confinement = BoxConstraint::axis_aligned([0.0; 3], [2.0; 3], vec![0]);
        let opts = RelaxOptions {
            fmax: 0.05,
            steps: 500,
            optimizer: kind,
            confinement: Some(confinement.clone()),
        };
        let mut all_inside = true;
        let mut energies = Vec::new();
        let result = relax_with(&mut atoms, &mut calc, &opts, |_, a, e| {
            all_inside &= confinement.contains(a.positions[0]).unwrap();
            energies.push(e.energy);
            StepControl::Continue
        })
        .unwrap();
        assert!(all_inside, "{kind:?}");
        assert_eq!(
            result.converged, converges,
            "{kind:?}: fmax {}",
            result.fmax
        );
        for (k, (a, b)) in energies.iter().zip(reference).enumerate() {
            assert!((a - b).abs() < 1e-9, "{kind:?} step {k}: {a} vs {b}");
        }
        let c = confinement.fractional(atoms.positions[0]).unwrap();
        assert!(
            c[0] > 0.95 && c[0] < 1.0,
            "{kind:?}: ends near the wall, c = {c:?}"
        );
        if converges {
            assert_eq!(result.steps, reference.len() - 1);
            assert!((atoms.positions[1][0] - 5.0).abs() < 0.05);
        } else {
            assert_eq!(result.steps, 500);
            assert!((result.evaluation.energy - 4.695473805485251).abs() < 1e-6);
        }
        // raw forces are reported unadjusted
        assert!(result.evaluation.forces[0][0] > 3.0);
    }
}

/// A step that would jump over the wall is rejected along the hard axes.
#[test]
fn box_rejects_outside_step() {
    let mut atoms = Atoms {
        numbers: vec![1],
        positions: vec![[1.9, 1.0, 1.0]],
        ..Default::default()
    };
    // Stiff well far away: the first BFGS step is the full 0.2 Å along x, to 2.1.
    let mut calc = Wells {
        centres: vec![[50.0, 1.0, 1.0]],
        k: 1.0,
    };
    let confinement = BoxConstraint::axis_aligned([0.0; 3], [10.0, 10.0, 10.0], vec![0]);
    let mut tight = confinement.clone();
    tight.cell[0][0] = 2.0;
    let opts = RelaxOptions {
        fmax: 0.05,
        steps: 1,
        optimizer: OptimizerKind::default(),
        confinement: Some(tight),
    };
    relax(&mut atoms, &mut calc, &opts).unwrap();
    assert_eq!(atoms.positions[0], [1.9, 1.0, 1.0]);
    let opts = RelaxOptions {
        confinement: Some(confinement),
        ..opts
    };
    relax(&mut atoms, &mut calc, &opts).unwrap();
    assert!((atoms.positions[0][0] - 2.1).abs() < 1e-12);
}

#[test]
fn callback_can_stop_and_steps_limit_holds() {
    let start = Atoms {
        numbers: vec![1],
        positions: vec![[3.0, 0.0, 0.0]],
        ..Default::default()
    };
    let mut calc = Wells {
        centres: vec![[0.0; 3]],
        k: 1.0,
    };
    let mut atoms = start.clone();
    let r = relax_with(
        &mut atoms,
        &mut calc,
        &RelaxOptions::default(),
        |step, _, _| {
            if step == 3 {
                StepControl::Stop
            } else {
                StepControl::Continue
            }
        },
    )
    .unwrap();
    assert!(r.stopped && !r.converged && r.steps == 3);
    let mut atoms = start.clone();
    let opts = RelaxOptions {
        steps: 2,
        ..Default::default()
    };
    let r = relax(&mut atoms, &mut calc, &opts).unwrap();
    assert!(!r.converged && !r.stopped && r.steps == 2);
    // BFGS from x = 3: f/alpha, then the exact Newton step capped at 0.2
    assert!((atoms.positions[0][0] - (3.0 - 3.0 / 70.0 - 0.2)).abs() < 1e-12);
}

#[test]
fn bad_input_is_an_error() {
    let mut calc = Wells {
        centres: vec![[0.0; 3]],
        k: 1.0,
    };
    let mut atoms = Atoms {
        numbers: vec![1],
        positions: vec![[1.0; 3]],
        fixed: vec![3],
        ..Default::default()
    };
    assert!(matches!(
        relax(&mut atoms, &mut calc, &RelaxOptions::default()),
        Err(RelaxError::FixedIndexOutOfRange { .. })
    ));
    atoms.fixed.clear();
    let opts = RelaxOptions {
        fmax: -1.0,
        ..Default::default()
    };
    assert!(matches!(
        relax(&mut atoms, &mut calc, &opts),
        Err(RelaxError::InvalidOptions(_))
    ));
    let opts = RelaxOptions {
        confinement: Some(BoxConstraint::axis_aligned([0.0; 3], [1.0; 3], vec![1])),
        ..Default::default()
    };
    assert!(matches!(
        relax(&mut atoms, &mut calc, &opts),
        Err(RelaxError::Box(BoxError::IndexOutOfRange { .. }))
    ));
    let opts = RelaxOptions {
        confinement: Some(BoxConstraint::axis_aligned(
            [0.0; 3],
            [1.0, 0.0, 1.0],
            vec![0],
        )),
        ..Default::default()
    };
    assert!(matches!(
        relax(&mut atoms, &mut calc, &opts),
        Err(RelaxError::Box(BoxError::Degenerate { .. }))
    ));
}

/// ASE 3.29 with `FixAtoms([0, 3])` on the relax.json LJ7 start (BFGS: 22 steps,
/// FIRE: 71 steps; energies after each step, first 23 for FIRE).
const ASE_FIXED_BFGS: [f64; 23] = [
    -12.021934373338663,
    -12.903955635054851,
    -13.60133594255676,
    -13.61204941703389,
    -14.038192566496129,
    -14.19535665247646,
    -14.312634861341964,
    -14.394228737558144,
    -14.503797626082134,
    -14.909773396252753,
    -14.412750502158701,
    -15.113318700134556,
    -15.272156955764615,
    -15.736765908580317,
    -15.883901826101267,
    -16.109047280722194,
    -16.153406058288404,
    -16.20968050384969,
    -16.220775674638237,
    -16.22252780022686,
    -16.22280851416173,
    -16.222939637862755,
    -16.22300806431147,
];
const ASE_FIXED_FIRE: [f64; 23] = [
    -12.021934373338663,
    -12.983591606414246,
    -12.8724744447895,
    -13.614152655472491,
    -13.7921230745287,
    -13.817109261341407,
    -13.862617428546416,
    -13.92026305370353,
    -13.979249752714448,
    -14.029536095938951,
    -14.0668598974148,
    -14.096062861593769,
    -14.130347520180932,
    -14.178104335153188,
    -14.236063366689734,
    -14.28525431172292,
    -14.310244104726772,
    -14.32846473562508,
    -14.367957108932965,
    -14.424194065095042,
    -14.478198344132624,
    -14.576971036034566,
    -14.732920970953714,
];

/// Fixed atoms follow ASE's FixAtoms path step by step (dropping them from the
/// optimizer's degrees of freedom changes nothing).
#[test]
fn fixed_atoms_follow_ase_fixatoms() {
    let data = relax_json();
    let entry = data["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "relax_lj_7")
        .unwrap();
    for (kind, reference, steps, last) in [
        (
            OptimizerKind::Bfgs(BfgsParams::default()),
            &ASE_FIXED_BFGS[..],
            22,
            -16.22300806431147,
        ),
        (
            OptimizerKind::Fire(FireParams::default()),
            &ASE_FIXED_FIRE[..],
            71,
            -16.22287078843349,
        ),
    ] {
        let mut atoms = atoms_from(entry);
        atoms.fixed = vec![0, 3];
        let start = atoms.positions.clone();
        let (result, energies) = relax_traced(&mut atoms, kind, 1000);
        assert!(result.converged);
        assert_eq!(result.steps, steps, "{kind:?}");
        assert!((result.evaluation.energy - last).abs() < 1e-8);
        for (k, (a, b)) in energies.iter().zip(reference).enumerate() {
            assert!((a - b).abs() < 1e-8, "{kind:?} step {k}: {a} vs {b}");
        }
        assert_eq!(atoms.positions[0], start[0]);
        assert_eq!(atoms.positions[3], start[3]);
    }
}
