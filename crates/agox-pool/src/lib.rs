//! A pool of stateful worker processes for atomistic global optimization.
//!
//! The driver (a command-line run or your own program) owns the search; the pool is
//! a service it calls. Workers are forked from the driver (through a fork server,
//! see [`launch`](crate::Launcher)), so they run the same code and find module types
//! and functions **by name** in a [`Registry`] built identically in every process.
//! Each worker keeps its own copy of every [`Module`] added to the pool between
//! calls. Coordinator and workers talk in length-prefixed MessagePack frames
//! (`agox-wire`) over a transport ([`TransportConfig`]): a Unix socket by default,
//! TCP for workers on other machines, threads of this process, or the ranks of an
//! MPI job (feature `mpi`, see below).
//!
//! # Example
//! ```
//! use agox_pool::{dynamic_attributes, Link, Module, Pool, PoolConfig, Registry, TaskContext};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Scale { factor: Vec<f64> }
//! impl Module for Scale {
//!     const TYPE_NAME: &'static str = "Scale";
//!     dynamic_attributes!(factor);
//! }
//!
//! fn scale(ctx: &TaskContext, (m, x): (Link<Scale>, f64)) -> Result<f64, agox_pool::TaskError> {
//!     Ok(ctx.module(&m)?.factor[0] * x)
//! }
//!
//! let mut reg = Registry::new();
//! reg.module::<Scale>();
//! let f = reg.function("scale", scale);
//! let pool = Pool::start(reg, PoolConfig::with_workers(2)).unwrap();
//! let m = pool.add_module("scale", Scale { factor: vec![2.0] }).unwrap();
//! let out = pool.map(&f, (0..4).map(|i| (m.link(), i as f64))).unwrap();
//! assert_eq!(out, [0.0, 2.0, 4.0, 6.0]);
//! m.lock().factor[0] = 10.0;                       // change on the driver...
//! let report = pool.synchronize().unwrap();         // ...push what changed
//! assert_eq!(report.attributes, 1);
//! assert_eq!(pool.map(&f, [(m.link(), 1.0)]).unwrap(), [10.0]);
//! ```
//!
//! # Guarantees
//! - `map` returns results in input order; each task's seed depends only on (pool
//!   seed, call number, task index), so 0, 1, 2 or N workers give identical results.
//! - `synchronize` sends only the dynamic attributes whose encoded value changed
//!   (compared by hash), encoded once and written to every worker from one buffer.
//! - A task that errors or panics reports the function, worker and message; the
//!   worker lives on. A worker that dies, hangs past `task_timeout` or stops
//!   answering is replaced; the replacement gets every module, the latest
//!   synchronized attributes and any synchronization in flight before any task, and
//!   the tasks it held are retried up to `max_retries` times, then fail naming the
//!   function, the task and the worker's fate ([`PoolError::WorkerLost`],
//!   [`PoolError::Timeout`]).
//! - A pool that cannot keep its worker count (replacements keep dying, the fork
//!   server is gone) fails every call with [`PoolError::Broken`]; it never runs on
//!   with fewer workers.
//! - Every fault is counted in [`PoolStats`] and sent as a [`PoolEvent`] to the
//!   [`EventSink`] in [`PoolConfig::events`].
//! - Workers exit when the pool is dropped or the driver dies, and are reaped; the
//!   socket directory is removed.
//!
//! # Transports
//! | [`TransportConfig`] | workers | launched by | large values |
//! | --- | --- | --- | --- |
//! | `Unix` (default) | processes on this machine | the pool (fork server, or [`Launcher::Command`]) | shared memory |
//! | `Tcp { listen }` | processes anywhere the address reaches | the pool, or someone else ([`Launcher::External`], with [`PoolConfig::token`]) | through the socket |
//! | `InProcess` | threads of this process | the pool | through a channel |
//! | `Mpi` (feature `mpi`) | the other ranks of this MPI job | `mpirun` / `srun` | one collective broadcast |
//!
//! Results never depend on the transport. The scheduler ([`sched`], a pure state
//! machine), the handshake and the synchronization are the same code on each; a
//! transport only moves frames and says what happened (`docs/architecture.md`).
//!
//! # MPI
//! With the `mpi` feature, `mpi::init` starts MPI; rank 0 starts the
//! pool with `TransportConfig::Mpi` and every other rank calls
//! `Session::serve`. Ranks cannot be replaced: a lost rank ends the MPI job, so a
//! driver stores its results as it goes and resumes (`docs/cluster.md`).
//!
//! # Threads
//! All transport work happens on the thread calling the pool; there are no
//! background threads (the in-process transport's workers are threads of their
//! own). Tasks queued beyond the workers' in-flight windows advance while some
//! pool call (`get`, `map`, `synchronize`, ...) is running.

mod config;
mod core;
mod error;
mod events;
mod handshake;
mod launch;
mod module;
mod pool;
mod registry;
pub mod sched;
mod shm;
mod stats;
pub mod transport;
mod worker;

#[cfg(feature = "mpi")]
pub mod mpi;

pub use config::{default_workers, Launcher, PoolConfig, TransportConfig};
pub use error::{PoolError, TaskFailure, WorkerName};
pub use events::{EventSink, LossCause, PoolEvent, RefusalKind, WorkerExit};
#[doc(hidden)]
pub use handshake::fuzz_greeting;
pub use launch::worker_main;
pub use module::{AttributeError, ErasedModule, Handle, Link, Module, ModuleStore};
pub use pool::{Pending, Pool, Unordered};
pub use registry::{task_seed, FnHandle, Registry, TaskContext, TaskError};
pub use shm::SharedValue;
pub use stats::{PoolStats, SyncReport, SyncTotals, WorkerLoss, WorkerStats};
pub use worker::{current_worker, serve, Ending, WorkerError, WorkerIdentity};

#[doc(hidden)]
pub use module::__codec;
