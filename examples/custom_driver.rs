//! A custom driver: a short iteration loop with a user-defined module. Each
//! iteration the workers evaluate random trial points against the module's current
//! centre, the driver keeps the best, moves the centre, and synchronizes; the sync
//! report shows that only the changed attribute travels.
//!
//! `cargo run --example custom_driver`

use agox::pool::{
    dynamic_attributes, Link, Module, Pool, PoolConfig, Registry, TaskContext, TaskError,
};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// A minimiser's state: the current centre is dynamic, the step size and the
/// function's shape are fixed for the run.
#[derive(Serialize, Deserialize)]
struct Walker {
    centre: Vec<f64>,
    step: f64,
    shape: Vec<f64>,
}

impl Module for Walker {
    const TYPE_NAME: &'static str = "Walker";
    dynamic_attributes!(centre, step);
}

impl Walker {
    fn energy(&self, x: &[f64]) -> f64 {
        x.iter()
            .zip(&self.shape)
            .map(|(x, k)| k * (x - 1.0).powi(2))
            .sum()
    }
}

/// Proposes a point near the centre with the task's own seed and returns it with its energy.
fn trial(ctx: &TaskContext, w: Link<Walker>) -> Result<(Vec<f64>, f64), TaskError> {
    let w = ctx.module(&w)?;
    let mut rng = ctx.rng();
    let x: Vec<f64> = w
        .centre
        .iter()
        .map(|c| c + rng.gen_range(-w.step..w.step))
        .collect();
    let e = w.energy(&x);
    Ok((x, e))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut registry = Registry::new();
    registry.module::<Walker>();
    let trial = registry.function("trial", trial);
    let pool = Pool::start(registry, PoolConfig::with_workers(2).seed(42))?;
    let walker = pool.add_module(
        "walker",
        Walker {
            centre: vec![0.0; 3],
            step: 0.5,
            shape: vec![1.0, 2.0, 3.0],
        },
    )?;

    let mut best = walker.lock().energy(&[0.0; 3]);
    for iteration in 0..8 {
        let trials = pool.map(&trial, vec![walker.link(); 16])?;
        let (x, e) = trials
            .into_iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .ok_or("no trials")?;
        if e < best {
            best = e;
            walker.lock().centre = x;
        } else {
            walker.lock().step *= 0.5;
        }
        let report = pool.synchronize()?;
        println!("iteration {iteration}: best {best:.5}  {report}");
    }
    let stats = pool.stats();
    println!(
        "{} tasks on {} workers, {} attributes / {} bytes synchronized in total",
        stats.total_tasks(),
        stats.workers.len(),
        stats.sync.attributes,
        stats.sync.bytes
    );
    Ok(())
}
