//! The life of worker slots: launch, greeting, state replay, loss, replacement,
//! and the restart budget.
//!
//! A slot is `Starting` from its launch until its worker greets, `Live` while it
//! serves, `Delayed` while a replacement waits out its backoff, `Down` when nothing
//! will run there again. Nothing here waits: a launched process is watched through
//! the transport (its exit is reported at once) and through its deadline, and its
//! greeting arrives like any other connection's. Where the transport launches
//! nothing (workers started by `srun`, `ssh` or by hand), a `Starting` slot waits
//! for a worker to connect on its own; where a slot cannot be filled again at all
//! (MPI ranks), losing its worker breaks the pool.
//!
//! A worker is *ready* once it acknowledged every frame of its replay. A slot may
//! need at most `max_restarts` replacements in a row before one is ready; beyond
//! that, or when no worker can be launched any more, the pool is broken and every
//! call says so.

use super::{Core, MAX_LOSSES};
use crate::error::PoolError;
use crate::events::{LossCause, PoolEvent, WorkerExit};
use crate::handshake::{judge, Expect, Refusal};
use crate::launch::SpawnError;
use crate::sched::{Loss, Outcome};
use crate::stats::WorkerLoss;
use crate::transport::LinkId;
use agox_wire::{Hello, PROTOCOL_VERSION};
use std::time::{Duration, Instant};

/// How long the coordinator waits for a lost worker's exit status (it killed the
/// process, so the status follows within microseconds).
const EXIT_WAIT: Duration = Duration::from_millis(200);

/// Pause before the second replacement in a row; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause between replacements.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Where a worker slot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Connected and serving (`link` is set).
    Live,
    /// A worker was launched (or is awaited) and has not greeted yet; given up on
    /// at `deadline`.
    Starting { deadline: Instant },
    /// A replacement will be launched at `at` (the previous one failed too).
    Delayed { at: Instant },
    /// Nothing runs and nothing will be launched (the pool is broken or stopped).
    Down,
}

/// One worker slot.
pub(super) struct Slot {
    pub id: u32,
    pub pid: u32,
    /// The welcomed link of its worker.
    pub link: Option<LinkId>,
    pub phase: Phase,
    pub restarts: u32,
    /// When the current worker was launched.
    launched: Instant,
    /// Replacements in a row not yet followed by a ready worker.
    attempt: u32,
    /// Sequence numbers of the frames replayed into this worker; it is ready once
    /// the last is acknowledged.
    pub replay: Option<(u64, u64)>,
    /// Greeted and acknowledged its replayed state.
    ready: bool,
    /// When it last sent something, or last was asked for an acknowledgement.
    pub heard: Instant,
    /// What became of the last worker lost from this slot.
    last_fate: Option<String>,
}

impl Slot {
    pub fn new(id: u32) -> Self {
        let now = Instant::now();
        Slot {
            id,
            pid: 0,
            link: None,
            phase: Phase::Down,
            restarts: 0,
            launched: now,
            attempt: 0,
            replay: None,
            ready: false,
            heard: now,
            last_fate: None,
        }
    }

    /// When this slot next needs the loop's attention.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Starting { deadline } => Some(deadline),
            Phase::Delayed { at } => Some(at),
            Phase::Live | Phase::Down => None,
        }
    }

    pub fn stop(&mut self) {
        self.phase = Phase::Down;
        self.link = None;
    }
}

