//! What the commands share: number flags with clear messages, messages on
//! standard error that a closed stream cannot turn into a panic, the warning for
//! more workers than CPUs; and for `calc` and `relax`: the potential flags, reading
//! the input, starting the pool with the calculator on it, collecting results in
//! input order, the progress bar, and writing outputs (atomically for files).

use agox_atoms::extxyz::{self, Column, ColumnData, Frame};
use agox_atoms::Evaluation;
use agox_pool::{default_workers, FnHandle, Handle, Launcher, Pool, PoolConfig};
use agox_search::calculator::{CalculatorModule, CalculatorSpec};
use agox_search::registry::{self, SearchFns};
use agox_search::script::load_calculator;
use agox_search::search::AtomicWrite;
use agox_search::socket;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{de::DeserializeOwned, Serialize};
use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Writes one line to standard error. Messages there are progress and warnings:
/// when standard error is closed (`2>&-`, a pipe whose reader left) they are lost,
/// and the command goes on.
pub fn note(line: &str) {
    let mut err = std::io::stderr().lock();
    // Best effort by design (see above): a failed write is not an error of the command.
    writeln!(err, "{line}").ok();
}

/// A whole number ≥ 0 (`--workers`, `--steps`, ...). Parsed here rather than by
/// clap's default so that `-5` gets this message instead of a tip about `--`.
pub fn whole_number(s: &str) -> Result<usize, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("expected a whole number ≥ 0, found \"{s}\""))
}

/// A whole number ≥ 1 (`--iterations`).
pub fn positive_number(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("expected a whole number ≥ 1, found \"{s}\"")),
    }
}

/// A seed: a whole number from 0 to 2⁶⁴ − 1.
pub fn seed_number(s: &str) -> Result<u64, String> {
    s.trim().parse().map_err(|_| {
        format!(
            "expected a whole number from 0 to {}, found \"{s}\"",
            u64::MAX
        )
    })
}

/// A duration in seconds: a finite number > 0 (`--task-timeout`).
pub fn seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x > 0.0 && std::time::Duration::try_from_secs_f64(x).is_ok() => Ok(x),
        _ => Err(format!("expected a number of seconds > 0, found \"{s}\"")),
    }
}

/// `text` as one word for a POSIX shell: as it is when it holds only characters no
/// shell treats specially, otherwise in single quotes.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Warns (unless `quiet`) when more workers are asked for than this process has
/// CPUs: they would only take turns.
pub fn warn_if_oversubscribed(workers: usize, quiet: bool) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if workers > cpus && !quiet {
        note(&format!(
            "agox-coord: warning: {workers} workers on {cpus} available CPU{}: they take turns, each \
             holds its own memory, and the work goes no faster than with {cpus}",
            if cpus == 1 { "" } else { "s" }
        ));
    }
}

/// The potentials the command line offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PotentialKind {
    /// ASE-compatible EMT (H, C, N, O, Al, Ni, Cu, Pd, Ag, Pt, Au)
    Emt,
    /// Lennard-Jones (ASE's LennardJones, smooth=False)
    Lj,
}

/// Where `--calculator` clients work unless `--client-dir` says.
pub const CLIENT_DIR: &str = "agox-clients";

/// `--potential` and its parameters, or `--calculator FILE.toml`.
#[derive(Debug, Args)]
pub struct PotentialArgs {
    /// The potential
    #[arg(
        long,
        value_enum,
        value_name = "NAME",
        required_unless_present = "calculator",
        conflicts_with = "calculator"
    )]
    pub potential: Option<PotentialKind>,
    /// A file holding a `[calculator]` table, as in a search script (any kind, e.g. an external program with `kind = "socket"`)
    #[arg(long, value_name = "FILE.toml")]
    pub calculator: Option<PathBuf>,
    /// Where external-calculator clients work, one directory per worker (worker-N/client.log) [default: agox-clients]
    #[arg(long, value_name = "DIR")]
    pub client_dir: Option<PathBuf>,
    /// Lennard-Jones well depth ε [default: 1]
    #[arg(long, value_name = "EPS", allow_negative_numbers = true)]
    pub lj_epsilon: Option<f64>,
    /// Lennard-Jones length scale σ [default: 1]
    #[arg(long, value_name = "SIGMA", allow_negative_numbers = true)]
    pub lj_sigma: Option<f64>,
    /// Lennard-Jones pair cutoff [default: 3σ]
    #[arg(long, value_name = "RC", allow_negative_numbers = true)]
    pub lj_cutoff: Option<f64>,
    /// Do not shift Lennard-Jones pair energies to zero at the cutoff
    #[arg(long)]
    pub lj_no_shift: bool,
}

