//! What the loop does when a pool call for a candidate fails.
//!
//! Two kinds of failure must never be confused:
//!
//! * a **calculation failure** — a structure a generator cannot make, a relaxation
//!   or an external calculator that reports an error — is an answer about that
//!   candidate: the task ran and said so. It is counted, its message kept and shown,
//!   and the run goes on (the same candidate fails the same way on any worker);
//! * a **task failure** — the worker running the task was lost (killed, crashed,
//!   out of memory) or the task timed out, on every attempt `[pool] max_retries`
//!   allows — says nothing about the candidate. By default
//!   ([`OnTaskFailure::Fail`]) it stops the run with [`SearchError::TaskFailed`]
//!   before anything of the iteration is stored, so a resumed run redoes the whole
//!   iteration and ends with the undisturbed run's results. With
//!   [`OnTaskFailure::Skip`] the candidate is dropped, counted and reported.
//!
//! Everything else the pool reports — a broken pool (it cannot keep its worker
//! count: replacements keep dying, the fork server is gone), a task that panicked,
//! a socket or codec error — is an error of the run, whatever the policy.

use agox_pool::PoolError;

use super::SearchError;
use crate::script::OnTaskFailure;

/// The answer to `error`, met while getting `candidate` (`candidate 3 of
/// [[generator]] #2 rattle`) in `iteration`: `Ok(message)` when the candidate is to
/// be dropped (the policy is `skip`), the error that stops the run otherwise.
pub(crate) fn judge(
    policy: OnTaskFailure,
    iteration: u64,
    candidate: String,
    error: PoolError,
) -> Result<String, SearchError> {
    if !is_task_failure(&error) {
        return Err(SearchError::Pool(error));
    }
    match policy {
        OnTaskFailure::Fail => Err(SearchError::TaskFailed {
            iteration,
            candidate,
            error,
        }),
        OnTaskFailure::Skip => Ok(format!("{candidate}: {error}")),
    }
}

/// True for a task that failed for good because of its workers (lost or timed out
/// on every attempt), not because of its own code or a broken pool.
pub(crate) fn is_task_failure(error: &PoolError) -> bool {
    error.is_worker_lost() || error.is_timeout()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn lost() -> PoolError {
        PoolError::WorkerLost {
            function: "agox_search.generate_relax".into(),
            index: 3,
            worker: 1,
            attempts: 3,
            fate: "(pid 4242): connection closed, killed by signal 9 (SIGKILL)".into(),
        }
    }

    #[test]
    fn task_failures_follow_the_policy() {
        let e = judge(OnTaskFailure::Fail, 7, "candidate 3".into(), lost()).unwrap_err();
        let text = e.to_string();
        for part in [
            "iteration 7",
            "candidate 3",
            "agox_search.generate_relax",
            "SIGKILL",
            "on_task_failure",
        ] {
            assert!(text.contains(part), "{part} not in {text}");
        }
        let dropped = judge(OnTaskFailure::Skip, 7, "candidate 3".into(), lost()).unwrap();
        assert!(dropped.starts_with("candidate 3: task 3 of"), "{dropped}");
        let timeout = PoolError::Timeout {
            function: "f".into(),
            index: 0,
            worker: 0,
            after: Duration::from_secs(1),
            attempts: 3,
        };
        assert!(judge(OnTaskFailure::Skip, 0, "c".into(), timeout).is_ok());
    }

    #[test]
    fn a_broken_pool_fails_the_run_whatever_the_policy() {
        let broken = PoolError::Broken {
            reason: "the fork server (pid 7) is gone".into(),
        };
        match judge(OnTaskFailure::Skip, 2, "candidate 0".into(), broken) {
            Err(SearchError::Pool(e)) => assert!(e.is_broken()),
            other => panic!("{other:?}"),
        }
    }
}
