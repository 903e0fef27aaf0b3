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
//!   same box as the model relaxation, and stores the relaxed structure, or with
//!   `store_trajectory` every step (GOFEE: the single point and the point after one
//!   BFGS step).
//! * **Until**: with a target count (GOFEE), candidates are taken in order until
//!   that many were evaluated, a failed one replaced by the next.
//! * **Cost**: every calculation of the calculator is counted, those of failed
//!   evaluations included ([`Evaluated::calls`]).
//! * **Failures**: a candidate whose calculation fails is not stored; its message is
//!   returned in [`Evaluated::failures`]. A candidate whose task failed for good (its
//!   workers lost or timed out on every attempt) is a fault the loop judges
//!   ([`Evaluated::faults`], see [`super::policy`]). A failure of the run itself (an
//!   external program that cannot be started, [`crate::calculator::fails_the_run`]),
//!   a task that panicked, or a broken pool, is an error.

use agox_atoms::optimize::BoxConstraint;
use agox_atoms::Evaluation;
use agox_pool::{Handle, Pool, PoolError};

use crate::calculator::{optimizer_kind, CalcFns, CalculatorModule, RelaxOutcome, RelaxRequest};
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
    /// Structures with energy and forces, in evaluation order (with
    /// `store_trajectory`, every step of each relaxation).
    pub candidates: Vec<Candidate>,
    /// One message per candidate whose calculation failed (it is not stored).
    pub failures: Vec<String>,
    /// Energy and force calculations of the calculator, failed ones included.
    pub calls: u64,
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

    /// Evaluates `candidates` in order (energy and forces set; for a relaxation
    /// evaluator the relaxed structure, or every step, with `relax_steps` added to
    /// the model's). With `until = Some(k)`, only until `k` candidates succeeded.
    pub fn evaluate(
        &self,
        pool: &Pool,
        candidates: Vec<Candidate>,
        until: Option<usize>,
    ) -> Result<Evaluated, PoolError> {
        let mut out = Evaluated::default();
        let mut queue = candidates.into_iter();
        let mut succeeded = 0;
        let mut offset = 0;
        loop {
            let want = until.map_or(usize::MAX, |k| k.saturating_sub(succeeded));
            let batch: Vec<Candidate> = queue.by_ref().take(want).collect();
            if batch.is_empty() {
                break;
            }
            let n = batch.len();
            succeeded += self.evaluate_batch(pool, batch, offset, &mut out)?;
            offset += n;
            if until.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Evaluates `batch` (the input's candidates from `offset` on) into `out`;
    /// returns how many candidates succeeded.
    fn evaluate_batch(
        &self,
        pool: &Pool,
        batch: Vec<Candidate>,
        offset: usize,
        out: &mut Evaluated,
    ) -> Result<usize, PoolError> {
        let mut succeeded = 0;
        let link = self.calculator.link();
        match &self.settings.kind {
            EvaluatorKind::SinglePoint if self.single_points_in_driver => {
                let mut calc = self.calculator.lock();
                for c in batch {
                    let result = calc.evaluate(&c.atoms);
                    succeeded += usize::from(out.single_point(c, result));
                }
            }
            EvaluatorKind::SinglePoint => {
                let args = batch.iter().map(|c| (link.clone(), c.atoms.clone()));
                let results = pool.map_results(&self.fns.evaluate_candidate, args)?;
                for (k, (c, r)) in batch.into_iter().zip(results).enumerate() {
                    match r {
                        Ok(result) => succeeded += usize::from(out.single_point(c, result)),
                        Err(e) => out.fault(offset + k, e)?,
                    }
                }
            }
            EvaluatorKind::Relax {
                optimizer,
                fmax,
                steps,
                store_trajectory,
            } => {
                let request = RelaxRequest::new(optimizer_kind(*optimizer), *fmax, *steps)
                    .with_confinement(self.confinement.clone())
                    .with_trajectory(*store_trajectory);
                let args = batch
                    .iter()
                    .map(|c| (link.clone(), c.atoms.clone(), request.clone()));
                let results = pool.map_results(&self.fns.relax_candidate, args)?;
                for (k, (c, r)) in batch.into_iter().zip(results).enumerate() {
                    match r {
                        Ok(Ok(o)) if !o.evaluation.energy.is_finite() => {
                            out.calls += o.calls as u64;
                            out.failures.push(format!(
                                "relaxation: non-finite energy {}",
                                o.evaluation.energy
                            ));
                        }
                        Ok(Ok(o)) => {
                            out.calls += o.calls as u64;
                            out.candidates.extend(relaxed_points(c, o));
                            succeeded += 1;
                        }
                        // The relaxation's own error: the calculator's answer.
                        Ok(Err(f)) => {
                            out.calls += f.calls as u64;
                            out.failures.push(f.message);
                        }
                        Err(e) => out.fault(offset + k, e)?,
                    }
                }
            }
        }
        Ok(succeeded)
    }
}

/// The structures an evaluator's relaxation of `c` stores: every step of the
/// trajectory when it was recorded, else the relaxed structure; `relax_steps` adds
/// the evaluator's steps to the model's.
fn relaxed_points(c: Candidate, o: RelaxOutcome) -> Vec<Candidate> {
    let before = c.meta.relax_steps.unwrap_or(0);
    match o.trajectory {
        Some(steps) => steps
            .into_iter()
            .map(|s| {
                let mut p = c.clone();
                p.atoms = s.atoms;
                p.energy = Some(s.energy);
                p.forces = Some(s.forces);
                p.meta.relax_steps = Some(before + s.step as u64);
                p
            })
            .collect(),
        None => {
            let mut p = c;
            p.atoms = o.atoms;
            p.energy = Some(o.evaluation.energy);
            p.forces = Some(o.evaluation.forces);
            p.meta.relax_steps = Some(before + o.steps as u64);
            vec![p]
        }
    }
}

impl Evaluated {
    /// Records candidate `c`'s single point (one calculation, whatever its
    /// outcome); true when it succeeded.
    fn single_point<E: std::fmt::Display>(
        &mut self,
        mut c: Candidate,
        result: Result<Evaluation, E>,
    ) -> bool {
        self.calls += 1;
        match result {
            // A calculation may "succeed" with a non-finite energy (atoms on top of
            // each other in LJ): such a structure cannot be stored or compared.
            Ok(e) if !e.energy.is_finite() => {
                self.failures
                    .push(format!("single point: non-finite energy {}", e.energy));
                false
            }
            Ok(e) => {
                c.energy = Some(e.energy);
                c.forces = Some(e.forces);
                self.candidates.push(c);
                true
            }
            Err(e) => {
                self.failures.push(format!("single point: {e}"));
                false
            }
        }
    }

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
