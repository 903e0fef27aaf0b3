//! `[search]`: the algorithm, how long, the seed, the workers and the output.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::read::{Ctx, Keys};
pub use crate::algorithm::Algorithm;

/// Iterations in a row without a single generated candidate after which a run stops
/// (`[search] max_failed_iterations`).
pub const DEFAULT_MAX_FAILED_ITERATIONS: u64 = 10;

/// `[search]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchSettings {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Number of iterations (≥ 1).
    pub iterations: u64,
    /// Run seed; `None`: drawn at start and recorded in the run's `run.json`.
    pub seed: Option<u64>,
    /// Worker processes; `None`: `SLURM_NTASKS` or the CPUs this process may use
    /// (see [`super::default_workers`]).
    pub workers: Option<usize>,
    /// Output directory (absolute; relative paths in the script are relative to the
    /// script's directory; default: the script's file stem).
    pub output: PathBuf,
    /// A run stops with an error after this many iterations in a row in which no
    /// candidate could be generated (default 10).
    #[serde(default = "default_max_failed")]
    pub max_failed_iterations: u64,
    /// What to do with a candidate whose task failed for good (default: fail the run).
    #[serde(default)]
    pub on_task_failure: OnTaskFailure,
}

/// What a run does with a candidate whose pool task failed for good — its worker was
/// lost, or it timed out, on every attempt `[pool] max_retries` allows
/// (`[search] on_task_failure`). A calculation that fails (a structure a generator
/// cannot make, a relaxation or an external calculator that reports an error) is
/// not a task failure: it is counted and reported, whatever this says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTaskFailure {
    /// Stop the run with an error naming the iteration, the candidate, the function
    /// and the last worker's fate; everything before the iteration stays stored, and
    /// `--resume` redoes the whole iteration.
    #[default]
    Fail,
    /// Drop the candidate, count it (`dropped_candidates` in `summary.json`), warn,
    /// and go on: the run's results then differ from an undisturbed run's.
    Skip,
}

impl OnTaskFailure {
    /// The name used in scripts (`fail`, `skip`).
    pub fn name(self) -> &'static str {
        match self {
            OnTaskFailure::Fail => "fail",
            OnTaskFailure::Skip => "skip",
        }
    }
}

fn default_max_failed() -> u64 {
    DEFAULT_MAX_FAILED_ITERATIONS
}

pub(super) fn read(
    cx: &mut Ctx<'_>,
    mut keys: Keys<'_>,
    path: &Path,
    dir: &Path,
) -> Option<SearchSettings> {
    let at = keys.at();
    let algorithm_v = keys.get("algorithm");
    let iterations_v = keys.get("iterations");
    let seed_v = keys.get("seed");
    let workers_v = keys.get("workers");
    let output_v = keys.get("output");
    let max_failed_v = keys.get("max_failed_iterations");
    let on_task_failure_v = keys.get("on_task_failure");
    let key = |k: &str| keys.key(k);

    let names = Algorithm::ALL.map(Algorithm::name);
    let algorithm = match algorithm_v {
        Some(v) => cx
            .choice(v, &key("algorithm"), &names)
            .and_then(|a| Algorithm::from_name(&a)),
        None => {
            cx.missing(at, &key("algorithm"), "\"rss\", \"bh\" or \"gofee\"");
            None
        }
    };
    let iterations = match iterations_v {
        Some(v) => cx.u64_at_least(v, &key("iterations"), 1),
        None => {
            cx.missing(at, &key("iterations"), "an integer ≥ 1");
            None
        }
    };
    let seed = match seed_v {
        Some(v) => cx.u64_at_least(v, &key("seed"), 0).map(Some),
        None => Some(None),
    };
    let workers = match workers_v {
        Some(v) => cx.usize_at_least(v, &key("workers"), 1).map(Some),
        None => Some(None),
    };
    let max_failed_iterations = match max_failed_v {
        Some(v) => cx.u64_at_least(v, &key("max_failed_iterations"), 1),
        None => Some(DEFAULT_MAX_FAILED_ITERATIONS),
    };
    let on_task_failure = match on_task_failure_v {
        Some(v) => cx
            .choice(v, &key("on_task_failure"), &["fail", "skip"])
            .map(|c| match c.as_str() {
                "skip" => OnTaskFailure::Skip,
                _ => OnTaskFailure::Fail,
            }),
        None => Some(OnTaskFailure::Fail),
    };
    let output = match output_v {
        Some(v) => cx
            .string(v, &key("output"), "a directory path (string)")
            .and_then(|o| {
                if o.trim().is_empty() {
                    cx.expected(v, &key("output"), "a non-empty directory path");
                    None
                } else {
                    Some(dir.join(o))
                }
            }),
        None => {
            let stem = path
                .file_stem()
                .map_or_else(|| "output".into(), |s| s.to_string_lossy().into_owned());
            Some(dir.join(stem))
        }
    };
    if !keys.finish(cx) {
        return None;
    }
    Some(SearchSettings {
        algorithm: algorithm?,
        iterations: iterations?,
        seed: seed?,
        workers: workers?,
        output: output?,
        max_failed_iterations: max_failed_iterations?,
        on_task_failure: on_task_failure?,
    })
}
