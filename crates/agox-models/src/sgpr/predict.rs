//! The trained state and prediction from a structure's centre features:
//!
//! ```text
//! k_c     = k(X_m, x_c)                                   (M per centre)
//! E       = Σ_c k_cᵀα + mean                               (no prior, no single-atom energies)
//! ε_c     = k_cᵀα                                          (local energies, no mean)
//! σ²      = Σ_cc' k(x_c, x_c') + sᵀ D s,   s = Σ_c k_c,  D = C⁻¹ − (K_mm + unc_jitter·I)⁻¹
//! ∂E/∂x_c = Σ_m α_m s_mc (X_m − x_c)                       (α contracted first)
//! ∂σ/∂x_c = (1/σ) [Σ_m (D s)_m s_mc (X_m − x_c) + Σ_c' s_cc' (x_c' − x_c)]
//! ```
//!
//! σ² is AGOX's sum of the full centre covariance, `k0 − kᵀK_mm⁻¹k + kᵀC⁻¹k`
//! summed over every pair of centres, which is bilinear in the kernel vectors and
//! so needs only their sum `s`: one product with the packed `D` per structure.
//! Where rounding makes σ² negative, σ is 0 and so is its gradient (AGOX returns
//! NaN). Both gradients come from one product `Wᵀ X_m` with the weights
//! `W_mc = (a·α_m + b·(D s)_m/σ)·s_mc`, so the LCB's `E − κσ` costs one pass.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};

use super::data::shape;
use super::dense::{kernel_block, packed_row, packed_symmetric_matvec, row_norms, rows};
use super::SparseError;
use crate::descriptor::FeatureSet;
use crate::isotropic::{IsotropicKernel, KernelProfile};
use crate::kernel::squared_distance;

/// A trained sparse GP: all prediction needs. Sent to the workers after training.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "RawPredictor<K>")]
#[serde(bound(deserialize = "K: IsotropicKernel"))]
pub struct Predictor<K> {
    kernel: K,
    n_features: usize,
    /// Inducing points X_m, row-major M × F.
    inducing: Vec<f64>,
    /// α, one per inducing point.
    alpha: Vec<f64>,
    /// Centring constant added to every energy.
    mean: f64,
    /// D = C⁻¹ − (K_mm + unc_jitter·I)⁻¹, lower triangle packed by rows, when
    /// the uncertainty was trained.
    variance: Option<Vec<f64>>,
    /// ‖X_m‖², derived.
    #[serde(skip)]
    norms: Vec<f64>,
    /// X_m column-major, derived: the product with a structure's features reads
    /// it without the strided packing a row-major operand needs.
    #[serde(skip)]
    inducing_cols: Mat<f64>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPredictor<K> {
    kernel: K,
    n_features: usize,
    inducing: Vec<f64>,
    alpha: Vec<f64>,
    mean: f64,
    variance: Option<Vec<f64>>,
}

impl<K: IsotropicKernel> TryFrom<RawPredictor<K>> for Predictor<K> {
    type Error = SparseError;
    fn try_from(r: RawPredictor<K>) -> Result<Self, SparseError> {
        Predictor::new(
            r.kernel,
            r.n_features,
            r.inducing,
            r.alpha,
            r.mean,
            r.variance,
        )
    }
}

/// Energy and σ of one structure from the GP (no prior, no single-atom energies).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StructurePrediction {
    /// Σ_c k_cᵀα + mean.
    pub energy: f64,
    /// σ, when asked for.
    pub sigma: Option<f64>,
}

/// Buffers of a prediction; keep one per caller.
#[derive(Debug)]
pub struct PredictWorkspace {
    x_norms: Vec<f64>,
    k: Mat<f64>,
    factors: Mat<f64>,
    sum: Vec<f64>,
    d_sum: Vec<f64>,
    weights: Mat<f64>,
    gradient: Mat<f64>,
}

impl Default for PredictWorkspace {
    fn default() -> Self {
        PredictWorkspace {
            k: Mat::new(),
            factors: Mat::new(),
            weights: Mat::new(),
            gradient: Mat::new(),
            x_norms: Default::default(),
            sum: Default::default(),
            d_sum: Default::default(),
        }
    }
}

impl PredictWorkspace {
    /// ∂/∂x_c of the combination asked for in the last [`Predictor::gradient`]
    /// call, for centre `c`.
    pub fn centre_gradient(&self, c: usize) -> &[f64] {
        self.gradient.col_as_slice(c)
    }
}

