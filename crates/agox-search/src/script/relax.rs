//! `[relax]`: local relaxation of every candidate in the model. The optimizer
//! settings and their defaults are shared with `[evaluator] kind = "relax"`.

use serde::{Deserialize, Serialize};

use super::read::{Ctx, Keys};
use super::tree::Node;
use crate::algorithm::RelaxDefaults;

/// Default convergence criterion: largest atomic force (eV/Å).
pub const DEFAULT_FMAX: f64 = 0.05;
/// Default largest number of optimizer steps.
pub const DEFAULT_STEPS: usize = 200;

/// The local optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    /// BFGS as ASE's (maxstep 0.2, alpha 70).
    Bfgs,
    /// FIRE as ASE's.
    Fire,
}

impl RelaxSettings {
    /// `[relax]` left out of a script whose algorithm always relaxes: BFGS,
    /// `fmax = 0.05` and the algorithm's defaults.
    pub fn defaults(d: RelaxDefaults) -> Self {
        RelaxSettings {
            optimizer: Optimizer::Bfgs,
            fmax: DEFAULT_FMAX,
            steps: d.steps,
            start_iteration: d.start_iteration,
        }
    }
}

/// `[relax]`: relaxation of candidates in the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelaxSettings {
    /// Optimizer (default BFGS).
    pub optimizer: Optimizer,
    /// Convergence: largest atomic force below this (default 0.05).
    pub fmax: f64,
    /// At most this many steps (default 200).
    pub steps: usize,
    /// Relax only from this iteration on (default 0).
    pub start_iteration: u64,
}

/// `optimizer`, `fmax` and `steps` with their defaults (in `[relax]` and in a
/// relaxing `[evaluator]`).
pub(super) fn optimizer_settings(
    cx: &mut Ctx<'_>,
    keys: &Keys<'_>,
    (optimizer, fmax, steps): (Option<&Node>, Option<&Node>, Option<&Node>),
    default_steps: usize,
) -> Option<(Optimizer, f64, usize)> {
    let optimizer = match optimizer {
        Some(v) => cx
            .choice(v, &keys.key("optimizer"), &["bfgs", "fire"])
            .map(|o| {
                if o == "fire" {
                    Optimizer::Fire
                } else {
                    Optimizer::Bfgs
                }
            }),
        None => Some(Optimizer::Bfgs),
    };
    let fmax = fmax.map_or(Some(DEFAULT_FMAX), |v| cx.positive(v, &keys.key("fmax")));
    let steps = steps.map_or(Some(default_steps), |v| {
        cx.usize_at_least(v, &keys.key("steps"), 1)
    });
    Some((optimizer?, fmax?, steps?))
}

pub(super) fn read(
    cx: &mut Ctx<'_>,
    mut keys: Keys<'_>,
    defaults: RelaxDefaults,
) -> Option<RelaxSettings> {
    let optimizer_v = keys.get("optimizer");
    let fmax_v = keys.get("fmax");
    let steps_v = keys.get("steps");
    let start_v = keys.get("start_iteration");
    let opt = optimizer_settings(cx, &keys, (optimizer_v, fmax_v, steps_v), defaults.steps);
    let start_iteration = start_v.map_or(Some(defaults.start_iteration), |v| {
        cx.u64_at_least(v, &keys.key("start_iteration"), 0)
    });
    if !keys.finish(cx) {
        return None;
    }
    let (optimizer, fmax, steps) = opt?;
    Some(RelaxSettings {
        optimizer,
        fmax,
        steps,
        start_iteration: start_iteration?,
    })
}
