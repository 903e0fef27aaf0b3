//! The i-PI wire format: a 12-byte header, then for some headers a payload.
//!
//! Headers are ASCII names padded on the right with spaces to 12 bytes. Payloads
//! are raw little-endian `float64` and `int32` values (the native order of every
//! machine the clients run on), with no length prefix beyond the explicit counts:
//!
//! | header | sender | payload |
//! | --- | --- | --- |
//! | `STATUS` | server | — (answered by `READY`, `NEEDINIT` or `HAVEDATA`) |
//! | `READY` | client | — |
//! | `NEEDINIT` | client | — (answered by `INIT`) |
//! | `HAVEDATA` | client | — |
//! | `INIT` | server | int32 bead index, int32 n, n bytes |
//! | `POSDATA` | server | 9 f64 cell, 9 f64 inverse cell, int32 N, 3N f64 positions |
//! | `GETFORCE` | server | — (answered by `FORCEREADY`) |
//! | `FORCEREADY` | client | f64 energy, int32 N, 3N f64 forces, 9 f64 virial, int32 n, n bytes |
//! | `EXIT` | server | — (the client ends) |
//!
//! The 3×3 matrices travel transposed: the wire holds, row after row, the matrix
//! whose *columns* are the lattice vectors (i-PI's `h`). The typed values here use
//! this crate's convention (rows are lattice vectors), so [`PosData::cell`] is
//! the cell, [`PosData::inverse`] its inverse, [`ForceData::virial`] the virial,
//! and the transposition happens only in [`encode`](ServerMessage::encode) and
//! decode. Values are in atomic units (Bohr, Hartree); [`crate::units`] converts.
//!
//! Decoding never trusts a count: a negative count is an error, a count above the
//! [`Limits`] is an error before anything is allocated, and a payload is read in
//! bounded chunks, so a truncated stream costs at most what it delivered.

use std::fmt;
use std::io::{self, Read};

use agox_atoms::geometry::{Mat3, Vec3};

/// Length of every header.
pub const HEADER_LEN: usize = 12;

/// A message name: the first 12 bytes of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Header {
    /// Server → client: report your state.
    Status,
    /// Client → server: ready for positions.
    Ready,
    /// Client → server: has a result waiting for `GETFORCE`.
    HaveData,
    /// Client → server: needs `INIT` before positions.
    NeedInit,
    /// Server → client: initialization (bead index and a parameter string).
    Init,
    /// Server → client: a structure to evaluate.
    PosData,
    /// Server → client: send the result.
    GetForce,
    /// Client → server: the result follows.
    ForceReady,
    /// Server → client: end.
    Exit,
}

impl Header {
    /// Every header, in the order of the table above.
    pub const ALL: [Header; 9] = [
        Header::Status,
        Header::Ready,
        Header::HaveData,
        Header::NeedInit,
        Header::Init,
        Header::PosData,
        Header::GetForce,
        Header::ForceReady,
        Header::Exit,
    ];

    /// The name as sent, without padding.
    pub fn name(self) -> &'static str {
        match self {
            Header::Status => "STATUS",
            Header::Ready => "READY",
            Header::HaveData => "HAVEDATA",
            Header::NeedInit => "NEEDINIT",
            Header::Init => "INIT",
            Header::PosData => "POSDATA",
            Header::GetForce => "GETFORCE",
            Header::ForceReady => "FORCEREADY",
            Header::Exit => "EXIT",
        }
    }

    /// The 12 bytes on the wire: the name, padded with spaces.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [b' '; HEADER_LEN];
        let name = self.name().as_bytes();
        out[..name.len()].copy_from_slice(name);
        out
    }

    /// The header these 12 bytes spell, exactly (case and padding included).
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Header, CodecError> {
        Header::ALL
            .into_iter()
            .find(|h| h.to_bytes() == *bytes)
            .ok_or(CodecError::UnknownHeader(*bytes))
    }
}

impl fmt::Display for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bounds on what a decoder accepts, checked before allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest atom count in `POSDATA` or `FORCEREADY`.
    pub max_atoms: usize,
    /// Largest byte string in `INIT` or `FORCEREADY`'s extra field.
    pub max_bytes: usize,
}

impl Default for Limits {
    /// 4,194,304 atoms (100 MiB of positions) and 1 MiB strings: far above what any
    /// calculator serves, far below what would hurt to allocate.
    fn default() -> Self {
        Limits {
            max_atoms: 1 << 22,
            max_bytes: 1 << 20,
        }
    }
}

