//! A remote function: four calls of a one-second function on four workers,
//! submitted at once and collected later (AGOX's "remote function" example).
//!
//! `cargo run --example remote_function`

use agox::pool::{Pool, PoolConfig, Registry, TaskContext, TaskError};
use std::time::{Duration, Instant};

fn slow_square(_ctx: &TaskContext, x: u64) -> Result<u64, TaskError> {
    std::thread::sleep(Duration::from_secs(1));
    Ok(x * x)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut registry = Registry::new();
    let f = registry.function("slow_square", slow_square);
    let pool = Pool::start(registry, PoolConfig::with_workers(4))?;

    let t0 = Instant::now();
    let pending: Vec<_> = (0..4u64)
        .map(|x| pool.submit(&f, &x))
        .collect::<Result<_, _>>()?;
    let t1 = Instant::now();
    let results: Vec<u64> = pending
        .into_iter()
        .map(|p| pool.get(p))
        .collect::<Result<_, _>>()?;
    let t2 = Instant::now();

    println!(
        "Time elapsed t1-t0: {:.6} s (submitting returns at once)",
        (t1 - t0).as_secs_f64()
    );
    println!(
        "Time elapsed t2-t1: {:.3} s (four 1 s calls ran side by side)",
        (t2 - t1).as_secs_f64()
    );
    println!("Results: {results:?}");
    Ok(())
}
