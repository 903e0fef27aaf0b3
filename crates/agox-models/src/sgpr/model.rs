//! The sparse GP on structures: AGOX's `SparseGPR` with its descriptor, prior and
//! single-atom energies.
//!
//! Targets per structure are `E − Σ_atoms sae(Z) − E_prior − mean` (the mean of
//! the rest over all structures when `centralize`, else 0), forces `F − F_prior`.
//! Predictions add them back: `E = Σ_c k_cᵀα + mean + E_prior + Σ sae`, local
//! energies `k_cᵀα + sae(Z_c)` (no prior, no mean), forces through the
//! descriptor's gradient plus the prior's.

use std::fmt;

use agox_atoms::Atoms;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::cur::cur_select;
use super::data::{SparseData, TrainingSet};
use super::fit::FitReport;
use super::likelihood::LmlWorkspace;
use super::predict::{PredictWorkspace, Predictor};
use super::search::{best_theta, starts, ThetaOutcome};
use super::SparseError;
use crate::descriptor::{Descriptor, DescriptorKind, FeatureSet};
use crate::isotropic::{ConstantRbf, IsotropicKernel};
use crate::model::{Acquisition, Surrogate};
use crate::prior::{PriorWorkspace, Repulsive};

/// How inducing points are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Sparsifier {
    /// AGOX's `CUR(m_points)`, redrawn on AGOX's schedule: at the first
    /// training, at every training outside a run (no iteration given), and
    /// inside a run when `n_env < 10·m_points` or `iteration % 25 == 0`.
    Cur {
        /// Inducing points; AGOX's default 1000.
        m_points: usize,
    },
    /// Every environment is an inducing point (AGOX `sparsifier=None`).
    All,
    /// The points set by [`SparseGpr::set_inducing_indices`], never redrawn.
    Fixed,
}

/// The sparse GP's settings; [`Default`] gives AGOX's `SparseGPR` defaults.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SparseSettings {
    /// Energy noise per centre σ_E (eV); AGOX `sigma = 0.01`. A structure's energy
    /// variance is σ_E²·n_centres.
    pub sigma_e: f64,
    /// Force noise per component σ_F (eV/Å); AGOX: `sigma`, 0.01 (its `sigma_F=`
    /// argument is ignored, only `noise_F=` works).
    pub sigma_f: f64,
    /// Added to the training matrix's diagonal; AGOX `jitter = 1e-8`.
    pub jitter: f64,
    /// Added to K_mm and C for σ, and to K_mm in the likelihood; AGOX 1e-5.
    pub unc_jitter: f64,
    /// Subtract the mean energy target; AGOX `centralize = False` (its
    /// `LocalGPRConfig` sets True).
    pub centralize: bool,
    /// The inducing points; AGOX `CUR(1000)`.
    pub sparsifier: Sparsifier,
    /// θ evaluated per training: the current one and `n_optimize − 1` draws;
    /// AGOX 0 (θ kept).
    pub n_optimize: usize,
    /// Train on the forces of every structure added with forces (AGOX
    /// `force_data_filter="all"`); AGOX default: no forces.
    pub train_forces: bool,
    /// Train the matrices σ needs; AGOX `train_uncertainty = False`.
    pub train_uncertainty: bool,
}

impl Default for SparseSettings {
    fn default() -> Self {
        SparseSettings {
            sigma_e: 0.01,
            sigma_f: 0.01,
            jitter: 1e-8,
            unc_jitter: 1e-5,
            centralize: false,
            sparsifier: Sparsifier::Cur { m_points: 1000 },
            n_optimize: 0,
            train_forces: false,
            train_uncertainty: false,
        }
    }
}

