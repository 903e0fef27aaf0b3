//! The calculator as a pool module: energies, forces and local relaxations of
//! structures, run on whichever worker is free.
//!
//! * [`CalculatorSpec`] names a potential and its parameters; it is plain data
//!   (serde), so it travels to workers, and it is made from the script's
//!   `[calculator]` table ([`CalculatorSpec::new`]).
//! * [`CalculatorModule`] is the stateful module every worker holds. It builds its
//!   calculator from the spec on first use and keeps it, so the calculator's
//!   scratch buffers (and its neighbour list during a relaxation) live across
//!   calls instead of being allocated for every structure. For an external
//!   calculator (`kind = "socket"`) what it keeps is the worker's own client
//!   process ([`crate::socket`]).
//! * [`register`] adds the module type and its pool functions to a registry:
//!   `calculator.evaluate` (one single-point calculation) and `calculator.relax`
//!   (a local relaxation, with fixed atoms, an optional confinement box and an
//!   optional trajectory), which the command line's `calc` and `relax` use; and
//!   their counterparts for a search's candidates, `calculator.evaluate_candidate`
//!   and `calculator.relax_candidate`, which return a candidate's failure as a value
//!   and fail the task only for a failure of the run ([`fails_the_run`]).
//!
//! # Results do not depend on the worker
//! A kept calculator may reuse its neighbour list when a new structure happens to
//! lie within the Verlet skin of the previous one; a reused list can sum the same
//! pair terms in another order and change the last bit of a result. So that a
//! structure gives the same bits whichever worker (and after whichever previous
//! task) it runs on, every call starts with [`CalculatorModule::begin_task`], which
//! drops that reuse while keeping the allocations.

use std::path::{Path, PathBuf};

use agox_atoms::emt::Emt;
use agox_atoms::lj::LennardJones;
use agox_atoms::optimize::{
    relax_with, BfgsParams, BoxConstraint, FireParams, OptimizerKind, RelaxError, RelaxOptions,
    StepControl,
};
use agox_atoms::{Atoms, CalcError, Calculator, Evaluation};
use agox_pool::{FnHandle, Link, Module, Registry, TaskContext, TaskError};
use serde::{Deserialize, Serialize};

use crate::script::{CalculatorSettings, Optimizer, RelaxSettings};
use crate::socket::{SocketSettings, WorkerClient};

pub use crate::socket::fails_the_run;

/// Which potential to use, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CalculatorSpec {
    /// ASE-compatible effective-medium theory ([`Emt`]), ASE's parameter set.
    Emt,
    /// Lennard-Jones ([`LennardJones`]), as ASE's `LennardJones(smooth=False)`.
    Lj {
        /// Well depth ε.
        epsilon: f64,
        /// Length scale σ.
        sigma: f64,
        /// Pair cutoff (ASE's default is 3σ).
        cutoff: f64,
        /// Shift every pair energy by `−u(cutoff)` so it is zero at the cutoff
        /// (ASE's behaviour).
        shift: bool,
    },
    /// An external program speaking the i-PI protocol, one client process per
    /// owner of the module ([`crate::socket`]).
    Socket {
        /// How to run the clients.
        settings: SocketSettings,
        /// Where each owner's directory (`worker-N`, `driver`) is made.
        clients_dir: PathBuf,
    },
}

impl CalculatorSpec {
    /// The calculator a script's `[calculator]` table describes; an external one's
    /// clients work in directories inside `clients_dir` (a search's
    /// `OUTPUT/workers`).
    pub fn new(settings: &CalculatorSettings, clients_dir: &Path) -> Self {
        match settings {
            CalculatorSettings::Emt => CalculatorSpec::Emt,
            CalculatorSettings::Lj {
                epsilon,
                sigma,
                cutoff,
                shift,
                ..
            } => CalculatorSpec::Lj {
                epsilon: *epsilon,
                sigma: *sigma,
                cutoff: *cutoff,
                shift: *shift,
            },
            CalculatorSettings::Socket(s) => CalculatorSpec::Socket {
                settings: s.clone(),
                clients_dir: clients_dir.to_path_buf(),
            },
        }
    }

