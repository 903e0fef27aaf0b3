//! How many calculator calls GOFEE, basin hopping and random structure search need to
//! find a global minimum.
//!
//! `cargo run --release --example gofee_quality [-- au8cu4|lj13 gofee|gofee_sparse|bh|rss]` prints
//! one JSON line per part (both parts, and all three algorithms, by default):
//!
//! * **au8cu4**: Au₈Cu₄ in EMT (12 Å cell, 6 Å box at (3, 3, 3)), whose putative
//!   global minimum is 6.773249 eV. For GOFEE (`examples/scripts/gofee_au8cu4.toml`),
//!   basin hopping (`au8cu4_bh.toml`) and random structure search (`au8cu4_rss.toml`),
//!   seeds 1–5: after every iteration the best structure evaluated so far is relaxed
//!   tightly in EMT (BFGS, fmax 0.01, not counted); the run has *found* the minimum
//!   when that relaxed energy is within 1 meV of 6.773249 eV. Reported: the
//!   calculator calls (relaxations in the calculator and evaluations, whole
//!   iterations) at that moment, or `null` within the budget (GOFEE 600 calls,
//!   the others 40 000). `gofee_sparse` is GOFEE with the sparse Gaussian process
//!   (`gofee_sparse_au8cu4.toml`), the same test and budget.
//! * **lj13**: GOFEE on LJ13 in Å (`gofee_lj13.toml`: σ = 2.5 Å, ε = 1 eV, minimum
//!   −44.326801 eV), seeds 1–10, 300 calls: the same test (tight relaxation in LJ)
//!   and its success curve, the fraction of seeds that found it within n calls; and,
//!   stricter (LJ13's funnel takes many structures into the basin), the calls until
//!   an *evaluated* energy lies within 0.1 eV of the minimum, with its curve.
//!
//! `AGOX_QUALITY_SEEDS` changes the number of seeds, `AGOX_QUALITY_FIRST_SEED` the
//! first (default 1), `AGOX_QUALITY_WORKERS` the workers (default 2). Not part of
//! CI: it takes minutes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use agox::atoms::optimize::{relax, RelaxOptions};
use agox::atoms::Atoms;
use agox::pool::{Pool, PoolConfig};
use agox::search::calculator::CalculatorSpec;
use agox::search::registry;
use agox::search::script::Script;
use agox::search::search::Search;
use serde_json::json;

#[path = "support/env.rs"]
mod env;
use anyhow::{Context, Error};
use env::env_usize;

/// Au₈Cu₄'s putative global minimum in EMT (eV).
const AU8CU4_MINIMUM: f64 = 6.773249;
/// LJ13's global minimum (ε = 1 eV).
const LJ13_MINIMUM: f64 = -44.326801;
/// LJ13's stricter test: an evaluated energy within this of the minimum (eV).
const LJ13_CLOSE: f64 = 0.1;
/// Within this of the minimum, after the tight relaxation, a structure is in its basin.
const BASIN: f64 = 1e-3;

struct Outcome {
    seed: u64,
    calls_to_minimum: Option<u64>,
    calls_to_close: Option<u64>,
    best_evaluated: f64,
    best_relaxed: f64,
    calls: u64,
    iterations: u64,
    seconds: f64,
}

/// The energy of `atoms` after a tight relaxation (BFGS, fmax 0.01) in `spec`.
fn tight(spec: &CalculatorSpec, atoms: &Atoms) -> Result<f64, Error> {
    let mut calc = spec.build();
    let mut a = atoms.clone();
    let options = RelaxOptions {
        fmax: 0.01,
        steps: 2000,
        ..RelaxOptions::default()
    };
    // A failure is not "not in the basin": it would change the count silently.
    relax(&mut a, calc.as_mut(), &options)
        .map(|r| r.evaluation.energy)
        .context("relaxing the best structure tightly")
}

/// What a run looks for: the minimum, and optionally an evaluated energy within
/// this of it.
struct Target {
    minimum: f64,
    close: Option<f64>,
}

/// Runs `script` with `seed` until the best evaluated structure relaxes into the
/// minimum's basin (and, with `target.close`, an evaluated energy lies that close
/// to it), or until `max_calls` calculator calls.
fn run(
    script: &Path,
    seed: u64,
    max_calls: u64,
    target: &Target,
    workers: usize,
    out: PathBuf,
) -> Result<Outcome, Error> {
    let mut s = Script::load(script).context("the script")?;
    s.search.seed = Some(seed);
    s.search.iterations = 1_000_000;
    s.search.output = out;
    let spec = CalculatorSpec::new(&s.calculator, &s.search.output.join("workers"));
    let (reg, _) = registry::build();
    let pool = Pool::start(reg, PoolConfig::with_workers(workers))
        .with_context(|| format!("starting a pool of {workers} workers"))?;
    let t = Instant::now();
    let mut search = Search::new(s, pool).context("starting the search")?;
    let mut best_id = None;
    let mut best_relaxed = f64::INFINITY;
    let (mut found, mut near) = (None, None);
    while search.calculator_calls() < max_calls {
        search.run_iteration().context("an iteration")?;
        let Some(best) = search.best() else { continue };
        if best.meta.id == best_id {
            continue;
        }
        best_id = best.meta.id;
        let calls = search.calculator_calls();
        let energy = best.energy.unwrap_or(f64::INFINITY);
        if near.is_none() && target.close.is_some_and(|c| energy <= target.minimum + c) {
            near = Some(calls);
        }
        if found.is_none() {
            best_relaxed = best_relaxed.min(tight(&spec, &best.atoms)?);
            if best_relaxed <= target.minimum + BASIN {
                found = Some(calls);
            }
        }
        if found.is_some() && (target.close.is_none() || near.is_some()) {
            break;
        }
    }
    let outcome = Outcome {
        seed,
        calls_to_minimum: found.filter(|&c| c <= max_calls),
        calls_to_close: near.filter(|&c| c <= max_calls),
        best_evaluated: search.best().and_then(|b| b.energy).unwrap_or(f64::NAN),
        best_relaxed,
        calls: search.calculator_calls(),
        iterations: search.next_iteration(),
        seconds: t.elapsed().as_secs_f64(),
    };
    search.finish(false).context("finishing the search")?;
    Ok(outcome)
}

