//! The worker side: handshake, then answer the coordinator until told to stop.
//!
//! A worker is single-threaded (plus a watchdog): it reads frames, applies module
//! operations and runs tasks in arrival order, and writes answers. Answers to tiny
//! tasks are batched while more requests are already buffered, so a pipelined
//! stream of small tasks costs one system call per batch rather than per task.

use crate::module::ModuleStore;
use crate::registry::{Registry, TaskContext};
use crate::shm::SharedValue;
use crate::transport::Connection;
use agox_wire::{
    decode_borrowed, encode_frame_into, FailureKind, FrameReader, FromWorker, Hello, ToWorkerView,
    WireError, PROTOCOL_VERSION,
};
use serde_bytes::ByteBuf;
use std::cell::RefCell;
use std::io::{self, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// Why a worker stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The connection failed.
    #[error("worker {worker}: {source}")]
    Wire {
        /// The worker's slot.
        worker: u32,
        /// The protocol or socket error.
        #[source]
        source: WireError,
    },
    /// The coordinator refused the handshake.
    #[error("worker {worker}: coordinator refused the handshake: {reason}")]
    Refused {
        /// The worker's slot.
        worker: u32,
        /// The coordinator's reason.
        reason: String,
    },
    /// The coordinator sent something out of turn.
    #[error("worker {worker}: unexpected message: {what}")]
    Protocol {
        /// The worker's slot.
        worker: u32,
        /// What arrived.
        what: String,
    },
}

/// How a worker's service ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The coordinator said `Shutdown`.
    Shutdown,
    /// The coordinator closed the connection (or its process ended).
    Closed,
}

/// Identity a worker presents at the handshake.
#[derive(Debug, Clone)]
pub struct WorkerIdentity {
    /// The slot the coordinator assigned.
    pub worker_id: u32,
    /// The pool's secret token.
    pub token: String,
    /// Largest frame accepted.
    pub max_frame: usize,
}

thread_local! {
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Set on a worker's serving thread: panics there are reported as data, not printed.
    static SERVING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The slot of the worker this thread serves as (see [`current_worker`]).
    static SERVING_AS: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// The worker slot the calling thread serves as, or `None` outside a worker (in the
/// driver, where an in-process pool runs its tasks).
///
/// The same value as [`TaskContext::worker_id`](crate::TaskContext::worker_id), for
/// code that holds no task context: a module that builds per-worker resources when
/// first used (an external program with its own directory), whichever task or
/// method uses it first. A replaced worker serves the same slot.
pub fn current_worker() -> Option<u32> {
    SERVING_AS.with(std::cell::Cell::get)
}

/// Installs, once per process, a panic hook that records where a panic happened
/// (for the error sent back to the caller) and, on a worker's serving thread, prints
/// nothing; everywhere else it hands over to the hook that was there before.
///
/// It is installed in the driver **before** the fork server is forked, never in a
/// forked child: `set_hook` takes a lock that another driver thread may have held at
/// fork time, which would deadlock the child forever.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let loc = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            let _ = PANIC_LOCATION.try_with(|p| *p.borrow_mut() = loc);
            if !SERVING.try_with(|s| s.get()).unwrap_or(false) {
                previous(info);
            }
        }));
    });
}

/// Makes large allocations (frame buffers, attribute values) come from their own
/// mappings that are returned to the system when freed. glibc otherwise raises its
/// mapping threshold after the first large free and keeps later large buffers in the
/// heap, so a worker would hold on to the memory of its largest message.
fn release_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let msg = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    };
    match PANIC_LOCATION.with(|p| p.borrow_mut().take()) {
        Some(loc) => format!("{msg} (at {loc})"),
        None => msg,
    }
}

