//! Modules and their synchronization: what the workers hold, broadcasts that wait
//! for every acknowledgement, and the replay a new worker gets.
//!
//! The record of what workers hold (`ModuleRecord::sent`) changes only once every
//! live worker acknowledged the change. A worker that joins while a broadcast is in
//! flight gets the record **and** that broadcast, and the broadcast waits for its
//! acknowledgement too, so no worker ever holds less than the record says.

use super::{Chunk, Core};
use crate::error::{PoolError, WorkerName};
use crate::module::{ErasedModule, Slot};
use crate::stats::SyncReport;
use agox_wire::{encode_frame, set_attributes_pieces, ToWorker};
use serde_bytes::ByteBuf;
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

/// Values at least this large travel as shared memory where the transport can pass
/// descriptors: written once by the coordinator, mapped by every worker.
const SHARED_MIN: usize = 1 << 20;

/// An attribute value the workers hold, as the coordinator keeps it for replay.
enum Held {
    /// In memory.
    Bytes(Arc<Vec<u8>>),
    /// In a memory file (`memfd`) of `len` bytes, passed to workers by descriptor.
    File { fd: Arc<OwnedFd>, len: usize },
}

/// Writes `bytes` into a memory file: `reuse` (whose pages are already in memory)
/// when given, else a new one.
fn memory_file(bytes: &[u8], reuse: Option<Arc<OwnedFd>>) -> io::Result<Arc<OwnedFd>> {
    let fd = match reuse {
        Some(fd) => fd,
        None => Arc::new(
            nix::sys::memfd::memfd_create(
                c"agox-attribute",
                nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
            )
            .map_err(io::Error::from)?,
        ),
    };
    nix::unistd::ftruncate(&*fd, bytes.len() as libc::off_t).map_err(io::Error::from)?;
    if bytes.is_empty() {
        return Ok(fd);
    }
    // SAFETY: a shared writable mapping of exactly the file's length, checked for
    // failure, written once and unmapped; nobody else writes this file meanwhile
    // (a reused file is one no worker still needs).
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            bytes.len(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            0,
        );
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), map.cast::<u8>(), bytes.len());
        libc::munmap(map, bytes.len());
    }
    Ok(fd)
}

/// One pooled module as the coordinator remembers it, for synchronization and for
/// replaying state into a replacement worker.
pub(super) struct ModuleRecord {
    key: String,
    type_name: &'static str,
    /// The full state shipped at `add` time.
    state: Arc<Vec<u8>>,
    /// For each dynamic attribute: hash and bytes of the value the workers hold.
    sent: HashMap<&'static str, (u64, Held)>,
    slot: Slot,
}

/// A broadcast waiting for acknowledgements.
pub(super) struct AckWait {
    pub key: String,
    /// Workers that have not acknowledged yet.
    pub remaining: HashSet<u32>,
    pub errors: Vec<(u32, String)>,
    /// The broadcast itself, for a worker that joins before it completes.
    pub frame: Vec<Chunk>,
    /// When it was sent.
    pub sent: Instant,
}