fn report(outcomes: &[Outcome]) -> serde_json::Value {
    json!(outcomes
        .iter()
        .map(|o| json!({
            "seed": o.seed,
            "calls_to_minimum": o.calls_to_minimum,
            "calls_to_evaluated_within": o.calls_to_close,
            "best_evaluated_eV": o.best_evaluated,
            "best_relaxed_eV": o.best_relaxed,
            "calls": o.calls,
            "iterations": o.iterations,
            "seconds": o.seconds,
        }))
        .collect::<Vec<_>>())
}

/// The fraction of `outcomes` whose `calls` are at most n, for n = 0, 20, … `budget`.
fn curve(outcomes: &[Outcome], budget: u64, calls: fn(&Outcome) -> Option<u64>) -> Vec<(u64, f64)> {
    (0..=budget)
        .step_by(20)
        .map(|n| {
            let hit = outcomes
                .iter()
                .filter(|o| calls(o).is_some_and(|c| c <= n))
                .count();
            (n, hit as f64 / outcomes.len() as f64)
        })
        .collect()
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let named = |set: &[&str]| args.iter().any(|a| set.contains(&a.as_str()));
    let given = |p: &str| args.iter().any(|a| a == p);
    let part = |p: &str| !named(&["au8cu4", "lj13"]) || given(p);
    let algorithm = |p: &str| !named(&["gofee", "gofee_sparse", "bh", "rss"]) || given(p);
    let workers = env_usize("AGOX_QUALITY_WORKERS", 2, 0)?;
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scripts");
    let tmp = tempfile::tempdir().context("a temporary directory for the runs")?;
    let mut k = 0;
    let mut out = || {
        k += 1;
        tmp.path().join(format!("run{k}"))
    };

    if part("au8cu4") {
        let seeds = env_usize("AGOX_QUALITY_SEEDS", 5, 1)? as u64;
        let first_seed = env_usize("AGOX_QUALITY_FIRST_SEED", 1, 0)? as u64;
        let target = Target {
            minimum: AU8CU4_MINIMUM,
            close: None,
        };
        let mut line = serde_json::Map::new();
        line.insert("system".into(), json!("Au8Cu4 EMT"));
        line.insert("minimum_eV".into(), json!(AU8CU4_MINIMUM));
        for (name, file, budget) in [
            ("gofee", "gofee_au8cu4.toml", 600),
            ("gofee_sparse", "gofee_sparse_au8cu4.toml", 600),
            ("bh", "au8cu4_bh.toml", 40_000),
            ("rss", "au8cu4_rss.toml", 40_000),
        ] {
            if !algorithm(name) {
                continue;
            }
            let outcomes: Vec<Outcome> = (first_seed..first_seed + seeds)
                .map(|seed| {
                    let o = run(&scripts.join(file), seed, budget, &target, workers, out())
                        .with_context(|| format!("{name} on Au8Cu4, seed {seed}"))?;
                    eprintln!(
                        "{name} seed {seed}: {:?} calls to the minimum, best relaxed {:.6} eV \
                         after {} calls ({:.0} s)",
                        o.calls_to_minimum, o.best_relaxed, o.calls, o.seconds
                    );
                    Ok(o)
                })
                .collect::<Result<_, Error>>()?;
            let found = outcomes
                .iter()
                .filter(|o| o.calls_to_minimum.is_some())
                .count();
            line.insert(
                name.into(),
                json!({
                    "budget_calls": budget,
                    "found": found,
                    "of": seeds,
                    "runs": report(&outcomes),
                }),
            );
        }
        println!("{}", serde_json::Value::Object(line));
    }

    if part("lj13") {
        let seeds = env_usize("AGOX_QUALITY_SEEDS", 10, 1)? as u64;
        let budget = 300;
        let target = Target {
            minimum: LJ13_MINIMUM,
            close: Some(LJ13_CLOSE),
        };
        let outcomes: Vec<Outcome> = (1..=seeds)
            .map(|seed| {
                let script = scripts.join("gofee_lj13.toml");
                let o = run(&script, seed, budget, &target, workers, out())
                    .with_context(|| format!("GOFEE on LJ13, seed {seed}"))?;
                eprintln!(
                    "gofee lj13 seed {seed}: {:?} calls to the basin, {:?} to an evaluation \
                     within {LJ13_CLOSE} eV",
                    o.calls_to_minimum, o.calls_to_close
                );
                Ok(o)
            })
            .collect::<Result<_, Error>>()?;
        let count =
            |f: fn(&Outcome) -> Option<u64>| outcomes.iter().filter(|o| f(o).is_some()).count();
        println!(
            "{}",
            json!({
                "system": "LJ13 (sigma 2.5 Å, epsilon 1 eV) GOFEE",
                "minimum_eV": LJ13_MINIMUM,
                "budget_calls": budget,
                "found": count(|o| o.calls_to_minimum),
                "of": seeds,
                "success_curve": curve(&outcomes, budget, |o| o.calls_to_minimum),
                "evaluated_within_eV": LJ13_CLOSE,
                "found_evaluated_within": count(|o| o.calls_to_close),
                "success_curve_evaluated_within": curve(&outcomes, budget, |o| o.calls_to_close),
                "runs": report(&outcomes),
            })
        );
    }
    Ok(())
}
