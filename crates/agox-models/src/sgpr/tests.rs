#![allow(clippy::unwrap_used, clippy::expect_used)]

use agox_atoms::emt::Emt;
use agox_atoms::{Atoms, Calculator};
use faer::linalg::solvers::{DenseSolveCore, Llt};
use faer::{Mat, Side};
use proptest::prelude::*;

use super::*;
use crate::fingerprint::tests::au8cu4;
use crate::isotropic::ConstantRbf;
use crate::model::Lcb;
use crate::prior::Repulsive;
use crate::simple_fingerprint::{SimpleFingerprint, SimpleFingerprintParams};

type Local = SparseGpr<SimpleFingerprint>;

fn settings(forces: bool) -> SparseSettings {
    SparseSettings {
        sigma_e: 0.05,
        sigma_f: 0.2,
        jitter: 1e-4,
        unc_jitter: 1e-3,
        centralize: true,
        sparsifier: Sparsifier::Cur { m_points: 60 },
        n_optimize: 0,
        train_forces: forces,
        train_uncertainty: true,
    }
}

/// A SimpleFingerprint model on EMT energies (and forces) of random Au8Cu4
/// clusters, with single-atom energies and one transfer structure.
fn model(n: u64, forces: bool) -> Local {
    let descriptor = SimpleFingerprint::new(SimpleFingerprintParams::default(), &[79, 29]).unwrap();
    let kernel = ConstantRbf::with_defaults(1.0, 0.4).unwrap();
    let mut m = SparseGpr::new(
        descriptor,
        Some(Repulsive::default()),
        kernel,
        settings(forces),
    )
    .unwrap();
    m.set_single_atom_energies(&[(79, 3.8), (29, 3.51)])
        .unwrap();
    let mut ws = SparseModelWorkspace::default();
    let mut emt = Emt::new();
    for seed in 0..n {
        let a = au8cu4(200 + seed);
        let ev = emt.calculate(&a, false).unwrap();
        m.add(&a, ev.energy, Some(&ev.forces), &mut ws).unwrap();
    }
    let t = au8cu4(999);
    let ev = emt.calculate(&t, false).unwrap();
    m.add_transfer(&t, ev.energy + 0.3, Some(&ev.forces), Some(0.2), &mut ws)
        .unwrap();
    m
}

fn trained(n: u64, forces: bool) -> Local {
    let mut m = model(n, forces);
    m.train(
        TrainOptions {
            iteration: None,
            seed: 3,
        },
        &mut SparseModelWorkspace::default(),
    )
    .unwrap();
    m
}

/// −∂f/∂r by central differences.
fn fd_forces(a: &Atoms, h: f64, mut f: impl FnMut(&Atoms) -> f64) -> Vec<[f64; 3]> {
    let mut out = vec![[0.0; 3]; a.len()];
    for (atom, row) in out.iter_mut().enumerate() {
        for (x, value) in row.iter_mut().enumerate() {
            let mut b = a.clone();
            b.positions[atom][x] += h;
            let up = f(&b);
            b.positions[atom][x] -= 2.0 * h;
            let down = f(&b);
            *value = -(up - down) / (2.0 * h);
        }
    }
    out
}

fn worst_rel(a: &[[f64; 3]], b: &[[f64; 3]]) -> f64 {
    let scale = b.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
        / scale
}

#[test]
fn forces_sigma_forces_and_lcb_forces_match_finite_differences() {
    for forces in [false, true] {
        let m = trained(12, forces);
        let mut ws = SparseModelWorkspace::default();
        let a = au8cu4(5);
        let p = m.predict(&a, &mut ws).unwrap();
        // σ² = Σ k(x_c, x_c') + sᵀDs cancels to ~1e-11, so σ's differences need
        // a larger step than E's.
        let fe = fd_forces(&a, 1e-5, |b| m.predict_energy(b, &mut ws).unwrap());
        let h = 1e-4;
        let fs = fd_forces(&a, h, |b| m.predict_energy_sigma(b, &mut ws).unwrap().1);
        let mut lcb = Lcb::new(&m, 2.0);
        let ev = lcb.calculate(&a, false).unwrap();
        assert!((ev.energy - (p.energy - 2.0 * p.sigma.unwrap())).abs() < 1e-10);
        let fl = fd_forces(&a, h, |b| lcb.calculate(b, false).unwrap().energy);
        let ev = lcb.calculate(&a, false).unwrap();
        let (re, rs, rl) = (
            worst_rel(&p.forces, &fe),
            worst_rel(p.sigma_forces.as_ref().unwrap(), &fs),
            worst_rel(&ev.forces, &fl),
        );
        assert!(
            re < 1e-7 && rs < 2e-6 && rl < 2e-6,
            "forces {forces}: {re:e} {rs:e} {rl:e}"
        );
        let mut f2 = Vec::new();
        let e2 = m.predict_forces(&a, &mut ws, &mut f2).unwrap();
        assert_eq!((e2, &f2), (p.energy, &p.forces));
    }
}