/// Greets the coordinator and serves until `Shutdown` or end of stream.
pub fn serve(
    mut conn: Box<dyn Connection>,
    registry: &Registry,
    id: &WorkerIdentity,
) -> Result<Ending, WorkerError> {
    let worker = id.worker_id;
    let wire = |source| WorkerError::Wire { worker, source };
    SERVING.with(|s| s.set(true));
    SERVING_AS.with(|s| s.set(Some(worker)));
    release_large_allocations();
    conn.set_nonblocking(false).map_err(|e| wire(e.into()))?;
    let hello = FromWorker::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        worker_id: worker,
        pid: std::process::id(),
        fingerprint: registry.fingerprint(),
        token: id.token.clone(),
    });
    let mut out = Vec::with_capacity(64 * 1024);
    encode_frame_into(&hello, &mut out).map_err(wire)?;
    conn.write_all(&out).map_err(|e| wire(e.into()))?;
    out.clear();

    let mut reader = FrameReader::new(id.max_frame);
    let first: ToWorkerView<'_> =
        decode_borrowed(next_body(&mut reader, &mut *conn, id.max_frame).map_err(wire)?)
            .map_err(wire)?;
    match first {
        ToWorkerView::Welcome { .. } => {}
        ToWorkerView::Refused { reason } => return Err(WorkerError::Refused { worker, reason }),
        other => {
            return Err(WorkerError::Protocol {
                worker,
                what: format!("{other:?} before Welcome"),
            })
        }
    }

    let mut store = ModuleStore::default();
    // Oldest answer not yet written: answers wait only while more requests are
    // already buffered, and never longer than this.
    const MAX_HOLD: Duration = Duration::from_micros(50);
    let mut held_since: Option<Instant> = None;
    // Smoothed task duration: answers are held back only behind tiny tasks, so a
    // long task never delays the answer of the one before it.
    let mut ewma_busy_ns: f64 = 0.0;
    let mut held = 0usize;
    // ...and at most this many, so the coordinator can refill the window while
    // this worker still has tasks buffered, instead of after it ran dry.
    const MAX_HELD: usize = 16;
    loop {
        if !reader.has_frame() {
            if !out.is_empty() {
                conn.write_all(&out).map_err(|e| wire(e.into()))?;
                out.clear();
                held_since = None;
                held = 0;
            }
            reader.shrink();
        }
        let body = match next_body(&mut reader, &mut *conn, id.max_frame) {
            Ok(b) => b,
            Err(WireError::Closed) => return Ok(Ending::Closed),
            Err(e) => return Err(wire(e)),
        };
        let msg: ToWorkerView<'_> = decode_borrowed(body).map_err(wire)?;
        let answer = match msg {
            ToWorkerView::Run {
                task,
                function,
                seed,
                args,
            } => {
                let ctx = TaskContext {
                    store: &store,
                    seed,
                    worker: Some(worker),
                };
                let t0 = Instant::now();
                let res = catch_unwind(AssertUnwindSafe(|| registry.call(function, &ctx, args)));
                let busy_ns = t0.elapsed().as_nanos() as u64;
                ewma_busy_ns = 0.8 * ewma_busy_ns + 0.2 * busy_ns as f64;
                match res {
                    Ok(Ok(output)) => FromWorker::Done {
                        task,
                        output: ByteBuf::from(output),
                        busy_ns,
                    },
                    Ok(Err((kind, message))) => FromWorker::Failed {
                        task,
                        kind,
                        message,
                        busy_ns,
                    },
                    Err(payload) => FromWorker::Failed {
                        task,
                        kind: FailureKind::Panic,
                        message: panic_message(&*payload),
                        busy_ns,
                    },
                }
            }
            ToWorkerView::AddModule {
                seq,
                key,
                type_name,
                state,
            } => {
                let error = match registry.construct(&type_name, state) {
                    Ok(m) => {
                        store.insert(&key, m);
                        None
                    }
                    Err(e) => Some(e),
                };
                FromWorker::Ack { seq, error }
            }
            ToWorkerView::RemoveModule { seq, key } => {
                let error = match store.remove(&key) {
                    Some(_) => None,
                    None => Some(format!("no module '{key}' to remove")),
                };
                FromWorker::Ack { seq, error }
            }
            ToWorkerView::SetAttributes {
                seq,
                key,
                attributes,
            } => {
                let error = match store.slot(&key) {
                    None => Some(format!("no module '{key}' to set attributes on")),
                    Some(slot) => {
                        let mut m = slot.lock();
                        attributes
                            .iter()
                            .find_map(|(name, bytes)| m.set_attribute(name, bytes).err())
                            .map(|e| e.to_string())
                    }
                };
                FromWorker::Ack { seq, error }
            }
            ToWorkerView::SetAttributesShared {
                seq,
                key,
                attributes,
            } => {
                // Take every value of this frame, whatever happens below: the
                // transport delivers them in order (descriptors, a broadcast).
                let values: Vec<std::io::Result<SharedValue>> = attributes
                    .iter()
                    .map(|(_, len)| conn.take_shared(*len as usize))
                    .collect();
                let error = match store.slot(&key) {
                    None => Some(format!("no module '{key}' to set attributes on")),
                    Some(slot) => {
                        let mut m = slot.lock();
                        attributes
                            .iter()
                            .zip(values)
                            .find_map(|((name, len), value)| {
                                let set = value.and_then(|v| {
                                    v.read(*len as usize, |bytes| m.set_attribute(name, bytes))
                                });
                                match set {
                                    Ok(Ok(())) => None,
                                    Ok(Err(e)) => Some(e.to_string()),
                                    Err(e) => Some(format!("attribute '{name}': {e}")),
                                }
                            })
                    }
                };
                FromWorker::Ack { seq, error }
            }
            ToWorkerView::Shutdown => {
                if !out.is_empty() {
                    conn.write_all(&out).map_err(|e| wire(e.into()))?;
                }
                return Ok(Ending::Shutdown);
            }
            other @ (ToWorkerView::Welcome { .. } | ToWorkerView::Refused { .. }) => {
                return Err(WorkerError::Protocol {
                    worker,
                    what: format!("{other:?} after the handshake"),
                })
            }
        };
        let answer = fit_frame(answer, id.max_frame);
        encode_frame_into(&answer, &mut out).map_err(wire)?;
        let since = *held_since.get_or_insert_with(Instant::now);
        held += 1;
        if ewma_busy_ns > 20_000.0
            || held >= MAX_HELD
            || since.elapsed() >= MAX_HOLD
            || out.len() >= 256 * 1024
        {
            held = 0;
            conn.write_all(&out).map_err(|e| wire(e.into()))?;
            out.clear();
            held_since = None;
        }
    }
}