/// `INIT`'s payload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InitData {
    /// Bead (replica) index; 0 for a single structure.
    pub bead: i32,
    /// Initialization string; most clients ignore it.
    pub data: Vec<u8>,
}

impl Default for InitData {
    /// What ASE sends: bead 0 and one zero byte (some clients mishandle an empty
    /// string).
    fn default() -> Self {
        InitData {
            bead: 0,
            data: vec![0],
        }
    }
}

/// `POSDATA`'s payload, in Bohr.
#[derive(Debug, Clone, PartialEq)]
pub struct PosData {
    /// Lattice vectors as rows (Bohr).
    pub cell: Mat3,
    /// The (pseudo-)inverse of `cell` (1/Bohr).
    pub inverse: Mat3,
    /// Cartesian positions (Bohr), one row per atom.
    pub positions: Vec<Vec3>,
}

/// `FORCEREADY`'s payload, in Hartree and Bohr.
#[derive(Debug, Clone, PartialEq)]
pub struct ForceData {
    /// Potential energy (Hartree).
    pub energy: f64,
    /// Forces (Hartree/Bohr), one row per atom.
    pub forces: Vec<Vec3>,
    /// Virial (Hartree); zero from clients that do not compute it.
    pub virial: Mat3,
    /// Free-form bytes (ASE sends one zero byte, i-PI clients may send JSON).
    pub extra: Vec<u8>,
}

/// A message from the server (the driver, which owns the structures) to the client.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// `STATUS`: asks for the client's state; answered by `READY`, `NEEDINIT` or
    /// `HAVEDATA`.
    Status,
    /// `INIT`: answers `NEEDINIT`; no reply.
    Init(InitData),
    /// `POSDATA`: a structure to evaluate; no reply (the next `STATUS` is
    /// answered with `HAVEDATA` once the result is ready).
    PosData(PosData),
    /// `GETFORCE`: answered by `FORCEREADY` with the result.
    GetForce,
    /// `EXIT`: the client ends; no reply.
    Exit,
}

/// A message from the client (the calculator) to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `READY`: waiting for positions.
    Ready,
    /// `NEEDINIT`: waiting for `INIT`.
    NeedInit,
    /// `HAVEDATA`: a result is waiting for `GETFORCE`.
    HaveData,
    /// `FORCEREADY` and the result.
    ForceReady(ForceData),
}

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The stream ended cleanly between two messages.
    #[error("the connection was closed")]
    Closed,
    /// The stream ended inside a message.
    #[error("the connection was closed in the middle of {what} ({got} of {expected} bytes)")]
    Truncated {
        /// The part being read.
        what: &'static str,
        /// Bytes that part has.
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// Twelve bytes that are no header.
    #[error("unknown header \"{}\"", .0.escape_ascii())]
    UnknownHeader([u8; HEADER_LEN]),
    /// A header of the other direction (a client sent `POSDATA`, say).
    #[error("header {0} is not sent in this direction")]
    WrongDirection(Header),
    /// A count below zero.
    #[error("negative {what}: {value}")]
    Negative {
        /// The field.
        what: &'static str,
        /// Its value.
        value: i32,
    },
    /// A count above the decoder's [`Limits`].
    #[error("{what} of {value} exceeds the limit of {max}")]
    TooLarge {
        /// The field.
        what: &'static str,
        /// Its value.
        value: usize,
        /// The limit.
        max: usize,
    },
    /// The stream failed (including read timeouts).
    #[error(transparent)]
    Io(io::Error),
}

impl CodecError {
    /// True when the peer ended the connection (cleanly, mid-message, or by a reset).
    pub fn is_closed(&self) -> bool {
        match self {
            CodecError::Closed | CodecError::Truncated { .. } => true,
            CodecError::Io(e) => is_disconnect(e),
            _ => false,
        }
    }

    /// True when a read timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, CodecError::Io(e) if is_timeout(e))
    }
}

/// An I/O error that means the peer is gone.
pub(crate) fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// An I/O error that means a socket timeout expired.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

// ---------------------------------------------------------------- encoding

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Writes a matrix transposed: row `i` of the wire is column `i` of `m`.
fn put_mat_transposed(out: &mut Vec<u8>, m: &Mat3) {
    for i in 0..3 {
        for row in m {
            put_f64(out, row[i]);
        }
    }
}

fn put_rows(out: &mut Vec<u8>, rows: &[Vec3]) {
    out.reserve(24 * rows.len());
    for r in rows {
        for &x in r {
            put_f64(out, x);
        }
    }
}

