//! `ParallelRelaxPostprocess`: every candidate of an iteration relaxed in the model,
//! in parallel on the pool (as the second half of the fused task in
//! [`super::pipeline`]).
//!
//! The model is the pool's [`RelaxModel`] (the calculator, or a surrogate's
//! acquisition: [`crate::relax_model`]). Template atoms are fixed (the generators mark them in
//! `atoms.fixed`), the placed atoms are kept inside the confinement box
//! ([`Environment::box_constraint`](crate::environment::Environment::box_constraint)),
//! and nothing is relaxed before `start_iteration`.

use agox_atoms::optimize::BoxConstraint;
use agox_pool::Link;

use crate::calculator::{RelaxFailure, RelaxOutcome, RelaxRequest};
use crate::candidate::Candidate;
use crate::relax_model::RelaxModel;
use crate::script::RelaxSettings;

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
    /// Candidates left out because their relaxation took no step (GOFEE).
    pub unmoved: usize,
    /// Optimizer steps over all relaxations (of a failed one: the steps before the
    /// failing calculation).
    pub steps: u64,
    /// Energy and force calculations of the relaxation model, failed relaxations
    /// included.
    pub calls: u64,
}

impl Relaxed {
    /// Adds `candidate` after its relaxation: the relaxed structure replaces its
    /// atoms, `meta.relax_steps` records the optimizer steps, and the final model
    /// energy is kept.
    pub fn push_relaxed(&mut self, mut candidate: Candidate, outcome: RelaxOutcome) {
        self.steps += outcome.steps as u64;
        self.calls += outcome.calls as u64;
        candidate.atoms = outcome.atoms;
        candidate.meta.relax_steps = Some(outcome.steps as u64);
        self.model_energies.push(Some(outcome.evaluation.energy));
        self.candidates.push(candidate);
    }

    /// Adds `candidate` as it is, without a model energy.
    pub fn push_unrelaxed(&mut self, candidate: Candidate) {
        self.model_energies.push(None);
        self.candidates.push(candidate);
    }

    /// Counts a relaxation that took no step and whose candidate is left out.
    pub fn push_unmoved(&mut self, outcome: &RelaxOutcome) {
        self.calls += outcome.calls as u64;
        self.unmoved += 1;
    }

    /// Records a failed relaxation (its candidate is left out).
    pub fn push_failed(&mut self, failure: RelaxFailure) {
        self.calls += failure.calls as u64;
        self.steps += failure.calls.saturating_sub(1) as u64;
        self.failures.push(failure.message);
    }
}

/// Relaxes all candidates of an iteration in parallel on the pool (AGOX's
/// `ParallelRelaxPostprocess`).
#[derive(Debug, Clone)]
pub struct ParallelRelaxPostprocess {
    model: Link<RelaxModel>,
    request: RelaxRequest,
    start_iteration: u64,
}

impl ParallelRelaxPostprocess {
    /// Relaxation as `[relax]` says, in `model`, confining the placed atoms with
    /// `confinement`.
    pub fn new(
        model: Link<RelaxModel>,
        settings: &RelaxSettings,
        confinement: BoxConstraint,
    ) -> Self {
        ParallelRelaxPostprocess {
            model,
            request: RelaxRequest::from(settings).with_confinement(confinement),
            start_iteration: settings.start_iteration,
        }
    }

    /// The model candidates are relaxed in.
    pub fn model(&self) -> &Link<RelaxModel> {
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
}
