//! `agox-coord run --transport mpi` under `mpirun` (a build with `--features
//! mpi`): the same seed gives the same database as the Unix-socket run, and a
//! lost rank — which aborts the MPI job — or a hung one — which the run gives up
//! on after the task timeout, ending the job — loses no stored iteration, and the
//! run is resumed with another transport.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agox_search::candidate::Candidate;
use agox_search::db::Database;
use nix::sys::signal::Signal;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::*;

/// `mpirun -n RANKS agox-coord ARGS…`, on one machine (as root where CI runs).
fn mpirun(ranks: usize) -> Command {
    let mut cmd = Command::new("mpirun");
    if nix::unistd::geteuid().is_root() {
        cmd.arg("--allow-run-as-root");
    }
    cmd.args(["--oversubscribe", "-n", &ranks.to_string(), BIN])
        .stdin(Stdio::null());
    cmd
}

fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("mpirun runs")
}

/// Every stored candidate, without what differs between two runs of the same
/// search (identifiers and clock times).
fn database(dir: &Path) -> Vec<Candidate> {
    let mut all = Database::open_existing(dir.join("db.db"))
        .unwrap()
        .read_all()
        .unwrap();
    for c in &mut all {
        c.meta.uuid = None;
        c.meta.time_stamp = None;
        c.meta.ctime = None;
    }
    all
}

#[test]
fn mpi_ranks_give_the_database_of_the_unix_run() {
    let tmp = tempfile::tempdir().unwrap();
    let script = write_script(tmp.path(), 6);
    let (over_mpi, over_unix) = (tmp.path().join("mpi"), tmp.path().join("unix"));
    let out = output(mpirun(3).args([
        "run",
        s(&script),
        "--transport",
        "mpi",
        "--output",
        s(&over_mpi),
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(over_mpi.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        summary["pool"]["workers"], 2,
        "3 ranks: rank 0 and 2 workers"
    );
    // Both worker ranks share rank 0's machine: large values through its memory.
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("through shared memory to ranks [1, 2], by broadcast to ranks []"),
        "{said}"
    );
    let out = run(&[
        "run",
        s(&script),
        "--workers",
        "2",
        "--output",
        s(&over_unix),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (a, b) = (database(&over_mpi), database(&over_unix));
    assert_eq!(a.len(), 12);
    assert_eq!(a, b);
}

/// The parent of process `pid`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`; the command name may hold spaces and parentheses.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The pid of the process running rank `rank` of the MPI job started by the
/// `mpirun` process `job` (its descendant: the other test's job, or anyone else's
/// on this machine, also has ranks of this program).
fn rank_pid(job: u32, rank: u32) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let ours = std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|exe| exe.ends_with("agox-coord"));
        let is_rank = env
            .split(|&b| b == 0)
            .any(|kv| kv == format!("OMPI_COMM_WORLD_RANK={rank}").as_bytes());
        let in_job = std::iter::successors(Some(pid), |&p| parent_of(p))
            .take_while(|&p| p > 1)
            .any(|p| p == job);
        if ours && is_rank && in_job {
            return Some(pid);
        }
    }
    None
}

/// Whether `pid` runs this program (a zombie has no executable to read).
fn running(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe.ends_with("agox-coord"))
}

#[test]
fn a_lost_rank_aborts_the_job_and_resume_finishes_the_run() {
    let said = lose_a_rank_then_resume(Signal::SIGKILL, &[]);
    assert!(!said.contains("the pool is broken"), "{said}");
}

/// A rank that stops answering (stopped, hung in a call) is lost once its task
/// passes the task timeout: MPI cannot replace it, so the run fails, says so and
/// ends the job — `MPI_Finalize` would wait for that rank for ever.
#[test]
fn a_hung_rank_past_its_task_timeout_ends_the_job_loudly_and_resume_finishes_the_run() {
    let said = lose_a_rank_then_resume(Signal::SIGSTOP, &["--task-timeout", "2"]);
    // Lost by its task's timeout, or by the liveness check of a worker given no
    // task (whichever comes first).
    assert!(
        said.contains("the pool is broken: worker 0 was lost")
            && (said.contains("timed out after 2s") || said.contains("no answer for 2s"))
            && said.contains("agox-coord run --resume --output"),
        "{said}"
    );
}

