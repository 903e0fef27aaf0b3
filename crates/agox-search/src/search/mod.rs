//! The search loop: a validated [`Script`] run on a [`Pool`].
//!
//! # One iteration, in this order
//! 1. **collect** — [`ParallelCollector`]: each generator's count for this iteration
//!    (its schedule), generated on the pool with explicit per-candidate seeds
//!    `(run seed, iteration, generator index, candidate index)`;
//! 2. **relax** — [`ParallelRelaxPostprocess`]: every candidate relaxed on the pool in
//!    the relaxation model ([`crate::relax_model`]: the calculator in `rss` and `bh`,
//!    the acquisition `E − κσ` of the model in `gofee`), template atoms fixed, placed
//!    atoms kept in the confinement box, from `[relax] start_iteration` on (`gofee`
//!    drops a candidate whose relaxation took no step);
//! 3. **choose** — [`Algorithm::choose`](crate::algorithm::Algorithm::choose): `rss`
//!    all (or the `[evaluator] count` lowest model energies), `bh` all, `gofee` the
//!    lowest acquisition values first;
//! 4. **evaluate** — [`Evaluator`]: single points in the driver (built-in
//!    potentials) or on the pool (an external calculator, whose clients live on the
//!    workers), or relaxations on the pool (`gofee`: until `count` succeeded);
//! 5. **store** — the iteration's evaluations and the run's counters committed to
//!    the database in one transaction ([`Database::store_iteration`], see
//!    [`record`]): an iteration is complete exactly when it committed; then
//!    appended to `evaluated.xyz` (and `best.xyz` replaced when the best improved);
//! 6. **train** (`gofee`) — [`ModelStage::after_store`]: the stored structures become
//!    training rows, the model is retrained with its hyperparameter search on the
//!    pool, and the relaxation model learns the version the workers must be at;
//! 7. **update** — the driver's copy of the sampler offered the stored candidates;
//!    Metropolis and k-means draw from a stream seeded by `(run seed, iteration)`;
//! 8. **synchronize** — `pool.synchronize()` pushes the changed dynamic attributes
//!    (the sampler's parents, the relaxation model's κ and expected version) to the
//!    workers; its [`SyncReport`] is in the iteration's [`IterationReport`].
//!
//! This is AGOX's observer order (generate → postprocess → evaluate → database →
//! model → sampler → sync) written out as plain code. Steps 1 and 2 run as one pool task per
//! candidate ([`crate::tasks`]); what differs between the algorithms is asked of
//! [`Algorithm`](crate::algorithm::Algorithm).
//!
//! # Faults
//! A pool task that fails for good (its worker lost, or timed out, on every attempt)
//! stops the run before anything of its iteration is stored, or with `[search]
//! on_task_failure = "skip"` drops its candidate, counted and reported; a broken
//! pool always stops the run; a calculation that fails is the candidate's own,
//! counted failure ([`policy`]).
//!
//! # Determinism
//! Nothing depends on the pool's call counter or on which worker ran a task: with 1
//! or N workers, and after `--resume` ([`Search::resume`]), the same script and seed
//! give the same energies in the same order.
//!
//! # Driving it yourself
//! ```no_run
//! # use agox_search::{registry, script::Script, search::Search};
//! # use agox_pool::{Pool, PoolConfig};
//! let script = Script::load("examples/scripts/lj13_bh.toml").unwrap();
//! let (reg, _) = registry::build();
//! let pool = Pool::start(reg, PoolConfig::with_workers(2)).unwrap();
//! let mut search = Search::new(script, pool).unwrap();
//! while !search.is_done() {
//!     let report = search.run_iteration().unwrap();
//!     println!("{report}");
//! }
//! let summary = search.finish(false).unwrap();
//! println!("best {:?}", summary.best_energy);
//! ```

mod collector;
mod evaluator;
pub mod model;
mod outputs;
mod policy;
mod postprocess;
pub mod record;
mod resume;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use agox_pool::{FnHandle, Handle, Link, Pending, Pool, PoolError, SyncReport};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use crate::calculator::RelaxArgs;
pub use collector::{generator_key, GeneratorSlot, ParallelCollector};
pub use evaluator::{Evaluated, Evaluator};
pub use model::{ModelRecord, ModelStage, TrainingRecord, MODEL_FILE, MODEL_KEY};
pub use outputs::{
    candidate_frame, write_atomically, AtomicWrite, Destination, Failures, GeneratorSummary,
    Outputs, PoolSummary, RunLock, RunRecord, StepTimings, Summary, SyncSummary, BEST_FILE,
    DB_FILE, EVALUATED_FILE, FIRST_MESSAGES, LOCK_FILE, RUN_FILE, SUMMARY_FILE,
};
pub use postprocess::{ParallelRelaxPostprocess, Relaxed};
pub use record::{PoolEvents, RunCounters};
pub use resume::{check_same_search, resume_settings, History};

use crate::algorithm::RelaxationModel;
use crate::calculator::{CalculatorModule, CalculatorSpec};
use crate::candidate::Candidate;
use crate::db::{Database, DbError, Progress};
use crate::environment::Environment;
use crate::generators::derive_seed;
use crate::relax_model::{RelaxModel, RELAX_MODEL_KEY};
use crate::samplers::SamplerError;
use crate::samplers::SamplerModule;
use crate::script::Script;
use crate::script::{ModelSettings, SamplerSettings};
use crate::surrogate::TrainReport;
use crate::tasks::{PipelineArgs, PipelineOutput, Relaxation};

/// A submitted generate-and-relax task with its arguments (to submit it again
/// after healing a worker's copy of the model).
type Submitted = (PipelineArgs, Pending<PipelineOutput>);

/// How often a candidate's task is submitted again after healing the copy of the
/// model it found behind (a worker replaced again in between).
const MAX_HEALS: usize = 3;
use agox_models::fingerprint::Fingerprint;

