//! MPI ranks: rank 0 coordinates, ranks 1..N are the workers (worker `r − 1` on
//! rank `r`), all started by `mpirun` or `srun` — this transport launches nothing
//! and cannot replace a rank (MPI aborts the whole job when one dies).
//!
//! Each link is a rank; a batch of frames travels as one point-to-point message
//! (tag [`TAG`]), and the coordinator never blocks: sends are non-blocking
//! (`MPI_Isend`), messages are found by probing. A large attribute value is
//! written once into a memory file, as for Unix-socket workers: ranks on rank 0's
//! machine open and map it, the ranks elsewhere receive it by one non-blocking
//! collective broadcast (`MPI_Ibcast`) among themselves and rank 0, which each
//! joins when it reads the frame announcing the value (in order, after the tasks
//! before it). Which rank does which was settled at the start
//! ([`placement`]).
//!
//! MPI has no readiness descriptor: every wait probes (or tests its request),
//! yielding the processor between probes for [`SPIN`] — a request following an
//! answer is then seen at once, not after a sleep — and then sleeping a little
//! longer each time (at most [`MAX_NAP`]), so an idle rank does not take a core
//! from the busy ones of an oversubscribed node. While a broadcast is in flight
//! the naps stay short ([`COLLECTIVE_NAP`]): a non-blocking collective advances
//! only when its ranks call MPI, and each step of its tree waits for them.

pub(crate) mod placement;
mod rank;

pub(crate) use rank::RankEnd;

use super::peer::Peer;
use super::{Bulk, Chunk, Event, LinkId, Transport};
use crate::error::PoolError;
use crate::events::WorkerExit;
use crate::launch::SpawnError;
use crate::shm::SharedFile;
use agox_wire::{encode_frame, ToWorker};
use mpi::ffi;
use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, Root, Source};
use placement::{Note, Placement, NOTE_TAG};
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The tag of the pool's point-to-point messages.
pub(crate) const TAG: i32 = 7;

/// How long a wait probes without sleeping, yielding the processor between
/// probes: longer than the usual gap between an answer and the next request, so
/// a busy pool never sleeps, yet an idle rank stops competing for the core soon.
const SPIN: Duration = Duration::from_micros(200);

/// Longest sleep between probes once the spin is over.
const MAX_NAP: Duration = Duration::from_micros(500);

/// Longest sleep while a broadcast is in flight: each step of its tree (a rank's
/// sends to its children) waits for that rank's next call into MPI.
const COLLECTIVE_NAP: Duration = Duration::from_micros(20);

/// Probes with a growing pause: yields for [`SPIN`], then sleeps 20 µs, 40 µs, …
/// up to a longest nap.
pub(crate) struct Backoff {
    since: Instant,
    naps: u32,
}

impl Backoff {
    pub fn new() -> Self {
        Backoff {
            since: Instant::now(),
            naps: 0,
        }
    }

    /// Pauses, at most `longest` and at most until `deadline`.
    pub fn pause(&mut self, longest: Duration, deadline: Option<Instant>) {
        if self.since.elapsed() < SPIN {
            std::thread::yield_now();
            return;
        }
        let mut nap = Duration::from_micros(20u64 << self.naps.min(5)).min(longest);
        self.naps += 1;
        if let Some(d) = deadline {
            nap = nap.min(d.saturating_duration_since(Instant::now()));
        }
        if !nap.is_zero() {
            std::thread::sleep(nap);
        }
    }
}

/// A non-blocking send or broadcast in flight, with the buffer it reads, kept
/// alive (and unmoved on the heap) until it completes.
struct InFlight {
    request: ffi::MPI_Request,
    _own: Option<Vec<u8>>,
    _shared: Option<Arc<SharedFile>>,
}

// SAFETY: a request handle is an opaque token of the MPI library. MPI is
// initialized with MPI_THREAD_SERIALIZED (`crate::mpi::init`), and every use of a
// transport happens under the pool's lock, so no two threads call MPI at once.
unsafe impl Send for InFlight {}

impl InFlight {
    fn collective(&self) -> bool {
        self._shared.is_some()
    }