impl<K: IsotropicKernel> Predictor<K> {
    /// A predictor from its parts, checked.
    pub fn new(
        kernel: K,
        n_features: usize,
        inducing: Vec<f64>,
        alpha: Vec<f64>,
        mean: f64,
        variance: Option<Vec<f64>>,
    ) -> Result<Self, SparseError> {
        crate::isotropic::validate_log_theta(kernel.log_theta(), kernel.log_bounds())?;
        let m = alpha.len();
        if n_features == 0 || m == 0 || inducing.len() != m * n_features {
            return Err(shape(format!(
                "predictor with {m} weights, {} inducing values and {n_features} features",
                inducing.len()
            )));
        }
        if let Some(v) = &variance {
            if v.len() != packed_row(m) {
                return Err(shape(format!(
                    "uncertainty matrix of {} values for {m} inducing points",
                    v.len()
                )));
            }
        }
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        if !(finite(&inducing)
            && finite(&alpha)
            && mean.is_finite()
            && variance.as_deref().is_none_or(finite))
        {
            return Err(shape("non-finite values in the predictor".into()));
        }
        Ok(Predictor {
            norms: row_norms(&inducing, n_features),
            inducing_cols: rows(&inducing, n_features).to_owned(),
            kernel,
            n_features,
            inducing,
            alpha,
            mean,
            variance,
        })
    }

    /// The kernel at the trained θ.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// α.
    pub fn alpha(&self) -> &[f64] {
        &self.alpha
    }

    /// Inducing points, row-major.
    pub fn inducing(&self) -> &[f64] {
        &self.inducing
    }

    /// The centring constant.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Features per centre.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// D = C⁻¹ − (K_mm + unc_jitter·I)⁻¹, lower triangle packed by rows (row i
    /// holds D_i0 … D_ii), when the uncertainty was trained.
    pub fn variance_matrix(&self) -> Option<&[f64]> {
        self.variance.as_deref()
    }

    /// Whether σ is available.
    pub fn has_uncertainty(&self) -> bool {
        self.variance.is_some()
    }

    fn check_x(&self, x: &[f64]) -> Result<usize, SparseError> {
        if x.is_empty() || !x.len().is_multiple_of(self.n_features) {
            return Err(shape(format!(
                "{} feature values for centres of {} features",
                x.len(),
                self.n_features
            )));
        }
        Ok(x.len() / self.n_features)
    }

    /// k(X_m, x_c) for every centre into `ws.k` (and the gradient factors).
    fn kernel_vectors(&self, x: &[f64], factors: bool, ws: &mut PredictWorkspace) {
        let f = self.n_features;
        ws.x_norms.clear();
        ws.x_norms.extend(row_norms(x, f));
        kernel_block(
            &self.kernel.profile(),
            self.inducing_cols.as_ref(),
            &self.norms,
            rows(x, f),
            &ws.x_norms,
            &mut ws.k,
            factors.then_some(&mut ws.factors),
        );
    }

    /// Local energies `k_cᵀα` of the centres `x` (`n_centers × n_features`,
    /// row-major) into `out`; no mean.
    pub fn local_energies(
        &self,
        x: &[f64],
        ws: &mut PredictWorkspace,
        out: &mut Vec<f64>,
    ) -> Result<(), SparseError> {
        let n_c = self.check_x(x)?;
        self.kernel_vectors(x, false, ws);
        out.clear();
        out.extend((0..n_c).map(|c| dot(ws.k.col_as_slice(c), &self.alpha)));
        Ok(())
    }

    /// E (and σ with `sigma`) of the structure with centre features `x`.
    pub fn predict(
        &self,
        x: &[f64],
        sigma: bool,
        ws: &mut PredictWorkspace,
    ) -> Result<StructurePrediction, SparseError> {
        let n_c = self.check_x(x)?;
        self.kernel_vectors(x, false, ws);
        self.energy_and_sigma(x, n_c, sigma, ws)
    }

