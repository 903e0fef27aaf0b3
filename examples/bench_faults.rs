//! Fault figures of the pool, for docs/reliability.md. Prints ONE JSON line:
//!
//! * `detect_lost_ms`: from SIGKILL of a busy worker to the coordinator's
//!   `WorkerLost` event (median of 15);
//! * `restore_ms`: from the launch of a replacement to its acknowledgement of the
//!   replayed state, for a module holding 1 KB, 1 MB and 100 MB of attributes
//!   (median of 5, 3 for 100 MB);
//! * `chaos`: iterations of map + synchronize with a random worker SIGKILLed every
//!   50-300 ms: kills survived, and whether every result equals the undisturbed run;
//! * `strangers`: a map of 400 one-millisecond tasks undisturbed, beside a thread
//!   spinning on the CPU (the control: what the flooder costs by being there),
//!   during a flood of connections, and among silent and trickling connections
//!   (medians of 5, interleaved), with the coordinator's resident memory before and
//!   after 100,000 refused connections.
//!
//! `cargo run --release --example bench_faults`

#[path = "support/measure.rs"]
mod measure;

use agox::pool::{
    dynamic_attributes, EventSink, Link, Module, Pool, PoolConfig, PoolEvent, Registry,
    TaskContext, TaskError,
};
use measure::{median, rss_kb};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Serialize, Deserialize, Default)]
struct Blob {
    data: Vec<f64>,
}

impl Module for Blob {
    const TYPE_NAME: &'static str = "Blob";
    dynamic_attributes!(data);
}

struct Fns {
    sleep_ms: agox::pool::FnHandle<u64, u64>,
    score: agox::pool::FnHandle<(Link<Blob>, u64), f64>,
    len: agox::pool::FnHandle<Link<Blob>, usize>,
}

fn registry() -> (Registry, Fns) {
    let mut r = Registry::new();
    r.module::<Blob>();
    let sleep_ms = r.function("sleep_ms", |_: &TaskContext, ms: u64| {
        std::thread::sleep(Duration::from_millis(ms));
        Ok::<_, TaskError>(ms)
    });
    // Depends on the synchronized state and on the task's seed: a worker holding
    // stale state, or a task run twice with another seed, changes the answer.
    let score = r.function("score", |ctx: &TaskContext, (b, ms): (Link<Blob>, u64)| {
        std::thread::sleep(Duration::from_millis(ms));
        let b = ctx.module(&b)?;
        let noise: f64 = ctx.rng().gen();
        Ok::<_, TaskError>(b.data.iter().sum::<f64>() + noise)
    });
    let len = r.function("len", |ctx: &TaskContext, b: Link<Blob>| {
        Ok::<_, TaskError>(ctx.module(&b)?.data.len())
    });
    (
        r,
        Fns {
            sleep_ms,
            score,
            len,
        },
    )
}

/// A pool whose events arrive, time-stamped, on the returned channel.
type Error = Box<dyn std::error::Error>;

/// Events with the instant the pool emitted them.
type Timed = crossbeam_channel::Receiver<(Instant, PoolEvent)>;

fn pool_with_events(cfg: PoolConfig) -> Result<(Pool, Fns, Timed), Error> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let sink = EventSink::new(move |e| {
        let _ = tx.send((Instant::now(), e.clone()));
    });
    let (r, f) = registry();
    Ok((Pool::start(r, cfg.events(sink))?, f, rx))
}

fn kill(pid: u32) {
    // SAFETY: killing a worker process of this benchmark.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

/// Milliseconds from SIGKILL of a busy worker to the `WorkerLost` event.
fn detect_lost() -> Result<f64, Error> {
    let (pool, f, events) = pool_with_events(PoolConfig::with_workers(2))?;
    let mut samples = Vec::new();
    for _ in 0..15 {
        let victim = pool.worker_pids()[1];
        let killed_at = Arc::new(Mutex::new(None));
        let k = killed_at.clone();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            if let Ok(mut at) = k.lock() {
                *at = Some(Instant::now());
                kill(victim);
            }
        });
        pool.map(&f.sleep_ms, vec![50u64; 4])?;
        killer.join().map_err(|_| "killer panicked")?;
        let at = killed_at.lock().map_err(|_| "poisoned")?.ok_or("no kill")?;
        let lost = events
            .try_iter()
            .find_map(|(t, e)| matches!(e, PoolEvent::WorkerLost { .. }).then_some(t))
            .ok_or("no loss seen")?;
        samples.push(lost.duration_since(at).as_secs_f64() * 1e3);
        // Let the replacement finish its start before the next round.
        pool.broadcast(&f.sleep_ms, &1)?;
        events.try_iter().for_each(drop);
    }
    Ok(median(samples))
}

