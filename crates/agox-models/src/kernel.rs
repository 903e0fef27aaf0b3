//! GOFEE's kernel, `C(5000, (1, 1e5)) · (C(β)·RBF(ℓ₁) + C(1−β)·RBF(ℓ₂)) + Noise(0.01)`
//! with β = 0.01, as AGOX's model factory builds it from sklearn kernels.
//!
//! With `d = ‖x − x'‖²`:
//!
//! ```text
//! k(x, x') = c · (b · exp(−d / 2ℓ₁²) + e · exp(−d / 2ℓ₂²))   (+ n on the training diagonal)
//! ```
//!
//! The hyperparameters live in log space as sklearn's `kernel.theta`, in its order
//! `θ = [ln c, ln b, ln ℓ₁, ln e, ln ℓ₂, ln n]`, with AGOX's bounds (also logs):
//! `c ∈ [1, 1e5]`, `ℓ₁, ℓ₂ ∈ [0.1, 1e3]`, and `b = 0.01`, `e = 0.99`, `n = 0.01`
//! pinned (lower = upper bound), so 3 of the 6 entries are free. The noise is a
//! variance added to the diagonal of the training matrix only (sklearn's
//! `WhiteKernel`): `k(x, X)` and `k(x, x)` of a new point do not contain it.

/// Number of hyperparameters.
pub const N_THETA: usize = 6;

/// Indices into θ.
pub mod theta {
    /// ln c, the overall amplitude.
    pub const AMPLITUDE: usize = 0;
    /// ln b, the weight of the first RBF.
    pub const WEIGHT1: usize = 1;
    /// ln ℓ₁.
    pub const LENGTH1: usize = 2;
    /// ln e, the weight of the second RBF.
    pub const WEIGHT2: usize = 3;
    /// ln ℓ₂.
    pub const LENGTH2: usize = 4;
    /// ln n, the noise variance on the training diagonal.
    pub const NOISE: usize = 5;
}

/// The kernel: its log hyperparameters and their log bounds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// θ, natural logs, in the order of [`theta`].
    pub theta: [f64; N_THETA],
    /// `[lower, upper]` of each θ entry (natural logs).
    pub bounds: [[f64; 2]; N_THETA],
}

impl Default for Kernel {
    /// AGOX's GOFEE kernel (`model_factory.py`): c = 5000 in [1, 1e5], β = 0.01,
    /// ℓ₁ = ℓ₂ = 1 in [0.1, 1e3], noise 0.01.
    fn default() -> Self {
        Self::gofee(5000.0, 0.01, 0.01)
    }
}

/// The three numbers the kernel needs per pair: the two RBF values and `d`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parts {
    /// exp(−d / 2ℓ₁²).
    pub rbf1: f64,
    /// exp(−d / 2ℓ₂²).
    pub rbf2: f64,
    /// The squared distance.
    pub d: f64,
}

/// The kernel's hyperparameters as plain numbers, for inner loops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hyper {
    /// Amplitude c.
    pub c: f64,
    /// Weight b of the first RBF.
    pub b: f64,
    /// Weight e of the second RBF.
    pub e: f64,
    /// ℓ₁.
    pub l1: f64,
    /// ℓ₂.
    pub l2: f64,
    /// Noise variance n.
    pub noise: f64,
    /// −1 / (2ℓ₁²).
    pub a1: f64,
    /// −1 / (2ℓ₂²).
    pub a2: f64,
}

impl Hyper {
    /// The two RBFs at squared distance `d`.
    #[inline]
    pub fn parts(&self, d: f64) -> Parts {
        Parts {
            rbf1: (self.a1 * d).exp(),
            rbf2: (self.a2 * d).exp(),
            d,
        }
    }

    /// k without noise from the parts.
    #[inline]
    pub fn value(&self, p: Parts) -> f64 {
        self.c * (self.b * p.rbf1 + self.e * p.rbf2)
    }

    /// k(x, x) without noise: c (b + e).
    pub fn k0(&self) -> f64 {
        self.c * (self.b + self.e)
    }

    /// `s` with `∂k(x, x')/∂x = s · (x' − x)`: the feature gradient of AGOX's RBF
    /// (`k · (X − Y) / ℓ²`) summed over the two terms.
    #[inline]
    pub fn feature_gradient_factor(&self, p: Parts) -> f64 {
        self.c * (self.b * p.rbf1 / (self.l1 * self.l1) + self.e * p.rbf2 / (self.l2 * self.l2))
    }

    /// ∂k/∂θ_p for one pair (sklearn's `K_gradient[i, j, p]`, derivatives with
    /// respect to the log hyperparameters); `diagonal` adds the noise term.
    #[inline]
    pub fn theta_gradient(&self, p: Parts, diagonal: bool) -> [f64; N_THETA] {
        let t1 = self.c * self.b * p.rbf1;
        let t2 = self.c * self.e * p.rbf2;
        [
            t1 + t2,
            t1,
            t1 * p.d / (self.l1 * self.l1),
            t2,
            t2 * p.d / (self.l2 * self.l2),
            if diagonal { self.noise } else { 0.0 },
        ]
    }
}