/// Changed attributes: (name, hash, the value as it will be held).
type Changed = Vec<(&'static str, u64, Held)>;

impl Core {
    /// Sends one frame to every live worker and waits for all acknowledgements,
    /// including those of workers that join meanwhile (they get the frame after
    /// their replay).
    fn broadcast_and_wait(
        &mut self,
        key: &str,
        frame: Vec<Chunk>,
        seq: u64,
    ) -> Result<(), PoolError> {
        let mut remaining = HashSet::new();
        for w in &mut self.workers {
            if w.alive() {
                w.seal_batch();
                w.out.extend(frame.iter().map(Chunk::for_another));
                remaining.insert(w.id);
            }
        }
        self.acks.insert(
            seq,
            AckWait {
                key: key.to_string(),
                remaining,
                errors: Vec::new(),
                frame,
                sent: Instant::now(),
            },
        );
        for w in 0..self.workers.len() {
            if let Err(e) = self.workers[w].flush() {
                self.worker_lost(
                    w,
                    crate::events::LossCause::Io(format!("write failed: {e}")),
                );
            }
        }
        let driven = self.drive(|c| {
            c.acks
                .get(&seq)
                .map(|a| a.remaining.is_empty())
                .unwrap_or(true)
        });
        let wait = self.acks.remove(&seq);
        driven?;
        if let Some(wait) = wait {
            if let Some((worker, message)) = wait.errors.into_iter().next() {
                return Err(PoolError::Module {
                    key: wait.key,
                    worker: WorkerName::Slot(worker),
                    message,
                });
            }
        }
        Ok(())
    }

    /// Frames that bring a new worker to what the others hold: every module as
    /// added and the attributes of the record, then every broadcast still in
    /// flight (whose acknowledgement is now awaited from this worker too). Returns
    /// the frames and the last sequence number among them.
    pub(super) fn replay(&mut self, wid: u32) -> Result<(Vec<Chunk>, Option<u64>), PoolError> {
        let mut frames: Vec<Chunk> = Vec::new();
        let mut last = None;
        for rec in &self.modules {
            let seq = self.next_seq;
            self.next_seq += 1;
            let add = ToWorker::AddModule {
                seq,
                key: rec.key.clone(),
                type_name: rec.type_name.to_string(),
                state: ByteBuf::from(rec.state.as_slice().to_vec()),
            };
            frames.push(Chunk::Own(encode_frame(&add)?));
            last = Some(seq);
            let in_memory: Vec<(&str, &Arc<Vec<u8>>)> = rec
                .sent
                .iter()
                .filter_map(|(k, (_, v))| match v {
                    Held::Bytes(b) => Some((*k, b)),
                    Held::File { .. } => None,
                })
                .collect();
            if !in_memory.is_empty() {
                let seq = self.next_seq;
                self.next_seq += 1;
                frames.extend(attribute_frame(seq, &rec.key, &in_memory)?);
                last = Some(seq);
            }
            for (name, (_, held)) in &rec.sent {
                if let Held::File { fd, len } = held {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    frames.push(shared_attribute_frame(seq, &rec.key, name, fd, *len)?);
                    last = Some(seq);
                }
            }
        }
        let mut in_flight: Vec<(&u64, &mut AckWait)> = self.acks.iter_mut().collect();
        in_flight.sort_by_key(|(seq, _)| **seq);
        for (seq, wait) in in_flight {
            frames.extend(wait.frame.iter().map(Chunk::for_another));
            wait.remaining.insert(wid);
            last = Some(last.map_or(*seq, |l: u64| l.max(*seq)));
        }
        Ok((frames, last))
    }

    pub fn add_module(
        &mut self,
        key: &str,
        module: Box<dyn ErasedModule>,
    ) -> Result<Slot, PoolError> {
        self.check_broken()?;
        let type_name = module.type_name();
        if !self.registry.has_module(type_name) {
            return Err(PoolError::Module {
                key: key.to_string(),
                worker: WorkerName::Local,
                message: format!(
                    "module type '{type_name}' is not registered in the pool's registry"
                ),
            });
        }
        let state = module.encode_state().map_err(|e| PoolError::Codec {
            what: format!("module '{key}'"),
            message: e.to_string(),
        })?;
        let mut sent = HashMap::new();
        for &name in module.attribute_names() {
            let bytes = module.get_attribute(name).map_err(|e| PoolError::Codec {
                what: format!("module '{key}'"),
                message: e.to_string(),
            })?;
            let hash = xxhash_rust::xxh3::xxh3_64(&bytes);
            sent.insert(name, (hash, Held::Bytes(Arc::new(bytes.into_owned()))));
        }
        let state = Arc::new(state);
        if !self.workers.is_empty() {
            let seq = self.next_seq;
            self.next_seq += 1;
            let msg = ToWorker::AddModule {
                seq,
                key: key.to_string(),
                type_name: type_name.to_string(),
                state: ByteBuf::from(state.as_slice().to_vec()),
            };
            let frame = vec![Chunk::Shared(Arc::new(encode_frame(&msg)?))];
            // The record changes once every worker has the module: a worker joining
            // meanwhile gets the old record and this broadcast.
            self.broadcast_and_wait(key, frame, seq)?;
        }
        self.modules.retain(|m| m.key != key);
        let slot = self.driver.insert(key, module);
        self.modules.push(ModuleRecord {
            key: key.to_string(),
            type_name,
            state,
            sent,
            slot: slot.clone(),
        });
        Ok(slot)
    }

    pub fn remove_module(&mut self, key: &str) -> Result<(), PoolError> {
        self.check_broken()?;
        if !self.modules.iter().any(|m| m.key == key) {
            return Err(self.no_such_module(key));
        }
        let result = if self.workers.is_empty() {
            Ok(())
        } else {
            let seq = self.next_seq;
            self.next_seq += 1;
            let frame = vec![Chunk::Shared(Arc::new(encode_frame(
                &ToWorker::RemoveModule {
                    seq,
                    key: key.to_string(),
                },
            )?))];
            self.broadcast_and_wait(key, frame, seq)
        };
        // After the broadcast: a worker joining meanwhile is given the module by
        // its replay, then this removal.
        self.modules.retain(|m| m.key != key);
        self.driver.remove(key);
        self.spare.retain(|(k, _), _| k != key);
        result
    }

    fn no_such_module(&self, key: &str) -> PoolError {
        PoolError::NoSuchModule {
            key: key.to_string(),
            have: self.driver.keys().join(", "),
        }
    }

    pub fn slot(&self, key: &str) -> Option<Slot> {
        self.driver.slot(key).cloned()
    }

    /// Records values every live worker has acknowledged.
    fn commit(&mut self, i: usize, held: Changed) {
        let rec = &mut self.modules[i];
        for (n, h, v) in held {
            if let Some((_, Held::File { fd, .. })) = rec.sent.insert(n, (h, v)) {
                // No worker needs the old value any more: keep its pages warm for
                // the next value of this attribute.
                if Arc::strong_count(&fd) == 1 {
                    self.spare.insert((rec.key.clone(), n), fd);
                }
            }
        }
    }
    /// Pushes changed dynamic attributes. `only`: one module (by key) and, if
    /// given, only those attributes; `source`: read values from this module
    /// instead of locking the driver's copy (for modules synchronizing themselves).
    pub fn synchronize(
        &mut self,
        only: Option<(&str, Option<&[&str]>)>,
        source: Option<&dyn ErasedModule>,
    ) -> Result<SyncReport, PoolError> {
        self.check_broken()?;
        let t0 = Instant::now();
        let mut report = SyncReport::default();
        if let Some((key, _)) = only {
            if !self.modules.iter().any(|m| m.key == key) {
                return Err(self.no_such_module(key));
            }
        }
        let n_live = self.workers.iter().filter(|w| w.alive()).count();
        // Large values go as shared memory when every live worker can take a
        // descriptor; the rest in frames.
        let by_file = n_live > 0
            && self
                .workers
                .iter()
                .filter_map(|w| w.conn.as_ref())
                .all(|c| c.passes_fds());
        for i in 0..self.modules.len() {
            let rec = &self.modules[i];
            let spare = &mut self.spare;
            let changed: Changed = {
                // Reads each attribute while the module is locked; a changed value is
                // copied once, into a memory file (large) or a buffer (small).
                let mut read = |m: &dyn ErasedModule| -> Result<Changed, PoolError> {
                    let mut out = Vec::new();
                    for &name in m.attribute_names() {
                        if let Some((_, Some(list))) = only {
                            if !list.contains(&name) {
                                continue;
                            }
                        }
                        let bytes = m.get_attribute(name).map_err(|e| PoolError::Codec {
                            what: format!("module '{}'", rec.key),
                            message: e.to_string(),
                        })?;
                        let h = xxhash_rust::xxh3::xxh3_64(&bytes);
                        if rec.sent.get(name).map(|(old, _)| *old) == Some(h) {
                            continue;
                        }
                        let held = if by_file && bytes.len() >= SHARED_MIN {
                            let reuse = spare.remove(&(rec.key.clone(), name));
                            let fd = memory_file(&bytes, reuse).map_err(|e| {
                                PoolError::io(format!("sharing {}.{name}", rec.key), e)
                            })?;
                            Held::File {
                                fd,
                                len: bytes.len(),
                            }
                        } else {
                            Held::Bytes(Arc::new(bytes.into_owned()))
                        };
                        out.push((name, h, held));
                    }
                    Ok(out)
                };
                match only {
                    Some((key, _)) if key != rec.key => continue,
                    Some((_, _)) => match source {
                        Some(m) => read(m)?,
                        None => read(&**rec.slot.lock())?,
                    },
                    None => {
                        let guard = rec.slot.lock();
                        if guard.self_synchronizing() {
                            continue;
                        }
                        read(&**guard)?
                    }
                }
            };
            if let Some((_, Some(list))) = only {
                let declared = match source {
                    Some(m) => m.attribute_names(),
                    None => rec.slot.lock().attribute_names(),
                };
                for name in list {
                    if !declared.contains(name) {
                        return Err(PoolError::Codec {
                            what: format!("module '{}'", rec.key),
                            message: format!(
                                "no dynamic attribute '{name}' (dynamic: {})",
                                declared.join(", ")
                            ),
                        });
                    }
                }
            }
            if changed.is_empty() {
                continue;
            }
            let attrs: Vec<&'static str> = changed.iter().map(|c| c.0).collect();
            let key = rec.key.clone();
            report.modules += 1;
            report.attributes += changed.len();
            report
                .names
                .extend(attrs.iter().map(|a| format!("{key}.{a}")));
            let (in_memory, files): (Changed, Changed) = changed
                .into_iter()
                .partition(|(_, _, v)| matches!(v, Held::Bytes(_)));
            if !in_memory.is_empty() {
                if n_live > 0 {
                    let values: Vec<(&str, &Arc<Vec<u8>>)> = in_memory
                        .iter()
                        .filter_map(|(n, _, v)| match v {
                            Held::Bytes(b) => Some((*n, b)),
                            Held::File { .. } => None,
                        })
                        .collect();
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    let frame = attribute_frame(seq, &key, &values)?;
                    report.bytes += frame.iter().map(|p| p.bytes().len()).sum::<usize>() * n_live;
                    self.broadcast_and_wait(&key, frame, seq)?;
                }
                self.commit(i, in_memory);
            }
            for file in files {
                if let (n, _, Held::File { fd, len }) = &file {
                    if n_live > 0 {
                        let seq = self.next_seq;
                        self.next_seq += 1;
                        let frame = shared_attribute_frame(seq, &key, n, fd, *len)?;
                        report.bytes += (frame.bytes().len() + len) * n_live;
                        self.broadcast_and_wait(&key, vec![frame], seq)?;
                    }
                }
                self.commit(i, vec![file]);
            }
        }
        report.elapsed = t0.elapsed();
        self.sync_totals.add(&report);
        Ok(report)
    }
}

/// A `SetAttributes` frame as shared pieces: small encoded prefixes between the
/// attribute values, which are not copied.
fn attribute_frame(
    seq: u64,
    key: &str,
    values: &[(&str, &Arc<Vec<u8>>)],
) -> Result<Vec<Chunk>, PoolError> {
    let refs: Vec<(&str, &[u8])> = values.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let prefixes = set_attributes_pieces(seq, key, &refs)?;
    let mut out = Vec::with_capacity(2 * values.len() + 1);
    for (i, p) in prefixes.into_iter().enumerate() {
        out.push(Chunk::Shared(Arc::new(p)));
        if let Some((_, v)) = values.get(i) {
            out.push(Chunk::Shared(Arc::clone(v)));
        }
    }
    Ok(out)
}

/// A `SetAttributesShared` frame for one value held in a memory file.
fn shared_attribute_frame(
    seq: u64,
    key: &str,
    name: &str,
    fd: &Arc<OwnedFd>,
    len: usize,
) -> Result<Chunk, PoolError> {
    let msg = ToWorker::SetAttributesShared {
        seq,
        key: key.to_string(),
        attributes: vec![(name.to_string(), len as u64)],
    };
    Ok(Chunk::SharedFd(Arc::new(encode_frame(&msg)?), fd.clone()))
}
