//! The search script: one TOML file, parsed and validated before anything runs.
//!
//! [`Script::load`] reads a file, checks every key (unknown keys, wrong types,
//! impossible values: more atoms than fit in the confinement box, counts ≤ 0, a box
//! outside the cell, unknown elements, settings whose memory would not fit, ...) and
//! returns the resolved settings with every default filled in and every path made
//! absolute relative to the script's directory. All problems are reported at once,
//! each with its line and key
//! (`script.toml:12:8: [relax] fmax: expected a number > 0, found the number -0.05`).
//!
//! The module tree mirrors the file: each section is read, with its defaults, by the
//! module of the same name ([`search`], [`environment`], [`calculator`],
//! [`generators`] for `[[generator]]`, [`sampler`], [`relax`], [`evaluator`],
//! [`pool`], [`model`] and [`acquisition`] for `gofee`); `cross` holds the checks
//! that need several sections. Defaults that depend on the algorithm come from
//! [`Algorithm`](crate::algorithm::Algorithm).
//! `docs/script-reference.md` is the contract for the format.

pub mod acquisition;
pub mod calculator;
mod cross;
pub mod environment;
mod error;
pub mod evaluator;
pub mod generators;
pub mod model;
pub mod pool;
mod read;
pub mod relax;
pub mod sampler;
pub mod search;
mod tree;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use acquisition::AcquisitionSettings;
pub use calculator::{CalculatorSettings, SocketSettings};
pub use environment::{Confinement, EnvironmentSettings};
pub use error::{ScriptError, ScriptErrors};
pub use evaluator::{EvaluatorKind, EvaluatorSettings};
pub use generators::{CountSchedule, GeneratorKind, GeneratorSettings};
pub use model::{
    GprModelSettings, KernelSettings, ModelSettings, SparseDescriptorSettings,
    SparseKernelSettings, SparseModelSettings,
};
pub use pool::PoolSettings;
pub use relax::{Optimizer, RelaxSettings};
pub use sampler::SamplerSettings;
pub use search::{Algorithm, OnTaskFailure, SearchSettings};

use crate::algorithm::SamplerNeed;
use read::{Ctx, Keys};
use tree::Kind;

/// The resolved, validated settings of a search script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Script {
    /// The script file this was read from.
    pub path: PathBuf,
    /// `[search]`: algorithm, iterations, seed, workers, output.
    pub search: SearchSettings,
    /// `[environment]`: what to place, where.
    pub environment: EnvironmentSettings,
    /// `[calculator]`: the potential that evaluates (and, here, relaxes) candidates.
    pub calculator: CalculatorSettings,
    /// `[[generator]]`: the generators and how many candidates each makes per iteration.
    pub generators: Vec<GeneratorSettings>,
    /// `[sampler]`: which structures the generators modify; `None` when no generator
    /// needs parents and none was given.
    pub sampler: Option<SamplerSettings>,
    /// `[relax]`: local relaxation of every candidate in the model; `None` = no relaxation.
    pub relax: Option<RelaxSettings>,
    /// `[evaluator]`: the expensive calculation of the chosen candidates.
    pub evaluator: EvaluatorSettings,
    /// `[pool]`: task timeout, retries, worker memory (every key optional).
    #[serde(default)]
    pub pool: PoolSettings,
    /// `[model]`: the surrogate (`gofee` only; `None` otherwise).
    #[serde(default)]
    pub model: Option<ModelSettings>,
    /// `[acquisition]`: how candidates are ranked and relaxed (`gofee` only).
    #[serde(default)]
    pub acquisition: Option<AcquisitionSettings>,
}

/// The sections a script may have.
const SECTIONS: [&str; 10] = [
    "search",
    "environment",
    "calculator",
    "generator",
    "sampler",
    "relax",
    "evaluator",
    "pool",
    "model",
    "acquisition",
];

impl Script {
    /// Read and validate the script at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Script, ScriptErrors> {
        let path = path.as_ref();
        let text = read_text(path, "a TOML script")?;
        Self::parse(&text, path)
    }

    /// Validate script `text` as if read from `path` (relative paths in the script are
    /// resolved against `path`'s directory; nothing is read except a template file).
    pub fn parse(text: &str, path: &Path) -> Result<Script, ScriptErrors> {
        let mut cx = Ctx::new(path, text);
        let root = parse_tree(&mut cx, text)?;
        let script = resolve(&mut cx, &root, path, cross::machine_memory());
        finish(cx, script)
    }

    /// The resolved settings as pretty JSON (what `agox-coord validate` prints, and
    /// what a run records in `run.json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// Number of workers to use: the script's, else [`default_workers`].
    pub fn workers(&self) -> usize {
        self.search.workers.unwrap_or_else(default_workers)
    }

    /// Total candidates generated in `iteration` over all generators.
    pub fn candidates_at(&self, iteration: u64) -> usize {
        self.generators.iter().map(|g| g.count.at(iteration)).sum()
    }

    /// The unit energies are shown in (`eV`, `ε` for Lennard-Jones in reduced units).
    pub fn energy_unit(&self) -> &str {
        self.calculator.energy_unit()
    }
}