#[test]
fn transfer_data_comes_first_with_its_own_noise() {
    let mut m = model(3, true);
    let set = m.training_set(TrainOptions::default()).unwrap();
    let v = set.variances();
    // The transfer structure (σ = 0.2) first, then the data (σ_E = 0.05), 12
    // centres each; then σ_F² for each force component, transfer's first.
    assert_eq!(v[0], 0.2 * 0.2 * 12.0);
    assert_eq!(&v[1..4], &[0.05 * 0.05 * 12.0; 3]);
    assert!(v[4..].iter().all(|x| *x == 0.2 * 0.2));
    assert_eq!(set.n_obs(), 4 + 4 * 36);
    assert_eq!(set.data().noise(), &[0.2, 0.05, 0.05, 0.05]);
    // The energy target of the transfer structure carries its +0.3 eV.
    let mut emt = Emt::new();
    let t = au8cu4(999);
    let e = emt.calculate(&t, false).unwrap().energy;
    let prior = Repulsive::default()
        .energy(&t, &mut Default::default())
        .unwrap();
    let expected = (e + 0.3 - (8.0 * 3.8 + 4.0 * 3.51)) - prior;
    assert!((set.data().energies()[0] - expected).abs() < 1e-12);
}

#[test]
fn local_energies_sum_to_the_energy_without_prior_and_mean() {
    let m = trained(8, false);
    let mut ws = SparseModelWorkspace::default();
    let a = au8cu4(3);
    let mut local = Vec::new();
    m.predict_local_energies(&a, &mut ws, &mut local).unwrap();
    let prior = Repulsive::default()
        .energy(&a, &mut Default::default())
        .unwrap();
    let mean = m.predictor().unwrap().mean();
    let e = m.predict_energy(&a, &mut ws).unwrap();
    assert!((local.iter().sum::<f64>() + prior + mean - e).abs() < 1e-10);
}

/// log P of the dense definition (AGOX's K̃ formed and factored).
fn dense_lml(set: &TrainingSet<ConstantRbf>, theta: &[f64]) -> f64 {
    let asm = set.assembled(theta).unwrap();
    let (m, n) = (asm.n_inducing, set.n_obs());
    let kj = Mat::from_fn(m, m, |i, j| {
        asm.kmm[i * m + j] + if i == j { set.unc_jitter } else { 0.0 }
    });
    let kinv = Llt::new(kj.as_ref(), Side::Lower).unwrap().inverse();
    let u = Mat::from_fn(n, m, |o, k| asm.rows[o * m + k]);
    let v = set.variances();
    let mut kt = &u * &kinv * u.transpose();
    for o in 0..n {
        kt[(o, o)] += v[o];
    }
    let llt = Llt::new(kt.as_ref(), Side::Lower).unwrap();
    let y = set.targets();
    let alpha = llt.inverse() * Mat::from_fn(n, 1, |o, _| y[o]);
    let fit: f64 = (0..n).map(|o| y[o] * alpha[(o, 0)]).sum();
    let log_det: f64 = (0..n).map(|o| 2.0 * llt.L()[(o, o)].ln()).sum();
    -0.5 * fit - 0.5 * log_det - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln()
}

