//! The transport: where workers connect and how bytes move. The scheduler sees only
//! [`Endpoint`] and [`Connection`], so another transport (TCP, MPI) is one more
//! implementation of these two traits.
//!
//! The one implemented here is Unix stream sockets (`interprocess`), with the
//! socket file in a fresh directory of mode 0700 that is removed when the endpoint
//! is dropped, and peers of another user refused by their credentials.

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
use std::time::{Duration, Instant};

/// One bidirectional byte stream between the coordinator and a worker.
pub trait Connection: Read + Write + Send {
    /// The descriptor, for readiness polling.
    fn raw_fd(&self) -> RawFd;
    /// Switches non-blocking mode (the coordinator polls; workers block).
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
    /// Bounds a blocking read (used during the handshake).
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// The effective user id of the peer, where the transport knows it.
    fn peer_uid(&self) -> io::Result<Option<u32>>;
    /// The process id of the peer, where the transport knows it.
    fn peer_pid(&self) -> Option<u32> {
        None
    }
    /// Whether this transport can pass file descriptors (large attributes then
    /// travel as shared memory instead of through the socket).
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
    /// The oldest descriptor received and not yet taken.
    fn take_fd(&mut self) -> Option<OwnedFd> {
        None
    }
}

/// Where workers connect to a coordinator.
pub trait Endpoint: Send {
    /// The address a worker is given (`--connect ADDRESS`).
    fn address(&self) -> String;
    /// Waits up to `timeout` for the next incoming connection.
    fn accept(&self, timeout: Duration) -> io::Result<Box<dyn Connection>>;
    /// The listening descriptor, polled so that unexpected peers are answered
    /// (refused) while the pool runs.
    fn raw_fd(&self) -> Option<RawFd>;
}

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
    fn raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.stream.set_nonblocking(on)
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)
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

    fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fds.pop_front()
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
pub fn connect(address: &str) -> io::Result<Box<dyn Connection>> {
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

    /// The socket directory (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Endpoint for UnixEndpoint {
    fn address(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.listener_fd())
    }

    fn accept(&self, timeout: Duration) -> io::Result<Box<dyn Connection>> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let deadline = Instant::now() + timeout;
        loop {
            match self.listener.accept() {
                Ok(s) => {
                    let conn = UnixConnection::from_stream(s, false);
                    conn.set_nonblocking(false)?;
                    return Ok(Box::new(conn));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no worker connected in time",
                ));
            }
            let ms = left.as_millis().clamp(1, 60_000) as u16;
            let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl UnixEndpoint {
    fn listener_fd(&self) -> RawFd {
        use std::os::fd::AsFd;
        self.listener.as_fd().as_raw_fd()
    }
}

impl Drop for UnixEndpoint {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}
