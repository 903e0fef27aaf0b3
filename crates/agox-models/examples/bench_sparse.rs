//! Timings of the sparse GP on Au₈Cu₄ with AGOX's `SimpleFingerprint`, 1000
//! inducing points, one thread; one JSON line.
//!
//! ```sh
//! cargo run --release -p agox-models --example bench_sparse
//! ```
//!
//! Training structures are random Au₈Cu₄ clusters with EMT energies; descriptors
//! are computed before the clock starts. Settings: C(1)·RBF(0.3), σ_E = 0.05,
//! jitter 0.1, unc_jitter 1e-3, centralized, prior, CUR(1000) redrawn at every
//! training (AGOX outside a run) — the settings of the AGOX fixture C, on which
//! the training matrix is well conditioned. Every figure is the median of
//! `REPS` repetitions in this process; the baselines run interleaved with them.
//!
//! * `sgpr_train_ms_nN`: one training on N structures (CUR from the thin SVD,
//!   the fit) without the uncertainty matrices, as AGOX's timings;
//!   `sgpr_train_unc_ms_nN` with them;
//! * `sgpr_theta_ms_n1000`: one log-likelihood evaluation; `baseline_dense_theta_ms_n1000`:
//!   the same quantity by AGOX's formula (the N_obs × N_obs matrix formed and
//!   factored by Cholesky) on the same kernel rows;
//! * `sgpr_energy_us`, `sgpr_forces_us`: per structure, from features (and their
//!   gradient) already computed, prior and descriptor excluded;
//!   `sgpr_sigma_us`, `sgpr_lcb_us`: σ, and E − 2σ with its forces;
//!   `baseline_agox_forces_us`: forces in AGOX's order (the `[c, a, 3, M]` tensor
//!   ∂k/∂r materialized, then contracted with α);
//! * `*_bytes`: serialized (MessagePack) sizes of the training set a pooled search
//!   sends once per training, and of the predictor sent after it.

use std::time::Instant;

use anyhow::{Context, Result};

use agox_atoms::emt::Emt;
use agox_atoms::{Atoms, Calculator};
use agox_models::descriptor::{Descriptor, FeatureSet};
use agox_models::isotropic::ConstantRbf;
use agox_models::prior::Repulsive;
use agox_models::sgpr::{
    LmlWorkspace, PredictWorkspace, SparseGpr, SparseModelWorkspace, SparseSettings, Sparsifier,
    TrainOptions, TrainingSet,
};
use agox_models::simple_fingerprint::{SimpleFingerprint, SimpleFingerprintParams};
use faer::linalg::solvers::{DenseSolveCore, Llt};
use faer::{Mat, Side};
use nix::sys::resource::{getrusage, UsageWho};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const REPS: usize = 5;
const N_TEST: usize = 50;
/// Passes through the test structures per prediction timing.
const PASSES: usize = 4;

type Model = SparseGpr<SimpleFingerprint>;

/// A random Au₈Cu₄ cluster in a 12 Å box: atoms 2.5–2.9 Å from a random earlier
/// atom and more than 2.3 Å from all.
fn cluster(seed: u64) -> Result<Atoms> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut positions: Vec<[f64; 3]> = vec![[6.0; 3]];
    while positions.len() < 12 {
        let base = positions[rng.gen_range(0..positions.len())];
        let dir: [f64; 3] = std::array::from_fn(|_| rng.gen_range(-1.0..1.0));
        let n = (dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]).sqrt();
        if !(0.2..=1.0).contains(&n) {
            continue;
        }
        let d = rng.gen_range(2.5..2.9);
        let p: [f64; 3] = std::array::from_fn(|k| base[k] + d * dir[k] / n);
        if positions
            .iter()
            .all(|q| (0..3).map(|k| (p[k] - q[k]).powi(2)).sum::<f64>() > 2.3 * 2.3)
        {
            positions.push(p);
        }
    }
    let mut numbers = vec![79u8; 8];
    numbers.extend([29u8; 4]);
    Ok(Atoms::new(numbers, positions)
        .context("a random Au8Cu4 cluster")?
        .with_cell(
            [[12.0, 0.0, 0.0], [0.0, 12.0, 0.0], [0.0, 0.0, 12.0]],
            [false; 3],
        ))
}

