//! The socket-calculator benchmark: the cost of one evaluation through the i-PI
//! socket beyond the client's own computing, for 12 and 1,000 atoms, through our
//! `Client` and through ASE's `SocketIOCalculator` (the Python server), with the
//! same client. Prints ONE JSON line.
//!
//! `cargo run --release --example bench_calc [-- --rounds 7 --evals 1000]`
//!
//! The client is this program itself (`bench_calc client --unix NAME`): a Rust
//! client that returns zero forces and reports, in the protocol's extra bytes
//! (`{"compute_ns": …}`), how long producing them took. Both servers subtract that
//! time, so what remains is each server's protocol work plus the socket. Rounds
//! alternate between the two servers; each round times `--evals` evaluations
//! that alternate between two structures (as a relaxation would move atoms), and
//! every figure is the median over rounds. ASE's server runs in the interpreter
//! `.ci/python-env` provides.
//!
//! Targets: ours ≤ 0.5 × ASE's overhead, and ≤ 50 µs for 12 atoms.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use agox::atoms::Atoms;
use agox::ipi::command::shell_quote;
use agox::ipi::{serve, Client, ClientConfig, ForceData};

use anyhow::{anyhow, Context, Error};

/// ASE's side: a SocketIOCalculator driving the same client, timed on request.
const ASE_SERVER: &str = r#"
import json, os, subprocess, sys, time
from ase import Atoms
from ase.calculators.socketio import SocketIOCalculator

exe, n = sys.argv[1], int(sys.argv[2])
positions = json.loads(sys.stdin.readline())
name = f"agox_bench_{os.getpid()}"
atoms = Atoms(numbers=[29] * n, positions=positions[0])
with SocketIOCalculator(unixsocket=name) as calc:
    client = subprocess.Popen([exe, "client", "--unix", name])
    atoms.calc = calc
    atoms.get_forces()
    print("ready", flush=True)
    for line in sys.stdin:
        k = int(line)
        if k == 0:
            break
        extras = []
        t0 = time.perf_counter_ns()
        for i in range(k):
            atoms.positions = positions[i % 2]
            atoms.get_forces()
            extras.append(calc.results["morebytes"])
        total = time.perf_counter_ns() - t0
        compute = sum(json.loads(bytes(e))["compute_ns"] for e in extras)
        print(json.dumps({"total_ns": total, "compute_ns": compute}), flush=True)
    calc.server.protocol.end()
client.wait(timeout=30)
"#;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("client") {
        return run_client(&args);
    }
    let flag = |name: &str, default: usize| -> Result<usize, Error> {
        let Some(i) = args.iter().position(|a| a == name) else {
            return Ok(default);
        };
        let v = args.get(i + 1).map_or("", String::as_str);
        v.parse()
            .with_context(|| format!("{name} takes a number, not `{v}`"))
    };
    let rounds = flag("--rounds", 7)?;
    let evals = flag("--evals", 1000)?;
    let python = provision_python().context("python for ASE's server (.ci/python-env)")?;
    let exe = std::env::current_exe().context("this program's path")?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let mut sizes = Vec::new();
    let mut met = true;
    for n in [12usize, 1000] {
        let (ours, ase, compute) =
            measure(n, rounds, evals, &exe, &python).with_context(|| format!("{n} atoms"))?;
        let ratio = ours / ase;
        met &= ratio <= 0.5 && (n != 12 || ours <= 50.0);
        sizes.push(serde_json::json!({
            "atoms": n,
            "ours_overhead_us": round2(ours),
            "ase_overhead_us": round2(ase),
            "ratio": round3(ratio),
            "client_compute_us": round2(compute),
        }));
    }
    let line = serde_json::json!({
        "bench": "calc",
        "what": "i-PI socket overhead per evaluation (round trip minus the client's compute), median over rounds",
        "client": "rust zero-force client (bench_calc client)",
        "transport": "unix",
        "rounds": rounds,
        "evals_per_round": evals,
        "loadavg": load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "sizes": sizes,
        "targets": {"ratio_max": 0.5, "ours_12_atoms_max_us": 50.0},
        "met": met,
    });
    println!("{line}");
    Ok(())
}

