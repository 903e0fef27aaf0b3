//! EMT against ASE 3.29 (`tests/reference/emt.json`), and forces and
//! stress against finite differences of the energy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop)]

use agox_atoms::emt::Emt;
use agox_atoms::{Atoms, Calculator};
use proptest::prelude::*;

mod common;
use common::{atoms_from, entry, floats, reference, vec3s};

fn assert_close(id: &str, what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "{id}: {what}: {got} vs {want} (diff {:e})",
        got - want
    );
}

#[test]
fn emt_matches_ase_on_every_entry() {
    let data = reference("emt");
    let cutoff = &data["meta"]["cutoff"];
    let mut emt = Emt::new();
    assert_close(
        "meta",
        "rc",
        emt.rc(),
        cutoff["rc"].as_f64().unwrap(),
        1e-12,
    );
    assert_close(
        "meta",
        "rc_list",
        emt.rc_list(),
        cutoff["rc_list"].as_f64().unwrap(),
        1e-12,
    );
    assert_close(
        "meta",
        "acut",
        emt.acut(),
        cutoff["acut"].as_f64().unwrap(),
        1e-10,
    );
    let entries = data["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 34);
    let mut with_stress = 0;
    for e in entries {
        let id = e["id"].as_str().unwrap();
        let atoms = atoms_from(e);
        let ev = emt.calculate(&atoms, true).unwrap();
        let want = e["energy"].as_f64().unwrap();
        assert_close(id, "energy", ev.energy, want, 1e-8 * want.abs().max(1e-3));
        for (a, (f, g)) in ev.forces.iter().zip(vec3s(&e["forces"])).enumerate() {
            for k in 0..3 {
                assert_close(id, &format!("force[{a}][{k}]"), f[k], g[k], 1e-6);
            }
        }
        let energies = ev.energies.as_ref().unwrap();
        for (a, (x, y)) in energies.iter().zip(floats(&e["energies"])).enumerate() {
            assert_close(
                id,
                &format!("energy of atom {a}"),
                *x,
                y,
                1e-8 * (1.0 + y.abs()),
            );
        }
        if let Some(s) = e.get("stress") {
            with_stress += 1;
            let got = ev.stress.unwrap_or_else(|| panic!("{id}: no stress"));
            for (k, (x, y)) in got.iter().zip(floats(s)).enumerate() {
                assert_close(id, &format!("stress[{k}]"), *x, y, 1e-8);
            }
        }
        // A second call (neighbour list reused) gives the same numbers.
        let again = emt.calculate(&atoms, false).unwrap();
        assert_eq!(again.energy, ev.energy, "{id}");
        assert!(again.stress.is_none());
    }
    assert_eq!(with_stress, 16);
}

#[test]
fn emt_dimer_cutoff_scan() {
    let data = reference("emt");
    let mut emt = Emt::new();
    let mut count = 0;
    for scan in data["dimer_scans"].as_array().unwrap() {
        let pair: Vec<&str> = scan["pair"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(pair, ["Au", "Au"]);
        for p in scan["points"].as_array().unwrap() {
            let r = p["r"].as_f64().unwrap();
            let atoms = Atoms {
                numbers: vec![79, 79],
                positions: vec![[0.0; 3], [r, 0.0, 0.0]],
                ..Default::default()
            };
            let ev = emt.calculate(&atoms, false).unwrap();
            let id = format!("dimer r={r}");
            let want = p["energy"].as_f64().unwrap();
            // The jump at rc_list is 4.5e-6 eV, far above this tolerance.
            assert_close(&id, "energy", ev.energy, want, 1e-8 * want.abs());
            for (f, g) in ev.forces.iter().zip(vec3s(&p["forces"])) {
                for k in 0..3 {
                    assert_close(&id, "force", f[k], g[k], 1e-9);
                }
            }
            for (x, y) in ev.energies.unwrap().iter().zip(floats(&p["energies"])) {
                assert_close(&id, "atom energy", *x, y, 1e-8 * y.abs());
            }
            count += 1;
        }
    }
    assert_eq!(count, 33);
}

fn energy(emt: &mut Emt, atoms: &Atoms) -> f64 {
    emt.calculate(atoms, false).unwrap().energy
}

/// Max |analytic − central difference| over all force components.
fn force_error(emt: &mut Emt, atoms: &Atoms, h: f64) -> (f64, f64) {
    let ev = emt.calculate(atoms, false).unwrap();
    let mut a = atoms.clone();
    let mut worst = 0.0f64;
    let mut largest = 0.0f64;
    for i in 0..atoms.len() {
        for k in 0..3 {
            a.positions[i][k] = atoms.positions[i][k] + h;
            let ep = energy(emt, &a);
            a.positions[i][k] = atoms.positions[i][k] - h;
            let em = energy(emt, &a);
            a.positions[i][k] = atoms.positions[i][k];
            let fd = -(ep - em) / (2.0 * h);
            worst = worst.max((fd - ev.forces[i][k]).abs());
            largest = largest.max(fd.abs());
        }
    }
    (worst, largest)
}

#[test]
fn emt_stress_matches_strain_derivative() {
    // Rattled periodic Cu3Au-like cell with a skewed cell: stress = (1/V) dE/dε.
    let data = reference("emt");
    let e = entry(&data, "alloy_Cu3Au_L12_rattled");
    let mut atoms = atoms_from(e);
    atoms.cell[1][0] += 0.3;
    atoms.cell[2][1] -= 0.2;
    let mut emt = Emt::new();
    let s = emt.calculate(&atoms, true).unwrap().stress.unwrap();
    let vol = {
        let c = atoms.cell;
        (c[0][0] * (c[1][1] * c[2][2] - c[1][2] * c[2][1])
            - c[0][1] * (c[1][0] * c[2][2] - c[1][2] * c[2][0])
            + c[0][2] * (c[1][0] * c[2][1] - c[1][1] * c[2][0]))
            .abs()
    };
    let h = 1e-6;
    let voigt = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)];
    for (v, &(a, b)) in voigt.iter().enumerate() {
        let strained = |t: f64| {
            let mut eps = [[0.0; 3]; 3];
            if a == b {
                eps[a][a] = t;
            } else {
                eps[a][b] = 0.5 * t;
                eps[b][a] = 0.5 * t;
            }
            let apply = |x: [f64; 3]| {
                let mut y = x;
                for r in 0..3 {
                    for c in 0..3 {
                        y[c] += x[r] * eps[r][c];
                    }
                }
                y
            };
            let mut s = atoms.clone();
            s.cell = [
                apply(atoms.cell[0]),
                apply(atoms.cell[1]),
                apply(atoms.cell[2]),
            ];
            s.positions = atoms.positions.iter().map(|&x| apply(x)).collect();
            s
        };
        let ep = energy(&mut emt, &strained(h));
        let em = energy(&mut emt, &strained(-h));
        let fd = (ep - em) / (2.0 * h) / vol;
        assert!((fd - s[v]).abs() < 1e-7, "stress[{v}]: {} vs {fd}", s[v]);
    }
}

