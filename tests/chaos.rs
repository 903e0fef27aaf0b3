//! The chaos suite: searches run while their workers are SIGKILLed, stopped, cut
//! off from their fork server, while the coordinator itself is SIGKILLed and
//! resumed, and while strangers pester the pool's socket — and each database is
//! compared, row for row (every column but time stamps and random uuids, bit for
//! bit), with an undisturbed run's.
//!
//! | scenario | fault | what must hold |
//! | --- | --- | --- |
//! | `a_bh_and_rss_survive_random_worker_kills` | a random worker SIGKILLed every 50–300 ms (a quarter of the time its replacement too, as it starts), ≥ 30 kills | identical databases |
//! | `b_killed_fork_server_fails_loudly_and_resumes_identically` | the fork server SIGKILLed mid-run | the run fails (status 1, "broken", "fork server"); `--resume` completes it; identical database and counters |
//! | `c_killed_coordinator_resumes_identically` | the coordinator SIGKILLed at random points (during start-up too), four times | every resume goes on; identical database and counters; no process left behind |
//! | `d_stopped_workers_are_replaced_identically` | a worker SIGSTOPped three times, with `[pool] task_timeout` | the run completes; the stopped workers were killed and replaced; identical database |
//! | `e_strangers_do_not_slow_the_search` | silent, trickling and flooding (1,000 a second) connections to the pool's socket, at the lowest priority, in 100 ms windows alternating with quiet ones | each attacked window's mean iteration time over its quiet neighbours', median over the windows, at most 1.2; no iteration stalled; identical database |
//!
//! This binary is also the driver that runs the searches (`chaos drive …`, see
//! `chaos/driver.rs`): the real library on real forked workers, as `agox-coord run`
//! uses it. The kill schedule is random; its seed is printed (`CHAOS_SEED=…`
//! repeats it). Run with `cargo test --test chaos [NAME-FILTER]`; prints one line
//! per scenario with its figures and `N passed, M failed`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "chaos/driver.rs"]
mod driver;
#[path = "chaos/dump.rs"]
mod dump;
#[path = "support/proc.rs"]
mod proc;
#[path = "chaos/procs.rs"]
mod procs;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use driver::{Driver, Ended};
use dump::{dump, Dump};

/// Basin hopping on a 7-atom Lennard-Jones cluster: a sync every iteration (the
/// sampler's parents), two relaxations per iteration on the pool (none without
/// `relax`: then every iteration costs about the same, a few pool round trips, a
/// commit and a sync).
fn bh_script(pool: &str, relax: bool) -> String {
    let relax = if relax {
        "[relax]\nfmax = 0.02\nsteps = 300"
    } else {
        ""
    };
    format!(
        r#"
[search]
algorithm = "bh"
iterations = 100000
seed = 11
workers = 2

[environment]
symbols = "Ar7"
cell = [20.0, 20.0, 20.0]
confinement = {{ corner = [7.0, 7.0, 7.0], size = [6.0, 6.0, 6.0] }}

[calculator]
kind = "lj"
epsilon = 1.0
sigma = 2.0
cutoff = 50.0
shift = false

[[generator]]
kind = "random"
count = {{ 0 = 2, 1 = 0 }}

[[generator]]
kind = "rattle"
n_rattle = 2
amplitude = 2.0
count = {{ 0 = 0, 1 = 2 }}

[sampler]
kind = "metropolis"
temperature = 0.5

{relax}

[pool]
{pool}
"#
    )
}

/// Random structure search, relaxed in the model and the two lowest evaluated by a
/// relaxation on the pool (the evaluator's own pool path).
fn rss_script() -> String {
    r#"
[search]
algorithm = "rss"
iterations = 100000
seed = 5
workers = 2

[environment]
symbols = "Ar7"
cell = [20.0, 20.0, 20.0]
confinement = { corner = [7.0, 7.0, 7.0], size = [6.0, 6.0, 6.0] }

[calculator]
kind = "lj"
epsilon = 1.0
sigma = 2.0
cutoff = 50.0
shift = false

[[generator]]
kind = "random"
count = 3

[relax]
fmax = 0.05
steps = 60

[evaluator]
kind = "relax"
count = 2
fmax = 0.01
steps = 60

[pool]
max_retries = 10
"#
    .to_owned()
}

