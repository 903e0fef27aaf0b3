//! A registry of test modules and functions shared by every pool test.

use agox::pool::{
    dynamic_attributes, EventSink, FnHandle, Link, Module, Pool, PoolConfig, PoolEvent, Registry,
    TaskContext, TaskError,
};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A model with two dynamic attributes and one static field.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Model {
    pub weights: Vec<f64>,
    pub version: u64,
    pub bias: f64,
}

impl Model {
    /// A model with these weights, version 0.
    pub fn new(weights: Vec<f64>, bias: f64) -> Self {
        Model {
            weights,
            version: 0,
            bias,
        }
    }
}

impl Module for Model {
    const TYPE_NAME: &'static str = "Model";
    dynamic_attributes!(weights, version);
}

/// A module that holds another (an acquisitor holding its model).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Acquisitor {
    pub model: Link<Model>,
    pub kappa: f64,
}

impl Module for Acquisitor {
    const TYPE_NAME: &'static str = "Acquisitor";
}

/// Per-worker mutable state.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Counter {
    pub count: u64,
}

impl Module for Counter {
    const TYPE_NAME: &'static str = "Counter";
}

/// A module that owns a handle to its pool and synchronizes itself, the way AGOX's
/// `RayPoolUser` modules do.
#[derive(Serialize, Deserialize, Default)]
pub struct SelfSync {
    pub values: Vec<f64>,
    pub key: String,
    #[serde(skip)]
    pub pool: Option<Pool>,
}

impl Module for SelfSync {
    const TYPE_NAME: &'static str = "SelfSync";
    dynamic_attributes!(values);
    fn self_synchronizing(&self) -> bool {
        true
    }
}

impl SelfSync {
    /// What the workers' copies hold, read through the module's own pool handle.
    pub fn seen_by_workers(&self, read: &FnHandle<Link<SelfSync>, f64>) -> Vec<f64> {
        let pool = self.pool.as_ref().expect("pool handle set");
        let n = pool.size().max(1);
        pool.map(read, vec![Link::new(self.key.clone()); 2 * n])
            .expect("map from inside a module")
    }

    /// Changes the values and pushes them to the workers at once.
    pub fn update(&mut self, values: Vec<f64>) -> agox::pool::SyncReport {
        self.values = values;
        let pool = self.pool.clone().expect("pool handle set");
        pool.synchronize_from(&self.key, self, None)
            .expect("self synchronization")
    }
}

pub struct Fns {
    pub square: FnHandle<u64, u64>,
    pub sleep_ms: FnHandle<u64, (u64, Option<u32>)>,
    pub random: FnHandle<u32, Vec<f64>>,
    pub predict: FnHandle<(Link<Model>, f64), f64>,
    pub acquire: FnHandle<(Link<Acquisitor>, f64), f64>,
    pub model_state: FnHandle<Link<Model>, Model>,
    pub fail: FnHandle<String, u64>,
    pub panic: FnHandle<u64, u64>,
    pub die: FnHandle<u64, u64>,
    pub die_once: FnHandle<(String, u64), u64>,
    pub die_after: FnHandle<(String, u64), u64>,
    pub slow_random: FnHandle<(u64, u32), Vec<f64>>,
    pub alloc_mb: FnHandle<u64, u64>,
    pub data_limit: FnHandle<(), u64>,
    pub incr: FnHandle<Link<Counter>, u64>,
    pub read: FnHandle<Link<Counter>, u64>,
    pub pid: FnHandle<(), u32>,
    pub sum: FnHandle<Vec<f64>, f64>,
    pub selfsync_sum: FnHandle<Link<SelfSync>, f64>,
}

fn sleep_ms(ctx: &TaskContext, ms: u64) -> Result<(u64, Option<u32>), TaskError> {
    std::thread::sleep(Duration::from_millis(ms));
    Ok((ms, ctx.worker_id()))
}

