//! The sparse log marginal likelihood, AGOX's `SparseGPR._log_marginal_likelihood`:
//!
//! ```text
//! K̃     = U K_j⁻¹ Uᵀ + Σ,          K_j = K_mm + unc_jitter·I,  U = L·K_nm  (N_obs × M)
//! log P = −½ log|K̃| − ½ yᵀK̃⁻¹y − ½ N_obs log 2π
//! ```
//!
//! AGOX forms the dense `N_obs × N_obs` matrix K̃ and solves it by QR. Here it is
//! never formed: with `L_j L_jᵀ = K_j` and `V = Σ^{−½} U L_j⁻ᵀ`,
//! `B = I + VᵀV` (M × M, eigenvalues ≥ 1) gives, by the matrix determinant lemma
//! and Woodbury's identity,
//!
//! ```text
//! log|K̃|   = Σ log v_o + 2 Σ log (L_B)_ii
//! yᵀK̃⁻¹y   = ‖r‖² + ‖z‖²,    z = B⁻¹ Vᵀ ŷ,  r = ŷ − V z,  ŷ = Σ^{−½} y
//! ```
//!
//! — a sum of two non-negative terms, free of the cancellation of
//! `yᵀΣ⁻¹y − (…)ᵀB⁻¹(…)`. Cost: `N_obs·M²` for `L_j⁻¹(Σ^{−½}U)ᵀ` and again for
//! `VᵀV`, two `M³/3` factorizations, against AGOX's `N_obs³`.
//!
//! A θ is **inadmissible** when `K_j` or `B` is not numerically positive
//! definite or the value is not finite: the search never selects it. (AGOX
//! returns +∞ when `slogdet`'s sign is not positive, so its argmin of −log P
//! selects exactly such a θ.) The evaluation depends on nothing but the
//! training set and θ; the workspace only holds buffers.

use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::{Mat, Par};

use super::assemble::{accumulate_gram, Projection};
use super::data::TrainingSet;
use super::dense::{cholesky, shape_to};
use super::search::{ThetaOutcome, ThetaValue};
use super::SparseError;
use crate::isotropic::IsotropicKernel;

/// Buffers of likelihood evaluations; keep one per caller.
#[derive(Debug)]
pub struct LmlWorkspace {
    projection: Projection,
    b: Mat<f64>,
}

impl Default for LmlWorkspace {
    fn default() -> Self {
        LmlWorkspace {
            b: Mat::new(),
            projection: Default::default(),
        }
    }
}

impl<K: IsotropicKernel> TrainingSet<K> {
    /// log P at θ (within the kernel's bounds), or why θ is inadmissible.
    pub fn evaluate(
        &self,
        theta: &[f64],
        ws: &mut LmlWorkspace,
    ) -> Result<ThetaOutcome, SparseError> {
        let kernel = self.kernel.at_theta(theta)?;
        let value = self.log_likelihood(&kernel, ws);
        Ok(ThetaOutcome {
            theta: theta.to_vec(),
            value,
        })
    }

    fn log_likelihood(&self, kernel: &K, ws: &mut LmlWorkspace) -> ThetaValue {
        let proj = &mut ws.projection;
        proj.compute(self, &kernel.profile(), false);
        let m = self.n_inducing();
        let n_obs = self.n_obs();
        let y = self.targets();
        let v = self.variances();

        for i in 0..m {
            proj.kmm[(i, i)] += self.unc_jitter;
        }
        let Some(lj) = cholesky(&proj.kmm) else {
            return inadmissible("K_mm + unc_jitter·I is not positive definite");
        };
        // Vᵀ = L_j⁻¹ (Σ^{−½} U)ᵀ, in place of Uᵀ (M × N_obs).
        let mut log_det = 0.0;
        for (o, vo) in v.iter().enumerate() {
            let s = 1.0 / vo.sqrt();
            for u in proj.ut.col_as_slice_mut(o) {
                *u *= s;
            }
            log_det += vo.ln();
        }
        solve_lower_triangular_in_place(lj.L(), proj.ut.as_mut(), Par::Seq);
        let vt = &proj.ut;

        shape_to(&mut ws.b, m, m);
        ws.b.fill(0.0);
        for i in 0..m {
            ws.b[(i, i)] = 1.0;
        }
        accumulate_gram(&mut ws.b, vt.as_ref());
        let Some(lb) = cholesky(&ws.b) else {
            return inadmissible("I + VᵀV is not positive definite");
        };
        let l = lb.L();
        for i in 0..m {
            log_det += 2.0 * l[(i, i)].ln();
        }

        // z = B⁻¹ Vᵀ ŷ, r = ŷ − V z.
        let y_hat: Vec<f64> = y.iter().zip(&v).map(|(y, v)| y / v.sqrt()).collect();
        let mut z = faer::Mat::<f64>::zeros(m, 1);
        for (o, yo) in y_hat.iter().enumerate() {
            for (zm, vm) in z.col_as_slice_mut(0).iter_mut().zip(vt.col_as_slice(o)) {
                *zm += vm * yo;
            }
        }
        {
            use faer::linalg::solvers::Solve;
            lb.solve_in_place(z.as_mut());
        }
        let z = z.col_as_slice(0);
        let mut fit: f64 = z.iter().map(|v| v * v).sum();
        for (o, yo) in y_hat.iter().enumerate() {
            let r = yo - crate::gpr::linalg::dot(vt.col_as_slice(o), z);
            fit += r * r;
        }
        let lml =
            -0.5 * fit - 0.5 * log_det - 0.5 * n_obs as f64 * (2.0 * std::f64::consts::PI).ln();
        if lml.is_finite() {
            ThetaValue::LogLikelihood(lml)
        } else {
            inadmissible("the log-likelihood is not finite")
        }
    }
}

fn inadmissible(reason: &str) -> ThetaValue {
    ThetaValue::Inadmissible {
        reason: reason.to_string(),
    }
}
