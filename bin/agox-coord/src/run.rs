//! `agox-coord run script.toml`: run a search.
//!
//! Validates the script, takes the output directory's lock, starts the pool, runs
//! the iterations (collect → relax → choose → evaluate → store → update the sampler
//! → synchronize; see `agox_search::search`) and writes `db.db`, `evaluated.xyz`,
//! `best.xyz`, `run.json` and `summary.json` in the output directory.
//!
//! * Display: see [`crate::progress`]; `-v` also shows the pool's events (a worker
//!   lost and why, its replacement, a task retried or timed out, a stranger
//!   refused).
//! * SIGINT (Ctrl-C) and SIGTERM (what `timeout` and Slurm send) alike: the current
//!   iteration is abandoned if it has not reached its evaluation yet, otherwise
//!   finished; the workers' external-calculator clients are stopped (`EXIT`, then
//!   signals), the database stays intact, `summary.json` is written with
//!   `interrupted: true`, the command that continues the run is printed, and the
//!   exit status is 128 + the signal's number (130, 143). A second signal ends the
//!   process at once with the same status: every complete iteration is one
//!   committed transaction, and `--resume` redoes the unfinished one. The pool's
//!   workers ignore both signals (they go to a whole process group or job step):
//!   the coordinator decides, and its workers end with it.
//! * A pool fault the run cannot absorb — a candidate's task failed for good under
//!   `[search] on_task_failure = "fail"`, or a pool that cannot keep its workers —
//!   ends the run with an error naming it, after everything complete is stored;
//!   the command that continues the run is printed; exit 1.
//! * `--resume`: continue the run in the output directory, with the settings and
//!   seed its `run.json` records; flags may only confirm them (`--iterations` sets
//!   the new total). Nothing left to do: nothing is written.
//! * One process per output directory: a second `run` or `--resume` on a directory
//!   in use fails at once, naming the process that holds it.
//! * Standard output closed (the reader of a pipe left): the run ends after the
//!   current iteration, with everything stored and `summary.json` written; exit 1.
//!
//! * Transports: Unix sockets by default; `--listen tcp://HOST:PORT` for workers on
//!   other machines (with `--launcher external` they are started by `srun` or
//!   `ssh`); `--transport mpi` under `mpirun`/`srun`, where rank 0 runs the search
//!   and every other rank serves as a worker (see `docs/cluster.md`).
//!
//! Exit status: 0 done, 1 error, 130 / 143 interrupted by SIGINT / SIGTERM.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agox_pool::{default_workers, EventSink, Pool, PoolConfig, TransportConfig};
use agox_search::registry;
use agox_search::script::Script;
use agox_search::search::{resume_settings, IterationReport, RunLock, Search, DB_FILE, RUN_FILE};
use anyhow::{bail, Context, Result};
use clap::Args;

use crate::common::{self, LauncherKind};
use crate::progress::{energy, event_line, Progress};
use crate::signals;
use clap::ValueEnum;

/// `run` flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The search script (TOML; see docs/script-reference.md); optional with --resume
    #[arg(value_name = "SCRIPT.toml", required_unless_present = "resume")]
    pub script: Option<PathBuf>,
    /// Worker processes; 0 runs everything in this process [default: the script's, else SLURM_NTASKS or the number of CPUs]
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = common::whole_number)]
    pub workers: Option<usize>,
    /// Total iterations (with --resume: run until this many are done) [default: the script's]
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = common::positive_number)]
    pub iterations: Option<u64>,
    /// Run seed [default: the script's, else drawn and recorded in run.json; with --resume: the recorded one, which this may only confirm]
    #[arg(long, value_name = "S", allow_negative_numbers = true, value_parser = common::seed_number)]
    pub seed: Option<u64>,
    /// Output directory [default: the script's `output`]
    #[arg(long, short, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Continue the run in the output directory, with the settings and seed of its run.json
    #[arg(long)]
    pub resume: bool,
    /// Longest a task may run (seconds) before its worker is killed and replaced and the task retried [default: the script's `[pool] task_timeout`, else none]
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true, value_parser = common::seconds)]
    pub task_timeout: Option<f64>,
    /// How worker processes are started
    #[arg(long, value_enum, default_value_t = LauncherKind::Fork, value_name = "HOW")]
    pub launcher: LauncherKind,
    /// How coordinator and workers talk: unix (a private socket), tcp (see --listen), mpi (the ranks of an MPI job: run under mpirun or srun; rank 0 runs the search)
    #[arg(long, value_enum, value_name = "KIND")]
    pub transport: Option<TransportKind>,
    /// Listen for workers at tcp://HOST:PORT (port 0 picks one); implies --transport tcp
    #[arg(long, value_name = "tcp://HOST:PORT")]
    pub listen: Option<String>,
    /// Print only the final line and errors
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log every iteration on standard output, with the pool's synchronization figures, every failure message and the pool's events
    #[arg(short, long)]
    pub verbose: bool,
}