pub fn registry() -> (Registry, Fns) {
    let mut r = Registry::new();
    r.module::<Model>()
        .module::<Acquisitor>()
        .module::<Counter>()
        .module::<SelfSync>();
    let fns = Fns {
        square: r.function("square", |_: &TaskContext, x: u64| {
            Ok::<_, TaskError>(x * x)
        }),
        sleep_ms: r.function("sleep_ms", sleep_ms),
        random: r.function("random", |ctx: &TaskContext, n: u32| {
            let mut rng = ctx.rng();
            Ok::<_, TaskError>((0..n).map(|_| rng.gen::<f64>()).collect())
        }),
        predict: r.function(
            "predict",
            |ctx: &TaskContext, (m, x): (Link<Model>, f64)| {
                let m = ctx.module(&m)?;
                Ok::<_, TaskError>(m.weights.iter().sum::<f64>() * x + m.bias)
            },
        ),
        acquire: r.function(
            "acquire",
            |ctx: &TaskContext, (a, x): (Link<Acquisitor>, f64)| {
                let acq = ctx.module(&a)?;
                let model = ctx.module(&acq.model)?;
                Ok::<_, TaskError>(model.weights.iter().sum::<f64>() * x - acq.kappa)
            },
        ),
        model_state: r.function("model_state", |ctx: &TaskContext, m: Link<Model>| {
            Ok::<_, TaskError>(ctx.module(&m)?.clone())
        }),
        fail: r.function("fail", |_: &TaskContext, msg: String| {
            Err::<u64, TaskError>(msg.into())
        }),
        panic: r.function(
            "panic",
            |_: &TaskContext, x: u64| -> Result<u64, TaskError> {
                if x == 3 {
                    panic!("boom at {x}");
                }
                Ok(x)
            },
        ),
        die: r.function(
            "die",
            |_: &TaskContext, _x: u64| -> Result<u64, TaskError> {
                // SAFETY: the test wants this worker process gone, abruptly.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
                Ok(0)
            },
        ),
        die_once: r.function(
            "die_once",
            |_: &TaskContext, (marker, x): (String, u64)| -> Result<u64, TaskError> {
                // The first worker to run this dies; the retried task then succeeds.
                if std::fs::create_dir(&marker).is_ok() {
                    // SAFETY: as above.
                    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
                }
                Ok(x + 1)
            },
        ),
        die_after: r.function(
            "die_after",
            |_: &TaskContext, (marker, ms): (String, u64)| -> Result<u64, TaskError> {
                // The first run sleeps, then kills its own worker; the retry returns.
                if std::fs::create_dir(&marker).is_ok() {
                    std::thread::sleep(Duration::from_millis(ms));
                    // SAFETY: the test wants this worker process gone, abruptly.
                    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
                }
                Ok(ms)
            },
        ),
        slow_random: r.function("slow_random", |ctx: &TaskContext, (ms, n): (u64, u32)| {
            std::thread::sleep(Duration::from_millis(ms));
            let mut rng = ctx.rng();
            Ok::<_, TaskError>((0..n).map(|_| rng.gen::<f64>()).collect())
        }),
        alloc_mb: r.function("alloc_mb", |_: &TaskContext, mb: u64| {
            // Touch every page, so the memory is really taken.
            let v = vec![1u8; (mb as usize) << 20];
            Ok::<_, TaskError>(v.iter().step_by(4096).map(|&b| u64::from(b)).sum())
        }),
        data_limit: r.function("data_limit", |_: &TaskContext, ()| {
            let (soft, _) =
                nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_DATA)
                    .map_err(|e| TaskError::from(e.to_string()))?;
            Ok::<_, TaskError>(soft)
        }),
        incr: r.function("incr", |ctx: &TaskContext, c: Link<Counter>| {
            let mut c = ctx.module(&c)?;
            c.count += 1;
            Ok::<_, TaskError>(c.count)
        }),
        read: r.function("read", |ctx: &TaskContext, c: Link<Counter>| {
            Ok::<_, TaskError>(ctx.module(&c)?.count)
        }),
        pid: r.function("pid", |_: &TaskContext, ()| {
            Ok::<_, TaskError>(std::process::id())
        }),
        sum: r.function("sum", |_: &TaskContext, v: Vec<f64>| {
            Ok::<_, TaskError>(v.iter().sum())
        }),
        selfsync_sum: r.function("selfsync_sum", |ctx: &TaskContext, m: Link<SelfSync>| {
            Ok::<_, TaskError>(ctx.module(&m)?.values.iter().sum())
        }),
    };
    (r, fns)
}

pub fn pool(workers: usize) -> (Pool, Fns) {
    pool_with(PoolConfig::with_workers(workers).seed(7))
}

pub fn pool_with(cfg: PoolConfig) -> (Pool, Fns) {
    let (r, f) = registry();
    (Pool::start(r, cfg).expect("pool starts"), f)
}

/// A pool whose events are collected.
pub fn pool_with_events(cfg: PoolConfig) -> (Pool, Fns, Events) {
    let (sink, rx) = EventSink::channel();
    let (pool, f) = pool_with(cfg.events(sink));
    (pool, f, Events::new(rx))
}

/// The events a pool emitted, gathered as they are asked for.
pub struct Events {
    rx: crossbeam_channel::Receiver<PoolEvent>,
    seen: Vec<PoolEvent>,
}

impl Events {
    /// Events arriving on `rx`.
    pub fn new(rx: crossbeam_channel::Receiver<PoolEvent>) -> Self {
        Events {
            rx,
            seen: Vec::new(),
        }
    }

    /// Every event so far.
    pub fn all(&mut self) -> &[PoolEvent] {
        self.seen.extend(self.rx.try_iter());
        &self.seen
    }

    /// How many events so far match.
    pub fn count(&mut self, pred: impl Fn(&PoolEvent) -> bool) -> usize {
        self.all().iter().filter(|e| pred(e)).count()
    }
}

/// A temporary directory path for a "die once" marker.
pub fn marker(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).to_string_lossy().into_owned()
}

pub use crate::proc::{eventually, process_alive};
