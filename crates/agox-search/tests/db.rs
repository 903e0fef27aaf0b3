//! The database against AGOX: same schema as an AGOX-written file, reading an
//! AGOX-written file, bit-exact round trips, and durability across a killed process.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;

use agox_atoms::{Atoms, InfoValue};
use agox_search::db::{Database, DbError};
use agox_search::{Candidate, CandidateMeta};
use proptest::prelude::*;
use rusqlite::Connection;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

fn schema_dump(conn: &Connection) -> String {
    let mut stmt = conn
        .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY name")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok(format!(
                "-- {} {}\n{};\n",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?
            ))
        })
        .unwrap();
    rows.map(|r| r.unwrap()).collect()
}

fn sample(i: usize) -> Candidate {
    let n = 3 + i % 4;
    let mut info = BTreeMap::new();
    info.insert("note".to_string(), InfoValue::Str(format!("c{i}")));
    info.insert("x".to_string(), InfoValue::Float(0.1 * i as f64));
    info.insert("nan".to_string(), InfoValue::Float(f64::NAN));
    info.insert("k".to_string(), InfoValue::Int(-(i as i64)));
    info.insert("flag".to_string(), InfoValue::Bool(i.is_multiple_of(2)));
    info.insert(
        "v".to_string(),
        InfoValue::Floats(vec![1.0 / 3.0, -0.0, 1e-300]),
    );
    info.insert("iv".to_string(), InfoValue::Ints(vec![]));
    info.insert("bv".to_string(), InfoValue::Bools(vec![true, false]));
    Candidate {
        atoms: Atoms {
            numbers: (0..n).map(|k| if k % 2 == 0 { 79 } else { 29 }).collect(),
            positions: (0..n)
                .map(|k| [k as f64 / 3.0, (i as f64).sqrt(), 1e-17 * k as f64])
                .collect(),
            cell: [
                [12.0, 0.0, 0.0],
                [0.1, 12.0, 0.0],
                [0.0, 0.0, 12.0 + 1.0 / 7.0],
            ],
            pbc: [true, i.is_multiple_of(2), false],
            fixed: vec![0, 1],
            info,
        },
        energy: Some(-1.0 / (i as f64 + 3.0)),
        forces: if i.is_multiple_of(3) {
            None
        } else {
            Some(
                (0..n)
                    .map(|k| [0.1 * k as f64, -1.0 / 7.0, f64::MIN_POSITIVE])
                    .collect(),
            )
        },
        meta: CandidateMeta {
            iteration: i as u64 / 2,
            generator: if i.is_multiple_of(2) {
                "random".into()
            } else {
                "rattle".into()
            },
            parents: if i == 0 {
                vec![]
            } else {
                vec![i as i64, 1 << 40]
            },
            relax_steps: if i.is_multiple_of(2) { Some(17) } else { None },
            template_len: 2,
            id: None,
            uuid: None,
            time_stamp: Some(0.5 * i as f64),
            ctime: None,
            calculator_calls: (i > 0).then_some(3 * i as u64),
            surrogate_steps: i.is_multiple_of(2).then_some(100 * i as u64),
        },
    }
}

/// Equality with NaN compared by bits.
fn same(a: &Candidate, b: &Candidate) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

