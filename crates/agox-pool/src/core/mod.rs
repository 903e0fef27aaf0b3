//! The coordinator's engine: worker slots, the task queue, the event loop, state
//! replay and attribute synchronization.
//!
//! All socket I/O happens on the thread that calls the pool, with non-blocking
//! sockets and `poll`: a result is read by the thread that waits for it, with no
//! hand-off between threads on the critical path. Progress is made whenever a pool
//! call is running (`map`, `get`, `synchronize`, ...); tasks submitted beyond the
//! workers' windows wait in the queue until then.
//!
//! `sync` holds the module records and broadcasts, `supervise` the life of worker
//! slots (launch, handshake, loss, replacement), `handshake` (beside this module)
//! the connections waiting for their greeting.

mod supervise;
mod sync;

use crate::config::{Launcher as LauncherConfig, PoolConfig};
use crate::error::{PoolError, TaskFailure, WorkerName};
use crate::events::{LossCause, PoolEvent};
use crate::handshake::Door;
use crate::launch::{ExecLauncher, ForkServer, LaunchInfo, Launcher};
use crate::module::ModuleStore;
use crate::registry::{task_seed, Registry, TaskContext};
use crate::stats::{PoolStats, SyncTotals, WorkerLoss, WorkerStats};
use crate::transport::{Connection, Endpoint, UnixEndpoint};
use agox_wire::{
    decode, encode_frame, encode_frame_into, FrameReader, FromWorker, ToWorker, ToWorkerRef,
};
use serde_bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sync::{AckWait, ModuleRecord};

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

/// Where a worker slot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connected and serving (`conn` is set).
    Live,
    /// A process was launched and has not greeted yet; given up on at `deadline`.
    Starting { deadline: Instant },
    /// A replacement will be launched at `at` (the previous one failed too).
    Delayed { at: Instant },
    /// Nothing runs and nothing will be launched (the pool is broken or stopped).
    Down,
}

struct Worker {
    id: u32,
    pid: u32,
    conn: Option<Box<dyn Connection>>,
    phase: Phase,
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
    /// When the current process was launched.
    launched: Instant,
    /// Replacements in a row not yet followed by a ready worker.
    attempt: u32,
    /// Sequence numbers of the frames replayed into this worker; it is ready once
    /// the last is acknowledged.
    replay: Option<(u64, u64)>,
    /// Greeted and acknowledged its replayed state.
    ready: bool,
    /// When it last sent something, or last was asked for an acknowledgement.
    heard: Instant,
    /// What became of the last process lost from this slot.
    last_fate: Option<String>,
}