/// Pool key of the calculator module (the calculator that evaluates; in `rss` and
/// `bh` also the one the relaxation model relaxes in).
pub const CALCULATOR_KEY: &str = "calculator";
/// Directory of the output directory in which each worker's external-calculator
/// client works (`workers/worker-N/`, with its `client.log`).
pub const CLIENTS_DIR: &str = "workers";
/// Pool key of the sampler module.
pub const SAMPLER_KEY: &str = "sampler";
/// Tag mixed into the sampler's per-iteration seed ("SAMPLER!").
const SAMPLER_SEED_TAG: u64 = 0x5341_4d50_4c45_5221;

/// What can stop a search. Each message carries its cause itself (no error here
/// has a `source`), so a chain of contexts prints every cause once.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A pool operation failed (a broken pool, a socket, a task that panicked).
    #[error(transparent)]
    Pool(PoolError),
    /// A candidate's task failed for good (its worker lost, or timed out, on every
    /// attempt) and `[search] on_task_failure` is `"fail"`. Nothing of the iteration
    /// is stored: a resumed run redoes it whole.
    #[error(
        "iteration {iteration}, {candidate}: {error} (`[search] on_task_failure = \"fail\"`: \
         the run stops; every iteration before {iteration} is stored, and a resumed run \
         redoes iteration {iteration})"
    )]
    TaskFailed {
        /// The iteration.
        iteration: u64,
        /// Which candidate (`candidate 3 ([[generator]] #2 rattle)`).
        candidate: String,
        /// The pool's error: function, task, attempts, the last worker's fate.
        error: PoolError,
    },
    /// The database failed.
    #[error("database: {0}")]
    Db(DbError),
    /// A file of the output directory could not be written or read.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system error.
        error: std::io::Error,
    },
    /// The output path exists and is not a directory.
    #[error("{} is not a directory; expected an output directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// Another process runs a search in the output directory.
    #[error(
        "{} is in use by {} (it holds {}); wait for it to end, or choose another output directory",
        dir.display(),
        holder.map_or_else(|| "another process".to_owned(), |p| format!("process {p}")),
        dir.join(LOCK_FILE).display()
    )]
    Locked {
        /// The output directory.
        dir: PathBuf,
        /// The process holding the lock, when its lock file says.
        holder: Option<u32>,
    },
    /// Iteration after iteration, no generator could make a single candidate.
    #[error(
        "no candidate could be generated in {count} iterations in a row (iterations {first}–{last}; \
         `[search] max_failed_iterations` = {count}): {reasons}"
    )]
    NothingGenerated {
        /// Iterations in a row without a candidate.
        count: u64,
        /// The first of them.
        first: u64,
        /// The last of them.
        last: u64,
        /// Each failing generator with its count and first message.
        reasons: String,
    },
    /// An output could not be encoded.
    #[error("{}: {message}", path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A fresh run would overwrite an earlier run's database.
    #[error(
        "{} already holds a run's database ({}); use --resume to continue it, or choose \
         another --output directory",
        dir.display(),
        DB_FILE
    )]
    OutputExists {
        /// The output directory.
        dir: PathBuf,
    },
    /// The calculator's parameters are unusable.
    #[error("calculator: {0}")]
    Calculator(String),
    /// The surrogate model failed (its settings, or a training).
    #[error("{0}")]
    Model(String),
    /// The sampler could not take an iteration's structures.
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    /// The run cannot be resumed as asked.
    #[error("cannot resume: {0}")]
    Resume(String),
}

impl From<PoolError> for SearchError {
    fn from(e: PoolError) -> Self {
        SearchError::Pool(e)
    }
}

impl From<DbError> for SearchError {
    fn from(e: DbError) -> Self {
        SearchError::Db(e)
    }
}

/// One failure of an iteration: what failed and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureNote {
    /// What failed: `[[generator]] #1 random`, `relax`, `evaluate`, or
    /// [`DROPPED`] for a candidate dropped after its task failed for good.
    pub source: String,
    /// Why.
    pub message: String,
}

/// [`FailureNote::source`] of a candidate dropped because its task failed for good.
pub const DROPPED: &str = "dropped (on_task_failure = \"skip\")";

/// Counts and notes a candidate dropped after its task failed for good (`message`
/// from [`policy::judge`]).
fn note_dropped(counters: &mut RunCounters, failures: &mut Vec<FailureNote>, message: String) {
    counters.dropped.record(&message);
    failures.push(FailureNote {
        source: DROPPED.into(),
        message,
    });
}

/// What one iteration did (the log line is its `Display`).
#[derive(Debug, Clone)]
pub struct IterationReport {
    /// The iteration (from 0).
    pub iteration: u64,
    /// Candidates generated.
    pub generated: usize,
    /// Candidates a generator could not make.
    pub generation_failures: usize,
    /// Candidates relaxed in the model (0 before `start_iteration`).
    pub relaxed: usize,
    /// Relaxations that failed.
    pub relax_failures: usize,
    /// Candidates left out because their relaxation took no step (`gofee`).
    pub unmoved: usize,
    /// Optimizer steps of the iteration's relaxations.
    pub relax_steps: u64,
    /// Calculations of the real calculator in this iteration (relaxations in it
    /// and evaluations).
    pub calculator_calls: u64,
    /// The surrogate's training after the store (`gofee`).
    pub training: Option<TrainReport>,
    /// Energies of the evaluated (and stored) candidates, in storage order.
    pub energies: Vec<f64>,
    /// Evaluations that failed.
    pub evaluation_failures: usize,
    /// Candidates dropped because their task failed for good
    /// (`on_task_failure = "skip"`).
    pub dropped: usize,
    /// Every failure of the iteration, with its message, in the order seen.
    pub failures: Vec<FailureNote>,
    /// Per evaluated candidate: did it become the sampler's parent.
    pub accepted: Vec<bool>,
    /// Lowest energy so far.
    pub best_energy: Option<f64>,
    /// The unit of the energies (`eV`, `ε`, ...).
    pub energy_unit: String,
    /// True when this iteration improved the best.
    pub new_best: bool,
    /// Evaluations so far (whole run).
    pub evaluations: u64,
    /// The end-of-iteration synchronization.
    pub sync: SyncReport,
    /// Time per step.
    pub timings: StepTimings,
    /// Wall time of the iteration (s).
    pub elapsed: f64,
}

