//! The pool over MPI ranks. Run under MPI with three or more ranks (rank 0
//! coordinates, the others are workers):
//!
//! `cargo test -p agox-pool --features mpi --test mpi --no-run`, then
//! `mpirun -n 3 target/debug/deps/mpi-…` (what `.ci/run` does).
//!
//! Prints one line per check and a closing `N passed, M failed` line on rank 0.
//!
//! Large values reach ranks on rank 0's machine through its memory files, others
//! by broadcast; `AGOX_MPI_SHARED_MEMORY=off` sends them all (in rank 0's
//! environment) or one rank (in its own) the broadcast way. `.ci/run` runs this
//! test three ways: every rank mapping, every rank by broadcast, and rank 1
//! mapping while rank 2 takes broadcasts. `MPI_TEST_BROADCAST_RANKS` (a
//! comma-separated list, on rank 0) names the ranks expected to take broadcasts.

#![allow(clippy::unwrap_used)]

use agox_pool::{
    dynamic_attributes, mpi, FnHandle, Link, Module, Pool, PoolConfig, PoolError, Registry,
    TaskContext, TaskError, TransportConfig,
};
use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Model {
    weights: Vec<f64>,
    version: u64,
}

impl Module for Model {
    const TYPE_NAME: &'static str = "Model";
    dynamic_attributes!(weights, version);
}

struct Fns {
    square: FnHandle<u64, u64>,
    random: FnHandle<u32, Vec<f64>>,
    sum: FnHandle<Link<Model>, (f64, u64, usize)>,
    fail: FnHandle<String, u64>,
    rank: FnHandle<(), Option<u32>>,
}

fn registry() -> (Registry, Fns) {
    let mut r = Registry::new();
    r.module::<Model>();
    let fns = Fns {
        square: r.function("square", |_: &TaskContext, x: u64| {
            Ok::<_, TaskError>(x * x)
        }),
        random: r.function("random", |ctx: &TaskContext, n: u32| {
            let mut rng = ctx.rng();
            Ok::<_, TaskError>((0..n).map(|_| rng.gen::<f64>()).collect())
        }),
        sum: r.function("sum", |ctx: &TaskContext, m: Link<Model>| {
            let m = ctx.module(&m)?;
            Ok::<_, TaskError>((m.weights.iter().sum::<f64>(), m.version, m.weights.len()))
        }),
        fail: r.function("fail", |_: &TaskContext, msg: String| {
            Err::<u64, TaskError>(msg.into())
        }),
        rank: r.function("rank", |ctx: &TaskContext, ()| {
            Ok::<_, TaskError>(ctx.worker_id())
        }),
    };
    (r, fns)
}

type Check = fn(&Pool, &Fns) -> Result<(), String>;

fn results_come_in_order_and_match_the_in_process_pool(pool: &Pool, f: &Fns) -> Result<(), String> {
    let out = pool.map(&f.square, 0..500u64).map_err(|e| e.to_string())?;
    if out != (0..500u64).map(|x| x * x).collect::<Vec<_>>() {
        return Err("squares out of order".into());
    }
    // Same seed, same results as the pool that runs everything here.
    let (reg, g) = registry();
    let here = Pool::start(reg, PoolConfig::with_workers(0).seed(pool.seed()))
        .map_err(|e| e.to_string())?;
    // The MPI pool already made one call: make one here too, so call numbers agree.
    here.map(&g.square, 0..500u64).map_err(|e| e.to_string())?;
    let a = pool
        .map(&f.random, vec![4u32; 37])
        .map_err(|e| e.to_string())?;
    let b = here
        .map(&g.random, vec![4u32; 37])
        .map_err(|e| e.to_string())?;
    if a != b {
        return Err("random draws differ from the in-process pool".into());
    }
    Ok(())
}

fn every_worker_rank_serves(pool: &Pool, f: &Fns) -> Result<(), String> {
    let ids = pool.broadcast(&f.rank, &()).map_err(|e| e.to_string())?;
    let want: Vec<Option<u32>> = (0..pool.size() as u32).map(Some).collect();
    if ids != want {
        return Err(format!("workers {ids:?}, expected {want:?}"));
    }
    Ok(())
}

