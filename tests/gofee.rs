//! GOFEE through the library, with real workers: the pooled Gaussian process (its
//! hyperparameter search on 0, 1 and 2 workers, the workers' copies against the
//! driver's), and the search end to end (determinism across worker counts,
//! `--resume`, a copy that missed an update).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use agox::atoms::Atoms;
use agox::models::model::{GprModel, ModelWorkspace};
use agox::pool::{FnHandle, Link, Pool, PoolConfig, Registry, TaskContext, TaskError};
use agox::search::environment::Environment;
use agox::search::script::Script;
use agox::search::search::{ModelRecord, Search, Summary, MODEL_FILE, SUMMARY_FILE};
use agox::search::surrogate::{Answer, PooledSurrogate, Surrogate, SurrogateFns, SurrogateModule};
use agox::search::tasks;

#[path = "support/gofee.rs"]
mod support;
use support::{
    bits, kill_worker, kills_change_no_result, pool, script_from, script_with_model, stored,
    training_structures,
};

fn script_in(dir: &Path, iterations: u64, seed: u64, out: &str) -> Script {
    script_from(
        dir,
        &script_with_model(iterations, seed, "n_optimize = 3"),
        out,
    )
}

fn gofee_model(env: &Environment, n_optimize: usize) -> GprModel {
    let mut m = GprModel::gofee(&env.template, &env.numbers).unwrap();
    m.gpr_mut().settings.n_optimize = n_optimize;
    m
}

fn add_rows(model: &PooledSurrogate<GprModel>, data: &[(Atoms, f64)]) {
    let mut ws = ModelWorkspace::default();
    let mut m = model.handle().lock();
    for (a, e) in data {
        assert!(Surrogate::add(&mut m.surrogate, a, *e, None, &mut ws).unwrap());
    }
}

/// Three trainings (rows added between them, so only new rows travel) with 6
/// starts each on `workers` workers: the hyperparameters after each.
fn search_thetas(workers: usize) -> Vec<Vec<u64>> {
    let (env, data) = training_structures(36, 5);
    let pool = pool(workers);
    let fns = tasks::handles().gpr;
    let mut model = PooledSurrogate::add_to(
        &pool,
        "model",
        SurrogateModule::new(gofee_model(&env, 6)),
        fns,
    )
    .unwrap();
    let mut thetas = Vec::new();
    for (k, chunk) in data.chunks(12).enumerate() {
        add_rows(&model, chunk);
        let report = model.train(&pool, 1000 + k as u64).unwrap();
        assert_eq!(report.starts, 6);
        assert_eq!(report.rows, 12 * (k + 1));
        if let Some(per_worker) = report.rows_sync.bytes.checked_div(workers) {
            // Only the 12 new rows of 270 features (and their targets) reach each worker.
            assert!(
                (12 * 271 * 8..12 * 271 * 8 + 200).contains(&per_worker),
                "{} bytes per worker",
                per_worker
            );
        }
        thetas.push(report.hyperparameters.iter().map(|t| t.to_bits()).collect());
    }
    thetas
}

#[test]
fn hyperparameter_search_on_0_1_and_2_workers_keeps_the_same_theta() {
    let serial = search_thetas(0);
    assert_eq!(search_thetas(1), serial);
    assert_eq!(search_thetas(2), serial);
    // The search moved θ away from the kernel's start.
    let start = agox::models::kernel::Kernel::default().theta;
    assert_ne!(serial[0], start.map(f64::to_bits).to_vec());
}

type PredictArgs = (Link<SurrogateModule<GprModel>>, Atoms);

/// Energy, σ and forces of `atoms` in this process's copy of the model.
fn predict_task(
    ctx: &TaskContext<'_>,
    (link, atoms): PredictArgs,
) -> Result<(u64, u64, Vec<[u64; 3]>), TaskError> {
    let module = ctx.module(&link)?;
    let p = module
        .surrogate
        .predict(&atoms, &mut ModelWorkspace::default())?;
    Ok((
        p.energy.to_bits(),
        p.sigma.to_bits(),
        p.forces.iter().map(|f| f.map(f64::to_bits)).collect(),
    ))
}

