//! What a newcomer meets in the first hour, through the real binary: one test (or
//! a few) per problem found when the tool was first tried as a new user would. The
//! number in each test's name is the finding's. Finding 1 (tests that need nothing
//! beside the repository) is `tests/self_contained.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// A small LJ cluster as an extxyz file of `n` frames.
fn lj_frames(dir: &Path, n: usize) -> std::path::PathBuf {
    let mut text = String::new();
    for k in 0..n {
        let d = 1.1 + 0.01 * k as f64;
        text.push_str(&format!(
            "3\nProperties=species:S:1:pos:R:3\nAr 0 0 0\nAr {d} 0 0\nAr 0 {d} 0\n"
        ));
    }
    let path = dir.join("in.xyz");
    std::fs::write(&path, text).unwrap();
    path
}

// 2 ─────────────────────────────────────────────────────────────────────────────

#[test]
fn finding_02_a_run_directory_in_use_refuses_a_second_process_at_once_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let script = write_script(tmp.path(), 100_000);
    let dir = tmp.path().join("busy");
    let mut child = start_long_run(&dir, &script, 4);
    let pid = child.id();

    for args in [
        vec!["run", s(&script), "--resume", "--output", s(&dir)],
        vec!["run", s(&script), "--output", s(&dir)],
    ] {
        let t = Instant::now();
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("in use by process {pid}")), "{err}");
        // At once: no pool started, no waiting for the lock.
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    // Every stored iteration is whole: nothing was written twice.
    let stored = energies(&dir).len();
    assert_eq!(stored % 2, 0, "{stored} rows");
    // The lock went with the process: the run resumes.
    let out = run(&[
        "run",
        "--resume",
        "--output",
        s(&dir),
        "--iterations",
        &(stored / 2 + 2).to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(energies(&dir).len(), stored + 4);
}

// 3 ─────────────────────────────────────────────────────────────────────────────

#[test]
fn finding_03_output_to_a_fifo_is_written_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let input = lj_frames(tmp.path(), 2);
    let fifo = tmp.path().join("out.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            std::fs::File::open(&fifo)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            text
        })
    };
    let out = run(&[
        "calc",
        "--potential",
        "lj",
        s(&input),
        "-o",
        s(&fifo),
        "--workers",
        "0",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = reader.join().unwrap();
    assert_eq!(text.matches("energy=").count(), 2, "{text}");
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn finding_03_output_to_a_device_is_written_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let input = lj_frames(tmp.path(), 2);
    let out = run(&[
        "calc",
        "--potential",
        "lj",
        s(&input),
        "-o",
        "/dev/null",
        "--workers",
        "0",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m = std::fs::symlink_metadata("/dev/null").unwrap();
    assert!(
        m.file_type().is_char_device(),
        "/dev/null is no longer a device"
    );
}

#[test]
fn finding_03_output_through_a_symlink_replaces_its_target_and_keeps_the_link() {
    let tmp = tempfile::tempdir().unwrap();
    let input = lj_frames(tmp.path(), 2);
    let target = tmp.path().join("real.xyz");
    std::fs::write(&target, "old").unwrap();
    let link = tmp.path().join("link.xyz");
    std::os::unix::fs::symlink("real.xyz", &link).unwrap();
    let out = run(&[
        "calc",
        "--potential",
        "lj",
        s(&input),
        "-o",
        s(&link),
        "--workers",
        "0",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let text = std::fs::read_to_string(&target).unwrap();
    assert_eq!(text.matches("energy=").count(), 2, "{text}");
    // No temporary file is left beside it.
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");

    // The run directory's files follow the same rules: a summary.json that is a
    // symbolic link stays one, and its target gets the summary.
    let script = write_script(tmp.path(), 2);
    let dir = tmp.path().join("run");
    std::fs::create_dir(&dir).unwrap();
    let kept = tmp.path().join("kept-summary.json");
    std::os::unix::fs::symlink(&kept, dir.join("summary.json")).unwrap();
    let out = run(&["run", s(&script), "--output", s(&dir), "--workers", "0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::symlink_metadata(dir.join("summary.json"))
        .unwrap()
        .file_type()
        .is_symlink());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&kept).unwrap()).unwrap();
    assert_eq!(summary["iterations_done"], 2);
}

// 4 ─────────────────────────────────────────────────────────────────────────────

#[test]
fn finding_04_a_search_where_every_candidate_fails_stops_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("au60.toml");
    std::fs::write(
        &script,
        r#"
[search]
algorithm = "rss"
iterations = 400
seed = 1

[environment]
symbols = "Au60"
cell = [6.0, 6.0, 6.0]

[calculator]
kind = "emt"

[[generator]]
kind = "random"
count = 2
"#,
    )
    .unwrap();
    // The conservative capacity check lets it through: only generating shows it.
    assert!(run(&["validate", s(&script)]).status.success());
    let out = run(&["run", s(&script), "--workers", "2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("no candidate could be generated in 10 iterations in a row")
            && err.contains("[[generator]] #1 random failed 20 time(s)")
            && err.contains("cannot hold these 60 atoms")
            && err.contains("c1 = 0.75"),
        "{err}"
    );
    // The first failures are shown as they happen.
    assert!(err.contains("warning: iteration 0: [[generator]] #1: random: could not place atom"));
    let summary = summary(&tmp.path().join("au60"));
    let g = &summary["generators"][0];
    assert_eq!(g["generator"], "[[generator]] #1 random");
    assert_eq!(g["generated"], 0);
    assert_eq!(g["failures"]["count"], 20);
    assert!(g["failures"]["messages"][0]
        .as_str()
        .unwrap()
        .contains("could not place atom"));
    assert!(summary["error"]
        .as_str()
        .unwrap()
        .contains("no candidate could be generated"));
    assert_eq!(summary["iterations_done"], 10);
}

// 5 ─────────────────────────────────────────────────────────────────────────────

/// A pipe whose reading end is already closed: every write to it fails (EPIPE).
/// Both ends are close-on-exec, so that a process another test starts meanwhile
/// cannot inherit the reading end (and keep the pipe open).
fn closed_pipe() -> Stdio {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    drop(read);
    Stdio::from(write)
}

#[test]
fn finding_05_a_closed_stderr_never_stops_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let script = write_script(tmp.path(), 3);
    let dir = tmp.path().join("out");
    let out = Command::new(BIN)
        .args(["run", s(&script), "--output", s(&dir), "--workers", "1"])
        .stdin(Stdio::null())
        .stderr(closed_pipe())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("best energy"), "{}", stdout(&out));
    assert_eq!(summary(&dir)["iterations_done"], 3);
}

#[test]
fn finding_05_a_closed_stdout_ends_the_run_cleanly_at_the_next_step() {
    let tmp = tempfile::tempdir().unwrap();
    let script = write_script(tmp.path(), 100_000);
    let dir = tmp.path().join("out");
    let out = Command::new(BIN)
        .args([
            "run",
            s(&script),
            "--output",
            s(&dir),
            "--workers",
            "1",
            "-v",
        ])
        .stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    // An error exit, not a panic (101) or an abort.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("standard output") && err.contains("--resume"),
        "{err}"
    );
    // Everything stored is kept and the summary says why the run stopped.
    let summary = summary(&dir);
    let done = summary["iterations_done"].as_u64().unwrap();
    assert!((1..100_000).contains(&done));
    assert_eq!(energies(&dir).len() as u64, 2 * done);
    assert!(summary["error"]
        .as_str()
        .unwrap()
        .contains("standard output"));
}

#[test]
fn finding_05_calc_with_a_closed_stdout_fails_without_panicking() {
    let tmp = tempfile::tempdir().unwrap();
    let input = lj_frames(tmp.path(), 3);
    let out = Command::new(BIN)
        .args(["calc", "--potential", "lj", s(&input), "--workers", "0"])
        .stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("writing <stdout>") && !err.contains("panicked"),
        "{err}"
    );
}

