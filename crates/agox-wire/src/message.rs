//! The messages: one enum per direction, plus the fork-server pair.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Version of this protocol. Bumped on any change to a message's shape; a worker
/// and a coordinator of different versions refuse each other at the handshake.
pub const PROTOCOL_VERSION: u32 = 2;

/// The first frame a worker sends after connecting. The coordinator answers with
/// [`ToWorker::Welcome`] or [`ToWorker::Refused`] and closes on refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the worker's build.
    pub protocol: u32,
    /// Slot the coordinator assigned to this worker when it launched it.
    pub worker_id: u32,
    /// Operating-system process id of the worker.
    pub pid: u32,
    /// Fingerprint of the worker's registry (module types and function names). It must
    /// equal the coordinator's, or names would resolve to different code.
    pub fingerprint: u64,
    /// The per-pool secret the coordinator handed to the launcher. Never logged.
    pub token: String,
}

/// Coordinator → worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Handshake accepted; the worker may now receive state and tasks. No answer.
    Welcome {
        /// Number of workers in the pool, for information.
        pool_size: u32,
    },
    /// Handshake refused, with a reason naming both sides' values (never the secret).
    /// The coordinator closes the connection after sending it; the worker exits.
    Refused {
        /// Human-readable reason.
        reason: String,
    },
    /// Create module `key` of registered type `type_name` from its full serialized
    /// state (replacing any module under that key). Answered by [`FromWorker::Ack`].
    AddModule {
        /// Sequence number echoed in the acknowledgement.
        seq: u64,
        /// The pool key of the module.
        key: String,
        /// Registered type name.
        type_name: String,
        /// The whole module, serialized by its type's codec.
        state: ByteBuf,
    },
    /// Drop module `key`. Answered by [`FromWorker::Ack`].
    RemoveModule {
        /// Sequence number echoed in the acknowledgement.
        seq: u64,
        /// The pool key of the module.
        key: String,
    },
    /// Overwrite dynamic attributes of module `key` with the coordinator's values.
    /// Answered by [`FromWorker::Ack`] once every attribute is set.
    SetAttributes {
        /// Sequence number echoed in the acknowledgement.
        seq: u64,
        /// The pool key of the module.
        key: String,
        /// (attribute name, encoded value) pairs.
        attributes: Vec<(String, ByteBuf)>,
    },
    /// Run registered function `function` on `args`. Answered by
    /// [`FromWorker::Done`] or [`FromWorker::Failed`] with the same `task`.
    Run {
        /// Coordinator-wide task id.
        task: u64,
        /// Registered function name.
        function: String,
        /// The task's seed, derived from (pool seed, call, index) by the coordinator.
        seed: u64,
        /// Arguments, MessagePack-encoded by the caller's typed handle.
        args: ByteBuf,
    },
    /// Like `SetAttributes`, for large values: attribute `i`'s `len` encoded bytes
    /// are the start of the `i`-th file descriptor (a sealed-size memory file)
    /// passed with this frame over the socket (`SCM_RIGHTS`). The worker maps each,
    /// copies the value into the module and closes it. Answered by
    /// [`FromWorker::Ack`]. Sent only over transports that pass descriptors.
    SetAttributesShared {
        /// Sequence number echoed in the acknowledgement.
        seq: u64,
        /// The pool key of the module.
        key: String,
        /// (attribute name, byte length) pairs, in descriptor order.
        attributes: Vec<(String, u64)>,
    },
    /// Finish and exit. No answer; the coordinator then waits for end of stream.
    Shutdown,
}

/// A borrowed twin of the [`ToWorker`] variants that carry bulk bytes, encoding to
/// exactly the same frame. The coordinator uses it to write a task's arguments or a
/// large attribute straight from its own buffers, without first copying them into an
/// owned message.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename = "ToWorker")]
pub enum ToWorkerRef<'a> {
    /// Same as [`ToWorker::SetAttributes`].
    SetAttributes {
        /// Sequence number echoed in the acknowledgement.
        seq: u64,
        /// The pool key of the module.
        key: &'a str,
        /// (attribute name, encoded value) pairs.
        attributes: &'a [(&'a str, &'a serde_bytes::Bytes)],
    },
    /// Same as [`ToWorker::Run`].
    Run {
        /// Coordinator-wide task id.
        task: u64,
        /// Registered function name.
        function: &'a str,
        /// The task's seed.
        seed: u64,
        /// Encoded arguments.
        args: &'a serde_bytes::Bytes,
    },
}

