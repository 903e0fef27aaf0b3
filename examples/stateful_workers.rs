//! Stateful workers: every worker holds its own counter and keeps it between calls.
//! Incrementing on the first worker only changes that worker's copy.
//!
//! `cargo run --example stateful_workers`

use agox::pool::{Link, Module, Pool, PoolConfig, Registry, TaskContext, TaskError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Default)]
struct Counter {
    value: u64,
}

impl Module for Counter {
    const TYPE_NAME: &'static str = "Counter";
}

fn get(ctx: &TaskContext, c: Link<Counter>) -> Result<u64, TaskError> {
    Ok(ctx.module(&c)?.value)
}

fn increment(ctx: &TaskContext, c: Link<Counter>) -> Result<u64, TaskError> {
    let mut counter = ctx.module(&c)?;
    counter.value += 1;
    Ok(counter.value)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut registry = Registry::new();
    registry.module::<Counter>();
    let get = registry.function("get", get);
    let increment = registry.function("increment", increment);
    let pool = Pool::start(registry, PoolConfig::with_workers(4))?;

    let counter = pool.add_module("counter", Counter::default())?;
    println!("{:?}", pool.broadcast(&get, &counter.link())?);
    pool.run_on(0, &increment, &counter.link())?;
    println!("{:?}", pool.broadcast(&get, &counter.link())?);
    Ok(())
}
