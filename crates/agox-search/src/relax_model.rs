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
//!
//! The evaluator never uses the relaxation model: it calculates in the calculator
//! module directly.
//!
//! [`Algorithm::relaxation_model`]: crate::algorithm::Algorithm::relaxation_model

use agox_atoms::optimize::RelaxError;
use agox_atoms::Atoms;
use agox_pool::{Link, Module, TaskContext, TaskError};
use serde::{Deserialize, Serialize};

use crate::calculator::{CalculatorModule, RelaxOutcome, RelaxRequest};

/// Pool key of the relaxation model.
pub const RELAX_MODEL_KEY: &str = "relax_model";

/// What a relaxation model computes energies and forces with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RelaxModelKind {
    /// The calculator module (the real potential).
    Calculator(Link<CalculatorModule>),
}

/// The model candidates are relaxed in (module type `"RelaxModel"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelaxModel {
    /// What it relaxes in.
    pub kind: RelaxModelKind,
}

impl Module for RelaxModel {
    const TYPE_NAME: &'static str = "RelaxModel";
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
    Relax(#[from] RelaxError),
}

impl RelaxModel {
    /// Relaxation in the calculator module `calculator`.
    pub fn calculator(calculator: Link<CalculatorModule>) -> Self {
        RelaxModel {
            kind: RelaxModelKind::Calculator(calculator),
        }
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
        }
    }
}