impl SparseSettings {
    fn validate(&self) -> Result<(), SparseError> {
        let check = |name: &'static str, v: f64, positive: bool| {
            let ok = v.is_finite() && if positive { v > 0.0 } else { v >= 0.0 };
            if ok {
                Ok(())
            } else {
                Err(SparseError::Setting {
                    name,
                    value: v.to_string(),
                    expected: if positive {
                        "a finite number > 0"
                    } else {
                        "a finite number >= 0"
                    },
                })
            }
        };
        check("sigma_e", self.sigma_e, true)?;
        check("sigma_f", self.sigma_f, true)?;
        check("jitter", self.jitter, false)?;
        check("unc_jitter", self.unc_jitter, false)?;
        if let Sparsifier::Cur { m_points: 0 } = self.sparsifier {
            return Err(SparseError::Setting {
                name: "m_points",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        Ok(())
    }
}

/// When and how a training runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrainOptions {
    /// The search's iteration, for the sparsification schedule; `None` outside a
    /// run (inducing points are then redrawn at every training, as in AGOX).
    pub iteration: Option<u64>,
    /// Seed of the CUR draw (ChaCha8, stream 1) and of the θ draws (stream 0).
    pub seed: u64,
}

/// What a training did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainReport {
    /// Structures (transfer data included).
    pub n_structures: usize,
    /// Environments.
    pub n_env: usize,
    /// Inducing points.
    pub n_inducing: usize,
    /// Whether the inducing points were redrawn.
    pub sparsified: bool,
    /// Every θ evaluated, in order (empty with `n_optimize = 0`).
    pub outcomes: Vec<ThetaOutcome>,
    /// The one kept, if any was admissible.
    pub best: Option<usize>,
    /// The fit.
    pub fit: FitReport,
}

/// A full prediction for one structure.
#[derive(Debug, Clone, PartialEq)]
pub struct SparsePrediction {
    /// Energy (eV): GP, mean, prior and single-atom energies.
    pub energy: f64,
    /// Forces −∂E/∂r (eV/Å), prior included.
    pub forces: Vec<[f64; 3]>,
    /// σ (eV), with a trained uncertainty.
    pub sigma: Option<f64>,
    /// −∂σ/∂r (eV/Å), with a trained uncertainty.
    pub sigma_forces: Option<Vec<[f64; 3]>>,
}

/// Buffers of the model's calls; keep one per caller.
pub struct SparseModelWorkspace<D: Descriptor> {
    descriptor: D::Workspace,
    features: FeatureSet,
    prior: PriorWorkspace,
    prior_forces: Vec<[f64; 3]>,
    predict: PredictWorkspace,
    lml: LmlWorkspace,
}

impl<D: Descriptor> Default for SparseModelWorkspace<D> {
    fn default() -> Self {
        SparseModelWorkspace {
            descriptor: Default::default(),
            features: FeatureSet::new(),
            prior: PriorWorkspace::default(),
            prior_forces: Vec::new(),
            predict: PredictWorkspace::default(),
            lml: LmlWorkspace::default(),
        }
    }
}

impl<D: Descriptor> fmt::Debug for SparseModelWorkspace<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SparseModelWorkspace")
            .finish_non_exhaustive()
    }
}

/// AGOX's SparseGPR on structures. See the module docs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(
    serialize = "D: serde::Serialize, K: serde::Serialize",
    deserialize = "D: serde::de::DeserializeOwned, K: IsotropicKernel"
))]
pub struct SparseGpr<D, K = ConstantRbf> {
    descriptor: D,
    prior: Option<Repulsive>,
    kernel: K,
    settings: SparseSettings,
    /// Single-atom energies indexed by atomic number (missing: 0).
    single_atom_energies: Vec<f64>,
    transfer: SparseData,
    data: SparseData,
    /// Inducing points (rows of the environments when drawn) and their indices
    /// in the environment order of that time.
    inducing: Option<(Vec<f64>, Vec<usize>)>,
    predictor: Option<Predictor<K>>,
}

impl<D: Descriptor, K: IsotropicKernel> SparseGpr<D, K> {
    /// A model from its parts.
    pub fn new(
        descriptor: D,
        prior: Option<Repulsive>,
        kernel: K,
        settings: SparseSettings,
    ) -> Result<Self, SparseError> {
        settings.validate()?;
        crate::isotropic::validate_log_theta(kernel.log_theta(), kernel.log_bounds())?;
        let f = descriptor.n_features();
        Ok(SparseGpr {
            descriptor,
            prior,
            kernel,
            settings,
            single_atom_energies: Vec::new(),
            transfer: SparseData::new(f),
            data: SparseData::new(f),
            inducing: None,
            predictor: None,
        })
    }

    /// Sets the single-atom energies (eV per atom of atomic number Z), which
    /// are subtracted from the targets and added back to energies and local
    /// energies; AGOX's default is 0 for every element.
    pub fn set_single_atom_energies(&mut self, energies: &[(u8, f64)]) -> Result<(), SparseError> {
        let mut table = Vec::new();
        for &(z, e) in energies {
            if !e.is_finite() {
                return Err(SparseError::Setting {
                    name: "single_atom_energies",
                    value: format!("{z}: {e}"),
                    expected: "finite energies",
                });
            }
            let z = usize::from(z);
            if table.len() <= z {
                table.resize(z + 1, 0.0);
            }
            table[z] = e;
        }
        self.single_atom_energies = table;
        self.predictor = None;
        Ok(())
    }

