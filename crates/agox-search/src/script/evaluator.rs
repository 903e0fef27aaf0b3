//! `[evaluator]`: the expensive calculation of the chosen candidates.

use serde::{Deserialize, Serialize};

use super::read::{not_for_kind, Ctx, Keys};
use super::relax::{optimizer_settings, Optimizer, DEFAULT_STEPS};

/// `[evaluator]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluatorSettings {
    /// What the evaluation does.
    pub kind: EvaluatorKind,
    /// Candidates evaluated per iteration, lowest model energy first; `None`: all.
    pub count: Option<usize>,
}

impl Default for EvaluatorSettings {
    /// A single point of every candidate (the section left out).
    fn default() -> Self {
        EvaluatorSettings {
            kind: EvaluatorKind::SinglePoint,
            count: None,
        }
    }
}

/// Evaluator kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EvaluatorKind {
    /// One energy and force calculation.
    SinglePoint,
    /// A local relaxation in the calculator.
    Relax {
        /// Optimizer (default BFGS).
        optimizer: Optimizer,
        /// Convergence criterion (default 0.05).
        fmax: f64,
        /// At most this many steps (default 200).
        steps: usize,
        /// Store every step of the relaxation (each a calculator call), not only
        /// the last (AGOX's `store_trajectory`; default false, true in `gofee`).
        #[serde(default)]
        store_trajectory: bool,
    },
}

pub(super) fn read(
    cx: &mut Ctx<'_>,
    mut keys: Keys<'_>,
    defaults: &EvaluatorSettings,
) -> Option<EvaluatorSettings> {
    let kind_v = keys.get("kind");
    let count_v = keys.get("count");
    let optimizer_v = keys.get("optimizer");
    let fmax_v = keys.get("fmax");
    let steps_v = keys.get("steps");
    let trajectory_v = keys.get("store_trajectory");
    let default_kind = match defaults.kind {
        EvaluatorKind::SinglePoint => "single_point",
        EvaluatorKind::Relax { .. } => "relax",
    };
    let kind = match kind_v {
        Some(v) => cx.choice(v, &keys.key("kind"), &["single_point", "relax"]),
        None => Some(default_kind.to_owned()),
    };
    let count = match count_v {
        Some(v) => cx.usize_at_least(v, &keys.key("count"), 1).map(Some),
        None => Some(defaults.count),
    };
    let kind = match kind.as_deref() {
        Some("single_point") => {
            not_for_kind(
                cx,
                &keys,
                "single_point",
                &["optimizer", "fmax", "steps", "store_trajectory"],
            );
            Some(EvaluatorKind::SinglePoint)
        }
        Some(_) => {
            let (d_steps, d_trajectory) = match defaults.kind {
                EvaluatorKind::Relax {
                    steps,
                    store_trajectory,
                    ..
                } => (steps, store_trajectory),
                EvaluatorKind::SinglePoint => (DEFAULT_STEPS, false),
            };
            let store_trajectory = trajectory_v.map_or(Some(d_trajectory), |v| {
                cx.boolean(v, &keys.key("store_trajectory"))
            });
            optimizer_settings(cx, &keys, (optimizer_v, fmax_v, steps_v), d_steps)
                .zip(store_trajectory)
                .map(
                    |((optimizer, fmax, steps), store_trajectory)| EvaluatorKind::Relax {
                        optimizer,
                        fmax,
                        steps,
                        store_trajectory,
                    },
                )
        }
        None => None,
    };
    if !keys.finish(cx) {
        return None;
    }
    Some(EvaluatorSettings {
        kind: kind?,
        count: count?,
    })
}
