//! `agox-coord worker`: the entry point of a pool worker started as a program.
//!
//! A coordinator started with the exec launcher runs
//! `agox-coord worker --connect ADDRESS --id N` for each worker and writes the
//! pool's secret token on the worker's standard input. Workers started by another
//! launcher (`srun`, `ssh`) connect to `tcp://HOST:PORT` with the token in
//! `AGOX_POOL_TOKEN`, their slot from `--id` or Slurm's `SLURM_PROCID`. The worker
//! builds the program's registry ([`agox_search::registry::build`], the same one
//! the coordinator uses, so the handshake's fingerprints match), connects and
//! serves until the coordinator stops it or goes away.

use anyhow::{bail, Context};
use clap::Args;
use std::process::ExitCode;

/// Arguments of `agox-coord worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Where the coordinator listens: the path of its Unix socket, or tcp://HOST:PORT
    #[arg(long, value_name = "ADDRESS")]
    pub connect: String,
    /// This worker's slot number (0 … workers − 1) [default: SLURM_PROCID]
    #[arg(long, value_name = "N")]
    pub id: Option<u32>,
    /// Largest message accepted, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = agox_wire::DEFAULT_MAX_FRAME)]
    pub max_frame: usize,
}

/// Serves as a worker; the exit status is the worker's (0 after a clean stop,
/// 2 when it cannot connect or read its token, 3 after a protocol error).
pub fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let id = match args.id {
        Some(id) => id,
        None => match std::env::var("SLURM_PROCID") {
            Ok(v) => v
                .trim()
                .parse()
                .with_context(|| format!("SLURM_PROCID={v:?} is not a slot number"))?,
            Err(_) => bail!("--id N is needed (or SLURM_PROCID, as srun sets it)"),
        },
    };
    let (registry, _) = agox_search::registry::build();
    let code = agox_pool::worker_main(&registry, &args.connect, id, args.max_frame);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