    /// Lennard-Jones with ASE's defaults for the rest: cutoff 3σ, shifted.
    pub fn lj(epsilon: f64, sigma: f64) -> Self {
        CalculatorSpec::Lj {
            epsilon,
            sigma,
            cutoff: 3.0 * sigma,
            shift: true,
        }
    }

    /// The calculator's short name (`"emt"`, `"lj"`, `"socket"`), as in its messages.
    pub fn name(&self) -> &'static str {
        match self {
            CalculatorSpec::Emt => "emt",
            CalculatorSpec::Lj { .. } => "lj",
            CalculatorSpec::Socket { .. } => "socket",
        }
    }

    /// Checks the parameters before anything is built or sent to a worker, so a
    /// bad value is reported once, up front, rather than by every task.
    pub fn validate(&self) -> Result<(), CalcError> {
        match *self {
            CalculatorSpec::Emt => Ok(()),
            CalculatorSpec::Socket { ref settings, .. } => settings.validate(),
            CalculatorSpec::Lj {
                epsilon,
                sigma,
                cutoff,
                ..
            } => {
                let problem = if !epsilon.is_finite() {
                    Some(format!("epsilon must be finite, got {epsilon}"))
                } else if !(sigma.is_finite() && sigma > 0.0) {
                    Some(format!("sigma must be positive and finite, got {sigma}"))
                } else if !(cutoff.is_finite() && cutoff > 0.0) {
                    Some(format!("cutoff must be positive and finite, got {cutoff}"))
                } else {
                    None
                };
                match problem {
                    Some(message) => Err(CalcError::Invalid {
                        calculator: "lj",
                        message,
                    }),
                    None => Ok(()),
                }
            }
        }
    }

    /// A fresh calculator for this spec. Parameters are checked when it first
    /// calculates (or beforehand with [`validate`](Self::validate)).
    ///
    /// An external calculator belongs to the process (and the worker slot,
    /// [`agox_pool::current_worker`]) that builds it: its client starts at its first
    /// calculation, in that owner's directory.
    pub fn build(&self) -> Box<dyn Calculator> {
        match *self {
            CalculatorSpec::Emt => Box::new(Emt::new()),
            CalculatorSpec::Lj {
                epsilon,
                sigma,
                cutoff,
                shift,
            } => Box::new(LennardJones::new(epsilon, sigma, cutoff).shifted(shift)),
            CalculatorSpec::Socket {
                ref settings,
                ref clients_dir,
            } => Box::new(WorkerClient::new(
                settings.clone(),
                clients_dir.clone(),
                agox_pool::current_worker(),
            )),
        }
    }
}

/// The optimizer, with ASE's default parameters, for a script's optimizer name.
pub fn optimizer_kind(optimizer: Optimizer) -> OptimizerKind {
    match optimizer {
        Optimizer::Bfgs => OptimizerKind::Bfgs(BfgsParams::default()),
        Optimizer::Fire => OptimizerKind::Fire(FireParams::default()),
    }
}

/// What a relaxation should do: the optimizer, when to stop, which atoms a box
/// confines, and whether to record every step. Fixed atoms come with the
/// structure ([`Atoms::fixed`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelaxRequest {
    /// The optimizer and its parameters.
    pub optimizer: OptimizerKind,
    /// Converged when every atom's force norm is below this (eV/Å).
    pub fmax: f64,
    /// At most this many position updates.
    pub steps: usize,
    /// A box confining some atoms (AGOX's box constraint), e.g. the atoms a
    /// generator placed; `None`: no confinement.
    pub confinement: Option<BoxConstraint>,
    /// Return every step (structure, energy, forces) in [`RelaxOutcome::trajectory`].
    pub record_trajectory: bool,
}

impl Default for RelaxRequest {
    /// BFGS with ASE's parameters, `fmax = 0.05`, 200 steps (AGOX's defaults), no
    /// box, no trajectory.
    fn default() -> Self {
        RelaxRequest::new(OptimizerKind::default(), 0.05, 200)
    }
}

impl RelaxRequest {
    /// A request without confinement or trajectory.
    pub fn new(optimizer: OptimizerKind, fmax: f64, steps: usize) -> Self {
        RelaxRequest {
            optimizer,
            fmax,
            steps,
            confinement: None,
            record_trajectory: false,
        }
    }