/// Retries enough that random kills never exhaust a task's budget.
const POOL_RETRIES: &str = "max_retries = 10";
/// Length of the runs of (b), (c) and (d).
const FIXED: u64 = 60;

/// An undisturbed run's database and its counters after [`FIXED`] iterations.
struct Reference {
    script: PathBuf,
    dir: PathBuf,
    dump: Dump,
    counters_at_fixed: serde_json::Value,
}

struct Suite {
    tmp: tempfile::TempDir,
    rng: ChaCha8Rng,
    bh: Option<Reference>,
    runs: u32,
}

type Check = fn(&mut Suite) -> Result<String, String>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("drive") {
        std::process::exit(driver::drive(&args[2..]));
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("chaos: CHAOS_SEED={seed}");
    let mut suite = Suite {
        tmp: tempfile::tempdir().expect("temporary directory"),
        rng: ChaCha8Rng::seed_from_u64(seed),
        bh: None,
        runs: 0,
    };
    let checks: [(&str, Check); 5] = [
        (
            "a_bh_and_rss_survive_random_worker_kills",
            a_bh_and_rss_survive_random_worker_kills,
        ),
        (
            "b_killed_fork_server_fails_loudly_and_resumes_identically",
            b_killed_fork_server_fails_loudly_and_resumes_identically,
        ),
        (
            "c_killed_coordinator_resumes_identically",
            c_killed_coordinator_resumes_identically,
        ),
        (
            "d_stopped_workers_are_replaced_identically",
            d_stopped_workers_are_replaced_identically,
        ),
        (
            "e_strangers_do_not_slow_the_search",
            e_strangers_do_not_slow_the_search,
        ),
    ];
    let t0 = Instant::now();
    let (mut passed, mut failed) = (0, 0);
    for (name, check) in checks {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let t = Instant::now();
        match check(&mut suite) {
            Ok(figures) => {
                passed += 1;
                println!(
                    "test {name} ... ok ({:.1} s): {figures}",
                    t.elapsed().as_secs_f64()
                );
            }
            Err(e) => {
                failed += 1;
                println!("test {name} ... FAILED: {e} (CHAOS_SEED={seed})");
            }
        }
    }
    println!(
        "{passed} passed, {failed} failed; {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    if failed > 0 {
        std::process::exit(1);
    }
}

impl Suite {
    /// A fresh directory for a run.
    fn dir(&mut self, name: &str) -> PathBuf {
        self.runs += 1;
        self.tmp.path().join(format!("{:02}-{name}", self.runs))
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.tmp.path().join(name);
        std::fs::write(&path, text).expect("write a script");
        path
    }

    /// The undisturbed basin-hopping run, at least `n` iterations long (and at
    /// least [`FIXED`]).
    fn bh_reference(&mut self, n: u64) -> Result<&Reference, String> {
        let n = n.max(FIXED);
        if self.bh.as_ref().is_some_and(|r| r.dump.complete >= n) {
            return Ok(self.bh.as_ref().expect("checked"));
        }
        let (script, dir, counters_at_fixed) = match self.bh.take() {
            Some(r) => (r.script, r.dir, r.counters_at_fixed),
            None => {
                let script = self.write("bh.toml", &bh_script(POOL_RETRIES, true));
                let dir = self.dir("bh-reference");
                complete(&script, &dir, FIXED, false)?;
                let counters = dump(&dir.join("db.db"))?.counters;
                (script, dir, counters)
            }
        };
        // Longer: resumed, which the scenarios show changes nothing.
        if n > FIXED {
            complete(&script, &dir, n, true)?;
        }
        let dump = dump(&dir.join("db.db"))?;
        Ok(self.bh.insert(Reference {
            script,
            dir,
            dump,
            counters_at_fixed,
        }))
    }
}

