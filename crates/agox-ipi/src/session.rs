//! The server's side of one connection: the exchange that evaluates a structure.
//!
//! One evaluation, as ASE's `SocketIOCalculator` runs it:
//!
//! ```text
//! server                         client
//! STATUS                 ──▶
//!                        ◀──     READY            (or NEEDINIT ─▶ INIT, STATUS ◀─ READY)
//! POSDATA … STATUS       ──▶                      (computes)
//!                        ◀──     HAVEDATA
//! GETFORCE               ──▶
//!                        ◀──     FORCEREADY …
//! ```
//!
//! The rules are the pure function [`advance`]: given the [`Stage`] and the header
//! the client answered with, it names the next [`Action`] or the violation.
//! [`Session`] does the I/O around it over any `Read + Write` stream (a socket, or
//! a scripted stream in tests). `POSDATA` and the `STATUS` after it go out in one
//! write: the client reads them in order whenever it is done computing.

use std::fmt;
use std::io::{self, BufReader, Read, Write};

use crate::codec::{
    is_disconnect, is_timeout, read_header, CodecError, ForceData, Header, InitData, Limits,
    PosData,
};

/// Where an evaluation stands: what the server sent last and awaits an answer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `STATUS` sent at the start; awaiting `READY` or `NEEDINIT`.
    Status,
    /// `INIT` and `STATUS` sent; awaiting `READY`.
    Init,
    /// `POSDATA` and `STATUS` sent; awaiting `HAVEDATA` while the client computes.
    Compute,
    /// `GETFORCE` sent; awaiting `FORCEREADY` and the result.
    Forces,
}

impl Stage {
    /// The answers this stage accepts.
    pub fn expected(self) -> &'static str {
        match self {
            Stage::Status => "READY or NEEDINIT",
            Stage::Init => "READY",
            Stage::Compute => "HAVEDATA",
            Stage::Forces => "FORCEREADY",
        }
    }

    /// True once the structure has been handed over: a failure from here on is
    /// this evaluation's, not a client that was already gone.
    pub fn positions_sent(self) -> bool {
        matches!(self, Stage::Compute | Stage::Forces)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Status => "answering STATUS before the structure was sent",
            Stage::Init => "answering STATUS after INIT",
            Stage::Compute => "computing (awaiting HAVEDATA)",
            Stage::Forces => "sending the result",
        })
    }
}

/// What the server does after a valid answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send `INIT` and `STATUS`; next stage [`Stage::Init`].
    SendInit,
    /// Send `POSDATA` and `STATUS`; next stage [`Stage::Compute`].
    SendPositions,
    /// Send `GETFORCE`; next stage [`Stage::Forces`].
    GetForce,
    /// Read `FORCEREADY`'s payload; the evaluation ends.
    ReadForces,
}

/// The protocol's rules: the action that follows `reply` at `stage`.
pub fn advance(stage: Stage, reply: Header) -> Result<Action, SessionError> {
    match (stage, reply) {
        (Stage::Status, Header::Ready) | (Stage::Init, Header::Ready) => Ok(Action::SendPositions),
        (Stage::Status, Header::NeedInit) => Ok(Action::SendInit),
        (Stage::Compute, Header::HaveData) => Ok(Action::GetForce),
        (Stage::Forces, Header::ForceReady) => Ok(Action::ReadForces),
        (stage, got) => Err(SessionError::Unexpected { stage, got }),
    }
}

/// Why an evaluation failed at the protocol level.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The client ended the connection.
    #[error("the client closed the connection while {stage}")]
    Closed {
        /// Where the evaluation stood.
        stage: Stage,
    },
    /// A read or write exceeded the stream's timeout.
    #[error("timed out while {stage}")]
    TimedOut {
        /// Where the evaluation stood.
        stage: Stage,
    },
    /// A valid header at the wrong time.
    #[error("the client answered {got} while {stage} (expected {})", .stage.expected())]
    Unexpected {
        /// Where the evaluation stood.
        stage: Stage,
        /// What arrived.
        got: Header,
    },
    /// Bytes that do not decode.
    #[error("undecodable data while {stage}")]
    Codec {
        /// Where the evaluation stood.
        stage: Stage,
        /// The decoding error.
        #[source]
        source: CodecError,
    },
    /// A result for another number of atoms than was sent.
    #[error("the client returned forces for {got} atoms; {sent} were sent")]
    AtomCount {
        /// Atoms sent.
        sent: usize,
        /// Atoms in the result.
        got: usize,
    },
    /// A NaN or infinity in the result.
    #[error("the client returned a non-finite {what}")]
    NonFinite {
        /// `"energy"`, `"force"` or `"virial"`.
        what: &'static str,
    },
    /// The stream failed in another way.
    #[error("socket error while {stage}")]
    Io {
        /// Where the evaluation stood.
        stage: Stage,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// An earlier failure left the connection in an unknown state.
    #[error("the connection is unusable after an earlier failure")]
    Broken,
}

impl SessionError {
    /// Where the evaluation stood, when known.
    pub fn stage(&self) -> Option<Stage> {
        match self {
            SessionError::Closed { stage }
            | SessionError::TimedOut { stage }
            | SessionError::Unexpected { stage, .. }
            | SessionError::Codec { stage, .. }
            | SessionError::Io { stage, .. } => Some(*stage),
            SessionError::AtomCount { .. } | SessionError::NonFinite { .. } => Some(Stage::Forces),
            SessionError::Broken => None,
        }
    }

