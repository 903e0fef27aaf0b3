//! The surrogate as GOFEE uses it: the Fingerprint, the repulsive prior and the
//! Gaussian process together, taking structures and energies in and giving
//! energies, forces and uncertainties out (AGOX's `GPR` with its descriptor and
//! prior).
//!
//! Training targets are `E − E_prior` per structure; AGOX's single-atom energies
//! are zero in GOFEE and are left out. AGOX's `EnergyFilter` keeps structures
//! below `E_min + 1000 eV` at every training; here a structure is judged when it
//! is added (against the lowest energy added so far, itself included) and,
//! once in, stays in, so that the training rows only ever grow and a worker's
//! copy needs only the new rows. The two differ only if a structure more than
//! 1000 eV above a later minimum was added earlier.

use agox_atoms::{Atoms, CalcError, Calculator, Evaluation};

use crate::descriptor::{Descriptor, DescriptorError, FeatureSet};
use crate::fingerprint::{Fingerprint, FingerprintParams, FingerprintWorkspace};
use crate::gpr::{Gpr, GprError, GprSettings, PredictWorkspace, TrainReport};
use crate::kernel::Kernel;
use crate::prior::{PriorError, PriorWorkspace, Repulsive};

/// AGOX's `EnergyFilter` window (eV).
pub const ENERGY_WINDOW: f64 = 1000.0;

/// Why the model cannot do what was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// The descriptor failed.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    /// The prior failed.
    #[error(transparent)]
    Prior(#[from] PriorError),
    /// The Gaussian process failed.
    #[error(transparent)]
    Gpr(#[from] GprError),
    /// A training energy that is not a finite number.
    #[error("training energy {energy} is not finite")]
    Energy {
        /// The energy.
        energy: f64,
    },
}

/// Buffers of the model's calls; keep one per caller.
#[derive(Debug, Default)]
pub struct ModelWorkspace {
    fingerprint: FingerprintWorkspace,
    features: FeatureSet,
    prior: PriorWorkspace,
    prior_forces: Vec<[f64; 3]>,
    gp: PredictWorkspace,
    combined: Vec<f64>,
}

/// A full prediction for one structure.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Energy (eV): the GP mean, the training mean and the prior.
    pub energy: f64,
    /// Standard deviation σ (eV).
    pub sigma: f64,
    /// Forces −∂E/∂r (eV/Å), prior included.
    pub forces: Vec<[f64; 3]>,
    /// −∂σ/∂r (eV/Å), AGOX's `predict_uncertainty_forces`.
    pub sigma_forces: Vec<[f64; 3]>,
}

/// The lower confidence bound `E − κσ` at one structure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Acquisition {
    /// E − κσ.
    pub value: f64,
    /// E.
    pub energy: f64,
    /// σ.
    pub sigma: f64,
}

/// Descriptor, prior and Gaussian process.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GprModel {
    descriptor: Fingerprint,
    prior: Option<Repulsive>,
    gpr: Gpr,
    e_min: Option<f64>,
}

impl GprModel {
    /// A model from its parts.
    pub fn new(
        descriptor: Fingerprint,
        prior: Option<Repulsive>,
        kernel: Kernel,
        settings: GprSettings,
    ) -> Result<Self, ModelError> {
        let gpr = Gpr::new(descriptor.n_features(), kernel, settings)?;
        Ok(GprModel {
            descriptor,
            prior,
            gpr,
            e_min: None,
        })
    }

    /// GOFEE's model with AGOX's settings for a search placing atoms `search` on
    /// `template`: the default Fingerprint, `Repulsive()`, GOFEE's kernel.
    pub fn gofee(template: &Atoms, search: &[u8]) -> Result<Self, ModelError> {
        let descriptor = Fingerprint::for_search(FingerprintParams::default(), template, search)?;
        Self::new(
            descriptor,
            Some(Repulsive::default()),
            Kernel::default(),
            GprSettings::default(),
        )
    }

    /// The descriptor.
    pub fn descriptor(&self) -> &Fingerprint {
        &self.descriptor
    }

    /// The prior, if any.
    pub fn prior(&self) -> Option<&Repulsive> {
        self.prior.as_ref()
    }

    /// The Gaussian process.
    pub fn gpr(&self) -> &Gpr {
        &self.gpr
    }

