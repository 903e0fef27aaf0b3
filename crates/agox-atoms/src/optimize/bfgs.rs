//! BFGS with a dense Hessian, as ASE 3.29 `ase.optimize.BFGS` does it.
//!
//! * The Hessian starts as `alpha · I` and is not updated before the first step.
//! * Afterwards, with `s = x − x0` and `y = g − g0` (`g = −forces`):
//!   `H += y yᵀ / (s·y) − (H s)(H s)ᵀ / (s·H s)`, skipped when `max|s| < 1e-7`.
//! * The step is `dx = −V (Vᵀ g / |ω|)` with `ω, V` the eigen-decomposition of `H`
//!   (absolute eigenvalues, so a Hessian with negative curvature still gives a
//!   descent-like step).
//! * When the longest per-atom displacement is `≥ maxstep`, the whole step is
//!   scaled by `maxstep / max_i |dx_i|` (direction kept). No line search.
//!
//! Speed: ASE diagonalizes `H` at every step (O(n³)). Here, as long as every
//! update had positive curvature `s·y > 0` (the usual case), `H` is positive
//! definite, `V |Ω|⁻¹ Vᵀ = H⁻¹`, and the code keeps `B = H⁻¹` with the dual
//! (inverse) BFGS update, so a step costs O(n²): a matrix–vector product. `H` is
//! updated alongside. After the first update with `s·y ≤ 0`, each step solves
//! `H dx = f` by an in-place Cholesky factorization when `H` is still positive
//! definite and falls back to nalgebra's `SymmetricEigen` with absolute
//! eigenvalues when it is not. All three give the same step up to rounding
//! (unit tests check it), and the reference tests follow ASE's energy traces to
//! 1e-10 on the stable paths.

/// BFGS parameters (ASE defaults).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BfgsParams {
    /// Longest displacement of any atom in one step (Å).
    pub maxstep: f64,
    /// Initial Hessian `alpha · I` (eV/Å²).
    pub alpha: f64,
}

impl Default for BfgsParams {
    /// `maxstep = 0.2 Å`, `alpha = 70 eV/Å²`, as ASE.
    fn default() -> Self {
        Self {
            maxstep: 0.2,
            alpha: 70.0,
        }
    }
}

/// State of one BFGS run over `n` degrees of freedom (3 per moving atom).
#[derive(Debug, Clone)]
pub struct Bfgs {
    params: BfgsParams,
    n: usize,
    /// Row-major `n × n` Hessian.
    hessian: Vec<f64>,
    /// Positions and forces at the previous step; `None` before the first step.
    started: bool,
    pos0: Vec<f64>,
    forces0: Vec<f64>,
    /// Scratch: `H s` and then the gradient difference.
    hs: Vec<f64>,
    dg: Vec<f64>,
    /// Scratch for the Cholesky factor.
    chol: Vec<f64>,
    /// Scratch: reciprocals of the factor's diagonal, or `B y`.
    inv_diag: Vec<f64>,
    /// `H⁻¹`, kept by the inverse update while every update had `s·y > 0`.
    inverse: Vec<f64>,
    inverse_valid: bool,
    eigen_fallbacks: usize,
}

impl Bfgs {
    /// A fresh optimizer for `n_dof` degrees of freedom.
    pub fn new(params: BfgsParams, n_dof: usize) -> Self {
        let mut hessian = vec![0.0; n_dof * n_dof];
        let mut inverse = vec![0.0; n_dof * n_dof];
        for i in 0..n_dof {
            hessian[i * n_dof + i] = params.alpha;
            inverse[i * n_dof + i] = 1.0 / params.alpha;
        }
        Self {
            params,
            n: n_dof,
            hessian,
            started: false,
            pos0: vec![0.0; n_dof],
            forces0: vec![0.0; n_dof],
            hs: vec![0.0; n_dof],
            dg: vec![0.0; n_dof],
            chol: vec![0.0; n_dof * n_dof],
            inv_diag: vec![0.0; n_dof],
            inverse,
            inverse_valid: true,
            eigen_fallbacks: 0,
        }
    }

