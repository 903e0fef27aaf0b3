//! The coordinator's engine: the event loop that ties the scheduler
//! ([`crate::sched`], a pure state machine), the record of what workers hold (`replica`), the life of
//! worker slots (`supervise`) and module operations (`sync`) to a
//! [`Transport`](crate::transport) that moves the frames.
//!
//! All I/O happens on the thread that calls the pool: a turn of the loop hands
//! queued tasks to workers with room, asks the transport to wait for events
//! (`wait(timeout) -> events`) and acts on them, then on deadlines. A result is
//! read by the thread that waits for it, with no hand-off between threads.
//! Progress is made whenever a pool call is running (`map`, `get`,
//! `synchronize`, ...); tasks submitted beyond the workers' windows wait in the
//! queue until then.

pub(crate) mod replica;
mod supervise;
mod sync;

use crate::config::{Launcher as LauncherConfig, PoolConfig, TransportConfig};
use crate::error::{PoolError, TaskFailure, WorkerName};
use crate::events::{PoolEvent, WorkerExit};
use crate::handshake::Refusals;
use crate::launch::{ExecLauncher, ForkServer, LaunchInfo, Launcher};
use crate::module::ModuleStore;
use crate::registry::{Registry, TaskContext};
use crate::sched::{IdHash, Sched};
use crate::stats::{PoolStats, SyncTotals, WorkerLoss, WorkerStats};
use crate::transport::inproc::InProcess;
use crate::transport::stream::StreamTransport;
use crate::transport::{Bulk, Event, LinkId, TcpEndpoint, Transport, UnixEndpoint};
use agox_wire::{encode_frame_into, FromWorker, ToWorkerRef};
use replica::Replica;
use serde_bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use supervise::Slot;

pub(crate) struct Core {
    cfg: PoolConfig,
    registry: Arc<Registry>,
    /// `None` for an in-process pool (`workers == 0`), and after shutdown.
    transport: Option<Box<dyn Transport>>,
    token: String,
    /// The registry's fingerprint, which every worker's greeting must match.
    fingerprint: u64,
    sched: Sched,
    slots: Vec<Slot>,
    /// Welcomed link → slot.
    by_link: HashMap<LinkId, usize, IdHash>,
    replica: Replica,
    pub(crate) driver: ModuleStore,
    sync_totals: SyncTotals,
    timeouts: u64,
    workers_lost: u64,
    failed_replacements: u64,
    refusals: Refusals,
    /// Why workers were lost (the most recent [`MAX_LOSSES`]).
    losses: VecDeque<WorkerLoss>,
    /// Exits reported for live or starting workers, until their loss is handled.
    exits: HashMap<u32, WorkerExit>,
    /// While `start` waits for the first workers: a failure there ends the start.
    starting: bool,
    /// The error that ends `start`.
    start_error: Option<PoolError>,
    /// Set once the pool cannot keep its worker count: why.
    broken: Option<String>,
    start_time: Duration,
    /// Reused between turns.
    events: Vec<Event>,
    touched: Vec<usize>,
}

/// How many worker losses `PoolStats::losses` remembers.
const MAX_LOSSES: usize = 100;

fn random_token() -> String {
    let a: u128 = rand::random();
    let b: u128 = rand::random();
    format!("{a:032x}{b:032x}")
}

/// The launcher a stream transport uses, from the configuration.
fn launcher(
    cfg: &PoolConfig,
    registry: Arc<Registry>,
    info: LaunchInfo,
) -> Result<Option<Launcher>, PoolError> {
    Ok(match &cfg.launcher {
        LauncherConfig::Fork => Some(Launcher::Fork(
            ForkServer::start(registry, info)
                .map_err(|e| PoolError::io("forking the fork server", e))?,
        )),
        LauncherConfig::Command { program, args } => Some(Launcher::Exec(ExecLauncher::new(
            program.clone(),
            args.clone(),
            info,
        ))),
        LauncherConfig::External => None,
    })
}

