//! Files written by ASE (tests/data/ase_*.extxyz, made by make_fixtures.py) read the
//! same as ASE reads them (tests/data/ase_read_back.json holds ASE's view).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agox_atoms::extxyz::{self, ColumnData, Frame};
use agox_atoms::InfoValue;
use serde_json::Value;

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn ase_view() -> Value {
    let text = std::fs::read_to_string(data("ase_read_back.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The fixture stores floats as Python `repr` strings (exact); parse them with Rust's
/// correctly rounded parser.
fn num(v: &Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

fn opt_num(v: Option<&Value>) -> Option<f64> {
    v.map(num)
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(num).collect()
}

fn info_value(v: &Value) -> InfoValue {
    let (kind, x) = v.as_object().unwrap().iter().next().unwrap();
    match kind.as_str() {
        "Int" => InfoValue::Int(x.as_i64().unwrap()),
        "Float" => InfoValue::Float(num(x)),
        "Bool" => InfoValue::Bool(x.as_bool().unwrap()),
        "Str" => InfoValue::Str(x.as_str().unwrap().to_string()),
        "Ints" => InfoValue::Ints(
            x.as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_i64().unwrap())
                .collect(),
        ),
        "Floats" => InfoValue::Floats(f64s(x)),
        other => panic!("unknown info kind {other}"),
    }
}

fn rows(v: &Value) -> Vec<[f64; 3]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let r = f64s(r);
            [r[0], r[1], r[2]]
        })
        .collect()
}