    /// The current Hessian, row-major `n × n`.
    pub fn hessian(&self) -> &[f64] {
        &self.hessian
    }

    /// How many steps needed the eigen-decomposition because `H` was not
    /// positive definite.
    pub fn eigen_fallbacks(&self) -> usize {
        self.eigen_fallbacks
    }

    /// Computes the step `dx` from positions `x` and forces `f` (flat, 3 per atom),
    /// updating the Hessian from the previous call first.
    ///
    /// # Panics
    /// If a slice length differs from the `n_dof` given to [`Bfgs::new`].
    pub fn step(&mut self, x: &[f64], f: &[f64], dx: &mut [f64]) {
        let n = self.n;
        assert!(
            x.len() == n && f.len() == n && dx.len() == n,
            "BFGS: slice lengths must equal n_dof"
        );
        if self.started {
            self.update(x, f);
        }
        self.started = true;
        self.pos0.copy_from_slice(x);
        self.forces0.copy_from_slice(f);

        // dx = H⁻¹ f  (= −H⁻¹ g), or the |ω| version when H is indefinite.
        if self.inverse_valid {
            for (i, d) in dx.iter_mut().enumerate() {
                *d = dot(&self.inverse[i * n..(i + 1) * n], f);
            }
        } else if !self.solve_cholesky(f, dx) {
            self.eigen_fallbacks += 1;
            self.solve_eigen(f, dx);
        }
        scale_to_maxstep(dx, self.params.maxstep);
    }

    /// The BFGS rank-two update with `s = x − x0`, `y = g − g0 = f0 − f`.
    fn update(&mut self, x: &[f64], f: &[f64]) {
        let n = self.n;
        let mut smax = 0.0f64;
        for i in 0..n {
            // reuse pos0 as s
            self.pos0[i] = x[i] - self.pos0[i];
            smax = smax.max(self.pos0[i].abs());
            self.dg[i] = self.forces0[i] - f[i];
        }
        if smax < 1e-7 {
            return;
        }
        let s = &self.pos0;
        let a = dot(s, &self.dg);
        for i in 0..n {
            let row = &self.hessian[i * n..(i + 1) * n];
            self.hs[i] = dot(row, s);
        }
        let b = dot(s, &self.hs);
        if a == 0.0 || b == 0.0 || !a.is_finite() || !b.is_finite() {
            // ASE would divide by zero here and poison H with inf/NaN; keep H.
            return;
        }
        if self.inverse_valid {
            if a > 0.0 {
                self.update_inverse(a);
            } else {
                // Negative curvature along s: H may turn indefinite, where only the
                // eigen step is right. Leave the O(n²) path for good.
                self.inverse_valid = false;
            }
        }
        for i in 0..n {
            let (yi, hi) = (self.dg[i], self.hs[i]);
            let row = &mut self.hessian[i * n..(i + 1) * n];
            for ((h, yj), hj) in row.iter_mut().zip(&self.dg).zip(&self.hs) {
                *h += yi * yj / a - hi * hj / b;
            }
        }
    }

    /// The dual (inverse) BFGS update of `B = H⁻¹` for `s = self.pos0`,
    /// `y = self.dg`, `a = s·y > 0`:
    /// `B += (1/a + y·By/a²) s sᵀ − (By sᵀ + s (By)ᵀ)/a`. Uses `self.chol` rows as
    /// scratch for `By`.
    fn update_inverse(&mut self, a: f64) {
        let n = self.n;
        let by = &mut self.inv_diag;
        for (i, v) in by.iter_mut().enumerate() {
            *v = dot(&self.inverse[i * n..(i + 1) * n], &self.dg);
        }
        let yby = dot(&self.dg, by);
        let c = (a + yby) / (a * a);
        let s = &self.pos0;
        for i in 0..n {
            let (si, bi) = (s[i], by[i]);
            let row = &mut self.inverse[i * n..(i + 1) * n];
            for ((h, sj), bj) in row.iter_mut().zip(s).zip(by.iter()) {
                *h += c * si * sj - (bi * sj + si * bj) / a;
            }
        }
    }