    /// The same request, confining atoms with `confinement`.
    pub fn with_confinement(mut self, confinement: BoxConstraint) -> Self {
        self.confinement = Some(confinement);
        self
    }

    /// The same request, recording (or not) every step.
    pub fn with_trajectory(mut self, record: bool) -> Self {
        self.record_trajectory = record;
        self
    }

    /// The optimizer options this request stands for.
    pub fn options(&self) -> RelaxOptions {
        RelaxOptions {
            fmax: self.fmax,
            steps: self.steps,
            optimizer: self.optimizer,
            confinement: self.confinement.clone(),
        }
    }
}

impl From<&RelaxSettings> for RelaxRequest {
    fn from(s: &RelaxSettings) -> Self {
        RelaxRequest::new(optimizer_kind(s.optimizer), s.fmax, s.steps)
    }
}

/// One recorded step of a relaxation: the structure and what the calculator
/// returned for it (forces unadjusted by fixed atoms or the box).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryStep {
    /// Position updates made before this point (0 = the starting structure).
    pub step: usize,
    /// The structure at this step.
    pub atoms: Atoms,
    /// Its energy (eV).
    pub energy: f64,
    /// Its forces (eV/Å).
    pub forces: Vec<[f64; 3]>,
}

/// How a relaxation ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelaxOutcome {
    /// The relaxed structure (info, cell, fixed atoms as given).
    pub atoms: Atoms,
    /// The calculator's result for it (no stress).
    pub evaluation: Evaluation,
    /// Position updates made.
    pub steps: usize,
    /// Whether the largest force dropped below `fmax`.
    pub converged: bool,
    /// The largest force norm at the end, after fixed-atom and box adjustments.
    pub fmax: f64,
    /// Every step from the start to the end, when it was asked for.
    pub trajectory: Option<Vec<TrajectoryStep>>,
    /// Energy and force calculations made (`steps + 1` for BFGS and FIRE).
    #[serde(default)]
    pub calls: usize,
}

/// A relaxation that did not run to an end: why, and how many calculations it had
/// made (they cost as much as those of a relaxation that ended).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct RelaxFailed {
    /// Why.
    pub error: RelaxError,
    /// Energy and force calculations made, the failing one included.
    pub calls: usize,
}

/// A failed relaxation as a value that crosses the pool: its message and the
/// calculations it made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelaxFailure {
    /// Why it failed.
    pub message: String,
    /// Energy and force calculations made.
    pub calls: usize,
}

impl From<RelaxFailed> for RelaxFailure {
    fn from(f: RelaxFailed) -> Self {
        RelaxFailure {
            message: f.error.to_string(),
            calls: f.calls,
        }
    }
}

/// Counts the calculations of the calculator it wraps.
struct Counted<'a> {
    inner: &'a mut dyn Calculator,
    calls: usize,
}

impl Calculator for Counted<'_> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn calculate(&mut self, atoms: &Atoms, stress: bool) -> Result<Evaluation, CalcError> {
        self.calls += 1;
        self.inner.calculate(atoms, stress)
    }

    fn reset(&mut self) {
        self.inner.reset();
    }
}

/// The calculator every worker holds: the spec, plus the calculator built from
/// it on first use (never serialized; each process builds its own).
#[derive(Serialize, Deserialize)]
pub struct CalculatorModule {
    /// What to build.
    pub spec: CalculatorSpec,
    #[serde(skip)]
    cache: Option<Box<dyn Calculator>>,
}

impl std::fmt::Debug for CalculatorModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CalculatorModule")
            .field("spec", &self.spec)
            .field("built", &self.cache.is_some())
            .finish()
    }
}

impl Module for CalculatorModule {
    const TYPE_NAME: &'static str = "Calculator";
}

impl CalculatorModule {
    /// A module for `spec`; nothing is built until the first calculation.
    pub fn new(spec: CalculatorSpec) -> Self {
        CalculatorModule { spec, cache: None }
    }

    /// Whether the calculator has been built in this process.
    pub fn is_built(&self) -> bool {
        self.cache.is_some()
    }

    /// The calculator, built on first use and kept.
    pub fn calculator(&mut self) -> &mut dyn Calculator {
        let spec = &self.spec;
        self.cache.get_or_insert_with(|| spec.build()).as_mut()
    }

