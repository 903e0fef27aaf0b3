//! `agox-coord worker`: the entry point of an exec'd pool worker.
//!
//! A coordinator started with the exec launcher runs
//! `agox-coord worker --connect ADDRESS --id N` for each worker and writes the
//! pool's secret token on the worker's standard input. The worker builds the
//! program's registry ([`agox_search::registry::build`], the same one the
//! coordinator uses, so the handshake's fingerprints match), connects and serves
//! until the coordinator stops it or goes away.

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `agox-coord worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Socket path of the coordinator to connect to
    #[arg(long, value_name = "PATH")]
    pub connect: PathBuf,
    /// This worker's slot number, as assigned by the coordinator
    #[arg(long, value_name = "N")]
    pub id: u32,
    /// Largest message accepted, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = agox_wire::DEFAULT_MAX_FRAME)]
    pub max_frame: usize,
}

/// Serves as a worker; the exit status is the worker's (0 after a clean stop,
/// 2 when it cannot connect or read its token, 3 after a protocol error).
pub fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let address = args
        .connect
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("--connect {:?}: not valid UTF-8", args.connect))?;
    let (registry, _) = agox_search::registry::build();
    let code = agox_pool::worker_main(&registry, address, args.id, args.max_frame);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