/// A borrowing view of [`ToWorker`] for decoding: bulk bytes (arguments, module
/// state, attribute values) point into the received frame instead of being copied
/// out of it. Workers decode with this; it accepts exactly what [`ToWorker`] encodes.
#[derive(Debug, Deserialize)]
#[serde(rename = "ToWorker")]
pub enum ToWorkerView<'a> {
    /// See [`ToWorker::Welcome`].
    Welcome {
        /// Number of workers in the pool.
        pool_size: u32,
    },
    /// See [`ToWorker::Refused`].
    Refused {
        /// Human-readable reason.
        reason: String,
    },
    /// See [`ToWorker::AddModule`].
    AddModule {
        /// Sequence number.
        seq: u64,
        /// The pool key.
        key: String,
        /// Registered type name.
        type_name: String,
        /// The serialized module.
        #[serde(borrow)]
        state: &'a serde_bytes::Bytes,
    },
    /// See [`ToWorker::RemoveModule`].
    RemoveModule {
        /// Sequence number.
        seq: u64,
        /// The pool key.
        key: String,
    },
    /// See [`ToWorker::SetAttributes`].
    SetAttributes {
        /// Sequence number.
        seq: u64,
        /// The pool key.
        key: String,
        /// (attribute name, encoded value) pairs.
        #[serde(borrow)]
        attributes: Vec<(&'a str, &'a serde_bytes::Bytes)>,
    },
    /// See [`ToWorker::Run`].
    Run {
        /// Task id.
        task: u64,
        /// Function name.
        function: &'a str,
        /// The task's seed.
        seed: u64,
        /// Encoded arguments.
        #[serde(borrow)]
        args: &'a serde_bytes::Bytes,
    },
    /// See [`ToWorker::SetAttributesShared`].
    SetAttributesShared {
        /// Sequence number.
        seq: u64,
        /// The pool key.
        key: String,
        /// (attribute name, byte length) pairs, in descriptor order.
        attributes: Vec<(String, u64)>,
    },
    /// See [`ToWorker::Shutdown`].
    Shutdown,
}

/// Encodes a [`ToWorker::SetAttributes`] frame as pieces, without copying the
/// attribute values: the returned `prefixes` interleave with the values as
/// `prefixes[0], values[0], prefixes[1], values[1], …`, and their concatenation is
/// byte for byte the frame [`encode_frame`](crate::encode_frame) would produce. A
/// large attribute can then be written to every worker straight from the one buffer
/// that holds it.
pub fn set_attributes_pieces(
    seq: u64,
    key: &str,
    attributes: &[(&str, &[u8])],
) -> Result<Vec<Vec<u8>>, crate::WireError> {
    use rmp::encode as enc;
    fn io(e: impl std::fmt::Display) -> crate::WireError {
        crate::WireError::Io(std::io::Error::other(e.to_string()))
    }
    let mut pieces: Vec<Vec<u8>> = Vec::with_capacity(attributes.len().max(1));
    let mut cur = vec![0u8; crate::HEADER_LEN];
    enc::write_map_len(&mut cur, 1).map_err(io)?;
    enc::write_str(&mut cur, "SetAttributes").map_err(io)?;
    enc::write_map_len(&mut cur, 3).map_err(io)?;
    enc::write_str(&mut cur, "seq").map_err(io)?;
    enc::write_uint(&mut cur, seq).map_err(io)?;
    enc::write_str(&mut cur, "key").map_err(io)?;
    enc::write_str(&mut cur, key).map_err(io)?;
    enc::write_str(&mut cur, "attributes").map_err(io)?;
    enc::write_array_len(&mut cur, attributes.len() as u32).map_err(io)?;
    for (name, value) in attributes {
        enc::write_array_len(&mut cur, 2).map_err(io)?;
        enc::write_str(&mut cur, name).map_err(io)?;
        let len = u32::try_from(value.len()).map_err(|_| crate::WireError::TooLarge {
            len: value.len(),
            max: u32::MAX as usize,
        })?;
        enc::write_bin_len(&mut cur, len).map_err(io)?;
        pieces.push(std::mem::take(&mut cur));
    }
    if attributes.is_empty() {
        pieces.push(cur);
    }
    let total = pieces.iter().map(Vec::len).sum::<usize>()
        + attributes.iter().map(|(_, v)| v.len()).sum::<usize>()
        - crate::HEADER_LEN;
    let total = u32::try_from(total).map_err(|_| crate::WireError::TooLarge {
        len: total,
        max: u32::MAX as usize,
    })?;
    pieces[0][..crate::HEADER_LEN].copy_from_slice(&total.to_le_bytes());
    Ok(pieces)
}

