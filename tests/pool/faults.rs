//! Errors, panics, killed workers, timeouts.

use crate::common::{pool, pool_with, process_alive, Model};
use agox::pool::{PoolConfig, PoolError, TaskFailure, WorkerName};
use std::time::{Duration, Instant};

#[test]
fn task_error_names_function_worker_and_message_and_worker_lives_on() {
    let (pool, f) = pool(2);
    let pids = pool.worker_pids();
    let err = pool
        .map(&f.fail, ["no convergence".to_string()])
        .unwrap_err();
    match &err {
        PoolError::Task {
            function,
            worker,
            kind,
            message,
            index,
        } => {
            assert_eq!(function, "fail");
            assert!(matches!(worker, WorkerName::Slot(0 | 1)));
            assert_eq!(*kind, TaskFailure::Error);
            assert_eq!(message, "no convergence");
            assert_eq!(*index, 0);
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("'fail'") && text.contains("no convergence") && text.contains("worker"),
        "{text}"
    );
    assert_eq!(pool.map(&f.square, [3u64]).unwrap(), vec![9]);
    assert_eq!(
        pool.worker_pids(),
        pids,
        "a worker was replaced after a plain error"
    );
}

#[test]
fn panic_is_reported_with_location_and_worker_lives_on() {
    let (pool, f) = pool(2);
    let pids = pool.worker_pids();
    let results = pool.map_results(&f.panic, 0..6u64).unwrap();
    for (i, r) in results.iter().enumerate() {
        if i == 3 {
            let e = r.as_ref().unwrap_err();
            assert!(e.is_panic(), "{e}");
            let text = e.to_string();
            assert!(
                text.contains("boom at 3") && text.contains("common.rs"),
                "{text}"
            );
        } else {
            assert_eq!(r.as_ref().unwrap(), &(i as u64));
        }
    }
    assert_eq!(pool.worker_pids(), pids);
    assert_eq!(pool.stats().total_restarts(), 0);
}

#[test]
fn sigkilled_worker_is_replaced_with_its_state_and_the_task_retried() {
    let (pool, f) = pool(2);
    let m = pool
        .add_module("model", Model::new(vec![1.0], 1.0))
        .unwrap();
    m.lock().weights = vec![2.0, 3.0];
    pool.synchronize().unwrap();
    let victim = pool.worker_pids()[0];
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        // SAFETY: killing a worker process of this test.
        unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    });
    let out = pool.map(&f.sleep_ms, vec![100u64; 8]).unwrap();
    killer.join().unwrap();
    assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), vec![100; 8]);
    let stats = pool.stats();
    assert_eq!(stats.workers[0].restarts, 1, "{stats:?}");
    assert_eq!(stats.losses.len(), 1, "{stats:?}");
    assert_eq!((stats.losses[0].worker, stats.losses[0].pid), (0, victim));
    assert!(
        stats.losses[0].reason.contains("connection closed"),
        "{stats:?}"
    );
    assert!(stats.retries >= 1, "{stats:?}");
    assert_ne!(pool.worker_pids()[0], victim);
    assert!(crate::common::eventually(Duration::from_secs(2), || {
        !process_alive(victim)
    }));
    // The replacement holds the module with the latest synchronized attributes.
    for v in pool.broadcast(&f.predict, &(m.link(), 1.0)).unwrap() {
        assert_eq!(v, 6.0);
    }
}

#[test]
fn task_killing_its_worker_is_retried_then_succeeds() {
    let (pool, f) = pool(2);
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("died").to_string_lossy().into_owned();
    let out = pool.map(&f.die_once, [(marker, 41u64)]).unwrap();
    assert_eq!(out, vec![42]);
    assert_eq!(pool.stats().total_restarts(), 1);
}

#[test]
fn task_that_always_kills_its_worker_fails_after_the_retry_budget() {
    let mut cfg = PoolConfig::with_workers(2);
    cfg.max_retries = 2;
    let (pool, f) = pool_with(cfg);
    let err = pool.map(&f.die, [0u64]).unwrap_err();
    match err {
        PoolError::WorkerLost {
            function, attempts, ..
        } => {
            assert_eq!(function, "die");
            assert_eq!(attempts, 3);
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(pool.stats().total_restarts(), 3);
    assert_eq!(pool.map(&f.square, [5u64, 6]).unwrap(), vec![25, 36]);
}

#[test]
fn hung_task_times_out_and_the_pool_recovers() {
    let (pool, f) = pool_with(PoolConfig::with_workers(2).task_timeout(Duration::from_millis(300)));
    let before = pool.worker_pids();
    let t0 = Instant::now();
    let results = pool.map_results(&f.sleep_ms, [10_000u64, 10]).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    let e = results[0].as_ref().unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(e.to_string().contains("timed out"), "{e}");
    assert_eq!(results[1].as_ref().unwrap().0, 10);
    let after = pool.worker_pids();
    assert_ne!(before, after, "the hung worker was not replaced");
    assert_eq!(pool.stats().timeouts, 1);
    assert!(pool.stats().losses[0].reason.contains("timed out"));
    assert_eq!(pool.map(&f.square, [7u64]).unwrap(), vec![49]);
    for pid in before.iter().filter(|p| !after.contains(p)) {
        assert!(crate::common::eventually(Duration::from_secs(2), || {
            !process_alive(*pid)
        }));
    }
}

#[test]
fn output_larger_than_a_frame_is_the_tasks_error() {
    let mut cfg = PoolConfig::with_workers(1);
    cfg.max_frame = 64 * 1024;
    let (pool, f) = pool_with(cfg);
    let err = pool.map(&f.random, [100_000u32]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("exceeds the maximum frame of 65536"),
        "{text}"
    );
    assert_eq!(pool.stats().total_restarts(), 0);
    assert_eq!(pool.map(&f.random, [3u32]).unwrap()[0].len(), 3);
}
