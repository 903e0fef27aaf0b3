//! `[model]`: the surrogate of `algorithm = "gofee"`, with its descriptor
//! (`[model.descriptor]`) and kernel (`[model.kernel]`). `kind` names the model;
//! each kind's keys are its own, so another kind (a sparse Gaussian process) adds
//! a variant and its keys here. Defaults are AGOX 3.11.1's GOFEE settings.

use agox_models::fingerprint::{FingerprintParams, GradientConvention};
use agox_models::isotropic::ConstantRbf;
use agox_models::kernel::{Kernel, KernelError};
use agox_models::prior::Repulsive;
use agox_models::simple_fingerprint::SimpleFingerprintParams;
use serde::{Deserialize, Serialize};

use super::read::{table, Ctx, Keys};

/// Hyperparameter starts per training (AGOX: the CPU count with Ray, 2 on the
/// machines it was measured on; a fixed number here, so that the result does not
/// depend on the machine or the number of workers).
pub const DEFAULT_N_OPTIMIZE: usize = 2;
/// L-BFGS-B iterations per start (AGOX `optimizer_maxiter`).
pub const DEFAULT_OPTIMIZER_MAXITER: usize = 100;

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSettings {
    /// GOFEE's Gaussian process on the global Fingerprint (AGOX's `GPR`).
    Gpr(GprModelSettings),
    /// The sparse Gaussian process on local or global features (AGOX's
    /// `SparseGPR`).
    SparseGpr(SparseModelSettings),
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings::Gpr(GprModelSettings::default())
    }
}

impl ModelSettings {
    /// The Fingerprint settings the KMeans sampler describes structures with: the
    /// model's when it uses the Fingerprint, the default Fingerprint's otherwise
    /// (the sampler clusters whole structures; AGOX's GOFEE gives it a Fingerprint
    /// of its own).
    pub fn descriptor(&self) -> FingerprintParams {
        match self {
            ModelSettings::Gpr(g) => g.descriptor,
            ModelSettings::SparseGpr(s) => match s.descriptor {
                SparseDescriptorSettings::Fingerprint(f) => f,
                SparseDescriptorSettings::SimpleFingerprint(_) => FingerprintParams::default(),
            },
        }
    }
}

/// Inducing points of a sparse model (AGOX's `CUR()` default).
pub const DEFAULT_N_INDUCING: usize = 1000;

/// `[model] kind = "sparse_gpr"`. The model always trains the matrices of σ
/// (the acquisition needs them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SparseModelSettings {
    /// `[model.descriptor]`.
    pub descriptor: SparseDescriptorSettings,
    /// `[model.kernel]`.
    pub kernel: SparseKernelSettings,
    /// The repulsive prior; `None`: no prior.
    pub prior: Option<Repulsive>,
    /// θ evaluated per training: the current θ and `n_optimize − 1` draws.
    pub n_optimize: usize,
    /// Inducing points chosen by CUR (AGOX 1000).
    pub n_inducing: usize,
    /// Energy noise per centre σ_E (eV; AGOX 0.01).
    pub noise: f64,
    /// Force noise per component σ_F (eV/Å; AGOX 0.01).
    pub noise_forces: f64,
    /// Train on the forces of the evaluated structures (AGOX
    /// `force_data_filter = "all"`; default: no forces).
    pub train_forces: bool,
    /// Subtract the mean energy target (AGOX's `LocalGPRConfig`: true).
    pub centralize: bool,
    /// Added to the training matrix's diagonal (AGOX 1e-8).
    pub jitter: f64,
    /// Added to K_mm and C for σ (AGOX 1e-5).
    pub unc_jitter: f64,
}

impl Default for SparseModelSettings {
    fn default() -> Self {
        SparseModelSettings {
            descriptor: SparseDescriptorSettings::SimpleFingerprint(
                SimpleFingerprintParams::default(),
            ),
            kernel: SparseKernelSettings::default(),
            prior: Some(Repulsive::default()),
            n_optimize: DEFAULT_N_OPTIMIZE,
            n_inducing: DEFAULT_N_INDUCING,
            noise: 0.01,
            noise_forces: 0.01,
            train_forces: false,
            centralize: true,
            jitter: 1e-8,
            unc_jitter: 1e-5,
        }
    }
}

