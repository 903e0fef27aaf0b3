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
//! * `rss_best_w2`: best energy of the first RSS run (a sanity check);
//! * `hyperopt_speedup_w2`: GOFEE's hyperparameter search — 8 L-BFGS-B starts on the
//!   same 200 Au8Cu4 training rows from the same starting points — on 1 worker over
//!   on 2 (`hyperopt_ms_w1`, `hyperopt_ms_w2`, measured interleaved;
//!   `hyperopt_starts_per_s_w2`); `hyperopt_cpu_balance_w2` the speed-up the
//!   schedule gives when each worker has a core: the two workers' CPU time over the
//!   busiest one's;
//! * `gofee_iter_ms_w2`: median wall time per iteration of GOFEE on Au8Cu4 at the
//!   settings AGOX was measured with (its test script: 10 candidates per iteration,
//!   `{0: [10, 0], 5: [3, 7]}` random and rattled, relaxation in the LCB of at most
//!   100 BFGS steps from AGOX's iteration 8, one evaluation of 2 EMT calls, 2 starts
//!   per training), over iterations 6–40 (AGOX's numbering; ours 5–39), 2 workers;
//!   `gofee_surrogate_steps_per_iter` the median LCB steps per iteration there,
//!   `gofee_cpu_ms_per_iter_w2` the CPU time of the driver and both workers per
//!   iteration (what the wall time would be on one idle core);
//! * `rss_peak_mb_n500`: peak resident memory (VmHWM) of the coordinator and of the 2
//!   workers (`rss_peak_mb_n500_parts`) with a Gaussian process of 500 rows trained
//!   and 10 candidates relaxed in its LCB on the workers, measured in a child
//!   process so that nothing else of this benchmark counts;
//! * `sgpr_search8_ms_n1000_w2` (part `sparse`): the sparse Gaussian process's θ
//!   search — 8 θ (the current one and 7 seeded draws) on 1000 Au8Cu4 structures,
//!   SimpleFingerprint, 1000 inducing points by CUR — as pool tasks on 2 workers:
//!   wall time from the first task sent to the last answer, each worker building
//!   its training set from its structures and the inducing indices once, then
//!   evaluating its share. `sgpr_search8_ms_n1000_serial` is the same search on a
//!   pool of no workers (every task in this process, one after the other),
//!   measured interleaved; `sgpr_search8_speedup_w2` their ratio,
//!   `sgpr_search8_cpu_balance_w2` the two workers' CPU time over the busiest
//!   one's; `sgpr_train_ms_n1000_w2` the whole pooled training (inducing points,
//!   rows, search, fit with σ's matrices, the predictor to the workers) and
//!   `sgpr_train_busiest_worker_cpu_ms_w2` the CPU time of the busier worker in it
//!   (the search's wall time when each worker has a core of its own);
//!   `sgpr_rows_bytes_n1000_w2`, `sgpr_state_bytes_n1000_w2` what a training
//!   sent to both workers (the inducing indices — the structures were in the
//!   module when it was added; the predictor). AGOX serial: 27 s for the 8 θ;
//! * `load_average`: the machine's 1-minute load when the benchmark ended.
//!
//! Each figure is the median over `AGOX_BENCH_REPS` runs (default 5). AGOX with Ray
//! (2 workers, same settings, same machine): 680–750 ms per RSS iteration,
//! 270–300 ms per basin-hopping iteration, plus 6–9 s to start Ray; GOFEE 2.2–2.6 s
//! per iteration (iterations 4–40 of a clean run), ≈1.2 GB with Ray. The model's own
//! figures (Fingerprint, log-likelihood, LCB step) are `bench_models`'.

use std::path::{Path, PathBuf};
use std::time::Instant;

