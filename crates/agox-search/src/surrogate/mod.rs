//! A surrogate model on the pool: trained in the driver, its hyperparameter search
//! run as pool tasks, every worker holding a synchronized copy to relax in.
//!
//! # The kinds of surrogate: [`Surrogate`]
//! A surrogate learns energies from evaluated structures and predicts energy and
//! uncertainty, with forces. What the pool needs of it is the same for every kind,
//! so it is a trait:
//!
//! * training rows that only grow, shipped as the rows added since a copy was last
//!   brought up to date ([`Surrogate::rows_since`], [`Surrogate::append_rows`]);
//! * a hyperparameter search cut into independent units ([`Surrogate::Start`]:
//!   one L-BFGS-B start for the Gaussian process, one draw for a model whose search
//!   evaluates the likelihood at draws), drawn from an explicit seed, each a pure
//!   function of the rows and the unit ([`Surrogate::run_start`]), and a
//!   deterministic choice among their outcomes ([`Surrogate::conclude`]);
//! * a trained state that, installed beside the same rows, predicts bit for bit what
//!   the original predicts ([`Surrogate::state`], [`Surrogate::install`]).
//!
//! [`GprModel`](agox_models::model::GprModel) (GOFEE's Gaussian process) implements
//! it in [`gpr`].
//!
//! # The pooled module: [`SurrogateModule`]
//! Self-synchronizing ([`Module::self_synchronizing`]): the end-of-iteration
//! synchronization skips it, and [`PooledSurrogate::train`] pushes its two dynamic
//! attributes itself, each at the moment it changed:
//!
//! 1. `rows` — the rows added since the workers' copies were last brought up to
//!    date, and only those (8·(F + 1) bytes per row for a Fingerprint of F
//!    features), before the search;
//! 2. the search: one pool task per unit, whose arguments are the unit, the module's
//!    [`Link`] and the expected row count — never the rows; each returns its
//!    outcome (θ and −log P);
//! 3. the choice and the final fit, in the driver;
//! 4. `state` — the trained state and the training count, to every worker.
//!
//! The units come from the seed `(run seed, iteration)`, and each is a pure
//! function of the rows, so a search on 0, 1 or N workers keeps the same
//! hyperparameters bit for bit.
//!
//! # A replaced worker
//! A worker replaced in the middle of a run receives the module as it was added and
//! the latest value of each attribute: a `rows` update that does not continue its
//! copy, and a state that does not fit it. Its copy keeps what it can (an update
//! that does not continue it is left aside, never an error: the pool would take
//! that for a state it cannot rebuild) and is **behind**. Every task that uses the
//! model checks its copy first — the search units that it holds the rows, a
//! relaxation in the acquisition that it is at the driver's [`ModelVersion`] — and a
//! copy behind answers [`Answer::Behind`] with the worker's slot instead of computing.
//! The driver then sends that worker everything ([`PooledSurrogate::heal`]: all rows
//! and the state, a task pinned to it) and runs the task again: the result is the
//! one an undisturbed run gives.

pub mod gpr;
pub mod sparse;

use std::borrow::Cow;
use std::fmt;
use std::time::Instant;

use agox_atoms::{Atoms, CalcError, Calculator, Evaluation};
use agox_pool::{
    AttributeError, FnHandle, Handle, Link, Module, Pool, PoolError, Registry, SyncReport,
    TaskContext, TaskError,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::candidate::Candidate;

/// The acquisition `E − κσ` at one structure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AcquisitionValue {
    /// E − κσ.
    pub value: f64,
    /// The predicted energy E.
    pub energy: f64,
    /// The predicted standard deviation σ.
    pub sigma: f64,
}

