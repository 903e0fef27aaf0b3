//! The door: connections waiting for their greeting.
//!
//! Anyone of the coordinator's user can connect to the pool's socket. The
//! coordinator must never wait for such a peer: every connection is non-blocking
//! from the moment it is accepted, its `Hello` is gathered from whatever bytes
//! arrive while the event loop turns, and a connection that has not greeted within
//! the handshake timeout is dropped. At most [`MAX_PENDING`] connections wait at
//! once; beyond that the oldest is dropped, except a connection from a process the
//! pool launched itself. The coordinator accepts at most [`ACCEPTS_PER_TURN`] per
//! turn, then pauses accepting for a moment. Refusals are counted, and only the
//! last few reasons kept.

use crate::events::RefusalKind;
use crate::transport::Connection;
use agox_wire::{decode, encode_frame, FromWorker, Hello, ToWorker, HEADER_LEN};
use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Most connections waiting for their greeting at once.
pub(crate) const MAX_PENDING: usize = 64;

/// Most connections accepted in one turn of the event loop, so a flood of
/// connections cannot starve the workers.
pub(crate) const ACCEPTS_PER_TURN: usize = 16;

/// Largest greeting accepted (a `Hello` is about 150 bytes).
const MAX_HELLO: usize = 4096;

/// How many refusal reasons are kept.
const RECENT_REFUSALS: usize = 16;

/// Reads a `Hello` frame from a non-blocking connection, a piece at a time.
#[derive(Default)]
pub(crate) struct HelloReader {
    buf: Vec<u8>,
}

/// What a peer's greeting turned out to be.
pub(crate) enum Greeting {
    /// Not complete yet.
    Partial,
    /// A well-formed `Hello`.
    Hello(Hello),
    /// Not a `Hello`, or not a frame; the reason.
    Bad(String),
    /// The peer closed before greeting.
    Closed,
}

impl HelloReader {
    /// Reads what is available from `conn` (until it would block).
    pub fn feed(&mut self, conn: &mut dyn Read) -> Greeting {
        loop {
            let want = match self.frame_len() {
                Some(Err(bad)) => return Greeting::Bad(bad),
                Some(Ok(len)) => HEADER_LEN + len,
                None => HEADER_LEN,
            };
            if self.buf.len() >= want && self.frame_len().is_some() {
                return self.parse();
            }
            let have = self.buf.len();
            self.buf.resize(want, 0);
            match conn.read(&mut self.buf[have..]) {
                Ok(0) => {
                    self.buf.truncate(have);
                    return if have == 0 {
                        Greeting::Closed
                    } else {
                        Greeting::Bad(format!(
                            "connection closed in the middle of its greeting ({have} of {want} bytes)"
                        ))
                    };
                }
                Ok(n) => self.buf.truncate(have + n),
                Err(e) => {
                    self.buf.truncate(have);
                    return match e.kind() {
                        io::ErrorKind::WouldBlock => Greeting::Partial,
                        io::ErrorKind::Interrupted => continue,
                        _ => Greeting::Bad(format!("read failed: {e}")),
                    };
                }
            }
        }
    }

    /// The announced body length, once the prefix is in.
    fn frame_len(&self) -> Option<Result<usize, String>> {
        let prefix: [u8; HEADER_LEN] = self.buf.get(..HEADER_LEN)?.try_into().ok()?;
        let len = u32::from_le_bytes(prefix) as usize;
        Some(if len > MAX_HELLO {
            Err(format!(
                "greeting of {len} bytes exceeds the maximum of {MAX_HELLO} bytes"
            ))
        } else {
            Ok(len)
        })
    }

    fn parse(&self) -> Greeting {
        match decode::<FromWorker>(&self.buf[HEADER_LEN..]) {
            Ok(FromWorker::Hello(h)) => Greeting::Hello(h),
            Ok(other) => Greeting::Bad(format!("expected Hello, got {}", message_name(&other))),
            Err(e) => Greeting::Bad(format!("no valid Hello: {e}")),
        }
    }
}

fn message_name(m: &FromWorker) -> &'static str {
    match m {
        FromWorker::Hello(_) => "Hello",
        FromWorker::Ack { .. } => "Ack",
        FromWorker::Done { .. } => "Done",
        FromWorker::Failed { .. } => "Failed",
    }
}

/// What the coordinator expects of a greeting.
pub(crate) struct Expect<'a> {
    pub token: &'a str,
    pub fingerprint: u64,
    pub protocol: u32,
    /// Slots waiting for a worker.
    pub waiting: &'a [u32],
    /// Workers in the pool, told in the welcome.
    pub pool_size: usize,
}

/// A refusal: its kind, its reason, and whether the peer held the pool's token and
/// claimed a slot the pool waits for (then it is one of the pool's own workers,
/// built from another program, and waiting longer will not help).
#[derive(Debug)]
pub(crate) struct Refusal {
    pub kind: RefusalKind,
    pub reason: String,
    pub authentic: Option<u32>,
}

