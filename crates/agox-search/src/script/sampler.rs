//! `[sampler]`: which structures the parent-modifying generators start from.

use serde::{Deserialize, Serialize};

use super::read::{not_for_kind, Ctx, Keys};

/// AGOX's KMeans sample size.
pub const DEFAULT_SAMPLE_SIZE: usize = 10;
/// AGOX's KMeans energy window (eV above the lowest).
pub const DEFAULT_MAX_ENERGY: f64 = 5.0;
/// k-means runs per clustering (AGOX: scikit-learn's `n_init = 10`).
pub const DEFAULT_N_INIT: usize = 10;

/// `[sampler]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SamplerSettings {
    /// The lowest-energy structure found so far.
    Lowest,
    /// Metropolis: accept a new structure with probability `min(1, exp(-ΔE/T))`.
    Metropolis {
        /// Temperature (energy units: eV, or ε for LJ).
        temperature: f64,
    },
    /// AGOX's KMeans sampler: the lowest structure of each of up to `sample_size`
    /// clusters of the low-energy structures, clustered by their Fingerprint.
    Kmeans {
        /// Largest number of parents (clusters).
        sample_size: usize,
        /// Energy window above the lowest energy (doubled until it holds
        /// 2·sample_size structures).
        max_energy: f64,
        /// k-means runs, the best kept.
        n_init: usize,
    },
}

impl SamplerSettings {
    /// AGOX's KMeans sampler settings.
    pub fn kmeans() -> Self {
        SamplerSettings::Kmeans {
            sample_size: DEFAULT_SAMPLE_SIZE,
            max_energy: DEFAULT_MAX_ENERGY,
            n_init: DEFAULT_N_INIT,
        }
    }
}

const KINDS: &str = "\"lowest\", \"metropolis\" or \"kmeans\"";

pub(super) fn read(cx: &mut Ctx<'_>, mut keys: Keys<'_>) -> Option<SamplerSettings> {
    let kind_v = keys.get("kind");
    let temperature_v = keys.get("temperature");
    let sample_size_v = keys.get("sample_size");
    let max_energy_v = keys.get("max_energy");
    let n_init_v = keys.get("n_init");
    let key = |k: &str| keys.key(k);
    let kind = match kind_v {
        Some(v) => cx.choice(v, &key("kind"), &["lowest", "metropolis", "kmeans"]),
        None => {
            cx.missing(keys.at(), &key("kind"), KINDS);
            None
        }
    };
    let kmeans_keys = ["sample_size", "max_energy", "n_init"];
    let settings = match kind.as_deref() {
        Some("lowest") => {
            not_for_kind(cx, &keys, "lowest", &["temperature"]);
            not_for_kind(cx, &keys, "lowest", &kmeans_keys);
            Some(SamplerSettings::Lowest)
        }
        Some("metropolis") => {
            not_for_kind(cx, &keys, "metropolis", &kmeans_keys);
            match temperature_v {
                Some(v) => cx
                    .positive(v, &key("temperature"))
                    .map(|temperature| SamplerSettings::Metropolis { temperature }),
                None => {
                    cx.missing(
                        keys.at(),
                        &key("temperature"),
                        "a temperature > 0 in energy units (eV)",
                    );
                    None
                }
            }
        }
        Some(_) => {
            not_for_kind(cx, &keys, "kmeans", &["temperature"]);
            let sample_size = sample_size_v.map_or(Some(DEFAULT_SAMPLE_SIZE), |v| {
                cx.usize_at_least(v, &key("sample_size"), 1)
            });
            let max_energy = max_energy_v.map_or(Some(DEFAULT_MAX_ENERGY), |v| {
                cx.positive(v, &key("max_energy"))
            });
            let n_init = n_init_v.map_or(Some(DEFAULT_N_INIT), |v| {
                cx.usize_at_least(v, &key("n_init"), 1)
            });
            match (sample_size, max_energy, n_init) {
                (Some(sample_size), Some(max_energy), Some(n_init)) => {
                    Some(SamplerSettings::Kmeans {
                        sample_size,
                        max_energy,
                        n_init,
                    })
                }
                _ => None,
            }
        }
        None => None,
    };
    let clean = keys.finish(cx);
    settings.filter(|_| clean)
}
