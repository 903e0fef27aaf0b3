//! The search database: every evaluated structure, in SQLite, in **AGOX's own schema**.
//!
//! A file we write is a file AGOX reads (`agox convert db.db`, `agox analysis run/`), and
//! a file AGOX wrote is one we read. `docs/database.md` describes the schema and the
//! encoding; in short:
//!
//! * table `structures`: one row per evaluated structure; `positions`, `type` (atomic
//!   numbers), `cell` (3×3, rows), `forces`, `pbc` (0/1) and `template_indices` are blobs
//!   of little-endian `f64` (numpy `float64` buffers), `energy` a REAL, `iteration` an
//!   INT, `ctime` years since 2000, `cache_key` a uuid;
//! * tables `text_/float_/int_/boolean_/other_key_values` (`key`, `value`, `id`): the
//!   candidate's meta information (`generator`, `uuid`, `time_stamp`, `relax_index`,
//!   `parent_ids`, ...), the last one holding Python pickles.
//!
//! **Durability.** The file is in WAL mode and every [`Database::store`] (or
//! [`Database::store_many`]) is one committed transaction, so a process killed at any
//! point loses nothing that was stored. With the default `synchronous = NORMAL` a power
//! failure may lose the last commits but never corrupts the file;
//! [`Database::set_synchronous_full`] makes every commit survive power loss too, at the
//! cost of an fsync per commit.

pub mod pickle;
mod progress;
mod read_only;
pub mod schema;

pub use progress::{Progress, PROGRESS_TABLE};
pub use read_only::EnergyRecord;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use agox_atoms::{Atoms, InfoValue};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use crate::candidate::{Candidate, CandidateMeta};
use pickle::PickleValue;

/// AGOX's time origin for `ctime`: "January 1. 2000" as AGOX defines it (Unix seconds).
pub const AGOX_T2000: f64 = 946_681_200.0;
/// AGOX's year for `ctime` (365.25 days, in seconds).
pub const AGOX_YEAR: f64 = 31_557_600.0;

/// Meta keys we write (and read back). Keys AGOX writes that we also understand are
/// `generator`, `uuid`, `time_stamp` and `relax_index`.
pub mod keys {
    /// Text: the generator's name.
    pub const GENERATOR: &str = "generator";
    /// Text: the candidate's uuid (also the `cache_key` column).
    pub const UUID: &str = "uuid";
    /// Float: seconds since the start of the run.
    pub const TIME_STAMP: &str = "time_stamp";
    /// Int: number of relaxation steps (AGOX's name).
    pub const RELAX_INDEX: &str = "relax_index";
    /// Other: pickled `list` of parent database ids.
    pub const PARENT_IDS: &str = "parent_ids";
    /// Other: pickled `list` of fixed-atom indices (only written when not empty).
    pub const FIXED: &str = "fixed";
    /// Int: calculator calls of the run when the candidate was stored (agox-rs).
    pub const CALCULATOR_CALLS: &str = "calculator_calls";
    /// Int: optimizer steps in the surrogate of the run when the candidate was
    /// stored (agox-rs).
    pub const SURROGATE_STEPS: &str = "surrogate_steps";
    /// Int 1: the candidate had no forces (the `forces` column then holds zeros, as AGOX
    /// writes for candidates without forces).
    pub const FORCES_MISSING: &str = "forces_missing";
    /// Prefix of keys holding the candidate's `Atoms::info` entries (scalars and float
    /// lists; the table tells the scalar type).
    pub const INFO_PREFIX: &str = "info:";
    /// Prefix of keys holding integer-list `Atoms::info` entries (pickled `list`).
    pub const INFO_INTS_PREFIX: &str = "info_ints:";
    /// Prefix of keys holding boolean-list `Atoms::info` entries (pickled `list`).
    pub const INFO_BOOLS_PREFIX: &str = "info_bools:";
}

