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
//!
//! ## Exits, at once
//! The coordinator learns that a worker ended as soon as its parent does: the fork
//! server waits for SIGCHLD on a `signalfd` and reports each reaped child
//! (`ForkReply::Exited`, with its status); for exec'd workers the coordinator is the
//! parent and polls a `pidfd` per child. A replacement that dies before greeting is
//! therefore noticed in microseconds, not after the connect timeout.

use crate::events::WorkerExit;
use crate::registry::Registry;
use crate::transport;
use crate::worker::{self, WorkerIdentity};
use agox_wire::{
    decode, encode_frame, read_frame, write_frame, ForkReply, ForkRequest, FrameReader,
};
use nix::sys::signal::{kill, signal, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
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
    /// `RLIMIT_DATA` for every worker (bytes).
    pub memory_limit: Option<u64>,
}

/// Why a worker could not be launched.
#[derive(Debug)]
pub(crate) enum SpawnError {
    /// The launcher itself is gone (the fork server died): no worker can be
    /// launched any more.
    Gone(String),
    /// This launch failed (fork or exec refused); another may succeed.
    Failed(String),
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::Gone(m) | SpawnError::Failed(m) => f.write_str(m),
        }
    }
}

pub(crate) enum Launcher {
    Fork(ForkServer),
    Exec(ExecLauncher),
}

impl Launcher {
    /// Starts one worker for `worker_id`; returns its pid.
    pub fn spawn(&mut self, worker_id: u32) -> Result<u32, SpawnError> {
        match self {
            Launcher::Fork(f) => f.spawn(worker_id),
            Launcher::Exec(e) => e
                .spawn(worker_id)
                .map_err(|e| SpawnError::Failed(e.to_string())),
        }
    }

    /// Kills a worker (SIGKILL). Its exit is reported like any other.
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

    /// Calls `f` with each descriptor that becomes readable when a worker exits
    /// (or the launcher goes). No allocation: this runs every turn of the loop.
    pub fn each_poll_fd(&self, mut f: impl FnMut(RawFd)) {
        match self {
            Launcher::Fork(server) => f(server.sock.as_raw_fd()),
            Launcher::Exec(e) => e
                .children
                .iter()
                .filter_map(|c| c.pidfd.as_ref().map(AsRawFd::as_raw_fd))
                .for_each(f),
        }
    }

    /// True when exits can only be found by asking (no pidfd): the event loop then
    /// wakes up often while a worker is starting.
    pub fn needs_polling(&self) -> bool {
        match self {
            Launcher::Fork(_) => false,
            Launcher::Exec(e) => e.children.iter().any(|c| c.pidfd.is_none()),
        }
    }

    /// Gathers the exits that happened since the last call, without waiting.
    pub fn collect(&mut self) {
        match self {
            Launcher::Fork(f) => f.pump(),
            Launcher::Exec(e) => e.collect(),
        }
    }

    /// Whether exits were gathered and not taken yet.
    pub fn has_exits(&self) -> bool {
        match self {
            Launcher::Fork(f) => !f.exits.is_empty(),
            Launcher::Exec(e) => !e.exits.is_empty(),
        }
    }

    /// Exits gathered so far, oldest first.
    pub fn take_exits(&mut self) -> Vec<(u32, WorkerExit)> {
        let exits = match self {
            Launcher::Fork(f) => &mut f.exits,
            Launcher::Exec(e) => &mut e.exits,
        };
        exits.drain(..).collect()
    }

    /// Waits up to `timeout` for worker `pid` to be reported ended, and takes its exit.
    pub fn wait_exit(&mut self, pid: u32, timeout: Duration) -> Option<WorkerExit> {
        let deadline = Instant::now() + timeout;
        loop {
            self.collect();
            let exits = match self {
                Launcher::Fork(f) => &mut f.exits,
                Launcher::Exec(e) => &mut e.exits,
            };
            if let Some(i) = exits.iter().position(|(p, _)| *p == pid) {
                return exits.remove(i).map(|(_, e)| e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.gone().is_some() {
                return None;
            }
            let mut fds = Vec::new();
            self.each_poll_fd(|fd| fds.push(fd));
            let wait = if self.needs_polling() {
                left.min(Duration::from_millis(1))
            } else {
                left
            };
            poll_readable(&fds, wait);
        }
    }

    /// Why the launcher can launch no more workers, once that is so.
    pub fn gone(&self) -> Option<&str> {
        match self {
            Launcher::Fork(f) => f.gone.as_deref(),
            Launcher::Exec(_) => None,
        }
    }
}

/// Waits until one of `fds` is readable, or `timeout` passes.
fn poll_readable(fds: &[RawFd], timeout: Duration) {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: a valid array of pollfd of the given length.
    unsafe {
        libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms.max(1));
    }
}

fn exit_of(status: WaitStatus) -> Option<(u32, WorkerExit)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw() as u32, WorkerExit::Code(code))),
        WaitStatus::Signaled(pid, sig, _) => {
            Some((pid.as_raw() as u32, WorkerExit::Signal(sig as i32)))
        }
        _ => None,
    }
}

