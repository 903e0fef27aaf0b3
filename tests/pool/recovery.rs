//! Lost workers come back whole: a loss during a synchronization, replacements that
//! die before their handshake, and a pool that can no longer keep its workers.

use crate::common::{marker, pool_with, pool_with_events, process_alive, Events, Model};
use agox::pool::{EventSink, LossCause, Pool, PoolConfig, PoolEvent};
use rand::Rng;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the test does while a task is killing its own worker.
#[derive(Debug, Clone, Copy)]
enum Op {
    Synchronize,
    SynchronizeModule,
    SynchronizeFrom,
    AddModule,
    RemoveModule,
}

/// A task kills its own worker 300 ms after starting, while `op` is queued behind
/// it on that worker; the other worker is busy for 700 ms, so the broadcast is
/// still waiting for it when the replacement greets. The replacement joins in the
/// middle of the broadcast: it must end up with exactly what the others hold, and
/// the record must not claim more.
fn loss_during(op: Op) {
    let (pool, f, mut events) = pool_with_events(PoolConfig::with_workers(2).seed(7));
    let m = pool
        .add_module("model", Model::new(vec![1.0], 0.5))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Each goes to a worker at once; the broadcast below queues behind both.
    let dying = pool
        .submit(&f.die_after, &(marker(&dir, "died"), 300))
        .unwrap();
    let busy = pool.submit(&f.sleep_ms, &700).unwrap();
    let new = Model {
        weights: vec![5.0, 6.0],
        version: 3,
        bias: 0.5,
    };
    let t0 = Instant::now();
    match op {
        Op::Synchronize => {
            *m.lock() = new.clone();
            assert_eq!(pool.synchronize().unwrap().attributes, 2);
        }
        Op::SynchronizeModule => {
            *m.lock() = new.clone();
            let r = pool
                .synchronize_module("model", Some(&["weights"]))
                .unwrap();
            assert_eq!(r.attributes, 1);
            let r = pool.synchronize_module("model", None).unwrap();
            assert_eq!(r.attributes, 1);
        }
        Op::SynchronizeFrom => {
            *m.lock() = new.clone();
            let r = pool.synchronize_from("model", &new, None).unwrap();
            assert_eq!(r.attributes, 2);
        }
        Op::AddModule => {
            pool.add_module("other", new.clone()).unwrap();
        }
        Op::RemoveModule => pool.remove_module("model").unwrap(),
    }
    // The broadcast waited for the busy worker, the replacement meanwhile joined.
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "{op:?}: {:?}",
        t0.elapsed()
    );
    assert_eq!(pool.get(dying).unwrap(), 300);
    assert_eq!(pool.get(busy).unwrap().0, 700);
    assert_eq!(pool.stats().workers_lost, 1, "{op:?}");
    // Every worker holds what the driver holds...
    match op {
        Op::RemoveModule => {
            for w in 0..2 {
                let e = pool.run_on(w, &f.model_state, &m.link()).unwrap_err();
                assert!(e.to_string().contains("no module 'model'"), "{op:?}: {e}");
            }
        }
        Op::AddModule => {
            let other = pool.module::<Model>("other").unwrap();
            for state in pool.broadcast(&f.model_state, &other.link()).unwrap() {
                assert_eq!(state, new, "{op:?}");
            }
            for state in pool.broadcast(&f.model_state, &m.link()).unwrap() {
                assert_eq!(state, Model::new(vec![1.0], 0.5), "{op:?}");
            }
        }
        _ => {
            for state in pool.broadcast(&f.model_state, &m.link()).unwrap() {
                assert_eq!(state, new, "{op:?}");
            }
        }
    }
    // ...and the record agrees: nothing is left to send.
    let r = pool.synchronize().unwrap();
    assert_eq!(r.attributes, 0, "{op:?}: {r}");
    // Two workers at start, one replacement.
    assert_eq!(
        events.count(|e| matches!(e, PoolEvent::WorkerReady { .. })),
        3,
        "{op:?}: {:?}",
        events.all()
    );
}

#[test]
fn worker_lost_during_synchronize_gets_the_new_attributes() {
    loss_during(Op::Synchronize);
}

#[test]
fn worker_lost_during_synchronize_module_gets_the_new_attributes() {
    loss_during(Op::SynchronizeModule);
}

#[test]
fn worker_lost_during_synchronize_from_gets_the_new_attributes() {
    loss_during(Op::SynchronizeFrom);
}

#[test]
fn worker_lost_during_add_module_gets_the_module() {
    loss_during(Op::AddModule);
}

#[test]
fn worker_lost_during_remove_module_loses_the_module_too() {
    loss_during(Op::RemoveModule);
}