/// Why a kernel is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KernelError {
    /// A θ entry or bound is not finite, or a lower bound exceeds its upper bound,
    /// or θ lies outside its bounds.
    #[error("kernel θ[{index}] = {value} with bounds [{lower}, {upper}]: {expected}")]
    Theta {
        /// Which entry.
        index: usize,
        /// Its value.
        value: f64,
        /// Its lower bound.
        lower: f64,
        /// Its upper bound.
        upper: f64,
        /// What was expected.
        expected: &'static str,
    },
}

impl Kernel {
    /// GOFEE's kernel with amplitude `c` (bounds [1, 1e5]), first-RBF weight `beta`
    /// (the second gets 1 − β; both pinned), length scales 1 (bounds [0.1, 1e3])
    /// and `noise` (pinned).
    pub fn gofee(c: f64, beta: f64, noise: f64) -> Self {
        let pinned = |v: f64| [v.ln(), v.ln()];
        Kernel {
            theta: [c.ln(), beta.ln(), 0.0, (1.0 - beta).ln(), 0.0, noise.ln()],
            bounds: [
                [1f64.ln(), 1e5f64.ln()],
                pinned(beta),
                [0.1f64.ln(), 1e3f64.ln()],
                pinned(1.0 - beta),
                [0.1f64.ln(), 1e3f64.ln()],
                pinned(noise),
            ],
        }
    }

    /// The same kernel at another θ.
    pub fn with_theta(self, theta: [f64; N_THETA]) -> Self {
        Kernel { theta, ..self }
    }

    /// Checks that θ and the bounds are finite and θ within them.
    pub fn validate(&self) -> Result<(), KernelError> {
        crate::isotropic::validate_log_theta(&self.theta, &self.bounds)
    }

    /// The plain hyperparameters.
    pub fn hyper(&self) -> Hyper {
        let t = &self.theta;
        let (l1, l2) = (t[theta::LENGTH1].exp(), t[theta::LENGTH2].exp());
        Hyper {
            c: t[theta::AMPLITUDE].exp(),
            b: t[theta::WEIGHT1].exp(),
            e: t[theta::WEIGHT2].exp(),
            l1,
            l2,
            noise: t[theta::NOISE].exp(),
            a1: -0.5 / (l1 * l1),
            a2: -0.5 / (l2 * l2),
        }
    }

    /// The training matrix `K(X) + n·I` of the rows of `x` (row-major, `n_features`
    /// per row), full and row-major.
    pub fn matrix(&self, x: &[f64], n_features: usize) -> Vec<f64> {
        let h = self.hyper();
        let n = x.len() / n_features;
        let mut k = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let d = squared_distance(row(x, i, n_features), row(x, j, n_features));
                let v = h.value(h.parts(d)) + if i == j { h.noise } else { 0.0 };
                k[i * n + j] = v;
                k[j * n + i] = v;
            }
        }
        k
    }

    /// `k(x, X)`: the kernel between `x` and every row of `big_x`, no noise.
    pub fn vector(&self, x: &[f64], big_x: &[f64]) -> Vec<f64> {
        let h = self.hyper();
        big_x
            .chunks_exact(x.len())
            .map(|r| h.value(h.parts(squared_distance(x, r))))
            .collect()
    }

    /// `∂k(x, X_m)/∂x`, one row of `x.len()` per training row (AGOX's
    /// `kernel.get_feature_gradient(X, x)`), row-major.
    pub fn feature_gradient(&self, x: &[f64], big_x: &[f64]) -> Vec<f64> {
        let h = self.hyper();
        let mut out = Vec::with_capacity(big_x.len());
        for r in big_x.chunks_exact(x.len()) {
            let s = h.feature_gradient_factor(h.parts(squared_distance(x, r)));
            out.extend(r.iter().zip(x).map(|(a, b)| s * (a - b)));
        }
        out
    }

    /// `∂K/∂θ_p` for every p: six full row-major matrices (sklearn's
    /// `kernel(X, eval_gradient=True)[1]`, moved to the front axis).
    pub fn theta_gradient(&self, x: &[f64], n_features: usize) -> Vec<Vec<f64>> {
        let h = self.hyper();
        let n = x.len() / n_features;
        let mut out = vec![vec![0.0; n * n]; N_THETA];
        for i in 0..n {
            for j in 0..=i {
                let d = squared_distance(row(x, i, n_features), row(x, j, n_features));
                let g = h.theta_gradient(h.parts(d), i == j);
                for (m, gp) in out.iter_mut().zip(g) {
                    m[i * n + j] = gp;
                    m[j * n + i] = gp;
                }
            }
        }
        out
    }
}

