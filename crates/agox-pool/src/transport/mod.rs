//! Transports: how frames move between the coordinator and its workers, and how
//! the coordinator learns that something happened.
//!
//! The coordinator's event loop sees one small interface, `Transport`: it queues
//! frames for a link, and asks the transport to `wait` for
//! events (a greeting, a message, a lost link, a worker process that ended). How
//! readiness is found is the transport's business: `poll(2)` on sockets (Unix,
//! TCP), a channel (in-process threads), probing for messages (MPI ranks). Two
//! capabilities are optional:
//!
//! * **launching** (`spawn`, `kill`): Unix and TCP pools fork or execute their
//!   workers, the in-process pool starts threads; MPI ranks are started by
//!   `mpirun` or `srun`, and TCP workers may be started by another launcher.
//! * **bulk values** (`Bulk`): large attribute values travel outside the
//!   ordered stream where the transport can do better than copying them through
//!   it — a memory file the workers map: passed by descriptor (Unix), opened
//!   through `/proc` by MPI ranks on the coordinator's machine, and sent by
//!   collective broadcast to ranks elsewhere.
//!
//! Every transport carries the same frames (`agox-wire`), so the scheduler, the
//! handshake and the synchronization are the same code on each.
//!
//! | module | transport | links | launching | bulk |
//! | --- | --- | --- | --- | --- |
//! | `stream` + `unix` | Unix stream socket in a private directory | one per worker | fork server, exec | descriptors |
//! | `stream` + `tcp` | TCP, `tcp://HOST:PORT` | one per worker | fork server, exec, or none (external) | — |
//! | `inproc` | threads and channels in this process | one per thread | threads | — |
//! | `mpi` (feature `mpi`) | MPI ranks of one job; rank 0 coordinates | one per rank | none (`mpirun`) | memory file on rank 0's machine, collective broadcast beyond |

pub(crate) mod inproc;
#[cfg(feature = "mpi")]
pub(crate) mod mpi;
pub(crate) mod peer;
pub(crate) mod stream;
mod tcp;
mod unix;

pub use tcp::{TcpConnection, TcpEndpoint};
pub use unix::{UnixConnection, UnixEndpoint};

use crate::error::PoolError;
use crate::events::{LossCause, WorkerExit};
use crate::handshake::Refusal;
use crate::launch::SpawnError;
use crate::shm::{SharedFile, SharedValue};
use agox_wire::{FromWorker, Hello};
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A link to one peer (a greeted connection, a thread, a rank), named by the
/// transport.
pub(crate) type LinkId = u64;

/// Something the coordinator must act on.
#[derive(Debug)]
pub(crate) enum Event {
    /// A peer sent a well-formed greeting; it waits for
    /// [`welcome`](Transport::welcome) or [`refuse`](Transport::refuse).
    Hello { link: LinkId, hello: Hello },
    /// The transport refused a peer before its greeting was complete (malformed,
    /// silent, too many waiting, another user).
    Refused(Refusal),
    /// A message from a welcomed peer.
    Message { link: LinkId, msg: FromWorker },
    /// A welcomed link ended or failed; nothing more will arrive on it.
    Lost { link: LinkId, cause: LossCause },
    /// A process (or thread) the transport launched ended.
    Exited { pid: u32, exit: WorkerExit },
    /// The launcher can launch no more workers (the fork server is gone).
    LauncherGone(String),
}

/// How large values reach every worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bulk {
    /// Through the ordered stream, like any frame.
    Inline,
    /// Written once into a memory file, which each worker maps (or, where it
    /// cannot, receives by the transport's collective broadcast).
    MemoryFiles,
}

/// Bytes queued for one link: owned, or shared with other links (a broadcast
/// frame is encoded once and written to each worker from the same buffer).
#[derive(Clone)]
pub(crate) enum Chunk {
    Own(Vec<u8>),
    Shared(Arc<Vec<u8>>),
    /// A frame announcing a value in a memory file, which reaches the worker
    /// with it: its descriptor on the frame's first byte (`SCM_RIGHTS`), or
    /// however else the transport has.
    SharedFd(Arc<Vec<u8>>, Arc<SharedFile>),
}

impl Chunk {
    /// The bytes this chunk puts on the link.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Own(v) => v,
            Chunk::Shared(v) | Chunk::SharedFd(v, _) => v,
        }
    }

    /// A copy for another link (sharing the buffer where there is one).
    pub fn for_another(&self) -> Chunk {
        match self {
            Chunk::Own(v) => Chunk::Shared(Arc::new(v.clone())),
            other => other.clone(),
        }
    }
}

/// Turns the first messages of a link not welcomed yet (message transports,
/// which frame the greeting like any message) into its greeting, or a refusal.
pub(crate) fn as_greeting(event: Event, link: LinkId) -> Event {
    match event {
        Event::Message {
            msg: FromWorker::Hello(hello),
            ..
        } => Event::Hello { link, hello },
        Event::Lost { cause, .. } => Event::Refused(Refusal {
            kind: crate::events::RefusalKind::Malformed,
            reason: format!("no valid greeting: {cause}"),
            authentic: None,
        }),
        _ => Event::Refused(Refusal {
            kind: crate::events::RefusalKind::Malformed,
            reason: "a message before the greeting".into(),
            authentic: None,
        }),
    }
}

