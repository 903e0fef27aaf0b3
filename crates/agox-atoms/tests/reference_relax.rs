//! BFGS and FIRE against ASE 3.29 (`tests/reference/relax.json`): every
//! entry, both optimizers.
//!
//! Always: converged, final energy within 1e-3 eV, step count within ±25 % of
//! ASE's. Where ASE's own path is stable (the reference reran it from positions
//! perturbed by 1e-10 and got the same step count and final positions within
//! 1e-8), the run must match step by step: the same step count and the energy
//! trace within 1e-9 eV at every step. That pins the algorithm down, not just the
//! minimum it finds. Run with `--nocapture` to see the comparison table.
#![allow(clippy::unwrap_used)]

use agox_atoms::optimize::{
    relax_with, BfgsParams, FireParams, OptimizerKind, RelaxOptions, StepControl,
};
use agox_atoms::Calculator;

mod common;
use common::{atoms_from, floats, reference};

fn calculator(potential: &str) -> Box<dyn Calculator> {
    match potential {
        "LJ" => Box::new(agox_atoms::lj::LennardJones::new(1.0, 1.0, 100.0)),
        "EMT" => Box::new(agox_atoms::emt::Emt::new()),
        other => panic!("unknown potential {other}"),
    }
}

/// One comparison row.
struct Row {
    id: String,
    optimizer: &'static str,
    ase_steps: usize,
    our_steps: usize,
    energy_diff: f64,
    stable: bool,
    trace_max_diff: f64,
}

fn run_all(potential: &str) -> Vec<Row> {
    let data = reference("relax");
    let fmax = data["meta"]["run"]["fmax"].as_f64().unwrap_or(0.05);
    let mut rows = Vec::new();
    for entry in data["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["potential"] == potential)
    {
        for (name, kind) in [
            ("BFGS", OptimizerKind::Bfgs(BfgsParams::default())),
            ("FIRE", OptimizerKind::Fire(FireParams::default())),
        ] {
            let reference = &entry[name];
            let ase_steps = reference["n_steps"].as_u64().unwrap() as usize;
            let trace = floats(&reference["energy_trace"]);
            let sensitivity = &reference["sensitivity"];
            let stable = sensitivity["same_n_steps"].as_bool().unwrap()
                && sensitivity["final_positions_max_abs_diff"]
                    .as_f64()
                    .unwrap()
                    < 1e-8;

            let mut atoms = atoms_from(entry);
            let mut calc = calculator(potential);
            let mut energies = Vec::new();
            let opts = RelaxOptions {
                fmax,
                steps: 10_000,
                optimizer: kind,
                confinement: None,
            };
            let result = relax_with(&mut atoms, calc.as_mut(), &opts, |_, _, e| {
                energies.push(e.energy);
                StepControl::Continue
            })
            .unwrap();
            let id = entry["id"].as_str().unwrap().to_string();
            assert!(result.converged, "{id} {name} did not converge");
            assert!(result.fmax < fmax);
            let ase_energy = reference["final_energy"].as_f64().unwrap();
            let energy_diff = result.evaluation.energy - ase_energy;
            let trace_max_diff = energies
                .iter()
                .zip(&trace)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f64, f64::max);
            rows.push(Row {
                id,
                optimizer: name,
                ase_steps,
                our_steps: result.steps,
                energy_diff,
                stable,
                trace_max_diff,
            });
        }
    }
    for r in &rows {
        eprintln!(
            "| {} | {} | {} | {} | {:+.2e} | {} | {:.1e} |",
            r.id,
            r.optimizer,
            r.ase_steps,
            r.our_steps,
            r.energy_diff,
            if r.stable { "stable" } else { "chaotic" },
            r.trace_max_diff
        );
    }
    for r in &rows {
        assert!(
            r.energy_diff.abs() < 1e-3,
            "{} {}: final energy off by {}",
            r.id,
            r.optimizer,
            r.energy_diff
        );
        let (lo, hi) = (
            (r.ase_steps as f64 * 0.75).floor() as usize,
            (r.ase_steps as f64 * 1.25).ceil() as usize,
        );
        assert!(
            (lo..=hi).contains(&r.our_steps),
            "{} {}: {} steps, ASE {}",
            r.id,
            r.optimizer,
            r.our_steps,
            r.ase_steps
        );
        if r.stable {
            assert_eq!(
                r.our_steps, r.ase_steps,
                "{} {}: stable path, steps must match",
                r.id, r.optimizer
            );
            assert!(
                r.trace_max_diff < 1e-9,
                "{} {}: energy trace off by {}",
                r.id,
                r.optimizer,
                r.trace_max_diff
            );
        }
    }
    rows
}

#[test]
fn lj_relaxations_match_ase() {
    let rows = run_all("LJ");
    assert_eq!(rows.len(), 8);
}

#[test]
fn emt_relaxations_match_ase() {
    let rows = run_all("EMT");
    assert_eq!(rows.len(), 12);
}
