//! MPI ranks: rank 0 coordinates, ranks 1..N are the workers (worker `r − 1` on
//! rank `r`), all started by `mpirun` or `srun` — this transport launches nothing
//! and cannot replace a rank (MPI aborts the whole job when one dies).
//!
//! Each link is a rank; a batch of frames travels as one point-to-point message
//! (tag [`TAG`]), and the coordinator never blocks: sends are non-blocking
//! (`MPI_Isend`), messages are found by probing. A large attribute value travels
//! by one non-blocking collective broadcast (`MPI_Ibcast`) from rank 0, announced
//! to every rank by a `SetAttributesShared` frame; each worker joins the broadcast
//! when it reads that frame (in order, after the tasks before it).
//!
//! MPI has no readiness descriptor: every wait probes (or tests its request),
//! yielding the processor between probes for [`SPIN`] — a request following an
//! answer is then seen at once, not after a sleep — and then sleeping a little
//! longer each time (at most [`MAX_NAP`]), so an idle rank does not take a core
//! from the busy ones of an oversubscribed node. While a broadcast is in flight
//! the naps stay short ([`COLLECTIVE_NAP`]): a non-blocking collective advances
//! only when its ranks call MPI, and each step of its tree waits for them.

use super::peer::Peer;
use super::{Bulk, Chunk, Connection, Event, LinkId, Transport};
use crate::error::PoolError;
use crate::events::WorkerExit;
use crate::launch::SpawnError;
use crate::shm::SharedValue;
use agox_wire::{encode_frame, ToWorker};
use mpi::ffi;
use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, Destination, Root, Source};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
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
    _shared: Option<Arc<Vec<u8>>>,
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
fn count(len: usize) -> Result<i32, String> {
    i32::try_from(len).map_err(|_| format!("{len} bytes exceed what one MPI message carries"))
}

/// The coordinator's side: rank 0.
pub(crate) struct MpiTransport {
    /// By rank (index 0 unused).
    links: Vec<Option<RankLink>>,
    in_flight: VecDeque<InFlight>,
    max_frame: usize,
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
                TAG,
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

    fn ibcast(&mut self, value: &Arc<Vec<u8>>) -> Result<(), String> {
        let n = count(value.len())?;
        let mut request: ffi::MPI_Request = unsafe_request_null();
        // SAFETY: on the root, MPI_Ibcast only reads the buffer (the C binding
        // takes a non-const pointer for the receivers' sake); the Arc in
        // `in_flight` keeps it alive and unchanged until MPI_Test reports the
        // broadcast complete.
        unsafe {
            ffi::MPI_Ibcast(
                value.as_ptr().cast_mut().cast(),
                n,
                ffi::RSMPI_UINT8_T,
                0,
                ffi::RSMPI_COMM_WORLD,
                &mut request,
            );
        }
        self.in_flight.push_back(InFlight {
            request,
            _own: None,
            _shared: Some(value.clone()),
        });
        Ok(())
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
        Bulk::Collective
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
            *l = None;
        }
    }

    fn batch(&mut self, link: LinkId) -> Option<&mut Vec<u8>> {
        self.link(link).map(|l| &mut l.peer.batch)
    }

    fn queue(&mut self, link: LinkId, chunks: &[Chunk]) {
        if let Some(l) = self.link(link) {
            l.peer.queue(chunks);
        }
    }

    fn broadcast(&mut self, links: &[LinkId], frame: &[Chunk]) -> Vec<(LinkId, String)> {
        let mut failed = Vec::new();
        let (collective, stream): (Vec<&Chunk>, Vec<&Chunk>) = frame
            .iter()
            .partition(|c| matches!(c, Chunk::Collective(_)));
        let stream: Vec<Chunk> = stream.into_iter().cloned().collect();
        for &link in links {
            self.queue(link, &stream);
            if let Err(e) = self.flush(link) {
                failed.push((link, e));
            }
        }
        // Every rank joins each broadcast when it reads the frame announcing it.
        for c in collective {
            if let Chunk::Collective(value) = c {
                if let Err(e) = self.ibcast(value) {
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

/// A worker rank's end of its link to rank 0.
#[derive(Default)]
pub(crate) struct RankEnd {
    buf: Vec<u8>,
    pos: usize,
    /// The buffer the last broadcast value was received into, reused for the
    /// next one once the worker has dropped it: a fresh allocation of a large
    /// value is a fresh mapping, whose every page faults as the value arrives.
    received: Option<Arc<Vec<u8>>>,
}

impl Read for RankEnd {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            let world = SimpleCommunicator::world();
            let root = world.process_at_rank(0);
            let mut backoff = Backoff::new();
            let found = loop {
                if let Some(found) = root.immediate_matched_probe_with_tag(TAG) {
                    break found;
                }
                backoff.pause(MAX_NAP, None);
            };
            let (bytes, _) = found.matched_receive_vec::<u8>();
            self.buf = bytes;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for RankEnd {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        count(bytes.len()).map_err(io::Error::other)?;
        SimpleCommunicator::world()
            .process_at_rank(0)
            .send_with_tag(bytes, TAG);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Connection for RankEnd {
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }
    fn set_nonblocking(&self, _on: bool) -> io::Result<()> {
        Ok(())
    }
    fn take_shared(&mut self, len: usize) -> io::Result<SharedValue> {
        let mut value = match self.received.take().map(Arc::try_unwrap) {
            // Not when too small (growing would copy the old value), nor when
            // much larger (the worker would hold memory it no longer needs).
            Some(Ok(v)) if v.capacity() >= len && v.capacity() / 2 <= len => v,
            _ => Vec::new(),
        };
        // The broadcast overwrites every byte; only a longer tail is zeroed.
        value.resize(len, 0);
        let world = SimpleCommunicator::world();
        let root = world.process_at_rank(0);
        // The coordinator's broadcast is non-blocking, and blocking and
        // non-blocking collectives never match: this side is non-blocking too.
        mpi::request::scope(|scope| {
            let mut request = root.immediate_broadcast_into(scope, &mut value[..]);
            let mut backoff = Backoff::new();
            while let Err(pending) = request.test() {
                request = pending;
                backoff.pause(COLLECTIVE_NAP, None);
            }
        });
        let value = Arc::new(value);
        self.received = Some(value.clone());
        Ok(SharedValue::Received(value))
    }
}
