//! Training at one θ (AGOX's `_train_model` after the search):
//!
//! ```text
//! A = K_mm + Uᵀ Σ⁻¹ U + jitter·I,   b = Uᵀ Σ⁻¹ y,   α = A⁻¹ b
//! C = K_mm + K_nmᵀ Σ_loc⁻¹ K_nm + unc_jitter·I        (with train_uncertainty)
//! D = C⁻¹ − (K_mm + unc_jitter·I)⁻¹
//! ```
//!
//! with `U = L·K_nm` the observations' kernel rows ([`Projection`]).

use super::assemble::{accumulate_gram, Projection};
use super::data::TrainingSet;
use faer::{Mat, MatRef};

use super::dense::{pack_lower, spd_inverse, spd_solve, symmetrize_from_lower, Solver};
use super::predict::Predictor;
use super::SparseError;
use crate::isotropic::IsotropicKernel;

/// How a fit went.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FitReport {
    /// θ of the fit.
    pub theta: Vec<f64>,
    /// How A α = b was solved.
    pub alpha_solver: Solver,
    /// How (K_mm + unc_jitter·I)⁻¹ and C⁻¹ were computed, with the uncertainty.
    pub uncertainty_solvers: Option<[Solver; 2]>,
}

/// The training problem at one θ, row-major, for inspection: AGOX's `K_mm`,
/// `L·K_nm`, and the normal equations `A α = b`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assembled {
    /// Inducing points M.
    pub n_inducing: usize,
    /// K_mm, M × M.
    pub kmm: Vec<f64>,
    /// `L·K_nm`, N_obs × M: energy rows, then the force rows after AGOX's (J − I) block.
    pub rows: Vec<f64>,
    /// A = K_mm + (L K_nm)ᵀ Σ⁻¹ (L K_nm) + jitter·I, M × M.
    pub matrix: Vec<f64>,
    /// b = (L K_nm)ᵀ Σ⁻¹ y.
    pub rhs: Vec<f64>,
}

/// The normal equations and the projection they came from.
struct Normal {
    proj: Projection,
    a: Mat<f64>,
    b: Vec<f64>,
}

fn row_major(m: MatRef<'_, f64>) -> Vec<f64> {
    let mut out = Vec::with_capacity(m.nrows() * m.ncols());
    for i in 0..m.nrows() {
        for j in 0..m.ncols() {
            out.push(m[(i, j)]);
        }
    }
    out
}

impl<K: IsotropicKernel> TrainingSet<K> {
    fn normal(&self, kernel: &K, with_c: bool) -> Normal {
        let mut proj = Projection::default();
        proj.compute(self, &kernel.profile(), with_c);
        symmetrize_from_lower(&mut proj.kmm);
        let y = self.targets();
        let v = self.variances();
        let m = self.n_inducing();
        let mut w = proj.ut.clone();
        for (o, vo) in v.iter().enumerate() {
            let s = 1.0 / vo.sqrt();
            for u in w.col_as_slice_mut(o) {
                *u *= s;
            }
        }
        let mut a = proj.kmm.clone();
        accumulate_gram(&mut a, w.as_ref());
        for i in 0..m {
            a[(i, i)] += self.jitter;
        }
        symmetrize_from_lower(&mut a);
        let mut b = vec![0.0; m];
        for (o, (yo, vo)) in y.iter().zip(&v).enumerate() {
            let t = yo / vo;
            for (bm, u) in b.iter_mut().zip(proj.ut.col_as_slice(o)) {
                *bm += u * t;
            }
        }
        Normal { proj, a, b }
    }

    /// The training problem at θ, for inspection (tests, comparisons with AGOX).
    pub fn assembled(&self, theta: &[f64]) -> Result<Assembled, SparseError> {
        let kernel = self.kernel.at_theta(theta)?;
        let Normal { proj, a, b } = self.normal(&kernel, false);
        Ok(Assembled {
            n_inducing: self.n_inducing(),
            kmm: row_major(proj.kmm.as_ref()),
            rows: row_major(proj.ut.as_ref().transpose()),
            matrix: row_major(a.as_ref()),
            rhs: b,
        })
    }

    /// Trains at θ: α and, with `train_uncertainty`, the uncertainty matrix.
    pub fn fit(&self, theta: &[f64]) -> Result<(Predictor<K>, FitReport), SparseError> {
        let kernel = self.kernel.at_theta(theta)?;
        let Normal { mut proj, a, b } = self.normal(&kernel, self.train_uncertainty);
        let m = self.n_inducing();
        let (alpha, alpha_solver) =
            spd_solve(&a, &b, "the training matrix's eigenvalue decomposition")?;

        let (variance, uncertainty_solvers) = match proj.c.take() {
            None => (None, None),
            Some(mut c) => {
                let mut kj = proj.kmm.clone();
                for i in 0..m {
                    kj[(i, i)] += self.unc_jitter;
                }
                let (kj_inv, s1) = spd_inverse(&kj, "K_mm's eigenvalue decomposition")?;
                for j in 0..m {
                    for i in j..m {
                        c[(i, j)] += proj.kmm[(i, j)];
                    }
                    c[(j, j)] += self.unc_jitter;
                }
                symmetrize_from_lower(&mut c);
                let (c_inv, s2) = spd_inverse(&c, "C's eigenvalue decomposition")?;
                let mut d = c_inv;
                for j in 0..m {
                    for i in 0..m {
                        d[(i, j)] -= kj_inv[(i, j)];
                    }
                }
                (Some(pack_lower(&d)), Some([s1, s2]))
            }
        };
        let predictor = Predictor::new(
            kernel,
            self.data.n_features(),
            self.inducing.clone(),
            alpha,
            self.mean,
            variance,
        )?;
        Ok((
            predictor,
            FitReport {
                theta: theta.to_vec(),
                alpha_solver,
                uncertainty_solvers,
            },
        ))
    }
}
