//! Local optimization: BFGS and FIRE as ASE 3.29 does them, fixed atoms, and the
//! AGOX confinement box.
//!
//! [`relax`] drives a [`Calculator`] until the largest per-atom force norm drops
//! below `fmax` (checked before every step, the first included) or `steps`
//! position updates have been made. Fixed atoms (`Atoms::fixed`) have their forces
//! zeroed, as ASE's `FixAtoms` does: they never move and do not count for `fmax`.
//! Internally they are simply left out of the optimizer's degrees of freedom,
//! which gives the same path (their Hessian block stays decoupled and their
//! velocity zero) at a lower cost.
//!
//! ```
//! use agox_atoms::optimize::{relax, RelaxOptions};
//! # use agox_atoms::{Atoms, Calculator, CalcError, Evaluation};
//! # struct Spring;
//! # impl Calculator for Spring {
//! #     fn name(&self) -> &'static str { "spring" }
//! #     fn calculate(&mut self, a: &Atoms, _: bool) -> Result<Evaluation, CalcError> {
//! #         let forces: Vec<[f64; 3]> = a.positions.iter().map(|p| [-p[0], -p[1], -p[2]]).collect();
//! #         let energy = a.positions.iter().map(|p| 0.5 * (p[0] * p[0] + p[1] * p[1] + p[2] * p[2])).sum();
//! #         Ok(Evaluation { energy, forces, stress: None, energies: None })
//! #     }
//! # }
//! let mut atoms = Atoms { numbers: vec![1], positions: vec![[0.3, 0.0, 0.0]], ..Default::default() };
//! let result = relax(&mut atoms, &mut Spring, &RelaxOptions::default()).unwrap();
//! assert!(result.converged && result.fmax < 0.05);
//! ```

mod bfgs;
mod constraint;
mod fire;

pub use bfgs::{Bfgs, BfgsParams};
pub use constraint::{BoxConstraint, BoxError};
pub use fire::{Fire, FireParams};

use crate::atoms::Atoms;
use crate::calc::{CalcError, Calculator, Evaluation};

/// Which local optimizer to run, with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum OptimizerKind {
    /// ASE's `BFGS` (dense Hessian, eigen step, no line search).
    Bfgs(BfgsParams),
    /// ASE's `FIRE`.
    Fire(FireParams),
}

impl Default for OptimizerKind {
    /// BFGS with ASE's defaults.
    fn default() -> Self {
        OptimizerKind::Bfgs(BfgsParams::default())
    }
}

/// What to relax to, how, and under which constraint.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RelaxOptions {
    /// Convergence: every atom's force norm below this (eV/Å).
    pub fmax: f64,
    /// Largest number of position updates.
    pub steps: usize,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Optional box that confines some of the atoms.
    pub confinement: Option<BoxConstraint>,
}

impl Default for RelaxOptions {
    /// `fmax = 0.05`, `steps = 200` (AGOX's relaxation defaults), BFGS, no box.
    fn default() -> Self {
        Self {
            fmax: 0.05,
            steps: 200,
            optimizer: OptimizerKind::default(),
            confinement: None,
        }
    }
}

/// What the per-step callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepControl {
    /// Go on.
    Continue,
    /// Stop now; [`relax`] returns the current state with `stopped` set.
    Stop,
}

/// How a relaxation ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RelaxResult {
    /// The largest force norm dropped below `fmax`.
    pub converged: bool,
    /// The callback asked to stop.
    pub stopped: bool,
    /// Number of position updates made (ASE's `nsteps`).
    pub steps: usize,
    /// Largest per-atom force norm at the final positions, after the fixed-atom
    /// and box adjustments (what the convergence test used).
    pub fmax: f64,
    /// The calculator's result at the final positions (unadjusted forces).
    pub evaluation: Evaluation,
}