/// Milliseconds from a replacement's launch to its acknowledgement of a replayed
/// state of `bytes` bytes of attributes.
fn restore(bytes: usize, rounds: usize) -> Result<f64, Error> {
    let (pool, f, events) = pool_with_events(PoolConfig::with_workers(2))?;
    let blob = pool.add_module("blob", Blob::default())?;
    blob.lock().data = (0..bytes / 8).map(|i| i as f64).collect();
    pool.synchronize()?;
    let mut samples = Vec::new();
    for _ in 0..rounds {
        events.try_iter().for_each(drop);
        kill(pool.worker_pids()[1]);
        // Drive the pool until the loss is seen, so the broadcast below goes to
        // slot 1's replacement (and waits for it, which answers after its replay).
        let mut seen = Vec::new();
        while !seen
            .iter()
            .any(|(_, e)| matches!(e, PoolEvent::WorkerLost { .. }))
        {
            pool.map(&f.sleep_ms, [1u64])?;
            seen.extend(events.try_iter());
        }
        let lens = pool.broadcast(&f.len, &blob.link())?;
        seen.extend(events.try_iter());
        if lens != vec![bytes / 8; 2] {
            return Err(format!("replacement holds {lens:?} values").into());
        }
        let ready = seen
            .into_iter()
            .find_map(|(_, e)| match e {
                PoolEvent::WorkerReady { after, .. } => Some(after),
                _ => None,
            })
            .ok_or("no ready event")?;
        samples.push(ready.as_secs_f64() * 1e3);
    }
    Ok(median(samples))
}

