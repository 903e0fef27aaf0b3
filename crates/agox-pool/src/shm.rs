//! Large attribute values in shared memory: the coordinator writes a value once
//! into a memory file (`memfd`), every worker on the same machine maps the same
//! pages read-only and copies the value into its module. A value costs one copy in
//! the coordinator and one per worker, and nothing through the link.
//!
//! The coordinator keeps its files mapped and writes the next value of an
//! attribute into the file of the value before last (once every worker has
//! acknowledged it, and no frame in flight refers to it): mapping and unmapping
//! 8 MB costs about as much as copying it (page tables, TLB shootdowns). Workers
//! map a value only while they copy it (see [`SharedValue::read`]).
//!
//! How the file reaches a worker is the transport's business: by descriptor over
//! the Unix socket, or opened through `/proc/PID/fd/N` by an MPI rank on the
//! coordinator's machine. Ranks elsewhere receive the value by collective
//! broadcast ([`SharedValue::Received`]).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

/// Values at least this large travel outside the stream where the transport has a
/// way ([`Bulk`](crate::transport::Bulk)).
pub(crate) const SHARED_MIN: usize = 1 << 20;

/// A memory file holding one value, with the coordinator's writable mapping of
/// it. The file may be longer than the value (room for the next, larger one).
pub(crate) struct SharedFile {
    fd: OwnedFd,
    map: Mapping,
    len: usize,
}

impl SharedFile {
    /// Writes `bytes` into `reuse` (whose pages are mapped and in memory already)
    /// when given and of a fitting size, else into a new memory file.
    pub fn write(bytes: &[u8], reuse: Option<SharedFile>) -> io::Result<SharedFile> {
        let mut file = match reuse {
            // Not when much larger than needed: the file would hold memory no
            // value uses.
            Some(f) if f.map.len >= bytes.len() && f.map.len / 2 <= bytes.len() => f,
            Some(f) => f.resized(capacity_for(bytes.len()))?,
            None => {
                let fd = nix::sys::memfd::memfd_create(
                    c"agox-attribute",
                    nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
                )
                .map_err(io::Error::from)?;
                SharedFile {
                    fd,
                    map: Mapping::empty(),
                    len: 0,
                }
                .resized(capacity_for(bytes.len()))?
            }
        };
        // SAFETY: the mapping is writable and at least `bytes.len()` long; no
        // worker reads this file meanwhile (a reused file is one every worker has
        // acknowledged and no frame in flight refers to).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), file.map.ptr.cast::<u8>(), bytes.len());
        }
        file.len = bytes.len();
        Ok(file)
    }

    /// This file at `capacity` bytes, mapped anew.
    fn resized(mut self, capacity: usize) -> io::Result<SharedFile> {
        self.map = Mapping::empty();
        nix::unistd::ftruncate(&self.fd, capacity as libc::off_t).map_err(io::Error::from)?;
        self.map = Mapping::new(
            self.fd.as_fd(),
            capacity,
            libc::PROT_READ | libc::PROT_WRITE,
        )?;
        Ok(self)
    }

    /// The value's length (the file may be longer).
    pub fn len(&self) -> usize {
        self.len
    }

    /// The descriptor workers receive (or open through `/proc`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The value, as the coordinator wrote it.
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub fn bytes(&self) -> &[u8] {
        &self.map.bytes()[..self.len]
    }
}

/// The file's length for a value of `len` bytes: a quarter more, in whole pages,
/// so a value that grows a little (a training set) fits in the same file.
fn capacity_for(len: usize) -> usize {
    const PAGE: usize = 4096;
    (len + len / 4).div_ceil(PAGE).max(1) * PAGE
}

