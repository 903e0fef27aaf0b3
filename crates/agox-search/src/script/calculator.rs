//! `[calculator]`: the potential that evaluates (and, here, relaxes) candidates.

use serde::{Deserialize, Serialize};

use super::read::{not_for_kind, Ctx, Keys};

/// The energy unit of Lennard-Jones runs unless the script names one: the well depth.
pub const LJ_DEFAULT_UNIT: &str = "ε";

/// `[calculator]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CalculatorSettings {
    /// ASE-compatible EMT (elements H, C, N, O, Al, Ni, Cu, Pd, Ag, Pt, Au); energies in eV.
    Emt,
    /// Lennard-Jones (as ASE's `LennardJones(smooth=False)`).
    Lj {
        /// Well depth (eV or reduced units).
        epsilon: f64,
        /// Length scale (Å or reduced units).
        sigma: f64,
        /// Pair cutoff (default 3σ, ASE's default).
        cutoff: f64,
        /// Shift pair energies to zero at the cutoff (default true, as ASE).
        shift: bool,
        /// The unit energies are shown in (default "ε": reduced units).
        #[serde(default = "lj_default_unit")]
        energy_unit: String,
    },
}

fn lj_default_unit() -> String {
    LJ_DEFAULT_UNIT.to_owned()
}

impl CalculatorSettings {
    /// The unit of the energies this calculator computes, as shown to the user.
    pub fn energy_unit(&self) -> &str {
        match self {
            CalculatorSettings::Emt => "eV",
            CalculatorSettings::Lj { energy_unit, .. } => energy_unit,
        }
    }
}

pub(super) fn read(cx: &mut Ctx<'_>, mut keys: Keys<'_>) -> Option<CalculatorSettings> {
    let kind_v = keys.get("kind");
    let epsilon_v = keys.get("epsilon");
    let sigma_v = keys.get("sigma");
    let cutoff_v = keys.get("cutoff");
    let shift_v = keys.get("shift");
    let unit_v = keys.get("energy_unit");
    let key = |k: &str| keys.key(k);
    let kind = match kind_v {
        Some(v) => cx.choice(v, &key("kind"), &["emt", "lj"]),
        None => {
            cx.missing(keys.at(), &key("kind"), "\"emt\" or \"lj\"");
            None
        }
    };
    let settings = match kind.as_deref() {
        Some("emt") => {
            not_for_kind(
                cx,
                &keys,
                "emt",
                &["epsilon", "sigma", "cutoff", "shift", "energy_unit"],
            );
            Some(CalculatorSettings::Emt)
        }
        Some(_) => {
            let epsilon = epsilon_v.map_or(Some(1.0), |v| cx.positive(v, &key("epsilon")));
            let sigma = sigma_v.map_or(Some(1.0), |v| cx.positive(v, &key("sigma")));
            let cutoff = match (cutoff_v, sigma) {
                (Some(v), _) => cx.positive(v, &key("cutoff")),
                (None, s) => s.map(|s| 3.0 * s),
            };
            let shift = shift_v.map_or(Some(true), |v| cx.boolean(v, &key("shift")));
            let energy_unit = match unit_v {
                Some(v) => cx
                    .string(v, &key("energy_unit"), "a unit name such as \"eV\"")
                    .filter(|u| {
                        let ok = !u.trim().is_empty();
                        if !ok {
                            cx.expected(
                                v,
                                &key("energy_unit"),
                                "a non-empty unit name such as \"eV\"",
                            );
                        }
                        ok
                    }),
                None => Some(lj_default_unit()),
            };
            Some(CalculatorSettings::Lj {
                epsilon: epsilon?,
                sigma: sigma?,
                cutoff: cutoff?,
                shift: shift?,
                energy_unit: energy_unit?,
            })
        }
        None => None,
    };
    let clean = keys.finish(cx);
    settings.filter(|_| clean)
}
