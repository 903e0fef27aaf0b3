//! Speed of GOFEE's surrogate model. Run with
//! `cargo run --release --example bench_models`.
//!
//! Prints ONE JSON line on stdout:
//!
//! * `fp_feat_grad_us`: Fingerprint features + exact gradient of an EMT-relaxed
//!   Au8Cu4 cluster in its 12 Å box (AGOX: 0.64 ms + 2.94 ms = 3.6 ms); `fp_feat_us`
//!   features only;
//! * `lml_grad_ms_n200`, `lml_grad_ms_n500`: one log marginal likelihood with its
//!   θ-gradient on N Au8Cu4 training rows (AGOX 18 ms and 130 ms);
//!   `nalgebra_chol_inv_ms_n200`/`_n500`: stock nalgebra's Cholesky + inverse of the
//!   same kernel matrix alone, measured interleaved, for comparison;
//! * `lcb_step_us_n200`, `lcb_step_us_n500`: one LCB energy + forces call (descriptor,
//!   prior and Gaussian process) with N training rows (AGOX ~5 ms at N = 200);
//! * `restart_ms_n200`: one L-BFGS-B hyperparameter start at N = 200 from GOFEE's
//!   initial θ, with `restart_evals_n200` evaluations (AGOX 0.24–0.39 s).
//!
//! Each figure is the median over `AGOX_BENCH_REPS` repetitions (default 7) of a
//! batch of calls. The structures are random compact Au8Cu4 clusters from fixed
//! seeds, a few BFGS steps into EMT so that they look like a search's.

use std::hint::black_box;
use std::time::Instant;

use agox::atoms::{Atoms, Calculator};
use agox::models::descriptor::{Descriptor, FeatureSet};
use agox::models::fingerprint::FingerprintWorkspace;
use agox::models::kernel::Kernel;
use agox::models::model::{GprModel, Lcb, ModelWorkspace};

#[path = "support/clusters.rs"]
mod clusters;
#[path = "support/env.rs"]
mod env;
use anyhow::{Context, Error};
use clusters::{cluster, median};
use env::env_usize;

/// Mean time per call (µs) of `f` over `calls` calls; the first failure ends it.
fn per_call_us<T, E>(calls: usize, mut f: impl FnMut() -> Result<T, E>) -> Result<f64, E> {
    let t = Instant::now();
    for _ in 0..calls {
        f()?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / calls as f64)
}

fn model_with(n: usize, structures: &[(Atoms, f64)]) -> Result<GprModel, Error> {
    let template = Atoms::default().with_cell(structures[0].0.cell, [false; 3]);
    let mut model =
        GprModel::gofee(&template, &structures[0].0.numbers).context("GOFEE's model")?;
    let mut ws = ModelWorkspace::default();
    for (a, e) in &structures[..n] {
        model.add(a, *e, &mut ws).context("adding a training row")?;
    }
    // θ near what these data give (the AGOX fixture's optimum).
    let theta = [
        2.7,
        -4.605170185988091,
        0.74,
        -0.01005033585350145,
        3.04,
        -4.605170185988091,
    ];
    model
        .gpr_mut()
        .fit(&theta)
        .with_context(|| format!("fitting the model to {n} rows"))?;
    Ok(model)
}