/// Builds the configured transport (its endpoint, and its launcher if any).
fn transport(
    cfg: &PoolConfig,
    registry: Arc<Registry>,
    token: &str,
) -> Result<Box<dyn Transport>, PoolError> {
    let info = |address: String, socket_dir| LaunchInfo {
        address,
        token: token.to_string(),
        max_frame: cfg.max_frame,
        socket_dir,
        memory_limit: cfg.worker_memory_mb.map(|mb| mb << 20),
    };
    Ok(match &cfg.transport {
        TransportConfig::Unix => {
            let endpoint = UnixEndpoint::create(cfg.socket_base.as_deref())
                .map_err(|e| PoolError::io("creating the pool socket", e))?;
            use crate::transport::Endpoint;
            let launch = info(endpoint.address(), endpoint.dir().map(|d| d.to_path_buf()));
            let launcher = launcher(cfg, registry, launch)?;
            Box::new(StreamTransport::new(
                Box::new(endpoint),
                launcher,
                cfg.handshake_timeout,
                cfg.max_frame,
                Bulk::MemoryFiles,
            ))
        }
        TransportConfig::Tcp { listen } => {
            let endpoint = TcpEndpoint::bind(listen)
                .map_err(|e| PoolError::io("creating the pool's TCP endpoint", e))?;
            use crate::transport::Endpoint;
            let launcher = launcher(cfg, registry, info(endpoint.address(), None))?;
            Box::new(StreamTransport::new(
                Box::new(endpoint),
                launcher,
                cfg.handshake_timeout,
                cfg.max_frame,
                Bulk::Inline,
            ))
        }
        TransportConfig::InProcess => {
            Box::new(InProcess::new(registry, token.to_string(), cfg.max_frame))
        }
        #[cfg(feature = "mpi")]
        TransportConfig::Mpi => Box::new(crate::transport::mpi::MpiTransport::new(
            cfg.workers,
            cfg.max_frame,
            token,
        )?),
    })
}

impl Core {
    pub fn start(registry: Arc<Registry>, cfg: PoolConfig) -> Result<Core, PoolError> {
        cfg.validate().map_err(PoolError::Config)?;
        let t0 = Instant::now();
        let token = cfg.token.clone().unwrap_or_else(random_token);
        let mut core = Core {
            registry: registry.clone(),
            transport: None,
            fingerprint: registry.fingerprint(),
            token,
            sched: Sched::new(cfg.workers, cfg.seed, cfg.max_retries, cfg.max_window),
            slots: (0..cfg.workers as u32).map(Slot::new).collect(),
            by_link: HashMap::default(),
            replica: Replica::default(),
            driver: ModuleStore::default(),
            sync_totals: SyncTotals::default(),
            timeouts: 0,
            workers_lost: 0,
            failed_replacements: 0,
            refusals: Refusals::default(),
            losses: VecDeque::new(),
            exits: HashMap::new(),
            starting: true,
            start_error: None,
            broken: None,
            start_time: Duration::ZERO,
            events: Vec::new(),
            touched: Vec::new(),
            cfg,
        };
        if core.cfg.workers == 0 {
            core.starting = false;
            return Ok(core);
        }
        core.transport = Some(transport(&core.cfg, registry, &core.token)?);
        for w in 0..core.slots.len() {
            core.launch_slot(w);
        }
        // Every worker greets (or the first failure ends the start).
        core.drive(|c| c.slots.iter().all(|s| s.link.is_some()))?;
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
        self.transport.as_ref().and_then(|t| t.address())
    }

    pub fn worker_pids(&self) -> Vec<u32> {
        self.slots.iter().map(|s| self.process_of(s.pid)).collect()
    }

    fn process_of(&self, handle: u32) -> u32 {
        match &self.transport {
            Some(t) if handle != 0 => t.process_of(handle),
            _ => handle,
        }
    }

    pub fn set_task_timeout(&mut self, t: Option<Duration>) {
        self.cfg.task_timeout = t;
    }

