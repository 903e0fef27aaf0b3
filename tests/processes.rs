//! Process-level behaviour that needs a `main` of its own: this binary is also the
//! exec'd worker (`… worker --connect ADDRESS --id N`) and a driver that a test kills.
//!
//! Run with `cargo test --test processes`. Prints one line per check and a closing
//! `N passed, M failed` line.

use agox::pool::{
    dynamic_attributes, worker_main, Launcher, Link, Module, Pool, PoolConfig, Registry,
    TaskContext, TaskError, TransportConfig,
};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Serialize, Deserialize, Default)]
struct Counter {
    value: u64,
}

impl Module for Counter {
    const TYPE_NAME: &'static str = "Counter";
}

/// A module with a large dynamic attribute.
#[derive(Serialize, Deserialize, Default)]
struct Weights {
    values: Vec<f64>,
}

impl Module for Weights {
    const TYPE_NAME: &'static str = "Weights";
    dynamic_attributes!(values);
}

fn registry(extra: bool) -> Registry {
    let mut r = Registry::new();
    r.module::<Counter>().module::<Weights>();
    r.function("weights_sum", |ctx: &TaskContext, w: Link<Weights>| {
        Ok::<_, TaskError>(ctx.module(&w)?.values.iter().sum::<f64>())
    });
    r.function("square", |_: &TaskContext, x: u64| {
        Ok::<_, TaskError>(x * x)
    });
    r.function("incr", |ctx: &TaskContext, c: Link<Counter>| {
        let mut c = ctx.module(&c)?;
        c.value += 1;
        Ok::<_, TaskError>(c.value)
    });
    r.function("pid", |_: &TaskContext, ()| {
        Ok::<_, TaskError>(std::process::id())
    });
    r.function("sleep", |_: &TaskContext, ms: u64| {
        std::thread::sleep(Duration::from_millis(ms));
        Ok::<_, TaskError>(ms)
    });
    r.function("bytes", |_: &TaskContext, n: usize| {
        Ok::<_, TaskError>(serde_bytes::ByteBuf::from(vec![7u8; n]))
    });
    r.function("data_limit", |_: &TaskContext, ()| {
        let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_DATA)
            .map_err(|e| TaskError::from(e.to_string()))?;
        Ok::<_, TaskError>(soft)
    });
    if extra {
        r.function("extra", |_: &TaskContext, ()| Ok::<_, TaskError>(()));
    }
    r
}

#[path = "support/proc.rs"]
mod proc;
use proc::{eventually, process_alive as alive};

fn exe() -> PathBuf {
    std::env::current_exe().expect("own executable")
}

/// Workers started by executing this binary get the same registry and serve.
fn exec_workers_serve() -> Result<(), String> {
    let cfg = PoolConfig {
        launcher: Launcher::Command {
            program: exe(),
            args: vec![],
        },
        ..PoolConfig::with_workers(2)
    };
    let pool = Pool::start(registry(false), cfg).map_err(|e| e.to_string())?;
    let square = agox::pool::FnHandle::<u64, u64>::new("square");
    let out = pool.map(&square, 0..20u64).map_err(|e| e.to_string())?;
    if out != (0..20u64).map(|x| x * x).collect::<Vec<_>>() {
        return Err(format!("wrong results {out:?}"));
    }
    let pids = pool.worker_pids();
    // The token travels on stdin, never on the command line.
    for pid in &pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).map_err(|e| e.to_string())?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !cmdline.contains("worker --connect") {
            return Err(format!("unexpected worker command line: {cmdline}"));
        }
        if cmdline.contains("token") {
            return Err(format!("token visible on the command line: {cmdline}"));
        }
    }
    let dir = PathBuf::from(pool.address().unwrap_or_default())
        .parent()
        .map(Path::to_path_buf);
    drop(pool);
    for pid in pids {
        if !eventually(Duration::from_secs(3), || !alive(pid)) {
            return Err(format!("exec'd worker {pid} outlived the pool"));
        }
    }
    if dir.is_some_and(|d| d.exists()) {
        return Err("socket directory left behind".into());
    }
    Ok(())
}

