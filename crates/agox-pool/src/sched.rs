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
//!
//! The pool's coordinator drives it; it is public so that its rules can be
//! simulated and measured without workers (`examples/bench_sched.rs`).

use crate::error::PoolError;
use crate::registry::task_seed;
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a task is.
#[derive(Debug)]
pub enum TaskState {
    /// Waiting for a worker.
    Queued,
    /// In a worker's window; `since` is when it became the window's head (the
    /// task a worker runs is always the head), or when it was sent.
    Running { since: Instant },
    /// Done: its output, or why it failed.
    Finished(Result<Vec<u8>, PoolError>),
}

/// One call of a function on one argument.
#[derive(Debug)]
pub struct Task {
    /// The registered function.
    pub function: Arc<str>,
    /// Index of the function's run-time statistics.
    fn_index: usize,
    /// Index in its call.
    pub index: usize,
    /// Its seed, from (pool seed, call, index).
    pub seed: u64,
    /// Its encoded arguments.
    pub args: Vec<u8>,
    /// How many times it was started.
    pub attempts: u32,
    /// Sent to a worker with nothing else in flight: its answer times a clean
    /// round trip.
    solo: bool,
    /// The only slot that may run it.
    pub pin: Option<u32>,
    /// Where it is.
    pub state: TaskState,
}

/// One worker slot as the scheduler sees it.
#[derive(Debug, Default)]
pub struct Lane {
    /// Takes tasks (a connected worker).
    open: bool,
    /// Tasks sent, in the order sent; the head is running.
    pub in_flight: VecDeque<u64>,
    /// Tasks only this slot may run, not sent yet.
    pinned: VecDeque<u64>,
    /// Tasks finished here.
    pub tasks_run: u64,
    /// Of which failed.
    pub tasks_failed: u64,
    /// Time its tasks ran (ns, as reported).
    pub busy_ns: u64,
    /// Most tasks it ever held at once.
    pub max_in_flight: usize,
}

/// What became of a task taken back from a lost worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Queued again.
    Retried {
        /// The function.
        function: String,
        /// The task's index in its call.
        index: usize,
        /// How many times it was started so far.
        attempts: u32,
    },
    /// Failed for good; `error` is what its caller receives.
    Abandoned {
        /// The function.
        function: String,
        /// The task's index in its call.
        index: usize,
        /// The error.
        error: String,
    },
}

/// Why a worker's tasks are taken back.
#[derive(Debug, Clone, Copy)]
pub struct Loss<'a> {
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

/// A task this long (ns) is never queued behind another: hiding a round trip
/// behind it gains a few percent at most, and balance matters more. (Without this
/// bound a loaded machine, whose round trips look long, would pipeline long tasks.)
const LONG_TASK_NS: f64 = 1e6;

/// How many recent round-trip samples the estimate keeps.
const RTT_SAMPLES: usize = 16;

/// Ordering key of an open lane: fewest in flight first, then the running task
/// that started last, then the lowest slot.
type RoomKey = (usize, Reverse<Option<Instant>>, usize);

/// The scheduler of one pool: its tasks, its queue and one lane per worker slot.
pub struct Sched {
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
    /// The round trip (ns): the smallest of the recent clean samples. Delays of
    /// this loaded machine only lengthen a sample, so the smallest is the
    /// transport's own round trip, which is what the window must hide.
    rtt_ns: f64,
    rtt_samples: VecDeque<f64>,
    next_task: u64,
    next_call: u64,
    /// Tasks queued again after their worker was lost.
    pub retries: u64,
    /// Tasks failed for good after their retries.
    pub abandoned: u64,
}