/// A pool whose events are collected, and whose first `kills` replacement workers
/// are SIGKILLed 0 to 1 ms after their launch. The kill is made from the sink, so
/// the coordinator cannot take the new worker in meanwhile, while the new process
/// runs on: the kill lands before it connects, after it connected, or after it
/// greeted. Also returns how many were killed.
fn with_killer(cfg: PoolConfig, kills: u32) -> (Pool, crate::common::Fns, Events, Arc<AtomicU32>) {
    let killed = Arc::new(AtomicU32::new(0));
    let counted = killed.clone();
    let (to_test, seen) = crossbeam_channel::unbounded();
    let sink = EventSink::new(move |e| {
        if let PoolEvent::WorkerSpawned { pid, attempt, .. } = e {
            if *attempt >= 1 && counted.load(Ordering::SeqCst) < kills {
                let pause = Duration::from_micros(rand::thread_rng().gen_range(0..1000));
                let t0 = Instant::now();
                while t0.elapsed() < pause {
                    std::hint::spin_loop();
                }
                // SAFETY: killing a worker process of this test.
                unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
                counted.fetch_add(1, Ordering::SeqCst);
            }
        }
        let _ = to_test.send(e.clone());
    });
    let (pool, f) = pool_with(cfg.events(sink));
    (pool, f, Events::new(seen), killed)
}

/// Replacements killed within a millisecond of their launch, five times in a row:
/// each death is noticed at once (not after the 20 s connect timeout), the next
/// replacement follows after a growing pause, and the sixth serves.
#[test]
fn replacements_dying_before_their_handshake_are_replaced_at_once() {
    let (pool, f, mut events, killed) = with_killer(PoolConfig::with_workers(2).seed(7), 5);
    let m = pool
        .add_module("model", Model::new(vec![2.0], 0.0))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    assert_eq!(
        pool.map(&f.die_once, [(marker(&dir, "once"), 1u64)])
            .unwrap(),
        vec![2]
    );
    // Wait for the slot to be whole again (two workers at start, then the sixth
    // replacement), driving the pool meanwhile.
    while events.count(|e| matches!(e, PoolEvent::WorkerReady { .. })) < 3 {
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", events.all());
        pool.map(&f.square, [1u64]).unwrap();
    }
    let elapsed = t0.elapsed();
    assert_eq!(killed.load(Ordering::SeqCst), 5);
    assert!(
        elapsed < Duration::from_secs(5),
        "{elapsed:?}: {:?}",
        events.all()
    );
    let stats = pool.stats();
    assert_eq!(stats.workers_lost, 6, "{stats:?}");
    assert_eq!(stats.failed_replacements, 5, "{stats:?}");
    assert_eq!(stats.total_restarts(), 6, "{stats:?}");
    assert!(events.count(|e| matches!(e, PoolEvent::ReplacementDelayed { .. })) >= 4);
    // Each killed replacement was lost as soon as it died, whatever it was doing.
    for e in events.all() {
        if let PoolEvent::WorkerLost { cause, .. } = e {
            assert!(
                !matches!(cause, LossCause::NoHandshake { .. }),
                "a dead replacement waited for its connect timeout: {e:?}"
            );
        }
    }
    for v in pool.broadcast(&f.predict, &(m.link(), 1.0)).unwrap() {
        assert_eq!(v, 2.0);
    }
    for pid in pool.worker_pids() {
        assert!(process_alive(pid));
    }
}

/// When every replacement dies, the slot's budget of replacements in a row runs
/// out and the pool says it is broken, on this call and every later one — it does
/// not go on with fewer workers or return empty results.
#[test]
fn replacements_that_keep_dying_break_the_pool_loudly() {
    let mut cfg = PoolConfig::with_workers(2).seed(7);
    cfg.max_restarts = 3;
    let (pool, f, mut events, _) = with_killer(cfg, u32::MAX);
    // With state to replay, no killed replacement can become ready (it cannot
    // acknowledge what it is sent after its death).
    pool.add_module("model", Model::new(vec![1.0], 0.0))
        .unwrap();
    let t0 = Instant::now();
    let victim = pool.worker_pids()[1];
    // SAFETY: killing a worker process of this test.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let err = loop {
        match pool.map(&f.sleep_ms, [5u64, 5]) {
            Ok(_) => assert!(t0.elapsed() < Duration::from_secs(10)),
            Err(e) => break e,
        }
    };
    assert!(err.is_broken(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("worker 1") && text.contains("3 time(s) in a row"),
        "{text}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(pool.map(&f.square, [1u64]).unwrap_err().is_broken());
    assert!(pool.synchronize().unwrap_err().is_broken());
    assert_eq!(
        events.count(|e| matches!(e, PoolEvent::PoolBroken { .. })),
        1
    );
}

/// The fork server killed: no worker can be replaced, and the pool says so.
#[test]
fn killed_fork_server_breaks_the_pool_loudly() {
    let (pool, f, mut events) = pool_with_events(PoolConfig::with_workers(2).seed(7));
    let worker = pool.worker_pids()[0];
    let stat = std::fs::read_to_string(format!("/proc/{worker}/stat")).unwrap();
    let server: i32 = stat
        .rsplit(") ")
        .next()
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap();
    // SAFETY: killing this test's fork server.
    unsafe { libc::kill(server, libc::SIGKILL) };
    let err = pool.map(&f.sleep_ms, vec![20u64; 8]).unwrap_err();
    assert!(err.is_broken(), "{err}");
    assert!(err.to_string().contains("fork server"), "{err}");
    assert!(pool.map(&f.square, [1u64]).unwrap_err().is_broken());
    assert!(events.count(|e| matches!(e, PoolEvent::PoolBroken { .. })) == 1);
}
