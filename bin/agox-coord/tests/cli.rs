//! Runs the real `agox-coord` binary: `calc` and `relax` against the library and
//! the ASE reference values, output independent of the number of workers,
//! error messages and exit codes, and the `worker` entry point.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use agox_atoms::emt::Emt;
use agox_atoms::extxyz::{self, Frame};
use agox_atoms::lj::LennardJones;
use agox_atoms::optimize::{relax, RelaxOptions};
use agox_atoms::{Atoms, Calculator, InfoValue};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;

use common::{run, s, BIN};

const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/reference");

fn reference(name: &str) -> serde_json::Value {
    let path = format!("{REFERENCE}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn vec3s(v: &serde_json::Value) -> Vec<[f64; 3]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let r = r.as_array().unwrap();
            [
                r[0].as_f64().unwrap(),
                r[1].as_f64().unwrap(),
                r[2].as_f64().unwrap(),
            ]
        })
        .collect()
}

/// The structure of a reference entry.
fn atoms_of(entry: &serde_json::Value) -> Atoms {
    let numbers = entry["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z.as_u64().unwrap() as u8)
        .collect();
    let cell = vec3s(&entry["cell"]);
    let pbc: Vec<bool> = entry["pbc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_bool().unwrap())
        .collect();
    Atoms::new(numbers, vec3s(&entry["positions"]))
        .unwrap()
        .with_cell([cell[0], cell[1], cell[2]], [pbc[0], pbc[1], pbc[2]])
}

fn write_input(dir: &Path, name: &str, frames: &[Atoms]) -> PathBuf {
    let path = dir.join(name);
    let frames: Vec<Frame> = frames.iter().cloned().map(Frame::new).collect();
    extxyz::write_file(&path, &frames).unwrap();
    path
}

fn run_ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "agox-coord {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1.0)
}

#[test]
fn calc_matches_the_library_and_the_ase_reference() {
    let dir = tempfile::tempdir().unwrap();
    let emt = reference("emt.json");
    let entries = emt["entries"].as_array().unwrap();
    let structures: Vec<Atoms> = entries.iter().map(atoms_of).collect();
    let input = write_input(dir.path(), "emt.xyz", &structures);
    let out = dir.path().join("out.xyz");
    run_ok(&[
        "calc",
        "--potential",
        "emt",
        s(&input),
        "-o",
        s(&out),
        "--workers",
        "2",
    ]);

    let frames = extxyz::read_file(&out).unwrap();
    assert_eq!(frames.len(), entries.len());
    let mut lib = Emt::new();
    for ((frame, entry), atoms) in frames.iter().zip(entries).zip(&structures) {
        let id = entry["id"].as_str().unwrap();
        // The structure is passed through unchanged.
        assert_eq!(frame.atoms.positions, atoms.positions, "{id}");
        assert_eq!(frame.atoms.pbc, atoms.pbc, "{id}");
        // Same bits as the library...
        let periodic = atoms.pbc.iter().any(|&p| p);
        let want = lib.calculate(atoms, periodic).unwrap();
        assert_eq!(frame.energy, Some(want.energy), "{id}");
        assert_eq!(frame.forces.as_ref(), Some(&want.forces), "{id}");
        assert_eq!(frame.stress, want.stress, "{id}");
        // ...and ASE's values.
        let e_ref = entry["energy"].as_f64().unwrap();
        assert!(
            close(want.energy, e_ref, 1e-8),
            "{id}: {} vs {e_ref}",
            want.energy
        );
        for (f, g) in want.forces.iter().zip(vec3s(&entry["forces"])) {
            for k in 0..3 {
                assert!((f[k] - g[k]).abs() < 1e-6, "{id}: force {f:?} vs {g:?}");
            }
        }
        if let Some(stress) = entry.get("stress").and_then(|v| v.as_array()) {
            let got = frame.stress.unwrap();
            for (a, b) in got.iter().zip(stress) {
                assert!((a - b.as_f64().unwrap()).abs() < 1e-8, "{id}: stress");
            }
        } else {
            assert!(frame.stress.is_none(), "{id}: no stress for a cluster");
        }
        // Per-atom energies travel as the `energies` column.
        assert!(frame.column("energies").is_some(), "{id}");
    }
}

#[test]
fn calc_lj_reads_stdin_writes_stdout_and_matches_the_reference() {
    let lj = reference("lj.json");
    let entries = &lj["entries"].as_array().unwrap()[..4];
    let frames: Vec<Frame> = entries.iter().map(|e| Frame::new(atoms_of(e))).collect();
    let text = extxyz::to_string(&frames).unwrap();
    let mut child = Command::new(BIN)
        .args([
            "calc",
            "--potential",
            "lj",
            "--lj-cutoff",
            "100",
            "--workers",
            "0",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty(), "piped output is quiet");
    let got = extxyz::read(&out.stdout[..]).unwrap();
    assert_eq!(got.len(), entries.len());
    let mut lib = LennardJones::new(1.0, 1.0, 100.0);
    for (frame, entry) in got.iter().zip(entries) {
        let e = frame.energy.unwrap();
        assert_eq!(e, lib.calculate(&frame.atoms, false).unwrap().energy);
        assert!(close(e, entry["energy"].as_f64().unwrap(), 1e-8));
    }
}

/// A few small EMT clusters from the reference set, each tagged with its index.
fn relax_input(dir: &Path) -> (PathBuf, Vec<Atoms>) {
    let emt = reference("emt.json");
    let wanted = [
        "cluster_Au13",
        "cluster_Ag7",
        "cluster_Cu5",
        "mixed_Cu4Pt4",
        "cluster_Pt6",
    ];
    let mut structures = Vec::new();
    for (i, id) in wanted.iter().enumerate() {
        let entry = emt["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == *id)
            .unwrap();
        let mut atoms = atoms_of(entry);
        atoms.info.insert("idx".into(), InfoValue::Int(i as i64));
        structures.push(atoms);
    }
    (write_input(dir, "clusters.xyz", &structures), structures)
}

#[test]
fn relax_output_is_identical_for_any_number_of_workers() {
    let dir = tempfile::tempdir().unwrap();
    let (input, structures) = relax_input(dir.path());
    let mut outputs = Vec::new();
    for (workers, launcher) in [("0", "fork"), ("1", "fork"), ("2", "fork"), ("2", "exec")] {
        let out = dir.path().join(format!("relaxed-{workers}-{launcher}.xyz"));
        let traj = dir.path().join(format!("traj-{workers}-{launcher}.xyz"));
        #[rustfmt::skip]
        run_ok(&[
            "relax", "--potential", "emt", "--optimizer", "bfgs", "--fmax", "0.05", "--steps", "500",
            s(&input), "-o", s(&out), "--trajectory", s(&traj),
            "--workers", workers, "--launcher", launcher,
        ]);
        outputs.push((std::fs::read(&out).unwrap(), std::fs::read(&traj).unwrap()));
    }
    for (k, o) in outputs.iter().enumerate().skip(1) {
        assert!(
            o.0 == outputs[0].0,
            "relaxed output {k} differs from --workers 0"
        );
        assert!(
            o.1 == outputs[0].1,
            "trajectory {k} differs from --workers 0"
        );
    }

    // Order, content and the info keys.
    let frames = extxyz::read(&outputs[0].0[..]).unwrap();
    assert_eq!(frames.len(), structures.len());
    let traj = extxyz::read(&outputs[0].1[..]).unwrap();
    let mut traj_at = 0;
    for (i, (frame, start)) in frames.iter().zip(&structures).enumerate() {
        let info = &frame.atoms.info;
        assert_eq!(
            info.get("idx"),
            Some(&InfoValue::Int(i as i64)),
            "order kept"
        );
        assert_eq!(frame.atoms.numbers, start.numbers);
        let mut want = start.clone();
        let result = relax(
            &mut want,
            &mut Emt::new(),
            &RelaxOptions {
                steps: 500,
                ..RelaxOptions::default()
            },
        )
        .unwrap();
        assert!(result.converged);
        assert_eq!(frame.atoms.positions, want.positions, "frame {i}");
        assert_eq!(frame.energy, Some(result.evaluation.energy), "frame {i}");
        assert_eq!(
            info.get("relax_steps"),
            Some(&InfoValue::Int(result.steps as i64))
        );
        assert_eq!(info.get("converged"), Some(&InfoValue::Bool(true)));
        let fmax = frame
            .forces
            .as_ref()
            .unwrap()
            .iter()
            .map(|f| (f[0] * f[0] + f[1] * f[1] + f[2] * f[2]).sqrt())
            .fold(0.0, f64::max);
        assert!(fmax < 0.05);
        // The trajectory holds steps 0..=n of this frame, in order, ending here.
        for step in 0..=result.steps {
            let t = &traj[traj_at];
            assert_eq!(t.atoms.info.get("frame"), Some(&InfoValue::Int(i as i64)));
            assert_eq!(t.atoms.info.get("step"), Some(&InfoValue::Int(step as i64)));
            traj_at += 1;
        }
        assert_eq!(traj[traj_at - 1].atoms.positions, frame.atoms.positions);
        assert_eq!(traj[traj_at - 1].energy, frame.energy);
    }
    assert_eq!(traj_at, traj.len());
}

#[test]
fn relax_marks_and_warns_about_unconverged_frames() {
    let dir = tempfile::tempdir().unwrap();
    let (input, structures) = relax_input(dir.path());
    let out = run_ok(&[
        "relax",
        "--potential",
        "emt",
        "--steps",
        "2",
        s(&input),
        "--workers",
        "0",
    ]);
    let frames = extxyz::read(&out.stdout[..]).unwrap();
    assert_eq!(frames.len(), structures.len());
    for f in &frames {
        assert_eq!(f.atoms.info.get("converged"), Some(&InfoValue::Bool(false)));
        assert_eq!(f.atoms.info.get("relax_steps"), Some(&InfoValue::Int(2)));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: 5 of 5 frames did not reach fmax"),
        "{stderr}"
    );
    let quiet = run_ok(&[
        "relax",
        "--potential",
        "emt",
        "--steps",
        "2",
        s(&input),
        "-q",
    ]);
    assert!(quiet.stderr.is_empty());
    assert_eq!(quiet.stdout, out.stdout);
}

#[test]
fn bad_input_names_the_file_frame_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.xyz");
    let good = "2\nProperties=species:S:1:pos:R:3\nAu 0 0 0\nAu 2.8 0 0\n";
    let bad = "2\nProperties=species:S:1:pos:R:3\nAu 0 0 0\nAu 2.8 oops 0\n";
    std::fs::write(&path, format!("{good}{bad}")).unwrap();
    let out_file = dir.path().join("out.xyz");
    for command in ["calc", "relax"] {
        let out = run(&[command, "--potential", "emt", s(&path), "-o", s(&out_file)]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("agox-coord: "), "{stderr}");
        assert!(stderr.contains("broken.xyz"), "{stderr}");
        assert!(stderr.contains("frame 1, line 8"), "{stderr}");
        assert!(stderr.contains("pos y"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
        assert!(!out_file.exists(), "no output file after a failure");
    }
    // A missing file, and a frame the potential cannot handle.
    let out = run(&[
        "calc",
        "--potential",
        "emt",
        s(&dir.path().join("missing.xyz")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.xyz"));
    let fe = dir.path().join("fe.xyz");
    std::fs::write(
        &fe,
        format!("{good}2\nProperties=species:S:1:pos:R:3\nFe 0 0 0\nFe 2.5 0 0\n"),
    )
    .unwrap();
    let out = run(&[
        "calc",
        "--potential",
        "emt",
        s(&fe),
        "--workers",
        "2",
        "-o",
        s(&out_file),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("frame 1 of"), "{stderr}");
    assert!(stderr.contains("no parameters for element Fe"), "{stderr}");
    assert!(!out_file.exists());
    // Usage errors are clap's (exit 2).
    assert_eq!(
        run(&["calc", "--potential", "emt", "--lj-sigma", "2", s(&path)])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        run(&["calc", "--potential", "morse", s(&path)])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&["relax", "--potential", "emt", "--fmax", "-1", s(&path)])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn worker_with_a_bad_address_fails_cleanly() {
    let mut child = Command::new(BIN)
        .args([
            "worker",
            "--connect",
            "/nonexistent/agox/socket",
            "--id",
            "3",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"token\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/agox/socket"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn help_lists_the_commands() {
    let out = run_ok(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("calc") && text.contains("relax"), "{text}");
    assert!(!text.contains("worker  "), "worker is hidden: {text}");
    let out = run_ok(&["worker", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--connect"));
}