    pub fn refusals(&self) -> Vec<String> {
        self.refusals.recent()
    }

    fn emit(&self, event: PoolEvent) {
        if let Some(sink) = &self.cfg.events {
            sink.emit(&event);
        }
    }

    fn slot_of(&self, link: LinkId) -> Option<usize> {
        self.by_link.get(&link).copied()
    }

    // ----- tasks -------------------------------------------------------------

    /// Queues one call of `function` per argument; returns the task ids in order.
    pub fn submit_call(
        &mut self,
        function: &str,
        args: Vec<Vec<u8>>,
        pin: Option<Vec<u32>>,
    ) -> Vec<u64> {
        let ids = self.sched.submit(function, args, pin);
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
        for &id in ids {
            let Some(task) = self.sched.task(id) else {
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
            let (function, index) = (task.function.to_string(), task.index);
            let res = match res {
                Ok(Ok(out)) => Ok(out),
                Ok(Err((kind, message))) => Err(PoolError::Task {
                    function,
                    index,
                    worker: WorkerName::Local,
                    kind: kind.into(),
                    message,
                }),
                Err(payload) => Err(PoolError::Task {
                    function,
                    index,
                    worker: WorkerName::Local,
                    kind: TaskFailure::Panic,
                    message: payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into()),
                }),
            };
            self.sched.finish_here(id, res);
        }
    }

    /// Takes a finished task's result (callers wait for `is_finished` first).
    pub fn take_result(&mut self, id: u64) -> Result<Vec<u8>, PoolError> {
        self.sched.take_result(id)
    }

    pub fn is_finished(&self, id: u64) -> bool {
        self.sched.is_finished(id)
    }

    /// Hands queued tasks to workers with room in their window and writes them.
    fn dispatch(&mut self) -> Result<(), PoolError> {
        let Some(t) = self.transport.as_mut() else {
            return Ok(());
        };
        let (slots, touched) = (&self.slots, &mut self.touched);
        self.sched.assign(Instant::now(), |w, id, task| {
            let Some(batch) = slots[w].link.and_then(|l| t.batch(l)) else {
                return Ok(());
            };
            let msg = ToWorkerRef::Run {
                task: id,
                function: &task.function,
                seed: task.seed,
                args: Bytes::new(&task.args),
            };
            encode_frame_into(&msg, batch)?;
            if touched.last() != Some(&w) {
                touched.push(w);
            }
            Ok::<(), PoolError>(())
        })?;
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for &w in &touched {
            let flushed = match (self.slots[w].link, self.transport.as_mut()) {
                (Some(link), Some(t)) => t.flush(link),
                _ => Ok(()),
            };
            if let Err(e) = flushed {
                self.worker_lost(w, crate::events::LossCause::Io(e));
            }
        }
        touched.clear();
        self.touched = touched;
        Ok(())
    }

    /// Runs the event loop until `done(self)` holds.
    pub fn drive(&mut self, mut done: impl FnMut(&Core) -> bool) -> Result<(), PoolError> {
        while !done(self) {
            self.turn()?;
        }
        Ok(())
    }

