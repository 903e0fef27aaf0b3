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
    })
}
