//! Wall time of the search loop at the settings AGOX was measured with.
//!
//! `cargo run --release --example bench_search` prints ONE JSON line:
//!
//! * `rss_iter_ms_w2`, `rss_iter_ms_w1`: median wall time per iteration of the
//!   Au8Cu4 EMT random structure search (`examples/scripts/au8cu4_rss.toml`: 4
//!   random candidates, BFGS to fmax 0.05 in ≤ 200 steps, 4 single points) with 2
//!   and 1 workers; `speedup_w1_w2` their ratio;
//! * `bh_iter_ms_w2`: the same for basin hopping (`au8cu4_bh.toml`: one rattle per
//!   worker per iteration, Metropolis at 0.25 eV);
//! * `rss_run_ms_w2`: the whole 30-iteration RSS run, pool start included;
//! * `pool_call_share_w2`: the fraction of the loop's time spent in pool calls
//!   (generation, relaxation, synchronization), `worker_busy_share_w2`: the
//!   fraction of the workers' time spent inside task functions;
//! * `rss_best_w2`: best energy of the first RSS run (a sanity check).
//!
//! Each figure is the median over `AGOX_BENCH_REPS` runs (default 5). AGOX with Ray
//! (2 workers, same settings, same machine): 680–750 ms per RSS iteration,
//! 270–300 ms per basin-hopping iteration, plus 6–9 s to start Ray.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use agox::pool::{Pool, PoolConfig};
use agox::search::registry;
use agox::search::script::Script;
use agox::search::search::{Search, Summary};

struct Run {
    iter_ms: f64,
    run_ms: f64,
    pool_share: f64,
    busy_share: f64,
    summary: Summary,
}

fn run_once(script: &Path, workers: usize, out: PathBuf) -> Run {
    let t = Instant::now();
    let mut s = Script::load(script).unwrap_or_else(|e| panic!("{e}"));
    s.search.output = out;
    let (reg, _) = registry::build();
    let pool = Pool::start(reg, PoolConfig::with_workers(workers)).expect("pool");
    let mut search = Search::new(s, pool).expect("search");
    let summary = search.run().expect("run");
    let run_ms = t.elapsed().as_secs_f64() * 1e3;
    let loop_s = summary.timings.total();
    let pool_s = summary.timings.collect + summary.timings.relax + summary.timings.sync;
    let busy_share = if workers > 0 {
        summary.pool.busy_s / (loop_s * workers as f64)
    } else {
        1.0
    };
    Run {
        iter_ms: summary.mean_iteration_ms,
        run_ms,
        pool_share: pool_s / loop_s,
        busy_share,
        summary,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn main() {
    let reps: usize = std::env::var("AGOX_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(5);
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scripts");
    let rss = scripts.join("au8cu4_rss.toml");
    let bh = scripts.join("au8cu4_bh.toml");
    let tmp = tempfile::tempdir().expect("temporary directory");
    let mut k = 0;
    let mut out = || {
        k += 1;
        tmp.path().join(format!("run{k}"))
    };
    let mut rss_w2 = Vec::new();
    let mut rss_w1 = Vec::new();
    let mut bh_w2 = Vec::new();
    for _ in 0..reps {
        rss_w2.push(run_once(&rss, 2, out()));
        rss_w1.push(run_once(&rss, 1, out()));
        bh_w2.push(run_once(&bh, 2, out()));
    }
    let m = |runs: &[Run], f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let rss_iter_ms_w2 = m(&rss_w2, |r| r.iter_ms);
    let rss_iter_ms_w1 = m(&rss_w1, |r| r.iter_ms);
    let line = serde_json::json!({
        "rss_iter_ms_w2": rss_iter_ms_w2,
        "rss_iter_ms_w1": rss_iter_ms_w1,
        "speedup_w1_w2": rss_iter_ms_w1 / rss_iter_ms_w2,
        "bh_iter_ms_w2": m(&bh_w2, |r| r.iter_ms),
        "rss_run_ms_w2": m(&rss_w2, |r| r.run_ms),
        "pool_call_share_w2": m(&rss_w2, |r| r.pool_share),
        "worker_busy_share_w2": m(&rss_w2, |r| r.busy_share),
        "rss_best_w2": rss_w2[0].summary.best_energy,
        "iterations": rss_w2[0].summary.iterations_done,
        "reps": reps,
        "agox_rss_iter_ms_w2": [680, 750],
        "agox_bh_iter_ms_w2": [270, 300],
    });
    println!("{line}");
}
