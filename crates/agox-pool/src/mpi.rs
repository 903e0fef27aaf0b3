//! Pools across the ranks of an MPI job (feature `mpi`).
//!
//! Every rank runs the same program. Rank 0 is the coordinator: it starts a pool
//! with [`TransportConfig::Mpi`](crate::TransportConfig::Mpi) and `workers` = the
//! job's size − 1. Every other rank serves as worker `rank − 1` until the pool is
//! dropped:
//!
//! ```no_run
//! # fn registry() -> agox_pool::Registry { agox_pool::Registry::new() }
//! use agox_pool::{mpi, Pool, PoolConfig, TransportConfig};
//! let session = mpi::init().expect("MPI");
//! match session.role() {
//!     mpi::Role::Worker { .. } => std::process::exit(session.serve(&registry())),
//!     mpi::Role::Coordinator { workers } => {
//!         let config = PoolConfig::with_workers(workers).transport(TransportConfig::Mpi);
//!         let pool = Pool::start(registry(), config).expect("pool");
//!         // ... map, synchronize ...
//!     }
//! }
//! ```
//!
//! What MPI changes:
//! * ranks are started by `mpirun` or `srun`, not by the pool, and cannot be
//!   replaced: when one dies, MPI aborts the whole job. A rank the pool gives up
//!   on (past a task timeout: it may be hung) breaks the pool, and dropping the
//!   session on rank 0 then ends the job with `MPI_Abort`, since
//!   `MPI_Finalize` would wait for that rank. A driver that stores its
//!   results as it goes (`agox-coord run` commits every iteration) is resumed with
//!   `--resume`, with MPI or any other transport;
//! * one pool per job: the worker ranks serve one pool and then finalize MPI;
//! * large attribute values are written once into a memory file, which the ranks
//!   on rank 0's machine map; the ranks elsewhere receive them by one collective
//!   broadcast (`AGOX_MPI_SHARED_MEMORY=off` on rank 0 makes every rank take the
//!   broadcast).

use crate::error::PoolError;
use crate::registry::Registry;
use crate::transport::mpi::placement::Placement as RankPlacement;
use crate::transport::mpi::RankEnd;
use crate::worker::{self, WorkerIdentity};
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, Root};
use mpi::Threading;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Set while a session is alive.
static INITIALIZED: AtomicBool = AtomicBool::new(false);
/// Set once a pool was started on this job's ranks.
static POOL_STARTED: AtomicBool = AtomicBool::new(false);
/// Set on rank 0 once the pool gave up on a rank (lost by a timeout or a broken
/// protocol: it may still run, hung), which `MPI_Finalize` would wait for.
static RANK_ABANDONED: AtomicBool = AtomicBool::new(false);
/// On rank 0, once the pool started: how each worker rank receives large values.
static PLACEMENT: OnceLock<Placement> = OnceLock::new();

/// How the worker ranks receive large attribute values, as the pool's start
/// found out (see [`Session::placement`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Ranks on rank 0's machine, which map its memory files.
    pub shared_memory: Vec<u32>,
    /// Ranks that receive each value by collective broadcast.
    pub broadcast: Vec<u32>,
}

/// What this rank does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Rank 0: starts the pool, with this many workers.
    Coordinator {
        /// The job's size − 1.
        workers: usize,
    },
    /// Any other rank: serves as worker `rank − 1`.
    Worker {
        /// This rank.
        rank: u32,
    },
}

/// MPI, initialized for this process; finalized when dropped (every rank must
/// drop its session for the job to end cleanly).
pub struct Session {
    universe: Option<Universe>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mpi::Session(rank {} of {})",
            world().rank(),
            world().size()
        )
    }
}

/// Initializes MPI (once per process).
pub fn init() -> Result<Session, PoolError> {
    if INITIALIZED.swap(true, Ordering::SeqCst) {
        return Err(PoolError::Config(
            "MPI is already initialized in this process".into(),
        ));
    }
    // Serialized: the pool may be called from any thread, one call at a time
    // (its lock), and only the pool calls MPI.
    let (universe, level) =
        mpi::initialize_with_threading(Threading::Serialized).ok_or_else(|| {
            PoolError::Config("MPI could not be initialized (or was initialized before)".into())
        })?;
    if level < Threading::Serialized {
        return Err(PoolError::Config(format!(
            "the MPI library offers thread level {level:?}; the pool needs Serialized"
        )));
    }
    Ok(Session {
        universe: Some(universe),
    })
}