impl PotentialArgs {
    /// The calculator these flags (or the `--calculator` file) describe, validated.
    pub fn spec(&self) -> Result<CalculatorSpec> {
        let lj_flags = self.lj_epsilon.is_some()
            || self.lj_sigma.is_some()
            || self.lj_cutoff.is_some()
            || self.lj_no_shift;
        if let Some(path) = &self.calculator {
            if lj_flags {
                bail!("the --lj-* options apply only to --potential lj; with --calculator, write the parameters in {}", path.display());
            }
            let settings = match load_calculator(path) {
                Ok(s) => s,
                Err(errors) => bail!("invalid calculator file:\n{errors}"),
            };
            let given = self.client_dir.as_deref().unwrap_or(Path::new(CLIENT_DIR));
            let dir = std::path::absolute(given)
                .with_context(|| format!("resolving --client-dir {}", given.display()))?;
            let spec = CalculatorSpec::new(&settings, &dir);
            spec.validate().context("invalid calculator")?;
            return Ok(spec);
        }
        if self.client_dir.is_some() {
            bail!("--client-dir applies only to --calculator (a built-in potential has no client)");
        }
        let spec = match self.potential {
            Some(PotentialKind::Emt) | None => {
                if lj_flags {
                    bail!("the --lj-* options apply only to --potential lj");
                }
                CalculatorSpec::Emt
            }
            Some(PotentialKind::Lj) => {
                let sigma = self.lj_sigma.unwrap_or(1.0);
                CalculatorSpec::Lj {
                    epsilon: self.lj_epsilon.unwrap_or(1.0),
                    sigma,
                    cutoff: self.lj_cutoff.unwrap_or(3.0 * sigma),
                    shift: !self.lj_no_shift,
                }
            }
        };
        spec.validate().context("invalid potential parameters")?;
        Ok(spec)
    }
}

/// How workers are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LauncherKind {
    /// Fork this process (through a fork server)
    Fork,
    /// Execute `agox-coord worker` for each worker
    Exec,
    /// Start none: workers are started by someone else (srun, ssh) and connect on their own, with the token in AGOX_POOL_TOKEN
    External,
}

/// Sets how `config`'s workers start. `External` takes the pool's token from
/// `AGOX_POOL_TOKEN` (the workers are given the same), and says where they connect
/// once the pool listens (see [`announce`]).
pub fn apply_launcher(config: &mut PoolConfig, kind: LauncherKind) -> Result<()> {
    match kind {
        LauncherKind::Fork => config.launcher = Launcher::Fork,
        LauncherKind::Exec => {
            let program = std::env::current_exe()
                .context("cannot find this program's path to start workers")?;
            config.launcher = Launcher::Command {
                program,
                args: Vec::new(),
            };
        }
        LauncherKind::External => {
            let token = std::env::var("AGOX_POOL_TOKEN").unwrap_or_default();
            if token.trim().is_empty() {
                bail!(
                    "--launcher external needs the pool's secret in AGOX_POOL_TOKEN (at least 16 \
                     characters, e.g. from `openssl rand -hex 32`); give the workers the same"
                );
            }
            config.launcher = Launcher::External;
            config.token = Some(token.trim().to_string());
        }
    }
    Ok(())
}

