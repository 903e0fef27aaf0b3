//! The evaluator: which candidates get the expensive calculation, and the
//! calculation itself.
//!
//! * **Choose**: the algorithm decides
//!   ([`Algorithm::choose`](crate::algorithm::Algorithm::choose)).
//! * **Evaluate** ([`Evaluator::evaluate`]): a single point runs in the driver on its
//!   own copy of the calculator module (a few tens of microseconds for a cluster: a
//!   pool round trip would cost more); a relaxation evaluator (`kind = "relax"`) runs
//!   the chosen candidates in parallel on the pool, with the same box as the model
//!   relaxation. A relaxation that reports an error is that candidate's failure
//!   ([`Evaluated::failures`]); one whose task failed for good (its workers lost or
//!   timed out) is a fault the loop judges ([`Evaluated::faults`], see
//!   [`super::policy`]); a task that panicked, or a broken pool, is an error.

use agox_atoms::optimize::BoxConstraint;
use agox_pool::{FnHandle, Handle, Pool, PoolError, TaskFailure};

use super::postprocess::RelaxArgs;
use crate::calculator::{optimizer_kind, CalculatorModule, RelaxOutcome, RelaxRequest};
use crate::candidate::Candidate;
use crate::script::{EvaluatorKind, EvaluatorSettings};

/// The expensive calculation of the chosen candidates.
#[derive(Debug, Clone)]
pub struct Evaluator {
    settings: EvaluatorSettings,
    calculator: Handle<CalculatorModule>,
    relax: FnHandle<RelaxArgs, RelaxOutcome>,
    confinement: BoxConstraint,
}

/// What an evaluation produced.
#[derive(Debug, Default)]
pub struct Evaluated {
    /// Candidates with energy and forces, in evaluation order.
    pub candidates: Vec<Candidate>,
    /// One message per candidate whose calculation failed (it is not stored).
    pub failures: Vec<String>,
    /// Candidates whose task failed for good (worker lost or timed out on every
    /// attempt): their place in the input, and the pool's error.
    pub faults: Vec<(usize, PoolError)>,
}

impl Evaluator {
    /// The evaluator `[evaluator]` describes, calculating with `calculator` (a module
    /// on the pool; its driver copy does single points), relaxing (for `kind =
    /// "relax"`) with the registered `relax` function inside `confinement`.
    pub fn new(
        settings: EvaluatorSettings,
        calculator: Handle<CalculatorModule>,
        relax: FnHandle<RelaxArgs, RelaxOutcome>,
        confinement: BoxConstraint,
    ) -> Self {
        Evaluator {
            settings,
            calculator,
            relax,
            confinement,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &EvaluatorSettings {
        &self.settings
    }

    /// Evaluates `candidates` (energy and forces set, and for a relaxation evaluator
    /// the relaxed structure and `relax_steps` added to the model's).
    pub fn evaluate(
        &self,
        pool: &Pool,
        candidates: Vec<Candidate>,
    ) -> Result<Evaluated, PoolError> {
        let mut out = Evaluated::default();
        match &self.settings.kind {
            EvaluatorKind::SinglePoint => {
                let mut calc = self.calculator.lock();
                for mut c in candidates {
                    match calc.evaluate(&c.atoms) {
                        Ok(e) => {
                            c.energy = Some(e.energy);
                            c.forces = Some(e.forces);
                            out.candidates.push(c);
                        }
                        Err(e) => out.failures.push(format!("single point: {e}")),
                    }
                }
            }
            EvaluatorKind::Relax {
                optimizer,
                fmax,
                steps,
            } => {
                if candidates.is_empty() {
                    return Ok(out);
                }
                let request = RelaxRequest::new(optimizer_kind(*optimizer), *fmax, *steps)
                    .with_confinement(self.confinement.clone());
                let link = self.calculator.link();
                let args: Vec<RelaxArgs> = candidates
                    .iter()
                    .map(|c| (link.clone(), c.atoms.clone(), request.clone()))
                    .collect();
                let results = pool.map_results(&self.relax, args)?;
                for (k, (mut c, r)) in candidates.into_iter().zip(results).enumerate() {
                    match r {
                        Ok(o) => {
                            c.atoms = o.atoms;
                            c.energy = Some(o.evaluation.energy);
                            c.forces = Some(o.evaluation.forces);
                            let before = c.meta.relax_steps.unwrap_or(0);
                            c.meta.relax_steps = Some(before + o.steps as u64);
                            out.candidates.push(c);
                        }
                        // The relaxation's own error: the calculator's answer.
                        Err(
                            e @ PoolError::Task {
                                kind: TaskFailure::Error,
                                ..
                            },
                        ) => out.failures.push(e.to_string()),
                        Err(e) if super::policy::is_task_failure(&e) => out.faults.push((k, e)),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        // A calculation may "succeed" with a non-finite energy (atoms on top of each
        // other in LJ): such a structure cannot be stored or compared; drop it.
        let (good, bad): (Vec<_>, Vec<_>) = out
            .candidates
            .into_iter()
            .partition(|c| c.energy.is_some_and(f64::is_finite));
        out.failures.extend(
            bad.iter()
                .map(|c| format!("non-finite energy {:?}", c.energy)),
        );
        out.candidates = good;
        Ok(out)
    }
}