fn model(structures: &[(Atoms, f64)], uncertainty: bool) -> Result<Model> {
    let descriptor = SimpleFingerprint::new(SimpleFingerprintParams::default(), &[79, 29])
        .context("SimpleFingerprint with its default settings")?;
    let kernel = ConstantRbf::with_defaults(1.0, 0.3).context("the kernel C(1)·RBF(0.3)")?;
    let settings = SparseSettings {
        sigma_e: 0.05,
        sigma_f: 0.05,
        jitter: 0.1,
        unc_jitter: 1e-3,
        centralize: true,
        sparsifier: Sparsifier::Cur { m_points: 1000 },
        n_optimize: 0,
        train_forces: false,
        train_uncertainty: uncertainty,
    };
    let mut m = SparseGpr::new(descriptor, Some(Repulsive::default()), kernel, settings)
        .context("the sparse GP's settings")?;
    let mut ws = SparseModelWorkspace::default();
    for (a, e) in structures {
        m.add(a, *e, None, &mut ws)
            .context("adding a training structure")?;
    }
    Ok(m)
}

/// This thread's CPU time (user + system), seconds.
fn cpu_seconds() -> Result<f64> {
    let u = getrusage(UsageWho::RUSAGE_THREAD).context("getrusage of this thread")?;
    let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 * 1e-6;
    Ok(s(u.user_time()) + s(u.system_time()))
}

/// Wall-clock and CPU seconds of `f`.
fn timed<R>(f: impl FnOnce() -> R) -> Result<(R, Times)> {
    let (wall, cpu) = (Instant::now(), cpu_seconds()?);
    let r = f();
    let t = Times {
        wall: vec![wall.elapsed().as_secs_f64()],
        cpu: vec![cpu_seconds()? - cpu],
    };
    Ok((r, t))
}

/// Repeated timings of one figure.
#[derive(Default)]
struct Times {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

impl Times {
    fn push(&mut self, t: Times) {
        self.wall.extend(t.wall);
        self.cpu.extend(t.cpu);
    }

