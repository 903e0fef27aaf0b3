//! The search loop end to end on a tiny Lennard-Jones system, through the library
//! API (`agox::search::search::Search`): storage, outputs, determinism across
//! worker counts, resume.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use agox::atoms::extxyz;
use agox::pool::{Pool, PoolConfig};
use agox::search::db::Database;
use agox::search::registry;
use agox::search::script::Script;
use agox::search::search::{
    Search, SearchError, Summary, BEST_FILE, DB_FILE, EVALUATED_FILE, SUMMARY_FILE,
};

/// A 7-atom LJ cluster (σ = 2 Å so the covalent-radius rules of Ar fit), `algorithm`
/// rss (2 random candidates per iteration) or bh (2 rattles per iteration).
fn script_text(algorithm: &str, iterations: u64, seed: u64) -> String {
    let generators = if algorithm == "bh" {
        r#"
[[generator]]
kind = "random"
count = { 0 = 2, 1 = 0 }

[[generator]]
kind = "rattle"
n_rattle = 2
amplitude = 2.0
count = { 0 = 0, 1 = 2 }

[sampler]
kind = "metropolis"
temperature = 0.5
"#
    } else {
        r#"
[[generator]]
kind = "random"
count = 3

[evaluator]
kind = "single_point"
count = 2
"#
    };
    format!(
        r#"
[search]
algorithm = "{algorithm}"
iterations = {iterations}
seed = {seed}

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
{generators}
[relax]
fmax = 0.02
steps = 300
"#
    )
}

fn script_in(dir: &Path, algorithm: &str, iterations: u64, seed: u64, out: &str) -> Script {
    let path = dir.join(format!("{algorithm}.toml"));
    std::fs::write(&path, script_text(algorithm, iterations, seed)).unwrap();
    let mut s = Script::load(&path).unwrap_or_else(|e| panic!("{e}"));
    s.search.output = dir.join(out);
    s
}

fn pool(workers: usize) -> Pool {
    let (reg, _) = registry::build();
    Pool::start(reg, PoolConfig::with_workers(workers)).unwrap()
}

fn energies(dir: &Path) -> Vec<f64> {
    let db = Database::open_existing(dir.join(DB_FILE)).unwrap();
    db.energies()
        .unwrap()
        .into_iter()
        .map(|e| e.unwrap())
        .collect()
}

#[test]
fn lj_loop_stores_every_evaluation_and_writes_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let script = script_in(tmp.path(), "bh", 6, 3, "out");
    let out = script.search.output.clone();
    let mut search = Search::new(script, pool(2)).unwrap();
    let mut reports = Vec::new();
    while !search.is_done() {
        reports.push(search.run_iteration().unwrap());
    }
    let summary = search.finish(false).unwrap();
    assert_eq!(reports.len(), 6);
    assert_eq!(reports[0].generated, 2);
    // Every iteration evaluated its two candidates; the sampler holds one parent.
    let n: usize = reports.iter().map(|r| r.energies.len()).sum();
    assert!(n >= 10, "{n} evaluations");
    assert_eq!(search.sampler().unwrap().lock().parents.len(), 1);
    // Relaxed LJ7 clusters: bound, and the best is the minimum of all energies.
    let stored = energies(&out);
    assert_eq!(stored.len(), n);
    assert_eq!(summary.evaluations as usize, n);
    let min = stored.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(
        min < -12.0 && min > -16.6,
        "LJ7 minimum is -16.505384, got {min}"
    );
    assert_eq!(summary.best_energy, Some(min));
    assert_eq!(reports.last().unwrap().best_energy, Some(min));
    // Database round trip: what the loop reported is what is stored, in order.
    let reported: Vec<f64> = reports.iter().flat_map(|r| r.energies.clone()).collect();
    assert_eq!(reported, stored);
    let db = Database::open_existing(out.join(DB_FILE)).unwrap();
    let all = db.read_all().unwrap();
    assert!(all.iter().all(|c| c.atoms.len() == 7 && c.forces.is_some()));
    assert!(all
        .windows(2)
        .all(|w| w[0].meta.iteration <= w[1].meta.iteration));
    assert!(all
        .iter()
        .skip(2)
        .all(|c| c.meta.generator == "rattle" && c.meta.parents.len() == 1));
    // The .xyz views agree with the database.
    let frames = extxyz::read_file(out.join(EVALUATED_FILE)).unwrap();
    assert_eq!(
        frames.iter().map(|f| f.energy.unwrap()).collect::<Vec<_>>(),
        stored
    );
    assert_eq!(frames[3].atoms.positions, all[3].atoms.positions);
    let best = extxyz::read_file(out.join(BEST_FILE)).unwrap();
    assert_eq!(best[0].energy, Some(min));
    let s: Summary =
        serde_json::from_str(&std::fs::read_to_string(out.join(SUMMARY_FILE)).unwrap()).unwrap();
    assert_eq!(s.iterations_done, 6);
    assert!(!s.interrupted);
    assert_eq!(s.sync.syncs, 6);
    // Every calculation of the calculator is counted: each relaxation's steps + 1,
    // and one single point per evaluation (basin hopping evaluates every candidate).
    assert_eq!(s.relax_failures, 0);
    let relax_calls: u64 = all.iter().map(|c| c.meta.relax_steps.unwrap() + 1).sum();
    assert_eq!(s.calculator_calls, relax_calls + n as u64);
    assert_eq!(s.surrogate_steps, 0);
    assert_eq!(
        all.last().unwrap().meta.calculator_calls,
        Some(s.calculator_calls)
    );
}

