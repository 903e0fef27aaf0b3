//! The relaxation model: the model candidates are relaxed in on the workers.
//!
//! A [`RelaxModel`] is a pooled module of its own, under [`RELAX_MODEL_KEY`]. It
//! does not hold a potential itself: it names, by [`Link`], the pooled module that
//! computes energies and forces, and each worker resolves that link to **its own
//! copy** (the pool's module interconnection). So a worker relaxes in whichever
//! model the algorithm names ([`Algorithm::relaxation_model`]):
//!
//! * [`RelaxModelKind::Calculator`] — the script's calculator (`rss`, `bh`); a
//!   candidate's relaxation costs real calculator calls.
//! * [`RelaxModelKind::Lcb`] — the lower confidence bound `E − κσ` of a pooled
//!   surrogate (`gofee`): each worker's acquisition reads that worker's copy of the
//!   model, and κ (a dynamic attribute) as the driver last synchronized it. A copy
//!   of the model that is not at the version the driver expects (`expected`, also a
//!   dynamic attribute) relaxes nothing and says so
//!   ([`RelaxModelError::Behind`]; see [`crate::surrogate`]).
//!
//! The evaluator never uses the relaxation model: it calculates in the calculator
//! module directly.
//!
//! [`Algorithm::relaxation_model`]: crate::algorithm::Algorithm::relaxation_model

use agox_atoms::Atoms;
use agox_models::model::GprModel;
use agox_pool::{Link, Module, TaskContext, TaskError};
use serde::{Deserialize, Serialize};

use crate::calculator::{relax_in, CalculatorModule, RelaxFailed, RelaxOutcome, RelaxRequest};
use crate::surrogate::sparse::SparseModel;
use crate::surrogate::{Acquisition, Behind, ModelVersion, Surrogate, SurrogateModule};

/// Pool key of the relaxation model.
pub const RELAX_MODEL_KEY: &str = "relax_model";

/// What a relaxation model computes energies and forces with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RelaxModelKind {
    /// The calculator module (the real potential).
    Calculator(Link<CalculatorModule>),
    /// The lower confidence bound `E − κσ` of a pooled surrogate.
    Lcb(SurrogateLink),
}

/// A pooled surrogate of any kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SurrogateLink {
    /// GOFEE's Gaussian process.
    Gpr(Link<SurrogateModule<GprModel>>),
    /// The sparse Gaussian process.
    SparseGpr(Link<SurrogateModule<SparseModel>>),
}

/// The model candidates are relaxed in (module type `"RelaxModel"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelaxModel {
    /// What it relaxes in.
    pub kind: RelaxModelKind,
    /// κ of an acquisition (dynamic: changed in the driver, it reaches the workers
    /// at the next synchronization).
    pub kappa: f64,
    /// The version of the surrogate an acquisition must see (dynamic; `None` until
    /// the model is first trained).
    pub expected: Option<ModelVersion>,
}

impl Module for RelaxModel {
    const TYPE_NAME: &'static str = "RelaxModel";
    agox_pool::dynamic_attributes!(kappa, expected);
}

/// Why a candidate's relaxation did not run to an end.
#[derive(Debug, thiserror::Error)]
pub enum RelaxModelError {
    /// The model could not be reached in this process (a fault of the pool's
    /// state, not of the candidate).
    #[error("relaxation model: {0}")]
    Unreachable(TaskError),
    /// The relaxation itself failed (the candidate's problem).
    #[error(transparent)]
    Relax(#[from] RelaxFailed),
    /// This worker's copy of the model missed an update: nothing was computed; the
    /// driver heals the copy and asks again.
    #[error("{0}")]
    Behind(Behind),
}

impl RelaxModel {
    /// Relaxation in the calculator module `calculator`.
    pub fn calculator(calculator: Link<CalculatorModule>) -> Self {
        RelaxModel {
            kind: RelaxModelKind::Calculator(calculator),
            kappa: 0.0,
            expected: None,
        }
    }

    /// Relaxation in `E − κσ` of the surrogate `model`.
    pub fn lcb(model: SurrogateLink, kappa: f64) -> Self {
        RelaxModel {
            kind: RelaxModelKind::Lcb(model),
            kappa,
            expected: None,
        }
    }

    /// True when relaxing costs calls of the real calculator.
    pub fn is_calculator(&self) -> bool {
        matches!(self.kind, RelaxModelKind::Calculator(_))
    }

    /// Relaxes `atoms` as `request` says in the model, resolving its link in the
    /// process running the task (`ctx`).
    pub fn relax(
        &self,
        ctx: &TaskContext<'_>,
        atoms: Atoms,
        request: &RelaxRequest,
    ) -> Result<RelaxOutcome, RelaxModelError> {
        match &self.kind {
            RelaxModelKind::Calculator(link) => {
                let mut calculator = ctx.module(link).map_err(RelaxModelError::Unreachable)?;
                Ok(calculator.relax(atoms, request)?)
            }
            RelaxModelKind::Lcb(SurrogateLink::Gpr(link)) => {
                self.relax_in_acquisition(ctx, link, atoms, request)
            }
            RelaxModelKind::Lcb(SurrogateLink::SparseGpr(link)) => {
                self.relax_in_acquisition(ctx, link, atoms, request)
            }
        }
    }

    fn relax_in_acquisition<S: Surrogate>(
        &self,
        ctx: &TaskContext<'_>,
        link: &Link<SurrogateModule<S>>,
        atoms: Atoms,
        request: &RelaxRequest,
    ) -> Result<RelaxOutcome, RelaxModelError> {
        let module = ctx.module(link).map_err(RelaxModelError::Unreachable)?;
        let expected = self.expected.ok_or_else(|| {
            RelaxModelError::Unreachable(format!("the {} model is not trained yet", S::KIND).into())
        })?;
        if let Some(behind) = module.behind(expected, ctx) {
            return Err(RelaxModelError::Behind(behind));
        }
        let mut acquisition = Acquisition::new(&module.surrogate, self.kappa);
        Ok(relax_in(&mut acquisition, atoms, request)?)
    }
}