/// Runs `script` undisturbed to `n` iterations in `dir`.
fn complete(script: &Path, dir: &Path, n: u64, resume: bool) -> Result<(), String> {
    let mut extra = vec!["--iterations".to_owned(), n.to_string()];
    if resume {
        extra.push("--resume".into());
    }
    let ended = Driver::start(script, dir, &extra).end();
    expect_code(&ended, 0, "an undisturbed run")
}

fn expect_code(ended: &Ended, code: i32, what: &str) -> Result<(), String> {
    if ended.code == Some(code) {
        Ok(())
    } else {
        Err(format!(
            "{what} ended with {:?}, expected {code}: {}",
            ended.code,
            ended.stderr.trim()
        ))
    }
}

fn summary(dir: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(dir.join("summary.json"))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn count(v: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_u64()
        .unwrap_or_default()
}

/// What a killer did.
#[derive(Default)]
struct Kills {
    /// Workers SIGKILLed.
    workers: u64,
    /// Of those, replacements killed as they started.
    replacements: u64,
}

/// SIGKILLs a random worker of `driver` every 50–300 ms — a quarter of the time
/// also its replacement as soon as it appears — until `target` kills, then asks
/// the driver to stop (SIGINT: at the end of its step) once two more iterations
/// ran (so that the pool has seen the last loss, even of an idle worker).
fn kill_workers(driver: &mut Driver, rng: &mut ChaCha8Rng, target: u64) -> Kills {
    let mut kills = Kills::default();
    // Kills start once the run does.
    driver.wait_iterations(1);
    while kills.workers < target && !driver.exited() {
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..=300)));
        let before = procs::workers(driver.pid());
        if before.is_empty() {
            continue;
        }
        let victim = before[rng.gen_range(0..before.len())];
        if !procs::signal(victim, Signal::SIGKILL) {
            continue;
        }
        kills.workers += 1;
        if rng.gen_bool(0.25) {
            // Its replacement, while it starts (greets, receives its state).
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_millis(500) {
                let now = procs::workers(driver.pid());
                if let Some(&new) = now.iter().find(|p| !before.contains(p)) {
                    if procs::signal(new, Signal::SIGKILL) {
                        kills.workers += 1;
                        kills.replacements += 1;
                    }
                    break;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }
    let seen = driver.iterations_seen();
    driver.wait_iterations(seen + 2);
    driver.signal(Signal::SIGINT);
    kills
}

/// (a) Random kills of workers during basin hopping and random structure search.
fn a_bh_and_rss_survive_random_worker_kills(s: &mut Suite) -> Result<String, String> {
    let mut figures = Vec::new();
    let mut total = 0;
    for (name, target) in [("bh", 20), ("rss", 15)] {
        let script = match name {
            "bh" => s.write("bh.toml", &bh_script(POOL_RETRIES, true)),
            _ => s.write("rss.toml", &rss_script()),
        };
        let dir = s.dir(&format!("{name}-kills"));
        let t = Instant::now();
        let mut driver = Driver::start(&script, &dir, &[]);
        let kills = kill_workers(&mut driver, &mut s.rng, target);
        let ended = driver.end();
        expect_code(&ended, 130, &format!("{name} under kills, then SIGINT"))?;
        let wall = t.elapsed().as_secs_f64();
        let got = dump(&dir.join("db.db"))?;
        let n = got.complete;
        let reference = match name {
            "bh" => s.bh_reference(n)?.dump.first(n),
            _ => {
                let dir = s.dir("rss-reference");
                complete(&script, &dir, n, false)?;
                dump(&dir.join("db.db"))?
            }
        };
        got.same_rows(&reference)
            .map_err(|e| format!("{name}: {e}"))?;
        let summary = summary(&dir)?;
        let lost = count(&summary, &["pool_events", "workers_lost"]);
        // Kills fall at random times: this share of them fell in a synchronization.
        let sync_share = summary["timings"]["sync"].as_f64().unwrap_or(0.0)
            / summary["wall_time_s"].as_f64().unwrap_or(f64::INFINITY);
        if lost < kills.workers {
            return Err(format!(
                "{name}: {} kills but the run counted {lost} workers lost",
                kills.workers
            ));
        }
        total += kills.workers;
        figures.push(format!(
            "{name}: {} kills ({} of starting replacements; {:.0} % of the run in \
             synchronizations), {n} iterations, {} rows identical, {wall:.1} s",
            kills.workers,
            kills.replacements,
            100.0 * sync_share,
            got.structures.len()
        ));
    }
    if total < 30 {
        return Err(format!("only {total} kills"));
    }
    Ok(figures.join("; "))
}

/// (b) The fork server killed: the pool cannot replace its workers; the run must
/// fail loudly and resume to the undisturbed result.
fn b_killed_fork_server_fails_loudly_and_resumes_identically(
    s: &mut Suite,
) -> Result<String, String> {
    let reference = s.bh_reference(FIXED)?;
    let (script, want, counters) = (
        reference.script.clone(),
        reference.dump.first(FIXED),
        reference.counters_at_fixed.clone(),
    );
    let dir = s.dir("bh-fork-server");
    let fixed = ["--iterations".to_owned(), FIXED.to_string()];
    let mut driver = Driver::start(&script, &dir, &fixed);
    let at = s.rng.gen_range(5..25);
    if !driver.wait_iterations(at) {
        return Err(format!("the run ended before iteration {at}"));
    }
    std::thread::sleep(Duration::from_millis(s.rng.gen_range(0..20)));
    let server = procs::fork_server(driver.pid()).ok_or("no fork server")?;
    procs::signal(server, Signal::SIGKILL);
    let t = Instant::now();
    let ended = driver.end();
    let noticed = t.elapsed().as_secs_f64();
    expect_code(&ended, 1, "the run without its fork server")?;
    for word in ["broken", "fork server"] {
        if !ended.stderr.contains(word) {
            return Err(format!(
                "the error does not say \"{word}\": {}",
                ended.stderr
            ));
        }
    }
    let failed_at = dump(&dir.join("db.db"))?.complete;
    let resumed = Driver::start(
        &script,
        &dir,
        &[&fixed[..], &["--resume".to_owned()]].concat(),
    );
    expect_code(&resumed.end(), 0, "the resumed run")?;
    let got = dump(&dir.join("db.db"))?;
    got.same_rows(&want)?;
    if got.counters != counters {
        return Err(format!(
            "counters {} differ from the reference's {}",
            got.counters, counters
        ));
    }
    Ok(format!(
        "fork server killed after iteration {at}: failed with status 1 after {noticed:.2} s, \
         {failed_at} iterations complete; resumed to {FIXED}, identical"
    ))
}

/// (c) The coordinator SIGKILLed at random points, each time resumed.
fn c_killed_coordinator_resumes_identically(s: &mut Suite) -> Result<String, String> {
    let reference = s.bh_reference(FIXED)?;
    let (script, want, counters) = (
        reference.script.clone(),
        reference.dump.first(FIXED),
        reference.counters_at_fixed.clone(),
    );
    let dir = s.dir("bh-coordinator-kills");
    let fixed = ["--iterations".to_owned(), FIXED.to_string()];
    let mut points = Vec::new();
    for k in 0..5 {
        let mut extra = fixed.to_vec();
        // A run that recorded its settings is continued; one killed before that
        // never started.
        if dir.join("run.json").exists() {
            extra.push("--resume".into());
        }
        let mut driver = Driver::start(&script, &dir, &extra);
        if k == 4 {
            expect_code(&driver.end(), 0, "the last resume")?;
            break;
        }
        if k == 0 {
            // During start-up: the pool, the database, the modules.
            std::thread::sleep(Duration::from_millis(s.rng.gen_range(0..120)));
            points.push(format!(
                "{:.0} ms after start",
                driver.started.elapsed().as_secs_f64() * 1e3
            ));
        } else {
            let at = s.rng.gen_range(1..12);
            if !driver.wait_iterations(at) {
                return Err(format!("segment {k} ended before {at} iterations"));
            }
            std::thread::sleep(Duration::from_millis(s.rng.gen_range(0..15)));
            points.push(format!("iteration {at} of the segment"));
        }
        let family: Vec<u32> = procs::descendants(driver.pid());
        driver.signal(Signal::SIGKILL);
        driver.end();
        // Nothing of the killed run stays behind.
        if !procs::eventually(Duration::from_secs(5), || {
            family.iter().all(|&p| !procs::alive(p))
        }) {
            return Err(format!("processes {family:?} outlived their coordinator"));
        }
    }
    let got = dump(&dir.join("db.db"))?;
    got.same_rows(&want)?;
    if got.counters != counters {
        return Err(format!(
            "counters {} differ from the reference's {}",
            got.counters, counters
        ));
    }
    Ok(format!(
        "killed at: {}; resumed to {FIXED}, identical",
        points.join(", ")
    ))
}

/// (d) A worker SIGSTOPped three times, with a task timeout.
fn d_stopped_workers_are_replaced_identically(s: &mut Suite) -> Result<String, String> {
    let want = s.bh_reference(FIXED)?.dump.first(FIXED);
    let script = s.write(
        "bh-timeout.toml",
        &bh_script(&format!("{POOL_RETRIES}\ntask_timeout = 0.5"), true),
    );
    let dir = s.dir("bh-stopped");
    let mut driver = Driver::start(
        &script,
        &dir,
        &["--iterations".to_owned(), FIXED.to_string()],
    );
    let mut stopped: Vec<u32> = Vec::new();
    for at in [10, 25, 40] {
        if !driver.wait_iterations(at) {
            return Err(format!("the run ended before iteration {at}"));
        }
        // One stopped worker at a time: the last one must be gone (killed by the
        // pool) before another stops.
        if let Some(&last) = stopped.last() {
            if !procs::eventually(Duration::from_secs(20), || !procs::alive(last)) {
                procs::signal(last, Signal::SIGCONT);
                return Err(format!("the stopped worker {last} was never replaced"));
            }
        }
        let workers = procs::workers(driver.pid());
        let victim = workers[s.rng.gen_range(0..workers.len())];
        procs::signal(victim, Signal::SIGSTOP);
        stopped.push(victim);
    }
    let t = Instant::now();
    let ended = driver.end();
    for &p in &stopped {
        // Only for a failed check: a stopped worker must not stay behind.
        procs::signal(p, Signal::SIGCONT);
    }
    expect_code(&ended, 0, "the run with stopped workers")?;
    let got = dump(&dir.join("db.db"))?;
    got.same_rows(&want)?;
    let events = &summary(&dir)?["pool_events"];
    let lost = count(events, &["workers_lost"]);
    if lost < 3 {
        return Err(format!("3 workers stopped, {lost} lost: {events}"));
    }
    let survivors: Vec<u32> = stopped.into_iter().filter(|&p| procs::alive(p)).collect();
    if !survivors.is_empty() {
        return Err(format!("stopped workers {survivors:?} were never replaced"));
    }
    Ok(format!(
        "3 workers stopped, {lost} lost ({} tasks timed out), run ended {:.1} s after the last stop, identical",
        count(events, &["tasks_timed_out"]),
        t.elapsed().as_secs_f64()
    ))
}

/// Lowers the calling thread's scheduling priority to the least (nice 19): an
/// attacker's own CPU time is not what (e) measures, the pool's handling of it is.
fn lowest_priority() {
    // SAFETY: setpriority on this thread's own id changes nothing else.
    unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            nix::unistd::gettid().as_raw() as libc::id_t,
            19,
        );
    }
}