/// A surrogate model the pool can train and relax in. See the module docs.
pub trait Surrogate: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The registered type name of its [`SurrogateModule`].
    const TYPE_NAME: &'static str;
    /// Its name in function names and messages (`gpr`).
    const KIND: &'static str;
    /// Rows that bring a copy holding the first rows up to date.
    type Rows: Serialize + DeserializeOwned;
    /// What prediction needs besides the rows.
    type State: Serialize + DeserializeOwned + Clone;
    /// One unit of the hyperparameter search.
    type Start: Serialize + DeserializeOwned + Clone + fmt::Debug + 'static;
    /// The result of one unit.
    type Outcome: Serialize + DeserializeOwned + Clone + fmt::Debug + 'static;
    /// Buffers of the prediction calls; one per caller.
    type Workspace: Default + Send;
    /// Why the model cannot do what was asked.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Adds a structure, its energy and its forces (if computed) to the training
    /// rows; false when the model leaves it out (AGOX's energy filter).
    fn add(
        &mut self,
        atoms: &Atoms,
        energy: f64,
        forces: Option<&[[f64; 3]]>,
        ws: &mut Self::Workspace,
    ) -> Result<bool, Self::Error>;
    /// Number of training rows.
    fn n_rows(&self) -> usize;
    /// The rows from `start` on.
    fn rows_since(&self, start: usize) -> Self::Rows;
    /// The index of the first of `rows`.
    fn rows_start(rows: &Self::Rows) -> usize;
    /// Appends rows made by [`Surrogate::rows_since`] on the original; they must
    /// continue this copy's rows or overlap them (the rows this copy holds already
    /// are skipped).
    fn append_rows(&mut self, rows: &Self::Rows) -> Result<(), Self::Error>;
    /// Prepares, in the driver, the training drawn from `seed` at `iteration`
    /// (`None` outside a run) before the rows go to the workers: what the copies
    /// need besides the rows travels with them (the sparse model's inducing
    /// points). True when the workers must receive the `rows` attribute even if
    /// no row was added.
    fn prepare(&mut self, _seed: u64, _iteration: Option<u64>) -> Result<bool, Self::Error> {
        Ok(false)
    }
    /// The units of a search drawn from `seed`.
    fn search_starts(&self, seed: u64) -> Vec<Self::Start>;
    /// Runs one unit on this copy's rows.
    fn run_start(&mut self, start: &Self::Start) -> Result<Self::Outcome, Self::Error>;
    /// Chooses among the outcomes (deterministically: ties to the first) and fits the
    /// model there; returns the hyperparameters kept.
    fn conclude(&mut self, outcomes: &[Self::Outcome]) -> Result<Vec<f64>, Self::Error>;
    /// The score of an outcome, lower is better (−log P), for reports.
    fn score(outcome: &Self::Outcome) -> f64;
    /// Fits the model at `hyperparameters` without a search (a resumed run
    /// restoring the last training).
    fn restore(&mut self, hyperparameters: &[f64]) -> Result<(), Self::Error>;
    /// The hyperparameters of the model.
    fn hyperparameters(&self) -> Vec<f64>;
    /// The trained state, when the model is trained on its current rows.
    fn state(&self) -> Option<&Self::State>;
    /// Installs a state made by another copy holding the same rows.
    fn install(&mut self, state: Self::State) -> Result<(), Self::Error>;
    /// Energy and σ, without derivatives.
    fn energy_sigma(
        &self,
        atoms: &Atoms,
        ws: &mut Self::Workspace,
    ) -> Result<(f64, f64), Self::Error>;
    /// `E − κσ` at `atoms`, with its forces into `forces`.
    fn acquisition(
        &self,
        atoms: &Atoms,
        kappa: f64,
        ws: &mut Self::Workspace,
        forces: &mut Vec<[f64; 3]>,
    ) -> Result<AcquisitionValue, Self::Error>;
}

/// Which data a copy of a model holds: its rows and how many trainings made its
/// state. Two copies at the same version predict the same bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ModelVersion {
    /// Training rows.
    pub rows: usize,
    /// Trainings installed.
    pub trainings: u64,
}

impl fmt::Display for ModelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rows, training {}", self.rows, self.trainings)
    }
}

/// A surrogate on the pool (module type [`Surrogate::TYPE_NAME`]); see the module
/// docs for its two dynamic attributes, `rows` and `state`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound(serialize = "S: Serialize", deserialize = "S: DeserializeOwned"))]
pub struct SurrogateModule<S> {
    /// The model.
    pub surrogate: S,
    /// Trainings whose state this copy holds.
    trainings: u64,
    /// Driver only: rows every worker holds (the next `rows` update starts there).
    #[serde(skip)]
    synced_rows: usize,
}

/// The `state` attribute: the training count and the state.
#[derive(Serialize)]
struct StateOut<'a, T> {
    trainings: u64,
    state: Option<&'a T>,
}

