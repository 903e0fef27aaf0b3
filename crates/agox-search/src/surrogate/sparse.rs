//! The sparse Gaussian process ([`SparseGpr`], AGOX's `SparseGPR`) as a
//! [`Surrogate`]: [`SparseModel`].
//!
//! * **Rows** are the training structures themselves (positions, numbers, energy
//!   and, when the model trains on forces, forces): a copy recomputes their
//!   features, the same function of the same numbers, so every copy holds the
//!   same data bit for bit — and a structure (≈ 0.3 kB for Au₈Cu₄) travels
//!   instead of its features (12 × 120 numbers, 11.5 kB; with forces a 0.4 MB
//!   gradient block).
//! * **The plan of a training** is the inducing points: the driver redraws them
//!   when AGOX's schedule says so ([`Surrogate::prepare`]: CUR from the training's
//!   seed) and every `rows` update carries their indices, so the training state
//!   reaches the workers once per training, with the rows. Each copy builds the
//!   training set from its own structures and those indices
//!   ([`SparseGpr::training_set_for`]) the first time a unit needs it.
//! * **A search unit** is one θ (the current θ, then `n_optimize − 1` draws
//!   uniform in the log bounds from the training's seed); its outcome the
//!   log-likelihood there or why θ is inadmissible. The choice is the highest
//!   finite log-likelihood, ties to the first unit ([`best_theta`]): a non-finite
//!   value is never selected.
//! * **The state** is the [`Predictor`] fitted at the chosen θ in the driver (α,
//!   the inducing points and the uncertainty matrix), which every copy installs to
//!   predict and relax in `E − κσ`.

use agox_atoms::Atoms;
use agox_models::descriptor::{Descriptor, DescriptorError, DescriptorKind, FeatureSet};
use agox_models::fingerprint::{Fingerprint, FingerprintWorkspace};
use agox_models::isotropic::ConstantRbf;
use agox_models::model::Surrogate as _;
use agox_models::sgpr::{
    best_theta, starts, LmlWorkspace, Predictor, SparseError, SparseGpr, SparseModelWorkspace,
    ThetaOutcome, TrainOptions, TrainingSet,
};
use agox_models::simple_fingerprint::{SimpleFingerprint, SimpleFingerprintWorkspace};
use serde::{Deserialize, Serialize};

use super::{AcquisitionValue, Surrogate};

/// Module type name of the pooled sparse Gaussian process.
pub const SPARSE_GPR_TYPE_NAME: &str = "Model.sparse_gpr";

/// The descriptor of a sparse model: local (AGOX's `SimpleFingerprint`, one centre
/// per atom) or global (the Fingerprint, one centre per structure).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SparseDescriptor {
    /// AGOX's `SimpleFingerprint`.
    SimpleFingerprint(SimpleFingerprint),
    /// The global Fingerprint.
    Fingerprint(Box<Fingerprint>),
}

/// Buffers of a [`SparseDescriptor`].
#[derive(Debug, Default)]
pub struct SparseDescriptorWorkspace {
    simple: SimpleFingerprintWorkspace,
    global: FingerprintWorkspace,
}

impl Descriptor for SparseDescriptor {
    type Workspace = SparseDescriptorWorkspace;

    fn name(&self) -> &'static str {
        match self {
            SparseDescriptor::SimpleFingerprint(d) => d.name(),
            SparseDescriptor::Fingerprint(d) => d.name(),
        }
    }

    fn kind(&self) -> DescriptorKind {
        match self {
            SparseDescriptor::SimpleFingerprint(d) => d.kind(),
            SparseDescriptor::Fingerprint(d) => d.kind(),
        }
    }

    fn n_features(&self) -> usize {
        match self {
            SparseDescriptor::SimpleFingerprint(d) => d.n_features(),
            SparseDescriptor::Fingerprint(d) => d.n_features(),
        }
    }

    fn n_centers(&self, atoms: &Atoms) -> usize {
        match self {
            SparseDescriptor::SimpleFingerprint(d) => d.n_centers(atoms),
            SparseDescriptor::Fingerprint(d) => d.n_centers(atoms),
        }
    }

    fn compute(
        &self,
        atoms: &Atoms,
        gradient: bool,
        ws: &mut SparseDescriptorWorkspace,
        out: &mut FeatureSet,
    ) -> Result<(), DescriptorError> {
        match self {
            SparseDescriptor::SimpleFingerprint(d) => {
                d.compute(atoms, gradient, &mut ws.simple, out)
            }
            SparseDescriptor::Fingerprint(d) => d.compute(atoms, gradient, &mut ws.global, out),
        }
    }
}

