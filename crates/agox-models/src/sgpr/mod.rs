//! AGOX's `SparseGPR` (`agox/models/GPR/sGPR.py`, AGOX 3.11.1): a Gaussian process
//! on per-centre features whose energy is a sum of local energies, projected on a
//! fixed set of inducing points (the projected-process / DTC approximation), with
//! optional force training, transfer data, the repulsive prior and single-atom
//! energies. `docs/sparse-gpr.md` gives the equations, AGOX's settings and where we
//! differ.
//!
//! The parts, along what a pool worker needs:
//!
//! * [`SparseData`] — per structure its centres' features, its energy target and
//!   noise, and optionally its force block (∂features/∂positions and the force
//!   targets);
//! * [`TrainingSet`] (serde) — the data, the inducing points, the kernel (current
//!   θ and bounds), the noise and jitters: everything one hyperparameter
//!   evaluation needs. [`TrainingSet::evaluate`] is a pure function of the set and
//!   θ, so a pool can send the set **once per training** and evaluate the θ draws
//!   anywhere with the serial result, bit for bit;
//! * [`Predictor`] (serde) — the trained state: kernel, inducing points, α, the
//!   mean and the uncertainty matrix; all a worker needs to predict and relax;
//! * [`SparseGpr`] — the model on structures: a descriptor, the prior, the
//!   single-atom energies, the stored data, the sparsifier (CUR with AGOX's
//!   schedule, or explicit inducing indices) and the trained [`Predictor`]. It
//!   implements [`Surrogate`](crate::model::Surrogate), so the
//!   [`Lcb`](crate::model::Lcb) calculator relaxes in it.
//!
//! Training is split in pure steps like the full GP's: [`SparseGpr::training_set`]
//! (sparsify if due, assemble), [`starts`] (current θ plus seeded log-uniform
//! draws), [`TrainingSet::evaluate`] per start, [`best_theta`] (the highest finite
//! log-likelihood, ties to the lowest index), [`TrainingSet::fit`] and
//! [`SparseGpr::install`]. [`SparseGpr::train`] chains them serially.

mod assemble;
mod cur;
mod data;
mod dense;
mod fit;
mod likelihood;
mod model;
mod predict;
mod search;

pub use cur::{cur_select, leverage_scores};
pub use data::{ForceBlock, SparseData, TrainingSet};
pub use dense::Solver;
pub use fit::{Assembled, FitReport};
pub use likelihood::LmlWorkspace;
pub use model::{
    SparseGpr, SparseModelWorkspace, SparsePrediction, SparseSettings, Sparsifier, TrainOptions,
    TrainReport,
};
pub use predict::{PredictWorkspace, Predictor, StructurePrediction};
pub use search::{best_theta, starts, ThetaOutcome, ThetaValue};

use crate::descriptor::DescriptorError;
use crate::kernel::KernelError;
use crate::prior::PriorError;

/// Why the sparse GP cannot do what was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SparseError {
    /// The descriptor failed.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    /// The prior failed.
    #[error(transparent)]
    Prior(#[from] PriorError),
    /// The kernel's θ or bounds are unusable.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A setting out of its range.
    #[error("sparse GPR setting {name} = {value}: expected {expected}")]
    Setting {
        /// The setting.
        name: &'static str,
        /// Its value, as written.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A training energy that is not a finite number.
    #[error("training energy {energy} is not finite")]
    Energy {
        /// The energy.
        energy: f64,
    },
    /// Training forces of the wrong shape or not finite, or missing when the
    /// model trains on forces.
    #[error("training forces: {message}")]
    Forces {
        /// What is wrong.
        message: String,
    },
    /// Data whose parts do not fit together (a deserialized training set or
    /// predictor, a feature vector of the wrong length).
    #[error("inconsistent sparse GPR data: {message}")]
    Shape {
        /// What does not fit.
        message: String,
    },
    /// Nothing to train on.
    #[error("no training data")]
    NoData,
    /// The sparsifier is `fixed` and no inducing points were set.
    #[error(
        "no inducing points: the sparsifier is 'fixed' and set_inducing_indices was not called"
    )]
    NoInducing,
    /// An inducing index out of range or repeated.
    #[error("inducing index {index}: {message} ({n_env} training environments)")]
    InducingIndex {
        /// The index.
        index: usize,
        /// Out of range, or repeated.
        message: &'static str,
        /// Number of environments.
        n_env: usize,
    },
    /// Prediction before training.
    #[error("the sparse GPR is not trained")]
    NotTrained,
    /// σ asked of a model trained without `train_uncertainty`.
    #[error("the sparse GPR was trained without train_uncertainty, so it has no uncertainty")]
    NoUncertainty,
    /// Local energies of a global descriptor (one centre per structure).
    #[error("local energies need a local descriptor; {descriptor} is global")]
    NotLocal {
        /// The descriptor's name.
        descriptor: &'static str,
    },
    /// A decomposition that did not converge (SVD, eigenvalues).
    #[error("{what} did not converge")]
    Decomposition {
        /// Which one.
        what: &'static str,
    },
}

#[cfg(test)]
mod tests;