/// Why a relaxation could not run to an end.
#[derive(Debug, thiserror::Error)]
pub enum RelaxError {
    /// The options are unusable.
    #[error("invalid relaxation options: {0}")]
    InvalidOptions(String),
    /// A fixed-atom index does not name an atom.
    #[error("fixed atom index {index} out of range for {n_atoms} atoms")]
    FixedIndexOutOfRange {
        /// The offending index.
        index: usize,
        /// Number of atoms.
        n_atoms: usize,
    },
    /// The confinement box is unusable.
    #[error(transparent)]
    Box(#[from] BoxError),
    /// The calculator failed.
    #[error("calculator failed after {step} relaxation steps: {source}")]
    Calculator {
        /// Position updates made before the failing call.
        step: usize,
        /// The calculator's error.
        source: CalcError,
    },
    /// The calculator returned the wrong number of force rows.
    #[error("calculator returned {got} force rows for {n_atoms} atoms")]
    ForceCount {
        /// Rows returned.
        got: usize,
        /// Atoms in the structure.
        n_atoms: usize,
    },
    /// Energy, forces or the computed step were not finite.
    #[error("non-finite energy, forces or step after {step} relaxation steps")]
    NonFinite {
        /// Position updates made.
        step: usize,
    },
}

/// Relaxes `atoms` in place with `calc`; see [`relax_with`] for a per-step callback.
pub fn relax(
    atoms: &mut Atoms,
    calc: &mut dyn Calculator,
    opts: &RelaxOptions,
) -> Result<RelaxResult, RelaxError> {
    relax_with(atoms, calc, opts, |_, _, _| StepControl::Continue)
}

/// Relaxes `atoms` in place with `calc`, calling `callback(step, atoms, evaluation)`
/// once for the starting point (step 0) and once after every position update
/// (as ASE's observers are), before the convergence test. Useful for
/// trajectories; returning [`StepControl::Stop`] ends the run.
pub fn relax_with<F>(
    atoms: &mut Atoms,
    calc: &mut dyn Calculator,
    opts: &RelaxOptions,
    mut callback: F,
) -> Result<RelaxResult, RelaxError>
where
    F: FnMut(usize, &Atoms, &Evaluation) -> StepControl,
{
    let n_atoms = atoms.len();
    if atoms.positions.len() != n_atoms {
        return Err(RelaxError::InvalidOptions(format!(
            "structure has {} numbers but {} positions",
            n_atoms,
            atoms.positions.len()
        )));
    }
    if !(opts.fmax.is_finite() && opts.fmax > 0.0) {
        return Err(RelaxError::InvalidOptions(format!(
            "fmax must be positive and finite, got {}",
            opts.fmax
        )));
    }
    let maxstep = match opts.optimizer {
        OptimizerKind::Bfgs(p) => {
            if !(p.alpha.is_finite() && p.alpha > 0.0) {
                return Err(RelaxError::InvalidOptions(format!(
                    "BFGS alpha must be positive, got {}",
                    p.alpha
                )));
            }
            p.maxstep
        }
        OptimizerKind::Fire(p) => {
            if !(p.dt.is_finite() && p.dt > 0.0 && p.dtmax.is_finite() && p.dtmax > 0.0) {
                return Err(RelaxError::InvalidOptions(format!(
                    "FIRE dt and dtmax must be positive, got {} and {}",
                    p.dt, p.dtmax
                )));
            }
            p.maxstep
        }
    };
    if !(maxstep.is_finite() && maxstep > 0.0) {
        return Err(RelaxError::InvalidOptions(format!(
            "maxstep must be positive and finite, got {maxstep}"
        )));
    }

    // Moving atoms: everything not fixed.
    let mut is_fixed = vec![false; n_atoms];
    for &i in &atoms.fixed {
        *is_fixed
            .get_mut(i)
            .ok_or(RelaxError::FixedIndexOutOfRange { index: i, n_atoms })? = true;
    }
    let free: Vec<usize> = (0..n_atoms).filter(|&i| !is_fixed[i]).collect();
    // Per moving atom: is it confined?
    let (frame, confined) = match &opts.confinement {
        Some(b) => {
            let frame = b.frame()?;
            let mut in_box = vec![false; n_atoms];
            for &i in &b.indices {
                *in_box
                    .get_mut(i)
                    .ok_or(BoxError::IndexOutOfRange { index: i, n_atoms })? = true;
            }
            (Some(frame), free.iter().map(|&i| in_box[i]).collect())
        }
        None => (None, vec![false; free.len()]),
    };

    let n_dof = 3 * free.len();
    let mut engine = match opts.optimizer {
        OptimizerKind::Bfgs(p) => Engine::Bfgs(Bfgs::new(p, n_dof)),
        OptimizerKind::Fire(p) => Engine::Fire(Fire::new(p, n_dof)),
    };
    let mut x = vec![0.0; n_dof];
    let mut f = vec![0.0; n_dof];
    let mut dx = vec![0.0; n_dof];

    let mut step = 0;
    loop {
        let evaluation = calc
            .calculate(atoms, false)
            .map_err(|source| RelaxError::Calculator { step, source })?;
        if evaluation.forces.len() != n_atoms {
            return Err(RelaxError::ForceCount {
                got: evaluation.forces.len(),
                n_atoms,
            });
        }
        if !evaluation.energy.is_finite()
            || evaluation.forces.iter().flatten().any(|v| !v.is_finite())
        {
            return Err(RelaxError::NonFinite { step });
        }
        // Adjusted forces of the moving atoms, and fmax over them.
        let mut fmax2 = 0.0f64;
        for (k, &i) in free.iter().enumerate() {
            let fk = &mut f[3 * k..3 * k + 3];
            fk.copy_from_slice(&evaluation.forces[i]);
            if let (Some(frame), true) = (&frame, confined[k]) {
                frame.adjust_force(atoms.positions[i], fk);
            }
            fmax2 = fmax2.max(fk[0] * fk[0] + fk[1] * fk[1] + fk[2] * fk[2]);
        }
        let fmax = fmax2.sqrt();

        let control = callback(step, atoms, &evaluation);
        let converged = fmax < opts.fmax;
        let stopped = control == StepControl::Stop;
        if converged || stopped || step >= opts.steps {
            return Ok(RelaxResult {
                converged,
                stopped,
                steps: step,
                fmax,
                evaluation,
            });
        }

        for (k, &i) in free.iter().enumerate() {
            x[3 * k..3 * k + 3].copy_from_slice(&atoms.positions[i]);
        }
        match &mut engine {
            Engine::Bfgs(b) => b.step(&x, &f, &mut dx),
            Engine::Fire(fire) => fire.step(&f, &mut dx),
        }
        if dx.iter().any(|v| !v.is_finite()) {
            return Err(RelaxError::NonFinite { step });
        }
        for (k, &i) in free.iter().enumerate() {
            let old = atoms.positions[i];
            let mut new = [
                old[0] + dx[3 * k],
                old[1] + dx[3 * k + 1],
                old[2] + dx[3 * k + 2],
            ];
            if let (Some(frame), true) = (&frame, confined[k]) {
                frame.adjust_position(&old, &mut new);
            }
            atoms.positions[i] = new;
        }
        step += 1;
    }
}

/// The optimizer state of one run.
enum Engine {
    Bfgs(Bfgs),
    Fire(Fire),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