/// The dense float64 evaluation is the less accurate one: on these models it is
/// off by up to 4e-9 (relative) from 50- and 60-digit evaluations that ours
/// matches to 1e-12, so the bound here is the dense one's error; an algebra
/// mistake would be orders of magnitude larger. `tests/sparse_search.rs`
/// compares with 80-digit references at 1e-10.
#[test]
fn likelihood_without_the_dense_matrix_equals_the_dense_definition() {
    for forces in [false, true] {
        let mut m = model(10, forces);
        let set = m.training_set(TrainOptions::default()).unwrap();
        assert_eq!(set.n_obs(), 11 + if forces { 11 * 36 } else { 0 });
        let mut ws = LmlWorkspace::default();
        for theta in [[0.0, 0.4f64.ln()], [2.0, -0.3], [1.0, -0.7], [-1.0, -1.5]] {
            let ours = set
                .evaluate(&theta, &mut ws)
                .unwrap()
                .log_likelihood()
                .unwrap();
            let dense = dense_lml(&set, &theta);
            assert!(
                (ours - dense).abs() < 1e-7 * dense.abs(),
                "{forces} {theta:?}: {ours} vs {dense}"
            );
        }
    }
}

#[test]
fn serial_and_split_searches_give_the_same_model_bit_for_bit() {
    let mut serial = model(10, true);
    serial
        .set_settings(SparseSettings {
            n_optimize: 5,
            ..*serial.settings()
        })
        .unwrap();
    let mut split = serial.clone();
    let opts = TrainOptions {
        iteration: Some(4),
        seed: 11,
    };
    let report = serial
        .train(opts, &mut SparseModelWorkspace::default())
        .unwrap();
    assert_eq!(report.outcomes.len(), 5);

    // The coordinator's steps, with the evaluations on "workers": copies that
    // arrived serialized, evaluating in another order with their own buffers.
    let worker_model = split.clone();
    let set = split.training_set(opts).unwrap();
    // A copy holding the same structures rebuilds that set from the indices.
    let indices = split.inducing_indices().unwrap();
    assert_eq!(worker_model.training_set_for(indices).unwrap(), set);
    let bytes = rmp_serde::to_vec(&set).unwrap();
    let worker: TrainingSet<ConstantRbf> = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(worker, set);
    let thetas = starts(set.kernel(), 5, opts.seed);
    let mut outcomes: Vec<ThetaOutcome> = thetas
        .iter()
        .rev()
        .map(|t| worker.evaluate(t, &mut LmlWorkspace::default()).unwrap())
        .collect();
    outcomes.reverse();
    assert_eq!(outcomes, report.outcomes);
    let best = best_theta(&outcomes).unwrap();
    assert_eq!(Some(best), report.best);
    let (predictor, _) = set.fit(&outcomes[best].theta).unwrap();
    let shipped: Predictor<ConstantRbf> =
        rmp_serde::from_slice(&rmp_serde::to_vec(&predictor).unwrap()).unwrap();
    split.install(shipped).unwrap();
    assert_eq!(split.predictor(), serial.predictor());
    // And a worker's prediction equals the coordinator's.
    let a = au8cu4(77);
    let mut ws = SparseModelWorkspace::default();
    assert_eq!(
        split.predict(&a, &mut ws).unwrap(),
        serial.predict(&a, &mut ws).unwrap()
    );
    let whole: Local = serde_json::from_str(&serde_json::to_string(&serial).unwrap()).unwrap();
    assert_eq!(
        whole.predict(&a, &mut ws).unwrap(),
        serial.predict(&a, &mut ws).unwrap()
    );
}

#[test]
fn a_matrix_that_is_not_positive_definite_makes_theta_inadmissible_and_the_fit_falls_back() {
    // 40 points in two dimensions with a length scale 1000× their spread and no
    // jitter: K_mm is numerically of rank ~6.
    let mut data = SparseData::new(2);
    for i in 0..40 {
        let x = [(i as f64 * 0.7).sin(), (i as f64 * 1.3).cos()];
        data.push(&x, x[0] * x[1], 0.1, None).unwrap();
    }
    let inducing = data.features().to_vec();
    let set = TrainingSet::new(
        ConstantRbf::default(),
        data,
        0.0,
        inducing,
        0.1,
        0.0,
        0.0,
        false,
    )
    .unwrap();
    let mut ws = LmlWorkspace::default();
    let flat = set.evaluate(&[0.0, 1e3f64.ln()], &mut ws).unwrap();
    assert!(
        matches!(&flat.value, ThetaValue::Inadmissible { reason } if reason.contains("K_mm")),
        "{flat:?}"
    );
    let sharp = set.evaluate(&[0.0, 0.1f64.ln()], &mut ws).unwrap();
    assert!(sharp.log_likelihood().is_some());
    assert_eq!(best_theta(&[flat.clone(), sharp.clone(), flat]), Some(1));
    // Training at the flat θ: A = K_mm + UᵀΣ⁻¹U is still numerically singular in
    // part, and the pseudo-inverse takes over, reported.
    let (_, report) = set.fit(&[0.0, 1e3f64.ln()]).unwrap();
    assert!(
        matches!(report.alpha_solver, Solver::PseudoInverse { dropped } if dropped > 0),
        "{report:?}"
    );
}

