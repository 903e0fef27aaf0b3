//! The files of a run, in its output directory.
//!
//! | file | what | when |
//! | --- | --- | --- |
//! | `db.db` | every evaluated structure, AGOX's schema ([`Database`](crate::db::Database)) | committed every iteration |
//! | `evaluated.xyz` | every evaluated structure, extxyz (energy, forces, meta in the comment line) | appended every iteration; rewritten from the database on resume |
//! | `best.xyz` | the lowest-energy structure so far | replaced (atomically) when the best improves |
//! | `run.json` | seed, workers and the resolved script, written at start | start, and on resume |
//! | `summary.json` | best energy and when it was reached, counts, timings, pool and sync totals | at the end, also after Ctrl-C |
//!
//! The database is the record; the other files are views of it. A run killed between
//! the database commit and the `.xyz` append loses nothing: `--resume` rewrites
//! `evaluated.xyz` and `best.xyz` from the database.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use agox_atoms::extxyz::{self, Frame};
use agox_atoms::InfoValue;
use agox_pool::PoolStats;
use serde::{Deserialize, Serialize};

use super::SearchError;
use crate::candidate::Candidate;

/// The database file name.
pub const DB_FILE: &str = "db.db";
/// Every evaluated structure (extxyz).
pub const EVALUATED_FILE: &str = "evaluated.xyz";
/// The best structure (extxyz).
pub const BEST_FILE: &str = "best.xyz";
/// The run's end summary (JSON).
pub const SUMMARY_FILE: &str = "summary.json";
/// The run's start record: seed and resolved settings (JSON).
pub const RUN_FILE: &str = "run.json";

