//! The search driver the chaos suite runs (and kills): this test binary started as
//! `chaos drive SCRIPT OUTPUT [--resume] [--iterations N]`, and its handle in the
//! suite.
//!
//! The driver is what `agox-coord run` does, through the same library calls: the
//! pool configured from the script's `[pool]`, a fresh [`Search`] or a resumed
//! one, [`Search::run_with`] stopped by SIGINT or SIGTERM at the end of a step. On
//! standard output it says `address PATH` once its pool is up and
//! `iteration K SECONDS` after each iteration; errors go to standard error. Exit
//! status: 0 done, 1 the search failed, 2 bad arguments, 130 interrupted.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use agox::pool::{Pool, PoolConfig};
use agox::search::registry;
use agox::search::script::Script;
use agox::search::search::Search;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// `chaos drive …`: runs the search; returns the exit status.
pub fn drive(args: &[String]) -> i32 {
    let (Some(script), Some(output)) = (args.first(), args.get(1)) else {
        eprintln!("usage: chaos drive SCRIPT OUTPUT [--resume] [--iterations N]");
        return 2;
    };
    let resume = args.iter().any(|a| a == "--resume");
    let iterations = args
        .iter()
        .position(|a| a == "--iterations")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<u64>().ok());
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        if let Err(e) = unsafe { sigaction(s, &action) } {
            eprintln!("sigaction: {e}");
            return 2;
        }
    }
    let mut script = match Script::load(script) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    script.search.output = PathBuf::from(output);
    if let Some(n) = iterations {
        script.search.iterations = n;
    }
    let (reg, _) = registry::build();
    let config = script
        .pool
        .apply(PoolConfig::with_workers(script.workers()).seed(script.search.seed.unwrap_or(0)));
    let pool = match Pool::start(reg, config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("starting the pool: {e}");
            return 1;
        }
    };
    say(&format!("address {}", pool.address().unwrap_or_default()));
    let search = if resume {
        Search::resume(script, pool)
    } else {
        Search::new(script, pool)
    };
    let mut search = match search {
        Ok(s) => s,
        Err(e) => {
            eprintln!("setting up the search: {e}");
            return 1;
        }
    };
    let result = search.run_with(&STOP, |r| {
        say(&format!("iteration {} {:.9}", r.iteration, r.elapsed));
        Ok(())
    });
    match result {
        Ok(s) if s.interrupted => 130,
        Ok(_) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The suite reads these lines; if it is gone there is no one to tell.
    writeln!(out, "{line}").and_then(|()| out.flush()).ok();
}

/// A line the driver printed, and when the suite read it.
#[derive(Debug, Clone)]
pub struct Line {
    pub at: Instant,
    pub text: String,
}

/// A running driver.
pub struct Driver {
    child: Child,
    lines: Receiver<Line>,
    seen: Vec<Line>,
    stderr: std::thread::JoinHandle<String>,
    pub started: Instant,
}

/// How a driver ended.
#[derive(Debug)]
pub struct Ended {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub stderr: String,
}

/// Longest any driver may take before the suite gives up on it.
const PATIENCE: Duration = Duration::from_secs(150);

impl Driver {
    /// Starts `chaos drive script output extra…`.
    pub fn start(script: &Path, output: &Path, extra: &[String]) -> Driver {
        let mut child = Command::new(std::env::current_exe().expect("own executable"))
            .arg("drive")
            .arg(script)
            .arg(output)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the driver");
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for text in BufReader::new(stdout).lines() {
                let Ok(text) = text else { break };
                if tx
                    .send(Line {
                        at: Instant::now(),
                        text,
                    })
                    .is_err()
                {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            stderr.read_to_string(&mut s).ok();
            s
        });
        Driver {
            child,
            lines,
            seen: Vec::new(),
            stderr,
            started: Instant::now(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines read so far (reads what has arrived).
    pub fn lines(&mut self) -> &[Line] {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        &self.seen
    }

    /// Iterations reported so far.
    pub fn iterations_seen(&mut self) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.text.starts_with("iteration "))
            .count()
    }

    /// Waits until `n` iterations have been reported; false when the driver ended
    /// (or the suite's patience did) first.
    pub fn wait_iterations(&mut self, n: usize) -> bool {
        let t0 = Instant::now();
        while self.iterations_seen() < n {
            if self.exited() || t0.elapsed() > PATIENCE {
                return false;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        true
    }

    /// The pool's socket, once the driver said it.
    pub fn address(&mut self) -> Option<PathBuf> {
        let t0 = Instant::now();
        loop {
            if let Some(a) = self
                .lines()
                .iter()
                .find_map(|l| l.text.strip_prefix("address "))
            {
                return Some(PathBuf::from(a));
            }
            if self.exited() || t0.elapsed() > PATIENCE {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// True once the driver process has ended (it stays unreaped until `end`).
    pub fn exited(&mut self) -> bool {
        !super::procs::alive(self.pid())
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        // The driver may have just ended: nothing to signal then.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal).ok();
    }

    /// Waits for the driver to end (killing it after the suite's patience).
    pub fn end(mut self) -> Ended {
        let t0 = Instant::now();
        let status = loop {
            match self.child.try_wait().expect("wait for the driver") {
                Some(status) => break status,
                None if t0.elapsed() > PATIENCE => {
                    self.child.kill().ok();
                    break self.child.wait().expect("reap the driver");
                }
                None => std::thread::sleep(Duration::from_millis(2)),
            }
        };
        let stderr = self.stderr.join().unwrap_or_default();
        Ended {
            code: status.code(),
            stderr,
        }
    }
}
