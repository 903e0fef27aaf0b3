//! `ParallelCollector`: an iteration's candidates, generated over the pool.
//!
//! Every generator of the script lives on the pool as a [`GeneratorModule`] (one per
//! `[[generator]]`, keys `generator.0`, `generator.1`, ...). In iteration `i`,
//! generator `g` makes `count_g(i)` candidates (its [`CountSchedule`]); candidate `k`
//! of generator `g` is task `(g, k)` with the explicit seed
//! `derive_seed(run seed, i, g, k)` ([`GenerateRequest::new`]), **never** the pool's
//! per-call seed, so a candidate is the same whichever worker makes it, however many
//! workers there are, and whether or not the run was resumed (the pool's call counter
//! restarts on resume; these seeds do not).

use agox_pool::{FnHandle, Handle, Link, Pool, PoolError};

use crate::candidate::Candidate;
use crate::environment::Environment;
use crate::generators::{
    GenerateArgs, GenerateOutput, GenerateRequest, Generator, GeneratorModule,
};
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

/// What one collection produced.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    /// The candidates, in task order (generator by generator, candidate by candidate).
    pub candidates: Vec<Candidate>,
    /// One message per candidate that could not be made (a generator that found no
    /// valid placement, a failed task); the loop goes on without it.
    pub failures: Vec<String>,
}

/// Produces each iteration's candidates in parallel on the pool (AGOX's
/// `ParallelCollector`).
#[derive(Debug)]
pub struct ParallelCollector {
    slots: Vec<GeneratorSlot>,
    sampler: Option<Link<SamplerModule>>,
    generate: FnHandle<GenerateArgs, GenerateOutput>,
}

impl ParallelCollector {
    /// Adds one [`GeneratorModule`] per `[[generator]]` to `pool` (in `environment`)
    /// and returns the collector. `sampler` is the pool's sampler module (parents for
    /// `rattle`/`permutation`), `generate` the registered generation function.
    pub fn new(
        pool: &Pool,
        environment: &Environment,
        generators: &[GeneratorSettings],
        sampler: Option<Link<SamplerModule>>,
        generate: FnHandle<GenerateArgs, GenerateOutput>,
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
        Ok(ParallelCollector {
            slots,
            sampler,
            generate,
        })
    }

    /// The generators, in script order.
    pub fn slots(&self) -> &[GeneratorSlot] {
        &self.slots
    }

    /// Number of candidates iteration `iteration` asks for, over all generators.
    pub fn count_at(&self, iteration: u64) -> usize {
        self.slots.iter().map(|s| s.count.at(iteration)).sum()
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

    /// Generates iteration `iteration`'s candidates on the pool, in task order.
    /// A candidate that cannot be made is a failure message, not an error; only a
    /// pool failure (a worker lost beyond the retry budget, a broken socket) is.
    pub fn collect(
        &self,
        pool: &Pool,
        run_seed: u64,
        iteration: u64,
    ) -> Result<Collected, PoolError> {
        let requests = self.requests(run_seed, iteration);
        if requests.is_empty() {
            return Ok(Collected::default());
        }
        let results = pool.map_results(&self.generate, requests)?;
        let mut out = Collected::default();
        for r in results {
            match r {
                Ok(Ok(c)) => out.candidates.push(c),
                Ok(Err(e)) => out.failures.push(e.to_string()),
                Err(e) => out.failures.push(e.to_string()),
            }
        }
        Ok(out)
    }
}
