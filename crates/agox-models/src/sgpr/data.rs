//! The training data of the sparse GP and the training set one hyperparameter
//! evaluation needs.
//!
//! Rows are AGOX's: structures in training order (transfer data first), each
//! with its centres in order (`Xn`); energy observations one per structure, then
//! for each structure with forces its `3·n_atoms` force components in the order
//! `3·atom + xyz`.

use super::SparseError;
use crate::isotropic::IsotropicKernel;

/// The force block of one structure: its descriptor gradient and force targets.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForceBlock {
    /// Index of the structure in the data.
    pub structure: usize,
    /// Its number of atoms.
    pub n_atoms: usize,
    /// ∂feature/∂position, `[centre][atom][xyz][feature]` row-major (the
    /// descriptor's [`FeatureSet`](crate::descriptor::FeatureSet) layout).
    pub gradient: Vec<f64>,
    /// Force targets `F − F_prior`, `3·atom + xyz` (eV/Å).
    pub targets: Vec<f64>,
}

/// Per-structure features, energy targets, noise and force blocks.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "RawSparseData")]
pub struct SparseData {
    n_features: usize,
    /// Centre features, `[environment][feature]` row-major (AGOX's `Xn`).
    features: Vec<f64>,
    /// Centres per structure.
    centers: Vec<usize>,
    /// Energy targets `E − Σ sae − E_prior` (eV), one per structure, not centred.
    energies: Vec<f64>,
    /// Energy noise σ per centre (eV), one per structure: σ_E, or a transfer
    /// structure's own noise.
    noise: Vec<f64>,
    /// Force blocks in structure order.
    forces: Vec<ForceBlock>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSparseData {
    n_features: usize,
    features: Vec<f64>,
    centers: Vec<usize>,
    energies: Vec<f64>,
    noise: Vec<f64>,
    forces: Vec<ForceBlock>,
}

impl TryFrom<RawSparseData> for SparseData {
    type Error = SparseError;
    fn try_from(r: RawSparseData) -> Result<Self, SparseError> {
        let data = SparseData {
            n_features: r.n_features,
            features: r.features,
            centers: r.centers,
            energies: r.energies,
            noise: r.noise,
            forces: r.forces,
        };
        data.check()?;
        Ok(data)
    }
}

impl SparseData {
    /// No structures, `n_features` features per centre.
    pub fn new(n_features: usize) -> Self {
        SparseData {
            n_features,
            ..Default::default()
        }
    }

    /// Features per centre.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of structures.
    pub fn len(&self) -> usize {
        self.centers.len()
    }

    /// True without structures.
    pub fn is_empty(&self) -> bool {
        self.centers.is_empty()
    }

    /// Number of environments (centres over all structures).
    pub fn n_env(&self) -> usize {
        self.features.len() / self.n_features.max(1)
    }

    /// All centre features, row-major.
    pub fn features(&self) -> &[f64] {
        &self.features
    }

    /// Centres per structure.
    pub fn centers(&self) -> &[usize] {
        &self.centers
    }

    /// Energy targets per structure (not centred).
    pub fn energies(&self) -> &[f64] {
        &self.energies
    }

    /// Energy noise σ per centre, per structure.
    pub fn noise(&self) -> &[f64] {
        &self.noise
    }

    /// The force blocks.
    pub fn force_blocks(&self) -> &[ForceBlock] {
        &self.forces
    }

    /// Number of force components.
    pub fn n_force_rows(&self) -> usize {
        self.forces.iter().map(|b| 3 * b.n_atoms).sum()
    }

