//! External calculators over the i-PI socket protocol: DFT, tight-binding and
//! machine-learned codes (Quantum ESPRESSO, CP2K, FHI-aims, DFTB+, LAMMPS, or any
//! ASE calculator through ASE's `SocketClient`) serving energies and forces to a
//! search, each owner keeping one client process alive between evaluations.
//!
//! ```no_run
//! use agox_atoms::{Atoms, Calculator};
//! use agox_ipi::{ClientConfig, SocketCalculator};
//! use std::time::Duration;
//!
//! let config = ClientConfig::new(
//!     "python examples/clients/ase_client.py --unix {unix} --structure {structure} --calculator emt",
//!     "run/worker-0",
//! )
//! .timeout(Duration::from_secs(600));
//! let mut calc = SocketCalculator::new(config)?;
//! let atoms = Atoms::from_formula("Cu2", vec![[0.0; 3], [2.5, 0.0, 0.0]])?;
//! let e = calc.calculate(&atoms, false)?; // starts the client, then evaluates
//! println!("{} eV", e.energy);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layers
//! * [`codec`]: the wire format — headers, payloads, encode and decode, no I/O
//!   policy. Both directions, so a Rust client ([`serve()`]) is a few lines.
//! * [`session`]: the server's side of one connection: the rules of an
//!   evaluation as a pure function ([`session::advance`]) and the exchange over
//!   any `Read + Write` stream.
//! * [`units`]: Å/eV ↔ Bohr/Hartree with ASE's constants and operation order.
//! * [`Client`]: the supervisor of one client process: the socket, the process,
//!   restarts, timeouts, logs and shutdown.
//! * [`SocketCalculator`]: a [`Client`] behind `agox_atoms::Calculator`.
//!
//! # The client's life
//! [`Client::new`] binds the socket (a Unix socket in a fresh `/tmp/ipi_agox.*`
//! directory of mode 0700 by default, or TCP on 127.0.0.1) and starts nothing.
//! The first evaluation writes the structure to `{dir}/agox-ipi-structure.xyz`,
//! runs the command (placeholders in [`command`]) under `/bin/sh` in a process
//! group of its own, with stdout and stderr appended to the log, and waits up to
//! `connect_timeout` for its connection. Later evaluations reuse the connection.
//!
//! # Failures
//! | what happens | what the evaluation returns | what happens next |
//! | --- | --- | --- |
//! | the client died while idle | (nothing: it is replaced, the evaluation goes on) | |
//! | killed by a signal mid-evaluation (crash, OOM, SIGKILL) | [`ClientError::Ended`], kind `Killed` (retryable) | a new client at the next evaluation |
//! | exited mid-evaluation (an error it reported) | [`ClientError::Ended`], kind `Failed` | a new client at the next evaluation |
//! | closed the connection but kept running | [`ClientError::Closed`], kind `Failed` | stopped; a new client next time |
//! | exceeded `timeout` | [`ClientError::Timeout`] | stopped; a new client next time |
//! | broke the protocol, non-finite numbers | [`ClientError::Protocol`] | stopped; a new client next time |
//! | could not start or connect | retried within `max_restarts`, then [`ClientError::RestartLimit`] | |
//!
//! Every error that involves the client ends with the last lines of its log.
//! At most `max_restarts` restarts happen in a row without a successful
//! evaluation; a success resets the count.
//!
//! # No process left behind
//! Dropping a [`Client`] sends `EXIT`, then SIGTERM and SIGKILL to the client's
//! process group, each after `grace`. If the owning process dies (even by
//! SIGKILL), the client's wrapper shell receives a parent-death signal and ends
//! its whole group itself (SIGTERM, then SIGKILL one to two seconds later) and removes the
//! socket directory. `mpirun` receives the SIGTERM and stops its ranks.
//!
//! # One composition per client
//! The protocol carries positions and the cell, not elements: a client computes
//! the composition it was started with. A [`Client`] therefore fixes the atomic
//! numbers (in order) and periodicity at its first evaluation and refuses other
//! structures with [`ClientError::Composition`].

#![deny(unsafe_code)]

pub mod calculator;
pub mod client;
pub mod codec;
pub mod command;
pub mod error;
pub mod process;
pub mod serve;
pub mod session;
pub mod transport;
pub mod units;

pub use calculator::SocketCalculator;
pub use client::{Client, ClientConfig, ClientStats, Reply, STRUCTURE_FILE};
pub use codec::{
    ClientMessage, CodecError, ForceData, Header, InitData, Limits, PosData, ServerMessage,
};
pub use command::{CommandError, CommandTemplate, Placeholder};
pub use error::ClientError;
pub use process::{live_group_members, live_processes, ExitReason, LogTail};
pub use serve::{serve, Ended, ServeError};
pub use session::{Session, SessionError, Stage};
pub use transport::{Address, Transport};
