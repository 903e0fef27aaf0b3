//! The kernel between the inducing points and the observations at one θ — AGOX's
//! `L·K_nm` — without forming `K_nm` or the dense summation matrix `L`:
//!
//! * an **energy observation** is the sum of its structure's centre columns,
//!   `U_s = Σ_{c ∈ s} k(X_m, x_c)`, accumulated block by block of environments
//!   (AGOX's all-ones rows of `L`);
//! * a structure's **raw force rows** are `R[(a, x), m] = Σ_c Σ_f ∂X_{c,f}/∂r_{a,x} ·
//!   ∂k(X_m, x_c)/∂x_{c,f}` (AGOX's `_get_sparse_kernel_derivative`), computed as
//!   `Σ_c s_mc (X_m·∂x_c/∂r_{a,x} − x_c·∂x_c/∂r_{a,x})` from one product per centre;
//!   the observation is AGOX's `(J − I)` block applied to them,
//!   `U_r = Σ_{r'} R_{r'} − R_r` over the structure's 3·n_atoms rows. For a
//!   translation-invariant descriptor `Σ_{r'} R_{r'}` vanishes and this is `−R_r`,
//!   the force as `−∂E/∂r`; in general it is not, and AGOX's block is kept.
//!
//! The uncertainty's `C = K_mm + K_nmᵀ Σ_loc⁻¹ K_nm + unc_jitter·I` uses the
//! unprojected rows: every environment with weight 1/σ² (σ per centre, not times
//! the centre count) and every raw force row with 1/σ_F². It is accumulated in
//! the same pass.

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{matmul as triangular_matmul, BlockStructure};
use faer::{Accum, Mat, MatRef, Par};

use super::data::TrainingSet;
use super::dense::{kernel_block, row_norms, rows, shape_to};
use crate::isotropic::{IsotropicKernel, KernelProfile};

/// Environments per block: a block's kernel columns (M × 256 at M = 1000, 2 MB)
/// stay in cache while they are summed.
const BLOCK: usize = 256;

/// The kernel at one θ between the inducing points and the observations.
#[derive(Debug)]
pub(crate) struct Projection {
    /// `Uᵀ`, M × N_obs: column o is observation o's kernel vector over the
    /// inducing points (AGOX's row o of `L·K_nm`).
    pub ut: Mat<f64>,
    /// `K_mm`, M × M, full.
    pub kmm: Mat<f64>,
    /// `K_nmᵀ Σ_loc⁻¹ K_nm` (lower triangle), when asked for.
    pub c: Option<Mat<f64>>,
    /// Scratch: one block's kernel values and gradient factors.
    block: Mat<f64>,
    factors: Mat<f64>,
    raw: Mat<f64>,
    product: Mat<f64>,
}

impl Default for Projection {
    fn default() -> Self {
        Projection {
            ut: Mat::new(),
            kmm: Mat::new(),
            block: Mat::new(),
            factors: Mat::new(),
            raw: Mat::new(),
            product: Mat::new(),
            c: Default::default(),
        }
    }
}

