//! The log marginal likelihood and its gradient with respect to log θ, as AGOX's
//! `GPR._log_marginal_likelihood_gradient` (sklearn's formulas):
//!
//! ```text
//! log P = −½ yᵀα − Σ ln L_ii − N/2 ln 2π,       α = K⁻¹y, K = L Lᵀ
//! ∂ log P/∂θ_p = ½ Σ_ij (α_i α_j − K⁻¹_ij) ∂K_ij/∂θ_p
//! ```
//!
//! The squared distances between training rows are computed once per row and
//! kept (a new row costs one pass over the old ones); an evaluation then costs
//! two `exp` per pair, a Cholesky factorization, the inverse from it and four
//! fused traces — no N×N×6 gradient tensor is ever built.

use super::linalg::{cholesky, cholesky_inverse, cholesky_solve, Scratch};
use super::{GprError, TrainingData};
use crate::kernel::{squared_distance, Hyper, Kernel, N_THETA};

/// Squared distances of the training rows and the buffers of one evaluation.
/// Derived data: a clone or a deserialized model starts empty and rebuilds it.
#[derive(Debug, Default)]
pub(crate) struct LmlCache {
    /// Rows covered by `d`.
    n: usize,
    /// ‖x_i − x_j‖², full symmetric n × n.
    d: Vec<f64>,
    /// Centred targets and their mean.
    pub y: Vec<f64>,
    pub mean: f64,
    /// K, then L in its lower triangle (column-major n × n).
    pub k: Vec<f64>,
    /// The two RBF values per pair (lower triangle, column-major).
    rbf1: Vec<f64>,
    rbf2: Vec<f64>,
    /// Lower triangle of K⁻¹.
    kinv: Vec<f64>,
    /// α = K⁻¹ y.
    pub alpha: Vec<f64>,
    pub scratch: Scratch,
}

impl Clone for LmlCache {
    fn clone(&self) -> Self {
        LmlCache::default()
    }
}

impl LmlCache {
    /// Brings the distances up to date with `data`, which must extend the rows
    /// seen so far (or be shorter, which starts afresh), and recentres the targets.
    pub fn sync(&mut self, data: &TrainingData) {
        let m = data.len();
        if m < self.n {
            self.n = 0;
            self.d.clear();
        }
        if m > self.n {
            let old = self.n;
            let mut d = vec![0.0; m * m];
            for i in 0..old {
                d[i * m..i * m + old].copy_from_slice(&self.d[i * old..(i + 1) * old]);
            }
            for i in old..m {
                for j in 0..=i {
                    let v = squared_distance(data.row(i), data.row(j));
                    d[i * m + j] = v;
                    d[j * m + i] = v;
                }
            }
            self.d = d;
            self.n = m;
        }
        let t = data.targets();
        self.mean = if t.is_empty() {
            0.0
        } else {
            t.iter().sum::<f64>() / t.len() as f64
        };
        self.y.clear();
        self.y.extend(t.iter().map(|v| v - self.mean));
    }

    /// Number of rows the cache covers.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Fills K (lower triangle; with `parts`, also the two RBFs) and factors it;
    /// then α. Returns Σ ln L_ii.
    pub fn factor(&mut self, h: &Hyper, parts: bool) -> Result<f64, GprError> {
        let n = self.n;
        for buf in [&mut self.k, &mut self.kinv, &mut self.rbf1, &mut self.rbf2] {
            if buf.len() != n * n {
                buf.clear();
                buf.resize(n * n, 0.0);
            }
        }
        for j in 0..n {
            let col = j * n;
            for (i, &d) in self.d[col + j..col + n].iter().enumerate() {
                let p = h.parts(d);
                self.k[col + j + i] = h.value(p);
                if parts {
                    self.rbf1[col + j + i] = p.rbf1;
                    self.rbf2[col + j + i] = p.rbf2;
                }
            }
            self.k[col + j] += h.noise;
        }
        cholesky(&mut self.k, n, &mut self.scratch)
            .map_err(|index| GprError::NotPositiveDefinite { index, n })?;
        self.alpha.clear();
        self.alpha.extend_from_slice(&self.y);
        cholesky_solve(&self.k, n, &mut self.alpha, &mut self.scratch);
        Ok((0..n).map(|i| self.k[i * n + i].ln()).sum())
    }

    /// log P at θ, and its gradient with respect to θ when `gradient` is true.
    pub fn evaluate(
        &mut self,
        kernel: &Kernel,
        gradient: bool,
    ) -> Result<(f64, [f64; N_THETA]), GprError> {
        let n = self.n;
        if n == 0 {
            return Err(GprError::NoData);
        }
        let h = kernel.hyper();
        let log_det_half = self.factor(&h, gradient)?;
        let fit: f64 = self.y.iter().zip(&self.alpha).map(|(y, a)| y * a).sum();
        let lml = -0.5 * fit - log_det_half - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
        if !gradient {
            return Ok((lml, [0.0; N_THETA]));
        }
        cholesky_inverse(&self.k, n, &mut self.kinv, &mut self.scratch);
        // Σ_ij W_ij ∂K_ij/∂θ with W = ααᵀ − K⁻¹, over the lower triangle (off-diagonal twice).
        let (mut s1, mut s1d, mut s2, mut s2d, mut sdiag) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for j in 0..n {
            let col = j * n;
            let aj = self.alpha[j];
            let w = aj * aj - self.kinv[col + j];
            let (r1, r2, d) = (self.rbf1[col + j], self.rbf2[col + j], self.d[col + j]);
            s1 += w * r1;
            s2 += w * r2;
            s1d += w * r1 * d;
            s2d += w * r2 * d;
            sdiag += w;
            let (mut t1, mut t1d, mut t2, mut t2d) = (0.0, 0.0, 0.0, 0.0);
            let rows = j + 1..n;
            for (((&ai, &ki), (&r1, &r2)), &d) in self.alpha[rows.clone()]
                .iter()
                .zip(&self.kinv[col + j + 1..col + n])
                .zip(
                    self.rbf1[col + j + 1..col + n]
                        .iter()
                        .zip(&self.rbf2[col + j + 1..col + n]),
                )
                .zip(&self.d[col + j + 1..col + n])
            {
                let w = ai * aj - ki;
                t1 += w * r1;
                t2 += w * r2;
                t1d += w * r1 * d;
                t2d += w * r2 * d;
            }
            s1 += 2.0 * t1;
            s2 += 2.0 * t2;
            s1d += 2.0 * t1d;
            s2d += 2.0 * t2d;
        }
        let Hyper {
            c,
            b,
            e,
            l1,
            l2,
            noise,
            ..
        } = h;
        let grad = [
            0.5 * c * (b * s1 + e * s2),
            0.5 * c * b * s1,
            0.5 * c * b * s1d / (l1 * l1),
            0.5 * c * e * s2,
            0.5 * c * e * s2d / (l2 * l2),
            0.5 * noise * sdiag,
        ];
        Ok((lml, grad))
    }
}