    /// True once complete (the buffer may then go).
    fn test(&mut self) -> bool {
        let mut flag: i32 = 0;
        // SAFETY: `request` is an active request created by MPI_Isend/MPI_Ibcast
        // whose buffer this value keeps alive; MPI_Test completes and frees it.
        unsafe {
            ffi::MPI_Test(&mut self.request, &mut flag, ffi::RSMPI_STATUS_IGNORE);
        }
        flag != 0
    }
}

/// Casts a length to MPI's element count.
pub(crate) fn count(len: usize) -> Result<i32, String> {
    i32::try_from(len).map_err(|_| format!("{len} bytes exceed what one MPI message carries"))
}

/// The coordinator's side: rank 0.
pub(crate) struct MpiTransport {
    /// By rank (index 0 unused).
    links: Vec<Option<RankLink>>,
    in_flight: VecDeque<InFlight>,
    max_frame: usize,
    placement: Placement,
}

struct RankLink {
    peer: Peer,
    welcomed: bool,
}

impl MpiTransport {
    /// The transport over this job's ranks; `workers` must be the job's size − 1.
    /// Hands the pool's token to every rank (a collective broadcast they join at
    /// the start of [`serve`](crate::mpi::Session::serve)).
    pub fn new(workers: usize, max_frame: usize, token: &str) -> Result<Self, PoolError> {
        crate::mpi::claim_for_pool()?;
        let world = SimpleCommunicator::world();
        let size = world.size() as usize;
        if world.rank() != 0 {
            return Err(PoolError::Config(format!(
                "the MPI transport's coordinator is rank 0, not rank {}",
                world.rank()
            )));
        }
        if size != workers + 1 {
            return Err(PoolError::Config(format!(
                "an MPI job of {size} ranks has {} workers (rank 0 coordinates); {workers} were asked for",
                size - 1
            )));
        }
        let mut len = token.len() as u64;
        let root = world.process_at_rank(0);
        root.broadcast_into(&mut len);
        let mut bytes = token.as_bytes().to_vec();
        root.broadcast_into(&mut bytes[..]);
        let placement = Placement::on_coordinator(token)?;
        Ok(MpiTransport {
            links: (0..size)
                .map(|r| {
                    (r > 0).then(|| RankLink {
                        peer: Peer::new(max_frame),
                        welcomed: false,
                    })
                })
                .collect(),
            in_flight: VecDeque::new(),
            max_frame,
            placement,
        })
    }

    fn link(&mut self, link: LinkId) -> Option<&mut RankLink> {
        self.links.get_mut(link as usize)?.as_mut()
    }

    /// Completes what finished of the sends and broadcasts in flight.
    fn progress(&mut self) {
        self.in_flight.retain_mut(|r| !r.test());
    }

    fn isend(&mut self, rank: LinkId, msg: Vec<u8>) -> Result<(), String> {
        self.isend_tagged(rank, msg, TAG)
    }

    fn isend_tagged(&mut self, rank: LinkId, msg: Vec<u8>, tag: i32) -> Result<(), String> {
        let n = count(msg.len())?;
        let mut request: ffi::MPI_Request = unsafe_request_null();
        // SAFETY: the buffer is moved into `in_flight` with the request and stays
        // there, unmoved on the heap, until MPI_Test reports the send complete.
        unsafe {
            ffi::MPI_Isend(
                msg.as_ptr().cast(),
                n,
                ffi::RSMPI_UINT8_T,
                rank as i32,
                tag,
                ffi::RSMPI_COMM_WORLD,
                &mut request,
            );
        }
        self.in_flight.push_back(InFlight {
            request,
            _own: Some(msg),
            _shared: None,
        });
        Ok(())
    }

    /// Whether `rank` maps rank 0's memory files.
    fn local(&self, rank: LinkId) -> bool {
        self.placement
            .local
            .get(rank as usize)
            .copied()
            .unwrap_or(false)
    }

