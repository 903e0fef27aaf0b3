//! Samplers: which structures the generators modify (the parents).
//!
//! * [`LowestSampler`] (`lowest`): the lowest-energy structure evaluated so far.
//! * [`MetropolisSampler`] (`metropolis`): basin hopping's current structure, replaced
//!   by a new one with probability `min(1, exp(−ΔE/T))`.
//! * [`KMeansSampler`] (`kmeans`): GOFEE's; the lowest structure of each cluster of
//!   the low-energy structures, clustered by their Fingerprint.
//!
//! A [`SamplerModule`] holds the sampler and its state, the current parents, as the
//! **dynamic attribute** `parents`: the driver [`update`](SamplerModule::update)s it
//! after each evaluation, the end-of-iteration `pool.synchronize()` pushes the new
//! parents to every worker, and the workers' `generate` tasks draw from them.

mod kmeans;
mod lowest;
mod metropolis;

pub use kmeans::KMeansSampler;
pub use lowest::LowestSampler;
pub use metropolis::MetropolisSampler;

use agox_models::fingerprint::FingerprintSpec;
use agox_models::kmeans::KMeansSettings;
use agox_pool::Module;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::candidate::Candidate;
use crate::script;

/// A sampler of any kind, as the script configures it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sampler {
    /// Keep the lowest-energy structure.
    Lowest(LowestSampler),
    /// Metropolis acceptance (basin hopping).
    Metropolis(MetropolisSampler),
    /// Clusters of the low-energy structures (GOFEE).
    Kmeans(KMeansSampler),
}

/// Why a sampler could not take an iteration's structures.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("sampler: {0}")]
pub struct SamplerError(pub String);

impl Sampler {
    /// The sampler a script's `[sampler]` describes; `descriptor` is how a `kmeans`
    /// sampler describes structures (the search's Fingerprint), which it needs.
    pub fn from_settings(
        s: &script::SamplerSettings,
        descriptor: Option<&FingerprintSpec>,
    ) -> Result<Self, SamplerError> {
        Ok(match *s {
            script::SamplerSettings::Lowest => Sampler::Lowest(LowestSampler),
            script::SamplerSettings::Metropolis { temperature } => {
                Sampler::Metropolis(MetropolisSampler::new(temperature))
            }
            script::SamplerSettings::Kmeans {
                sample_size,
                max_energy,
                n_init,
            } => Sampler::Kmeans(KMeansSampler::new(
                sample_size,
                max_energy,
                KMeansSettings {
                    n_init,
                    ..KMeansSettings::default()
                },
                descriptor
                    .ok_or_else(|| SamplerError("kmeans: no descriptor given".into()))?
                    .clone(),
            )),
        })
    }

    /// The sampler's name (`lowest`, `metropolis`, `kmeans`).
    pub fn name(&self) -> &'static str {
        match self {
            Sampler::Lowest(_) => "lowest",
            Sampler::Metropolis(_) => "metropolis",
            Sampler::Kmeans(_) => "kmeans",
        }
    }
}

/// What an [`update`](SamplerModule::update) did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SamplerUpdate {
    /// One flag per evaluated candidate, in input order: true when it became the
    /// sampler's parent (AGOX's `accepted` meta for the Metropolis sampler).
    pub accepted: Vec<bool>,
    /// Whether the parents changed (so the next synchronization sends them).
    pub changed: bool,
}

/// The energy a sampler compares, if the candidate has a usable one.
fn energy(c: &Candidate) -> Option<f64> {
    c.energy.filter(|e| e.is_finite())
}

/// A sampler on the pool: the sampler (static) and its parents (dynamic attribute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerModule {
    /// How parents are chosen and updated.
    pub sampler: Sampler,
    /// The current parents (empty until the first evaluated candidate); synchronized to
    /// the workers.
    pub parents: Vec<Candidate>,
}

impl Module for SamplerModule {
    const TYPE_NAME: &'static str = "Sampler";
    agox_pool::dynamic_attributes!(parents);
}

impl SamplerModule {
    /// An empty sampler module.
    pub fn new(sampler: Sampler) -> Self {
        SamplerModule {
            sampler,
            parents: Vec::new(),
        }
    }

    /// An empty module for the script's `[sampler]` (see [`Sampler::from_settings`]).
    pub fn from_settings(
        s: &script::SamplerSettings,
        descriptor: Option<&FingerprintSpec>,
    ) -> Result<Self, SamplerError> {
        Sampler::from_settings(s, descriptor).map(Self::new)
    }

    /// True once the sampler has a parent to give.
    pub fn is_initialized(&self) -> bool {
        !self.parents.is_empty()
    }

    /// The structure a generator modifies: one of the parents, uniformly (AGOX's
    /// `np.random.choice`), or `None` while empty.
    pub fn get_parent<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<&Candidate> {
        match self.parents.len() {
            0 => None,
            1 => self.parents.first(),
            n => self.parents.get(rng.gen_range(0..n)),
        }
    }

    /// Driver side, after an iteration's evaluation: offers the evaluated candidates
    /// (those without a finite energy are ignored) to the sampler.
    pub fn update<R: Rng + ?Sized>(
        &mut self,
        evaluated: &[Candidate],
        rng: &mut R,
    ) -> Result<SamplerUpdate, SamplerError> {
        Ok(match &mut self.sampler {
            Sampler::Lowest(s) => s.update(&mut self.parents, evaluated),
            Sampler::Metropolis(s) => s.update(&mut self.parents, evaluated, rng),
            Sampler::Kmeans(s) => s.update(&mut self.parents, evaluated, rng)?,
        })
    }

    /// Replays a resumed run's stored iterations, `(iteration, its stored
    /// candidates, its random stream)` in order, ending in the state the run had
    /// after the last one. A `kmeans` sampler's sample depends only on what it was
    /// offered and the last iteration's stream, so only the last is clustered.
    pub fn replay<'a, R: Rng>(
        &mut self,
        iterations: impl IntoIterator<Item = (&'a [Candidate], R)>,
    ) -> Result<(), SamplerError> {
        let mut iterations = iterations.into_iter().peekable();
        while let Some((stored, mut rng)) = iterations.next() {
            match &mut self.sampler {
                Sampler::Kmeans(s) if iterations.peek().is_some() => s.absorb(stored)?,
                _ => {
                    self.update(stored, &mut rng)?;
                }
            }
        }
        Ok(())
    }
}
