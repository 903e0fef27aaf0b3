//! Which ranks share rank 0's machine, and how each large value reaches a rank.
//!
//! At the start every rank takes part in one exchange (after the token): rank 0
//! announces its process id and a probe memory file holding the pool's token;
//! each worker rank tries to open that file through `/proc/PID/fd/N` and read the
//! token back. A rank that can is on rank 0's machine and maps rank 0's memory
//! files for large values, as a Unix-socket worker does; the others, and rank 0,
//! form the communicator that large values are broadcast on (`remote`). On one
//! machine no value is broadcast at all; across a cluster a value costs one
//! collective among the ranks elsewhere and nothing for rank 0's neighbours.
//!
//! Each large value announced to a rank (a `SetAttributesShared` frame) is
//! followed by a [`Note`] to that rank (tag [`NOTE_TAG`]) saying where the value
//! is: in a memory file of rank 0 (its descriptor number), in the next broadcast
//! on `remote`, or in the note itself (a value for one rank alone).
//!
//! `AGOX_MPI_SHARED_MEMORY=off` in rank 0's environment makes every rank remote
//! (the broadcast path, on one machine too); in a worker rank's environment, that
//! rank alone. [`Session::placement`](crate::mpi::Session::placement) tells
//! which rank took which path.

use crate::error::PoolError;
use crate::shm::SharedFile;
use mpi::ffi;
use mpi::topology::{Color, SimpleCommunicator};
use mpi::traits::{AsRaw, Communicator, CommunicatorCollectives, Root};
use std::io::{self, Read};

/// The tag of the notes that say where a large value is.
pub(crate) const NOTE_TAG: i32 = 8;

/// The environment variable that turns shared memory between ranks off.
pub const SHARED_MEMORY_ENV: &str = "AGOX_MPI_SHARED_MEMORY";

/// A communicator handle kept for the life of the job (MPI frees it at
/// finalization).
#[derive(Clone, Copy)]
pub(crate) struct Comm(pub ffi::MPI_Comm);

// SAFETY: a communicator handle is an opaque token of the MPI library. MPI is
// initialized with MPI_THREAD_SERIALIZED (`crate::mpi::init`), and every use of a
// transport happens under the pool's lock (or on a worker's one thread), so no two
// threads call MPI at once.
unsafe impl Send for Comm {}

/// What this rank learned of the job's layout at the start.
pub(crate) struct Placement {
    /// By rank: whether it maps rank 0's memory files (rank 0: true).
    pub local: Vec<bool>,
    /// Rank 0 and the ranks that do not map its memory files; `None` on a rank
    /// that does (and on rank 0 when every rank does).
    pub remote: Option<Comm>,
    /// Rank 0's process id.
    pub coordinator_pid: u32,
}

impl Placement {
    /// Rank 0's side of the start's exchange.
    pub fn on_coordinator(token: &str) -> Result<Placement, PoolError> {
        let probe = if shared_memory_allowed() {
            Some(
                SharedFile::write(token.as_bytes(), None)
                    .map_err(|e| PoolError::io("a memory file for the MPI ranks", e))?,
            )
        } else {
            None
        };
        let fd = probe.as_ref().map_or(-1, |p| {
            use std::os::fd::AsRawFd;
            i64::from(p.fd().as_raw_fd())
        });
        let mut announce = [i64::from(std::process::id()), fd];
        let world = SimpleCommunicator::world();
        world.process_at_rank(0).broadcast_into(&mut announce[..]);
        // The probe stays open until every rank has read it.
        let placement = Self::exchange(&world, true, std::process::id());
        drop(probe);
        crate::mpi::record_placement(&placement.local);
        Ok(placement)
    }

    /// A worker rank's side: tries rank 0's probe file.
    pub fn on_worker(token: &[u8]) -> Placement {
        let world = SimpleCommunicator::world();
        let mut announce = [0i64; 2];
        world.process_at_rank(0).broadcast_into(&mut announce[..]);
        let [pid, fd] = announce;
        let pid = u32::try_from(pid).unwrap_or(0);
        let local = fd >= 0
            && shared_memory_allowed()
            && i32::try_from(fd)
                .is_ok_and(|fd| open_file(pid, fd).is_ok_and(|f| reads_back(f, token)));
        Self::exchange(&world, local, pid)
    }