#[test]
fn same_energies_with_0_1_and_2_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for workers in [0, 1, 2] {
        let script = script_in(tmp.path(), "rss", 3, 11, &format!("w{workers}"));
        let out = script.search.output.clone();
        let summary = Search::new(script, pool(workers)).unwrap().run().unwrap();
        assert_eq!(
            summary.evaluations, 6,
            "count = 2 of 3 candidates per iteration"
        );
        runs.push(energies(&out));
    }
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[0], runs[2]);
}

#[test]
fn resume_continues_exactly_as_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    // Uninterrupted: 8 iterations.
    let full = script_in(tmp.path(), "bh", 8, 5, "full");
    let full_out = full.search.output.clone();
    Search::new(full, pool(2)).unwrap().run().unwrap();
    // Interrupted after 4, resumed (another pool, another worker count) to 8.
    let first = script_in(tmp.path(), "bh", 4, 5, "parts");
    let parts_out = first.search.output.clone();
    Search::new(first, pool(1)).unwrap().run().unwrap();
    let again = script_in(tmp.path(), "bh", 8, 5, "parts");
    let mut resumed = Search::resume(again, pool(2)).unwrap();
    assert_eq!(resumed.next_iteration(), 4);
    let summary = resumed.run().unwrap();
    assert_eq!(summary.resumed_at, Some(4));
    assert_eq!(summary.iterations_done, 8);
    assert_eq!(energies(&parts_out), energies(&full_out));
    // The .xyz view was rebuilt from the database and extended.
    let frames = extxyz::read_file(parts_out.join(EVALUATED_FILE)).unwrap();
    assert_eq!(frames.len(), energies(&parts_out).len());
}

#[test]
fn existing_database_is_refused_and_changed_script_cannot_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let s = script_in(tmp.path(), "rss", 1, 1, "out");
    Search::new(s.clone(), pool(0)).unwrap().run().unwrap();
    let err = Search::new(s.clone(), pool(0)).unwrap_err();
    assert!(matches!(err, SearchError::OutputExists { .. }), "{err}");
    assert!(err.to_string().contains("--resume"), "{err}");
    let mut changed = s;
    changed.relax.as_mut().unwrap().fmax = 0.5;
    let err = Search::resume(changed, pool(0)).unwrap_err();
    assert!(err.to_string().contains("relax"), "{err}");
}