    /// The descriptor.
    pub fn descriptor(&self) -> &D {
        &self.descriptor
    }

    /// The prior, if any.
    pub fn prior(&self) -> Option<&Repulsive> {
        self.prior.as_ref()
    }

    /// The kernel at the current θ.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// The settings.
    pub fn settings(&self) -> &SparseSettings {
        &self.settings
    }

    /// Replaces the settings (checked). The trained state is dropped; the
    /// inducing points are kept.
    pub fn set_settings(&mut self, settings: SparseSettings) -> Result<(), SparseError> {
        settings.validate()?;
        self.settings = settings;
        self.predictor = None;
        Ok(())
    }

    /// The trained state, if trained.
    pub fn predictor(&self) -> Option<&Predictor<K>> {
        self.predictor.as_ref()
    }

    /// Structures added (transfer data included).
    pub fn len(&self) -> usize {
        self.transfer.len() + self.data.len()
    }

    /// True before any structure is added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Environments (centres) of all structures.
    pub fn n_env(&self) -> usize {
        self.transfer.n_env() + self.data.n_env()
    }

    /// Indices of the inducing points among the environments (transfer data
    /// first) when they were drawn or set.
    pub fn inducing_indices(&self) -> Option<&[usize]> {
        self.inducing.as_ref().map(|(_, i)| i.as_slice())
    }

    fn sae(&self, atoms: &Atoms) -> f64 {
        atoms.numbers.iter().map(|&z| self.sae_of(z)).sum()
    }

    fn sae_of(&self, z: u8) -> f64 {
        self.single_atom_energies
            .get(usize::from(z))
            .copied()
            .unwrap_or(0.0)
    }

    /// Adds a training structure with its energy and, when the model trains on
    /// forces, its forces.
    pub fn add(
        &mut self,
        atoms: &Atoms,
        energy: f64,
        forces: Option<&[[f64; 3]]>,
        ws: &mut SparseModelWorkspace<D>,
    ) -> Result<(), SparseError> {
        let noise = self.settings.sigma_e;
        let record = self.record(atoms, energy, forces, ws)?;
        push(&mut self.data, &ws.features, record, noise)?;
        self.predictor = None;
        Ok(())
    }

    /// Adds a transfer structure (AGOX's `add_transfer_data`): prepended to the
    /// data at every training, with its own energy noise σ per centre (default σ_E).
    pub fn add_transfer(
        &mut self,
        atoms: &Atoms,
        energy: f64,
        forces: Option<&[[f64; 3]]>,
        noise: Option<f64>,
        ws: &mut SparseModelWorkspace<D>,
    ) -> Result<(), SparseError> {
        let noise = noise.unwrap_or(self.settings.sigma_e);
        let record = self.record(atoms, energy, forces, ws)?;
        push(&mut self.transfer, &ws.features, record, noise)?;
        self.predictor = None;
        Ok(())
    }

    /// Features (into `ws.features`), energy target and force targets of a structure.
    fn record(
        &self,
        atoms: &Atoms,
        energy: f64,
        forces: Option<&[[f64; 3]]>,
        ws: &mut SparseModelWorkspace<D>,
    ) -> Result<Record, SparseError> {
        if !energy.is_finite() {
            return Err(SparseError::Energy { energy });
        }
        let forces = match (self.settings.train_forces, forces) {
            (false, _) => None,
            (true, None) => {
                return Err(SparseError::Forces {
                    message: "the model trains on forces (train_forces) and none were given".into(),
                })
            }
            (true, Some(f)) if f.len() != atoms.len() => {
                return Err(SparseError::Forces {
                    message: format!("{} force rows for {} atoms", f.len(), atoms.len()),
                })
            }
            (true, Some(f)) => Some(f),
        };
        self.descriptor.compute(
            atoms,
            forces.is_some(),
            &mut ws.descriptor,
            &mut ws.features,
        )?;
        let target = (energy - self.sae(atoms))
            - match &self.prior {
                Some(p) => {
                    if forces.is_some() {
                        p.energy_forces(atoms, &mut ws.prior, &mut ws.prior_forces)?
                    } else {
                        p.energy(atoms, &mut ws.prior)?
                    }
                }
                None => 0.0,
            };
        let force_targets = forces.map(|f| {
            let mut t = Vec::with_capacity(3 * f.len());
            for (a, row) in f.iter().enumerate() {
                let prior = match self.prior {
                    Some(_) => ws.prior_forces[a],
                    None => [0.0; 3],
                };
                t.extend(row.iter().zip(prior).map(|(f, p)| f - p));
            }
            t
        });
        Ok(Record {
            target,
            n_atoms: atoms.len(),
            force_targets,
        })
    }

