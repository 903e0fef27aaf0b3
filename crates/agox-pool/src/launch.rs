//! Creating worker processes: the fork server, and exec'd worker commands.
//!
//! ## Why a fork server
//! Forking a multithreaded process copies only the calling thread; any lock another
//! thread held at that instant stays locked forever in the child. The driver may be
//! multithreaded (the test harness is), so the pool forks it exactly **once**, at
//! start, into a *fork server*. That child does only simple, lock-free work: it closes
//! every descriptor it does not own, then waits for requests. Every worker — the
//! first ones and every replacement — is forked from this quiet single-threaded
//! process, never again from the busy driver, so replacements later in a run cannot
//! inherit a lock held by one of the driver's threads.
//! glibc's `fork` resets its allocator locks in the child, so workers may allocate;
//! workers never touch the driver's standard-output locks (a task's panic is
//! recorded by a hook and sent back as data).
//!
//! ## Lifetimes
//! Workers set a parent-death signal (SIGKILL) tied to the single-threaded fork
//! server. The fork server's request socket reaches end-of-stream when the driver
//! exits or is killed; it then kills and reaps every worker, removes the socket
//! directory and exits. Dropping the pool asks it to do the same and reaps it.

use crate::registry::Registry;
use crate::transport;
use crate::worker::{self, WorkerIdentity};
use agox_wire::{read_frame, write_frame, ForkReply, ForkRequest};
use nix::sys::signal::{kill, signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Environment every worker gets: numerical libraries single-threaded, since the
/// pool already uses one process per core.
pub(crate) const WORKER_ENV: [(&str, &str); 4] = [
    ("OMP_NUM_THREADS", "1"),
    ("OPENBLAS_NUM_THREADS", "1"),
    ("MKL_NUM_THREADS", "1"),
    ("RAYON_NUM_THREADS", "1"),
];

/// What a launched worker needs to find and greet its coordinator.
#[derive(Clone)]
pub(crate) struct LaunchInfo {
    pub address: String,
    pub token: String,
    pub max_frame: usize,
    pub socket_dir: PathBuf,
}

pub(crate) enum Launcher {
    Fork(ForkServer),
    Exec(ExecLauncher),
}

impl Launcher {
    /// Starts one worker for `worker_id`; returns its pid.
    pub fn spawn(&mut self, worker_id: u32) -> io::Result<u32> {
        match self {
            Launcher::Fork(f) => f.spawn(worker_id),
            Launcher::Exec(e) => e.spawn(worker_id),
        }
    }

    /// Kills a worker (SIGKILL).
    pub fn kill(&mut self, pid: u32) {
        match self {
            Launcher::Fork(f) => f.kill(pid),
            Launcher::Exec(e) => e.kill(pid),
        }
    }

    /// Kills and reaps every worker.
    pub fn shutdown(&mut self, grace: Duration) {
        match self {
            Launcher::Fork(f) => f.shutdown(grace),
            Launcher::Exec(e) => e.shutdown(grace),
        }
    }
}

/// The single-threaded process that forks workers.
pub(crate) struct ForkServer {
    pid: Pid,
    sock: UnixStream,
    stopped: bool,
}

/// Writes a line to standard error without Rust's stderr lock (which another
/// driver thread may have held at fork time).
fn raw_eprint(msg: &str) {
    let line = format!("agox worker: {msg}\n");
    // SAFETY: writing a valid buffer to fd 2.
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
    }
}

/// Closes every descriptor from 3 up except `keep`.
fn close_other_fds(keep: i32) {
    // SAFETY: close_range only closes descriptors; nothing else in this freshly
    // forked, single-threaded child uses the ones closed.
    unsafe {
        if keep > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (keep - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32);
    }
}

