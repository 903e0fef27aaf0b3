//! Generators: how new candidate structures are made.
//!
//! * [`RandomGenerator`] (`random`): places the atoms one by one inside the
//!   confinement box, each at a bonding distance of the atoms already there.
//! * [`RattleGenerator`] (`rattle`): displaces a few atoms of a parent.
//! * [`PermutationGenerator`] (`permutation`): swaps atoms of different species in a
//!   parent.
//!
//! Each generator lives on the pool inside a [`GeneratorModule`] (with the
//! [`Environment`]); the pool function registered by [`register`] draws the parent from
//! the worker's copy of a [`SamplerModule`] and generates with a ChaCha8 generator
//! seeded from [`GenerateRequest::seed`], so a candidate depends only on its request
//! (and the synchronized sampler), never on which worker made it or how many there are.
//!
//! The shared rules (AGOX's `check_new_position`): a new position is valid when it lies
//! strictly inside the confinement box, every other atom is at least `c1·(r_i + r_j)`
//! away (covalent radii, minimum image along periodic cell directions) and at least one
//! is within `c2·(r_i + r_j)`. `docs/search-modules.md` compares each generator with
//! AGOX's.

mod permutation;
mod random;
mod rattle;

pub use permutation::PermutationGenerator;
pub use random::RandomGenerator;
pub use rattle::{RattleGenerator, RattleSelection};

use agox_pool::{FnHandle, Link, Module, Registry, TaskContext, TaskError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::candidate::Candidate;
use crate::environment::{Environment, EnvironmentError};
use crate::samplers::SamplerModule;
use crate::script;

/// A generator of any kind, as the script configures it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Generator {
    /// Random placement in the box.
    Random(RandomGenerator),
    /// Displace atoms of a parent.
    Rattle(RattleGenerator),
    /// Swap atoms of different species in a parent.
    Permutation(PermutationGenerator),
}

/// Why a generator could not make a candidate. It crosses the pool as a value (the
/// pool function's output is `Result<Candidate, GenerateError>`), so the loop can count
/// failures without treating them as task failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum GenerateError {
    /// The random generator found no valid position for an atom.
    #[error(
        "{generator}: could not place atom {atom} of {of} ({element}) in {attempts} attempts: \
         no position inside the confinement box keeps every atom at least c1·(r_i + r_j) away \
         and one within c2·(r_i + r_j) (c1 = {c1}, c2 = {c2}); the box cannot hold these {of} \
         atoms at these distances, or is too crowded for random placement: enlarge the box, \
         lower c1 or raise `attempts`"
    )]
    Placement {
        /// The generator's name.
        generator: String,
        /// 1-based number of the atom in placement order.
        atom: usize,
        /// Atoms to place in total.
        of: usize,
        /// Its chemical symbol.
        element: String,
        /// Attempts made for it.
        attempts: usize,
        /// The generator's lower distance factor.
        c1: f64,
        /// Its upper distance factor.
        c2: f64,
    },
    /// A generator that modifies a parent was called without one.
    #[error("{generator}: needs a parent structure and none was given")]
    NoParent {
        /// The generator's name.
        generator: String,
    },
    /// The parent does not fit the environment.
    #[error("{generator}: parent does not fit the environment: {message}")]
    BadParent {
        /// The generator's name.
        generator: String,
        /// What is wrong.
        message: String,
    },
    /// The environment itself is unusable (degenerate box, bad periodic cell).
    #[error("{generator}: unusable environment: {message}")]
    Environment {
        /// The generator's name.
        generator: String,
        /// What is wrong.
        message: String,
    },
    /// There are no placed atoms to modify.
    #[error("{generator}: the structure has no non-template atoms to modify")]
    NoFreeAtoms {
        /// The generator's name.
        generator: String,
    },
    /// Permutation needs at least two species among the placed atoms.
    #[error("permutation: the placed atoms are all of one species ({element}); nothing to swap")]
    SingleSpecies {
        /// The only species.
        element: String,
    },
    /// No pair of atoms of the chosen species could be swapped within the bond rules.
    #[error(
        "permutation: swap {swap} of {of}: none of the {pairs} {a}–{b} pairs can be swapped \
         without breaking the c1/c2 distance rules"
    )]
    NoValidSwap {
        /// 1-based number of the swap.
        swap: usize,
        /// Swaps requested.
        of: usize,
        /// First species.
        a: String,
        /// Second species.
        b: String,
        /// Pairs tried.
        pairs: usize,
    },
}

impl GenerateError {
    fn environment(generator: &str, e: EnvironmentError) -> Self {
        GenerateError::Environment {
            generator: generator.to_owned(),
            message: e.to_string(),
        }
    }

    fn bad_parent(generator: &str, e: EnvironmentError) -> Self {
        GenerateError::BadParent {
            generator: generator.to_owned(),
            message: e.to_string(),
        }
    }
}