impl fmt::Display for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

/// Default number of workers: `SLURM_NTASKS` when set to a positive integer, otherwise
/// the number of CPUs this process may run on (the pool's own default).
pub use agox_pool::default_workers;

/// The text of `path`, or the error a loader reports (`what` the file should be).
fn read_text(path: &Path, what: &str) -> Result<String, ScriptErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        let message = if path.is_dir() {
            format!("is a directory; expected {what}")
        } else {
            format!("cannot read the file: {e}")
        };
        ScriptErrors(vec![ScriptError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: "script".to_owned(),
            message,
        }])
    })
}

/// The TOML tree of `text`; a syntax error is the only error reported.
fn parse_tree(cx: &mut Ctx<'_>, text: &str) -> Result<tree::Table, ScriptErrors> {
    tree::parse(text).map_err(|(offset, message)| {
        let key = cx.src.key_at(offset);
        let e = cx
            .src
            .error(offset, key, format!("invalid TOML: {message}"));
        ScriptErrors(vec![e])
    })
}

/// What was read, if no error was found; else every error, in file order.
fn finish<T>(mut cx: Ctx<'_>, read: Option<T>) -> Result<T, ScriptErrors> {
    match read {
        Some(s) if cx.errors.is_empty() => Ok(s),
        _ => {
            if cx.errors.is_empty() {
                cx.err_file("script", "invalid script");
            }
            cx.errors.sort_by_key(|e| (e.line, e.column));
            Err(ScriptErrors(cx.errors))
        }
    }
}

fn script_dir(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::path::absolute(&dir).unwrap_or(dir)
}

/// The keys of section `name` (a table), reporting a section that is not a table.
fn section_keys<'t>(cx: &mut Ctx<'_>, root: &'t tree::Table, name: &str) -> Option<Keys<'t>> {
    let node = root.get(name)?;
    read::table(cx, node, &format!("[{name}]")).map(|t| Keys::new(format!("[{name}]"), t))
}

fn missing_section(cx: &mut Ctx<'_>, name: &str, message: &str) {
    cx.err_file(&format!("[{name}]"), format!("missing section: {message}"));
}

/// `[calculator]` of `root`, reporting it missing.
fn read_calculator(cx: &mut Ctx<'_>, root: &tree::Table, dir: &Path) -> Option<CalculatorSettings> {
    match section_keys(cx, root, "calculator") {
        Some(keys) => calculator::read(cx, keys, dir),
        None => {
            if root.get("calculator").is_none() {
                missing_section(
                    cx,
                    "calculator",
                    "expected `kind = \"emt\"`, `\"lj\"` or `\"socket\"`",
                );
            }
            None
        }
    }
}

/// Reads and validates a file holding only a `[calculator]` table, with the keys,
/// defaults and checks of a script's (`agox-coord calc/relax --calculator FILE`);
/// `{script_dir}` is the file's directory.
pub fn load_calculator(path: impl AsRef<Path>) -> Result<CalculatorSettings, ScriptErrors> {
    let path = path.as_ref();
    let text = read_text(path, "a TOML file with a [calculator] table")?;
    let mut cx = Ctx::new(path, &text);
    let root = parse_tree(&mut cx, &text)?;
    for (name, at, _) in &root.entries {
        if name != "calculator" {
            cx.err(
                *at,
                &format!("[{name}]"),
                "unknown section; expected only `[calculator]` in a calculator file",
            );
        }
    }
    let settings = read_calculator(&mut cx, &root, &script_dir(path));
    finish(cx, settings)
}