    /// Broadcasts `file`'s value on the remote communicator.
    fn ibcast(&mut self, file: &Arc<SharedFile>) -> Result<(), String> {
        let comm = self.placement.remote.ok_or("no rank to broadcast to")?;
        let n = count(file.len())?;
        let mut request: ffi::MPI_Request = unsafe_request_null();
        // SAFETY: on the root, MPI_Ibcast only reads the buffer (the C binding
        // takes a non-const pointer for the receivers' sake); the Arc in
        // `in_flight` keeps the file and its mapping alive, and the coordinator
        // writes no new value into it while a frame refers to it.
        unsafe {
            ffi::MPI_Ibcast(
                file.bytes().as_ptr().cast_mut().cast(),
                n,
                ffi::RSMPI_UINT8_T,
                0,
                comm.0,
                &mut request,
            );
        }
        self.in_flight.push_back(InFlight {
            request,
            _own: None,
            _shared: Some(file.clone()),
        });
        Ok(())
    }

    /// Tells `rank` where the value of `file` is: the file itself on rank 0's
    /// machine, else the next broadcast (`broadcast`) or this note.
    fn note(&mut self, rank: LinkId, file: &SharedFile, broadcast: bool) -> Result<(), String> {
        let note = if self.local(rank) {
            Note::File(file.fd().as_raw_fd())
        } else if broadcast {
            Note::Broadcast
        } else {
            Note::Inline(file.bytes().to_vec())
        };
        self.isend_tagged(rank, note.encode(), NOTE_TAG)
    }

    /// The memory files `chunks` announce.
    fn files(chunks: &[Chunk]) -> impl Iterator<Item = &Arc<SharedFile>> {
        chunks.iter().filter_map(|c| match c {
            Chunk::SharedFd(_, file) => Some(file),
            _ => None,
        })
    }

    /// Receives every message waiting; true if any arrived.
    fn receive(&mut self, events: &mut Vec<Event>) -> bool {
        let mut any = false;
        let world = SimpleCommunicator::world();
        while let Some((msg, status)) = world.any_process().immediate_matched_probe_with_tag(TAG) {
            any = true;
            let rank = status.source_rank() as LinkId;
            let (bytes, _) = (msg, status).matched_receive_vec::<u8>();
            let Some(l) = self.links.get_mut(rank as usize).and_then(Option::as_mut) else {
                continue;
            };
            let start = events.len();
            let alive = l.peer.feed(&bytes, rank, events);
            if !l.welcomed {
                let greeting: Vec<Event> = events
                    .drain(start..)
                    .map(|e| super::as_greeting(e, rank))
                    .collect();
                events.extend(greeting);
            }
            if !alive {
                // A rank that broke the protocol stays in the job; it is never
                // read again.
                self.links[rank as usize] = None;
            }
            if events.len() > 4096 {
                break;
            }
        }
        any
    }
}

fn unsafe_request_null() -> ffi::MPI_Request {
    // SAFETY: reading an immutable handle constant of the MPI library.
    unsafe { ffi::RSMPI_REQUEST_NULL }
}

impl Transport for MpiTransport {
    fn address(&self) -> Option<String> {
        None
    }

    fn bulk(&self) -> Bulk {
        Bulk::MemoryFiles
    }

    fn replaceable(&self) -> bool {
        false
    }

    fn launches(&self) -> bool {
        false
    }

    fn spawn(&mut self, _worker: u32) -> Result<u32, SpawnError> {
        Err(SpawnError::Gone(
            "MPI ranks are started by mpirun or srun".into(),
        ))
    }

    fn kill(&mut self, _pid: u32, _timeout: Duration) -> Option<WorkerExit> {
        None
    }

