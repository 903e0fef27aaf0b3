//! One long-lived client process and the connection to it: started on first
//! use, kept across evaluations, restarted when it dies, stopped on every exit
//! path.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agox_atoms::geometry::{Mat3, Vec3};
use agox_atoms::Atoms;

use crate::codec::{InitData, PosData};
use crate::command::{CommandTemplate, Placeholder};
use crate::error::{full_message, ClientError};
use crate::process::{ClientProcess, Launch, LaunchError, Spawner};
use crate::session::{Session, SessionError};
use crate::transport::{AcceptError, Address, Conn, Listener, Transport};
use crate::units;

/// Name of the structure file written into the working directory for `{structure}`.
pub const STRUCTURE_FILE: &str = "agox-ipi-structure.xyz";

/// How to run a client: plain data (serde, so it can travel to pool workers),
/// checked by [`Client::new`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClientConfig {
    /// Shell command with placeholders ([`crate::command`]).
    pub command: String,
    /// Unix socket (default) or TCP on loopback.
    pub transport: Transport,
    /// The client's working directory (created if missing), `{dir}`.
    pub dir: PathBuf,
    /// Where the client's stdout and stderr are appended.
    pub log: PathBuf,
    /// The owner's id, `{worker}`.
    pub worker: u32,
    /// Longest time one evaluation may take; `None` waits forever.
    pub timeout: Option<Duration>,
    /// Longest time from starting the client to its connection.
    pub connect_timeout: Duration,
    /// Restarts allowed in a row without a successful evaluation between them.
    pub max_restarts: u32,
    /// How long a client gets to end after `EXIT`, and again after SIGTERM,
    /// before the next step (SIGTERM, SIGKILL).
    pub grace: Duration,
    /// What `INIT` sends if the client asks for it.
    pub init: InitData,
}

impl ClientConfig {
    /// A client started by `command` in `dir`, logging to `dir/client.log`, over a
    /// Unix socket; no evaluation timeout, 120 s to connect, 3 restarts, 3 s grace.
    pub fn new(command: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        ClientConfig {
            command: command.into(),
            transport: Transport::Unix,
            log: dir.join("client.log"),
            dir,
            worker: 0,
            timeout: None,
            connect_timeout: Duration::from_secs(120),
            max_restarts: 3,
            grace: Duration::from_secs(3),
            init: InitData::default(),
        }
    }

    /// With this transport.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// With this log file.
    pub fn log(mut self, log: impl Into<PathBuf>) -> Self {
        self.log = log.into();
        self
    }

    /// With this owner id for `{worker}`.
    pub fn worker(mut self, worker: u32) -> Self {
        self.worker = worker;
        self
    }

    /// With an evaluation timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// With this connection timeout.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// With this restart budget.
    pub fn max_restarts(mut self, n: u32) -> Self {
        self.max_restarts = n;
        self
    }

    /// With this grace period.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

/// A result in ASE's units.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Energy (eV).
    pub energy: f64,
    /// Forces (eV/Å).
    pub forces: Vec<Vec3>,
    /// Virial (eV); zero from clients that compute none.
    pub virial: Mat3,
    /// The client's extra bytes.
    pub extra: Vec<u8>,
}

/// Counters over a client's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientStats {
    /// Processes started (the first included).
    pub starts: u32,
    /// Evaluations that succeeded.
    pub evaluations: u64,
    /// Evaluations that failed.
    pub failures: u64,
    /// Restarts since the last successful evaluation.
    pub restarts_in_a_row: u32,
}

/// What the client was started for: the protocol sends positions and the cell
/// only, so elements and periodicity are fixed by the first structure.
#[derive(Debug, Clone, PartialEq)]
struct Composition {
    numbers: Vec<u8>,
    pbc: [bool; 3],
}

impl Composition {
    fn of(atoms: &Atoms) -> Self {
        Composition {
            numbers: atoms.numbers.clone(),
            pbc: atoms.pbc,
        }
    }