    /// Replaces the inducing points by the environments `indices` (in the order
    /// of [`SparseGpr::n_env`]: transfer data first, structures in order, centres
    /// in order), in the given order. With the `cur` sparsifier a later training
    /// may redraw them (see [`Sparsifier::Cur`]).
    pub fn set_inducing_indices(&mut self, indices: &[usize]) -> Result<(), SparseError> {
        let rows = self.inducing_rows(indices)?;
        self.inducing = Some((rows, indices.to_vec()));
        self.predictor = None;
        Ok(())
    }

    /// The environments `indices` (checked: in range, distinct, not empty), in order.
    fn inducing_rows(&self, indices: &[usize]) -> Result<Vec<f64>, SparseError> {
        let n_env = self.n_env();
        if indices.is_empty() {
            return Err(SparseError::NoInducing);
        }
        let mut seen = vec![false; n_env];
        for &index in indices {
            if index >= n_env {
                return Err(SparseError::InducingIndex {
                    index,
                    message: "out of range",
                    n_env,
                });
            }
            if std::mem::replace(&mut seen[index], true) {
                return Err(SparseError::InducingIndex {
                    index,
                    message: "given twice",
                    n_env,
                });
            }
        }
        let f = self.descriptor.n_features();
        let n_transfer = self.transfer.n_env();
        let mut rows = Vec::with_capacity(indices.len() * f);
        for &i in indices {
            let (part, j) = if i < n_transfer {
                (&self.transfer, i)
            } else {
                (&self.data, i - n_transfer)
            };
            rows.extend_from_slice(&part.features()[j * f..(j + 1) * f]);
        }
        Ok(rows)
    }

    /// Whether the next training with `iteration` redraws the inducing points.
    pub fn sparsification_due(&self, iteration: Option<u64>) -> bool {
        match self.settings.sparsifier {
            Sparsifier::Cur { m_points } => {
                self.inducing.is_none()
                    || match iteration {
                        None => true,
                        Some(it) => self.n_env() < 10 * m_points || it % 25 == 0,
                    }
            }
            Sparsifier::All => true,
            Sparsifier::Fixed => false,
        }
    }

    /// Redraws the inducing points if the schedule says so (CUR from `opts.seed`);
    /// true if it did. [`SparseGpr::training_set`] does this first; a pool that
    /// builds every copy's training set with [`SparseGpr::training_set_for`] calls
    /// it alone in the coordinator.
    pub fn sparsify(&mut self, opts: TrainOptions) -> Result<bool, SparseError> {
        if self.is_empty() {
            return Err(SparseError::NoData);
        }
        if !self.sparsification_due(opts.iteration) {
            return Ok(false);
        }
        let indices = match self.settings.sparsifier {
            Sparsifier::Cur { m_points } => {
                let all = self.transfer.concat(&self.data)?;
                let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
                rng.set_stream(1);
                cur_select(all.features(), all.n_features(), m_points, &mut rng)?
            }
            Sparsifier::All | Sparsifier::Fixed => (0..self.n_env()).collect(),
        };
        self.set_inducing_indices(&indices)?;
        Ok(true)
    }

    /// The training set for this training: the inducing points redrawn if due
    /// (CUR from `opts.seed`), the targets centred. This is what the workers of
    /// a pooled search need, once per training.
    pub fn training_set(&mut self, opts: TrainOptions) -> Result<TrainingSet<K>, SparseError> {
        self.training_set_reporting(opts).map(|(set, _)| set)
    }

    fn training_set_reporting(
        &mut self,
        opts: TrainOptions,
    ) -> Result<(TrainingSet<K>, bool), SparseError> {
        let sparsified = self.sparsify(opts)?;
        let inducing = match &self.inducing {
            Some((x, _)) => x.clone(),
            None => return Err(SparseError::NoInducing),
        };
        Ok((self.assemble(inducing)?, sparsified))
    }

    /// The training set with the inducing points `indices` (as
    /// [`SparseGpr::inducing_indices`] gives them), leaving the model's own
    /// inducing points alone: a copy holding the same structures builds, from
    /// the indices another copy drew, the same training set bit for bit.
    pub fn training_set_for(&self, indices: &[usize]) -> Result<TrainingSet<K>, SparseError> {
        let rows = self.inducing_rows(indices)?;
        self.assemble(rows)
    }

