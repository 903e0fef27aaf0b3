//! Dense linear algebra of the sparse GP, on faer (single-threaded: a worker has
//! one core): kernel blocks from one matrix product, symmetric positive-definite
//! solves and inverses by Cholesky with an eigenvalue fallback, packed storage.
//!
//! **Kernel blocks.** `K(A, B)` needs the squared distances of every pair of
//! rows; they come from one product, `d_ij = ‖a_i‖² + ‖b_j‖² − 2 a_i·b_j`, clamped
//! at 0. Its absolute error is about `ε(‖a_i‖² + ‖b_j‖²)`, a relative error of
//! `ε(‖a‖² + ‖b‖²)/2ℓ²` in the kernel — 1e-15 for the features and length scales
//! met here, and cheaper by the product's speed than the term-by-term sums of the
//! full GP, which needs them for its `N × N` matrix only once per row.
//!
//! **Solves.** AGOX solves with QR followed by an SVD least-squares solve of R
//! (scipy's `lstsq`, cutoff `ε·σ_max`). Here a symmetric positive-definite matrix
//! is factored by Cholesky (M³/3 flops, 100× faster than QR + lstsq at M = 1000).
//! When Cholesky fails — the matrix is numerically singular or indefinite, which
//! AGOX's own defaults can produce for local descriptors — the fallback is AGOX's
//! answer computed the symmetric way: the pseudo-inverse from the eigenvalue
//! decomposition, dropping eigenvalues with `|λ| ≤ ε·max|λ|` (the singular values
//! of a symmetric matrix are its `|λ|`, so this is `lstsq`'s cutoff). Which one
//! ran is reported ([`Solver`]); jitter is never added behind the caller's back.

use faer::linalg::matmul::matmul;
use faer::linalg::solvers::{DenseSolveCore, Llt, SelfAdjointEigen, Solve};
use faer::{Accum, Mat, MatRef, Par, Side};

use super::SparseError;
use crate::isotropic::KernelProfile;

/// How a symmetric system was solved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Solver {
    /// Cholesky factorization (the matrix was numerically positive definite).
    Cholesky,
    /// Pseudo-inverse from the eigenvalue decomposition, `dropped` eigenvalues
    /// with `|λ| ≤ ε·max|λ|` left out (Cholesky failed).
    PseudoInverse {
        /// Eigenvalues treated as zero.
        dropped: usize,
    },
}

/// A row-major `n × f` slice as a matrix view.
pub(crate) fn rows(x: &[f64], f: usize) -> MatRef<'_, f64> {
    MatRef::from_row_major_slice(x, x.len() / f, f)
}

/// ‖row‖² of each row of a row-major matrix with `f` columns.
pub(crate) fn row_norms(x: &[f64], f: usize) -> Vec<f64> {
    x.chunks_exact(f)
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect()
}

/// Makes `m` an `r × c` matrix (contents unspecified), reusing its allocation
/// when the shape already fits.
pub(crate) fn shape_to(m: &mut Mat<f64>, r: usize, c: usize) {
    if m.nrows() != r || m.ncols() != c {
        *m = Mat::zeros(r, c);
    }
}

/// `out[i, j] = k(a_i, b_j)` (and `factors[i, j] = s(d_ij)` when given), for the
/// rows of `a` (with squared norms `a_norms`) and of `b`. `out` is column-major, so
/// column j is `k(A, b_j)`, contiguous.
pub(crate) fn kernel_block<P: KernelProfile>(
    p: &P,
    a: MatRef<'_, f64>,
    a_norms: &[f64],
    b: MatRef<'_, f64>,
    b_norms: &[f64],
    out: &mut Mat<f64>,
    mut factors: Option<&mut Mat<f64>>,
) {
    shape_to(out, a.nrows(), b.nrows());
    matmul(
        out.as_mut(),
        Accum::Replace,
        a,
        b.transpose(),
        -2.0,
        Par::Seq,
    );
    if let Some(f) = factors.as_deref_mut() {
        shape_to(f, a.nrows(), b.nrows());
    }
    pulp::Arch::new().dispatch(KernelColumns {
        p,
        a_norms,
        b_norms,
        out,
        factors,
    });
}

/// The kernel from the products `−2 a·b` in place: a loop pulp compiles for
/// the CPU's vector width (its body must be inlined into `with_simd`).
struct KernelColumns<'a, P> {
    p: &'a P,
    a_norms: &'a [f64],
    b_norms: &'a [f64],
    out: &'a mut Mat<f64>,
    factors: Option<&'a mut Mat<f64>>,
}

