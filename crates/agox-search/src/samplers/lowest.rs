//! `lowest`: the lowest-energy structure evaluated so far is the parent.

use serde::{Deserialize, Serialize};

use super::{energy, SamplerUpdate};
use crate::candidate::Candidate;

/// Keeps the lowest-energy evaluated structure as the single parent (a new structure
/// replaces it only when strictly lower).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LowestSampler;

impl LowestSampler {
    /// Offers `evaluated` (in order) to `parents`.
    pub fn update(&self, parents: &mut Vec<Candidate>, evaluated: &[Candidate]) -> SamplerUpdate {
        let mut best = parents.first().and_then(energy);
        let mut winner = None;
        for (i, c) in evaluated.iter().enumerate() {
            let Some(e) = energy(c) else { continue };
            if best.is_none_or(|b| e < b) {
                best = Some(e);
                winner = Some(i);
            }
        }
        let mut accepted = vec![false; evaluated.len()];
        if let Some(i) = winner {
            accepted[i] = true;
            *parents = vec![evaluated[i].clone()];
        }
        SamplerUpdate {
            accepted,
            changed: winner.is_some(),
        }
    }
}
