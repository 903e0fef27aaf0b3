//! Large attribute values in shared memory, on transports that pass descriptors:
//! the coordinator writes a value once into a memory file (`memfd`), every worker
//! maps the same pages read-only and copies the value into its module. A value
//! costs one copy in the coordinator and one per worker, and nothing through the
//! socket.
//!
//! Transports without descriptors give workers the value another way
//! ([`SharedValue::Owned`]: received by a collective broadcast).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

/// Values at least this large travel outside the stream where the transport has a
/// way ([`Bulk`](crate::transport::Bulk)).
pub(crate) const SHARED_MIN: usize = 1 << 20;

/// Writes `bytes` into a memory file: `reuse` (whose pages are already in memory)
/// when given, else a new one.
pub(crate) fn memory_file(bytes: &[u8], reuse: Option<Arc<OwnedFd>>) -> io::Result<Arc<OwnedFd>> {
    let fd = match reuse {
        Some(fd) => fd,
        None => Arc::new(
            nix::sys::memfd::memfd_create(
                c"agox-attribute",
                nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
            )
            .map_err(io::Error::from)?,
        ),
    };
    nix::unistd::ftruncate(&*fd, bytes.len() as libc::off_t).map_err(io::Error::from)?;
    if bytes.is_empty() {
        return Ok(fd);
    }
    // SAFETY: a shared writable mapping of exactly the file's length, checked for
    // failure, written once and unmapped; nobody else writes this file meanwhile
    // (a reused file is one no worker still needs).
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            bytes.len(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            0,
        );
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), map.cast::<u8>(), bytes.len());
        libc::munmap(map, bytes.len());
    }
    Ok(fd)
}

/// A value a worker received outside the stream.
pub enum SharedValue {
    /// Mapped from a memory file the coordinator passed.
    Mapped(SharedView),
    /// Received into memory (a collective broadcast), into a buffer the
    /// transport takes back for the next value once this one is dropped.
    Received(std::sync::Arc<Vec<u8>>),
}

impl SharedValue {
    /// The value's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            SharedValue::Mapped(v) => v.bytes(),
            SharedValue::Received(v) => v,
        }
    }
}

/// A read-only mapping of a shared attribute value, unmapped on drop.
pub struct SharedView {
    ptr: *mut libc::c_void,
    len: usize,
}

impl SharedView {
    pub fn map(fd: &OwnedFd, len: usize) -> std::io::Result<SharedView> {
        use std::os::fd::AsRawFd;
        if len == 0 {
            return Ok(SharedView {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // Mapping past the end of the file would fault on access: check first.
        let size = nix::sys::stat::fstat(fd.as_raw_fd())
            .map_err(std::io::Error::from)?
            .st_size;
        if (size as u64) < len as u64 {
            return Err(std::io::Error::other(format!(
                "shared value announced as {len} bytes, the memory file holds {size}"
            )));
        }
        // SAFETY: a read-only shared mapping of a descriptor we own, checked for
        // failure; MAP_POPULATE maps every page at once instead of one fault each.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SharedView { ptr, len })
    }

    pub fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the mapping covers `len` readable bytes for the life of `self`;
        // the coordinator does not write to this memory file again until every
        // worker has acknowledged the value.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for SharedView {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping exactly the mapping made in `map`, once.
            unsafe {
                libc::munmap(self.ptr, self.len);
            }
        }
    }
}