/// A count as the wire's int32; counts beyond it cannot be sent.
fn count(n: usize, what: &'static str) -> Result<i32, CodecError> {
    i32::try_from(n).map_err(|_| CodecError::TooLarge {
        what,
        value: n,
        max: i32::MAX as usize,
    })
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8], what: &'static str) -> Result<(), CodecError> {
    put_i32(out, count(bytes.len(), what)?);
    out.extend_from_slice(bytes);
    Ok(())
}

impl PosData {
    /// Appends `POSDATA` and its payload.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(&Header::PosData.to_bytes());
        put_mat_transposed(out, &self.cell);
        put_mat_transposed(out, &self.inverse);
        put_i32(out, count(self.positions.len(), "atom count")?);
        put_rows(out, &self.positions);
        Ok(())
    }

    /// Reads the payload that follows a `POSDATA` header.
    pub fn read_payload<R: Read>(r: &mut R, limits: &Limits) -> Result<PosData, CodecError> {
        let cell = read_mat_transposed(r, "the cell")?;
        let inverse = read_mat_transposed(r, "the inverse cell")?;
        let n = read_count(r, "atom count", limits.max_atoms)?;
        let positions = read_rows(r, n, "the positions")?;
        Ok(PosData {
            cell,
            inverse,
            positions,
        })
    }
}

impl ForceData {
    /// Appends `FORCEREADY` and its payload.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(&Header::ForceReady.to_bytes());
        put_f64(out, self.energy);
        put_i32(out, count(self.forces.len(), "atom count")?);
        put_rows(out, &self.forces);
        put_mat_transposed(out, &self.virial);
        put_bytes(out, &self.extra, "extra byte count")
    }

    /// Reads the payload that follows a `FORCEREADY` header.
    pub fn read_payload<R: Read>(r: &mut R, limits: &Limits) -> Result<ForceData, CodecError> {
        let energy = read_f64(r, "the energy")?;
        let n = read_count(r, "atom count", limits.max_atoms)?;
        let forces = read_rows(r, n, "the forces")?;
        let virial = read_mat_transposed(r, "the virial")?;
        let extra = read_bytes(r, "extra byte count", limits.max_bytes)?;
        Ok(ForceData {
            energy,
            forces,
            virial,
            extra,
        })
    }
}

impl InitData {
    /// Appends `INIT` and its payload.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(&Header::Init.to_bytes());
        put_i32(out, self.bead);
        put_bytes(out, &self.data, "init byte count")
    }

    /// Reads the payload that follows an `INIT` header.
    pub fn read_payload<R: Read>(r: &mut R, limits: &Limits) -> Result<InitData, CodecError> {
        let bead = read_i32(r, "the bead index")?;
        let data = read_bytes(r, "init byte count", limits.max_bytes)?;
        Ok(InitData { bead, data })
    }
}

impl ServerMessage {
    /// Appends the message's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        match self {
            ServerMessage::Status => out.extend_from_slice(&Header::Status.to_bytes()),
            ServerMessage::Init(init) => init.encode(out)?,
            ServerMessage::PosData(pos) => pos.encode(out)?,
            ServerMessage::GetForce => out.extend_from_slice(&Header::GetForce.to_bytes()),
            ServerMessage::Exit => out.extend_from_slice(&Header::Exit.to_bytes()),
        }
        Ok(())
    }

    /// Reads one message; [`CodecError::Closed`] if the stream ended before it.
    pub fn read<R: Read>(r: &mut R, limits: &Limits) -> Result<ServerMessage, CodecError> {
        Ok(match read_header(r)? {
            Header::Status => ServerMessage::Status,
            Header::Init => ServerMessage::Init(InitData::read_payload(r, limits)?),
            Header::PosData => ServerMessage::PosData(PosData::read_payload(r, limits)?),
            Header::GetForce => ServerMessage::GetForce,
            Header::Exit => ServerMessage::Exit,
            h @ (Header::Ready | Header::HaveData | Header::NeedInit | Header::ForceReady) => {
                return Err(CodecError::WrongDirection(h))
            }
        })
    }
}