#[test]
fn every_workers_copy_predicts_what_the_drivers_copy_predicts() {
    let (env, data) = training_structures(30, 9);
    let (probe_env, probes) = training_structures(3, 77);
    assert_eq!(probe_env.numbers, env.numbers);
    let mut reg = Registry::new();
    let fns = tasks::register(&mut reg);
    let predict: FnHandle<PredictArgs, (u64, u64, Vec<[u64; 3]>)> =
        reg.function("test.predict", predict_task);
    let pool = Pool::start(reg, PoolConfig::with_workers(2)).unwrap();
    let mut model = PooledSurrogate::add_to(
        &pool,
        "model",
        SurrogateModule::new(gofee_model(&env, 2)),
        fns.gpr,
    )
    .unwrap();
    for chunk in data.chunks(10) {
        add_rows(&model, chunk);
        model.train(&pool, 3).unwrap();
        for (atoms, _) in &probes {
            let on_workers = pool
                .broadcast(&predict, &(model.link(), atoms.clone()))
                .unwrap();
            assert_eq!(on_workers.len(), 2);
            let driver = predict_task_local(&model, atoms);
            for w in on_workers {
                assert_eq!(w, driver);
            }
        }
    }
    // The copies are at the driver's version.
    assert_eq!(model.version().rows, 30);
    assert_eq!(model.version().trainings, 3);
}

fn predict_task_local(
    model: &PooledSurrogate<GprModel>,
    atoms: &Atoms,
) -> (u64, u64, Vec<[u64; 3]>) {
    let m = model.handle().lock();
    let p = m
        .surrogate
        .predict(atoms, &mut ModelWorkspace::default())
        .unwrap();
    (
        p.energy.to_bits(),
        p.sigma.to_bits(),
        p.forces.iter().map(|f| f.map(f64::to_bits)).collect(),
    )
}

#[test]
fn a_search_unit_on_a_copy_that_missed_rows_says_so_and_computes_nothing() {
    let (env, data) = training_structures(6, 2);
    let pool = pool(1);
    let fns: SurrogateFns<GprModel> = tasks::handles().gpr;
    let model = PooledSurrogate::add_to(
        &pool,
        "model",
        SurrogateModule::new(gofee_model(&env, 2)),
        fns.clone(),
    )
    .unwrap();
    // Rows added in the driver but never sent: the worker's copy has none.
    add_rows(&model, &data);
    let theta0 = model.handle().lock().surrogate.search_starts(1)[0];
    let answer = pool
        .map(&fns.run_start, [(model.link(), theta0, 6)])
        .unwrap()
        .remove(0);
    let Answer::Behind(behind) = answer else {
        panic!("a copy without the rows computed: {answer:?}")
    };
    assert_eq!(
        (behind.worker, behind.have.rows, behind.expected.rows),
        (Some(0), 0, 6)
    );
    assert!(
        behind
            .to_string()
            .contains("worker 0's copy of the model holds 0 rows"),
        "{behind}"
    );
}