use agox::atoms::Atoms;
use agox::models::model::GprModel;
use agox::pool::{Pool, PoolConfig};
use agox::search::calculator::{CalculatorModule, CalculatorSpec, RelaxRequest};
use agox::search::environment::Environment;
use agox::search::generators::{GenerateRequest, Generator, GeneratorModule, RandomGenerator};
use agox::search::registry;
use agox::search::relax_model::{RelaxModel, SurrogateLink};
use agox::search::script::{Script, SparseModelSettings};
use agox::search::search::model::build_sparse;
use agox::search::search::{Search, Summary};
use agox::search::surrogate::sparse::SparseModel;
use agox::search::surrogate::{Answer, PooledSurrogate, Surrogate, SurrogateFns, SurrogateModule};
use agox::search::tasks::{self, PipelineArgs, Relaxation};

#[path = "support/clusters.rs"]
mod clusters;
#[path = "support/env.rs"]
mod env;
use anyhow::{anyhow, Context, Error};
use clusters::{cluster, median};
use env::env_usize;

/// GOFEE at the settings of AGOX's measurement (its test script, relaxation of at
/// most 100 steps from AGOX's iteration 8).
const GOFEE_AGOX_MEASURED: &str = r#"
[search]
algorithm = "gofee"
iterations = 40

[environment]
symbols = "Au8Cu4"
cell = [12.0, 12.0, 12.0]
confinement = { corner = [3.0, 3.0, 3.0], size = [6.0, 6.0, 6.0] }

[calculator]
kind = "emt"

[[generator]]
kind = "random"
count = { 0 = 10, 4 = 3 }

[[generator]]
kind = "rattle"
count = { 0 = 0, 4 = 7 }

[relax]
steps = 100
start_iteration = 7
"#;

struct Run {
    iter_ms: f64,
    run_ms: f64,
    pool_share: f64,
    busy_share: f64,
    summary: Summary,
}

fn run_once(script: &Path, workers: usize, out: PathBuf) -> Result<Run, Error> {
    let t = Instant::now();
    let mut s = Script::load(script).context("the benchmark's script")?;
    s.search.output = out;
    let (reg, _) = registry::build();
    let pool = Pool::start(reg, PoolConfig::with_workers(workers))
        .with_context(|| format!("starting a pool of {workers} workers"))?;
    let mut search = Search::new(s, pool).context("starting the search")?;
    let summary = search
        .run()
        .with_context(|| format!("running {}", script.display()))?;
    let run_ms = t.elapsed().as_secs_f64() * 1e3;
    let loop_s = summary.timings.total();
    let pool_s = summary.timings.collect + summary.timings.relax + summary.timings.sync;
    let busy_share = if workers > 0 {
        summary.pool.busy_s / (loop_s * workers as f64)
    } else {
        1.0
    };
    Ok(Run {
        iter_ms: summary.mean_iteration_ms,
        run_ms,
        pool_share: pool_s / loop_s,
        busy_share,
        summary,
    })
}

/// 200 Au8Cu4 training rows (random clusters 0–40 BFGS steps into EMT).
fn training_rows(n: usize) -> Result<Vec<(Atoms, f64)>, Error> {
    (0..n as u64)
        .map(|s| cluster(1000 + s, [0, 3, 10, 40][s as usize % 4]))
        .collect()
}

/// A Gaussian process with `rows` on a pool of `workers` workers.
fn pooled_model(
    pool: &Pool,
    rows: &[(Atoms, f64)],
    n_optimize: usize,
) -> Result<PooledSurrogate<GprModel>, Error> {
    let template = Atoms::default().with_cell(rows[0].0.cell, [false; 3]);
    let mut model = GprModel::gofee(&template, &rows[0].0.numbers).context("GOFEE's model")?;
    model.gpr_mut().settings.n_optimize = n_optimize;
    on_pool(pool, model, rows, tasks::handles().gpr)
}

