//! Reading a database without writing to it or beside it: for analysing a run that is
//! finished, interrupted, or still being written by its search.
//!
//! SQLite's read-only mode alone is not enough for a WAL-mode file (every file we
//! write): a reader of such a file creates `db.db-wal` and `db.db-shm` beside it when
//! they are absent, and leaves them behind. So:
//!
//! * a WAL-mode file **without** its `-wal` file (the run closed it, its content is all
//!   in the main file) is opened `immutable`: SQLite reads the main file and creates
//!   nothing. A writer that opens the file meanwhile writes into a new `-wal` and only
//!   changes the main file when it checkpoints; if the main file's size or
//!   modification time changed while it was read, the read is done again the other way;
//! * a WAL-mode file **with** its `-wal` file (a live run, or one that was killed) is
//!   read through that `-wal` and its `-shm`, as any SQLite reader does, seeing every
//!   committed transaction;
//! * a rollback-journal file (AGOX writes those) is opened read-only; its readers
//!   create nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OpenFlags};

use super::{keys, schema, Database, DbError};

/// One stored evaluation, without its structure: what an analysis of the search needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnergyRecord {
    /// Row id (storage order).
    pub id: i64,
    /// The iteration that created the structure (0 where the column is NULL, as when
    /// the candidate is read).
    pub iteration: u64,
    /// Its energy (`None` where the column is NULL).
    pub energy: Option<f64>,
    /// Its `time_stamp`: seconds since the start of the search, when stored.
    pub time_stamp: Option<f64>,
}

/// How a file is opened for reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadMode {
    /// `immutable=1`: no locks, no `-wal`/`-shm`; only for a WAL file whose `-wal` is gone.
    Immutable,
    /// Plain read-only, sharing the writer's `-wal`/`-shm` or rollback journal locks.
    Shared,
}

/// Size and modification time of a file: a change tells that a writer touched it.
fn fingerprint(path: &Path) -> Result<(u64, Option<SystemTime>), DbError> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    Ok((meta.len(), meta.modified().ok()))
}

fn io_error(path: &Path, e: std::io::Error) -> DbError {
    DbError::Invalid(format!("cannot read `{}`: {e}", path.display()))
}

/// `true` when the file's header says WAL mode (bytes 18 and 19 are 2).
fn is_wal_file(path: &Path) -> Result<bool, DbError> {
    use std::io::Read;
    let mut header = [0u8; 20];
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    match file.read_exact(&mut header) {
        Ok(()) => Ok(header[18] == 2 && header[19] == 2),
        // Shorter than a header: not WAL; SQLite itself says what it is.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(io_error(path, e)),
    }
}

/// `path` as an SQLite URI (`file:` + percent-encoded path), with `query`.
fn uri(path: &Path, query: &str) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push('?');
    out.push_str(query);
    out
}

fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