/// `--transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportKind {
    /// A Unix socket in a private directory (workers on this machine)
    Unix,
    /// TCP, at the --listen address
    Tcp,
    /// MPI ranks (a build with the `mpi` feature, started by mpirun or srun)
    Mpi,
}

/// The transport the flags ask for.
fn transport(args: &RunArgs) -> Result<TransportConfig> {
    let listen = match &args.listen {
        Some(a) => Some(
            a.strip_prefix(agox_pool::transport::TCP_SCHEME)
                .with_context(|| format!("--listen {a}: expected tcp://HOST:PORT"))?
                .to_string(),
        ),
        None => None,
    };
    match (args.transport, listen) {
        (None | Some(TransportKind::Unix), None) => Ok(TransportConfig::Unix),
        (None | Some(TransportKind::Tcp), Some(listen)) => Ok(TransportConfig::Tcp { listen }),
        (Some(TransportKind::Tcp), None) => bail!("--transport tcp needs --listen tcp://HOST:PORT"),
        (Some(kind), Some(_)) => bail!("--listen applies to --transport tcp, not {kind:?}"),
        (Some(TransportKind::Mpi), None) => mpi_transport(),
    }
}

#[cfg(feature = "mpi")]
fn mpi_transport() -> Result<TransportConfig> {
    Ok(TransportConfig::Mpi)
}

#[cfg(not(feature = "mpi"))]
fn mpi_transport() -> Result<TransportConfig> {
    bail!(
        "this agox-coord was built without MPI: build it with \
         `cargo build --release -p agox-coord --features mpi` (needs an MPI library such as Open MPI)"
    )
}

/// The settings to run: the script with the flags applied, or for `--resume` the
/// run's own recorded settings, which the flags may only confirm.
fn settings(args: &RunArgs) -> Result<Script> {
    let given = match &args.script {
        Some(path) => match Script::load(path) {
            Ok(s) => Some(s),
            Err(errors) => bail!("invalid script:\n{errors}"),
        },
        None => None,
    };
    let output = match (&args.output, &given) {
        (Some(dir), _) => std::path::absolute(dir)
            .with_context(|| format!("resolving --output {}", dir.display()))?,
        (None, Some(s)) => s.search.output.clone(),
        (None, None) => bail!("--resume without a script needs --output DIR"),
    };
    if !args.resume {
        let mut script = given.context("a script is needed")?;
        if let Some(n) = args.iterations {
            script.search.iterations = n;
        }
        if let Some(s) = args.seed {
            script.search.seed = Some(s);
        }
        script.search.output = output;
        return Ok(script);
    }
    if !output.join(DB_FILE).is_file() && !output.join(RUN_FILE).is_file() {
        bail!(
            "--resume: {} holds no run to continue (neither {RUN_FILE} nor {DB_FILE})",
            output.display()
        );
    }
    let mut script = resume_settings(&output, given.as_ref())?;
    let recorded = script
        .search
        .seed
        .context("the recorded settings have no seed")?;
    if let Some(s) = args.seed.filter(|&s| s != recorded) {
        bail!(
            "--resume: the run in {} was started with seed {recorded}; --seed {s} differs \
             (leave --seed out: the recorded seed is used)",
            output.display()
        );
    }
    if let Some(n) = args.iterations {
        script.search.iterations = n;
    }
    Ok(script)
}

