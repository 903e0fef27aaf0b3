//! The life of worker slots: launch, greeting, state replay, loss, replacement.
//!
//! A slot is `Starting` from its launch until its process greets, `Live` while it
//! serves, `Delayed` while a replacement waits out its backoff, `Down` when nothing
//! will run there again. Nothing here waits: a launched process is watched through
//! the launcher (its exit is reported at once) and through its deadline, and its
//! greeting arrives through the door like any other connection's.
//!
//! A worker is *ready* once it acknowledged every frame of its replay. A slot may
//! need at most `max_restarts` replacements in a row before one is ready; beyond
//! that, or when no worker can be launched any more, the pool is broken and every
//! call says so.

use super::{Core, Phase, TaskState, Worker, MAX_LOSSES};
use crate::error::PoolError;
use crate::events::{LossCause, PoolEvent, WorkerExit};
use crate::handshake::{Admission, Expect, Refusal, ACCEPTS_PER_TURN};
use crate::launch::SpawnError;
use crate::stats::WorkerLoss;
use crate::transport::Connection;
use agox_wire::{FrameReader, Hello, PROTOCOL_VERSION};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// How long the coordinator waits for a lost worker's exit status (it killed the
/// process, so the status follows within microseconds).
const EXIT_WAIT: Duration = Duration::from_millis(200);

