//! Helpers shared by the integration tests: reading structures from the JSON
//! reference files.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use agox_atoms::Atoms;
use serde_json::Value;

/// Path of a file under the repository's `tests/reference/`.
pub fn reference(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/reference")
        .join(name)
}

/// Path of a file under this crate's `tests/data/`.
pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The parsed JSON file.
pub fn load(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A list of numbers.
pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// A list of 3-vectors.
pub fn vec3s(v: &Value) -> Vec<[f64; 3]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let r = floats(r);
            [r[0], r[1], r[2]]
        })
        .collect()
}

/// A structure record (`numbers`, `positions`, `cell`, `pbc`).
pub fn atoms(v: &Value) -> Atoms {
    let numbers = v["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z.as_u64().unwrap() as u8)
        .collect();
    let cell = vec3s(&v["cell"]);
    let pbc: Vec<bool> = v["pbc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_bool().unwrap())
        .collect();
    Atoms::new(numbers, vec3s(&v["positions"]))
        .unwrap()
        .with_cell([cell[0], cell[1], cell[2]], [pbc[0], pbc[1], pbc[2]])
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}