/// One training structure as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingStructure {
    /// The structure.
    pub atoms: Atoms,
    /// Its energy (eV).
    pub energy: f64,
    /// Its forces, kept only when the model trains on forces.
    pub forces: Option<Vec<[f64; 3]>>,
}

/// The `rows` of a sparse model: structures from `start` on, and the inducing
/// points of the training being prepared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SparseRows {
    /// Index of the first structure.
    pub start: usize,
    /// The structures.
    pub structures: Vec<TrainingStructure>,
    /// Indices of the inducing points among the environments of all structures
    /// (`None` before the first training).
    pub inducing: Option<Vec<usize>>,
}

/// Why a sparse model cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SparseModelError {
    /// The model itself.
    #[error(transparent)]
    Sparse(#[from] SparseError),
    /// Rows that do not continue this copy's.
    #[error("rows from structure {start} given to a copy holding {held}")]
    Gap {
        /// The first row given.
        start: usize,
        /// Rows held.
        held: usize,
    },
    /// A search unit or a fit before the inducing points were chosen.
    #[error("no inducing points: the training was not prepared")]
    NotPrepared,
}

/// AGOX's `SparseGPR` on the pool; see the module docs.
#[derive(Debug, Serialize, Deserialize)]
pub struct SparseModel {
    model: SparseGpr<SparseDescriptor>,
    structures: Vec<TrainingStructure>,
    /// The training set of the current rows and inducing points, built on first
    /// use and dropped once a state is installed.
    #[serde(skip)]
    set: Option<TrainingSet<ConstantRbf>>,
    #[serde(skip)]
    lml: LmlWorkspace,
}

impl SparseModel {
    /// A model without structures.
    pub fn new(model: SparseGpr<SparseDescriptor>) -> Self {
        SparseModel {
            model,
            structures: Vec::new(),
            set: None,
            lml: LmlWorkspace::default(),
        }
    }

    /// The sparse Gaussian process.
    pub fn model(&self) -> &SparseGpr<SparseDescriptor> {
        &self.model
    }

    fn push(
        &mut self,
        s: TrainingStructure,
        ws: &mut SparseModelWorkspace<SparseDescriptor>,
    ) -> Result<(), SparseError> {
        self.model
            .add(&s.atoms, s.energy, s.forces.as_deref(), ws)?;
        self.structures.push(s);
        self.set = None;
        Ok(())
    }

    /// The training set of the current structures and inducing points, built on
    /// first use.
    fn training_set(&mut self) -> Result<&TrainingSet<ConstantRbf>, SparseModelError> {
        let set = match self.set.take() {
            Some(set) => set,
            None => {
                let indices = self
                    .model
                    .inducing_indices()
                    .ok_or(SparseModelError::NotPrepared)?;
                self.model.training_set_for(indices)?
            }
        };
        Ok(self.set.insert(set))
    }

    fn fit(&mut self, theta: &[f64]) -> Result<(), SparseModelError> {
        let (predictor, _) = self.training_set()?.fit(theta)?;
        self.model.install(predictor)?;
        self.set = None;
        Ok(())
    }
}

impl Surrogate for SparseModel {
    const TYPE_NAME: &'static str = SPARSE_GPR_TYPE_NAME;
    const KIND: &'static str = "sparse_gpr";
    type Rows = SparseRows;
    type State = Predictor<ConstantRbf>;
    type Start = Vec<f64>;
    type Outcome = ThetaOutcome;
    type Workspace = SparseModelWorkspace<SparseDescriptor>;
    type Error = SparseModelError;

