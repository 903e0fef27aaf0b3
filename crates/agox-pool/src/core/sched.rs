//! The scheduler: which task runs where, and what becomes of it. A pure state
//! machine — no sockets, no clock of its own (every call that needs the time is
//! given `now`), no processes — so its rules are unit-tested without workers.
//!
//! * **submit** queues one task per argument of a call; each gets its seed from
//!   (pool seed, call number, task index), never from the worker.
//! * **assign** hands queued tasks to workers with room in their window: pinned
//!   tasks to their own worker first, then the shared queue, oldest task first, each
//!   to the least loaded open worker (between equals, the one whose running task
//!   started last: one that has already run long is the likelier straggler).
//! * **done** records a result; **lost** takes back what a worker held (retried in
//!   submission order within the retry budget, else failed naming the worker's
//!   fate); **expired** names the workers whose running task outlived the timeout.
//!
//! The window: enough tasks in flight to hide the round trip behind tiny tasks, one
//! for long tasks so that none waits behind another while a worker idles. It is
//! judged per function from a running average of its reported run time.
//!
//! Choosing a worker costs O(log workers): the open workers are kept ordered by
//! (tasks in flight, start of their running task), so the least loaded is the first.

use crate::error::PoolError;
use crate::registry::task_seed;
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a task is.
#[derive(Debug)]
pub(crate) enum TaskState {
    Queued,
    /// In a worker's window; `since` is when it became the window's head (the
    /// task a worker runs is always the head), or when it was sent.
    Running {
        since: Instant,
    },
    Finished(Result<Vec<u8>, PoolError>),
}

/// One call of a function on one argument.
#[derive(Debug)]
pub(crate) struct Task {
    pub function: Arc<str>,
    /// Index of the function's run-time statistics.
    fn_index: usize,
    /// Index in its call.
    pub index: usize,
    pub seed: u64,
    pub args: Vec<u8>,
    /// How many times it was started.
    pub attempts: u32,
    pub pin: Option<u32>,
    pub state: TaskState,
}

/// One worker slot as the scheduler sees it.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    /// Takes tasks (a connected worker).
    open: bool,
    /// Tasks sent, in the order sent; the head is running.
    pub in_flight: VecDeque<u64>,
    /// Tasks only this slot may run, not sent yet.
    pinned: VecDeque<u64>,
    pub tasks_run: u64,
    pub tasks_failed: u64,
    pub busy_ns: u64,
    pub max_in_flight: usize,
}

/// What became of a task taken back from a lost worker.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Queued again.
    Retried {
        function: String,
        index: usize,
        attempts: u32,
    },
    /// Failed for good; `error` is what its caller receives.
    Abandoned {
        function: String,
        index: usize,
        error: String,
    },
}

/// Why a worker's tasks are taken back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Loss<'a> {
    /// The slot.
    pub worker: u32,
    /// What became of its process, for the error (`(pid 42): connection closed`).
    pub fate: &'a str,
    /// It acknowledged its replayed state, so the tasks it held could have run; a
    /// worker that never became ready ran none, and those attempts do not count.
    pub ran: bool,
    /// Its running task ran past this timeout (else the worker was lost).
    pub timed_out: Option<Duration>,
}

/// Ordering key of an open lane: fewest in flight first, then the running task
/// that started last, then the lowest slot.
type RoomKey = (usize, Reverse<Option<Instant>>, usize);

pub(crate) struct Sched {
    seed: u64,
    max_retries: u32,
    max_window: usize,
    tasks: HashMap<u64, Task, IdHash>,
    /// Unpinned tasks waiting, in submission order (ascending ids).
    queue: VecDeque<u64>,
    lanes: Vec<Lane>,
    /// Open lanes by load, with each lane's current key.
    room: BTreeSet<RoomKey>,
    keys: Vec<Option<RoomKey>>,
    /// Lanes with pinned tasks waiting.
    pinned_lanes: BTreeSet<usize>,
    fn_index: HashMap<Arc<str>, usize>,
    /// Smoothed run time per function (ns; `None` until first measured).
    fn_busy: Vec<Option<f64>>,
    /// Smoothed round trip (ns).
    rtt_ns: f64,
    next_task: u64,
    next_call: u64,
    pub retries: u64,
    pub abandoned: u64,
}

