//! The loop's surrogate stage (`gofee`): the pooled model of the kind the script
//! chose ([`PooledModel`]: GOFEE's Gaussian process or the sparse one), the
//! relaxation model that relaxes in its acquisition, and the record of every
//! training.
//!
//! After each store the stored structures become training rows and the model is
//! retrained with its hyperparameter search on the pool
//! ([`PooledSurrogate::train_at`]), the search drawn from the seed
//! `(run seed, iteration)`; then the relaxation model is told the version the
//! workers' copies must be at.
//!
//! # `model.json` and `--resume`
//! A training's result depends on the rows and on the hyperparameters the previous
//! training ended at (the first start of a search). Each training's outcome is
//! recorded in `model.json` (`iteration`, `rows`, `hyperparameters`), written after
//! the training. A resumed run adds the stored structures in storage order,
//! prepares each training again (the sparse model's inducing points), fits
//! at the last recorded training that matches the database, and repeats (serially,
//! in the driver: a search gives the same result anywhere) any training the record
//! lacks — a run killed between its store and its record — so it continues with
//! the hyperparameters an uninterrupted run would have.

use std::collections::BTreeMap;
use std::path::Path;

use agox_atoms::Atoms;
use agox_models::fingerprint::Fingerprint;
use agox_models::gpr::GprSettings;
use agox_models::lbfgsb::LbfgsbSettings;
use agox_models::model::GprModel;
use agox_models::sgpr::{SparseGpr, SparseSettings, Sparsifier};
use agox_models::simple_fingerprint::SimpleFingerprint;
use agox_pool::{Handle, Pool};
use serde::{Deserialize, Serialize};

use super::outputs::Outputs;
use super::SearchError;
use crate::candidate::Candidate;
use crate::environment::Environment;
use crate::generators::derive_seed;
use crate::relax_model::{RelaxModel, SurrogateLink, RELAX_MODEL_KEY};
use crate::script::{
    GprModelSettings, ModelSettings, Script, SparseDescriptorSettings, SparseModelSettings,
};
use crate::surrogate::sparse::{SparseDescriptor, SparseModel};
use crate::surrogate::{
    Behind, ModelFault, ModelVersion, PooledSurrogate, Surrogate, SurrogateFns, SurrogateModule,
    TrainReport,
};
use crate::tasks::SearchFns;

/// Pool key of the surrogate model.
pub const MODEL_KEY: &str = "model";
/// The record of the trainings, in the output directory.
pub const MODEL_FILE: &str = "model.json";
/// Tag mixed into the seed of a training's hyperparameter search ("MODEL!!!").
const MODEL_SEED_TAG: u64 = 0x4d4f_4445_4c21_2121;

/// The seed of the hyperparameter search of iteration `iteration`'s training.
pub fn model_seed(run_seed: u64, iteration: u64) -> u64 {
    derive_seed(&[run_seed, iteration, MODEL_SEED_TAG])
}

/// One training, as `model.json` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRecord {
    /// The iteration whose store it followed.
    pub iteration: u64,
    /// Training rows.
    pub rows: usize,
    /// The hyperparameters it kept (natural logs of θ for the Gaussian process).
    pub hyperparameters: Vec<f64>,
    /// −log P there (`None` without a search).
    pub neg_log_likelihood: Option<f64>,
}

/// `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// The model's kind (`gpr`).
    pub kind: String,
    /// Every training, in order.
    pub trainings: Vec<TrainingRecord>,
}

/// GOFEE's Gaussian process `settings` describe, for `env`.
pub fn build_gpr(g: &GprModelSettings, env: &Environment) -> Result<GprModel, SearchError> {
    let fault = |e: &dyn std::fmt::Display| SearchError::Model(format!("gpr model: {e}"));
    let descriptor = Fingerprint::for_search(g.descriptor, &env.template, &env.numbers)
        .map_err(|e| fault(&e))?;
    GprModel::new(
        descriptor,
        g.prior,
        g.kernel.kernel(),
        GprSettings {
            n_optimize: g.n_optimize,
            optimizer: LbfgsbSettings {
                max_iterations: g.optimizer_maxiter,
                ..LbfgsbSettings::default()
            },
        },
    )
    .map_err(|e| fault(&e))
}

