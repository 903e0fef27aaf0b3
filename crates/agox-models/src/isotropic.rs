//! Kernels that depend on two feature vectors only through their squared
//! distance `d = ‖x − x'‖²`, with log hyperparameters and log bounds as sklearn
//! keeps them (`kernel.theta`, `kernel.bounds`): the interface the sparse
//! Gaussian process is written against.
//!
//! An [`IsotropicKernel`] is the settings part (θ, bounds, validation); its
//! [`KernelProfile`] is the kernel at one θ as plain numbers for inner loops:
//! `k(d)` and the factor `s(d)` of the feature gradient,
//! `∂k(x, x')/∂x = s(d)·(x' − x)` (AGOX's `get_feature_gradient`).
//!
//! Two kernels implement it:
//!
//! * [`ConstantRbf`], `C(c)·RBF(ℓ)`: `k = c·exp(−d/2ℓ²)`, θ = [ln c, ln ℓ], AGOX's
//!   SparseGPR kernel (bounds c ∈ [0.1, 1e5], ℓ ∈ [0.1, 1e3] by default, sklearn's);
//! * GOFEE's [`Kernel`](crate::kernel::Kernel), `C·(β·RBF(ℓ₁) + (1−β)·RBF(ℓ₂))`:
//!   its white-noise term is a variance on the diagonal of a training matrix of
//!   the GP on global features, not a function of `d`, and is not part of its
//!   profile.

use crate::kernel::{Hyper, Kernel, KernelError};

/// The kernel at one θ, as plain numbers.
pub trait KernelProfile: Copy + Send + Sync {
    /// k at squared distance `d ≥ 0`.
    fn value(&self, d: f64) -> f64;

    /// `(k(d), s(d))` with `∂k(x, x')/∂x = s(d)·(x' − x)`.
    fn value_and_factor(&self, d: f64) -> (f64, f64);

    /// k(x, x).
    fn k0(&self) -> f64 {
        self.value(0.0)
    }
}

/// A kernel of the squared distance with log hyperparameters.
pub trait IsotropicKernel:
    Clone + std::fmt::Debug + PartialEq + Send + Sync + serde::Serialize + serde::de::DeserializeOwned
{
    /// Its profile at the current θ.
    type Profile: KernelProfile;

    /// Short name for messages and reports.
    fn name(&self) -> &'static str;

    /// θ, natural logs (sklearn's `kernel.theta`).
    fn log_theta(&self) -> &[f64];

    /// `[lower, upper]` of each θ entry, natural logs (sklearn's `kernel.bounds`).
    fn log_bounds(&self) -> &[[f64; 2]];

    /// The same kernel at another θ, checked against the bounds.
    fn at_theta(&self, theta: &[f64]) -> Result<Self, KernelError>;

    /// The profile at the current θ.
    fn profile(&self) -> Self::Profile;
}

/// Checks that θ and its bounds are finite, each lower bound at most its upper
/// bound and θ within them; the error names the entry.
pub fn validate_log_theta(theta: &[f64], bounds: &[[f64; 2]]) -> Result<(), KernelError> {
    for (index, (&value, &[lower, upper])) in theta.iter().zip(bounds).enumerate() {
        let err = |expected| KernelError::Theta {
            index,
            value,
            lower,
            upper,
            expected,
        };
        if !(value.is_finite() && lower.is_finite() && upper.is_finite()) {
            return Err(err("finite numbers"));
        }
        if lower > upper {
            return Err(err("lower bound <= upper bound"));
        }
        if value < lower || value > upper {
            return Err(err("θ within its bounds"));
        }
    }
    Ok(())
}

