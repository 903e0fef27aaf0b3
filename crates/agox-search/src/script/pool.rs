//! `[pool]`: the limits of the worker pool — how long a task may run, how often a
//! task whose worker was lost is retried, how much memory a worker may allocate.
//!
//! Every key is optional; a missing one keeps the pool's default
//! ([`PoolConfig::default`]). These settings change how faults are handled, never a
//! result, so a resumed run may change them (like `workers`).

use std::time::Duration;

use agox_pool::PoolConfig;
use serde::{Deserialize, Serialize};

use super::read::{Ctx, Keys};

/// Smallest `worker_memory_mb` a worker can start with (the pool's own bound).
pub const MIN_WORKER_MEMORY_MB: i64 = 16;
/// Largest `max_retries` and `max_restarts`.
pub const MAX_COUNT: i64 = 1000;

/// `[pool]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolSettings {
    /// Longest a task may run (s) before its worker is killed and replaced and the
    /// task retried; also the longest a worker may stay silent while it owes an
    /// answer. `None`: no limit.
    pub task_timeout: Option<f64>,
    /// How often a task whose worker was lost (or timed out) is started again
    /// before it fails (`None`: the pool's default, 2).
    pub max_retries: Option<u32>,
    /// How many replacements in a row a worker slot may need before one of them is
    /// ready; beyond it the pool is broken and the run fails (`None`: 8).
    pub max_restarts: Option<u32>,
    /// Most memory one worker may allocate (MiB); an allocation beyond it ends the
    /// worker, whose task is retried elsewhere. `None`: no limit.
    pub worker_memory_mb: Option<u64>,
    /// How long any connection to the pool's socket may take to greet (s) before it
    /// is dropped (`None`: 5 s).
    pub handshake_timeout: Option<f64>,
}

impl PoolSettings {
    /// `config` with these settings applied (keys left out keep `config`'s values).
    pub fn apply(&self, mut config: PoolConfig) -> PoolConfig {
        if let Some(t) = self.task_timeout {
            config.task_timeout = Some(Duration::from_secs_f64(t));
        }
        if let Some(n) = self.max_retries {
            config.max_retries = n;
        }
        if let Some(n) = self.max_restarts {
            config.max_restarts = n;
        }
        if let Some(mb) = self.worker_memory_mb {
            config.worker_memory_mb = Some(mb);
        }
        if let Some(t) = self.handshake_timeout {
            config.handshake_timeout = Duration::from_secs_f64(t);
        }
        config
    }
}

/// A duration in seconds: a finite number > 0 that a [`Duration`] can hold.
fn seconds(cx: &mut Ctx<'_>, v: &super::tree::Node, key: &str) -> Option<f64> {
    let s = cx.positive(v, key)?;
    if Duration::try_from_secs_f64(s).is_err() {
        cx.expected(
            v,
            key,
            "a number of seconds > 0 (at most about 584 billion years)",
        );
        return None;
    }
    Some(s)
}

pub(super) fn read(cx: &mut Ctx<'_>, mut keys: Keys<'_>) -> Option<PoolSettings> {
    let task_timeout_v = keys.get("task_timeout");
    let max_retries_v = keys.get("max_retries");
    let max_restarts_v = keys.get("max_restarts");
    let memory_v = keys.get("worker_memory_mb");
    let handshake_v = keys.get("handshake_timeout");
    let key = |k: &str| keys.key(k);

    // A count beyond this bounds nothing: a task whose worker dies every time would
    // only be retried for longer.
    let count = |cx: &mut Ctx<'_>, v: &super::tree::Node, k: &str, min: i64| match v.kind {
        super::tree::Kind::Int(n) if (min..=MAX_COUNT).contains(&n) => Some(Some(n as u32)),
        _ => {
            cx.expected(v, k, &format!("an integer from {min} to {MAX_COUNT}"));
            None
        }
    };
    let task_timeout = match task_timeout_v {
        Some(v) => seconds(cx, v, &key("task_timeout")).map(Some),
        None => Some(None),
    };
    let max_retries = match max_retries_v {
        Some(v) => count(cx, v, &key("max_retries"), 0),
        None => Some(None),
    };
    let max_restarts = match max_restarts_v {
        Some(v) => count(cx, v, &key("max_restarts"), 1),
        None => Some(None),
    };
    let worker_memory_mb = match memory_v {
        Some(v) => {
            let k = key("worker_memory_mb");
            match cx.u64_at_least(v, &k, MIN_WORKER_MEMORY_MB) {
                // The kernel's limit is in bytes.
                Some(mb) if mb > u64::MAX >> 20 => {
                    cx.expected(v, &k, "a number of MiB below 2⁴⁴");
                    None
                }
                mb => mb.map(Some),
            }
        }
        None => Some(None),
    };
    let handshake_timeout = match handshake_v {
        Some(v) => seconds(cx, v, &key("handshake_timeout")).map(Some),
        None => Some(None),
    };
    if !keys.finish(cx) {
        return None;
    }
    Some(PoolSettings {
        task_timeout: task_timeout?,
        max_retries: max_retries?,
        max_restarts: max_restarts?,
        worker_memory_mb: worker_memory_mb?,
        handshake_timeout: handshake_timeout?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_only_what_is_given() {
        let given = PoolSettings {
            task_timeout: Some(1.5),
            max_retries: Some(0),
            worker_memory_mb: Some(512),
            ..PoolSettings::default()
        };
        let c = given.apply(PoolConfig::with_workers(3));
        assert_eq!(c.workers, 3);
        assert_eq!(c.task_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(c.max_retries, 0);
        assert_eq!(c.worker_memory_mb, Some(512));
        let default = PoolConfig::default();
        assert_eq!(c.max_restarts, default.max_restarts);
        assert_eq!(c.handshake_timeout, default.handshake_timeout);
        let none = PoolSettings::default().apply(PoolConfig::default());
        assert_eq!(none.task_timeout, None);
        assert_eq!(none.max_retries, default.max_retries);
    }
}