/// The sparse Gaussian process `settings` describe, for `env`; it trains the
/// matrices of σ (the acquisition needs them).
pub fn build_sparse(
    s: &SparseModelSettings,
    env: &Environment,
) -> Result<SparseModel, SearchError> {
    let fault = |e: &dyn std::fmt::Display| SearchError::Model(format!("sparse_gpr model: {e}"));
    let descriptor = match s.descriptor {
        SparseDescriptorSettings::SimpleFingerprint(p) => SparseDescriptor::SimpleFingerprint(
            SimpleFingerprint::for_search(p, &env.template, &env.numbers).map_err(|e| fault(&e))?,
        ),
        SparseDescriptorSettings::Fingerprint(p) => SparseDescriptor::Fingerprint(Box::new(
            Fingerprint::for_search(p, &env.template, &env.numbers).map_err(|e| fault(&e))?,
        )),
    };
    let kernel = s.kernel.kernel().map_err(|e| fault(&e))?;
    let settings = SparseSettings {
        sigma_e: s.noise,
        sigma_f: s.noise_forces,
        jitter: s.jitter,
        unc_jitter: s.unc_jitter,
        centralize: s.centralize,
        sparsifier: Sparsifier::Cur {
            m_points: s.n_inducing,
        },
        n_optimize: s.n_optimize,
        train_forces: s.train_forces,
        train_uncertainty: true,
    };
    let model = SparseGpr::new(descriptor, s.prior, kernel, settings).map_err(|e| fault(&e))?;
    Ok(SparseModel::new(model))
}

/// The pooled model, of the kind the script chose.
#[derive(Debug)]
pub enum PooledModel {
    /// GOFEE's Gaussian process.
    Gpr(Box<PooledSurrogate<GprModel>>),
    /// The sparse Gaussian process.
    SparseGpr(Box<PooledSurrogate<SparseModel>>),
}

/// `$body` with `$s` bound to the [`PooledSurrogate`] of whichever kind.
macro_rules! each_kind {
    ($model:expr, $s:ident => $body:expr) => {
        match $model {
            PooledModel::Gpr($s) => $body,
            PooledModel::SparseGpr($s) => $body,
        }
    };
}

impl PooledModel {
    /// Its kind (`gpr`, `sparse_gpr`).
    pub fn kind(&self) -> &'static str {
        match self {
            PooledModel::Gpr(_) => GprModel::KIND,
            PooledModel::SparseGpr(_) => SparseModel::KIND,
        }
    }

    /// The link a relaxation in its acquisition resolves.
    pub fn link(&self) -> SurrogateLink {
        match self {
            PooledModel::Gpr(s) => SurrogateLink::Gpr(s.link()),
            PooledModel::SparseGpr(s) => SurrogateLink::SparseGpr(s.link()),
        }
    }

    /// The driver's version.
    pub fn version(&self) -> ModelVersion {
        each_kind!(self, s => s.version())
    }

    /// True once the driver's copy is trained on its current rows.
    pub fn is_trained(&self) -> bool {
        each_kind!(self, s => s.is_trained())
    }

    /// Workers' copies brought up to date so far.
    pub fn heals(&self) -> u64 {
        each_kind!(self, s => s.heals())
    }

    /// The hyperparameters of the driver's copy.
    pub fn hyperparameters(&self) -> Vec<f64> {
        each_kind!(self, s => s.hyperparameters())
    }

    fn add(&mut self, candidates: &[Candidate]) -> Result<usize, ModelFault> {
        each_kind!(self, s => s.add(candidates))
    }

    fn train_at(
        &mut self,
        pool: &Pool,
        seed: u64,
        iteration: u64,
    ) -> Result<TrainReport, ModelFault> {
        each_kind!(self, s => s.train_at(pool, seed, Some(iteration)))
    }

    fn heal(&mut self, pool: &Pool, behind: &Behind) -> Result<(), ModelFault> {
        each_kind!(self, s => s.heal(pool, behind))
    }

    fn acquisition(&mut self, atoms: &Atoms, kappa: f64) -> Result<f64, ModelFault> {
        each_kind!(self, s => s.acquisition(atoms, kappa))
    }
}

