//! Shared helpers: the provisioned Python, client commands, reference results,
//! structures and process checks.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use agox_atoms::Atoms;
use agox_ipi::command::shell_quote;
use agox_ipi::{live_group_members, live_processes, Address, Client, ClientConfig};
use rand::{Rng, SeedableRng};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The interpreter of the environment `.ci/python-env` provides (created once,
/// then cached outside the source tree). Panics with the script's reason if it
/// cannot be had: these tests need it, and skipping them silently would hide that.
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

fn q(p: &Path) -> String {
    shell_quote(&p.display().to_string())
}

/// The template client serving `calculator` (`emt`, `gfn2-xtb`).
pub fn ase_command(calculator: &str) -> String {
    format!(
        "{} {} --unix {{unix}} --structure {{structure}} --calculator {calculator}",
        q(python()),
        q(&repo().join("examples/clients/ase_client.py"))
    )
}

/// The misbehaving client with these options.
pub fn faulty_command(options: &str) -> String {
    format!(
        "{} {} --unix {{unix}} --structure {{structure}} {options}",
        q(python()),
        q(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/faulty_client.py"))
    )
}

/// One reference result.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Reference {
    pub energy: f64,
    pub forces: Vec<[f64; 3]>,
    #[serde(default)]
    pub stress: Option<[f64; 6]>,
}

/// Results computed in Python without agox-rs (`tests/clients/reference.py`):
/// `mode` "direct" calls the calculator, "socketio" goes through ASE's own
/// `SocketIOCalculator` and the template client.
pub fn reference(calculator: &str, mode: &str, structures: &[Atoms]) -> Vec<Reference> {
    let request = serde_json::json!({
        "calculator": calculator,
        "mode": mode,
        "client": repo().join("examples/clients/ase_client.py"),
        "structures": structures.iter().map(|a| serde_json::json!({
            "numbers": a.numbers, "positions": a.positions, "cell": a.cell, "pbc": a.pbc,
        })).collect::<Vec<_>>(),
    });
    let mut child = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/reference.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &request).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "reference.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A fresh working directory for one test's client.
pub fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("agox-ipi-test.")
        .tempdir()
        .unwrap()
}

/// A configuration with test-sized timeouts.
pub fn config(command: String, dir: &Path) -> ClientConfig {
    ClientConfig::new(command, dir)
        .connect_timeout(Duration::from_secs(60))
        .grace(Duration::from_secs(2))
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

/// What must be gone once a client is dropped.
pub struct Traces {
    pgids: Vec<u32>,
    socket_dir: Option<PathBuf>,
    dir: PathBuf,
}

impl Traces {
    /// Records the client's socket directory and current process group.
    pub fn of(client: &Client) -> Traces {
        let socket_dir = match client.address() {
            Address::Unix { path, .. } => path.parent().map(Path::to_path_buf),
            Address::Tcp { .. } => None,
        };
        let mut t = Traces {
            pgids: Vec::new(),
            socket_dir,
            dir: client.config().dir.clone(),
        };
        t.note(client);
        t
    }

    /// Records the client's current process group (after a restart, say).
    pub fn note(&mut self, client: &Client) {
        if let Some(pid) = client.pid() {
            if !self.pgids.contains(&pid) {
                self.pgids.push(pid);
            }
        }
    }

    /// Asserts that every recorded process group is empty and the socket
    /// directory removed (once the client is dropped).
    pub fn assert_gone(&self) {
        self.assert_no_processes();
        if let Some(dir) = &self.socket_dir {
            assert!(
                !dir.exists(),
                "socket directory {} left behind",
                dir.display()
            );
        }
    }

    /// Asserts that every recorded process group is empty, and that no process
    /// started for the client is left anywhere.
    pub fn assert_no_processes(&self) {
        assert_no_clients_under(&self.dir);
        for &pgid in &self.pgids {
            assert!(
                eventually(Duration::from_secs(5), || live_group_members(pgid as i32)
                    .is_empty()),
                "processes left in the client's group {pgid}: {:?}",
                live_group_members(pgid as i32)
            );
        }
    }
}

/// A compact cluster of `n` atoms of the given elements (cycled), on fcc sites
/// near the origin with a seeded rattle: no two atoms closer than about 2.3 Å.
pub fn cluster(numbers: &[u8], n: usize, seed: u64) -> Atoms {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let a = 3.7;
    let mut sites: Vec<[f64; 3]> = Vec::new();
    for i in -2i32..=2 {
        for j in -2i32..=2 {
            for k in -2i32..=2 {
                if (i + j + k) % 2 == 0 {
                    sites.push([i as f64 * a / 2.0, j as f64 * a / 2.0, k as f64 * a / 2.0]);
                }
            }
        }
    }
    sites.sort_by(|p, q| {
        let r = |v: &[f64; 3]| v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
        r(p).total_cmp(&r(q))
    });
    let positions = sites
        .into_iter()
        .take(n)
        .map(|p| p.map(|x| x + rng.gen_range(-0.15..0.15)))
        .collect();
    let numbers = (0..n).map(|i| numbers[i % numbers.len()]).collect();
    Atoms::new(numbers, positions).unwrap()
}

/// `atoms` with every coordinate moved by up to `amount` Å (seeded).
pub fn rattled(atoms: &Atoms, amount: f64, seed: u64) -> Atoms {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = atoms.clone();
    for p in &mut out.positions {
        for x in p.iter_mut() {
            *x += rng.gen_range(-amount..amount);
        }
    }
    out
}

/// Live processes started for a client working under `dir`: every client process
/// and its descendants carry `AGOX_IPI_DIR` in their environment.
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

/// Asserts (within 5 s) that no process started for a client under `dir` is left.
pub fn assert_no_clients_under(dir: &Path) {
    assert!(
        eventually(Duration::from_secs(5), || clients_under(dir).is_empty()),
        "client processes left behind: {:?}",
        clients_under(dir)
    );
}

/// How closely two results must agree.
#[derive(Debug, Clone, Copy)]
pub enum Tolerance {
    /// The same bits.
    Bits,
    /// |a − b| ≤ this (eV, eV/Å).
    Absolute(f64),
    /// |ΔE| ≤ this × |E|, and |ΔF| ≤ this × max(1 eV/Å, the largest |F|).
    Relative(f64),
}

/// Asserts that an energy and its forces agree with a reference within `tol`.
pub fn assert_agree(
    label: &str,
    (energy, forces): (f64, &[[f64; 3]]),
    (want_energy, want_forces): (f64, &[[f64; 3]]),
    tol: Tolerance,
) {
    assert_eq!(forces.len(), want_forces.len(), "{label}: force rows");
    let scale = want_forces
        .iter()
        .flatten()
        .fold(1.0f64, |m, f| m.max(f.abs()));
    let close = |a: f64, b: f64, scale: f64| match tol {
        Tolerance::Bits => a.to_bits() == b.to_bits(),
        Tolerance::Absolute(t) => (a - b).abs() <= t,
        Tolerance::Relative(t) => (a - b).abs() <= t * scale,
    };
    assert!(
        close(energy, want_energy, want_energy.abs()),
        "{label}: energy {energy} vs {want_energy} ({tol:?})"
    );
    for (a, b) in forces.iter().flatten().zip(want_forces.iter().flatten()) {
        assert!(close(*a, *b, scale), "{label}: force {a} vs {b} ({tol:?})");
    }
}
