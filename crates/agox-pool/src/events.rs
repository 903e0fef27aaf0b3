//! Typed pool events: every fault and every change of a worker slot, handed to an
//! injectable sink (set in [`PoolConfig::events`](crate::PoolConfig::events)) so a
//! command line can show them and a summary can count them. The same faults are
//! counted in [`PoolStats`](crate::PoolStats).

use std::sync::Arc;
use std::time::Duration;

/// How a worker process ended, as its parent saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    /// It exited with this status.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

impl std::fmt::Display for WorkerExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerExit::Code(c) => write!(f, "exited with status {c}"),
            WorkerExit::Signal(s) => match nix::sys::signal::Signal::try_from(*s) {
                Ok(sig) => write!(f, "killed by signal {s} ({})", sig.as_str()),
                Err(_) => write!(f, "killed by signal {s}"),
            },
        }
    }
}

/// Why the coordinator gave up on a worker process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LossCause {
    /// Its connection ended (the process died, or closed the socket).
    ConnectionClosed,
    /// Reading from or writing to its socket failed.
    Io(String),
    /// It sent something the protocol does not allow.
    Protocol(String),
    /// The task at the head of its window ran past the task timeout.
    TaskTimeout {
        /// The function.
        function: String,
        /// The task's index in its call.
        index: usize,
        /// The timeout.
        after: Duration,
    },
    /// It owed an acknowledgement, ran no task and said nothing for this long (the
    /// task timeout): stopped or hung.
    Unresponsive {
        /// How long it was silent.
        after: Duration,
    },
    /// A newly launched worker ended before it completed its handshake.
    ExitedBeforeHandshake,
    /// A newly launched worker did not complete its handshake in time.
    NoHandshake {
        /// The connect timeout.
        after: Duration,
    },
}

impl std::fmt::Display for LossCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LossCause::ConnectionClosed => f.write_str("connection closed"),
            LossCause::Io(e) => write!(f, "socket error: {e}"),
            LossCause::Protocol(e) => write!(f, "protocol violation: {e}"),
            LossCause::TaskTimeout {
                function,
                index,
                after,
            } => write!(f, "task {index} of '{function}' timed out after {after:?}"),
            LossCause::Unresponsive { after } => {
                write!(f, "unresponsive: no answer for {after:?}")
            }
            LossCause::ExitedBeforeHandshake => f.write_str("ended before its handshake"),
            LossCause::NoHandshake { after } => {
                write!(f, "no handshake within {after:?}")
            }
        }
    }
}

/// Why a connection was refused at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The peer runs as another user.
    Credentials,
    /// It speaks another protocol version.
    Protocol,
    /// It did not present the pool's token.
    Token,
    /// Its registry fingerprint differs.
    Registry,
    /// It claimed a slot the pool is not waiting for.
    UnexpectedWorker,
    /// Its greeting was not a valid `Hello` frame.
    Malformed,
    /// It did not greet within the handshake timeout.
    Silent,
    /// Too many connections were waiting for their handshake; the oldest went.
    Overflow,
}

/// Something that happened to the pool. Events are delivered on the thread calling
/// the pool, while the pool is locked: a sink must return quickly and must not call
/// the pool.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolEvent {
    /// A worker process was launched for a slot: at start (`attempt == 0`) or as
    /// the `attempt`-th replacement in a row.
    WorkerSpawned {
        /// The slot.
        worker: u32,
        /// The new process.
        pid: u32,
        /// 0 at start; then the number of replacements in a row for this slot.
        attempt: u32,
    },
    /// A worker greeted and received its state; it acknowledged every module and
    /// attribute replayed into it (including a synchronization in flight), so the
    /// slot is whole again.
    WorkerReady {
        /// The slot.
        worker: u32,
        /// The process.
        pid: u32,
        /// From launch to the last acknowledgement of the replayed state.
        after: Duration,
    },
    /// The coordinator gave up on a worker process (and killed it).
    WorkerLost {
        /// The slot.
        worker: u32,
        /// The process.
        pid: u32,
        /// What the coordinator saw.
        cause: LossCause,
        /// How the process ended, when known.
        exit: Option<WorkerExit>,
    },
    /// A slot's replacement was scheduled after a pause (its previous replacement
    /// failed too).
    ReplacementDelayed {
        /// The slot.
        worker: u32,
        /// Replacements in a row so far.
        attempt: u32,
        /// The pause.
        delay: Duration,
    },
    /// A task whose worker was lost (or timed out) was queued again.
    TaskRetried {
        /// The function.
        function: String,
        /// The task's index in its call.
        index: usize,
        /// The worker it was on.
        worker: u32,
        /// How many times it has been started so far.
        attempts: u32,
    },
    /// A task ran past the task timeout; its worker is killed and replaced.
    TaskTimedOut {
        /// The function.
        function: String,
        /// The task's index in its call.
        index: usize,
        /// The worker it ran on.
        worker: u32,
        /// The timeout.
        after: Duration,
    },
    /// A task failed for good because of worker faults (its retries are spent).
    TaskAbandoned {
        /// The function.
        function: String,
        /// The task's index in its call.
        index: usize,
        /// The error the caller receives.
        error: String,
    },
    /// A connection was refused at the handshake.
    StrangerRefused {
        /// Why, as a kind.
        kind: RefusalKind,
        /// The reason, naming both sides' values (never the secret).
        reason: String,
    },
    /// The pool cannot keep its worker count; every call fails from now on.
    PoolBroken {
        /// Why.
        reason: String,
    },
}

/// Where a pool sends its events: a function called with each one.
#[derive(Clone)]
pub struct EventSink(Arc<dyn Fn(&PoolEvent) + Send + Sync>);

impl EventSink {
    /// A sink calling `f` with each event (on the pool's calling thread, with the
    /// pool locked: keep it short and do not call the pool from it).
    pub fn new(f: impl Fn(&PoolEvent) + Send + Sync + 'static) -> Self {
        EventSink(Arc::new(f))
    }

    /// A sink sending each event into an unbounded channel, and its receiving end.
    pub fn channel() -> (EventSink, crossbeam_channel::Receiver<PoolEvent>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let sink = EventSink::new(move |e| {
            // A dropped receiver means nobody listens any more: nothing to do.
            let _ = tx.send(e.clone());
        });
        (sink, rx)
    }

    pub(crate) fn emit(&self, event: &PoolEvent) {
        (self.0)(event)
    }
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}