    /// The Gaussian process, to train it step by step or install a state.
    pub fn gpr_mut(&mut self) -> &mut Gpr {
        &mut self.gpr
    }

    fn prior_energy(&self, atoms: &Atoms, ws: &mut ModelWorkspace) -> Result<f64, ModelError> {
        Ok(match &self.prior {
            Some(p) => p.energy(atoms, &mut ws.prior)?,
            None => 0.0,
        })
    }

    /// Adds a structure and its energy to the training rows, unless it lies
    /// [`ENERGY_WINDOW`] or more above the lowest energy added. Returns whether it
    /// was added.
    pub fn add(
        &mut self,
        atoms: &Atoms,
        energy: f64,
        ws: &mut ModelWorkspace,
    ) -> Result<bool, ModelError> {
        if !energy.is_finite() {
            return Err(ModelError::Energy { energy });
        }
        let e_min = self.e_min.map_or(energy, |m| m.min(energy));
        if energy >= e_min + ENERGY_WINDOW {
            return Ok(false);
        }
        self.descriptor
            .compute(atoms, false, &mut ws.fingerprint, &mut ws.features)?;
        let target = energy - self.prior_energy(atoms, ws)?;
        self.gpr.push(ws.features.center(0), target)?;
        self.e_min = Some(e_min);
        Ok(true)
    }

    /// Trains serially from `seed` (see [`Gpr::train`]).
    pub fn train(&mut self, seed: u64) -> Result<TrainReport, ModelError> {
        Ok(self.gpr.train(seed)?)
    }

    /// Energy and σ, without derivatives (AGOX's `predict_energy_and_uncertainty`).
    pub fn predict_energy_sigma(
        &self,
        atoms: &Atoms,
        ws: &mut ModelWorkspace,
    ) -> Result<(f64, f64), ModelError> {
        self.descriptor
            .compute(atoms, false, &mut ws.fingerprint, &mut ws.features)?;
        let p = self.gpr.predict(ws.features.center(0), &mut ws.gp)?;
        Ok((p.energy + self.prior_energy(atoms, ws)?, p.sigma))
    }

    /// Energy, σ, forces and σ's forces.
    pub fn predict(
        &self,
        atoms: &Atoms,
        ws: &mut ModelWorkspace,
    ) -> Result<Prediction, ModelError> {
        self.descriptor
            .compute(atoms, true, &mut ws.fingerprint, &mut ws.features)?;
        let p = self
            .gpr
            .predict_with_gradient(ws.features.center(0), &mut ws.gp)?;
        let n = atoms.len();
        let mut forces = vec![[0.0; 3]; n];
        let mut sigma_forces = vec![[0.0; 3]; n];
        ws.features
            .contract_gradient(0, ws.gp.energy_gradient(), &mut forces);
        ws.features
            .contract_gradient(0, ws.gp.sigma_gradient(), &mut sigma_forces);
        let mut energy = p.energy;
        if let Some(prior) = &self.prior {
            energy += prior.energy_forces(atoms, &mut ws.prior, &mut ws.prior_forces)?;
            add_forces(&mut forces, &ws.prior_forces);
        }
        Ok(Prediction {
            energy,
            sigma: p.sigma,
            forces,
            sigma_forces,
        })
    }

    /// `E − κσ` and its forces `−∂(E − κσ)/∂r` into `forces` (resized,
    /// overwritten), in one descriptor evaluation and one pass over the rows.
    pub fn acquisition(
        &self,
        atoms: &Atoms,
        kappa: f64,
        ws: &mut ModelWorkspace,
        forces: &mut Vec<[f64; 3]>,
    ) -> Result<Acquisition, ModelError> {
        self.descriptor
            .compute(atoms, true, &mut ws.fingerprint, &mut ws.features)?;
        let p = self
            .gpr
            .predict_with_gradient(ws.features.center(0), &mut ws.gp)?;
        ws.combined.clear();
        ws.combined.extend(
            ws.gp
                .energy_gradient()
                .iter()
                .zip(ws.gp.sigma_gradient())
                .map(|(e, s)| e - kappa * s),
        );
        forces.clear();
        forces.resize(atoms.len(), [0.0; 3]);
        ws.features.contract_gradient(0, &ws.combined, forces);
        let mut energy = p.energy;
        if let Some(prior) = &self.prior {
            energy += prior.energy_forces(atoms, &mut ws.prior, &mut ws.prior_forces)?;
            add_forces(forces, &ws.prior_forces);
        }
        Ok(Acquisition {
            value: energy - kappa * p.sigma,
            energy,
            sigma: p.sigma,
        })
    }
}

