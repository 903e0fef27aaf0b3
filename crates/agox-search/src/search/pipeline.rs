//! One candidate's generation and relaxation as **one** pool task, and the
//! look-ahead that lets the next iteration's candidates start early.
//!
//! An iteration's relaxations differ a lot in length (tens to hundreds of optimizer
//! steps) and end at a barrier, so with separate generate and relax maps a worker
//! often idles while another finishes the longest relaxation. Fusing the two steps
//! removes one barrier per iteration; and when the next iteration's candidates
//! cannot depend on this iteration's results, the loop submits them before waiting
//! for this iteration's, so an idle worker starts on them at once.
//!
//! Look-ahead changes no result: every candidate carries its explicit seed
//! `derive_seed(run seed, iteration, generator, index)`, and it is used only when
//! nothing the tasks read can change at the end of the iteration (see
//! [`lookahead_is_exact`]).

use agox_pool::{FnHandle, Link, Registry, TaskContext, TaskError};

use crate::calculator::{CalculatorModule, RelaxOutcome, RelaxRequest};
use crate::generators::{generate_task, GenerateArgs, GenerateOutput};
use crate::script::{Algorithm, EvaluatorKind, Script};

/// Arguments of the fused task: what to generate, and the model and request to
/// relax it with (`None` before `[relax] start_iteration`, or without `[relax]`).
pub type PipelineArgs = (GenerateArgs, Option<(Link<CalculatorModule>, RelaxRequest)>);

/// Output of the fused task: the generated candidate (or why none could be made)
/// and, when asked, the outcome of its relaxation (or why it failed).
pub type PipelineOutput = (GenerateOutput, Option<Result<RelaxOutcome, String>>);

/// Registered name of the fused task.
pub const GENERATE_RELAX_FN: &str = "agox_search.generate_relax";

fn generate_relax_task(
    ctx: &TaskContext<'_>,
    (generate, relax): PipelineArgs,
) -> Result<PipelineOutput, TaskError> {
    let generated = generate_task(ctx, generate)?;
    let relaxed = match (&generated, relax) {
        (Ok(candidate), Some((model, request))) => Some(
            ctx.module(&model)?
                .relax(candidate.atoms.clone(), &request)
                .map_err(|e| e.to_string()),
        ),
        _ => None,
    };
    Ok((generated, relaxed))
}

/// Registers the fused generate-and-relax task.
pub fn register(reg: &mut Registry) -> FnHandle<PipelineArgs, PipelineOutput> {
    reg.function(GENERATE_RELAX_FN, generate_relax_task)
}

/// True when starting iteration `i + 1`'s candidates before iteration `i` ends
/// gives exactly the same candidates: a random structure search whose generators
/// need no parent (so nothing read by a task changes at the end of an iteration —
/// the model is the fixed calculator) and whose evaluation runs in the driver (so
/// queued look-ahead tasks delay no evaluation).
pub fn lookahead_is_exact(script: &Script) -> bool {
    script.search.algorithm == Algorithm::Rss
        && script.generators.iter().all(|g| !g.kind.needs_parent())
        && matches!(script.evaluator.kind, EvaluatorKind::SinglePoint)
}