/// `C(c)·RBF(ℓ)`: `k(x, x') = c·exp(−‖x − x'‖²/(2ℓ²))`, θ = [ln c, ln ℓ].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawConstantRbf")]
pub struct ConstantRbf {
    theta: [f64; 2],
    bounds: [[f64; 2]; 2],
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConstantRbf {
    theta: [f64; 2],
    bounds: [[f64; 2]; 2],
}

impl TryFrom<RawConstantRbf> for ConstantRbf {
    type Error = KernelError;
    fn try_from(raw: RawConstantRbf) -> Result<Self, KernelError> {
        validate_log_theta(&raw.theta, &raw.bounds)?;
        Ok(ConstantRbf {
            theta: raw.theta,
            bounds: raw.bounds,
        })
    }
}

impl Default for ConstantRbf {
    /// AGOX's SparseGPR configuration, `C(1.0)·RBF(20.0)` with sklearn's default
    /// bounds c ∈ [0.1, 1e5], ℓ ∈ [0.1, 1e3] (`model_factory.py`).
    fn default() -> Self {
        ConstantRbf {
            theta: [0.0, 20f64.ln()],
            bounds: [[0.1f64.ln(), 1e5f64.ln()], [0.1f64.ln(), 1e3f64.ln()]],
        }
    }
}

impl ConstantRbf {
    /// Amplitude `c` and length scale `ℓ` (linear values) within log bounds
    /// `bounds` = [[ln c_min, ln c_max], [ln ℓ_min, ln ℓ_max]].
    pub fn new(c: f64, length_scale: f64, bounds: [[f64; 2]; 2]) -> Result<Self, KernelError> {
        Self::from_log([c.ln(), length_scale.ln()], bounds)
    }

    /// The kernel at θ = [ln c, ln ℓ] within `bounds` (logs).
    pub fn from_log(theta: [f64; 2], bounds: [[f64; 2]; 2]) -> Result<Self, KernelError> {
        validate_log_theta(&theta, &bounds)?;
        Ok(ConstantRbf { theta, bounds })
    }

    /// AGOX's default bounds with amplitude `c` and length scale `ℓ`.
    pub fn with_defaults(c: f64, length_scale: f64) -> Result<Self, KernelError> {
        Self::new(c, length_scale, Self::default().bounds)
    }

    /// θ = [ln c, ln ℓ].
    pub fn theta(&self) -> [f64; 2] {
        self.theta
    }

    /// The log bounds.
    pub fn bounds(&self) -> [[f64; 2]; 2] {
        self.bounds
    }
}

/// [`ConstantRbf`] at one θ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RbfProfile {
    /// c.
    pub c: f64,
    /// 1/ℓ².
    pub inv_l2: f64,
    /// −1/(2ℓ²).
    pub a: f64,
}

impl KernelProfile for RbfProfile {
    /// `c·exp(−d/2ℓ²)` by [`exp_nonpositive`](crate::vexp::exp_nonpositive), which
    /// vectorizes in the kernel loops (within 2 ulp of libm; 0 below e⁻⁷⁰⁸).
    #[inline(always)]
    fn value(&self, d: f64) -> f64 {
        self.c * crate::vexp::exp_nonpositive(self.a * d)
    }

    #[inline(always)]
    fn value_and_factor(&self, d: f64) -> (f64, f64) {
        let k = self.value(d);
        (k, k * self.inv_l2)
    }

    fn k0(&self) -> f64 {
        self.c
    }
}

impl IsotropicKernel for ConstantRbf {
    type Profile = RbfProfile;

    fn name(&self) -> &'static str {
        "C*RBF"
    }

    fn log_theta(&self) -> &[f64] {
        &self.theta
    }

    fn log_bounds(&self) -> &[[f64; 2]] {
        &self.bounds
    }

    fn at_theta(&self, theta: &[f64]) -> Result<Self, KernelError> {
        let theta: [f64; 2] = theta.try_into().map_err(|_| KernelError::Theta {
            index: theta.len(),
            value: f64::NAN,
            lower: f64::NAN,
            upper: f64::NAN,
            expected: "exactly two entries, [ln c, ln ℓ]",
        })?;
        Self::from_log(theta, self.bounds)
    }

    fn profile(&self) -> RbfProfile {
        let l = self.theta[1].exp();
        let inv_l2 = 1.0 / (l * l);
        RbfProfile {
            c: self.theta[0].exp(),
            inv_l2,
            a: -0.5 * inv_l2,
        }
    }
}

impl KernelProfile for Hyper {
    #[inline]
    fn value(&self, d: f64) -> f64 {
        Hyper::value(self, self.parts(d))
    }

    #[inline]
    fn value_and_factor(&self, d: f64) -> (f64, f64) {
        let p = self.parts(d);
        (Hyper::value(self, p), self.feature_gradient_factor(p))
    }

    fn k0(&self) -> f64 {
        Hyper::k0(self)
    }
}

impl IsotropicKernel for Kernel {
    type Profile = Hyper;

