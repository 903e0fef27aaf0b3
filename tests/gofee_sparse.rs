//! GOFEE with the sparse Gaussian process (`[model] kind = "sparse_gpr"`), through
//! the library with real workers: its θ search on 0, 1 and 2 workers, the workers'
//! copies against the driver's, a worker killed between trainings, and the search
//! end to end (the same database on 0 and 2 workers, `--resume`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use agox::atoms::Atoms;
use agox::pool::{FnHandle, Link, Pool, PoolConfig, Registry, TaskContext, TaskError};
use agox::search::environment::Environment;
use agox::search::script::{Script, SparseModelSettings};
use agox::search::search::model::build_sparse;
use agox::search::search::{ModelRecord, Search, MODEL_FILE};
use agox::search::surrogate::sparse::SparseModel;
use agox::search::surrogate::{PooledSurrogate, Surrogate, SurrogateModule};
use agox::search::tasks;

#[path = "support/gofee.rs"]
mod support;
use support::{
    bits, kill_worker, kills_change_no_result, pool, script_from, script_with_model, stored,
    training_structures,
};

/// The small search of `support` with the sparse model: 20 inducing points (fewer
/// than the environments from the third iteration on, so CUR chooses), 3 θ per
/// training.
fn script_text(iterations: u64, seed: u64) -> String {
    script_with_model(
        iterations,
        seed,
        "kind = \"sparse_gpr\"\nn_optimize = 3\nn_inducing = 20",
    )
}

fn script_in(dir: &Path, iterations: u64, seed: u64, out: &str) -> Script {
    script_from(dir, &script_text(iterations, seed), out)
}

/// The sparse model with SimpleFingerprint, `n_optimize` θ per training and 30
/// inducing points (Au4Cu2: 6 environments per structure).
fn sparse_model(env: &Environment, n_optimize: usize) -> SparseModel {
    let settings = SparseModelSettings {
        n_optimize,
        n_inducing: 30,
        ..SparseModelSettings::default()
    };
    build_sparse(&settings, env).unwrap()
}

fn add_rows(model: &PooledSurrogate<SparseModel>, data: &[(Atoms, f64)]) {
    let mut ws = Default::default();
    let mut m = model.handle().lock();
    for (a, e) in data {
        assert!(m.surrogate.add(a, *e, None, &mut ws).unwrap());
    }
}

type Bits = (u64, u64, u64, Vec<[u64; 3]>);

/// E, σ, E − 2σ and its forces of `atoms` in `model`, as bits.
fn predict(model: &SparseModel, atoms: &Atoms) -> Bits {
    let mut ws = Default::default();
    let (e, s) = model.energy_sigma(atoms, &mut ws).unwrap();
    let mut forces = Vec::new();
    let a = model.acquisition(atoms, 2.0, &mut ws, &mut forces).unwrap();
    (
        e.to_bits(),
        s.to_bits(),
        a.value.to_bits(),
        forces.iter().map(|f| f.map(f64::to_bits)).collect(),
    )
}

type PredictArgs = (Link<SurrogateModule<SparseModel>>, Atoms);

fn predict_task(ctx: &TaskContext<'_>, (link, atoms): PredictArgs) -> Result<Bits, TaskError> {
    Ok(predict(&ctx.module(&link)?.surrogate, &atoms))
}

/// Three trainings (12 structures added before each) with 6 θ each on `workers`
/// workers: θ after each, and the driver's predictions of three probes. With
/// `kill`, a worker is SIGKILLed before each training but the first.
fn search_thetas(workers: usize, kill: bool) -> (Vec<Vec<u64>>, Vec<Bits>) {
    let (env, data) = training_structures(36, 5);
    let (_, probes) = training_structures(3, 77);
    let pool = pool(workers);
    let mut model = PooledSurrogate::add_to(
        &pool,
        "model",
        SurrogateModule::new(sparse_model(&env, 6)),
        tasks::handles().sparse_gpr,
    )
    .unwrap();
    let mut thetas = Vec::new();
    for (k, chunk) in data.chunks(12).enumerate() {
        if kill && k > 0 {
            kill_worker(&pool, k % 2);
        }
        add_rows(&model, chunk);
        let report = model.train(&pool, 1000 + k as u64).unwrap();
        assert_eq!((report.starts, report.rows), (6, 12 * (k + 1)));
        if let Some(per_worker) = report.rows_sync.bytes.checked_div(workers) {
            // The 12 new structures and the 30 inducing indices, once per training.
            assert!(per_worker < 12 * 400 + 30 * 3 + 200, "{per_worker} bytes");
        }
        thetas.push(report.hyperparameters.iter().map(|t| t.to_bits()).collect());
    }
    if kill {
        assert!(pool.stats().total_restarts() >= 2);
        assert!(model.heals() >= 2, "{} heals", model.heals());
    }
    let m = model.handle().lock();
    let predictions = probes
        .iter()
        .map(|(a, _)| predict(&m.surrogate, a))
        .collect();
    (thetas, predictions)
}

