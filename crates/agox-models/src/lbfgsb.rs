//! Bounded quasi-Newton minimization with scipy's `fmin_l_bfgs_b` semantics and
//! defaults (history m = 10, factr = 1e7, pgtol = 1e-5), on the `rcompat-lbfgsb`
//! crate: a clean-room pure-Rust L-BFGS-B (generalized Cauchy point, subspace
//! minimization, Moré–Thuente line search) validated against R's `optim`, which
//! runs the same Byrd–Lu–Nocedal–Zhu algorithm as scipy. Variables whose lower
//! and upper bounds coincide stay pinned, as in scipy.
//!
//! The crate asks for the value and the gradient through two callbacks at the
//! same point; [`minimize`] takes one function returning both and evaluates it
//! once per point.

use std::cell::RefCell;

use rcompat_lbfgsb::{optim_lbfgsb_with_gradient, Bounds, OptimControl, OptimError};

/// L-BFGS-B settings; [`Default`] gives scipy's defaults with AGOX's iteration cap.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LbfgsbSettings {
    /// Largest number of iterations (AGOX's `optimizer_maxiter = 100`).
    pub max_iterations: usize,
    /// Correction pairs kept (scipy `m = 10`).
    pub history: usize,
    /// Stop when the relative decrease of f is below `factr · ε` (scipy `factr = 1e7`).
    pub factr: f64,
    /// Stop when the largest projected-gradient component is below this (scipy `pgtol = 1e-5`).
    pub pgtol: f64,
}

impl Default for LbfgsbSettings {
    fn default() -> Self {
        Self {
            max_iterations: 100,
            history: 10,
            factr: 1e7,
            pgtol: 1e-5,
        }
    }
}

/// Where a minimization ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Minimum {
    /// The minimizer found.
    pub x: Vec<f64>,
    /// f there.
    pub f: f64,
    /// Function (and gradient) evaluations.
    pub evaluations: usize,
    /// True when a convergence test (factr or pgtol) stopped it, false when the
    /// iteration cap or a line-search failure did (scipy's `warnflag` ≠ 0; the
    /// point is still the best found, and AGOX uses it either way).
    pub converged: bool,
    /// The optimizer's own words on how it ended.
    pub message: String,
}

/// Why a minimization could not run.
#[derive(Debug, thiserror::Error)]
pub enum MinimizeError<E: std::error::Error + 'static> {
    /// The objective failed.
    #[error(transparent)]
    Objective(E),
    /// The objective returned a non-finite value or gradient.
    #[error("the objective is not finite at {x:?}")]
    NonFinite {
        /// Where.
        x: Vec<f64>,
    },
    /// The inputs (start, bounds, settings) are unusable.
    #[error("L-BFGS-B: {0}")]
    Setup(String),
}

/// The objective with the last point it was evaluated at.
struct Cached<F, E: std::error::Error + 'static> {
    f: F,
    x: Vec<f64>,
    value: f64,
    gradient: Vec<f64>,
    evaluations: usize,
    /// The first failure; later calls return NaN so the optimizer stops.
    failure: Option<MinimizeError<E>>,
}