impl std::fmt::Display for IterationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "iteration {}: {} generated, {} relaxed",
            self.iteration, self.generated, self.relaxed
        )?;
        if self.unmoved > 0 {
            write!(f, " ({} unmoved, dropped)", self.unmoved)?;
        }
        write!(f, ", {} evaluated", self.energies.len())?;
        let failures = self.generation_failures + self.relax_failures + self.evaluation_failures;
        match (failures, self.dropped) {
            (0, 0) => {}
            (n, 0) => write!(f, " ({n} failed)")?,
            (0, d) => write!(f, " ({d} dropped)")?,
            (n, d) => write!(f, " ({n} failed, {d} dropped)")?,
        }
        let unit = &self.energy_unit;
        if let Some(e) = self.energies.iter().copied().min_by(f64::total_cmp) {
            write!(f, ", lowest {e:.6} {unit}")?;
        }
        match self.best_energy {
            Some(b) => write!(
                f,
                ", best {b:.6} {unit}{}",
                if self.new_best { " (new)" } else { "" }
            )?,
            None => write!(f, ", best none yet")?,
        }
        write!(f, " | {:.2} ms", self.elapsed * 1e3)?;
        // The pool's own figures only in the alternate form (`{:#}`, `-v`).
        if f.alternate() {
            if let Some(t) = &self.training {
                write!(
                    f,
                    " | model: {} rows, θ = [{}], search {:.1} ms, rows {} B and state {} B to the workers",
                    t.rows,
                    t.hyperparameters
                        .iter()
                        .map(|h| format!("{h:.3}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    t.search_s * 1e3,
                    t.rows_sync.bytes,
                    t.state_sync.bytes
                )?;
            }
            write!(f, " | {}", self.sync)?;
        }
        Ok(())
    }
}

/// A search in progress: the script, the pool with the search's modules, the
/// database and output files, and the loop's state.
#[derive(Debug)]
pub struct Search {
    script: Script,
    pool: Pool,
    seed: u64,
    collector: ParallelCollector,
    postprocess: Option<ParallelRelaxPostprocess>,
    evaluator: Evaluator,
    sampler: Option<Handle<SamplerModule>>,
    /// The surrogate stage (`gofee`).
    model: Option<ModelStage>,
    /// Whether relaxing candidates costs calls of the real calculator.
    relaxes_in_calculator: bool,
    db: Database,
    outputs: Outputs,
    /// Held for the search's whole life: no other process writes this directory.
    lock: RunLock,
    /// Iterations complete (committed): the next one to run.
    next_iteration: u64,
    resumed_at: Option<u64>,
    best: Option<Candidate>,
    evaluations: u64,
    evaluations_at_start: u64,
    /// The run's counters up to the last complete iteration, over every process of
    /// the run (see [`record`]).
    counters: RunCounters,
    /// The pool's faults counted by the run's earlier processes.
    events_before: PoolEvents,
    iterations_run: u64,
    timings: StepTimings,
    started: Instant,
    time_offset: f64,
    /// The fused generate-and-relax task.
    generate_relax: FnHandle<PipelineArgs, PipelineOutput>,
    /// `calculator.release` (stops the workers' clients).
    release: FnHandle<Link<CalculatorModule>, ()>,
    /// Candidates of a later iteration already submitted (see [`crate::tasks`]).
    lookahead: Option<(u64, Vec<Submitted>)>,
}

impl Search {
    /// A fresh run of `script` on `pool` (built from [`crate::registry::build`]),
    /// writing to `script.search.output`, which it locks ([`RunLock`]). An output
    /// directory that already holds a database is refused
    /// ([`SearchError::OutputExists`]). The seed is the script's, or drawn now; it is
    /// recorded in `run.json`.
    pub fn new(script: Script, pool: Pool) -> Result<Search, SearchError> {
        let lock = RunLock::acquire(&script.search.output)?;
        Search::new_locked(script, pool, lock)
    }

    /// [`Search::new`] in a directory the caller has already locked (so that it can
    /// refuse a busy directory before starting a pool).
    pub fn new_locked(script: Script, pool: Pool, lock: RunLock) -> Result<Search, SearchError> {
        let dir = script.search.output.clone();
        if dir.join(DB_FILE).exists() {
            return Err(SearchError::OutputExists { dir });
        }
        check_calculator(&script, &pool)?;
        let seed = script.search.seed.unwrap_or_else(rand::random::<u64>);
        let outputs = Outputs::open(&dir, true)?;
        // `run.json` before the database: a run killed in between leaves a directory
        // without a database, which a fresh run may use; never a database that
        // `--resume` cannot continue.
        write_run_record(&outputs, &script, seed, pool.size())?;
        let db = Database::create(dir.join(DB_FILE))?;
        let mut search =
            Search::assemble(script, pool, seed, db, outputs, lock, History::default())?;
        let start = search.progress(0, &search.counters);
        search.db.write_progress(&start)?;
        Ok(search)
    }