impl Sched {
    pub fn new(workers: usize, seed: u64, max_retries: u32, max_window: usize) -> Self {
        Sched {
            seed,
            max_retries,
            max_window: max_window.max(1),
            tasks: HashMap::default(),
            queue: VecDeque::new(),
            lanes: (0..workers).map(|_| Lane::default()).collect(),
            room: BTreeSet::new(),
            keys: vec![None; workers],
            pinned_lanes: BTreeSet::new(),
            fn_index: HashMap::new(),
            fn_busy: Vec::new(),
            rtt_ns: 60_000.0,
            next_task: 0,
            next_call: 0,
            retries: 0,
            abandoned: 0,
        }
    }

    pub fn lanes(&self) -> &[Lane] {
        &self.lanes
    }

    pub fn task(&self, id: u64) -> Option<&Task> {
        self.tasks.get(&id)
    }

    // ----- submit ------------------------------------------------------------

    /// Queues one task of `function` per argument (task `k` pinned to `pin[k]` when
    /// given); returns the ids in order. Pinned tasks for a slot outside the pool
    /// are not queued anywhere: the caller checks slots first.
    pub fn submit(
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
                    seed: task_seed(self.seed, call, index as u64),
                    args: a,
                    attempts: 0,
                    pin: pin_to,
                    state: TaskState::Queued,
                },
            );
            match pin_to {
                Some(w) => {
                    if let Some(lane) = self.lanes.get_mut(w as usize) {
                        lane.pinned.push_back(id);
                        self.pinned_lanes.insert(w as usize);
                    }
                }
                None if !self.lanes.is_empty() => self.queue.push_back(id),
                None => {}
            }
            ids.push(id);
        }
        ids
    }

    // ----- lanes -------------------------------------------------------------

    /// Slot `w` takes tasks from now on (its worker connected).
    pub fn open(&mut self, w: usize) {
        self.lanes[w].open = true;
        self.rekey(w);
    }

    fn head_since(&self, w: usize) -> Option<Instant> {
        match self.tasks.get(self.lanes[w].in_flight.front()?)?.state {
            TaskState::Running { since } => Some(since),
            _ => None,
        }
    }

    /// When the task slot `w` is running started, if it runs one.
    pub fn head_started(&self, w: usize) -> Option<Instant> {
        self.head_since(w)
    }

    /// Puts lane `w` at its place among the open lanes.
    fn rekey(&mut self, w: usize) {
        if let Some(old) = self.keys[w].take() {
            self.room.remove(&old);
        }
        let lane = &self.lanes[w];
        if lane.open {
            let key = (lane.in_flight.len(), Reverse(self.head_since(w)), w);
            self.room.insert(key);
            self.keys[w] = Some(key);
        }
    }

    // ----- assign ------------------------------------------------------------

    /// Window of tasks in flight per worker for a function.
    fn window(&self, fn_index: usize) -> usize {
        match self.fn_busy.get(fn_index).copied().flatten() {
            None => 1,
            Some(busy) if busy >= 10.0 * self.rtt_ns => 1,
            Some(busy) => {
                let w = 1.0 + (2.0 * self.rtt_ns / busy.max(1.0)).ceil();
                (w as usize).clamp(1, self.max_window)
            }
        }
    }

    /// Hands queued tasks to open workers with room in their window, calling
    /// `send(slot, id, task)` for each (in the order they are to be sent). A
    /// `send` that fails stops the assignment; the task stays assigned (the
    /// caller treats its worker as lost).
    pub fn assign<E>(
        &mut self,
        now: Instant,
        mut send: impl FnMut(usize, u64, &Task) -> Result<(), E>,
    ) -> Result<(), E> {
        // Pinned tasks first: they can only go to their worker.
        let lanes: Vec<usize> = self.pinned_lanes.iter().copied().collect();
        for w in lanes {
            while self.lanes[w].open {
                let Some(&id) = self.lanes[w].pinned.front() else {
                    break;
                };
                let window = self.tasks.get(&id).map_or(1, |t| self.window(t.fn_index));
                if self.lanes[w].in_flight.len() >= window {
                    break;
                }
                self.lanes[w].pinned.pop_front();
                self.start(w, id, now);
                if let Some(t) = self.tasks.get(&id) {
                    send(w, id, t)?;
                }
            }
            if self.lanes[w].pinned.is_empty() {
                self.pinned_lanes.remove(&w);
            }
        }
        // Then the shared queue, each task to the least loaded worker with room.
        while let Some(&id) = self.queue.front() {
            let Some(task) = self.tasks.get(&id) else {
                self.queue.pop_front();
                continue;
            };
            let window = self.window(task.fn_index);
            let Some(&(load, _, w)) = self.room.first() else {
                break;
            };
            if load >= window {
                break;
            }
            self.queue.pop_front();
            self.start(w, id, now);
            if let Some(t) = self.tasks.get(&id) {
                send(w, id, t)?;
            }
        }
        Ok(())
    }

    /// Task `id` joins lane `w`'s window.
    fn start(&mut self, w: usize, id: u64, now: Instant) {
        if let Some(task) = self.tasks.get_mut(&id) {
            task.attempts += 1;
            task.state = TaskState::Running { since: now };
        }
        let lane = &mut self.lanes[w];
        lane.in_flight.push_back(id);
        lane.max_in_flight = lane.max_in_flight.max(lane.in_flight.len());
        self.rekey(w);
    }

    // ----- done --------------------------------------------------------------

    /// Worker `w` finished task `id` after running it `busy_ns`. A result for a
    /// task the worker does not hold (taken back meanwhile) is dropped.
    pub fn done(
        &mut self,
        w: usize,
        id: u64,
        busy_ns: u64,
        result: Result<Vec<u8>, PoolError>,
        now: Instant,
    ) {
        let lane = &mut self.lanes[w];
        let Some(pos) = lane.in_flight.iter().position(|&t| t == id) else {
            return;
        };
        lane.in_flight.remove(pos);
        lane.tasks_run += 1;
        lane.busy_ns += busy_ns;
        if result.is_err() {
            lane.tasks_failed += 1;
        }
        let alone = lane.in_flight.is_empty();
        // The next task in this worker's window starts running now: its timeout
        // counts from here, not from when it was queued behind this one.
        if pos == 0 {
            if let Some(next) = lane.in_flight.front().copied() {
                if let Some(Task {
                    state: TaskState::Running { since },
                    ..
                }) = self.tasks.get_mut(&next)
                {
                    *since = now;
                }
            }
        }
        if let Some(task) = self.tasks.get_mut(&id) {
            if let TaskState::Running { since } = task.state {
                if alone && pos == 0 {
                    let total = now.saturating_duration_since(since).as_nanos() as f64;
                    let rtt = (total - busy_ns as f64).max(1_000.0);
                    self.rtt_ns = 0.9 * self.rtt_ns + 0.1 * rtt;
                }
            }
            if let Some(e) = self.fn_busy.get_mut(task.fn_index) {
                let b = busy_ns as f64;
                *e = Some(e.map_or(b, |old| 0.8 * old + 0.2 * b));
            }
            task.state = TaskState::Finished(result);
        }
        self.rekey(w);
    }

    /// Records the result of a task run outside any worker (an in-process pool).
    pub fn finish_here(&mut self, id: u64, result: Result<Vec<u8>, PoolError>) {
        if let Some(task) = self.tasks.get_mut(&id) {
            task.attempts += 1;
            task.state = TaskState::Finished(result);
        }
    }

    pub fn is_finished(&self, id: u64) -> bool {
        matches!(
            self.tasks.get(&id).map(|t| &t.state),
            Some(TaskState::Finished(_)) | None
        )
    }

    /// Takes a finished task's result (callers wait for `is_finished` first).
    pub fn take_result(&mut self, id: u64) -> Result<Vec<u8>, PoolError> {
        match self.tasks.get(&id).map(|t| &t.state) {
            Some(TaskState::Finished(_)) => match self.tasks.remove(&id).map(|t| t.state) {
                Some(TaskState::Finished(r)) => r,
                _ => Err(PoolError::Config(format!("task {id} vanished"))),
            },
            Some(_) => Err(PoolError::Config(format!("task {id} has not finished"))),
            None => Err(PoolError::Config(format!(
                "task {id} is unknown (already collected?)"
            ))),
        }
    }

    // ----- lost and expired --------------------------------------------------

    /// Worker `w` is gone: it takes no tasks until [`open`](Self::open) again, and
    /// the tasks it held are queued again in submission order, ahead of later
    /// tasks, within their retry budget, or fail. Pinned tasks not sent yet stay
    /// for the slot's next worker; pinned tasks it held fail (they belonged to that
    /// process). With `timed_out`, its running task is the one that timed out.
    pub fn lost(&mut self, w: usize, loss: Loss<'_>) -> Vec<Outcome> {
        let lane = &mut self.lanes[w];
        lane.open = false;
        let held: Vec<u64> = lane.in_flight.drain(..).collect();
        self.rekey(w);
        let mut outcomes = Vec::new();
        let mut requeue = Vec::new();
        for (i, id) in held.into_iter().enumerate() {
            let timed_out = if i == 0 { loss.timed_out } else { None };
            // A worker that never acknowledged its replay ran none of them (they
            // were queued behind it): those attempts do not count.
            if !loss.ran {
                if let Some(task) = self.tasks.get_mut(&id) {
                    task.attempts = task.attempts.saturating_sub(1);
                }
            }
            match self.retry_or_fail(id, &loss, timed_out) {
                Some(o @ Outcome::Retried { .. }) => {
                    requeue.push(id);
                    outcomes.push(o);
                }
                Some(o) => outcomes.push(o),
                None => {}
            }
        }
        self.requeue(requeue);
        outcomes
    }

    /// Queues `ids` again, keeping the queue in submission order.
    fn requeue(&mut self, mut ids: Vec<u64>) {
        if ids.is_empty() {
            return;
        }
        ids.sort_unstable();
        let mut merged = VecDeque::with_capacity(self.queue.len() + ids.len());
        let mut old = std::mem::take(&mut self.queue).into_iter().peekable();
        for id in ids {
            while let Some(&q) = old.peek() {
                if q < id {
                    merged.push_back(q);
                    old.next();
                } else {
                    break;
                }
            }
            merged.push_back(id);
        }
        merged.extend(old);
        self.queue = merged;
    }

    fn retry_or_fail(
        &mut self,
        id: u64,
        loss: &Loss<'_>,
        timeout: Option<Duration>,
    ) -> Option<Outcome> {
        let task = self.tasks.get_mut(&id)?;
        if matches!(task.state, TaskState::Finished(_)) {
            return None;
        }
        if task.pin.is_some() || task.attempts > self.max_retries {
            let error = match timeout {
                Some(after) => PoolError::Timeout {
                    function: task.function.to_string(),
                    index: task.index,
                    worker: loss.worker,
                    after,
                    attempts: task.attempts,
                },
                None => PoolError::WorkerLost {
                    function: task.function.to_string(),
                    index: task.index,
                    worker: loss.worker,
                    attempts: task.attempts,
                    fate: loss.fate.to_string(),
                },
            };
            let outcome = Outcome::Abandoned {
                function: task.function.to_string(),
                index: task.index,
                error: error.to_string(),
            };
            task.state = TaskState::Finished(Err(error));
            self.abandoned += 1;
            return Some(outcome);
        }
        task.state = TaskState::Queued;
        self.retries += 1;
        Some(Outcome::Retried {
            function: task.function.to_string(),
            index: task.index,
            attempts: task.attempts,
        })
    }

    /// Slots whose running task started more than `limit` before `now`.
    pub fn expired(&self, now: Instant, limit: Duration) -> Vec<usize> {
        (0..self.lanes.len())
            .filter(|&w| {
                self.head_since(w)
                    .is_some_and(|since| now.saturating_duration_since(since) > limit)
            })
            .collect()
    }

    /// The running task of slot `w`: (function, index in its call).
    pub fn head(&self, w: usize) -> Option<(String, usize)> {
        let t = self.tasks.get(self.lanes[w].in_flight.front()?)?;
        Some((t.function.to_string(), t.index))
    }

    /// Earliest instant at which a running task passes `limit`.
    pub fn next_expiry(&self, limit: Duration) -> Option<Instant> {
        (0..self.lanes.len())
            .filter_map(|w| self.head_since(w))
            .min()
            .map(|t| t + limit)
    }
}

/// Task ids are sequential numbers: hashing them with SipHash is wasted work.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

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

pub(crate) type IdHash = std::hash::BuildHasherDefault<IdHasher>;