/// Workers executed by the pool connect over TCP on the loopback; every value,
/// a large attribute too, travels through the socket.
fn tcp_exec_workers_serve() -> Result<(), String> {
    let cfg = PoolConfig {
        launcher: Launcher::Command {
            program: exe(),
            args: vec![],
        },
        ..PoolConfig::with_workers(2).transport(TransportConfig::Tcp {
            listen: "127.0.0.1:0".into(),
        })
    };
    let pool = Pool::start(registry(false), cfg).map_err(|e| e.to_string())?;
    let address = pool.address().unwrap_or_default();
    if !address.starts_with("tcp://127.0.0.1:") || address.ends_with(":0") {
        return Err(format!("address {address}"));
    }
    check_squares_and_weights(&pool)?;
    let pids = pool.worker_pids();
    drop(pool);
    for pid in pids {
        if !eventually(Duration::from_secs(3), || !alive(pid)) {
            return Err(format!("tcp worker {pid} outlived the pool"));
        }
    }
    Ok(())
}

/// Maps squares, then pushes an 8 MB attribute and reads it back on every worker.
fn check_squares_and_weights(pool: &Pool) -> Result<(), String> {
    let square = agox::pool::FnHandle::<u64, u64>::new("square");
    let out = pool.map(&square, 0..50u64).map_err(|e| e.to_string())?;
    if out != (0..50u64).map(|x| x * x).collect::<Vec<_>>() {
        return Err(format!("wrong results {out:?}"));
    }
    let w = pool
        .add_module("weights", Weights::default())
        .map_err(|e| e.to_string())?;
    w.lock().values = (0..1_000_000).map(|i| (i % 7) as f64).collect();
    let report = pool.synchronize().map_err(|e| e.to_string())?;
    if report.bytes < 2 * 8_000_000 {
        return Err(format!("{report}"));
    }
    let want: f64 = w.lock().values.iter().sum();
    let sum = agox::pool::FnHandle::<Link<Weights>, f64>::new("weights_sum");
    let seen = pool.broadcast(&sum, &w.link()).map_err(|e| e.to_string())?;
    if seen.len() != pool.size() || seen.iter().any(|&s| s != want) {
        return Err(format!("workers see {seen:?}, expected {want}"));
    }
    Ok(())
}

/// Workers started by someone else (as `srun` or `ssh` would) connect to the
/// pool's TCP address with the token in `AGOX_POOL_TOKEN`, even before it
/// listens; a connection with another token is refused and the pool serves on.
fn tcp_external_workers_connect_with_the_token() -> Result<(), String> {
    let token = "0123456789abcdef0123456789abcdef".to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let address = format!("tcp://127.0.0.1:{port}");
    // Started first: they wait for the coordinator to listen.
    let mut workers = Vec::new();
    for id in 0..2 {
        let child = Command::new(exe())
            .args(["worker", "--connect", &address, "--id", &id.to_string()])
            .env("AGOX_POOL_TOKEN", &token)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        workers.push(child);
    }
    std::thread::sleep(Duration::from_millis(100));
    let cfg = PoolConfig {
        launcher: Launcher::External,
        token: Some(token),
        ..PoolConfig::with_workers(2).transport(TransportConfig::Tcp {
            listen: format!("127.0.0.1:{port}"),
        })
    };
    let pool = Pool::start(registry(false), cfg).map_err(|e| e.to_string())?;
    let pids: Vec<u32> = workers.iter().map(|c| c.id()).collect();
    if pool.worker_pids() != pids {
        return Err(format!(
            "pool workers {:?}, started {pids:?}",
            pool.worker_pids()
        ));
    }
    // A stranger with the wrong token.
    let mut stranger =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let hello = agox::wire::FromWorker::Hello(agox::wire::Hello {
        protocol: agox::wire::PROTOCOL_VERSION,
        worker_id: 0,
        pid: 1,
        fingerprint: registry(false).fingerprint(),
        token: "f".repeat(32),
    });
    agox::wire::write_frame(&mut stranger, &hello).map_err(|e| e.to_string())?;
    check_squares_and_weights(&pool)?;
    let refused = pool.stats().recent_refusals;
    if !refused.iter().any(|r| r.contains("wrong pool token")) {
        return Err(format!("the stranger was not refused: {refused:?}"));
    }
    drop(pool);
    for mut w in workers {
        let status = w.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("an external worker ended with {status}"));
        }
    }
    Ok(())
}