    fn describe(&self) -> String {
        let symbols: Vec<&str> = self
            .numbers
            .iter()
            .map(|z| agox_atoms::elements::symbol(*z).unwrap_or("X"))
            .collect();
        let pbc: Vec<&str> = self
            .pbc
            .iter()
            .map(|p| if *p { "T" } else { "F" })
            .collect();
        format!("[{}] with pbc {}", symbols.join(" "), pbc.join(" "))
    }
}

struct Live {
    process: ClientProcess,
    session: Session<Conn>,
}

/// One client process serving evaluations over the i-PI protocol.
///
/// The process starts at the first [`evaluate`](Client::evaluate) and is kept for
/// the next ones. Dropping the client stops it (`EXIT`, then SIGTERM, then
/// SIGKILL to its process group); so does the owner's death, through the
/// wrapper described in the crate docs.
pub struct Client {
    config: ClientConfig,
    template: CommandTemplate,
    listener: Listener,
    spawner: Spawner,
    live: Option<Live>,
    composition: Option<Composition>,
    stats: ClientStats,
    last_failure: Option<String>,
}

impl Client {
    /// Checks the configuration, creates the working directory and binds the
    /// socket; starts nothing yet.
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        let template = CommandTemplate::parse(&config.command)?;
        template.check_transport(config.transport.name())?;
        std::fs::create_dir_all(&config.dir).map_err(|source| ClientError::Dir {
            path: config.dir.clone(),
            source,
        })?;
        // `{dir}` and the structure path must mean the same from the client's cwd.
        let dir = std::path::absolute(&config.dir).map_err(|source| ClientError::Dir {
            path: config.dir.clone(),
            source,
        })?;
        let config = ClientConfig { dir, ..config };
        let listener = Listener::bind(config.transport).map_err(|source| ClientError::Bind {
            transport: config.transport.name(),
            source,
        })?;
        let spawner = Spawner::new().map_err(|source| ClientError::Spawn {
            command: config.command.clone(),
            source: Box::new(source),
        })?;
        Ok(Client {
            config,
            template,
            listener,
            spawner,
            live: None,
            composition: None,
            stats: ClientStats::default(),
            last_failure: None,
        })
    }

    /// The configuration (with `dir` made absolute).
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Where clients connect.
    pub fn address(&self) -> &Address {
        self.listener.address()
    }

    /// Counters.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// The running client's process id, which is also its process group's id
    /// (the wrapper shell's; the command runs as its child).
    pub fn pid(&self) -> Option<u32> {
        self.live.as_ref().map(|l| l.process.pid())
    }

    /// The command line as the next start will run it.
    pub fn rendered_command(&self) -> String {
        let address = self.listener.address().clone();
        let dir = self.config.dir.clone();
        let worker = self.config.worker;
        self.template
            .render(|p| placeholder_value(p, &address, &dir, worker))
    }

    /// Energy, forces and virial of `atoms` from the client (started or restarted
    /// first if needed).
    ///
    /// A client found dead before the structure was handed over (it died while
    /// idle) is replaced and the evaluation goes on. Once the structure is handed
    /// over, a failure fails this evaluation: the client is stopped, and the next
    /// evaluation starts a new one. See [`ClientError::kind`] for which failures a
    /// caller may retry.
    pub fn evaluate(&mut self, atoms: &Atoms) -> Result<Reply, ClientError> {
        let wanted = Composition::of(atoms);
        match &self.composition {
            Some(c) if *c != wanted => {
                return Err(ClientError::Composition {
                    expected: c.describe(),
                    got: wanted.describe(),
                })
            }
            Some(_) => {}
            None => self.composition = Some(wanted),
        }
        let pos = PosData {
            cell: units::cell_to_bohr(&atoms.cell),
            inverse: units::inverse_cell_to_bohr(&atoms.cell),
            positions: units::positions_to_bohr(&atoms.positions),
        };
        loop {
            let mut live = match self.live.take() {
                Some(live) => live,
                None => self.start(atoms)?,
            };
            if let Some(exit) = live.process.poll_exit() {
                self.note_failure(format!(
                    "the client {exit} while idle{}",
                    live.process.tail()
                ));
                live.process.stop(self.config.grace);
                continue;
            }
            let deadline = self.config.timeout.map(|t| Instant::now() + t);
            if let Err(e) = live.session.stream_mut().set_deadline(deadline) {
                live.process.stop(self.config.grace);
                self.stats.failures += 1;
                return Err(ClientError::Io(e));
            }
            match live.session.evaluate(&pos) {
                Ok(data) => {
                    self.live = Some(live);
                    self.stats.evaluations += 1;
                    self.stats.restarts_in_a_row = 0;
                    return Ok(Reply {
                        energy: units::energy_from_hartree(data.energy),
                        forces: units::forces_from_atomic(&data.forces),
                        virial: units::virial_from_hartree(&data.virial),
                        extra: data.extra,
                    });
                }
                Err(e) if e.is_closed() && e.stage().is_some_and(|s| !s.positions_sent()) => {
                    // Gone before it had the structure: nothing of this
                    // evaluation is lost, replace it and go on.
                    let exit = live.process.wait_exit(self.config.grace);
                    let how = exit.map_or("closed the connection".to_string(), |x| x.to_string());
                    self.note_failure(format!(
                        "the client {how} while idle{}",
                        live.process.tail()
                    ));
                    live.process.stop(self.config.grace);
                }
                Err(e) => {
                    let err = self.failed(live, e);
                    self.stats.failures += 1;
                    self.last_failure = Some(full_message(&err));
                    return Err(err);
                }
            }
        }
    }

    /// Stops the client: `EXIT`, then SIGTERM and SIGKILL to its process group,
    /// each after the grace period. The next evaluation starts a new one.
    pub fn shutdown(&mut self) {
        if let Some(mut live) = self.live.take() {
            if live.session.exit().is_ok() {
                live.process.wait_exit(self.config.grace);
            }
            live.process.stop(self.config.grace);
        }
    }

    fn note_failure(&mut self, message: String) {
        self.last_failure = Some(message);
    }

    /// Stops a client whose evaluation failed and says why.
    fn failed(&mut self, mut live: Live, e: SessionError) -> ClientError {
        let grace = self.config.grace;
        if e.is_timeout() {
            live.process.stop(grace);
            return ClientError::Timeout {
                after: self.config.timeout.unwrap_or_default(),
                tail: live.process.tail(),
            };
        }
        if e.is_closed() {
            let exit = live.process.wait_exit(grace);
            live.process.stop(grace);
            let tail = live.process.tail();
            return match exit {
                Some(exit) => ClientError::Ended { exit, tail },
                None => ClientError::Closed { tail },
            };
        }
        live.process.stop(grace);
        ClientError::Protocol {
            violation: e,
            tail: live.process.tail(),
        }
    }

    /// Starts a client and accepts its connection, retrying within the restart
    /// budget.
    fn start(&mut self, atoms: &Atoms) -> Result<Live, ClientError> {
        loop {
            if self.stats.starts > 0 {
                if self.stats.restarts_in_a_row >= self.config.max_restarts {
                    self.stats.failures += 1;
                    return Err(ClientError::RestartLimit {
                        restarts: self.stats.restarts_in_a_row,
                        last: self.last_failure.clone().unwrap_or_default(),
                    });
                }
                self.stats.restarts_in_a_row += 1;
            }
            self.stats.starts += 1;
            match self.start_once(atoms) {
                Ok(live) => return Ok(live),
                Err(e @ (ClientError::Spawn { .. } | ClientError::Structure { .. })) => {
                    // Our side cannot start anything: retrying will not help.
                    self.stats.failures += 1;
                    return Err(e);
                }
                Err(e) => self.note_failure(full_message(&e)),
            }
        }
    }

    fn start_once(&mut self, atoms: &Atoms) -> Result<Live, ClientError> {
        let structure = self.config.dir.join(STRUCTURE_FILE);
        write_structure(&structure, atoms)?;
        let command = self.rendered_command();
        let address = self.listener.address().clone();
        let mut env: Vec<(&'static str, String)> = Vec::new();
        for p in Placeholder::ALL {
            if let Some(v) = placeholder_value(p, &address, &self.config.dir, self.config.worker) {
                env.push((p.env(), v));
            }
        }
        let banner = format!(
            "=== agox-ipi: start {} of the client (worker {}): {command}",
            self.stats.starts, self.config.worker
        );
        // A connection left over from an earlier client (one that connected
        // late, then died) must not be taken for the new one's.
        self.drain_backlog();
        let spec = Launch {
            command: &command,
            dir: &self.config.dir,
            env,
            log: &self.config.log,
            banner,
            socket_dir: self.listener.dir(),
        };
        let mut process = ClientProcess::launch(&self.spawner, &spec).map_err(|e| {
            let source: Box<dyn std::error::Error + Send + Sync> = match e {
                LaunchError::Log { .. } => Box::new(e),
                LaunchError::Spawn { source } => Box::new(source),
            };
            ClientError::Spawn {
                command: command.clone(),
                source,
            }
        })?;
        let deadline = Instant::now() + self.config.connect_timeout;
        let accepted = self
            .listener
            .accept(deadline, || match process.poll_exit() {
                Some(exit) => Err(exit),
                None => Ok(()),
            });
        match accepted {
            Ok(Some(conn)) => Ok(Live {
                process,
                session: Session::new(conn, self.config.init.clone()),
            }),
            Ok(None) => {
                process.stop(self.config.grace);
                Err(ClientError::ConnectTimeout {
                    command,
                    address: address.to_string(),
                    after: self.config.connect_timeout,
                    tail: process.tail(),
                })
            }
            Err(AcceptError::Check(exit)) => {
                process.stop(self.config.grace);
                Err(ClientError::ExitedBeforeConnect {
                    command,
                    exit,
                    tail: process.tail(),
                })
            }
            Err(AcceptError::Io(source)) => {
                process.stop(self.config.grace);
                Err(ClientError::Accept { source })
            }
        }
    }

    fn drain_backlog(&self) {
        let now = Instant::now();
        while let Ok(Some(_stale)) = self.listener.accept(now, || Ok::<(), ()>(())) {}
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn placeholder_value(p: Placeholder, address: &Address, dir: &Path, worker: u32) -> Option<String> {
    match (p, address) {
        (Placeholder::Unix, Address::Unix { name, .. }) => Some(name.clone()),
        (Placeholder::Socket, Address::Unix { path, .. }) => Some(path.display().to_string()),
        (Placeholder::Host, Address::Tcp { .. }) => Some("127.0.0.1".into()),
        (Placeholder::Port, Address::Tcp { port }) => Some(port.to_string()),
        (Placeholder::Dir, _) => Some(dir.display().to_string()),
        (Placeholder::Worker, _) => Some(worker.to_string()),
        (Placeholder::Structure, _) => Some(dir.join(STRUCTURE_FILE).display().to_string()),
        _ => None,
    }
}

/// Writes the structure (elements, cell, periodicity, positions) as extxyz.
fn write_structure(path: &Path, atoms: &Atoms) -> Result<(), ClientError> {
    let err = |message: String| ClientError::Structure {
        path: path.to_path_buf(),
        message,
    };
    let bare = Atoms {
        numbers: atoms.numbers.clone(),
        positions: atoms.positions.clone(),
        cell: atoms.cell,
        pbc: atoms.pbc,
        ..Atoms::default()
    };
    let mut text = Vec::new();
    agox_atoms::extxyz::write_atoms(&mut text, &bare).map_err(|e| err(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| err(e.to_string()))
}
