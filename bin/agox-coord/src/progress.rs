//! What `run` shows while it runs.
//!
//! * On a terminal (standard error), without `-q`/`-v`: a live bar: iteration n/N,
//!   evaluations, best energy with its unit, evaluations/s, ETA.
//! * Not a terminal, without `-v`: a plain progress line at every tenth of the run
//!   and at least once a minute.
//! * `-v`: one line per iteration on standard output (the run's log), with the
//!   pool's synchronization figures, and every failure message; the pool's events
//!   on standard error as they happen ([`event_line`]).
//! * Failures (a candidate a generator could not make, a relaxation or evaluation
//!   that failed): the first [`SHOWN`] of each source as warnings on standard
//!   error (all with `-v`); `summary.json` counts them all and keeps the first
//!   distinct messages.
//!
//! Standard error carries progress and warnings: a write there that fails is
//! ignored. Standard output carries the log and the result: a write there that
//! fails ends the run at the next step boundary (see `run`).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use agox_pool::PoolEvent;
use agox_search::search::IterationReport;
use indicatif::{ProgressBar, ProgressStyle};

use crate::common::note;

/// Failure messages shown per source without `-v`.
const SHOWN: usize = 3;

/// How often a plain progress line is printed at least.
const LINE_EVERY: Duration = Duration::from_secs(60);

/// An energy with its unit, or `none yet`.
pub fn energy(e: Option<f64>, unit: &str) -> String {
    e.map_or_else(|| "none yet".to_owned(), |e| format!("{e:.6} {unit}"))
}

enum Mode {
    Bar(ProgressBar),
    Lines { last: Instant, next_mark: u64 },
    Log,
    Quiet,
}

/// The run's display.
pub struct Progress {
    mode: Mode,
    verbose: bool,
    quiet: bool,
    total: u64,
    started_at: u64,
    evaluations_at_start: u64,
    start: Instant,
    /// Per source (`[[generator]] #1 random`, `relax`, `evaluate`): messages shown.
    shown: HashMap<String, usize>,
}

impl Progress {
    /// The display for a run of `total` iterations starting at `next` with
    /// `evaluations` already stored.
    pub fn new(quiet: bool, verbose: bool, total: u64, next: u64, evaluations: u64) -> Self {
        let mode = if quiet {
            Mode::Quiet
        } else if verbose {
            Mode::Log
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{spinner} iteration {pos}/{len} [{bar:30}] {msg}, ETA {eta}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_position(next);
            bar.enable_steady_tick(Duration::from_millis(200));
            Mode::Bar(bar)
        } else {
            Mode::Lines {
                last: Instant::now(),
                next_mark: next + step(total),
            }
        };
        Progress {
            mode,
            verbose,
            quiet,
            total,
            started_at: next,
            evaluations_at_start: evaluations,
            start: Instant::now(),
            shown: HashMap::new(),
        }
    }

    /// A line on standard error (above the bar when there is one).
    pub fn note(&self, line: &str) {
        match &self.mode {
            Mode::Bar(b) => b.suspend(|| note(line)),
            _ => note(line),
        }
    }

    fn rate(&self, evaluations: u64) -> f64 {
        (evaluations - self.evaluations_at_start) as f64
            / self.start.elapsed().as_secs_f64().max(1e-9)
    }

    /// Shows one finished iteration. An error means standard output is closed.
    pub fn iteration(&mut self, r: &IterationReport) -> Result<(), String> {
        self.failures(r);
        let done = r.iteration + 1;
        let rate = self.rate(r.evaluations);
        let status = format!(
            "{} evaluations, best {}, {rate:.1} evaluations/s",
            r.evaluations,
            energy(r.best_energy, &r.energy_unit)
        );
        match &mut self.mode {
            Mode::Bar(b) => {
                b.set_position(done);
                b.set_message(status);
            }
            Mode::Lines { last, next_mark } => {
                if done >= *next_mark || last.elapsed() >= LINE_EVERY || done == self.total {
                    *last = Instant::now();
                    while *next_mark <= done {
                        *next_mark += step(self.total);
                    }
                    let eta = eta(
                        self.start.elapsed(),
                        done - self.started_at,
                        self.total - done,
                    );
                    note(&format!(
                        "iteration {done}/{}: {status}, ETA {eta}",
                        self.total
                    ));
                }
            }
            Mode::Log => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{r:#}")
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("standard output: {e}"))?;
            }
            Mode::Quiet => {}
        }
        Ok(())
    }

    /// Warns about the iteration's failures: the first [`SHOWN`] of each source
    /// (every one with `-v`).
    fn failures(&mut self, r: &IterationReport) {
        if self.quiet {
            return;
        }
        for f in &r.failures {
            let shown = self.shown.entry(f.source.clone()).or_insert(0);
            if !self.verbose && *shown >= SHOWN {
                continue;
            }
            *shown += 1;
            let more = if !self.verbose && *shown == SHOWN {
                format!(
                    " (further failures of {} are counted in summary.json and shown with -v)",
                    f.source
                )
            } else {
                String::new()
            };
            let line = format!(
                "agox-coord: warning: iteration {}: {}: {}{more}",
                r.iteration, f.source, f.message
            );
            self.note(&line);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Mode::Bar(b) = &self.mode {
            b.finish_and_clear();
        }
    }
}

