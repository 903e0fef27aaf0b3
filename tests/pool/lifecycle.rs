//! Start, stop, strangers at the door, and forking from a busy multithreaded driver.

use crate::common::{eventually, pool, process_alive};
use agox::wire::{encode_frame, read_frame, FromWorker, Hello, ToWorker, PROTOCOL_VERSION};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

#[test]
fn drop_stops_every_worker_and_removes_the_socket() {
    let (pool, f) = pool(3);
    assert_eq!(pool.map(&f.square, [2u64]).unwrap(), vec![4]);
    let pids = pool.worker_pids();
    let worker_pids = pool.broadcast(&f.pid, &()).unwrap();
    assert_eq!(pids, worker_pids);
    let socket = PathBuf::from(pool.address().unwrap());
    let dir = socket.parent().unwrap().to_path_buf();
    assert!(socket.exists());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dir).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);
    drop(pool);
    for pid in pids {
        assert!(
            eventually(Duration::from_secs(3), || !process_alive(pid)),
            "worker {pid} outlived the pool"
        );
    }
    assert!(
        !dir.exists(),
        "socket directory {} left behind",
        dir.display()
    );
}

fn knock(address: &str, hello: &Hello) -> String {
    let mut s = UnixStream::connect(address).unwrap();
    s.write_all(&encode_frame(&FromWorker::Hello(hello.clone())).unwrap())
        .unwrap();
    match read_frame::<ToWorker, _>(&mut s, 1 << 20).unwrap() {
        ToWorker::Refused { reason } => reason,
        other => panic!("stranger was not refused: {other:?}"),
    }
}

fn stranger(pool: &agox::pool::Pool, hello: Hello) -> String {
    let address = pool.address().unwrap();
    let t = std::thread::spawn(move || knock(&address, &hello));
    // The pool answers strangers while it is busy with a call.
    let (_, f) = crate::common::registry();
    while !t.is_finished() {
        pool.map(&f.sleep_ms, [5u64]).unwrap();
    }
    t.join().unwrap()
}

#[test]
fn wrong_token_protocol_or_registry_is_refused_naming_both_values() {
    let (pool, f) = pool(1);
    let (reg, _) = crate::common::registry();
    let good = Hello {
        protocol: PROTOCOL_VERSION,
        worker_id: 0,
        pid: 1,
        fingerprint: reg.fingerprint(),
        token: "not-the-token".into(),
    };
    let reason = stranger(&pool, good.clone());
    assert!(reason.contains("wrong pool token"), "{reason}");

    let reason = stranger(
        &pool,
        Hello {
            protocol: PROTOCOL_VERSION + 7,
            ..good.clone()
        },
    );
    assert!(reason.contains("protocol version mismatch"), "{reason}");
    assert!(
        reason.contains(&format!("speaks {PROTOCOL_VERSION}")),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("speaks {}", PROTOCOL_VERSION + 7)),
        "{reason}"
    );

    assert_eq!(pool.stats().refused_handshakes, 2);
    assert_eq!(pool.map(&f.square, [4u64]).unwrap(), vec![16]);
}

#[test]
fn garbage_and_oversized_greetings_are_rejected_without_harm() {
    let (pool, f) = pool(1);
    let address = pool.address().unwrap();
    let a = address.clone();
    let t = std::thread::spawn(move || {
        let mut s = UnixStream::connect(&a).unwrap();
        s.write_all(&[5, 0, 0, 0, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1])
            .unwrap();
        let mut s2 = UnixStream::connect(&a).unwrap();
        s2.write_all(&u32::MAX.to_le_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    });
    while !t.is_finished() || pool.stats().refused_handshakes < 2 {
        pool.map(&f.sleep_ms, [5u64]).unwrap();
    }
    t.join().unwrap();
    let refusals = pool.refusals();
    assert!(
        refusals.iter().any(|r| r.contains("malformed")),
        "{refusals:?}"
    );
    assert!(
        refusals.iter().any(|r| r.contains("exceeds the maximum")),
        "{refusals:?}"
    );
    assert_eq!(pool.map(&f.square, [5u64]).unwrap(), vec![25]);
}

#[test]
fn forking_while_other_threads_allocate_and_print() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let noise: Vec<_> = (0..3)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let v: Vec<String> = (0..64).map(|k| format!("{i}-{k}-{n}")).collect();
                    n += v.len() as u64;
                    if n.is_multiple_of(4096) {
                        println!("noise {i}: {n}");
                        eprintln!("noise {i}: {n}");
                    }
                }
            })
        })
        .collect();
    // One more thread panics over and over: the panic machinery's locks are held
    // at random moments when the pool forks.
    let panicker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = std::panic::catch_unwind(|| panic!("noise panic"));
            }
        })
    };
    for round in 0..8 {
        let (pool, f) = pool(2);
        let out = pool.map(&f.square, 0..50u64).unwrap();
        assert_eq!(out[7], 49, "round {round}");
    }
    stop.store(true, Ordering::Relaxed);
    panicker.join().unwrap();
    for t in noise {
        t.join().unwrap();
    }
}

#[test]
fn workers_run_single_threaded_numerics() {
    let mut r = agox::pool::Registry::new();
    let env = r.function("env", |_: &agox::pool::TaskContext, name: String| {
        Ok::<_, agox::pool::TaskError>(std::env::var(name).ok())
    });
    let before = std::env::var("OMP_NUM_THREADS").ok();
    let pool = agox::pool::Pool::start(r, agox::pool::PoolConfig::with_workers(2)).unwrap();
    for var in ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"] {
        assert_eq!(
            pool.broadcast(&env, &var.to_string()).unwrap(),
            vec![Some("1".to_string()); 2],
            "{var}"
        );
    }
    // The driver's own environment is left alone.
    assert_eq!(std::env::var("OMP_NUM_THREADS").ok(), before);
    assert_eq!(
        pool.broadcast(&env, &"PATH".to_string()).unwrap()[0],
        std::env::var("PATH").ok()
    );
}