impl Worker {
    fn new(id: u32, max_frame: usize) -> Self {
        let now = Instant::now();
        Worker {
            id,
            pid: 0,
            conn: None,
            phase: Phase::Down,
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
            launched: now,
            attempt: 0,
            replay: None,
            ready: false,
            heard: now,
            last_fate: None,
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

pub(crate) struct Core {
    cfg: PoolConfig,
    registry: Arc<Registry>,
    endpoint: Option<Box<dyn Endpoint>>,
    launcher: Option<Launcher>,
    token: String,
    /// The registry's fingerprint, which every worker's greeting must match.
    fingerprint: u64,
    my_uid: u32,
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
    abandoned: u64,
    workers_lost: u64,
    failed_replacements: u64,
    /// Connections waiting for their greeting; refusals.
    door: Door,
    /// New connections are not accepted before this instant: after a full burst
    /// the door closes for a moment, so a flood costs the loop a bounded share.
    next_accept: Instant,
    /// Why workers were lost (the most recent [`MAX_LOSSES`]).
    losses: VecDeque<WorkerLoss>,
    /// Exits reported for live or starting workers, until their loss is handled.
    exits: HashMap<u32, crate::events::WorkerExit>,
    /// While `start` waits for the first workers: a failure there ends the start.
    starting: bool,
    /// The error that ends `start`.
    start_error: Option<PoolError>,
    /// Set once the pool cannot keep its worker count: why.
    broken: Option<String>,
    start_time: Duration,
}

/// How many worker losses `PoolStats::losses` remembers.
const MAX_LOSSES: usize = 100;

fn random_token() -> String {
    let a: u128 = rand::random();
    let b: u128 = rand::random();
    format!("{a:032x}{b:032x}")
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
            fingerprint: registry.fingerprint(),
            my_uid: nix::unistd::geteuid().as_raw(),
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
            abandoned: 0,
            workers_lost: 0,
            failed_replacements: 0,
            door: Door::new(cfg.handshake_timeout),
            next_accept: Instant::now(),
            losses: VecDeque::new(),
            exits: HashMap::new(),
            starting: true,
            start_error: None,
            broken: None,
            start_time: Duration::ZERO,
            cfg,
        };
        if core.cfg.workers == 0 {
            core.starting = false;
            return Ok(core);
        }
        let endpoint = UnixEndpoint::create(core.cfg.socket_base.as_deref())
            .map_err(|e| PoolError::io("creating the pool socket", e))?;
        let info = LaunchInfo {
            address: endpoint.address(),
            token: core.token.clone(),
            max_frame: core.cfg.max_frame,
            socket_dir: endpoint.dir().to_path_buf(),
            memory_limit: core.cfg.worker_memory_mb.map(|mb| mb << 20),
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
        core.workers = (0..n)
            .map(|id| Worker::new(id, core.cfg.max_frame))
            .collect();
        for w in 0..core.workers.len() {
            core.launch_slot(w);
        }
        // Every worker greets (or the first failure ends the start).
        core.drive(|c| c.workers.iter().all(Worker::alive))?;
        core.starting = false;
        core.start_time = t0.elapsed();
        Ok(core)
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
        self.door.recent()
    }

    fn emit(&self, event: PoolEvent) {
        if let Some(sink) = &self.cfg.events {
            sink.emit(&event);
        }
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
                        Some(b) => {
                            let other = &self.workers[b];
                            w.in_flight.len() < other.in_flight.len()
                                || (w.in_flight.len() == other.in_flight.len()
                                    && self.head_started(w) > self.head_started(other))
                        }
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
                    self.worker_lost(w, LossCause::Io(format!("write failed: {e}")));
                }
            }
        }
        Ok(())
    }

    /// When the task at the head of a worker's window started running. Between
    /// workers with equally many tasks in flight, a task waits behind the head that
    /// started last: one that has already run long is the likelier straggler (a
    /// tiny task must not queue behind a long one while the other worker frees up).
    fn head_started(&self, w: &Worker) -> Option<Instant> {
        match self.tasks.get(w.in_flight.front()?)?.state {
            TaskState::Running { since } => Some(since),
            _ => None,
        }
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

    /// One turn of the event loop: dispatch, wait for readiness, read, handle,
    /// then act on deadlines (task timeouts, handshakes, replacements).
    fn turn(&mut self) -> Result<(), PoolError> {
        self.check_broken()?;
        self.dispatch()?;
        /// Who a polled descriptor belongs to.
        #[derive(Clone, Copy)]
        enum Owner {
            Worker(usize),
            Waiting,
            Door,
            Launcher,
        }
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(self.workers.len() + 4);
        let mut owners: Vec<Owner> = Vec::with_capacity(self.workers.len() + 4);
        let mut watch = |fd, events, owner| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            owners.push(owner);
        };
        for (i, w) in self.workers.iter().enumerate() {
            if let Some(c) = &w.conn {
                let mut events = libc::POLLIN;
                if w.wants_write() {
                    events |= libc::POLLOUT;
                }
                watch(c.raw_fd(), events, Owner::Worker(i));
            }
        }
        for fd in self.door.fds() {
            watch(fd, libc::POLLIN, Owner::Waiting);
        }
        // New connections: workers, and strangers who get a refusal.
        let now = Instant::now();
        if let Some(fd) = self
            .endpoint
            .as_ref()
            .and_then(|e| e.raw_fd())
            .filter(|_| now >= self.next_accept)
        {
            watch(fd, libc::POLLIN, Owner::Door);
        }
        if let Some(l) = &self.launcher {
            l.each_poll_fd(|fd| watch(fd, libc::POLLIN, Owner::Launcher));
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
        let mut door = false;
        let mut exits = false;
        for (pfd, owner) in fds.iter().zip(owners) {
            if pfd.revents == 0 {
                continue;
            }
            match owner {
                Owner::Worker(w) => {
                    if pfd.revents & libc::POLLOUT != 0 {
                        if let Err(e) = self.workers[w].flush() {
                            self.worker_lost(w, LossCause::Io(format!("write failed: {e}")));
                            continue;
                        }
                    }
                    if pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                        self.read_worker(w);
                    }
                }
                Owner::Waiting => self.greeting(pfd.fd),
                Owner::Door => door = true,
                Owner::Launcher => exits = true,
            }
        }
        // Waiting connections were served first: a flood of new ones cannot push
        // out a worker whose greeting has arrived.
        if door {
            self.accept_connections();
        }
        // Exits may also wait in the launcher's queue, gathered while it waited
        // for another worker's.
        let pending = self
            .launcher
            .as_ref()
            .is_some_and(|l| l.needs_polling() || l.has_exits());
        if exits || pending {
            self.reap_exits();
        }
        self.check_deadlines();
        self.check_broken()
    }

    fn poll_timeout_ms(&self) -> i32 {
        let now = Instant::now();
        let mut next = now + Duration::from_millis(250);
        let mut at = |t: Instant| next = next.min(t);
        if let Some(t) = self.cfg.task_timeout {
            for w in &self.workers {
                if let Some(since) = self.head_started(w) {
                    at(since + t);
                }
                if let Some(owed) = self.owes_since(w) {
                    at(owed.max(w.heard) + t);
                }
            }
        }
        for w in &self.workers {
            match w.phase {
                Phase::Starting { deadline } => at(deadline),
                Phase::Delayed { at: when } => at(when),
                Phase::Live | Phase::Down => {}
            }
        }
        if self.next_accept > now {
            at(self.next_accept);
        }
        if let Some(t) = self.door.next_deadline() {
            at(t);
        }
        let starting = self
            .workers
            .iter()
            .any(|w| matches!(w.phase, Phase::Starting { .. }));
        if starting && self.launcher.as_ref().is_some_and(Launcher::needs_polling) {
            at(now + Duration::from_millis(5));
        }
        // Round up, so a deadline has passed when poll returns.
        let left = next.saturating_duration_since(now);
        (left.as_micros().div_ceil(1000)).min(250) as i32
    }

    fn read_worker(&mut self, w: usize) {
        let mut msgs: Vec<FromWorker> = Vec::new();
        let mut lost: Option<LossCause> = None;
        {
            let worker = &mut self.workers[w];
            let Some(conn) = worker.conn.as_mut() else {
                return;
            };
            loop {
                match worker.reader.fill_from(conn) {
                    Ok(0) => {
                        lost = Some(LossCause::ConnectionClosed);
                        break;
                    }
                    Ok(_) => worker.heard = Instant::now(),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        lost = Some(LossCause::Io(format!("read failed: {e}")));
                        break;
                    }
                }
                loop {
                    match worker.reader.next_frame() {
                        Ok(Some(body)) => match decode::<FromWorker>(body) {
                            Ok(m) => msgs.push(m),
                            Err(e) => {
                                lost = Some(LossCause::Protocol(e.to_string()));
                                break;
                            }
                        },
                        Ok(None) => break,
                        Err(e) => {
                            lost = Some(LossCause::Protocol(e.to_string()));
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
        if let Some(cause) = lost {
            if self.workers[w].alive() {
                self.worker_lost(w, cause);
            }
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
                let broadcast = match self.acks.get_mut(&seq) {
                    Some(wait) => {
                        wait.remaining.remove(&wid);
                        if let Some(e) = &error {
                            wait.errors.push((wid, e.clone()));
                        }
                        true
                    }
                    None => false,
                };
                if let Some((first, last)) = self.workers[w].replay {
                    if (first..=last).contains(&seq) {
                        if let (Some(e), false) = (&error, broadcast) {
                            // The same registry built this state on the driver: a
                            // worker that cannot rebuild it never will.
                            self.break_pool(format!(
                                "worker {wid} cannot restore the pool's state: {e}"
                            ));
                        }
                        if seq == last {
                            self.worker_ready(w);
                        }
                    }
                }
            }
            FromWorker::Hello(_) => {
                self.worker_lost(w, LossCause::Protocol("second Hello".into()));
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

    // ----- counters --------------------------------------------------------

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
            abandoned: self.abandoned,
            refused_handshakes: self.door.refused,
            recent_refusals: self.door.recent(),
            workers_lost: self.workers_lost,
            failed_replacements: self.failed_replacements,
            losses: self.losses.iter().cloned().collect(),
            sync: self.sync_totals.clone(),
            start_time: self.start_time,
        }
    }

    pub fn shutdown(&mut self) {
        for w in &mut self.workers {
            w.phase = Phase::Down;
            // A polite goodbye where the socket takes it now; the launcher kills
            // whoever is left (a stopped worker must not stall the driver's exit).
            if w.alive() && w.out.is_empty() && w.batch.is_empty() {
                if let Ok(f) = encode_frame(&ToWorker::Shutdown) {
                    w.out.push_back(Chunk::Own(f));
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

impl Drop for Core {
    fn drop(&mut self) {
        self.shutdown();
    }
}