    /// Makes the next calculation independent of the previous ones: the kept
    /// calculator forgets which structure its neighbour list was built for
    /// ([`Calculator::reset`]), so the list is built afresh for the next structure.
    /// Buffers are kept.
    pub fn begin_task(&mut self) {
        self.calculator().reset();
    }

    /// Drops the built calculator (the next calculation builds a new one). An
    /// external calculator's client is stopped: `EXIT`, then SIGTERM and SIGKILL to
    /// its process group, each after the grace period.
    pub fn release(&mut self) {
        self.cache = None;
    }

    /// Energy and forces of `atoms`, and stress when some direction is periodic.
    pub fn evaluate(&mut self, atoms: &Atoms) -> Result<Evaluation, CalcError> {
        self.spec.validate()?;
        self.begin_task();
        let stress = atoms.pbc.iter().any(|&p| p);
        self.calculator().calculate(atoms, stress)
    }

    /// Relaxes `atoms` as `request` says and returns the result.
    pub fn relax(
        &mut self,
        atoms: Atoms,
        request: &RelaxRequest,
    ) -> Result<RelaxOutcome, RelaxFailed> {
        self.spec.validate().map_err(|source| RelaxFailed {
            error: RelaxError::Calculator { step: 0, source },
            calls: 0,
        })?;
        self.begin_task();
        relax_in(self.calculator(), atoms, request)
    }
}

/// Relaxes `atoms` in `calc` as `request` says: the optimizer loop shared by the
/// calculator and by a surrogate's acquisition (see [`crate::relax_model`]).
pub fn relax_in(
    calc: &mut dyn Calculator,
    mut atoms: Atoms,
    request: &RelaxRequest,
) -> Result<RelaxOutcome, RelaxFailed> {
    let options = request.options();
    let mut trajectory = request.record_trajectory.then(Vec::new);
    let mut counted = Counted {
        inner: calc,
        calls: 0,
    };
    let result = relax_with(
        &mut atoms,
        &mut counted,
        &options,
        |step, atoms, evaluation| {
            if let Some(t) = trajectory.as_mut() {
                t.push(TrajectoryStep {
                    step,
                    atoms: atoms.clone(),
                    energy: evaluation.energy,
                    forces: evaluation.forces.clone(),
                });
            }
            StepControl::Continue
        },
    )
    .map_err(|error| RelaxFailed {
        error,
        calls: counted.calls,
    })?;
    Ok(RelaxOutcome {
        atoms,
        evaluation: result.evaluation,
        steps: result.steps,
        converged: result.converged,
        fmax: result.fmax,
        trajectory,
        calls: counted.calls,
    })
}

/// Whether a relaxation's failure belongs to the run rather than to the structure
/// (its calculator's failure does, [`fails_the_run`]).
pub fn relax_fails_the_run(e: &RelaxError) -> bool {
    matches!(e, RelaxError::Calculator { source, .. } if fails_the_run(source))
}

/// A calculation for a search's candidate: its result, or, as a value, why the
/// candidate failed (the search records it and goes on). A failure of the run
/// ([`fails_the_run`]) fails the task instead.
pub type CandidateResult<T> = Result<T, String>;

/// Arguments of `calculator.evaluate` and `calculator.evaluate_candidate`.
pub type EvaluateArgs = (Link<CalculatorModule>, Atoms);

/// Arguments of `calculator.relax` and `calculator.relax_candidate`.
pub type RelaxArgs = (Link<CalculatorModule>, Atoms, RelaxRequest);

/// Handles of the calculator's pool functions.
#[derive(Debug, Clone)]
pub struct CalcFns {
    /// `calculator.evaluate(module, atoms) -> Evaluation`: one single-point
    /// calculation (stress included for periodic structures).
    pub evaluate: FnHandle<EvaluateArgs, Evaluation>,
    /// `calculator.relax(module, atoms, request) -> RelaxOutcome`: one local
    /// relaxation.
    pub relax: FnHandle<RelaxArgs, RelaxOutcome>,
    /// `calculator.evaluate_candidate`: `evaluate` for a search's candidate.
    pub evaluate_candidate: FnHandle<EvaluateArgs, CandidateResult<Evaluation>>,
    /// `calculator.relax_candidate`: `relax` for a search's candidate; a failure
    /// is a value with the calculations it cost, so they are counted too.
    pub relax_candidate: FnHandle<RelaxArgs, Result<RelaxOutcome, RelaxFailure>>,
    /// `calculator.release(module)`: [`CalculatorModule::release`]; broadcast, it
    /// stops every worker's client.
    pub release: FnHandle<Link<CalculatorModule>, ()>,
}