/// Input, output and pool flags common to `calc` and `relax`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Input extxyz file, any number of frames (`-` reads standard input)
    #[arg(value_name = "IN.xyz")]
    pub input: PathBuf,
    /// Output extxyz file [default: standard output]
    #[arg(short, long, value_name = "OUT.xyz")]
    pub output: Option<PathBuf>,
    /// Worker processes; 0 runs in this process [default: SLURM_NTASKS or the number of CPUs]
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = whole_number)]
    pub workers: Option<usize>,
    /// How worker processes are started
    #[arg(long, value_enum, default_value_t = LauncherKind::Fork, value_name = "HOW")]
    pub launcher: LauncherKind,
    /// No progress bar and no warnings on standard error
    #[arg(short, long)]
    pub quiet: bool,
}

impl RunArgs {
    /// The input's name as shown in messages.
    pub fn input_name(&self) -> String {
        display_name(&self.input)
    }
}

/// A path as shown in messages (`-` is standard input).
pub fn display_name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    }
}

/// Reads every frame of the input; errors name the file, frame, line and field.
/// An input without a single frame is an error: there is nothing to compute.
pub fn read_frames(path: &Path) -> Result<Vec<Frame>> {
    let name = display_name(path);
    let frames = if path.as_os_str() == "-" {
        let stdin = std::io::stdin();
        extxyz::read(stdin.lock()).with_context(|| format!("reading {name}"))?
    } else {
        let file = File::open(path).with_context(|| format!("cannot open {name}"))?;
        extxyz::read(BufReader::new(file)).with_context(|| format!("reading {name}"))?
    };
    if frames.is_empty() {
        bail!("{name} holds no structure; expected at least one extxyz frame");
    }
    Ok(frames)
}

/// A running pool with the calculator added to it.
pub struct Session {
    /// The pool (0 workers: in process).
    pub pool: Pool,
    /// The program's function handles.
    pub fns: SearchFns,
    /// The driver's copy of the calculator module.
    pub calculator: Handle<CalculatorModule>,
}

impl Session {
    /// Stops the workers' external-calculator clients (`EXIT`, then signals) once
    /// the work is done; nothing to do for a built-in potential (it has none). On
    /// an error the pool is simply dropped: its workers end at once, and each
    /// client's wrapper ends the client's process group.
    pub fn finish(self) -> Result<()> {
        if matches!(self.calculator.lock().spec, CalculatorSpec::Socket { .. }) {
            self.pool
                .broadcast(&self.fns.calculator.release, &self.calculator.link())
                .context("stopping the calculator's clients")?;
        }
        Ok(())
    }
}

/// Starts a pool sized for `n_frames` frames (never more workers than frames)
/// and adds the calculator to it. An external calculator's clients (one per
/// worker, or one in this process with no workers) must fit the available cores.
pub fn start_session(
    spec: CalculatorSpec,
    workers: Option<usize>,
    launcher: LauncherKind,
    n_frames: usize,
    quiet: bool,
) -> Result<Session> {
    let workers = workers.unwrap_or_else(default_workers).min(n_frames);
    warn_if_oversubscribed(workers, quiet);
    if let CalculatorSpec::Socket { settings, .. } = &spec {
        socket::check_cores(settings, workers.max(1), socket::available_cores())
            .map_err(anyhow::Error::msg)
            .context("[calculator] ranks_per_client")?;
    }
    let (registry, fns) = registry::build();
    let mut config = PoolConfig::with_workers(workers);
    apply_launcher(&mut config, launcher)?;
    let pool =
        Pool::start(registry, config).with_context(|| format!("starting {workers} workers"))?;
    let calculator = pool
        .add_module("calculator", CalculatorModule::new(spec))
        .context("sending the calculator to the workers")?;
    Ok(Session {
        pool,
        fns,
        calculator,
    })
}

