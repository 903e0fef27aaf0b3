//! The sparse GP's hyperparameter search against AGOX 3.11.1's pooled search
//! (`tests/data/sparse/sparse_search.json`) and against 80-digit evaluations of
//! AGOX's likelihood (`search_reference.json`, made by
//! `make_search_reference.py`), including the θ where AGOX's likelihood is +∞.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use agox_atoms::Atoms;
use agox_models::fingerprint::{Fingerprint, FingerprintParams};
use agox_models::isotropic::ConstantRbf;
use agox_models::prior::Repulsive;
use agox_models::sgpr::{
    best_theta, LmlWorkspace, SparseGpr, SparseModelWorkspace, SparseSettings, Sparsifier,
    ThetaOutcome, TrainOptions, TrainingSet,
};
use serde_json::Value;
use support::{atoms, data, floats, load};

/// Fixture A's model (global Fingerprint, 50 structures, AGOX's inducing points)
/// with energy noise `sigma`; its training set.
fn fixture_a(sigma: f64) -> (SparseGpr<Fingerprint>, TrainingSet<ConstantRbf>) {
    let json = load(data("sparse/sparse_global.json"));
    let s = &json["settings"];
    let first = atoms(&json["training"][0]);
    let template = Atoms::default().with_cell(first.cell, first.pbc);
    let descriptor =
        Fingerprint::for_search(FingerprintParams::default(), &template, &first.numbers).unwrap();
    let t = floats(&s["theta"]);
    let kernel = ConstantRbf::from_log([t[0], t[1]], ConstantRbf::default().bounds()).unwrap();
    let settings = SparseSettings {
        sigma_e: sigma,
        sigma_f: sigma,
        jitter: s["jitter"].as_f64().unwrap(),
        unc_jitter: s["unc_jitter"].as_f64().unwrap(),
        centralize: false,
        sparsifier: Sparsifier::Fixed,
        n_optimize: 8,
        train_forces: false,
        train_uncertainty: false,
    };
    let mut model =
        SparseGpr::new(descriptor, Some(Repulsive::default()), kernel, settings).unwrap();
    let mut ws = SparseModelWorkspace::default();
    for t in json["training"].as_array().unwrap() {
        model
            .add(&atoms(t), t["energy"].as_f64().unwrap(), None, &mut ws)
            .unwrap();
    }
    let indices: Vec<usize> = json["inducing_indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    model.set_inducing_indices(&indices).unwrap();
    let set = model.training_set(TrainOptions::default()).unwrap();
    (model, set)
}

fn thetas(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(floats).collect()
}

fn evaluate(set: &TrainingSet<ConstantRbf>, thetas: &[Vec<f64>]) -> Vec<ThetaOutcome> {
    let mut ws = LmlWorkspace::default();
    thetas
        .iter()
        .map(|t| set.evaluate(t, &mut ws).unwrap())
        .collect()
}

#[test]
fn pooled_search_chooses_agox_theta_among_agox_starts() {
    let search = load(data("sparse/sparse_search.json"));
    let reference = load(data("sparse/search_reference.json"));
    let pooled = &search["pooled"];
    let (_, set) = fixture_a(0.2);
    let starts = thetas(&pooled["theta_starts"]);
    let outcomes = evaluate(&set, &starts);
    let agox = floats(&pooled["neg_lml"]);
    for (i, o) in outcomes.iter().enumerate() {
        let ours = -o.log_likelihood().unwrap();
        let exact = reference["pooled"]["values"][i]["neg_lml"]
            .as_f64()
            .unwrap();
        let (vs_agox, vs_exact) = ((ours - agox[i]) / agox[i], (ours - exact) / exact);
        let agox_vs_exact = (agox[i] - exact) / exact;
        eprintln!(
            "θ{i} = {:.3?}: −log P {ours:.10}; relative to AGOX {vs_agox:.1e}, to 80 digits \
             {vs_exact:.1e} (AGOX to 80 digits {agox_vs_exact:.1e})",
            o.theta
        );
        assert!(vs_exact.abs() < 1e-10, "{vs_exact:e}");
        assert!(vs_agox.abs() < 1e-9, "{vs_agox:e}");
    }
    let best = best_theta(&outcomes).unwrap();
    assert_eq!(best as u64, pooled["chosen_index"].as_u64().unwrap());
    assert_eq!(outcomes[best].theta, floats(&pooled["chosen_theta"]));

    // Trained at the chosen θ: AGOX's α and test energies.
    let (predictor, report) = set.fit(&outcomes[best].theta).unwrap();
    let alpha = floats(&pooled["alpha_at_chosen_theta"]);
    let scale = alpha.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let da = predictor
        .alpha()
        .iter()
        .zip(&alpha)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
        / scale;
    let test = load(data("sparse/sparse_global.json"));
    let mut model = fixture_a(0.2).0;
    model.install(predictor).unwrap();
    let mut ws = SparseModelWorkspace::default();
    let mut de = 0.0f64;
    for (t, e) in test["test"]
        .as_array()
        .unwrap()
        .iter()
        .zip(floats(&pooled["test_energy_pred_at_chosen_theta"]))
    {
        let ours = model.predict_energy(&atoms(t), &mut ws).unwrap();
        de = de.max((ours - e).abs() / e.abs());
    }
    eprintln!(
        "at the chosen θ ({:?}): α {da:.1e}, test energies {de:.1e}",
        report.alpha_solver
    );
    // At c = 708, ℓ = 893 the normal matrix has condition 3.5e12: numpy's
    // Cholesky solve of AGOX's own matrix differs from AGOX's QR + lstsq α by
    // 4.1e-4 and moves the test energies by 1.0e-5 (relative). No float64 solver
    // agrees better; these bounds are that floor with a margin.
    assert!(da < 2e-3 && de < 5e-5, "{da:e} {de:e}");
}

#[test]
fn agox_infinite_likelihood_is_finite_and_exact_here() {
    let search = load(data("sparse/sparse_search.json"));
    let reference = load(data("sparse/search_reference.json"));
    let case = &search["inf_case"];
    let (_, set) = fixture_a(case["sigma_E"].as_f64().unwrap());
    let starts = thetas(&case["theta_starts"]);
    let outcomes = evaluate(&set, &starts);
    // AGOX: +∞ at θ0 (its slogdet sign test), so its argmin of −log P picks θ0
    // for a value that is not a likelihood at all.
    assert_eq!(case["lml"][0], "+inf");
    assert_eq!(case["agox_nlml"], "-inf");
    let exact: Vec<f64> = reference["inf_case"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["neg_lml"].as_f64().unwrap())
        .collect();
    for (i, o) in outcomes.iter().enumerate() {
        let ours = -o
            .log_likelihood()
            .expect("every θ is admissible without forming K̃");
        let r = (ours - exact[i]) / exact[i];
        eprintln!(
            "θ{i} = {:?}: −log P {ours:.6e}, 80 digits {:.6e} (relative {r:.1e}); AGOX {}",
            o.theta, exact[i], case["neg_lml"][i]
        );
        assert!(r.abs() < 1e-9, "{r:e}");
    }
    // The θ kept is the one with the highest exact likelihood, chosen for its
    // finite value.
    let exact_best = (0..exact.len())
        .min_by(|&a, &b| exact[a].total_cmp(&exact[b]))
        .unwrap();
    assert_eq!(best_theta(&outcomes), Some(exact_best));
}

#[test]
fn serial_training_keeps_the_best_of_its_own_seeded_starts() {
    let (mut model, set) = fixture_a(0.2);
    let report = model
        .train(
            TrainOptions {
                iteration: None,
                seed: 5,
            },
            &mut SparseModelWorkspace::default(),
        )
        .unwrap();
    assert_eq!(report.outcomes.len(), 8);
    assert_eq!(report.outcomes[0].theta, set.kernel().theta().to_vec());
    let best = report.best.unwrap();
    let l = |i: usize| report.outcomes[i].log_likelihood().unwrap();
    assert!((0..8).all(|i| l(i) <= l(best)));
    assert_eq!(model.kernel().theta().to_vec(), report.outcomes[best].theta);
}