#[derive(Deserialize)]
struct StateIn<T> {
    trainings: u64,
    state: Option<T>,
}

fn codec(name: &str, e: impl fmt::Display) -> AttributeError {
    AttributeError::Codec {
        name: name.to_owned(),
        message: e.to_string(),
    }
}

impl<S: Surrogate> Module for SurrogateModule<S> {
    const TYPE_NAME: &'static str = S::TYPE_NAME;

    fn dynamic_attribute_names() -> &'static [&'static str] {
        &["rows", "state"]
    }

    fn get_attribute(&self, name: &str) -> Result<Cow<'_, [u8]>, AttributeError> {
        let bytes = match name {
            "rows" => rmp_serde::to_vec(&self.surrogate.rows_since(self.synced_rows)),
            "state" => rmp_serde::to_vec(&StateOut {
                trainings: self.trainings,
                state: self.surrogate.state(),
            }),
            _ => return Err(unknown::<S>(name)),
        };
        bytes.map(Cow::Owned).map_err(|e| codec(name, e))
    }

    fn set_attribute(&mut self, name: &str, bytes: &[u8]) -> Result<(), AttributeError> {
        match name {
            "rows" => {
                let rows: S::Rows = rmp_serde::from_slice(bytes).map_err(|e| codec(name, e))?;
                if S::rows_start(&rows) > self.surrogate.n_rows() {
                    // Rows this copy missed come before these: it is behind (see the
                    // module docs).
                    return Ok(());
                }
                self.surrogate
                    .append_rows(&rows)
                    .map_err(|e| codec(name, e))
            }
            "state" => {
                let s: StateIn<S::State> =
                    rmp_serde::from_slice(bytes).map_err(|e| codec(name, e))?;
                self.take_state(s.trainings, s.state);
                Ok(())
            }
            _ => Err(unknown::<S>(name)),
        }
    }

    fn self_synchronizing(&self) -> bool {
        true
    }
}

fn unknown<S: Surrogate>(name: &str) -> AttributeError {
    AttributeError::Unknown {
        type_name: S::TYPE_NAME,
        name: name.to_owned(),
        known: "rows, state".to_owned(),
    }
}

impl<S: Surrogate> SurrogateModule<S> {
    /// A module holding `surrogate`; its rows count as already held by the workers
    /// (they receive the whole module when it is added to a pool).
    pub fn new(surrogate: S) -> Self {
        let synced_rows = surrogate.n_rows();
        SurrogateModule {
            surrogate,
            trainings: 0,
            synced_rows,
        }
    }

    /// The data this copy holds.
    pub fn version(&self) -> ModelVersion {
        ModelVersion {
            rows: self.surrogate.n_rows(),
            trainings: if self.surrogate.state().is_some() {
                self.trainings
            } else {
                0
            },
        }
    }

    /// The same module, its state standing for `trainings` trainings (a resumed
    /// run continuing its count).
    pub fn with_trainings(mut self, trainings: u64) -> Self {
        self.trainings = trainings;
        self
    }

    /// Installs `state` (made for `trainings` trainings) if it fits this copy's
    /// rows; a copy it does not fit is behind and keeps no state.
    fn take_state(&mut self, trainings: u64, state: Option<S::State>) {
        self.trainings = match state {
            Some(state) => match self.surrogate.install(state) {
                Ok(()) => trainings,
                Err(_) => 0,
            },
            None => trainings,
        };
    }

    /// `None` when this copy is at `expected`; otherwise how far behind it is.
    pub fn behind(&self, expected: ModelVersion, ctx: &TaskContext<'_>) -> Option<Behind> {
        let have = self.version();
        (have != expected).then_some(Behind {
            worker: ctx.worker_id(),
            have,
            expected,
        })
    }
}

/// A worker's copy of a model that missed an update (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Behind {
    /// The worker's slot (`None`: the driver's process, which is never behind).
    pub worker: Option<u32>,
    /// What its copy holds.
    pub have: ModelVersion,
    /// What the driver expects.
    pub expected: ModelVersion,
}

impl fmt::Display for Behind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.worker {
            Some(w) => write!(f, "worker {w}'s")?,
            None => write!(f, "this process's")?,
        }
        write!(
            f,
            " copy of the model holds {}, the driver's {}",
            self.have, self.expected
        )
    }
}

