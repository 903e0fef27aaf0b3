//! TCP: for workers on other machines (started by `srun`, `ssh` or the pool's own
//! exec launcher), at `tcp://HOST:PORT`.
//!
//! TCP knows nothing of the peer's user or process: the pool's token is the only
//! thing that admits a worker (see `docs/cluster.md` for the threat model). There is
//! no shared memory across machines: large values travel through the socket.

use super::{Connection, Endpoint};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};

/// A TCP connection.
pub struct TcpConnection {
    stream: TcpStream,
}

impl TcpConnection {
    fn new(stream: TcpStream) -> Self {
        // Frames are written whole; waiting to coalesce them only adds latency.
        // Failing to set it only costs speed.
        let _ = stream.set_nodelay(true);
        TcpConnection { stream }
    }
}

impl Read for TcpConnection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for TcpConnection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.stream.write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Connection for TcpConnection {
    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.stream.as_raw_fd())
    }
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.stream.set_nonblocking(on)
    }
}

/// Connects a worker to `host_port` (`HOST:PORT`).
pub(super) fn connect(host_port: &str) -> io::Result<Box<dyn Connection>> {
    let stream = TcpStream::connect(host_port)?;
    Ok(Box::new(TcpConnection::new(stream)))
}

/// A listening TCP socket.
pub struct TcpEndpoint {
    listener: TcpListener,
    address: String,
}

impl TcpEndpoint {
    /// Listens on `listen` (`HOST:PORT`; port 0 picks a free port). The address
    /// workers are given names the port actually bound.
    pub fn bind(listen: &str) -> io::Result<Self> {
        let addr = listen
            .to_socket_addrs()
            .map_err(|e| io::Error::new(e.kind(), format!("tcp://{listen}: {e}")))?
            .next()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("tcp://{listen}: no address"),
                )
            })?;
        let listener = TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("listening on tcp://{addr}: {e}")))?;
        listener.set_nonblocking(true)?;
        let bound = listener.local_addr()?;
        // Keep the host as given (a name workers on other nodes can resolve), with
        // the port actually bound.
        let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
        let address = format!("{}{host}:{}", super::TCP_SCHEME, bound.port());
        Ok(TcpEndpoint { listener, address })
    }
}

impl Endpoint for TcpEndpoint {
    fn address(&self) -> String {
        self.address.clone()
    }

    fn raw_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    fn accept(&self) -> io::Result<Option<Box<dyn Connection>>> {
        loop {
            return match self.listener.accept() {
                Ok((s, _)) => Ok(Some(Box::new(TcpConnection::new(s)))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A connection reset before it was accepted is the peer's loss.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => Err(e),
            };
        }
    }
}