impl ForkServer {
    /// Forks the fork server. Call before the pool creates anything that must not
    /// be duplicated into workers.
    pub fn start(registry: Arc<Registry>, info: LaunchInfo) -> io::Result<Self> {
        worker::install_panic_hook();
        // The workers' environment, built here: the child must not call `setenv`,
        // whose lock another driver thread may hold at the instant of the fork.
        let env = WorkerEnviron::new();
        let (parent_end, child_end) = UnixStream::pair()?;
        // SAFETY: the child only runs `fork_server_main`, which uses no lock another
        // thread of the driver could hold except the allocator, which glibc resets.
        match unsafe { fork() }.map_err(io::Error::from)? {
            ForkResult::Parent { child } => {
                drop(child_end);
                Ok(ForkServer {
                    pid: child,
                    sock: parent_end,
                    stopped: false,
                })
            }
            ForkResult::Child => {
                let keep = child_end.as_raw_fd();
                std::mem::forget(parent_end);
                close_other_fds(keep);
                env.install();
                let code = fork_server_main(child_end, &registry, &info);
                // SAFETY: leave without running the driver's atexit handlers or
                // destructors, which belong to the driver's process.
                unsafe { libc::_exit(code) }
            }
        }
    }

    fn request(&mut self, req: &ForkRequest) -> io::Result<()> {
        write_frame(&mut self.sock, req).map_err(io::Error::other)
    }

    fn spawn(&mut self, worker_id: u32) -> io::Result<u32> {
        self.request(&ForkRequest::Spawn { worker_id })?;
        match read_frame::<ForkReply, _>(&mut self.sock, 1 << 20) {
            Ok(ForkReply::Spawned { pid, .. }) => Ok(pid),
            Ok(ForkReply::SpawnFailed { message, .. }) => Err(io::Error::other(message)),
            Ok(other) => Err(io::Error::other(format!("fork server answered {other:?}"))),
            Err(e) => Err(io::Error::other(format!("fork server gone: {e}"))),
        }
    }

    fn kill(&mut self, pid: u32) {
        let _ = self.request(&ForkRequest::Kill { pid });
    }

    fn shutdown(&mut self, grace: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let _ = self.sock.set_read_timeout(Some(grace));
        let polite = self.request(&ForkRequest::Shutdown).is_ok()
            && matches!(
                read_frame::<ForkReply, _>(&mut self.sock, 1 << 20),
                Ok(ForkReply::Stopped)
            );
        if !polite {
            // Its workers follow it through their parent-death signal.
            let _ = kill(self.pid, Signal::SIGKILL);
        }
        let _ = waitpid(self.pid, None);
    }
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(5));
    }
}

/// A complete environment block (`KEY=value` strings and the null-terminated
/// pointer array C expects), prepared in the driver so that a forked child can make
/// it its environment by assigning one pointer, without taking any lock.
struct WorkerEnviron {
    _strings: Vec<std::ffi::CString>,
    pointers: Vec<*mut libc::c_char>,
}

extern "C" {
    static mut environ: *mut *mut libc::c_char;
}

impl WorkerEnviron {
    fn new() -> Self {
        use std::os::unix::ffi::OsStrExt;
        let mut strings = Vec::new();
        for (k, v) in std::env::vars_os() {
            if WORKER_ENV.iter().any(|(name, _)| k == *name) {
                continue;
            }
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            if let Ok(c) = std::ffi::CString::new(kv) {
                strings.push(c);
            }
        }
        for (k, v) in WORKER_ENV {
            if let Ok(c) = std::ffi::CString::new(format!("{k}={v}")) {
                strings.push(c);
            }
        }
        let mut pointers: Vec<*mut libc::c_char> =
            strings.iter().map(|c| c.as_ptr().cast_mut()).collect();
        pointers.push(std::ptr::null_mut());
        WorkerEnviron {
            _strings: strings,
            pointers,
        }
    }

    /// Makes this block the process environment. Only for the freshly forked,
    /// single-threaded child; the block must outlive the process (it is leaked).
    fn install(self) {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: the child is single-threaded here, and the strings and pointer
        // array are never freed (ManuallyDrop), so `environ` stays valid.
        unsafe {
            environ = me.pointers.as_ptr().cast_mut();
        }
    }
}

