//! External calculators in the search: `[calculator] kind = "socket"`, an i-PI
//! client process per owner of the calculator module (`agox-ipi`).
//!
//! * [`SocketSettings`]: the script's keys (`command`, `transport`, `timeout`, ...),
//!   plain data that travels to the workers inside the calculator module.
//! * [`WorkerClient`]: the calculator a worker builds from them the first time its
//!   copy of the calculator module calculates (never before: a live client is not
//!   fork-safe, and workers are forked). It owns the worker's one client process for
//!   the rest of the worker's life, in the worker's own directory
//!   `CLIENTS/worker-N/` (`CLIENTS/driver/` when the pool runs in process), with
//!   the client's output in `client.log` there. Every way the calculator module is
//!   used — single points, relaxations, in whichever pool function — goes through
//!   it, because the module builds it by itself ([`agox_pool::current_worker`]
//!   names the directory).
//! * A client killed during an evaluation (a crash, the out-of-memory killer, a
//!   SIGKILL) is restarted and the evaluation repeated, within the client's restart
//!   budget; a retry changes no result. Once the budget is spent the failure is a
//!   [`ExternalFailure::Start`].
//! * [`check_cores`]: `clients × ranks_per_client` must fit the cores this process
//!   may run on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agox_atoms::{Atoms, CalcError, Calculator, Evaluation, ExternalFailure};
use agox_ipi::{ClientConfig, CommandTemplate, SocketCalculator, Transport};
use serde::{Deserialize, Serialize};

/// Name of the directory, inside the clients' directory, of the client owned by
/// pool worker `worker` (`None`: the driver, when the pool runs in process).
pub fn owner_dir_name(worker: Option<u32>) -> String {
    match worker {
        Some(n) => format!("worker-{n}"),
        None => "driver".to_owned(),
    }
}

/// Name of a client's log file in its directory.
pub const LOG_FILE: &str = "client.log";

/// Longest time setting (s) a script may give: far beyond any calculation, and
/// small enough to be a [`Duration`].
pub const MAX_SECONDS: f64 = 1e9;

/// `[calculator] kind = "socket"`: how each worker runs its client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketSettings {
    /// The shell command that starts a client, with `agox-ipi`'s placeholders
    /// (`{unix}`, `{socket}`, `{host}`, `{port}`, `{dir}`, `{worker}`,
    /// `{structure}`); `{script_dir}` is already replaced by the script's directory.
    pub command: String,
    /// A Unix socket (default) or TCP on 127.0.0.1 (a port the OS chooses per client).
    pub transport: Transport,
    /// Longest time one evaluation may take (s); `None`: no limit.
    pub timeout: Option<f64>,
    /// Longest time from starting a client to its connection (s).
    pub connect_timeout: f64,
    /// Restarts of a client allowed in a row without a successful evaluation.
    pub max_restarts: u32,
    /// How long a client gets to end after `EXIT`, and again after SIGTERM (s).
    pub grace: f64,
    /// Cores each client uses (MPI ranks × threads), for the cores check.
    pub ranks_per_client: usize,
    /// Start even when `clients × ranks_per_client` exceeds the available cores.
    pub oversubscribe: bool,
}

impl SocketSettings {
    /// `command` over a Unix socket, with `agox-ipi`'s defaults for the rest (no
    /// evaluation timeout, 120 s to connect, 3 restarts, 3 s grace) and one rank.
    pub fn new(command: impl Into<String>) -> Self {
        let defaults = ClientConfig::new(String::new(), PathBuf::new());
        SocketSettings {
            command: command.into(),
            transport: defaults.transport,
            timeout: defaults.timeout.map(|t| t.as_secs_f64()),
            connect_timeout: defaults.connect_timeout.as_secs_f64(),
            max_restarts: defaults.max_restarts,
            grace: defaults.grace.as_secs_f64(),
            ranks_per_client: 1,
            oversubscribe: false,
        }
    }

    /// Checks what a worker would otherwise find out only when it starts its
    /// client: the command and its placeholders for this transport, the times.
    pub fn validate(&self) -> Result<(), CalcError> {
        let invalid = |message: String| CalcError::Invalid {
            calculator: "socket",
            message,
        };
        let template = CommandTemplate::parse(&self.command).map_err(|e| invalid(e.to_string()))?;
        template
            .check_transport(self.transport.name())
            .map_err(|e| invalid(e.to_string()))?;
        for (name, value) in [
            ("timeout", self.timeout),
            ("connect_timeout", Some(self.connect_timeout)),
            ("grace", Some(self.grace)),
        ] {
            if let Some(v) = value {
                seconds(v).map_err(|why| invalid(format!("{name}: {why}")))?;
            }
        }
        if self.ranks_per_client == 0 {
            return Err(invalid("ranks_per_client must be at least 1".into()));
        }
        Ok(())
    }