impl ClientMessage {
    /// Appends the message's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        match self {
            ClientMessage::Ready => out.extend_from_slice(&Header::Ready.to_bytes()),
            ClientMessage::NeedInit => out.extend_from_slice(&Header::NeedInit.to_bytes()),
            ClientMessage::HaveData => out.extend_from_slice(&Header::HaveData.to_bytes()),
            ClientMessage::ForceReady(data) => data.encode(out)?,
        }
        Ok(())
    }

    /// Reads one message; [`CodecError::Closed`] if the stream ended before it.
    pub fn read<R: Read>(r: &mut R, limits: &Limits) -> Result<ClientMessage, CodecError> {
        Ok(match read_header(r)? {
            Header::Ready => ClientMessage::Ready,
            Header::NeedInit => ClientMessage::NeedInit,
            Header::HaveData => ClientMessage::HaveData,
            Header::ForceReady => ClientMessage::ForceReady(ForceData::read_payload(r, limits)?),
            h @ (Header::Status
            | Header::Init
            | Header::PosData
            | Header::GetForce
            | Header::Exit) => return Err(CodecError::WrongDirection(h)),
        })
    }
}

// ---------------------------------------------------------------- decoding

/// Fills `buf`; `at_boundary` says that a clean end before the first byte is
/// [`CodecError::Closed`] rather than a truncation.
fn fill<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    what: &'static str,
    at_boundary: bool,
) -> Result<(), CodecError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 && at_boundary => return Err(CodecError::Closed),
            Ok(0) => {
                return Err(CodecError::Truncated {
                    what,
                    expected: buf.len(),
                    got,
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CodecError::Io(e)),
        }
    }
    Ok(())
}

/// Reads the next header; [`CodecError::Closed`] if the stream ended before it.
pub fn read_header<R: Read>(r: &mut R) -> Result<Header, CodecError> {
    let mut b = [0u8; HEADER_LEN];
    fill(r, &mut b, "a header", true)?;
    Header::parse(&b)
}

fn read_i32<R: Read>(r: &mut R, what: &'static str) -> Result<i32, CodecError> {
    let mut b = [0u8; 4];
    fill(r, &mut b, what, false)?;
    Ok(i32::from_le_bytes(b))
}

fn read_f64<R: Read>(r: &mut R, what: &'static str) -> Result<f64, CodecError> {
    let mut b = [0u8; 8];
    fill(r, &mut b, what, false)?;
    Ok(f64::from_le_bytes(b))
}

/// Reads an int32 count and checks it against zero and `max`.
fn read_count<R: Read>(r: &mut R, what: &'static str, max: usize) -> Result<usize, CodecError> {
    let value = read_i32(r, what)?;
    let n = usize::try_from(value).map_err(|_| CodecError::Negative { what, value })?;
    if n > max {
        return Err(CodecError::TooLarge {
            what,
            value: n,
            max,
        });
    }
    Ok(n)
}

fn read_mat_transposed<R: Read>(r: &mut R, what: &'static str) -> Result<Mat3, CodecError> {
    let mut b = [0u8; 72];
    fill(r, &mut b, what, false)?;
    let w = |k: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[8 * k..8 * k + 8]);
        f64::from_le_bytes(x)
    };
    Ok(std::array::from_fn(|i| {
        std::array::from_fn(|j| w(3 * j + i))
    }))
}

/// Largest chunk read into memory at once: a peer that announces more than it
/// sends costs at most this much beyond what it sent.
const CHUNK: usize = 1 << 20;

/// Reads exactly `n` bytes, growing the buffer chunk by chunk as they arrive.
fn read_vec<R: Read>(r: &mut R, n: usize, what: &'static str) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(n.min(CHUNK));
    while out.len() < n {
        let start = out.len();
        let step = (n - start).min(CHUNK);
        out.resize(start + step, 0);
        if let Err(e) = fill(r, &mut out[start..], what, false) {
            return Err(match e {
                CodecError::Truncated { got, .. } => CodecError::Truncated {
                    what,
                    expected: n,
                    got: start + got,
                },
                other => other,
            });
        }
    }
    Ok(out)
}

fn read_rows<R: Read>(r: &mut R, n: usize, what: &'static str) -> Result<Vec<Vec3>, CodecError> {
    let bytes = read_vec(r, 24 * n, what)?;
    Ok(bytes
        .chunks_exact(24)
        .map(|row| {
            std::array::from_fn(|k| {
                let mut x = [0u8; 8];
                x.copy_from_slice(&row[8 * k..8 * k + 8]);
                f64::from_le_bytes(x)
            })
        })
        .collect())
}

fn read_bytes<R: Read>(r: &mut R, what: &'static str, max: usize) -> Result<Vec<u8>, CodecError> {
    let n = read_count(r, what, max)?;
    read_vec(r, n, "a byte string")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
