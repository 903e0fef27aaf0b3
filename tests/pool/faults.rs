//! Errors, panics, killed workers, timeouts.

use crate::common::{pool, pool_with, pool_with_events, process_alive, Model};
use agox::pool::{
    LossCause, PoolConfig, PoolError, PoolEvent, TaskFailure, WorkerExit, WorkerName,
};
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
    let (pool, f, mut events) = pool_with_events(cfg);
    let err = pool.map(&f.die, [0u64]).unwrap_err();
    assert!(err.is_worker_lost() && err.is_fault() && !err.is_task_error());
    match &err {
        PoolError::WorkerLost {
            function,
            attempts,
            index,
            fate,
            ..
        } => {
            assert_eq!(function, "die");
            assert_eq!(*attempts, 3);
            assert_eq!(*index, 0);
            assert!(fate.contains("killed by signal 9 (SIGKILL)"), "{fate}");
        }
        other => panic!("unexpected {other}"),
    }
    // The message names the function, the task and the last worker's fate.
    let text = err.to_string();
    assert!(
        text.contains("task 0 of 'die'") && text.contains("SIGKILL"),
        "{text}"
    );
    assert_eq!(pool.stats().total_restarts(), 3);
    assert_eq!(pool.stats().abandoned, 1);
    assert_eq!(pool.map(&f.square, [5u64, 6]).unwrap(), vec![25, 36]);
    assert_eq!(
        events.count(|e| matches!(e, PoolEvent::TaskRetried { function, .. } if function == "die")),
        2
    );
    assert_eq!(
        events.count(|e| matches!(e, PoolEvent::TaskAbandoned { .. })),
        1
    );
    assert_eq!(
        events.count(|e| matches!(
            e,
            PoolEvent::WorkerLost {
                cause: LossCause::ConnectionClosed,
                exit: Some(WorkerExit::Signal(9)),
                ..
            }
        )),
        3
    );
}

/// A timed-out task is a worker fault: the worker is killed and replaced and the
/// task retried, and it fails with `Timeout` once its retries are spent.
#[test]
fn hung_task_is_retried_then_times_out_and_the_pool_recovers() {
    let mut cfg = PoolConfig::with_workers(2).task_timeout(Duration::from_millis(300));
    cfg.max_retries = 1;
    let (pool, f, mut events) = pool_with_events(cfg);
    let before = pool.worker_pids();
    let t0 = Instant::now();
    let results = pool.map_results(&f.sleep_ms, [10_000u64, 10]).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    let e = results[0].as_ref().unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(matches!(e, PoolError::Timeout { attempts: 2, .. }), "{e:?}");
    assert!(e.to_string().contains("timed out"), "{e}");
    assert_eq!(results[1].as_ref().unwrap().0, 10);
    let after = pool.worker_pids();
    assert_ne!(before, after, "the hung worker was not replaced");
    let stats = pool.stats();
    assert_eq!(stats.timeouts, 2, "{stats:?}");
    assert_eq!(stats.retries, 1, "{stats:?}");
    assert!(stats.losses[0].reason.contains("timed out"), "{stats:?}");
    assert_eq!(
        events.count(|e| matches!(e, PoolEvent::TaskTimedOut { .. })),
        2
    );
    assert_eq!(
        events.count(|e| matches!(e, PoolEvent::TaskRetried { .. })),
        1
    );
    assert_eq!(pool.map(&f.square, [7u64]).unwrap(), vec![49]);
    for pid in before.iter().filter(|p| !after.contains(p)) {
        assert!(crate::common::eventually(Duration::from_secs(2), || {
            !process_alive(*pid)
        }));
    }
}

/// A stopped worker (SIGSTOP) holding tasks: its task times out, it is killed and
/// replaced, the task is retried, and the results are those of an undisturbed run.
#[test]
fn sigstopped_worker_is_replaced_and_results_are_identical() {
    let args: Vec<(u64, u32)> = (0..16).map(|i| (20, 3 + i % 4)).collect();
    let reference = {
        let (pool, f) = pool(2);
        pool.map(&f.slow_random, args.clone()).unwrap()
    };
    let cfg = PoolConfig::with_workers(2)
        .seed(7)
        .task_timeout(Duration::from_millis(400));
    let (pool, f, mut events) = pool_with_events(cfg);
    let victim = pool.worker_pids()[0];
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        // SAFETY: stopping a worker process of this test.
        unsafe { libc::kill(victim as i32, libc::SIGSTOP) };
    });
    let out = pool.map(&f.slow_random, args).unwrap();
    stopper.join().unwrap();
    assert_eq!(out, reference);
    assert!(events.count(|e| matches!(e, PoolEvent::TaskTimedOut { worker: 0, .. })) >= 1);
    assert_eq!(
        events.count(|e| matches!(
            e,
            PoolEvent::WorkerLost { pid, cause: LossCause::TaskTimeout { .. }, .. } if *pid == victim
        )),
        1
    );
    assert!(crate::common::eventually(Duration::from_secs(2), || {
        !process_alive(victim)
    }));
}

/// A stopped worker that runs nothing would leave a synchronization waiting for
/// its acknowledgement forever: with a task timeout it is found unresponsive,
/// replaced, and the replacement receives the new values.
#[test]
fn stopped_idle_worker_does_not_hang_a_synchronization() {
    let cfg = PoolConfig::with_workers(2)
        .seed(7)
        .task_timeout(Duration::from_millis(300));
    let (pool, f, mut events) = pool_with_events(cfg);
    let m = pool
        .add_module("model", Model::new(vec![1.0], 0.0))
        .unwrap();
    let victim = pool.worker_pids()[1];
    // SAFETY: stopping a worker process of this test.
    unsafe { libc::kill(victim as i32, libc::SIGSTOP) };
    m.lock().weights = vec![4.0];
    let t0 = Instant::now();
    let r = pool.synchronize().unwrap();
    assert_eq!(r.attributes, 1);
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    for v in pool.broadcast(&f.predict, &(m.link(), 1.0)).unwrap() {
        assert_eq!(v, 4.0);
    }
    assert_eq!(
        events.count(|e| matches!(
            e,
            PoolEvent::WorkerLost { cause: LossCause::Unresponsive { .. }, pid, .. } if *pid == victim
        )),
        1
    );
}

/// `worker_memory_mb` limits every worker; an allocation beyond it aborts the
/// worker, the task fails naming the signal and the limit, and the worker is
/// replaced.
#[test]
fn allocation_beyond_the_worker_memory_limit_fails_the_task_and_replaces_the_worker() {
    let mut cfg = PoolConfig::with_workers(1).seed(7);
    cfg.worker_memory_mb = Some(512);
    cfg.max_retries = 0;
    let (pool, f, mut events) = pool_with_events(cfg);
    assert_eq!(pool.run_on(0, &f.data_limit, &()).unwrap(), 512 << 20);
    assert_eq!(pool.map(&f.alloc_mb, [16u64]).unwrap(), vec![4096]);
    let err = pool.map(&f.alloc_mb, [2048u64]).unwrap_err();
    let text = err.to_string();
    assert!(err.is_worker_lost(), "{text}");
    assert!(
        text.contains("task 0 of 'alloc_mb'")
            && text.contains("SIGABRT")
            && text.contains("512 MiB"),
        "{text}"
    );
    assert_eq!(pool.map(&f.alloc_mb, [16u64]).unwrap(), vec![4096]);
    assert_eq!(pool.stats().total_restarts(), 1);
    // The worker at start, then its replacement.
    assert_eq!(
        events.count(|e| matches!(e, PoolEvent::WorkerReady { .. })),
        2
    );
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