#[test]
fn schema_is_agox_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.db");
    let mut db = Database::create(&path).unwrap();
    db.store(&sample(0)).unwrap(); // sqlite_sequence appears with the first insert
    drop(db);
    let ours = schema_dump(&Connection::open(&path).unwrap());
    let agox = std::fs::read_to_string(format!("{DATA}/agox_schema.sql")).unwrap();
    let agox: String = agox
        .lines()
        .skip_while(|l| !l.starts_with("-- table"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(ours, agox);
    // The AGOX-written file itself passes our schema check.
    let copy = dir.path().join("agox.db");
    std::fs::copy(format!("{DATA}/agox_written.db"), &copy).unwrap();
    assert_eq!(schema_dump(&Connection::open(&copy).unwrap()), agox);
}

#[test]
fn reads_an_agox_written_database() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("agox.db");
    std::fs::copy(format!("{DATA}/agox_written.db"), &copy).unwrap();
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{DATA}/agox_written.json")).unwrap(),
    )
    .unwrap();
    let expected = expected["rows"].as_array().unwrap();
    let bits = |v: &serde_json::Value| u64::from_str_radix(v.as_str().unwrap(), 16).unwrap();
    let db = Database::open_existing(&copy).unwrap();
    let all = db.read_all().unwrap();
    assert_eq!(all.len(), expected.len());
    for (c, e) in all.iter().zip(expected) {
        assert_eq!(c.meta.id, e["id"].as_i64());
        assert_eq!(c.energy.map(f64::to_bits), Some(bits(&e["energy_bits"])));
        assert_eq!(c.meta.iteration, e["iteration"].as_u64().unwrap());
        let pos: Vec<u64> = c
            .atoms
            .positions
            .iter()
            .flatten()
            .map(|x| x.to_bits())
            .collect();
        let epos: Vec<u64> = e["positions_bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(bits)
            .collect();
        assert_eq!(pos, epos);
        // What AGOX stored about the candidate: 4 Au template atoms of fcc100, 2 Ni.
        assert_eq!(c.atoms.numbers, vec![79, 79, 79, 79, 28, 28]);
        assert_eq!(c.meta.template_len, 4);
        assert_eq!(c.atoms.pbc, [true, true, false]);
        assert_eq!(c.meta.generator, "RandomGenerator");
        assert_eq!(c.meta.relax_steps, Some(3));
        assert!(c.meta.uuid.is_some() && c.meta.time_stamp.is_some());
        assert!(c.forces.is_some());
    }
    let best = db.best().unwrap().unwrap();
    assert_eq!(best.meta.id, Some(2));
    assert_eq!(db.last_iteration().unwrap(), Some(3));
}

#[test]
fn round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.db");
    let mut db = Database::create(&path).unwrap();
    let originals: Vec<Candidate> = (0..7).map(sample).collect();
    let mut ids = vec![db.store(&originals[0]).unwrap()];
    ids.extend(db.store_many(&originals[1..]).unwrap());
    assert_eq!(ids, (1..=7).collect::<Vec<i64>>());
    assert_eq!(db.len().unwrap(), 7);
    let back = db.read_all().unwrap();
    for (i, (o, b)) in originals.iter().zip(&back).enumerate() {
        let mut expected = o.clone();
        expected.meta.id = Some(ids[i]);
        expected.meta.uuid = b.meta.uuid.clone();
        expected.meta.ctime = b.meta.ctime;
        assert!(same(&expected, b), "candidate {i}:\n{expected:?}\n{b:?}");
        assert_eq!(b.meta.uuid.as_ref().map(String::len), Some(36));
        assert!(same(&db.get(ids[i]).unwrap().unwrap(), b));
    }
    // Best = lowest energy; iterations for resume.
    let best = db.best().unwrap().unwrap();
    assert_eq!(best.energy, Some(-1.0 / 3.0));
    assert_eq!(db.last_iteration().unwrap(), Some(3));
    assert_eq!(db.read_iteration(1).unwrap().len(), 2);
    assert_eq!(db.energies().unwrap().len(), 7);
    assert!(db.get(99).unwrap().is_none());
    db.close().unwrap();
    // Reopening continues the id sequence.
    let mut db = Database::open_existing(&path).unwrap();
    assert_eq!(db.store(&sample(8)).unwrap(), 8);
}

#[test]
fn store_rejects_unevaluated_and_inconsistent() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Database::create(dir.path().join("db.db")).unwrap();
    let mut c = sample(1);
    c.energy = None;
    assert!(matches!(db.store(&c), Err(DbError::Invalid(_))));
    c.energy = Some(f64::NAN);
    assert!(matches!(db.store(&c), Err(DbError::Invalid(_))));
    let mut c = sample(1);
    c.atoms.positions.pop();
    assert!(matches!(db.store(&c), Err(DbError::Invalid(_))));
    // A batch with one bad candidate stores nothing.
    let mut bad = sample(2);
    bad.meta.template_len = 99;
    assert!(db.store_many(&[sample(1), bad]).is_err());
    assert_eq!(db.len().unwrap(), 0);
}