/// Stock nalgebra: Cholesky and inverse of the model's kernel matrix.
fn nalgebra_chol_inv(model: &GprModel) -> Result<f64, Error> {
    let data = model.gpr().data();
    let k = model.gpr().kernel().matrix(data.x(), data.n_features());
    let n = data.len();
    let m = nalgebra::DMatrix::from_row_slice(n, n, &k);
    let t = Instant::now();
    let inv = m
        .cholesky()
        .context("nalgebra's Cholesky: the kernel matrix is not positive definite")?
        .inverse();
    black_box(inv);
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

fn main() -> Result<(), Error> {
    let reps = env_usize("AGOX_BENCH_REPS", 7, 1)?;
    let structures: Vec<(Atoms, f64)> = (0..500)
        .map(|s| cluster(1000 + s, [0, 3, 10, 40][s as usize % 4]))
        .collect::<Result<_, Error>>()?;
    let probe = cluster(7, 200)?.0;

    // Fingerprint.
    let model200 = model_with(200, &structures)?;
    let model500 = model_with(500, &structures)?;
    let fp = model200.descriptor();
    let mut fws = FingerprintWorkspace::default();
    let mut out = FeatureSet::new();
    let (mut feat_grad, mut feat) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        feat_grad.push(
            per_call_us(2000, || {
                fp.compute(black_box(&probe), true, &mut fws, &mut out)
            })
            .context("Fingerprint features and gradient")?,
        );
        feat.push(
            per_call_us(2000, || {
                fp.compute(black_box(&probe), false, &mut fws, &mut out)
            })
            .context("Fingerprint features")?,
        );
    }

    // Log marginal likelihood with gradient, interleaved with nalgebra's Cholesky + inverse.
    let theta = Kernel::default().theta;
    let (mut lml200, mut lml500, mut na200, mut na500) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut g200, mut g500) = (model200.clone(), model500.clone());
    for _ in 0..reps {
        lml200.push(
            per_call_us(20, || {
                g200.gpr_mut()
                    .log_marginal_likelihood(&theta)
                    .map(black_box)
            })
            .context("log marginal likelihood at N = 200")?
                / 1e3,
        );
        na200.push(nalgebra_chol_inv(&model200)?);
        lml500.push(
            per_call_us(3, || {
                g500.gpr_mut()
                    .log_marginal_likelihood(&theta)
                    .map(black_box)
            })
            .context("log marginal likelihood at N = 500")?
                / 1e3,
        );
        na500.push(nalgebra_chol_inv(&model500)?);
    }

    // One LCB call (what a relaxation step costs).
    let (mut lcb200, mut lcb500) = (Vec::new(), Vec::new());
    let mut c200 = Lcb::new(&model200, 2.0);
    let mut c500 = Lcb::new(&model500, 2.0);
    let mut moved = probe.clone();
    for _ in 0..reps {
        lcb200.push(
            per_call_us(1000, || {
                moved.positions[0][0] += 1e-6;
                c200.calculate(&moved, false).map(black_box)
            })
            .context("LCB at N = 200")?,
        );
        lcb500.push(
            per_call_us(500, || {
                moved.positions[0][0] -= 1e-6;
                c500.calculate(&moved, false).map(black_box)
            })
            .context("LCB at N = 500")?,
        );
    }

    // One hyperparameter start.
    let mut restart = Vec::new();
    let mut evals = 0;
    for _ in 0..reps.min(3) {
        let mut g = model200.clone();
        let t = Instant::now();
        let o = g
            .gpr_mut()
            .optimize_start(&theta)
            .context("a hyperparameter start at N = 200")?;
        restart.push(t.elapsed().as_secs_f64() * 1e3);
        evals = o.evaluations;
    }

    let line = serde_json::json!({
        "fp_feat_grad_us": median(feat_grad),
        "fp_feat_us": median(feat),
        "lml_grad_ms_n200": median(lml200),
        "lml_grad_ms_n500": median(lml500),
        "nalgebra_chol_inv_ms_n200": median(na200),
        "nalgebra_chol_inv_ms_n500": median(na500),
        "lcb_step_us_n200": median(lcb200),
        "lcb_step_us_n500": median(lcb500),
        "restart_ms_n200": median(restart),
        "restart_evals_n200": evals,
        "reps": reps,
        "agox_fp_feat_grad_us": 3600,
        "agox_lml_grad_ms_n200": 18,
        "agox_lml_grad_ms_n500": 130,
        "agox_lcb_step_us_n200": 5000,
    });
    println!("{line}");
    Ok(())
}