    /// Continues the run in `script.search.output` from its database, with the
    /// settings and seed recorded in its `run.json` ([`resume_settings`]: `script`
    /// must describe the same search; its iterations are the new total). Replays the
    /// stored evaluations through the sampler, rewrites `evaluated.xyz` and
    /// `best.xyz` from the database, and continues at the first iteration that is
    /// not complete (see [`record`]), with the run's counters so far. Locks the
    /// directory ([`RunLock`]).
    pub fn resume(script: Script, pool: Pool) -> Result<Search, SearchError> {
        let lock = RunLock::acquire(&script.search.output)?;
        Search::resume_locked(script, pool, lock)
    }

    /// [`Search::resume`] in a directory the caller has already locked.
    pub fn resume_locked(script: Script, pool: Pool, lock: RunLock) -> Result<Search, SearchError> {
        let dir = script.search.output.clone();
        let script = resume_settings(&dir, Some(&script))?;
        check_calculator(&script, &pool)?;
        let seed = script.search.seed.ok_or_else(|| {
            SearchError::Resume(format!("{} records no seed", dir.join(RUN_FILE).display()))
        })?;
        if !dir.join(DB_FILE).exists() {
            // Stopped after recording its settings, before its database: nothing was
            // done, so continuing is starting, with the recorded settings and seed.
            return Search::new_locked(script, pool, lock);
        }
        let db = Database::open_existing(dir.join(DB_FILE))?;
        let history = History::from_stored(db.read_all()?).with_progress(db.progress()?)?;
        let mut outputs = Outputs::open(&dir, true)?;
        let all: Vec<Candidate> = history.iterations.values().flatten().cloned().collect();
        outputs.append_evaluated(&all)?;
        if let Some(b) = &history.best {
            outputs.write_best(b)?;
        }
        let search = Search::assemble(script, pool, seed, db, outputs, lock, history)?;
        // A resume with nothing left to do changes no record of the run.
        if !search.is_done() {
            write_run_record(
                &search.outputs,
                &search.script,
                search.seed,
                search.pool.size(),
            )?;
        }
        Ok(search)
    }

    /// Builds the modules on the pool and the loop's state (replaying `history`
    /// through the sampler).
    fn assemble(
        script: Script,
        pool: Pool,
        seed: u64,
        db: Database,
        outputs: Outputs,
        lock: RunLock,
        history: History,
    ) -> Result<Search, SearchError> {
        let fns = crate::tasks::handles();
        let env = Environment::from_script(&script.environment);
        let spec = CalculatorSpec::new(&script.calculator, &script.search.output.join(CLIENTS_DIR));
        spec.validate()
            .map_err(|e| SearchError::Calculator(e.to_string()))?;
        let calculator = pool.add_module(CALCULATOR_KEY, CalculatorModule::new(spec))?;

        // The sampler: replay the stored evaluations (resume) before the workers get it.
        // A kmeans sampler describes structures as the model does.
        let descriptor = match &script.sampler {
            Some(SamplerSettings::Kmeans { .. }) => {
                let params = script
                    .model
                    .as_ref()
                    .map_or_else(Default::default, ModelSettings::descriptor);
                let fingerprint = Fingerprint::for_search(params, &env.template, &env.numbers)
                    .map_err(|e| SearchError::Model(format!("descriptor: {e}")))?;
                Some(fingerprint.spec().clone())
            }
            _ => None,
        };
        let mut sampler_module = script
            .sampler
            .as_ref()
            .map(|s| SamplerModule::from_settings(s, descriptor.as_ref()))
            .transpose()?;
        if let Some(s) = sampler_module.as_mut() {
            s.replay(
                history
                    .iterations
                    .iter()
                    .map(|(&i, stored)| (stored.as_slice(), sampler_rng(seed, i))),
            )?;
        }
        let sampler = match sampler_module {
            Some(m) => Some(pool.add_module(SAMPLER_KEY, m)?),
            None => None,
        };

        let collector = ParallelCollector::new(
            &pool,
            &env,
            &script.generators,
            sampler.as_ref().map(Handle::link),
        )?;
        let confinement = env.box_constraint();
        // The surrogate (gofee): rebuilt from the database on resume.
        let model = if script.search.algorithm.trains_model() {
            let earlier = if history.iterations.is_empty() {
                None
            } else {
                model::read_record(outputs.dir())?
            };
            Some(ModelStage::new(
                &pool,
                &fns,
                &script,
                &env,
                seed,
                &history.iterations,
                earlier,
            )?)
        } else {
            None
        };
        let relax_model = match script.search.algorithm.relaxation_model() {
            RelaxationModel::Calculator if script.relax.is_some() => {
                Some(pool.add_module(RELAX_MODEL_KEY, RelaxModel::calculator(calculator.link()))?)
            }
            RelaxationModel::Calculator => None,
            RelaxationModel::Acquisition => match &model {
                Some(m) => Some(m.relax_model().clone()),
                None => {
                    return Err(SearchError::Model(
                        "the algorithm relaxes in a model, but the script has no [model]".into(),
                    ))
                }
            },
        };
        let relaxes_in_calculator = relax_model
            .as_ref()
            .is_some_and(|m| m.lock().is_calculator());
        let postprocess = match (&script.relax, &relax_model) {
            (Some(r), Some(m)) => Some(ParallelRelaxPostprocess::new(
                m.link(),
                r,
                confinement.clone(),
            )),
            _ => None,
        };
        let evaluator = Evaluator::new(
            script.evaluator.clone(),
            calculator,
            &script.calculator,
            fns.calculator.clone(),
            confinement,
        );
        let resumed_at = (history.next_iteration() > 0).then(|| history.next_iteration());
        let labels: Vec<String> = collector
            .slots()
            .iter()
            .enumerate()
            .map(|(i, slot)| generator_label(i, slot.name))
            .collect();
        let next_iteration = history.next_iteration();
        let counters = match history.counters {
            Some(c) => {
                let recorded: Vec<&str> =
                    c.generators.iter().map(|g| g.generator.as_str()).collect();
                if recorded != labels {
                    return Err(SearchError::Resume(format!(
                        "the database's counters name the generators {recorded:?}, the \
                         settings {labels:?}"
                    )));
                }
                c
            }
            // A database without recorded progress: what its structures say.
            None => RunCounters {
                calculator_calls: history.calculator_calls,
                surrogate_steps: history.surrogate_steps,
                ..RunCounters::new(labels)
            },
        };
        Ok(Search {
            next_iteration,
            resumed_at,
            best: history.best,
            evaluations: history.evaluations,
            evaluations_at_start: history.evaluations,
            time_offset: history.last_time_stamp,
            script,
            pool,
            seed,
            collector,
            postprocess,
            evaluator,
            sampler,
            model,
            relaxes_in_calculator,
            db,
            outputs,
            lock,
            events_before: counters.pool_events.clone(),
            counters,
            iterations_run: 0,
            timings: StepTimings::default(),
            started: Instant::now(),
            generate_relax: fns.generate_relax,
            release: fns.calculator.release,
            lookahead: None,
        })
    }

