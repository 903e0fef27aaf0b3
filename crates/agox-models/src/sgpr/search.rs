//! AGOX's hyperparameter search for the sparse GP (`monte_carlo_hyperparameter_search`
//! and `hyperparameter_search_parallel(relax=False)`): the likelihood at the current
//! θ and at `n_optimize − 1` draws uniform in the log bounds, the best kept. Only
//! the kernel's θ (amplitude, length scale) is searched; the noise and jitters
//! are fixed.
//!
//! Here the draws come from an explicit seed, each evaluation is a pure function
//! of the training set and θ ([`TrainingSet::evaluate`](super::TrainingSet::evaluate)),
//! and [`best_theta`] picks the highest finite log-likelihood with ties to the
//! lowest index, so any split of the evaluations over workers selects the same θ.
//! AGOX draws from numpy's global generator, and its serial and parallel
//! searches draw differently for the same seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::isotropic::IsotropicKernel;

/// The likelihood at one θ, or why θ cannot be used.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ThetaValue {
    /// log P, finite.
    LogLikelihood(f64),
    /// A matrix was not positive definite or the value not finite.
    Inadmissible {
        /// Which.
        reason: String,
    },
}

/// One evaluated θ.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ThetaOutcome {
    /// θ (logs).
    pub theta: Vec<f64>,
    /// Its log-likelihood.
    pub value: ThetaValue,
}

impl ThetaOutcome {
    /// log P when admissible and finite.
    pub fn log_likelihood(&self) -> Option<f64> {
        match self.value {
            ThetaValue::LogLikelihood(l) if l.is_finite() => Some(l),
            _ => None,
        }
    }
}

/// The θ to evaluate: `kernel`'s current θ, then `n_optimize − 1` draws uniform
/// in its log bounds from a ChaCha8 generator seeded with `seed`. Empty for
/// `n_optimize = 0`.
pub fn starts<K: IsotropicKernel>(kernel: &K, n_optimize: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n_optimize);
    if n_optimize > 0 {
        out.push(kernel.log_theta().to_vec());
    }
    for _ in 1..n_optimize {
        out.push(
            kernel
                .log_bounds()
                .iter()
                .map(|&[lo, hi]| lo + (hi - lo) * rng.gen::<f64>())
                .collect(),
        );
    }
    out
}

/// Index of the highest finite log-likelihood; ties go to the lowest index.
/// `None` when no θ is admissible.
pub fn best_theta(outcomes: &[ThetaOutcome]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, o) in outcomes.iter().enumerate() {
        if let Some(l) = o.log_likelihood() {
            if best.is_none_or(|(_, b)| l > b) {
                best = Some((i, l));
            }
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::isotropic::ConstantRbf;

    fn outcome(v: ThetaValue) -> ThetaOutcome {
        ThetaOutcome {
            theta: vec![0.0, 0.0],
            value: v,
        }
    }

    #[test]
    fn best_skips_inadmissible_and_non_finite_and_breaks_ties_by_index() {
        use ThetaValue::*;
        let bad = || Inadmissible { reason: "x".into() };
        let o = [
            outcome(bad()),
            outcome(LogLikelihood(f64::INFINITY)),
            outcome(LogLikelihood(f64::NAN)),
            outcome(LogLikelihood(-3.0)),
            outcome(LogLikelihood(-1.0)),
            outcome(LogLikelihood(-1.0)),
        ];
        assert_eq!(best_theta(&o), Some(4));
        assert_eq!(best_theta(&o[..3]), None);
        assert_eq!(best_theta(&[]), None);
    }

    #[test]
    fn starts_are_the_current_theta_then_seeded_draws_in_the_bounds() {
        let k = ConstantRbf::default();
        let s = starts(&k, 5, 7);
        assert_eq!(s.len(), 5);
        assert_eq!(s[0], k.log_theta());
        for t in &s[1..] {
            for (v, [lo, hi]) in t.iter().zip(k.bounds()) {
                assert!(*v >= lo && *v <= hi);
            }
        }
        assert_eq!(starts(&k, 5, 7), s);
        assert_ne!(starts(&k, 5, 8), s);
        assert!(starts(&k, 0, 7).is_empty());
    }
}