/// What the coordinator's event loop needs of a transport.
pub(crate) trait Transport: Send {
    /// Where workers connect (`None` where they do not: threads, MPI ranks).
    fn address(&self) -> Option<String>;
    /// How large values reach every worker.
    fn bulk(&self) -> Bulk;
    /// Whether a lost worker's slot can be filled again: by launching a
    /// replacement, or by a worker that connects on its own.
    fn replaceable(&self) -> bool;
    /// Launches a worker for slot `worker`; its process id (or thread number).
    /// `Err(SpawnError::Gone)` where this transport launches nothing.
    fn spawn(&mut self, worker: u32) -> Result<u32, SpawnError>;
    /// Whether this transport launches workers.
    fn launches(&self) -> bool;
    /// The operating-system process of the worker launched as `handle` (what
    /// [`spawn`](Self::spawn) returned): the same number, except for workers that
    /// are threads of this process.
    fn process_of(&self, handle: u32) -> u32 {
        handle
    }
    /// Kills a launched worker and waits up to `timeout` for how it ended.
    fn kill(&mut self, pid: u32, timeout: Duration) -> Option<WorkerExit>;
    /// Waits up to `timeout` for events and appends them to `events`; writes
    /// queued output as links take it meanwhile.
    fn wait(&mut self, timeout: Duration, events: &mut Vec<Event>) -> Result<(), PoolError>;
    /// Reads whatever a link has already received, without waiting (before the
    /// loss of a worker whose process ended: its last answers count).
    fn drain(&mut self, link: LinkId, events: &mut Vec<Event>);
    /// The earliest instant the transport wants to be waited on again (handshake
    /// deadlines, a paused door, exits that can only be polled for).
    fn next_deadline(&self) -> Option<Instant>;
    /// Accepts a greeted peer: sends `Welcome`; from now on its messages arrive.
    fn welcome(&mut self, link: LinkId, pool_size: usize) -> Result<(), String>;
    /// Refuses a greeted peer with `reason`, and closes it.
    fn refuse(&mut self, link: LinkId, reason: &str);
    /// Closes a link; its queued output is dropped.
    fn close(&mut self, link: LinkId);
    /// The buffer frames are encoded into for `link` (sent at the next flush,
    /// before anything queued after it).
    fn batch(&mut self, link: LinkId) -> Option<&mut Vec<u8>>;
    /// Queues `chunks` for `link` after its batch.
    fn queue(&mut self, link: LinkId, chunks: &[Chunk]);
    /// Queues one frame for every link in `links` (which may carry a collective
    /// value) and writes what the links take now; the links that failed.
    fn broadcast(&mut self, links: &[LinkId], frame: &[Chunk]) -> Vec<(LinkId, String)> {
        let mut failed = Vec::new();
        for &link in links {
            self.queue(link, frame);
            if let Err(e) = self.flush(link) {
                failed.push((link, e));
            }
        }
        failed
    }
    /// Writes as much of `link`'s queued output as it takes now.
    fn flush(&mut self, link: LinkId) -> Result<(), String>;
    /// Says goodbye to every link where that costs no waiting, then stops every
    /// launched worker (within `grace`) and releases the endpoint.
    fn shutdown(&mut self, grace: Duration);
}

/// One bidirectional byte stream between the coordinator and a worker, as a worker
/// reads and writes it (and as stream transports do on the coordinator's side).
pub trait Connection: Read + Write + Send {
    /// The descriptor, for readiness polling (none for links that are not
    /// descriptors).
    fn raw_fd(&self) -> Option<RawFd>;
    /// Switches non-blocking mode (the coordinator polls; workers block).
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
    /// The effective user id of the peer, where the transport knows it.
    fn peer_uid(&self) -> io::Result<Option<u32>> {
        Ok(None)
    }
    /// The process id of the peer, where the transport knows it.
    fn peer_pid(&self) -> Option<u32> {
        None
    }
    /// Whether this transport can pass file descriptors.
    fn passes_fds(&self) -> bool {
        false
    }
    /// Writes the start of `bytes` with descriptor `fd` attached; returns how many
    /// bytes were written.
    fn send_with_fd(&mut self, bytes: &[u8], fd: RawFd) -> io::Result<usize> {
        let _ = (bytes, fd);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this transport cannot pass descriptors",
        ))
    }
    /// On a worker: the next value of `len` bytes that travels outside the
    /// stream (`SetAttributesShared`), in the order announced.
    fn take_shared(&mut self, len: usize) -> io::Result<SharedValue> {
        let _ = len;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this transport carries no shared values",
        ))
    }
}

/// Where workers connect to a coordinator over a stream transport.
pub trait Endpoint: Send {
    /// The address a worker is given (`--connect ADDRESS`).
    fn address(&self) -> String;
    /// Takes the next incoming connection if one is waiting (non-blocking).
    fn accept(&self) -> io::Result<Option<Box<dyn Connection>>>;
    /// The listening descriptor, polled for new connections.
    fn raw_fd(&self) -> RawFd;
    /// The directory that holds the endpoint (Unix sockets), removed with it.
    fn dir(&self) -> Option<&std::path::Path> {
        None
    }
}

/// The TCP scheme of an address: `tcp://HOST:PORT`.
pub const TCP_SCHEME: &str = "tcp://";

/// Connects a worker to the coordinator at `address`: `tcp://HOST:PORT`, or the
/// path of a Unix socket.
pub fn connect(address: &str) -> io::Result<Box<dyn Connection>> {
    match address.strip_prefix(TCP_SCHEME) {
        Some(host_port) => tcp::connect(host_port),
        None => unix::connect(address),
    }
}

/// A readiness wait on descriptors; `Interrupted` counts as nothing ready.
pub(crate) fn poll_fds(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<()> {
    // Round up, so a deadline has passed when poll returns.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: `fds` is a valid array of pollfd for its length.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}