/// The single-threaded process that forks workers, as the coordinator sees it.
pub(crate) struct ForkServer {
    pid: Pid,
    /// Non-blocking; readable when a reply or an exit report arrives.
    sock: UnixStream,
    reader: FrameReader,
    replies: VecDeque<ForkReply>,
    exits: VecDeque<(u32, WorkerExit)>,
    /// Set once the fork server is found gone, with what was seen.
    gone: Option<String>,
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
                parent_end.set_nonblocking(true)?;
                Ok(ForkServer {
                    pid: child,
                    sock: parent_end,
                    reader: FrameReader::new(1 << 20),
                    replies: VecDeque::new(),
                    exits: VecDeque::new(),
                    gone: None,
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

    /// Writes one request (the socket is non-blocking; requests are tiny).
    fn request(&mut self, req: &ForkRequest) -> io::Result<()> {
        let frame = encode_frame(req).map_err(io::Error::other)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut off = 0;
        while off < frame.len() {
            match (&self.sock).write(&frame[off..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "fork server not reading",
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads whatever the fork server sent, without waiting: replies and exits.
    fn pump(&mut self) {
        if self.gone.is_some() {
            return;
        }
        loop {
            match self.reader.fill_from(&mut self.sock) {
                Ok(0) => {
                    self.gone = Some(format!("the fork server (pid {}) is gone", self.pid));
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.gone = Some(format!(
                        "the fork server (pid {}) is unreachable: {e}",
                        self.pid
                    ));
                    break;
                }
            }
        }
        loop {
            match self.reader.next_frame() {
                Ok(Some(body)) => match decode::<ForkReply>(body) {
                    Ok(ForkReply::Exited { pid, code, signal }) => {
                        let exit = match (code, signal) {
                            (_, Some(s)) => WorkerExit::Signal(s),
                            (Some(c), None) => WorkerExit::Code(c),
                            (None, None) => WorkerExit::Code(-1),
                        };
                        self.exits.push_back((pid, exit));
                    }
                    Ok(reply) => self.replies.push_back(reply),
                    Err(e) => {
                        self.gone = Some(format!("the fork server sent garbage: {e}"));
                        return;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    self.gone = Some(format!("the fork server sent garbage: {e}"));
                    return;
                }
            }
        }
        self.reader.shrink();
    }

    fn spawn(&mut self, worker_id: u32) -> Result<u32, SpawnError> {
        if let Some(g) = &self.gone {
            return Err(SpawnError::Gone(g.clone()));
        }
        if let Err(e) = self.request(&ForkRequest::Spawn { worker_id }) {
            let why = format!(
                "the fork server (pid {}) does not take requests: {e}",
                self.pid
            );
            self.gone = Some(why.clone());
            return Err(SpawnError::Gone(why));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.pump();
            let mine = self.replies.iter().position(|r| {
                matches!(r, ForkReply::Spawned { worker_id: w, .. } | ForkReply::SpawnFailed { worker_id: w, .. } if *w == worker_id)
            });
            if let Some(i) = mine {
                return match self.replies.remove(i) {
                    Some(ForkReply::Spawned { pid, .. }) => Ok(pid),
                    Some(ForkReply::SpawnFailed { message, .. }) => {
                        Err(SpawnError::Failed(message))
                    }
                    other => Err(SpawnError::Failed(format!(
                        "fork server answered {other:?}"
                    ))),
                };
            }
            if let Some(g) = &self.gone {
                return Err(SpawnError::Gone(g.clone()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let why = format!(
                    "the fork server (pid {}) did not answer within 10 s",
                    self.pid
                );
                self.gone = Some(why.clone());
                return Err(SpawnError::Gone(why));
            }
            poll_readable(&[self.sock.as_raw_fd()], left);
        }
    }

    fn kill(&mut self, pid: u32) {
        if self.request(&ForkRequest::Kill { pid }).is_err() && self.gone.is_none() {
            self.gone = Some(format!(
                "the fork server (pid {}) does not take requests",
                self.pid
            ));
        }
    }

    fn shutdown(&mut self, grace: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let deadline = Instant::now() + grace;
        let mut polite = self.gone.is_none() && self.request(&ForkRequest::Shutdown).is_ok();
        while polite && !self.replies.iter().any(|r| matches!(r, ForkReply::Stopped)) {
            self.pump();
            let left = deadline.saturating_duration_since(Instant::now());
            if self.gone.is_some() || left.is_zero() {
                polite = self.replies.iter().any(|r| matches!(r, ForkReply::Stopped));
                break;
            }
            poll_readable(&[self.sock.as_raw_fd()], left);
        }
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
    // Children's exits arrive on a descriptor, so they are reported the moment they
    // happen while the loop waits for requests.
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let mut old_mask = SigSet::empty();
    if nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), Some(&mut old_mask))
        .is_err()
    {
        return 5;
    }
    let sfd = match SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(fd) => fd,
        Err(_) => return 5,
    };
    let me = nix::unistd::getpid();
    let mut children: Vec<Pid> = Vec::new();
    let gone = |children: &mut Vec<Pid>| {
        // The driver is gone: take every worker and the socket files with us.
        stop_children(children);
        let _ = std::fs::remove_file(&info.address);
        let _ = std::fs::remove_dir(&info.socket_dir);
        0
    };
    loop {
        let mut fds = [
            libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds. The timeout is only a safety net: exits arrive
        // through the signalfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 1000) };
        if n < 0 {
            continue;
        }
        while let Ok(Some(_)) = sfd.read_signal() {}
        for (pid, exit) in reap(&mut children, false) {
            let (code, signal) = match exit {
                WorkerExit::Code(c) => (Some(c), None),
                WorkerExit::Signal(s) => (None, Some(s)),
            };
            if write_frame(&mut sock, &ForkReply::Exited { pid, code, signal }).is_err() {
                return gone(&mut children);
            }
        }
        if fds[0].revents == 0 {
            continue;
        }
        let req = match read_frame::<ForkRequest, _>(&mut sock, 1 << 20) {
            Ok(r) => r,
            Err(_) => return gone(&mut children),
        };
        match req {
            ForkRequest::Spawn { worker_id } => {
                // SAFETY: this process is single-threaded.
                let reply = match unsafe { fork() } {
                    Ok(ForkResult::Child) => {
                        let inherited = [sock.as_raw_fd(), sfd.as_raw_fd()];
                        let code =
                            worker_child(&inherited, &old_mask, me, worker_id, registry, info);
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

/// Reaps exited children and returns how each ended; with `block`, waits for all.
fn reap(children: &mut Vec<Pid>, block: bool) -> Vec<(u32, WorkerExit)> {
    let flags = if block {
        None
    } else {
        Some(WaitPidFlag::WNOHANG)
    };
    let mut ended = Vec::new();
    children.retain(|&pid| match waitpid(pid, flags) {
        Ok(WaitStatus::StillAlive) => true,
        Ok(status) => {
            ended.extend(exit_of(status));
            false
        }
        Err(nix::errno::Errno::EINTR) => true,
        Err(_) => false,
    });
    ended
}

fn stop_children(children: &mut Vec<Pid>) {
    for &pid in children.iter() {
        let _ = kill(pid, Signal::SIGKILL);
    }
    reap(children, true);
}

/// Limits the data segment (heap and private mappings) of this process.
fn limit_memory(bytes: Option<u64>) -> io::Result<()> {
    let Some(bytes) = bytes else { return Ok(()) };
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_DATA).map_err(io::Error::from)?;
    let limit = bytes.min(hard);
    setrlimit(Resource::RLIMIT_DATA, limit, limit).map_err(io::Error::from)
}

/// The freshly forked worker: tie its life to the fork server, connect, serve.
fn worker_child(
    inherited: &[RawFd],
    mask: &SigSet,
    server: Pid,
    worker_id: u32,
    registry: &Registry,
    info: &LaunchInfo,
) -> i32 {
    // SAFETY: closing our copies of the fork server's socket and signalfd; nothing
    // else uses them here.
    unsafe {
        for &fd in inherited {
            libc::close(fd);
        }
    }
    // The fork server blocks SIGCHLD for its signalfd; a worker's own children (an
    // external calculator, say) need it delivered as usual.
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None);
    // SAFETY: prctl with PR_SET_PDEATHSIG and a signal number has no memory effects.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    if nix::unistd::getppid() != server {
        return 1; // the fork server died between fork and prctl
    }
    if let Err(e) = limit_memory(info.memory_limit) {
        raw_eprint(&format!("worker {worker_id}: cannot limit its memory: {e}"));
        return 2;
    }
    // The fork server removes the socket directory if the coordinator dies.
    run_worker(
        worker_id,
        registry,
        info.address.clone(),
        info.token.clone(),
        info.max_frame,
        None,
    )
}

/// Connects to `address` and serves; the exit code for the process. `parent`: for
/// a worker nobody else cleans up after, the pid of the process that started it
/// (the coordinator), to remove the socket directory when that process is gone.
fn run_worker(
    worker_id: u32,
    registry: &Registry,
    address: String,
    token: String,
    max_frame: usize,
    parent: Option<u32>,
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
    let ending = worker::serve(conn, registry, &id);
    // Any ending but an orderly `Shutdown` may mean the coordinator died: a closed
    // connection, and just as well a write or read that failed on the broken socket
    // (EPIPE, ECONNRESET) while the worker was answering.
    let orphaned = match (&ending, parent) {
        (Ok(worker::Ending::Shutdown), _) | (_, None) => false,
        (_, Some(parent)) => cleanup_if_orphaned(&address, parent),
    };
    match ending {
        Ok(_) => 0,
        Err(e) => {
            // A connection reset or broken pipe is the coordinator going away (or
            // dropping this worker): nobody is left to read a message about it.
            let hung_up = matches!(
                &e,
                worker::WorkerError::Wire { source: agox_wire::WireError::Io(io), .. }
                    if matches!(io.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe)
            );
            if !orphaned && !hung_up {
                raw_eprint(&e.to_string());
            }
            3
        }
    }
}

/// After the connection ended without a `Shutdown`: if this process is (about to
/// be) orphaned — its parent is no longer `parent`, the coordinator that started it —
/// nobody else will remove the socket file and its private directory, so do it.
/// The fork server does this for forked workers; this matters for exec'd ones.
/// Returns whether the coordinator was found gone.
fn cleanup_if_orphaned(address: &str, parent: u32) -> bool {
    let t0 = Instant::now();
    // The kernel reparents children after closing the dead process's descriptors,
    // so the end of stream may arrive first: give it a moment.
    while t0.elapsed() < Duration::from_millis(300) {
        if std::os::unix::process::parent_id() != parent {
            remove_socket(Path::new(address));
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
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
    let parent = std::os::unix::process::parent_id();
    start_watchdog(address, parent);
    run_worker(
        worker_id,
        registry,
        address.to_string(),
        token,
        max_frame,
        Some(parent),
    )
}

/// An exec'd worker has no fork server watching it: a thread checks every 250 ms
/// that the process that started it is still its parent and that the socket still
/// exists, and ends the worker (even in the middle of a long task) when either is
/// gone. An orphaned worker also removes the socket file and its private directory,
/// which the killed coordinator could not.
fn start_watchdog(address: &str, parent: u32) {
    let path = PathBuf::from(address);
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

/// An exec'd worker and, where the kernel has them, a descriptor that becomes
/// readable when it exits.
struct ExecChild {
    child: Child,
    pidfd: Option<OwnedFd>,
}

/// A descriptor for process `pid` that polls readable once it exits (Linux 5.3+).
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a descriptor the kernel just created for us alone.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Starts workers by executing a command.
pub(crate) struct ExecLauncher {
    program: PathBuf,
    args: Vec<String>,
    info: LaunchInfo,
    children: Vec<ExecChild>,
    exits: VecDeque<(u32, WorkerExit)>,
}

impl ExecLauncher {
    pub fn new(program: PathBuf, args: Vec<String>, info: LaunchInfo) -> Self {
        ExecLauncher {
            program,
            args,
            info,
            children: Vec::new(),
            exits: VecDeque::new(),
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
        if let Some(limit) = self.info.memory_limit {
            // SAFETY: between fork and exec the child only calls getrlimit and
            // setrlimit, which are async-signal-safe and allocate nothing.
            unsafe {
                cmd.pre_exec(move || limit_memory(Some(limit)));
            }
        }
        let mut child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot execute {}: {e}", self.program.display()),
            )
        })?;
        let pid = child.id();
        let pidfd = pidfd_open(pid);
        if let Some(mut stdin) = child.stdin.take() {
            // A worker that died at once cannot read its token: that shows as its
            // exit, reported like any other.
            let _ = writeln!(stdin, "{}", self.info.token);
        }
        self.children.push(ExecChild { child, pidfd });
        Ok(pid)
    }

    fn collect(&mut self) {
        let exits = &mut self.exits;
        self.children.retain_mut(|c| match c.child.try_wait() {
            Ok(Some(status)) => {
                let exit = match (status.code(), status.signal()) {
                    (_, Some(s)) => WorkerExit::Signal(s),
                    (Some(code), None) => WorkerExit::Code(code),
                    (None, None) => WorkerExit::Code(-1),
                };
                exits.push_back((c.child.id(), exit));
                false
            }
            Ok(None) => true,
            Err(_) => false,
        });
    }

    fn kill(&mut self, pid: u32) {
        if let Some(c) = self.children.iter_mut().find(|c| c.child.id() == pid) {
            let _ = c.child.kill();
        }
        self.collect();
    }

    fn shutdown(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            self.collect();
            if self.children.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for c in &mut self.children {
            let _ = c.child.kill();
            let _ = c.child.wait();
        }
        self.children.clear();
    }
}

impl Drop for ExecLauncher {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(2));
    }
}