#[test]
fn theta_search_on_0_1_and_2_workers_chooses_the_same_theta_and_predicts_the_same() {
    let serial = search_thetas(0, false);
    assert_eq!(search_thetas(1, false), serial);
    assert_eq!(search_thetas(2, false), serial);
    // The search moved θ away from the kernel's start.
    let start: Vec<u64> = vec![0f64.to_bits(), 20f64.ln().to_bits()];
    assert!(serial.0.iter().any(|t| *t != start), "{:?}", serial.0);
}

#[test]
fn a_killed_worker_is_healed_and_the_theta_search_keeps_the_serial_theta() {
    assert_eq!(search_thetas(2, true), search_thetas(0, false));
}

#[test]
fn every_workers_copy_predicts_what_the_drivers_copy_predicts() {
    let (env, data) = training_structures(30, 9);
    let (_, probes) = training_structures(3, 77);
    let mut reg = Registry::new();
    let fns = tasks::register(&mut reg);
    let predict_fn: FnHandle<PredictArgs, Bits> = reg.function("test.predict", predict_task);
    let pool = Pool::start(reg, PoolConfig::with_workers(2)).unwrap();
    let mut model = PooledSurrogate::add_to(
        &pool,
        "model",
        SurrogateModule::new(sparse_model(&env, 3)),
        fns.sparse_gpr,
    )
    .unwrap();
    for (k, chunk) in data.chunks(10).enumerate() {
        add_rows(&model, chunk);
        model.train(&pool, 3 + k as u64).unwrap();
        for (atoms, _) in &probes {
            let on_workers = pool
                .broadcast(&predict_fn, &(model.link(), atoms.clone()))
                .unwrap();
            assert_eq!(on_workers.len(), 2);
            let driver = predict(&model.handle().lock().surrogate, atoms);
            for w in on_workers {
                assert_eq!(w, driver);
            }
        }
    }
    assert_eq!(model.version().rows, 30);
    assert_eq!(model.version().trainings, 3);
}

fn read_record(dir: &Path) -> ModelRecord {
    serde_json::from_str(&std::fs::read_to_string(dir.join(MODEL_FILE)).unwrap()).unwrap()
}

#[test]
fn gofee_with_the_sparse_model_runs_end_to_end_alike_on_0_and_2_workers_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for workers in [0, 2] {
        let script = script_in(tmp.path(), 4, 21, &format!("w{workers}"));
        let out = script.search.output.clone();
        let summary = Search::new(script, pool(workers)).unwrap().run().unwrap();
        // From iteration 1 on the candidates relax in the sparse model's E − 2σ.
        assert!(summary.surrogate_steps > 0);
        assert_eq!(summary.calculator_calls, 8);
        let record = read_record(&out);
        assert_eq!(record.kind, "sparse_gpr");
        assert_eq!(record.trainings.len(), 4);
        assert!(record
            .trainings
            .iter()
            .all(|t| t.neg_log_likelihood.is_some_and(f64::is_finite)));
        runs.push((bits(&stored(&out)), record));
    }
    assert_eq!(runs[0], runs[1]);

    // Interrupted after 2 iterations, resumed to 4: the uninterrupted run's database.
    let first = script_in(tmp.path(), 2, 21, "parts");
    let out = first.search.output.clone();
    Search::new(first, pool(1)).unwrap().run().unwrap();
    let again = script_in(tmp.path(), 4, 21, "parts");
    Search::resume(again, pool(2)).unwrap().run().unwrap();
    assert_eq!((bits(&stored(&out)), read_record(&out)), runs[0]);
}

#[test]
fn gofee_with_the_sparse_model_on_the_global_fingerprint_trains_on_forces_alike_on_0_and_2_workers()
{
    let tmp = tempfile::tempdir().unwrap();
    let model = "kind = \"sparse_gpr\"\nn_optimize = 2\nn_inducing = 5\ntrain_forces = true\n\
                 noise = 0.2\ndescriptor = { kind = \"fingerprint\" }";
    let mut runs = Vec::new();
    for workers in [0, 2] {
        let script = script_from(
            tmp.path(),
            &script_with_model(3, 8, model),
            &format!("f{workers}"),
        );
        let out = script.search.output.clone();
        let summary = Search::new(script, pool(workers)).unwrap().run().unwrap();
        assert!(summary.surrogate_steps > 0);
        let record = read_record(&out);
        assert_eq!(record.trainings.len(), 3);
        runs.push((bits(&stored(&out)), record));
    }
    assert_eq!(runs[0], runs[1]);
}

#[test]
fn a_worker_killed_during_a_gofee_run_with_the_sparse_model_changes_no_result() {
    let tmp = tempfile::tempdir().unwrap();
    // The replacements' copies hold none of the structures, and the latest
    // state does not fit them.
    kills_change_no_result(|out| script_in(tmp.path(), 5, 31, out), 5, &[2, 4]);
}
