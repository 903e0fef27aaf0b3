//! Dense linear algebra of the Gaussian process: faer's Cholesky factorization,
//! triangular inverse and solves on column-major buffers we own (single-threaded:
//! each worker process has one core), and the matrix-vector triangular solves of
//! prediction on the packed factor.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt;
use faer::{MatMut, MatRef, Par};

/// Scratch memory faer asks for, grown as the matrices grow.
#[derive(Default)]
pub(crate) struct Scratch {
    buffer: Option<MemBuffer>,
    capacity: usize,
}

impl Scratch {
    fn stack(&mut self, n: usize) -> &mut MemStack {
        if self.capacity < n {
            self.buffer = None;
            self.capacity = n;
        }
        let capacity = self.capacity;
        let buffer = self.buffer.get_or_insert_with(|| {
            MemBuffer::new(
                llt::factor::cholesky_in_place_scratch::<f64>(
                    capacity,
                    Par::Seq,
                    Default::default(),
                )
                .or(llt::inverse::inverse_scratch::<f64>(capacity, Par::Seq))
                .or(llt::solve::solve_in_place_scratch::<f64>(
                    capacity,
                    1,
                    Par::Seq,
                )),
            )
        });
        MemStack::new(buffer)
    }
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch")
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// Overwrites the lower triangle of the column-major `n × n` matrix `a` with its
/// Cholesky factor L (A = L Lᵀ). Err(index) names a non-positive pivot.
pub(crate) fn cholesky(a: &mut [f64], n: usize, scratch: &mut Scratch) -> Result<(), usize> {
    let view = MatMut::from_column_major_slice_mut(a, n, n);
    llt::factor::cholesky_in_place(
        view,
        Default::default(),
        Par::Seq,
        scratch.stack(n),
        Default::default(),
    )
    .map(|_| ())
    .map_err(|e| match e {
        llt::factor::LltError::NonPositivePivot { index } => index,
    })
}

/// Solves L Lᵀ x = b in place, with L the lower triangle of column-major `l`.
pub(crate) fn cholesky_solve(l: &[f64], n: usize, b: &mut [f64], scratch: &mut Scratch) {
    let lv = MatRef::from_column_major_slice(l, n, n);
    let rhs = MatMut::from_column_major_slice_mut(b, n, 1);
    llt::solve::solve_in_place(lv, rhs, Par::Seq, scratch.stack(n));
}

/// The lower triangle of (L Lᵀ)⁻¹ into column-major `out` (its upper triangle is
/// left as it was).
pub(crate) fn cholesky_inverse(l: &[f64], n: usize, out: &mut [f64], scratch: &mut Scratch) {
    let lv = MatRef::from_column_major_slice(l, n, n);
    let ov = MatMut::from_column_major_slice_mut(out, n, n);
    llt::inverse::inverse(ov, lv, Par::Seq, scratch.stack(n));
}

/// Offset of row `i` in a packed row-major lower triangle.
#[inline]
pub(crate) fn packed_row(i: usize) -> usize {
    i * (i + 1) / 2
}

/// The lower triangle of column-major `l` packed by rows (row i holds L_i0..L_ii).
pub(crate) fn pack_lower(l: &[f64], n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(packed_row(n));
    for i in 0..n {
        for j in 0..=i {
            out.push(l[j * n + i]);
        }
    }
    out
}

/// Solves L v = b in place for the packed lower factor (row-oriented: each step is
/// a dot product with a contiguous row).
pub(crate) fn forward_packed(l: &[f64], v: &mut [f64]) {
    for i in 0..v.len() {
        let row = &l[packed_row(i)..packed_row(i) + i + 1];
        let s = dot(&row[..i], &v[..i]);
        v[i] = (v[i] - s) / row[i];
    }
}

/// Solves Lᵀ u = v in place for the packed lower factor (column-oriented: each
/// step is an update with a contiguous row of L).
pub(crate) fn backward_packed(l: &[f64], u: &mut [f64]) {
    for i in (0..u.len()).rev() {
        let row = &l[packed_row(i)..packed_row(i) + i + 1];
        let ui = u[i] / row[i];
        u[i] = ui;
        for (uj, lij) in u[..i].iter_mut().zip(&row[..i]) {
            *uj -= lij * ui;
        }
    }
}

/// Dot product with four partial sums (vectorizes).
#[inline]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = [0.0; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            s[k] += x[k] * y[k];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A symmetric positive definite test matrix, column-major.
    fn spd(n: usize) -> Vec<f64> {
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[j * n + i] =
                    (-((i as f64 - j as f64).powi(2)) / 8.0).exp() + if i == j { 0.1 } else { 0.0 };
            }
        }
        a
    }

    #[test]
    fn factor_inverse_and_solves_agree() {
        let n = 37;
        let a = spd(n);
        let mut l = a.clone();
        let mut scratch = Scratch::default();
        cholesky(&mut l, n, &mut scratch).unwrap();
        let b: Vec<f64> = (0..n).map(|i| (i as f64).sin()).collect();
        // x from faer's solve; A x = b.
        let mut x = b.clone();
        cholesky_solve(&l, n, &mut x, &mut scratch);
        for i in 0..n {
            let ax: f64 = (0..n).map(|j| a[j * n + i] * x[j]).sum();
            assert!((ax - b[i]).abs() < 1e-10);
        }
        // The packed solves give the same x.
        let p = pack_lower(&l, n);
        let mut y = b.clone();
        forward_packed(&p, &mut y);
        backward_packed(&p, &mut y);
        for i in 0..n {
            assert!((y[i] - x[i]).abs() < 1e-10 * x[i].abs().max(1.0));
        }
        // The inverse's lower triangle times A is the identity.
        let mut inv = vec![0.0; n * n];
        cholesky_inverse(&l, n, &mut inv, &mut scratch);
        let full = |i: usize, j: usize| {
            if i >= j {
                inv[j * n + i]
            } else {
                inv[i * n + j]
            }
        };
        for i in 0..n {
            for j in 0..n {
                let v: f64 = (0..n).map(|k| full(i, k) * a[j * n + k]).sum();
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn non_positive_pivot_is_reported() {
        let n = 3;
        let mut a = vec![1.0, 2.0, 0.0, 2.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        assert_eq!(cholesky(&mut a, n, &mut Scratch::default()), Err(1));
    }
}