/// Minimizes `f` (returning value and gradient) from `x0` within `lower ≤ x ≤ upper`.
pub fn minimize<F, E>(
    f: F,
    x0: &[f64],
    lower: &[f64],
    upper: &[f64],
    settings: &LbfgsbSettings,
) -> Result<Minimum, MinimizeError<E>>
where
    F: FnMut(&[f64]) -> Result<(f64, Vec<f64>), E>,
    E: std::error::Error + 'static,
{
    let n = x0.len();
    let bounds = Bounds::new(lower.to_vec(), upper.to_vec())
        .map_err(|e| MinimizeError::Setup(e.to_string()))?;
    let mut control = OptimControl::default_for_dimension(n);
    control.maxit = settings.max_iterations;
    control.lmm = settings.history;
    control.factr = settings.factr;
    control.pgtol = settings.pgtol;
    let state = RefCell::new(Cached {
        f,
        x: Vec::new(),
        value: f64::NAN,
        gradient: Vec::new(),
        evaluations: 0,
        failure: None,
    });
    let at = |x: &[f64]| {
        let mut s = state.borrow_mut();
        if s.x.as_slice() != x && s.failure.is_none() {
            s.evaluations += 1;
            match (s.f)(x) {
                Ok((v, g)) if v.is_finite() && g.len() == n && g.iter().all(|c| c.is_finite()) => {
                    s.value = v;
                    s.gradient = g;
                }
                Ok(_) => {
                    s.failure = Some(MinimizeError::NonFinite { x: x.to_vec() });
                    s.value = f64::NAN;
                }
                Err(e) => {
                    s.failure = Some(MinimizeError::Objective(e));
                    s.value = f64::NAN;
                }
            }
            s.x = x.to_vec();
        }
    };
    let result = optim_lbfgsb_with_gradient(
        x0.to_vec(),
        bounds,
        |x| {
            at(x);
            state.borrow().value
        },
        |x| {
            at(x);
            let s = state.borrow();
            if s.failure.is_some() {
                vec![f64::NAN; n]
            } else {
                s.gradient.clone()
            }
        },
        control,
    );
    let state = state.into_inner();
    if let Some(failure) = state.failure {
        return Err(failure);
    }
    let r = result.map_err(|e: OptimError| MinimizeError::Setup(e.to_string()))?;
    Ok(Minimum {
        converged: r.convergence == 0,
        x: r.par,
        f: r.value,
        evaluations: state.evaluations,
        message: r.message,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("refused at {0}")]
    struct Refused(f64);

    fn rosenbrock(x: &[f64]) -> Result<(f64, Vec<f64>), Refused> {
        let (a, b) = (x[0], x[1]);
        let f = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
        Ok((
            f,
            vec![
                -2.0 * (1.0 - a) - 400.0 * a * (b - a * a),
                200.0 * (b - a * a),
            ],
        ))
    }

    #[test]
    fn unconstrained_rosenbrock_reaches_its_minimum() {
        let s = LbfgsbSettings {
            max_iterations: 1000,
            ..Default::default()
        };
        let m = minimize(rosenbrock, &[-1.2, 1.0], &[-10.0, -10.0], &[10.0, 10.0], &s).unwrap();
        assert!(m.converged, "{}", m.message);
        assert!(
            (m.x[0] - 1.0).abs() < 1e-4 && (m.x[1] - 1.0).abs() < 1e-4,
            "{:?}",
            m.x
        );
    }

    #[test]
    fn active_bound_rosenbrock_stops_on_the_bound() {
        // With x0 ≤ 0.5 the minimum lies on the bound: x = (0.5, 0.25), f = 0.25.
        let s = LbfgsbSettings {
            max_iterations: 1000,
            ..Default::default()
        };
        let m = minimize(rosenbrock, &[-1.2, 1.0], &[-2.0, -2.0], &[0.5, 2.0], &s).unwrap();
        assert_eq!(m.x[0], 0.5);
        assert!(
            (m.x[1] - 0.25).abs() < 1e-5 && (m.f - 0.25).abs() < 1e-8,
            "{:?} {}",
            m.x,
            m.f
        );
    }

    #[test]
    fn pinned_variables_stay_put_and_the_rest_converges() {
        // f = Σ (x_i − i)², x_1 pinned at 3, x_2 bounded above by 1.
        let f = |x: &[f64]| -> Result<(f64, Vec<f64>), Refused> {
            let v = x
                .iter()
                .enumerate()
                .map(|(i, v)| (v - i as f64).powi(2))
                .sum();
            Ok((
                v,
                x.iter()
                    .enumerate()
                    .map(|(i, v)| 2.0 * (v - i as f64))
                    .collect(),
            ))
        };
        let m = minimize(
            f,
            &[5.0, 3.0, 0.0, 1.0],
            &[-10.0, 3.0, -10.0, -10.0],
            &[10.0, 3.0, 1.0, 10.0],
            &LbfgsbSettings::default(),
        )
        .unwrap();
        assert!(m.converged);
        assert_eq!(m.x[1], 3.0);
        assert_eq!(m.x[2], 1.0);
        assert!(
            m.x[0].abs() < 1e-6 && (m.x[3] - 3.0).abs() < 1e-6,
            "{:?}",
            m.x
        );
    }

    #[test]
    fn iteration_cap_is_honoured_and_reported() {
        let s = LbfgsbSettings {
            max_iterations: 3,
            ..Default::default()
        };
        let m = minimize(rosenbrock, &[-1.2, 1.0], &[-10.0, -10.0], &[10.0, 10.0], &s).unwrap();
        assert!(!m.converged);
        assert!(m.evaluations < 20);
    }

    #[test]
    fn objective_errors_come_back_as_they_were() {
        let f = |x: &[f64]| -> Result<(f64, Vec<f64>), Refused> {
            if x[0] > 0.5 {
                Err(Refused(x[0]))
            } else {
                Ok(((x[0] - 1.0).powi(2), vec![2.0 * (x[0] - 1.0)]))
            }
        };
        let e = minimize(f, &[0.0], &[-5.0], &[5.0], &LbfgsbSettings::default()).unwrap_err();
        assert!(matches!(e, MinimizeError::Objective(Refused(_))), "{e}");
        let nan = |_: &[f64]| -> Result<(f64, Vec<f64>), Refused> { Ok((f64::NAN, vec![0.0])) };
        assert!(matches!(
            minimize(nan, &[0.0], &[-5.0], &[5.0], &LbfgsbSettings::default()),
            Err(MinimizeError::NonFinite { .. })
        ));
    }
}