/// An external TCP worker lost in the middle of a run: a new worker that connects
/// with the lost one's slot number and the token takes its place and gets the
/// pool's state (every worker then sees the same attribute); a slot that nobody
/// takes within `connect_timeout` breaks the pool, which says so on that call and
/// on every later one.
fn tcp_external_worker_lost_is_taken_over_or_breaks_the_pool() -> Result<(), String> {
    let token = "fedcba9876543210fedcba9876543210".to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let address = format!("tcp://127.0.0.1:{port}");
    let spawn = |id: usize| {
        Command::new(exe())
            .args(["worker", "--connect", &address, "--id", &id.to_string()])
            .env("AGOX_POOL_TOKEN", &token)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())
    };
    let mut workers = vec![spawn(0)?, spawn(1)?];
    let mut cfg = PoolConfig {
        launcher: Launcher::External,
        token: Some(token.clone()),
        ..PoolConfig::with_workers(2).transport(TransportConfig::Tcp {
            listen: format!("127.0.0.1:{port}"),
        })
    };
    cfg.connect_timeout = Duration::from_secs(3);
    let pool = Pool::start(registry(false), cfg).map_err(|e| e.to_string())?;
    let w = pool
        .add_module("weights", Weights::default())
        .map_err(|e| e.to_string())?;
    w.lock().values = (0..100_000).map(|i| (i % 5) as f64).collect();
    pool.synchronize().map_err(|e| e.to_string())?;
    let want: f64 = w.lock().values.iter().sum();
    let square = agox::pool::FnHandle::<u64, u64>::new("square");
    let sum = agox::pool::FnHandle::<Link<Weights>, f64>::new("weights_sum");

    // Worker 1 is lost; its successor takes slot 1.
    workers[1].kill().map_err(|e| e.to_string())?;
    workers[1].wait().map_err(|e| e.to_string())?;
    workers.push(spawn(1)?);
    let out = pool.map(&square, 0..200u64).map_err(|e| e.to_string())?;
    if out != (0..200u64).map(|x| x * x).collect::<Vec<_>>() {
        return Err(format!("wrong results after the loss: {out:?}"));
    }
    let seen = pool.broadcast(&sum, &w.link()).map_err(|e| e.to_string())?;
    if seen != vec![want; 2] {
        return Err(format!(
            "after the takeover workers see {seen:?}, expected {want}"
        ));
    }
    if pool.stats().workers_lost < 1 {
        return Err("the loss was not counted".into());
    }

    // Worker 0 is lost and nobody takes its slot: the pool breaks.
    workers[0].kill().map_err(|e| e.to_string())?;
    workers[0].wait().map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let error = loop {
        match pool.map(&square, 0..200u64) {
            Err(e) => break e,
            Ok(_) if t0.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Ok(_) => return Err("the pool kept serving with a slot nobody took".into()),
        }
    };
    if !error.is_broken() {
        return Err(format!("expected a broken pool, got: {error}"));
    }
    match pool.map(&square, 0..2u64) {
        Err(e) if e.is_broken() => {}
        other => return Err(format!("a broken pool answered {other:?}")),
    }
    drop(pool);
    for mut w in workers.into_iter().skip(2) {
        let _ = w.kill();
        w.wait().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A worker built with a different registry is refused, naming both fingerprints.
fn registry_mismatch_is_refused() -> Result<(), String> {
    let mut cfg = PoolConfig {
        launcher: Launcher::Command {
            program: exe(),
            args: vec!["--extra-registry".into()],
        },
        ..PoolConfig::with_workers(1)
    };
    cfg.connect_timeout = Duration::from_secs(3);
    match Pool::start(registry(false), cfg) {
        Ok(_) => Err("a worker with another registry was accepted".into()),
        Err(e) => {
            let text = e.to_string();
            let ours = format!("{:016x}", registry(false).fingerprint());
            let theirs = format!("{:016x}", registry(true).fingerprint());
            if text.contains("registry mismatch") && text.contains(&ours) && text.contains(&theirs)
            {
                Ok(())
            } else {
                Err(format!("unexpected error: {text}"))
            }
        }
    }
}

/// A peer running as another user is refused by its credentials, before anything it
/// says is read. The socket directory is 0700, so such a peer cannot normally reach
/// the socket at all; as root, the test opens the directory up to let one try.
fn peer_of_another_user_is_refused() -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        println!("    (not root: cannot run a peer as another user; check skipped)");
        return Ok(());
    }
    // Under /tmp, which every user may traverse ($XDG_RUNTIME_DIR may not be).
    let cfg = PoolConfig {
        socket_base: Some(std::env::temp_dir()),
        ..PoolConfig::with_workers(1)
    };
    let pool = Pool::start(registry(false), cfg).map_err(|e| e.to_string())?;
    let address = PathBuf::from(pool.address().ok_or("no address")?);
    let dir = address.parent().ok_or("no socket directory")?;
    let open = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    open(dir, 0o755).map_err(|e| e.to_string())?;
    open(&address, 0o777).map_err(|e| e.to_string())?;
    // SAFETY: this test binary's main thread is its only thread here; the child
    // only drops privileges, connects, reads and exits.
    let child = match unsafe { nix::unistd::fork() }.map_err(|e| e.to_string())? {
        nix::unistd::ForkResult::Child => {
            let code = (|| -> Result<i32, String> {
                nix::unistd::setgid(nix::unistd::Gid::from_raw(65534))
                    .map_err(|e| e.to_string())?;
                nix::unistd::setuid(nix::unistd::Uid::from_raw(65534))
                    .map_err(|e| e.to_string())?;
                let mut s =
                    std::os::unix::net::UnixStream::connect(&address).map_err(|e| e.to_string())?;
                match agox::wire::read_frame::<agox::wire::ToWorker, _>(&mut s, 1 << 20) {
                    Ok(agox::wire::ToWorker::Refused { reason })
                        if reason.contains("peer uid 65534") =>
                    {
                        Ok(0)
                    }
                    other => Err(format!("unexpected answer {other:?}")),
                }
            })();
            match code {
                Ok(c) => std::process::exit(c),
                Err(e) => {
                    eprintln!("peer: {e}");
                    std::process::exit(1)
                }
            }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    let sleep = agox::pool::FnHandle::<u64, u64>::new("sleep");
    let t0 = Instant::now();
    let status = loop {
        // The pool answers strangers while it is busy with a call.
        pool.map(&sleep, [5u64]).map_err(|e| e.to_string())?;
        match nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(nix::sys::wait::WaitStatus::StillAlive)
                if t0.elapsed() < Duration::from_secs(10) => {}
            Ok(nix::sys::wait::WaitStatus::StillAlive) => return Err("peer did not finish".into()),
            Ok(status) => break status,
            Err(e) => return Err(e.to_string()),
        }
    };
    if status != nix::sys::wait::WaitStatus::Exited(child, 0) {
        return Err(format!(
            "peer of another user was not refused by uid: {status:?}"
        ));
    }
    if !pool
        .refusals()
        .iter()
        .any(|r| r.contains("peer uid 65534 is not the coordinator's uid 0"))
    {
        return Err(format!("refusal not recorded: {:?}", pool.refusals()));
    }
    Ok(())
}