/// Every number must be bit-identical: both sides parse the same decimal text with a
/// correctly rounded parser.
fn check_frame(name: &str, ours: &Frame, ase: &Value) {
    let a = &ours.atoms;
    let numbers: Vec<u8> = ase["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(a.numbers, numbers, "{name}");
    assert_eq!(a.positions, rows(&ase["positions"]), "{name} positions");
    let cell = rows(&ase["cell"]);
    assert_eq!(a.cell.to_vec(), cell, "{name} cell");
    let pbc: Vec<bool> = ase["pbc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_bool().unwrap())
        .collect();
    assert_eq!(a.pbc.to_vec(), pbc, "{name} pbc");
    let fixed: Vec<usize> = ase["fixed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(a.fixed, fixed, "{name} fixed");
    assert_eq!(ours.energy, opt_num(ase.get("energy")), "{name} energy");
    match ase.get("forces") {
        Some(f) => assert_eq!(ours.forces.as_ref(), Some(&rows(f)), "{name} forces"),
        None => assert!(ours.forces.is_none(), "{name}"),
    }
    match ase.get("stress") {
        Some(s) => assert_eq!(ours.stress.map(|s| s.to_vec()), Some(f64s(s)), "{name}"),
        None => assert!(ours.stress.is_none(), "{name}"),
    }
    if let Some(e) = ase.get("energies") {
        match &ours.column("energies").expect("energies column").data {
            ColumnData::Real(v) => assert_eq!(v, &f64s(e), "{name} energies"),
            other => panic!("{name}: energies {other:?}"),
        }
    }
    if let Some(fe) = opt_num(ase.get("free_energy")) {
        assert_eq!(a.info.get("free_energy"), Some(&InfoValue::Float(fe)));
    }
    if let Some(tags) = ase["arrays"].get("tags") {
        let want: Vec<i64> = tags
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_i64().unwrap())
            .collect();
        assert_eq!(
            ours.column("tags").map(|c| &c.data),
            Some(&ColumnData::Int(want))
        );
    }
    // Info keys ASE keeps (it moves energy/free_energy/stress to its calculator).
    let info = ase["info"].as_object().unwrap();
    for (k, v) in info {
        let want = info_value(v);
        assert_eq!(a.info.get(k), Some(&want), "{name} info {k}");
    }
    let extra: Vec<&String> = a
        .info
        .keys()
        .filter(|k| !info.contains_key(*k) && k.as_str() != "free_energy")
        .collect();
    assert!(
        extra.is_empty(),
        "{name}: keys ASE does not have: {extra:?}"
    );
}

#[test]
fn reads_ase_fixtures_like_ase() {
    let view = ase_view();
    let expected_counts = [
        ("ase_periodic.extxyz", 1),
        ("ase_multi.extxyz", 3),
        ("ase_cluster.extxyz", 1),
        ("ase_slab.extxyz", 1),
    ];
    for (name, count) in expected_counts {
        let frames = extxyz::read_file(data(name)).unwrap();
        let ase = view[name].as_array().unwrap();
        assert_eq!(frames.len(), count, "{name}");
        assert_eq!(ase.len(), count, "{name}");
        for (ours, theirs) in frames.iter().zip(ase) {
            check_frame(name, ours, theirs);
        }
    }
}

#[test]
fn specific_values_from_the_periodic_fixture() {
    let frames = extxyz::read_file(data("ase_periodic.extxyz")).unwrap();
    let f = &frames[0];
    assert_eq!(f.atoms.chemical_formula(), "Au2Cu6");
    assert_eq!(f.atoms.cell[1], [0.3, 3.61, 0.0]);
    assert_eq!(f.atoms.pbc, [true; 3]);
    assert_eq!(f.atoms.fixed, vec![0, 3]);
    assert_eq!(f.energy, Some(1.4652580120427139));
    assert_eq!(
        f.atoms.info.get("label"),
        Some(&InfoValue::Str("rattled CuAu cell".into()))
    );
    assert_eq!(
        f.atoms.info.get("vec"),
        Some(&InfoValue::Floats(vec![1.5, -2.25, 1e-20]))
    );
    assert_eq!(f.atoms.info.get("converged"), Some(&InfoValue::Bool(true)));
    let slab = &extxyz::read_file(data("ase_slab.extxyz")).unwrap()[0];
    assert_eq!(slab.atoms.pbc, [true, true, false]);
    let cluster = &extxyz::read_file(data("ase_cluster.extxyz")).unwrap()[0];
    assert_eq!(cluster.atoms.cell, [[0.0; 3]; 3]);
    assert_eq!(cluster.atoms.pbc, [false; 3]);
    assert!(cluster.energy.is_none() && cluster.forces.is_none());
}

#[test]
fn ase_fixtures_survive_our_write_and_read() {
    for name in [
        "ase_periodic.extxyz",
        "ase_multi.extxyz",
        "ase_cluster.extxyz",
        "ase_slab.extxyz",
    ] {
        let frames = extxyz::read_file(data(name)).unwrap();
        let text = extxyz::to_string(&frames).unwrap();
        let again = extxyz::read_str(&text).unwrap();
        assert_eq!(frames, again, "{name}\n{text}");
    }
}

#[test]
fn multi_frame_iterator_and_append() {
    let text = std::fs::read_to_string(data("ase_multi.extxyz")).unwrap();
    let sizes: Vec<usize> = extxyz::Reader::new(text.as_bytes())
        .map(|f| f.unwrap().atoms.len())
        .collect();
    assert_eq!(sizes, vec![3, 5, 4]);
    // Appending frame by frame gives the same as writing all at once.
    let frames = extxyz::read_str(&text).unwrap();
    let mut buf = Vec::new();
    for f in &frames {
        extxyz::write_frame(&mut buf, f).unwrap();
    }
    assert_eq!(
        String::from_utf8(buf).unwrap(),
        extxyz::to_string(&frames).unwrap()
    );
    // Also through a real file opened for appending.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.extxyz");
    extxyz::write_file(&path, &frames[..1]).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    extxyz::write_frames(&mut file, &frames[1..]).unwrap();
    drop(file);
    assert_eq!(extxyz::read_file(&path).unwrap(), frames);
}

/// Writes what we produce to $AGOX_EXTXYZ_OUT for checking with ASE by hand
/// (see docs/atoms.md); ignored in CI, which has no Python.
#[test]
#[ignore]
fn write_file_for_manual_ase_check() {
    let out = std::env::var("AGOX_EXTXYZ_OUT").expect("set AGOX_EXTXYZ_OUT");
    let mut frames = Vec::new();
    for name in [
        "ase_periodic.extxyz",
        "ase_multi.extxyz",
        "ase_cluster.extxyz",
        "ase_slab.extxyz",
    ] {
        frames.extend(extxyz::read_file(data(name)).unwrap());
    }
    // A frame with awkward numbers and info values.
    let mut f = frames[0].clone();
    f.atoms.positions[0] = [0.1 + 0.2, -1e-17, 123456.78901234567];
    f.atoms.info.insert(
        "quoted".into(),
        InfoValue::Str("has \"quotes\" and \\ back".into()),
    );
    f.atoms
        .info
        .insert("flags".into(), InfoValue::Bools(vec![true, false, true]));
    f.atoms.info.insert("tiny".into(), InfoValue::Float(5e-324));
    f.energy = Some(-0.1 - 0.2);
    frames.push(f);
    extxyz::write_file(&out, &frames).unwrap();
}
