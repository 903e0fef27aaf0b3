//! The search script: one TOML file, parsed and validated before anything runs.
//!
//! [`Script::load`] reads a file, checks every key (unknown keys, wrong types,
//! impossible values: more atoms than fit in the confinement box, counts ≤ 0, a box
//! outside the cell, unknown elements, ...) and returns the resolved settings with every
//! default filled in and every path made absolute relative to the script's directory.
//! All problems are reported at once, each with its line and key
//! (`script.toml:12:8: [relax] fmax: expected a number > 0, found -0.05`).
//!
//! `docs/script-reference.md` is the contract for the format.

mod check;
mod error;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use agox_atoms::Atoms;
use serde::Serialize;

pub use error::{ScriptError, ScriptErrors};

/// The resolved, validated settings of a search script.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
}

/// The search algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Random structure search: generate, relax, evaluate all.
    Rss,
    /// Basin hopping: modify the current structure, relax, Metropolis accept.
    Bh,
}

/// `[search]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchSettings {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Number of iterations (≥ 1).
    pub iterations: u64,
    /// Run seed; `None`: drawn at start and recorded in the run's summary.
    pub seed: Option<u64>,
    /// Worker processes; `None`: `SLURM_NTASKS` or the CPUs this process may use
    /// (see [`default_workers`]).
    pub workers: Option<usize>,
    /// Output directory (absolute; relative paths in the script are relative to the
    /// script's directory; default: the script's file stem).
    pub output: PathBuf,
}

/// `[environment]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvironmentSettings {
    /// The formula as written (`"Au8Cu4"`).
    pub symbols: String,
    /// Atomic numbers of the atoms to place, in formula order.
    pub numbers: Vec<u8>,
    /// Cell vectors as rows (Å).
    pub cell: [[f64; 3]; 3],
    /// Periodicity along each cell vector.
    pub pbc: [bool; 3],
    /// The box inside which generated atoms must lie.
    pub confinement: Confinement,
    /// Template file (absolute path), if any.
    pub template_path: Option<PathBuf>,
    /// The template's atoms (fixed during the search; its cell and pbc are replaced by
    /// the environment's); empty without a template.
    pub template: Atoms,
}

/// A parallelepiped `corner + s·cell` (0 ≤ s < 1 per vector) in which atoms are placed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Confinement {
    /// Corner (Å, Cartesian).
    pub corner: [f64; 3],
    /// Edge vectors as rows (Å).
    pub cell: [[f64; 3]; 3],
    /// Directions in which the box is periodic (atoms wrap instead of being confined).
    pub pbc: [bool; 3],
}

/// `[calculator]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CalculatorSettings {
    /// ASE-compatible EMT (elements H, C, N, O, Al, Ni, Cu, Pd, Ag, Pt, Au).
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
    },
}

/// How many candidates a generator makes in each iteration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CountSchedule {
    /// The same count every iteration.
    Fixed(usize),
    /// From iteration `k` (key) on, the count is the value, until the next key; before
    /// the first key the count is 0. AGOX's `num_candidates = {0: [10, 0], 5: [3, 7]}`
    /// becomes `{0: 10, 5: 3}` for the first generator and `{0: 0, 5: 7}` for the second.
    Schedule(BTreeMap<u64, usize>),
}

impl CountSchedule {
    /// The count at `iteration`.
    pub fn at(&self, iteration: u64) -> usize {
        match self {
            CountSchedule::Fixed(n) => *n,
            CountSchedule::Schedule(map) => {
                map.range(..=iteration).next_back().map_or(0, |(_, &n)| n)
            }
        }
    }

    /// Iterations at which the count may change (empty for a fixed count).
    pub fn breakpoints(&self) -> Vec<u64> {
        match self {
            CountSchedule::Fixed(_) => Vec::new(),
            CountSchedule::Schedule(map) => map.keys().copied().collect(),
        }
    }
}

/// One `[[generator]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeneratorSettings {
    /// What it does.
    pub kind: GeneratorKind,
    /// Candidates per iteration.
    pub count: CountSchedule,
}

/// Generator kinds and their parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GeneratorKind {
    /// Place atoms one by one inside the confinement box, each at a distance between
    /// `c1·(r_i + r_j)` and `c2·(r_i + r_j)` (covalent radii) of the placed atoms.
    Random {
        /// Lower distance factor (default 0.75).
        c1: f64,
        /// Upper distance factor (default 1.25).
        c2: f64,
        /// Each new atom must be within `c2·(r_i + r_j)` of some placed atom (default true).
        contiguous: bool,
        /// Attempts per atom before giving up (default 100).
        attempts: usize,
    },
    /// Displace `n_rattle` random atoms of a parent within `amplitude` Å, inside the box.
    Rattle {
        /// Atoms displaced (default 3).
        n_rattle: usize,
        /// Largest displacement (Å, default 3.0).
        amplitude: f64,
        /// Distance factor below which a displaced atom is rejected (default 0.75).
        c1: f64,
        /// Distance factor within which a displaced atom must have a neighbour (default 1.25).
        c2: f64,
        /// Attempts per atom before giving up (default 100).
        attempts: usize,
    },
    /// Swap `n_swaps` pairs of atoms of different species in a parent.
    Permutation {
        /// Swaps per candidate (default 1).
        n_swaps: usize,
    },
}

impl GeneratorKind {
    /// The generator's name (`random`, `rattle`, `permutation`).
    pub fn name(&self) -> &'static str {
        match self {
            GeneratorKind::Random { .. } => "random",
            GeneratorKind::Rattle { .. } => "rattle",
            GeneratorKind::Permutation { .. } => "permutation",
        }
    }

    /// Whether it modifies a parent chosen by the sampler.
    pub fn needs_parent(&self) -> bool {
        !matches!(self, GeneratorKind::Random { .. })
    }
}

/// `[sampler]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// The local optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    /// BFGS as ASE's (maxstep 0.2, alpha 70).
    Bfgs,
    /// FIRE as ASE's.
    Fire,
}

/// `[relax]`: relaxation of candidates in the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// `[evaluator]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluatorSettings {
    /// What the evaluation does.
    pub kind: EvaluatorKind,
    /// Candidates evaluated per iteration, lowest model energy first; `None`: all.
    pub count: Option<usize>,
}

/// Evaluator kinds.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    },
}

impl Script {
    /// Read and validate the script at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Script, ScriptErrors> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ScriptErrors(vec![ScriptError {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                key: "script".to_owned(),
                message: format!("cannot read the file: {e}"),
            }])
        })?;
        Self::parse(&text, path)
    }

    /// Validate script `text` as if read from `path` (relative paths in the script are
    /// resolved against `path`'s directory; nothing is read except a template file).
    pub fn parse(text: &str, path: &Path) -> Result<Script, ScriptErrors> {
        check::parse(text, path)
    }

    /// The resolved settings as pretty JSON (what `agox-coord validate` prints).
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
}

impl fmt::Display for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

/// Default number of workers: `SLURM_NTASKS` when set to a positive integer, otherwise
/// the number of CPUs this process may run on (the pool's own default).
pub use agox_pool::default_workers;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_lookup() {
        let s = CountSchedule::Schedule(BTreeMap::from([(2, 10), (5, 3)]));
        assert_eq!(
            (0..8).map(|i| s.at(i)).collect::<Vec<_>>(),
            [0, 0, 10, 10, 10, 3, 3, 3]
        );
        assert_eq!(s.breakpoints(), [2, 5]);
        assert_eq!(CountSchedule::Fixed(4).at(99), 4);
    }
}