/// How a task failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The function returned an error.
    Error,
    /// The function panicked; the worker caught it and lives on.
    Panic,
    /// No function of that name is registered in the worker.
    UnknownFunction,
    /// The arguments did not decode into the function's argument type.
    BadArguments,
}

/// Worker → coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The handshake, sent once right after connecting.
    Hello(Hello),
    /// A module operation (`AddModule`, `RemoveModule`, `SetAttributes`) finished.
    Ack {
        /// The operation's sequence number.
        seq: u64,
        /// Why it failed, if it did (unknown type, undecodable state, ...).
        error: Option<String>,
    },
    /// A task finished with an output.
    Done {
        /// The task id from [`ToWorker::Run`].
        task: u64,
        /// The output, MessagePack-encoded.
        output: ByteBuf,
        /// Time the function ran, in nanoseconds.
        busy_ns: u64,
    },
    /// A task failed; the worker keeps serving.
    Failed {
        /// The task id from [`ToWorker::Run`].
        task: u64,
        /// What kind of failure.
        kind: FailureKind,
        /// The error or panic message.
        message: String,
        /// Time the function ran, in nanoseconds.
        busy_ns: u64,
    },
}

/// Coordinator → fork server (the single-threaded process that forks workers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForkRequest {
    /// Fork a worker for slot `worker_id`. Answered by [`ForkReply::Spawned`] or
    /// [`ForkReply::SpawnFailed`].
    Spawn {
        /// The slot the new worker fills.
        worker_id: u32,
    },
    /// Kill (SIGKILL) one of the fork server's own children, e.g. a timed-out worker.
    /// No answer. Pids that are not live children are ignored.
    Kill {
        /// The worker's pid.
        pid: u32,
    },
    /// Kill every worker, reap them and exit. Answered by [`ForkReply::Stopped`].
    Shutdown,
}