/// Row `i` of a row-major matrix with `n` columns.
#[inline]
pub(crate) fn row(x: &[f64], i: usize, n: usize) -> &[f64] {
    &x[i * n..(i + 1) * n]
}

/// ‖a − b‖², summed term by term (no cancellation-prone expansion).
#[inline]
pub fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    // Four partial sums let the compiler vectorize the reduction.
    let mut s = [0.0; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            let t = x[k] - y[k];
            s[k] += t * t;
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        let t = x - y;
        tail += t * t;
    }
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn points() -> (Vec<f64>, usize) {
        let f = 5;
        let x: Vec<f64> = (0..4 * f)
            .map(|k| ((k * 37 % 11) as f64 * 0.3).sin())
            .collect();
        (x, f)
    }

    #[test]
    fn defaults_are_agox_gofee_kernel() {
        let k = Kernel::default();
        let expected = [
            8.517193191416238,
            -4.605170185988091,
            0.0,
            -0.01005033585350145,
            0.0,
            -4.605170185988091,
        ];
        for (a, b) in k.theta.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12);
        }
        assert_eq!(k.bounds[0], [0.0, 1e5f64.ln()]);
        assert_eq!(k.bounds[1][0], k.bounds[1][1]);
        assert_eq!(k.bounds[3][0], k.bounds[3][1]);
        assert_eq!(k.bounds[5][0], k.bounds[5][1]);
        assert!((k.bounds[2][0] + std::f64::consts::LN_10).abs() < 1e-12);
        assert!((k.bounds[4][1] - 6.907755278982137).abs() < 1e-12);
        k.validate().unwrap();
        let h = k.hyper();
        assert!((h.k0() - 5000.0).abs() < 1e-9);
    }

    #[test]
    fn noise_only_on_the_training_diagonal() {
        let (x, f) = points();
        let k = Kernel::default().with_theta([3.0, -4.6, 0.3, -0.01, -0.5, -4.6]);
        let m = k.matrix(&x, f);
        let v = k.vector(&x[..f], &x);
        assert!((m[0] - v[0] - k.hyper().noise).abs() < 1e-12);
        assert_eq!(m[1], v[1]);
        assert!((v[0] - k.hyper().k0()).abs() < 1e-12);
    }

    #[test]
    fn feature_gradient_matches_finite_differences() {
        let (x, f) = points();
        let k = Kernel::default().with_theta([3.0, -4.6, 0.3, -0.01, -0.5, -4.6]);
        let mut probe: Vec<f64> = (0..f).map(|i| 0.1 * i as f64).collect();
        let g = k.feature_gradient(&probe, &x);
        let h = 1e-6;
        for p in 0..f {
            probe[p] += h;
            let up = k.vector(&probe, &x);
            probe[p] -= 2.0 * h;
            let down = k.vector(&probe, &x);
            probe[p] += h;
            for m in 0..4 {
                let fd = (up[m] - down[m]) / (2.0 * h);
                assert!(
                    (fd - g[m * f + p]).abs() < 1e-7 * fd.abs().max(1.0),
                    "{fd} {}",
                    g[m * f + p]
                );
            }
        }
    }

    #[test]
    fn theta_gradient_matches_finite_differences_in_log_space() {
        let (x, f) = points();
        let k = Kernel::default().with_theta([3.0, -4.6, 0.3, -0.01, -0.5, -4.6]);
        let g = k.theta_gradient(&x, f);
        let h = 1e-6;
        for p in 0..N_THETA {
            let mut t = k.theta;
            t[p] += h;
            let up = k.with_theta(t).matrix(&x, f);
            t[p] -= 2.0 * h;
            let down = k.with_theta(t).matrix(&x, f);
            for (idx, gp) in g[p].iter().enumerate() {
                let fd = (up[idx] - down[idx]) / (2.0 * h);
                assert!(
                    (fd - gp).abs() < 1e-6 * fd.abs().max(1e-3),
                    "θ{p} [{idx}]: {fd} vs {gp}"
                );
            }
        }
    }

    #[test]
    fn validation_names_the_entry() {
        let mut k = Kernel::default();
        k.theta[2] = 10.0;
        assert!(k.validate().unwrap_err().to_string().contains("θ[2]"));
        k.theta[2] = f64::NAN;
        assert!(k.validate().is_err());
    }

    #[test]
    fn squared_distance_sums_every_term() {
        let a: Vec<f64> = (0..11).map(|i| i as f64).collect();
        let b = vec![1.0; 11];
        let direct: f64 = a.iter().map(|v| (v - 1.0) * (v - 1.0)).sum();
        assert_eq!(squared_distance(&a, &b), direct);
    }
}