/// `model` with `rows` added, on `pool`.
fn on_pool<S: Surrogate>(
    pool: &Pool,
    mut model: S,
    rows: &[(Atoms, f64)],
    fns: SurrogateFns<S>,
) -> Result<PooledSurrogate<S>, Error> {
    let mut ws = S::Workspace::default();
    for (a, e) in rows {
        model
            .add(a, *e, None, &mut ws)
            .context("adding a training row")?;
    }
    PooledSurrogate::add_to(pool, "model", SurrogateModule::new(model), fns)
        .context("adding the model to the pool")
}

/// One hyperparameter search of 8 starts on `pool`.
struct Hyperopt {
    /// Wall time (ms).
    ms: f64,
    /// CPU time of each worker during it (s).
    worker_cpu: Vec<f64>,
    /// Log-likelihood evaluations of each start.
    evaluations: Vec<usize>,
}

fn hyperopt(pool: &Pool, model: &PooledSurrogate<GprModel>) -> Result<Hyperopt, Error> {
    let (starts, rows) = {
        let m = model.handle().lock();
        (m.surrogate.search_starts(42), m.surrogate.n_rows())
    };
    let fns = tasks::handles().gpr;
    let cpu0 = workers_cpu_s(pool)?;
    let t = Instant::now();
    let out = pool
        .map(
            &fns.run_start,
            starts.into_iter().map(|s| (model.link(), s, rows)),
        )
        .context("the hyperparameter search")?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let worker_cpu = workers_cpu_s(pool)?
        .into_iter()
        .zip(cpu0)
        .map(|(b, a)| b - a)
        .collect();
    assert_eq!(out.len(), 8);
    let evaluations = out
        .iter()
        .map(|a| match a {
            Answer::Done(o) => Ok(o.evaluations),
            Answer::Behind(b) => Err(anyhow!("a hyperparameter start: {b}")),
        })
        .collect::<Result<_, Error>>()?;
    Ok(Hyperopt {
        ms,
        worker_cpu,
        evaluations,
    })
}

/// CPU time (user + system, s) process `pid` has used so far.
fn cpu_s(pid: u32) -> Result<f64, Error> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the parenthesized command: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("{path} has no CPU time in field {}", i + 3))
    };
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks(11)? + ticks(12)?) / hz)
}

/// [`cpu_s`] of each of `pool`'s workers.
fn workers_cpu_s(pool: &Pool) -> Result<Vec<f64>, Error> {
    pool.worker_pids().into_iter().map(cpu_s).collect()
}

/// One GOFEE run: the median ms per iteration over iterations 5–39, the median LCB
/// steps per iteration there, and the CPU time (driver and workers) per iteration
/// over the whole run.
fn gofee_run(out: PathBuf, seed: u64) -> Result<(f64, f64, f64), Error> {
    let mut s = Script::parse(GOFEE_AGOX_MEASURED, &out.with_extension("toml"))
        .context("GOFEE's script")?;
    s.search.output = out;
    s.search.seed = Some(seed);
    let (reg, _) = registry::build();
    let pool =
        Pool::start(reg, PoolConfig::with_workers(2)).context("starting a pool of 2 workers")?;
    let mut search = Search::new(s, pool).context("starting GOFEE")?;
    let driver0 = cpu_s(std::process::id())?;
    let workers0: f64 = workers_cpu_s(search.pool())?.into_iter().sum();
    let (mut ms, mut steps) = (Vec::new(), Vec::new());
    while !search.is_done() {
        let r = search
            .run_iteration()
            .with_context(|| format!("GOFEE seed {seed}"))?;
        if (5..40).contains(&r.iteration) {
            ms.push(r.elapsed * 1e3);
            steps.push(r.relax_steps as f64);
        }
    }
    let cpu = cpu_s(std::process::id())? - driver0
        + workers_cpu_s(search.pool())?.into_iter().sum::<f64>()
        - workers0;
    let summary = search
        .finish(false)
        .with_context(|| format!("finishing GOFEE seed {seed}"))?;
    Ok((
        median(ms),
        median(steps),
        cpu * 1e3 / summary.iterations_done as f64,
    ))
}

