//! External calculators (`[calculator] kind = "socket"`) through the command line,
//! against real clients: ASE's `SocketClient` serving ASE's EMT and tblite's
//! GFN2-xTB (`examples/clients/ase_client.py`), and a client that misbehaves on
//! purpose (`crates/agox-ipi/tests/clients/faulty_client.py`). Every test checks
//! through /proc that no client process outlives it.
//!
//! The Python environment comes from `.ci/python-env` (created on first use); if it
//! cannot be created, these tests fail and say why.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agox_atoms::extxyz::{self, Frame};
use agox_atoms::Atoms;
use agox_ipi::command::shell_quote;
use agox_ipi::testsupport::{
    ase_command, assert_no_clients_under, clients_under, eventually, faulty_command, reference,
    water_trimer,
};
use agox_search::db::Database;
use agox_search::Candidate;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

mod common;

use common::*;

fn q(p: &Path) -> String {
    shell_quote(&p.display().to_string())
}

/// A `[calculator]` table for `command` with test-sized times, plus `extra` keys.
fn socket_table(command: &str, extra: &str) -> String {
    // TOML literal strings take the command as it is (quotes, backslashes).
    format!(
        "[calculator]\nkind = \"socket\"\ncommand = '''{command}'''\nconnect_timeout = 60\ngrace = 2\n{extra}\n"
    )
}

/// An Au6Cu2 random search with single points, `iterations` long: from iteration 1
/// on one random candidate and two rattles of the lowest structure so far (so the
/// structures depend on the energies' order), 3 evaluations per iteration.
fn search_script(dir: &Path, name: &str, iterations: u64, calculator: &str, tail: &str) -> PathBuf {
    let text = format!(
        r#"
[search]
algorithm = "rss"
iterations = {iterations}
seed = 11

[environment]
symbols = "Au6Cu2"
cell = [12.0, 12.0, 12.0]
confinement = {{ corner = [3.5, 3.5, 3.5], size = [5.0, 5.0, 5.0] }}

{calculator}

[[generator]]
kind = "random"
count = {{ 0 = 3, 1 = 1 }}

[[generator]]
kind = "rattle"
n_rattle = 2
amplitude = 1.5
count = {{ 0 = 0, 1 = 2 }}

[sampler]
kind = "lowest"
{tail}
"#
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// [`search_script`] through the misbehaving client with `options`.
fn faulty_search(dir: &Path, iterations: u64, options: &str) -> PathBuf {
    let name = format!("faulty{}", options.len());
    let table = socket_table(&faulty_command(options), "");
    search_script(dir, &name, iterations, &table, "")
}

fn stored(dir: &Path) -> Vec<Candidate> {
    Database::open_existing(dir.join("db.db"))
        .unwrap()
        .read_all()
        .unwrap()
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// Runs `agox-coord run` to its end and asserts it succeeded.
fn run_ok(script: &Path, out: &Path, workers: &str) -> std::process::Output {
    let o = run(&[
        "run",
        s(script),
        "--workers",
        workers,
        "--output",
        s(out),
        "-q",
    ]);
    assert!(
        o.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `|a − b| ≤ tol·|b|`.
fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs()
}

/// Forces agree to `tol` relative to the largest force component (at least 1 eV/Å).
fn forces_close(a: &[[f64; 3]], b: &[[f64; 3]], tol: f64) -> bool {
    let scale = b.iter().flatten().fold(1.0f64, |m, f| m.max(f.abs()));
    a.len() == b.len()
        && a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .all(|(x, y)| (x - y).abs() <= tol * scale)
}

/// The same stored structures, positions within `moved` Å (0: bit for bit),
/// energies and forces within `tol` relative (0: bit for bit).
fn assert_same_database(got: &[Candidate], want: &[Candidate], tol: f64, moved: f64) {
    assert_eq!(got.len(), want.len(), "rows");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if moved == 0.0 {
            assert_eq!(g.atoms.positions, w.atoms.positions, "row {i}: positions");
        } else {
            let (gp, wp) = (
                g.atoms.positions.iter().flatten(),
                w.atoms.positions.iter().flatten(),
            );
            assert!(
                gp.zip(wp).all(|(x, y)| (x - y).abs() <= moved),
                "row {i}: positions {:?} vs {:?}",
                g.atoms.positions,
                w.atoms.positions
            );
        }
        assert_eq!(g.atoms.numbers, w.atoms.numbers, "row {i}: numbers");
        assert_eq!(
            (g.meta.iteration, &g.meta.generator, &g.meta.parents),
            (w.meta.iteration, &w.meta.generator, &w.meta.parents),
            "row {i}: provenance"
        );
        let (ge, we) = (g.energy.unwrap(), w.energy.unwrap());
        let (gf, wf) = (g.forces.as_ref().unwrap(), w.forces.as_ref().unwrap());
        if tol == 0.0 {
            assert_eq!(ge.to_bits(), we.to_bits(), "row {i}: energy {ge} vs {we}");
            assert_eq!(gf, wf, "row {i}: forces");
        } else {
            assert!(close(ge, we, tol), "row {i}: energy {ge} vs {we}");
            assert!(forces_close(gf, wf, tol), "row {i}: forces");
        }
    }
}

/// Every client log under `dir` (the clients' directory), one after the other.
fn client_logs(dir: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let log = entry.unwrap().path().join("client.log");
        if let Ok(text) = std::fs::read_to_string(&log) {
            all.push_str(&text);
        }
    }
    all
}

/// Starts of clients under `dir`: the banner the client wrapper writes at each.
fn client_starts(dir: &Path) -> usize {
    client_logs(dir).matches("=== agox-ipi: start").count()
}

/// A few Au6Cu2 clusters (same composition and order, as one client serves).
fn clusters() -> Vec<Atoms> {
    let base = [
        [0.0, 0.0, 0.0],
        [2.8, 0.0, 0.0],
        [1.4, 2.4, 0.0],
        [1.4, 0.8, 2.3],
        [4.2, 2.4, 0.0],
        [-1.4, 2.4, 0.0],
        [4.1, 0.9, 2.2],
        [0.0, 3.2, 2.3],
    ];
    (0..4)
        .map(|k| {
            let positions = base
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let w = 0.08 * ((i * 7 + k * 3) as f64).sin();
                    [p[0] + w, p[1] - 0.6 * w, p[2] + 0.3 * w]
                })
                .collect();
            Atoms::new(vec![79, 79, 79, 79, 79, 79, 29, 29], positions).unwrap()
        })
        .collect()
}