/// `[model.descriptor]` of a sparse model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SparseDescriptorSettings {
    /// AGOX's local `SimpleFingerprint` (the default).
    SimpleFingerprint(SimpleFingerprintParams),
    /// The global Fingerprint.
    Fingerprint(FingerprintParams),
}

/// `[model.kernel]` of a sparse model: `C(amplitude)·RBF(length_scale)`, both
/// searched within their bounds (AGOX's `C(1)·RBF(20)`, sklearn's bounds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SparseKernelSettings {
    /// Starting amplitude (AGOX 1).
    pub amplitude: f64,
    /// Its bounds (sklearn's [0.1, 1e5]).
    pub amplitude_bounds: [f64; 2],
    /// Starting length scale (AGOX 20).
    pub length_scale: f64,
    /// Its bounds (sklearn's [0.1, 1e3]).
    pub length_scale_bounds: [f64; 2],
}

impl Default for SparseKernelSettings {
    fn default() -> Self {
        SparseKernelSettings {
            amplitude: 1.0,
            amplitude_bounds: [0.1, 1e5],
            length_scale: 20.0,
            length_scale_bounds: [0.1, 1e3],
        }
    }
}

impl SparseKernelSettings {
    /// The kernel, θ and bounds in log space.
    pub fn kernel(&self) -> Result<ConstantRbf, KernelError> {
        let ln = |b: [f64; 2]| [b[0].ln(), b[1].ln()];
        ConstantRbf::new(
            self.amplitude,
            self.length_scale,
            [ln(self.amplitude_bounds), ln(self.length_scale_bounds)],
        )
    }
}

/// `[model] kind = "gpr"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GprModelSettings {
    /// `[model.descriptor]`: the Fingerprint.
    pub descriptor: FingerprintParams,
    /// `[model.kernel]`.
    pub kernel: KernelSettings,
    /// The repulsive prior; `None`: no prior.
    pub prior: Option<Repulsive>,
    /// Hyperparameter starts per training.
    pub n_optimize: usize,
    /// L-BFGS-B iterations per start.
    pub optimizer_maxiter: usize,
}

impl Default for GprModelSettings {
    fn default() -> Self {
        GprModelSettings {
            descriptor: FingerprintParams::default(),
            kernel: KernelSettings::default(),
            prior: Some(Repulsive::default()),
            n_optimize: DEFAULT_N_OPTIMIZE,
            optimizer_maxiter: DEFAULT_OPTIMIZER_MAXITER,
        }
    }
}

/// `[model.kernel]`: `C(amplitude) · (C(β)·RBF(ℓ) + C(1−β)·RBF(ℓ)) + noise`, the
/// amplitude and both length scales fitted within their bounds, β and the noise
/// fixed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KernelSettings {
    /// Starting amplitude (AGOX 5000).
    pub amplitude: f64,
    /// Its bounds (AGOX [1, 1e5]).
    pub amplitude_bounds: [f64; 2],
    /// Weight of the first RBF (AGOX 0.01); the second gets 1 − β.
    pub beta: f64,
    /// Starting length scale of both RBFs (AGOX 1).
    pub length_scale: f64,
    /// Their bounds (AGOX [0.1, 1000]).
    pub length_scale_bounds: [f64; 2],
    /// Noise variance on the training diagonal (AGOX 0.01).
    pub noise: f64,
}

impl Default for KernelSettings {
    fn default() -> Self {
        KernelSettings {
            amplitude: 5000.0,
            amplitude_bounds: [1.0, 1e5],
            beta: 0.01,
            length_scale: 1.0,
            length_scale_bounds: [0.1, 1e3],
            noise: 0.01,
        }
    }
}