impl Session {
    /// This rank's role.
    pub fn role(&self) -> Role {
        match world().rank() {
            0 => Role::Coordinator {
                workers: (world().size() as usize).saturating_sub(1),
            },
            r => Role::Worker { rank: r as u32 },
        }
    }

    /// Whether this job's ranks were given a pool (after which the worker ranks
    /// are past their start and an error on rank 0 ends the job by dropping it).
    pub fn pool_started(&self) -> bool {
        POOL_STARTED.load(Ordering::SeqCst)
    }

    /// On rank 0, once a pool started: which worker ranks map rank 0's memory
    /// files for large values (those on its machine) and which receive them by
    /// collective broadcast. `None` before the pool starts and on other ranks.
    pub fn placement(&self) -> Option<Placement> {
        placement()
    }

    /// Ends the whole job now (`MPI_Abort`): for a rank 0 that fails while the
    /// other ranks wait for it.
    pub fn abort(self, code: i32) -> ! {
        world().abort(code)
    }

    /// This rank and the job's size.
    pub fn rank_and_size(&self) -> (u32, u32) {
        (world().rank() as u32, world().size() as u32)
    }

    /// On a worker rank: serves the pool rank 0 starts, until it is dropped, then
    /// finalizes MPI. Returns the process's exit code (0 after an orderly stop).
    /// The registry must be the coordinator's (the handshake compares them).
    pub fn serve(mut self, registry: &Registry) -> i32 {
        let rank = world().rank();
        // The pool's token, from rank 0 (the pool's start broadcasts it).
        let world = world();
        let root = world.process_at_rank(0);
        let mut len: u64 = 0;
        root.broadcast_into(&mut len);
        let mut token = vec![0u8; len as usize];
        root.broadcast_into(&mut token[..]);
        let placement = RankPlacement::on_worker(&token);
        for (k, v) in crate::launch::WORKER_ENV {
            std::env::set_var(k, v);
        }
        worker::install_panic_hook();
        let id = WorkerIdentity {
            worker_id: (rank - 1) as u32,
            token: String::from_utf8_lossy(&token).into_owned(),
            max_frame: agox_wire::DEFAULT_MAX_FRAME,
        };
        let ending = worker::serve(Box::new(RankEnd::new(placement)), registry, &id);
        let code = match ending {
            Ok(_) => 0,
            Err(e) => {
                eprintln!("agox worker (rank {rank}): {e}");
                3
            }
        };
        self.universe.take();
        code
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if RANK_ABANDONED.load(Ordering::SeqCst) && world().rank() == 0 {
            // MPI_Finalize would wait for the rank given up on, without end if
            // it hangs: end the whole job instead.
            eprintln!(
                "agox-pool: a worker rank was given up on and may still be running; \
                 ending the MPI job (MPI_Abort)"
            );
            world().abort(1);
        }
        // Dropping the universe finalizes MPI.
        self.universe.take();
        INITIALIZED.store(false, Ordering::SeqCst);
    }
}

fn world() -> SimpleCommunicator {
    SimpleCommunicator::world()
}

/// Claims this job's ranks for a pool on rank 0 (once per job).
pub(crate) fn claim_for_pool() -> Result<(), PoolError> {
    if !INITIALIZED.load(Ordering::SeqCst) {
        return Err(PoolError::Config(
            "the MPI transport needs MPI initialized first (agox_pool::mpi::init)".into(),
        ));
    }
    if POOL_STARTED.swap(true, Ordering::SeqCst) {
        return Err(PoolError::Config(
            "the ranks of an MPI job serve one pool; this job started one already".into(),
        ));
    }
    Ok(())
}

/// Records that the pool gave up on a rank (see `RANK_ABANDONED`).
pub(crate) fn abandon_rank() {
    RANK_ABANDONED.store(true, Ordering::SeqCst);
}

/// What [`Session::placement`] says, for code that does not hold the session.
pub fn placement() -> Option<Placement> {
    PLACEMENT.get().cloned()
}

/// Records, on rank 0, how each rank receives large values (`local` by rank).
pub(crate) fn record_placement(local: &[bool]) {
    let (mut shared_memory, mut broadcast) = (Vec::new(), Vec::new());
    for (rank, &l) in local.iter().enumerate().skip(1) {
        if l {
            shared_memory.push(rank as u32);
        } else {
            broadcast.push(rank as u32);
        }
    }
    let _ = PLACEMENT.set(Placement {
        shared_memory,
        broadcast,
    });
}