#[test]
fn a_killed_worker_is_healed_and_the_search_keeps_the_same_theta() {
    let serial = search_thetas(0);
    let (env, data) = training_structures(36, 5);
    let pool = pool(2);
    let mut model = PooledSurrogate::add_to(
        &pool,
        "model",
        SurrogateModule::new(gofee_model(&env, 6)),
        tasks::handles().gpr,
    )
    .unwrap();
    let mut thetas = Vec::new();
    for (k, chunk) in data.chunks(12).enumerate() {
        if k > 0 {
            // Its replacement gets the model as added and only the latest rows.
            kill_worker(&pool, k % 2);
        }
        add_rows(&model, chunk);
        let report = model.train(&pool, 1000 + k as u64).unwrap();
        thetas.push(
            report
                .hyperparameters
                .iter()
                .map(|t| t.to_bits())
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(thetas, serial);
    assert!(pool.stats().total_restarts() >= 2);
    assert!(model.heals() >= 2, "{} heals", model.heals());
}

#[test]
fn gofee_runs_end_to_end_and_gives_the_same_database_on_0_and_2_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for workers in [0, 2] {
        let script = script_in(tmp.path(), 5, 21, &format!("w{workers}"));
        let out = script.search.output.clone();
        let mut search = Search::new(script, pool(workers)).unwrap();
        let mut reports = Vec::new();
        while !search.is_done() {
            reports.push(search.run_iteration().unwrap());
        }
        let summary = search.finish(false).unwrap();
        // Iteration 0 is not relaxed (AGOX's start_relax = 2); from 1 on every
        // candidate relaxes in the acquisition, on the workers.
        assert_eq!(reports[0].relaxed, 0);
        assert!(reports[1..]
            .iter()
            .all(|r| r.relaxed + r.unmoved == r.generated));
        assert!(summary.surrogate_steps > 0);
        // Every iteration stores a single point and the point after one BFGS step,
        // two EMT calculations, and retrains the model.
        let all = stored(&out);
        assert_eq!(all.len(), 10);
        assert_eq!(summary.calculator_calls, 10);
        assert!(reports.iter().all(|r| r.training.is_some()));
        for pair in all.chunks(2) {
            assert_eq!(pair[0].meta.iteration, pair[1].meta.iteration);
            assert_eq!(
                pair[1].meta.relax_steps.unwrap(),
                pair[0].meta.relax_steps.unwrap() + 1
            );
        }
        let record: ModelRecord =
            serde_json::from_str(&std::fs::read_to_string(out.join(MODEL_FILE)).unwrap()).unwrap();
        assert_eq!(record.trainings.len(), 5);
        assert_eq!(record.trainings[4].rows, 10);
        let s: Summary =
            serde_json::from_str(&std::fs::read_to_string(out.join(SUMMARY_FILE)).unwrap())
                .unwrap();
        assert_eq!(s.algorithm, "gofee");
        assert_eq!(s.calculator_calls, 10);
        runs.push((bits(&all), record));
    }
    assert_eq!(runs[0], runs[1]);
}

#[test]
fn resumed_gofee_run_gives_the_database_of_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let full = script_in(tmp.path(), 6, 4, "full");
    let full_out = full.search.output.clone();
    Search::new(full, pool(2)).unwrap().run().unwrap();

    // Interrupted after 3 iterations, then resumed to 6 (another worker count).
    let first = script_in(tmp.path(), 3, 4, "parts");
    let parts_out = first.search.output.clone();
    Search::new(first, pool(1)).unwrap().run().unwrap();
    let again = script_in(tmp.path(), 6, 4, "parts");
    let mut resumed = Search::resume(again, pool(2)).unwrap();
    assert_eq!(resumed.next_iteration(), 3);
    resumed.run().unwrap();
    assert_eq!(bits(&stored(&parts_out)), bits(&stored(&full_out)));
    let read = |p: &Path| -> ModelRecord {
        serde_json::from_str(&std::fs::read_to_string(p.join(MODEL_FILE)).unwrap()).unwrap()
    };
    assert_eq!(read(&parts_out), read(&full_out));
    let summary = |p: &Path| -> Summary {
        serde_json::from_str(&std::fs::read_to_string(p.join(SUMMARY_FILE)).unwrap()).unwrap()
    };
    assert_eq!(summary(&parts_out).calculator_calls, 12);
    assert_eq!(
        summary(&parts_out).surrogate_steps,
        summary(&full_out).surrogate_steps
    );

    // Killed after a store but before its training was recorded: the resumed run
    // repeats that training and still continues as the uninterrupted run.
    let first = script_in(tmp.path(), 4, 4, "killed");
    let killed_out = first.search.output.clone();
    Search::new(first, pool(2)).unwrap().run().unwrap();
    let mut record = read(&killed_out);
    record.trainings.pop();
    std::fs::write(
        killed_out.join(MODEL_FILE),
        serde_json::to_string(&record).unwrap(),
    )
    .unwrap();
    let again = script_in(tmp.path(), 6, 4, "killed");
    Search::resume(again, pool(0)).unwrap().run().unwrap();
    assert_eq!(bits(&stored(&killed_out)), bits(&stored(&full_out)));
    assert_eq!(read(&killed_out), read(&full_out));
}

#[test]
fn gofee_relaxes_only_once_the_model_is_trained() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s.toml");
    let text = script_with_model(2, 8, "n_optimize = 3")
        .replace("steps = 40", "steps = 40\nstart_iteration = 0");
    std::fs::write(&path, text).unwrap();
    let mut script = Script::load(&path).unwrap();
    assert_eq!(script.relax.as_ref().unwrap().start_iteration, 0);
    script.search.output = tmp.path().join("out");
    let mut search = Search::new(script, pool(0)).unwrap();
    // Iteration 0 has no model to relax in: its candidates are evaluated as made.
    let first = search.run_iteration().unwrap();
    assert_eq!(first.relaxed, 0);
    let second = search.run_iteration().unwrap();
    assert!(second.relaxed > 0);
}

#[test]
fn a_worker_killed_during_a_gofee_run_changes_no_result() {
    let tmp = tempfile::tempdir().unwrap();
    kills_change_no_result(|out| script_in(tmp.path(), 6, 31, out), 6, &[3, 5]);
}