/// Runs the search the script describes. Under MPI, every rank but 0 serves as a
/// worker instead.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let transport = transport(&args)?;
    #[cfg(feature = "mpi")]
    if transport == TransportConfig::Mpi {
        return run_mpi(args);
    }
    run_with(args, transport, None)
}

/// `--transport mpi`: rank 0 runs the search on the other ranks. A rank 0 whose
/// run fails says why first: before its pool starts it then aborts the job (the
/// other ranks wait for it); after, dropping the session ends the job — by
/// `MPI_Finalize`, or by `MPI_Abort` where the pool gave up on a rank that may be
/// hung. Every finished iteration is stored; `--resume` continues the run.
#[cfg(feature = "mpi")]
fn run_mpi(args: RunArgs) -> Result<ExitCode> {
    use agox_pool::mpi;
    let session = mpi::init().context("initializing MPI")?;
    let workers = match session.role() {
        mpi::Role::Worker { .. } => {
            let (reg, _) = registry::build();
            let code = session.serve(&reg);
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        mpi::Role::Coordinator { workers } => workers,
    };
    if workers == 0 {
        bail!("--transport mpi needs at least 2 ranks (rank 0 runs the search, the others are its workers)");
    }
    match run_with(args, TransportConfig::Mpi, Some(workers)) {
        Ok(code) => Ok(code),
        Err(e) => {
            // Said here, once: the session's end may not return.
            common::note(&format!("agox-coord: {}", crate::error_line(&e)));
            if !session.pool_started() {
                session.abort(1);
            }
            drop(session);
            Ok(ExitCode::FAILURE)
        }
    }
}

fn run_with(args: RunArgs, transport: TransportConfig, ranks: Option<usize>) -> Result<ExitCode> {
    let script = settings(&args)?;
    let dir = script.search.output.clone();
    // Taken before anything else, so that a second process fails at once, before
    // it starts a pool or reads the database.
    let lock = RunLock::acquire(&dir)?;
    if !args.resume && dir.join(DB_FILE).exists() {
        bail!(
            "{} already holds a run's database ({DB_FILE}); use --resume to continue it, or \
             choose another --output directory",
            dir.display()
        );
    }
    let workers = match ranks {
        // The job's size decides; --workers may only confirm it.
        Some(n) => match args.workers {
            Some(w) if w != n => bail!(
                "--workers {w}: this MPI job has {n} worker ranks (rank 0 runs the search); \
                 leave --workers out or start {} ranks",
                w + 1
            ),
            _ => n,
        },
        None => {
            let workers = args
                .workers
                .or(script.search.workers)
                .unwrap_or_else(default_workers);
            common::warn_if_oversubscribed(workers, args.quiet);
            workers
        }
    };

    signals::install()?;
    let t_start = Instant::now();
    let (reg, _) = registry::build();
    let mut config = script
        .pool
        .apply(PoolConfig::with_workers(workers).seed(script.search.seed.unwrap_or(0)))
        .transport(transport.clone());
    if let Some(t) = args.task_timeout {
        config.task_timeout = Some(Duration::from_secs_f64(t));
    }
    if args.verbose {
        // Events arrive on this thread while the pool works; with `-v` there is no
        // live bar to keep clear of.
        config.events = Some(EventSink::new(|e| common::note(&event_line(e))));
    }
    if ranks.is_none() {
        common::apply_launcher(&mut config, args.launcher)?;
    } else if args.launcher != LauncherKind::Fork {
        bail!("--launcher applies to the unix and tcp transports: MPI ranks are started by mpirun or srun");
    }
    if args.launcher == LauncherKind::External && !args.quiet {
        common::note(&format!(
            "agox-coord: waiting for {workers} workers to connect ({transport}; each runs \
             `agox-coord worker --connect ADDRESS --id N` with AGOX_POOL_TOKEN set)"
        ));
    }
    let pool = Pool::start(reg, config).with_context(|| format!("starting {workers} workers"))?;
    #[cfg(feature = "mpi")]
    if let (Some(p), false) = (agox_pool::mpi::placement(), args.quiet) {
        common::note(&format!(
            "agox-coord: MPI: {workers} worker ranks; large values through shared memory to \
             ranks {:?}, by broadcast to ranks {:?}",
            p.shared_memory, p.broadcast
        ));
    }
    if args.verbose {
        if let Some(address) = pool.address() {
            common::note(&format!("agox-coord: pool socket {address}"));
        }
    }
    let unit = script.energy_unit().to_owned();
    let mut search = if args.resume {
        Search::resume_locked(script, pool, lock)
    } else {
        Search::new_locked(script, pool, lock)
    }
    .with_context(|| format!("setting up the search in {}", dir.display()))?;

    if args.resume && search.is_done() {
        // Nothing to run: every record of the run stays as it is.
        result_line(&format!(
            "nothing to do: the run in {} has done {} of {} iterations (raise --iterations to continue); \
             best energy {}",
            dir.display(),
            search.next_iteration(),
            search.iterations(),
            energy(search.best().and_then(|b| b.energy), &unit)
        ))?;
        return Ok(ExitCode::SUCCESS);
    }

    let mut progress = Progress::new(
        args.quiet,
        args.verbose,
        search.iterations(),
        search.next_iteration(),
        search.evaluations(),
    );
    if !args.quiet {
        let what = if args.resume {
            format!("resuming at iteration {}", search.next_iteration())
        } else {
            "starting".to_string()
        };
        progress.note(&format!(
            "agox-coord: {what}: {} iterations, seed {}, {} workers, energies in {unit}, output {}",
            search.iterations(),
            search.seed(),
            search.pool().size(),
            dir.display()
        ));
    }
    let summary = search.run_with(signals::stop_flag(), |r: &IterationReport| {
        progress.iteration(r)
    });
    progress.finish();
    let summary = summary.map_err(|e| {
        // The error first, then what is stored and how to go on.
        anyhow::anyhow!(
            "{e}. The run stopped with {} of {} iterations complete, all stored in {}; \
             continue with: {}",
            search.next_iteration(),
            search.iterations(),
            dir.display(),
            resume_command(&dir)
        )
    })?;
    if let Some(why) = &summary.error {
        bail!(
            "{why}: stopped after iteration {} of {}; everything evaluated is stored in {} \
             (continue with: {})",
            summary.iterations_done,
            summary.iterations_planned,
            dir.display(),
            resume_command(&dir)
        );
    }
    let first = summary.best_iteration.map_or(String::new(), |i| {
        format!(" (first reached in iteration {i})")
    });
    let dropped = match summary.dropped_candidates {
        0 => String::new(),
        n => format!(
            " ({n} candidate(s) dropped after their tasks failed for good, \
             on_task_failure = \"skip\": see summary.json)"
        ),
    };
    result_line(&format!(
        "best energy {}{first}; {} evaluations in {} iterations{dropped}; {:.2} s; outputs in {}",
        energy(summary.best_energy, &unit),
        summary.evaluations,
        summary.iterations_done,
        t_start.elapsed().as_secs_f64(),
        dir.display()
    ))?;
    if summary.interrupted {
        let signal = signals::received();
        common::note(&format!(
            "agox-coord: interrupted by {} with {} of {} iterations complete, all stored; \
             continue with: {}",
            signals::name(signal),
            summary.iterations_done,
            summary.iterations_planned,
            resume_command(&dir)
        ));
        return Ok(ExitCode::from(signals::exit_status(signal)));
    }
    Ok(ExitCode::SUCCESS)
}

/// The command that continues the run in `dir`, ready to paste into a shell.
fn resume_command(dir: &Path) -> String {
    format!(
        "agox-coord run --resume --output {}",
        common::shell_quote(&dir.display().to_string())
    )
}

/// The result, on standard output; a failure to write it is an error.
fn result_line(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("writing the result to standard output")
}