/// What a task on a copy of the model answers: its result, or that the copy is
/// behind (and nothing was computed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answer<T> {
    /// The task's result.
    Done(T),
    /// The worker's copy missed an update: heal it and run the task again.
    Behind(Behind),
}

/// Arguments of one search unit: the model, the unit, the rows the copy must hold.
pub type StartArgs<S> = (Link<SurrogateModule<S>>, <S as Surrogate>::Start, usize);

/// Arguments of a heal: the model, all its rows, the training count and the state.
pub type HealArgs<S> = (
    Link<SurrogateModule<S>>,
    <S as Surrogate>::Rows,
    u64,
    Option<<S as Surrogate>::State>,
);

/// The pool functions of a surrogate kind.
#[derive(Debug)]
pub struct SurrogateFns<S: Surrogate> {
    /// One unit of the hyperparameter search on the worker's copy.
    pub run_start: FnHandle<StartArgs<S>, Answer<S::Outcome>>,
    /// Brings a worker's copy that is behind up to date (pinned to that worker);
    /// returns its version.
    pub heal: FnHandle<HealArgs<S>, ModelVersion>,
}

impl<S: Surrogate> Clone for SurrogateFns<S> {
    fn clone(&self) -> Self {
        SurrogateFns {
            run_start: self.run_start.clone(),
            heal: self.heal.clone(),
        }
    }
}

fn run_start_task<S: Surrogate>(
    ctx: &TaskContext<'_>,
    (link, start, rows): StartArgs<S>,
) -> Result<Answer<S::Outcome>, TaskError> {
    let mut module = ctx.module(&link)?;
    let have = module.version();
    if have.rows != rows {
        return Ok(Answer::Behind(Behind {
            worker: ctx.worker_id(),
            have,
            expected: ModelVersion { rows, ..have },
        }));
    }
    Ok(Answer::Done(module.surrogate.run_start(&start)?))
}

fn heal_task<S: Surrogate>(
    ctx: &TaskContext<'_>,
    (link, rows, trainings, state): HealArgs<S>,
) -> Result<ModelVersion, TaskError> {
    let mut module = ctx.module(&link)?;
    module.surrogate.append_rows(&rows)?;
    module.take_state(trainings, state);
    Ok(module.version())
}

/// Registers the module type and the functions of surrogate kind `S`.
pub fn register<S: Surrogate>(reg: &mut Registry) -> SurrogateFns<S> {
    reg.module::<SurrogateModule<S>>();
    SurrogateFns {
        run_start: reg.function(
            &format!("agox_search.model.{}.search_start", S::KIND),
            run_start_task::<S>,
        ),
        heal: reg.function(
            &format!("agox_search.model.{}.heal", S::KIND),
            heal_task::<S>,
        ),
    }
}

/// Why a model step failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelFault {
    /// The pool failed (a search task included).
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A worker's copy of the model could not be brought up to date.
    #[error("{0}; it could not be brought up to date")]
    Behind(Behind),
    /// The model itself failed in the driver.
    #[error("{kind} model: {message}")]
    Model {
        /// The model's kind.
        kind: &'static str,
        /// What failed.
        message: String,
    },
}

fn model_fault<S: Surrogate>(e: impl fmt::Display) -> ModelFault {
    ModelFault::Model {
        kind: S::KIND,
        message: e.to_string(),
    }
}

/// How often a search unit runs again after healing its worker's copy (a worker
/// replaced again in between).
const MAX_HEALS: usize = 3;

/// What one training did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Training rows.
    pub rows: usize,
    /// Search units run.
    pub starts: usize,
    /// The best unit's score (−log P), if any unit ran.
    pub best_score: Option<f64>,
    /// The hyperparameters kept.
    pub hyperparameters: Vec<f64>,
    /// The rows sent to the workers before the search.
    pub rows_sync: SyncReport,
    /// The trained state sent to the workers after it.
    pub state_sync: SyncReport,
    /// Wall time of the search (s).
    pub search_s: f64,
    /// Wall time of the final fit in the driver (s).
    pub fit_s: f64,
}