/// The surrogate stage of a `gofee` search.
#[derive(Debug)]
pub struct ModelStage {
    surrogate: PooledModel,
    relax_model: Handle<RelaxModel>,
    record: ModelRecord,
}

/// Replays `stored` into `model` (see [`replay`]) and adds it to `pool`.
fn pooled<S: Surrogate>(
    pool: &Pool,
    mut model: S,
    fns: SurrogateFns<S>,
    run_seed: u64,
    stored: &BTreeMap<u64, Vec<Candidate>>,
    earlier: Option<ModelRecord>,
) -> Result<(PooledSurrogate<S>, ModelRecord), SearchError> {
    let record = replay(&mut model, run_seed, stored, earlier)?;
    let module = SurrogateModule::new(model).with_trainings(record.trainings.len() as u64);
    Ok((
        PooledSurrogate::add_to(pool, MODEL_KEY, module, fns)?,
        record,
    ))
}

impl ModelStage {
    /// Builds the model `script`'s `[model]` describes in `env`, replays `stored` (a
    /// resumed run's database, by iteration in storage order; empty for a fresh
    /// run) with the trainings of `earlier` (its `model.json`), and adds the model
    /// and the relaxation model (`[acquisition]`) to `pool`.
    pub fn new(
        pool: &Pool,
        fns: &SearchFns,
        script: &Script,
        env: &Environment,
        run_seed: u64,
        stored: &BTreeMap<u64, Vec<Candidate>>,
        earlier: Option<ModelRecord>,
    ) -> Result<ModelStage, SearchError> {
        let (Some(settings), Some(acquisition)) = (&script.model, &script.acquisition) else {
            return Err(SearchError::Model(format!(
                "algorithm \"{}\" needs [model] and [acquisition] settings",
                script.search.algorithm.name()
            )));
        };
        let (surrogate, record) = match settings {
            ModelSettings::Gpr(g) => {
                let model = build_gpr(g, env)?;
                let (s, r) = pooled(pool, model, fns.gpr.clone(), run_seed, stored, earlier)?;
                (PooledModel::Gpr(Box::new(s)), r)
            }
            ModelSettings::SparseGpr(g) => {
                let model = build_sparse(g, env)?;
                let (s, r) = pooled(
                    pool,
                    model,
                    fns.sparse_gpr.clone(),
                    run_seed,
                    stored,
                    earlier,
                )?;
                (PooledModel::SparseGpr(Box::new(s)), r)
            }
        };
        let mut relax = RelaxModel::lcb(surrogate.link(), acquisition.kappa());
        if surrogate.is_trained() {
            relax.expected = Some(surrogate.version());
        }
        let relax_model = pool.add_module(RELAX_MODEL_KEY, relax)?;
        Ok(ModelStage {
            surrogate,
            relax_model,
            record,
        })
    }

    /// The relaxation model (the acquisition of this model).
    pub fn relax_model(&self) -> &Handle<RelaxModel> {
        &self.relax_model
    }

    /// The pooled model.
    pub fn surrogate(&self) -> &PooledModel {
        &self.surrogate
    }

    /// The record of the trainings.
    pub fn record(&self) -> &ModelRecord {
        &self.record
    }

    /// True once the model is trained.
    pub fn is_trained(&self) -> bool {
        self.surrogate.is_trained()
    }

    /// The acquisition value of `atoms` in the driver's copy (κ as the relaxation
    /// model holds it).
    pub fn acquisition(&mut self, atoms: &Atoms) -> Result<f64, SearchError> {
        let kappa = self.relax_model.lock().kappa;
        Ok(self.surrogate.acquisition(atoms, kappa)?)
    }

    /// Brings the copy of the worker `behind` names up to date (see
    /// [`crate::surrogate`]).
    pub fn heal(&mut self, pool: &Pool, behind: &Behind) -> Result<(), SearchError> {
        Ok(self.surrogate.heal(pool, behind)?)
    }