    /// Adds a structure: its centres' features (`n_centers × n_features`,
    /// row-major), energy target, energy noise σ and optional force block
    /// (gradient `[centre][atom][xyz][feature]` and force targets).
    pub fn push(
        &mut self,
        features: &[f64],
        energy: f64,
        noise: f64,
        forces: Option<(usize, &[f64], &[f64])>,
    ) -> Result<(), SparseError> {
        let f = self.n_features;
        if f == 0 || features.is_empty() || !features.len().is_multiple_of(f) {
            return Err(shape(format!(
                "a structure's features have {} values, not a positive multiple of {f}",
                features.len()
            )));
        }
        if features.iter().any(|v| !v.is_finite()) {
            return Err(shape("a structure has non-finite features".into()));
        }
        if !energy.is_finite() {
            return Err(SparseError::Energy { energy });
        }
        if !(noise.is_finite() && noise > 0.0) {
            return Err(SparseError::Setting {
                name: "noise",
                value: noise.to_string(),
                expected: "a finite number > 0",
            });
        }
        let n_centers = features.len() / f;
        let block = match forces {
            None => None,
            Some((n_atoms, gradient, targets)) => {
                if targets.len() != 3 * n_atoms || gradient.len() != n_centers * 3 * n_atoms * f {
                    return Err(SparseError::Forces {
                        message: format!(
                            "{} force components and {} gradient values for {n_atoms} atoms, \
                             {n_centers} centres and {f} features",
                            targets.len(),
                            gradient.len()
                        ),
                    });
                }
                if targets.iter().chain(gradient).any(|v| !v.is_finite()) {
                    return Err(SparseError::Forces {
                        message: "non-finite forces or descriptor gradient".into(),
                    });
                }
                Some(ForceBlock {
                    structure: self.len(),
                    n_atoms,
                    gradient: gradient.to_vec(),
                    targets: targets.to_vec(),
                })
            }
        };
        self.features.extend_from_slice(features);
        self.centers.push(n_centers);
        self.energies.push(energy);
        self.noise.push(noise);
        self.forces.extend(block);
        Ok(())
    }

    /// `self` followed by `other` (AGOX prepends transfer data to the data).
    pub fn concat(&self, other: &SparseData) -> Result<SparseData, SparseError> {
        if self.n_features != other.n_features {
            return Err(shape(format!(
                "joining data of {} and {} features",
                self.n_features, other.n_features
            )));
        }
        let offset = self.len();
        let mut out = self.clone();
        out.features.extend_from_slice(&other.features);
        out.centers.extend_from_slice(&other.centers);
        out.energies.extend_from_slice(&other.energies);
        out.noise.extend_from_slice(&other.noise);
        out.forces.extend(other.forces.iter().map(|b| ForceBlock {
            structure: b.structure + offset,
            ..b.clone()
        }));
        Ok(out)
    }

    /// Checks that the parts fit together (for data that arrived serialized).
    pub(crate) fn check(&self) -> Result<(), SparseError> {
        let f = self.n_features;
        let n = self.len();
        if f == 0 || !self.features.len().is_multiple_of(f) {
            return Err(shape(format!(
                "{} feature values for {f} features",
                self.features.len()
            )));
        }
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        if !(finite(&self.features) && finite(&self.energies))
            || self.noise.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(shape(
                "non-finite features or energies, or a noise not > 0".into(),
            ));
        }
        if self.energies.len() != n || self.noise.len() != n {
            return Err(shape(format!(
                "{n} structures with {} energies and {} noise values",
                self.energies.len(),
                self.noise.len()
            )));
        }
        if self.centers.iter().sum::<usize>() != self.n_env() || self.centers.contains(&0) {
            return Err(shape(format!(
                "centre counts sum to {}, the features hold {} environments",
                self.centers.iter().sum::<usize>(),
                self.n_env()
            )));
        }
        let mut previous = None;
        for b in &self.forces {
            if b.structure >= n || previous.is_some_and(|p| b.structure <= p) {
                return Err(shape(format!(
                    "force block of structure {} ({n} structures, blocks in increasing order)",
                    b.structure
                )));
            }
            previous = Some(b.structure);
            let c = self.centers[b.structure];
            if !(finite(&b.targets) && finite(&b.gradient))
                || b.targets.len() != 3 * b.n_atoms
                || b.gradient.len() != c * 3 * b.n_atoms * f
            {
                return Err(shape(format!(
                    "force block of structure {}: {} targets and {} gradient values for {} atoms",
                    b.structure,
                    b.targets.len(),
                    b.gradient.len(),
                    b.n_atoms
                )));
            }
        }
        Ok(())
    }

    /// First environment of each structure (and the total at the end).
    pub(crate) fn offsets(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.len() + 1);
        let mut at = 0;
        out.push(0);
        for c in &self.centers {
            at += c;
            out.push(at);
        }
        out
    }
}

pub(crate) fn shape(message: String) -> SparseError {
    SparseError::Shape { message }
}