/// VmHWM of process `pid` (MB).
fn peak_mb(pid: u32) -> Result<f64, Error> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .with_context(|| format!("{path} has no VmHWM"))
}

/// The child process of the memory measurement: a 500-row model trained on 2
/// workers, 10 candidates relaxed in its LCB there; prints the peaks (MB) of the
/// coordinator and the workers as JSON.
fn memory_child() -> Result<(), Error> {
    let rows = training_rows(500)?;
    let (reg, fns) = registry::build();
    let pool =
        Pool::start(reg, PoolConfig::with_workers(2)).context("starting a pool of 2 workers")?;
    let mut model = pooled_model(&pool, &rows, 2)?;
    let training = model.train(&pool, 1).context("training the model")?;
    let tmp = tempfile::tempdir().context("a temporary directory")?;
    let script =
        Script::parse(GOFEE_AGOX_MEASURED, &tmp.path().join("s.toml")).context("GOFEE's script")?;
    let env = Environment::from_script(&script.environment);
    let generator = pool
        .add_module(
            "generator.0",
            GeneratorModule::new(Generator::Random(RandomGenerator::default()), env.clone()),
        )
        .context("adding the generator to the pool")?;
    let mut lcb = RelaxModel::lcb(SurrogateLink::Gpr(model.link()), 2.0);
    lcb.expected = Some(model.version());
    let lcb = pool
        .add_module("relax_model", lcb)
        .context("adding the LCB to the pool")?;
    let request =
        RelaxRequest::new(Default::default(), 0.05, 100).with_confinement(env.box_constraint());
    let args: Vec<PipelineArgs> = (0..10)
        .map(|k| {
            (
                (generator.link(), None, GenerateRequest::new(1, 0, 0, k)),
                Some((lcb.link(), request.clone())),
            )
        })
        .collect();
    let relaxed = pool
        .map(&fns.generate_relax, args.clone())
        .context("generating and relaxing 10 candidates")?;
    if let Some(k) = relaxed
        .iter()
        .position(|(_, r)| !matches!(r, Some(Relaxation::Done(_))))
    {
        return Err(anyhow!(
            "candidate {k} was not generated and relaxed: {:?}",
            relaxed[k]
        ));
    }
    let workers = pool
        .worker_pids()
        .into_iter()
        .map(peak_mb)
        .collect::<Result<Vec<f64>, Error>>()?;
    let coordinator = peak_mb(std::process::id())?;
    // What crosses the sockets, per message (MessagePack, as the pool sends it).
    // The evaluator's task: a single point and one BFGS step of a relaxed candidate.
    let calculator = pool
        .add_module("calculator", CalculatorModule::new(CalculatorSpec::Emt))
        .context("adding the calculator to the pool")?;
    let candidate = match &relaxed[0] {
        (Ok(c), Some(Relaxation::Done(o))) => Atoms {
            positions: o.atoms.positions.clone(),
            ..c.atoms.clone()
        },
        _ => unreachable!("checked above"),
    };
    let evaluate_in = (
        calculator.link(),
        candidate,
        RelaxRequest::new(Default::default(), 0.05, 1)
            .with_confinement(env.box_constraint())
            .with_trajectory(true),
    );
    let evaluate_out = pool
        .map(&fns.calculator.relax_candidate, [evaluate_in.clone()])
        .context("evaluating a candidate")?
        .remove(0);
    let starts = model.handle().lock().surrogate.search_starts(1);
    let unit_in = (model.link(), starts[0], 500usize);
    let unit_out = training_outcome(&pool, &model, starts[0])?;
    println!(
        "{}",
        serde_json::json!({
            "coordinator": coordinator,
            "workers": workers,
            "relax_task_in_bytes": encoded_len(&args[0])?,
            "relax_task_out_bytes": encoded_len(&relaxed[0])?,
            "evaluate_task_in_bytes": encoded_len(&evaluate_in)?,
            "evaluate_task_out_bytes": encoded_len(&evaluate_out)?,
            "search_task_in_bytes": encoded_len(&unit_in)?,
            "search_task_out_bytes": encoded_len(&unit_out)?,
            "state_sync_bytes_n500_w2": training.state_sync.bytes,
        })
    );
    Ok(())
}