impl Generator {
    /// The generator a script's `[[generator]]` describes.
    pub fn from_settings(g: &script::GeneratorKind) -> Self {
        match *g {
            script::GeneratorKind::Random {
                c1,
                c2,
                contiguous,
                attempts,
            } => Generator::Random(RandomGenerator {
                c1,
                c2,
                contiguous,
                attempts,
            }),
            script::GeneratorKind::Rattle {
                n_rattle,
                amplitude,
                c1,
                c2,
                attempts,
            } => Generator::Rattle(RattleGenerator {
                n_rattle,
                amplitude,
                c1,
                c2,
                attempts,
                selection: RattleSelection::Exact,
            }),
            script::GeneratorKind::Permutation { n_swaps } => {
                Generator::Permutation(PermutationGenerator {
                    n_swaps,
                    ..PermutationGenerator::default()
                })
            }
        }
    }

    /// The generator's name as stored in a candidate's meta (`random`, `rattle`,
    /// `permutation`).
    pub fn name(&self) -> &'static str {
        match self {
            Generator::Random(_) => RandomGenerator::NAME,
            Generator::Rattle(_) => RattleGenerator::NAME,
            Generator::Permutation(_) => PermutationGenerator::NAME,
        }
    }

    /// Whether the generator modifies a parent chosen by a sampler.
    pub fn needs_parent(&self) -> bool {
        !matches!(self, Generator::Random(_))
    }

    /// Makes one candidate in `env` (from `parent` for the generators that need one).
    ///
    /// The candidate's meta has the generator's name, the parent's database id (if it
    /// has one) and `template_len`; the caller sets the iteration. Template atoms are
    /// fixed and come first.
    pub fn generate<R: Rng + ?Sized>(
        &self,
        env: &Environment,
        parent: Option<&Candidate>,
        rng: &mut R,
    ) -> Result<Candidate, GenerateError> {
        let atoms = match self {
            Generator::Random(g) => g.generate(env, rng)?,
            Generator::Rattle(g) => g.generate(env, require_parent(self.name(), parent)?, rng)?,
            Generator::Permutation(g) => {
                g.generate(env, require_parent(self.name(), parent)?, rng)?
            }
        };
        let mut c = Candidate::new(atoms, 0, self.name(), env.template_len());
        if let Some(id) = parent.and_then(|p| p.meta.id) {
            c.meta.parents.push(id);
        }
        Ok(c)
    }

    /// Like [`generate`](Self::generate), but a generator that needs a parent and has
    /// none (the sampler is still empty, as in a basin-hopping run's first iteration)
    /// falls back to a [`RandomGenerator`] with its own `c1`/`c2` — AGOX's
    /// `start_candidate`. The candidate then says `random`.
    pub fn generate_or_start<R: Rng + ?Sized>(
        &self,
        env: &Environment,
        parent: Option<&Candidate>,
        rng: &mut R,
    ) -> Result<Candidate, GenerateError> {
        if parent.is_none() && self.needs_parent() {
            return self.start_generator().generate(env, None, rng);
        }
        self.generate(env, parent, rng)
    }

    /// The random generator used when no parent is available.
    pub fn start_generator(&self) -> Generator {
        let d = RandomGenerator::default();
        let (c1, c2) = match self {
            Generator::Random(g) => (g.c1, g.c2),
            Generator::Rattle(g) => (g.c1, g.c2),
            Generator::Permutation(_) => (d.c1, d.c2),
        };
        Generator::Random(RandomGenerator { c1, c2, ..d })
    }
}

fn require_parent<'a>(
    name: &str,
    parent: Option<&'a Candidate>,
) -> Result<&'a Candidate, GenerateError> {
    parent.ok_or_else(|| GenerateError::NoParent {
        generator: name.to_owned(),
    })
}

/// The structure a parent-modifying generator starts from: the parent's atoms with the
/// environment's cell, pbc and fixed template, info cleared (AGOX resets the copy's
/// meta information too).
fn child_of(
    name: &str,
    env: &Environment,
    parent: &Candidate,
) -> Result<agox_atoms::Atoms, GenerateError> {
    env.check_structure(&parent.atoms)
        .map_err(|e| GenerateError::bad_parent(name, e))?;
    let mut atoms = parent.atoms.clone();
    atoms.cell = env.cell;
    atoms.pbc = env.pbc;
    atoms.fixed = (0..env.template_len()).collect();
    atoms.info.clear();
    Ok(atoms)
}

/// A point uniformly distributed on the unit sphere.
fn unit_vector<R: Rng + ?Sized>(rng: &mut R) -> [f64; 3] {
    let z: f64 = rng.gen_range(-1.0..=1.0);
    let phi: f64 = rng.gen_range(0.0..std::f64::consts::TAU);
    let s = (1.0 - z * z).max(0.0).sqrt();
    [s * phi.cos(), s * phi.sin(), z]
}

/// A generator on the pool: the generator and the environment it works in. Static
/// (no dynamic attributes): it never changes during a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorModule {
    /// What it does.
    pub generator: Generator,
    /// Where.
    pub environment: Environment,
}