    /// Every rank says whether it is local; the others form `remote`.
    fn exchange(world: &SimpleCommunicator, local: bool, coordinator_pid: u32) -> Placement {
        let mine = u8::from(local);
        let mut all = vec![0u8; world.size() as usize];
        world.all_gather_into(&mine, &mut all[..]);
        let local: Vec<bool> = all.iter().map(|&f| f != 0).collect();
        let rank = world.rank();
        let color = if rank == 0 || !local[rank as usize] {
            Color::with_value(0)
        } else {
            Color::undefined()
        };
        let remote = world.split_by_color(color).and_then(|comm| {
            let c = Comm(comm.as_raw());
            // Kept for the life of the job: the handle outlives this value.
            std::mem::forget(comm);
            // Rank 0 alone: nothing to broadcast to.
            (local.iter().any(|l| !l)).then_some(c)
        });
        Placement {
            local,
            remote,
            coordinator_pid,
        }
    }
}

/// Whether this rank's environment allows shared memory between ranks.
fn shared_memory_allowed() -> bool {
    std::env::var(SHARED_MEMORY_ENV).map_or(true, |v| v != "off")
}

/// Opens rank 0's memory file `fd` through `/proc`.
pub(crate) fn open_file(pid: u32, fd: i32) -> io::Result<std::fs::File> {
    std::fs::File::open(format!("/proc/{pid}/fd/{fd}"))
}

/// Whether `file` starts with `token`.
fn reads_back(mut file: std::fs::File, token: &[u8]) -> bool {
    let mut got = vec![0u8; token.len()];
    file.read_exact(&mut got).is_ok() && got == token
}

/// Where one large value is, as rank 0 tells one rank.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Note {
    /// In rank 0's memory file with this descriptor number.
    File(i32),
    /// In the next broadcast on the remote communicator.
    Broadcast,
    /// Here, for this rank alone.
    Inline(Vec<u8>),
}

impl Note {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Note::File(fd) => {
                let mut v = vec![0];
                v.extend_from_slice(&fd.to_le_bytes());
                v
            }
            Note::Broadcast => vec![1],
            Note::Inline(bytes) => {
                let mut v = Vec::with_capacity(bytes.len() + 1);
                v.push(2);
                v.extend_from_slice(bytes);
                v
            }
        }
    }

    pub fn decode(mut bytes: Vec<u8>) -> io::Result<Note> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "a malformed value note");
        match bytes.first() {
            Some(0) => {
                let fd: [u8; 4] = bytes
                    .get(1..5)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(bad)?;
                Ok(Note::File(i32::from_le_bytes(fd)))
            }
            Some(1) if bytes.len() == 1 => Ok(Note::Broadcast),
            Some(2) => {
                bytes.remove(0);
                Ok(Note::Inline(bytes))
            }
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_malformed_ones_are_refused() {
        for n in [
            Note::File(17),
            Note::File(-1),
            Note::Broadcast,
            Note::Inline(vec![1, 2, 3]),
            Note::Inline(vec![]),
        ] {
            assert_eq!(Note::decode(n.encode()).expect("decode"), n);
        }
        for bad in [vec![], vec![0, 1], vec![1, 0], vec![9]] {
            assert!(Note::decode(bad).is_err());
        }
    }

    #[test]
    fn a_memory_file_opens_through_proc_and_reads_back() {
        use std::os::fd::AsRawFd;
        let file = SharedFile::write(b"token-123", None).expect("memory file");
        let opened = open_file(std::process::id(), file.fd().as_raw_fd()).expect("open");
        assert!(reads_back(opened, b"token-123"));
        let opened = open_file(std::process::id(), file.fd().as_raw_fd()).expect("open");
        assert!(!reads_back(opened, b"token-124"));
    }
}
