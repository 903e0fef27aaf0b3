//! Gaussian process regression on global feature vectors, as AGOX's `GPR`
//! (`agox/models/GPR/GPR.py`): energies only, centred (the mean target is
//! subtracted and added back), exact Cholesky training, the log marginal
//! likelihood maximized over log θ by L-BFGS-B from several starts.
//!
//! The state splits along what travels to a worker:
//!
//! * [`TrainingData`] — the feature rows and targets, append-only; a worker's
//!   copy is updated with [`TrainingData::rows_since`] / [`Gpr::append`], i.e. only
//!   the new rows travel (8·(F+1) bytes each: 2168 B for Au₈Cu₄'s 270 features);
//! * [`TrainedState`] — θ, α, the packed Cholesky factor and the mean: all
//!   prediction needs besides the rows, 8·(N + N(N+1)/2) bytes (162 KB at
//!   N = 200, 1.0 MB at N = 500).
//!
//! The hyperparameter search is split so that its starts can run anywhere with
//! the same result: [`Gpr::starts`] draws them from an explicit seed,
//! [`Gpr::optimize_start`] is a pure function of the training rows and one start,
//! [`best_start`] picks the lowest −log P, ties to the lowest start index, and
//! [`Gpr::fit`] makes the trained state. [`Gpr::train`] chains them serially.
//! Derived data (the squared distances between rows, the solver's buffers) are
//! rebuilt on demand and never serialized.

mod data;
mod likelihood;
pub(crate) mod linalg;
mod predict;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use data::{TrainingData, TrainingRows};
pub use predict::{GpPrediction, PredictWorkspace, TrainedState};

use crate::kernel::{Kernel, KernelError, N_THETA};
use crate::lbfgsb::{minimize, LbfgsbSettings, MinimizeError};
use likelihood::LmlCache;

/// Why the Gaussian process cannot do what was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GprError {
    /// A feature row of the wrong length.
    #[error("training row {row} has {got} features, expected {expected}")]
    RowLength {
        /// Row index.
        row: usize,
        /// Its length.
        got: usize,
        /// The model's feature count.
        expected: usize,
    },
    /// A non-finite feature or target.
    #[error("training row {row} has a non-finite feature or target")]
    NonFinite {
        /// Row index.
        row: usize,
    },
    /// Rows that do not continue this copy of the training data.
    #[error(
        "training rows start at {start} with {n_features} features, but this copy holds \
         {len} rows of {expected_features} features"
    )]
    RowsMismatch {
        /// First row of the update.
        start: usize,
        /// Its feature count.
        n_features: usize,
        /// Rows held here.
        len: usize,
        /// Feature count here.
        expected_features: usize,
    },
    /// A feature vector to predict at of the wrong length.
    #[error("feature vector has {got} entries, the model has {expected} features")]
    FeatureLength {
        /// Its length.
        got: usize,
        /// The model's feature count.
        expected: usize,
    },
    /// Nothing to train on.
    #[error("no training data")]
    NoData,
    /// Prediction before training (or after rows were added without retraining).
    #[error("the model is not trained")]
    NotTrained,
    /// A trained state that does not fit the training rows.
    #[error("trained state for {state} rows (Cholesky factor of {chol} numbers) does not fit {data} training rows")]
    StateMismatch {
        /// Rows of the state.
        state: usize,
        /// Length of its packed factor.
        chol: usize,
        /// Rows of the data.
        data: usize,
    },
    /// The kernel matrix is not numerically positive definite at this θ.
    #[error("kernel matrix of {n} rows is not positive definite (pivot {index})")]
    NotPositiveDefinite {
        /// The failing pivot.
        index: usize,
        /// Matrix size.
        n: usize,
    },
    /// The kernel's θ or bounds are unusable.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The optimizer could not run.
    #[error("hyperparameter optimization from θ0 = {theta0:?}: {message}")]
    Optimizer {
        /// The start.
        theta0: [f64; N_THETA],
        /// What went wrong.
        message: String,
    },
}

/// Settings of the model's training; [`Default`] gives AGOX's, with
/// `n_optimize` = 2 (AGOX uses the CPU count: 2 on the machines it was measured on).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GprSettings {
    /// Hyperparameter starts per training: the current θ and `n_optimize − 1`
    /// uniform draws in the log bounds; 0 keeps θ as it is.
    pub n_optimize: usize,
    /// The optimizer of each start.
    pub optimizer: LbfgsbSettings,
}