    fn name(&self) -> &'static str {
        "gofee"
    }

    fn log_theta(&self) -> &[f64] {
        &self.theta
    }

    fn log_bounds(&self) -> &[[f64; 2]] {
        &self.bounds
    }

    fn at_theta(&self, theta: &[f64]) -> Result<Self, KernelError> {
        let n = self.theta.len();
        if theta.len() != n {
            return Err(KernelError::Theta {
                index: theta.len(),
                value: f64::NAN,
                lower: f64::NAN,
                upper: f64::NAN,
                expected: "as many entries as the kernel has hyperparameters (6)",
            });
        }
        let k = self.with_theta(std::array::from_fn(|p| theta[p]));
        k.validate()?;
        Ok(k)
    }

    fn profile(&self) -> Hyper {
        self.hyper()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::kernel::squared_distance;

    #[test]
    fn constant_rbf_is_sklearns_product() {
        let k = ConstantRbf::with_defaults(2.0, 0.5).unwrap();
        let p = k.profile();
        let d = 0.3;
        let expected = 2.0 * (-d / (2.0 * 0.25f64)).exp();
        assert!((p.value(d) - expected).abs() < 1e-15);
        let (v, s) = p.value_and_factor(d);
        assert_eq!(v, p.value(d));
        assert!((s - expected / 0.25).abs() < 1e-14);
        assert_eq!(p.k0(), 2.0);
        let b = ConstantRbf::default().bounds();
        assert!((b[0][0] - 0.1f64.ln()).abs() < 1e-15 && (b[1][1] - 1e3f64.ln()).abs() < 1e-15);
    }

    #[test]
    fn feature_gradient_factor_matches_finite_differences() {
        for kernel in [
            Box::new(|d: f64| {
                ConstantRbf::with_defaults(3.0, 0.7)
                    .unwrap()
                    .profile()
                    .value_and_factor(d)
            }) as Box<dyn Fn(f64) -> (f64, f64)>,
            Box::new(|d: f64| {
                Kernel::default()
                    .with_theta([1.0, -4.6, 0.2, -0.01, -0.4, -4.6])
                    .profile()
                    .value_and_factor(d)
            }),
        ] {
            let x = [0.3, -0.2, 0.5];
            let y = [0.1, 0.4, 0.2];
            let (_, s) = kernel(squared_distance(&x, &y));
            let h = 1e-6;
            for f in 0..3 {
                let mut up = x;
                up[f] += h;
                let mut down = x;
                down[f] -= h;
                let fd = (kernel(squared_distance(&up, &y)).0
                    - kernel(squared_distance(&down, &y)).0)
                    / (2.0 * h);
                let analytic = s * (y[f] - x[f]);
                assert!(
                    (fd - analytic).abs() < 1e-8 * analytic.abs().max(1.0),
                    "{fd} {analytic}"
                );
            }
        }
    }

    #[test]
    fn gofee_profile_equals_the_kernels_own_vector() {
        let k = Kernel::default().with_theta([1.0, -4.6, 0.2, -0.01, -0.4, -4.6]);
        let x = [0.3, -0.2, 0.5, 1.0];
        let big: Vec<f64> = (0..12).map(|i| (i as f64 * 0.37).sin()).collect();
        let v = k.vector(&x, &big);
        let p = k.profile();
        for (m, r) in big.chunks_exact(4).enumerate() {
            assert_eq!(v[m], KernelProfile::value(&p, squared_distance(&x, r)));
        }
        assert!(k.at_theta(&[0.0; 5]).is_err());
        assert!(k.at_theta(&[20.0, -4.6, 0.2, -0.01, -0.4, -4.6]).is_err());
    }

    #[test]
    fn bounds_are_enforced_and_named() {
        let k = ConstantRbf::default();
        let err = k.at_theta(&[0.0, 10.0]).unwrap_err().to_string();
        assert!(err.contains("θ[1]"), "{err}");
        assert!(k.at_theta(&[0.0]).is_err());
        assert!(k.at_theta(&[f64::NAN, 0.0]).is_err());
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(serde_json::from_str::<ConstantRbf>(&json).unwrap(), k);
        let bad = json.replace("0.0,", "50.0,");
        assert!(serde_json::from_str::<ConstantRbf>(&bad).is_err(), "{bad}");
    }
}
