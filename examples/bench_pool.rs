//! The pool benchmark: start-up, per-task cost, round trip, an 8 MB attribute
//! broadcast and worker memory. Prints ONE JSON line; each figure is the median of
//! five repetitions inside this run.
//!
//! `cargo run --release --example bench_pool -- --workers 2`

use agox::pool::{
    dynamic_attributes, Link, Module, Pool, PoolConfig, Registry, TaskContext, TaskError,
};
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Serialize, Deserialize)]
struct Big {
    data: Vec<f64>,
}

impl Module for Big {
    const TYPE_NAME: &'static str = "Big";
    dynamic_attributes!(data);
}

/// The benchmark's functions: sum a vector; length of the big attribute.
struct Fns {
    sum: agox::pool::FnHandle<Vec<f64>, f64>,
    len: agox::pool::FnHandle<Link<Big>, usize>,
}

fn registry() -> (Registry, Fns) {
    let mut r = Registry::new();
    r.module::<Big>();
    let sum = r.function("sum", |_: &TaskContext, v: Vec<f64>| {
        Ok::<_, TaskError>(v.iter().sum::<f64>())
    });
    let len = r.function("len", |ctx: &TaskContext, b: Link<Big>| {
        Ok::<_, TaskError>(ctx.module(&b)?.data.len())
    });
    (r, Fns { sum, len })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut workers = 2usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--workers" => {
                workers = args
                    .next()
                    .ok_or("--workers needs a number")?
                    .parse()
                    .map_err(|e| format!("--workers: {e}"))?
            }
            other => {
                return Err(format!("unknown argument '{other}' (expected --workers N)").into())
            }
        }
    }
    const REPS: usize = 5;
    const TASKS: usize = 2000;

    let mut start_ms = Vec::new();
    for _ in 0..REPS {
        let (reg, _) = registry();
        let t0 = Instant::now();
        let pool = Pool::start(reg, PoolConfig::with_workers(workers))?;
        start_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        drop(pool);
    }

    let (reg, Fns { sum, len }) = registry();
    let pool = Pool::start(reg, PoolConfig::with_workers(workers))?;
    let args: Vec<Vec<f64>> = (0..TASKS).map(|i| vec![i as f64; 100]).collect();
    // Warm up: the scheduler learns the task is tiny, pages are touched.
    pool.map(&sum, args.clone())?;

    let mut per_task = Vec::new();
    for _ in 0..REPS {
        let a = args.clone();
        let t0 = Instant::now();
        let out = pool.map(&sum, a)?;
        per_task.push(t0.elapsed().as_secs_f64() * 1e6 / TASKS as f64);
        assert_eq!(out[1], 100.0);
    }

    let mut roundtrip = Vec::new();
    for _ in 0..REPS {
        let t0 = Instant::now();
        for a in &args {
            pool.map(&sum, [a.clone()])?;
        }
        roundtrip.push(t0.elapsed().as_secs_f64() * 1e6 / TASKS as f64);
    }

    let big = pool.add_module("big", Big { data: Vec::new() })?;
    let mut sync_ms = Vec::new();
    // Warm up as for the maps: the first broadcasts also pay for first-touch memory
    // on both sides.
    for rep in 0..3 {
        big.lock().data = (0..1_000_000).map(|i| (i + 100 + rep) as f64).collect();
        pool.synchronize()?;
    }
    for rep in 0..REPS {
        let data: Vec<f64> = (0..1_000_000).map(|i| (i + rep) as f64).collect();
        let t0 = Instant::now();
        big.lock().data = data;
        let report = pool.synchronize()?;
        sync_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        assert_eq!(report.attributes, 1);
    }
    let lens = pool.broadcast(&len, &big.link())?;
    assert!(lens.iter().all(|&l| l == 1_000_000));
    let rss: Vec<f64> = pool
        .worker_pids()
        .iter()
        .map(|&p| (rss_mb(p) * 10.0).round() / 10.0)
        .collect();

    println!(
        "{{\"workers\":{},\"start_ms\":{:.3},\"per_task_us\":{:.2},\"roundtrip_us\":{:.2},\"sync_8mb_ms\":{:.3},\"worker_rss_mb\":{:?}}}",
        workers,
        median(start_ms),
        median(per_task),
        median(roundtrip),
        median(sync_ms),
        rss
    );
    Ok(())
}