impl<P: KernelProfile> pulp::WithSimd for KernelColumns<'_, P> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let KernelColumns {
            p,
            a_norms,
            b_norms,
            out,
            mut factors,
        } = self;
        for (j, &bn) in b_norms.iter().enumerate() {
            let col = out.col_as_slice_mut(j);
            match factors.as_deref_mut() {
                None => {
                    for (v, &an) in col.iter_mut().zip(a_norms) {
                        *v = p.value(((*v + an) + bn).max(0.0));
                    }
                }
                Some(f) => {
                    let fcol = f.col_as_slice_mut(j);
                    for ((v, s), &an) in col.iter_mut().zip(fcol.iter_mut()).zip(a_norms) {
                        (*v, *s) = p.value_and_factor(((*v + an) + bn).max(0.0));
                    }
                }
            }
        }
    }
}

/// Copies the lower triangle of a square matrix to its upper triangle.
pub(crate) fn symmetrize_from_lower(m: &mut Mat<f64>) {
    let n = m.nrows();
    for j in 0..n {
        for i in (j + 1)..n {
            m[(j, i)] = m[(i, j)];
        }
    }
}

/// Cholesky factor of a symmetric matrix (its lower triangle is read), or
/// `None` when it is not numerically positive definite.
pub(crate) fn cholesky(a: &Mat<f64>) -> Option<Llt<f64>> {
    Llt::new(a.as_ref(), Side::Lower).ok()
}

/// The pseudo-inverse of a symmetric matrix (full storage) with AGOX's cutoff,
/// and the number of eigenvalues dropped.
fn pseudo_inverse(a: &Mat<f64>, what: &'static str) -> Result<(Mat<f64>, usize), SparseError> {
    let evd = SelfAdjointEigen::new(a.as_ref(), Side::Lower)
        .map_err(|_| SparseError::Decomposition { what })?;
    let n = a.nrows();
    let s = evd.S().column_vector();
    let u = evd.U();
    let max = (0..n).map(|i| s[i].abs()).fold(0.0, f64::max);
    let tol = f64::EPSILON * max;
    let mut scaled = u.to_owned();
    let mut dropped = 0;
    for j in 0..n {
        let w = if s[j].abs() > tol {
            1.0 / s[j]
        } else {
            dropped += 1;
            0.0
        };
        for v in scaled.col_as_slice_mut(j) {
            *v *= w;
        }
    }
    let mut out = Mat::zeros(n, n);
    matmul(
        out.as_mut(),
        Accum::Replace,
        scaled.as_ref(),
        u.transpose(),
        1.0,
        Par::Seq,
    );
    Ok((out, dropped))
}

/// The inverse of a symmetric positive-definite matrix (full storage in, full
/// out), by Cholesky or, failing that, the pseudo-inverse. `what` names the
/// matrix in errors.
pub(crate) fn spd_inverse(
    a: &Mat<f64>,
    what: &'static str,
) -> Result<(Mat<f64>, Solver), SparseError> {
    match cholesky(a) {
        Some(llt) => Ok((llt.inverse(), Solver::Cholesky)),
        None => {
            let (inv, dropped) = pseudo_inverse(a, what)?;
            Ok((inv, Solver::PseudoInverse { dropped }))
        }
    }
}

/// `A⁻¹ b` for a symmetric positive-definite `A` (full storage), by Cholesky
/// or, failing that, the pseudo-inverse (AGOX's minimum-norm solution).
pub(crate) fn spd_solve(
    a: &Mat<f64>,
    b: &[f64],
    what: &'static str,
) -> Result<(Vec<f64>, Solver), SparseError> {
    let rhs = MatRef::from_column_major_slice(b, b.len(), 1);
    match cholesky(a) {
        Some(llt) => {
            let x = llt.solve(rhs);
            Ok((x.col_as_slice(0).to_vec(), Solver::Cholesky))
        }
        None => {
            let (inv, dropped) = pseudo_inverse(a, what)?;
            let mut x = Mat::zeros(b.len(), 1);
            matmul(x.as_mut(), Accum::Replace, inv.as_ref(), rhs, 1.0, Par::Seq);
            Ok((
                x.col_as_slice(0).to_vec(),
                Solver::PseudoInverse { dropped },
            ))
        }
    }
}

/// Offset of row `i` in a lower triangle packed by rows.
#[inline]
pub(crate) fn packed_row(i: usize) -> usize {
    i * (i + 1) / 2
}

/// The lower triangle of a square matrix, packed by rows (row i: m_i0 … m_ii).
pub(crate) fn pack_lower(m: &Mat<f64>) -> Vec<f64> {
    let n = m.nrows();
    let mut out = Vec::with_capacity(packed_row(n));
    for i in 0..n {
        for j in 0..=i {
            out.push(m[(i, j)]);
        }
    }
    out
}

/// `y = S x` for a symmetric S stored as its packed lower triangle; each packed
/// row is read once and contiguously.
pub(crate) fn packed_symmetric_matvec(s: &[f64], x: &[f64], y: &mut [f64]) {
    pulp::Arch::new().dispatch(PackedMatvec { s, x, y });
}

struct PackedMatvec<'a> {
    s: &'a [f64],
    x: &'a [f64],
    y: &'a mut [f64],
}

impl pulp::WithSimd for PackedMatvec<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let PackedMatvec { s, x, y } = self;
        packed_symmetric_matvec_scalar(s, x, y);
    }
}