fn write_frames(path: &Path, frames: &[Atoms]) {
    let mut text = Vec::new();
    for a in frames {
        extxyz::write_frame(&mut text, &Frame::new(a.clone())).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

fn read_frames(path: &Path) -> Vec<Frame> {
    extxyz::read(std::io::BufReader::new(std::fs::File::open(path).unwrap())).unwrap()
}

#[test]
fn calc_and_relax_through_ase_emt_equal_the_in_process_emt() {
    let tmp = tempfile::tempdir().unwrap();
    let calc_file = tmp.path().join("ase_emt.toml");
    std::fs::write(&calc_file, socket_table(&ase_command("emt"), "")).unwrap();
    let input = tmp.path().join("in.xyz");
    write_frames(&input, &clusters());
    let clients = tmp.path().join("clients");

    let (ours, theirs) = (tmp.path().join("socket.xyz"), tmp.path().join("emt.xyz"));
    for args in [
        vec![
            "calc",
            "--calculator",
            s(&calc_file),
            "--client-dir",
            s(&clients),
            "--workers",
            "2",
            s(&input),
            "-o",
            s(&ours),
        ],
        vec!["calc", "--potential", "emt", s(&input), "-o", s(&theirs)],
    ] {
        let out = run(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (got, want) = (read_frames(&ours), read_frames(&theirs));
    assert_eq!(got.len(), 4);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.atoms.positions, w.atoms.positions);
        assert!(
            close(g.energy.unwrap(), w.energy.unwrap(), 1e-10),
            "{:?} vs {:?}",
            g.energy,
            w.energy
        );
        assert!(forces_close(
            g.forces.as_ref().unwrap(),
            w.forces.as_ref().unwrap(),
            1e-10
        ));
    }
    // One client per worker, each in its own directory with its log.
    for w in ["worker-0", "worker-1"] {
        let log = std::fs::read_to_string(clients.join(w).join("client.log")).unwrap();
        assert!(log.contains("ase_client: emt for Au6Cu2"), "{log}");
    }
    assert_eq!(client_starts(&clients), 2);
    assert_no_clients_under(&clients);

    // A relaxation through one client (no workers: the command's own process owns
    // it) ends where the in-process one does.
    let one = tmp.path().join("one.xyz");
    write_frames(&one, &clusters()[..1]);
    let (ours, theirs) = (tmp.path().join("rs.xyz"), tmp.path().join("re.xyz"));
    let socket_relax = [
        "relax",
        "--calculator",
        s(&calc_file),
        "--client-dir",
        s(&clients),
        "--workers",
        "0",
        s(&one),
        "-o",
        s(&ours),
    ];
    let emt_relax = ["relax", "--potential", "emt", s(&one), "-o", s(&theirs)];
    for args in [&socket_relax[..], &emt_relax[..]] {
        let out = run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (got, want) = (&read_frames(&ours)[0], &read_frames(&theirs)[0]);
    assert!(close(got.energy.unwrap(), want.energy.unwrap(), 1e-8));
    let log = std::fs::read_to_string(clients.join("driver/client.log")).unwrap();
    assert_eq!(log.matches("=== agox-ipi: start").count(), 1, "{log}");
    assert_no_clients_under(&clients);
}

#[test]
fn bad_calculator_settings_are_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.xyz");
    write_frames(&input, &clusters()[..1]);
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[calculator]\nkind = \"socket\"\ncommand = \"client --unix {sock}\"\n",
    )
    .unwrap();
    let out = run(&["calc", "--calculator", s(&bad), s(&input)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:3:11: [calculator] command: unknown placeholder {sock}"),
        "{err}"
    );
    // More cores than there are.
    let greedy = tmp.path().join("greedy.toml");
    std::fs::write(
        &greedy,
        socket_table(&ase_command("emt"), "ranks_per_client = 100000"),
    )
    .unwrap();
    let out = run(&[
        "calc",
        "--calculator",
        s(&greedy),
        "--workers",
        "1",
        s(&input),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1 client × ranks_per_client = 100000"),
        "{err}"
    );
    // `run` refuses it before anything is stored.
    let script = search_script(
        tmp.path(),
        "greedy",
        2,
        &socket_table(&ase_command("emt"), "ranks_per_client = 100000"),
        "",
    );
    let dir = tmp.path().join("greedy-run");
    let out = run(&["run", s(&script), "--workers", "2", "--output", s(&dir)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2 clients × ranks_per_client = 100000 need 200000 cores")
            && err.contains("oversubscribe = true"),
        "{err}"
    );
    assert!(!dir.join("db.db").exists());
    // --potential and --calculator exclude each other; --client-dir needs --calculator.
    let out = run(&[
        "calc",
        "--potential",
        "emt",
        "--calculator",
        s(&bad),
        s(&input),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["calc", "--potential", "emt", "--client-dir", "x", s(&input)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--client-dir applies only to --calculator")
    );
}

/// 20 iterations on 2 workers through ASE's EMT client give the database the
/// in-process EMT gives: the same structures bit for bit (generation depends on the
/// energies only through their order), energies and forces to 1e-10 relative (the
/// positions' round trip through Bohr changes last bits).
#[test]
fn a_search_through_the_socket_equals_the_in_process_search() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = search_script(
        tmp.path(),
        "socket",
        20,
        &socket_table(&ase_command("emt"), "timeout = 60"),
        "",
    );
    let emt = search_script(tmp.path(), "emt", 20, "[calculator]\nkind = \"emt\"", "");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let t0 = Instant::now();
    run_ok(&socket, &a, "2");
    let t_socket = t0.elapsed();
    let t0 = Instant::now();
    run_ok(&emt, &b, "2");
    let t_emt = t0.elapsed();
    eprintln!("20 iterations, 2 workers: socket {t_socket:?}, in process {t_emt:?}");
    let (got, want) = (stored(&a), stored(&b));
    assert_eq!(got.len(), 3 * 20);
    assert_same_database(&got, &want, 1e-10, 0.0);
    assert!(got.iter().any(|c| c.meta.generator == "rattle"));
    // Each worker started one client and kept it for every evaluation; the driver
    // started none.
    assert_eq!(client_starts(&a.join("workers")), 2);
    assert!(!a.join("workers/driver").exists());
    assert_no_clients_under(&a.join("workers"));
}

/// GOFEE with an external calculator: its evaluation (a single point and one BFGS
/// step, both stored) runs on the workers' clients. Every stored energy and force
/// is EMT's for the stored structure, and the first iteration (before the model
/// has trained) equals the in-process run's. Later iterations are not compared:
/// the model relaxes candidates in a surrogate trained on energies that differ from
/// ours in their last bits (~1e-13), which moves the relaxed structures by ~1e-7 Å.
#[test]
fn gofee_evaluates_through_the_workers_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let script = |name: &str, calculator: &str| {
        let text = format!(
            r#"
[search]
algorithm = "gofee"
iterations = 6
seed = 3

[environment]
symbols = "Au6Cu2"
cell = [12.0, 12.0, 12.0]
confinement = {{ corner = [3.5, 3.5, 3.5], size = [5.0, 5.0, 5.0] }}

{calculator}
"#
        );
        let path = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    };
    let socket = script("socket", &socket_table(&ase_command("emt"), "timeout = 60"));
    let emt = script("emt", "[calculator]\nkind = \"emt\"");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run_ok(&socket, &a, "2");
    run_ok(&emt, &b, "2");
    let (got, want) = (stored(&a), stored(&b));
    // Each iteration stores the single point and the point after one BFGS step.
    assert_eq!((got.len(), want.len()), (2 * 6, 2 * 6));
    assert_eq!(summary(&a)["calculator_calls"], 12);
    assert_eq!(summary(&b)["calculator_calls"], 12);
    let mut ours = agox_atoms::emt::Emt::new();
    for (i, c) in got.iter().enumerate() {
        let e = agox_atoms::Calculator::calculate(&mut ours, &c.atoms, false).unwrap();
        assert!(close(c.energy.unwrap(), e.energy, 1e-10), "row {i}: energy");
        assert!(
            forces_close(c.forces.as_ref().unwrap(), &e.forces, 1e-10),
            "row {i}: forces"
        );
    }
    assert_same_database(&got[..2], &want[..2], 1e-10, 1e-9);
    assert!(client_starts(&a.join("workers")) >= 1);
    assert_no_clients_under(&a.join("workers"));
}

/// Relaxations in the model (`[relax]`) and a relaxing evaluator use the worker's
/// one client too: a run starts exactly one client per worker. (With
/// `oversubscribe`, clients that need more cores than there are may start.)
#[test]
fn relaxations_and_evaluation_share_the_workers_client() {
    let tmp = tempfile::tempdir().unwrap();
    let tail = "[relax]\nfmax = 0.1\nsteps = 15\n\n[evaluator]\nkind = \"relax\"\nsteps = 5\n";
    let extra = "ranks_per_client = 100000\noversubscribe = true";
    let socket = search_script(
        tmp.path(),
        "socket",
        3,
        &socket_table(&ase_command("emt"), extra),
        tail,
    );
    let out = tmp.path().join("out");
    run_ok(&socket, &out, "2");
    let rows = stored(&out);
    assert_eq!(rows.len(), 9);
    assert!(rows
        .iter()
        .all(|c| c.meta.relax_steps.is_some_and(|n| n > 0)));
    assert_eq!(summary(&out)["evaluation_failures"], 0);
    assert_eq!(client_starts(&out.join("workers")), 2);
    assert_no_clients_under(&out.join("workers"));
}

/// A client SIGKILLed in the middle of an evaluation is restarted and the structure
/// sent again: the database is the undisturbed run's, bit for bit.
#[test]
fn a_killed_client_is_restarted_and_the_search_is_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let once = tmp.path().join("crashed");
    let crashing = faulty_search(tmp.path(), 6, &format!("--crash-on 4 --once {}", q(&once)));
    let calm = faulty_search(tmp.path(), 6, "");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run_ok(&crashing, &a, "2");
    run_ok(&calm, &b, "2");
    assert!(once.exists(), "the client never crashed");
    assert_same_database(&stored(&a), &stored(&b), 0.0, 0.0);
    let s = summary(&a);
    assert_eq!(s["evaluation_failures"], 0, "{s}");
    assert_eq!(s["evaluations"], 18);
    // Two first starts and one restart.
    assert_eq!(client_starts(&a.join("workers")), 3);
    let logs = client_logs(&a.join("workers"));
    assert!(
        logs.contains("faulty_client: crashing in evaluation 4"),
        "{logs}"
    );
    assert_no_clients_under(&a.join("workers"));
    assert_no_clients_under(&b.join("workers"));
}

/// A client that fails an evaluation (it reports an error and exits) fails that
/// candidate, with its message in summary.json; the search goes on.
#[test]
fn a_failed_evaluation_fails_the_candidate_and_the_search_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let once = tmp.path().join("failed");
    let script = faulty_search(tmp.path(), 4, &format!("--fail-on 2 --once {}", q(&once)));
    let out = tmp.path().join("out");
    run_ok(&script, &out, "2");
    let s = summary(&out);
    assert_eq!(s["evaluation_failures"], 1, "{s}");
    let message = s["evaluation_failure_messages"][0].as_str().unwrap();
    // The client's own words, from the end of its log. (That it exited with status
    // 3 is in the message too, unless the loaded machine kept the exit from being
    // seen within `grace` after the connection closed.)
    assert!(
        message.contains("single point: socket: the client")
            && message.contains("faulty_client: SCF did not converge in evaluation 2"),
        "{message}"
    );
    assert_eq!(s["iterations_done"], 4);
    assert_eq!(stored(&out).len(), 3 * 4 - 1);
    assert_no_clients_under(&out.join("workers"));
}

/// A client that cannot be started (again) fails the run loudly, with the client's
/// own words; what was stored stays.
#[test]
fn a_client_that_cannot_start_fails_the_run_and_keeps_what_was_stored() {
    let tmp = tempfile::tempdir().unwrap();
    // The first client in each directory works until it is killed in its 7th
    // evaluation; every later start fails at once.
    let command = format!(
        "if [ -e {{dir}}/started ]; then echo 'license server unreachable' >&2; exit 2; fi; \
         touch {{dir}}/started; exec {}",
        faulty_command("--crash-on 7")
    );
    let script = search_script(
        tmp.path(),
        "doomed",
        20,
        &socket_table(&command, "max_restarts = 2"),
        "",
    );
    let out = tmp.path().join("out");
    let o = run(&[
        "run",
        s(&script),
        "--workers",
        "1",
        "--output",
        s(&out),
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("gave up on the client after 2 restarts")
            && err.contains("license server unreachable"),
        "{err}"
    );
    let s = summary(&out);
    assert!(
        s["error"].as_str().unwrap().contains("license server"),
        "{s}"
    );
    // Iterations 0 and 1 (6 evaluations) were stored before the 7th killed the client.
    assert_eq!(stored(&out).len(), 6);
    assert_eq!(s["iterations_done"], 2);
    assert_no_clients_under(&out.join("workers"));
}

/// Starts a long socket run (2 workers) and waits until both clients run and the
/// database holds a row.
fn start_long_socket_run(tmp: &Path) -> (Child, PathBuf) {
    let script = faulty_search(tmp, 100_000, "--sleep 0.01");
    let out = tmp.join("out");
    let mut child = Command::new(BIN)
        .args([
            "run",
            s(&script),
            "--workers",
            "2",
            "--output",
            s(&out),
            "-q",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let workers = out.join("workers");
    let ready = eventually(Duration::from_secs(90), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended early: {status}");
        }
        let both = ["worker-0", "worker-1"].iter().all(|w| {
            std::fs::read_to_string(workers.join(w).join("client.log"))
                .is_ok_and(|l| l.contains("=== agox-ipi: start"))
        });
        both && clients_under(&workers).len() >= 2
            && out.join("run.json").exists()
            && Database::open_existing(out.join("db.db"))
                .ok()
                .and_then(|db| db.len().ok())
                .is_some_and(|n| n >= 3)
    });
    if !ready {
        child.kill().unwrap();
        let o = child.wait_with_output().unwrap();
        panic!(
            "the run did not get going: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    (child, out)
}

#[test]
fn a_killed_coordinator_leaves_no_client() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, out) = start_long_socket_run(tmp.path());
    assert!(!clients_under(&out.join("workers")).is_empty());
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    assert_no_clients_under(&out.join("workers"));
}

#[test]
fn ctrl_c_and_sigterm_stop_the_clients_and_keep_the_run() {
    for (signal, code) in [(Signal::SIGINT, 130), (Signal::SIGTERM, 143)] {
        let tmp = tempfile::tempdir().unwrap();
        let (child, out) = start_long_socket_run(tmp.path());
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{signal}: {err}");
        assert!(err.contains(&format!("interrupted by {signal}")), "{err}");
        // The clients were stopped before the command returned.
        assert!(clients_under(&out.join("workers")).is_empty(), "{signal}");
        let s = summary(&out);
        assert_eq!(s["interrupted"], true);
        assert_eq!(s["evaluations"], stored(&out).len() as u64);
    }
}

/// tblite's GFN2-xTB through `calc --calculator` equals tblite called in Python (no
/// workers: the command's own process owns the client and sends the frames in
/// order, as the reference does, so both SCFs start from the same guesses).
#[test]
fn gfn2_xtb_through_calc_equals_tblite_in_python() {
    let tmp = tempfile::tempdir().unwrap();
    let trimer = water_trimer();
    let mut frames = vec![trimer.clone()];
    for k in 1..3 {
        let mut a = trimer.clone();
        for (i, p) in a.positions.iter_mut().enumerate() {
            p[0] += 0.03 * ((i + 5 * k) as f64).sin();
            p[1] -= 0.02 * ((2 * i + k) as f64).cos();
        }
        frames.push(a);
    }
    let input = tmp.path().join("w3.xyz");
    write_frames(&input, &frames);
    let calc_file = tmp.path().join("xtb.toml");
    std::fs::write(&calc_file, socket_table(&ase_command("gfn2-xtb"), "")).unwrap();
    let clients = tmp.path().join("clients");
    let output = tmp.path().join("out.xyz");
    let out = run(&[
        "calc",
        "--calculator",
        s(&calc_file),
        "--client-dir",
        s(&clients),
        "--workers",
        "0",
        s(&input),
        "-o",
        s(&output),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = reference("gfn2-xtb", "direct", &frames);
    for (i, (g, w)) in read_frames(&output).iter().zip(&want).enumerate() {
        let (we, wf) = (&w.energy, &w.forces);
        let e = g.energy.unwrap();
        assert!((e - we).abs() <= 1e-8, "frame {i}: {e} vs {we}");
        for (a, b) in g
            .forces
            .as_ref()
            .unwrap()
            .iter()
            .flatten()
            .zip(wf.iter().flatten())
        {
            assert!((a - b).abs() <= 1e-8, "frame {i}: force {a} vs {b}");
        }
    }
    assert!(
        want[0].energy < -400.0,
        "GFN2-xTB, not EMT: {}",
        want[0].energy
    );
    assert_no_clients_under(&clients);
}

#[test]
fn a_short_gfn2_xtb_basin_hopping_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("bh.toml");
    let text = format!(
        r#"
[search]
algorithm = "bh"
iterations = 3
seed = 5

[environment]
symbols = "O3H6"
cell = [14.0, 14.0, 14.0]
confinement = {{ corner = [4.5, 4.5, 4.5], size = [5.0, 5.0, 5.0] }}

{}
[[generator]]
kind = "random"
count = {{ 0 = 2, 1 = 0 }}

[[generator]]
kind = "rattle"
n_rattle = 2
amplitude = 1.0
count = {{ 0 = 0, 1 = 2 }}

[sampler]
kind = "metropolis"
temperature = 0.1

[relax]
fmax = 0.1
steps = 25
"#,
        socket_table(&ase_command("gfn2-xtb"), "timeout = 120")
    );
    std::fs::write(&script, text).unwrap();
    let out = tmp.path().join("out");
    run_ok(&script, &out, "2");
    let s = summary(&out);
    assert_eq!(s["iterations_done"], 3);
    let rows = stored(&out);
    assert_eq!(
        rows.len() as u64 + s["evaluation_failures"].as_u64().unwrap(),
        6 - s["relax_failures"].as_u64().unwrap()
    );
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|c| c.energy.unwrap() < -400.0));
    assert_eq!(client_starts(&out.join("workers")), 2);
    assert_no_clients_under(&out.join("workers"));
}
