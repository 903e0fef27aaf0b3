//! The files of a run, in its output directory.
//!
//! | file | what | when |
//! | --- | --- | --- |
//! | `db.db` | every evaluated structure, AGOX's schema ([`Database`](crate::db::Database)) | committed every iteration |
//! | `evaluated.xyz` | every evaluated structure, extxyz (energy, forces, meta in the comment line) | appended every iteration; rewritten from the database on resume |
//! | `best.xyz` | the lowest-energy structure so far | replaced (atomically) when the best improves |
//! | `run.json` | seed, workers and the resolved script, written at start | start, and on resume |
//! | `summary.json` | best energy and when it was reached, counts, failures with their first messages, timings, pool and sync totals | at the end, also after Ctrl-C or an error |
//! | `lock` | the pid of the process running the search (see [`RunLock`]) | held while a search runs |
//!
//! The database is the record; the other files are views of it. A run killed between
//! the database commit and the `.xyz` append loses nothing: `--resume` rewrites
//! `evaluated.xyz` and `best.xyz` from the database.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

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

fn io_error(path: &Path, error: std::io::Error) -> SearchError {
    SearchError::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn xyz_error(path: &Path, e: extxyz::WriteError) -> SearchError {
    match e {
        extxyz::WriteError::Io(error) => io_error(path, error),
        other => SearchError::Output {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    }
}

/// How a file named on the command line or in the run directory is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A regular file (or none yet) at this path, after following symbolic links:
    /// written under a temporary name in its directory and renamed over it, so a
    /// reader (or a kill) never sees half a file, and a failure leaves the old one.
    Replace(PathBuf),
    /// A FIFO, a character or block device or a socket: opened and written in place
    /// (renaming over it would destroy it, and a device such as `/dev/null` cannot be
    /// replaced by a file).
    InPlace(PathBuf),
}

impl Destination {
    /// What writing to `path` means. A symbolic link is followed to its final target
    /// (which may not exist yet), so the link itself is kept. A directory is an error.
    pub fn of(path: &Path) -> std::io::Result<Destination> {
        let mut target = path.to_path_buf();
        // Follow links one at a time: the final target may not exist yet.
        for _ in 0..40 {
            match std::fs::symlink_metadata(&target) {
                Ok(m) if m.file_type().is_symlink() => {
                    let link = std::fs::read_link(&target)?;
                    target = match target.parent() {
                        Some(dir) if link.is_relative() => dir.join(link),
                        _ => link,
                    };
                }
                Ok(m) if m.is_dir() => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::IsADirectory,
                        format!("{} is a directory", target.display()),
                    ))
                }
                Ok(m) if m.is_file() => return Ok(Destination::Replace(target)),
                Ok(_) => return Ok(Destination::InPlace(target)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(Destination::Replace(target))
                }
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}: too many levels of symbolic links", path.display()),
        ))
    }

    /// The path that is written.
    pub fn path(&self) -> &Path {
        match self {
            Destination::Replace(p) | Destination::InPlace(p) => p,
        }
    }
}

/// A file being written to a [`Destination`]: a temporary file beside a regular
/// target, the target itself otherwise. [`AtomicWrite::commit`] moves a temporary
/// file into place; dropping it uncommitted removes the temporary file.
#[derive(Debug)]
pub enum AtomicWrite {
    /// Written beside the target, renamed over it on commit.
    Temporary {
        /// The temporary file.
        file: tempfile::NamedTempFile,
        /// The target.
        target: PathBuf,
    },
    /// Written in place.
    InPlace(File),
}

impl AtomicWrite {
    /// Starts writing `path` (see [`Destination::of`]). A new regular file gets the
    /// mode `0o666` less the umask, like any file a program creates; a replaced one
    /// keeps the mode it had.
    pub fn create(path: &Path) -> std::io::Result<AtomicWrite> {
        use std::os::unix::fs::PermissionsExt;
        match Destination::of(path)? {
            Destination::InPlace(p) => Ok(AtomicWrite::InPlace(
                OpenOptions::new().write(true).open(p)?,
            )),
            Destination::Replace(target) => {
                let dir = match target.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                let name = target
                    .file_name()
                    .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
                let file = tempfile::Builder::new()
                    .prefix(&format!(".{name}."))
                    .suffix(".partial")
                    .permissions(std::fs::Permissions::from_mode(0o666))
                    .tempfile_in(dir)?;
                if let Ok(m) = std::fs::metadata(&target) {
                    file.as_file().set_permissions(m.permissions())?;
                }
                Ok(AtomicWrite::Temporary { file, target })
            }
        }
    }

    /// The open file to write to.
    pub fn file(&mut self) -> &mut File {
        match self {
            AtomicWrite::Temporary { file, .. } => file.as_file_mut(),
            AtomicWrite::InPlace(f) => f,
        }
    }

    /// Finishes: a temporary file is renamed over the target.
    pub fn commit(self) -> std::io::Result<()> {
        match self {
            AtomicWrite::Temporary { file, target } => {
                file.persist(&target).map_err(|e| e.error)?;
                Ok(())
            }
            AtomicWrite::InPlace(_) => Ok(()),
        }
    }
}

impl Write for AtomicWrite {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file().flush()
    }
}

/// Writes `bytes` to `path` as [`AtomicWrite`] does: a regular file through a
/// temporary file and a rename, so a reader (or a kill) never sees a half-written
/// file; a FIFO or device in place; through a symbolic link to its target.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SearchError> {
    let mut w = AtomicWrite::create(path).map_err(|e| io_error(path, e))?;
    w.write_all(bytes).map_err(|e| io_error(path, e))?;
    w.commit().map_err(|e| io_error(path, e))
}