/// Pause before the second replacement in a row; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause between replacements.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Pause in accepting after a full burst of [`ACCEPTS_PER_TURN`] connections: at
/// most 16 new connections per millisecond take the loop's time.
const ACCEPT_PAUSE: Duration = Duration::from_millis(1);

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
            let worker = self.workers.iter().find(|w| !w.alive()).map_or(0, |w| w.id);
            self.start_error = Some(PoolError::Spawn {
                worker,
                message: reason.clone(),
            });
        }
        self.emit(PoolEvent::PoolBroken {
            reason: reason.clone(),
        });
        self.broken = Some(reason);
        for w in &mut self.workers {
            if !matches!(w.phase, Phase::Live) {
                w.phase = Phase::Down;
            }
        }
    }

    /// Launches a process for slot `w`.
    pub(super) fn launch_slot(&mut self, w: usize) {
        let Some(launcher) = self.launcher.as_mut() else {
            return;
        };
        let id = self.workers[w].id;
        let attempt = self.workers[w].attempt;
        match launcher.spawn(id) {
            Ok(pid) => {
                let now = Instant::now();
                let worker = &mut self.workers[w];
                worker.pid = pid;
                worker.phase = Phase::Starting {
                    deadline: now + self.cfg.connect_timeout,
                };
                worker.launched = now;
                worker.ready = false;
                worker.replay = None;
                if attempt > 0 {
                    worker.restarts += 1;
                }
                self.emit(PoolEvent::WorkerSpawned {
                    worker: id,
                    pid,
                    attempt,
                });
            }
            Err(SpawnError::Gone(why)) => {
                self.break_pool(format!("cannot launch worker {id}: {why}"));
            }
            Err(SpawnError::Failed(why)) => {
                if self.starting {
                    self.break_pool(format!("cannot launch worker {id}: {why}"));
                } else {
                    self.workers[w].last_fate = Some(format!("could not be launched: {why}"));
                    self.workers[w].phase = Phase::Down;
                    self.schedule_replacement(w);
                }
            }
        }
    }

    /// Accepts waiting connections (a bounded number per turn) into the door.
    pub(super) fn accept_connections(&mut self) {
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(endpoint) = self.endpoint.as_ref() else {
                return;
            };
            let Ok(conn) = endpoint.accept(Duration::ZERO) else {
                return;
            };
            // A connection from a process this pool launched is never pushed out
            // by a crowd of strangers.
            let ours = conn.peer_pid().is_some_and(|pid| {
                self.workers
                    .iter()
                    .any(|w| w.pid == pid && matches!(w.phase, Phase::Starting { .. }))
            });
            let fd = conn.raw_fd();
            let my_uid = self.my_uid;
            for refusal in self.door.admit(conn, my_uid, ours) {
                self.refused(refusal);
            }
            // A worker greets right after connecting, and a flood's connections
            // are often closed already: read at once instead of a poll later.
            if self.door.holds(fd) {
                self.greeting(fd);
            }
        }
        // A full burst: more are probably waiting. They wait in the backlog (a
        // flooder's connect blocks there) while the loop serves its workers.
        self.next_accept = Instant::now() + ACCEPT_PAUSE;
    }

    /// Reads a waiting connection's greeting; welcomes a worker into its slot.
    pub(super) fn greeting(&mut self, fd: RawFd) {
        let waiting: Vec<u32> = self
            .workers
            .iter()
            .filter(|w| matches!(w.phase, Phase::Starting { .. }))
            .map(|w| w.id)
            .collect();
        let expect = Expect {
            token: &self.token,
            fingerprint: self.fingerprint,
            protocol: PROTOCOL_VERSION,
            waiting: &waiting,
            pool_size: self.cfg.workers,
        };
        match self.door.readable(fd, &expect) {
            None => {}
            Some(Admission::Refused(r)) => self.refused(r),
            Some(Admission::Welcome(hello, conn)) => {
                if let Some(w) = self.workers.iter().position(|w| w.id == hello.worker_id) {
                    self.attach(w, &hello, conn);
                }
            }
        }
    }

    /// Counts a refusal. A refused peer holding the token for a slot the pool
    /// waits for is one of its own workers, built from another program: waiting
    /// longer will not help.
    fn refused(&mut self, refusal: Refusal) {
        self.door.record(&refusal.reason);
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

    /// Gives slot `w` its greeted connection and replays the pool's state into it.
    fn attach(&mut self, w: usize, hello: &Hello, conn: Box<dyn Connection>) {
        let now = Instant::now();
        let wid = self.workers[w].id;
        let worker = &mut self.workers[w];
        worker.pid = hello.pid;
        worker.conn = Some(conn);
        worker.phase = Phase::Live;
        worker.heard = now;
        worker.reader = FrameReader::new(self.cfg.max_frame);
        worker.out.clear();
        worker.out_off = 0;
        worker.batch.clear();
        let first = self.next_seq;
        let (frames, last) = match self.replay(wid) {
            Ok(r) => r,
            Err(e) => {
                self.break_pool(format!("cannot encode the state for worker {wid}: {e}"));
                return;
            }
        };
        match last {
            None => self.worker_ready(w),
            Some(last) => {
                let worker = &mut self.workers[w];
                worker.replay = Some((first.min(last), last));
                worker.out.extend(frames);
                if let Err(e) = worker.flush() {
                    self.worker_lost(w, LossCause::Io(format!("replaying state: {e}")));
                }
            }
        }
    }

    /// Slot `w` acknowledged its whole replay: it is whole again.
    pub(super) fn worker_ready(&mut self, w: usize) {
        let worker = &mut self.workers[w];
        worker.replay = None;
        worker.ready = true;
        worker.attempt = 0;
        let (id, pid, after) = (worker.id, worker.pid, worker.launched.elapsed());
        self.emit(PoolEvent::WorkerReady {
            worker: id,
            pid,
            after,
        });
    }

    /// The first acknowledgement slot `w` owes, if any: when it was asked.
    pub(super) fn owes_since(&self, w: &Worker) -> Option<std::time::Instant> {
        if !w.alive() {
            return None;
        }
        let broadcast = self
            .acks
            .values()
            .filter(|a| a.remaining.contains(&w.id))
            .map(|a| a.sent)
            .min();
        let replay = w.replay.map(|_| w.launched);
        match (broadcast, replay) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A worker died, misbehaved or hung: kill it, record why, retry or fail the
    /// tasks it held, and replace it.
    pub(crate) fn worker_lost(&mut self, w: usize, cause: LossCause) {
        let wid = self.workers[w].id;
        let pid = self.workers[w].pid;
        let exit = match self.exits.remove(&pid) {
            Some(e) => Some(e),
            None => self.launcher.as_mut().and_then(|l| {
                l.kill(pid);
                l.wait_exit(pid, EXIT_WAIT)
            }),
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
        let worker = &mut self.workers[w];
        if !worker.ready && worker.attempt > 0 {
            self.failed_replacements += 1;
        }
        worker.last_fate = Some(fate.clone());
        worker.conn = None;
        worker.phase = Phase::Down;
        worker.out.clear();
        worker.out_off = 0;
        worker.batch.clear();
        worker.replay = None;
        worker.reader = FrameReader::new(self.cfg.max_frame);
        // Tasks it held: retry within budget, in their original order. A worker
        // that never acknowledged its replay ran none of them (they were queued
        // behind it): those attempts do not count.
        // Pinned tasks not sent yet stay queued for the slot's next process; those
        // in flight fail (in `retry_or_fail`): they belonged to this process.
        let ran = worker.ready;
        let held = std::mem::take(&mut worker.in_flight);
        let mut requeue = Vec::new();
        for id in held {
            if !ran {
                if let Some(task) = self.tasks.get_mut(&id) {
                    task.attempts = task.attempts.saturating_sub(1);
                }
            }
            if self.retry_or_fail(id, wid, &fate, None) {
                requeue.push(id);
            }
        }
        for id in requeue.into_iter().rev() {
            self.queue.push_front(id);
        }
        for wait in self.acks.values_mut() {
            wait.remaining.remove(&wid);
        }
        self.schedule_replacement(w);
    }

    /// Queues task `id` again if its retry budget allows (true), else fails it.
    /// `timeout`: it timed out after this long (else its worker was lost).
    pub(super) fn retry_or_fail(
        &mut self,
        id: u64,
        wid: u32,
        fate: &str,
        timeout: Option<Duration>,
    ) -> bool {
        let Some(task) = self.tasks.get_mut(&id) else {
            return false;
        };
        if matches!(task.state, TaskState::Finished(_)) {
            return false;
        }
        if task.pin.is_some() || task.attempts > self.cfg.max_retries {
            let error = match timeout {
                Some(after) => PoolError::Timeout {
                    function: task.function.to_string(),
                    index: task.index,
                    worker: wid,
                    after,
                    attempts: task.attempts,
                },
                None => PoolError::WorkerLost {
                    function: task.function.to_string(),
                    index: task.index,
                    worker: wid,
                    attempts: task.attempts,
                    fate: fate.to_string(),
                },
            };
            let event = PoolEvent::TaskAbandoned {
                function: task.function.to_string(),
                index: task.index,
                error: error.to_string(),
            };
            task.state = TaskState::Finished(Err(error));
            self.abandoned += 1;
            self.emit(event);
            return false;
        }
        task.state = TaskState::Queued;
        let event = PoolEvent::TaskRetried {
            function: task.function.to_string(),
            index: task.index,
            worker: wid,
            attempts: task.attempts,
        };
        self.retries += 1;
        self.emit(event);
        true
    }

    /// Launches a replacement for slot `w` now or after a backoff, within the
    /// slot's budget of replacements in a row; beyond it the pool is broken.
    fn schedule_replacement(&mut self, w: usize) {
        let id = self.workers[w].id;
        if self.starting {
            let fate = self.workers[w].last_fate.clone().unwrap_or_default();
            let message = format!(
                "{fate} before the pool started (refused so far: {})",
                recent_or_none(&self.door.recent())
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
        let worker = &mut self.workers[w];
        if worker.ready {
            // A worker that served was lost: a fresh row of replacements.
            worker.attempt = 0;
        }
        worker.ready = false;
        worker.attempt += 1;
        let attempt = worker.attempt;
        if attempt > self.cfg.max_restarts {
            let fate = worker.last_fate.clone().unwrap_or_default();
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
        self.workers[w].phase = Phase::Delayed {
            at: Instant::now() + delay,
        };
        self.emit(PoolEvent::ReplacementDelayed {
            worker: id,
            attempt,
            delay,
        });
    }

    /// Acts on the exits the launcher reported: a starting worker that ended is
    /// lost at once; a live one is read to its end (its last answers count).
    pub(super) fn reap_exits(&mut self) {
        let Some(launcher) = self.launcher.as_mut() else {
            return;
        };
        launcher.collect();
        let exits = launcher.take_exits();
        // Forked workers die with the fork server (parent-death signal), and no
        // replacement can be launched: the pool cannot keep its worker count.
        if let Some(why) = launcher.gone().map(str::to_string) {
            self.break_pool(why);
        }
        for (pid, exit) in exits {
            self.note_exit(pid, exit);
        }
    }

    fn note_exit(&mut self, pid: u32, exit: WorkerExit) {
        let Some(w) = self.workers.iter().position(|w| w.pid == pid) else {
            return;
        };
        match self.workers[w].phase {
            Phase::Starting { .. } => {
                self.exits.insert(pid, exit);
                self.worker_lost(w, LossCause::ExitedBeforeHandshake);
            }
            Phase::Live => {
                self.exits.insert(pid, exit);
                self.read_worker(w);
                if self.workers[w].alive() && self.workers[w].pid == pid {
                    self.worker_lost(w, LossCause::ConnectionClosed);
                }
            }
            Phase::Delayed { .. } | Phase::Down => {}
        }
        // Only exits of processes being handled are kept.
        self.exits.remove(&pid);
    }

    /// Deadlines: silent connections, workers that never greet, delayed
    /// replacements, task timeouts and workers that stopped answering.
    pub(super) fn check_deadlines(&mut self) {
        let now = Instant::now();
        for refusal in self.door.expire(now) {
            self.refused(refusal);
        }
        for w in 0..self.workers.len() {
            match self.workers[w].phase {
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
        for w in 0..self.workers.len() {
            let worker = &self.workers[w];
            // Only the head of a worker's window is running; the rest wait behind it.
            if let Some(since) = self.head_started(worker) {
                if now.duration_since(since) > limit {
                    self.task_timed_out(w, limit);
                }
                continue;
            }
            if let Some(owed) = self.owes_since(worker) {
                if now.duration_since(owed.max(worker.heard)) > limit {
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
        let Some(id) = self.workers[w].in_flight.pop_front() else {
            return;
        };
        let wid = self.workers[w].id;
        let Some(task) = self.tasks.get(&id) else {
            return;
        };
        let (function, index) = (task.function.to_string(), task.index);
        self.timeouts += 1;
        self.emit(PoolEvent::TaskTimedOut {
            function: function.clone(),
            index,
            worker: wid,
            after: limit,
        });
        self.worker_lost(
            w,
            LossCause::TaskTimeout {
                function,
                index,
                after: limit,
            },
        );
        let fate = self.workers[w].last_fate.clone().unwrap_or_default();
        // Ahead of the tasks requeued from behind it: it was first.
        if self.retry_or_fail(id, wid, &fate, Some(limit)) {
            self.queue.push_front(id);
        }
    }
}

fn recent_or_none(recent: &[String]) -> String {
    if recent.is_empty() {
        "none".into()
    } else {
        recent.join("; ")
    }
}