    /// Solves `H dx = f` by Cholesky; false when `H` is not positive definite.
    fn solve_cholesky(&mut self, f: &[f64], dx: &mut [f64]) -> bool {
        let n = self.n;
        let l = &mut self.chol;
        let inv_diag = &mut self.inv_diag;
        l.copy_from_slice(&self.hessian);
        // Lower-triangular factor in place (row-major, only j <= i used).
        for i in 0..n {
            for j in 0..=i {
                let (ri, rj) = (&l[i * n..i * n + j], &l[j * n..j * n + j]);
                let sum = l[i * n + j] - dot(ri, rj);
                if i == j {
                    if sum.is_nan() || sum <= 0.0 {
                        return false;
                    }
                    l[i * n + i] = sum.sqrt();
                    inv_diag[i] = 1.0 / l[i * n + i];
                } else {
                    l[i * n + j] = sum * inv_diag[j];
                }
            }
        }
        // Forward: L z = f.
        for i in 0..n {
            let sum = f[i] - dot(&l[i * n..i * n + i], &dx[..i]);
            dx[i] = sum * inv_diag[i];
        }
        // Backward: Lᵀ dx = z (column access; n² work, no reduction needed).
        for i in (0..n).rev() {
            dx[i] *= inv_diag[i];
            let xi = dx[i];
            for (d, lik) in dx[..i].iter_mut().zip(&l[i * n..i * n + i]) {
                *d -= lik * xi;
            }
        }
        dx.iter().all(|v| v.is_finite())
    }

    /// `dx = V (Vᵀ f / |ω|)`: ASE's step, valid for any symmetric `H`.
    fn solve_eigen(&self, f: &[f64], dx: &mut [f64]) {
        let n = self.n;
        let h = nalgebra::DMatrix::from_row_slice(n, n, &self.hessian);
        let eig = nalgebra::SymmetricEigen::new(h);
        dx.iter_mut().for_each(|v| *v = 0.0);
        for (k, omega) in eig.eigenvalues.iter().enumerate() {
            let v = eig.eigenvectors.column(k);
            let proj: f64 = v.iter().zip(f).map(|(a, b)| a * b).sum::<f64>() / omega.abs();
            for (d, vi) in dx.iter_mut().zip(v.iter()) {
                *d += vi * proj;
            }
        }
    }
}