impl Default for GprSettings {
    fn default() -> Self {
        Self {
            n_optimize: 2,
            optimizer: LbfgsbSettings::default(),
        }
    }
}

/// The result of one hyperparameter start.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StartOutcome {
    /// Where it started.
    pub theta0: [f64; N_THETA],
    /// Where it ended.
    pub theta: [f64; N_THETA],
    /// −log P there.
    pub neg_lml: f64,
    /// Evaluations of log P and its gradient.
    pub evaluations: usize,
    /// Whether a convergence test ended it (else the iteration cap or the line search).
    pub converged: bool,
}

/// What a training did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainReport {
    /// Training rows.
    pub n_train: usize,
    /// Every start's outcome, in start order (empty with `n_optimize = 0`).
    pub starts: Vec<StartOutcome>,
    /// The start kept, if any.
    pub best: Option<usize>,
    /// θ of the trained model.
    pub theta: [f64; N_THETA],
}

/// The start with the lowest −log P; ties go to the lowest index. `None` for no starts.
pub fn best_start(outcomes: &[StartOutcome]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, o) in outcomes.iter().enumerate() {
        match best {
            Some(b) if outcomes[b].neg_lml <= o.neg_lml => {}
            _ => best = Some(i),
        }
    }
    best
}

/// A Gaussian process on feature vectors: kernel, training rows, trained state.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpr {
    /// Training settings.
    pub settings: GprSettings,
    kernel: Kernel,
    data: TrainingData,
    state: Option<TrainedState>,
    #[serde(skip)]
    cache: LmlCache,
}

impl Gpr {
    /// An untrained model of `n_features`-long feature vectors.
    pub fn new(n_features: usize, kernel: Kernel, settings: GprSettings) -> Result<Self, GprError> {
        kernel.validate()?;
        Ok(Gpr {
            settings,
            kernel,
            data: TrainingData::new(n_features),
            state: None,
            cache: LmlCache::default(),
        })
    }

    /// The kernel at the current θ.
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// The training rows.
    pub fn data(&self) -> &TrainingData {
        &self.data
    }

    /// The trained state, if the model is trained on the current rows.
    pub fn state(&self) -> Option<&TrainedState> {
        self.state.as_ref()
    }

    /// Adds one training row (features, target = energy − prior energy). The
    /// trained state stays usable until the next [`Gpr::fit`] only if it still
    /// matches, so it is dropped.
    pub fn push(&mut self, features: &[f64], target: f64) -> Result<(), GprError> {
        self.data.push(features, target)?;
        self.state = None;
        Ok(())
    }

    /// Appends rows shipped from another copy (see [`TrainingData::rows_since`]).
    pub fn append(&mut self, rows: &TrainingRows) -> Result<(), GprError> {
        self.data.append(rows)?;
        if !rows.targets.is_empty() {
            self.state = None;
        }
        Ok(())
    }

    /// Installs a trained state made elsewhere for the same rows, with its θ.
    pub fn set_state(&mut self, state: TrainedState) -> Result<(), GprError> {
        state.check(&self.data)?;
        state.kernel.validate()?;
        self.kernel = state.kernel;
        self.state = Some(state);
        Ok(())
    }

    /// log P at θ and its gradient with respect to θ.
    pub fn log_marginal_likelihood(
        &mut self,
        theta: &[f64; N_THETA],
    ) -> Result<(f64, [f64; N_THETA]), GprError> {
        self.cache.sync(&self.data);
        self.cache.evaluate(&self.kernel.with_theta(*theta), true)
    }

