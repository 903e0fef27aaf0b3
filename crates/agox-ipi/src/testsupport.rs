//! Helpers for tests that run real clients: the Python environment that
//! `.ci/python-env` provisions (ASE, tblite), and finding client processes through
//! /proc. Used by this crate's tests and by the search's.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use agox_atoms::Atoms;

use crate::command::shell_quote;
use crate::process::live_processes;

/// The repository's root (these helpers serve the repository's own tests).
pub fn repo() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// The interpreter of the environment `.ci/python-env` provides (created once,
/// then cached outside the source tree).
///
/// # Panics
/// If the environment cannot be had, with the script's reason: the tests that call
/// this need it, and skipping them silently would hide that.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        let script = repo().join(".ci/python-env");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}):\n{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(PathBuf::from(path))
    });
    match found {
        Ok(p) => p,
        Err(e) => panic!("the socket tests need ASE and tblite: {e}"),
    }
}

/// `path` as one shell word.
fn quoted(path: &Path) -> String {
    shell_quote(&path.display().to_string())
}

/// The command of the template client (`examples/clients/ase_client.py`) serving
/// `calculator` (`emt`, `gfn2-xtb`) with the provisioned Python.
pub fn ase_command(calculator: &str) -> String {
    format!(
        "{} {} --unix {{unix}} --structure {{structure}} --calculator {calculator}",
        quoted(python()),
        quoted(&repo().join("examples/clients/ase_client.py"))
    )
}

/// The command of the client that misbehaves on purpose
/// (`crates/agox-ipi/tests/clients/faulty_client.py`: ASE's EMT, with `options`
/// such as `--crash-on 3 --once FILE`).
pub fn faulty_command(options: &str) -> String {
    format!(
        "{} {} --unix {{unix}} --structure {{structure}} {options}",
        quoted(python()),
        quoted(&repo().join("crates/agox-ipi/tests/clients/faulty_client.py"))
    )
}

/// A cyclic water trimer (Å), the tight-binding tests' molecule.
///
/// # Panics
/// Never: the formula and positions are fixed.
pub fn water_trimer() -> Atoms {
    let positions = vec![
        [0.000, 1.600, 0.000],
        [0.000, 0.640, 0.050],
        [0.800, 1.950, 0.300],
        [1.390, -0.800, 0.000],
        [0.550, -1.250, 0.200],
        [1.900, -0.700, 0.800],
        [-1.390, -0.800, 0.000],
        [-1.450, 0.150, 0.100],
        [-2.250, -1.150, 0.250],
    ];
    match Atoms::from_formula("OH2OH2OH2", positions) {
        Ok(a) => a,
        Err(e) => panic!("water trimer: {e}"),
    }
}

/// One reference result of `reference.py`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Reference {
    /// Energy (eV).
    pub energy: f64,
    /// Forces (eV/Å).
    pub forces: Vec<[f64; 3]>,
    /// Stress (Voigt, eV/Å³), for periodic structures.
    #[serde(default)]
    pub stress: Option<[f64; 6]>,
}

/// Results of `structures`, in order, computed in Python without agox-rs
/// (`crates/agox-ipi/tests/clients/reference.py`) by `calculator` (`emt`,
/// `gfn2-xtb`): `mode` "direct" calls one calculator object for all of them,
/// "socketio" goes through ASE's own `SocketIOCalculator` and the template client.
///
/// # Panics
/// If the script cannot be run or fails, with its error output.
pub fn reference(calculator: &str, mode: &str, structures: &[Atoms]) -> Vec<Reference> {
    let request = serde_json::json!({
        "calculator": calculator,
        "mode": mode,
        "client": repo().join("examples/clients/ase_client.py"),
        "structures": structures.iter().map(|a| serde_json::json!({
            "numbers": a.numbers, "positions": a.positions, "cell": a.cell, "pbc": a.pbc,
        })).collect::<Vec<_>>(),
    });
    let script = repo().join("crates/agox-ipi/tests/clients/reference.py");
    let run = || -> Result<Vec<Reference>, String> {
        let mut child = Command::new(python())
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        serde_json::to_writer(stdin, &request).map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    };
    match run() {
        Ok(r) => r,
        Err(e) => panic!("{} failed: {e}", script.display()),
    }
}

/// Live processes started for a client whose working directory is `dir` or lies
/// under it: every client process and its descendants carry `AGOX_IPI_DIR` in their
/// environment. Returns their pids and command lines.
pub fn clients_under(dir: &Path) -> Vec<(i32, String)> {
    let needle = format!("AGOX_IPI_DIR={}", dir.display());
    live_processes()
        .map(|(pid, _)| pid)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .any(|var| var.starts_with(needle.as_bytes()))
            })
        })
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            (pid, String::from_utf8_lossy(&cmd).replace('\0', " "))
        })
        .collect()
}

/// Waits up to `limit` for `cond`.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// Asserts (within 5 s) that no process started for a client under `dir` is left.
///
/// # Panics
/// Naming the processes left.
pub fn assert_no_clients_under(dir: &Path) {
    assert!(
        eventually(Duration::from_secs(5), || clients_under(dir).is_empty()),
        "client processes left behind: {:?}",
        clients_under(dir)
    );
}
