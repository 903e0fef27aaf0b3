//! `agox-coord run script.toml`: run a search.
//!
//! Validates the script, takes the output directory's lock, starts the pool, runs
//! the iterations (collect → relax → choose → evaluate → store → update the sampler
//! → synchronize; see `agox_search::search`) and writes `db.db`, `evaluated.xyz`,
//! `best.xyz`, `run.json` and `summary.json` in the output directory.
//!
//! * Display: see [`crate::progress`].
//! * Ctrl-C (SIGINT) or SIGTERM: the current iteration is abandoned if it has not
//!   reached its evaluation yet, otherwise finished; the workers' external-calculator
//!   clients are stopped (`EXIT`, then signals), the database stays intact,
//!   `summary.json` is written, and the exit status is 130 (SIGINT) or 143 (SIGTERM).
//!   A second signal ends the process at once (the database is still intact: every
//!   iteration is one committed transaction; the workers die with the process and
//!   each client's wrapper ends its process group).
//! * `--resume`: continue the run in the output directory, with the settings and
//!   seed its `run.json` records; flags may only confirm them (`--iterations` sets
//!   the new total). Nothing left to do: nothing is written.
//! * One process per output directory: a second `run` or `--resume` on a directory
//!   in use fails at once, naming the process that holds it.
//! * Standard output closed (the reader of a pipe left): the run ends after the
//!   current iteration, with everything stored and `summary.json` written; exit 1.
//!
//! Exit status: 0 done, 1 error, 130 interrupted (143 by SIGTERM).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Instant;

use agox_pool::{default_workers, Launcher, Pool, PoolConfig};
use agox_search::registry;
use agox_search::script::Script;
use agox_search::search::{resume_settings, IterationReport, RunLock, Search, DB_FILE};
use anyhow::{bail, Context, Result};
use clap::Args;

use crate::common::{self, LauncherKind};
use crate::progress::{energy, Progress};

/// Set by the SIGINT and SIGTERM handler; the loop checks it between steps.
static STOP: AtomicBool = AtomicBool::new(false);
/// The first stop signal received (0: none).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(signal: libc_int) {
    // Only atomic operations: async-signal-safe.
    let _first = STOP_SIGNAL.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    STOP.store(true, Ordering::SeqCst);
}

#[allow(non_camel_case_types)]
type libc_int = std::os::raw::c_int;

/// Installs the stop handler for Ctrl-C (SIGINT) and SIGTERM (what `kill` and
/// batch systems send): the first signal sets [`STOP`] (system calls are
/// restarted, so pool I/O is not disturbed); the handler then resets itself, so a
/// second signal ends the process the default way.
fn install_stop_handler() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_stop_signal),
        SaFlags::SA_RESTART | SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only uses atomics, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }
            .with_context(|| format!("installing the {signal} handler"))?;
    }
    Ok(())
}

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
    /// How worker processes are started
    #[arg(long, value_enum, default_value_t = LauncherKind::Fork, value_name = "HOW")]
    pub launcher: LauncherKind,
    /// Print only the final line and errors
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log every iteration on standard output, with the pool's synchronization figures, and every failure message
    #[arg(short, long)]
    pub verbose: bool,
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
    if !output.join(DB_FILE).is_file() {
        bail!(
            "--resume: {} has no database ({DB_FILE}) to continue",
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

/// Runs the search the script describes.
pub fn run(args: RunArgs) -> Result<ExitCode> {
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
    let workers = args
        .workers
        .or(script.search.workers)
        .unwrap_or_else(default_workers);
    common::warn_if_oversubscribed(workers, args.quiet);

    install_stop_handler()?;
    let t_start = Instant::now();
    let (reg, _) = registry::build();
    let mut config = PoolConfig::with_workers(workers).seed(script.search.seed.unwrap_or(0));
    if args.launcher == LauncherKind::Exec {
        let program =
            std::env::current_exe().context("cannot find this program's path to start workers")?;
        config.launcher = Launcher::Command {
            program,
            args: Vec::new(),
        };
    }
    let pool = Pool::start(reg, config).with_context(|| format!("starting {workers} workers"))?;
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
    let summary = search.run_with(&STOP, |r: &IterationReport| progress.iteration(r));
    progress.finish();
    let summary = summary.context("the search failed")?;
    if let Some(why) = &summary.error {
        bail!(
            "{why}: stopped after iteration {} of {}; everything evaluated is stored in {} \
             (continue with --resume)",
            summary.iterations_done,
            summary.iterations_planned,
            dir.display()
        );
    }
    let first = summary.best_iteration.map_or(String::new(), |i| {
        format!(" (first reached in iteration {i})")
    });
    result_line(&format!(
        "best energy {}{first}; {} evaluations in {} iterations; {:.2} s; outputs in {}",
        energy(summary.best_energy, &unit),
        summary.evaluations,
        summary.iterations_done,
        t_start.elapsed().as_secs_f64(),
        dir.display()
    ))?;
    if summary.interrupted {
        let signal = STOP_SIGNAL.load(Ordering::SeqCst);
        let by = nix::sys::signal::Signal::try_from(signal)
            .map_or(String::new(), |s| format!(" by {s}"));
        common::note(&format!(
            "agox-coord: interrupted{by} after iteration {}; the database is intact; continue with --resume",
            summary.iterations_done
        ));
        // The shell's convention: 128 + the signal's number.
        let code = if signal > 0 { 128 + signal } else { 130 };
        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(130)));
    }
    Ok(ExitCode::SUCCESS)
}

/// The result, on standard output; a failure to write it is an error.
fn result_line(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("writing the result to standard output")
}
