//! The repulsive prior and the GPR against AGOX 3.11.1 (`tests/data/*.json`, made by
//! `tests/data/make_fixtures.py`; see `tests/data/README.md`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use agox_atoms::Atoms;
use agox_models::fingerprint::{Fingerprint, FingerprintParams, GradientConvention};
use agox_models::gpr::GprSettings;
use agox_models::kernel::{Kernel, N_THETA};
use agox_models::model::{GprModel, ModelWorkspace};
use agox_models::prior::{PriorWorkspace, Repulsive};
use serde_json::Value;
use support::{atoms, data, floats, load, max_abs_diff, vec3s};

fn flat(v: &[[f64; 3]]) -> Vec<f64> {
    v.iter().flatten().copied().collect()
}

fn theta(v: &Value) -> [f64; N_THETA] {
    let t = floats(v);
    std::array::from_fn(|p| t[p])
}

#[test]
fn repulsive_prior_matches_agox() {
    let fixture = load(data("repulsive.json"));
    let mut ws = PriorWorkspace::default();
    let mut forces = Vec::new();
    for e in fixture["entries"].as_array().unwrap() {
        let a = atoms(e);
        let energy = Repulsive::default()
            .energy_forces(&a, &mut ws, &mut forces)
            .unwrap();
        let expected = e["energy"].as_f64().unwrap();
        let de = (energy - expected).abs() / expected.abs().max(1.0);
        let df = max_abs_diff(&flat(&forces), &flat(&vec3s(&e["forces"])));
        eprintln!(
            "{}: relative |ΔE| = {de:.1e}, max |ΔF| = {df:.1e} eV/Å",
            e["description"]
        );
        assert!(de < 1e-13, "{de:e}");
        assert!(df < 1e-11, "{df:e}");
        // AGOX's image shells hold every image within the cutoff here.
        let brute = e["energy_brute_force_images"].as_f64().unwrap();
        assert!((energy - brute).abs() < 1e-12 * brute.max(1.0));
    }
}

struct Fixture {
    json: Value,
    model: GprModel,
}

/// Our model with the fixture's training set, fitted at AGOX's θ, its
/// Fingerprint gradient in the given convention.
fn fixture_with(convention: GradientConvention) -> Fixture {
    let json = load(data("gpr.json"));
    let training = json["training"].as_array().unwrap();
    let first = atoms(&training[0]);
    let template = Atoms::default().with_cell(first.cell, first.pbc);
    let params = FingerprintParams {
        gradient: convention,
        ..Default::default()
    };
    let descriptor = Fingerprint::for_search(params, &template, &first.numbers).unwrap();
    let settings = GprSettings {
        n_optimize: 0,
        ..Default::default()
    };
    let mut model = GprModel::new(
        descriptor,
        Some(Repulsive::default()),
        Kernel::default(),
        settings,
    )
    .unwrap();
    let mut ws = ModelWorkspace::default();
    for t in training {
        assert!(model
            .add(&atoms(t), t["energy"].as_f64().unwrap(), &mut ws)
            .unwrap());
    }
    model.gpr_mut().fit(&theta(&json["theta_fit"])).unwrap();
    Fixture { json, model }
}

fn fixture() -> Fixture {
    fixture_with(GradientConvention::Exact)
}