/// A candidate as an extxyz frame: its structure (template atoms fixed), energy and
/// forces, and its meta as info keys (`iteration`, `generator`, `id`, `relax_steps`,
/// `parents`, `time_stamp`).
pub fn candidate_frame(c: &Candidate) -> Frame {
    let mut atoms = c.atoms.clone();
    atoms.fixed = (0..c.meta.template_len.min(atoms.len())).collect();
    atoms.info.clear();
    let iteration = i64::try_from(c.meta.iteration).unwrap_or(i64::MAX);
    atoms
        .info
        .insert("iteration".into(), InfoValue::Int(iteration));
    atoms
        .info
        .insert("generator".into(), InfoValue::Str(c.meta.generator.clone()));
    if let Some(id) = c.meta.id {
        atoms.info.insert("id".into(), InfoValue::Int(id));
    }
    if let Some(s) = c.meta.relax_steps {
        atoms.info.insert(
            "relax_steps".into(),
            InfoValue::Int(i64::try_from(s).unwrap_or(i64::MAX)),
        );
    }
    if !c.meta.parents.is_empty() {
        atoms
            .info
            .insert("parents".into(), InfoValue::Ints(c.meta.parents.clone()));
    }
    if let Some(t) = c.meta.time_stamp {
        atoms.info.insert("time_stamp".into(), InfoValue::Float(t));
    }
    Frame {
        atoms,
        energy: c.energy,
        forces: c.forces.clone(),
        stress: None,
        columns: Vec::new(),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> SearchError {
    SearchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn xyz_error(path: &Path, e: extxyz::WriteError) -> SearchError {
    SearchError::Output {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader (or a
/// kill) never sees a half-written file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SearchError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

/// The open output files of a run.
#[derive(Debug)]
pub struct Outputs {
    dir: PathBuf,
    evaluated: BufWriter<File>,
}

impl Outputs {
    /// Opens the output files in `dir` (created if missing). With `truncate`,
    /// `evaluated.xyz` starts empty; otherwise new frames are appended.
    pub fn open(dir: &Path, truncate: bool) -> Result<Self, SearchError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let path = dir.join(EVALUATED_FILE);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(!truncate)
            .truncate(truncate)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        Ok(Outputs {
            dir: dir.to_path_buf(),
            evaluated: BufWriter::new(file),
        })
    }

    /// The output directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a file in the output directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Appends evaluated candidates to `evaluated.xyz` and flushes.
    pub fn append_evaluated(&mut self, candidates: &[Candidate]) -> Result<(), SearchError> {
        let path = self.path(EVALUATED_FILE);
        for c in candidates {
            extxyz::write_frame(&mut self.evaluated, &candidate_frame(c))
                .map_err(|e| xyz_error(&path, e))?;
        }
        self.evaluated.flush().map_err(|e| io_error(&path, e))
    }

    /// Replaces `best.xyz` with `best`.
    pub fn write_best(&self, best: &Candidate) -> Result<(), SearchError> {
        let path = self.path(BEST_FILE);
        let text = extxyz::to_string([&candidate_frame(best)]).map_err(|e| xyz_error(&path, e))?;
        write_atomically(&path, text.as_bytes())
    }

    /// Writes a serializable value as pretty JSON to file `name`.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), SearchError> {
        let path = self.path(name);
        let text = serde_json::to_string_pretty(value).map_err(|e| SearchError::Output {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_atomically(&path, text.as_bytes())
    }
}

/// Time spent in each step of the loop, summed over iterations (seconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepTimings {
    /// Generating candidates (pool).
    pub collect: f64,
    /// Relaxing them in the model (pool).
    pub relax: f64,
    /// Choosing and evaluating.
    pub evaluate: f64,
    /// Committing to the database and writing the `.xyz` files.
    pub store: f64,
    /// Updating the sampler.
    pub update: f64,
    /// Synchronizing the pool.
    pub sync: f64,
}

impl StepTimings {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &StepTimings) {
        self.collect += other.collect;
        self.relax += other.relax;
        self.evaluate += other.evaluate;
        self.store += other.store;
        self.update += other.update;
        self.sync += other.sync;
    }

    /// Total over the steps.
    pub fn total(&self) -> f64 {
        self.collect + self.relax + self.evaluate + self.store + self.update + self.sync
    }
}

/// The pool's counters, as written to `summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolSummary {
    /// Worker processes (0: in-process pool).
    pub workers: usize,
    /// Tasks finished.
    pub tasks: u64,
    /// Tasks that returned an error or panicked.
    pub failed_tasks: u64,
    /// Time inside task functions over all workers (s).
    pub busy_s: f64,
    /// Worker processes replaced.
    pub restarts: u32,
    /// Tasks re-run after their worker died.
    pub retries: u64,
    /// Tasks that timed out.
    pub timeouts: u64,
    /// Time until every worker had shaken hands (s).
    pub start_time_s: f64,
}

/// Synchronization totals, as written to `summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncSummary {
    /// Synchronizations.
    pub syncs: u64,
    /// Attributes sent.
    pub attributes: u64,
    /// Bytes written to the workers.
    pub bytes: u64,
    /// Time spent (s).
    pub elapsed_s: f64,
}

impl PoolSummary {
    /// From the pool's counters.
    pub fn from_stats(s: &PoolStats) -> (PoolSummary, SyncSummary) {
        (
            PoolSummary {
                workers: s.workers.len(),
                tasks: s.total_tasks(),
                failed_tasks: s.workers.iter().map(|w| w.failed).sum(),
                busy_s: s.total_busy().as_secs_f64(),
                restarts: s.total_restarts(),
                retries: s.retries,
                timeouts: s.timeouts,
                start_time_s: s.start_time.as_secs_f64(),
            },
            SyncSummary {
                syncs: s.sync.syncs,
                attributes: s.sync.attributes,
                bytes: s.sync.bytes,
                elapsed_s: s.sync.elapsed.as_secs_f64(),
            },
        )
    }
}

/// `summary.json`: how the run went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The script.
    pub script: PathBuf,
    /// `rss` or `bh`.
    pub algorithm: String,
    /// The run seed.
    pub seed: u64,
    /// Iterations completed (the next iteration to run; iterations count from 0).
    pub iterations_done: u64,
    /// Iterations the run was asked for.
    pub iterations_planned: u64,
    /// True when the run was stopped (Ctrl-C) before the planned iterations.
    pub interrupted: bool,
    /// The iteration a resumed run continued at (`None` for a fresh run).
    pub resumed_at: Option<u64>,
    /// Lowest evaluated energy.
    pub best_energy: Option<f64>,
    /// Iteration in which the best energy was first reached.
    pub best_iteration: Option<u64>,
    /// Database id of the best structure.
    pub best_id: Option<i64>,
    /// Structures evaluated (and stored), over the whole run including before a resume.
    pub evaluations: u64,
    /// Candidates generated by this process.
    pub generated: u64,
    /// Candidates a generator could not make.
    pub generation_failures: u64,
    /// Relaxations that failed.
    pub relax_failures: u64,
    /// Evaluations that failed.
    pub evaluation_failures: u64,
    /// Wall time of this process's run, pool start excluded (s).
    pub wall_time_s: f64,
    /// Mean wall time per iteration run by this process (ms).
    pub mean_iteration_ms: f64,
    /// Evaluations per second in this process.
    pub evaluations_per_s: f64,
    /// Time per step of the loop (s).
    pub timings: StepTimings,
    /// The pool's counters.
    pub pool: PoolSummary,
    /// Synchronization totals.
    pub sync: SyncSummary,
}

/// `run.json`: what a run was started with (for `--resume` and for the record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run seed (the script's, `--seed`, or drawn at start).
    pub seed: u64,
    /// Worker processes.
    pub workers: usize,
    /// The script file.
    pub script: PathBuf,
    /// The resolved settings (`Script::to_json`).
    pub settings: serde_json::Value,
}