/// Strangers at the pool's socket while `on` is set: twenty silent connections,
/// one trickling a byte every 50 ms, and a flood of 1,000 connections a second,
/// each sending garbage.
///
/// What is measured is the pool's handling of them, not the machine's: they run
/// at the lowest priority (on two cores, a thread connecting in a loop at full
/// priority takes a core's share from the search whatever the pool does), and the
/// flood's rate is bounded, so that the coordinator's share of the work stays small
/// in the unoptimized build the tests run (measured there: its CPU time grows by
/// about 4 % under this attack, some 40 µs per connection). The optimized pool
/// under 10⁴–10⁵ connections a second is measured by `examples/bench_faults.rs`.
fn strangers(
    address: PathBuf,
    on: Arc<AtomicBool>,
    quit: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    let idle = |quit: &AtomicBool, on: &AtomicBool| {
        while !on.load(Ordering::SeqCst) && !quit.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let silent = {
        let (address, on, quit) = (address.clone(), on.clone(), quit.clone());
        std::thread::spawn(move || {
            lowest_priority();
            while !quit.load(Ordering::SeqCst) {
                idle(&quit, &on);
                let held: Vec<UnixStream> = (0..20)
                    .filter_map(|_| UnixStream::connect(&address).ok())
                    .collect();
                while on.load(Ordering::SeqCst) && !quit.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(2));
                }
                drop(held);
            }
        })
    };
    let trickle = {
        let (address, on, quit) = (address.clone(), on.clone(), quit.clone());
        std::thread::spawn(move || {
            lowest_priority();
            while !quit.load(Ordering::SeqCst) {
                idle(&quit, &on);
                let Ok(mut c) = UnixStream::connect(&address) else {
                    continue;
                };
                // A frame's length, then its body one byte at a time.
                let mut bytes = [100u8, 0, 0, 0].into_iter().chain(std::iter::repeat(b'x'));
                while on.load(Ordering::SeqCst) && !quit.load(Ordering::SeqCst) {
                    let b = bytes.next().unwrap_or(b'x');
                    if c.write_all(&[b]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
    };
    let flood = std::thread::spawn(move || {
        lowest_priority();
        while !quit.load(Ordering::SeqCst) {
            idle(&quit, &on);
            let mut next = Instant::now();
            while on.load(Ordering::SeqCst) && !quit.load(Ordering::SeqCst) {
                if let Ok(mut c) = UnixStream::connect(&address) {
                    c.write_all(b"GET / HTTP/1.0\r\n\r\n").ok();
                }
                next += Duration::from_millis(1);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        }
    });
    vec![silent, trickle, flood]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One window of (e): when it was, whether strangers were at the door, and the
/// times of the iterations that ran wholly inside it.
struct Window {
    start: Instant,
    end: Instant,
    attacked: bool,
    iterations: Vec<f64>,
}

/// (e) Strangers during a run, in short windows alternating with quiet ones: each
/// attacked window's iteration rate against its two quiet neighbours', so that the
/// machine's own load, which drifts over seconds, cancels out; the median of these
/// ratios, so that a window the machine disturbed (a burst of other work) does
/// not decide.
fn e_strangers_do_not_slow_the_search(s: &mut Suite) -> Result<String, String> {
    const WINDOW: Duration = Duration::from_millis(100);
    /// The strangers see a switch within a few ms: a window counts from after that.
    const LEAD_IN: Duration = Duration::from_millis(10);
    const PAIRS: usize = 60;
    // Iterations of even cost, so that a window's median is the loop's pace.
    let script = s.write("bh-plain.toml", &bh_script(POOL_RETRIES, false));
    let dir = s.dir("bh-strangers");
    let mut driver = Driver::start(&script, &dir, &[]);
    let address = driver
        .address()
        .ok_or("the driver never said its address")?;
    let on = Arc::new(AtomicBool::new(false));
    let quit = Arc::new(AtomicBool::new(false));
    let threads = strangers(address, on.clone(), quit.clone());
    driver.wait_iterations(1);
    let mut windows: Vec<Window> = Vec::new();
    let t0 = Instant::now();
    // Quiet, attacked, quiet, …: every attacked window has a quiet one on each side.
    while windows.len() < 2 * PAIRS + 1 && t0.elapsed() < Duration::from_secs(90) {
        let attacked = windows.len() % 2 == 1;
        on.store(attacked, Ordering::SeqCst);
        let start = Instant::now() + LEAD_IN;
        std::thread::sleep(WINDOW);
        windows.push(Window {
            start,
            end: Instant::now(),
            attacked,
            iterations: Vec::new(),
        });
        if driver.exited() {
            break;
        }
    }
    on.store(false, Ordering::SeqCst);
    quit.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().ok();
    }
    driver.signal(Signal::SIGINT);
    for l in driver.lines().to_vec() {
        let Some(elapsed) = l
            .text
            .strip_prefix("iteration ")
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|e| e.parse::<f64>().ok())
        else {
            continue;
        };
        let begun = l.at - Duration::from_secs_f64(elapsed.max(0.0));
        if let Some(w) = windows
            .iter_mut()
            .find(|w| w.start <= begun && l.at <= w.end)
        {
            w.iterations.push(elapsed);
        }
    }
    let ended = driver.end();
    expect_code(&ended, 130, "the run among strangers, then SIGINT")?;
    // Per attacked window: its mean iteration time (the inverse of its iteration
    // rate) over its quiet neighbours'.
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let mut ratios = Vec::new();
    for i in (1..windows.len().saturating_sub(1)).step_by(2) {
        let quiet: Vec<f64> = [&windows[i - 1], &windows[i + 1]]
            .iter()
            .flat_map(|w| w.iterations.iter().copied())
            .collect();
        if windows[i].iterations.len() >= 3 && quiet.len() >= 3 {
            ratios.push(mean(&windows[i].iterations) / mean(&quiet));
        }
    }
    let all = |attacked: bool| -> Vec<f64> {
        windows
            .iter()
            .filter(|w| w.attacked == attacked)
            .flat_map(|w| w.iterations.iter().copied())
            .collect()
    };
    let (quiet, attacked) = (all(false), all(true));
    if ratios.len() < 2 * PAIRS / 3 {
        return Err(format!(
            "too few windows with iterations: {} of {PAIRS} ({} quiet and {} attacked iterations)",
            ratios.len(),
            quiet.len(),
            attacked.len()
        ));
    }
    let refused = count(&summary(&dir)?, &["pool_events", "strangers_refused"]);
    let ratio = median(ratios.clone());
    let worst = attacked.iter().copied().fold(0.0, f64::max);
    // The results too are the undisturbed run's.
    let got = dump(&dir.join("db.db"))?;
    let n = got.complete.min(200);
    let reference = s.dir("bh-plain-reference");
    complete(&script, &reference, n, false)?;
    got.first(n).same_rows(&dump(&reference.join("db.db"))?)?;
    let figures = format!(
        "iteration time under attack / quiet, median over {} window pairs: {ratio:.3}; \
         overall means {:.2} ms quiet, {:.2} ms attacked ({} and {} iterations); slowest \
         attacked {:.1} ms; {refused} connections refused; {n} iterations identical",
        ratios.len(),
        mean(&quiet) * 1e3,
        mean(&attacked) * 1e3,
        quiet.len(),
        attacked.len(),
        worst * 1e3
    );
    if refused == 0 {
        return Err(format!("no stranger was refused: {figures}"));
    }
    if ratio > 1.2 {
        return Err(format!("strangers slowed the search: {figures}"));
    }
    // A stalled loop (a stranger read with a blocking call) would stall for the
    // handshake timeout, 5 s.
    if worst > 2.5 {
        return Err(format!("an iteration stalled: {figures}"));
    }
    Ok(figures)
}
