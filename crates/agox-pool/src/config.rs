//! Pool configuration: plain, validated data, turned into a live pool by
//! [`Pool::start`](crate::Pool::start).

use crate::events::EventSink;
use std::path::PathBuf;
use std::time::Duration;

/// How worker processes are created.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Launcher {
    /// Fork the driver (through a single-threaded fork server made at start), so
    /// workers inherit the registry. The default.
    #[default]
    Fork,
    /// Execute `program args… worker --connect ADDRESS --id N` for each worker; the
    /// pool's token arrives on the worker's standard input, where `ps` cannot see it.
    /// The program must build the same registry (see
    /// [`worker_main`](crate::worker_main)).
    Command {
        /// The executable.
        program: PathBuf,
        /// Arguments placed before `worker --connect …`.
        args: Vec<String>,
    },
}

/// Everything that shapes a pool.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Number of worker processes; 0 runs every task in the calling process.
    pub workers: usize,
    /// Seed from which every task's seed is derived.
    pub seed: u64,
    /// How many times a task whose worker died (or timed out) is started again
    /// before it fails.
    pub max_retries: u32,
    /// Longest a task may run before its worker is killed and replaced; the task is
    /// then retried like one whose worker died, and fails with
    /// [`PoolError::Timeout`](crate::PoolError::Timeout) once its retries are spent.
    /// Also the longest a worker may stay silent while it owes an acknowledgement.
    pub task_timeout: Option<Duration>,
    /// Most memory one worker may allocate (MiB), enforced by the kernel
    /// (`RLIMIT_DATA`) on every worker, forked or executed. A forked worker starts
    /// with the driver's data already counted. An allocation beyond it aborts the
    /// worker: its task fails (after its retries) naming the signal, and the worker
    /// is replaced.
    pub worker_memory_mb: Option<u64>,
    /// Largest frame accepted in either direction (bytes).
    pub max_frame: usize,
    /// How workers are created.
    pub launcher: Launcher,
    /// Where the private socket directory is created (default: `$XDG_RUNTIME_DIR`
    /// or the system temporary directory).
    pub socket_base: Option<PathBuf>,
    /// Most tasks in flight per worker when tasks are tiny.
    pub max_window: usize,
    /// How long a starting worker may take to connect and greet.
    pub connect_timeout: Duration,
    /// How long any connection may take to send its greeting before it is refused
    /// (the coordinator never waits for it: this bounds how long it is kept).
    pub handshake_timeout: Duration,
    /// How many replacements in a row one worker slot may need before one of them
    /// becomes ready (greets and acknowledges its replayed state). Replacements after
    /// the first of a row wait 10 ms, 20 ms, ... (at most 1 s). Beyond this budget
    /// the pool is broken ([`PoolError::Broken`](crate::PoolError::Broken)).
    pub max_restarts: u32,
    /// Where pool events go (worker lost, replaced, task retried, stranger
    /// refused, ...); none by default.
    pub events: Option<EventSink>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: default_workers(),
            seed: 0,
            max_retries: 2,
            task_timeout: None,
            max_frame: agox_wire::DEFAULT_MAX_FRAME,
            launcher: Launcher::Fork,
            socket_base: None,
            max_window: 128,
            connect_timeout: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(5),
            max_restarts: 8,
            worker_memory_mb: None,
            events: None,
        }
    }
}

impl PoolConfig {
    /// The defaults with `workers` workers.
    pub fn with_workers(workers: usize) -> Self {
        PoolConfig {
            workers,
            ..Default::default()
        }
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the task timeout.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Sends pool events to `sink`.
    pub fn events(mut self, sink: EventSink) -> Self {
        self.events = Some(sink);
        self
    }

    /// Checks the values make sense together.
    pub fn validate(&self) -> Result<(), String> {
        if self.workers > 4096 {
            return Err(format!("workers = {} is more than 4096", self.workers));
        }
        if self.max_frame < 1024 {
            return Err(format!(
                "max_frame = {} is below 1024 bytes",
                self.max_frame
            ));
        }
        if self.max_frame > u32::MAX as usize {
            return Err(format!(
                "max_frame = {} exceeds the 4-byte length prefix",
                self.max_frame
            ));
        }
        if self.max_window == 0 {
            return Err("max_window must be at least 1".into());
        }
        if let Some(mb) = self.worker_memory_mb {
            if mb < 16 {
                return Err(format!(
                    "worker_memory_mb = {mb} is below 16 MiB, too little to start a worker"
                ));
            }
            if mb > u64::MAX >> 20 {
                return Err(format!("worker_memory_mb = {mb} is too large"));
            }
        }
        if self.task_timeout.is_some_and(|t| t.is_zero()) {
            return Err("task_timeout must be longer than zero".into());
        }
        Ok(())
    }
}

/// The default number of workers: `SLURM_NTASKS` when set (a Slurm allocation),
/// otherwise the number of CPUs this process may run on.
pub fn default_workers() -> usize {
    if let Some(n) = std::env::var("SLURM_NTASKS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        return n;
    }
    if let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        let n = (0..nix::sched::CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .count();
        if n > 0 {
            return n;
        }
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
