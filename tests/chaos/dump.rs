//! A run's database as comparable rows: every column of every structure and every
//! key/value row, except what records *when* (`ctime`, `time_stamp`) and the random
//! uuid (`cache_key`, `uuid`); and the run's counters without the pool's faults.

use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

/// One row, with its structure's id and iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: i64,
    pub iteration: i64,
    pub text: String,
}

/// A database's rows.
#[derive(Debug, Clone)]
pub struct Dump {
    pub structures: Vec<Row>,
    pub key_values: Vec<Row>,
    /// `agox_rs_progress`: iterations complete.
    pub complete: u64,
    /// The counters, `pool_events` left out (they count the faults, which differ).
    pub counters: serde_json::Value,
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Integer(i) => format!("i{i}"),
        // Bits, not digits: identical means bit-identical.
        Value::Real(f) => format!("r{:016x}", f.to_bits()),
        Value::Text(t) => format!("t{t:?}"),
        Value::Blob(b) => format!(
            "b{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
    }
}

/// Reads `db` (read-only), checking its integrity first.
pub fn dump(db: &Path) -> Result<Dump, String> {
    let err = |e: rusqlite::Error| format!("{}: {e}", db.display());
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(err)?;
    if check != "ok" {
        return Err(format!("{}: integrity check: {check}", db.display()));
    }
    let mut stmt = conn
        .prepare(
            "SELECT id, iteration, positions, energy, type, cell, forces, pbc, \
             template_indices FROM structures ORDER BY id",
        )
        .map_err(err)?;
    let structures = stmt
        .query_map([], |r| {
            let values: Vec<Value> = (0..9).map(|i| r.get(i)).collect::<Result<_, _>>()?;
            Ok(Row {
                id: r.get(0)?,
                iteration: r.get(1)?,
                text: values.iter().map(show).collect::<Vec<_>>().join(" "),
            })
        })
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    let iteration_of = |id: i64| {
        structures
            .iter()
            .find(|s| s.id == id)
            .map_or(-1, |s| s.iteration)
    };
    let mut key_values = Vec::new();
    for table in [
        "text_key_values",
        "float_key_values",
        "int_key_values",
        "boolean_key_values",
        "other_key_values",
    ] {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT id, key, value FROM {table} WHERE key NOT IN ('uuid', 'time_stamp') \
                 ORDER BY id, key, rowid"
            ))
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| {
                let id: i64 = r.get(0)?;
                let key: String = r.get(1)?;
                let value: Value = r.get(2)?;
                Ok((id, format!("{table} {key} {}", show(&value))))
            })
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        key_values.extend(rows.into_iter().map(|(id, text)| Row {
            id,
            iteration: iteration_of(id),
            text,
        }));
    }
    key_values.sort_by(|a, b| (a.id, &a.text).cmp(&(b.id, &b.text)));
    let (complete, counters): (i64, String) = conn
        .query_row(
            "SELECT next_iteration, counters FROM agox_rs_progress WHERE id = 0",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(err)?;
    let mut counters: serde_json::Value =
        serde_json::from_str(&counters).map_err(|e| format!("counters: {e}"))?;
    if let Some(map) = counters.as_object_mut() {
        map.remove("pool_events");
    }
    Ok(Dump {
        structures,
        key_values,
        complete: complete as u64,
        counters,
    })
}

impl Dump {
    /// The rows of the first `n` iterations.
    pub fn first(&self, n: u64) -> Dump {
        let keep = |r: &Row| r.iteration >= 0 && (r.iteration as u64) < n;
        Dump {
            structures: self
                .structures
                .iter()
                .filter(|r| keep(r))
                .cloned()
                .collect(),
            key_values: self
                .key_values
                .iter()
                .filter(|r| keep(r))
                .cloned()
                .collect(),
            complete: n,
            counters: serde_json::Value::Null,
        }
    }

    /// Ok when `self` holds exactly `reference`'s rows; otherwise the first
    /// difference.
    pub fn same_rows(&self, reference: &Dump) -> Result<(), String> {
        if self.complete != reference.complete {
            return Err(format!(
                "{} iterations complete, the reference {}",
                self.complete, reference.complete
            ));
        }
        for (what, a, b) in [
            ("structure", &self.structures, &reference.structures),
            ("key/value", &self.key_values, &reference.key_values),
        ] {
            if let Some((x, y)) = a.iter().zip(b).find(|(x, y)| x != y) {
                return Err(format!(
                    "first different {what} row: id {} (iteration {}): {} … vs the \
                     reference's id {} (iteration {}): {} …",
                    x.id,
                    x.iteration,
                    &x.text[..x.text.len().min(120)],
                    y.id,
                    y.iteration,
                    &y.text[..y.text.len().min(120)]
                ));
            }
            if a.len() != b.len() {
                return Err(format!(
                    "{} {what} rows, the reference {}",
                    a.len(),
                    b.len()
                ));
            }
        }
        Ok(())
    }
}
