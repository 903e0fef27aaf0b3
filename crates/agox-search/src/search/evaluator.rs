//! The evaluator: which candidates get the expensive calculation, and the
//! calculation itself.
//!
//! * **Choose**: the algorithm decides
//!   ([`Algorithm::choose`](crate::algorithm::Algorithm::choose)).
//! * **Evaluate** ([`Evaluator::evaluate`]): a single point with a built-in potential
//!   runs in the driver on its own copy of the calculator module (a few tens of
//!   microseconds for a cluster: a pool round trip would cost more); with an external
//!   calculator it runs on the pool, where the workers' clients live
//!   ([`CalculatorSettings::single_points_in_driver`]). A relaxation evaluator
//!   (`kind = "relax"`) runs the chosen candidates in parallel on the pool, with the
//!   same box as the model relaxation.
//! * **Failures**: a candidate whose calculation fails is not stored; its message is
//!   returned in [`Evaluated::failures`]. A candidate whose task failed for good (its
//!   workers lost or timed out on every attempt) is a fault the loop judges
//!   ([`Evaluated::faults`], see [`super::policy`]). A failure of the run itself (an
//!   external program that cannot be started, [`crate::calculator::fails_the_run`]),
//!   a task that panicked, or a broken pool, is an error.

use agox_atoms::optimize::BoxConstraint;
use agox_pool::{Handle, Pool, PoolError};

use crate::calculator::{optimizer_kind, CalcFns, CalculatorModule, RelaxRequest};
use crate::candidate::Candidate;
use crate::script::{CalculatorSettings, EvaluatorKind, EvaluatorSettings};

/// The expensive calculation of the chosen candidates.
#[derive(Debug, Clone)]
pub struct Evaluator {
    settings: EvaluatorSettings,
    calculator: Handle<CalculatorModule>,
    fns: CalcFns,
    single_points_in_driver: bool,
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
    /// on the pool, made from `kind`), through the pool functions `fns`, relaxing
    /// (for `kind = "relax"`) inside `confinement`.
    pub fn new(
        settings: EvaluatorSettings,
        calculator: Handle<CalculatorModule>,
        kind: &CalculatorSettings,
        fns: CalcFns,
        confinement: BoxConstraint,
    ) -> Self {
        Evaluator {
            settings,
            calculator,
            fns,
            single_points_in_driver: kind.single_points_in_driver(),
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
        if candidates.is_empty() {
            return Ok(out);
        }
        let link = self.calculator.link();
        match &self.settings.kind {
            EvaluatorKind::SinglePoint if self.single_points_in_driver => {
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
            EvaluatorKind::SinglePoint => {
                let args = candidates.iter().map(|c| (link.clone(), c.atoms.clone()));
                let results = pool.map_results(&self.fns.evaluate_candidate, args)?;
                for (k, (mut c, r)) in candidates.into_iter().zip(results).enumerate() {
                    match r {
                        Ok(Ok(e)) => {
                            c.energy = Some(e.energy);
                            c.forces = Some(e.forces);
                            out.candidates.push(c);
                        }
                        Ok(Err(e)) => out.failures.push(format!("single point: {e}")),
                        Err(e) => out.fault(k, e)?,
                    }
                }
            }
            EvaluatorKind::Relax {
                optimizer,
                fmax,
                steps,
            } => {
                let request = RelaxRequest::new(optimizer_kind(*optimizer), *fmax, *steps)
                    .with_confinement(self.confinement.clone());
                let args = candidates
                    .iter()
                    .map(|c| (link.clone(), c.atoms.clone(), request.clone()));
                let results = pool.map_results(&self.fns.relax_candidate, args)?;
                for (k, (mut c, r)) in candidates.into_iter().zip(results).enumerate() {
                    match r {
                        Ok(Ok(o)) => {
                            c.atoms = o.atoms;
                            c.energy = Some(o.evaluation.energy);
                            c.forces = Some(o.evaluation.forces);
                            let before = c.meta.relax_steps.unwrap_or(0);
                            c.meta.relax_steps = Some(before + o.steps as u64);
                            out.candidates.push(c);
                        }
                        // The relaxation's own error: the calculator's answer.
                        Ok(Err(e)) => out.failures.push(e),
                        Err(e) => out.fault(k, e)?,
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

impl Evaluated {
    /// Records candidate `k`'s task that failed for good (its workers lost or timed
    /// out) as a fault for the loop's policy; any other pool error (a panic, a
    /// calculator that cannot run, a broken pool) is the run's error.
    fn fault(&mut self, k: usize, e: PoolError) -> Result<(), PoolError> {
        if super::policy::is_task_failure(&e) {
            self.faults.push((k, e));
            Ok(())
        } else {
            Err(e)
        }
    }
}