/// Errors of the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed (I/O, locking, a malformed file...).
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    /// `create` was asked for a file that already exists.
    #[error("database `{0}` already exists (use `open` to continue it)")]
    Exists(PathBuf),
    /// `open_existing` was asked for a file that does not exist.
    #[error("database `{0}` does not exist")]
    NotFound(PathBuf),
    /// The file's schema is not AGOX's.
    #[error("database schema differs from AGOX's: table `{table}`: {problem}")]
    Schema {
        /// The table at fault.
        table: String,
        /// What differs.
        problem: String,
    },
    /// A stored row cannot be turned back into a candidate.
    #[error("structure id {id}: column `{column}`: {problem}")]
    Corrupt {
        /// Row id in `structures`.
        id: i64,
        /// The column at fault.
        column: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A candidate that cannot be stored (not evaluated, inconsistent lengths...).
    #[error("cannot store candidate: {0}")]
    Invalid(String),
}

// By hand, not `#[from]`: the message already carries the cause (see `SearchError`).
impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e)
    }
}

/// An open AGOX-schema database. One writer per file; readers may come and go.
#[derive(Debug)]
pub struct Database {
    conn: Connection,
    path: PathBuf,
}

impl Database {
    /// Open `path`, creating the file and AGOX's schema if absent, checking the schema if
    /// present (a different schema is a [`DbError::Schema`] naming table and column).
    /// The file is switched to WAL mode.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DbError> {
        let path = path.as_ref().to_path_buf();
        let mut conn = Connection::open(&path)?;
        // Wait for another process's short write lock rather than failing at once.
        conn.busy_timeout(std::time::Duration::from_secs(60))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DbError::Invalid(format!(
                "could not switch `{}` to WAL mode (journal_mode = {mode})",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // AGOX's key/value tables declare `FOREIGN KEY (id) REFERENCES systems(id)`, a
        // table that never exists. Python's sqlite3 leaves foreign keys off; the SQLite
        // bundled with rusqlite turns them on by default, which would reject every insert.
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        schema::ensure(&mut conn)?;
        Ok(Database { conn, path })
    }

    /// Create a new database at `path` for a fresh run; an existing file is an error
    /// ([`DbError::Exists`]) so that a new run never appends to an old one by accident.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, DbError> {
        let path = path.as_ref();
        if path.exists() {
            return Err(DbError::Exists(path.to_path_buf()));
        }
        Self::open(path)
    }