/// Dot product with four independent accumulators: the dense loops here are
/// latency-bound with a single running sum.
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Scales the whole step when the longest per-atom displacement is `≥ maxstep`.
fn scale_to_maxstep(dx: &mut [f64], maxstep: f64) {
    let longest = dx
        .chunks_exact(3)
        .map(|c| (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).sqrt())
        .fold(0.0f64, f64::max);
    if longest >= maxstep {
        let scale = maxstep / longest;
        dx.iter_mut().for_each(|v| *v *= scale);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The Cholesky step equals the eigen step for a positive-definite Hessian
    /// built by BFGS updates on a random quadratic.
    #[test]
    fn cholesky_step_equals_eigen_step() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let n = 12;
        let mut b = Bfgs::new(
            BfgsParams {
                maxstep: 1e9,
                alpha: 70.0,
            },
            n,
        );
        // fill H with an SPD matrix
        let a: Vec<f64> = (0..n * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
        for i in 0..n {
            for j in 0..n {
                b.hessian[i * n + j] = (0..n).map(|k| a[i * n + k] * a[j * n + k]).sum::<f64>()
                    + if i == j { 0.5 } else { 0.0 };
            }
        }
        let f: Vec<f64> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let mut d1 = vec![0.0; n];
        let mut d2 = vec![0.0; n];
        assert!(b.solve_cholesky(&f, &mut d1));
        b.solve_eigen(&f, &mut d2);
        for (x, y) in d1.iter().zip(&d2) {
            assert!((x - y).abs() < 1e-9 * (1.0 + y.abs()), "{x} vs {y}");
        }
        // indefinite: Cholesky refuses, eigen uses |ω|
        b.hessian.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..n {
            b.hessian[i * n + i] = if i % 2 == 0 { 2.0 } else { -4.0 };
        }
        assert!(!b.solve_cholesky(&f, &mut d1));
        b.solve_eigen(&f, &mut d2);
        for i in 0..n {
            let e = f[i] / if i % 2 == 0 { 2.0 } else { 4.0 };
            assert!((d2[i] - e).abs() < 1e-12);
        }
    }

    /// First step is f/alpha; the update satisfies the secant condition H s = y.
    #[test]
    fn first_step_and_secant_condition() {
        let n = 6;
        let mut b = Bfgs::new(BfgsParams::default(), n);
        let x0 = [0.0, 0.1, 0.2, 1.0, 1.1, 1.2];
        let f0 = [0.7, -1.4, 2.1, 0.0, 0.35, -0.7];
        let mut dx = [0.0; 6];
        b.step(&x0, &f0, &mut dx);
        for i in 0..n {
            assert!((dx[i] - f0[i] / 70.0).abs() < 1e-15);
        }
        let x1: Vec<f64> = x0.iter().zip(&dx).map(|(a, d)| a + d).collect();
        let f1 = [0.5, -1.0, 1.9, 0.1, 0.3, -0.5];
        b.step(&x1, &f1, &mut dx);
        for i in 0..n {
            let hs: f64 = (0..n).map(|j| b.hessian[i * n + j] * (x1[j] - x0[j])).sum();
            let y = f0[i] - f1[i];
            assert!((hs - y).abs() < 1e-12, "secant row {i}: {hs} vs {y}");
        }
    }

    /// The O(n²) inverse path gives the same steps as solving with the updated
    /// Hessian, over a run of updates with positive curvature.
    #[test]
    fn inverse_update_matches_hessian_solve() {
        let n = 9;
        let mut b = Bfgs::new(
            BfgsParams {
                maxstep: 1e9,
                alpha: 70.0,
            },
            n,
        );
        let curv: Vec<f64> = (0..n).map(|i| 1.0 + i as f64).collect();
        let mut x: Vec<f64> = (0..n).map(|i| (i as f64).sin()).collect();
        let mut dx = vec![0.0; n];
        let mut check = vec![0.0; n];
        for _ in 0..6 {
            let f: Vec<f64> = x
                .iter()
                .zip(&curv)
                .map(|(v, c)| -c * v - 0.1 * v * v * v)
                .collect();
            b.step(&x, &f, &mut dx);
            assert!(b.inverse_valid);
            let mut copy = b.clone();
            assert!(copy.solve_cholesky(&f, &mut check));
            for (p, q) in dx.iter().zip(&check) {
                assert!((p - q).abs() < 1e-10 * (1.0 + q.abs()), "{p} vs {q}");
            }
            x.iter_mut().zip(&dx).for_each(|(v, d)| *v += d);
        }
        // negative curvature leaves the inverse path
        let f: Vec<f64> = x.iter().map(|v| 5.0 * v).collect();
        let x2: Vec<f64> = x.iter().map(|v| v * 1.5).collect();
        let f2: Vec<f64> = x2.iter().map(|v| 5.0 * v).collect();
        b.step(&x, &f, &mut dx);
        b.step(&x2, &f2, &mut dx);
        assert!(!b.inverse_valid);
    }

    #[test]
    fn whole_step_is_scaled_to_maxstep() {
        let mut dx = [0.3, 0.4, 0.0, 0.1, 0.0, 0.0];
        scale_to_maxstep(&mut dx, 0.2);
        assert!(
            (dx[0] - 0.12).abs() < 1e-15
                && (dx[1] - 0.16).abs() < 1e-15
                && (dx[3] - 0.04).abs() < 1e-15
        );
        let mut dx = [0.1, 0.0, 0.0];
        scale_to_maxstep(&mut dx, 0.2);
        assert_eq!(dx, [0.1, 0.0, 0.0]);
    }
}