impl KernelSettings {
    /// The kernel, θ in log space.
    pub fn kernel(&self) -> Kernel {
        let mut k = Kernel::gofee(self.amplitude, self.beta, self.noise);
        let ln = |b: [f64; 2]| [b[0].ln(), b[1].ln()];
        k.bounds[0] = ln(self.amplitude_bounds);
        k.bounds[2] = ln(self.length_scale_bounds);
        k.bounds[4] = ln(self.length_scale_bounds);
        k.theta[2] = self.length_scale.ln();
        k.theta[4] = self.length_scale.ln();
        k
    }
}

fn descriptor(cx: &mut Ctx<'_>, mut keys: Keys<'_>) -> Option<FingerprintParams> {
    let d = FingerprintParams::default();
    let kind_v = keys.get("kind");
    let rc1_v = keys.get("rc1");
    let rc2_v = keys.get("rc2");
    let binwidth_v = keys.get("binwidth");
    let nbins_v = keys.get("nbins");
    let sigma1_v = keys.get("sigma1");
    let sigma2_v = keys.get("sigma2");
    let gamma_v = keys.get("gamma");
    let eta_v = keys.get("eta");
    let angular_v = keys.get("use_angular");
    let gradient_v = keys.get("gradient");
    let key = |k: &str| keys.key(k);
    let kind = kind_v.map_or(Some(String::new()), |v| {
        cx.choice(v, &key("kind"), &["fingerprint"])
    });
    let positive = |cx: &mut Ctx<'_>, v: Option<&_>, k: &str, default: f64| {
        v.map_or(Some(default), |v| cx.positive(v, &key(k)))
    };
    let rc1 = positive(cx, rc1_v, "rc1", d.rc1);
    let rc2 = positive(cx, rc2_v, "rc2", d.rc2);
    let binwidth = positive(cx, binwidth_v, "binwidth", d.binwidth);
    let sigma1 = positive(cx, sigma1_v, "sigma1", d.sigma1);
    let sigma2 = positive(cx, sigma2_v, "sigma2", d.sigma2);
    let nbins = nbins_v.map_or(Some(d.nbins), |v| cx.usize_at_least(v, &key("nbins"), 1));
    let gamma = gamma_v.map_or(Some(d.gamma), |v| cx.at_least(v, &key("gamma"), 0.0));
    let eta = eta_v.map_or(Some(d.eta), |v| cx.number(v, &key("eta")));
    let use_angular = angular_v.map_or(Some(d.use_angular), |v| cx.boolean(v, &key("use_angular")));
    let gradient = gradient_v.map_or(Some(d.gradient), |v| {
        cx.choice(v, &key("gradient"), &["exact", "agox"])
            .map(|g| match g.as_str() {
                "agox" => GradientConvention::Agox,
                _ => GradientConvention::Exact,
            })
    });
    if !keys.finish(cx) {
        return None;
    }
    kind?;
    Some(FingerprintParams {
        rc1: rc1?,
        rc2: rc2?,
        binwidth: binwidth?,
        nbins: nbins?,
        sigma1: sigma1?,
        sigma2: sigma2?,
        gamma: gamma?,
        eta: eta?,
        use_angular: use_angular?,
        gradient: gradient?,
    })
}

fn kernel(cx: &mut Ctx<'_>, mut keys: Keys<'_>) -> Option<KernelSettings> {
    let d = KernelSettings::default();
    let scales = read_scales(
        cx,
        &mut keys,
        Scales {
            amplitude: d.amplitude,
            amplitude_bounds: d.amplitude_bounds,
            length_scale: d.length_scale,
            length_scale_bounds: d.length_scale_bounds,
        },
    );
    let beta_v = keys.get("beta");
    let noise_v = keys.get("noise");
    let key = |k: &str| keys.key(k);
    let beta = beta_v.map_or(Some(d.beta), |v| match cx.positive(v, &key("beta")) {
        Some(b) if b < 1.0 => Some(b),
        Some(_) => {
            cx.expected(v, &key("beta"), "a number > 0 and < 1");
            None
        }
        None => None,
    });
    let noise = noise_v.map_or(Some(d.noise), |v| cx.positive(v, &key("noise")));
    if !keys.finish(cx) {
        return None;
    }
    let scales = scales?;
    Some(KernelSettings {
        amplitude: scales.amplitude,
        amplitude_bounds: scales.amplitude_bounds,
        beta: beta?,
        length_scale: scales.length_scale,
        length_scale_bounds: scales.length_scale_bounds,
        noise: noise?,
    })
}

