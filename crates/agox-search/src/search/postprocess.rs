//! `ParallelRelaxPostprocess`: every candidate of an iteration relaxed in the model,
//! in parallel on the pool.
//!
//! The model is a [`CalculatorModule`] on the pool (the script's calculator here; the
//! GPR surrogate later). Template atoms are fixed (the generators mark them in
//! `atoms.fixed`), the placed atoms are kept inside the confinement box
//! ([`Environment::box_constraint`](crate::environment::Environment::box_constraint)),
//! and nothing is relaxed before `start_iteration`.

use agox_atoms::optimize::BoxConstraint;
use agox_pool::{FnHandle, Link, Pool, PoolError};

use crate::calculator::{CalculatorModule, RelaxOutcome, RelaxRequest};
use crate::candidate::Candidate;
use crate::script::RelaxSettings;

/// Arguments of the `calculator.relax` pool function.
pub type RelaxArgs = (Link<CalculatorModule>, agox_atoms::Atoms, RelaxRequest);

/// The candidates after post-processing, with their model energies.
#[derive(Debug, Clone, Default)]
pub struct Relaxed {
    /// The candidates, in input order (those whose relaxation failed are left out).
    pub candidates: Vec<Candidate>,
    /// Each candidate's energy in the model after relaxation; `None` when it was not
    /// relaxed (before `start_iteration`).
    pub model_energies: Vec<Option<f64>>,
    /// One message per candidate whose relaxation failed.
    pub failures: Vec<String>,
    /// Optimizer steps over all relaxations.
    pub steps: u64,
}

impl Relaxed {
    /// The candidates as they came, unrelaxed (no model energies).
    pub fn unrelaxed(candidates: Vec<Candidate>) -> Self {
        let n = candidates.len();
        Relaxed {
            candidates,
            model_energies: vec![None; n],
            failures: Vec::new(),
            steps: 0,
        }
    }
}

/// Relaxes all candidates of an iteration in parallel on the pool (AGOX's
/// `ParallelRelaxPostprocess`).
#[derive(Debug, Clone)]
pub struct ParallelRelaxPostprocess {
    model: Link<CalculatorModule>,
    request: RelaxRequest,
    start_iteration: u64,
    relax: FnHandle<RelaxArgs, RelaxOutcome>,
}

impl ParallelRelaxPostprocess {
    /// Relaxation as `[relax]` says, in `model`, confining the placed atoms with
    /// `confinement`; `relax` is the registered `calculator.relax` function.
    pub fn new(
        model: Link<CalculatorModule>,
        settings: &RelaxSettings,
        confinement: BoxConstraint,
        relax: FnHandle<RelaxArgs, RelaxOutcome>,
    ) -> Self {
        ParallelRelaxPostprocess {
            model,
            request: RelaxRequest::from(settings).with_confinement(confinement),
            start_iteration: settings.start_iteration,
            relax,
        }
    }

    /// The model candidates are relaxed in.
    pub fn model(&self) -> &Link<CalculatorModule> {
        &self.model
    }

    /// The request every relaxation uses.
    pub fn request(&self) -> &RelaxRequest {
        &self.request
    }

    /// Whether candidates of `iteration` are relaxed.
    pub fn active(&self, iteration: u64) -> bool {
        iteration >= self.start_iteration
    }

    /// Relaxes `candidates` on the pool (returns them unchanged before
    /// `start_iteration`). The relaxed structure replaces each candidate's atoms and
    /// `meta.relax_steps` records the optimizer steps.
    pub fn process(
        &self,
        pool: &Pool,
        iteration: u64,
        candidates: Vec<Candidate>,
    ) -> Result<Relaxed, PoolError> {
        if !self.active(iteration) || candidates.is_empty() {
            return Ok(Relaxed::unrelaxed(candidates));
        }
        let args: Vec<RelaxArgs> = candidates
            .iter()
            .map(|c| (self.model.clone(), c.atoms.clone(), self.request.clone()))
            .collect();
        let results = pool.map_results(&self.relax, args)?;
        let mut out = Relaxed::default();
        for (mut c, r) in candidates.into_iter().zip(results) {
            match r {
                Ok(outcome) => {
                    out.steps += outcome.steps as u64;
                    c.atoms = outcome.atoms;
                    c.meta.relax_steps = Some(outcome.steps as u64);
                    out.model_energies.push(Some(outcome.evaluation.energy));
                    out.candidates.push(c);
                }
                Err(e) => out.failures.push(e.to_string()),
            }
        }
        Ok(out)
    }
}