    /// The configuration of the client owned by `worker` (`None`: the driver),
    /// working in `clients_dir/worker-N` and logging to `client.log` there.
    pub fn client_config(
        &self,
        clients_dir: &Path,
        worker: Option<u32>,
    ) -> Result<ClientConfig, CalcError> {
        self.validate()?;
        let dir = clients_dir.join(owner_dir_name(worker));
        let invalid = |message: String| CalcError::Invalid {
            calculator: "socket",
            message,
        };
        let mut config = ClientConfig::new(self.command.clone(), &dir)
            .transport(self.transport)
            .log(dir.join(LOG_FILE))
            .worker(worker.unwrap_or(0))
            .connect_timeout(seconds(self.connect_timeout).map_err(invalid)?)
            .max_restarts(self.max_restarts)
            .grace(seconds(self.grace).map_err(invalid)?);
        if let Some(t) = self.timeout {
            config = config.timeout(seconds(t).map_err(invalid)?);
        }
        Ok(config)
    }
}

/// A time setting as a [`Duration`], or why it is not one.
fn seconds(s: f64) -> Result<Duration, String> {
    if !(s.is_finite() && s > 0.0 && s <= MAX_SECONDS) {
        return Err(format!(
            "expected a number of seconds > 0 and ≤ {MAX_SECONDS:e}, got {s}"
        ));
    }
    Duration::try_from_secs_f64(s).map_err(|e| e.to_string())
}

/// The calculator of one owner of the calculator module: its client, created at
/// the first calculation, with killed evaluations repeated.
pub struct WorkerClient {
    settings: SocketSettings,
    clients_dir: PathBuf,
    worker: Option<u32>,
    calc: Option<SocketCalculator>,
}

impl WorkerClient {
    /// The calculator of the owner `worker` (`None`: the driver); nothing is
    /// created or started before the first calculation.
    pub fn new(settings: SocketSettings, clients_dir: PathBuf, worker: Option<u32>) -> Self {
        WorkerClient {
            settings,
            clients_dir,
            worker,
            calc: None,
        }
    }

    /// The client, once the first calculation created it.
    pub fn calculator(&self) -> Option<&SocketCalculator> {
        self.calc.as_ref()
    }

    /// The client, created (bound, not started) at the first call.
    fn socket(&mut self) -> Result<&mut SocketCalculator, CalcError> {
        match self.calc {
            Some(ref mut calc) => Ok(calc),
            None => {
                let config = self
                    .settings
                    .client_config(&self.clients_dir, self.worker)?;
                Ok(self.calc.insert(SocketCalculator::new(config)?))
            }
        }
    }
}

impl Calculator for WorkerClient {
    fn name(&self) -> &'static str {
        "socket"
    }

    /// The client's result; a client killed during the evaluation is replaced and
    /// the structure sent again, up to `max_restarts` times (the client's own
    /// budget: it reports [`ExternalFailure::Start`] once that is spent).
    fn calculate(&mut self, atoms: &Atoms, stress: bool) -> Result<Evaluation, CalcError> {
        let retries = self.settings.max_restarts;
        let calc = self.socket()?;
        let mut attempt = 0;
        loop {
            match calc.calculate(atoms, stress) {
                Err(CalcError::External {
                    kind: ExternalFailure::Killed,
                    ..
                }) if attempt < retries => attempt += 1,
                other => return other,
            }
        }
    }
}

/// Whether a calculator's failure belongs to the run rather than to the structure:
/// an external program that cannot be started (or restarted), or that was killed and
/// could not be restarted to repeat the evaluation. Storing the candidate as failed
/// would change the search's result, so the run stops instead.
pub fn fails_the_run(e: &CalcError) -> bool {
    matches!(
        e,
        CalcError::External {
            kind: ExternalFailure::Start | ExternalFailure::Killed,
            ..
        }
    )
}