/// What one hyperparameter evaluation and the fit need: the data, the inducing
/// points, the kernel (θ and bounds), the noise and the jitters. Sent to the
/// workers once per training.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "RawTrainingSet<K>")]
#[serde(bound(deserialize = "K: IsotropicKernel"))]
pub struct TrainingSet<K> {
    pub(crate) kernel: K,
    pub(crate) data: SparseData,
    /// Centring constant subtracted from every energy target.
    pub(crate) mean: f64,
    /// Inducing points, `[point][feature]` row-major (AGOX's `Xm`).
    pub(crate) inducing: Vec<f64>,
    /// Force noise σ_F (eV/Å).
    pub(crate) sigma_f: f64,
    /// Added to the diagonal of the training matrix.
    pub(crate) jitter: f64,
    /// Added to K_mm and C for the uncertainty, and to K_mm in the likelihood.
    pub(crate) unc_jitter: f64,
    /// Whether the fit computes the uncertainty matrix.
    pub(crate) train_uncertainty: bool,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrainingSet<K> {
    kernel: K,
    data: SparseData,
    mean: f64,
    inducing: Vec<f64>,
    sigma_f: f64,
    jitter: f64,
    unc_jitter: f64,
    train_uncertainty: bool,
}

impl<K: IsotropicKernel> TryFrom<RawTrainingSet<K>> for TrainingSet<K> {
    type Error = SparseError;
    fn try_from(r: RawTrainingSet<K>) -> Result<Self, SparseError> {
        TrainingSet::new(
            r.kernel,
            r.data,
            r.mean,
            r.inducing,
            r.sigma_f,
            r.jitter,
            r.unc_jitter,
            r.train_uncertainty,
        )
    }
}

impl<K: IsotropicKernel> TrainingSet<K> {
    /// A training set from its parts, checked.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kernel: K,
        data: SparseData,
        mean: f64,
        inducing: Vec<f64>,
        sigma_f: f64,
        jitter: f64,
        unc_jitter: f64,
        train_uncertainty: bool,
    ) -> Result<Self, SparseError> {
        data.check()?;
        if data.is_empty() {
            return Err(SparseError::NoData);
        }
        let f = data.n_features();
        if inducing.is_empty() || !inducing.len().is_multiple_of(f) {
            return Err(shape(format!(
                "{} inducing values for {f} features",
                inducing.len()
            )));
        }
        crate::isotropic::validate_log_theta(kernel.log_theta(), kernel.log_bounds())?;
        check_setting("mean", mean, f64::NEG_INFINITY)?;
        check_setting("sigma_f", sigma_f, 0.0)?;
        if sigma_f == 0.0 {
            return Err(setting("sigma_f", sigma_f, "a finite number > 0"));
        }
        check_setting("jitter", jitter, 0.0)?;
        check_setting("unc_jitter", unc_jitter, 0.0)?;
        if inducing.iter().any(|v| !v.is_finite()) {
            return Err(shape("non-finite inducing points".into()));
        }
        Ok(TrainingSet {
            kernel,
            data,
            mean,
            inducing,
            sigma_f,
            jitter,
            unc_jitter,
            train_uncertainty,
        })
    }

    /// The kernel at the current θ, with its bounds.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// The data.
    pub fn data(&self) -> &SparseData {
        &self.data
    }

    /// The centring constant (0 unless centralized).
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Inducing points, row-major.
    pub fn inducing(&self) -> &[f64] {
        &self.inducing
    }

    /// Number of inducing points M.
    pub fn n_inducing(&self) -> usize {
        self.inducing.len() / self.data.n_features()
    }

    /// Number of observations: one energy per structure plus the force components.
    pub fn n_obs(&self) -> usize {
        self.data.len() + self.data.n_force_rows()
    }

    /// Targets of the observations: centred energies, then forces (AGOX's `Y`).
    pub fn targets(&self) -> Vec<f64> {
        let mut y: Vec<f64> = self.data.energies.iter().map(|e| e - self.mean).collect();
        for b in &self.data.forces {
            y.extend_from_slice(&b.targets);
        }
        y
    }

    /// Noise variance of each observation: σ²·n_centres per structure, σ_F² per
    /// force component (the inverse of AGOX's diagonal `sigma_inv`).
    pub fn variances(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .data
            .noise
            .iter()
            .zip(&self.data.centers)
            .map(|(s, &c)| s * s * c as f64)
            .collect();
        v.resize(self.n_obs(), self.sigma_f * self.sigma_f);
        v
    }
}

fn setting(name: &'static str, value: f64, expected: &'static str) -> SparseError {
    SparseError::Setting {
        name,
        value: value.to_string(),
        expected,
    }
}

fn check_setting(name: &'static str, value: f64, min: f64) -> Result<(), SparseError> {
    if !value.is_finite() || value < min {
        return Err(setting(
            name,
            value,
            if min == 0.0 {
                "a finite number >= 0"
            } else {
                "a finite number"
            },
        ));
    }
    Ok(())
}