    /// The starts of a search: the current θ, then `n_optimize − 1` draws uniform
    /// in the log bounds from a ChaCha8 generator seeded with `seed` (pinned
    /// entries stay at their value).
    pub fn starts(&self, seed: u64) -> Vec<[f64; N_THETA]> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(self.settings.n_optimize);
        if self.settings.n_optimize > 0 {
            out.push(self.kernel.theta);
        }
        for _ in 1..self.settings.n_optimize {
            out.push(std::array::from_fn(|p| {
                let [lo, hi] = self.kernel.bounds[p];
                lo + (hi - lo) * rng.gen::<f64>()
            }));
        }
        out
    }

    /// Minimizes −log P by L-BFGS-B from `theta0` within the kernel's bounds.
    /// Depends only on the training rows, the kernel's bounds, the optimizer
    /// settings and `theta0`, so every process gives the same result.
    pub fn optimize_start(&mut self, theta0: &[f64; N_THETA]) -> Result<StartOutcome, GprError> {
        self.cache.sync(&self.data);
        if self.cache.len() == 0 {
            return Err(GprError::NoData);
        }
        let kernel = self.kernel;
        let lower: Vec<f64> = kernel.bounds.iter().map(|b| b[0]).collect();
        let upper: Vec<f64> = kernel.bounds.iter().map(|b| b[1]).collect();
        let cache = &mut self.cache;
        let objective = |t: &[f64]| -> Result<(f64, Vec<f64>), GprError> {
            let theta: [f64; N_THETA] = std::array::from_fn(|p| t[p]);
            let (lml, grad) = cache.evaluate(&kernel.with_theta(theta), true)?;
            Ok((-lml, grad.iter().map(|g| -g).collect()))
        };
        let m =
            minimize(objective, theta0, &lower, &upper, &self.settings.optimizer).map_err(|e| {
                match e {
                    MinimizeError::Objective(e) => e,
                    other => GprError::Optimizer {
                        theta0: *theta0,
                        message: other.to_string(),
                    },
                }
            })?;
        Ok(StartOutcome {
            theta0: *theta0,
            theta: std::array::from_fn(|p| m.x[p]),
            neg_lml: m.f,
            evaluations: m.evaluations,
            converged: m.converged,
        })
    }

    /// Factors K at θ and makes the trained state (θ becomes the model's).
    pub fn fit(&mut self, theta: &[f64; N_THETA]) -> Result<&TrainedState, GprError> {
        let kernel = self.kernel.with_theta(*theta);
        kernel.validate()?;
        self.cache.sync(&self.data);
        let n = self.cache.len();
        if n == 0 {
            return Err(GprError::NoData);
        }
        self.cache.factor(&kernel.hyper(), false)?;
        self.kernel = kernel;
        let state = TrainedState {
            kernel,
            mean: self.cache.mean,
            alpha: self.cache.alpha.clone(),
            chol: linalg::pack_lower(&self.cache.k, n),
        };
        Ok(self.state.insert(state))
    }

    /// Trains serially: the search's starts from `seed`, each optimized, the best
    /// kept (AGOX's `hyperparameter_search`), then [`Gpr::fit`].
    pub fn train(&mut self, seed: u64) -> Result<TrainReport, GprError> {
        let mut starts = Vec::new();
        for theta0 in self.starts(seed) {
            starts.push(self.optimize_start(&theta0)?);
        }
        let best = best_start(&starts);
        let theta = best.map_or(self.kernel.theta, |b| starts[b].theta);
        self.fit(&theta)?;
        Ok(TrainReport {
            n_train: self.data.len(),
            starts,
            best,
            theta,
        })
    }

    fn trained(&self) -> Result<&TrainedState, GprError> {
        let state = self.state.as_ref().ok_or(GprError::NotTrained)?;
        state.check(&self.data)?;
        Ok(state)
    }

    /// Mean (training mean included, no prior) and σ at feature vector `x`.
    pub fn predict(&self, x: &[f64], ws: &mut PredictWorkspace) -> Result<GpPrediction, GprError> {
        self.check_x(x)?;
        Ok(predict::predict(self.trained()?, &self.data, x, ws))
    }

    /// As [`Gpr::predict`], with ∂E/∂x and ∂σ/∂x left in `ws`.
    pub fn predict_with_gradient(
        &self,
        x: &[f64],
        ws: &mut PredictWorkspace,
    ) -> Result<GpPrediction, GprError> {
        self.check_x(x)?;
        Ok(predict::predict_with_gradient(
            self.trained()?,
            &self.data,
            x,
            ws,
        ))
    }

    fn check_x(&self, x: &[f64]) -> Result<(), GprError> {
        if x.len() != self.data.n_features() {
            return Err(GprError::FeatureLength {
                got: x.len(),
                expected: self.data.n_features(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