#[test]
fn kernel_matrix_alpha_and_mean_match_agox() {
    let Fixture { json, model } = fixture();
    let gpr = model.gpr();
    let state = gpr.state().unwrap();
    let n = gpr.data().len();
    let k = gpr.kernel().matrix(gpr.data().x(), gpr.data().n_features());
    let k_agox: Vec<f64> = json["K"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(floats)
        .collect();
    let dk = max_abs_diff(&k, &k_agox);
    let da = max_abs_diff(&state.alpha, &floats(&json["alpha"]));
    let amax = state.alpha.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let dm = (state.mean - json["mean_energy"].as_f64().unwrap()).abs();
    eprintln!("N = {n}: max |ΔK| = {dk:.1e} (K ≤ 3000), max |Δα| = {da:.1e} (|α| ≤ {amax:.1e}), |Δmean| = {dm:.1e}");
    assert!(dk < 1e-10, "{dk:e}");
    assert!(da < 1e-10 * amax, "{da:e}");
    assert!(dm < 1e-12, "{dm:e}");
}

#[test]
fn log_marginal_likelihood_and_gradient_match_agox_at_three_theta() {
    let Fixture { json, mut model } = fixture();
    for entry in json["lml"].as_array().unwrap() {
        let t = theta(&entry["theta"]);
        let (lml, grad) = model.gpr_mut().log_marginal_likelihood(&t).unwrap();
        let expected = entry["lml"].as_f64().unwrap();
        let dl = (lml - expected).abs();
        let dg = max_abs_diff(&grad, &floats(&entry["gradient"]));
        eprintln!("θ = {t:.3?}: |Δ log P| = {dl:.1e} (log P = {expected:.3}), max |Δ∇| = {dg:.1e}");
        assert!(dl < 1e-10, "{dl:e}");
        assert!(dg < 1e-10, "{dg:e}");
    }
}

/// Largest differences of (E, σ, F, σ-forces) over the test structures.
fn prediction_errors(Fixture { json, model }: &Fixture) -> [f64; 4] {
    let mut ws = ModelWorkspace::default();
    let (mut worst_e, mut worst_s, mut worst_f, mut worst_sf) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for p in json["predictions"].as_array().unwrap() {
        let a = atoms(p);
        let ours = model.predict(&a, &mut ws).unwrap();
        worst_e = worst_e.max((ours.energy - p["energy"].as_f64().unwrap()).abs());
        worst_s = worst_s.max((ours.sigma - p["sigma"].as_f64().unwrap()).abs());
        worst_f = worst_f.max(max_abs_diff(
            &flat(&ours.forces),
            &flat(&vec3s(&p["forces"])),
        ));
        worst_sf = worst_sf.max(max_abs_diff(
            &flat(&ours.sigma_forces),
            &flat(&vec3s(&p["sigma_forces"])),
        ));
    }
    [worst_e, worst_s, worst_f, worst_sf]
}

#[test]
fn predictions_match_agox() {
    let [e, s, f, sf] = prediction_errors(&fixture());
    eprintln!(
        "5 test structures, exact gradient: max |ΔE| = {e:.1e} eV, |Δσ| = {s:.1e} eV, \
         |ΔF| = {f:.1e} eV/Å, |Δσ-force| = {sf:.1e} eV/Å"
    );
    assert!(e < 1e-10 && s < 1e-9, "{e:e} {s:e}");
    // AGOX's forces use its feature gradient, which is off at the clipped window
    // edges; with that convention ours agree to rounding, so the difference
    // above is that error alone.
    assert!(f < 1e-3 && sf < 2e-3, "{f:e} {sf:e}");
    let [_, _, f, sf] = prediction_errors(&fixture_with(GradientConvention::Agox));
    eprintln!("with AGOX's feature gradient: |ΔF| = {f:.1e} eV/Å, |Δσ-force| = {sf:.1e} eV/Å");
    assert!(f < 1e-9 && sf < 1e-9, "{f:e} {sf:e}");
}

#[test]
fn hyperparameter_optimization_reaches_agox_optimum() {
    let Fixture { json, mut model } = fixture();
    for entry in json["optimized"].as_array().unwrap() {
        let t0 = theta(&entry["theta0"]);
        let ours = model.gpr_mut().optimize_start(&t0).unwrap();
        let agox = entry["neg_lml"].as_f64().unwrap();
        let dt = max_abs_diff(&ours.theta, &floats(&entry["theta"]));
        eprintln!(
            "from θ0 = {t0:.2?}: −log P ours {:.8} (θ {:.4?}, {} evaluations), AGOX {agox:.8}; max |Δθ| = {dt:.1e}",
            ours.neg_lml, ours.theta, ours.evaluations
        );
        assert!(
            ours.neg_lml <= agox + 1e-6 * agox.abs(),
            "{} > {agox}",
            ours.neg_lml
        );
        assert!(dt < 1e-6, "{dt:e}");
    }
}
