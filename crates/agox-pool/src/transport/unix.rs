//! Unix stream sockets (`interprocess`), with the socket file in a fresh directory
//! of mode 0700 that is removed when the endpoint is dropped, peers of another user
//! refused by their credentials, and large values passed as memory-file
//! descriptors (`SCM_RIGHTS`).

use super::{Connection, Endpoint};
use crate::shm::SharedValue;
use interprocess::local_socket::{
    traits::{Listener as _, Stream as _, StreamCommon as _},
    GenericFilePath, ListenerNonblockingMode, ListenerOptions, ToFsName,
};
use interprocess::os::unix::uds_local_socket::{Listener, Stream};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// A Unix-socket connection.
pub struct UnixConnection {
    stream: UnixStream,
    /// Descriptors received and not yet taken.
    fds: VecDeque<OwnedFd>,
    /// Control-message buffer for `recvmsg`, kept between reads; `None` on the
    /// coordinator's side, which never receives descriptors and reads plainly.
    cmsg: Option<Vec<u8>>,
}

impl Read for UnixConnection {
    /// On a worker, reads with `recvmsg`, keeping any descriptors that arrive with
    /// the bytes; on the coordinator, a plain `read`.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::FromRawFd;
        let Some(space) = self.cmsg.as_mut() else {
            return (&self.stream).read(buf);
        };
        let mut iov = [io::IoSliceMut::new(buf)];
        let msg = recvmsg::<()>(
            self.stream.as_raw_fd(),
            &mut iov,
            Some(space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let n = msg.bytes;
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: the kernel just installed this descriptor for us; we
                    // are its only owner.
                    self.fds.push_back(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        Ok(n)
    }
}

impl Write for UnixConnection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.stream).write(buf)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        (&self.stream).write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Connection for UnixConnection {
    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.stream.as_raw_fd())
    }
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.stream.set_nonblocking(on)
    }
    fn passes_fds(&self) -> bool {
        true
    }

    fn send_with_fd(&mut self, bytes: &[u8], fd: RawFd) -> io::Result<usize> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        let iov = [io::IoSlice::new(bytes)];
        let fds = [fd];
        sendmsg::<()>(
            self.stream.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .map_err(io::Error::from)
    }

    fn take_shared(&mut self, _len: usize) -> io::Result<SharedValue> {
        let fd = self.fds.pop_front().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "no descriptor arrived with the frame",
            )
        })?;
        Ok(SharedValue::File(fd))
    }

    fn peer_uid(&self) -> io::Result<Option<u32>> {
        let cred =
            nix::sys::socket::getsockopt(&self.stream, nix::sys::socket::sockopt::PeerCredentials)
                .map_err(io::Error::from)?;
        Ok(Some(cred.uid()))
    }

    fn peer_pid(&self) -> Option<u32> {
        nix::sys::socket::getsockopt(&self.stream, nix::sys::socket::sockopt::PeerCredentials)
            .ok()
            .and_then(|c| u32::try_from(c.pid()).ok())
    }
}

impl UnixConnection {
    fn from_stream(s: Stream, receive_fds: bool) -> Self {
        let fd: OwnedFd = s.into();
        let stream = UnixStream::from(fd);
        // A large send buffer lets a big attribute be queued in a few writes instead
        // of ~40 buffer-sized hand-offs. The kernel caps it at net.core.wmem_max;
        // failing to raise it only costs speed.
        let _ =
            nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::SndBuf, &SEND_BUFFER);
        UnixConnection {
            stream,
            fds: VecDeque::new(),
            cmsg: receive_fds.then(|| nix::cmsg_space!([RawFd; 4])),
        }
    }
}

/// Requested socket send buffer (bytes).
const SEND_BUFFER: usize = 4 << 20;

/// Connects a worker to the coordinator at `address` (a socket path).
pub(super) fn connect(address: &str) -> io::Result<Box<dyn Connection>> {
    let name = address.to_fs_name::<GenericFilePath>()?;
    let stream = Stream::connect(name)?;
    // Interprocess already checked nothing; the coordinator checks our credentials.
    let _ = stream.peer_creds();
    Ok(Box::new(UnixConnection::from_stream(stream, true)))
}

/// A Unix-socket endpoint in its own private directory.
pub struct UnixEndpoint {
    listener: Listener,
    dir: PathBuf,
    path: PathBuf,
}

impl UnixEndpoint {
    /// Creates a fresh 0700 directory under `base` (default: `$XDG_RUNTIME_DIR`,
    /// else the system temporary directory) and listens on `pool.sock` inside it.
    pub fn create(base: Option<&Path>) -> io::Result<Self> {
        let base = match base {
            Some(b) => b.to_path_buf(),
            None => std::env::var_os("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .filter(|p| p.is_dir())
                .unwrap_or_else(std::env::temp_dir),
        };
        let mut dir = None;
        for _ in 0..16 {
            let candidate = base.join(format!(
                "agox-{}-{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&candidate) {
                Ok(()) => {
                    dir = Some(candidate);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot create socket directory in {}: {e}", base.display()),
                    ))
                }
            }
        }
        let dir =
            dir.ok_or_else(|| io::Error::other("cannot find a free socket directory name"))?;
        // The umask may have narrowed the mode; it must not have widened it.
        let mode = std::fs::metadata(&dir)?.permissions().mode() & 0o777;
        if mode != 0o700 {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let path = dir.join("pool.sock");
        let listener = (|| {
            let name = path.as_path().to_fs_name::<GenericFilePath>()?;
            ListenerOptions::new()
                .name(name)
                .nonblocking(ListenerNonblockingMode::Accept)
                .create_sync_as::<Listener>()
        })();
        match listener {
            Ok(listener) => Ok(UnixEndpoint {
                listener,
                dir,
                path,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }
}

impl Endpoint for UnixEndpoint {
    fn address(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    fn raw_fd(&self) -> RawFd {
        use std::os::fd::AsFd;
        self.listener.as_fd().as_raw_fd()
    }

    fn accept(&self) -> io::Result<Option<Box<dyn Connection>>> {
        loop {
            return match self.listener.accept() {
                Ok(s) => Ok(Some(Box::new(UnixConnection::from_stream(s, false)))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    fn dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }
}

impl Drop for UnixEndpoint {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}
