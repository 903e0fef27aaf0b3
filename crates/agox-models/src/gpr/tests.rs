#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

const F: usize = 12;

/// `n` random rows and a smooth target of them.
fn synthetic(n: usize, seed: u64) -> Gpr {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut gpr = Gpr::new(F, Kernel::default(), GprSettings::default()).unwrap();
    for _ in 0..n {
        let x: Vec<f64> = (0..F).map(|_| rng.gen_range(0.0..1.5)).collect();
        let t = x
            .iter()
            .enumerate()
            .map(|(i, v)| (v * (1.0 + 0.1 * i as f64)).sin())
            .sum::<f64>()
            + 3.0;
        gpr.push(&x, t).unwrap();
    }
    gpr
}

fn probe(seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..F).map(|_| rng.gen_range(0.0..1.5)).collect()
}

const THETA: [f64; N_THETA] = [
    4.0,
    -4.605170185988091,
    0.4,
    -0.01005033585350145,
    1.2,
    -4.605170185988091,
];

#[test]
fn lml_gradient_matches_finite_differences() {
    let mut gpr = synthetic(25, 1);
    let (_, grad) = gpr.log_marginal_likelihood(&THETA).unwrap();
    let h = 1e-6;
    for p in 0..N_THETA {
        let mut t = THETA;
        t[p] += h;
        let up = gpr.log_marginal_likelihood(&t).unwrap().0;
        t[p] -= 2.0 * h;
        let down = gpr.log_marginal_likelihood(&t).unwrap().0;
        let fd = (up - down) / (2.0 * h);
        assert!(
            (fd - grad[p]).abs() < 1e-6 * fd.abs().max(1.0),
            "θ{p}: analytic {} vs {fd}",
            grad[p]
        );
    }
}

#[test]
fn lml_is_the_gaussian_log_density_of_the_centred_targets() {
    // Against a direct evaluation: log N(y; 0, K) with K from the kernel.
    let mut gpr = synthetic(6, 2);
    let (lml, _) = gpr.log_marginal_likelihood(&THETA).unwrap();
    let k = gpr.kernel().with_theta(THETA).matrix(gpr.data().x(), F);
    let t = gpr.data().targets();
    let mean = t.iter().sum::<f64>() / t.len() as f64;
    let y: Vec<f64> = t.iter().map(|v| v - mean).collect();
    // Solve K a = y and det K by Gaussian elimination (6×6).
    let n = y.len();
    let mut m = k.clone();
    let mut a = y.clone();
    let mut det = 1.0;
    for c in 0..n {
        det *= m[c * n + c];
        for r in c + 1..n {
            let f = m[r * n + c] / m[c * n + c];
            for j in c..n {
                m[r * n + j] -= f * m[c * n + j];
            }
            a[r] -= f * a[c];
        }
    }
    for c in (0..n).rev() {
        for j in c + 1..n {
            a[c] -= m[c * n + j] * a[j];
        }
        a[c] /= m[c * n + c];
    }
    let direct = -0.5 * y.iter().zip(&a).map(|(p, q)| p * q).sum::<f64>()
        - 0.5 * det.ln()
        - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
    assert!(
        (lml - direct).abs() < 1e-9 * direct.abs(),
        "{lml} vs {direct}"
    );
}

#[test]
fn prediction_interpolates_training_points_up_to_the_noise() {
    let mut gpr = synthetic(30, 3);
    gpr.fit(&THETA).unwrap();
    let mut ws = PredictWorkspace::default();
    let noise = gpr.kernel().hyper().noise;
    let state = gpr.state().unwrap().clone();
    for i in 0..gpr.data().len() {
        let p = gpr.predict(gpr.data().row(i), &mut ws).unwrap();
        // y_i − Σ_j K'_ij α_j = n α_i exactly (K' without noise).
        let expected = gpr.data().targets()[i] - noise * state.alpha[i];
        assert!(
            (p.energy - expected).abs() < 1e-8,
            "row {i}: {} vs {expected}",
            p.energy
        );
        // σ at a training point is at most the noise's standard deviation.
        assert!(p.sigma <= noise.sqrt() + 1e-9, "{}", p.sigma);
    }
    // Far away, σ goes to sqrt(k0) and the mean to the training mean.
    let far = vec![100.0; F];
    let p = gpr.predict(&far, &mut ws).unwrap();
    assert!((p.sigma - gpr.kernel().hyper().k0().sqrt()).abs() < 1e-9);
    assert!((p.energy - state.mean).abs() < 1e-9);
}

