//! What a pool reports about itself.

use crate::events::{LossCause, WorkerExit};
use std::time::Duration;

/// One synchronization: what moved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncReport {
    /// Modules with at least one changed attribute.
    pub modules: usize,
    /// Attributes sent (each counted once, whatever the number of workers).
    pub attributes: usize,
    /// Bytes written to sockets, summed over workers.
    pub bytes: usize,
    /// `module.attribute` names that were sent.
    pub names: Vec<String>,
    /// Wall time until every worker confirmed.
    pub elapsed: Duration,
}

impl std::fmt::Display for SyncReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sync: {} module(s), {} attribute(s), {} bytes in {:.3} ms",
            self.modules,
            self.attributes,
            self.bytes,
            self.elapsed.as_secs_f64() * 1e3
        )?;
        if !self.names.is_empty() {
            write!(f, " [{}]", self.names.join(", "))?;
        }
        Ok(())
    }
}

/// Sums over every synchronization of a pool.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncTotals {
    /// Number of synchronizations.
    pub syncs: u64,
    /// Attributes sent.
    pub attributes: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Time spent.
    pub elapsed: Duration,
}

impl SyncTotals {
    pub(crate) fn add(&mut self, r: &SyncReport) {
        self.syncs += 1;
        self.attributes += r.attributes as u64;
        self.bytes += r.bytes as u64;
        self.elapsed += r.elapsed;
    }
}

/// Per-worker counters.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerStats {
    /// Slot.
    pub id: u32,
    /// Current process id.
    pub pid: u32,
    /// Whether the slot has a live process.
    pub alive: bool,
    /// Tasks finished (successfully or not) by this slot.
    pub tasks: u64,
    /// Tasks that returned an error or panicked.
    pub failed: u64,
    /// Time spent inside task functions.
    pub busy: Duration,
    /// Times this slot's process was replaced.
    pub restarts: u32,
    /// Largest number of tasks it had in flight at once.
    pub max_in_flight: usize,
}

/// A worker process the pool lost, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerLoss {
    /// The slot.
    pub worker: u32,
    /// The process that was lost.
    pub pid: u32,
    /// What the coordinator saw.
    pub cause: LossCause,
    /// How the process ended, when known.
    pub exit: Option<WorkerExit>,
    /// Cause and exit in words (`connection closed, killed by signal 9 (SIGKILL)`).
    pub reason: String,
}

/// A snapshot of a pool's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolStats {
    /// One entry per worker slot.
    pub workers: Vec<WorkerStats>,
    /// Tasks re-run after their worker died or timed out.
    pub retries: u64,
    /// Task attempts that timed out.
    pub timeouts: u64,
    /// Tasks that failed for good because of worker faults (retries spent).
    pub abandoned: u64,
    /// Connections refused at the handshake.
    pub refused_handshakes: u64,
    /// The most recent refusals' reasons (at most 16), most recent last.
    pub recent_refusals: Vec<String>,
    /// Worker processes lost, in all.
    pub workers_lost: u64,
    /// Replacement workers that were lost before they became ready.
    pub failed_replacements: u64,
    /// The most recent losses (at most 100), most recent last.
    pub losses: Vec<WorkerLoss>,
    /// Synchronization totals.
    pub sync: SyncTotals,
    /// Time from start until every worker had shaken hands.
    pub start_time: Duration,
}

impl PoolStats {
    /// Tasks finished over all workers.
    pub fn total_tasks(&self) -> u64 {
        self.workers.iter().map(|w| w.tasks).sum()
    }
    /// Busy time over all workers.
    pub fn total_busy(&self) -> Duration {
        self.workers.iter().map(|w| w.busy).sum()
    }
    /// Restarts over all workers.
    pub fn total_restarts(&self) -> u32 {
        self.workers.iter().map(|w| w.restarts).sum()
    }
}