    /// Records the medians as `key` (wall clock) and `key_cpu` (this thread's
    /// CPU time), scaled to the figure's unit.
    fn record(self, out: &mut serde_json::Map<String, serde_json::Value>, key: &str, scale: f64) {
        let round = |v: f64| serde_json::json!((v * scale * 1000.0).round() / 1000.0);
        out.insert(key.into(), round(median(self.wall)));
        out.insert(format!("{key}_cpu"), round(median(self.cpu)));
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One training (the model is cloned outside the clock).
fn train(m: &Model, seed: u64) -> Result<(Times, Model)> {
    let mut m = m.clone();
    let mut ws = SparseModelWorkspace::default();
    let (report, t) = timed(|| {
        m.train(
            TrainOptions {
                iteration: None,
                seed,
            },
            &mut ws,
        )
    })?;
    let report = report.context("training")?;
    assert_eq!(report.n_inducing, 1000.min(report.n_env));
    Ok((t, m))
}

/// −log P by AGOX's formula: K̃ = U K_j⁻¹ Uᵀ + Σ formed and factored.
fn dense_lml(set: &TrainingSet<ConstantRbf>, theta: &[f64]) -> Result<f64> {
    let asm = set.assembled(theta).context("θ within the bounds")?;
    let (m, n) = (asm.n_inducing, set.n_obs());
    let kj = Mat::from_fn(m, m, |i, j| {
        asm.kmm[i * m + j] + if i == j { 1e-3 } else { 0.0 }
    });
    let kinv = Llt::new(kj.as_ref(), Side::Lower)
        .map_err(|e| anyhow::anyhow!("K_mm + jitter is not positive definite: {e:?}"))?
        .inverse();
    let u = Mat::from_fn(n, m, |o, k| asm.rows[o * m + k]);
    let v = set.variances();
    let mut kt = &u * &kinv * u.transpose();
    for o in 0..n {
        kt[(o, o)] += v[o];
    }
    let llt = Llt::new(kt.as_ref(), Side::Lower)
        .map_err(|e| anyhow::anyhow!("AGOX's K̃ is not positive definite: {e:?}"))?;
    let y = set.targets();
    let alpha = llt.inverse() * Mat::from_fn(n, 1, |o, _| y[o]);
    let fit: f64 = (0..n).map(|o| y[o] * alpha[(o, 0)]).sum();
    let log_det: f64 = (0..n).map(|o| 2.0 * llt.L()[(o, o)].ln()).sum();
    Ok(0.5 * fit + 0.5 * log_det + 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln())
}

/// Forces in AGOX's order: dk/dr[c, a, x, m] = Σ_f ∂x_c/∂r_{a,x}[f] · ∂k(X_m, x_c)/∂x_c[f]
/// materialized, then F = −Σ_c dk/dr · α.
fn agox_forces(
    xm: &[f64],
    alpha: &[f64],
    kernel: (f64, f64),
    fs: &FeatureSet,
    dk_dr: &mut Vec<f64>,
    out: &mut [[f64; 3]],
) {
    let (c_amp, l) = kernel;
    let f = fs.n_features();
    let m = alpha.len();
    let (nc, na) = (fs.n_centers(), fs.n_atoms());
    dk_dr.clear();
    dk_dr.resize(nc * na * 3 * m, 0.0);
    let mut dk_dx = vec![0.0; m * f];
    for c in 0..nc {
        let x = fs.center(c);
        for (j, row) in xm.chunks_exact(f).enumerate() {
            let d: f64 = row.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum();
            let k = c_amp * (-d / (2.0 * l * l)).exp();
            for (g, (a, b)) in dk_dx[j * f..(j + 1) * f].iter_mut().zip(row.iter().zip(x)) {
                *g = k * (a - b) / (l * l);
            }
        }
        for a in 0..na {
            for xyz in 0..3 {
                let grad = fs.gradient_row(c, a, xyz);
                let dst =
                    &mut dk_dr[((c * na + a) * 3 + xyz) * m..((c * na + a) * 3 + xyz + 1) * m];
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = grad
                        .iter()
                        .zip(&dk_dx[j * f..(j + 1) * f])
                        .map(|(p, q)| p * q)
                        .sum();
                }
            }
        }
    }
    for (a, o) in out.iter_mut().enumerate() {
        for (xyz, v) in o.iter_mut().enumerate() {
            let mut s = 0.0;
            for c in 0..nc {
                let row = &dk_dr[((c * na + a) * 3 + xyz) * m..((c * na + a) * 3 + xyz + 1) * m];
                s += row.iter().zip(alpha).map(|(p, q)| p * q).sum::<f64>();
            }
            *v = -s;
        }
    }
}

fn main() -> Result<()> {
    let mut emt = Emt::new();
    let structures: Vec<(Atoms, f64)> = (0..1000 + N_TEST as u64)
        .map(|seed| {
            let a = cluster(seed)?;
            let e = emt.calculate(&a, false).context("EMT energy")?.energy;
            Ok((a, e))
        })
        .collect::<Result<_>>()?;
    let (training, test) = structures.split_at(1000);
    let m200 = model(&training[..200], false)?;
    let m200u = model(&training[..200], true)?;
    let m1000 = model(training, false)?;
    let m1000u = model(training, true)?;

    let mut out = serde_json::Map::new();
    for (key, m) in [
        ("sgpr_train_ms_n200", &m200),
        ("sgpr_train_unc_ms_n200", &m200u),
        ("sgpr_train_ms_n1000", &m1000),
        ("sgpr_train_unc_ms_n1000", &m1000u),
    ] {
        let mut times = Times::default();
        for r in 0..REPS {
            times.push(train(m, r as u64)?.0);
        }
        times.record(&mut out, key, 1e3);
    }

    // One likelihood evaluation, and AGOX's dense formula, interleaved.
    let mut m = m1000.clone();
    let set = m
        .training_set(TrainOptions::default())
        .context("the training set")?;
    let theta = [0.5, -1.0];
    let mut lws = LmlWorkspace::default();
    let (mut ours, mut dense) = (Times::default(), Times::default());
    let mut values = (0.0, 0.0);
    for _ in 0..REPS {
        let (o, t) = timed(|| set.evaluate(&theta, &mut lws))?;
        let o = o.context("the log-likelihood at θ")?;
        ours.push(t);
        let (d, t) = timed(|| dense_lml(&set, &theta))?;
        dense.push(t);
        values = (-o.log_likelihood().context("an admissible θ")?, d?);
    }
    ours.record(&mut out, "sgpr_theta_ms_n1000", 1e3);
    dense.record(&mut out, "baseline_dense_theta_ms_n1000", 1e3);
    out.insert(
        "theta_neg_lml_rel_diff_vs_dense".into(),
        serde_json::json!(((values.0 - values.1) / values.1).abs()),
    );

    // Prediction from precomputed features (the N = 1000 model with σ).
    let (_, trained) = train(&m1000u, 7)?;
    let p = trained.predictor().context("the trained predictor")?;
    let d = trained.descriptor();
    let mut feats = Vec::new();
    let mut dws = Default::default();
    for (a, _) in test {
        let mut fs = FeatureSet::new();
        d.compute(a, true, &mut dws, &mut fs)
            .context("features of a test structure")?;
        feats.push(fs);
    }
    let mut ws = PredictWorkspace::default();
    let mut forces = Vec::new();
    // Seconds per structure over PASSES passes through the test structures.
    // The first failure ends the timing and is returned.
    let per_structure = |f: &mut dyn FnMut(&FeatureSet) -> Result<()>| -> Result<Times> {
        let (r, mut t) = timed(|| -> Result<()> {
            for _ in 0..PASSES {
                for fs in &feats {
                    f(fs)?;
                }
            }
            Ok(())
        })?;
        r?;
        let n = (PASSES * feats.len()) as f64;
        t.wall[0] /= n;
        t.cpu[0] /= n;
        Ok(t)
    };
    let mut figures: [Times; 5] = Default::default();
    let mut dk_dr = Vec::new();
    let mut agox_f = vec![[0.0; 3]; 12];
    let kernel = (p.kernel().theta()[0].exp(), p.kernel().theta()[1].exp());
    for _ in 0..REPS {
        figures[0].push(
            per_structure(&mut |fs| {
                p.predict(fs.features(), false, &mut ws)?;
                Ok(())
            })
            .context("energies")?,
        );
        figures[1].push(
            per_structure(&mut |fs| {
                p.forces(fs, 1.0, 0.0, false, &mut ws, &mut forces)?;
                Ok(())
            })
            .context("forces")?,
        );
        figures[2].push(
            per_structure(&mut |fs| {
                p.predict(fs.features(), true, &mut ws)?;
                Ok(())
            })
            .context("energies with σ")?,
        );
        figures[3].push(
            per_structure(&mut |fs| {
                p.forces(fs, 1.0, -2.0, true, &mut ws, &mut forces)?;
                Ok(())
            })
            .context("LCB forces")?,
        );
        figures[4].push(per_structure(&mut |fs| {
            agox_forces(p.inducing(), p.alpha(), kernel, fs, &mut dk_dr, &mut agox_f);
            Ok(())
        })?);
    }
    let mut worst_force_diff = 0.0f64;
    for fs in &feats {
        p.forces(fs, 1.0, 0.0, false, &mut ws, &mut forces)
            .context("forces")?;
        agox_forces(p.inducing(), p.alpha(), kernel, fs, &mut dk_dr, &mut agox_f);
        for (a, b) in forces.iter().flatten().zip(agox_f.iter().flatten()) {
            worst_force_diff = worst_force_diff.max((a - b).abs());
        }
    }
    let [e, f, s, l, b] = figures;
    e.record(&mut out, "sgpr_energy_us", 1e6);
    f.record(&mut out, "sgpr_forces_us", 1e6);
    s.record(&mut out, "sgpr_sigma_us", 1e6);
    l.record(&mut out, "sgpr_lcb_us", 1e6);
    b.record(&mut out, "baseline_agox_forces_us", 1e6);
    out.insert(
        "forces_max_abs_diff_vs_agox_order".into(),
        serde_json::json!(worst_force_diff),
    );

    // What a pooled search ships.
    let mut m = m200.clone();
    let set200 = m
        .training_set(TrainOptions::default())
        .context("the training set")?;
    out.insert("trainset_bytes_n200".into(), bytes(&set200)?.into());
    out.insert("trainset_bytes_n1000".into(), bytes(&set)?.into());
    out.insert("predictor_bytes_n1000_unc".into(), bytes(p)?.into());
    let (_, trained) = train(&m1000, 7)?;
    let predictor = trained.predictor().context("the trained predictor")?;
    out.insert("predictor_bytes_n1000".into(), bytes(predictor)?.into());
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

/// MessagePack size of a value.
fn bytes<T: serde::Serialize>(v: &T) -> Result<usize> {
    Ok(rmp_serde::to_vec(v).context("MessagePack encoding")?.len())
}
