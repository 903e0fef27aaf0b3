//! The coordinator's engine: worker slots, the task queue, the event loop, state
//! replay and attribute synchronization.
//!
//! All socket I/O happens on the thread that calls the pool, with non-blocking
//! sockets and `poll`: a result is read by the thread that waits for it, with no
//! hand-off between threads on the critical path. Progress is made whenever a pool
//! call is running (`map`, `get`, `synchronize`, ...); tasks submitted beyond the
//! workers' windows wait in the queue until then.

use crate::config::{Launcher as LauncherConfig, PoolConfig};
use crate::error::{PoolError, TaskFailure, WorkerName};
use crate::launch::{ExecLauncher, ForkServer, LaunchInfo, Launcher};
use crate::module::{ErasedModule, ModuleStore, Slot};
use crate::registry::{task_seed, Registry, TaskContext};
use crate::stats::{PoolStats, SyncReport, SyncTotals, WorkerLoss, WorkerStats};
use crate::transport::{Connection, Endpoint, UnixEndpoint};
use agox_wire::{
    decode, encode_frame, encode_frame_into, read_frame, set_attributes_pieces, FrameReader,
    FromWorker, Hello, ToWorker, ToWorkerRef, PROTOCOL_VERSION,
};
use serde_bytes::{ByteBuf, Bytes};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes queued for one worker: owned, or shared with other workers (a broadcast
/// frame is encoded once and written to each worker from the same buffer).
enum Chunk {
    Own(Vec<u8>),
    Shared(Arc<Vec<u8>>),
    /// A frame whose first byte carries a file descriptor (`SCM_RIGHTS`).
    SharedFd(Arc<Vec<u8>>, Arc<OwnedFd>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Own(v) => v,
            Chunk::Shared(v) | Chunk::SharedFd(v, _) => v,
        }
    }

    /// A copy for another worker (sharing the buffer where there is one).
    fn for_another(&self) -> Chunk {
        match self {
            Chunk::Own(v) => Chunk::Shared(Arc::new(v.clone())),
            Chunk::Shared(v) => Chunk::Shared(v.clone()),
            Chunk::SharedFd(v, fd) => Chunk::SharedFd(v.clone(), fd.clone()),
        }
    }
}

/// How many worker losses `PoolStats::losses` remembers.
const MAX_LOSSES: usize = 100;

/// Values at least this large travel as shared memory where the transport can pass
/// descriptors: written once by the coordinator, mapped by every worker.
const SHARED_MIN: usize = 1 << 20;

/// An attribute value the workers hold, as the coordinator keeps it for replay.
enum Held {
    /// In memory.
    Bytes(Arc<Vec<u8>>),
    /// In a memory file (`memfd`) of `len` bytes, passed to workers by descriptor.
    File { fd: Arc<OwnedFd>, len: usize },
}

/// Writes `bytes` into a memory file: `reuse` (whose pages are already in memory)
/// when given, else a new one.
fn memory_file(bytes: &[u8], reuse: Option<Arc<OwnedFd>>) -> io::Result<Arc<OwnedFd>> {
    let fd = match reuse {
        Some(fd) => fd,
        None => Arc::new(
            nix::sys::memfd::memfd_create(
                c"agox-attribute",
                nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
            )
            .map_err(io::Error::from)?,
        ),
    };
    nix::unistd::ftruncate(&*fd, bytes.len() as libc::off_t).map_err(io::Error::from)?;
    if bytes.is_empty() {
        return Ok(fd);
    }
    // SAFETY: a shared writable mapping of exactly the file's length, checked for
    // failure, written once and unmapped; nobody else writes this file meanwhile
    // (a reused file is one no worker still needs).
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            bytes.len(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            0,
        );
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), map.cast::<u8>(), bytes.len());
        libc::munmap(map, bytes.len());
    }
    Ok(fd)
}

struct Worker {
    id: u32,
    pid: u32,
    conn: Option<Box<dyn Connection>>,
    reader: FrameReader,
    out: VecDeque<Chunk>,
    /// Bytes of `out.front()` already written.
    out_off: usize,
    /// Frames being batched before they join `out`.
    batch: Vec<u8>,
    in_flight: VecDeque<u64>,
    pinned: VecDeque<u64>,
    tasks_run: u64,
    tasks_failed: u64,
    busy_ns: u64,
    restarts: u32,
    max_in_flight: usize,
    started: Instant,
}

impl Worker {
    fn new(id: u32, pid: u32, conn: Box<dyn Connection>, max_frame: usize) -> Self {
        Worker {
            id,
            pid,
            conn: Some(conn),
            reader: FrameReader::new(max_frame),
            out: VecDeque::new(),
            out_off: 0,
            batch: Vec::new(),
            in_flight: VecDeque::new(),
            pinned: VecDeque::new(),
            tasks_run: 0,
            tasks_failed: 0,
            busy_ns: 0,
            restarts: 0,
            max_in_flight: 0,
            started: Instant::now(),
        }
    }

    fn alive(&self) -> bool {
        self.conn.is_some()
    }

    fn seal_batch(&mut self) {
        if !self.batch.is_empty() {
            let b = std::mem::take(&mut self.batch);
            self.out.push_back(Chunk::Own(b));
        }
    }

