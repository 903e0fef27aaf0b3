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
mod progress;
mod relax;
mod run;
mod signals;
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

/// The error and its causes as one line, `what: why: ...`, each cause once: a
/// cause whose text the line already ends with (a wrapper that repeats its
/// source's message) is not repeated.
pub(crate) fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            common::note(&format!("agox-coord: {}", error_line(&e)));
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

    /// The part of `docs/cli.md` about `command`: from its heading
    /// (``## `agox-coord NAME` ``) to the next command's heading.
    fn doc_section<'a>(doc: &'a str, command: &str) -> Option<&'a str> {
        let heading = format!("## `agox-coord {command}`");
        let start = doc.find(&heading)?;
        let rest = &doc[start + heading.len()..];
        let end = rest.find("\n## `agox-coord ").unwrap_or(rest.len());
        Some(&rest[..end])
    }

    /// `docs/cli.md` documents every command and every flag, under the command's
    /// own heading: read from the command line's definition, so a new command or
    /// flag without its documentation fails here.
    #[test]
    fn docs_cli_md_holds_every_command_and_flag() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/cli.md");
        let doc = std::fs::read_to_string(path).expect("docs/cli.md");
        let mut missing = Vec::new();
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            let name = sub.get_name();
            let Some(section) = doc_section(&doc, name) else {
                missing.push(format!("no section \"## `agox-coord {name}`\""));
                continue;
            };
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                let written = match (arg.get_short(), arg.get_long(), arg.get_value_names()) {
                    (Some(c), Some(long), _) => format!("`-{c}, --{long}"),
                    (None, Some(long), _) => format!("`--{long}"),
                    (_, None, Some(names)) => format!("`{}", names[0]),
                    (_, None, None) => format!("`{id}"),
                };
                if !section.contains(&written) {
                    missing.push(format!("{name}: {written}`"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "docs/cli.md lacks:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        // A wrapper that repeats its source, as `#[error("x: {0}")] X(#[from] E)` does.
        #[derive(Debug)]
        struct Repeats(std::io::Error);
        impl std::fmt::Display for Repeats {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "reading a.xyz: {}", self.0)
            }
        }
        impl std::error::Error for Repeats {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = anyhow::Error::new(Repeats(io)).context("calc");
        assert_eq!(error_line(&e), "calc: reading a.xyz: no such file");
    }
}
