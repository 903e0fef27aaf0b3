//! Parallel column sums of a 2D array with `map`; the result equals the serial sum.
//!
//! `cargo run --example parallel_add`

use agox::pool::{Pool, PoolConfig, Registry, TaskContext, TaskError};
use rand::{Rng, SeedableRng};

fn column_sum(_ctx: &TaskContext, column: Vec<f64>) -> Result<f64, TaskError> {
    Ok(column.iter().sum())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut registry = Registry::new();
    let f = registry.function("column_sum", column_sum);
    let pool = Pool::start(registry, PoolConfig::with_workers(2))?;

    let (rows, cols) = (1000, 8);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let matrix: Vec<Vec<f64>> = (0..rows)
        .map(|_| (0..cols).map(|_| rng.gen()).collect())
        .collect();
    let columns: Vec<Vec<f64>> = (0..cols)
        .map(|j| matrix.iter().map(|row| row[j]).collect())
        .collect();

    let parallel = pool.map(&f, columns.clone())?;
    let serial: Vec<f64> = columns.iter().map(|c| c.iter().sum()).collect();
    println!("parallel: {parallel:?}");
    println!("serial:   {serial:?}");
    println!("equal: {}", parallel == serial);
    if parallel != serial {
        return Err("parallel and serial sums differ".into());
    }
    Ok(())
}