    /// Writes as much queued output as the socket takes now.
    fn flush(&mut self) -> io::Result<()> {
        self.seal_batch();
        let Some(conn) = self.conn.as_mut() else {
            self.out.clear();
            return Ok(());
        };
        while !self.out.is_empty() {
            let result = match self.out.front() {
                // A descriptor rides on the first byte of its frame, sent alone.
                Some(Chunk::SharedFd(bytes, fd)) if self.out_off == 0 => {
                    conn.send_with_fd(bytes, fd.as_raw_fd())
                }
                _ => {
                    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(self.out.len().min(64));
                    for (i, c) in self.out.iter().take(64).enumerate() {
                        if i > 0 && matches!(c, Chunk::SharedFd(..)) {
                            break;
                        }
                        let b = c.bytes();
                        slices.push(IoSlice::new(if i == 0 { &b[self.out_off..] } else { b }));
                    }
                    conn.write_vectored(&slices)
                }
            };
            match result {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "socket closed")),
                Ok(mut n) => {
                    while n > 0 {
                        let Some(front) = self.out.front() else { break };
                        let left = front.bytes().len() - self.out_off;
                        if n >= left {
                            n -= left;
                            self.out.pop_front();
                            self.out_off = 0;
                        } else {
                            self.out_off += n;
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn wants_write(&self) -> bool {
        !self.out.is_empty() || !self.batch.is_empty()
    }
}

#[derive(Debug)]
enum TaskState {
    Queued,
    Running { since: Instant },
    Finished(Result<Vec<u8>, PoolError>),
}

struct Task {
    function: Arc<str>,
    /// Index of the function's run-time statistics in `Core::fn_busy`.
    fn_index: usize,
    index: usize,
    seed: u64,
    args: Vec<u8>,
    attempts: u32,
    pin: Option<u32>,
    state: TaskState,
}

/// One pooled module as the coordinator remembers it, for synchronization and for
/// replaying state into a replacement worker.
struct ModuleRecord {
    key: String,
    type_name: &'static str,
    /// The full state shipped at `add` time.
    state: Arc<Vec<u8>>,
    /// For each dynamic attribute: hash and bytes of the value the workers hold.
    sent: HashMap<&'static str, (u64, Held)>,
    slot: Slot,
}

struct AckWait {
    key: String,
    remaining: HashSet<u32>,
    errors: Vec<(u32, String)>,
}

pub(crate) struct Core {
    cfg: PoolConfig,
    registry: Arc<Registry>,
    endpoint: Option<Box<dyn Endpoint>>,
    launcher: Option<Launcher>,
    token: String,
    workers: Vec<Worker>,
    queue: VecDeque<u64>,
    tasks: HashMap<u64, Task, IdHash>,
    next_task: u64,
    next_call: u64,
    next_seq: u64,
    modules: Vec<ModuleRecord>,
    acks: HashMap<u64, AckWait>,
    /// Function name → index into `fn_busy`.
    fn_index: HashMap<Arc<str>, usize>,
    /// Smoothed run time per function (ns; `None` until first measured), for the
    /// in-flight window.
    fn_busy: Vec<Option<f64>>,
    /// Smoothed socket round trip (ns).
    rtt_ns: f64,
    pub(crate) driver: ModuleStore,
    /// Memory files of superseded large values, reused for the next value.
    spare: HashMap<(String, &'static str), Arc<OwnedFd>>,
    sync_totals: SyncTotals,
    retries: u64,
    timeouts: u64,
    refused: Vec<String>,
    /// Why workers were lost (the most recent [`MAX_LOSSES`]).
    losses: Vec<WorkerLoss>,
    /// Set by `handshake` when the refused peer presented the right token.
    authentic_refusal: Option<u32>,
    start_time: Duration,
}

fn random_token() -> String {
    let a: u128 = rand::random();
    let b: u128 = rand::random();
    format!("{a:032x}{b:032x}")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Core {
    pub fn start(registry: Arc<Registry>, cfg: PoolConfig) -> Result<Core, PoolError> {
        cfg.validate().map_err(PoolError::Config)?;
        let t0 = Instant::now();
        let mut core = Core {
            registry: registry.clone(),
            endpoint: None,
            launcher: None,
            token: random_token(),
            workers: Vec::new(),
            queue: VecDeque::new(),
            tasks: HashMap::default(),
            next_task: 0,
            next_call: 0,
            next_seq: 0,
            modules: Vec::new(),
            acks: HashMap::new(),
            fn_index: HashMap::new(),
            fn_busy: Vec::new(),
            rtt_ns: 60_000.0,
            driver: ModuleStore::default(),
            spare: HashMap::new(),
            sync_totals: SyncTotals::default(),
            retries: 0,
            timeouts: 0,
            refused: Vec::new(),
            authentic_refusal: None,
            losses: Vec::new(),
            start_time: Duration::ZERO,
            cfg,
        };
        if core.cfg.workers == 0 {
            return Ok(core);
        }
        let endpoint = UnixEndpoint::create(core.cfg.socket_base.as_deref())
            .map_err(|e| PoolError::io("creating the pool socket", e))?;
        let info = LaunchInfo {
            address: endpoint.address(),
            token: core.token.clone(),
            max_frame: core.cfg.max_frame,
            socket_dir: endpoint.dir().to_path_buf(),
        };
        core.endpoint = Some(Box::new(endpoint));
        let launcher = match &core.cfg.launcher {
            LauncherConfig::Fork => Launcher::Fork(
                ForkServer::start(registry, info)
                    .map_err(|e| PoolError::io("forking the fork server", e))?,
            ),
            LauncherConfig::Command { program, args } => {
                Launcher::Exec(ExecLauncher::new(program.clone(), args.clone(), info))
            }
        };
        core.launcher = Some(launcher);
        let n = core.cfg.workers as u32;
        let mut pids = HashMap::new();
        for id in 0..n {
            let pid = core.launch(id)?;
            pids.insert(id, pid);
        }
        let mut pending: HashSet<u32> = (0..n).collect();
        let mut conns: HashMap<u32, (u32, Box<dyn Connection>)> = HashMap::new();
        while !pending.is_empty() {
            let (id, pid, conn) = core.accept_worker(&pending)?;
            pending.remove(&id);
            conns.insert(id, (pid, conn));
        }
        for id in 0..n {
            if let Some((pid, conn)) = conns.remove(&id) {
                core.workers
                    .push(Worker::new(id, pid, conn, core.cfg.max_frame));
            }
        }
        core.start_time = t0.elapsed();
        Ok(core)
    }

    fn launch(&mut self, id: u32) -> Result<u32, PoolError> {
        let launcher = self.launcher.as_mut().ok_or(PoolError::Spawn {
            worker: id,
            message: "pool has no launcher".into(),
        })?;
        launcher.spawn(id).map_err(|e| PoolError::Spawn {
            worker: id,
            message: e.to_string(),
        })
    }

    /// Accepts connections until one of the `expected` workers greets correctly.
    /// Other peers are refused with a reason and the wait goes on.
    fn accept_worker(
        &mut self,
        expected: &HashSet<u32>,
    ) -> Result<(u32, u32, Box<dyn Connection>), PoolError> {
        let deadline = Instant::now() + self.cfg.connect_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let endpoint = self
                .endpoint
                .as_ref()
                .ok_or(PoolError::Config("no endpoint".into()))?;
            let first = expected.iter().copied().min().unwrap_or(0);
            let conn = endpoint.accept(left).map_err(|e| PoolError::Spawn {
                worker: first,
                message: format!(
                    "{e} within {:?} (refused so far: {})",
                    self.cfg.connect_timeout,
                    if self.refused.is_empty() {
                        "none".to_string()
                    } else {
                        self.refused.join("; ")
                    }
                ),
            })?;
            match self.handshake(conn, expected) {
                Ok(ok) => return Ok(ok),
                Err(reason) => {
                    self.refused.push(reason.clone());
                    // A peer holding the token is one of ours: its refusal (wrong
                    // protocol or registry) will not fix itself, so stop waiting.
                    if let Some(worker) = self.authentic_refusal.take() {
                        return Err(PoolError::Handshake { worker, reason });
                    }
                }
            }
        }
    }

    /// Checks a new connection's credentials and greeting. Refuses with a reason
    /// naming both sides' values.
    fn handshake(
        &mut self,
        mut conn: Box<dyn Connection>,
        expected: &HashSet<u32>,
    ) -> Result<(u32, u32, Box<dyn Connection>), String> {
        let my_uid = nix::unistd::geteuid().as_raw();
        match conn.peer_uid() {
            Ok(Some(uid)) if uid != my_uid => {
                let reason = format!("peer uid {uid} is not the coordinator's uid {my_uid}");
                refuse(&mut *conn, &reason);
                return Err(reason);
            }
            Ok(_) => {}
            Err(e) => return Err(format!("cannot read peer credentials: {e}")),
        }
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let hello: Hello = match read_frame::<FromWorker, _>(&mut conn, 64 * 1024) {
            Ok(FromWorker::Hello(h)) => h,
            Ok(other) => {
                let reason = format!("expected Hello, got {}", message_name(&other));
                refuse(&mut *conn, &reason);
                return Err(reason);
            }
            Err(e) => return Err(format!("no valid Hello: {e}")),
        };
        let mine = self.registry.fingerprint();
        let reason = if hello.protocol != PROTOCOL_VERSION {
            Some(format!(
                "protocol version mismatch: coordinator speaks {PROTOCOL_VERSION}, worker {} (pid {}) speaks {}",
                hello.worker_id, hello.pid, hello.protocol
            ))
        } else if !constant_time_eq(hello.token.as_bytes(), self.token.as_bytes()) {
            Some(format!(
                "wrong pool token from worker {} (pid {}); a token of {} characters was expected, {} received",
                hello.worker_id,
                hello.pid,
                self.token.len(),
                hello.token.len()
            ))
        } else if hello.fingerprint != mine {
            Some(format!(
                "registry mismatch: coordinator fingerprint {mine:016x}, worker {} (pid {}) fingerprint {:016x}; build both from the same program and registry",
                hello.worker_id, hello.pid, hello.fingerprint
            ))
        } else if !expected.contains(&hello.worker_id) {
            Some(format!(
                "unexpected worker id {} (pid {}); waiting for {:?}",
                hello.worker_id, hello.pid, expected
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            if constant_time_eq(hello.token.as_bytes(), self.token.as_bytes())
                && expected.contains(&hello.worker_id)
            {
                self.authentic_refusal = Some(hello.worker_id);
            }
            refuse(&mut *conn, &reason);
            return Err(reason);
        }
        let welcome = ToWorker::Welcome {
            pool_size: self.cfg.workers as u32,
        };
        let frame = encode_frame(&welcome).map_err(|e| e.to_string())?;
        conn.write_all(&frame)
            .map_err(|e| format!("cannot welcome worker {}: {e}", hello.worker_id))?;
        let _ = conn.set_read_timeout(None);
        conn.set_nonblocking(true)
            .map_err(|e| format!("cannot make socket non-blocking: {e}"))?;
        Ok((hello.worker_id, hello.pid, conn))
    }

    pub fn size(&self) -> usize {
        self.cfg.workers
    }

    pub fn seed(&self) -> u64 {
        self.cfg.seed
    }

    pub fn address(&self) -> Option<String> {
        self.endpoint.as_ref().map(|e| e.address())
    }

    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.pid).collect()
    }

    pub fn set_task_timeout(&mut self, t: Option<Duration>) {
        self.cfg.task_timeout = t;
    }

    pub fn refusals(&self) -> Vec<String> {
        self.refused.clone()
    }

    // ----- tasks -------------------------------------------------------------

    /// Queues one call of `function` per argument; returns the task ids in order.
    pub fn submit_call(
        &mut self,
        function: &str,
        args: Vec<Vec<u8>>,
        pin: Option<Vec<u32>>,
    ) -> Vec<u64> {
        let call = self.next_call;
        self.next_call += 1;
        let (function, fn_index) = match self.fn_index.get_key_value(function) {
            Some((name, &i)) => (name.clone(), i),
            None => {
                let name: Arc<str> = Arc::from(function);
                let i = self.fn_busy.len();
                self.fn_busy.push(None);
                self.fn_index.insert(name.clone(), i);
                (name, i)
            }
        };
        let mut ids = Vec::with_capacity(args.len());
        for (index, a) in args.into_iter().enumerate() {
            let id = self.next_task;
            self.next_task += 1;
            let pin_to = pin.as_ref().and_then(|p| p.get(index).copied());
            self.tasks.insert(
                id,
                Task {
                    function: function.clone(),
                    fn_index,
                    index,
                    seed: task_seed(self.cfg.seed, call, index as u64),
                    args: a,
                    attempts: 0,
                    pin: pin_to,
                    state: TaskState::Queued,
                },
            );
            match pin_to {
                Some(w) => {
                    if let Some(worker) = self.workers.get_mut(w as usize) {
                        worker.pinned.push_back(id);
                    }
                }
                None if self.cfg.workers > 0 => self.queue.push_back(id),
                None => {}
            }
            ids.push(id);
        }
        if self.cfg.workers == 0 {
            self.run_local(&ids);
        } else {
            // Start work at once; errors surface when results are awaited.
            let _ = self.dispatch();
        }
        ids
    }

    /// In-process execution for zero-worker pools.
    fn run_local(&mut self, ids: &[u64]) {
        for id in ids {
            let Some(task) = self.tasks.get_mut(id) else {
                continue;
            };
            let ctx = TaskContext {
                store: &self.driver,
                seed: task.seed,
                worker: None,
            };
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.registry.call(&task.function, &ctx, &task.args)
            }));
            let res = match res {
                Ok(Ok(out)) => Ok(out),
                Ok(Err((kind, message))) => Err(PoolError::Task {
                    function: task.function.to_string(),
                    index: task.index,
                    worker: WorkerName::Local,
                    kind: kind.into(),
                    message,
                }),
                Err(payload) => Err(PoolError::Task {
                    function: task.function.to_string(),
                    index: task.index,
                    worker: WorkerName::Local,
                    kind: TaskFailure::Panic,
                    message: payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into()),
                }),
            };
            task.state = TaskState::Finished(res);
        }
    }

    /// Takes a finished task's result (callers wait for `is_finished` first).
    pub fn take_result(&mut self, id: u64) -> Result<Vec<u8>, PoolError> {
        match self.tasks.get(&id).map(|t| &t.state) {
            Some(TaskState::Finished(_)) => match self.tasks.remove(&id).map(|t| t.state) {
                Some(TaskState::Finished(r)) => r,
                _ => unreachable!("the task was just seen finished"),
            },
            Some(_) => Err(PoolError::Config(format!("task {id} has not finished"))),
            None => Err(PoolError::Config(format!(
                "task {id} is unknown (already collected?)"
            ))),
        }
    }

    pub fn is_finished(&self, id: u64) -> bool {
        matches!(
            self.tasks.get(&id).map(|t| &t.state),
            Some(TaskState::Finished(_)) | None
        )
    }

    /// Window of tasks in flight per worker for `function`: enough to hide the
    /// round trip behind tiny tasks, one for long tasks so that none waits behind
    /// another on a busy worker while a different worker idles.
    fn window(&self, fn_index: usize) -> usize {
        match self.fn_busy.get(fn_index).copied().flatten() {
            None => 1,
            Some(busy) if busy >= 10.0 * self.rtt_ns => 1,
            Some(busy) => {
                let w = 1.0 + (2.0 * self.rtt_ns / busy.max(1.0)).ceil();
                (w as usize).clamp(1, self.cfg.max_window)
            }
        }
    }

    /// Hands queued tasks to workers with room in their window.
    fn dispatch(&mut self) -> Result<(), PoolError> {
        if self.workers.is_empty() {
            return Ok(());
        }
        // Pinned tasks first: they can only go to their worker.
        for w in 0..self.workers.len() {
            while self.workers[w].alive() {
                let Some(&id) = self.workers[w].pinned.front() else {
                    break;
                };
                let window = self
                    .tasks
                    .get(&id)
                    .map(|t| self.window(t.fn_index))
                    .unwrap_or(1);
                if self.workers[w].in_flight.len() >= window {
                    break;
                }
                self.workers[w].pinned.pop_front();
                self.send_task(w, id)?;
            }
        }
        // Then the shared queue, to the least loaded worker with room.
        while let Some(&id) = self.queue.front() {
            let Some(task) = self.tasks.get(&id) else {
                self.queue.pop_front();
                continue;
            };
            let window = self.window(task.fn_index);
            let mut best: Option<usize> = None;
            for (i, w) in self.workers.iter().enumerate() {
                if w.alive() && w.in_flight.len() < window {
                    let better = match best {
                        None => true,
                        Some(b) => w.in_flight.len() < self.workers[b].in_flight.len(),
                    };
                    if better {
                        best = Some(i);
                    }
                }
            }
            let Some(w) = best else { break };
            self.queue.pop_front();
            self.send_task(w, id)?;
        }
        for w in 0..self.workers.len() {
            if self.workers[w].wants_write() {
                if let Err(e) = self.workers[w].flush() {
                    self.worker_lost(w, &format!("write failed: {e}"));
                }
            }
        }
        Ok(())
    }

    fn send_task(&mut self, w: usize, id: u64) -> Result<(), PoolError> {
        let Some(task) = self.tasks.get_mut(&id) else {
            return Ok(());
        };
        task.attempts += 1;
        let worker = &mut self.workers[w];
        task.state = TaskState::Running {
            since: Instant::now(),
        };
        let msg = ToWorkerRef::Run {
            task: id,
            function: &task.function,
            seed: task.seed,
            args: Bytes::new(&task.args),
        };
        encode_frame_into(&msg, &mut worker.batch)?;
        worker.in_flight.push_back(id);
        worker.max_in_flight = worker.max_in_flight.max(worker.in_flight.len());
        Ok(())
    }

    /// Runs the event loop until `done(self)` holds.
    pub fn drive(&mut self, mut done: impl FnMut(&Core) -> bool) -> Result<(), PoolError> {
        while !done(self) {
            self.turn()?;
        }
        Ok(())
    }

    /// One turn of the event loop: dispatch, wait for readiness, read, handle.
    fn turn(&mut self) -> Result<(), PoolError> {
        self.dispatch()?;
        if !self.workers.iter().any(|w| w.alive()) {
            return Err(PoolError::NoWorkers(
                "every worker slot exhausted its restart budget".into(),
            ));
        }
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(self.workers.len() + 1);
        let mut owners: Vec<Option<usize>> = Vec::with_capacity(self.workers.len() + 1);
        for (i, w) in self.workers.iter().enumerate() {
            if let Some(c) = &w.conn {
                let mut events = libc::POLLIN;
                if w.wants_write() {
                    events |= libc::POLLOUT;
                }
                fds.push(libc::pollfd {
                    fd: c.raw_fd(),
                    events,
                    revents: 0,
                });
                owners.push(Some(i));
            }
        }
        // Strangers knocking on the socket get a (refusing) handshake.
        if let Some(fd) = self.endpoint_fd() {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            owners.push(None);
        }
        let timeout_ms = self.poll_timeout_ms();
        // SAFETY: `fds` is a valid array of pollfd for its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(PoolError::io("poll", e));
            }
        }
        for (pfd, owner) in fds.iter().zip(owners) {
            if pfd.revents == 0 {
                continue;
            }
            match owner {
                Some(w) => {
                    if pfd.revents & libc::POLLOUT != 0 {
                        if let Err(e) = self.workers[w].flush() {
                            self.worker_lost(w, &format!("write failed: {e}"));
                            continue;
                        }
                    }
                    if pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                        self.read_worker(w);
                    }
                }
                None => self.accept_stranger(),
            }
        }
        self.check_timeouts();
        Ok(())
    }

    fn endpoint_fd(&self) -> Option<i32> {
        self.endpoint.as_ref().and_then(|e| e.raw_fd())
    }

    fn accept_stranger(&mut self) {
        let Some(endpoint) = self.endpoint.as_ref() else {
            return;
        };
        if let Ok(conn) = endpoint.accept(Duration::from_millis(0)) {
            if let Err(reason) = self.handshake(conn, &HashSet::new()) {
                self.refused.push(reason);
            }
        }
    }

    fn poll_timeout_ms(&self) -> i32 {
        let mut ms: i64 = 250;
        if let Some(t) = self.cfg.task_timeout {
            let now = Instant::now();
            for w in &self.workers {
                for id in &w.in_flight {
                    if let Some(Task {
                        state: TaskState::Running { since, .. },
                        ..
                    }) = self.tasks.get(id)
                    {
                        let left = (*since + t).saturating_duration_since(now);
                        ms = ms.min(left.as_millis() as i64 + 1);
                    }
                }
            }
        }
        ms.max(0) as i32
    }

    fn read_worker(&mut self, w: usize) {
        let mut msgs: Vec<FromWorker> = Vec::new();
        let mut lost: Option<String> = None;
        {
            let worker = &mut self.workers[w];
            let Some(conn) = worker.conn.as_mut() else {
                return;
            };
            loop {
                match worker.reader.fill_from(conn) {
                    Ok(0) => {
                        lost = Some("connection closed".into());
                        break;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        lost = Some(format!("read failed: {e}"));
                        break;
                    }
                }
                loop {
                    match worker.reader.next_frame() {
                        Ok(Some(body)) => match decode::<FromWorker>(body) {
                            Ok(m) => msgs.push(m),
                            Err(e) => {
                                lost = Some(format!("protocol violation: {e}"));
                                break;
                            }
                        },
                        Ok(None) => break,
                        Err(e) => {
                            lost = Some(format!("protocol violation: {e}"));
                            break;
                        }
                    }
                }
                if lost.is_some() {
                    break;
                }
            }
            worker.reader.shrink();
        }
        for m in msgs {
            self.handle(w, m);
        }
        if let Some(reason) = lost {
            self.worker_lost(w, &reason);
        }
    }

    fn handle(&mut self, w: usize, msg: FromWorker) {
        let wid = self.workers[w].id;
        match msg {
            FromWorker::Done {
                task,
                output,
                busy_ns,
            } => self.finish(w, task, busy_ns, Ok(output.into_vec())),
            FromWorker::Failed {
                task,
                kind,
                message,
                busy_ns,
            } => {
                let (function, index) = self
                    .tasks
                    .get(&task)
                    .map(|t| (t.function.to_string(), t.index))
                    .unwrap_or_default();
                self.workers[w].tasks_failed += 1;
                self.finish(
                    w,
                    task,
                    busy_ns,
                    Err(PoolError::Task {
                        function,
                        index,
                        worker: WorkerName::Slot(wid),
                        kind: kind.into(),
                        message,
                    }),
                )
            }
            FromWorker::Ack { seq, error } => {
                if let Some(wait) = self.acks.get_mut(&seq) {
                    wait.remaining.remove(&wid);
                    if let Some(e) = error {
                        wait.errors.push((wid, e));
                    }
                }
            }
            FromWorker::Hello(_) => {
                self.worker_lost(w, "protocol violation: second Hello");
            }
        }
    }

    fn finish(&mut self, w: usize, id: u64, busy_ns: u64, res: Result<Vec<u8>, PoolError>) {
        let worker = &mut self.workers[w];
        let pos = worker.in_flight.iter().position(|&t| t == id);
        if let Some(p) = pos {
            worker.in_flight.remove(p);
        }
        worker.tasks_run += 1;
        worker.busy_ns += busy_ns;
        let alone = worker.in_flight.is_empty();
        // The next task in this worker's window starts running now: its timeout
        // counts from here, not from when it was queued behind this one.
        if pos == Some(0) {
            if let Some(next) = worker.in_flight.front().copied() {
                if let Some(Task {
                    state: TaskState::Running { since },
                    ..
                }) = self.tasks.get_mut(&next)
                {
                    *since = Instant::now();
                }
            }
        }
        let Some(task) = self.tasks.get_mut(&id) else {
            return;
        };
        if let TaskState::Running { since, .. } = task.state {
            if alone && pos == Some(0) {
                let total = since.elapsed().as_nanos() as f64;
                let rtt = (total - busy_ns as f64).max(1_000.0);
                self.rtt_ns = 0.9 * self.rtt_ns + 0.1 * rtt;
            }
        }
        if let Some(e) = self.fn_busy.get_mut(task.fn_index) {
            let b = busy_ns as f64;
            *e = Some(e.map_or(b, |old| 0.8 * old + 0.2 * b));
        }
        task.state = TaskState::Finished(res);
    }

    fn check_timeouts(&mut self) {
        let Some(limit) = self.cfg.task_timeout else {
            return;
        };
        let now = Instant::now();
        let mut expired: Vec<(usize, u64)> = Vec::new();
        for (i, w) in self.workers.iter().enumerate() {
            // Only the head of a worker's window is running; the rest wait behind it.
            if let Some(&id) = w.in_flight.front() {
                if let Some(Task {
                    state: TaskState::Running { since, .. },
                    ..
                }) = self.tasks.get(&id)
                {
                    if now.duration_since(*since) > limit {
                        expired.push((i, id));
                    }
                }
            }
        }
        for (w, id) in expired {
            self.timeouts += 1;
            let wid = self.workers[w].id;
            if let Some(task) = self.tasks.get_mut(&id) {
                task.state = TaskState::Finished(Err(PoolError::Timeout {
                    function: task.function.to_string(),
                    index: task.index,
                    worker: wid,
                    after: limit,
                }));
            }
            self.workers[w].in_flight.retain(|&t| t != id);
            let reason = format!("task {id} timed out");
            self.worker_lost(w, &reason);
        }
    }

    /// A worker died or misbehaved: requeue its work, replace it, replay state.
    fn worker_lost(&mut self, w: usize, reason: &str) {
        let wid = self.workers[w].id;
        let pid = self.workers[w].pid;
        if self.losses.len() >= MAX_LOSSES {
            self.losses.remove(0);
        }
        self.losses.push(WorkerLoss {
            worker: wid,
            pid,
            reason: reason.to_string(),
        });
        self.workers[w].conn = None;
        self.workers[w].out.clear();
        self.workers[w].out_off = 0;
        self.workers[w].batch.clear();
        self.workers[w].reader = FrameReader::new(self.cfg.max_frame);
        if let Some(l) = self.launcher.as_mut() {
            l.kill(pid);
        }
        // Tasks it held: retry within budget, in their original order.
        let held: VecDeque<u64> = std::mem::take(&mut self.workers[w].in_flight);
        let mut requeue = Vec::new();
        for id in held {
            let Some(task) = self.tasks.get_mut(&id) else {
                continue;
            };
            if matches!(task.state, TaskState::Finished(_)) {
                continue;
            }
            if task.pin.is_some() || task.attempts > self.cfg.max_retries {
                task.state = TaskState::Finished(Err(PoolError::WorkerLost {
                    function: task.function.to_string(),
                    index: task.index,
                    worker: wid,
                    attempts: task.attempts,
                }));
            } else {
                task.state = TaskState::Queued;
                requeue.push(id);
                self.retries += 1;
            }
        }
        for id in requeue.into_iter().rev() {
            self.queue.push_front(id);
        }
        let pinned: Vec<u64> = self.workers[w].pinned.drain(..).collect();
        for id in pinned {
            if let Some(task) = self.tasks.get_mut(&id) {
                task.state = TaskState::Finished(Err(PoolError::WorkerLost {
                    function: task.function.to_string(),
                    index: task.index,
                    worker: wid,
                    attempts: task.attempts,
                }));
            }
        }
        for wait in self.acks.values_mut() {
            wait.remaining.remove(&wid);
        }
        if self.workers[w].restarts >= self.cfg.max_restarts {
            return;
        }
        self.workers[w].restarts += 1;
        if let Err(e) = self.respawn(w) {
            self.refused
                .push(format!("replacing worker {wid} failed: {e}"));
        }
    }

    fn respawn(&mut self, w: usize) -> Result<(), PoolError> {
        let wid = self.workers[w].id;
        let pid = self.launch(wid)?;
        let expected: HashSet<u32> = [wid].into_iter().collect();
        let (_, hello_pid, conn) = self.accept_worker(&expected)?;
        let _ = pid;
        let worker = &mut self.workers[w];
        worker.pid = hello_pid;
        worker.conn = Some(conn);
        worker.started = Instant::now();
        // Replay: every module as added, then the attributes the others hold.
        let mut frames: Vec<Chunk> = Vec::new();
        for rec in &self.modules {
            let seq = self.next_seq;
            self.next_seq += 1;
            let add = ToWorker::AddModule {
                seq,
                key: rec.key.clone(),
                type_name: rec.type_name.to_string(),
                state: ByteBuf::from(rec.state.as_slice().to_vec()),
            };
            frames.push(Chunk::Own(encode_frame(&add)?));
            let in_memory: Vec<(&str, &Arc<Vec<u8>>)> = rec
                .sent
                .iter()
                .filter_map(|(k, (_, v))| match v {
                    Held::Bytes(b) => Some((*k, b)),
                    Held::File { .. } => None,
                })
                .collect();
            if !in_memory.is_empty() {
                let seq = self.next_seq;
                self.next_seq += 1;
                frames.extend(attribute_frame(seq, &rec.key, &in_memory)?);
            }
            for (name, (_, held)) in &rec.sent {
                if let Held::File { fd, len } = held {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    frames.push(shared_attribute_frame(seq, &rec.key, name, fd, *len)?);
                }
            }
        }
        let worker = &mut self.workers[w];
        worker.out.extend(frames);
        if let Err(e) = worker.flush() {
            return Err(PoolError::io(
                format!("replaying state into worker {wid}"),
                e,
            ));
        }
        Ok(())
    }

    // ----- modules and synchronization -----------------------------------------

    /// Sends one frame to every live worker and waits for all acknowledgements.
    fn broadcast_and_wait(
        &mut self,
        key: &str,
        frame: Vec<Chunk>,
        seq: u64,
    ) -> Result<(), PoolError> {
        let mut remaining = HashSet::new();
        for w in &mut self.workers {
            if w.alive() {
                w.seal_batch();
                w.out.extend(frame.iter().map(Chunk::for_another));
                remaining.insert(w.id);
            }
        }
        self.acks.insert(
            seq,
            AckWait {
                key: key.to_string(),
                remaining,
                errors: Vec::new(),
            },
        );
        for w in 0..self.workers.len() {
            if let Err(e) = self.workers[w].flush() {
                self.worker_lost(w, &format!("write failed: {e}"));
            }
        }
        self.drive(|c| {
            c.acks
                .get(&seq)
                .map(|a| a.remaining.is_empty())
                .unwrap_or(true)
        })?;
        if let Some(wait) = self.acks.remove(&seq) {
            if let Some((worker, message)) = wait.errors.into_iter().next() {
                return Err(PoolError::Module {
                    key: wait.key,
                    worker: WorkerName::Slot(worker),
                    message,
                });
            }
        }
        Ok(())
    }

    pub fn add_module(
        &mut self,
        key: &str,
        module: Box<dyn ErasedModule>,
    ) -> Result<Slot, PoolError> {
        let type_name = module.type_name();
        if !self.registry.has_module(type_name) {
            return Err(PoolError::Module {
                key: key.to_string(),
                worker: WorkerName::Local,
                message: format!(
                    "module type '{type_name}' is not registered in the pool's registry"
                ),
            });
        }
        let state = module.encode_state().map_err(|e| PoolError::Codec {
            what: format!("module '{key}'"),
            message: e.to_string(),
        })?;
        let mut sent = HashMap::new();
        for &name in module.attribute_names() {
            let bytes = module.get_attribute(name).map_err(|e| PoolError::Codec {
                what: format!("module '{key}'"),
                message: e.to_string(),
            })?;
            let hash = xxhash_rust::xxh3::xxh3_64(&bytes);
            sent.insert(name, (hash, Held::Bytes(Arc::new(bytes.into_owned()))));
        }
        self.modules.retain(|m| m.key != key);
        let slot = self.driver.insert(key, module);
        let state = Arc::new(state);
        self.modules.push(ModuleRecord {
            key: key.to_string(),
            type_name,
            state: state.clone(),
            sent,
            slot: slot.clone(),
        });
        if self.workers.is_empty() {
            return Ok(slot);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let msg = ToWorker::AddModule {
            seq,
            key: key.to_string(),
            type_name: type_name.to_string(),
            state: ByteBuf::from(state.as_slice().to_vec()),
        };
        let frame = vec![Chunk::Shared(Arc::new(encode_frame(&msg)?))];
        if let Err(e) = self.broadcast_and_wait(key, frame, seq) {
            self.modules.retain(|m| m.key != key);
            self.driver.remove(key);
            return Err(e);
        }
        Ok(slot)
    }

    pub fn remove_module(&mut self, key: &str) -> Result<(), PoolError> {
        if !self.modules.iter().any(|m| m.key == key) {
            return Err(self.no_such_module(key));
        }
        self.modules.retain(|m| m.key != key);
        self.driver.remove(key);
        self.spare.retain(|(k, _), _| k != key);
        if self.workers.is_empty() {
            return Ok(());
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let frame = vec![Chunk::Shared(Arc::new(encode_frame(
            &ToWorker::RemoveModule {
                seq,
                key: key.to_string(),
            },
        )?))];
        self.broadcast_and_wait(key, frame, seq)
    }

    fn no_such_module(&self, key: &str) -> PoolError {
        PoolError::NoSuchModule {
            key: key.to_string(),
            have: self.driver.keys().join(", "),
        }
    }

    pub fn slot(&self, key: &str) -> Option<Slot> {
        self.driver.slot(key).cloned()
    }

    /// Pushes changed dynamic attributes. `only`: one module (by key) and, if
    /// given, only those attributes; `source`: read values from this module
    /// instead of locking the driver's copy (for modules synchronizing themselves).
    pub fn synchronize(
        &mut self,
        only: Option<(&str, Option<&[&str]>)>,
        source: Option<&dyn ErasedModule>,
    ) -> Result<SyncReport, PoolError> {
        let t0 = Instant::now();
        let mut report = SyncReport::default();
        if let Some((key, _)) = only {
            if !self.modules.iter().any(|m| m.key == key) {
                return Err(self.no_such_module(key));
            }
        }
        let n_live = self.workers.iter().filter(|w| w.alive()).count();
        // Large values go as shared memory when every live worker can take a
        // descriptor; the rest in frames.
        let by_file = n_live > 0
            && self
                .workers
                .iter()
                .filter_map(|w| w.conn.as_ref())
                .all(|c| c.passes_fds());
        for i in 0..self.modules.len() {
            let rec = &self.modules[i];
            let spare = &mut self.spare;
            let changed: Changed = {
                // Reads each attribute while the module is locked; a changed value is
                // copied once, into a memory file (large) or a buffer (small).
                let mut read = |m: &dyn ErasedModule| -> Result<Changed, PoolError> {
                    let mut out = Vec::new();
                    for &name in m.attribute_names() {
                        if let Some((_, Some(list))) = only {
                            if !list.contains(&name) {
                                continue;
                            }
                        }
                        let bytes = m.get_attribute(name).map_err(|e| PoolError::Codec {
                            what: format!("module '{}'", rec.key),
                            message: e.to_string(),
                        })?;
                        let h = xxhash_rust::xxh3::xxh3_64(&bytes);
                        if rec.sent.get(name).map(|(old, _)| *old) == Some(h) {
                            continue;
                        }
                        let held = if by_file && bytes.len() >= SHARED_MIN {
                            let reuse = spare.remove(&(rec.key.clone(), name));
                            let fd = memory_file(&bytes, reuse).map_err(|e| {
                                PoolError::io(format!("sharing {}.{name}", rec.key), e)
                            })?;
                            Held::File {
                                fd,
                                len: bytes.len(),
                            }
                        } else {
                            Held::Bytes(Arc::new(bytes.into_owned()))
                        };
                        out.push((name, h, held));
                    }
                    Ok(out)
                };
                match only {
                    Some((key, _)) if key != rec.key => continue,
                    Some((_, _)) => match source {
                        Some(m) => read(m)?,
                        None => read(&**rec.slot.lock())?,
                    },
                    None => {
                        let guard = rec.slot.lock();
                        if guard.self_synchronizing() {
                            continue;
                        }
                        read(&**guard)?
                    }
                }
            };
            if let Some((_, Some(list))) = only {
                let declared = match source {
                    Some(m) => m.attribute_names(),
                    None => rec.slot.lock().attribute_names(),
                };
                for name in list {
                    if !declared.contains(name) {
                        return Err(PoolError::Codec {
                            what: format!("module '{}'", rec.key),
                            message: format!(
                                "no dynamic attribute '{name}' (dynamic: {})",
                                declared.join(", ")
                            ),
                        });
                    }
                }
            }
            if changed.is_empty() {
                continue;
            }
            let attrs: Vec<&'static str> = changed.iter().map(|c| c.0).collect();
            let key = rec.key.clone();
            report.modules += 1;
            report.attributes += changed.len();
            report
                .names
                .extend(attrs.iter().map(|a| format!("{key}.{a}")));
            let held = changed;
            if n_live > 0 {
                let in_memory: Vec<(&str, &Arc<Vec<u8>>)> = held
                    .iter()
                    .filter_map(|(n, _, v)| match v {
                        Held::Bytes(b) => Some((*n, b)),
                        Held::File { .. } => None,
                    })
                    .collect();
                if !in_memory.is_empty() {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    let frame = attribute_frame(seq, &key, &in_memory)?;
                    report.bytes += frame.iter().map(|p| p.bytes().len()).sum::<usize>() * n_live;
                    self.broadcast_and_wait(&key, frame, seq)?;
                }
                for (n, _, v) in &held {
                    if let Held::File { fd, len } = v {
                        let seq = self.next_seq;
                        self.next_seq += 1;
                        let frame = shared_attribute_frame(seq, &key, n, fd, *len)?;
                        report.bytes += (frame.bytes().len() + len) * n_live;
                        self.broadcast_and_wait(&key, vec![frame], seq)?;
                    }
                }
            }
            let rec = &mut self.modules[i];
            for (n, h, v) in held {
                if let Some((_, Held::File { fd, .. })) = rec.sent.insert(n, (h, v)) {
                    // No worker needs the old value any more: keep its pages warm for
                    // the next value of this attribute.
                    if Arc::strong_count(&fd) == 1 {
                        self.spare.insert((key.clone(), n), fd);
                    }
                }
            }
        }
        report.elapsed = t0.elapsed();
        self.sync_totals.add(&report);
        Ok(report)
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            workers: self
                .workers
                .iter()
                .map(|w| WorkerStats {
                    id: w.id,
                    pid: w.pid,
                    alive: w.alive(),
                    tasks: w.tasks_run,
                    failed: w.tasks_failed,
                    busy: Duration::from_nanos(w.busy_ns),
                    restarts: w.restarts,
                    max_in_flight: w.max_in_flight,
                })
                .collect(),
            retries: self.retries,
            timeouts: self.timeouts,
            refused_handshakes: self.refused.len() as u64,
            losses: self.losses.clone(),
            sync: self.sync_totals.clone(),
            start_time: self.start_time,
        }
    }

    pub fn shutdown(&mut self) {
        for w in &mut self.workers {
            if w.alive() {
                w.seal_batch();
                if let Ok(f) = encode_frame(&ToWorker::Shutdown) {
                    w.out.push_back(Chunk::Own(f));
                }
                if let Some(c) = w.conn.as_mut() {
                    let _ = c.set_nonblocking(false);
                }
                let _ = w.flush();
            }
            w.conn = None;
        }
        if let Some(mut l) = self.launcher.take() {
            l.shutdown(Duration::from_secs(2));
        }
        self.endpoint = None;
    }
}