/// Exec'd workers get the memory limit too (set between fork and exec).
fn exec_workers_get_the_memory_limit() -> Result<(), String> {
    let cfg = PoolConfig {
        launcher: Launcher::Command {
            program: exe(),
            args: vec![],
        },
        worker_memory_mb: Some(768),
        ..PoolConfig::with_workers(2)
    };
    let pool = Pool::start(registry(false), cfg).map_err(|e| e.to_string())?;
    let limit = agox::pool::FnHandle::<(), u64>::new("data_limit");
    let limits = pool.broadcast(&limit, &()).map_err(|e| e.to_string())?;
    if limits != vec![768 << 20; 2] {
        return Err(format!("workers' RLIMIT_DATA: {limits:?}"));
    }
    Ok(())
}

/// The driver process is SIGKILLed: its workers exit and the socket directory goes.
fn killed_driver_leaves_nothing(mode: &str) -> Result<(), String> {
    let mut child = Command::new(exe())
        .arg("driver")
        .arg(mode)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let mut parts = line.split_whitespace();
    let socket = PathBuf::from(parts.next().ok_or("driver printed nothing")?);
    let pids: Vec<u32> = parts.filter_map(|p| p.parse().ok()).collect();
    if pids.len() != 2 || pids.iter().any(|p| !alive(*p)) {
        return Err(format!("driver reported {line:?}"));
    }
    if mode.ends_with("busy") {
        // Workers are in the middle of writing answers when the driver dies.
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().map_err(|e| e.to_string())?; // SIGKILL
    child.wait().map_err(|e| e.to_string())?;
    for pid in &pids {
        if !eventually(Duration::from_secs(3), || !alive(*pid)) {
            return Err(format!("worker {pid} outlived its killed driver ({mode})"));
        }
    }
    let dir = socket.parent().map(Path::to_path_buf).unwrap_or_default();
    if !eventually(Duration::from_secs(3), || !dir.exists()) {
        return Err(format!(
            "socket directory {} left behind ({mode})",
            dir.display()
        ));
    }
    Ok(())
}

/// Child mode: start a pool, report, then run a long task until killed (or, in a
/// `busy` mode, stream tasks with large answers until killed).
fn driver(mode: &str) -> ! {
    let mut cfg = PoolConfig::with_workers(2);
    if mode.starts_with("exec") {
        cfg.launcher = Launcher::Command {
            program: exe(),
            args: vec![],
        };
    }
    let pool = match Pool::start(registry(false), cfg) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("driver: {e}");
            std::process::exit(2)
        }
    };
    let pids: Vec<String> = pool.worker_pids().iter().map(|p| p.to_string()).collect();
    println!("{} {}", pool.address().unwrap_or_default(), pids.join(" "));
    if mode.ends_with("busy") {
        let bytes = agox::pool::FnHandle::<usize, serde_bytes::ByteBuf>::new("bytes");
        loop {
            let _ = pool.map(&bytes, vec![256 << 10; 64]);
        }
    }
    let sleep = agox::pool::FnHandle::<u64, u64>::new("sleep");
    // Workers are busy in a long task when the driver dies.
    let _ = pool.map(&sleep, [60_000u64, 60_000]);
    std::process::exit(0)
}