fn set_sparsifier(m: &mut Local, sparsifier: Sparsifier) {
    m.set_settings(SparseSettings {
        sparsifier,
        ..*m.settings()
    })
    .unwrap();
}

#[test]
fn sparsification_follows_agox_schedule_and_explicit_indices_are_checked() {
    let mut m = model(6, false);
    assert!(m.sparsification_due(Some(3)));
    m.training_set(TrainOptions {
        iteration: Some(3),
        seed: 1,
    })
    .unwrap();
    // 84 environments < 10·60: every iteration.
    assert!(m.sparsification_due(Some(3)));
    set_sparsifier(&mut m, Sparsifier::Cur { m_points: 5 });
    assert!(!m.sparsification_due(Some(3)));
    assert!(m.sparsification_due(Some(25)));
    assert!(m.sparsification_due(None));
    let set = m
        .training_set(TrainOptions {
            iteration: None,
            seed: 1,
        })
        .unwrap();
    assert_eq!(set.n_inducing(), 5);
    let drawn = m.inducing_indices().unwrap().to_vec();
    let again = m
        .training_set(TrainOptions {
            iteration: None,
            seed: 1,
        })
        .unwrap();
    assert_eq!(m.inducing_indices().unwrap(), drawn.as_slice());
    assert_eq!(again, set);

    set_sparsifier(&mut m, Sparsifier::Fixed);
    m.set_inducing_indices(&[3, 0, 70]).unwrap();
    let set = m
        .training_set(TrainOptions {
            iteration: Some(25),
            seed: 9,
        })
        .unwrap();
    assert_eq!(
        set.inducing()[..120],
        set.data().features()[3 * 120..4 * 120]
    );
    assert_eq!(m.inducing_indices().unwrap(), &[3, 0, 70]);
    let err = m.set_inducing_indices(&[1, 84]).unwrap_err().to_string();
    assert!(
        err.contains("inducing index 84: out of range (84 training environments)"),
        "{err}"
    );
    assert!(m
        .set_inducing_indices(&[1, 2, 1])
        .unwrap_err()
        .to_string()
        .contains("given twice"));
    set_sparsifier(&mut m, Sparsifier::All);
    assert_eq!(
        m.training_set(TrainOptions::default())
            .unwrap()
            .n_inducing(),
        84
    );
}

#[test]
fn misuse_is_a_clear_error() {
    let untrained = model(3, false);
    let a = au8cu4(1);
    let mut ws = SparseModelWorkspace::default();
    assert_eq!(
        untrained.predict_energy(&a, &mut ws),
        Err(SparseError::NotTrained)
    );
    let mut no_sigma = model(3, false);
    no_sigma
        .set_settings(SparseSettings {
            train_uncertainty: false,
            ..*no_sigma.settings()
        })
        .unwrap();
    no_sigma.train(TrainOptions::default(), &mut ws).unwrap();
    assert_eq!(
        no_sigma.predict_energy_sigma(&a, &mut ws),
        Err(SparseError::NoUncertainty)
    );
    assert!(no_sigma.predict(&a, &mut ws).unwrap().sigma.is_none());
    let mut forces = model(1, true);
    let err = forces.add(&a, -1.0, None, &mut ws).unwrap_err().to_string();
    assert!(err.contains("train_forces"), "{err}");
    assert!(matches!(
        forces.add(&a, f64::NAN, None, &mut ws),
        Err(SparseError::Energy { .. })
    ));
    let bad = SparseSettings {
        sigma_e: 0.0,
        ..Default::default()
    };
    let d = SimpleFingerprint::new(SimpleFingerprintParams::default(), &[79, 29]).unwrap();
    let err = SparseGpr::new(d, None, ConstantRbf::default(), bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("sigma_e = 0"), "{err}");
    let global = crate::fingerprint::Fingerprint::for_structure(Default::default(), &a).unwrap();
    let mut g: SparseGpr<_> =
        SparseGpr::new(global, None, ConstantRbf::default(), settings(false)).unwrap();
    g.add(&a, -1.0, None, &mut SparseModelWorkspace::default())
        .unwrap();
    g.train(
        TrainOptions::default(),
        &mut SparseModelWorkspace::default(),
    )
    .unwrap();
    let err = g
        .predict_local_energies(&a, &mut SparseModelWorkspace::default(), &mut Vec::new())
        .unwrap_err();
    assert_eq!(
        err,
        SparseError::NotLocal {
            descriptor: "fingerprint"
        }
    );
}

