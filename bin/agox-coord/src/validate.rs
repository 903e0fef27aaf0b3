//! `agox-coord validate script.toml`: check a search script without running it.
//!
//! Prints the resolved settings (every default filled in, paths absolute, the
//! formula expanded; `Script::to_json`) on standard output and exits 0, or prints
//! every error (`file:line:column: key: message`, one per line) on standard error
//! and exits 1.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use agox_search::script::Script;
use anyhow::Context;
use clap::Args;

use crate::common::note;

/// `validate` flags.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The search script (TOML)
    #[arg(value_name = "SCRIPT.toml")]
    pub script: PathBuf,
}

/// Validates the script: resolved settings on stdout (exit 0), or the errors on
/// stderr (exit 1).
pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    match Script::load(&args.script) {
        Ok(mut script) => {
            // Show the worker count a run would use on this machine, not `null`.
            script.search.workers = Some(script.workers());
            writeln!(std::io::stdout(), "{}", script.to_json())
                .context("writing the settings to standard output")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            note(&errors.to_string());
            let n = errors.0.len();
            note(&format!(
                "agox-coord: {}: {n} error{}",
                args.script.display(),
                if n == 1 { "" } else { "s" }
            ));
            Ok(ExitCode::from(1))
        }
    }
}