impl RunRecord {
    /// Reads `run.json` from `dir`, if present and readable.
    pub fn read(dir: &Path) -> Option<RunRecord> {
        let text = std::fs::read_to_string(dir.join(RUN_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use agox_atoms::Atoms;

    #[test]
    fn frame_round_trips_through_extxyz() {
        let atoms = Atoms::new(vec![79, 29], vec![[0.0, 0.0, 0.0], [2.5, 0.1, -0.3]]).unwrap();
        let mut c = Candidate::new(atoms, 7, "rattle", 1);
        c.energy = Some(-1.25);
        c.forces = Some(vec![[0.1, 0.0, 0.0], [-0.1, 0.0, 0.0]]);
        c.meta.id = Some(12);
        c.meta.parents = vec![3];
        c.meta.relax_steps = Some(17);
        let dir = tempfile::tempdir().unwrap();
        let mut out = Outputs::open(dir.path(), true).unwrap();
        out.append_evaluated(&[c.clone(), c.clone()]).unwrap();
        out.write_best(&c).unwrap();
        let frames = extxyz::read_file(dir.path().join(EVALUATED_FILE)).unwrap();
        assert_eq!(frames.len(), 2);
        let f = &frames[1];
        assert_eq!(f.energy, Some(-1.25));
        assert_eq!(f.atoms.positions, c.atoms.positions);
        assert_eq!(f.atoms.fixed, vec![0]);
        assert_eq!(f.atoms.info.get("iteration"), Some(&InfoValue::Int(7)));
        assert_eq!(
            f.atoms.info.get("generator"),
            Some(&InfoValue::Str("rattle".into()))
        );
        assert_eq!(f.atoms.info.get("id"), Some(&InfoValue::Int(12)));
        let best = extxyz::read_file(dir.path().join(BEST_FILE)).unwrap();
        assert_eq!(best.len(), 1);
        // Appending keeps earlier frames.
        drop(out);
        let mut out = Outputs::open(dir.path(), false).unwrap();
        out.append_evaluated(&[c]).unwrap();
        assert_eq!(
            extxyz::read_file(dir.path().join(EVALUATED_FILE))
                .unwrap()
                .len(),
            3
        );
    }
}