fn evaluate_task(
    ctx: &TaskContext<'_>,
    (module, atoms): EvaluateArgs,
) -> Result<Evaluation, TaskError> {
    Ok(ctx.module(&module)?.evaluate(&atoms)?)
}

fn relax_task(
    ctx: &TaskContext<'_>,
    (module, atoms, request): RelaxArgs,
) -> Result<RelaxOutcome, TaskError> {
    Ok(ctx.module(&module)?.relax(atoms, &request)?)
}

fn evaluate_candidate_task(
    ctx: &TaskContext<'_>,
    (module, atoms): EvaluateArgs,
) -> Result<CandidateResult<Evaluation>, TaskError> {
    match ctx.module(&module)?.evaluate(&atoms) {
        Ok(e) => Ok(Ok(e)),
        Err(e) if fails_the_run(&e) => Err(e.into()),
        Err(e) => Ok(Err(e.to_string())),
    }
}

fn relax_candidate_task(
    ctx: &TaskContext<'_>,
    (module, atoms, request): RelaxArgs,
) -> Result<Result<RelaxOutcome, RelaxFailure>, TaskError> {
    match ctx.module(&module)?.relax(atoms, &request) {
        Ok(o) => Ok(Ok(o)),
        Err(e) if relax_fails_the_run(&e.error) => Err(e.into()),
        Err(e) => Ok(Err(RelaxFailure::from(e))),
    }
}

fn release_task(ctx: &TaskContext<'_>, module: Link<CalculatorModule>) -> Result<(), TaskError> {
    ctx.module(&module)?.release();
    Ok(())
}

