//! The pool's error type.

use agox_wire::{FailureKind, WireError};
use std::time::Duration;

/// Everything a pool operation can report.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The operating system refused something (socket, fork, directory).
    #[error("{context}: {source}")]
    Io {
        /// What the pool was doing.
        context: String,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// A worker could not be started or did not connect.
    #[error("cannot start worker {worker}: {message}")]
    Spawn {
        /// The worker slot.
        worker: u32,
        /// Why.
        message: String,
    },
    /// A worker's handshake was refused.
    #[error("worker {worker} refused at handshake: {reason}")]
    Handshake {
        /// The worker slot.
        worker: u32,
        /// Both sides' values (never the secret).
        reason: String,
    },
    /// A message could not be encoded or decoded.
    #[error("protocol: {0}")]
    Wire(#[from] WireError),
    /// A task's function returned an error or panicked.
    #[error("task {index} of '{function}' failed on worker {worker}: {kind}: {message}")]
    Task {
        /// The function.
        function: String,
        /// The task's index in its call (0 for `submit`).
        index: usize,
        /// The worker that ran it (`local` when run in process).
        worker: WorkerName,
        /// Error or panic.
        kind: TaskFailure,
        /// The message (with the panic location for panics).
        message: String,
    },
    /// The worker running a task was lost as many times as the retry budget allows
    /// (or the task was pinned to a worker that was lost).
    #[error("task {index} of '{function}' lost after {attempts} attempt(s); last: worker {worker} {fate}")]
    WorkerLost {
        /// The function.
        function: String,
        /// The task's index in its call.
        index: usize,
        /// The last worker that held it.
        worker: u32,
        /// How many times it was started.
        attempts: u32,
        /// What happened to that worker (`(pid 4242): connection closed, killed by
        /// signal 9 (SIGKILL)`).
        fate: String,
    },
    /// A task ran past its timeout on every attempt the retry budget allows; each
    /// time its worker was killed and replaced.
    #[error("task {index} of '{function}' timed out after {after:?} on worker {worker} ({attempts} attempt(s))")]
    Timeout {
        /// The function.
        function: String,
        /// The task's index in its call.
        index: usize,
        /// The worker that was killed last.
        worker: u32,
        /// The timeout.
        after: Duration,
        /// How many times it was started.
        attempts: u32,
    },
    /// A module operation failed on a worker (unknown type, bad state, ...).
    #[error("module '{key}' on worker {worker}: {message}")]
    Module {
        /// The module key.
        key: String,
        /// The worker.
        worker: WorkerName,
        /// Why.
        message: String,
    },
    /// A module key is unknown to the pool.
    #[error("no module '{key}' in the pool (have: {have})")]
    NoSuchModule {
        /// The key asked for.
        key: String,
        /// Keys present.
        have: String,
    },
    /// An argument, output, module or attribute could not be (de)serialized.
    #[error("{what}: {message}")]
    Codec {
        /// What was being converted.
        what: String,
        /// The codec's message.
        message: String,
    },
    /// The pool cannot keep its worker count (a slot's replacements keep failing,
    /// the fork server is gone, a replacement cannot take the pool's state). Every
    /// call fails with this from then on; drop the pool and start another.
    #[error("the pool is broken: {reason}")]
    Broken {
        /// Why, naming the slot and what happened to it.
        reason: String,
    },
    /// A worker index outside the pool.
    #[error("no worker {worker} (pool of {size})")]
    NoSuchWorker {
        /// The index asked for.
        worker: u32,
        /// Pool size.
        size: usize,
    },
    /// Invalid configuration.
    #[error("invalid pool configuration: {0}")]
    Config(String),
}

/// A worker as named in messages: its slot, or `local` for in-process execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerName {
    /// A worker process slot.
    Slot(u32),
    /// The driver's own process.
    Local,
}

impl std::fmt::Display for WorkerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerName::Slot(i) => write!(f, "{i}"),
            WorkerName::Local => f.write_str("local"),
        }
    }
}

/// How a task failed, as reported in [`PoolError::Task`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskFailure {
    /// The function returned an error.
    Error,
    /// The function panicked.
    Panic,
    /// The function name is not registered in the worker.
    UnknownFunction,
    /// Arguments or output did not match the function's types.
    BadArguments,
}

impl From<FailureKind> for TaskFailure {
    fn from(k: FailureKind) -> Self {
        match k {
            FailureKind::Error => TaskFailure::Error,
            FailureKind::Panic => TaskFailure::Panic,
            FailureKind::UnknownFunction => TaskFailure::UnknownFunction,
            FailureKind::BadArguments => TaskFailure::BadArguments,
        }
    }
}

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskFailure::Error => "error",
            TaskFailure::Panic => "panic",
            TaskFailure::UnknownFunction => "unknown function",
            TaskFailure::BadArguments => "bad arguments",
        })
    }
}

impl PoolError {
    /// True for a task that ran past its timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, PoolError::Timeout { .. })
    }
    /// True for a task that panicked.
    pub fn is_panic(&self) -> bool {
        matches!(
            self,
            PoolError::Task {
                kind: TaskFailure::Panic,
                ..
            }
        )
    }
    /// True for a task lost with its worker beyond the retry budget.
    pub fn is_worker_lost(&self) -> bool {
        matches!(self, PoolError::WorkerLost { .. })
    }
    /// True when the pool cannot keep its worker count and is unusable.
    pub fn is_broken(&self) -> bool {
        matches!(self, PoolError::Broken { .. })
    }
    /// True for a task's own failure: its function returned an error, panicked, was
    /// not registered or got arguments it could not decode. Retrying it on another
    /// worker gives the same answer.
    pub fn is_task_error(&self) -> bool {
        matches!(self, PoolError::Task { .. })
    }
    /// True for a failure of the machinery rather than of the task's code: a worker
    /// lost or timed out beyond the retry budget, or a broken pool.
    pub fn is_fault(&self) -> bool {
        self.is_worker_lost() || self.is_timeout() || self.is_broken()
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        PoolError::Io {
            context: context.into(),
            source,
        }
    }
}