    /// Submits iteration `iteration`'s candidates: one fused generate-and-relax task
    /// each, with the explicit seeds of [`ParallelCollector::requests`].
    fn submit_candidates(&self, iteration: u64) -> Result<Vec<Submitted>, PoolError> {
        let relax = self
            .postprocess
            .as_ref()
            .filter(|_| self.relaxes(iteration))
            .map(|p| (p.model().clone(), p.request().clone()));
        let args: Vec<PipelineArgs> = self
            .collector
            .requests(self.seed, iteration)
            .into_iter()
            .map(|r| (r, relax.clone()))
            .collect();
        let pending = self.pool.submit_all(&self.generate_relax, args.clone())?;
        Ok(args.into_iter().zip(pending).collect())
    }

    /// The output of a submitted task. A relaxation that found its worker's copy of
    /// the model behind is submitted again once that copy is healed (see
    /// [`crate::surrogate`]), so the result is the undisturbed one.
    fn collect(&mut self, (args, pending): Submitted) -> Result<PipelineOutput, SearchError> {
        let mut out = self.pool.get(pending)?;
        for _ in 0..MAX_HEALS {
            let Some(Relaxation::Behind(behind)) = &out.1 else {
                break;
            };
            let behind = behind.clone();
            match self.model.as_mut() {
                Some(m) => m.heal(&self.pool, &behind)?,
                None => return Err(SearchError::Model(behind.to_string())),
            }
            out = self
                .pool
                .get(self.pool.submit(&self.generate_relax, &args)?)?;
        }
        Ok(out)
    }

    /// Whether iteration `iteration`'s candidates are relaxed: from
    /// `[relax] start_iteration` on, and in a surrogate's acquisition only once the
    /// model is trained (before, there is nothing to relax in).
    fn relaxes(&self, iteration: u64) -> bool {
        self.postprocess
            .as_ref()
            .is_some_and(|p| p.active(iteration))
            && self.model.as_ref().is_none_or(ModelStage::is_trained)
    }

    /// The progress to record when `next_iteration` iterations are complete and
    /// `counters` are the run's counters after them (with the pool's faults up to
    /// now).
    fn progress(&self, next_iteration: u64, counters: &RunCounters) -> Progress {
        let mut counters = counters.clone();
        counters.pool_events = self.pool_events();
        Progress {
            next_iteration,
            counters: counters.to_json(),
        }
    }

    /// The pool's faults over the whole run: the earlier processes' and this one's.
    pub fn pool_events(&self) -> PoolEvents {
        self.events_before
            .then(&PoolEvents::from_stats(&self.pool.stats()))
    }

    /// The script being run.
    pub fn script(&self) -> &Script {
        &self.script
    }

    /// The run seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The output directory (locked by this search).
    pub fn output_dir(&self) -> &std::path::Path {
        self.lock.dir()
    }

    /// The next iteration to run (iterations count from 0).
    pub fn next_iteration(&self) -> u64 {
        self.next_iteration
    }

    /// Iterations the run is asked for (`[search] iterations`).
    pub fn iterations(&self) -> u64 {
        self.script.search.iterations
    }

    /// True once every iteration has run.
    pub fn is_done(&self) -> bool {
        self.next_iteration >= self.script.search.iterations
    }

    /// The lowest-energy structure so far.
    pub fn best(&self) -> Option<&Candidate> {
        self.best.as_ref()
    }

    /// Evaluations so far (including those before a resume).
    pub fn evaluations(&self) -> u64 {
        self.evaluations
    }

    /// Calculations of the real calculator so far (whole run).
    pub fn calculator_calls(&self) -> u64 {
        self.counters.calculator_calls
    }

    /// Optimizer steps in the surrogate's acquisition so far (whole run).
    pub fn surrogate_steps(&self) -> u64 {
        self.counters.surrogate_steps
    }

    /// The surrogate stage (`gofee`).
    pub fn model(&self) -> Option<&ModelStage> {
        self.model.as_ref()
    }

    /// The driver's sampler module, if the search has one.
    pub fn sampler(&self) -> Option<&Handle<SamplerModule>> {
        self.sampler.as_ref()
    }

    /// Runs the next iteration to its end.
    pub fn run_iteration(&mut self) -> Result<IterationReport, SearchError> {
        let never = AtomicBool::new(false);
        match self.run_iteration_until(&never)? {
            Some(r) => Ok(r),
            // `never` is never set.
            None => unreachable!("an iteration without a stop request is never abandoned"),
        }
    }