pub(super) fn read(cx: &mut Ctx<'_>, mut keys: Keys<'_>) -> Option<ModelSettings> {
    let kind_v = keys.get("kind");
    let kind = kind_v.map_or(Some("gpr".to_owned()), |v| {
        cx.choice(v, &keys.key("kind"), &["gpr", "sparse_gpr"])
    })?;
    if kind == "sparse_gpr" {
        read_sparse(cx, keys).map(ModelSettings::SparseGpr)
    } else {
        read_gpr(cx, keys).map(ModelSettings::Gpr)
    }
}

/// `prior`, `prior_rcut`, `prior_ratio`.
fn read_prior(cx: &mut Ctx<'_>, keys: &mut Keys<'_>) -> Option<Option<Repulsive>> {
    let prior_v = keys.get("prior");
    let rcut_v = keys.get("prior_rcut");
    let ratio_v = keys.get("prior_ratio");
    let key = |k: &str| keys.key(k);
    let prior_kind = prior_v.map_or(Some("repulsive".to_owned()), |v| {
        cx.choice(v, &key("prior"), &["repulsive", "none"])
    });
    match prior_kind.as_deref() {
        Some("none") => {
            for (name, v) in [("prior_rcut", rcut_v), ("prior_ratio", ratio_v)] {
                if let Some(v) = v {
                    cx.err(
                        v.span.start,
                        &key(name),
                        format!("`{name}` is a setting of `prior = \"repulsive\"`"),
                    );
                }
            }
            Some(None)
        }
        Some(_) => {
            let r = Repulsive::default();
            let rcut = rcut_v.map_or(Some(r.rcut), |v| cx.positive(v, &key("prior_rcut")));
            let ratio = ratio_v.map_or(Some(r.ratio), |v| cx.positive(v, &key("prior_ratio")));
            rcut.zip(ratio)
                .map(|(rcut, ratio)| Some(Repulsive { rcut, ratio }))
        }
        None => None,
    }
}

fn read_gpr(cx: &mut Ctx<'_>, mut keys: Keys<'_>) -> Option<GprModelSettings> {
    let n_optimize_v = keys.get("n_optimize");
    let maxiter_v = keys.get("optimizer_maxiter");
    let prior = read_prior(cx, &mut keys);
    let descriptor_v = keys.get("descriptor");
    let kernel_v = keys.get("kernel");
    let key = |k: &str| keys.key(k);
    let d = GprModelSettings::default();
    let n_optimize = n_optimize_v.map_or(Some(d.n_optimize), |v| {
        cx.usize_at_least(v, &key("n_optimize"), 0)
    });
    let optimizer_maxiter = maxiter_v.map_or(Some(d.optimizer_maxiter), |v| {
        cx.usize_at_least(v, &key("optimizer_maxiter"), 1)
    });
    let descriptor = match descriptor_v {
        Some(v) => table(cx, v, &key("descriptor"))
            .and_then(|t| descriptor(cx, Keys::nested(key("descriptor"), t))),
        None => Some(FingerprintParams::default()),
    };
    let kernel = match kernel_v {
        Some(v) => {
            table(cx, v, &key("kernel")).and_then(|t| kernel(cx, Keys::nested(key("kernel"), t)))
        }
        None => Some(KernelSettings::default()),
    };
    if !keys.finish(cx) {
        return None;
    }
    Some(GprModelSettings {
        descriptor: descriptor?,
        kernel: kernel?,
        prior: prior?,
        n_optimize: n_optimize?,
        optimizer_maxiter: optimizer_maxiter?,
    })
}