/// The driver's side of a pooled surrogate: its copy, the pool functions, and the
/// buffers of its predictions.
pub struct PooledSurrogate<S: Surrogate> {
    handle: Handle<SurrogateModule<S>>,
    fns: SurrogateFns<S>,
    ws: S::Workspace,
    heals: u64,
}

impl<S: Surrogate> fmt::Debug for PooledSurrogate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledSurrogate")
            .field("key", &self.handle.key())
            .finish()
    }
}

impl<S: Surrogate> PooledSurrogate<S> {
    /// Adds `module` to `pool` under `key` (every worker receives it whole).
    pub fn add_to(
        pool: &Pool,
        key: &str,
        module: SurrogateModule<S>,
        fns: SurrogateFns<S>,
    ) -> Result<Self, PoolError> {
        let handle = pool.add_module(key, module)?;
        Ok(PooledSurrogate {
            handle,
            fns,
            ws: S::Workspace::default(),
            heals: 0,
        })
    }

    /// The driver's copy.
    pub fn handle(&self) -> &Handle<SurrogateModule<S>> {
        &self.handle
    }

    /// A link to the pooled module.
    pub fn link(&self) -> Link<SurrogateModule<S>> {
        self.handle.link()
    }

    /// The driver's version.
    pub fn version(&self) -> ModelVersion {
        self.handle.lock().version()
    }

    /// The hyperparameters of the driver's copy.
    pub fn hyperparameters(&self) -> Vec<f64> {
        self.handle.lock().surrogate.hyperparameters()
    }

    /// Adds the evaluated `candidates` (finite energies) to the driver's rows;
    /// returns how many became rows. The workers receive them at the next
    /// [`train`](Self::train).
    pub fn add(&mut self, candidates: &[Candidate]) -> Result<usize, ModelFault> {
        let mut module = self.handle.lock();
        let mut added = 0;
        for c in candidates {
            let Some(e) = c.energy.filter(|e| e.is_finite()) else {
                continue;
            };
            if module
                .surrogate
                .add(&c.atoms, e, c.forces.as_deref(), &mut self.ws)
                .map_err(model_fault::<S>)?
            {
                added += 1;
            }
        }
        Ok(added)
    }

    /// Trains on the rows outside a run ([`train_at`](Self::train_at) without an
    /// iteration).
    pub fn train(&mut self, pool: &Pool, seed: u64) -> Result<TrainReport, ModelFault> {
        self.train_at(pool, seed, None)
    }

