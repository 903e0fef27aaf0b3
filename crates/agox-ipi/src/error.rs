//! What can go wrong with an external client, and how it maps onto
//! [`agox_atoms::CalcError`].

use std::error::Error;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use agox_atoms::{CalcError, ExternalFailure};

use crate::command::CommandError;
use crate::process::{ExitReason, LogTail};
use crate::session::SessionError;

/// Why a client could not be set up, started, or could not evaluate a structure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The command does not parse or does not fit the transport.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The working directory cannot be created.
    #[error("cannot create the client's directory {}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The listening socket cannot be created.
    #[error("cannot listen on a {transport} socket for the client")]
    Bind {
        /// `"unix"` or `"tcp"`.
        transport: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The structure file for `{structure}` cannot be written.
    #[error("cannot write the structure file {}: {message}", path.display())]
    Structure {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The log cannot be opened, or `/bin/sh` cannot be started.
    #[error("cannot start the client `{command}`")]
    Spawn {
        /// The rendered command.
        command: String,
        /// The cause.
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
    /// The client ended before it connected.
    #[error("the client `{command}` {exit} before connecting{tail}")]
    ExitedBeforeConnect {
        /// The rendered command.
        command: String,
        /// How it ended.
        exit: ExitReason,
        /// Its last output.
        tail: LogTail,
    },
    /// The client did not connect in time; it was stopped.
    #[error("the client `{command}` did not connect to {address} within {after:?}; it was stopped{tail}")]
    ConnectTimeout {
        /// The rendered command.
        command: String,
        /// Where it should have connected.
        address: String,
        /// The time allowed.
        after: Duration,
        /// Its last output.
        tail: LogTail,
    },
    /// Waiting for the connection failed.
    #[error("waiting for the client to connect failed")]
    Accept {
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The client process ended during the evaluation.
    #[error("the client {exit} during the evaluation{tail}")]
    Ended {
        /// How it ended.
        exit: ExitReason,
        /// Its last output.
        tail: LogTail,
    },
    /// The client closed the connection during the evaluation but kept running; it
    /// was stopped.
    #[error("the client closed the connection during the evaluation and was stopped{tail}")]
    Closed {
        /// Its last output.
        tail: LogTail,
    },
    /// The evaluation took longer than the configured timeout; the client was stopped.
    #[error("the evaluation exceeded the time limit of {after:?}; the client was stopped{tail}")]
    Timeout {
        /// The limit.
        after: Duration,
        /// Its last output.
        tail: LogTail,
    },
    /// The client broke the protocol (or returned non-finite numbers); it was stopped.
    #[error(
        "the client broke the i-PI protocol: {}; it was stopped{tail}",
        full_message(violation)
    )]
    Protocol {
        /// What it did.
        violation: SessionError,
        /// Its last output.
        tail: LogTail,
    },
    /// The structure does not match the client's composition.
    #[error("this client serves {expected}, but the structure is {got}: the i-PI protocol sends no element list, so one client serves one composition in one atom order")]
    Composition {
        /// What the client was started for.
        expected: String,
        /// What was asked.
        got: String,
    },
    /// Restarts exhausted: the client kept failing without a successful evaluation.
    #[error("gave up on the client after {restarts} restarts without a successful evaluation; the last failure: {last}")]
    RestartLimit {
        /// Restarts made.
        restarts: u32,
        /// The last failure, in full.
        last: String,
    },
    /// The connection's socket options could not be set.
    #[error("cannot set the client connection's timeout")]
    Io(#[source] io::Error),
}

impl ClientError {
    /// The failure class, as [`CalcError::External`] reports it.
    pub fn kind(&self) -> ExternalFailure {
        match self {
            ClientError::Ended {
                exit: ExitReason::Signal(_),
                ..
            } => ExternalFailure::Killed,
            ClientError::Ended { .. } | ClientError::Closed { .. } | ClientError::Io(_) => {
                ExternalFailure::Failed
            }
            ClientError::Timeout { .. } => ExternalFailure::TimedOut,
            ClientError::Protocol { .. } | ClientError::Composition { .. } => {
                ExternalFailure::Protocol
            }
            ClientError::Command(_)
            | ClientError::Dir { .. }
            | ClientError::Bind { .. }
            | ClientError::Structure { .. }
            | ClientError::Spawn { .. }
            | ClientError::ExitedBeforeConnect { .. }
            | ClientError::ConnectTimeout { .. }
            | ClientError::Accept { .. }
            | ClientError::RestartLimit { .. } => ExternalFailure::Start,
        }
    }

    /// True for [`ClientError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, ClientError::Timeout { .. })
    }
}

/// The error and its causes, each once, joined by ": ".
pub(crate) fn full_message(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

impl From<ClientError> for CalcError {
    fn from(e: ClientError) -> CalcError {
        match e {
            // Asking a client for another composition is the caller's mistake,
            // not the calculator's.
            ClientError::Composition { .. } => CalcError::Invalid {
                calculator: "socket",
                message: e.to_string(),
            },
            e => CalcError::External {
                calculator: "socket",
                kind: e.kind(),
                message: full_message(&e),
            },
        }
    }
}