fn read_sparse(cx: &mut Ctx<'_>, mut keys: Keys<'_>) -> Option<SparseModelSettings> {
    let d = SparseModelSettings::default();
    let n_optimize_v = keys.get("n_optimize");
    let n_inducing_v = keys.get("n_inducing");
    let noise_v = keys.get("noise");
    let noise_forces_v = keys.get("noise_forces");
    let train_forces_v = keys.get("train_forces");
    let centralize_v = keys.get("centralize");
    let jitter_v = keys.get("jitter");
    let unc_jitter_v = keys.get("unc_jitter");
    let prior = read_prior(cx, &mut keys);
    let descriptor_v = keys.get("descriptor");
    let kernel_v = keys.get("kernel");
    let key = |k: &str| keys.key(k);
    let n_optimize = n_optimize_v.map_or(Some(d.n_optimize), |v| {
        cx.usize_at_least(v, &key("n_optimize"), 0)
    });
    let n_inducing = n_inducing_v.map_or(Some(d.n_inducing), |v| {
        cx.usize_at_least(v, &key("n_inducing"), 1)
    });
    let noise = noise_v.map_or(Some(d.noise), |v| cx.positive(v, &key("noise")));
    let noise_forces = noise_forces_v.map_or(Some(d.noise_forces), |v| {
        cx.positive(v, &key("noise_forces"))
    });
    let train_forces = train_forces_v.map_or(Some(d.train_forces), |v| {
        cx.boolean(v, &key("train_forces"))
    });
    let centralize = centralize_v.map_or(Some(d.centralize), |v| cx.boolean(v, &key("centralize")));
    let jitter = jitter_v.map_or(Some(d.jitter), |v| cx.at_least(v, &key("jitter"), 0.0));
    let unc_jitter = unc_jitter_v.map_or(Some(d.unc_jitter), |v| {
        cx.at_least(v, &key("unc_jitter"), 0.0)
    });
    let descriptor = match descriptor_v {
        Some(v) => table(cx, v, &key("descriptor"))
            .and_then(|t| sparse_descriptor(cx, Keys::nested(key("descriptor"), t))),
        None => Some(d.descriptor),
    };
    let kernel = match kernel_v {
        Some(v) => table(cx, v, &key("kernel"))
            .and_then(|t| sparse_kernel(cx, Keys::nested(key("kernel"), t))),
        None => Some(d.kernel),
    };
    if !keys.finish(cx) {
        return None;
    }
    Some(SparseModelSettings {
        descriptor: descriptor?,
        kernel: kernel?,
        prior: prior?,
        n_optimize: n_optimize?,
        n_inducing: n_inducing?,
        noise: noise?,
        noise_forces: noise_forces?,
        train_forces: train_forces?,
        centralize: centralize?,
        jitter: jitter?,
        unc_jitter: unc_jitter?,
    })
}

/// `[model.descriptor]` of a sparse model: `kind = "simple_fingerprint"` (the
/// default) with its keys, or `kind = "fingerprint"` with the Fingerprint's.
fn sparse_descriptor(cx: &mut Ctx<'_>, mut keys: Keys<'_>) -> Option<SparseDescriptorSettings> {
    let is_global = keys
        .table
        .get("kind")
        .is_some_and(|v| matches!(&v.kind, super::tree::Kind::Str(s) if s == "fingerprint"));
    if is_global {
        return descriptor(cx, keys).map(SparseDescriptorSettings::Fingerprint);
    }
    let d = SimpleFingerprintParams::default();
    let kind_v = keys.get("kind");
    let nbins_v = keys.get("nbins");
    let width_v = keys.get("width");
    let r_cut_v = keys.get("r_cut");
    let key = |k: &str| keys.key(k);
    let kind = kind_v.map_or(Some(String::new()), |v| {
        cx.choice(v, &key("kind"), &["simple_fingerprint", "fingerprint"])
    });
    let nbins = nbins_v.map_or(Some(d.nbins), |v| cx.usize_at_least(v, &key("nbins"), 1));
    let width = width_v.map_or(Some(d.width), |v| cx.positive(v, &key("width")));
    let r_cut = r_cut_v.map_or(Some(d.r_cut), |v| cx.positive(v, &key("r_cut")));
    if !keys.finish(cx) {
        return None;
    }
    kind?;
    Some(SparseDescriptorSettings::SimpleFingerprint(
        SimpleFingerprintParams {
            nbins: nbins?,
            width: width?,
            r_cut: r_cut?,
            ..d
        },
    ))
}

