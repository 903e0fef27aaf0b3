//! Strangers on the pool's socket: silent, trickling, flooding, or sending
//! malformed frames. None may stall the coordinator or grow its memory.

use crate::common::{pool_with, pool_with_events, Fns};
use agox::pool::{Pool, PoolConfig, PoolEvent, RefusalKind};
use agox::wire::{encode_frame, FromWorker, Hello, PROTOCOL_VERSION};
use proptest::prelude::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 40 tasks of 10 ms on two workers: about 200 ms undisturbed.
fn timed_map(pool: &Pool, f: &Fns) -> Duration {
    let t0 = Instant::now();
    let out = pool.map(&f.sleep_ms, vec![10u64; 40]).unwrap();
    assert_eq!(out.len(), 40);
    t0.elapsed()
}

/// Silent connections and one that sends a byte every 400 ms are dropped after
/// the handshake timeout and never hold up a map (before, each silent one stalled
/// the coordinator 5 s, and the trickler indefinitely).
#[test]
fn silent_and_trickling_strangers_never_stall_a_map() {
    let mut cfg = PoolConfig::with_workers(2).seed(7);
    cfg.handshake_timeout = Duration::from_millis(300);
    let (pool, f, mut events) = pool_with_events(cfg);
    let address = pool.address().unwrap();
    let undisturbed = timed_map(&pool, &f);
    let silent: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(&address).unwrap())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = {
        let stop = stop.clone();
        let address = address.clone();
        std::thread::spawn(move || {
            let mut s = UnixStream::connect(&address).unwrap();
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) && s.write_all(&[0x10]).is_ok() {
                sent += 1;
                std::thread::sleep(Duration::from_millis(400));
            }
            sent
        })
    };
    let disturbed = timed_map(&pool, &f);
    // Generous: the point is no stall of seconds, not a benchmark.
    assert!(
        disturbed < undisturbed * 3 + Duration::from_millis(500),
        "undisturbed {undisturbed:?}, with strangers {disturbed:?}"
    );
    // Keep the pool turning until every stranger's deadline has passed.
    let t0 = Instant::now();
    while events.count(|e| {
        matches!(
            e,
            PoolEvent::StrangerRefused {
                kind: RefusalKind::Silent,
                ..
            }
        )
    }) < 21
    {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{:?}",
            pool.refusals()
        );
        timed_map(&pool, &f);
    }
    stop.store(true, Ordering::Relaxed);
    trickler.join().unwrap();
    drop(silent);
    let stats = pool.stats();
    assert!(stats.refused_handshakes >= 21, "{stats:?}");
    assert!(stats.recent_refusals.len() <= 16, "{stats:?}");
    assert!(
        stats
            .recent_refusals
            .iter()
            .any(|r| r.contains("no greeting within 300ms")),
        "{stats:?}"
    );
    assert_eq!(stats.workers_lost, 0);
}

/// Ten thousand connections while a map runs, and a worker killed in the middle:
/// the map completes with the right results, the replacement gets in through the
/// crowd, and the coordinator keeps only a bounded record.
#[test]
fn a_flood_of_connections_neither_stalls_a_map_nor_grows_the_record() {
    let (pool, f, mut events) = pool_with_events(PoolConfig::with_workers(2).seed(7));
    let address = pool.address().unwrap();
    let undisturbed = timed_map(&pool, &f);
    let flooders: Vec<_> = (0..2)
        .map(|_| {
            let address = address.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while n < 5_000 {
                    // A full backlog makes connect fail for a moment: try again.
                    if let Ok(mut s) = UnixStream::connect(&address) {
                        if n % 2 == 0 {
                            let _ = s.write_all(b"junk");
                        }
                        n += 1;
                    }
                }
            })
        })
        .collect();
    // A worker dies as the flood starts: its replacement must get in through it.
    let victim = pool.worker_pids()[1];
    // SAFETY: killing a worker process of this test.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let t0 = Instant::now();
    let mut rounds = 0;
    while flooders.iter().any(|t| !t.is_finished()) {
        let out = pool.map(&f.square, 0..200u64).unwrap();
        assert_eq!(out[199], 199 * 199);
        timed_map(&pool, &f);
        rounds += 1;
        assert!(t0.elapsed() < Duration::from_secs(60));
    }
    for t in flooders {
        t.join().unwrap();
    }
    let disturbed = timed_map(&pool, &f);
    eprintln!("flood: map of 40 x 10 ms {undisturbed:?} undisturbed, {disturbed:?} after; {rounds} rounds");
    let stats = pool.stats();
    assert!(stats.refused_handshakes >= 1_000, "{stats:?}");
    assert!(stats.recent_refusals.len() <= 16);
    assert_eq!(stats.workers_lost, 1, "{stats:?}");
    // The replacement got in through the crowd (two workers at start, then it).
    while events.count(|e| matches!(e, PoolEvent::WorkerReady { .. })) < 3 {
        assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", events.all());
        timed_map(&pool, &f);
    }
    assert_ne!(pool.worker_pids()[1], victim);
}