    /// The training set of all structures (transfer data first) with these
    /// inducing points: the targets centred when `centralize`.
    fn assemble(&self, inducing: Vec<f64>) -> Result<TrainingSet<K>, SparseError> {
        let all = self.transfer.concat(&self.data)?;
        if all.is_empty() {
            return Err(SparseError::NoData);
        }
        let mean = if self.settings.centralize {
            all.energies().iter().sum::<f64>() / all.len() as f64
        } else {
            0.0
        };
        let s = &self.settings;
        TrainingSet::new(
            self.kernel.clone(),
            all,
            mean,
            inducing,
            s.sigma_f,
            s.jitter,
            s.unc_jitter,
            s.train_uncertainty,
        )
    }

    /// Installs a trained state (from [`TrainingSet::fit`], here or on another
    /// process); its θ becomes the model's.
    pub fn install(&mut self, predictor: Predictor<K>) -> Result<(), SparseError> {
        if predictor.n_features() != self.descriptor.n_features() {
            return Err(super::data::shape(format!(
                "a predictor of {} features for a descriptor of {}",
                predictor.n_features(),
                self.descriptor.n_features()
            )));
        }
        self.kernel = predictor.kernel().clone();
        self.predictor = Some(predictor);
        Ok(())
    }

    /// Trains serially: the training set, the θ search from `opts.seed`, the fit.
    pub fn train(
        &mut self,
        opts: TrainOptions,
        ws: &mut SparseModelWorkspace<D>,
    ) -> Result<TrainReport, SparseError> {
        let (set, sparsified) = self.training_set_reporting(opts)?;
        let mut outcomes = Vec::new();
        for theta in starts(set.kernel(), self.settings.n_optimize, opts.seed) {
            outcomes.push(set.evaluate(&theta, &mut ws.lml)?);
        }
        let best = best_theta(&outcomes);
        let theta = match best {
            Some(b) => outcomes[b].theta.clone(),
            None => set.kernel().log_theta().to_vec(),
        };
        let (predictor, fit) = set.fit(&theta)?;
        let report = TrainReport {
            n_structures: set.data().len(),
            n_env: set.data().n_env(),
            n_inducing: set.n_inducing(),
            sparsified,
            outcomes,
            best,
            fit,
        };
        self.install(predictor)?;
        Ok(report)
    }

    fn trained(&self) -> Result<&Predictor<K>, SparseError> {
        self.predictor.as_ref().ok_or(SparseError::NotTrained)
    }

    fn prior_energy(
        &self,
        atoms: &Atoms,
        ws: &mut SparseModelWorkspace<D>,
    ) -> Result<f64, SparseError> {
        Ok(match &self.prior {
            Some(p) => p.energy(atoms, &mut ws.prior)?,
            None => 0.0,
        })
    }

    /// The energy (AGOX's `predict_energy`).
    pub fn predict_energy(
        &self,
        atoms: &Atoms,
        ws: &mut SparseModelWorkspace<D>,
    ) -> Result<f64, SparseError> {
        let p = self.trained()?;
        self.descriptor
            .compute(atoms, false, &mut ws.descriptor, &mut ws.features)?;
        let gp = p.predict(ws.features.features(), false, &mut ws.predict)?;
        Ok(gp.energy + self.prior_energy(atoms, ws)? + self.sae(atoms))
    }

    /// Energy and σ (AGOX's `predict_energy_and_uncertainty`).
    pub fn predict_energy_sigma(
        &self,
        atoms: &Atoms,
        ws: &mut SparseModelWorkspace<D>,
    ) -> Result<(f64, f64), SparseError> {
        let p = self.trained()?;
        self.descriptor
            .compute(atoms, false, &mut ws.descriptor, &mut ws.features)?;
        let gp = p.predict(ws.features.features(), true, &mut ws.predict)?;
        let sigma = gp.sigma.ok_or(SparseError::NoUncertainty)?;
        Ok((
            gp.energy + self.prior_energy(atoms, ws)? + self.sae(atoms),
            sigma,
        ))
    }

