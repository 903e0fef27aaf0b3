//! GOFEE's Gaussian process ([`GprModel`]) as a [`Surrogate`]: the rows are the
//! Fingerprint rows and targets, a search unit is one L-BFGS-B start θ₀ (the
//! current θ, then draws uniform in the log bounds), its outcome θ and −log P, the
//! choice the lowest −log P (ties to the first start), the state α, the packed
//! Cholesky factor and the mean.

use agox_atoms::Atoms;
use agox_models::gpr::{best_start, StartOutcome, TrainedState, TrainingRows};
use agox_models::kernel::N_THETA;
use agox_models::model::{GprModel, ModelError, ModelWorkspace};

use super::{AcquisitionValue, Surrogate};

/// Module type name of the pooled Gaussian process.
pub const GPR_TYPE_NAME: &str = "Model.gpr";

fn theta_of(h: &[f64]) -> Result<[f64; N_THETA], ModelError> {
    <[f64; N_THETA]>::try_from(h).map_err(|_| {
        ModelError::Gpr(agox_models::gpr::GprError::Optimizer {
            theta0: [f64::NAN; N_THETA],
            message: format!("expected {N_THETA} hyperparameters, got {}", h.len()),
        })
    })
}

impl Surrogate for GprModel {
    const TYPE_NAME: &'static str = GPR_TYPE_NAME;
    const KIND: &'static str = "gpr";
    type Rows = TrainingRows;
    type State = TrainedState;
    type Start = [f64; N_THETA];
    type Outcome = StartOutcome;
    type Workspace = ModelWorkspace;
    type Error = ModelError;

    fn add(
        &mut self,
        atoms: &Atoms,
        energy: f64,
        _forces: Option<&[[f64; 3]]>,
        ws: &mut ModelWorkspace,
    ) -> Result<bool, ModelError> {
        GprModel::add(self, atoms, energy, ws)
    }

    fn n_rows(&self) -> usize {
        self.gpr().data().len()
    }

    fn rows_since(&self, start: usize) -> TrainingRows {
        self.gpr().data().rows_since(start)
    }

    fn rows_start(rows: &TrainingRows) -> usize {
        rows.start
    }

    fn append_rows(&mut self, rows: &TrainingRows) -> Result<(), ModelError> {
        let held = self.gpr().data().len();
        if rows.start >= held || rows.targets.is_empty() {
            return Ok(self.gpr_mut().append(rows)?);
        }
        // Skip the rows this copy holds already.
        let skip = (held - rows.start).min(rows.targets.len());
        let tail = TrainingRows {
            start: held,
            n_features: rows.n_features,
            x: rows.x[(skip * rows.n_features).min(rows.x.len())..].to_vec(),
            targets: rows.targets[skip..].to_vec(),
        };
        Ok(self.gpr_mut().append(&tail)?)
    }

    fn search_starts(&self, seed: u64) -> Vec<[f64; N_THETA]> {
        self.gpr().starts(seed)
    }

    fn run_start(&mut self, start: &[f64; N_THETA]) -> Result<StartOutcome, ModelError> {
        Ok(self.gpr_mut().optimize_start(start)?)
    }

    fn conclude(&mut self, outcomes: &[StartOutcome]) -> Result<Vec<f64>, ModelError> {
        let theta = match best_start(outcomes) {
            Some(b) => outcomes[b].theta,
            None => self.gpr().kernel().theta,
        };
        self.gpr_mut().fit(&theta)?;
        Ok(theta.to_vec())
    }

    fn score(outcome: &StartOutcome) -> f64 {
        outcome.neg_lml
    }

    fn restore(&mut self, hyperparameters: &[f64]) -> Result<(), ModelError> {
        let theta = theta_of(hyperparameters)?;
        self.gpr_mut().fit(&theta)?;
        Ok(())
    }

    fn hyperparameters(&self) -> Vec<f64> {
        self.gpr().kernel().theta.to_vec()
    }

    fn state(&self) -> Option<&TrainedState> {
        self.gpr().state()
    }

    fn install(&mut self, state: TrainedState) -> Result<(), ModelError> {
        Ok(self.gpr_mut().set_state(state)?)
    }

    fn energy_sigma(
        &self,
        atoms: &Atoms,
        ws: &mut ModelWorkspace,
    ) -> Result<(f64, f64), ModelError> {
        self.predict_energy_sigma(atoms, ws)
    }

    fn acquisition(
        &self,
        atoms: &Atoms,
        kappa: f64,
        ws: &mut ModelWorkspace,
        forces: &mut Vec<[f64; 3]>,
    ) -> Result<AcquisitionValue, ModelError> {
        let a = GprModel::acquisition(self, atoms, kappa, ws, forces)?;
        Ok(AcquisitionValue {
            value: a.value,
            energy: a.energy,
            sigma: a.sigma,
        })
    }
}