impl Core {
    /// Returns the error that ends the current call, if the start failed or the
    /// pool is broken.
    pub(super) fn check_broken(&mut self) -> Result<(), PoolError> {
        if let Some(e) = self.start_error.take() {
            return Err(e);
        }
        match &self.broken {
            Some(reason) => Err(PoolError::Broken {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The pool cannot keep its worker count: say so once, and from now on fail.
    pub(super) fn break_pool(&mut self, reason: String) {
        if self.broken.is_some() {
            return;
        }
        if self.starting && self.start_error.is_none() {
            let worker = self
                .slots
                .iter()
                .find(|s| s.link.is_none())
                .map_or(0, |s| s.id);
            self.start_error = Some(PoolError::Spawn {
                worker,
                message: reason.clone(),
            });
        }
        self.emit(PoolEvent::PoolBroken {
            reason: reason.clone(),
        });
        self.broken = Some(reason);
        for s in &mut self.slots {
            if !matches!(s.phase, Phase::Live) {
                s.phase = Phase::Down;
            }
        }
    }

    /// Launches a worker for slot `w` (or, where the transport launches nothing,
    /// waits for one to connect).
    pub(super) fn launch_slot(&mut self, w: usize) {
        let Some(transport) = self.transport.as_mut() else {
            return;
        };
        let id = self.slots[w].id;
        let attempt = self.slots[w].attempt;
        let spawned = if transport.launches() {
            transport.spawn(id).map(Some)
        } else {
            Ok(None)
        };
        match spawned {
            Ok(pid) => {
                let now = Instant::now();
                let slot = &mut self.slots[w];
                slot.pid = pid.unwrap_or(0);
                slot.phase = Phase::Starting {
                    deadline: now + self.cfg.connect_timeout,
                };
                slot.launched = now;
                slot.ready = false;
                slot.replay = None;
                if attempt > 0 {
                    slot.restarts += 1;
                }
                if let Some(pid) = pid {
                    self.emit(PoolEvent::WorkerSpawned {
                        worker: id,
                        pid,
                        attempt,
                    });
                }
            }
            Err(SpawnError::Gone(why)) => {
                self.break_pool(format!("cannot launch worker {id}: {why}"));
            }
            Err(SpawnError::Failed(why)) => {
                if self.starting {
                    self.break_pool(format!("cannot launch worker {id}: {why}"));
                } else {
                    self.slots[w].last_fate = Some(format!("could not be launched: {why}"));
                    self.slots[w].phase = Phase::Down;
                    self.schedule_replacement(w);
                }
            }
        }
    }

    /// A peer greeted: welcome it into its slot, or refuse it.
    pub(super) fn greeted(&mut self, link: LinkId, hello: Hello) {
        let waiting: Vec<u32> = self
            .slots
            .iter()
            .filter(|s| matches!(s.phase, Phase::Starting { .. }))
            .map(|s| s.id)
            .collect();
        let expect = Expect {
            token: &self.token,
            fingerprint: self.fingerprint,
            protocol: PROTOCOL_VERSION,
            waiting: &waiting,
        };
        let Some(t) = self.transport.as_mut() else {
            return;
        };
        match judge(&hello, &expect) {
            Err(refusal) => {
                t.refuse(link, &refusal.reason);
                self.refused(refusal);
            }
            Ok(()) => match t.welcome(link, self.cfg.workers) {
                Err(e) => self.refused(Refusal {
                    kind: crate::events::RefusalKind::Malformed,
                    reason: format!(
                        "cannot welcome worker {} (pid {}): {e}",
                        hello.worker_id, hello.pid
                    ),
                    authentic: None,
                }),
                Ok(()) => {
                    if let Some(w) = self.slots.iter().position(|s| s.id == hello.worker_id) {
                        self.attach(w, &hello, link);
                    }
                }
            },
        }
    }

    /// Counts a refusal. A refused peer holding the token for a slot the pool
    /// waits for is one of its own workers, built from another program: waiting
    /// longer will not help.
    pub(super) fn refused(&mut self, refusal: Refusal) {
        self.refusals.record(&refusal.reason);
        self.emit(PoolEvent::StrangerRefused {
            kind: refusal.kind,
            reason: refusal.reason.clone(),
        });
        if let Some(worker) = refusal.authentic {
            if self.starting {
                self.start_error.get_or_insert(PoolError::Handshake {
                    worker,
                    reason: refusal.reason.clone(),
                });
            }
            self.break_pool(format!("worker {worker} was refused: {}", refusal.reason));
        }
    }

    /// Gives slot `w` its welcomed link and replays the pool's state into it.
    fn attach(&mut self, w: usize, hello: &Hello, link: LinkId) {
        let now = Instant::now();
        let wid = self.slots[w].id;
        let slot = &mut self.slots[w];
        // A worker the pool launched is known by the pid it was given; one that
        // connected on its own, by the pid it announces.
        if slot.pid == 0 {
            slot.pid = hello.pid;
            slot.launched = now;
        }
        slot.link = Some(link);
        slot.phase = Phase::Live;
        slot.heard = now;
        self.by_link.insert(link, w);
        self.sched.open(w);
        let first = self.replica.peek_seq();
        let (frames, last) = match self.replica.replay(wid) {
            Ok(r) => r,
            Err(e) => {
                self.break_pool(format!("cannot encode the state for worker {wid}: {e}"));
                return;
            }
        };
        match last {
            None => self.worker_ready(w),
            Some(last) => {
                self.slots[w].replay = Some((first.min(last), last));
                if let Some(t) = self.transport.as_mut() {
                    t.queue(link, &frames);
                    if let Err(e) = t.flush(link) {
                        self.worker_lost(w, LossCause::Io(format!("replaying state: {e}")));
                    }
                }
            }
        }
    }

    /// Slot `w` acknowledged its whole replay: it is whole again.
    pub(super) fn worker_ready(&mut self, w: usize) {
        let slot = &mut self.slots[w];
        slot.replay = None;
        slot.ready = true;
        slot.attempt = 0;
        let (id, pid, after) = (slot.id, slot.pid, slot.launched.elapsed());
        self.emit(PoolEvent::WorkerReady {
            worker: id,
            pid,
            after,
        });
    }

    /// The first acknowledgement slot `s` owes, if any: when it was asked.
    pub(super) fn owes_since(&self, s: &Slot) -> Option<Instant> {
        s.link?;
        let broadcast = self.replica.owed_since(s.id);
        let replay = s.replay.map(|_| s.launched);
        match (broadcast, replay) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A worker died, misbehaved or hung: kill it, record why, retry or fail the
    /// tasks it held, and replace it. `timed_out`: its running task ran past this.
    pub(crate) fn worker_lost(&mut self, w: usize, cause: LossCause) {
        self.lose(w, cause, None);
    }

    fn lose(&mut self, w: usize, cause: LossCause, timed_out: Option<Duration>) {
        let wid = self.slots[w].id;
        let pid = self.slots[w].pid;
        let launched = self.transport.as_ref().is_some_and(|t| t.launches());
        let exit = match self.exits.remove(&pid) {
            Some(e) => Some(e),
            None if launched => self.transport.as_mut().and_then(|t| t.kill(pid, EXIT_WAIT)),
            None => None,
        };
        let mut reason = match exit {
            Some(e) => format!("{cause}, {e}"),
            None => cause.to_string(),
        };
        if let (Some(mb), Some(WorkerExit::Signal(libc::SIGABRT | libc::SIGKILL | libc::SIGSEGV))) =
            (self.cfg.worker_memory_mb, exit)
        {
            reason.push_str(&format!(
                " (workers may allocate {mb} MiB: an allocation beyond that aborts the worker)"
            ));
        }
        if self.losses.len() >= MAX_LOSSES {
            self.losses.pop_front();
        }
        self.losses.push_back(WorkerLoss {
            worker: wid,
            pid,
            cause: cause.clone(),
            exit,
            reason: reason.clone(),
        });
        self.workers_lost += 1;
        self.emit(PoolEvent::WorkerLost {
            worker: wid,
            pid,
            cause,
            exit,
        });
        let fate = format!("(pid {pid}): {reason}");
        let slot = &mut self.slots[w];
        if !slot.ready && slot.attempt > 0 {
            self.failed_replacements += 1;
        }
        slot.last_fate = Some(fate.clone());
        slot.phase = Phase::Down;
        slot.replay = None;
        if let Some(link) = slot.link.take() {
            self.by_link.remove(&link);
            if let Some(t) = self.transport.as_mut() {
                t.close(link);
            }
        }
        let ran = slot.ready;
        let outcomes = self.sched.lost(
            w,
            Loss {
                worker: wid,
                fate: &fate,
                ran,
                timed_out,
            },
        );
        for o in outcomes {
            self.emit(match o {
                Outcome::Retried {
                    function,
                    index,
                    attempts,
                } => PoolEvent::TaskRetried {
                    function,
                    index,
                    worker: wid,
                    attempts,
                },
                Outcome::Abandoned {
                    function,
                    index,
                    error,
                } => PoolEvent::TaskAbandoned {
                    function,
                    index,
                    error,
                },
            });
        }
        self.replica.forget(wid);
        self.schedule_replacement(w);
    }

    /// Launches a replacement for slot `w` now or after a backoff, within the
    /// slot's budget of replacements in a row; beyond it the pool is broken.
    fn schedule_replacement(&mut self, w: usize) {
        let id = self.slots[w].id;
        if self.starting {
            let fate = self.slots[w].last_fate.clone().unwrap_or_default();
            let message = format!(
                "{fate} before the pool started (refused so far: {})",
                recent_or_none(&self.refusals.recent())
            );
            self.start_error.get_or_insert(PoolError::Spawn {
                worker: id,
                message: message.clone(),
            });
            self.break_pool(format!("worker {id} {message}"));
            return;
        }
        if self.broken.is_some() {
            return;
        }
        if !self.transport.as_ref().is_some_and(|t| t.replaceable()) {
            let fate = self.slots[w].last_fate.clone().unwrap_or_default();
            self.break_pool(format!(
                "worker {id} was lost and this transport cannot replace it: {fate}"
            ));
            return;
        }
        let slot = &mut self.slots[w];
        if slot.ready {
            // A worker that served was lost: a fresh row of replacements.
            slot.attempt = 0;
        }
        slot.ready = false;
        slot.attempt += 1;
        slot.pid = 0;
        let attempt = slot.attempt;
        if attempt > self.cfg.max_restarts {
            let fate = slot.last_fate.clone().unwrap_or_default();
            self.break_pool(format!(
                "worker {id} was replaced {} time(s) in a row and no replacement became ready (max_restarts = {}); last: {fate}",
                attempt - 1,
                self.cfg.max_restarts
            ));
            return;
        }
        if attempt == 1 {
            self.launch_slot(w);
            return;
        }
        let delay = FIRST_BACKOFF
            .saturating_mul(1 << (attempt - 2).min(16))
            .min(MAX_BACKOFF);
        self.slots[w].phase = Phase::Delayed {
            at: Instant::now() + delay,
        };
        self.emit(PoolEvent::ReplacementDelayed {
            worker: id,
            attempt,
            delay,
        });
    }

    /// A launched worker ended: one that was starting is lost at once; a live one
    /// is read to its end (its last answers count).
    pub(super) fn note_exit(&mut self, pid: u32, exit: WorkerExit) {
        let Some(w) = self.slots.iter().position(|s| s.pid == pid) else {
            return;
        };
        match self.slots[w].phase {
            Phase::Starting { .. } => {
                self.exits.insert(pid, exit);
                self.worker_lost(w, LossCause::ExitedBeforeHandshake);
            }
            Phase::Live => {
                self.exits.insert(pid, exit);
                if let (Some(link), Some(t)) = (self.slots[w].link, self.transport.as_mut()) {
                    let mut events = Vec::new();
                    t.drain(link, &mut events);
                    for e in events {
                        self.on_event(e);
                    }
                }
                if self.slots[w].link.is_some() && self.slots[w].pid == pid {
                    self.worker_lost(w, LossCause::ConnectionClosed);
                }
            }
            Phase::Delayed { .. } | Phase::Down => {}
        }
        // Only exits of processes being handled are kept.
        self.exits.remove(&pid);
    }

    /// Deadlines: workers that never greet, delayed replacements, task timeouts
    /// and workers that stopped answering.
    pub(super) fn check_deadlines(&mut self) {
        let now = Instant::now();
        for w in 0..self.slots.len() {
            match self.slots[w].phase {
                Phase::Starting { deadline } if deadline <= now => {
                    let after = self.cfg.connect_timeout;
                    self.worker_lost(w, LossCause::NoHandshake { after });
                }
                Phase::Delayed { at } if at <= now && self.broken.is_none() => {
                    self.launch_slot(w);
                }
                _ => {}
            }
        }
        let Some(limit) = self.cfg.task_timeout else {
            return;
        };
        for w in self.sched.expired(now, limit) {
            self.task_timed_out(w, limit);
        }
        for w in 0..self.slots.len() {
            // Only the head of a worker's window is running; the rest wait behind it.
            if self.sched.head_started(w).is_some() {
                continue;
            }
            let s = &self.slots[w];
            if let Some(owed) = self.owes_since(s) {
                if now.duration_since(owed.max(s.heard)) > limit {
                    self.worker_lost(w, LossCause::Unresponsive { after: limit });
                }
            }
        }
    }

    /// The head task of worker `w` ran past the timeout: the worker is killed and
    /// replaced, and the task retried like one whose worker died (a stopped or
    /// wedged process is a fault of the worker); once its retries are spent it fails
    /// with `PoolError::Timeout`.
    fn task_timed_out(&mut self, w: usize, limit: Duration) {
        let Some((function, index)) = self.sched.head(w) else {
            return;
        };
        let wid = self.slots[w].id;
        self.timeouts += 1;
        self.emit(PoolEvent::TaskTimedOut {
            function: function.clone(),
            index,
            worker: wid,
            after: limit,
        });
        self.lose(
            w,
            LossCause::TaskTimeout {
                function,
                index,
                after: limit,
            },
            Some(limit),
        );
    }
}

fn recent_or_none(recent: &[String]) -> String {
    if recent.is_empty() {
        "none".into()
    } else {
        recent.join("; ")
    }
}