    /// True when the client ended the connection.
    pub fn is_closed(&self) -> bool {
        matches!(self, SessionError::Closed { .. })
    }

    /// True when the stream's timeout expired.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SessionError::TimedOut { .. })
    }

    fn from_codec(stage: Stage, e: CodecError) -> Self {
        if e.is_closed() {
            SessionError::Closed { stage }
        } else if e.is_timeout() {
            SessionError::TimedOut { stage }
        } else {
            SessionError::Codec { stage, source: e }
        }
    }

    fn from_io(stage: Stage, e: io::Error) -> Self {
        if is_disconnect(&e) {
            SessionError::Closed { stage }
        } else if is_timeout(&e) {
            SessionError::TimedOut { stage }
        } else {
            SessionError::Io { stage, source: e }
        }
    }
}

/// One connection to a client, from the server's side.
///
/// Any failure leaves the session [`SessionError::Broken`]: what the client will
/// send next is unknown, so the only way on is a new connection.
pub struct Session<S: Read + Write> {
    stream: BufReader<S>,
    init: InitData,
    limits: Limits,
    out: Vec<u8>,
    broken: bool,
}

impl<S: Read + Write> Session<S> {
    /// A session over a connected stream; `init` is sent if the client asks for it.
    pub fn new(stream: S, init: InitData) -> Self {
        Session {
            stream: BufReader::with_capacity(64 * 1024, stream),
            init,
            limits: Limits::default(),
            out: Vec::with_capacity(4096),
            broken: false,
        }
    }

    /// The stream, e.g. to set its timeouts.
    pub fn stream_mut(&mut self) -> &mut S {
        self.stream.get_mut()
    }

    /// False after a failure.
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    /// Evaluates one structure (atomic units); see the module docs for the exchange.
    pub fn evaluate(&mut self, pos: &PosData) -> Result<ForceData, SessionError> {
        if self.broken {
            return Err(SessionError::Broken);
        }
        let result = self.exchange(pos);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// Sends `EXIT`. The session is unusable afterwards.
    pub fn exit(&mut self) -> Result<(), SessionError> {
        self.broken = true;
        self.out.clear();
        self.out.extend_from_slice(&Header::Exit.to_bytes());
        self.send(Stage::Status)
    }

    fn exchange(&mut self, pos: &PosData) -> Result<ForceData, SessionError> {
        self.out.clear();
        self.out.extend_from_slice(&Header::Status.to_bytes());
        self.send(Stage::Status)?;
        let mut stage = Stage::Status;
        loop {
            let reply =
                read_header(&mut self.stream).map_err(|e| SessionError::from_codec(stage, e))?;
            self.out.clear();
            match advance(stage, reply)? {
                Action::SendInit => {
                    self.init
                        .encode(&mut self.out)
                        .map_err(|e| SessionError::Codec { stage, source: e })?;
                    self.out.extend_from_slice(&Header::Status.to_bytes());
                    self.send(stage)?;
                    stage = Stage::Init;
                }
                Action::SendPositions => {
                    pos.encode(&mut self.out)
                        .map_err(|e| SessionError::Codec { stage, source: e })?;
                    self.out.extend_from_slice(&Header::Status.to_bytes());
                    self.send(stage)?;
                    stage = Stage::Compute;
                }
                Action::GetForce => {
                    self.out.extend_from_slice(&Header::GetForce.to_bytes());
                    self.send(stage)?;
                    stage = Stage::Forces;
                }
                Action::ReadForces => {
                    let sent = pos.positions.len();
                    // The count the client announces may not exceed what was sent.
                    let limits = Limits {
                        max_atoms: sent,
                        ..self.limits
                    };
                    let data =
                        ForceData::read_payload(&mut self.stream, &limits).map_err(
                            |e| match e {
                                CodecError::TooLarge {
                                    what: "atom count",
                                    value,
                                    ..
                                } => SessionError::AtomCount { sent, got: value },
                                e => SessionError::from_codec(stage, e),
                            },
                        )?;
                    return check(data, sent);
                }
            }
        }
    }

    fn send(&mut self, stage: Stage) -> Result<(), SessionError> {
        let stream = self.stream.get_mut();
        stream
            .write_all(&self.out)
            .and_then(|()| stream.flush())
            .map_err(|e| SessionError::from_io(stage, e))
    }
}

/// Rejects a result ASE would reject (its `recv` asserts every value is finite).
fn check(data: ForceData, sent: usize) -> Result<ForceData, SessionError> {
    if data.forces.len() != sent {
        return Err(SessionError::AtomCount {
            sent,
            got: data.forces.len(),
        });
    }
    if !data.energy.is_finite() {
        return Err(SessionError::NonFinite { what: "energy" });
    }
    if data.forces.iter().flatten().any(|f| !f.is_finite()) {
        return Err(SessionError::NonFinite { what: "force" });
    }
    if data.virial.iter().flatten().any(|w| !w.is_finite()) {
        return Err(SessionError::NonFinite { what: "virial" });
    }
    Ok(data)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