// 6 ─────────────────────────────────────────────────────────────────────────────

#[test]
fn finding_06_resume_takes_the_seed_from_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    // The script says seed 9; the run is started with --seed 5.
    let script = write_script(tmp.path(), 4);
    let dir = tmp.path().join("seeded");
    let out = run(&[
        "run",
        s(&script),
        "--seed",
        "5",
        "--iterations",
        "2",
        "--output",
        s(&dir),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A different --seed is refused, naming both.
    let out = run(&[
        "run",
        s(&script),
        "--resume",
        "--seed",
        "7",
        "--output",
        s(&dir),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("seed 5") && err.contains("--seed 7"), "{err}");
    // Without --seed (the script's 9 does not count), and the same --seed, it goes on.
    let out = run(&[
        "run",
        s(&script),
        "--resume",
        "--output",
        s(&dir),
        "--iterations",
        "3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // No script at all: the run's own settings (3 iterations recorded by now).
    let out = run(&["run", "--resume", "--seed", "5", "--output", s(&dir)]);
    assert!(stdout(&out).contains("nothing to do"), "{}", stdout(&out));
    let out = run(&[
        "run",
        "--resume",
        "--seed",
        "5",
        "--output",
        s(&dir),
        "--iterations",
        "4",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&dir)["seed"], 5);
    // The same energies as 4 iterations with seed 5 in one go.
    let whole = tmp.path().join("whole");
    let out = run(&["run", s(&script), "--seed", "5", "--output", s(&whole)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(energies(&dir), energies(&whole));
}

// 7 ─────────────────────────────────────────────────────────────────────────────

#[test]
fn finding_07_a_release_build_builds_the_command_and_the_readme_installs_it() {
    let meta = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(meta.status.success(), "{}", stderr(&meta));
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).unwrap();
    let default_members: Vec<&str> = meta["workspace_default_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(
        default_members.iter().any(|m| m.contains("agox-coord")),
        "`cargo build --release` would not build agox-coord: {default_members:?}"
    );
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(readme.contains("cargo install --path bin/agox-coord"));
}

// 8 ─────────────────────────────────────────────────────────────────────────────

#[test]
fn finding_08_settings_that_cannot_fit_in_memory_are_refused_with_the_estimate() {
    let bad = repo().join("tests/inputs/bad/too_much_memory.toml");
    let out = run(&["validate", s(&bad)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("100000000 candidates per iteration") && err.contains("GB of memory"),
        "{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&["run", s(&bad), "--output", s(tmp.path())]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("GB of memory"));
    assert!(!tmp.path().join("db.db").exists());
}

// 9 ─────────────────────────────────────────────────────────────────────────────

#[test]
fn finding_09_an_unknown_key_hides_no_other_error_and_messages_name_the_value() {
    let bad = |name: &str| repo().join("tests/inputs/bad").join(name);
    let out = run(&["validate", s(&bad("unknown_key_hides_nothing.toml"))]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("[search] seeed: unknown key")
            && err
                .contains("[[generator]] #1 count: expected an integer ≥ 1, found the integer -4")
            && err.contains("[relax] fmax")
            && err.contains("3 errors"),
        "{err}"
    );
    for (file, says) in [
        ("cell_negative_length.toml", "length b = -6 is not > 0"),
        ("cell_zero_length.toml", "length a = 0 is not > 0"),
        ("cell_infinite_length.toml", "length c = inf is not finite"),
        ("template_is_directory.toml", "is a directory"),
    ] {
        let out = run(&["validate", s(&bad(file))]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains(says), "{file}: {}", stderr(&out));
    }
}

// 10 ────────────────────────────────────────────────────────────────────────────

#[test]
fn finding_10_a_resume_with_nothing_to_do_leaves_the_summary_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let script = write_script(tmp.path(), 2);
    let dir = tmp.path().join("done");
    assert!(run(&["run", s(&script), "--output", s(&dir)])
        .status
        .success());
    let before = std::fs::read(dir.join("summary.json")).unwrap();
    let run_json = std::fs::read(dir.join("run.json")).unwrap();
    let out = run(&["run", s(&script), "--resume", "--output", s(&dir)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing to do"), "{}", stdout(&out));
    assert_eq!(std::fs::read(dir.join("summary.json")).unwrap(), before);
    assert_eq!(std::fs::read(dir.join("run.json")).unwrap(), run_json);
}

#[test]
fn finding_10_an_empty_input_to_calc_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.xyz");
    std::fs::write(&empty, "").unwrap();
    let out_file = tmp.path().join("out.xyz");
    let out = run(&["calc", "--potential", "emt", s(&empty), "-o", s(&out_file)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("holds no structure"),
        "{}",
        stderr(&out)
    );
    assert!(!out_file.exists());
}

#[test]
fn finding_10_os_errors_print_their_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&[
        "calc",
        "--potential",
        "emt",
        s(&tmp.path().join("missing.xyz")),
    ]);
    assert_eq!(
        stderr(&out).matches("No such file or directory").count(),
        1,
        "{}",
        stderr(&out)
    );
    // An output directory below a regular file.
    let file = tmp.path().join("file");
    std::fs::write(&file, "").unwrap();
    let script = write_script(tmp.path(), 1);
    let out = run(&["run", s(&script), "--output", s(&file.join("sub"))]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).matches("Not a directory").count(),
        1,
        "{}",
        stderr(&out)
    );
}

#[test]
fn finding_10_an_output_that_is_a_regular_file_is_not_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("results");
    std::fs::write(&file, "keep me").unwrap();
    let script = write_script(tmp.path(), 1);
    let out = run(&["run", s(&script), "--output", s(&file)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not a directory"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn finding_10_more_workers_than_cpus_get_a_warning() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let tmp = tempfile::tempdir().unwrap();
    let input = lj_frames(tmp.path(), cpus + 1);
    let workers = (cpus + 1).to_string();
    let out = run(&[
        "calc",
        "--potential",
        "lj",
        s(&input),
        "--workers",
        &workers,
        "-o",
        "/dev/null",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "warning: {workers} workers on {cpus} available CPU"
        )),
        "{err}"
    );
    let out = run(&[
        "calc",
        "--potential",
        "lj",
        s(&input),
        "--workers",
        "1",
        "-o",
        "/dev/null",
    ]);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn finding_10_a_negative_number_gets_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let script = write_script(tmp.path(), 1);
    for flag in ["--workers", "--iterations", "--seed"] {
        let out = run(&["run", s(&script), flag, "-5"]);
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let err = stderr(&out);
        assert!(
            err.contains("expected a whole number")
                && err.contains("\"-5\"")
                && !err.contains("tip"),
            "{flag}: {err}"
        );
    }
}

#[test]
fn finding_10_energies_carry_units_and_pool_internals_need_verbose() {
    let tmp = tempfile::tempdir().unwrap();
    let script = write_script(tmp.path(), 3);
    let quiet_dir = tmp.path().join("plain");
    let out = run(&["run", s(&script), "--output", s(&quiet_dir)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all = stdout(&out) + &stderr(&out);
    assert!(!all.contains("sync:"), "{all}");
    // LJ in reduced units: ε.
    assert!(
        stdout(&out).contains(" ε (first reached"),
        "{}",
        stdout(&out)
    );
    let verbose_dir = tmp.path().join("verbose");
    let out = run(&["run", s(&script), "--output", s(&verbose_dir), "-v"]);
    assert!(stdout(&out).contains("sync:"), "{}", stdout(&out));
    assert_eq!(summary(&verbose_dir)["energy_unit"], "ε");

    // EMT: eV.
    let au = repo().join("examples/scripts/au8cu4_rss.toml");
    let dir = tmp.path().join("au");
    let out = run(&[
        "run",
        s(&au),
        "--output",
        s(&dir),
        "--iterations",
        "1",
        "--workers",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(" eV (first reached"),
        "{}",
        stdout(&out)
    );
}