fn add_forces(a: &mut [[f64; 3]], b: &[[f64; 3]]) {
    for (x, y) in a.iter_mut().zip(b) {
        for k in 0..3 {
            x[k] += y[k];
        }
    }
}

/// A surrogate model an acquisition can relax in: `E − κσ` and its forces at a
/// structure, in one call. [`GprModel`] and the sparse GP
/// ([`SparseGpr`](crate::sgpr::SparseGpr)) implement it; references, boxes and
/// `Arc`s of a surrogate are surrogates too.
pub trait Surrogate {
    /// The scratch of a call; keep one per caller.
    type Workspace: Default + Send;
    /// Why a call failed.
    type Error: std::fmt::Display;

    /// `E − κσ` and its forces `−∂(E − κσ)/∂r` into `forces` (resized, overwritten).
    fn acquisition(
        &self,
        atoms: &Atoms,
        kappa: f64,
        ws: &mut Self::Workspace,
        forces: &mut Vec<[f64; 3]>,
    ) -> Result<Acquisition, Self::Error>;
}

impl Surrogate for GprModel {
    type Workspace = ModelWorkspace;
    type Error = ModelError;

    fn acquisition(
        &self,
        atoms: &Atoms,
        kappa: f64,
        ws: &mut ModelWorkspace,
        forces: &mut Vec<[f64; 3]>,
    ) -> Result<Acquisition, ModelError> {
        GprModel::acquisition(self, atoms, kappa, ws, forces)
    }
}

macro_rules! forward_surrogate {
    ($($wrapper:ty),*) => {$(
        impl<S: Surrogate + ?Sized> Surrogate for $wrapper {
            type Workspace = S::Workspace;
            type Error = S::Error;

            fn acquisition(
                &self,
                atoms: &Atoms,
                kappa: f64,
                ws: &mut S::Workspace,
                forces: &mut Vec<[f64; 3]>,
            ) -> Result<Acquisition, S::Error> {
                (**self).acquisition(atoms, kappa, ws, forces)
            }
        }
    )*};
}

forward_surrogate!(&S, Box<S>, std::sync::Arc<S>);

/// GOFEE's lower-confidence-bound acquisition `E − κσ` as a calculator, so a
/// candidate relaxes in it with the ordinary optimizers (AGOX's
/// `LowerConfidenceBoundAcquisitor` calculator; κ = 2 in GOFEE's config). It
/// holds any [`Surrogate`]: a reference (a worker relaxing in its own copy), an
/// `Arc`, or the model itself.
pub struct Lcb<M: Surrogate> {
    model: M,
    /// κ.
    pub kappa: f64,
    ws: M::Workspace,
    forces: Vec<[f64; 3]>,
    last: Option<Acquisition>,
}

impl<M: Surrogate + std::fmt::Debug> std::fmt::Debug for Lcb<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lcb")
            .field("model", &self.model)
            .field("kappa", &self.kappa)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl<M: Surrogate> Lcb<M> {
    /// The acquisition of `model` with weight `kappa`.
    pub fn new(model: M, kappa: f64) -> Self {
        Lcb {
            model,
            kappa,
            ws: M::Workspace::default(),
            forces: Vec::new(),
            last: None,
        }
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// Energy and σ behind the last value computed.
    pub fn last(&self) -> Option<Acquisition> {
        self.last
    }
}

impl<M: Surrogate + Send> Calculator for Lcb<M> {
    fn name(&self) -> &'static str {
        "lcb"
    }

    fn calculate(&mut self, atoms: &Atoms, _stress: bool) -> Result<Evaluation, CalcError> {
        let a = self
            .model
            .acquisition(atoms, self.kappa, &mut self.ws, &mut self.forces)
            .map_err(|e| CalcError::Invalid {
                calculator: "lcb",
                message: e.to_string(),
            })?;
        self.last = Some(a);
        Ok(Evaluation {
            energy: a.value,
            forces: self.forces.clone(),
            stress: None,
            energies: None,
        })
    }
}

#[cfg(test)]
mod tests;