/// A progress bar on standard error when it is a terminal, there is more than
/// one frame and `quiet` is off; hidden otherwise.
pub fn progress_bar(n_frames: usize, quiet: bool, verb: &str) -> ProgressBar {
    if quiet || n_frames <= 1 || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(n_frames as u64);
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {pos}/{len} frames, {elapsed} elapsed, ETA {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(verb.to_string());
    bar
}

/// Runs `f` on every argument over the pool and hands each output to `sink` in
/// **input order**, as soon as it and every output before it are in (so output
/// streams while later frames still run). A failed task stops everything with
/// an error naming its frame.
pub fn run_in_order<A, O>(
    pool: &Pool,
    f: &FnHandle<A, O>,
    args: impl IntoIterator<Item = A>,
    input_name: &str,
    bar: &ProgressBar,
    mut sink: impl FnMut(usize, O) -> Result<()>,
) -> Result<()>
where
    A: Serialize,
    O: DeserializeOwned,
{
    let results = pool.map_unordered(f, args).context("submitting frames")?;
    let mut waiting: Vec<Option<O>> = Vec::new();
    let mut next = 0;
    for (index, result) in results {
        let output = result.with_context(|| format!("frame {index} of {input_name}"))?;
        if waiting.len() <= index {
            waiting.resize_with(index + 1, || None);
        }
        waiting[index] = Some(output);
        bar.inc(1);
        while let Some(ready) = waiting.get_mut(next).and_then(Option::take) {
            sink(next, ready)?;
            next += 1;
        }
    }
    Ok(())
}

/// `frame` with an evaluation's results in place of any it carried: energy,
/// forces, stress and the per-atom `energies` column.
pub fn with_results(mut frame: Frame, evaluation: Evaluation) -> Frame {
    frame.energy = Some(evaluation.energy);
    frame.forces = Some(evaluation.forces);
    frame.stress = evaluation.stress;
    frame.columns.retain(|c| c.name != "energies");
    if let Some(energies) = evaluation.energies {
        frame.columns.push(Column {
            name: "energies".to_string(),
            ncols: 1,
            data: ColumnData::Real(energies),
        });
    }
    frame
}

/// Where frames go: standard output, or a file. A regular file (also at the end of
/// a symbolic link) is written under a temporary name and renamed into place by
/// [`Output::finish`], so a failed run never leaves a truncated file behind and
/// keeps the old one; a FIFO or a device is written in place (see
/// `agox_search::search::Destination`).
pub struct Output {
    name: String,
    sink: Sink,
}

enum Sink {
    Stdout(BufWriter<std::io::Stdout>),
    File(BufWriter<AtomicWrite>),
}

impl Output {
    /// Standard output when `path` is `None` (or `-`), otherwise the file.
    pub fn create(path: Option<&Path>) -> Result<Output> {
        match path {
            None => Ok(Output::stdout()),
            Some(p) if p.as_os_str() == "-" => Ok(Output::stdout()),
            Some(p) => {
                let name = p.display().to_string();
                let file =
                    AtomicWrite::create(p).with_context(|| format!("cannot create {name}"))?;
                Ok(Output {
                    name,
                    sink: Sink::File(BufWriter::new(file)),
                })
            }
        }
    }

    fn stdout() -> Output {
        Output {
            name: "<stdout>".to_string(),
            sink: Sink::Stdout(BufWriter::new(std::io::stdout())),
        }
    }

    /// Appends one frame.
    pub fn write(&mut self, frame: &Frame) -> Result<()> {
        let result = match &mut self.sink {
            Sink::Stdout(w) => extxyz::write_frame(w, frame),
            Sink::File(w) => extxyz::write_frame(w, frame),
        };
        match result {
            Ok(()) => Ok(()),
            // The I/O error alone: the wrapper would repeat its message.
            Err(extxyz::WriteError::Io(e)) => {
                Err(anyhow::Error::new(e).context(format!("writing {}", self.name)))
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!("writing {}", self.name))),
        }
    }

    /// Flushes, and for a regular file moves it into place.
    pub fn finish(self) -> Result<()> {
        let name = self.name;
        match self.sink {
            Sink::Stdout(mut w) => w.flush().with_context(|| format!("writing {name}")),
            Sink::File(w) => {
                let file = w
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .with_context(|| format!("writing {name}"))?;
                file.commit()
                    .with_context(|| format!("cannot move the output into place as {name}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_and_seconds() {
        assert_eq!(shell_quote("/tmp/run-1"), "/tmp/run-1");
        assert_eq!(shell_quote("/tmp/my run"), "'/tmp/my run'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(seconds("2.5"), Ok(2.5));
        for bad in ["0", "-1", "inf", "nan", "5s", "1e300"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }
}