    /// One turn of the event loop: dispatch, wait for events, act on them, then
    /// on deadlines (task timeouts, handshakes, replacements).
    fn turn(&mut self) -> Result<(), PoolError> {
        self.check_broken()?;
        self.dispatch()?;
        let timeout = self.wait_timeout();
        let mut events = std::mem::take(&mut self.events);
        let waited = match self.transport.as_mut() {
            Some(t) => t.wait(timeout, &mut events),
            None => Ok(()),
        };
        // A process's exit may be reported in the same wait as its link's end:
        // known first, it names how the process ended in the loss.
        for event in &events {
            if let Event::Exited { pid, exit } = event {
                if self.slots.iter().any(|s| s.pid == *pid) {
                    self.exits.insert(*pid, *exit);
                }
            }
        }
        for event in events.drain(..) {
            self.on_event(event);
        }
        self.events = events;
        waited?;
        self.check_deadlines();
        self.check_broken()
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Message { link, msg } => {
                if let Some(w) = self.slot_of(link) {
                    self.slots[w].heard = Instant::now();
                    self.handle(w, msg);
                }
            }
            Event::Hello { link, hello } => self.greeted(link, hello),
            Event::Refused(r) => self.refused(r),
            Event::Lost { link, cause } => {
                if let Some(w) = self.slot_of(link) {
                    self.worker_lost(w, cause);
                }
            }
            Event::Exited { pid, exit } => self.note_exit(pid, exit),
            Event::LauncherGone(why) => self.break_pool(why),
        }
    }

    /// How long the transport may wait: until the next deadline, at most 250 ms.
    fn wait_timeout(&self) -> Duration {
        let now = Instant::now();
        let mut next = now + Duration::from_millis(250);
        let mut at = |t: Instant| next = next.min(t);
        if let Some(t) = self.cfg.task_timeout {
            if let Some(e) = self.sched.next_expiry(t) {
                at(e);
            }
            for (w, s) in self.slots.iter().enumerate() {
                if self.sched.head_started(w).is_none() {
                    if let Some(owed) = self.owes_since(s) {
                        at(owed.max(s.heard) + t);
                    }
                }
            }
        }
        for s in &self.slots {
            if let Some(t) = s.deadline() {
                at(t);
            }
        }
        if let Some(t) = self.transport.as_ref().and_then(|t| t.next_deadline()) {
            at(t);
        }
        next.saturating_duration_since(now)
    }

    fn handle(&mut self, w: usize, msg: FromWorker) {
        let wid = self.slots[w].id;
        let now = Instant::now();
        match msg {
            FromWorker::Done {
                task,
                output,
                busy_ns,
            } => self
                .sched
                .done(w, task, busy_ns, Ok(output.into_vec()), now),
            FromWorker::Failed {
                task,
                kind,
                message,
                busy_ns,
            } => {
                let (function, index) = self
                    .sched
                    .task(task)
                    .map(|t| (t.function.to_string(), t.index))
                    .unwrap_or_default();
                let error = PoolError::Task {
                    function,
                    index,
                    worker: WorkerName::Slot(wid),
                    kind: kind.into(),
                    message,
                };
                self.sched.done(w, task, busy_ns, Err(error), now)
            }
            FromWorker::Ack { seq, error } => {
                let broadcast = self.replica.ack(seq, wid, error.as_ref());
                if let Some((first, last)) = self.slots[w].replay {
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
                self.worker_lost(w, crate::events::LossCause::Protocol("second Hello".into()));
            }
        }
    }

    // ----- counters --------------------------------------------------------

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            workers: self
                .slots
                .iter()
                .zip(self.sched.lanes())
                .map(|(s, lane)| WorkerStats {
                    id: s.id,
                    pid: self.process_of(s.pid),
                    alive: s.link.is_some(),
                    tasks: lane.tasks_run,
                    failed: lane.tasks_failed,
                    busy: Duration::from_nanos(lane.busy_ns),
                    restarts: s.restarts,
                    max_in_flight: lane.max_in_flight,
                })
                .collect(),
            retries: self.sched.retries,
            timeouts: self.timeouts,
            abandoned: self.sched.abandoned,
            refused_handshakes: self.refusals.refused,
            recent_refusals: self.refusals.recent(),
            workers_lost: self.workers_lost,
            failed_replacements: self.failed_replacements,
            losses: self.losses.iter().cloned().collect(),
            sync: self.sync_totals.clone(),
            start_time: self.start_time,
        }
    }

    pub fn shutdown(&mut self) {
        for s in &mut self.slots {
            s.stop();
        }
        self.by_link.clear();
        if let Some(mut t) = self.transport.take() {
            t.shutdown(Duration::from_secs(2));
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.shutdown();
    }
}