impl Module for GeneratorModule {
    const TYPE_NAME: &'static str = "Generator";
}

/// One generation task: the iteration it belongs to and the seed of its random stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// The search iteration (copied into the candidate's meta).
    pub iteration: u64,
    /// Seed of the task's ChaCha8 stream.
    pub seed: u64,
}

impl GenerateRequest {
    /// The request for candidate `index` of generator `generator` (its position in the
    /// script) in `iteration` of a run seeded with `run_seed`. The seed is a hash of
    /// those four numbers only, so results do not depend on worker count or resuming.
    pub fn new(run_seed: u64, iteration: u64, generator: u64, index: u64) -> Self {
        GenerateRequest {
            iteration,
            seed: derive_seed(&[run_seed, iteration, generator, index]),
        }
    }
}

/// Mixes a list of integers into one seed (SplitMix64 finalizer over a running state).
pub fn derive_seed(parts: &[u64]) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let mut h: u64 = 0x6167_6f78_2d72_7321; // "agox-rs!"
    for &p in parts {
        h = mix(h.wrapping_add(0x9e37_79b9_7f4a_7c15) ^ mix(p));
    }
    h
}

impl GeneratorModule {
    /// A module for `generator` in `environment`.
    pub fn new(generator: Generator, environment: Environment) -> Self {
        GeneratorModule {
            generator,
            environment,
        }
    }

    /// Runs one request: draws the parent from `sampler` (if the generator needs one)
    /// and generates with a ChaCha8 stream seeded from `request.seed`, falling back to
    /// random placement while the sampler is empty. This is what the pool function
    /// does on a worker; the driver may call it directly.
    pub fn run(
        &self,
        sampler: Option<&SamplerModule>,
        request: &GenerateRequest,
    ) -> Result<Candidate, GenerateError> {
        let mut rng = ChaCha8Rng::seed_from_u64(request.seed);
        let parent = if self.generator.needs_parent() {
            sampler.and_then(|s| s.get_parent(&mut rng))
        } else {
            None
        };
        let mut c = self
            .generator
            .generate_or_start(&self.environment, parent, &mut rng)?;
        c.meta.iteration = request.iteration;
        Ok(c)
    }
}

/// Arguments of the `generate` pool function: the generator, the sampler that holds
/// the parents (`None` for a search without one), the request.
pub type GenerateArgs = (
    Link<GeneratorModule>,
    Option<Link<SamplerModule>>,
    GenerateRequest,
);

/// Output of the `generate` pool function.
pub type GenerateOutput = Result<Candidate, GenerateError>;

/// Handles of the pool functions [`register`] adds.
#[derive(Debug, Clone)]
pub struct GenFns {
    /// `generate(generator, sampler, request) -> Result<Candidate, GenerateError>`
    /// (see [`GeneratorModule::run`]).
    pub generate: FnHandle<GenerateArgs, GenerateOutput>,
}

/// Name of the generation pool function.
pub const GENERATE_FN: &str = "agox_search.generate";

/// The `generate` pool function: the worker's copy of the generator, with the
/// parents of the worker's copy of the sampler. Also the first half of the fused
/// generate-and-relax task ([`crate::tasks`]).
pub fn generate_task(
    ctx: &TaskContext<'_>,
    (g, s, request): GenerateArgs,
) -> Result<GenerateOutput, TaskError> {
    let module = ctx.module(&g)?;
    let sampler = s.as_ref().map(|l| ctx.module(l)).transpose()?;
    Ok(module.run(sampler.as_deref(), &request))
}

/// Registers [`GeneratorModule`], [`SamplerModule`] and the `generate` pool function.
/// Call it while building the registry, identically in every process.
pub fn register(reg: &mut Registry) -> GenFns {
    reg.module::<GeneratorModule>().module::<SamplerModule>();
    GenFns {
        generate: reg.function(GENERATE_FN, generate_task),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_and_repeat() {
        let a = GenerateRequest::new(1, 2, 0, 0);
        assert_eq!(a, GenerateRequest::new(1, 2, 0, 0));
        let others = [
            GenerateRequest::new(2, 2, 0, 0),
            GenerateRequest::new(1, 3, 0, 0),
            GenerateRequest::new(1, 2, 1, 0),
            GenerateRequest::new(1, 2, 0, 1),
            GenerateRequest::new(1, 0, 2, 0),
        ];
        for o in others {
            assert_ne!(o.seed, a.seed);
        }
    }

    #[test]
    fn unit_vectors_are_unit_and_isotropic() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut mean = [0.0; 3];
        let n = 20_000;
        for _ in 0..n {
            let v = unit_vector(&mut rng);
            let r = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            assert!((r - 1.0).abs() < 1e-12);
            for k in 0..3 {
                mean[k] += v[k].abs() / n as f64;
            }
        }
        // E|v_k| = 1/2 for a uniform direction (AGOX's uniform-angle draw gives ≈0.64 for z)
        for m in mean {
            assert!((m - 0.5).abs() < 0.01, "{mean:?}");
        }
    }
}