/// Medians over rounds of (our overhead, ASE's overhead, client compute), µs.
fn measure(
    n: usize,
    rounds: usize,
    evals: usize,
    exe: &Path,
    python: &Path,
) -> Result<(f64, f64, f64), Error> {
    let positions = two_structures(n);

    // Our server.
    let dir = tempfile::tempdir().context("a temporary directory for our server's socket")?;
    let command = format!(
        "{} client --unix {{unix}}",
        shell_quote(&exe.display().to_string())
    );
    let mut client =
        Client::new(ClientConfig::new(command, dir.path())).context("starting our client")?;
    let mut atoms =
        Atoms::new(vec![29; n], positions[0].clone()).context("the benchmark structure")?;
    for i in 0..200 {
        atoms.positions.copy_from_slice(&positions[i % 2]);
        client
            .evaluate(&atoms)
            .context("our server: a warm-up evaluation")?;
    }

    // ASE's server, with its own copy of the client.
    let mut ase = Command::new(python)
        .arg("-c")
        .arg(ASE_SERVER)
        .arg(exe)
        .arg(n.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting ASE's server with {}", python.display()))?;
    let measured = rounds_beside_ase(&mut ase, &mut client, &mut atoms, &positions, rounds, evals);
    if measured.is_err() {
        // Not left behind (its client ends with it). The error that brought us
        // here is the one to report, not one of this cleanup.
        let _ = ase.kill();
        let _ = ase.wait();
    }
    measured
}

/// The rounds of [`measure`], alternating between our server and ASE's (`ase`).
fn rounds_beside_ase(
    ase: &mut Child,
    client: &mut Client,
    atoms: &mut Atoms,
    positions: &[Vec<[f64; 3]>; 2],
    rounds: usize,
    evals: usize,
) -> Result<(f64, f64, f64), Error> {
    let mut to_ase = ase.stdin.take().context("ASE's server has no stdin pipe")?;
    let mut from_ase = BufReader::new(
        ase.stdout
            .take()
            .context("ASE's server has no stdout pipe")?,
    );
    let structures = serde_json::to_string(positions).context("the structures as JSON")?;
    writeln!(to_ase, "{structures}").context("sending ASE's server the structures")?;
    let mut line = String::new();
    reply(&mut from_ase, &mut line, "starting")?;
    if line.trim() != "ready" {
        return Err(anyhow!(
            "ASE's server did not start: it said {:?}",
            line.trim()
        ));
    }
    writeln!(to_ase, "200").context("asking ASE's server to warm up")?;
    reply(&mut from_ase, &mut line, "warming up")?;

    let (mut ours, mut theirs, mut compute) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let mut extras = Vec::with_capacity(evals);
        let t0 = Instant::now();
        for i in 0..evals {
            atoms.positions.copy_from_slice(&positions[i % 2]);
            extras.push(
                client
                    .evaluate(atoms)
                    .context("our server: an evaluation")?
                    .extra,
            );
        }
        let total = t0.elapsed().as_nanos() as f64;
        let computed: f64 = extras
            .iter()
            .map(|e| compute_ns(e))
            .sum::<Result<f64, Error>>()?;
        ours.push((total - computed) / evals as f64 / 1e3);
        compute.push(computed / evals as f64 / 1e3);

        writeln!(to_ase, "{evals}").context("asking ASE's server for a round")?;
        reply(&mut from_ase, &mut line, "timing a round")?;
        let r: serde_json::Value =
            serde_json::from_str(&line).context("ASE's server's round (JSON)")?;
        let total = r["total_ns"]
            .as_f64()
            .context("ASE's server's round has no total_ns")?;
        let computed = r["compute_ns"]
            .as_f64()
            .context("ASE's server's round has no compute_ns")?;
        theirs.push((total - computed) / evals as f64 / 1e3);
    }
    writeln!(to_ase, "0").context("stopping ASE's server")?;
    let status = ase.wait().context("waiting for ASE's server")?;
    if !status.success() {
        return Err(anyhow!("ASE's server failed: {status}"));
    }
    Ok((median(ours), median(theirs), median(compute)))
}

/// The next line from ASE's server into `line`; its end of output is an error.
fn reply(from_ase: &mut impl BufRead, line: &mut String, doing: &str) -> Result<(), Error> {
    line.clear();
    let read = from_ase
        .read_line(line)
        .with_context(|| format!("reading ASE's server ({doing})"))?;
    if read == 0 {
        return Err(anyhow!(
            "ASE's server ended its output while {doing} (its error is above)"
        ));
    }
    Ok(())
}

/// Two structures of `n` Cu atoms on a simple cubic grid, the second moved a little.
fn two_structures(n: usize) -> [Vec<[f64; 3]>; 2] {
    let side = (n as f64).cbrt().ceil() as usize;
    let grid: Vec<[f64; 3]> = (0..n)
        .map(|i| {
            let (x, y, z) = (i % side, (i / side) % side, i / (side * side));
            [2.5 * x as f64, 2.5 * y as f64, 2.5 * z as f64]
        })
        .collect();
    let moved = grid
        .iter()
        .enumerate()
        .map(|(i, p)| p.map(|x| x + 0.01 * ((i % 7) as f64 - 3.0)))
        .collect();
    [grid, moved]
}

fn compute_ns(extra: &[u8]) -> Result<f64, Error> {
    serde_json::from_slice::<serde_json::Value>(extra)
        .ok()
        .and_then(|v| v["compute_ns"].as_f64())
        .with_context(|| {
            format!(
                "the client's extra bytes hold no compute_ns: {:?}",
                String::from_utf8_lossy(extra)
            )
        })
}

/// The client: zero forces, its compute time in the extra bytes.
fn run_client(args: &[String]) -> Result<(), Error> {
    let name = args
        .iter()
        .position(|a| a == "--unix")
        .and_then(|i| args.get(i + 1))
        .context("usage: bench_calc client --unix NAME")?;
    let path = format!("/tmp/ipi_{name}");
    let stream = UnixStream::connect(&path).with_context(|| format!("connecting to {path}"))?;
    serve(stream, |pos| {
        let t0 = Instant::now();
        let mut data = ForceData {
            energy: 0.0,
            forces: vec![[0.0; 3]; pos.positions.len()],
            virial: [[0.0; 3]; 3],
            extra: Vec::new(),
        };
        let ns = t0.elapsed().as_nanos();
        data.extra = format!("{{\"compute_ns\": {ns}}}").into_bytes();
        data
    })
    .with_context(|| format!("serving {path}"))?;
    Ok(())
}

/// The interpreter `.ci/python-env` prints (it creates the virtualenv if needed).
fn provision_python() -> Result<PathBuf, Error> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/python-env");
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        return Err(anyhow!(
            "{} failed ({}):\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().into())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
