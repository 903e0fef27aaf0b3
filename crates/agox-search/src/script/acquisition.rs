//! `[acquisition]`: how `algorithm = "gofee"` ranks candidates and what it relaxes
//! them in: the lower confidence bound `E − κσ` of the model.

use serde::{Deserialize, Serialize};

use super::read::{Ctx, Keys};

/// κ of GOFEE's lower confidence bound (AGOX's `LCBConfig`).
pub const DEFAULT_KAPPA: f64 = 2.0;

/// `[acquisition]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AcquisitionSettings {
    /// The lower confidence bound `E − κσ`.
    Lcb {
        /// κ ≥ 0 (AGOX's GOFEE: 2).
        kappa: f64,
    },
}

impl Default for AcquisitionSettings {
    fn default() -> Self {
        AcquisitionSettings::Lcb {
            kappa: DEFAULT_KAPPA,
        }
    }
}

impl AcquisitionSettings {
    /// κ.
    pub fn kappa(&self) -> f64 {
        match *self {
            AcquisitionSettings::Lcb { kappa } => kappa,
        }
    }
}

pub(super) fn read(cx: &mut Ctx<'_>, mut keys: Keys<'_>) -> Option<AcquisitionSettings> {
    let kind_v = keys.get("kind");
    let kappa_v = keys.get("kappa");
    let kind = kind_v.map_or(Some("lcb".to_owned()), |v| {
        cx.choice(v, &keys.key("kind"), &["lcb"])
    });
    let kappa = kappa_v.map_or(Some(DEFAULT_KAPPA), |v| {
        cx.at_least(v, &keys.key("kappa"), 0.0)
    });
    if !keys.finish(cx) {
        return None;
    }
    kind?;
    Some(AcquisitionSettings::Lcb { kappa: kappa? })
}