    /// Local energies `k_cᵀα + sae(Z_c)` per atom (AGOX's `predict_local_energy`;
    /// no prior, no mean), for a local descriptor.
    pub fn predict_local_energies(
        &self,
        atoms: &Atoms,
        ws: &mut SparseModelWorkspace<D>,
        out: &mut Vec<f64>,
    ) -> Result<(), SparseError> {
        if self.descriptor.kind() != DescriptorKind::Local {
            return Err(SparseError::NotLocal {
                descriptor: self.descriptor.name(),
            });
        }
        let p = self.trained()?;
        self.descriptor
            .compute(atoms, false, &mut ws.descriptor, &mut ws.features)?;
        p.local_energies(ws.features.features(), &mut ws.predict, out)?;
        for (e, &z) in out.iter_mut().zip(&atoms.numbers) {
            *e += self.sae_of(z);
        }
        Ok(())
    }

    /// E (and σ with `sigma`) and the forces `−∂(e·E + s·σ)/∂r` into `forces`,
    /// in one descriptor evaluation and one pass over the inducing points; the
    /// prior's forces enter with weight `e`.
    #[allow(clippy::too_many_arguments)]
    fn combined(
        &self,
        atoms: &Atoms,
        e: f64,
        s: f64,
        sigma: bool,
        ws: &mut SparseModelWorkspace<D>,
        forces: &mut Vec<[f64; 3]>,
        descriptor_done: bool,
    ) -> Result<(f64, Option<f64>), SparseError> {
        let p = self.trained()?;
        if !descriptor_done {
            self.descriptor
                .compute(atoms, true, &mut ws.descriptor, &mut ws.features)?;
        }
        let gp = p.forces(&ws.features, e, s, sigma, &mut ws.predict, forces)?;
        let mut energy = gp.energy + self.sae(atoms);
        if let Some(prior) = &self.prior {
            let pe = prior.energy_forces(atoms, &mut ws.prior, &mut ws.prior_forces)?;
            energy += pe;
            if e != 0.0 {
                for (f, pf) in forces.iter_mut().zip(&ws.prior_forces) {
                    for x in 0..3 {
                        f[x] += e * pf[x];
                    }
                }
            }
        }
        Ok((energy, gp.sigma))
    }

    /// Energy and forces (AGOX's `predict_forces`, forces into `forces`).
    pub fn predict_forces(
        &self,
        atoms: &Atoms,
        ws: &mut SparseModelWorkspace<D>,
        forces: &mut Vec<[f64; 3]>,
    ) -> Result<f64, SparseError> {
        Ok(self.combined(atoms, 1.0, 0.0, false, ws, forces, false)?.0)
    }

    /// Energy, forces and, with a trained uncertainty, σ and −∂σ/∂r (AGOX's
    /// `predict_uncertainty_forces`).
    pub fn predict(
        &self,
        atoms: &Atoms,
        ws: &mut SparseModelWorkspace<D>,
    ) -> Result<SparsePrediction, SparseError> {
        let mut forces = Vec::new();
        let (energy, _) = self.combined(atoms, 1.0, 0.0, false, ws, &mut forces, false)?;
        let (sigma, sigma_forces) = if self.trained()?.has_uncertainty() {
            let mut sf = Vec::new();
            let (_, sigma) = self.combined(atoms, 0.0, 1.0, true, ws, &mut sf, true)?;
            (sigma, Some(sf))
        } else {
            (None, None)
        };
        Ok(SparsePrediction {
            energy,
            forces,
            sigma,
            sigma_forces,
        })
    }
}

/// What [`SparseGpr::record`] computes besides the features.
struct Record {
    target: f64,
    n_atoms: usize,
    force_targets: Option<Vec<f64>>,
}

fn push(
    data: &mut SparseData,
    features: &FeatureSet,
    record: Record,
    noise: f64,
) -> Result<(), SparseError> {
    let forces = record
        .force_targets
        .as_deref()
        .map(|t| (record.n_atoms, features.gradient(), t));
    data.push(features.features(), record.target, noise, forces)
}

impl<D: Descriptor, K: IsotropicKernel> Surrogate for SparseGpr<D, K> {
    type Workspace = SparseModelWorkspace<D>;
    type Error = SparseError;

    fn acquisition(
        &self,
        atoms: &Atoms,
        kappa: f64,
        ws: &mut Self::Workspace,
        forces: &mut Vec<[f64; 3]>,
    ) -> Result<Acquisition, SparseError> {
        let (energy, sigma) = self.combined(atoms, 1.0, -kappa, true, ws, forces, false)?;
        let sigma = sigma.ok_or(SparseError::NoUncertainty)?;
        Ok(Acquisition {
            value: energy - kappa * sigma,
            energy,
            sigma,
        })
    }
}