    fn add(
        &mut self,
        atoms: &Atoms,
        energy: f64,
        forces: Option<&[[f64; 3]]>,
        ws: &mut Self::Workspace,
    ) -> Result<bool, SparseModelError> {
        // AGOX's SparseGPR filters nothing.
        let forces = forces
            .filter(|_| self.model.settings().train_forces)
            .map(<[_]>::to_vec);
        self.push(
            TrainingStructure {
                atoms: atoms.clone(),
                energy,
                forces,
            },
            ws,
        )?;
        Ok(true)
    }

    fn n_rows(&self) -> usize {
        self.structures.len()
    }

    fn rows_since(&self, start: usize) -> SparseRows {
        SparseRows {
            start,
            structures: self.structures.get(start..).unwrap_or_default().to_vec(),
            inducing: self.model.inducing_indices().map(<[usize]>::to_vec),
        }
    }

    fn rows_start(rows: &SparseRows) -> usize {
        rows.start
    }

    fn append_rows(&mut self, rows: &SparseRows) -> Result<(), SparseModelError> {
        let held = self.structures.len();
        if rows.start > held {
            return Err(SparseModelError::Gap {
                start: rows.start,
                held,
            });
        }
        let mut ws = SparseModelWorkspace::default();
        for s in rows.structures.iter().skip(held - rows.start) {
            self.push(s.clone(), &mut ws)?;
        }
        if let Some(indices) = &rows.inducing {
            if self.model.inducing_indices() != Some(indices.as_slice()) {
                self.model.set_inducing_indices(indices)?;
            }
            self.set = None;
        }
        Ok(())
    }

    fn prepare(&mut self, seed: u64, iteration: Option<u64>) -> Result<bool, SparseModelError> {
        self.model.sparsify(TrainOptions { iteration, seed })?;
        self.set = None;
        // The inducing indices travel with the rows, whether redrawn or not.
        Ok(true)
    }

    fn search_starts(&self, seed: u64) -> Vec<Vec<f64>> {
        starts(self.model.kernel(), self.model.settings().n_optimize, seed)
    }

    fn run_start(&mut self, start: &Vec<f64>) -> Result<ThetaOutcome, SparseModelError> {
        // The workspace is taken out while the training set borrows the model.
        let mut lml = std::mem::take(&mut self.lml);
        let outcome = self.training_set()?.evaluate(start, &mut lml);
        self.lml = lml;
        Ok(outcome?)
    }

    fn conclude(&mut self, outcomes: &[ThetaOutcome]) -> Result<Vec<f64>, SparseModelError> {
        let theta = match best_theta(outcomes) {
            Some(b) => outcomes[b].theta.clone(),
            None => self.hyperparameters(),
        };
        self.fit(&theta)?;
        Ok(theta)
    }

    fn score(outcome: &ThetaOutcome) -> f64 {
        outcome.log_likelihood().map_or(f64::INFINITY, |l| -l)
    }

    fn restore(&mut self, hyperparameters: &[f64]) -> Result<(), SparseModelError> {
        self.fit(hyperparameters)
    }

    fn hyperparameters(&self) -> Vec<f64> {
        use agox_models::isotropic::IsotropicKernel;
        self.model.kernel().log_theta().to_vec()
    }

    fn state(&self) -> Option<&Predictor<ConstantRbf>> {
        self.model.predictor()
    }

    fn install(&mut self, state: Predictor<ConstantRbf>) -> Result<(), SparseModelError> {
        self.model.install(state)?;
        self.set = None;
        Ok(())
    }

    fn energy_sigma(
        &self,
        atoms: &Atoms,
        ws: &mut Self::Workspace,
    ) -> Result<(f64, f64), SparseModelError> {
        Ok(self.model.predict_energy_sigma(atoms, ws)?)
    }

    fn acquisition(
        &self,
        atoms: &Atoms,
        kappa: f64,
        ws: &mut Self::Workspace,
        forces: &mut Vec<[f64; 3]>,
    ) -> Result<AcquisitionValue, SparseModelError> {
        let a = self.model.acquisition(atoms, kappa, ws, forces)?;
        Ok(AcquisitionValue {
            value: a.value,
            energy: a.energy,
            sigma: a.sigma,
        })
    }
}
