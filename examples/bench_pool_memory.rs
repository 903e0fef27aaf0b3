//! Memory over a long run: coordinator and worker resident memory after 1,000 and
//! after 10,000 iterations of what a search does each iteration (a map of tasks
//! that read a pooled model, a change of the model, a synchronization). Prints ONE
//! JSON line; the ratios should stay within 1.10.
//!
//! `cargo run --release --example bench_pool_memory [-- --iterations 10000]`

#[path = "support/measure.rs"]
mod measure;

use agox::pool::{
    dynamic_attributes, Link, Module, Pool, PoolConfig, Registry, TaskContext, TaskError,
};
use measure::rss_kb;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// A model whose weights change every iteration, as a surrogate's training data
/// does.
#[derive(Serialize, Deserialize)]
struct Model {
    weights: Vec<f64>,
    step: u64,
}

impl Module for Model {
    const TYPE_NAME: &'static str = "Model";
    dynamic_attributes!(weights, step);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let iterations: usize = args
        .iter()
        .position(|a| a == "--iterations")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(10_000);
    let checkpoint = iterations / 10;

    let mut r = Registry::new();
    r.module::<Model>();
    let predict = r.function(
        "predict",
        |ctx: &TaskContext, (m, x): (Link<Model>, f64)| {
            let m = ctx.module(&m)?;
            Ok::<_, TaskError>(m.weights.iter().sum::<f64>() * x + m.step as f64)
        },
    );
    let pool = Pool::start(r, PoolConfig::with_workers(2).seed(1))?;
    let model = pool.add_module(
        "model",
        Model {
            weights: vec![0.0; 2000],
            step: 0,
        },
    )?;
    let me = std::process::id();
    let t0 = Instant::now();
    let mut at_checkpoint = None;
    for i in 1..=iterations {
        let out = pool.map(&predict, (0..8).map(|k| (model.link(), k as f64)))?;
        {
            let mut m = model.lock();
            let n = m.weights.len();
            m.weights[i % n] += out[1];
            m.step = i as u64;
        }
        pool.synchronize()?;
        if i == checkpoint {
            let workers: Vec<u64> = pool.worker_pids().into_iter().map(rss_kb).collect();
            at_checkpoint = Some((rss_kb(me), workers));
        }
    }
    let (coordinator_early, workers_early) = at_checkpoint.ok_or("no checkpoint")?;
    let coordinator_late = rss_kb(me);
    let workers_late: Vec<u64> = pool.worker_pids().into_iter().map(rss_kb).collect();
    let worker_ratio = workers_early
        .iter()
        .zip(&workers_late)
        .map(|(a, b)| *b as f64 / (*a).max(1) as f64)
        .fold(0.0, f64::max);
    let stats = pool.stats();
    println!(
        "{{\"bench\":\"pool_memory\",\"iterations\":{iterations},\"checkpoint\":{checkpoint},\
         \"coordinator_rss_kb\":[{coordinator_early},{coordinator_late}],\
         \"coordinator_ratio\":{:.3},\"worker_rss_kb\":[{:?},{:?}],\"worker_ratio_max\":{worker_ratio:.3},\
         \"tasks\":{},\"syncs\":{},\"seconds\":{:.2}}}",
        coordinator_late as f64 / coordinator_early.max(1) as f64,
        workers_early,
        workers_late,
        stats.total_tasks(),
        stats.sync.syncs,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