    /// After iteration `iteration` stored `stored`: adds them to the rows,
    /// retrains on the pool, records the training in `outputs`' `model.json`, and
    /// tells the relaxation model the new version (it reaches the workers at the
    /// end-of-iteration synchronization). `None` when nothing became a row.
    pub fn after_store(
        &mut self,
        pool: &Pool,
        run_seed: u64,
        iteration: u64,
        stored: &[Candidate],
        outputs: &Outputs,
    ) -> Result<Option<TrainReport>, SearchError> {
        if self.surrogate.add(stored)? == 0 {
            return Ok(None);
        }
        let report = self
            .surrogate
            .train_at(pool, model_seed(run_seed, iteration), iteration)?;
        self.record.trainings.push(TrainingRecord {
            iteration,
            rows: report.rows,
            hyperparameters: report.hyperparameters.clone(),
            neg_log_likelihood: report.best_score,
        });
        outputs.write_json(MODEL_FILE, &self.record)?;
        self.relax_model.lock().expected = Some(self.surrogate.version());
        Ok(Some(report))
    }
}

impl From<ModelFault> for SearchError {
    fn from(e: ModelFault) -> Self {
        match e {
            ModelFault::Pool(p) => SearchError::Pool(p),
            ModelFault::Model { .. } | ModelFault::Behind(_) => SearchError::Model(e.to_string()),
        }
    }
}

/// Reads `model.json` from `dir`, if there is one.
pub fn read_record(dir: &Path) -> Result<Option<ModelRecord>, SearchError> {
    let path = dir.join(MODEL_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(SearchError::Io { path, error }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| SearchError::Output {
            path,
            message: format!("not a model record: {e}"),
        })
}

/// Adds `stored` to `model` iteration by iteration, ending trained as the run that
/// stored them was (see the module docs); returns the record of its trainings.
fn replay<S: Surrogate>(
    model: &mut S,
    run_seed: u64,
    stored: &BTreeMap<u64, Vec<Candidate>>,
    earlier: Option<ModelRecord>,
) -> Result<ModelRecord, SearchError> {
    let fault = |e: &dyn std::fmt::Display| SearchError::Model(format!("{} model: {e}", S::KIND));
    let earlier: Vec<TrainingRecord> = earlier
        .filter(|r| r.kind == S::KIND)
        .map(|r| r.trainings)
        .unwrap_or_default();
    let n_hyper = model.hyperparameters().len();
    let mut ws = S::Workspace::default();
    let mut record = ModelRecord {
        kind: S::KIND.to_owned(),
        trainings: Vec::new(),
    };
    // The last recorded training not yet applied, while the record agrees with
    // the database.
    let mut pending: Option<Vec<f64>> = None;
    let mut consistent = true;
    for (&iteration, cands) in stored {
        let mut added = 0;
        for c in cands {
            if let Some(e) = c.energy.filter(|e| e.is_finite()) {
                if model
                    .add(&c.atoms, e, c.forces.as_deref(), &mut ws)
                    .map_err(|e| fault(&e))?
                {
                    added += 1;
                }
            }
        }
        if added == 0 {
            continue;
        }
        // What this training prepared (the sparse model's inducing points, drawn
        // on its schedule), whether or not it is recorded.
        let seed = model_seed(run_seed, iteration);
        model
            .prepare(seed, Some(iteration))
            .map_err(|e| fault(&e))?;
        let k = record.trainings.len();
        if consistent {
            match earlier.get(k) {
                Some(r)
                    if r.iteration == iteration
                        && r.rows == model.n_rows()
                        && r.hyperparameters.len() == n_hyper =>
                {
                    pending = Some(r.hyperparameters.clone());
                    record.trainings.push(r.clone());
                    continue;
                }
                _ => consistent = false,
            }
        }
        // A training the record lacks: start from the last one recorded, and run
        // the search serially.
        if let Some(h) = pending.take() {
            model.restore(&h).map_err(|e| fault(&e))?;
        }
        let mut outcomes = Vec::new();
        for start in model.search_starts(seed) {
            outcomes.push(model.run_start(&start).map_err(|e| fault(&e))?);
        }
        let hyperparameters = model.conclude(&outcomes).map_err(|e| fault(&e))?;
        record.trainings.push(TrainingRecord {
            iteration,
            rows: model.n_rows(),
            hyperparameters,
            neg_log_likelihood: outcomes
                .iter()
                .map(S::score)
                .filter(|s| s.is_finite())
                .min_by(f64::total_cmp),
        });
    }
    if let Some(h) = pending {
        model.restore(&h).map_err(|e| fault(&e))?;
    }
    Ok(record)
}
