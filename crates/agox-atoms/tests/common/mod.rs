//! Helpers shared by the reference-data integration tests: loading
//! `tests/reference/<name>.json` (the repository's reference data) and turning its JSON arrays into the
//! types `agox_atoms` works with.
//!
//! Each test file includes this with `mod common;`; not every file uses every
//! helper, hence the module-level `dead_code` allowance.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use agox_atoms::Atoms;
use serde_json::Value;

/// Parses `tests/reference/<name>.json` at the repository root (see its README
/// for where the values come from).
pub fn reference(name: &str) -> Value {
    let path = format!(
        "{}/../../tests/reference/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reference file {name}.json ({path}): {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}.json is not valid JSON: {e}"))
}

/// A JSON array of 3-vectors as `Vec<[f64; 3]>`.
pub fn vec3s(v: &Value) -> Vec<[f64; 3]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let r = r.as_array().unwrap();
            [
                r[0].as_f64().unwrap(),
                r[1].as_f64().unwrap(),
                r[2].as_f64().unwrap(),
            ]
        })
        .collect()
}

/// A JSON array of numbers as `Vec<f64>`.
pub fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Builds an `Atoms` from a reference entry's `numbers`, `positions`, `cell`
/// and `pbc` fields.
pub fn atoms_from(entry: &Value) -> Atoms {
    let cell = vec3s(&entry["cell"]);
    let pbc: Vec<bool> = entry["pbc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_bool().unwrap())
        .collect();
    Atoms {
        numbers: entry["numbers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|z| z.as_u64().unwrap() as u8)
            .collect(),
        positions: vec3s(&entry["positions"]),
        cell: [cell[0], cell[1], cell[2]],
        pbc: [pbc[0], pbc[1], pbc[2]],
        ..Default::default()
    }
}

/// The entry of `data["entries"]` whose `id` is `id`.
pub fn entry<'a>(data: &'a Value, id: &str) -> &'a Value {
    data["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no entry with id {id}"))
}