    fn wait(&mut self, timeout: Duration, events: &mut Vec<Event>) -> Result<(), PoolError> {
        let deadline = Instant::now() + timeout;
        let mut backoff = Backoff::new();
        loop {
            self.progress();
            if self.receive(events) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Ok(());
            }
            let longest = if self.in_flight.iter().any(InFlight::collective) {
                COLLECTIVE_NAP
            } else {
                MAX_NAP
            };
            backoff.pause(longest, Some(deadline));
        }
    }

    fn drain(&mut self, _link: LinkId, events: &mut Vec<Event>) {
        self.receive(events);
    }

    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    fn welcome(&mut self, link: LinkId, pool_size: usize) -> Result<(), String> {
        let frame = encode_frame(&ToWorker::Welcome {
            pool_size: pool_size as u32,
        })
        .map_err(|e| e.to_string())?;
        let l = self.link(link).ok_or("no such rank")?;
        l.welcomed = true;
        l.peer.queue(&[Chunk::Own(frame)]);
        self.flush(link)
    }

    fn refuse(&mut self, link: LinkId, reason: &str) {
        if let Ok(frame) = encode_frame(&ToWorker::Refused {
            reason: reason.to_string(),
        }) {
            let _ = self.isend(link, frame);
        }
        if let Some(l) = self.links.get_mut(link as usize) {
            *l = None;
        }
    }

    fn close(&mut self, link: LinkId) {
        if let Some(l) = self.links.get_mut(link as usize) {
            if l.take().is_some_and(|l| l.welcomed) {
                // A rank given up on may be hung: it would hold MPI_Finalize.
                crate::mpi::abandon_rank();
            }
        }
    }

    fn batch(&mut self, link: LinkId) -> Option<&mut Vec<u8>> {
        self.link(link).map(|l| &mut l.peer.batch)
    }

    fn queue(&mut self, link: LinkId, chunks: &[Chunk]) {
        let Some(l) = self.link(link) else { return };
        l.peer.queue(chunks);
        // A value for this rank alone: the file, or the value in the note.
        for file in Self::files(chunks) {
            // A rank that cannot take its note cannot take the frame either: the
            // flush that follows reports the failure.
            let _ = self.note(link, file, false);
        }
    }

    fn broadcast(&mut self, links: &[LinkId], frame: &[Chunk]) -> Vec<(LinkId, String)> {
        let mut failed = Vec::new();
        for &link in links {
            if let Some(l) = self.link(link) {
                l.peer.queue(frame);
            }
            if let Err(e) = self.flush(link) {
                failed.push((link, e));
            }
        }
        // Each value: its file to the ranks on this machine, one broadcast to
        // the others (which join it when they read the frame announcing it).
        for file in Self::files(frame) {
            let mut remote = false;
            for &link in links {
                remote |= !self.local(link);
                if let Err(e) = self.note(link, file, true) {
                    failed.push((link, e));
                }
            }
            if remote {
                if let Err(e) = self.ibcast(file) {
                    failed.extend(links.iter().map(|&l| (l, e.clone())));
                }
            }
        }
        failed
    }

    fn flush(&mut self, link: LinkId) -> Result<(), String> {
        let Some(msg) = self.link(link).and_then(|l| l.peer.take_message()) else {
            return Ok(());
        };
        if msg.len() > self.max_frame.saturating_mul(2) {
            return Err(format!("{} bytes queued for rank {link}", msg.len()));
        }
        self.isend(link, msg)
    }

    fn shutdown(&mut self, grace: Duration) {
        // Every rank is told, welcomed or not: a rank still waiting for its
        // welcome (a start that failed) ends too, and so does the job.
        if let Ok(frame) = encode_frame(&ToWorker::Shutdown) {
            for r in 1..self.links.len() as LinkId {
                let pending = self.link(r).and_then(|l| l.peer.take_message());
                let mut msg = pending.unwrap_or_default();
                msg.extend_from_slice(&frame);
                let _ = self.isend(r, msg);
            }
        }
        // Every send must complete before MPI is finalized.
        let deadline = Instant::now() + grace;
        let mut backoff = Backoff::new();
        while !self.in_flight.is_empty() && Instant::now() < deadline {
            self.progress();
            backoff.pause(COLLECTIVE_NAP, Some(deadline));
        }
        self.links.iter_mut().for_each(|l| *l = None);
    }
}

impl Drop for MpiTransport {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(10));
        // What could not complete is left to MPI_Finalize; the buffers must
        // outlive the requests, so they are leaked rather than freed under MPI.
        for r in self.in_flight.drain(..) {
            std::mem::forget(r);
        }
    }
}