impl Refusal {
    fn new(kind: RefusalKind, reason: String) -> Self {
        Refusal {
            kind,
            reason,
            authentic: None,
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a greeting; the reason names both sides' values, never the secret.
pub(crate) fn judge(hello: &Hello, expect: &Expect<'_>) -> Result<(), Refusal> {
    let token_ok = constant_time_eq(hello.token.as_bytes(), expect.token.as_bytes());
    let slot_ok = expect.waiting.contains(&hello.worker_id);
    let (kind, reason) = if hello.protocol != expect.protocol {
        (
            RefusalKind::Protocol,
            format!(
                "protocol version mismatch: coordinator speaks {}, worker {} (pid {}) speaks {}",
                expect.protocol, hello.worker_id, hello.pid, hello.protocol
            ),
        )
    } else if !token_ok {
        (
            RefusalKind::Token,
            format!(
                "wrong pool token from worker {} (pid {}); a token of {} characters was expected, {} received",
                hello.worker_id,
                hello.pid,
                expect.token.len(),
                hello.token.len()
            ),
        )
    } else if hello.fingerprint != expect.fingerprint {
        (
            RefusalKind::Registry,
            format!(
                "registry mismatch: coordinator fingerprint {:016x}, worker {} (pid {}) fingerprint {:016x}; build both from the same program and registry",
                expect.fingerprint, hello.worker_id, hello.pid, hello.fingerprint
            ),
        )
    } else if !slot_ok {
        (
            RefusalKind::UnexpectedWorker,
            format!(
                "unexpected worker id {} (pid {}); waiting for {:?}",
                hello.worker_id, hello.pid, expect.waiting
            ),
        )
    } else {
        return Ok(());
    };
    Err(Refusal {
        kind,
        reason,
        authentic: (token_ok && slot_ok).then_some(hello.worker_id),
    })
}

/// Sends `Refused` if the socket takes it now, and closes (by dropping).
pub(crate) fn refuse(mut conn: Box<dyn Connection>, reason: &str) {
    if let Ok(frame) = encode_frame(&ToWorker::Refused {
        reason: reason.to_string(),
    }) {
        // Best effort: a peer that does not read gets nothing, not a stalled pool.
        let _ = conn.write(&frame);
    }
}

/// A connection waiting for its greeting.
struct Pending {
    conn: Box<dyn Connection>,
    greeting: HelloReader,
    deadline: Instant,
    /// Launched by the pool itself (its peer pid is a starting worker's).
    ours: bool,
}

/// What became of a waiting connection.
pub(crate) enum Admission {
    /// It greeted correctly for a waiting slot.
    Welcome(Hello, Box<dyn Connection>),
    /// It was refused (and closed).
    Refused(Refusal),
}

/// The connections waiting for their greeting, and the record of refusals.
pub(crate) struct Door {
    pending: VecDeque<Pending>,
    timeout: Duration,
    /// Refusals in all.
    pub refused: u64,
    recent: VecDeque<String>,
}

impl Door {
    pub fn new(timeout: Duration) -> Self {
        Door {
            pending: VecDeque::new(),
            timeout,
            refused: 0,
            recent: VecDeque::new(),
        }
    }

    /// Counts a refusal and keeps its reason among the last few.
    pub fn record(&mut self, reason: &str) {
        self.refused += 1;
        if self.recent.len() == RECENT_REFUSALS {
            self.recent.pop_front();
        }
        self.recent.push_back(reason.to_string());
    }

    /// The last few refusal reasons, oldest first.
    pub fn recent(&self) -> Vec<String> {
        self.recent.iter().cloned().collect()
    }

    /// Whether the connection on `fd` is waiting.
    pub fn holds(&self, fd: RawFd) -> bool {
        self.pending.iter().any(|p| p.conn.raw_fd() == fd)
    }

    /// Descriptors of waiting connections, for `poll`.
    pub fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.pending.iter().map(|p| p.conn.raw_fd())
    }

    /// Earliest handshake deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    /// Takes a new connection: refuses a peer of another user at once, else keeps it
    /// waiting (dropping the oldest stranger when too many wait). `ours`: its peer is
    /// a process the pool launched.
    pub fn admit(&mut self, conn: Box<dyn Connection>, my_uid: u32, ours: bool) -> Vec<Refusal> {
        let mut refused = Vec::new();
        match conn.peer_uid() {
            Ok(Some(uid)) if uid != my_uid => {
                let reason = format!("peer uid {uid} is not the coordinator's uid {my_uid}");
                refuse(conn, &reason);
                refused.push(Refusal::new(RefusalKind::Credentials, reason));
                return refused;
            }
            Ok(_) => {}
            Err(e) => {
                refused.push(Refusal::new(
                    RefusalKind::Credentials,
                    format!("cannot read peer credentials: {e}"),
                ));
                return refused;
            }
        }
        if let Err(e) = conn.set_nonblocking(true) {
            refused.push(Refusal::new(
                RefusalKind::Malformed,
                format!("cannot make the connection non-blocking: {e}"),
            ));
            return refused;
        }
        if self.pending.len() >= MAX_PENDING {
            if let Some(i) = self.pending.iter().position(|p| !p.ours) {
                if let Some(old) = self.pending.remove(i) {
                    let reason = format!(
                        "{MAX_PENDING} connections were waiting for their handshake; the oldest was dropped"
                    );
                    refuse(old.conn, &reason);
                    refused.push(Refusal::new(RefusalKind::Overflow, reason));
                }
            }
        }
        self.pending.push_back(Pending {
            conn,
            greeting: HelloReader::default(),
            deadline: Instant::now() + self.timeout,
            ours,
        });
        refused
    }

    /// Reads from the waiting connection on `fd` and decides, once it greeted.
    pub fn readable(&mut self, fd: RawFd, expect: &Expect<'_>) -> Option<Admission> {
        let i = self.pending.iter().position(|p| p.conn.raw_fd() == fd)?;
        let p = &mut self.pending[i];
        let verdict = match p.greeting.feed(&mut p.conn) {
            Greeting::Partial => return None,
            Greeting::Closed => Err(Refusal::new(
                RefusalKind::Malformed,
                "connection closed before its greeting".into(),
            )),
            Greeting::Bad(reason) => Err(Refusal::new(RefusalKind::Malformed, reason)),
            Greeting::Hello(hello) => judge(&hello, expect).map(|()| hello),
        };
        let p = self.pending.remove(i)?;
        Some(match verdict {
            Ok(hello) => welcome(hello, p.conn, expect.pool_size),
            Err(refusal) => {
                refuse(p.conn, &refusal.reason);
                Admission::Refused(refusal)
            }
        })
    }

    /// Drops the connections whose handshake deadline passed.
    pub fn expire(&mut self, now: Instant) -> Vec<Refusal> {
        let mut refused = Vec::new();
        while let Some(i) = self.pending.iter().position(|p| p.deadline <= now) {
            if let Some(p) = self.pending.remove(i) {
                let reason = format!("no greeting within {:?}", self.timeout);
                refuse(p.conn, &reason);
                refused.push(Refusal::new(RefusalKind::Silent, reason));
            }
        }
        refused
    }
}

/// Answers a correct greeting with `Welcome`. The connection is fresh, so its
/// send buffer takes the small frame at once; if it does not, the peer is refused.
fn welcome(hello: Hello, mut conn: Box<dyn Connection>, pool_size: usize) -> Admission {
    let frame = match encode_frame(&ToWorker::Welcome {
        pool_size: pool_size as u32,
    }) {
        Ok(f) => f,
        Err(e) => return Admission::Refused(Refusal::new(RefusalKind::Malformed, e.to_string())),
    };
    match conn.write(&frame) {
        Ok(n) if n == frame.len() => Admission::Welcome(hello, conn),
        other => Admission::Refused(Refusal::new(
            RefusalKind::Malformed,
            format!(
                "cannot welcome worker {} (pid {}): {other:?}",
                hello.worker_id, hello.pid
            ),
        )),
    }
}

/// Runs the coordinator's greeting parser and judge on `data`, read in pieces of the
/// sizes in `pieces`: what the `handshake` fuzz target drives. Returns the verdict
/// in words.
#[doc(hidden)]
pub fn fuzz_greeting(data: &[u8], pieces: &[u8], token: &str, fingerprint: u64) -> String {
    struct Trickle<'a> {
        data: &'a [u8],
        pieces: &'a [u8],
        turn: usize,
    }
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() {
                return Ok(0);
            }
            let piece = self.pieces.get(self.turn % self.pieces.len().max(1));
            self.turn += 1;
            // A zero-sized piece: the peer has sent nothing more yet.
            let n = match piece {
                Some(0) => return Err(io::ErrorKind::WouldBlock.into()),
                Some(&p) => usize::from(p),
                None => usize::MAX,
            };
            let n = n.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }
    let mut src = Trickle {
        data,
        pieces,
        turn: 0,
    };
    let mut reader = HelloReader::default();
    let expect = Expect {
        token,
        fingerprint,
        protocol: agox_wire::PROTOCOL_VERSION,
        waiting: &[0, 1],
        pool_size: 2,
    };
    for _ in 0..data.len() + pieces.len() + 2 {
        match reader.feed(&mut src) {
            Greeting::Partial => continue,
            Greeting::Closed => return "closed".into(),
            Greeting::Bad(reason) => return reason,
            Greeting::Hello(h) => {
                return match judge(&h, &expect) {
                    Ok(()) => format!("welcome worker {}", h.worker_id),
                    Err(r) => r.reason,
                }
            }
        }
    }
    "still waiting".into()
}