#[inline(always)]
fn packed_symmetric_matvec_scalar(s: &[f64], x: &[f64], y: &mut [f64]) {
    y.fill(0.0);
    for i in 0..x.len() {
        let row = &s[packed_row(i)..packed_row(i) + i + 1];
        let xi = x[i];
        let mut acc = [0.0; 4];
        let (head, tail) = row[..i].split_at(i - i % 4);
        let (xh, xt) = x[..i].split_at(i - i % 4);
        let (yh, yt) = y[..i].split_at_mut(i - i % 4);
        for ((r, xs), ys) in head
            .chunks_exact(4)
            .zip(xh.chunks_exact(4))
            .zip(yh.chunks_exact_mut(4))
        {
            for k in 0..4 {
                acc[k] += r[k] * xs[k];
                ys[k] += r[k] * xi;
            }
        }
        let mut t = 0.0;
        for ((r, xs), ys) in tail.iter().zip(xt).zip(yt) {
            t += r * xs;
            *ys += r * xi;
        }
        y[i] += (acc[0] + acc[1]) + (acc[2] + acc[3]) + t + row[i] * xi;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::isotropic::{ConstantRbf, IsotropicKernel};
    use crate::kernel::squared_distance;

    fn spd(n: usize) -> Mat<f64> {
        Mat::from_fn(n, n, |i, j| {
            (-((i as f64 - j as f64).powi(2)) / 8.0).exp() + if i == j { 0.1 } else { 0.0 }
        })
    }

    #[test]
    fn kernel_block_equals_term_by_term_distances() {
        let f = 7;
        let a: Vec<f64> = (0..5 * f).map(|k| (k as f64 * 0.71).sin()).collect();
        let b: Vec<f64> = (0..3 * f).map(|k| (k as f64 * 0.37).cos()).collect();
        let kern = ConstantRbf::with_defaults(2.0, 0.8).unwrap();
        let p = kern.profile();
        let (mut out, mut fac) = (Mat::zeros(0, 0), Mat::zeros(0, 0));
        kernel_block(
            &p,
            rows(&a, f),
            &row_norms(&a, f),
            rows(&b, f),
            &row_norms(&b, f),
            &mut out,
            Some(&mut fac),
        );
        for i in 0..5 {
            for j in 0..3 {
                let d = squared_distance(&a[i * f..(i + 1) * f], &b[j * f..(j + 1) * f]);
                let (k, s) = p.value_and_factor(d);
                assert!(
                    (out[(i, j)] - k).abs() < 1e-14 * k.abs().max(1e-300),
                    "{i} {j}"
                );
                assert!((fac[(i, j)] - s).abs() < 1e-14 * s.abs().max(1e-300));
            }
        }
    }

    #[test]
    fn inverse_and_solve_by_cholesky_and_by_the_fallback() {
        let n = 9;
        let a = spd(n);
        let b: Vec<f64> = (0..n).map(|i| (i as f64).sin()).collect();
        let (x, solver) = spd_solve(&a, &b, "test").unwrap();
        assert_eq!(solver, Solver::Cholesky);
        let (inv, _) = spd_inverse(&a, "test").unwrap();
        for i in 0..n {
            let ax: f64 = (0..n).map(|j| a[(i, j)] * x[j]).sum();
            assert!((ax - b[i]).abs() < 1e-12);
            for j in 0..n {
                let v: f64 = (0..n).map(|k| inv[(i, k)] * a[(k, j)]).sum();
                assert!((v - f64::from(u8::from(i == j))).abs() < 1e-10);
            }
        }
        // A singular matrix (two equal rows): Cholesky fails, the pseudo-inverse
        // gives the minimum-norm solution.
        let s = Mat::from_fn(3, 3, |i, j| {
            let v = [1.0, 1.0, 2.0];
            v[i] * v[j] + if i == 2 && j == 2 { 1.0 } else { 0.0 }
        });
        let (x, solver) = spd_solve(&s, &[1.0, 1.0, 2.0], "test").unwrap();
        assert_eq!(solver, Solver::PseudoInverse { dropped: 1 });
        assert!((x[0] - x[1]).abs() < 1e-12);
        for i in 0..3 {
            let ax: f64 = (0..3).map(|j| s[(i, j)] * x[j]).sum();
            assert!((ax - [1.0, 1.0, 2.0][i]).abs() < 1e-12);
        }
    }

    #[test]
    fn packed_matvec_is_the_full_product() {
        let n = 11;
        let a = spd(n);
        let x: Vec<f64> = (0..n).map(|i| (i as f64 * 0.3).cos()).collect();
        let mut y = vec![0.0; n];
        packed_symmetric_matvec(&pack_lower(&a), &x, &mut y);
        for i in 0..n {
            let full: f64 = (0..n).map(|j| a[(i, j)] * x[j]).sum();
            assert!((y[i] - full).abs() < 1e-14);
        }
    }
}