/// Iterations of map + synchronize while a killer SIGKILLs a random worker every
/// 50-300 ms; compared with the same iterations undisturbed.
fn chaos(iterations: u64) -> Result<(u64, u64, bool), Error> {
    // Every iteration's results, kills made, workers lost.
    type Run = (Vec<Vec<f64>>, u64, u64);
    let run = |killer: bool| -> Result<Run, Error> {
        let mut cfg = PoolConfig::with_workers(2).seed(11);
        cfg.max_retries = 8;
        let (pool, f, events) = pool_with_events(cfg)?;
        let blob = pool.add_module("blob", Blob::default())?;
        let stop = Arc::new(AtomicBool::new(false));
        let kills = Arc::new(AtomicU64::new(0));
        let pids = Arc::new(Mutex::new(pool.worker_pids()));
        let handle = killer.then(|| {
            let (stop, kills, pids) = (stop.clone(), kills.clone(), pids.clone());
            std::thread::spawn(move || {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(rng.gen_range(50..300)));
                    let victim = pids
                        .lock()
                        .ok()
                        .and_then(|p| p.get(rng.gen_range(0..2)).copied());
                    if let Some(pid) = victim {
                        kill(pid);
                        kills.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        });
        let mut out = Vec::new();
        for i in 0..iterations {
            out.push(pool.map(&f.score, (0..8).map(|_| (blob.link(), 2)))?);
            blob.lock().data.push(i as f64);
            pool.synchronize()?;
            if let Ok(mut p) = pids.lock() {
                *p = pool.worker_pids();
            }
        }
        stop.store(true, Ordering::Relaxed);
        if let Some(h) = handle {
            h.join().map_err(|_| "killer panicked")?;
        }
        let lost = events
            .try_iter()
            .filter(|(_, e)| matches!(e, PoolEvent::WorkerLost { .. }))
            .count() as u64;
        Ok((out, kills.load(Ordering::Relaxed), lost))
    };
    let (reference, _, _) = run(false)?;
    let (disturbed, kills, lost) = run(true)?;
    Ok((kills, lost, reference == disturbed))
}

/// A map of 400 one-millisecond tasks: seconds.
fn timed_map(pool: &Pool, f: &Fns) -> Result<f64, Error> {
    let t0 = Instant::now();
    pool.map(&f.sleep_ms, vec![1u64; 400])?;
    Ok(t0.elapsed().as_secs_f64())
}

struct Strangers {
    undisturbed_s: f64,
    spin_s: f64,
    flood_s: f64,
    flood_connects_per_s: f64,
    silent_s: f64,
    rss_before_kb: u64,
    rss_after_kb: u64,
    refused: u64,
}

fn strangers() -> Result<Strangers, Error> {
    let mut cfg = PoolConfig::with_workers(2);
    cfg.handshake_timeout = Duration::from_millis(500);
    let (r, f) = registry();
    let pool = Pool::start(r, cfg)?;
    let address = pool.address().ok_or("no address")?;
    let me = std::process::id();
    let (mut quiet, mut flood, mut silent, mut rates) = (vec![], vec![], vec![], vec![]);
    let mut spin = vec![];
    let rss_before_kb = rss_kb(me);
    for _ in 0..5 {
        quiet.push(timed_map(&pool, &f)?);
        // The control: a thread as busy as the flooder, connecting nowhere. What
        // the flood costs beyond this is the coordinator's work on strangers.
        let stop = Arc::new(AtomicBool::new(false));
        let spinner = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        spin.push(timed_map(&pool, &f)?);
        stop.store(true, Ordering::Relaxed);
        spinner.join().map_err(|_| "spinner panicked")?;
        // A flood: one thread connecting (and dropping) as fast as it can.
        let stop = Arc::new(AtomicBool::new(false));
        let flooder = {
            let (stop, address) = (stop.clone(), address.clone());
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if UnixStream::connect(&address).is_ok() {
                        n += 1;
                    }
                }
                n as f64 / t0.elapsed().as_secs_f64()
            })
        };
        flood.push(timed_map(&pool, &f)?);
        stop.store(true, Ordering::Relaxed);
        // A connect blocks while the backlog is full: keep accepting until the
        // flooder has seen the stop.
        while !flooder.is_finished() {
            pool.map(&f.sleep_ms, [0u64])?;
        }
        rates.push(flooder.join().map_err(|_| "flooder panicked")?);
        // Silent connections and a trickler.
        // Connected from a thread while the pool turns: a connect waits while
        // the backlog is full, and only a pool call accepts.
        let opener = {
            let address = address.clone();
            std::thread::spawn(move || {
                (0..50)
                    .filter_map(|_| UnixStream::connect(&address).ok())
                    .collect::<Vec<UnixStream>>()
            })
        };
        while !opener.is_finished() {
            pool.map(&f.sleep_ms, [0u64])?;
        }
        let conns = opener.join().map_err(|_| "opener panicked")?;
        let stop = Arc::new(AtomicBool::new(false));
        let trickler = {
            let (stop, address) = (stop.clone(), address.clone());
            std::thread::spawn(move || {
                if let Ok(mut s) = UnixStream::connect(&address) {
                    while !stop.load(Ordering::Relaxed) && s.write_all(&[0x10]).is_ok() {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        };
        silent.push(timed_map(&pool, &f)?);
        stop.store(true, Ordering::Relaxed);
        trickler.join().map_err(|_| "trickler panicked")?;
        drop(conns);
    }
    // 100,000 refused connections in all, while maps run.
    let target = 100_000;
    let counter = {
        let address = address.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while n < target {
                if UnixStream::connect(&address).is_ok() {
                    n += 1;
                }
            }
        })
    };
    while !counter.is_finished() {
        timed_map(&pool, &f)?;
    }
    counter.join().map_err(|_| "counter panicked")?;
    // Let the last ones be refused.
    for _ in 0..3 {
        timed_map(&pool, &f)?;
    }
    Ok(Strangers {
        undisturbed_s: median(quiet),
        spin_s: median(spin),
        flood_s: median(flood),
        flood_connects_per_s: median(rates),
        silent_s: median(silent),
        rss_before_kb,
        rss_after_kb: rss_kb(me),
        refused: pool.stats().refused_handshakes,
    })
}

fn main() -> Result<(), Error> {
    // Progress on standard error; the figures on standard output.
    eprintln!("bench_faults: detecting lost workers");
    let detect = detect_lost()?;
    eprintln!("bench_faults: restoring state");
    let restore_1k = restore(1 << 10, 5)?;
    let restore_1m = restore(1 << 20, 5)?;
    let restore_100m = restore(100 << 20, 3)?;
    eprintln!("bench_faults: chaos");
    let (kills, lost, identical) = chaos(800)?;
    eprintln!("bench_faults: strangers");
    let s = strangers()?;
    println!(
        "{{\"bench\":\"faults\",\"detect_lost_ms\":{detect:.3},\
         \"restore_ms\":{{\"1KB\":{restore_1k:.2},\"1MB\":{restore_1m:.2},\"100MB\":{restore_100m:.1}}},\
         \"chaos\":{{\"iterations\":800,\"kills\":{kills},\"workers_lost\":{lost},\"identical\":{identical}}},\
         \"strangers\":{{\"map_s\":{:.4},\"busy_thread_map_s\":{:.4},\"flood_map_s\":{:.4},\"flood_ratio\":{:.3},\"flood_connects_per_s\":{:.0},\
         \"silent_map_s\":{:.4},\"silent_ratio\":{:.3},\"refused\":{},\"rss_kb_before\":{},\"rss_kb_after_100k\":{}}}}}",
        s.undisturbed_s,
        s.spin_s,
        s.flood_s,
        s.flood_s / s.undisturbed_s,
        s.flood_connects_per_s,
        s.silent_s,
        s.silent_s / s.undisturbed_s,
        s.refused,
        s.rss_before_kb,
        s.rss_after_kb
    );
    Ok(())
}
