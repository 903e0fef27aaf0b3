//! The pool benchmark: start-up, per-task cost, round trip, an 8 MB attribute
//! broadcast and worker memory, each beside the machine's own floor for the same
//! movement of bytes, measured in the same run, interleaved with the pool figures
//! (a loaded machine then moves both). Prints ONE JSON line; each figure is the
//! median of five repetitions inside this run, and each `*_vs_floor` the median of
//! the five per-repetition ratios.
//!
//! The floor is two processes and a Unix socket pair with nothing else: a 64-byte
//! ping-pong round trip, 64-byte messages pipelined 32 at a time (the cost per
//! message), and an 8 MB write answered by a 1-byte acknowledgement. It is the
//! same measurement as a pair of small C programs doing `read`/`write` on a
//! `socketpair` (a forked child echoing), written with the standard library.
//!
//! `--transport unix|tcp|inproc|mpi` chooses how the pool talks to its workers (the
//! floor is always the Unix socket pair): Unix sockets by default, TCP on the
//! loopback, threads of this process, or MPI ranks — the last in a build with the
//! `mpi` feature, under `mpirun -n WORKERS+1` (rank 0 measures, the others serve;
//! an MPI job starts one pool, so `start_ms` is that one start).
//!
//! Under MPI the line also gives MPI's own floor for the broadcast: `mpi_bcast_8mb_ms`,
//! a bare non-blocking broadcast (`MPI_Ibcast`, the collective the pool uses) of
//! 8 MB from rank 0 to every rank of the job, timed from a barrier to a barrier,
//! median of five; and `sync_8mb_vs_mpi_bcast`. It is measured before the pool
//! starts (the worker ranks then serve the pool alone), so not interleaved; the
//! other transports print `null` there.
//!
//! `cargo run --release --example bench_pool -- --workers 2`
//! `cargo build --release --example bench_pool --features mpi &&
//!  mpirun -n 3 target/release/examples/bench_pool --transport mpi`

use agox::pool::{
    dynamic_attributes, Link, Module, Pool, PoolConfig, Registry, TaskContext, TaskError,
    TransportConfig,
};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
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

/// Size of a floor message (the C floor's).
const MSG: usize = 64;
/// Messages in flight in the pipelined floor.
const WINDOW: usize = 32;
/// The large payload.
const BIG: usize = 8 << 20;

/// A child process at the other end of a socket pair, forked before the pool (so
/// while this process has one thread). It answers every `request` bytes with
/// `answer` bytes until the socket closes.
struct Peer {
    socket: UnixStream,
    pid: nix::unistd::Pid,
}

