//! `ParallelCollector`: the generators on the pool and each iteration's generation
//! requests (run as the first half of the fused task in [`super::pipeline`]).
//!
//! Every generator of the script lives on the pool as a [`GeneratorModule`] (one per
//! `[[generator]]`, keys `generator.0`, `generator.1`, ...). In iteration `i`,
//! generator `g` makes `count_g(i)` candidates (its [`CountSchedule`]); candidate `k`
//! of generator `g` is task `(g, k)` with the explicit seed
//! `derive_seed(run seed, i, g, k)` ([`GenerateRequest::new`]), **never** the pool's
//! per-call seed, so a candidate is the same whichever worker makes it, however many
//! workers there are, and whether or not the run was resumed (the pool's call counter
//! restarts on resume; these seeds do not).

use agox_pool::{Handle, Link, Pool, PoolError};

use crate::environment::Environment;
use crate::generators::{GenerateArgs, GenerateRequest, Generator, GeneratorModule};
use crate::samplers::SamplerModule;
use crate::script::{CountSchedule, GeneratorSettings};

/// Pool key of generator number `index` (its position in the script).
pub fn generator_key(index: usize) -> String {
    format!("generator.{index}")
}

/// One generator on the pool and its per-iteration count.
#[derive(Debug)]
pub struct GeneratorSlot {
    /// The driver's handle of the generator module.
    pub handle: Handle<GeneratorModule>,
    /// Its name (`random`, `rattle`, ...).
    pub name: &'static str,
    /// Candidates per iteration.
    pub count: CountSchedule,
}

/// Produces each iteration's candidates in parallel on the pool (AGOX's
/// `ParallelCollector`).
#[derive(Debug)]
pub struct ParallelCollector {
    slots: Vec<GeneratorSlot>,
    sampler: Option<Link<SamplerModule>>,
}

impl ParallelCollector {
    /// Adds one [`GeneratorModule`] per `[[generator]]` to `pool` (in `environment`)
    /// and returns the collector. `sampler` is the pool's sampler module (parents for
    /// `rattle`/`permutation`).
    pub fn new(
        pool: &Pool,
        environment: &Environment,
        generators: &[GeneratorSettings],
        sampler: Option<Link<SamplerModule>>,
    ) -> Result<Self, PoolError> {
        let mut slots = Vec::with_capacity(generators.len());
        for (i, g) in generators.iter().enumerate() {
            let generator = Generator::from_settings(&g.kind);
            let name = generator.name();
            let module = GeneratorModule::new(generator, environment.clone());
            let handle = pool.add_module(&generator_key(i), module)?;
            slots.push(GeneratorSlot {
                handle,
                name,
                count: g.count.clone(),
            });
        }
        Ok(ParallelCollector { slots, sampler })
    }

    /// The generators, in script order.
    pub fn slots(&self) -> &[GeneratorSlot] {
        &self.slots
    }

    /// Number of candidates iteration `iteration` asks for, over all generators.
    pub fn count_at(&self, iteration: u64) -> usize {
        self.slots.iter().map(|s| s.count.at(iteration)).sum()
    }

    /// For each task of [`requests`](Self::requests)`(_, iteration)`, in the same
    /// order, the index of the generator that makes it.
    pub fn owners(&self, iteration: u64) -> Vec<usize> {
        self.slots
            .iter()
            .enumerate()
            .flat_map(|(g, slot)| (0..slot.count.at(iteration)).map(move |_| g))
            .collect()
    }

    /// The generation tasks of `iteration` in a run seeded with `run_seed`: for each
    /// generator `g` in script order, `count_g(iteration)` requests with seeds
    /// `derive_seed(run_seed, iteration, g, k)`.
    pub fn requests(&self, run_seed: u64, iteration: u64) -> Vec<GenerateArgs> {
        let mut out = Vec::with_capacity(self.count_at(iteration));
        for (g, slot) in self.slots.iter().enumerate() {
            for k in 0..slot.count.at(iteration) {
                out.push((
                    slot.handle.link(),
                    self.sampler.clone(),
                    GenerateRequest::new(run_seed, iteration, g as u64, k as u64),
                ));
            }
        }
        out
    }
}