fn resolve(
    cx: &mut Ctx<'_>,
    root: &tree::Table,
    path: &Path,
    memory: Option<u64>,
) -> Option<Script> {
    let dir = script_dir(path);
    for (name, at, _) in &root.entries {
        if !SECTIONS.contains(&name.as_str()) {
            let list: Vec<String> = SECTIONS.iter().map(|s| format!("`{s}`")).collect();
            cx.err(
                *at,
                &format!("[{name}]"),
                format!("unknown section; expected one of {}", list.join(", ")),
            );
        }
    }

    let search = match section_keys(cx, root, "search") {
        Some(keys) => search::read(cx, keys, path, &dir),
        None => {
            if root.get("search").is_none() {
                missing_section(
                    cx,
                    "search",
                    "expected at least `algorithm` and `iterations`",
                );
            }
            None
        }
    };
    let environment = match section_keys(cx, root, "environment") {
        Some(keys) => environment::read(cx, keys, &dir),
        None => {
            if root.get("environment").is_none() {
                missing_section(cx, "environment", "expected at least `symbols` and `cell`");
            }
            None
        }
    };
    let calculator = read_calculator(cx, root, &dir);
    let generators = match root.get("generator") {
        Some(tree::Node {
            kind: Kind::Array(list),
            ..
        }) if list.iter().all(|g| matches!(g.kind, Kind::Table(_))) && !list.is_empty() => {
            let read: Vec<Option<GeneratorSettings>> = list
                .iter()
                .enumerate()
                .map(|(i, g)| match &g.kind {
                    Kind::Table(t) => {
                        generators::read(cx, Keys::new(format!("[[generator]] #{}", i + 1), t))
                    }
                    _ => None,
                })
                .collect();
            read.into_iter().collect::<Option<Vec<_>>>()
        }
        Some(other) => {
            cx.expected(other, "[[generator]]", "`[[generator]]` tables");
            None
        }
        None => match search.as_ref().map(|s| s.algorithm) {
            // An algorithm with default generators needs no section.
            Some(a) if a.default_generators(0).is_some() => environment
                .as_ref()
                .and_then(|env| a.default_generators(env.numbers.len())),
            _ => {
                missing_section(
                    cx,
                    "[generator]",
                    "expected at least one `[[generator]]` with a `kind`",
                );
                None
            }
        },
    };
    // Defaults that depend on the algorithm (rss's when [search] is unusable: the
    // script fails anyway, and its other sections are still checked).
    let algorithm = search.as_ref().map_or(Algorithm::Rss, |s| s.algorithm);
    let sampler = section_keys(cx, root, "sampler").map(|keys| sampler::read(cx, keys));
    let relax = section_keys(cx, root, "relax")
        .map(|keys| relax::read(cx, keys, algorithm.relax_defaults()));
    let evaluator = match section_keys(cx, root, "evaluator") {
        Some(keys) => evaluator::read(cx, keys, &algorithm.evaluator_defaults()),
        None => Some(algorithm.evaluator_defaults()),
    };
    let pool = match section_keys(cx, root, "pool") {
        Some(keys) => pool::read(cx, keys),
        None => Some(PoolSettings::default()),
    };
    let model = section_keys(cx, root, "model").map(|keys| model::read(cx, keys));
    let acquisition = section_keys(cx, root, "acquisition").map(|keys| acquisition::read(cx, keys));
    if search.is_some() && !algorithm.trains_model() {
        for name in ["model", "acquisition"] {
            if let Some(t) = cross::section(root, name, None) {
                cx.err(
                    t.at,
                    &format!("[{name}]"),
                    format!(
                        "a section of algorithm = \"gofee\"; algorithm = \"{}\" has no model",
                        algorithm.name()
                    ),
                );
            }
        }
    }
    let (model, acquisition) = if algorithm.trains_model() {
        (
            Some(model.unwrap_or_else(|| Some(ModelSettings::default()))),
            Some(acquisition.unwrap_or_else(|| Some(AcquisitionSettings::default()))),
        )
    } else {
        (None, None)
    };
    if let (Some(Some(m)), Some(env)) = (&model, &environment) {
        cross::model_in_environment(cx, root, m, env);
    }

    // Checks across sections.
    if let (Some(env), Some(calc)) = (&environment, &calculator) {
        cross::calculator_elements(cx, root, env, calc);
    }
    if let Some(gens) = &generators {
        if let Some(env) = &environment {
            cross::generators_in_environment(cx, root, gens, env);
            cross::memory(cx, root, gens, env, memory);
        }
        cross::schedule_totals(cx, root, gens);
    }
    let sampler = match (&search, sampler) {
        // A sampler section with an error yields nothing more to check.
        (_, Some(None)) => None,
        (Some(search), given) => match search.algorithm.sampler(
            given.flatten().as_ref(),
            generators.as_deref().unwrap_or(&[]),
        ) {
            SamplerNeed::Use(s) => s,
            SamplerNeed::Required(message) => {
                missing_section(cx, "sampler", message);
                None
            }
        },
        (None, given) => given.flatten(),
    };
    let relax = match relax {
        Some(r) => Some(r?),
        None if algorithm.always_relaxes() => {
            Some(RelaxSettings::defaults(algorithm.relax_defaults()))
        }
        None => None,
    };
    let model = match model {
        Some(m) => Some(m?),
        None => None,
    };
    let acquisition = match acquisition {
        Some(a) => Some(a?),
        None => None,
    };
    Some(Script {
        path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
        search: search?,
        environment: environment?,
        calculator: calculator?,
        generators: generators?,
        sampler,
        relax,
        evaluator: evaluator?,
        pool: pool?,
        model,
        acquisition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn schedule_lookup() {
        let s = CountSchedule::Schedule(BTreeMap::from([(2, 10), (5, 3)]));
        assert_eq!(
            (0..8).map(|i| s.at(i)).collect::<Vec<_>>(),
            [0, 0, 10, 10, 10, 3, 3, 3]
        );
        assert_eq!(s.breakpoints(), [2, 5]);
        assert_eq!(s.max(), 10);
        assert_eq!(CountSchedule::Fixed(4).at(99), 4);
    }

    /// `run.json` records `to_json`; `--resume` reads the settings back from it.
    #[test]
    fn resolved_settings_read_back_from_json() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/inputs/good");
        for name in [
            "au_slab_cu3.toml",
            "lj13_bh.toml",
            "schedule_agox_form.toml",
        ] {
            let s = Script::load(Path::new(dir).join(name)).expect("valid");
            let back: Script = serde_json::from_str(&s.to_json()).expect("reads back");
            assert_eq!(back, s, "{name}");
        }
    }
}
