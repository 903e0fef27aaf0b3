//! The search's pool functions and their typed handles, in one leaf module.
//!
//! Workers find functions by name, so the driver and every worker must register
//! the same ones ([`crate::registry::build`]); the search loop only needs their
//! handles ([`handles`]). Both come from [`register`] here, which depends on the
//! modules the functions use and on nothing of the loop, so neither the registry
//! nor the loop imports the other.
//!
//! # The fused generate-and-relax task
//! An iteration's relaxations differ a lot in length (tens to hundreds of optimizer
//! steps) and end at a barrier, so with separate generate and relax maps a worker
//! often idles while another finishes the longest relaxation. Generation and
//! relaxation of one candidate therefore run as **one** task
//! ([`SearchFns::generate_relax`]): generate on the worker, then relax there in the
//! worker's copy of the [`RelaxModel`]. When the next iteration's candidates cannot
//! depend on this iteration's results
//! ([`Algorithm::lookahead_is_exact`](crate::algorithm::Algorithm::lookahead_is_exact)),
//! the loop submits them early; every candidate carries its explicit seed, so this
//! changes no result.

use agox_pool::{FnHandle, Link, Registry, TaskContext, TaskError};

use crate::calculator::{
    self, relax_fails_the_run, CalcFns, RelaxFailure, RelaxOutcome, RelaxRequest,
};
use crate::generators::{self, generate_task, GenFns, GenerateArgs, GenerateOutput};
use crate::relax_model::{RelaxModel, RelaxModelError};
use crate::surrogate::sparse::SparseModel;
use crate::surrogate::{self, Behind, SurrogateFns};
use agox_models::model::GprModel;
use serde::{Deserialize, Serialize};

/// Arguments of the fused task: what to generate, and the relaxation model and
/// request to relax it with (`None`: not relaxed, e.g. before
/// `[relax] start_iteration`).
pub type PipelineArgs = (GenerateArgs, Option<(Link<RelaxModel>, RelaxRequest)>);

/// Output of the fused task: the generated candidate (or why none could be made)
/// and, when asked, how its relaxation went.
pub type PipelineOutput = (GenerateOutput, Option<Relaxation>);

/// How a candidate's relaxation went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Relaxation {
    /// Relaxed.
    Done(Box<RelaxOutcome>),
    /// The relaxation failed (the candidate's problem: counted and reported).
    Failed(RelaxFailure),
    /// The worker's copy of the model missed an update; nothing was relaxed (the
    /// driver heals the copy and submits the task again).
    Behind(Behind),
}

/// Registered name of the fused task.
pub const GENERATE_RELAX_FN: &str = "agox_search.generate_relax";

/// Typed handles of every function in the program's registry.
#[derive(Debug, Clone)]
pub struct SearchFns {
    /// The calculator's functions (single points and relaxations).
    pub calculator: CalcFns,
    /// Candidate generation (generators and samplers on the pool).
    pub generators: GenFns,
    /// Generation and relaxation of one candidate as one task (the loop's step 1+2).
    pub generate_relax: FnHandle<PipelineArgs, PipelineOutput>,
    /// GOFEE's Gaussian process on the pool (its hyperparameter search).
    pub gpr: SurrogateFns<GprModel>,
    /// The sparse Gaussian process on the pool (its hyperparameter search).
    pub sparse_gpr: SurrogateFns<SparseModel>,
}

fn generate_relax_task(
    ctx: &TaskContext<'_>,
    (generate, relax): PipelineArgs,
) -> Result<PipelineOutput, TaskError> {
    let generated = generate_task(ctx, generate)?;
    let relaxed = match (&generated, relax) {
        (Ok(candidate), Some((model, request))) => {
            let model = ctx.module(&model)?;
            match model.relax(ctx, candidate.atoms.clone(), &request) {
                Ok(outcome) => Some(Relaxation::Done(Box::new(outcome))),
                // A calculator that cannot run: storing the candidate as failed would
                // change the result, so the run stops.
                Err(RelaxModelError::Relax(e)) if relax_fails_the_run(&e.error) => {
                    return Err(e.into())
                }
                // The candidate's own failure: a value the loop counts and reports.
                Err(RelaxModelError::Relax(e)) => Some(Relaxation::Failed(e.into())),
                Err(RelaxModelError::Behind(b)) => Some(Relaxation::Behind(b)),
                // The pool's state is wrong on this worker: a fault, stop loudly.
                Err(e @ RelaxModelError::Unreachable(_)) => return Err(e.into()),
            }
        }
        _ => None,
    };
    Ok((generated, relaxed))
}

/// Registers every module type and function of the search in `reg`.
pub fn register(reg: &mut Registry) -> SearchFns {
    reg.module::<RelaxModel>();
    let calculator = calculator::register(reg);
    let generators = generators::register(reg);
    let generate_relax = reg.function(GENERATE_RELAX_FN, generate_relax_task);
    let gpr = surrogate::register::<GprModel>(reg);
    let sparse_gpr = surrogate::register::<SparseModel>(reg);
    SearchFns {
        calculator,
        generators,
        generate_relax,
        gpr,
        sparse_gpr,
    }
}

/// The handles of the functions [`register`] registers (for a driver whose pool
/// was built from [`crate::registry::build`]).
pub fn handles() -> SearchFns {
    register(&mut Registry::new())
}