/// One named check: `Ok` or why it failed.
type Check = fn() -> Result<(), String>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Exec'd worker: `[--extra-registry] worker --connect ADDRESS --id N`.
    if let Some(i) = args.iter().position(|a| a == "worker") {
        let extra = args.iter().any(|a| a == "--extra-registry");
        let get = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|j| args.get(j + 1))
                .cloned()
        };
        let (Some(address), Some(id)) =
            (get("--connect"), get("--id").and_then(|s| s.parse().ok()))
        else {
            eprintln!(
                "usage: {} worker --connect ADDRESS --id N (got {:?})",
                args[0],
                &args[i..]
            );
            std::process::exit(2)
        };
        std::process::exit(worker_main(
            &registry(extra),
            &address,
            id,
            agox::wire::DEFAULT_MAX_FRAME,
        ));
    }
    if args.get(1).map(String::as_str) == Some("driver") {
        driver(args.get(2).map(String::as_str).unwrap_or("fork"));
    }
    let checks: Vec<(&str, Check)> = vec![
        ("exec_workers_serve", exec_workers_serve),
        ("registry_mismatch_is_refused", registry_mismatch_is_refused),
        ("tcp_exec_workers_serve", tcp_exec_workers_serve),
        (
            "tcp_external_workers_connect_with_the_token",
            tcp_external_workers_connect_with_the_token,
        ),
        (
            "tcp_external_worker_lost_is_taken_over_or_breaks_the_pool",
            tcp_external_worker_lost_is_taken_over_or_breaks_the_pool,
        ),
        (
            "peer_of_another_user_is_refused",
            peer_of_another_user_is_refused,
        ),
        ("killed_driver_leaves_nothing (fork)", || {
            killed_driver_leaves_nothing("fork")
        }),
        ("killed_driver_leaves_nothing (exec)", || {
            killed_driver_leaves_nothing("exec")
        }),
        // Workers that are answering when the driver dies leave through a failed
        // write or read, not an orderly end of stream: they clean up all the same.
        ("killed_busy_driver_leaves_nothing (exec), 5 runs", || {
            (0..5).try_for_each(|_| killed_driver_leaves_nothing("exec-busy"))
        }),
        ("killed_busy_driver_leaves_nothing (fork)", || {
            killed_driver_leaves_nothing("fork-busy")
        }),
        (
            "exec_workers_get_the_memory_limit",
            exec_workers_get_the_memory_limit,
        ),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, check) in checks {
        match check() {
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
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