/// A shared mapping of a whole memory file, unmapped on drop.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; who may read or write
// it when is ruled by the protocol (see `SharedFile::write`), not by a thread.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only reads.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn empty() -> Mapping {
        Mapping {
            ptr: std::ptr::null_mut(),
            len: 0,
        }
    }

    fn new(fd: BorrowedFd<'_>, len: usize, prot: libc::c_int) -> io::Result<Mapping> {
        if len == 0 {
            return Ok(Mapping::empty());
        }
        // SAFETY: a shared mapping of `len` bytes of a descriptor we hold, whose
        // file is at least that long (checked by the callers), checked for
        // failure; MAP_POPULATE maps every page at once instead of one fault each.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the mapping covers `len` readable bytes for the life of `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping exactly the mapping made in `new`, once.
            unsafe {
                libc::munmap(self.ptr, self.len);
            }
        }
    }
}

/// A value a worker's transport delivered outside the stream.
pub enum SharedValue {
    /// A memory file the coordinator wrote (passed, or opened through `/proc`).
    File(OwnedFd),
    /// Received into memory (a collective broadcast), into a buffer the
    /// transport takes back for the next value once this one is dropped.
    Received(Arc<Vec<u8>>),
}

impl SharedValue {
    /// Calls `read` with the value's first `len` bytes: mapped (and unmapped
    /// after) from a memory file, which must hold that many.
    ///
    /// The mapping is not kept for the next value: it would count in this
    /// worker's resident memory (pages of the coordinator's files, which every
    /// worker mapping them counts again), and a batch system that adds up its
    /// processes' resident memory would count a large value once per worker.
    pub fn read<R>(&self, len: usize, read: impl FnOnce(&[u8]) -> R) -> io::Result<R> {
        let fd = match self {
            SharedValue::Received(bytes) => {
                return match bytes.get(..len) {
                    Some(b) => Ok(read(b)),
                    None => Err(short(len, bytes.len() as u64)),
                }
            }
            SharedValue::File(fd) => fd,
        };
        // Mapping past the end of the file would fault on access: check first.
        let size = nix::sys::stat::fstat(fd.as_raw_fd())
            .map_err(io::Error::from)?
            .st_size as u64;
        if size < len as u64 {
            return Err(short(len, size));
        }
        let map = Mapping::new(fd.as_fd(), len, libc::PROT_READ)?;
        Ok(read(map.bytes()))
    }
}

fn short(len: usize, size: u64) -> io::Error {
    io::Error::other(format!(
        "shared value announced as {len} bytes, its memory holds {size}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dup(file: &SharedFile) -> OwnedFd {
        file.fd().try_clone_to_owned().expect("dup")
    }

    #[test]
    fn a_file_takes_the_next_value_in_place_or_grows() {
        let first = vec![1u8; 3 << 20];
        let file = SharedFile::write(&first, None).expect("write");
        let read = |file: &SharedFile, len| {
            SharedValue::File(dup(file))
                .read(len, |b| b.to_vec())
                .expect("read")
        };
        assert_eq!(read(&file, first.len()), first);
        let mapped = file.map.ptr;

        // A slightly shorter value goes into the same file and mapping.
        let second = vec![2u8; (3 << 20) - 10];
        let file = SharedFile::write(&second, Some(file)).expect("rewrite");
        assert_eq!(file.map.ptr, mapped);
        assert_eq!(read(&file, second.len()), second);

        // A much larger one (or a much smaller one) resizes the file.
        let third = vec![3u8; 8 << 20];
        let file = SharedFile::write(&third, Some(file)).expect("grow");
        assert_eq!(file.bytes(), &third[..]);
        assert_eq!(read(&file, third.len()), third);
        let fourth = vec![4u8; 1 << 20];
        let file = SharedFile::write(&fourth, Some(file)).expect("shrink");
        assert!(file.map.len < 2 << 20, "{} bytes mapped", file.map.len);
        assert_eq!(read(&file, fourth.len()), fourth);
    }

    #[test]
    fn a_value_longer_than_its_file_is_refused() {
        let file = SharedFile::write(&[7u8; 100], None).expect("write");
        let err = SharedValue::File(dup(&file))
            .read(1 << 20, |_| ())
            .expect_err("too long");
        assert!(
            err.to_string().contains("announced as 1048576 bytes"),
            "{err}"
        );
    }
}
