//! `[sampler]`: which structures the parent-modifying generators start from.

use serde::{Deserialize, Serialize};

use super::read::{not_for_kind, Ctx, Keys};

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
}

pub(super) fn read(cx: &mut Ctx<'_>, mut keys: Keys<'_>) -> Option<SamplerSettings> {
    let kind_v = keys.get("kind");
    let temperature_v = keys.get("temperature");
    let key = |k: &str| keys.key(k);
    let kind = match kind_v {
        Some(v) => cx.choice(v, &key("kind"), &["lowest", "metropolis"]),
        None => {
            cx.missing(keys.at(), &key("kind"), "\"lowest\" or \"metropolis\"");
            None
        }
    };
    let settings = match kind.as_deref() {
        Some("lowest") => {
            not_for_kind(cx, &keys, "lowest", &["temperature"]);
            Some(SamplerSettings::Lowest)
        }
        Some(_) => match temperature_v {
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
        },
        None => None,
    };
    let clean = keys.finish(cx);
    settings.filter(|_| clean)
}
