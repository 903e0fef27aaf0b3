//! What prediction needs besides the training rows, and the prediction itself:
//!
//! ```text
//! E(x)  = kᵀα + mean                    k_m = k(x, X_m)
//! σ²(x) = k(x, x) − kᵀK⁻¹k = k0 − ‖L⁻¹k‖²   (σ = 0 where this is ≤ 0)
//! ∂E/∂x = Σ_m α_m s_m (X_m − x)          ∂k_m/∂x = s_m (X_m − x)
//! ∂σ/∂x = −(1/σ) Σ_m (K⁻¹k)_m s_m (X_m − x)
//! ```
//!
//! Both gradients come from one pass over the training rows.

use super::linalg::{backward_packed, forward_packed};
use super::{GprError, TrainingData};
use crate::kernel::{squared_distance, Kernel};

/// A trained model's state: with the training rows, all prediction needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainedState {
    /// The kernel at the chosen θ.
    pub kernel: Kernel,
    /// Mean of the training targets (added back to every prediction).
    pub mean: f64,
    /// α = K⁻¹ (y − mean).
    pub alpha: Vec<f64>,
    /// Cholesky factor L of K, lower triangle packed by rows (row i: L_i0 … L_ii).
    pub chol: Vec<f64>,
}

impl TrainedState {
    /// Number of training rows it was fitted to.
    pub fn len(&self) -> usize {
        self.alpha.len()
    }

    /// True for a state fitted to nothing.
    pub fn is_empty(&self) -> bool {
        self.alpha.is_empty()
    }

    /// Size of the numbers it holds, in bytes: 8·(N + N(N+1)/2) plus θ, its bounds and the mean.
    pub fn payload_bytes(&self) -> usize {
        8 * (self.alpha.len() + self.chol.len() + 3 * self.kernel.theta.len() + 1)
    }

    /// Checks that the state fits `data` and is internally consistent.
    pub(crate) fn check(&self, data: &TrainingData) -> Result<(), GprError> {
        let n = self.alpha.len();
        if n != data.len() || self.chol.len() != n * (n + 1) / 2 {
            return Err(GprError::StateMismatch {
                state: n,
                chol: self.chol.len(),
                data: data.len(),
            });
        }
        Ok(())
    }
}

/// Buffers of a prediction; keep one per caller.
#[derive(Debug, Clone, Default)]
pub struct PredictWorkspace {
    k: Vec<f64>,
    v: Vec<f64>,
    s: Vec<f64>,
    grad_energy: Vec<f64>,
    grad_sigma: Vec<f64>,
}

impl PredictWorkspace {
    /// ∂E/∂x of the last [`predict_with_gradient`] call.
    pub fn energy_gradient(&self) -> &[f64] {
        &self.grad_energy
    }

    /// ∂σ/∂x of the last [`predict_with_gradient`] call (zero where σ = 0).
    pub fn sigma_gradient(&self) -> &[f64] {
        &self.grad_sigma
    }
}

/// The Gaussian process's mean (with the training mean added back, no prior)
/// and standard deviation at a feature vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpPrediction {
    /// kᵀα + mean.
    pub energy: f64,
    /// σ.
    pub sigma: f64,
}

/// k(x, X) into `ws.k` (and the feature-gradient factors into `ws.s` when
/// `factors`), then the mean and σ, leaving L⁻¹k in `ws.v`.
fn mean_and_sigma(
    state: &TrainedState,
    data: &TrainingData,
    x: &[f64],
    ws: &mut PredictWorkspace,
    factors: bool,
) -> GpPrediction {
    let h = state.kernel.hyper();
    ws.k.clear();
    ws.s.clear();
    for m in 0..data.len() {
        let p = h.parts(squared_distance(x, data.row(m)));
        ws.k.push(h.value(p));
        if factors {
            ws.s.push(h.feature_gradient_factor(p));
        }
    }
    let energy =
        ws.k.iter()
            .zip(&state.alpha)
            .map(|(k, a)| k * a)
            .sum::<f64>()
            + state.mean;
    ws.v.clear();
    ws.v.extend_from_slice(&ws.k);
    forward_packed(&state.chol, &mut ws.v);
    let var = h.k0() - ws.v.iter().map(|v| v * v).sum::<f64>();
    GpPrediction {
        energy,
        sigma: var.max(0.0).sqrt(),
    }
}

/// Mean and σ at `x`.
pub(crate) fn predict(
    state: &TrainedState,
    data: &TrainingData,
    x: &[f64],
    ws: &mut PredictWorkspace,
) -> GpPrediction {
    mean_and_sigma(state, data, x, ws, false)
}

/// Mean, σ and their gradients with respect to `x` (left in `ws`).
pub(crate) fn predict_with_gradient(
    state: &TrainedState,
    data: &TrainingData,
    x: &[f64],
    ws: &mut PredictWorkspace,
) -> GpPrediction {
    let p = mean_and_sigma(state, data, x, ws, true);
    // v ← K⁻¹k.
    backward_packed(&state.chol, &mut ws.v);
    // Weights of (X_m − x) in the two gradients.
    let sigma_scale = if p.sigma > 0.0 { -1.0 / p.sigma } else { 0.0 };
    let f = x.len();
    ws.grad_energy.clear();
    ws.grad_energy.resize(f, 0.0);
    ws.grad_sigma.clear();
    ws.grad_sigma.resize(f, 0.0);
    let (mut we_sum, mut ws_sum) = (0.0, 0.0);
    for m in 0..data.len() {
        let we = state.alpha[m] * ws.s[m];
        let wsig = sigma_scale * ws.v[m] * ws.s[m];
        we_sum += we;
        ws_sum += wsig;
        for ((ge, gs), xm) in ws
            .grad_energy
            .iter_mut()
            .zip(ws.grad_sigma.iter_mut())
            .zip(data.row(m))
        {
            *ge += we * xm;
            *gs += wsig * xm;
        }
    }
    for ((ge, gs), xf) in ws
        .grad_energy
        .iter_mut()
        .zip(ws.grad_sigma.iter_mut())
        .zip(x)
    {
        *ge -= we_sum * xf;
        *gs -= ws_sum * xf;
    }
    p
}
