//! `agox-coord`: the agox-rs command line.
//!
//! Each command lives in its own module with an `Args` struct (clap) and a
//! `run(args) -> anyhow::Result<ExitCode>`. To add one: `mod name;`, a variant in
//! [`Command`] with its doc line (the help text), and an arm in [`dispatch`].
//! Errors travel as `anyhow` chains up to [`main`], which prints
//! `agox-coord: <error chain>` once and exits with status 1 (clap's usage errors
//! exit with 2). See `docs/cli.md`.

mod analyze;
mod calc;
mod common;
mod relax;
mod run;
mod validate;
mod worker;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Atomistic global optimization (AGOX) on a pool of stateful worker processes.
///
/// Structures are read and written as extended XYZ (ASE-compatible). Commands that
/// take --workers spread their frames over a pool of worker processes (default:
/// one per CPU, or SLURM_NTASKS); --workers 0 runs everything in this process.
/// The output never depends on the number of workers.
#[derive(Debug, Parser)]
#[command(
    name = "agox-coord",
    version,
    propagate_version = true,
    after_help = "Examples:\n  agox-coord run examples/scripts/au8cu4_rss.toml --workers 2\n  agox-coord run examples/scripts/au8cu4_rss.toml --resume --iterations 60\n  agox-coord validate script.toml\n  agox-coord calc --potential emt clusters.xyz -o evaluated.xyz\n  agox-coord relax --potential lj --optimizer fire --fmax 0.01 in.xyz --trajectory traj.xyz > relaxed.xyz\n\nSee docs/cli.md for every flag, the output formats and the exit codes, and\ndocs/script-reference.md for the search script."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands. Keep one variant per command, its first doc line is the
/// summary shown by `agox-coord --help`.
#[derive(Debug, Subcommand)]
enum Command {
    /// What runs found: best energies and when they were reached (a table, or --json), and plots (--plot)
    Analyze(analyze::AnalyzeArgs),
    /// Energies and forces (and stress for periodic cells) of every frame of an extxyz file
    Calc(calc::CalcArgs),
    /// Local relaxation (BFGS or FIRE) of every frame of an extxyz file
    Relax(relax::RelaxArgs),
    /// Run the search a script describes (outputs: db.db, evaluated.xyz, best.xyz, summary.json)
    Run(run::RunArgs),
    /// Check a search script and print its resolved settings, or its errors
    Validate(validate::ValidateArgs),
    /// Serve as a pool worker (started by a coordinator, not by hand)
    #[command(hide = true)]
    Worker(worker::WorkerArgs),
}

/// Runs one command.
fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Analyze(args) => analyze::run(args),
        Command::Calc(args) => calc::run(args),
        Command::Relax(args) => relax::run(args),
        Command::Run(args) => run::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Worker(args) => worker::run(args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agox-coord: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
