#![allow(clippy::unwrap_used, clippy::expect_used)]

use agox_atoms::emt::Emt;
use agox_atoms::optimize::{relax, BoxConstraint, RelaxOptions};

use super::*;
use crate::fingerprint::tests::au8cu4;

/// A model trained (θ fixed, no search) on EMT energies of random Au8Cu4 clusters.
fn trained(n: usize) -> GprModel {
    let template = Atoms::default().with_cell(au8cu4(0).cell, [false; 3]);
    let mut numbers = vec![79u8; 8];
    numbers.extend([29u8; 4]);
    let mut model = GprModel::gofee(&template, &numbers).unwrap();
    let mut ws = ModelWorkspace::default();
    let mut emt = Emt::new();
    for seed in 0..n as u64 {
        let a = au8cu4(100 + seed);
        let e = emt.calculate(&a, false).unwrap().energy;
        assert!(model.add(&a, e, &mut ws).unwrap());
    }
    let theta = [
        8.0,
        -4.605170185988091,
        2.0,
        -0.01005033585350145,
        4.0,
        -4.605170185988091,
    ];
    model.gpr_mut().fit(&theta).unwrap();
    model
}

#[test]
fn forces_of_energy_sigma_and_lcb_match_finite_differences() {
    let model = trained(15);
    let mut ws = ModelWorkspace::default();
    let a = au8cu4(7);
    let p = model.predict(&a, &mut ws).unwrap();
    let (e0, s0) = model.predict_energy_sigma(&a, &mut ws).unwrap();
    assert!((p.energy - e0).abs() < 1e-10 && (p.sigma - s0).abs() < 1e-10);
    let mut lcb = Lcb::new(&model, 2.0);
    let ev = lcb.calculate(&a, false).unwrap();
    assert!((ev.energy - (p.energy - 2.0 * p.sigma)).abs() < 1e-10);
    let h = 1e-5;
    let mut worst: f64 = 0.0;
    for atom in 0..a.len() {
        for x in 0..3 {
            let mut b = a.clone();
            b.positions[atom][x] += h;
            let (eu, su) = model.predict_energy_sigma(&b, &mut ws).unwrap();
            let lu = lcb.calculate(&b, false).unwrap().energy;
            b.positions[atom][x] -= 2.0 * h;
            let (ed, sd) = model.predict_energy_sigma(&b, &mut ws).unwrap();
            let ld = lcb.calculate(&b, false).unwrap().energy;
            let fe = -(eu - ed) / (2.0 * h);
            let fs = -(su - sd) / (2.0 * h);
            let fl = -(lu - ld) / (2.0 * h);
            for (fd, an) in [
                (fe, p.forces[atom][x]),
                (fs, p.sigma_forces[atom][x]),
                (fl, ev.forces[atom][x]),
            ] {
                worst = worst.max((fd - an).abs() / an.abs().max(1.0));
            }
        }
    }
    assert!(worst < 1e-5, "worst relative force error {worst:e}");
}

#[test]
fn bfgs_relaxes_in_the_lcb_inside_the_box() {
    let model = trained(15);
    let mut a = au8cu4(8);
    let mut lcb = Lcb::new(&model, 2.0);
    let start = lcb.calculate(&a, false).unwrap().energy;
    let opts = RelaxOptions {
        fmax: 0.05,
        steps: 100,
        confinement: Some(BoxConstraint::axis_aligned(
            [1.0; 3],
            [10.0; 3],
            (0..12).collect(),
        )),
        ..Default::default()
    };
    let r = relax(&mut a, &mut lcb, &opts).unwrap();
    assert!(r.steps > 0);
    assert!(
        r.evaluation.energy < start,
        "{} !< {start}",
        r.evaluation.energy
    );
    let last = lcb.last().unwrap();
    assert!((last.value - (last.energy - 2.0 * last.sigma)).abs() < 1e-12);
}

#[test]
fn energy_window_and_bad_energies() {
    let mut model = trained(2);
    let mut ws = ModelWorkspace::default();
    let a = au8cu4(9);
    assert!(!model.add(&a, 5000.0, &mut ws).unwrap());
    assert!(model.add(&a, 20.0, &mut ws).unwrap());
    assert!(matches!(
        model.add(&a, f64::NAN, &mut ws),
        Err(ModelError::Energy { .. })
    ));
    assert_eq!(model.gpr().data().len(), 3);
    // Untrained after adding: prediction says so.
    assert!(matches!(
        model.predict(&a, &mut ws),
        Err(ModelError::Gpr(GprError::NotTrained))
    ));
}

#[test]
fn serialized_model_predicts_the_same() {
    let model = trained(10);
    let back: GprModel = rmp_serde::from_slice(&rmp_serde::to_vec(&model).unwrap()).unwrap();
    let a = au8cu4(10);
    let (mut w1, mut w2) = (ModelWorkspace::default(), ModelWorkspace::default());
    assert_eq!(
        model.predict(&a, &mut w1).unwrap(),
        back.predict(&a, &mut w2).unwrap()
    );
}