impl Projection {
    /// Fills `ut`, `kmm` and, with `with_c`, `c`, for `set` at the profile `p`.
    pub fn compute<K: IsotropicKernel>(
        &mut self,
        set: &TrainingSet<K>,
        p: &K::Profile,
        with_c: bool,
    ) {
        let data = &set.data;
        let f = data.n_features();
        let xm = rows(&set.inducing, f);
        let m = xm.nrows();
        let xm_norms = row_norms(&set.inducing, f);
        let xn_norms = row_norms(data.features(), f);

        kernel_block(p, xm, &xm_norms, xm, &xm_norms, &mut self.kmm, None);
        let k0 = p.k0();
        for i in 0..m {
            self.kmm[(i, i)] = k0;
        }

        shape_to(&mut self.ut, m, set.n_obs());
        self.ut.fill(0.0);
        let mut c = if with_c {
            let mut c = self.c.take().unwrap_or_else(|| Mat::zeros(m, m));
            shape_to(&mut c, m, m);
            c.fill(0.0);
            Some(c)
        } else {
            None
        };

        // Energy observations: sums of centre columns, block by block.
        let owner: Vec<usize> = data
            .centers()
            .iter()
            .enumerate()
            .flat_map(|(s, &n)| std::iter::repeat_n(s, n))
            .collect();
        let n_env = data.n_env();
        let mut start = 0;
        while start < n_env {
            let end = (start + BLOCK).min(n_env);
            let xb = rows(&data.features()[start * f..end * f], f);
            kernel_block(
                p,
                xm,
                &xm_norms,
                xb,
                &xn_norms[start..end],
                &mut self.block,
                None,
            );
            for (j, &s) in owner[start..end].iter().enumerate() {
                let dst = self.ut.col_as_slice_mut(s);
                for (u, k) in dst.iter_mut().zip(self.block.col_as_slice(j)) {
                    *u += k;
                }
            }
            if let Some(c) = c.as_mut() {
                // Σ_loc⁻¹: 1/σ² of the environment's structure.
                for (j, &s) in owner[start..end].iter().enumerate() {
                    let w = 1.0 / data.noise()[s];
                    for v in self.block.col_as_slice_mut(j) {
                        *v *= w;
                    }
                }
                accumulate_gram(c, self.block.as_ref());
            }
            start = end;
        }

        // Force observations.
        let offsets = data.offsets();
        let mut obs = data.len();
        let inv_sigma_f = 1.0 / set.sigma_f;
        for b in data.force_blocks() {
            let rows3 = 3 * b.n_atoms;
            shape_to(&mut self.raw, m, rows3);
            self.raw.fill(0.0);
            let first = offsets[b.structure];
            let n_c = offsets[b.structure + 1] - first;
            for c_idx in 0..n_c {
                let x = &data.features()[(first + c_idx) * f..(first + c_idx + 1) * f];
                kernel_block(
                    p,
                    xm,
                    &xm_norms,
                    rows(x, f),
                    &xn_norms[first + c_idx..first + c_idx + 1],
                    &mut self.block,
                    Some(&mut self.factors),
                );
                // ∂x_c/∂r, 3a × F row-major; P = X_m · (∂x_c/∂r)ᵀ (M × 3a), q = (∂x_c/∂r)·x_c.
                let grad = &b.gradient[c_idx * rows3 * f..(c_idx + 1) * rows3 * f];
                let g = MatRef::from_row_major_slice(grad, rows3, f);
                shape_to(&mut self.product, m, rows3);
                matmul(
                    self.product.as_mut(),
                    Accum::Replace,
                    xm,
                    g.transpose(),
                    1.0,
                    Par::Seq,
                );
                let s = self.factors.col_as_slice(0);
                for r in 0..rows3 {
                    let q: f64 = grad[r * f..(r + 1) * f]
                        .iter()
                        .zip(x)
                        .map(|(a, b)| a * b)
                        .sum();
                    let dst = self.raw.col_as_slice_mut(r);
                    for ((d, pm), sm) in dst.iter_mut().zip(self.product.col_as_slice(r)).zip(s) {
                        *d += sm * (pm - q);
                    }
                }
            }
            // (J − I): each observation is the block's column sum minus its own column.
            let mut total = vec![0.0; m];
            for r in 0..rows3 {
                for (t, v) in total.iter_mut().zip(self.raw.col_as_slice(r)) {
                    *t += v;
                }
            }
            for r in 0..rows3 {
                let (raw, ut) = (&self.raw, &mut self.ut);
                let dst = ut.col_as_slice_mut(obs + r);
                for ((d, t), v) in dst.iter_mut().zip(&total).zip(raw.col_as_slice(r)) {
                    *d = t - v;
                }
            }
            if let Some(c) = c.as_mut() {
                for r in 0..rows3 {
                    for v in self.raw.col_as_slice_mut(r) {
                        *v *= inv_sigma_f;
                    }
                }
                accumulate_gram(c, self.raw.as_ref());
            }
            obs += rows3;
        }
        self.c = c;
    }
}

/// `c += w wᵀ` on the lower triangle.
pub(crate) fn accumulate_gram(c: &mut Mat<f64>, w: MatRef<'_, f64>) {
    triangular_matmul(
        c.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Add,
        w,
        BlockStructure::Rectangular,
        w.transpose(),
        BlockStructure::Rectangular,
        1.0,
        Par::Seq,
    );
}