#[test]
fn prediction_gradients_match_finite_differences() {
    let mut gpr = synthetic(30, 4);
    gpr.fit(&THETA).unwrap();
    let mut ws = PredictWorkspace::default();
    let mut x = probe(99);
    let p0 = gpr.predict_with_gradient(&x, &mut ws).unwrap();
    assert_eq!(
        p0,
        gpr.predict(&x, &mut PredictWorkspace::default()).unwrap()
    );
    let (ge, gs) = (ws.energy_gradient().to_vec(), ws.sigma_gradient().to_vec());
    let h = 1e-6;
    for f in 0..F {
        x[f] += h;
        let up = gpr.predict(&x, &mut ws).unwrap();
        x[f] -= 2.0 * h;
        let down = gpr.predict(&x, &mut ws).unwrap();
        x[f] += h;
        let fe = (up.energy - down.energy) / (2.0 * h);
        let fs = (up.sigma - down.sigma) / (2.0 * h);
        assert!(
            (fe - ge[f]).abs() < 1e-6 * fe.abs().max(1.0),
            "E {f}: {} vs {fe}",
            ge[f]
        );
        assert!(
            (fs - gs[f]).abs() < 1e-6 * fs.abs().max(1.0),
            "σ {f}: {} vs {fs}",
            gs[f]
        );
    }
}

#[test]
fn starts_are_seeded_within_bounds_and_pinned_entries_stay() {
    let mut gpr = synthetic(3, 5);
    gpr.settings.n_optimize = 5;
    let a = gpr.starts(42);
    assert_eq!(a, gpr.starts(42));
    assert_ne!(a, gpr.starts(43));
    assert_eq!(a.len(), 5);
    assert_eq!(a[0], gpr.kernel().theta);
    for t in &a[1..] {
        for (p, v) in t.iter().enumerate() {
            let [lo, hi] = gpr.kernel().bounds[p];
            assert!(*v >= lo && *v <= hi);
            if lo == hi {
                assert_eq!(*v, lo);
            }
        }
    }
    gpr.settings.n_optimize = 0;
    assert!(gpr.starts(42).is_empty());
}

#[test]
fn best_start_takes_the_lowest_and_the_first_of_equals() {
    let o = |v: f64| StartOutcome {
        theta0: THETA,
        theta: THETA,
        neg_lml: v,
        evaluations: 1,
        converged: true,
    };
    assert_eq!(best_start(&[]), None);
    assert_eq!(best_start(&[o(3.0), o(1.0), o(1.0), o(2.0)]), Some(1));
    assert_eq!(best_start(&[o(1.0), o(1.0)]), Some(0));
}

#[test]
fn one_start_is_the_same_on_any_copy_and_improves_the_likelihood() {
    let mut gpr = synthetic(40, 6);
    gpr.settings.n_optimize = 3;
    let starts = gpr.starts(7);
    // A "worker": built from the serialized model with its rows shipped separately.
    let mut rows_only = Gpr::new(F, *gpr.kernel(), gpr.settings).unwrap();
    rows_only.append(&gpr.data().rows_since(0)).unwrap();
    let bytes = rmp_serde::to_vec(&rows_only).unwrap();
    let mut worker: Gpr = rmp_serde::from_slice(&bytes).unwrap();
    for t0 in &starts {
        let here = gpr.optimize_start(t0).unwrap();
        let there = worker.optimize_start(t0).unwrap();
        assert_eq!(here, there);
        let start_value = -gpr.log_marginal_likelihood(t0).unwrap().0;
        assert!(
            here.neg_lml <= start_value,
            "{} > {start_value}",
            here.neg_lml
        );
        for (p, v) in here.theta.iter().enumerate() {
            let [lo, hi] = gpr.kernel().bounds[p];
            assert!(*v >= lo && *v <= hi);
        }
    }
    let report = gpr.train(7).unwrap();
    assert_eq!(report.starts.len(), 3);
    let best = report.best.unwrap();
    assert_eq!(report.theta, report.starts[best].theta);
    assert_eq!(gpr.kernel().theta, report.theta);
    // Installing the trained state on the worker gives the same predictions.
    worker.set_state(gpr.state().unwrap().clone()).unwrap();
    let x = probe(8);
    let (mut w1, mut w2) = (PredictWorkspace::default(), PredictWorkspace::default());
    assert_eq!(
        gpr.predict(&x, &mut w1).unwrap(),
        worker.predict(&x, &mut w2).unwrap()
    );
}

#[test]
fn misuse_is_reported() {
    let mut gpr = synthetic(0, 9);
    let mut ws = PredictWorkspace::default();
    assert_eq!(gpr.predict(&probe(1), &mut ws), Err(GprError::NotTrained));
    assert_eq!(gpr.train(1).unwrap_err(), GprError::NoData);
    let mut gpr = synthetic(5, 9);
    gpr.fit(&THETA).unwrap();
    assert!(matches!(
        gpr.predict(&[1.0], &mut ws),
        Err(GprError::FeatureLength { got: 1, .. })
    ));
    let state = gpr.state().unwrap().clone();
    gpr.push(&probe(2), 1.0).unwrap();
    assert_eq!(gpr.predict(&probe(1), &mut ws), Err(GprError::NotTrained));
    assert!(matches!(
        gpr.set_state(state),
        Err(GprError::StateMismatch {
            state: 5,
            data: 6,
            ..
        })
    ));
}
