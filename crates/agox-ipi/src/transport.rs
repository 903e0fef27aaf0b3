//! Where clients connect: a Unix-domain socket in a private directory (default),
//! or TCP on the loopback interface; and the connected stream, with a deadline.
//!
//! Clients of the i-PI family do not take a socket path: they take a name and
//! connect to `/tmp/ipi_` followed by it (ASE, Quantum ESPRESSO, CP2K, LAMMPS,
//! i-PI itself). The socket therefore lives in a fresh directory
//! `/tmp/ipi_agox.XXXXXXXX/` created with mode 0700, so that no other user can
//! connect to it, and clients get the name `agox.XXXXXXXX/sock`. The directory is
//! removed when the listener is dropped.

use std::fs::Permissions;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{send, MsgFlags};

/// The prefix i-PI clients put before a Unix socket's name.
pub const UNIX_PREFIX: &str = "/tmp/ipi_";

/// How clients connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Transport {
    /// A Unix-domain socket in a private directory under `/tmp/ipi_`.
    #[default]
    Unix,
    /// TCP on 127.0.0.1; port 0 lets the OS choose (clients learn it from `{port}`).
    Tcp {
        /// The port to listen on.
        port: u16,
    },
}

impl Transport {
    /// `"unix"` or `"tcp"`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Unix => "unix",
            Transport::Tcp { .. } => "tcp",
        }
    }
}

/// Where a bound listener can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A Unix socket.
    Unix {
        /// What clients are given: they connect to `/tmp/ipi_{name}`.
        name: String,
        /// The socket file.
        path: PathBuf,
    },
    /// A TCP port on 127.0.0.1.
    Tcp {
        /// The port.
        port: u16,
    },
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Unix { path, .. } => write!(f, "unix socket {}", path.display()),
            Address::Tcp { port } => write!(f, "tcp 127.0.0.1:{port}"),
        }
    }
}

/// A bound, listening socket, kept for the life of its owner so that a restarted
/// client finds the same address.
pub(crate) struct Listener {
    socket: ListenSocket,
    address: Address,
    /// The private directory of a Unix socket; removed on drop.
    dir: Option<tempfile::TempDir>,
}

enum ListenSocket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    /// Binds a listener for `transport`.
    pub(crate) fn bind(transport: Transport) -> io::Result<Listener> {
        match transport {
            Transport::Unix => {
                let dir = tempfile::Builder::new()
                    .prefix("ipi_agox.")
                    .rand_bytes(8)
                    .permissions(Permissions::from_mode(0o700))
                    .tempdir_in("/tmp")?;
                let path = dir.path().join("sock");
                let name = path
                    .to_str()
                    .and_then(|p| p.strip_prefix(UNIX_PREFIX))
                    .ok_or_else(|| io::Error::other("socket path outside /tmp/ipi_"))?
                    .to_string();
                let listener = UnixListener::bind(&path)?;
                listener.set_nonblocking(true)?;
                Ok(Listener {
                    socket: ListenSocket::Unix(listener),
                    address: Address::Unix { name, path },
                    dir: Some(dir),
                })
            }
            Transport::Tcp { port } => {
                let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
                listener.set_nonblocking(true)?;
                let port = listener.local_addr()?.port();
                Ok(Listener {
                    socket: ListenSocket::Tcp(listener),
                    address: Address::Tcp { port },
                    dir: None,
                })
            }
        }
    }

    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    /// The socket's private directory, if any.
    pub(crate) fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(|d| d.path())
    }

    /// Waits for a connection until `deadline`, calling `check` every 20 ms (to
    /// notice a client that exited instead of connecting). `Ok(None)` on timeout.
    pub(crate) fn accept<E>(
        &self,
        deadline: Instant,
        mut check: impl FnMut() -> Result<(), E>,
    ) -> Result<Option<Conn>, AcceptError<E>> {
        loop {
            match self.try_accept() {
                Ok(Some(conn)) => return Ok(Some(conn)),
                Ok(None) => {}
                Err(e) => return Err(AcceptError::Io(e)),
            }
            check().map_err(AcceptError::Check)?;
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let wait = (deadline - now).min(Duration::from_millis(20));
            let fd = self.as_fd();
            let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
            let ms = u16::try_from(wait.as_millis().max(1)).unwrap_or(u16::MAX);
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(AcceptError::Io(e.into())),
            }
        }
    }

    fn try_accept(&self) -> io::Result<Option<Conn>> {
        let result = match &self.socket {
            ListenSocket::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            ListenSocket::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
        };
        match result {
            Ok(stream) => Conn::new(stream).map(Some),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.socket {
            ListenSocket::Unix(l) => l.as_fd(),
            ListenSocket::Tcp(l) => l.as_fd(),
        }
    }
}

/// Why no connection was accepted.
#[derive(Debug)]
pub(crate) enum AcceptError<E> {
    /// The listening socket failed.
    Io(io::Error),
    /// The caller's check failed (the client exited, say).
    Check(E),
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// A connected stream whose reads and writes fail with a timeout once the
/// deadline has passed. Writes never raise SIGPIPE (a closed peer is an error).
pub(crate) struct Conn {
    stream: Stream,
    deadline: Option<Instant>,
}

impl Conn {
    fn new(stream: Stream) -> io::Result<Conn> {
        match &stream {
            Stream::Unix(s) => s.set_nonblocking(false)?,
            Stream::Tcp(s) => {
                s.set_nonblocking(false)?;
                // Every message is a request waiting for its answer: never hold
                // a small write back.
                s.set_nodelay(true)?;
            }
        }
        Ok(Conn {
            stream,
            deadline: None,
        })
    }

    /// Reads and writes from now on fail once `deadline` has passed (`None`: never).
    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        if deadline.is_none() && self.deadline.is_some() {
            self.set_timeout(Direction::Read, None)?;
            self.set_timeout(Direction::Write, None)?;
        }
        self.deadline = deadline;
        Ok(())
    }

    fn set_timeout(&self, direction: Direction, t: Option<Duration>) -> io::Result<()> {
        match (&self.stream, direction) {
            (Stream::Unix(s), Direction::Read) => s.set_read_timeout(t),
            (Stream::Unix(s), Direction::Write) => s.set_write_timeout(t),
            (Stream::Tcp(s), Direction::Read) => s.set_read_timeout(t),
            (Stream::Tcp(s), Direction::Write) => s.set_write_timeout(t),
        }
    }

    /// Before a blocking call: its socket timeout becomes the time left before
    /// the deadline, so no sequence of calls outlasts it.
    fn arm(&self, direction: Direction) -> io::Result<()> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.set_timeout(direction, Some(left))?;
        }
        Ok(())
    }

    fn raw_fd(&self) -> i32 {
        match &self.stream {
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tcp(s) => s.as_raw_fd(),
        }
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm(Direction::Read)?;
        match &mut self.stream {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm(Direction::Write)?;
        send(self.raw_fd(), buf, MsgFlags::MSG_NOSIGNAL).map_err(io::Error::from)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