impl Peer {
    fn fork(request: usize, answer: usize) -> Result<Peer, Box<dyn std::error::Error>> {
        let (ours, theirs) = UnixStream::pair()?;
        // SAFETY: called at the start of `main`, before any thread or pool exists;
        // the child only reads and writes its socket and leaves with `_exit`.
        match unsafe { nix::unistd::fork() }? {
            nix::unistd::ForkResult::Child => {
                drop(ours);
                let mut theirs = theirs;
                let mut buf = vec![0u8; request.max(answer)];
                while theirs.read_exact(&mut buf[..request]).is_ok() {
                    if theirs.write_all(&buf[..answer]).is_err() {
                        break;
                    }
                }
                // SAFETY: ends the child without running the parent's exit handlers.
                unsafe { libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => Ok(Peer {
                socket: ours,
                pid: child,
            }),
        }
    }

    /// µs per 64-byte round trip, over `n` of them.
    fn roundtrip_us(&mut self, n: usize) -> std::io::Result<f64> {
        let mut m = [0u8; MSG];
        let t0 = Instant::now();
        for _ in 0..n {
            self.socket.write_all(&m)?;
            self.socket.read_exact(&mut m)?;
        }
        Ok(t0.elapsed().as_secs_f64() * 1e6 / n as f64)
    }

    /// µs per 64-byte message, `n` of them sent `WINDOW` at a time.
    fn pipelined_us(&mut self, n: usize) -> std::io::Result<f64> {
        let mut m = vec![0u8; MSG * WINDOW];
        let t0 = Instant::now();
        for _ in 0..n / WINDOW {
            self.socket.write_all(&m)?;
            self.socket.read_exact(&mut m)?;
        }
        Ok(t0.elapsed().as_secs_f64() * 1e6 / (n / WINDOW * WINDOW) as f64)
    }

    /// ms per 8 MB sent and acknowledged.
    fn send_ms(&mut self, payload: &[u8]) -> std::io::Result<f64> {
        let mut ack = [0u8; 1];
        let t0 = Instant::now();
        self.socket.write_all(payload)?;
        self.socket.read_exact(&mut ack)?;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    }

    fn stop(self) -> Result<(), Box<dyn std::error::Error>> {
        drop(self.socket);
        nix::sys::wait::waitpid(self.pid, None)?;
        Ok(())
    }
}

/// ms per bare `MPI_Ibcast` of [`BIG`] bytes from rank 0 to every rank, each
/// between two barriers (so it ends when the last rank has the bytes), after one
/// warm-up; every rank of the job calls this at the same point.
#[cfg(feature = "mpi")]
fn mpi_bcast_floor_ms() -> Vec<f64> {
    use mpi::traits::{Communicator, CommunicatorCollectives, Root};
    let world = mpi::topology::SimpleCommunicator::world();
    let root = world.process_at_rank(0);
    let mut buf = vec![1u8; BIG];
    (0..6)
        .map(|_| {
            world.barrier();
            let t0 = Instant::now();
            mpi::request::scope(|scope| {
                root.immediate_broadcast_into(scope, &mut buf[..]).wait();
            });
            world.barrier();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .skip(1)
        .collect()
}

/// A JSON number with `decimals`, or `null`.
fn json_or_null(v: Option<f64>, decimals: usize) -> String {
    v.map_or("null".into(), |v| format!("{v:.decimals$}"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut workers = None;
    let mut transport = "unix".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--workers" => {
                workers = Some(
                    args.next()
                        .ok_or("--workers needs a number")?
                        .parse::<usize>()
                        .map_err(|e| format!("--workers: {e}"))?,
                )
            }
            "--transport" => transport = args.next().ok_or("--transport needs a kind")?,
            other => {
                return Err(format!(
                    "unknown argument '{other}' (expected --workers N, --transport unix|tcp|inproc|mpi)"
                )
                .into())
            }
        }
    }
    // Under MPI every rank but 0 serves, before anything else happens (but MPI's
    // own broadcast, which every rank joins).
    #[allow(unused_mut)]
    let mut mpi_bcast_ms: Option<f64> = None;
    #[cfg(feature = "mpi")]
    let mpi_session = if transport == "mpi" {
        let session = agox::pool::mpi::init()?;
        mpi_bcast_ms = Some(median(mpi_bcast_floor_ms()));
        match session.role() {
            agox::pool::mpi::Role::Worker { .. } => {
                let (reg, _) = registry();
                std::process::exit(session.serve(&reg));
            }
            agox::pool::mpi::Role::Coordinator { workers: n } => {
                if workers.is_some_and(|w| w != n) {
                    return Err(format!("--workers: this MPI job has {n} worker ranks").into());
                }
                workers = Some(n);
            }
        }
        Some(session)
    } else {
        None
    };
    let workers = workers.unwrap_or(2);
    let config = || -> Result<PoolConfig, String> {
        let t = match transport.as_str() {
            "unix" => TransportConfig::Unix,
            "tcp" => TransportConfig::Tcp {
                listen: "127.0.0.1:0".into(),
            },
            "inproc" => TransportConfig::InProcess,
            #[cfg(feature = "mpi")]
            "mpi" => TransportConfig::Mpi,
            other => {
                return Err(format!(
                "--transport {other}: expected unix, tcp, inproc or mpi (mpi needs --features mpi)"
            ))
            }
        };
        Ok(PoolConfig::with_workers(workers).transport(t))
    };
    config()?;
    const REPS: usize = 5;
    const TASKS: usize = 2000;
    const FLOOR_ROUNDTRIPS: usize = 20_000;
    const FLOOR_PIPELINED: usize = 64_000;

    // The floor's peers first, while this process has a single thread.
    let mut echo = Peer::fork(MSG, MSG)?;
    let mut sink = Peer::fork(BIG, 1)?;
    // Warm up both ends (first-touch pages, scheduler).
    echo.roundtrip_us(1000)?;
    echo.pipelined_us(4 * WINDOW)?;

    let mut start_ms = Vec::new();
    // An MPI job's ranks serve one pool: its start is the one measured below.
    let starts = if transport == "mpi" { 0 } else { REPS };
    for _ in 0..starts {
        let (reg, _) = registry();
        let t0 = Instant::now();
        let pool = Pool::start(reg, config()?)?;
        start_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        drop(pool);
    }

    let (reg, Fns { sum, len }) = registry();
    let t0 = Instant::now();
    let pool = Pool::start(reg, config()?)?;
    if starts == 0 {
        start_ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    // The floor's 8 MB only now: the pool's processes fork from this one when it
    // starts, and would carry its touched pages (resident memory, fork time).
    let payload = vec![1u8; BIG];
    sink.send_ms(&payload)?;
    let args: Vec<Vec<f64>> = (0..TASKS).map(|i| vec![i as f64; 100]).collect();
    // Warm up: the scheduler learns the task is tiny, pages are touched.
    pool.map(&sum, args.clone())?;

    let (mut per_task, mut floor_pipelined, mut per_task_ratio) =
        (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..REPS {
        let floor = echo.pipelined_us(FLOOR_PIPELINED)?;
        let a = args.clone();
        let t0 = Instant::now();
        let out = pool.map(&sum, a)?;
        let us = t0.elapsed().as_secs_f64() * 1e6 / TASKS as f64;
        assert_eq!(out[1], 100.0);
        per_task.push(us);
        floor_pipelined.push(floor);
        per_task_ratio.push(us / floor);
    }

    let (mut roundtrip, mut floor_roundtrip, mut roundtrip_ratio) =
        (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..REPS {
        let floor = echo.roundtrip_us(FLOOR_ROUNDTRIPS)?;
        let t0 = Instant::now();
        for a in &args {
            pool.map(&sum, [a.clone()])?;
        }
        let us = t0.elapsed().as_secs_f64() * 1e6 / TASKS as f64;
        roundtrip.push(us);
        floor_roundtrip.push(floor);
        roundtrip_ratio.push(us / floor);
    }

    let big = pool.add_module("big", Big { data: Vec::new() })?;
    // Warm up as for the maps: the first broadcasts also pay for first-touch memory
    // on both sides.
    for rep in 0..3 {
        big.lock().data = (0..1_000_000).map(|i| (i + 100 + rep) as f64).collect();
        pool.synchronize()?;
    }
    let (mut sync_ms, mut floor_send, mut sync_ratio) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..REPS {
        let floor = sink.send_ms(&payload)?;
        let data: Vec<f64> = (0..1_000_000).map(|i| (i + rep) as f64).collect();
        let t0 = Instant::now();
        big.lock().data = data;
        let report = pool.synchronize()?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        assert_eq!(report.attributes, 1);
        sync_ms.push(ms);
        floor_send.push(floor);
        sync_ratio.push(ms / floor);
    }
    let lens = pool.broadcast(&len, &big.link())?;
    assert!(lens.iter().all(|&l| l == 1_000_000));
    let rss: Vec<f64> = pool
        .worker_pids()
        .iter()
        .map(|&p| (rss_mb(p) * 10.0).round() / 10.0)
        .collect();
    // In reverse order of forking: the later child holds a copy of the earlier
    // one's socket, which must close before the earlier child sees the end.
    sink.stop()?;
    echo.stop()?;

    let sync_median = median(sync_ms);
    println!(
        "{{\"transport\":\"{transport}\",\"workers\":{},\"start_ms\":{:.3},\"per_task_us\":{:.2},\"floor_pipelined_us\":{:.2},\"per_task_vs_floor\":{:.2},\"roundtrip_us\":{:.2},\"floor_roundtrip_us\":{:.2},\"roundtrip_vs_floor\":{:.2},\"sync_8mb_ms\":{:.3},\"floor_send_8mb_ms\":{:.3},\"sync_8mb_vs_floor\":{:.2},\"mpi_bcast_8mb_ms\":{},\"sync_8mb_vs_mpi_bcast\":{},\"worker_rss_mb\":{:?}}}",
        workers,
        median(start_ms),
        median(per_task),
        median(floor_pipelined),
        median(per_task_ratio),
        median(roundtrip),
        median(floor_roundtrip),
        median(roundtrip_ratio),
        sync_median,
        median(floor_send),
        median(sync_ratio),
        json_or_null(mpi_bcast_ms, 3),
        json_or_null(mpi_bcast_ms.map(|b| sync_median / b), 2),
        rss
    );
    drop(pool);
    #[cfg(feature = "mpi")]
    drop(mpi_session);
    Ok(())
}