/// A pool event as `-v` shows it: `agox-coord: pool: worker 1 (pid 4242) lost:
/// connection closed, killed by signal 9 (SIGKILL)`.
pub fn event_line(event: &PoolEvent) -> String {
    let what = match event {
        PoolEvent::WorkerSpawned {
            worker,
            pid,
            attempt: 0,
        } => format!("worker {worker} started (pid {pid})"),
        PoolEvent::WorkerSpawned {
            worker,
            pid,
            attempt,
        } => format!("worker {worker} replaced by pid {pid} (replacement {attempt} in a row)"),
        PoolEvent::WorkerReady { worker, pid, after } => format!(
            "worker {worker} (pid {pid}) ready {:.1} ms after its launch",
            after.as_secs_f64() * 1e3
        ),
        PoolEvent::WorkerLost {
            worker,
            pid,
            cause,
            exit,
        } => match exit {
            Some(exit) => format!("worker {worker} (pid {pid}) lost: {cause}, {exit}"),
            None => format!("worker {worker} (pid {pid}) lost: {cause}"),
        },
        PoolEvent::ReplacementDelayed {
            worker,
            attempt,
            delay,
        } => format!(
            "worker {worker}: replacement {attempt} in a row waits {:.0} ms",
            delay.as_secs_f64() * 1e3
        ),
        PoolEvent::TaskRetried {
            function,
            index,
            worker,
            attempts,
        } => format!(
            "task {index} of '{function}' queued again after worker {worker} was lost \
             ({attempts} attempt(s) so far)"
        ),
        PoolEvent::TaskTimedOut {
            function,
            index,
            worker,
            after,
        } => format!("task {index} of '{function}' timed out after {after:?} on worker {worker}"),
        PoolEvent::TaskAbandoned {
            function,
            index,
            error,
        } => format!("task {index} of '{function}' failed for good: {error}"),
        PoolEvent::StrangerRefused { kind, reason } => {
            format!("connection refused ({kind:?}): {reason}")
        }
        PoolEvent::PoolBroken { reason } => format!("the pool is broken: {reason}"),
    };
    format!("agox-coord: pool: {what}")
}

/// A tenth of the run (at least one iteration).
fn step(total: u64) -> u64 {
    (total / 10).max(1)
}

/// Time left at the pace so far, as `1 h 02 min`, `3 min 20 s` or `12 s`.
fn eta(elapsed: Duration, done: u64, left: u64) -> String {
    if done == 0 {
        return "unknown".into();
    }
    let s = (elapsed.as_secs_f64() / done as f64 * left as f64).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_reads_as_time() {
        assert_eq!(eta(Duration::from_secs(10), 10, 5), "5 s");
        assert_eq!(eta(Duration::from_secs(100), 10, 20), "3 min 20 s");
        assert_eq!(eta(Duration::from_secs(3600), 1, 2), "2 h 00 min");
        assert_eq!(eta(Duration::from_secs(3), 0, 2), "unknown");
        assert_eq!(energy(Some(-1.5), "eV"), "-1.500000 eV");
        assert_eq!(energy(None, "ε"), "none yet");
    }

    #[test]
    fn events_read_as_sentences() {
        use agox_pool::{LossCause, WorkerExit};
        let lost = PoolEvent::WorkerLost {
            worker: 1,
            pid: 4242,
            cause: LossCause::ConnectionClosed,
            exit: Some(WorkerExit::Signal(9)),
        };
        assert_eq!(
            event_line(&lost),
            "agox-coord: pool: worker 1 (pid 4242) lost: connection closed, killed by signal 9 (SIGKILL)"
        );
        let retried = PoolEvent::TaskRetried {
            function: "agox_search.generate_relax".into(),
            index: 3,
            worker: 1,
            attempts: 1,
        };
        assert!(
            event_line(&retried).contains("task 3 of 'agox_search.generate_relax' queued again")
        );
    }
}
