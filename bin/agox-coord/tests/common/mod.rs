//! Helpers of the `agox-coord` integration tests: the binary, a small search
//! script, running commands, reading a run's database.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use agox_search::db::Database;

pub const BIN: &str = env!("CARGO_BIN_EXE_agox-coord");

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A small LJ basin-hopping script (fast: 7 atoms).
pub fn write_script(dir: &Path, iterations: u64) -> PathBuf {
    let text = format!(
        r#"
[search]
algorithm = "bh"
iterations = {iterations}
seed = 9

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

[relax]
fmax = 0.02
steps = 300
"#
    );
    let path = dir.join("lj7.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn energies(dir: &Path) -> Vec<f64> {
    Database::open_existing(dir.join("db.db"))
        .unwrap()
        .energies()
        .unwrap()
        .into_iter()
        .map(|e| e.unwrap())
        .collect()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Structures stored in a run's database so far: read through a read-only
/// connection, which never creates or changes anything in a database the run may
/// be making at this very moment (0 while there is none to read).
pub fn stored_rows(db: &Path) -> usize {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| {
            c.query_row("SELECT COUNT(*) FROM structures", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .map_or(0, |n| n as usize)
}

/// Starts a long run and waits until its database holds at least `rows` rows.
/// The caller waits for the returned child.
#[allow(clippy::zombie_processes)]
pub fn start_long_run(dir: &Path, script: &Path, rows: usize) -> std::process::Child {
    let mut child = Command::new(BIN)
        .args(["run", s(script), "--workers", "2", "--output", s(dir)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).unwrap();
            }
            panic!("the run ended early ({status}): {err}");
        }
        let n = stored_rows(&dir.join("db.db"));
        if n >= rows {
            return child;
        }
        if t.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the run did not progress: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