    /// E, σ when `sigma` (or `sigma_weight` ≠ 0), and the feature gradient of
    /// `energy_weight·E + sigma_weight·σ` into `ws` ([`PredictWorkspace::centre_gradient`]).
    pub fn gradient(
        &self,
        x: &[f64],
        energy_weight: f64,
        sigma_weight: f64,
        sigma: bool,
        ws: &mut PredictWorkspace,
    ) -> Result<StructurePrediction, SparseError> {
        let n_c = self.check_x(x)?;
        let with_sigma = sigma || sigma_weight != 0.0;
        self.kernel_vectors(x, true, ws);
        let pred = self.energy_and_sigma(x, n_c, with_sigma, ws)?;
        let f = self.n_features;
        let m = self.alpha.len();
        // σ's weight per unit of (D s)_m and of the centre–centre term.
        let s_scale = match pred.sigma {
            Some(s) if s > 0.0 => sigma_weight / s,
            _ => 0.0,
        };
        super::dense::shape_to(&mut ws.weights, m, n_c);
        for c in 0..n_c {
            let (w, s) = (ws.weights.col_as_slice_mut(c), ws.factors.col_as_slice(c));
            if s_scale == 0.0 {
                for ((w, s), a) in w.iter_mut().zip(s).zip(&self.alpha) {
                    *w = energy_weight * a * s;
                }
            } else {
                for (((w, s), a), ds) in w.iter_mut().zip(s).zip(&self.alpha).zip(&ws.d_sum) {
                    *w = (energy_weight * a + s_scale * ds) * s;
                }
            }
        }
        // Column c of G = X_mᵀ W − x_c Σ_m W_mc: ∂/∂x_c, contiguous.
        super::dense::shape_to(&mut ws.gradient, f, n_c);
        matmul(
            ws.gradient.as_mut(),
            Accum::Replace,
            rows(&self.inducing, f).transpose(),
            ws.weights.as_ref(),
            1.0,
            Par::Seq,
        );
        let profile = self.kernel.profile();
        for c in 0..n_c {
            let total: f64 = ws.weights.col_as_slice(c).iter().sum();
            let xc = &x[c * f..(c + 1) * f];
            let g = ws.gradient.col_as_slice_mut(c);
            for (gj, xj) in g.iter_mut().zip(xc) {
                *gj -= total * xj;
            }
            if s_scale != 0.0 {
                // Σ_c' s_cc' (x_c' − x_c), the centre–centre part of σ².
                for c2 in (0..n_c).filter(|&c2| c2 != c) {
                    let x2 = &x[c2 * f..(c2 + 1) * f];
                    let (_, s) = profile.value_and_factor(squared_distance(xc, x2));
                    let w = s_scale * s;
                    for ((gj, a), b) in g.iter_mut().zip(x2).zip(xc) {
                        *gj += w * (a - b);
                    }
                }
            }
        }
        Ok(pred)
    }

    /// E (σ with `sigma`) of the structure whose features and gradient are
    /// `features`, and the forces `−∂(energy_weight·E + sigma_weight·σ)/∂r` of
    /// the GP part into `forces` (one row per atom, overwritten): the feature
    /// gradient of [`Predictor::gradient`] through ∂x_c/∂r.
    pub fn forces(
        &self,
        features: &FeatureSet,
        energy_weight: f64,
        sigma_weight: f64,
        sigma: bool,
        ws: &mut PredictWorkspace,
        forces: &mut Vec<[f64; 3]>,
    ) -> Result<StructurePrediction, SparseError> {
        if !features.has_gradient() {
            return Err(shape("forces need the descriptor's gradient".into()));
        }
        let pred = self.gradient(features.features(), energy_weight, sigma_weight, sigma, ws)?;
        forces.clear();
        forces.resize(features.n_atoms(), [0.0; 3]);
        pulp::Arch::new().dispatch(Contract {
            features,
            gradient: &ws.gradient,
            forces,
        });
        Ok(pred)
    }

    /// E and σ from the kernel vectors in `ws.k`; leaves `D s` in `ws.d_sum`.
    fn energy_and_sigma(
        &self,
        x: &[f64],
        n_c: usize,
        sigma: bool,
        ws: &mut PredictWorkspace,
    ) -> Result<StructurePrediction, SparseError> {
        let m = self.alpha.len();
        ws.sum.clear();
        ws.sum.resize(m, 0.0);
        for c in 0..n_c {
            for (s, k) in ws.sum.iter_mut().zip(ws.k.col_as_slice(c)) {
                *s += k;
            }
        }
        let energy = dot(&ws.sum, &self.alpha) + self.mean;
        if !sigma {
            return Ok(StructurePrediction {
                energy,
                sigma: None,
            });
        }
        let d = self.variance.as_ref().ok_or(SparseError::NoUncertainty)?;
        ws.d_sum.resize(m, 0.0);
        packed_symmetric_matvec(d, &ws.sum, &mut ws.d_sum);
        let f = self.n_features;
        let p = self.kernel.profile();
        let mut k00 = 0.0;
        for c in 0..n_c {
            k00 += p.k0();
            for c2 in 0..c {
                k00 += 2.0
                    * p.value(squared_distance(
                        &x[c * f..(c + 1) * f],
                        &x[c2 * f..(c2 + 1) * f],
                    ));
            }
        }
        let var = k00 + dot(&ws.sum, &ws.d_sum);
        Ok(StructurePrediction {
            energy,
            sigma: Some(var.max(0.0).sqrt()),
        })
    }
}

/// `forces[a][x] = −Σ_c ∂x_c/∂r_{a,x} · g_c`, compiled for the CPU's vector width.
struct Contract<'a> {
    features: &'a FeatureSet,
    gradient: &'a Mat<f64>,
    forces: &'a mut [[f64; 3]],
}

impl pulp::WithSimd for Contract<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let Contract {
            features,
            gradient,
            forces,
        } = self;
        for c in 0..features.n_centers() {
            let g = gradient.col_as_slice(c);
            for (a, out) in forces.iter_mut().enumerate() {
                for (x, o) in out.iter_mut().enumerate() {
                    *o -= dot(features.gradient_row(c, a, x), g);
                }
            }
        }
    }
}

#[inline(always)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    crate::gpr::linalg::dot(a, b)
}