/// The outcome of one search unit from `start` (run on the pool).
fn training_outcome(
    pool: &Pool,
    model: &PooledSurrogate<GprModel>,
    start: [f64; 6],
) -> Result<Answer<agox::models::gpr::StartOutcome>, Error> {
    let rows = model.handle().lock().surrogate.n_rows();
    Ok(pool
        .map(
            &tasks::handles().gpr.run_start,
            [(model.link(), start, rows)],
        )
        .context("a hyperparameter start")?
        .remove(0))
}

/// A value's size as the pool sends it (MessagePack).
fn encoded_len<T: serde::Serialize>(v: &T) -> Result<usize, Error> {
    rmp_serde::to_vec(v)
        .map(|v| v.len())
        .context("encoding a task's value")
}

/// Runs [`memory_child`] in a fresh process of this program.
fn memory_peak() -> Result<serde_json::Value, Error> {
    let exe = std::env::current_exe().context("this program's path")?;
    let out = std::process::Command::new(&exe)
        .env("AGOX_BENCH_MEMORY_CHILD", "1")
        .output()
        .with_context(|| format!("running {} for the memory part", exe.display()))?;
    if !out.status.success() {
        return Err(anyhow!(
            "the memory part's process failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "the memory part's output is not JSON: {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// The sparse model (SimpleFingerprint, 1000 inducing points, 8 θ) holding
/// `rows`, on `pool`.
fn pooled_sparse(
    pool: &Pool,
    rows: &[(Atoms, f64)],
) -> Result<PooledSurrogate<SparseModel>, Error> {
    // Au8Cu4 in the 12 Å box of the clusters.
    let env = Environment::from_script(
        &Script::parse(GOFEE_AGOX_MEASURED, Path::new("sparse.toml"))
            .context("GOFEE's script")?
            .environment,
    );
    assert_eq!(env.numbers, rows[0].0.numbers);
    let settings = SparseModelSettings {
        n_optimize: 8,
        n_inducing: 1000,
        ..SparseModelSettings::default()
    };
    let model = build_sparse(&settings, &env).context("the sparse model")?;
    on_pool(pool, model, rows, tasks::handles().sparse_gpr)
}

/// One pooled training of the sparse model: its report and the workers' CPU
/// time during it.
fn sparse_training(
    pool: &Pool,
    model: &mut PooledSurrogate<SparseModel>,
    seed: u64,
) -> Result<(agox::search::surrogate::TrainReport, Vec<f64>), Error> {
    let cpu0 = workers_cpu_s(pool)?;
    let report = model
        .train(pool, seed)
        .context("training the sparse model")?;
    let cpu = workers_cpu_s(pool)?
        .into_iter()
        .zip(cpu0)
        .map(|(b, a)| b - a)
        .collect();
    Ok((report, cpu))
}

fn sparse_part(reps: usize, put: &mut impl FnMut(&str, serde_json::Value)) -> Result<(), Error> {
    let rows = training_rows(1000)?;
    let (reg0, _) = registry::build();
    let (reg2, _) = registry::build();
    let pool0 =
        Pool::start(reg0, PoolConfig::with_workers(0)).context("starting a pool of no workers")?;
    let pool2 =
        Pool::start(reg2, PoolConfig::with_workers(2)).context("starting a pool of 2 workers")?;
    let mut serial = pooled_sparse(&pool0, &rows)?;
    let mut parallel = pooled_sparse(&pool2, &rows)?;
    // The first training sends all structures; later ones only the indices.
    let (first, _) = sparse_training(&pool2, &mut parallel, 1)?;
    sparse_training(&pool0, &mut serial, 1)?;
    let (mut s0, mut s2, mut t2) = (Vec::new(), Vec::new(), Vec::new());
    let (mut balance, mut busiest_ms) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let seed = 100 + rep as u64;
        let (one, _) = sparse_training(&pool0, &mut serial, seed)?;
        let t = Instant::now();
        let (two, cpu) = sparse_training(&pool2, &mut parallel, seed)?;
        t2.push(t.elapsed().as_secs_f64() * 1e3);
        // The same θ, bit for bit, however the search was split.
        assert_eq!(one.hyperparameters, two.hyperparameters);
        s0.push(one.search_s * 1e3);
        s2.push(two.search_s * 1e3);
        let busiest = cpu.iter().copied().fold(0.0, f64::max);
        balance.push(cpu.iter().sum::<f64>() / busiest);
        busiest_ms.push(busiest * 1e3);
    }
    let (s0, s2) = (median(s0), median(s2));
    put("sgpr_search8_ms_n1000_w2", s2.into());
    put("sgpr_search8_ms_n1000_serial", s0.into());
    put("sgpr_search8_speedup_w2", (s0 / s2).into());
    put("sgpr_search8_cpu_balance_w2", median(balance).into());
    put("sgpr_train_ms_n1000_w2", median(t2).into());
    put(
        "sgpr_train_busiest_worker_cpu_ms_w2",
        median(busiest_ms).into(),
    );
    put("sgpr_rows_bytes_n1000_w2", first.rows_sync.bytes.into());
    put("sgpr_state_bytes_n1000_w2", first.state_sync.bytes.into());
    put("agox_sgpr_search8_ms_n1000_serial", 27000.into());
    Ok(())
}

fn main() -> Result<(), Error> {
    if std::env::var_os("AGOX_BENCH_MEMORY_CHILD").is_some() {
        return memory_child();
    }
    let reps = env_usize("AGOX_BENCH_REPS", 5, 1)?;
    let parts = std::env::var("AGOX_BENCH_PARTS").unwrap_or_default();
    let part = |p: &str| parts.is_empty() || parts.split(',').any(|x| x.trim() == p);
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scripts");
    let tmp = tempfile::tempdir().context("a temporary directory for the runs")?;
    let mut k = 0;
    let mut out = || {
        k += 1;
        tmp.path().join(format!("run{k}"))
    };
    let mut line = serde_json::Map::new();
    let mut put = |key: &str, v: serde_json::Value| {
        line.insert(key.to_owned(), v);
    };

    if part("loop") {
        let rss = scripts.join("au8cu4_rss.toml");
        let bh = scripts.join("au8cu4_bh.toml");
        let mut rss_w2 = Vec::new();
        let mut rss_w1 = Vec::new();
        let mut bh_w2 = Vec::new();
        for _ in 0..reps {
            rss_w2.push(run_once(&rss, 2, out())?);
            rss_w1.push(run_once(&rss, 1, out())?);
            bh_w2.push(run_once(&bh, 2, out())?);
        }
        let m = |runs: &[Run], f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
        let rss_iter_ms_w2 = m(&rss_w2, |r| r.iter_ms);
        let rss_iter_ms_w1 = m(&rss_w1, |r| r.iter_ms);
        put("rss_iter_ms_w2", rss_iter_ms_w2.into());
        put("rss_iter_ms_w1", rss_iter_ms_w1.into());
        put("speedup_w1_w2", (rss_iter_ms_w1 / rss_iter_ms_w2).into());
        put("bh_iter_ms_w2", m(&bh_w2, |r| r.iter_ms).into());
        put("rss_run_ms_w2", m(&rss_w2, |r| r.run_ms).into());
        put("pool_call_share_w2", m(&rss_w2, |r| r.pool_share).into());
        put("worker_busy_share_w2", m(&rss_w2, |r| r.busy_share).into());
        put("rss_best_w2", rss_w2[0].summary.best_energy.into());
        put("iterations", rss_w2[0].summary.iterations_done.into());
        put("agox_rss_iter_ms_w2", serde_json::json!([680, 750]));
        put("agox_bh_iter_ms_w2", serde_json::json!([270, 300]));
    }

    if part("hyperopt") {
        // GOFEE's hyperparameter search on 1 and 2 workers, interleaved.
        let rows = training_rows(200)?;
        let (reg1, _) = registry::build();
        let (reg2, _) = registry::build();
        let pool1 = Pool::start(reg1, PoolConfig::with_workers(1))
            .context("starting a pool of 1 worker")?;
        let pool2 = Pool::start(reg2, PoolConfig::with_workers(2))
            .context("starting a pool of 2 workers")?;
        let model1 = pooled_model(&pool1, &rows, 8)?;
        let model2 = pooled_model(&pool2, &rows, 8)?;
        let evaluations = hyperopt(&pool1, &model1)?.evaluations;
        hyperopt(&pool2, &model2)?;
        let (mut h1, mut h2, mut balance) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps {
            h1.push(hyperopt(&pool1, &model1)?.ms);
            let two = hyperopt(&pool2, &model2)?;
            h2.push(two.ms);
            // The speed-up this schedule gives when each worker has a core of its
            // own: all the work over the busiest worker's.
            let busiest = two.worker_cpu.iter().copied().fold(0.0, f64::max);
            balance.push(two.worker_cpu.iter().sum::<f64>() / busiest);
        }
        let (h1, h2) = (median(h1), median(h2));
        put("hyperopt_speedup_w2", (h1 / h2).into());
        put("hyperopt_cpu_balance_w2", median(balance).into());
        put("hyperopt_ms_w1", h1.into());
        put("hyperopt_ms_w2", h2.into());
        put("hyperopt_starts_per_s_w2", (8.0 / (h2 / 1e3)).into());
        put("hyperopt_evaluations_per_start", evaluations.into());
    }

    if part("gofee") {
        // GOFEE at AGOX's measured settings.
        let (mut gofee_ms, mut gofee_steps, mut gofee_cpu) = (Vec::new(), Vec::new(), Vec::new());
        for rep in 0..reps {
            let (ms, steps, cpu) = gofee_run(out(), 1 + rep as u64)?;
            gofee_ms.push(ms);
            gofee_steps.push(steps);
            gofee_cpu.push(cpu);
        }
        put("gofee_iter_ms_w2", median(gofee_ms.clone()).into());
        put("gofee_iter_ms_w2_runs", gofee_ms.into());
        put("gofee_surrogate_steps_per_iter", median(gofee_steps).into());
        put("gofee_cpu_ms_per_iter_w2", median(gofee_cpu).into());
        put("agox_gofee_iter_ms_w2", serde_json::json!([2200, 2600]));
    }

    if part("memory") {
        let memory = memory_peak()?;
        let coordinator = memory["coordinator"]
            .as_f64()
            .context("the memory part's output has no coordinator peak")?;
        let workers: f64 = memory["workers"]
            .as_array()
            .context("the memory part's output has no workers' peaks")?
            .iter()
            .map(|x| x.as_f64().context("a worker's peak is not a number"))
            .sum::<Result<f64, Error>>()?;
        let total = coordinator + workers;
        put("rss_peak_mb_n500", total.into());
        put("rss_peak_mb_n500_parts", memory);
        put("agox_rss_peak_mb_w2", 1200.into());
    }

    if part("sparse") {
        sparse_part(reps, &mut put)?;
    }

    put("reps", reps.into());
    put("load_average", load_average().into());
    println!("{}", serde_json::Value::Object(line));
    Ok(())
}