#[test]
fn create_open_and_schema_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.db");
    assert!(matches!(
        Database::open_existing(&path),
        Err(DbError::NotFound(_))
    ));
    Database::create(&path).unwrap();
    assert!(matches!(Database::create(&path), Err(DbError::Exists(_))));
    Database::open(&path).unwrap();

    // A file with another schema: the error names the table and column.
    let other = dir.path().join("other.db");
    let conn = Connection::open(&other).unwrap();
    for s in agox_search::db::schema::CREATE_STATEMENTS {
        conn.execute(&s.replace("energy real", "energyy real"), [])
            .unwrap();
    }
    drop(conn);
    let err = Database::open(&other).unwrap_err().to_string();
    assert!(
        err.contains("`structures`") && err.contains("energyy"),
        "{err}"
    );

    let foreign = dir.path().join("foreign.db");
    let conn = Connection::open(&foreign).unwrap();
    conn.execute("CREATE TABLE systems (id integer)", [])
        .unwrap();
    drop(conn);
    let err = Database::open(&foreign).unwrap_err().to_string();
    assert!(
        err.contains("`structures`") && err.contains("missing"),
        "{err}"
    );

    let extra = dir.path().join("extra.db");
    let conn = Connection::open(&extra).unwrap();
    for s in agox_search::db::schema::CREATE_STATEMENTS {
        conn.execute(&s.replace("cache_key text", "cache_key text, more int"), [])
            .unwrap();
    }
    drop(conn);
    let err = Database::open(&extra).unwrap_err().to_string();
    assert!(err.contains("extra column `more"), "{err}");
}

#[test]
fn dropped_without_close_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.db");
    let mut db = Database::create(&path).unwrap();
    for i in 0..5 {
        db.store(&sample(i)).unwrap();
    }
    std::mem::forget(db); // no close, no checkpoint: the rows live in the WAL only
    let db = Database::open_existing(&path).unwrap();
    assert_eq!(db.len().unwrap(), 5);
}

const CHILD_ENV: &str = "AGOX_SEARCH_DB_KILL_CHILD";

/// Runs only as the child of `killed_process_loses_nothing`: stores, then aborts.
#[test]
fn kill_child_helper() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut db = Database::create(&path).unwrap();
    for i in 0..6 {
        db.store(&sample(i)).unwrap();
    }
    std::process::abort(); // as abrupt as SIGKILL: no destructors, no checkpoint
}

#[test]
fn killed_process_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.db");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .status()
        .unwrap();
    assert!(!status.success(), "the child must die abnormally");
    assert!(
        dir.path().join("db.db-wal").exists(),
        "the WAL is left behind"
    );
    let db = Database::open_existing(&path).unwrap();
    let all = db.read_all().unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[5].energy, sample(5).energy);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn arbitrary_floats_round_trip(
        pos in proptest::collection::vec(proptest::num::f64::ANY, 3..12),
        e in -1e6f64..1e6,
        cell in proptest::array::uniform9(proptest::num::f64::ANY),
    ) {
        let n = pos.len() / 3;
        let c = Candidate {
            atoms: Atoms {
                numbers: vec![1; n],
                positions: pos.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect(),
                cell: [[cell[0], cell[1], cell[2]], [cell[3], cell[4], cell[5]], [cell[6], cell[7], cell[8]]],
                ..Atoms::default()
            },
            energy: Some(e),
            forces: Some(pos.chunks_exact(3).map(|p| [p[2], p[1], p[0]]).collect()),
            meta: CandidateMeta::default(),
        };
        let dir = tempfile::tempdir().unwrap();
        let mut db = Database::create(dir.path().join("db.db")).unwrap();
        let id = db.store(&c).unwrap();
        let back = db.get(id).unwrap().unwrap();
        let bits = |c: &Candidate| -> Vec<u64> {
            c.atoms.positions.iter().flatten()
                .chain(c.atoms.cell.iter().flatten())
                .chain(c.forces.iter().flatten().flatten())
                .map(|x| x.to_bits()).collect()
        };
        prop_assert_eq!(bits(&back), bits(&c));
        prop_assert_eq!(back.energy.map(f64::to_bits), Some(e.to_bits()));
    }
}

/// Writes the sample candidates to `$AGOX_SEARCH_DB_SAMPLE` (a path) when that variable
/// is set, for checking by hand that AGOX's tools read our file (docs/database.md).
#[test]
fn write_sample_for_agox() {
    let Ok(path) = std::env::var("AGOX_SEARCH_DB_SAMPLE") else {
        return;
    };
    let mut db = Database::create(&path).unwrap();
    for i in 0..7 {
        db.store(&sample(i)).unwrap();
    }
    db.close().unwrap();
}
