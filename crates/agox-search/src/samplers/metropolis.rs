//! `metropolis`: the basin-hopping sampler.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{energy, SamplerUpdate};
use crate::candidate::Candidate;

/// Keeps a current structure and replaces it by a proposal with probability
/// `min(1, exp(−(E_new − E_cur)/T))` (`T` in energy units: eV, or ε for LJ).
///
/// Like AGOX's `MetropolisSampler`, an iteration's evaluated candidates make **one**
/// proposal, the lowest-energy one, tested once against the current structure; the
/// first proposal ever is accepted. With `sequential = true` each evaluated
/// candidate is instead tested in order against the (possibly just replaced)
/// current structure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetropolisSampler {
    /// Temperature `kT` (eV); 0 accepts only steps that do not raise the energy.
    pub temperature: f64,
    /// Test every evaluated candidate in turn instead of only the best (default false).
    #[serde(default)]
    pub sequential: bool,
}

impl MetropolisSampler {
    /// A sampler at temperature `temperature`, AGOX's best-of-iteration rule.
    pub fn new(temperature: f64) -> Self {
        MetropolisSampler {
            temperature,
            sequential: false,
        }
    }

    /// Probability of accepting a step from `current` to `new` energy.
    pub fn acceptance(&self, current: f64, new: f64) -> f64 {
        let de = new - current;
        if de <= 0.0 {
            1.0
        } else if self.temperature > 0.0 {
            (-de / self.temperature).exp()
        } else {
            0.0
        }
    }

    /// One Metropolis test: draws a uniform number only for uphill steps (as AGOX).
    fn accept<R: Rng + ?Sized>(&self, current: Option<f64>, new: f64, rng: &mut R) -> bool {
        match current {
            None => true,
            Some(cur) if new < cur => true,
            Some(cur) => rng.gen::<f64>() < self.acceptance(cur, new),
        }
    }

    /// Offers `evaluated` to `parents` (a single current structure).
    pub fn update<R: Rng + ?Sized>(
        &self,
        parents: &mut Vec<Candidate>,
        evaluated: &[Candidate],
        rng: &mut R,
    ) -> SamplerUpdate {
        let mut accepted = vec![false; evaluated.len()];
        let mut current = parents.first().and_then(energy);
        let mut chosen = None;
        if self.sequential {
            for (i, c) in evaluated.iter().enumerate() {
                let Some(e) = energy(c) else { continue };
                if self.accept(current, e, rng) {
                    current = Some(e);
                    chosen = Some(i);
                    accepted[i] = true;
                }
            }
        } else {
            let best = evaluated
                .iter()
                .enumerate()
                .filter_map(|(i, c)| energy(c).map(|e| (i, e)))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((i, e)) = best {
                if self.accept(current, e, rng) {
                    chosen = Some(i);
                    accepted[i] = true;
                }
            }
        }
        if let Some(i) = chosen {
            *parents = vec![evaluated[i].clone()];
        }
        SamplerUpdate {
            accepted,
            changed: chosen.is_some(),
        }
    }
}
