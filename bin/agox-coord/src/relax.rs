//! `agox-coord relax`: local relaxation of every frame of an extxyz file.

use crate::common::{self, Output, PotentialArgs, RunArgs};
use agox_atoms::extxyz::Frame;
use agox_atoms::InfoValue;
use agox_search::calculator::{optimizer_kind, RelaxRequest};
use agox_search::script::Optimizer;
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// The optimizers on offer (both with ASE's default parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    /// ASE's BFGS (maxstep 0.2 Å, initial Hessian 70 eV/Å²)
    Bfgs,
    /// ASE's FIRE (dt 0.1, maxstep 0.2 Å, dtmax 1.0)
    Fire,
}

/// Arguments of `agox-coord relax`.
#[derive(Debug, Args)]
pub struct RelaxArgs {
    #[command(flatten)]
    pub potential: PotentialArgs,
    /// The optimizer
    #[arg(long, value_enum, default_value_t = OptimizerArg::Bfgs, value_name = "NAME")]
    pub optimizer: OptimizerArg,
    /// Converged when every atom's force is below this (eV/Å)
    #[arg(
        long,
        default_value_t = 0.05,
        value_name = "F",
        allow_negative_numbers = true
    )]
    pub fmax: f64,
    /// At most this many optimizer steps per frame
    #[arg(
        long,
        default_value_t = 500,
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = common::whole_number
    )]
    pub steps: usize,
    /// Also write every step of every relaxation to this extxyz file
    #[arg(long, value_name = "T.xyz")]
    pub trajectory: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Relaxes every frame and writes the relaxed frames, in input order, with
/// `energy`, `forces`, `relax_steps` and `converged`; optionally the trajectory.
pub fn run(args: RelaxArgs) -> Result<ExitCode> {
    let spec = args.potential.spec()?;
    if !(args.fmax.is_finite() && args.fmax > 0.0) {
        bail!("--fmax must be a positive number, got {}", args.fmax);
    }
    let optimizer = optimizer_kind(match args.optimizer {
        OptimizerArg::Bfgs => Optimizer::Bfgs,
        OptimizerArg::Fire => Optimizer::Fire,
    });
    let request = RelaxRequest::new(optimizer, args.fmax, args.steps)
        .with_trajectory(args.trajectory.is_some());

    let input = args.run.input_name();
    let frames = common::read_frames(&args.run.input)?;
    let n_frames = frames.len();
    let mut output = Output::create(args.run.output.as_deref())?;
    let mut trajectory = match &args.trajectory {
        Some(path) => Some(Output::create(Some(path))?),
        None => None,
    };
    let session = common::start_session(
        spec,
        args.run.workers,
        args.run.launcher,
        n_frames,
        args.run.quiet,
    )?;
    let bar = common::progress_bar(n_frames, args.run.quiet, "relax");
    let link = session.calculator.link();
    let jobs: Vec<_> = frames
        .iter()
        .map(|f| (link.clone(), f.atoms.clone(), request.clone()))
        .collect();
    let mut frames = frames.into_iter();
    let mut not_converged = Vec::new();
    common::run_in_order(
        &session.pool,
        &session.fns.calculator.relax,
        jobs,
        &input,
        &bar,
        |index, outcome| {
            let Some(input_frame) = frames.next() else {
                bail!("more results than frames");
            };
            if let (Some(out), Some(steps)) = (trajectory.as_mut(), outcome.trajectory) {
                for step in steps {
                    let mut atoms = step.atoms;
                    atoms
                        .info
                        .insert("frame".into(), InfoValue::Int(index as i64));
                    atoms
                        .info
                        .insert("step".into(), InfoValue::Int(step.step as i64));
                    let mut frame = Frame::new(atoms);
                    frame.energy = Some(step.energy);
                    frame.forces = Some(step.forces);
                    out.write(&frame)?;
                }
            }
            if !outcome.converged {
                not_converged.push(index);
            }
            let mut atoms = outcome.atoms;
            atoms
                .info
                .insert("relax_steps".into(), InfoValue::Int(outcome.steps as i64));
            atoms
                .info
                .insert("converged".into(), InfoValue::Bool(outcome.converged));
            let frame = Frame {
                atoms,
                columns: input_frame.columns,
                ..Frame::default()
            };
            output.write(&common::with_results(frame, outcome.evaluation))
        },
    )?;
    bar.finish_and_clear();
    output.finish()?;
    if let Some(t) = trajectory {
        t.finish()?;
    }
    session.finish()?;
    if !not_converged.is_empty() && !args.run.quiet {
        let list: Vec<String> = not_converged
            .iter()
            .take(10)
            .map(|i| i.to_string())
            .collect();
        let more = if not_converged.len() > 10 {
            ", ..."
        } else {
            ""
        };
        common::note(&format!(
            "agox-coord: warning: {} of {} frames did not reach fmax {} eV/Å within {} steps (frames {}{more}); they are marked converged=F",
            not_converged.len(),
            n_frames,
            args.fmax,
            args.steps,
            list.join(", "),
        ));
    }
    Ok(ExitCode::SUCCESS)
}
