//! `agox-coord run` and `agox-coord validate` as a user runs them: exit codes,
//! outputs, determinism across worker counts, resume, a refused output directory,
//! Ctrl-C and a SIGKILL in the middle of a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agox_search::db::Database;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

mod common;

use common::*;

#[test]
fn validate_prints_settings_or_errors() {
    let good = repo().join("examples/scripts/au8cu4_rss.toml");
    let out = run(&["validate", s(&good)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["search"]["algorithm"], "rss");
    assert_eq!(json["environment"]["numbers"].as_array().unwrap().len(), 12);

    let bad = repo().join("tests/inputs/bad/negative_fmax.toml");
    let out = run(&["validate", s(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fmax"), "{err}");
    // `run` refuses the same script with the validator's message, before anything runs.
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&["run", s(&bad), "--output", s(tmp.path())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fmax"));
    assert!(!tmp.path().join("db.db").exists());
}

#[test]
fn every_example_script_validates() {
    for entry in std::fs::read_dir(repo().join("examples/scripts")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = run(&["validate", s(&path)]);
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn workers_1_and_2_give_the_same_energies_and_resume_continues_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let script = write_script(tmp.path(), 8);
    let w1 = tmp.path().join("w1");
    let w2 = tmp.path().join("w2");
    for (dir, w) in [(&w1, "1"), (&w2, "2")] {
        let out = run(&["run", s(&script), "--workers", w, "--output", s(dir), "-v"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // `-v` logs every iteration on standard output, with the pool's figures.
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(
            log.contains("iteration 7:") && log.contains("sync:") && log.contains(" ε"),
            "{log}"
        );
    }
    assert_eq!(energies(&w1), energies(&w2));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w2.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["iterations_done"], 8);
    assert_eq!(summary["pool"]["workers"], 2);

    // A second fresh run into the same directory is refused.
    let out = run(&["run", s(&script), "--output", s(&w1)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));

    // 4 iterations, then --resume to 8: the same energies as 8 in one go.
    let parts = tmp.path().join("parts");
    let out = run(&[
        "run",
        s(&script),
        "--iterations",
        "4",
        "--workers",
        "2",
        "--output",
        s(&parts),
    ]);
    assert!(out.status.success());
    let out = run(&[
        "run",
        s(&script),
        "--resume",
        "--workers",
        "1",
        "--output",
        s(&parts),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming at iteration 4"));
    assert_eq!(energies(&parts), energies(&w1));
}

#[test]
fn sigkill_loses_nothing_committed_and_the_run_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let script = write_script(tmp.path(), 100_000);
    let dir = tmp.path().join("killed");
    let mut child = start_long_run(&dir, &script, 20);
    let seen = Database::open_existing(dir.join("db.db"))
        .unwrap()
        .read_all()
        .unwrap();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    // Everything seen before the kill is still there, unchanged, and whole iterations.
    let db = Database::open_existing(dir.join("db.db")).unwrap();
    let after = db.read_all().unwrap();
    assert!(after.len() >= seen.len());
    assert_eq!(&after[..seen.len()], &seen[..]);
    let last = after.last().unwrap().meta.iteration;
    let per_iter = after.iter().filter(|c| c.meta.iteration == last).count();
    assert_eq!(per_iter, 2, "an iteration is committed whole");
    drop(db);
    // And the run continues from it.
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
    assert_eq!(energies(&dir).len(), after.len() + 4);
}

#[test]
fn ctrl_c_writes_the_summary_and_exits_130() {
    let tmp = tempfile::tempdir().unwrap();
    let script = write_script(tmp.path(), 100_000);
    let dir = tmp.path().join("interrupted");
    let child = start_long_run(&dir, &script, 10);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["interrupted"], true);
    let n = energies(&dir).len() as u64;
    assert_eq!(summary["evaluations"], n);
    assert_eq!(n, 2 * summary["iterations_done"].as_u64().unwrap());
}

#[test]
fn gofee_runs_through_the_binary_and_counts_calculator_calls() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("gofee.toml");
    std::fs::write(
        &script,
        r#"
[search]
algorithm = "gofee"
iterations = 4
seed = 3

[environment]
symbols = "Au4Cu2"
cell = [10.0, 10.0, 10.0]
confinement = { corner = [3.0, 3.0, 3.0], size = [4.0, 4.0, 4.0] }

[calculator]
kind = "emt"

[[generator]]
kind = "random"
count = 4

[relax]
steps = 30
"#,
    )
    .unwrap();
    let dir = tmp.path().join("out");
    let out = run(&[
        "run",
        s(&script),
        "--workers",
        "2",
        "--output",
        s(&dir),
        "-v",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `-v` shows each training: its rows and what went to the workers.
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("model: 8 rows"), "{log}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["algorithm"], "gofee");
    // A single point and one BFGS step per iteration, both stored.
    assert_eq!(summary["calculator_calls"], 8);
    assert_eq!(energies(&dir).len(), 8);
    assert!(summary["surrogate_steps"].as_u64().unwrap() > 0);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap()).unwrap();
    assert_eq!(record["trainings"].as_array().unwrap().len(), 4);
    // `analyze` reads the calls.
    let out = run(&["analyze", s(&dir)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
