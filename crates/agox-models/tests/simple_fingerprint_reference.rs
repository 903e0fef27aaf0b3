//! AGOX's `SimpleFingerprint` against `tests/data/sparse/simple_fingerprint.json`
//! (AGOX 3.11.1; see `tests/data/sparse/README.md`): features, and our analytic
//! gradient against the fixture's five-point difference and AGOX's own central
//! difference.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use agox_models::descriptor::{Descriptor, FeatureSet};
use agox_models::simple_fingerprint::{SimpleFingerprint, SimpleFingerprintParams};
use serde_json::Value;
use support::{atoms, data, floats, load, max_abs_diff};

fn descriptor() -> SimpleFingerprint {
    SimpleFingerprint::new(SimpleFingerprintParams::default(), &[79, 29]).unwrap()
}

/// A nested list flattened in row-major order.
fn flatten(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) if items.first().is_some_and(Value::is_array) => {
            items.iter().flat_map(flatten).collect()
        }
        _ => floats(v),
    }
}

#[test]
fn features_match_agox() {
    let json = load(data("sparse/simple_fingerprint.json"));
    let d = descriptor();
    let mut out = FeatureSet::new();
    for entry in json["features"].as_array().unwrap() {
        let a = atoms(entry);
        d.compute(&a, false, &mut Default::default(), &mut out)
            .unwrap();
        let expected = flatten(&entry["features"]);
        let diff = max_abs_diff(out.features(), &expected);
        let scale = expected.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        eprintln!(
            "{}: max |Δx| = {diff:.1e} (max |x| = {scale:.2})",
            entry["source"]
        );
        assert!(diff < 1e-12, "{diff:e}");
    }
}

#[test]
fn analytic_gradient_matches_five_point_differences_better_than_agox() {
    let json = load(data("sparse/simple_fingerprint.json"));
    let d = descriptor();
    let mut out = FeatureSet::new();
    for entry in json["gradients"].as_array().unwrap() {
        let a = atoms(entry);
        d.compute(&a, true, &mut Default::default(), &mut out)
            .unwrap();
        let fd5 = flatten(&entry["gradient_fd5"]);
        let agox = flatten(&entry["gradient_agox"]);
        assert_eq!(fd5.len(), out.gradient().len());
        let ours_vs_fd5 = max_abs_diff(out.gradient(), &fd5);
        let ours_vs_agox = max_abs_diff(out.gradient(), &agox);
        let agox_vs_fd5 = max_abs_diff(&agox, &fd5);
        eprintln!(
            "{}: analytic vs five-point {ours_vs_fd5:.1e}, analytic vs AGOX {ours_vs_agox:.1e}, \
             AGOX vs five-point {agox_vs_fd5:.1e} (1/Å)",
            entry["source"]
        );
        assert!(ours_vs_fd5 < 1e-8, "{ours_vs_fd5:e}");
        assert!(ours_vs_agox < 1e-7, "{ours_vs_agox:e}");
        // AGOX's δ = 1e-4 central difference is the less accurate one.
        assert!(
            agox_vs_fd5 > 10.0 * ours_vs_fd5,
            "{agox_vs_fd5:e} vs {ours_vs_fd5:e}"
        );
    }
}
