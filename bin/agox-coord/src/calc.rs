//! `agox-coord calc`: energies and forces (and stress for periodic cells) of
//! every frame of an extxyz file.

use crate::common::{self, Output, PotentialArgs, RunArgs};
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

/// Arguments of `agox-coord calc`.
#[derive(Debug, Args)]
pub struct CalcArgs {
    #[command(flatten)]
    pub potential: PotentialArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Evaluates every frame and writes them, in input order, with `energy`,
/// `forces`, `stress` (periodic frames) and the per-atom `energies` column.
pub fn run(args: CalcArgs) -> Result<ExitCode> {
    let spec = args.potential.spec()?;
    let input = args.run.input_name();
    let frames = common::read_frames(&args.run.input)?;
    let mut output = Output::create(args.run.output.as_deref())?;
    let session = common::start_session(
        spec,
        args.run.workers,
        args.run.launcher,
        frames.len(),
        args.run.quiet,
    )?;
    let bar = common::progress_bar(frames.len(), args.run.quiet, "calc");
    let link = session.calculator.link();
    let jobs: Vec<_> = frames
        .iter()
        .map(|f| (link.clone(), f.atoms.clone()))
        .collect();
    let mut frames = frames.into_iter();
    common::run_in_order(
        &session.pool,
        &session.fns.calculator.evaluate,
        jobs,
        &input,
        &bar,
        |_, evaluation| {
            // Outputs arrive in input order, one per frame.
            match frames.next() {
                Some(frame) => output.write(&common::with_results(frame, evaluation)),
                None => anyhow::bail!("more results than frames"),
            }
        },
    )?;
    bar.finish_and_clear();
    output.finish()?;
    session.finish()?;
    Ok(ExitCode::SUCCESS)
}