/// Runs a long search under `mpirun -n 3`, sends `signal` to worker rank 1 once
/// iterations are stored, and checks that the job ends (failing), that no rank is
/// left, that every stored iteration is kept whole, and that resuming over Unix
/// sockets ends the run as one never interrupted. Returns what the job printed.
fn lose_a_rank_then_resume(signal: Signal, extra: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let script = write_script(tmp.path(), 100_000);
    let dir = tmp.path().join("killed");
    let mut job = mpirun(3)
        .args(["run", s(&script), "--transport", "mpi", "--output", s(&dir)])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until some iterations are stored.
    let t = Instant::now();
    let seen = loop {
        std::thread::sleep(Duration::from_millis(20));
        assert!(job.try_wait().unwrap().is_none(), "the job ended early");
        let rows = dir
            .join("run.json")
            .exists()
            .then(|| Database::open_existing(dir.join("db.db")).ok())
            .flatten()
            .and_then(|db| db.read_all().ok())
            .unwrap_or_default();
        if rows.len() >= 10 {
            break rows;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no progress");
    };
    let coordinator = rank_pid(job.id(), 0).expect("rank 0 runs");
    let worker = rank_pid(job.id(), 1).expect("rank 1 runs");
    let other = rank_pid(job.id(), 2).expect("rank 2 runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(worker as i32), signal).unwrap();
    let t = Instant::now();
    let mut ranks_gone: Option<Instant> = None;
    let status = loop {
        if let Some(status) = job.try_wait().unwrap() {
            break status;
        }
        // Open MPI 4.1's mpirun sometimes hangs in its own teardown after
        // MPI_Abort (in PMIx_server_finalize), every rank already ended (about 1
        // abort in 20 here): what is tested is that our processes end.
        if ranks_gone.is_none() && ![coordinator, worker, other].into_iter().any(running) {
            ranks_gone = Some(Instant::now());
        }
        if ranks_gone.is_some_and(|g| g.elapsed() > Duration::from_secs(20)) {
            eprintln!("every rank ended, mpirun did not within 20 s: killed");
            job.kill().unwrap();
            break job.wait().unwrap();
        }
        if t.elapsed() > Duration::from_secs(60) {
            let _ = job.kill();
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(worker as i32), Signal::SIGKILL);
            panic!("the job's ranks did not end within 60 s of losing rank 1");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut said = String::new();
    std::io::Read::read_to_string(&mut job.stderr.take().unwrap(), &mut said).unwrap();
    assert!(!status.success(), "the job fails: {said}");
    for (rank, pid) in [(0, coordinator), (1, worker), (2, other)] {
        assert!(!running(pid), "rank {rank} is gone too");
    }
    // Everything stored before the loss is there, unchanged, in whole iterations.
    let after = Database::open_existing(dir.join("db.db"))
        .unwrap()
        .read_all()
        .unwrap();
    assert_eq!(&after[..seen.len()], &seen[..]);
    let last = after.last().unwrap().meta.iteration;
    assert_eq!(
        after.iter().filter(|c| c.meta.iteration == last).count(),
        2,
        "an iteration is stored whole"
    );
    // Resumed over Unix sockets, the run ends as one that was never interrupted.
    let target = (last + 3).to_string();
    let out = run(&[
        "run",
        s(&script),
        "--resume",
        "--iterations",
        &target,
        "--output",
        s(&dir),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let whole = tmp.path().join("whole");
    let out = run(&[
        "run",
        s(&script),
        "--iterations",
        &target,
        "--output",
        s(&whole),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(database(&dir), database(&whole));
    said
}