    /// Trains on the rows: prepares the training drawn from `seed` at `iteration`
    /// ([`Surrogate::prepare`]), sends the new rows to the workers, runs the
    /// search drawn from `seed` as pool tasks, keeps the best in the driver, fits,
    /// and sends the trained state to the workers.
    pub fn train_at(
        &mut self,
        pool: &Pool,
        seed: u64,
        iteration: Option<u64>,
    ) -> Result<TrainReport, ModelFault> {
        let key = self.handle.key().to_owned();
        // 1. The new rows, only those, with what the training needs besides.
        let (rows, behind) = {
            let mut m = self.handle.lock();
            let prepared = m
                .surrogate
                .prepare(seed, iteration)
                .map_err(model_fault::<S>)?;
            let rows = m.surrogate.n_rows();
            (rows, prepared || m.synced_rows != rows)
        };
        let rows_sync = if behind {
            let r = pool.synchronize_module(&key, Some(&["rows"]))?;
            self.handle.lock().synced_rows = rows;
            r
        } else {
            SyncReport::default()
        };
        // 2. The search, one task per unit (the lock is not held: without workers
        // the tasks run here, on this very copy). A unit that found its worker's
        // copy behind runs again once that copy is healed.
        let t = Instant::now();
        let starts = self.handle.lock().surrogate.search_starts(seed);
        let n_starts = starts.len();
        let link = self.link();
        let mut answers: Vec<Answer<S::Outcome>> = pool.map(
            &self.fns.run_start,
            starts.iter().map(|s| (link.clone(), s.clone(), rows)),
        )?;
        for _ in 0..MAX_HEALS {
            let behind: Vec<usize> = (0..answers.len())
                .filter(|&i| matches!(answers[i], Answer::Behind(_)))
                .collect();
            if behind.is_empty() {
                break;
            }
            for i in &behind {
                if let Answer::Behind(b) = &answers[*i] {
                    let b = b.clone();
                    self.heal(pool, &b)?;
                }
            }
            let again = pool.map(
                &self.fns.run_start,
                behind
                    .iter()
                    .map(|&i| (link.clone(), starts[i].clone(), rows)),
            )?;
            for (i, a) in behind.into_iter().zip(again) {
                answers[i] = a;
            }
        }
        let outcomes = answers
            .into_iter()
            .map(|a| match a {
                Answer::Done(o) => Ok(o),
                Answer::Behind(b) => Err(ModelFault::Behind(b)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let search_s = t.elapsed().as_secs_f64();
        // 3. The choice and the fit, in the driver.
        let t = Instant::now();
        let hyperparameters = {
            let mut m = self.handle.lock();
            let h = m.surrogate.conclude(&outcomes).map_err(model_fault::<S>)?;
            m.trainings += 1;
            h
        };
        let fit_s = t.elapsed().as_secs_f64();
        // 4. The trained state, to every worker.
        let state_sync = pool.synchronize_module(&key, Some(&["state"]))?;
        Ok(TrainReport {
            rows,
            starts: n_starts,
            best_score: outcomes
                .iter()
                .map(S::score)
                .filter(|s| s.is_finite())
                .min_by(f64::total_cmp),
            hyperparameters,
            rows_sync,
            state_sync,
            search_s,
            fit_s,
        })
    }

    /// Brings the copy of the worker `behind` names up to date: all the rows the
    /// workers should hold and the driver's state, in a task pinned to it. Fails if
    /// the copy is still not where the driver's is.
    pub fn heal(&mut self, pool: &Pool, behind: &Behind) -> Result<(), ModelFault> {
        let worker = behind
            .worker
            .ok_or_else(|| ModelFault::Behind(behind.clone()))?;
        let (args, expected) = {
            let m = self.handle.lock();
            let args = (
                self.link(),
                m.surrogate.rows_since(0),
                m.trainings,
                m.surrogate.state().cloned(),
            );
            (args, m.version())
        };
        let healed = pool.run_on(worker, &self.fns.heal, &args)?;
        self.heals += 1;
        if healed == expected {
            Ok(())
        } else {
            Err(ModelFault::Behind(Behind {
                worker: Some(worker),
                have: healed,
                expected,
            }))
        }
    }

    /// Workers' copies brought up to date so far ([`heal`](Self::heal)).
    pub fn heals(&self) -> u64 {
        self.heals
    }

    /// True once the driver's copy is trained on its current rows.
    pub fn is_trained(&self) -> bool {
        self.handle.lock().surrogate.state().is_some()
    }

    /// `E − κσ` at `atoms` in the driver's copy.
    pub fn acquisition(&mut self, atoms: &Atoms, kappa: f64) -> Result<f64, ModelFault> {
        let (e, s) = self
            .handle
            .lock()
            .surrogate
            .energy_sigma(atoms, &mut self.ws)
            .map_err(model_fault::<S>)?;
        Ok(e - kappa * s)
    }
}

/// The acquisition `E − κσ` of a surrogate as a calculator, so the ordinary
/// optimizers (and the confinement box) relax in it.
pub struct Acquisition<'a, S: Surrogate> {
    model: &'a S,
    kappa: f64,
    ws: S::Workspace,
    forces: Vec<[f64; 3]>,
}

impl<'a, S: Surrogate> Acquisition<'a, S> {
    /// `E − κσ` of `model`.
    pub fn new(model: &'a S, kappa: f64) -> Self {
        Acquisition {
            model,
            kappa,
            ws: S::Workspace::default(),
            forces: Vec::new(),
        }
    }
}

impl<S: Surrogate> Calculator for Acquisition<'_, S> {
    fn name(&self) -> &'static str {
        "lcb"
    }

    fn calculate(&mut self, atoms: &Atoms, _stress: bool) -> Result<Evaluation, CalcError> {
        let a = self
            .model
            .acquisition(atoms, self.kappa, &mut self.ws, &mut self.forces)
            .map_err(|e| CalcError::Invalid {
                calculator: "lcb",
                message: e.to_string(),
            })?;
        Ok(Evaluation {
            energy: a.value,
            forces: self.forces.clone(),
            stress: None,
            energies: None,
        })
    }
}