/// What a malformed greeting looks like.
#[derive(Debug, Clone)]
enum Junk {
    Random(Vec<u8>),
    Truncated(usize),
    HugeLength(u32),
    WrongVersion(u32),
    WrongMessage,
}

fn junk() -> impl Strategy<Value = Junk> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Junk::Random),
        (0usize..120).prop_map(Junk::Truncated),
        (4097u32..=u32::MAX).prop_map(Junk::HugeLength),
        any::<u32>()
            .prop_filter("not ours", |v| *v != PROTOCOL_VERSION)
            .prop_map(Junk::WrongVersion),
        Just(Junk::WrongMessage),
    ]
}

fn hello(protocol: u32) -> Vec<u8> {
    encode_frame(&FromWorker::Hello(Hello {
        protocol,
        worker_id: 0,
        pid: 1,
        fingerprint: 7,
        token: "x".repeat(64),
    }))
    .unwrap()
}

impl Junk {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Junk::Random(b) => b.clone(),
            Junk::Truncated(n) => {
                let mut h = hello(PROTOCOL_VERSION);
                h.truncate((*n).min(h.len() - 1));
                h
            }
            Junk::HugeLength(len) => len.to_le_bytes().to_vec(),
            Junk::WrongVersion(v) => hello(*v),
            Junk::WrongMessage => encode_frame(&FromWorker::Ack {
                seq: 1,
                error: None,
            })
            .unwrap(),
        }
    }
}

/// Sends `bytes`, closes its writing side and reads whatever comes back until the
/// coordinator closes. Returns the answer's bytes.
fn send_junk(address: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(address).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Malformed greetings of every kind, sent to a live coordinator: each is
    /// refused (with a `Refused` frame or a close) and the pool keeps serving with
    /// the right results.
    #[test]
    fn malformed_greetings_are_refused_and_the_pool_keeps_serving(cases in proptest::collection::vec(junk(), 1..6)) {
        thread_local! {
            static POOL: (Pool, Fns) = pool_with(PoolConfig::with_workers(1).seed(7));
        }
        POOL.with(|(pool, f)| {
            let address = pool.address().unwrap();
            let before = pool.stats().refused_handshakes;
            let sender = {
                let cases = cases.clone();
                std::thread::spawn(move || {
                    cases.iter().map(|c| send_junk(&address, &c.bytes())).collect::<Vec<_>>()
                })
            };
            let mut x = 0u64;
            while !sender.is_finished() {
                x += 1;
                prop_assert_eq!(pool.map(&f.square, [x]).unwrap(), vec![x * x]);
            }
            let answers = sender.join().unwrap();
            for (case, answer) in cases.iter().zip(&answers) {
                // Nothing but a refusal ever comes back.
                if !answer.is_empty() {
                    prop_assert!(answer.len() > 4, "{:?} got {:?}", case, answer);
                    let reply: agox::wire::ToWorker = agox::wire::decode(&answer[4..]).unwrap();
                    prop_assert!(
                        matches!(reply, agox::wire::ToWorker::Refused { .. }),
                        "{:?} got {:?}", case, reply
                    );
                }
            }
            // Every stranger was counted (the door drops each once).
            let t0 = Instant::now();
            while pool.stats().refused_handshakes < before + cases.len() as u64 {
                prop_assert!(t0.elapsed() < Duration::from_secs(10));
                pool.map(&f.square, [1u64]).unwrap();
            }
            prop_assert_eq!(pool.stats().workers_lost, 0);
            Ok(())
        })?;
    }
}