/// Number of CPUs this process may run on: its CPU affinity mask (which Slurm, and
/// `taskset`, set), or the machine's when the mask cannot be read.
pub fn available_cores() -> usize {
    use nix::sched::{sched_getaffinity, CpuSet};
    match sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .count()
            .max(1),
        Err(_) => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// Checks that `clients` clients of `ranks_per_client` cores each fit in `cores`
/// (unless the settings allow oversubscription). The message names the numbers and
/// the ways out.
pub fn check_cores(settings: &SocketSettings, clients: usize, cores: usize) -> Result<(), String> {
    let ranks = settings.ranks_per_client;
    let needed = clients.saturating_mul(ranks);
    if needed <= cores || settings.oversubscribe {
        return Ok(());
    }
    Err(format!(
        "{clients} client{} × ranks_per_client = {ranks} need {needed} cores, but this process may \
         use {cores} (its CPU affinity); use fewer workers (--workers, [search] workers), fewer \
         ranks per client, or set `oversubscribe = true` in [calculator]",
        if clients == 1 { "" } else { "s" }
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use agox_pool::{current_worker, Pool, PoolConfig, Registry, TaskContext, TaskError};

    #[test]
    fn defaults_are_the_clients_and_configs_land_in_the_owners_directory() {
        let s = SocketSettings::new("client --unix {unix}");
        assert_eq!(s.transport, Transport::Unix);
        assert_eq!(
            (s.connect_timeout, s.grace, s.max_restarts),
            (120.0, 3.0, 3)
        );
        assert_eq!(s.timeout, None);
        let dir = Path::new("/run/workers");
        let c = s.client_config(dir, Some(3)).unwrap();
        assert_eq!(c.dir, dir.join("worker-3"));
        assert_eq!(c.log, dir.join("worker-3/client.log"));
        assert_eq!(c.worker, 3);
        assert_eq!(c.timeout, None);
        let d = SocketSettings {
            timeout: Some(1.5),
            ..s
        }
        .client_config(dir, None)
        .unwrap();
        assert_eq!(d.dir, dir.join("driver"));
        assert_eq!(d.timeout, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn bad_commands_and_times_are_refused_before_anything_starts() {
        let bad = |s: SocketSettings| s.validate().unwrap_err().to_string();
        assert!(bad(SocketSettings::new("client {nope}")).contains("unknown placeholder {nope}"));
        let tcp = SocketSettings {
            transport: Transport::Tcp { port: 0 },
            ..SocketSettings::new("client --unix {unix}")
        };
        assert!(bad(tcp).contains("needs transport \"unix\""));
        let slow = SocketSettings {
            timeout: Some(f64::INFINITY),
            ..SocketSettings::new("client")
        };
        assert!(bad(slow).contains("timeout"));
        let none = SocketSettings {
            ranks_per_client: 0,
            ..SocketSettings::new("client")
        };
        assert!(bad(none).contains("ranks_per_client"));
    }

    #[test]
    fn cores_check_names_the_numbers_and_allows_an_override() {
        let s = SocketSettings {
            ranks_per_client: 4,
            ..SocketSettings::new("client")
        };
        assert!(check_cores(&s, 2, 8).is_ok());
        let e = check_cores(&s, 3, 8).unwrap_err();
        assert!(
            e.contains("3 clients × ranks_per_client = 4 need 12 cores"),
            "{e}"
        );
        assert!(e.contains("may use 8"), "{e}");
        let over = SocketSettings {
            oversubscribe: true,
            ..s
        };
        assert!(check_cores(&over, 3, 8).is_ok());
        let cores = available_cores();
        assert!(cores >= 1 && cores <= std::thread::available_parallelism().unwrap().get());
    }

    #[test]
    fn only_start_and_killed_fail_the_run() {
        let ext = |kind| CalcError::External {
            calculator: "socket",
            kind,
            message: String::new(),
        };
        assert!(fails_the_run(&ext(ExternalFailure::Start)));
        assert!(fails_the_run(&ext(ExternalFailure::Killed)));
        for kind in [
            ExternalFailure::Failed,
            ExternalFailure::TimedOut,
            ExternalFailure::Protocol,
        ] {
            assert!(!fails_the_run(&ext(kind)));
        }
        let invalid = CalcError::Invalid {
            calculator: "socket",
            message: String::new(),
        };
        assert!(!fails_the_run(&invalid));
    }

    fn whoami(_: &TaskContext<'_>, (): ()) -> Result<Option<u32>, TaskError> {
        Ok(current_worker())
    }

    /// The owner's directory comes from the worker slot the module finds itself in.
    #[test]
    fn each_worker_knows_its_slot_and_the_driver_has_none() {
        let mut reg = Registry::new();
        let f = reg.function("whoami", whoami);
        let pool = Pool::start(reg, PoolConfig::with_workers(2)).unwrap();
        assert_eq!(pool.broadcast(&f, &()).unwrap(), [Some(0), Some(1)]);
        let mut reg = Registry::new();
        let f = reg.function("whoami", whoami);
        let local = Pool::start(reg, PoolConfig::with_workers(0)).unwrap();
        assert_eq!(local.broadcast(&f, &()).unwrap(), [None]);
        assert_eq!(current_worker(), None);
    }
}