/// The lock file of a run directory (it holds the owner's process id).
pub const LOCK_FILE: &str = "lock";

/// Ownership of a run directory: an exclusive `flock` on its [`LOCK_FILE`], held by
/// a running search (fresh or resumed) for its whole life, so a second one fails at
/// once instead of writing the same database. The lock goes with the process (a
/// killed run leaves none behind); the file stays, with the last owner's pid.
#[derive(Debug)]
pub struct RunLock {
    _file: Flock<File>,
    dir: PathBuf,
}

impl RunLock {
    /// Takes the lock of `dir` (created if missing), or fails at once naming the
    /// process that holds it.
    pub fn acquire(dir: &Path) -> Result<RunLock, SearchError> {
        if dir.exists() && !dir.is_dir() {
            return Err(SearchError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut file) => {
                file.set_len(0).map_err(|e| io_error(&path, e))?;
                writeln!(*file, "{}", std::process::id()).map_err(|e| io_error(&path, e))?;
                Ok(RunLock {
                    _file: file,
                    dir: dir.to_path_buf(),
                })
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.trim().parse().ok());
                Err(SearchError::Locked {
                    dir: dir.to_path_buf(),
                    holder,
                })
            }
            Err((_, e)) => Err(io_error(&path, e.into())),
        }
    }

    /// The directory this lock owns.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
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
    /// Training the surrogate model: rows to the workers, the hyperparameter
    /// search on the pool, the fit, the state to the workers (`gofee`).
    #[serde(default)]
    pub train: f64,
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
        self.train += other.train;
        self.update += other.update;
        self.sync += other.sync;
    }

    /// Total over the steps.
    pub fn total(&self) -> f64 {
        self.collect
            + self.relax
            + self.evaluate
            + self.store
            + self.train
            + self.update
            + self.sync
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

/// Distinct failure messages kept per step or generator.
pub const FIRST_MESSAGES: usize = 5;

/// How often something failed, and its first distinct messages (at most
/// [`FIRST_MESSAGES`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Failures {
    /// Failures counted.
    pub count: u64,
    /// The first distinct messages, in the order they occurred.
    pub messages: Vec<String>,
}

impl Failures {
    /// Counts one failure; keeps its message if it is new and there is room. Returns
    /// true when the message was not seen before.
    pub fn record(&mut self, message: &str) -> bool {
        self.count += 1;
        let new = !self.messages.iter().any(|m| m == message);
        if new && self.messages.len() < FIRST_MESSAGES {
            self.messages.push(message.to_owned());
        }
        new
    }
}

/// One generator's record in `summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GeneratorSummary {
    /// `[[generator]] #1 random`.
    pub generator: String,
    /// Candidates it made.
    pub generated: u64,
    /// Candidates it could not make, and why.
    pub failures: Failures,
}

/// `summary.json`: how the run went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The script.
    pub script: PathBuf,
    /// `rss`, `bh` or `gofee`.
    pub algorithm: String,
    /// The run seed.
    pub seed: u64,
    /// Iterations completed (the next iteration to run; iterations count from 0).
    pub iterations_done: u64,
    /// Iterations the run was asked for.
    pub iterations_planned: u64,
    /// True when the run was stopped (SIGINT, SIGTERM) before the planned iterations.
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
    /// Energy and force calculations of the real calculator over the whole run
    /// (relaxations in the calculator and evaluations, failed ones included).
    pub calculator_calls: u64,
    /// Optimizer steps in the surrogate's acquisition over the whole run (`gofee`).
    pub surrogate_steps: u64,
    /// The unit of the energies (`eV`; `ε` for Lennard-Jones in reduced units).
    pub energy_unit: String,
    /// Candidates generated, over the whole run (including before a resume, as every
    /// count below unless said otherwise).
    pub generated: u64,
    /// Candidates a generator could not make.
    pub generation_failures: u64,
    /// Per generator, in script order: candidates made, and failures with their
    /// first messages.
    pub generators: Vec<GeneratorSummary>,
    /// Relaxations that failed.
    pub relax_failures: u64,
    /// Their first messages.
    pub relax_failure_messages: Vec<String>,
    /// Evaluations that failed.
    pub evaluation_failures: u64,
    /// Their first messages.
    pub evaluation_failure_messages: Vec<String>,
    /// What the run does with a candidate whose task failed for good (`fail` or
    /// `skip`, `[search] on_task_failure`).
    pub on_task_failure: String,
    /// Candidates dropped because their task failed for good (only with `skip`).
    pub dropped_candidates: u64,
    /// Their first messages (candidate, function, the last worker's fate).
    pub dropped_candidate_messages: Vec<String>,
    /// The pool's faults by kind, over the whole run up to its last complete
    /// iteration and everything this process saw, with the most recent messages.
    pub pool_events: super::record::PoolEvents,
    /// Why the run stopped before its planned iterations, when an error stopped it.
    pub error: Option<String>,
    /// Wall time of this process's run, pool start excluded (s).
    pub wall_time_s: f64,
    /// Mean wall time per iteration run by this process (ms).
    pub mean_iteration_ms: f64,
    /// Evaluations per second in this process.
    pub evaluations_per_s: f64,
    /// Time per step of the loop (s).
    pub timings: StepTimings,
    /// This process's pool: its work and figures.
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
    /// Reads `run.json` from `dir`: `None` when there is none; an error when it
    /// cannot be read or parsed.
    pub fn read(dir: &Path) -> Result<Option<RunRecord>, SearchError> {
        let path = dir.join(RUN_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path, e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| SearchError::Output {
                path,
                message: format!("not a run record: {e}"),
            })
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
