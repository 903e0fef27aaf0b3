//! The client's side of the protocol, for clients written in Rust: answer
//! `STATUS`, take `POSDATA`, compute, hand the result over on `GETFORCE`, end on
//! `EXIT`. It follows ASE's `SocketClient` state by state.

use std::io::{self, BufReader, Read, Write};

use crate::codec::{ClientMessage, CodecError, ForceData, Header, Limits, PosData, ServerMessage};

/// How [`serve`] ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The server sent `EXIT`.
    Exit,
    /// The server closed the connection between two messages.
    Closed,
}

/// Why [`serve`] stopped on an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The server's bytes did not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Writing an answer failed.
    #[error("cannot answer the server")]
    Io(#[source] io::Error),
    /// A message the client's state does not allow.
    #[error("the server sent {got} while the client {state}")]
    OutOfOrder {
        /// The message.
        got: Header,
        /// `"was ready"` or `"had a result waiting"`.
        state: &'static str,
    },
}

/// Serves `compute` (positions in, result out, atomic units) on a connected stream
/// until the server sends `EXIT` or closes the connection.
pub fn serve<S, F>(stream: S, mut compute: F) -> Result<Ended, ServeError>
where
    S: Read + Write,
    F: FnMut(&PosData) -> ForceData,
{
    let mut stream = BufReader::with_capacity(64 * 1024, stream);
    let limits = Limits::default();
    let mut out = Vec::with_capacity(4096);
    let mut result: Option<ForceData> = None;
    loop {
        let msg = match ServerMessage::read(&mut stream, &limits) {
            Ok(m) => m,
            Err(CodecError::Closed) => return Ok(Ended::Closed),
            Err(e) => return Err(e.into()),
        };
        let state = if result.is_some() {
            "had a result waiting"
        } else {
            "was ready"
        };
        out.clear();
        match msg {
            ServerMessage::Status => {
                let answer = if result.is_some() {
                    ClientMessage::HaveData
                } else {
                    ClientMessage::Ready
                };
                answer.encode(&mut out)?;
            }
            // Nothing to initialize: a Rust client is configured when it starts.
            ServerMessage::Init(_) => {}
            ServerMessage::PosData(pos) => {
                if result.is_some() {
                    return Err(ServeError::OutOfOrder {
                        got: Header::PosData,
                        state,
                    });
                }
                result = Some(compute(&pos));
            }
            ServerMessage::GetForce => match result.take() {
                Some(data) => data.encode(&mut out)?,
                None => {
                    return Err(ServeError::OutOfOrder {
                        got: Header::GetForce,
                        state,
                    })
                }
            },
            ServerMessage::Exit => return Ok(Ended::Exit),
        }
        if !out.is_empty() {
            let s = stream.get_mut();
            s.write_all(&out)
                .and_then(|()| s.flush())
                .map_err(ServeError::Io)?;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::codec::InitData;
    use crate::session::Session;
    use std::os::unix::net::UnixStream;

    /// A harmonic well in atomic units: E = Σ r²/2, F = −r, virial from the cell.
    fn harmonic(pos: &PosData) -> ForceData {
        ForceData {
            energy: pos.positions.iter().flatten().map(|x| 0.5 * x * x).sum(),
            forces: pos.positions.iter().map(|p| p.map(|x| -x)).collect(),
            virial: pos.cell,
            extra: b"{}".to_vec(),
        }
    }

    #[test]
    fn a_session_and_a_rust_client_agree_over_a_real_socket() {
        let (server, client) = UnixStream::pair().unwrap();
        let worker = std::thread::spawn(move || serve(client, harmonic));
        let mut session = Session::new(server, InitData::default());
        for n in [1usize, 7, 1000] {
            let pos = PosData {
                cell: [[n as f64, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.5, 3.0]],
                inverse: [[0.0; 3]; 3],
                positions: (0..n).map(|i| [i as f64, -(i as f64), 0.25]).collect(),
            };
            let got = session.evaluate(&pos).unwrap();
            assert_eq!(got, harmonic(&pos));
        }
        session.exit().unwrap();
        assert_eq!(worker.join().unwrap().unwrap(), Ended::Exit);
    }

    #[test]
    fn a_closed_server_ends_the_client_and_out_of_order_messages_are_errors() {
        let (server, client) = UnixStream::pair().unwrap();
        drop(server);
        assert_eq!(serve(client, harmonic).unwrap(), Ended::Closed);

        let (mut server, client) = UnixStream::pair().unwrap();
        server.write_all(&Header::GetForce.to_bytes()).unwrap();
        let e = serve(client, harmonic).unwrap_err();
        assert!(matches!(
            e,
            ServeError::OutOfOrder {
                got: Header::GetForce,
                state: "was ready"
            }
        ));
    }
}