/// The fork server's loop. Returns its exit code.
fn fork_server_main(mut sock: UnixStream, registry: &Registry, info: &LaunchInfo) -> i32 {
    // Ctrl-C goes to the whole foreground process group; the driver decides what
    // happens to a run, so neither the fork server nor its workers die of SIGINT.
    // SAFETY: installing SIG_IGN is always sound.
    unsafe {
        let _ = signal(Signal::SIGINT, SigHandler::SigIgn);
    }
    let me = nix::unistd::getpid();
    let mut children: Vec<Pid> = Vec::new();
    loop {
        reap(&mut children, false);
        let mut fds = [libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 200) };
        if n <= 0 {
            continue;
        }
        let req = match read_frame::<ForkRequest, _>(&mut sock, 1 << 20) {
            Ok(r) => r,
            Err(_) => {
                // The driver is gone: take every worker and the socket files with us.
                stop_children(&mut children);
                let _ = std::fs::remove_file(&info.address);
                let _ = std::fs::remove_dir(&info.socket_dir);
                return 0;
            }
        };
        match req {
            ForkRequest::Spawn { worker_id } => {
                // SAFETY: this process is single-threaded.
                let reply = match unsafe { fork() } {
                    Ok(ForkResult::Child) => {
                        let code = worker_child(&sock, me, worker_id, registry, info);
                        // SAFETY: as in `ForkServer::start`.
                        unsafe { libc::_exit(code) }
                    }
                    Ok(ForkResult::Parent { child }) => {
                        children.push(child);
                        ForkReply::Spawned {
                            worker_id,
                            pid: child.as_raw() as u32,
                        }
                    }
                    Err(e) => ForkReply::SpawnFailed {
                        worker_id,
                        message: format!("fork: {e}"),
                    },
                };
                if write_frame(&mut sock, &reply).is_err() {
                    stop_children(&mut children);
                    return 0;
                }
            }
            ForkRequest::Kill { pid } => {
                let pid = Pid::from_raw(pid as i32);
                if children.contains(&pid) {
                    let _ = kill(pid, Signal::SIGKILL);
                }
            }
            ForkRequest::Shutdown => {
                stop_children(&mut children);
                let _ = write_frame(&mut sock, &ForkReply::Stopped);
                let _ = sock.flush();
                return 0;
            }
        }
    }
}

/// Reaps exited children; with `block`, waits for all of them.
fn reap(children: &mut Vec<Pid>, block: bool) {
    let flags = if block {
        None
    } else {
        Some(WaitPidFlag::WNOHANG)
    };
    children.retain(|&pid| match waitpid(pid, flags) {
        Ok(WaitStatus::StillAlive) => true,
        Ok(_) => false,
        Err(nix::errno::Errno::EINTR) => true,
        Err(_) => false,
    });
}

fn stop_children(children: &mut Vec<Pid>) {
    for &pid in children.iter() {
        let _ = kill(pid, Signal::SIGKILL);
    }
    reap(children, true);
}

/// The freshly forked worker: tie its life to the fork server, connect, serve.
fn worker_child(
    sock: &UnixStream,
    server: Pid,
    worker_id: u32,
    registry: &Registry,
    info: &LaunchInfo,
) -> i32 {
    // SAFETY: closing our copy of the fork server's socket; nothing else uses it here.
    unsafe {
        libc::close(sock.as_raw_fd());
    }
    // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number has no memory effects.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    if nix::unistd::getppid() != server {
        return 1; // the fork server died between fork and prctl
    }
    run_worker(
        worker_id,
        registry,
        info.address.clone(),
        info.token.clone(),
        info.max_frame,
    )
}

/// Connects to `address` and serves; the exit code for the process.
fn run_worker(
    worker_id: u32,
    registry: &Registry,
    address: String,
    token: String,
    max_frame: usize,
) -> i32 {
    let conn = match transport::connect(&address) {
        Ok(c) => c,
        Err(e) => {
            raw_eprint(&format!(
                "worker {worker_id}: cannot connect to {address}: {e}"
            ));
            return 2;
        }
    };
    let id = WorkerIdentity {
        worker_id,
        token,
        max_frame,
    };
    match worker::serve(conn, registry, &id) {
        Ok(worker::Ending::Shutdown) => 0,
        Ok(worker::Ending::Closed) => {
            cleanup_if_orphaned(&address);
            0
        }
        Err(e) => {
            raw_eprint(&e.to_string());
            3
        }
    }
}