/// Fork server → coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForkReply {
    /// A worker was forked.
    Spawned {
        /// The slot.
        worker_id: u32,
        /// Its pid.
        pid: u32,
    },
    /// `fork` failed.
    SpawnFailed {
        /// The slot.
        worker_id: u32,
        /// The operating system's error.
        message: String,
    },
    /// Every worker has been killed and reaped; the fork server exits next.
    Stopped,
    /// A worker ended and was reaped. Sent unprompted, as soon as the fork server
    /// sees the child exit, so that a worker dying before its handshake is noticed at
    /// once.
    Exited {
        /// The worker's pid.
        pid: u32,
        /// Its exit status, if it exited.
        code: Option<i32>,
        /// The signal that ended it, if one did.
        signal: Option<i32>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, encode_frame, read_frame, DEFAULT_MAX_FRAME, HEADER_LEN};
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = ByteBuf> {
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(ByteBuf::from)
    }

    fn hello() -> impl Strategy<Value = Hello> {
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            ".{0,40}",
        )
            .prop_map(|(protocol, worker_id, pid, fingerprint, token)| Hello {
                protocol,
                worker_id,
                pid,
                fingerprint,
                token,
            })
    }

    fn to_worker() -> impl Strategy<Value = ToWorker> {
        prop_oneof![
            any::<u32>().prop_map(|pool_size| ToWorker::Welcome { pool_size }),
            ".*".prop_map(|reason| ToWorker::Refused { reason }),
            (any::<u64>(), ".*", ".*", bytes()).prop_map(|(seq, key, type_name, state)| {
                ToWorker::AddModule {
                    seq,
                    key,
                    type_name,
                    state,
                }
            }),
            (any::<u64>(), ".*").prop_map(|(seq, key)| ToWorker::RemoveModule { seq, key }),
            (
                any::<u64>(),
                ".*",
                proptest::collection::vec((".*", bytes()), 0..4)
            )
                .prop_map(|(seq, key, attributes)| ToWorker::SetAttributes {
                    seq,
                    key,
                    attributes
                }),
            (any::<u64>(), ".*", any::<u64>(), bytes()).prop_map(|(task, function, seed, args)| {
                ToWorker::Run {
                    task,
                    function,
                    seed,
                    args,
                }
            }),
            (
                any::<u64>(),
                ".*",
                proptest::collection::vec((".*", any::<u64>()), 0..4)
            )
                .prop_map(|(seq, key, attributes)| ToWorker::SetAttributesShared {
                    seq,
                    key,
                    attributes
                }),
            Just(ToWorker::Shutdown),
        ]
    }

    fn failure_kind() -> impl Strategy<Value = FailureKind> {
        prop_oneof![
            Just(FailureKind::Error),
            Just(FailureKind::Panic),
            Just(FailureKind::UnknownFunction),
            Just(FailureKind::BadArguments),
        ]
    }

    fn from_worker() -> impl Strategy<Value = FromWorker> {
        prop_oneof![
            hello().prop_map(FromWorker::Hello),
            (any::<u64>(), proptest::option::of(".*"))
                .prop_map(|(seq, error)| FromWorker::Ack { seq, error }),
            (any::<u64>(), bytes(), any::<u64>()).prop_map(|(task, output, busy_ns)| {
                FromWorker::Done {
                    task,
                    output,
                    busy_ns,
                }
            }),
            (any::<u64>(), failure_kind(), ".*", any::<u64>()).prop_map(
                |(task, kind, message, busy_ns)| FromWorker::Failed {
                    task,
                    kind,
                    message,
                    busy_ns
                }
            ),
        ]
    }

    fn fork_request() -> impl Strategy<Value = ForkRequest> {
        prop_oneof![
            any::<u32>().prop_map(|worker_id| ForkRequest::Spawn { worker_id }),
            any::<u32>().prop_map(|pid| ForkRequest::Kill { pid }),
            Just(ForkRequest::Shutdown),
        ]
    }

    fn fork_reply() -> impl Strategy<Value = ForkReply> {
        prop_oneof![
            (any::<u32>(), any::<u32>())
                .prop_map(|(worker_id, pid)| ForkReply::Spawned { worker_id, pid }),
            (any::<u32>(), ".*")
                .prop_map(|(worker_id, message)| ForkReply::SpawnFailed { worker_id, message }),
            Just(ForkReply::Stopped),
        ]
    }

    fn roundtrip<T>(msg: &T) -> T
    where
        T: Serialize + serde::de::DeserializeOwned,
    {
        let frame = encode_frame(msg).unwrap();
        let len = u32::from_le_bytes(frame[..HEADER_LEN].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - HEADER_LEN);
        let a: T = read_frame(&mut &frame[..], DEFAULT_MAX_FRAME).unwrap();
        let _b: T = decode(&frame[HEADER_LEN..]).unwrap();
        a
    }

    proptest! {
        #[test]
        fn to_worker_roundtrips(msg in to_worker()) {
            prop_assert_eq!(roundtrip(&msg), msg);
        }

        #[test]
        fn from_worker_roundtrips(msg in from_worker()) {
            prop_assert_eq!(roundtrip(&msg), msg);
        }

        #[test]
        fn fork_messages_roundtrip(a in fork_request(), b in fork_reply()) {
            prop_assert_eq!(roundtrip(&a), a);
            prop_assert_eq!(roundtrip(&b), b);
        }

        #[test]
        fn borrowed_twin_encodes_identically(seq in any::<u64>(), key in ".*", name in ".*",
                                             value in bytes(), seed in any::<u64>()) {
            let owned = ToWorker::SetAttributes {
                seq, key: key.clone(), attributes: vec![(name.clone(), value.clone())],
            };
            let attrs = [(name.as_str(), serde_bytes::Bytes::new(&value))];
            let borrowed = ToWorkerRef::SetAttributes { seq, key: &key, attributes: &attrs };
            prop_assert_eq!(encode_frame(&owned).unwrap(), encode_frame(&borrowed).unwrap());
            let owned = ToWorker::Run { task: seq, function: key.clone(), seed, args: value.clone() };
            let borrowed = ToWorkerRef::Run {
                task: seq, function: &key, seed, args: serde_bytes::Bytes::new(&value),
            };
            prop_assert_eq!(encode_frame(&owned).unwrap(), encode_frame(&borrowed).unwrap());
        }

        #[test]
        fn pieces_concatenate_to_the_frame(seq in any::<u64>(), key in ".*",
                                           attrs in proptest::collection::vec((".*", bytes()), 0..4)) {
            let refs: Vec<(&str, &[u8])> = attrs.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
            let pieces = set_attributes_pieces(seq, &key, &refs).unwrap();
            let mut joined = Vec::new();
            for (i, p) in pieces.iter().enumerate() {
                joined.extend_from_slice(p);
                if let Some((_, v)) = refs.get(i) {
                    joined.extend_from_slice(v);
                }
            }
            let owned = ToWorker::SetAttributes {
                seq,
                key: key.clone(),
                attributes: attrs.iter().map(|(n, v)| (n.clone(), v.clone())).collect(),
            };
            prop_assert_eq!(&joined, &encode_frame(&owned).unwrap());
            // And the borrowing view decodes it to the same values.
            let view: ToWorkerView<'_> = crate::decode_borrowed(&joined[HEADER_LEN..]).unwrap();
            match view {
                ToWorkerView::SetAttributes { seq: s2, key: k2, attributes: a2 } => {
                    prop_assert_eq!(s2, seq);
                    prop_assert_eq!(k2, key);
                    prop_assert_eq!(a2.len(), attrs.len());
                    for ((n, v), (n2, v2)) in attrs.iter().zip(a2) {
                        prop_assert_eq!(n.as_str(), n2);
                        prop_assert_eq!(v.as_slice(), &v2[..]);
                    }
                }
                other => prop_assert!(false, "decoded {:?}", other),
            }
        }

        #[test]
        fn view_decodes_every_to_worker(msg in to_worker()) {
            let frame = encode_frame(&msg).unwrap();
            let view: ToWorkerView<'_> = crate::decode_borrowed(&frame[HEADER_LEN..]).unwrap();
            let same = match (&msg, view) {
                (ToWorker::Welcome { pool_size }, ToWorkerView::Welcome { pool_size: p }) => *pool_size == p,
                (ToWorker::Refused { reason }, ToWorkerView::Refused { reason: r }) => *reason == r,
                (ToWorker::AddModule { seq, key, type_name, state },
                 ToWorkerView::AddModule { seq: s, key: k, type_name: t, state: st }) =>
                    *seq == s && *key == k && *type_name == t && state.as_slice() == &st[..],
                (ToWorker::RemoveModule { seq, key }, ToWorkerView::RemoveModule { seq: s, key: k }) =>
                    *seq == s && *key == k,
                (ToWorker::SetAttributes { seq, attributes, .. }, ToWorkerView::SetAttributes { seq: s, attributes: a, .. }) =>
                    *seq == s && attributes.len() == a.len(),
                (ToWorker::Run { task, function, seed, args }, ToWorkerView::Run { task: t, function: f, seed: s, args: a }) =>
                    *task == t && function == f && *seed == s && args.as_slice() == &a[..],
                (ToWorker::SetAttributesShared { seq, key, attributes },
                 ToWorkerView::SetAttributesShared { seq: s, key: k, attributes: a }) =>
                    *seq == s && *key == k && *attributes == a,
                (ToWorker::Shutdown, ToWorkerView::Shutdown) => true,
                _ => false,
            };
            prop_assert!(same);
        }

        #[test]
        fn garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode::<ToWorker>(&body);
            let _ = decode::<FromWorker>(&body);
            let _ = decode::<ForkRequest>(&body);
        }

        #[test]
        fn truncated_frames_are_errors(msg in to_worker(), cut in 1usize..64) {
            let frame = encode_frame(&msg).unwrap();
            let cut = cut.min(frame.len());
            let short = &frame[..frame.len() - cut];
            prop_assert!(read_frame::<ToWorker, _>(&mut &short[..], DEFAULT_MAX_FRAME).is_err());
        }
    }
}