impl Database {
    /// Reads an existing database without writing to it or creating files beside it
    /// (see the module docs for how), checking that its schema is AGOX's: opens it,
    /// runs `read` on it, and returns what `read` returns.
    ///
    /// A missing file is [`DbError::NotFound`]; a file of another schema
    /// [`DbError::Schema`]; a file that is not SQLite [`DbError::Sqlite`].
    pub fn read_snapshot<T>(
        path: impl AsRef<Path>,
        read: impl Fn(&Database) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(DbError::NotFound(path.to_path_buf()));
        }
        if is_wal_file(path)? && !wal_path(path).exists() {
            let before = fingerprint(path)?;
            let value = read(&Self::open_read_only(path, ReadMode::Immutable)?)?;
            if fingerprint(path)? == before {
                return Ok(value);
            }
            // A writer checkpointed into the main file while it was read.
        }
        read(&Self::open_read_only(path, ReadMode::Shared)?)
    }

    fn open_read_only(path: &Path, mode: ReadMode) -> Result<Database, DbError> {
        let query = match mode {
            ReadMode::Immutable => "mode=ro&immutable=1",
            ReadMode::Shared => "mode=ro",
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(uri(path, query), flags)?;
        // A writer's commit holds its lock for a moment; wait rather than fail.
        conn.busy_timeout(Duration::from_secs(60))?;
        schema::verify(&conn)?;
        Ok(Database {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Id, iteration, energy and time stamp of every stored structure, in id
    /// (= storage) order, without decoding the structures.
    pub fn energy_records(&self) -> Result<Vec<EnergyRecord>, DbError> {
        // `MAX` picks one value should a row carry the key twice (we never write it so).
        let mut stmt = self.conn.prepare(
            "SELECT s.id, s.iteration, s.energy, \
                    (SELECT MAX(f.value) FROM float_key_values f WHERE f.id = s.id AND f.key = ?1) \
             FROM structures s ORDER BY s.id",
        )?;
        let rows = stmt.query_map([keys::TIME_STAMP], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, Option<f64>>(2)?,
                r.get::<_, Option<f64>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, iteration, energy, time_stamp) = row?;
            let iteration = match iteration {
                None => 0,
                Some(i) => u64::try_from(i).map_err(|_| DbError::Corrupt {
                    id,
                    column: "iteration",
                    problem: format!("{i} is negative"),
                })?,
            };
            out.push(EnergyRecord {
                id,
                iteration,
                energy,
                time_stamp,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::candidate::Candidate;
    use agox_atoms::Atoms;

    fn candidate(iteration: u64, energy: f64, time_stamp: f64) -> Candidate {
        let atoms = Atoms::new(vec![18], vec![[0.0, 0.0, 0.0]]).unwrap();
        let mut c = Candidate::new(atoms, iteration, "random", 0);
        c.energy = Some(energy);
        c.forces = Some(vec![[0.0; 3]]);
        c.meta.time_stamp = Some(time_stamp);
        c
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_closed_wal_file_is_read_without_creating_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.db");
        let mut db = Database::create(&path).unwrap();
        db.store_many(&[candidate(0, -1.0, 0.5), candidate(1, -2.0, 1.5)])
            .unwrap();
        db.close().unwrap();
        assert_eq!(files(dir.path()), ["db.db"]);
        let before = std::fs::read(&path).unwrap();
        let records = Database::read_snapshot(&path, Database::energy_records).unwrap();
        assert_eq!(files(dir.path()), ["db.db"]);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(
            records
                .iter()
                .map(|r| (r.iteration, r.energy, r.time_stamp))
                .collect::<Vec<_>>(),
            [(0, Some(-1.0), Some(0.5)), (1, Some(-2.0), Some(1.5))]
        );
    }

    #[test]
    fn a_live_writer_s_commits_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run ?#%.db");
        let mut db = Database::create(&path).unwrap();
        db.store(&candidate(0, -1.0, 0.1)).unwrap();
        let n = |p: &Path| {
            Database::read_snapshot(p, Database::energy_records)
                .unwrap()
                .len()
        };
        assert_eq!(n(&path), 1);
        db.store(&candidate(1, -3.0, 0.2)).unwrap();
        assert_eq!(n(&path), 2);
        db.close().unwrap();
        assert_eq!(n(&path), 2);
    }

    #[test]
    fn a_checkpoint_during_an_immutable_read_makes_it_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.db");
        let mut db = Database::create(&path).unwrap();
        db.store(&candidate(0, -1.0, 0.1)).unwrap();
        db.close().unwrap();
        let calls = std::cell::Cell::new(0);
        let n = Database::read_snapshot(&path, |reader| {
            calls.set(calls.get() + 1);
            let seen = reader.energy_records()?.len();
            if calls.get() == 1 {
                // A writer comes, commits and checkpoints while the first read runs.
                let mut writer = Database::open_existing(&path)?;
                writer.store(&candidate(1, -2.0, 0.2))?;
                writer.close()?;
            }
            Ok(seen)
        })
        .unwrap();
        assert_eq!((calls.get(), n), (2, 2));
    }

    #[test]
    fn another_schema_or_no_file_is_an_error_and_nothing_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute("CREATE TABLE t (x INTEGER)", []).unwrap();
        drop(conn);
        let e = Database::read_snapshot(&path, Database::energy_records).unwrap_err();
        assert!(matches!(e, DbError::Schema { .. }), "{e}");
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").unwrap();
        let e = Database::read_snapshot(&empty, Database::energy_records).unwrap_err();
        assert!(e.to_string().contains("not an AGOX database"), "{e}");
        let missing = dir.path().join("missing.db");
        let e = Database::read_snapshot(&missing, Database::energy_records).unwrap_err();
        assert!(matches!(e, DbError::NotFound(_)), "{e}");
        assert_eq!(files(dir.path()), ["empty.db", "other.db"]);
    }
}
