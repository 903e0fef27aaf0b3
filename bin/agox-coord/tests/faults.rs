//! Faults through the real binary, one test per finding of the fault review that
//! concerns the search and its command line (the pool's own are in `tests/pool`,
//! the long randomized ones in `tests/chaos.rs`):
//!
//! * finding 2 — a pool fault never becomes a silently dropped candidate or an
//!   empty iteration: a task lost beyond its retries fails the run naming it (or,
//!   with `on_task_failure = "skip"`, is dropped, counted and warned about); a pool
//!   that lost its fork server fails the run; `--resume` redoes the unfinished
//!   iteration and ends with the undisturbed run's results;
//! * finding 5 — timeouts and limits come from the script (`[pool]`) and the
//!   command line (`--task-timeout`): a stopped worker is replaced;
//! * finding 7 — SIGTERM stops a run like Ctrl-C, with `summary.json` and the
//!   command that continues it; a second signal ends it at once; after `--resume`
//!   the counters count the whole run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

mod common;

use common::*;

/// The children of `pid`, zombies excluded.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
    {
        let Ok(task) = task else { continue };
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out.retain(|&p| {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .is_ok_and(|s| !s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')))
    });
    out
}

/// The run's fork server (its child) and workers (the fork server's children).
fn workers(run: u32) -> Vec<u32> {
    children(run).into_iter().flat_map(children).collect()
}

fn signal(pid: u32, s: Signal) -> bool {
    kill(Pid::from_raw(pid as i32), s).is_ok()
}

/// `agox-coord run` with `args`, in a process group of its own (so that a signal
/// can go to the run and its workers at once, as a terminal or Slurm sends it).
fn spawn(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap()
}

/// Waits until the run's database holds `rows` rows (panics if it ends first).
fn wait_rows(child: &mut Child, db: &Path, rows: usize) {
    let t = Instant::now();
    while stored_rows(db) < rows {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended early ({status})");
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the run did not progress"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILLs a random worker of `child` every 20–60 ms until it ends.
fn kill_workers_until_the_end(child: &mut Child) -> (std::process::Output, u32) {
    let mut kills = 0;
    let mut k: u64 = 7;
    while child.try_wait().unwrap().is_none() {
        // A small LCG: any spread of victims and pauses will do.
        k = k
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(20 + (k >> 33) % 40));
        let w = workers(child.id());
        if !w.is_empty() && signal(w[(k >> 40) as usize % w.len()], Signal::SIGKILL) {
            kills += 1;
        }
        assert!(kills < 5000, "the run never failed");
    }
    let out = std::mem::replace(child, spawn_nothing())
        .wait_with_output()
        .unwrap();
    (out, kills)
}

/// A finished placeholder child (so that a `Child` can be taken out of a `&mut`).
fn spawn_nothing() -> Child {
    let mut c = Command::new("true").spawn().unwrap();
    c.wait().unwrap();
    c
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// Iterations the database records as complete.
fn complete(dir: &Path) -> u64 {
    let c = rusqlite::Connection::open(dir.join("db.db")).unwrap();
    c.query_row(
        "SELECT next_iteration FROM agox_rs_progress WHERE id = 0",
        [],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as u64
}

/// The iteration of every stored structure, in storage order.
fn iterations(dir: &Path) -> Vec<u64> {
    let c = rusqlite::Connection::open(dir.join("db.db")).unwrap();
    let mut stmt = c
        .prepare("SELECT iteration FROM structures ORDER BY id")
        .unwrap();
    let rows = stmt
        .query_map([], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|r| r.unwrap() as u64)
        .collect();
    rows
}

/// The small basin-hopping script of the other tests, with extra lines at the end
/// of `[search]` and a `[pool]` section.
fn script_with(dir: &Path, iterations: u64, search: &str, pool: &str) -> PathBuf {
    let base = std::fs::read_to_string(write_script(dir, iterations)).unwrap();
    let text = base.replacen("seed = 9\n", &format!("seed = 9\n{search}\n"), 1)
        + &format!("\n[pool]\n{pool}\n");
    let path = dir.join("faults.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// An undisturbed run of `script` to `iterations`: its energies.
fn undisturbed(script: &Path, dir: &Path, iterations: u64) -> Vec<f64> {
    let n = iterations.to_string();
    let out = run(&[
        "run",
        s(script),
        "--output",
        s(dir),
        "--iterations",
        &n,
        "-q",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    energies(dir)
}

#[test]
fn finding_2_a_task_lost_beyond_its_retries_fails_the_run_naming_it_and_resume_redoes_the_iteration(
) {
    let tmp = tempfile::tempdir().unwrap();
    let script = script_with(tmp.path(), 100_000, "", "max_retries = 0");
    let dir = tmp.path().join("lost");
    let mut child = spawn(&["run", s(&script), "--output", s(&dir), "--workers", "2"]);
    wait_rows(&mut child, &dir.join("db.db"), 4);
    let (out, kills) = kill_workers_until_the_end(&mut child);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for part in [
        "iteration ",
        ", candidate ",
        "'agox_search.generate_relax' lost after 1 attempt(s)",
        "killed by signal 9 (SIGKILL)",
        "on_task_failure = \"fail\"",
        &format!(
            "continue with: agox-coord run --resume --output {}",
            s(&dir)
        ),
    ] {
        assert!(err.contains(part), "{part:?} not in: {err}");
    }
    // Nothing of the failed iteration is stored: only whole iterations, all
    // complete.
    let done = complete(&dir);
    let its = iterations(&dir);
    assert_eq!(its.len() as u64, 2 * done, "{its:?}");
    assert!(its.iter().all(|&i| i < done));
    let failed = summary(&dir);
    assert!(failed["error"].as_str().unwrap().contains("SIGKILL"));
    assert_eq!(failed["iterations_done"], done);
    assert!(failed["pool_events"]["tasks_abandoned"].as_u64().unwrap() >= 1);
    // Resumed, the run ends as the undisturbed run does.
    let target = (done + 3).to_string();
    let resumed = run(&[
        "run",
        "--resume",
        "--output",
        s(&dir),
        "--iterations",
        &target,
    ]);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let want = undisturbed(&script, &tmp.path().join("undisturbed"), done + 3);
    assert_eq!(energies(&dir), want, "after {kills} kills");
}

#[test]
fn finding_2_skip_drops_a_lost_task_counts_it_and_warns() {
    let tmp = tempfile::tempdir().unwrap();
    let script = script_with(
        tmp.path(),
        60,
        "on_task_failure = \"skip\"",
        "max_retries = 0",
    );
    let dir = tmp.path().join("skip");
    let mut child = spawn(&["run", s(&script), "--output", s(&dir), "--workers", "2"]);
    wait_rows(&mut child, &dir.join("db.db"), 2);
    let (out, _) = kill_workers_until_the_end(&mut child);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let summary = summary(&dir);
    let dropped = summary["dropped_candidates"].as_u64().unwrap();
    assert!(dropped >= 1, "{summary}");
    assert_eq!(summary["on_task_failure"], "skip");
    assert!(summary["dropped_candidate_messages"][0]
        .as_str()
        .unwrap()
        .contains("SIGKILL"));
    // Said twice: as each happens, and in the final line.
    assert!(
        err.contains("dropped (on_task_failure = \"skip\"): candidate "),
        "{err}"
    );
    let last = text(&out.stdout);
    assert!(
        last.contains(&format!("({dropped} candidate(s) dropped")),
        "{last}"
    );
    // Every candidate asked for is stored or counted: nothing vanished.
    let evaluations = summary["evaluations"].as_u64().unwrap();
    assert_eq!(evaluations, energies(&dir).len() as u64);
    let counted: u64 = [
        "generation_failures",
        "relax_failures",
        "evaluation_failures",
    ]
    .iter()
    .map(|k| summary[*k].as_u64().unwrap())
    .sum();
    assert_eq!(evaluations + dropped + counted, 2 * 60, "{summary}");
}

#[test]
fn finding_2_a_pool_without_its_fork_server_fails_the_run_and_resume_completes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let script = write_script(tmp.path(), 40);
    let dir = tmp.path().join("no-fork-server");
    let mut child = spawn(&["run", s(&script), "--output", s(&dir), "--workers", "2"]);
    wait_rows(&mut child, &dir.join("db.db"), 6);
    let server = children(child.id())[0];
    assert!(signal(server, Signal::SIGKILL));
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the pool is broken") && err.contains("fork server"),
        "{err}"
    );
    assert!(
        err.contains("continue with: agox-coord run --resume"),
        "{err}"
    );
    let resumed = run(&["run", "--resume", "--output", s(&dir)]);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let want = undisturbed(&script, &tmp.path().join("undisturbed"), 40);
    assert_eq!(energies(&dir), want);
}

#[test]
fn finding_5_a_stopped_worker_is_replaced_after_the_task_timeout_of_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let script = write_script(tmp.path(), 40);
    let dir = tmp.path().join("stopped");
    let mut child = spawn(&[
        "run",
        s(&script),
        "--output",
        s(&dir),
        "--workers",
        "2",
        "--task-timeout",
        "0.5",
        "-v",
    ]);
    wait_rows(&mut child, &dir.join("db.db"), 6);
    let victim = workers(child.id())[0];
    assert!(signal(victim, Signal::SIGSTOP));
    let out = child.wait_with_output().unwrap();
    // Only for a failed check: a stopped process must not stay behind.
    signal(victim, Signal::SIGCONT);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("(pid {victim}) lost: "))
            && (err.contains("timed out after 500ms") || err.contains("unresponsive")),
        "{err}"
    );
    assert!(err.contains("replaced by pid"), "{err}");
    let want = undisturbed(&script, &tmp.path().join("undisturbed"), 40);
    assert_eq!(energies(&dir), want);
    let events = &summary(&dir)["pool_events"];
    assert!(events["workers_lost"].as_u64().unwrap() >= 1, "{events}");
}

#[test]
fn finding_5_pool_limits_are_read_from_the_script_and_reach_the_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let script = script_with(
        tmp.path(),
        100_000,
        "",
        "worker_memory_mb = 4096\ntask_timeout = 30\nmax_retries = 4",
    );
    let out = run(&["validate", s(&script)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["pool"]["worker_memory_mb"], 4096);
    assert_eq!(json["pool"]["task_timeout"], 30.0);
    let dir = tmp.path().join("limits");
    let mut child = spawn(&["run", s(&script), "--output", s(&dir), "--workers", "2"]);
    wait_rows(&mut child, &dir.join("db.db"), 2);
    for w in workers(child.id()) {
        let limits = std::fs::read_to_string(format!("/proc/{w}/limits")).unwrap();
        let data = limits
            .lines()
            .find(|l| l.starts_with("Max data size"))
            .unwrap();
        assert!(
            data.split_whitespace().nth(3) == Some(&(4096u64 << 20).to_string()),
            "{data}"
        );
    }
    killpg(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    // The command line refuses what the script would refuse.
    for bad in ["0", "-2", "soon"] {
        let out = run(&["run", s(&script), "--task-timeout", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(text(&out.stderr).contains("expected a number of seconds > 0"));
    }
}

#[test]
fn finding_7_sigterm_writes_the_summary_and_prints_the_resume_command() {
    let tmp = tempfile::tempdir().unwrap();
    let script = write_script(tmp.path(), 100_000);
    let dir = tmp.path().join("terminated");
    let mut child = spawn(&["run", s(&script), "--output", s(&dir), "--workers", "2"]);
    wait_rows(&mut child, &dir.join("db.db"), 10);
    // To the whole group, as Slurm sends it: the workers ignore it, the coordinator
    // stops the run.
    killpg(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    let summary = summary(&dir);
    assert_eq!(summary["interrupted"], true);
    assert_eq!(summary["pool_events"]["workers_lost"], 0, "{summary}");
    let done = summary["iterations_done"].as_u64().unwrap();
    assert_eq!(energies(&dir).len() as u64, 2 * done);
    let command = format!("agox-coord run --resume --output {}", s(&dir));
    assert!(
        err.contains(&format!(
            "interrupted by SIGTERM with {done} of 100000 iterations complete, all stored"
        )) && err.contains(&command),
        "{err}"
    );
    // The printed command continues the run.
    let target = (done + 2).to_string();
    let out = run(&[
        "run",
        "--resume",
        "--output",
        s(&dir),
        "--iterations",
        &target,
        "-q",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(energies(&dir).len() as u64, 2 * (done + 2));
}

#[test]
fn finding_7_a_second_signal_ends_the_run_at_once_losing_nothing_stored() {
    let tmp = tempfile::tempdir().unwrap();
    // Forty relaxations per iteration on one worker: a long iteration, so that
    // both signals arrive in the same one.
    let script = tmp.path().join("slow.toml");
    std::fs::write(
        &script,
        r#"
[search]
algorithm = "rss"
iterations = 100000
seed = 4

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
count = 40

[relax]
fmax = 0.01
steps = 300
"#,
    )
    .unwrap();
    let dir = tmp.path().join("twice");
    let db = dir.join("db.db");
    let mut child = spawn(&["run", s(&script), "--output", s(&dir), "--workers", "1"]);
    // Right after an iteration is stored, the next one is relaxing.
    wait_rows(&mut child, &db, 1);
    let stored = stored_rows(&db);
    let t = Instant::now();
    assert!(signal(child.id(), Signal::SIGTERM));
    std::thread::sleep(Duration::from_millis(100));
    assert!(signal(child.id(), Signal::SIGINT));
    let status = child.wait().unwrap();
    let after = t.elapsed();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(status.signal().is_none());
    assert_eq!(stored_rows(&db), stored, "rows stored after the signals");
    // The first signal would have waited for the iteration; the second did not.
    assert!(
        !dir.join("summary.json").exists(),
        "the run ended normally ({after:?}): the iteration was too short for this test"
    );
    let c = rusqlite::Connection::open(&db).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    assert_eq!(iterations(&dir).len(), stored);
    assert!(iterations(&dir).iter().all(|&i| i < complete(&dir)));
}

#[test]
fn finding_7_after_resume_the_counters_count_the_whole_run() {
    let tmp = tempfile::tempdir().unwrap();
    // A box so crowded that random placement fails about a third of the time.
    let script = tmp.path().join("crowded.toml");
    std::fs::write(
        &script,
        r#"
[search]
algorithm = "rss"
iterations = 20
seed = 3

[environment]
symbols = "Ar7"
cell = [20.0, 20.0, 20.0]
confinement = { corner = [7.5, 7.5, 7.5], size = [5.0, 5.0, 5.0] }

[calculator]
kind = "lj"
epsilon = 1.0
sigma = 2.0
cutoff = 50.0
shift = false

[[generator]]
kind = "random"
count = 3
attempts = 6

[relax]
fmax = 0.05
steps = 50
"#,
    )
    .unwrap();
    let whole = tmp.path().join("whole");
    let out = run(&["run", s(&script), "--output", s(&whole), "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let parts = tmp.path().join("parts");
    for (first, iterations) in [(s(&script), "7"), ("--resume", "13"), ("--resume", "20")] {
        let out = run(&[
            "run",
            first,
            "--output",
            s(&parts),
            "--iterations",
            iterations,
            "-q",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let (w, p) = (summary(&whole), summary(&parts));
    assert!(w["generation_failures"].as_u64().unwrap() > 0, "{w}");
    assert!(w["generated"].as_u64().unwrap() > 0, "{w}");
    for key in [
        "generated",
        "generation_failures",
        "generators",
        "relax_failures",
        "relax_failure_messages",
        "evaluation_failures",
        "evaluation_failure_messages",
        "dropped_candidates",
        "evaluations",
        "best_energy",
        "iterations_done",
    ] {
        assert_eq!(w[key], p[key], "{key}");
    }
    assert_eq!(p["resumed_at"], 13);
}
