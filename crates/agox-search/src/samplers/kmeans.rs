//! `kmeans`: AGOX's `KMeansSampler`, GOFEE's sampler.

use agox_models::descriptor::{Descriptor, FeatureSet};
use agox_models::fingerprint::{Fingerprint, FingerprintSpec, FingerprintWorkspace};
use agox_models::kmeans::{kmeans, KMeansSettings};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{energy, SamplerError, SamplerUpdate};
use crate::candidate::Candidate;

/// Every structure offered, clustered by its Fingerprint; the sample is the
/// lowest-energy structure of each cluster (AGOX's `KMeansSampler` with its
/// `KMeansEnergyFilter`):
///
/// 1. **window**: the structures within `max_energy·2^i` of the lowest energy, for
///    the first `i` in 0..5 that keeps at least `2·sample_size` of them; if none
///    does, the `2·sample_size` lowest (ties in offering order);
/// 2. **clusters**: `1 + min(sample_size − 1, ⌊M/5⌋)` of the M structures in the
///    window, k-means++ with `n_init` runs on their Fingerprints (summed over the
///    descriptor's centres: one for the global Fingerprint), seeded from the
///    iteration's random stream;
/// 3. **sample**: the lowest-energy member of each cluster (the first on ties),
///    sorted by energy; the generators draw their parent uniformly from it.
///
/// The structures offered live in the driver's copy only; the workers receive the
/// sample (the module's `parents`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeansSampler {
    /// Largest sample (number of clusters).
    pub sample_size: usize,
    /// The energy window above the lowest energy (eV).
    pub max_energy: f64,
    /// k-means settings.
    pub kmeans: KMeansSettings,
    /// The Fingerprint the structures are described with.
    pub descriptor: FingerprintSpec,
    /// Driver only: every structure offered, in order.
    #[serde(skip)]
    members: Vec<Member>,
}

/// One structure offered to the sampler.
#[derive(Debug, Clone, PartialEq)]
struct Member {
    candidate: Candidate,
    energy: f64,
    features: Vec<f64>,
}

impl KMeansSampler {
    /// A sampler clustering with the Fingerprint `descriptor`.
    pub fn new(
        sample_size: usize,
        max_energy: f64,
        kmeans: KMeansSettings,
        descriptor: FingerprintSpec,
    ) -> Self {
        KMeansSampler {
            sample_size,
            max_energy,
            kmeans,
            descriptor,
            members: Vec::new(),
        }
    }

    /// Structures offered so far.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True before any structure was offered.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Indices (into the members) of the structures in the energy window.
    fn window(&self) -> Vec<usize> {
        let e: Vec<f64> = self.members.iter().map(|m| m.energy).collect();
        let e_min = e.iter().copied().fold(f64::INFINITY, f64::min);
        let want = 2 * self.sample_size;
        for i in 0..5 {
            let limit = e_min + self.max_energy * f64::from(1u32 << i);
            let inside: Vec<usize> = (0..e.len()).filter(|&k| e[k] <= limit).collect();
            if inside.len() >= want {
                return inside;
            }
        }
        let mut order: Vec<usize> = (0..e.len()).collect();
        order.sort_by(|&a, &b| e[a].total_cmp(&e[b]).then(a.cmp(&b)));
        order.truncate(want);
        order.sort_unstable();
        order
    }

    /// Offers `evaluated` and recomputes the sample into `parents`.
    pub fn update<R: Rng + ?Sized>(
        &mut self,
        parents: &mut Vec<Candidate>,
        evaluated: &[Candidate],
        rng: &mut R,
    ) -> Result<SamplerUpdate, SamplerError> {
        self.absorb(evaluated)?;
        let first_new =
            self.members.len() - evaluated.iter().filter(|c| energy(c).is_some()).count();
        let sample = self.sample(rng)?;
        let mut accepted = vec![false; evaluated.len()];
        let mut k = first_new;
        for (flag, c) in accepted.iter_mut().zip(evaluated) {
            if energy(c).is_some() {
                *flag = sample.contains(&k);
                k += 1;
            }
        }
        let new: Vec<Candidate> = sample
            .iter()
            .map(|&i| self.members[i].candidate.clone())
            .collect();
        let changed = new != *parents;
        *parents = new;
        Ok(SamplerUpdate { accepted, changed })
    }

    /// Offers `evaluated` without recomputing the sample (a resumed run replaying
    /// its earlier iterations: only the last sample matters).
    pub fn absorb(&mut self, evaluated: &[Candidate]) -> Result<(), SamplerError> {
        let descriptor = Fingerprint::new(self.descriptor.clone())
            .map_err(|e| SamplerError(format!("kmeans: {e}")))?;
        let mut ws = FingerprintWorkspace::default();
        let mut set = FeatureSet::new();
        for c in evaluated {
            let Some(e) = energy(c) else { continue };
            descriptor
                .compute(&c.atoms, false, &mut ws, &mut set)
                .map_err(|e| SamplerError(format!("kmeans: {e}")))?;
            let n_features = set.n_features();
            let mut features = vec![0.0; n_features];
            for centre in 0..set.n_centers() {
                for (f, x) in features.iter_mut().zip(set.center(centre)) {
                    *f += x;
                }
            }
            self.members.push(Member {
                candidate: c.clone(),
                energy: e,
                features,
            });
        }
        Ok(())
    }

    /// The sample: member indices, lowest energy first.
    fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Result<Vec<usize>, SamplerError> {
        if self.members.is_empty() {
            return Ok(Vec::new());
        }
        let window = self.window();
        let m = window.len();
        let n_features = self.members[window[0]].features.len();
        let x: Vec<f64> = window
            .iter()
            .flat_map(|&i| self.members[i].features.iter().copied())
            .collect();
        let k = 1 + (self.sample_size - 1).min(m / 5);
        let clustering = kmeans(&x, n_features, k, &self.kmeans, rng.gen())
            .map_err(|e| SamplerError(e.to_string()))?;
        let mut sample: Vec<usize> = Vec::with_capacity(k);
        for cluster in 0..k {
            let best = (0..m)
                .filter(|&j| clustering.labels[j] == cluster)
                .min_by(|&a, &b| {
                    let (ea, eb) = (
                        self.members[window[a]].energy,
                        self.members[window[b]].energy,
                    );
                    ea.total_cmp(&eb).then(a.cmp(&b))
                });
            if let Some(j) = best {
                sample.push(window[j]);
            }
        }
        sample.sort_by(|&a, &b| {
            self.members[a]
                .energy
                .total_cmp(&self.members[b].energy)
                .then(a.cmp(&b))
        });
        Ok(sample)
    }
}
