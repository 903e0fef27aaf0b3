//! Ordering, determinism across worker counts, and the in-flight window.

use super::common::{pool, pool_with};
use agox::pool::PoolConfig;
use std::time::{Duration, Instant};

#[test]
fn map_returns_results_in_input_order() {
    let (pool, f) = pool(3);
    // Tasks of uneven length so completion order differs from input order.
    let sleeps: Vec<u64> = (0..24).map(|i| (i * 7 % 5) as u64).collect();
    let out = pool.map(&f.sleep_ms, sleeps.clone()).unwrap();
    assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), sleeps);
    let squares = pool.map(&f.square, 0..500u64).unwrap();
    assert_eq!(squares, (0..500u64).map(|x| x * x).collect::<Vec<_>>());
}

#[test]
fn completion_order_variant_yields_every_index_once() {
    let (pool, f) = pool(2);
    let sleeps = vec![120u64, 1, 1, 1];
    let got: Vec<(usize, u64)> = pool
        .map_unordered(&f.sleep_ms, sleeps.clone())
        .unwrap()
        .map(|(i, r)| (i, r.unwrap().0))
        .collect();
    let mut idx: Vec<usize> = got.iter().map(|g| g.0).collect();
    // The long task finishes last although it was submitted first.
    assert_eq!(idx.last(), Some(&0), "{got:?}");
    idx.sort();
    assert_eq!(idx, vec![0, 1, 2, 3]);
    for (i, v) in got {
        assert_eq!(v, sleeps[i]);
    }
}

#[test]
fn submit_returns_at_once_and_get_collects() {
    let (pool, f) = pool(2);
    let t0 = Instant::now();
    let a = pool.submit(&f.sleep_ms, &200).unwrap();
    let b = pool.submit(&f.sleep_ms, &200).unwrap();
    assert!(t0.elapsed() < Duration::from_millis(100), "submit blocked");
    assert_eq!(pool.get(b).unwrap().0, 200);
    assert_eq!(pool.get(a).unwrap().0, 200);
    // Two 200 ms tasks on two workers ran side by side.
    assert!(
        t0.elapsed() < Duration::from_millis(390),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn seeded_tasks_are_identical_across_worker_counts() {
    let run = |workers: usize| {
        let (pool, f) = pool_with(PoolConfig::with_workers(workers).seed(2024));
        let first = pool.map(&f.random, vec![5u32; 37]).unwrap();
        let second = pool.map(&f.random, vec![3u32; 11]).unwrap();
        let single = pool.get(pool.submit(&f.random, &4).unwrap()).unwrap();
        (first, second, single)
    };
    let reference = run(0); // in process, serial
    for workers in [1, 2, 4] {
        assert_eq!(
            run(workers),
            reference,
            "{workers} workers differ from serial"
        );
    }
    // Different tasks of one call get different streams.
    assert_ne!(reference.0[0], reference.0[1]);
}

#[test]
fn tiny_tasks_are_pipelined() {
    let (pool, f) = pool(2);
    let out = pool
        .map(&f.sum, (0..3000).map(|i| vec![i as f64; 100]))
        .unwrap();
    assert_eq!(out[10], 1000.0);
    let stats = pool.stats();
    assert_eq!(stats.total_tasks(), 3000);
    for w in &stats.workers {
        assert!(
            w.max_in_flight > 1,
            "worker {} never had more than one task in flight: {stats:?}",
            w.id
        );
        assert!(w.tasks > 300, "unbalanced: {stats:?}");
    }
}

#[test]
fn long_tasks_are_not_queued_behind_each_other() {
    let (pool, f) = pool(2);
    // Teach the scheduler that this function is slow.
    pool.map(&f.sleep_ms, [30u64, 30]).unwrap();
    let t0 = Instant::now();
    // Two long tasks first, then short ones: with a window of one per worker the
    // short ones are not stuck behind a long one while the other worker idles.
    let out = pool
        .map(&f.sleep_ms, [300u64, 300, 20, 20, 20, 20])
        .unwrap();
    let elapsed = t0.elapsed();
    let on: Vec<Option<u32>> = out.iter().map(|o| o.1).collect();
    assert_ne!(on[0], on[1], "both long tasks went to one worker: {on:?}");
    assert!(
        elapsed < Duration::from_millis(560),
        "took {elapsed:?}: {on:?}"
    );
    for w in pool.stats().workers {
        assert_eq!(w.max_in_flight, 1, "long tasks were pipelined: {w:?}");
    }
}
