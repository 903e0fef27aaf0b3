//! `agox-coord run script.toml`: run a search.
//!
//! Validates the script, starts the pool, runs the iterations (collect → relax →
//! choose → evaluate → store → update the sampler → synchronize; see
//! `agox_search::search`) and writes `db.db`, `evaluated.xyz`, `best.xyz`,
//! `run.json` and `summary.json` in the output directory.
//!
//! * Progress: a bar (iteration, best energy, evaluations/s) when standard error is
//!   a terminal; otherwise one log line per iteration. `-q`: only the final line;
//!   `-v`: log lines even on a terminal, with the names of the synchronized
//!   attributes.
//! * Ctrl-C: the current iteration is abandoned if it has not reached its
//!   evaluation yet, otherwise finished; the database stays intact, `summary.json`
//!   is written, and the exit status is 130. A second Ctrl-C ends the process at
//!   once (the database is still intact: every iteration is one committed
//!   transaction).
//! * `--resume`: continue the run in the output directory from its database.
//!
//! Exit status: 0 done, 1 error (bad script, refused output directory, ...),
//! 130 interrupted.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use agox_pool::{default_workers, Launcher, Pool, PoolConfig};
use agox_search::registry;
use agox_search::script::Script;
use agox_search::search::{IterationReport, Search, DB_FILE};
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::common::LauncherKind;

/// Set by the SIGINT handler; the loop checks it between steps.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::SeqCst);
}

#[allow(non_camel_case_types)]
type libc_int = std::os::raw::c_int;

/// Installs the Ctrl-C handler: the first SIGINT sets [`STOP`] (system calls are
/// restarted, so pool I/O is not disturbed); the handler then resets itself, so a
/// second Ctrl-C ends the process the default way.
fn install_sigint_handler() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_sigint),
        SaFlags::SA_RESTART | SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGINT, &action) }.context("installing the Ctrl-C handler")?;
    Ok(())
}

/// `run` flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The search script (TOML; see docs/script-reference.md)
    #[arg(value_name = "SCRIPT.toml")]
    pub script: PathBuf,
    /// Worker processes; 0 runs everything in this process [default: the script's, else SLURM_NTASKS or the number of CPUs]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Total iterations (with --resume: run until this many are done) [default: the script's]
    #[arg(long, value_name = "N")]
    pub iterations: Option<u64>,
    /// Run seed [default: the script's, else drawn and recorded in run.json]
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Output directory [default: the script's `output`]
    #[arg(long, short, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Continue the run in the output directory from its database
    #[arg(long)]
    pub resume: bool,
    /// How worker processes are started
    #[arg(long, value_enum, default_value_t = LauncherKind::Fork, value_name = "HOW")]
    pub launcher: LauncherKind,
    /// Print only the final line
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// One log line per iteration even on a terminal, with the synchronized attributes
    #[arg(short, long)]
    pub verbose: bool,
}

/// Runs the search the script describes.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let mut script = match Script::load(&args.script) {
        Ok(s) => s,
        Err(errors) => bail!("invalid script:\n{errors}"),
    };
    if let Some(n) = args.iterations {
        if n == 0 {
            bail!("--iterations must be at least 1");
        }
        script.search.iterations = n;
    }
    if let Some(s) = args.seed {
        script.search.seed = Some(s);
    }
    if let Some(dir) = &args.output {
        script.search.output = std::path::absolute(dir)
            .with_context(|| format!("resolving --output {}", dir.display()))?;
    }
    let dir = script.search.output.clone();
    let db = dir.join(DB_FILE);
    if args.resume && !db.is_file() {
        bail!(
            "--resume: {} has no database ({DB_FILE}) to continue",
            dir.display()
        );
    }
    if !args.resume && db.exists() {
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

    install_sigint_handler()?;
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
    let mut search = if args.resume {
        Search::resume(script, pool)
    } else {
        Search::new(script, pool)
    }
    .with_context(|| format!("setting up the search in {}", dir.display()))?;

    let quiet = args.quiet;
    let verbose = args.verbose;
    let bar = (!quiet && !verbose && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(search.iterations());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} iteration {pos}/{len} [{bar:30}] {msg} ({elapsed_precise})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_position(search.next_iteration());
        bar
    });
    if !quiet {
        let what = if args.resume {
            format!("resuming at iteration {}", search.next_iteration())
        } else {
            "starting".to_string()
        };
        let line = format!(
            "agox-coord: {what}: {} iterations, seed {}, {} workers, output {}",
            search.iterations(),
            search.seed(),
            search.pool().size(),
            dir.display()
        );
        match &bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }
    let loop_start = Instant::now();
    let evals_at_start = search.evaluations();
    let summary = search.run_with(&STOP, |r: &IterationReport| {
        let rate =
            (r.evaluations - evals_at_start) as f64 / loop_start.elapsed().as_secs_f64().max(1e-9);
        match &bar {
            Some(b) => {
                b.set_position(r.iteration + 1);
                let best = r.best_energy.map_or("-".into(), |e| format!("{e:.6}"));
                b.set_message(format!("best {best}, {rate:.1} evaluations/s"));
            }
            None if !quiet => {
                if verbose {
                    eprintln!("{r}");
                } else {
                    let mut short = r.clone();
                    short.sync.names.clear();
                    eprintln!("{short}");
                }
            }
            None => {}
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let summary = summary.context("the search failed")?;
    let best = summary
        .best_energy
        .map_or("none".to_string(), |e| format!("{e:.6}"));
    let first = summary.best_iteration.map_or(String::new(), |i| {
        format!(" (first reached in iteration {i})")
    });
    println!(
        "best energy {best}{first}; {} evaluations in {} iterations; {:.2} s; outputs in {}",
        summary.evaluations,
        summary.iterations_done,
        t_start.elapsed().as_secs_f64(),
        dir.display()
    );
    if summary.interrupted {
        eprintln!(
            "agox-coord: interrupted after iteration {}; the database is intact; continue with --resume",
            summary.iterations_done
        );
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}