/// Registers the [`CalculatorModule`] type and its functions in `reg`.
pub fn register(reg: &mut Registry) -> CalcFns {
    reg.module::<CalculatorModule>();
    CalcFns {
        evaluate: reg.function("calculator.evaluate", evaluate_task),
        relax: reg.function("calculator.relax", relax_task),
        evaluate_candidate: reg.function("calculator.evaluate_candidate", evaluate_candidate_task),
        relax_candidate: reg.function("calculator.relax_candidate", relax_candidate_task),
        release: reg.function("calculator.release", release_task),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use agox_pool::{Handle, Pool, PoolConfig};

    fn au_cluster() -> Atoms {
        let d = 2.9;
        let positions = vec![
            [0.0, 0.0, 0.0],
            [d, 0.0, 0.0],
            [0.5 * d, 0.8 * d, 0.0],
            [0.5 * d, 0.3 * d, 0.8 * d],
            [1.2 * d, 0.9 * d, 0.7 * d],
        ];
        Atoms::new(vec![79; 5], positions).unwrap()
    }

    fn periodic_cu() -> Atoms {
        // Cubic fcc Cu, 2×2×2 conventional cells (32 atoms), slightly rattled.
        let a = 3.61;
        let basis = [
            [0.0, 0.0, 0.0],
            [0.5, 0.5, 0.0],
            [0.5, 0.0, 0.5],
            [0.0, 0.5, 0.5],
        ];
        let mut positions = Vec::new();
        let mut k = 0u32;
        for i in 0..2 {
            for j in 0..2 {
                for l in 0..2 {
                    for b in basis {
                        k += 1;
                        let wiggle = 0.05 * ((k as f64 * 1.7).sin());
                        positions.push([
                            (i as f64 + b[0]) * a + wiggle,
                            (j as f64 + b[1]) * a - 0.5 * wiggle,
                            (l as f64 + b[2]) * a + 0.3 * wiggle,
                        ]);
                    }
                }
            }
        }
        let n = positions.len();
        let c = 2.0 * a;
        Atoms::new(vec![29; n], positions)
            .unwrap()
            .with_cell([[c, 0.0, 0.0], [0.0, c, 0.0], [0.0, 0.0, c]], [true; 3])
    }

    /// An in-process pool with the calculator `spec` under `calc`.
    fn in_process_pool(spec: CalculatorSpec) -> (Pool, CalcFns, Handle<CalculatorModule>) {
        let mut reg = Registry::new();
        let fns = register(&mut reg);
        let pool = Pool::start(reg, PoolConfig::with_workers(0)).unwrap();
        let calc = pool
            .add_module("calc", CalculatorModule::new(spec))
            .unwrap();
        (pool, fns, calc)
    }

    #[test]
    fn spec_builds_the_named_potential_and_converts_from_settings() {
        assert_eq!(CalculatorSpec::Emt.build().name(), "emt");
        assert_eq!(CalculatorSpec::lj(1.0, 1.0).build().name(), "lj");
        let dir = Path::new("/run/workers");
        let s = CalculatorSettings::Lj {
            epsilon: 0.5,
            sigma: 2.0,
            cutoff: 7.0,
            shift: false,
            energy_unit: "eV".into(),
        };
        assert_eq!(
            CalculatorSpec::new(&s, dir),
            CalculatorSpec::Lj {
                epsilon: 0.5,
                sigma: 2.0,
                cutoff: 7.0,
                shift: false
            }
        );
        assert_eq!(
            CalculatorSpec::new(&CalculatorSettings::Emt, dir),
            CalculatorSpec::Emt
        );
        assert_eq!(
            CalculatorSpec::lj(1.0, 2.0),
            CalculatorSpec::Lj {
                epsilon: 1.0,
                sigma: 2.0,
                cutoff: 6.0,
                shift: true
            }
        );
        let socket = SocketSettings::new("client --unix {unix}");
        let spec = CalculatorSpec::new(&CalculatorSettings::Socket(socket.clone()), dir);
        assert_eq!(
            spec,
            CalculatorSpec::Socket {
                settings: socket,
                clients_dir: dir.to_path_buf()
            }
        );
        // Building starts nothing (the client starts at the first calculation).
        assert_eq!(spec.build().name(), "socket");
        assert!(!dir.exists());
    }

    #[test]
    fn candidate_functions_return_the_candidates_failures_as_values() {
        let (pool, fns, calc) = in_process_pool(CalculatorSpec::Emt);
        let bad = Atoms::new(vec![26], vec![[0.0; 3]]).unwrap();
        let out = pool
            .map(
                &fns.evaluate_candidate,
                [(calc.link(), au_cluster()), (calc.link(), bad.clone())],
            )
            .unwrap();
        assert_eq!(
            out[0].as_ref().unwrap(),
            &CalculatorModule::new(CalculatorSpec::Emt)
                .evaluate(&au_cluster())
                .unwrap()
        );
        assert!(out[1].as_ref().unwrap_err().contains("Fe"), "{out:?}");
        let req = RelaxRequest::default();
        let out = pool
            .map(&fns.relax_candidate, [(calc.link(), bad, req)])
            .unwrap();
        assert!(
            out[0].as_ref().unwrap_err().message.contains("Fe"),
            "{out:?}"
        );
    }

    #[test]
    fn a_client_that_cannot_start_fails_the_run_not_the_candidate() {
        let tmp = tempfile::tempdir().unwrap();
        let settings = SocketSettings {
            max_restarts: 0,
            ..SocketSettings::new("exit 7")
        };
        let spec = CalculatorSpec::new(&CalculatorSettings::Socket(settings), tmp.path());
        let (pool, fns, calc) = in_process_pool(spec);
        let err = pool
            .map(&fns.evaluate_candidate, [(calc.link(), au_cluster())])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exited with status 7 before connecting"),
            "{err}"
        );
        let req = RelaxRequest::default();
        let err = pool
            .map(&fns.relax_candidate, [(calc.link(), au_cluster(), req)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("gave up on the client"), "{err}");
        // The in-process pool's client works in the driver's directory.
        assert!(tmp.path().join("driver/client.log").is_file());
    }

    #[test]
    fn invalid_lj_parameters_are_rejected_up_front() {
        for bad in [
            CalculatorSpec::lj(f64::NAN, 1.0),
            CalculatorSpec::lj(1.0, 0.0),
            CalculatorSpec::Lj {
                epsilon: 1.0,
                sigma: 1.0,
                cutoff: -1.0,
                shift: true,
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
            let mut m = CalculatorModule::new(bad);
            assert!(m.evaluate(&au_cluster()).is_err());
            assert!(m.relax(au_cluster(), &RelaxRequest::default()).is_err());
        }
        assert!(CalculatorSpec::Emt.validate().is_ok());
    }

    #[test]
    fn module_builds_lazily_and_is_not_serialized_with_its_cache() {
        let mut m = CalculatorModule::new(CalculatorSpec::Emt);
        assert!(!m.is_built());
        m.evaluate(&au_cluster()).unwrap();
        assert!(m.is_built());
        let bytes = serde_json::to_string(&m).unwrap();
        let back: CalculatorModule = serde_json::from_str(&bytes).unwrap();
        assert!(!back.is_built());
        assert_eq!(back.spec, CalculatorSpec::Emt);
    }

    #[test]
    fn evaluate_matches_a_fresh_calculator_bit_for_bit_whatever_came_before() {
        // A kept calculator must give the bits a fresh one gives, even for a
        // sequence of nearly identical periodic structures (where a kept
        // neighbour list would otherwise be reused).
        let mut m = CalculatorModule::new(CalculatorSpec::Emt);
        let base = periodic_cu();
        for k in 0..6 {
            let mut atoms = base.clone();
            for (i, p) in atoms.positions.iter_mut().enumerate() {
                let s = 0.01 * (((i * 7 + k * 13) % 11) as f64 - 5.0) / 5.0;
                p[0] += s;
                p[1] -= 0.7 * s;
                p[2] += 0.4 * s;
            }
            let kept = m.evaluate(&atoms).unwrap();
            let fresh = Emt::new().calculate(&atoms, true).unwrap();
            assert_eq!(kept.energy.to_bits(), fresh.energy.to_bits(), "frame {k}");
            assert_eq!(kept.forces, fresh.forces, "frame {k}");
            assert_eq!(kept.stress, fresh.stress, "frame {k}");
        }
    }

    #[test]
    fn evaluate_gives_stress_only_for_periodic_structures() {
        let mut m = CalculatorModule::new(CalculatorSpec::Emt);
        assert!(m.evaluate(&au_cluster()).unwrap().stress.is_none());
        assert!(m.evaluate(&periodic_cu()).unwrap().stress.is_some());
    }

    #[test]
    fn evaluate_reports_unsupported_elements() {
        let mut m = CalculatorModule::new(CalculatorSpec::Emt);
        let atoms = Atoms::new(vec![26, 26], vec![[0.0; 3], [2.5, 0.0, 0.0]]).unwrap();
        let err = m.evaluate(&atoms).unwrap_err().to_string();
        assert!(err.contains("Fe"), "{err}");
    }

    #[test]
    fn relax_converges_records_a_trajectory_and_keeps_fixed_atoms() {
        let mut m = CalculatorModule::new(CalculatorSpec::Emt);
        let mut atoms = au_cluster();
        atoms.set_fixed([0]).unwrap();
        let req = RelaxRequest::new(OptimizerKind::default(), 0.05, 500).with_trajectory(true);
        let out = m.relax(atoms.clone(), &req).unwrap();
        assert!(out.converged && out.fmax < 0.05);
        assert_eq!(out.atoms.positions[0], atoms.positions[0]);
        assert_ne!(out.atoms.positions[1], atoms.positions[1]);
        let traj = out.trajectory.as_ref().unwrap();
        assert_eq!(traj.len(), out.steps + 1);
        assert_eq!(out.calls, out.steps + 1);
        assert_eq!(traj[0].atoms.positions, atoms.positions);
        assert_eq!(traj.last().unwrap().energy, out.evaluation.energy);
        assert!(traj.iter().enumerate().all(|(k, s)| s.step == k));
        assert!(out.evaluation.energy < traj[0].energy);
        // Without recording there is no trajectory, and the path is the same.
        let plain = m.relax(atoms, &req.clone().with_trajectory(false)).unwrap();
        assert!(plain.trajectory.is_none());
        assert_eq!(plain.atoms, out.atoms);
    }

    /// LJ that fails from its `fail_at`-th calculation on.
    struct Failing {
        inner: LennardJones,
        calls: usize,
        fail_at: usize,
    }

    impl Calculator for Failing {
        fn name(&self) -> &'static str {
            "failing"
        }
        fn calculate(&mut self, atoms: &Atoms, stress: bool) -> Result<Evaluation, CalcError> {
            self.calls += 1;
            if self.calls >= self.fail_at {
                return Err(CalcError::Invalid {
                    calculator: "failing",
                    message: "gave up".into(),
                });
            }
            self.inner.calculate(atoms, stress)
        }
    }

    #[test]
    fn relax_counts_every_calculation_also_of_a_failed_relaxation() {
        let atoms = Atoms::new(
            vec![18, 18, 18],
            vec![[0.0; 3], [1.3, 0.0, 0.0], [0.0, 1.2, 0.3]],
        )
        .unwrap();
        let req = RelaxRequest::new(OptimizerKind::default(), 1e-6, 50);
        let mut lj = LennardJones::new(1.0, 1.0, 3.0);
        let ok = relax_in(&mut lj, atoms.clone(), &req).unwrap();
        assert_eq!(ok.calls, ok.steps + 1);
        let mut failing = Failing {
            inner: LennardJones::new(1.0, 1.0, 3.0),
            calls: 0,
            fail_at: 4,
        };
        let err = relax_in(&mut failing, atoms, &req).unwrap_err();
        assert_eq!(err.calls, 4);
        assert!(err.to_string().contains("gave up"), "{err}");
        let failure = RelaxFailure::from(err);
        assert_eq!(failure.calls, 4);
    }

    #[test]
    fn relax_keeps_confined_atoms_in_their_box() {
        let mut m = CalculatorModule::new(CalculatorSpec::lj(1.0, 1.0));
        // Two LJ atoms too close: they push apart; atom 1 is confined to x < 1.3.
        let atoms = Atoms::new(vec![18, 18], vec![[0.0, 0.0, 0.0], [0.95, 0.0, 0.0]]).unwrap();
        let free = m.relax(atoms.clone(), &RelaxRequest::default()).unwrap();
        let r_free = free.atoms.positions[1][0] - free.atoms.positions[0][0];
        assert!((r_free - 2f64.powf(1.0 / 6.0)).abs() < 0.02, "{r_free}");
        let boxed = BoxConstraint::axis_aligned([0.5, -1.0, -1.0], [0.8, 2.0, 2.0], vec![1]);
        let req = RelaxRequest::default().with_confinement(boxed.clone());
        let out = m.relax(atoms, &req).unwrap();
        assert!(boxed.contains(out.atoms.positions[1]).unwrap());
    }

    #[test]
    fn pool_functions_give_the_in_process_results_in_order() {
        let (pool, fns, calc) = in_process_pool(CalculatorSpec::Emt);
        let frames = [au_cluster(), periodic_cu()];
        let evals = pool
            .map(
                &fns.evaluate,
                frames.iter().map(|a| (calc.link(), a.clone())),
            )
            .unwrap();
        let mut local = CalculatorModule::new(CalculatorSpec::Emt);
        for (a, e) in frames.iter().zip(&evals) {
            assert_eq!(*e, local.evaluate(a).unwrap());
        }
        let req = RelaxRequest::default();
        let out = pool
            .map(&fns.relax, [(calc.link(), au_cluster(), req.clone())])
            .unwrap();
        assert_eq!(out[0], local.relax(au_cluster(), &req).unwrap());
        // A task error names the calculator's complaint.
        let bad = Atoms::new(vec![26], vec![[0.0; 3]]).unwrap();
        let err = pool.map(&fns.evaluate, [(calc.link(), bad)]).unwrap_err();
        assert!(
            err.to_string().contains("no parameters for element Fe"),
            "{err}"
        );
    }

    #[test]
    fn relax_request_from_settings() {
        let s = RelaxSettings {
            optimizer: Optimizer::Fire,
            fmax: 0.1,
            steps: 42,
            start_iteration: 0,
        };
        let r = RelaxRequest::from(&s);
        assert_eq!(r.optimizer, OptimizerKind::Fire(FireParams::default()));
        assert_eq!((r.fmax, r.steps), (0.1, 42));
        assert!(r.confinement.is_none() && !r.record_trajectory);
    }
}
