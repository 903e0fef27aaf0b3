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
pub struct UnixConnection(UnixStream);

impl Read for UnixConnection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for UnixConnection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Connection for UnixConnection {
    fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.0.set_nonblocking(on)
    }
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.0.set_read_timeout(timeout)
    }
    fn peer_uid(&self) -> io::Result<Option<u32>> {
        let cred =
            nix::sys::socket::getsockopt(&self.0, nix::sys::socket::sockopt::PeerCredentials)
                .map_err(io::Error::from)?;
        Ok(Some(cred.uid()))
    }
}

impl UnixConnection {
    fn from_stream(s: Stream) -> Self {
        let fd: OwnedFd = s.into();
        let stream = UnixStream::from(fd);
        // A large send buffer lets a big attribute be queued in a few writes instead
        // of ~40 buffer-sized hand-offs. The kernel caps it at net.core.wmem_max;
        // failing to raise it only costs speed.
        let _ =
            nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::SndBuf, &SEND_BUFFER);
        UnixConnection(stream)
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
    Ok(Box::new(UnixConnection::from_stream(stream)))
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
                    let conn = UnixConnection::from_stream(s);
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