/// Task ids are sequential numbers: hashing them with SipHash is wasted work.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // Spread sequential ids over the table's buckets.
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdHash = std::hash::BuildHasherDefault<IdHasher>;

/// Changed attributes: (name, hash, the value as it will be held).
type Changed = Vec<(&'static str, u64, Held)>;

/// A `SetAttributes` frame as shared pieces: small encoded prefixes between the
/// attribute values, which are not copied.
fn attribute_frame(
    seq: u64,
    key: &str,
    values: &[(&str, &Arc<Vec<u8>>)],
) -> Result<Vec<Chunk>, PoolError> {
    let refs: Vec<(&str, &[u8])> = values.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let prefixes = set_attributes_pieces(seq, key, &refs)?;
    let mut out = Vec::with_capacity(2 * values.len() + 1);
    for (i, p) in prefixes.into_iter().enumerate() {
        out.push(Chunk::Shared(Arc::new(p)));
        if let Some((_, v)) = values.get(i) {
            out.push(Chunk::Shared(Arc::clone(v)));
        }
    }
    Ok(out)
}

/// A `SetAttributesShared` frame for one value held in a memory file.
fn shared_attribute_frame(
    seq: u64,
    key: &str,
    name: &str,
    fd: &Arc<OwnedFd>,
    len: usize,
) -> Result<Chunk, PoolError> {
    let msg = ToWorker::SetAttributesShared {
        seq,
        key: key.to_string(),
        attributes: vec![(name.to_string(), len as u64)],
    };
    Ok(Chunk::SharedFd(Arc::new(encode_frame(&msg)?), fd.clone()))
}

fn refuse(conn: &mut dyn Connection, reason: &str) {
    if let Ok(frame) = encode_frame(&ToWorker::Refused {
        reason: reason.to_string(),
    }) {
        let _ = conn.set_nonblocking(false);
        let _ = conn.write_all(&frame);
    }
}

fn message_name(m: &FromWorker) -> &'static str {
    match m {
        FromWorker::Hello(_) => "Hello",
        FromWorker::Ack { .. } => "Ack",
        FromWorker::Done { .. } => "Done",
        FromWorker::Failed { .. } => "Failed",
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.shutdown();
    }
}