fn small_and_large_attributes_reach_every_rank(pool: &Pool, f: &Fns) -> Result<(), String> {
    let m = pool
        .add_module(
            "model",
            Model {
                weights: vec![1.0, 2.0],
                version: 0,
            },
        )
        .map_err(|e| e.to_string())?;
    let n = pool.size();
    let check = |want: (f64, u64, usize)| -> Result<(), String> {
        let seen = pool
            .broadcast(&f.sum, &m.link())
            .map_err(|e| e.to_string())?;
        if seen.iter().any(|s| *s != want) || seen.len() != n {
            return Err(format!("workers hold {seen:?}, expected {want:?}"));
        }
        Ok(())
    };
    check((3.0, 0, 2))?;
    m.lock().version = 1;
    let r = pool.synchronize().map_err(|e| e.to_string())?;
    if r.names != ["model.version"] {
        return Err(format!("sent {r}"));
    }
    check((3.0, 1, 2))?;
    // 8 MB: through a memory file or one collective broadcast. Then shorter and
    // longer values: the coordinator writes each into the file of the one
    // before last, resized when much shorter or longer; a worker rank receives
    // each broadcast into the buffer of the one before.
    for (round, len) in [1_000_000, 1_000_000, 600_000, 1_200_000]
        .into_iter()
        .enumerate()
    {
        let round = round as u64;
        let w: Vec<f64> = (0..len).map(|i| ((i as u64 + round) % 97) as f64).collect();
        let want = (w.iter().sum::<f64>(), 2 + round, w.len());
        {
            let mut g = m.lock();
            g.weights = w;
            g.version = 2 + round;
        }
        let r = pool.synchronize().map_err(|e| e.to_string())?;
        if r.attributes != 2 || r.bytes < 8 * len * n {
            return Err(format!("sent {r}"));
        }
        check(want)?;
    }
    pool.remove_module("model").map_err(|e| e.to_string())?;
    Ok(())
}

fn task_errors_name_the_worker(pool: &Pool, f: &Fns) -> Result<(), String> {
    match pool.map(&f.fail, ["no good".to_string()]) {
        Err(PoolError::Task { message, .. }) if message == "no good" => {}
        other => return Err(format!("unexpected {other:?}")),
    }
    // The worker lives on.
    let out = pool.map(&f.square, [7u64]).map_err(|e| e.to_string())?;
    (out == [49])
        .then_some(())
        .ok_or_else(|| format!("{out:?}"))
}

fn main() {
    let session = mpi::init().expect("MPI initializes");
    let (reg, fns) = registry();
    let workers = match session.role() {
        mpi::Role::Worker { .. } => std::process::exit(session.serve(&reg)),
        mpi::Role::Coordinator { workers } => workers,
    };
    if workers < 2 {
        eprintln!("run this test under mpirun with at least 3 ranks");
        std::process::exit(2);
    }
    let config = PoolConfig::with_workers(workers)
        .seed(99)
        .transport(TransportConfig::Mpi);
    let pool = Pool::start(reg, config).expect("the MPI pool starts");
    let placement = session.placement().expect("rank 0 knows the placement");
    println!("placement: {placement:?}");
    let broadcast: Vec<u32> = std::env::var("MPI_TEST_BROADCAST_RANKS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("MPI_TEST_BROADCAST_RANKS: rank numbers"))
        .collect();
    let mapping: Vec<u32> = (1..=workers as u32)
        .filter(|r| !broadcast.contains(r))
        .collect();
    let placement_ok = placement.broadcast == broadcast && placement.shared_memory == mapping;
    let checks: Vec<(&str, Check)> = vec![
        (
            "results_come_in_order_and_match_the_in_process_pool",
            results_come_in_order_and_match_the_in_process_pool,
        ),
        ("every_worker_rank_serves", every_worker_rank_serves),
        (
            "small_and_large_attributes_reach_every_rank",
            small_and_large_attributes_reach_every_rank,
        ),
        ("task_errors_name_the_worker", task_errors_name_the_worker),
    ];
    let (mut passed, mut failed) = (0, 0);
    if placement_ok {
        passed += 1;
        println!("test placement_is_as_the_environment_says ... ok");
    } else {
        failed += 1;
        println!(
            "test placement_is_as_the_environment_says ... FAILED: expected broadcast to {broadcast:?}, mapping on {mapping:?}"
        );
    }
    for (name, check) in checks {
        match check(&pool, &fns) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok");
            }
            Err(e) => {
                failed += 1;
                println!("test {name} ... FAILED: {e}");
            }
        }
    }
    drop(pool);
    println!("{passed} passed, {failed} failed");
    drop(session);
    if failed > 0 {
        std::process::exit(1);
    }
}