impl Sched {
    /// A scheduler for `workers` slots (all closed), deriving task seeds from
    /// `seed`, retrying a task at most `max_retries` times, with at most
    /// `max_window` tasks in flight per worker.
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
            rtt_samples: VecDeque::new(),
            next_task: 0,
            next_call: 0,
            retries: 0,
            abandoned: 0,
        }
    }

    /// The slots, by index.
    pub fn lanes(&self) -> &[Lane] {
        &self.lanes
    }

    /// A task not collected yet.
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
                    solo: false,
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
            Some(busy) if busy >= 10.0 * self.rtt_ns || busy >= LONG_TASK_NS => 1,
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
        let solo = self.lanes[w].in_flight.is_empty();
        if let Some(task) = self.tasks.get_mut(&id) {
            task.attempts += 1;
            task.solo = solo;
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
            // Only a task sent to an idle worker and answered before any other was
            // sent times a round trip: the start of a task queued behind another
            // is when the coordinator read the other's answer, which may be in the
            // same read as this one's.
            if let (TaskState::Running { since }, true) = (&task.state, task.solo && alone) {
                let total = now.saturating_duration_since(*since).as_nanos() as f64;
                let sample = (total - busy_ns as f64).max(1_000.0);
                if self.rtt_samples.len() == RTT_SAMPLES {
                    self.rtt_samples.pop_front();
                }
                self.rtt_samples.push_back(sample);
                self.rtt_ns = self
                    .rtt_samples
                    .iter()
                    .copied()
                    .fold(f64::INFINITY, f64::min);
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

    /// True once task `id` finished (or was collected).
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Assigns and returns (slot, task) in the order sent.
    fn assign(s: &mut Sched, now: Instant) -> Vec<(usize, u64)> {
        let mut sent = Vec::new();
        s.assign(now, |w, id, _| {
            sent.push((w, id));
            Ok::<(), ()>(())
        })
        .unwrap();
        sent
    }

    fn args(n: usize) -> Vec<Vec<u8>> {
        vec![Vec::new(); n]
    }

    fn loss(worker: u32, ran: bool) -> Loss<'static> {
        Loss {
            worker,
            fate: "(pid 7): connection closed",
            ran,
            timed_out: None,
        }
    }

    #[test]
    fn unknown_functions_get_a_window_of_one_and_tiny_ones_a_wide_window() {
        let now = Instant::now();
        let mut s = Sched::new(2, 0, 2, 128);
        s.open(0);
        s.open(1);
        let ids = s.submit("f", args(10), None);
        assert_eq!(assign(&mut s, now), [(0, ids[0]), (1, ids[1])]);
        // 1 µs of work against a 60 µs round trip.
        s.done(
            0,
            ids[0],
            1_000,
            Ok(vec![]),
            now + Duration::from_micros(61),
        );
        let sent = assign(&mut s, now);
        assert!(sent.len() > 2, "{sent:?}");
        assert!(s.lanes()[0].max_in_flight > 1);
    }

    #[test]
    fn a_round_trip_is_timed_only_on_a_task_sent_to_an_idle_worker() {
        let t0 = Instant::now();
        let mut s = Sched::new(1, 0, 2, 128);
        s.open(0);
        let warm = s.submit("f", args(1), None);
        assign(&mut s, t0);
        s.done(
            0,
            warm[0],
            1_000,
            Ok(vec![]),
            t0 + Duration::from_micros(61),
        );
        assert_eq!(s.rtt_ns, 60_000.0);
        // A window of tiny tasks answered in one read: the last finishes alone,
        // but it was queued behind the others, so it times nothing.
        let ids = s.submit("f", args(5), None);
        let t1 = t0 + Duration::from_millis(1);
        assert_eq!(assign(&mut s, t1).len(), 5);
        let t2 = t1 + Duration::from_micros(70);
        for id in ids {
            s.done(0, id, 1_000, Ok(vec![]), t2);
        }
        assert_eq!(s.rtt_ns, 60_000.0);
        // A slow answer (a loaded machine) does not lengthen the estimate.
        let one = s.submit("f", args(1), None);
        assign(&mut s, t2);
        s.done(0, one[0], 1_000, Ok(vec![]), t2 + Duration::from_millis(5));
        assert_eq!(s.rtt_ns, 60_000.0);
    }

    #[test]
    fn tasks_of_a_millisecond_or_more_are_never_queued_behind_another() {
        let t0 = Instant::now();
        let mut s = Sched::new(1, 0, 2, 128);
        s.open(0);
        let ids = s.submit("g", args(3), None);
        assign(&mut s, t0);
        // A 1.5 ms task after a 10 ms wait for its answer (a loaded machine): the
        // round trip looks long, but the task is long too.
        s.done(
            0,
            ids[0],
            1_500_000,
            Ok(vec![]),
            t0 + Duration::from_micros(11_500),
        );
        assert_eq!(assign(&mut s, t0).len(), 1);
    }

    #[test]
    fn long_tasks_get_a_window_of_one() {
        let now = Instant::now();
        let mut s = Sched::new(1, 0, 2, 128);
        s.open(0);
        let ids = s.submit("slow", args(3), None);
        assign(&mut s, now);
        s.done(0, ids[0], 50_000_000, Ok(vec![]), now);
        assert_eq!(assign(&mut s, now), [(0, ids[1])]);
        assert!(assign(&mut s, now).is_empty());
    }

    #[test]
    fn the_least_loaded_worker_wins_and_between_equals_the_one_whose_task_started_last() {
        let t0 = Instant::now();
        let mut s = Sched::new(3, 0, 2, 128);
        for w in 0..3 {
            s.open(w);
        }
        let warm = s.submit("f", args(1), None);
        assign(&mut s, t0);
        s.done(0, warm[0], 1_000, Ok(vec![]), t0);
        // Worker 2 gets two, worker 0 one (started first), worker 1 one (later).
        let ids = s.submit("f", args(1), Some(vec![0]));
        assert_eq!(assign(&mut s, t0), [(0, ids[0])]);
        let t1 = t0 + Duration::from_millis(1);
        let ids = s.submit("f", args(1), Some(vec![1]));
        assert_eq!(assign(&mut s, t1), [(1, ids[0])]);
        let ids = s.submit("f", args(2), Some(vec![2, 2]));
        assign(&mut s, t1);
        assert_eq!(s.lanes()[2].in_flight.len(), 2, "{ids:?}");
        // The next queued task: workers 0 and 1 hold one each; 1's started last.
        let ids = s.submit("f", args(1), None);
        assert_eq!(assign(&mut s, t1), [(1, ids[0])]);
    }

    #[test]
    fn pinned_tasks_go_to_their_worker_only_and_wait_for_its_next_process() {
        let now = Instant::now();
        let mut s = Sched::new(2, 0, 2, 128);
        s.open(0);
        let ids = s.submit("f", args(2), Some(vec![1, 1]));
        assert!(assign(&mut s, now).is_empty(), "slot 1 has no worker yet");
        s.open(1);
        assert_eq!(assign(&mut s, now), [(1, ids[0])]);
        // Lost while holding the first: it fails (it belonged to that process); the
        // second, never sent, waits for the slot's next process.
        let out = s.lost(1, loss(1, true));
        assert!(
            matches!(&out[..], [Outcome::Abandoned { index: 0, .. }]),
            "{out:?}"
        );
        assert!(s.take_result(ids[0]).unwrap_err().is_worker_lost());
        s.open(1);
        assert_eq!(assign(&mut s, now), [(1, ids[1])]);
    }

    #[test]
    fn a_lost_workers_tasks_go_back_in_order_ahead_of_later_ones_within_the_budget() {
        let now = Instant::now();
        let mut s = Sched::new(2, 0, 1, 128);
        s.open(0);
        s.open(1);
        let warm = s.submit("f", args(2), None);
        assign(&mut s, now);
        // 1 µs tasks, answered after a 60 µs round trip: a wide window.
        let later = now + Duration::from_micros(61);
        s.done(0, warm[0], 1_000, Ok(vec![]), later);
        s.done(1, warm[1], 1_000, Ok(vec![]), later);
        s.submit("f", args(6), None);
        let sent = assign(&mut s, now);
        assert_eq!(sent.len(), 6);
        let on_1: Vec<u64> = sent
            .iter()
            .filter(|(w, _)| *w == 1)
            .map(|(_, id)| *id)
            .collect();
        let later = s.submit("f", args(1), None);
        let out = s.lost(1, loss(1, true));
        assert_eq!(out.len(), on_1.len());
        assert!(out
            .iter()
            .all(|o| matches!(o, Outcome::Retried { attempts: 1, .. })));
        // They run next, in submission order, before the later task.
        let again: Vec<u64> = assign(&mut s, now).iter().map(|(_, id)| *id).collect();
        let mut expect = on_1.clone();
        expect.push(later[0]);
        assert_eq!(
            &again[..expect.len().min(again.len())],
            &expect[..expect.len().min(again.len())]
        );
        // A second loss spends the budget (max_retries = 1): they fail naming the fate.
        let out = s.lost(0, loss(0, true));
        for id in on_1 {
            if s.is_finished(id) {
                let e = s.take_result(id).unwrap_err();
                assert!(e.to_string().contains("(pid 7): connection closed"), "{e}");
            }
        }
        assert!(
            out.iter().any(|o| matches!(o, Outcome::Abandoned { .. })),
            "{out:?}"
        );
    }

    #[test]
    fn a_worker_that_never_became_ready_ran_nothing_and_costs_no_attempt() {
        let now = Instant::now();
        let mut s = Sched::new(1, 0, 0, 128);
        s.open(0);
        let ids = s.submit("f", args(1), None);
        assign(&mut s, now);
        for _ in 0..5 {
            let out = s.lost(0, loss(0, false));
            assert!(
                matches!(&out[..], [Outcome::Retried { attempts: 0, .. }]),
                "{out:?}"
            );
            s.open(0);
            assign(&mut s, now);
        }
        s.done(0, ids[0], 10, Ok(vec![1]), now);
        assert_eq!(s.take_result(ids[0]).unwrap(), vec![1]);
    }

    #[test]
    fn a_task_past_its_timeout_expires_and_fails_with_a_timeout_once_its_retries_are_spent() {
        let t0 = Instant::now();
        let mut s = Sched::new(1, 0, 0, 128);
        s.open(0);
        let ids = s.submit("hang", args(1), None);
        assign(&mut s, t0);
        let limit = Duration::from_millis(10);
        assert!(s.expired(t0 + Duration::from_millis(5), limit).is_empty());
        assert_eq!(s.expired(t0 + Duration::from_millis(11), limit), [0]);
        assert_eq!(s.next_expiry(limit), Some(t0 + limit));
        let out = s.lost(
            0,
            Loss {
                timed_out: Some(limit),
                ..loss(0, true)
            },
        );
        assert!(matches!(&out[..], [Outcome::Abandoned { .. }]));
        assert!(s.take_result(ids[0]).unwrap_err().is_timeout());
    }

    #[test]
    fn a_result_for_a_task_taken_back_is_dropped() {
        let now = Instant::now();
        let mut s = Sched::new(2, 0, 2, 128);
        s.open(0);
        let ids = s.submit("f", args(1), None);
        assign(&mut s, now);
        s.lost(0, loss(0, true));
        s.done(0, ids[0], 10, Ok(vec![9]), now);
        assert!(!s.is_finished(ids[0]));
        s.open(1);
        assert_eq!(assign(&mut s, now), [(1, ids[0])]);
        s.done(1, ids[0], 10, Ok(vec![1]), now);
        assert_eq!(s.take_result(ids[0]).unwrap(), vec![1]);
    }

    #[test]
    fn seeds_depend_on_call_and_index_only() {
        let mut a = Sched::new(1, 42, 2, 128);
        let mut b = Sched::new(7, 42, 2, 128);
        let x = a.submit("f", args(3), None);
        let y = b.submit("g", args(3), None);
        for (i, j) in x.iter().zip(&y) {
            assert_eq!(a.task(*i).unwrap().seed, b.task(*j).unwrap().seed);
        }
        let z = a.submit("f", args(1), None);
        assert_ne!(a.task(z[0]).unwrap().seed, a.task(x[0]).unwrap().seed);
    }

    /// One step of a random run.
    #[derive(Debug, Clone)]
    enum Step {
        Submit {
            n: usize,
            pin: Option<usize>,
        },
        Assign,
        /// The worker finishes the head of its window (workers run in order).
        Done {
            w: usize,
            busy_ns: u64,
            ok: bool,
        },
        Lost {
            w: usize,
            ran: bool,
            timed_out: bool,
        },
        Open {
            w: usize,
        },
    }

    fn step(workers: usize) -> impl Strategy<Value = Step> {
        prop_oneof![
            (0usize..6, proptest::option::of(0..workers))
                .prop_map(|(n, pin)| Step::Submit { n, pin }),
            Just(Step::Assign),
            Just(Step::Assign),
            (0..workers, 1u64..200_000, proptest::bool::weighted(0.9))
                .prop_map(|(w, busy_ns, ok)| Step::Done { w, busy_ns, ok }),
            (0..workers, any::<bool>(), any::<bool>()).prop_map(|(w, ran, timed_out)| Step::Lost {
                w,
                ran,
                timed_out
            }),
            (0..workers).prop_map(|w| Step::Open { w }),
        ]
    }

    /// Every task not collected is in exactly one place: the queue, one lane's
    /// window, one lane's pinned list, or finished. The queue is in submission
    /// order.
    fn check_places(s: &Sched, submitted: &[u64]) -> Result<(), TestCaseError> {
        let mut seen: HashMap<u64, usize> = HashMap::new();
        for id in s.queue.iter() {
            *seen.entry(*id).or_default() += 1;
        }
        for lane in &s.lanes {
            for id in lane.in_flight.iter().chain(lane.pinned.iter()) {
                *seen.entry(*id).or_default() += 1;
            }
        }
        for id in submitted {
            let finished = s.is_finished(*id);
            let places = seen.get(id).copied().unwrap_or(0) + usize::from(finished);
            prop_assert_eq!(places, 1, "task {} is in {} places", id, places);
        }
        prop_assert!(s
            .queue
            .iter()
            .zip(s.queue.iter().skip(1))
            .all(|(a, b)| a < b));
        for (w, lane) in s.lanes.iter().enumerate() {
            prop_assert_eq!(lane.open, s.keys[w].is_some());
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn random_runs_never_lose_or_duplicate_a_task_and_keep_submission_order(
            workers in 1usize..5,
            steps in proptest::collection::vec(step(4), 1..120),
        ) {
            let t0 = Instant::now();
            let mut s = Sched::new(workers, 3, 2, 16);
            let mut submitted = Vec::new();
            let mut finished_once: HashMap<u64, usize> = HashMap::new();
            for (k, st) in steps.into_iter().enumerate() {
                let now = t0 + Duration::from_micros(k as u64 * 10);
                let before: Vec<bool> = submitted.iter().map(|id| s.is_finished(*id)).collect();
                match st {
                    Step::Submit { n, pin } => {
                        let pin = pin.filter(|&p| p < workers).map(|p| vec![p as u32; n]);
                        submitted.extend(s.submit("f", args(n), pin));
                    }
                    Step::Assign => {
                        let sent = assign(&mut s, now);
                        // Unpinned tasks start oldest first.
                        let free: Vec<u64> = sent
                            .iter()
                            .map(|(_, id)| *id)
                            .filter(|id| s.task(*id).is_some_and(|t| t.pin.is_none()))
                            .collect();
                        prop_assert!(free.windows(2).all(|p| p[0] < p[1]), "{:?}", free);
                        if let (Some(last), Some(next)) = (free.last(), s.queue.front()) {
                            prop_assert!(last < next);
                        }
                    }
                    Step::Done { w, busy_ns, ok } if w < workers => {
                        if let Some(&id) = s.lanes[w].in_flight.front() {
                            let res = if ok {
                                Ok(id.to_le_bytes().to_vec())
                            } else {
                                Err(PoolError::Config("task failed".into()))
                            };
                            s.done(w, id, busy_ns, res, now);
                        }
                    }
                    Step::Lost { w, ran, timed_out } if w < workers => {
                        let limit = timed_out.then_some(Duration::from_millis(1));
                        s.lost(w, Loss { worker: w as u32, fate: "gone", ran, timed_out: limit });
                    }
                    Step::Open { w } if w < workers => s.open(w),
                    _ => {}
                }
                for (id, was) in submitted.iter().zip(before) {
                    if !was && s.is_finished(*id) {
                        *finished_once.entry(*id).or_default() += 1;
                    }
                    // Once finished, a task stays finished until collected.
                    prop_assert!(!was || s.is_finished(*id));
                }
                check_places(&s, &submitted)?;
            }
            // Drain: every worker back, every task runs to its end.
            for w in 0..workers {
                if !s.lanes[w].open {
                    s.open(w);
                }
            }
            let mut rounds = 0;
            while submitted.iter().any(|id| !s.is_finished(*id)) {
                rounds += 1;
                prop_assert!(rounds < 10_000, "stuck");
                assign(&mut s, t0);
                for w in 0..workers {
                    if let Some(&id) = s.lanes[w].in_flight.front() {
                        s.done(w, id, 1_000, Ok(id.to_le_bytes().to_vec()), t0);
                        *finished_once.entry(id).or_default() += 1;
                    }
                }
            }
            for id in &submitted {
                prop_assert!(finished_once.get(id).copied().unwrap_or(0) <= 1);
                if let Ok(out) = s.take_result(*id) {
                    prop_assert_eq!(out, id.to_le_bytes().to_vec());
                }
            }
        }
    }
}