    /// Runs the next iteration unless `stop` is set: checked before each of collect,
    /// relax and evaluate; once set there, the iteration is abandoned (nothing of it
    /// is stored) and `None` returned. Evaluation, storage, sampler update and
    /// synchronization always run to their end once started, so the database and
    /// the sampler stay consistent.
    ///
    /// An error before the store leaves nothing of the iteration stored and the
    /// search's counters as they were: calling this again redoes the iteration. An
    /// error after it (the sampler update or the synchronization failed) leaves the
    /// iteration complete in the database; continue with [`Search::resume`].
    pub fn run_iteration_until(
        &mut self,
        stop: &AtomicBool,
    ) -> Result<Option<IterationReport>, SearchError> {
        let iteration = self.next_iteration;
        let t0 = Instant::now();
        let mut timings = StepTimings::default();
        if stop.load(Ordering::SeqCst) {
            return Ok(None);
        }

        // 1. collect and 2. relax in the model: one fused task per candidate, maybe
        // submitted during the previous iteration (look-ahead, see `crate::tasks`).
        let t = Instant::now();
        let pending = match self.lookahead.take() {
            Some((i, pending)) if i == iteration => pending,
            _ => self.submit_candidates(iteration)?,
        };
        let lookahead = self.script.search.algorithm.lookahead_is_exact(
            &self.script.generators,
            &self.script.evaluator.kind,
            &self.script.calculator,
        );
        if lookahead && iteration + 1 < self.iterations() {
            self.lookahead = Some((iteration + 1, self.submit_candidates(iteration + 1)?));
        }
        let relax_active = self.relaxes(iteration);
        let drops_unmoved = self.script.search.algorithm.drops_unmoved();
        let mut relaxed = Relaxed::default();
        let mut generated = 0;
        let mut generation_failures = 0;
        let mut failures = Vec::new();
        // This iteration's counts go to a copy, which becomes the search's own once
        // the iteration is stored: an iteration that ends early counts nothing.
        let mut counters = self.counters.clone();
        let policy = self.script.search.on_task_failure;
        // Which generator made each task, in submission order. A task that failed
        // for good (its workers lost or timed out) is a fault, not a candidate that
        // could not be made: the policy decides. Any other pool error (a task that
        // panicked, a copy of the model that could not be healed) stops the run.
        let owners = self.collector.owners(iteration);
        for (k, (task, g)) in pending.into_iter().zip(owners).enumerate() {
            let (made, relaxation) = match self.collect(task) {
                Ok(output) => output,
                Err(SearchError::Pool(e)) => {
                    let candidate = format!("candidate {k} ({})", counters.generators[g].generator);
                    let message = policy::judge(policy, iteration, candidate, e)?;
                    note_dropped(&mut counters, &mut failures, message);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let record = &mut counters.generators[g];
            match made {
                Ok(c) => {
                    generated += 1;
                    record.generated += 1;
                    match relaxation {
                        Some(Relaxation::Done(outcome)) if drops_unmoved && outcome.steps == 0 => {
                            relaxed.push_unmoved(&outcome);
                        }
                        Some(Relaxation::Done(outcome)) => relaxed.push_relaxed(c, *outcome),
                        None => relaxed.push_unrelaxed(c),
                        // `collect` healed every copy that was behind.
                        Some(Relaxation::Behind(b)) => {
                            return Err(SearchError::Model(b.to_string()));
                        }
                        Some(Relaxation::Failed(e)) => {
                            counters.relax_failures.record(&e.message);
                            failures.push(FailureNote {
                                source: "relax".into(),
                                message: e.message.clone(),
                            });
                            relaxed.push_failed(e);
                        }
                    }
                }
                Err(e) => {
                    generation_failures += 1;
                    let message = e.to_string();
                    record.failures.record(&message);
                    failures.push(FailureNote {
                        // The message names the generator's kind itself.
                        source: format!("[[generator]] #{}", g + 1),
                        message,
                    });
                }
            }
        }
        if relax_active {
            timings.relax = t.elapsed().as_secs_f64();
        } else {
            timings.collect = t.elapsed().as_secs_f64();
        }
        let n_relaxed = if relax_active {
            relaxed.candidates.len()
        } else {
            0
        };
        let relax_failures = relaxed.failures.len();
        let mut calculator_calls = 0;
        if self.relaxes_in_calculator {
            calculator_calls += relaxed.calls;
        } else {
            counters.surrogate_steps += relaxed.steps;
        }
        if stop.load(Ordering::SeqCst) {
            return Ok(None);
        }

        // 3. choose, 4. evaluate
        let t = Instant::now();
        // Candidates not relaxed in the acquisition still rank by it once the model
        // is trained (AGOX's acquisitor predicts them in the driver).
        if let Some(model) = self.model.as_mut().filter(|m| m.is_trained()) {
            for (e, c) in relaxed.model_energies.iter_mut().zip(&relaxed.candidates) {
                if e.is_none() {
                    *e = Some(model.acquisition(&c.atoms)?);
                }
            }
        }
        let algorithm = self.script.search.algorithm;
        let chosen = algorithm.choose(self.script.evaluator.count, &relaxed.model_energies);
        let mut pool_of = relaxed.candidates.into_iter().map(Some).collect::<Vec<_>>();
        let chosen: Vec<Candidate> = chosen.iter().filter_map(|&i| pool_of[i].take()).collect();
        let until = if algorithm.replaces_failed_evaluations() {
            self.script.evaluator.count
        } else {
            None
        };
        let evaluated = self.evaluator.evaluate(&self.pool, chosen, until)?;
        calculator_calls += evaluated.calls;
        counters.calculator_calls += calculator_calls;
        timings.evaluate = t.elapsed().as_secs_f64();
        let evaluation_failures = evaluated.failures.len();
        for message in evaluated.failures {
            counters.evaluation_failures.record(&message);
            failures.push(FailureNote {
                source: "evaluate".into(),
                message,
            });
        }
        for (k, e) in evaluated.faults {
            let candidate = format!("evaluation of chosen candidate {k}");
            let message = policy::judge(policy, iteration, candidate, e)?;
            note_dropped(&mut counters, &mut failures, message);
        }
        let dropped = failures.iter().filter(|f| f.source == DROPPED).count();

        // 5. store: the evaluations and the counters, one transaction.
        let t = Instant::now();
        let mut stored = evaluated.candidates;
        let now = self.time_offset + self.started.elapsed().as_secs_f64();
        for c in &mut stored {
            c.meta.time_stamp = Some(now);
            c.meta.calculator_calls = Some(counters.calculator_calls);
            c.meta.surrogate_steps = Some(counters.surrogate_steps);
        }
        counters.nothing_generated = if generated == 0 {
            counters.nothing_generated + 1
        } else {
            0
        };
        let progress = self.progress(iteration + 1, &counters);
        let ids = self.db.store_iteration(&stored, &progress)?;
        self.counters = counters;
        self.next_iteration = iteration + 1;
        for (c, id) in stored.iter_mut().zip(ids) {
            c.meta.id = Some(id);
        }
        self.evaluations += stored.len() as u64;
        let mut new_best = false;
        for c in &stored {
            let e = c.energy.unwrap_or(f64::INFINITY);
            if resume::better(e, self.best.as_ref()) {
                self.best = Some(c.clone());
                new_best = true;
            }
        }
        self.outputs.append_evaluated(&stored)?;
        if new_best {
            if let Some(b) = &self.best {
                self.outputs.write_best(b)?;
            }
        }
        timings.store = t.elapsed().as_secs_f64();

        // 6. train the model (gofee)
        let t = Instant::now();
        let training = match self.model.as_mut() {
            Some(m) => m.after_store(&self.pool, self.seed, iteration, &stored, &self.outputs)?,
            None => None,
        };
        timings.train = t.elapsed().as_secs_f64();

        // 7. update the sampler (driver copy)
        let t = Instant::now();
        let accepted = match &self.sampler {
            Some(s) => {
                s.lock()
                    .update(&stored, &mut sampler_rng(self.seed, iteration))?
                    .accepted
            }
            None => Vec::new(),
        };
        timings.update = t.elapsed().as_secs_f64();

        // 8. synchronize the pool
        let t = Instant::now();
        let sync = self.pool.synchronize()?;
        timings.sync = t.elapsed().as_secs_f64();

        self.iterations_run += 1;
        self.timings.add(&timings);
        if self.counters.nothing_generated >= self.script.search.max_failed_iterations {
            self.drain_lookahead();
            return Err(self.nothing_generated_error(iteration));
        }
        Ok(Some(IterationReport {
            iteration,
            generated,
            generation_failures,
            relaxed: n_relaxed,
            relax_failures,
            unmoved: relaxed.unmoved,
            relax_steps: relaxed.steps,
            calculator_calls,
            training,
            energies: stored.iter().filter_map(|c| c.energy).collect(),
            evaluation_failures,
            dropped,
            failures,
            accepted,
            best_energy: self.best.as_ref().and_then(|b| b.energy),
            energy_unit: self.script.energy_unit().to_owned(),
            new_best,
            evaluations: self.evaluations,
            sync,
            timings,
            elapsed: t0.elapsed().as_secs_f64(),
        }))
    }

    /// The error that stops a run after `max_failed_iterations` iterations in a row
    /// without a candidate, ending with `last`: each generator that failed, how often,
    /// and its first reasons.
    fn nothing_generated_error(&self, last: u64) -> SearchError {
        let count = self.counters.nothing_generated;
        let reasons: Vec<String> = self
            .counters
            .generators
            .iter()
            .filter(|g| g.failures.count > 0)
            .map(|g| {
                format!(
                    "{} failed {} time(s), first: {}",
                    g.generator,
                    g.failures.count,
                    g.failures.messages.first().map_or("", String::as_str)
                )
            })
            .collect();
        SearchError::NothingGenerated {
            count,
            first: last + 1 - count,
            last,
            reasons: if reasons.is_empty() {
                "no generator was asked for a candidate".to_owned()
            } else {
                reasons.join("; ")
            },
        }
    }

    /// Waits for the candidates of a later iteration already submitted, so that a run
    /// that ends here leaves no task running on a worker (their results are not
    /// needed: a resumed run makes them again from the same seeds).
    fn drain_lookahead(&mut self) {
        if let Some((_, pending)) = self.lookahead.take() {
            for (_, p) in pending {
                // Only waiting: a failure here changes nothing stored.
                self.pool.get(p).ok();
            }
        }
    }

    /// Runs the remaining iterations, calling `on_iteration` after each, until done
    /// or `stop` is set; then writes `summary.json`. Returns the summary (its
    /// `interrupted` says whether `stop` ended the run). `on_iteration` may end the
    /// run at that step boundary by returning an error (the iterations done stay
    /// stored and the summary is written, with the error). An error of the search
    /// itself is also recorded in `summary.json` before it is returned.
    pub fn run_with(
        &mut self,
        stop: &AtomicBool,
        mut on_iteration: impl FnMut(&IterationReport) -> Result<(), String>,
    ) -> Result<Summary, SearchError> {
        let mut interrupted = false;
        let mut stopped: Option<String> = None;
        let mut failure = None;
        while !self.is_done() {
            match self.run_iteration_until(stop) {
                Ok(Some(report)) => {
                    if let Err(why) = on_iteration(&report) {
                        stopped = Some(why);
                        break;
                    }
                }
                Ok(None) => {
                    interrupted = true;
                    break;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            if stop.load(Ordering::SeqCst) && !self.is_done() {
                interrupted = true;
                break;
            }
        }
        self.drain_lookahead();
        match failure {
            Some(e) => {
                // The error is what the caller must see; a summary that cannot be
                // written as well would only repeat that the directory is unusable.
                let mut summary = self.summary(false);
                summary.error = Some(e.to_string());
                let _ignored = self.outputs.write_json(SUMMARY_FILE, &summary);
                Err(e)
            }
            None => {
                self.stop_clients()?;
                let mut summary = self.summary(interrupted);
                summary.error = stopped;
                self.outputs.write_json(SUMMARY_FILE, &summary)?;
                Ok(summary)
            }
        }
    }

    /// Stops the workers' external-calculator clients (`EXIT`, then signals), so a
    /// run that ends leaves none behind, however the pool is stopped later; a later
    /// calculation starts new ones. Waits for each worker's current task. Nothing
    /// to do for a built-in potential.
    ///
    /// [`run_with`](Self::run_with) and [`finish`](Self::finish) call it. After an
    /// error it is not called: the workers may be in the middle of long
    /// calculations whose results are no longer wanted; dropping the pool then ends
    /// the workers at once, and each client's wrapper ends its process group
    /// (SIGTERM, then SIGKILL).
    pub fn stop_clients(&self) -> Result<(), SearchError> {
        if self.script.calculator.socket().is_some() {
            let link = Link::new(CALCULATOR_KEY);
            self.pool.broadcast(&self.release, &link)?;
        }
        Ok(())
    }

    /// Runs every remaining iteration and writes `summary.json`.
    pub fn run(&mut self) -> Result<Summary, SearchError> {
        self.run_with(&AtomicBool::new(false), |_| Ok(()))
    }

    /// The summary of the run so far.
    pub fn summary(&self, interrupted: bool) -> Summary {
        let (pool, sync) = PoolSummary::from_stats(&self.pool.stats());
        let c = &self.counters;
        let wall = self.started.elapsed().as_secs_f64();
        Summary {
            script: self.script.path.clone(),
            algorithm: self.script.search.algorithm.name().into(),
            seed: self.seed,
            iterations_done: self.next_iteration,
            iterations_planned: self.script.search.iterations,
            interrupted,
            resumed_at: self.resumed_at,
            best_energy: self.best.as_ref().and_then(|b| b.energy),
            best_iteration: self.best.as_ref().map(|b| b.meta.iteration),
            best_id: self.best.as_ref().and_then(|b| b.meta.id),
            evaluations: self.evaluations,
            calculator_calls: self.counters.calculator_calls,
            surrogate_steps: self.counters.surrogate_steps,
            energy_unit: self.script.energy_unit().to_owned(),
            generated: c.generators.iter().map(|g| g.generated).sum(),
            generation_failures: c.generators.iter().map(|g| g.failures.count).sum(),
            generators: c.generators.clone(),
            relax_failures: c.relax_failures.count,
            relax_failure_messages: c.relax_failures.messages.clone(),
            evaluation_failures: c.evaluation_failures.count,
            evaluation_failure_messages: c.evaluation_failures.messages.clone(),
            on_task_failure: self.script.search.on_task_failure.name().to_owned(),
            dropped_candidates: c.dropped.count,
            dropped_candidate_messages: c.dropped.messages.clone(),
            pool_events: self.pool_events(),
            error: None,
            wall_time_s: wall,
            mean_iteration_ms: if self.iterations_run > 0 {
                self.timings.total() * 1e3 / self.iterations_run as f64
            } else {
                0.0
            },
            evaluations_per_s: if wall > 0.0 {
                (self.evaluations - self.evaluations_at_start) as f64 / wall
            } else {
                0.0
            },
            timings: self.timings.clone(),
            pool,
            sync,
        }
    }

    /// Waits for any candidates of a later iteration already submitted (so no task
    /// is left running on a worker), stops the workers' clients
    /// ([`stop_clients`](Self::stop_clients)), writes `summary.json` and returns the
    /// summary.
    pub fn finish(&mut self, interrupted: bool) -> Result<Summary, SearchError> {
        self.drain_lookahead();
        self.stop_clients()?;
        let summary = self.summary(interrupted);
        self.outputs.write_json(SUMMARY_FILE, &summary)?;
        Ok(summary)
    }
}

/// Checks, before anything is stored, that the calculator can run with this pool:
/// an external calculator's clients (one per worker, or the driver's one when the
/// pool runs in process) must fit the cores this process may use.
fn check_calculator(script: &Script, pool: &Pool) -> Result<(), SearchError> {
    if let Some(settings) = script.calculator.socket() {
        let clients = pool.size().max(1);
        crate::socket::check_cores(settings, clients, crate::socket::available_cores())
            .map_err(SearchError::Calculator)?;
    }
    Ok(())
}

/// Writes `run.json`: the resolved settings with the run's actual seed, so that
/// `--resume` needs nothing else.
fn write_run_record(
    outputs: &Outputs,
    script: &Script,
    seed: u64,
    workers: usize,
) -> Result<(), SearchError> {
    let mut recorded = script.clone();
    recorded.search.seed = Some(seed);
    let settings = serde_json::to_value(&recorded).map_err(|e| SearchError::Output {
        path: outputs.path(RUN_FILE),
        message: e.to_string(),
    })?;
    let record = RunRecord {
        seed,
        workers,
        script: script.path.clone(),
        settings,
    };
    outputs.write_json(RUN_FILE, &record)
}

/// How a generator is named in messages and in `summary.json`: its place in the
/// script and its kind (`[[generator]] #1 random`).
pub fn generator_label(index: usize, name: &str) -> String {
    format!("[[generator]] #{} {name}", index + 1)
}

/// The sampler's random stream for `iteration` of a run seeded with `seed`: the
/// same in a resumed run's replay as in the original run.
pub fn sampler_rng(seed: u64, iteration: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive_seed(&[seed, iteration, SAMPLER_SEED_TAG]))
}