/// After the coordinator closed the connection without saying goodbye: if this
/// process is (about to be) orphaned, the coordinator died and nobody else will
/// remove the socket file and its private directory, so do it. The fork server
/// does this for forked workers; this matters for exec'd ones.
fn cleanup_if_orphaned(address: &str) {
    let parent = std::os::unix::process::parent_id();
    let t0 = Instant::now();
    // The kernel reparents children after closing the dead process's descriptors,
    // so the end of stream may arrive first: give it a moment.
    while t0.elapsed() < Duration::from_millis(300) {
        if std::os::unix::process::parent_id() != parent || parent == 1 {
            remove_socket(Path::new(address));
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Removes the socket file and, if it is one of ours, its directory.
fn remove_socket(path: &Path) {
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent() {
        let ours = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("agox-"));
        if ours {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Entry point for an exec'd worker (`PROGRAM worker --connect ADDRESS --id N`).
///
/// Reads the pool token from the first line of standard input (or, for other
/// launchers, from the `AGOX_POOL_TOKEN` environment variable), connects and serves
/// until the coordinator says stop or goes away. Returns the process exit code.
pub fn worker_main(registry: &Registry, address: &str, worker_id: u32, max_frame: usize) -> i32 {
    let token = match std::env::var("AGOX_POOL_TOKEN") {
        Ok(t) if !t.is_empty() => t,
        _ => {
            let mut line = String::new();
            if let Err(e) = io::stdin().read_line(&mut line) {
                eprintln!("agox worker: cannot read the pool token from standard input: {e}");
                return 2;
            }
            line.trim().to_string()
        }
    };
    // A fresh process: setting the environment and the hook here is safe.
    for (k, v) in WORKER_ENV {
        std::env::set_var(k, v);
    }
    worker::install_panic_hook();
    // Ctrl-C reaches the whole process group; the coordinator decides what a run
    // does about it, so workers do not die of it.
    // SAFETY: installing SIG_IGN is always sound.
    unsafe {
        let _ = signal(Signal::SIGINT, SigHandler::SigIgn);
    }
    start_watchdog(address);
    run_worker(worker_id, registry, address.to_string(), token, max_frame)
}

/// An exec'd worker has no fork server watching it: a thread checks every 250 ms
/// that the process that started it is still its parent and that the socket still
/// exists, and ends the worker (even in the middle of a long task) when either is
/// gone. An orphaned worker also removes the socket file and its private directory,
/// which the killed coordinator could not.
fn start_watchdog(address: &str) {
    let path = PathBuf::from(address);
    let parent = std::os::unix::process::parent_id();
    let _ = std::thread::Builder::new()
        .name("agox-watchdog".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(250));
            let orphaned = std::os::unix::process::parent_id() != parent;
            if orphaned {
                remove_socket(&path);
            }
            if orphaned || !path.exists() {
                // SAFETY: immediate exit of this worker process.
                unsafe { libc::_exit(4) }
            }
        });
}

/// Starts workers by executing a command.
pub(crate) struct ExecLauncher {
    program: PathBuf,
    args: Vec<String>,
    info: LaunchInfo,
    children: Vec<Child>,
}

impl ExecLauncher {
    pub fn new(program: PathBuf, args: Vec<String>, info: LaunchInfo) -> Self {
        ExecLauncher {
            program,
            args,
            info,
            children: Vec::new(),
        }
    }

    fn spawn(&mut self, worker_id: u32) -> io::Result<u32> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .arg("worker")
            .arg("--connect")
            .arg(&self.info.address)
            .arg("--id")
            .arg(worker_id.to_string())
            .env_remove("AGOX_POOL_TOKEN")
            .stdin(Stdio::piped());
        for (k, v) in WORKER_ENV {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot execute {}: {e}", self.program.display()),
            )
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            writeln!(stdin, "{}", self.info.token)?;
        }
        let pid = child.id();
        self.children.push(child);
        self.reap();
        Ok(pid)
    }

    fn reap(&mut self) {
        self.children
            .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_)) | Err(_)));
    }

    fn kill(&mut self, pid: u32) {
        if let Some(c) = self.children.iter_mut().find(|c| c.id() == pid) {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.reap();
    }

    fn shutdown(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            self.reap();
            if self.children.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for ExecLauncher {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(2));
    }
}
