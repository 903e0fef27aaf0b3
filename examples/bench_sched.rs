//! The scheduler alone: what the coordinator's policy costs per task as the pool
//! grows. The pure state machine (`agox_pool::sched`) is driven by simulated
//! workers in simulated time — each task takes 1 µs of work and every answer a
//! 60 µs round trip — so nothing but the scheduler's own bookkeeping is timed
//! (submit, assign, done, collect). Prints ONE JSON line: for 1, 16, 256 and 4096
//! workers, the wall time per task (median of five repetitions), and the ratio
//! between 4096 and 16 workers.
//!
//! The largest pool one coordinator can feed follows: with `c` µs of coordinator
//! time per task and tasks of `d` µs, about `d / c` workers (see
//! `docs/benchmarks.md`, which uses the full per-task cost of `bench_pool` too).
//!
//! `cargo run --release --example bench_sched`

use agox::pool::sched::Sched;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Error};

/// Work per task.
const TASK: Duration = Duration::from_micros(1);
/// Round trip of one answer.
const RTT: Duration = Duration::from_micros(60);
/// Tasks per repetition.
const TASKS: usize = 196_608;
/// Tasks per call.
const CALL: usize = 32_768;
const REPS: usize = 5;

/// One repetition with `workers` simulated workers: ns of scheduler time per task.
fn run(workers: usize) -> Result<f64, Error> {
    let mut sched = Sched::new(workers, 1, 2, 128);
    for w in 0..workers {
        sched.open(w);
    }
    // A driver's call: a map collected in order. The same size for every pool, so
    // the tasks' own memory is the same and only the number of workers differs
    // (8 tasks per worker at 4096 workers).
    let call = CALL;
    let t0 = Instant::now();
    let mut spent = Duration::ZERO;
    // Simulated time: when each worker is free, and answers in flight.
    let mut free_at = vec![t0; workers];
    let mut answers: BinaryHeap<Reverse<(Instant, usize, u64)>> = BinaryHeap::new();
    let mut now = t0;
    let mut done = 0;
    let args = vec![0u8; 16];
    while done < TASKS {
        let n = call.min(TASKS - done);
        let a = Instant::now();
        let ids = sched.submit("tiny", vec![args.clone(); n], None);
        spent += a.elapsed();
        let mut finished = 0;
        while finished < n {
            let mut sent = Vec::new();
            let a = Instant::now();
            // The simulated send cannot fail.
            sched
                .assign(now, |w, id, _| {
                    sent.push((w, id));
                    Ok::<(), Infallible>(())
                })
                .unwrap_or_else(|never| match never {});
            spent += a.elapsed();
            for (w, id) in sent {
                // The request reaches the worker half a round trip later; it runs
                // its window in order; the answer takes the other half.
                let start = free_at[w].max(now + RTT / 2);
                free_at[w] = start + TASK;
                answers.push(Reverse((free_at[w] + RTT / 2, w, id)));
            }
            // The next answer, and every answer due by then.
            let Some(Reverse((at, _, _))) = answers.peek().copied() else {
                return Err(anyhow!(
                    "the scheduler sent nothing with {finished} of {n} tasks finished"
                ));
            };
            now = at;
            let a = Instant::now();
            while let Some(Reverse((t, w, id))) = answers.peek().copied() {
                if t > now {
                    break;
                }
                answers.pop();
                sched.done(w, id, TASK.as_nanos() as u64, Ok(Vec::new()), now);
                finished += 1;
            }
            spent += a.elapsed();
        }
        let a = Instant::now();
        for id in ids {
            sched.take_result(id).context("a finished task's result")?;
        }
        spent += a.elapsed();
        done += n;
    }
    Ok(spent.as_nanos() as f64 / TASKS as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Error> {
    let counts = [1usize, 16, 256, 4096];
    // Interleaved: each repetition runs every size once, so a loaded machine
    // slows them alike.
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); counts.len()];
    run(16)?; // warm up
    for _ in 0..REPS {
        for (i, &w) in counts.iter().enumerate() {
            per[i].push(run(w)?);
        }
    }
    let ns: Vec<f64> = per.into_iter().map(median).collect();
    let fields: Vec<String> = counts
        .iter()
        .zip(&ns)
        .map(|(w, n)| format!("\"ns_per_task_{w}\":{n:.1}"))
        .collect();
    println!(
        "{{\"task_us\":1,\"rtt_us\":60,\"tasks\":{TASKS},\"tasks_per_call\":{CALL},{},\"ratio_4096_vs_16\":{:.2}}}",
        fields.join(","),
        ns[3] / ns[1]
    );
    Ok(())
}
