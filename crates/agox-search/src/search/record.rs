//! The run's counters, kept with the database so that they count the whole run.
//!
//! After every iteration, the loop commits the iteration's evaluations **and** the
//! run's counters so far ([`RunCounters`]: candidates made, failures with their
//! first messages, candidates dropped, the pool's faults) in one transaction, with
//! the number of iterations complete ([`Database::store_iteration`]). So:
//!
//! * an iteration is complete exactly when its transaction committed; a run
//!   stopped anywhere inside an iteration (an error, a signal, a SIGKILL) has
//!   stored nothing of it, and a resumed run redoes it whole;
//! * an iteration that stored no structure (every candidate failed) is still
//!   known to be complete;
//! * a resumed run starts from the counters of its last complete iteration, so
//!   `summary.json` counts the whole run. The pool's faults are counted per process
//!   and added up the same way; faults a process saw after its last complete
//!   iteration (before it was killed) are in that process's `summary.json` only.
//!
//! [`Database::store_iteration`]: crate::db::Database::store_iteration

use agox_pool::PoolStats;
use serde::{Deserialize, Serialize};

use super::outputs::{Failures, GeneratorSummary};

/// Recent messages kept per list in [`PoolEvents`].
pub const RECENT_EVENTS: usize = 5;

/// The pool's faults over a run, by kind (`summary.json`'s `pool_events`): the
/// counts of the [`PoolEvent`](agox_pool::PoolEvent)s that are faults, and the
/// most recent losses and refusals in words.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolEvents {
    /// Worker processes lost (`WorkerLost`): killed, crashed, timed out, silent.
    pub workers_lost: u64,
    /// Replacement processes launched (`WorkerSpawned` after the start).
    pub replacements: u64,
    /// Replacements lost before they became ready.
    pub failed_replacements: u64,
    /// Tasks started again after their worker was lost or timed out (`TaskRetried`).
    pub tasks_retried: u64,
    /// Task attempts that ran past the task timeout (`TaskTimedOut`).
    pub tasks_timed_out: u64,
    /// Tasks that failed for good because of worker faults (`TaskAbandoned`).
    pub tasks_abandoned: u64,
    /// Connections refused at the handshake (`StrangerRefused`).
    pub strangers_refused: u64,
    /// The most recent losses, `worker 1 (pid 4242): connection closed, killed by
    /// signal 9 (SIGKILL)`, most recent last.
    pub recent_losses: Vec<String>,
    /// The most recent refusals' reasons, most recent last.
    pub recent_refusals: Vec<String>,
}

impl PoolEvents {
    /// The faults a pool counted since it started.
    pub fn from_stats(s: &PoolStats) -> PoolEvents {
        PoolEvents {
            workers_lost: s.workers_lost,
            replacements: u64::from(s.total_restarts()),
            failed_replacements: s.failed_replacements,
            tasks_retried: s.retries,
            tasks_timed_out: s.timeouts,
            tasks_abandoned: s.abandoned,
            strangers_refused: s.refused_handshakes,
            recent_losses: last(
                s.losses
                    .iter()
                    .map(|l| format!("worker {} (pid {}): {}", l.worker, l.pid, l.reason)),
            ),
            recent_refusals: last(s.recent_refusals.iter().cloned()),
        }
    }

    /// These counts followed by `later`'s (a resumed run's process after the
    /// earlier ones).
    pub fn then(&self, later: &PoolEvents) -> PoolEvents {
        PoolEvents {
            workers_lost: self.workers_lost + later.workers_lost,
            replacements: self.replacements + later.replacements,
            failed_replacements: self.failed_replacements + later.failed_replacements,
            tasks_retried: self.tasks_retried + later.tasks_retried,
            tasks_timed_out: self.tasks_timed_out + later.tasks_timed_out,
            tasks_abandoned: self.tasks_abandoned + later.tasks_abandoned,
            strangers_refused: self.strangers_refused + later.strangers_refused,
            recent_losses: last(
                self.recent_losses
                    .iter()
                    .chain(&later.recent_losses)
                    .cloned(),
            ),
            recent_refusals: last(
                self.recent_refusals
                    .iter()
                    .chain(&later.recent_refusals)
                    .cloned(),
            ),
        }
    }
}

/// The last [`RECENT_EVENTS`] items.
fn last(items: impl Iterator<Item = String>) -> Vec<String> {
    let all: Vec<String> = items.collect();
    let skip = all.len().saturating_sub(RECENT_EVENTS);
    all.into_iter().skip(skip).collect()
}

/// Everything the run has counted, over all its processes up to the last complete
/// iteration (stored with it, see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunCounters {
    /// Per generator (script order): candidates made, failures and why.
    pub generators: Vec<GeneratorSummary>,
    /// Relaxations in the model that failed.
    pub relax_failures: Failures,
    /// Evaluations that failed.
    pub evaluation_failures: Failures,
    /// Candidates dropped because their task failed for good
    /// (`[search] on_task_failure = "skip"`).
    pub dropped: Failures,
    /// Iterations in a row, up to the last one, in which nothing was generated.
    pub nothing_generated: u64,
    /// Energy and force calculations of the real calculator (relaxations in it and
    /// evaluations, failed ones included).
    pub calculator_calls: u64,
    /// Optimizer steps in a surrogate's acquisition (`gofee`).
    pub surrogate_steps: u64,
    /// The pool's faults.
    pub pool_events: PoolEvents,
}

impl RunCounters {
    /// The counters of a run that has done nothing yet, with one empty record per
    /// generator label.
    pub fn new(generators: impl IntoIterator<Item = String>) -> RunCounters {
        RunCounters {
            generators: generators
                .into_iter()
                .map(|generator| GeneratorSummary {
                    generator,
                    ..GeneratorSummary::default()
                })
                .collect(),
            ..RunCounters::default()
        }
    }

    /// As JSON, the form stored with each iteration.
    pub fn to_json(&self) -> String {
        // Plain numbers, strings and lists: encoding cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_and_recent_messages_stay_few() {
        let a = PoolEvents {
            workers_lost: 2,
            tasks_retried: 1,
            recent_losses: (0..4).map(|i| format!("a{i}")).collect(),
            ..PoolEvents::default()
        };
        let b = PoolEvents {
            workers_lost: 3,
            strangers_refused: 7,
            recent_losses: vec!["b0".into(), "b1".into()],
            recent_refusals: vec!["r".into()],
            ..PoolEvents::default()
        };
        let sum = a.then(&b);
        assert_eq!(
            (sum.workers_lost, sum.tasks_retried, sum.strangers_refused),
            (5, 1, 7)
        );
        assert_eq!(sum.recent_losses, ["a1", "a2", "a3", "b0", "b1"]);
        assert_eq!(sum.recent_refusals, ["r"]);
    }

    #[test]
    fn counters_read_back_from_json() {
        let mut c = RunCounters::new(["[[generator]] #1 random".to_owned()]);
        c.generators[0].generated = 12;
        c.generators[0].failures.record("too crowded");
        c.dropped.record("candidate 1: lost");
        c.nothing_generated = 2;
        c.pool_events.workers_lost = 4;
        let back: RunCounters = serde_json::from_str(&c.to_json()).unwrap();
        assert_eq!(back, c);
    }
}