#[test]
fn deserialized_states_are_checked() {
    let m = trained(4, false);
    let p = m.predictor().unwrap();
    let mut json: serde_json::Value = serde_json::to_value(p).unwrap();
    json["alpha"].as_array_mut().unwrap().pop();
    let err = serde_json::from_value::<Predictor<ConstantRbf>>(json)
        .unwrap_err()
        .to_string();
    assert!(err.contains("inconsistent sparse GPR data"), "{err}");
    let mut mm = m.clone();
    let set = mm.training_set(TrainOptions::default()).unwrap();
    let mut json = serde_json::to_value(&set).unwrap();
    json["data"]["centers"][0] = 11.into();
    assert!(serde_json::from_value::<TrainingSet<ConstantRbf>>(json).is_err());
}

proptest! {
    #[test]
    fn best_theta_is_the_first_highest_finite_value(values in prop::collection::vec(
        prop_oneof![
            (-5i32..5).prop_map(|v| ThetaValue::LogLikelihood(f64::from(v))),
            Just(ThetaValue::LogLikelihood(f64::NAN)),
            Just(ThetaValue::LogLikelihood(f64::INFINITY)),
            Just(ThetaValue::Inadmissible { reason: "x".into() }),
        ],
        0..12,
    )) {
        let outcomes: Vec<ThetaOutcome> = values
            .into_iter()
            .map(|value| ThetaOutcome { theta: vec![0.0, 0.0], value })
            .collect();
        let finite: Vec<(usize, f64)> = outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o.value {
                ThetaValue::LogLikelihood(l) if l.is_finite() => Some((i, l)),
                _ => None,
            })
            .collect();
        let max = finite.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let expected = finite.iter().find(|p| p.1 == max).map(|p| p.0);
        prop_assert_eq!(best_theta(&outcomes), expected);
    }

    #[test]
    fn data_round_trips_and_truncation_is_refused(
        centres in prop::collection::vec(1usize..4, 1..6),
        forces in prop::collection::vec(any::<bool>(), 6),
    ) {
        let f = 3;
        let mut d = SparseData::new(f);
        for (s, &c) in centres.iter().enumerate() {
            let x: Vec<f64> = (0..c * f).map(|k| (k + s) as f64 * 0.1).collect();
            let n_atoms = 2;
            let grad = vec![0.5; c * 3 * n_atoms * f];
            let t = vec![0.1; 3 * n_atoms];
            let block = forces[s].then_some((n_atoms, grad.as_slice(), t.as_slice()));
            d.push(&x, s as f64, 0.1, block).unwrap();
        }
        let bytes = rmp_serde::to_vec(&d).unwrap();
        prop_assert_eq!(rmp_serde::from_slice::<SparseData>(&bytes).unwrap(), d.clone());
        let joined = d.concat(&d).unwrap();
        prop_assert_eq!(joined.len(), 2 * d.len());
        prop_assert_eq!(joined.force_blocks().len(), 2 * d.force_blocks().len());
        let mut v = serde_json::to_value(&d).unwrap();
        v["features"].as_array_mut().unwrap().pop();
        prop_assert!(serde_json::from_value::<SparseData>(v).is_err());
    }
}