/// An output too large for one frame would be refused by the coordinator as a
/// protocol violation (and the task retried on a fresh worker, in vain): report it
/// as the task's own failure instead.
fn fit_frame(answer: FromWorker, max_frame: usize) -> FromWorker {
    match answer {
        FromWorker::Done {
            task,
            output,
            busy_ns,
        } if output.len() + 64 > max_frame => FromWorker::Failed {
            task,
            kind: FailureKind::Error,
            message: format!(
                "output of {} bytes exceeds the maximum frame of {max_frame} bytes (PoolConfig::max_frame)",
                output.len()
            ),
            busy_ns,
        },
        other => other,
    }
}

/// Blocks until one whole frame is buffered and returns its body.
fn next_body<'r>(
    reader: &'r mut FrameReader,
    conn: &mut dyn Connection,
    max: usize,
) -> Result<&'r [u8], WireError> {
    while !reader.has_frame() {
        if let Some(len) = reader.oversized() {
            return Err(WireError::TooLarge { len, max });
        }
        let pending = reader.pending();
        match reader.fill_from(conn) {
            Ok(0) if pending == 0 => return Err(WireError::Closed),
            Ok(0) => {
                return Err(WireError::Truncated {
                    got: pending,
                    expected: pending + 1,
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    reader.next_frame()?.ok_or(WireError::Closed)
}