#[test]
fn emt_forces_periodic_slab() {
    let data = reference("emt");
    let e = entry(&data, "slab_Au111_2x2x3_Cu3");
    let mut atoms = atoms_from(e);
    for (i, p) in atoms.positions.iter_mut().enumerate() {
        p[0] += 0.05 * ((i * 7 % 5) as f64 - 2.0);
        p[2] += 0.04 * ((i * 3 % 4) as f64 - 1.5);
    }
    let (worst, largest) = force_error(&mut Emt::new(), &atoms, 1e-5);
    assert!(worst < 1e-6, "worst {worst}, largest {largest}");
    assert!(largest > 0.01);
}

const METALS: [u8; 7] = [13, 29, 47, 79, 28, 46, 78];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn emt_forces_are_minus_energy_gradient(
        atoms in proptest::collection::vec(
            (0usize..7, 0.0f64..7.0, 0.0f64..7.0, 0.0f64..7.0), 2..9),
    ) {
        let numbers: Vec<u8> = atoms.iter().map(|a| METALS[a.0]).collect();
        let positions: Vec<[f64; 3]> = atoms.iter().map(|a| [a.1, a.2, a.3]).collect();
        let mut rmin = f64::INFINITY;
        let mut near_cut = false;
        for i in 0..positions.len() {
            for j in 0..i {
                let d: f64 = (0..3).map(|k| (positions[i][k] - positions[j][k]).powi(2)).sum::<f64>().sqrt();
                rmin = rmin.min(d);
                // The hard cut at rc_list makes the energy jump; stay away from it.
                near_cut |= (d - Emt::new().rc_list()).abs() < 1e-3;
            }
        }
        prop_assume!(rmin > 1.8 && !near_cut);
        let a = Atoms { numbers, positions, ..Default::default() };
        let (worst, _) = force_error(&mut Emt::new(), &a, 1e-5);
        prop_assert!(worst < 2e-6, "worst {}", worst);
    }
}