    /// Open a database that must already exist (for `--resume`), checking its schema.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self, DbError> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(DbError::NotFound(path.to_path_buf()));
        }
        Self::open(path)
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `true`: every commit is fsynced (survives power loss); `false` (default): commits
    /// survive a killed process, and the file is never corrupted, but a power failure
    /// may lose the most recent ones.
    pub fn set_synchronous_full(&self, full: bool) -> Result<(), DbError> {
        let level = if full { "FULL" } else { "NORMAL" };
        self.conn.pragma_update(None, "synchronous", level)?;
        Ok(())
    }

    /// Store one evaluated candidate in its own committed transaction; returns its id.
    ///
    /// The candidate needs a finite energy; its `meta.id` is ignored (the database
    /// assigns ids). A missing `uuid` or `ctime` is filled in.
    pub fn store(&mut self, candidate: &Candidate) -> Result<i64, DbError> {
        let ids = self.store_many(std::slice::from_ref(candidate))?;
        Ok(ids[0])
    }

    /// Store several candidates in one committed transaction (all or none); returns
    /// their ids in order. One transaction per iteration keeps the commit cost low.
    pub fn store_many(&mut self, candidates: &[Candidate]) -> Result<Vec<i64>, DbError> {
        for c in candidates {
            validate_for_store(c)?;
        }
        let tx = self.conn.transaction()?;
        let mut ids = Vec::with_capacity(candidates.len());
        for c in candidates {
            ids.push(insert(&tx, c)?);
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Number of stored structures.
    pub fn len(&self) -> Result<usize, DbError> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM structures", [], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// `true` when nothing is stored.
    pub fn is_empty(&self) -> Result<bool, DbError> {
        Ok(self.len()? == 0)
    }

    /// Every stored candidate, in id (= storage) order, with its meta information.
    pub fn read_all(&self) -> Result<Vec<Candidate>, DbError> {
        let mut meta = read_key_values(&self.conn, None)?;
        let mut stmt = self.conn.prepare(&format!("{SELECT} ORDER BY id"))?;
        let rows = stmt.query_map([], RawRow::from_row)?;
        let mut out = Vec::new();
        for row in rows {
            let row = row?;
            let kv = meta.remove(&row.id).unwrap_or_default();
            out.push(row.into_candidate(kv)?);
        }
        Ok(out)
    }

    /// The candidate with database id `id`, if any.
    pub fn get(&self, id: i64) -> Result<Option<Candidate>, DbError> {
        let row = self
            .conn
            .query_row(&format!("{SELECT} WHERE id = ?1"), [id], RawRow::from_row)
            .optional()?;
        match row {
            None => Ok(None),
            Some(row) => {
                let kv = read_key_values(&self.conn, Some(id))?
                    .remove(&id)
                    .unwrap_or_default();
                row.into_candidate(kv).map(Some)
            }
        }
    }

    /// The lowest-energy stored candidate (the earliest one on ties), if any.
    pub fn best(&self) -> Result<Option<Candidate>, DbError> {
        let id: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM structures WHERE energy IS NOT NULL \
                 ORDER BY energy ASC, id ASC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match id {
            Some(id) => self.get(id),
            None => Ok(None),
        }
    }

    /// All energies in id order (`None` where a row has no energy).
    pub fn energies(&self) -> Result<Vec<Option<f64>>, DbError> {
        let mut stmt = self
            .conn
            .prepare("SELECT energy FROM structures ORDER BY id")?;
        let e = stmt
            .query_map([], |r| r.get::<_, Option<f64>>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(e)
    }

    /// The highest iteration stored (for `--resume`: continue with the next one), or
    /// `None` for an empty database.
    pub fn last_iteration(&self) -> Result<Option<u64>, DbError> {
        let it: Option<i64> =
            self.conn
                .query_row("SELECT MAX(iteration) FROM structures", [], |r| r.get(0))?;
        Ok(it.and_then(|i| u64::try_from(i).ok()))
    }

    /// The candidates stored for iteration `iteration`, in id order.
    pub fn read_iteration(&self, iteration: u64) -> Result<Vec<Candidate>, DbError> {
        let it = i64::try_from(iteration)
            .map_err(|_| DbError::Invalid(format!("iteration {iteration} exceeds i64")))?;
        let ids: Vec<i64> = {
            let mut stmt = self
                .conn
                .prepare("SELECT id FROM structures WHERE iteration = ?1 ORDER BY id")?;
            let ids = stmt
                .query_map([it], |r| r.get(0))?
                .collect::<Result<Vec<_>, _>>()?;
            ids
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(c) = self.get(id)? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Close the connection, checkpointing the WAL into the main file.
    pub fn close(self) -> Result<(), DbError> {
        self.conn.close().map_err(|(_, e)| DbError::Sqlite(e))
    }
}

const SELECT: &str = "SELECT id, ctime, positions, energy, type, cell, forces, pbc, \
                      template_indices, iteration, cache_key FROM structures";

/// AGOX's `now()`: years since its 2000 origin.
pub fn agox_now() -> f64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    (secs - AGOX_T2000) / AGOX_YEAR
}

/// A random (version 4) uuid in the usual 8-4-4-4-12 hex form, as AGOX uses for ids.
pub fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn validate_for_store(c: &Candidate) -> Result<(), DbError> {
    let n = c.atoms.numbers.len();
    match c.energy {
        None => return Err(DbError::Invalid("it has no energy (not evaluated)".into())),
        Some(e) if !e.is_finite() => {
            return Err(DbError::Invalid(format!("its energy {e} is not finite")))
        }
        Some(_) => {}
    }
    if c.atoms.positions.len() != n {
        return Err(DbError::Invalid(format!(
            "{} positions for {n} atoms",
            c.atoms.positions.len()
        )));
    }
    if let Some(f) = &c.forces {
        if f.len() != n {
            return Err(DbError::Invalid(format!(
                "{} force rows for {n} atoms",
                f.len()
            )));
        }
    }
    if c.meta.template_len > n {
        return Err(DbError::Invalid(format!(
            "template length {} exceeds its {n} atoms",
            c.meta.template_len
        )));
    }
    if i64::try_from(c.meta.iteration).is_err() {
        return Err(DbError::Invalid(format!(
            "iteration {} exceeds i64",
            c.meta.iteration
        )));
    }
    Ok(())
}

fn blob(values: impl IntoIterator<Item = f64>) -> Vec<u8> {
    values.into_iter().flat_map(f64::to_le_bytes).collect()
}

fn index_list(values: &[usize]) -> Result<Vec<i64>, DbError> {
    values
        .iter()
        .map(|&v| i64::try_from(v).map_err(|_| DbError::Invalid(format!("index {v} too large"))))
        .collect()
}

fn insert(tx: &Transaction<'_>, c: &Candidate) -> Result<i64, DbError> {
    let a = &c.atoms;
    let uuid = c.meta.uuid.clone().unwrap_or_else(new_uuid);
    let ctime = c.meta.ctime.unwrap_or_else(agox_now);
    let positions = blob(a.positions.iter().flatten().copied());
    let types = blob(a.numbers.iter().map(|&z| f64::from(z)));
    let cell = blob(a.cell.iter().flatten().copied());
    let forces = match &c.forces {
        Some(f) => blob(f.iter().flatten().copied()),
        None => blob(vec![0.0; 3 * a.len()]),
    };
    let pbc = blob(a.pbc.iter().map(|&p| if p { 1.0 } else { 0.0 }));
    // Template lengths are atom counts: far below 2^53, exact in f64.
    let template = blob((0..c.meta.template_len).map(|i| i as f64));
    let iteration = i64::try_from(c.meta.iteration)
        .map_err(|_| DbError::Invalid("iteration exceeds i64".into()))?;
    tx.execute(
        "INSERT INTO structures (ctime, positions, energy, type, cell, forces, pbc, \
         template_indices, iteration, cache_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![ctime, positions, c.energy, types, cell, forces, pbc, template, iteration, uuid],
    )?;
    let id = tx.last_insert_rowid();

    let text = |k: &str, v: &str| -> rusqlite::Result<usize> {
        tx.execute(
            "INSERT INTO text_key_values VALUES (?1, ?2, ?3)",
            params![k, v, id],
        )
    };
    let float = |k: &str, v: f64| -> rusqlite::Result<usize> {
        tx.execute(
            "INSERT INTO float_key_values VALUES (?1, ?2, ?3)",
            params![k, v, id],
        )
    };
    let int = |k: &str, v: i64| -> rusqlite::Result<usize> {
        tx.execute(
            "INSERT INTO int_key_values VALUES (?1, ?2, ?3)",
            params![k, v, id],
        )
    };
    let boolean = |k: &str, v: bool| -> rusqlite::Result<usize> {
        tx.execute(
            "INSERT INTO boolean_key_values VALUES (?1, ?2, ?3)",
            params![k, v, id],
        )
    };
    let other = |k: &str, v: Vec<u8>| -> rusqlite::Result<usize> {
        tx.execute(
            "INSERT INTO other_key_values VALUES (?1, ?2, ?3)",
            params![k, v, id],
        )
    };

    text(keys::GENERATOR, &c.meta.generator)?;
    text(keys::UUID, &uuid)?;
    if let Some(t) = c.meta.time_stamp {
        float(keys::TIME_STAMP, t)?;
    }
    if let Some(steps) = c.meta.relax_steps {
        let steps =
            i64::try_from(steps).map_err(|_| DbError::Invalid("relax steps exceed i64".into()))?;
        int(keys::RELAX_INDEX, steps)?;
    }
    for (key, count) in [
        (keys::CALCULATOR_CALLS, c.meta.calculator_calls),
        (keys::SURROGATE_STEPS, c.meta.surrogate_steps),
    ] {
        if let Some(n) = count {
            let n = i64::try_from(n).map_err(|_| DbError::Invalid(format!("{key} exceeds i64")))?;
            int(key, n)?;
        }
    }
    if c.forces.is_none() {
        int(keys::FORCES_MISSING, 1)?;
    }
    if !c.meta.parents.is_empty() {
        other(keys::PARENT_IDS, pickle::dumps_ints(&c.meta.parents))?;
    }
    if !a.fixed.is_empty() {
        other(keys::FIXED, pickle::dumps_ints(&index_list(&a.fixed)?))?;
    }
    for (k, v) in &a.info {
        let key = format!("{}{k}", keys::INFO_PREFIX);
        match v {
            InfoValue::Int(i) => int(&key, *i)?,
            // SQLite turns a NaN REAL into NULL; keep every float bit-exact in a pickle.
            InfoValue::Float(f) if f.is_nan() => other(&key, pickle::dumps_float(*f))?,
            InfoValue::Float(f) => float(&key, *f)?,
            InfoValue::Bool(b) => boolean(&key, *b)?,
            InfoValue::Str(s) => text(&key, s)?,
            InfoValue::Floats(f) => other(&key, pickle::dumps_floats(f))?,
            InfoValue::Ints(v) => other(
                &format!("{}{k}", keys::INFO_INTS_PREFIX),
                pickle::dumps_ints(v),
            )?,
            InfoValue::Bools(v) => other(
                &format!("{}{k}", keys::INFO_BOOLS_PREFIX),
                pickle::dumps_bools(v),
            )?,
        };
    }
    Ok(id)
}

/// A meta value as read from one of the key/value tables.
#[derive(Debug, Clone, PartialEq)]
enum KvValue {
    Text(String),
    Float(f64),
    Int(i64),
    Bool(bool),
    Other(Vec<u8>),
}

type KvMap = HashMap<i64, Vec<(String, KvValue)>>;

/// Reads the `value` column of a key/value table row.
type KvConvert = fn(&Row<'_>) -> rusqlite::Result<KvValue>;

fn read_key_values(conn: &Connection, only: Option<i64>) -> Result<KvMap, DbError> {
    let mut map: KvMap = HashMap::new();
    let tables: [(&str, KvConvert); 5] = [
        ("text_key_values", |r| Ok(KvValue::Text(r.get(1)?))),
        ("float_key_values", |r| Ok(KvValue::Float(r.get(1)?))),
        ("int_key_values", |r| Ok(KvValue::Int(r.get(1)?))),
        ("boolean_key_values", |r| {
            Ok(KvValue::Bool(r.get::<_, i64>(1)? != 0))
        }),
        ("other_key_values", |r| Ok(KvValue::Other(r.get(1)?))),
    ];
    for (table, convert) in tables {
        let sql = match only {
            Some(_) => format!("SELECT key, value, id FROM {table} WHERE id = ?1 ORDER BY rowid"),
            None => format!("SELECT key, value, id FROM {table} ORDER BY rowid"),
        };
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = match only {
            Some(id) => stmt.query([id])?,
            None => stmt.query([])?,
        };
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            // A value of an unexpected SQLite type (AGOX's reader would still cope) is
            // skipped rather than failing the whole read.
            let Ok(value) = convert(row) else { continue };
            let id: i64 = row.get(2)?;
            map.entry(id).or_default().push((key, value));
        }
    }
    Ok(map)
}

struct RawRow {
    id: i64,
    ctime: Option<f64>,
    positions: Option<Vec<u8>>,
    energy: Option<f64>,
    types: Option<Vec<u8>>,
    cell: Option<Vec<u8>>,
    forces: Option<Vec<u8>>,
    pbc: Option<Vec<u8>>,
    template: Option<Vec<u8>>,
    iteration: Option<i64>,
    cache_key: Option<String>,
}

impl RawRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawRow {
            id: r.get(0)?,
            ctime: r.get(1)?,
            positions: r.get(2)?,
            energy: r.get(3)?,
            types: r.get(4)?,
            cell: r.get(5)?,
            forces: r.get(6)?,
            pbc: r.get(7)?,
            template: r.get(8)?,
            iteration: r.get(9)?,
            cache_key: r.get(10)?,
        })
    }

    fn floats(&self, column: &'static str, data: &Option<Vec<u8>>) -> Result<Vec<f64>, DbError> {
        let corrupt = |problem: String| DbError::Corrupt {
            id: self.id,
            column,
            problem,
        };
        let data = data.as_ref().ok_or_else(|| corrupt("is NULL".into()))?;
        if data.len() % 8 != 0 {
            return Err(corrupt(format!(
                "{} bytes is not a whole number of float64",
                data.len()
            )));
        }
        Ok(data
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                f64::from_le_bytes(b)
            })
            .collect())
    }

    fn into_candidate(self, kv: Vec<(String, KvValue)>) -> Result<Candidate, DbError> {
        let corrupt = |column: &'static str, problem: String| DbError::Corrupt {
            id: self.id,
            column,
            problem,
        };
        let numbers = self
            .floats("type", &self.types)?
            .into_iter()
            .map(|z| {
                if z.fract() == 0.0 && (0.0..=255.0).contains(&z) {
                    Ok(z as u8)
                } else {
                    Err(corrupt("type", format!("{z} is not an atomic number")))
                }
            })
            .collect::<Result<Vec<u8>, _>>()?;
        let n = numbers.len();
        let rows = |column: &'static str, v: Vec<f64>| -> Result<Vec<[f64; 3]>, DbError> {
            if v.len() != 3 * n {
                return Err(corrupt(
                    column,
                    format!("{} values for {n} atoms (expected {})", v.len(), 3 * n),
                ));
            }
            Ok(v.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect())
        };
        let positions = rows("positions", self.floats("positions", &self.positions)?)?;
        let forces = rows("forces", self.floats("forces", &self.forces)?)?;
        let cell_v = self.floats("cell", &self.cell)?;
        if cell_v.len() != 9 {
            return Err(corrupt(
                "cell",
                format!("{} values, expected 9", cell_v.len()),
            ));
        }
        let cell = [
            [cell_v[0], cell_v[1], cell_v[2]],
            [cell_v[3], cell_v[4], cell_v[5]],
            [cell_v[6], cell_v[7], cell_v[8]],
        ];
        let pbc_v = self.floats("pbc", &self.pbc)?;
        if pbc_v.len() != 3 {
            return Err(corrupt(
                "pbc",
                format!("{} values, expected 3", pbc_v.len()),
            ));
        }
        let pbc = [pbc_v[0] != 0.0, pbc_v[1] != 0.0, pbc_v[2] != 0.0];
        let template = match &self.template {
            None => Vec::new(),
            some => self.floats("template_indices", some)?,
        };
        if template.iter().enumerate().any(|(i, &t)| t != i as f64) || template.len() > n {
            return Err(corrupt(
                "template_indices",
                "template atoms must be the first atoms (0, 1, 2, ...)".into(),
            ));
        }
        let iteration = match self.iteration {
            None => 0,
            Some(i) => {
                u64::try_from(i).map_err(|_| corrupt("iteration", format!("{i} is negative")))?
            }
        };

        let mut atoms = Atoms {
            numbers,
            positions,
            cell,
            pbc,
            ..Atoms::default()
        };
        let mut meta = CandidateMeta {
            iteration,
            template_len: template.len(),
            id: Some(self.id),
            uuid: self.cache_key.clone(),
            ctime: self.ctime,
            ..CandidateMeta::default()
        };
        let mut forces_missing = false;
        for (key, value) in kv {
            match (key.as_str(), value) {
                (keys::GENERATOR, KvValue::Text(s)) => meta.generator = s,
                (keys::UUID, KvValue::Text(s)) => meta.uuid = Some(s),
                (keys::TIME_STAMP, KvValue::Float(t)) => meta.time_stamp = Some(t),
                (keys::RELAX_INDEX, KvValue::Int(i)) => meta.relax_steps = u64::try_from(i).ok(),
                (keys::CALCULATOR_CALLS, KvValue::Int(i)) => {
                    meta.calculator_calls = u64::try_from(i).ok();
                }
                (keys::SURROGATE_STEPS, KvValue::Int(i)) => {
                    meta.surrogate_steps = u64::try_from(i).ok();
                }
                (keys::FORCES_MISSING, KvValue::Int(i)) => forces_missing = i != 0,
                (keys::PARENT_IDS, KvValue::Other(b)) => {
                    meta.parents = int_list(&b).unwrap_or_default();
                }
                (keys::FIXED, KvValue::Other(b)) => {
                    atoms.fixed = int_list(&b)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|i| usize::try_from(i).ok())
                        .collect();
                }
                (k, KvValue::Other(b)) if k.starts_with(keys::INFO_INTS_PREFIX) => {
                    if let Some(v) = int_list(&b) {
                        let name = &k[keys::INFO_INTS_PREFIX.len()..];
                        atoms.info.insert(name.to_owned(), InfoValue::Ints(v));
                    }
                }
                (k, KvValue::Other(b)) if k.starts_with(keys::INFO_BOOLS_PREFIX) => {
                    if let Some(v) = bool_list(&b) {
                        let name = &k[keys::INFO_BOOLS_PREFIX.len()..];
                        atoms.info.insert(name.to_owned(), InfoValue::Bools(v));
                    }
                }
                (k, v) => {
                    let Some(name) = k.strip_prefix(keys::INFO_PREFIX) else {
                        continue; // AGOX meta we do not model (final, spawn_uuids, ...)
                    };
                    let value = match v {
                        KvValue::Text(s) => InfoValue::Str(s),
                        KvValue::Float(f) => InfoValue::Float(f),
                        KvValue::Int(i) => InfoValue::Int(i),
                        KvValue::Bool(b) => InfoValue::Bool(b),
                        KvValue::Other(b) => match pickle::loads(&b) {
                            // A NaN float, kept out of SQLite's REAL (which makes it NULL).
                            Some(PickleValue::Float(f)) => InfoValue::Float(f),
                            Some(PickleValue::List(items)) => {
                                let floats: Option<Vec<f64>> = items
                                    .iter()
                                    .map(|x| match x {
                                        PickleValue::Float(f) => Some(*f),
                                        _ => None,
                                    })
                                    .collect();
                                match floats {
                                    Some(f) => InfoValue::Floats(f),
                                    None => continue,
                                }
                            }
                            _ => continue,
                        },
                    };
                    atoms.info.insert(name.to_owned(), value);
                }
            }
        }
        Ok(Candidate {
            atoms,
            energy: self.energy,
            forces: (!forces_missing).then_some(forces),
            meta,
        })
    }
}

fn int_list(b: &[u8]) -> Option<Vec<i64>> {
    match pickle::loads(b)? {
        PickleValue::List(items) => items
            .into_iter()
            .map(|x| match x {
                PickleValue::Int(i) => Some(i),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn bool_list(b: &[u8]) -> Option<Vec<bool>> {
    match pickle::loads(b)? {
        PickleValue::List(items) => items
            .into_iter()
            .map(|x| match x {
                PickleValue::Bool(v) => Some(v),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}
