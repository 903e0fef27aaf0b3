//! A search's progress, stored beside AGOX's tables: how many iterations are
//! complete, and the run's counters (an opaque text the search writes and reads).
//!
//! One extra table, `agox_rs_progress`, with a single row. AGOX reads only its own
//! tables, so it ignores it; a database that has no such table (written by AGOX, or
//! by an earlier version of this program) simply has no recorded progress.
//! [`Database::store_iteration`] writes an iteration's structures and the progress
//! in **one** transaction, so the progress never claims an iteration whose
//! structures are missing, and structures are never stored for an iteration the
//! progress does not count as complete.

use rusqlite::{params, OptionalExtension, Transaction};

use super::{insert, validate_for_store, Candidate, Database, DbError};

/// The table holding the progress.
pub const PROGRESS_TABLE: &str = "agox_rs_progress";

const CREATE: &str = "CREATE TABLE IF NOT EXISTS agox_rs_progress (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    next_iteration INTEGER NOT NULL,
    counters TEXT NOT NULL)";

/// A search's recorded progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Iterations complete: the next iteration to run.
    pub next_iteration: u64,
    /// The search's counters after them.
    pub counters: String,
}

fn write(tx: &Transaction<'_>, progress: &Progress) -> Result<(), DbError> {
    let next = i64::try_from(progress.next_iteration).map_err(|_| {
        DbError::Invalid(format!("iteration {} exceeds i64", progress.next_iteration))
    })?;
    tx.execute(CREATE, [])?;
    tx.execute(
        "INSERT OR REPLACE INTO agox_rs_progress (id, next_iteration, counters) \
         VALUES (0, ?1, ?2)",
        params![next, progress.counters],
    )?;
    Ok(())
}

impl Database {
    /// Stores one iteration's evaluated candidates and the progress after it in one
    /// committed transaction (all or nothing); returns the candidates' ids in order.
    pub fn store_iteration(
        &mut self,
        candidates: &[Candidate],
        progress: &Progress,
    ) -> Result<Vec<i64>, DbError> {
        for c in candidates {
            validate_for_store(c)?;
        }
        let tx = self.conn.transaction()?;
        let mut ids = Vec::with_capacity(candidates.len());
        for c in candidates {
            ids.push(insert(&tx, c)?);
        }
        write(&tx, progress)?;
        tx.commit()?;
        Ok(ids)
    }

    /// Records `progress` (the start of a run: nothing complete yet).
    pub fn write_progress(&mut self, progress: &Progress) -> Result<(), DbError> {
        let tx = self.conn.transaction()?;
        write(&tx, progress)?;
        tx.commit()?;
        Ok(())
    }

    /// The recorded progress; `None` when the database records none.
    pub fn progress(&self) -> Result<Option<Progress>, DbError> {
        let exists: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [PROGRESS_TABLE],
            |r| r.get(0),
        )?;
        if !exists {
            return Ok(None);
        }
        let row: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT next_iteration, counters FROM agox_rs_progress WHERE id = 0",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(next, counters)| {
            let next_iteration = u64::try_from(next).map_err(|_| DbError::Corrupt {
                id: 0,
                column: "next_iteration",
                problem: format!("{next} is negative"),
            })?;
            Ok(Progress {
                next_iteration,
                counters,
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agox_atoms::Atoms;

    fn evaluated(iteration: u64, energy: f64) -> Candidate {
        let atoms = Atoms::new(vec![18, 18], vec![[0.0; 3], [1.0, 0.0, 0.0]]).unwrap();
        let mut c = Candidate::new(atoms, iteration, "random", 0);
        c.energy = Some(energy);
        c.forces = Some(vec![[0.0; 3]; 2]);
        c
    }

    #[test]
    fn progress_goes_with_the_iteration_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Database::create(dir.path().join("db.db")).unwrap();
        assert_eq!(db.progress().unwrap(), None);
        let start = Progress {
            next_iteration: 0,
            counters: "{}".into(),
        };
        db.write_progress(&start).unwrap();
        assert_eq!(db.progress().unwrap(), Some(start));
        let one = Progress {
            next_iteration: 1,
            counters: "{\"a\":1}".into(),
        };
        let ids = db
            .store_iteration(&[evaluated(0, -1.0), evaluated(0, -2.0)], &one)
            .unwrap();
        assert_eq!(ids.len(), 2);
        // An iteration that stored nothing is complete all the same.
        let two = Progress {
            next_iteration: 2,
            counters: "{\"a\":2}".into(),
        };
        db.store_iteration(&[], &two).unwrap();
        assert_eq!(db.progress().unwrap(), Some(two.clone()));
        // A candidate that cannot be stored leaves both the rows and the progress.
        let mut bad = evaluated(2, -3.0);
        bad.energy = None;
        let three = Progress {
            next_iteration: 3,
            counters: "{}".into(),
        };
        assert!(db
            .store_iteration(&[evaluated(2, -3.0), bad], &three)
            .is_err());
        assert_eq!(db.progress().unwrap(), Some(two));
        assert_eq!(db.len().unwrap(), 2);
    }
}