/// A starting value `v` of `key` (default `default`) within bounds `b`; a value
/// outside its bounds is an error of the value, not of the bounds.
fn start_within(
    cx: &mut Ctx<'_>,
    v: Option<&super::tree::Node>,
    key: &str,
    at: usize,
    default: f64,
    b: Option<[f64; 2]>,
) -> Option<f64> {
    let x = v.map_or(Some(default), |v| cx.positive(v, key))?;
    let [lo, hi] = b?;
    if x < lo || x > hi {
        let at = v.map_or(at, |v| v.span.start);
        cx.err(
            at,
            key,
            format!("{x} lies outside its bounds [{lo}, {hi}]; expected a value within them"),
        );
        return None;
    }
    Some(x)
}

/// `[model.kernel]` of a sparse model: `C(amplitude)·RBF(length_scale)`.
fn sparse_kernel(cx: &mut Ctx<'_>, mut keys: Keys<'_>) -> Option<SparseKernelSettings> {
    let d = SparseKernelSettings::default();
    let scales = read_scales(
        cx,
        &mut keys,
        Scales {
            amplitude: d.amplitude,
            amplitude_bounds: d.amplitude_bounds,
            length_scale: d.length_scale,
            length_scale_bounds: d.length_scale_bounds,
        },
    );
    if !keys.finish(cx) {
        return None;
    }
    let scales = scales?;
    Some(SparseKernelSettings {
        amplitude: scales.amplitude,
        amplitude_bounds: scales.amplitude_bounds,
        length_scale: scales.length_scale,
        length_scale_bounds: scales.length_scale_bounds,
    })
}

/// A kernel's starting amplitude and length scale with their bounds.
struct Scales {
    amplitude: f64,
    amplitude_bounds: [f64; 2],
    length_scale: f64,
    length_scale_bounds: [f64; 2],
}

/// `amplitude`, `amplitude_bounds`, `length_scale`, `length_scale_bounds` (defaults
/// `d`); a starting value outside its bounds is an error of the value.
fn read_scales(cx: &mut Ctx<'_>, keys: &mut Keys<'_>, d: Scales) -> Option<Scales> {
    let amplitude_v = keys.get("amplitude");
    let amplitude_bounds_v = keys.get("amplitude_bounds");
    let length_v = keys.get("length_scale");
    let length_bounds_v = keys.get("length_scale_bounds");
    let key = |k: &str| keys.key(k);
    let at = keys.at();
    let amplitude_bounds = amplitude_bounds_v.map_or(Some(d.amplitude_bounds), |v| {
        cx.bounds(v, &key("amplitude_bounds"))
    });
    let length_scale_bounds = length_bounds_v.map_or(Some(d.length_scale_bounds), |v| {
        cx.bounds(v, &key("length_scale_bounds"))
    });
    let amplitude = start_within(
        cx,
        amplitude_v,
        &key("amplitude"),
        at,
        d.amplitude,
        amplitude_bounds,
    );
    let length_scale = start_within(
        cx,
        length_v,
        &key("length_scale"),
        at,
        d.length_scale,
        length_scale_bounds,
    );
    Some(Scales {
        amplitude: amplitude?,
        amplitude_bounds: amplitude_bounds?,
        length_scale: length_scale?,
        length_scale_bounds: length_scale_bounds?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_kernel_is_agox_gofee_kernel() {
        assert_eq!(KernelSettings::default().kernel(), Kernel::default());
    }
}
