//! A worker rank's end of its link to rank 0: frames arrive as point-to-point
//! messages, large values as rank 0's memory files, broadcasts or notes
//! ([`placement`](super::placement)).

use super::placement::{open_file, Note, Placement, NOTE_TAG};
use super::{count, Backoff, COLLECTIVE_NAP, MAX_NAP, TAG};
use crate::shm::SharedValue;
use crate::transport::Connection;
use mpi::ffi;
use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, Destination, Source};
use std::io::{self, Read, Write};
use std::os::fd::{OwnedFd, RawFd};
use std::sync::Arc;

pub(crate) struct RankEnd {
    buf: Vec<u8>,
    pos: usize,
    placement: Placement,
    /// The buffer the last broadcast value was received into, reused for the
    /// next one once the worker has dropped it: a fresh allocation of a large
    /// value is a fresh mapping, whose every page faults as the value arrives.
    received: Option<Arc<Vec<u8>>>,
}

impl RankEnd {
    pub fn new(placement: Placement) -> Self {
        RankEnd {
            buf: Vec::new(),
            pos: 0,
            placement,
            received: None,
        }
    }

    /// The next message from rank 0 with `tag`, waiting for it.
    fn receive(tag: i32) -> Vec<u8> {
        let world = SimpleCommunicator::world();
        let root = world.process_at_rank(0);
        let mut backoff = Backoff::new();
        let found = loop {
            if let Some(found) = root.immediate_matched_probe_with_tag(tag) {
                break found;
            }
            backoff.pause(MAX_NAP, None);
        };
        found.matched_receive_vec::<u8>().0
    }

    /// Joins rank 0's next broadcast of `len` bytes on the remote communicator.
    fn join_broadcast(&mut self, len: usize) -> io::Result<SharedValue> {
        let comm = self.placement.remote.ok_or_else(|| {
            io::Error::other("a broadcast announced to a rank outside the broadcast group")
        })?;
        let n = count(len).map_err(io::Error::other)?;
        let mut value = match self.received.take().map(Arc::try_unwrap) {
            // Not when too small (growing would copy the old value), nor when
            // much larger (the worker would hold memory it no longer needs).
            Some(Ok(v)) if v.capacity() >= len && v.capacity() / 2 <= len => v,
            _ => Vec::new(),
        };
        // The broadcast overwrites every byte; only a longer tail is zeroed.
        value.resize(len, 0);
        // The coordinator's broadcast is non-blocking, and blocking and
        // non-blocking collectives never match: this side is non-blocking too.
        let mut request = unsafe_request_null();
        // SAFETY: `value` holds `len` writable bytes and is neither moved nor
        // dropped until MPI_Test reports the broadcast complete below.
        unsafe {
            ffi::MPI_Ibcast(
                value.as_mut_ptr().cast(),
                n,
                ffi::RSMPI_UINT8_T,
                0,
                comm.0,
                &mut request,
            );
        }
        let mut backoff = Backoff::new();
        loop {
            let mut done: i32 = 0;
            // SAFETY: an active request of the broadcast above; MPI_Test frees it
            // once complete.
            unsafe {
                ffi::MPI_Test(&mut request, &mut done, ffi::RSMPI_STATUS_IGNORE);
            }
            if done != 0 {
                break;
            }
            backoff.pause(COLLECTIVE_NAP, None);
        }
        let value = Arc::new(value);
        self.received = Some(value.clone());
        Ok(SharedValue::Received(value))
    }
}

fn unsafe_request_null() -> ffi::MPI_Request {
    // SAFETY: reading an immutable handle constant of the MPI library.
    unsafe { ffi::RSMPI_REQUEST_NULL }
}

impl Read for RankEnd {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            self.buf = Self::receive(TAG);
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
        match Note::decode(Self::receive(NOTE_TAG))? {
            Note::File(fd) => {
                let file = open_file(self.placement.coordinator_pid, fd).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("opening rank 0's memory file (descriptor {fd}): {e}"),
                    )
                })?;
                Ok(SharedValue::File(OwnedFd::from(file)))
            }
            Note::Broadcast => self.join_broadcast(len),
            Note::Inline(bytes) => Ok(SharedValue::Received(Arc::new(bytes))),
        }
    }
}
