//! What the workers hold: one record per pooled module (its state as added, and
//! for each dynamic attribute the hash and bytes of the value the workers have),
//! the broadcasts waiting for acknowledgements, the deltas a synchronization
//! sends, and the replay that brings a new worker to what the others hold.
//!
//! The record (`ModuleRecord::sent`) changes only once every live worker
//! acknowledged the change. A worker that joins while a broadcast is in flight
//! gets the record **and** that broadcast, and the broadcast waits for its
//! acknowledgement too, so no worker ever holds less than the record says.
//!
//! Nothing here does I/O: frames are built as [`Chunk`]s for the event loop to
//! send.

use crate::error::PoolError;
use crate::module::{ErasedModule, Slot};
use crate::shm::{SharedFile, SHARED_MIN};
use crate::transport::{Bulk, Chunk};
use agox_wire::{encode_frame, set_attributes_pieces, ToWorker};
use serde_bytes::ByteBuf;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// An attribute value the workers hold, as the coordinator keeps it for replay.
pub(super) enum Held {
    /// In memory.
    Bytes(Arc<Vec<u8>>),
    /// In a memory file (`memfd`), which workers map.
    File(Arc<SharedFile>),
}

/// How a changed value travels to the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// In a `SetAttributes` frame with the module's other small changes.
    Inline,
    /// Its own `SetAttributesShared` frame, the value in a memory file.
    File,
}

/// One changed attribute: name, hash of the new value, the value, its route.
pub(super) struct Change {
    pub name: &'static str,
    pub hash: u64,
    pub held: Held,
    pub route: Route,
}

/// One pooled module as the coordinator remembers it.
pub(super) struct ModuleRecord {
    pub key: String,
    type_name: &'static str,
    /// The full state shipped at `add` time.
    state: Arc<Vec<u8>>,
    /// For each dynamic attribute: hash and bytes of the value the workers hold.
    sent: HashMap<&'static str, (u64, Held)>,
    pub slot: Slot,
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

#[derive(Default)]
pub(super) struct Replica {
    pub modules: Vec<ModuleRecord>,
    pub acks: HashMap<u64, AckWait>,
    next_seq: u64,
    /// Memory files of superseded large values, reused for the next value.
    spare: HashMap<(String, &'static str), SharedFile>,
}

fn codec(key: &str, e: impl std::fmt::Display) -> PoolError {
    PoolError::Codec {
        what: format!("module '{key}'"),
        message: e.to_string(),
    }
}

impl Replica {
    /// The next sequence number of a module operation.
    pub fn seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// The sequence number the next operation will get.
    pub fn peek_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn has(&self, key: &str) -> bool {
        self.modules.iter().any(|m| m.key == key)
    }

    /// A record of `module` as it is now: its state and every dynamic attribute.
    pub fn record(
        key: &str,
        module: &dyn ErasedModule,
        slot: Slot,
    ) -> Result<ModuleRecord, PoolError> {
        let state = module.encode_state().map_err(|e| codec(key, e))?;
        let mut sent = HashMap::new();
        for &name in module.attribute_names() {
            let bytes = module.get_attribute(name).map_err(|e| codec(key, e))?;
            let hash = xxhash_rust::xxh3::xxh3_64(&bytes);
            sent.insert(name, (hash, Held::Bytes(Arc::new(bytes.into_owned()))));
        }
        Ok(ModuleRecord {
            key: key.to_string(),
            type_name: module.type_name(),
            state: Arc::new(state),
            sent,
            slot,
        })
    }

    /// The `AddModule` frame of a record.
    pub fn add_frame(rec: &ModuleRecord, seq: u64) -> Result<Vec<u8>, PoolError> {
        Ok(encode_frame(&ToWorker::AddModule {
            seq,
            key: rec.key.clone(),
            type_name: rec.type_name.to_string(),
            state: ByteBuf::from(rec.state.as_slice().to_vec()),
        })?)
    }

    /// Keeps `rec` (replacing a record under the same key).
    pub fn insert(&mut self, rec: ModuleRecord) {
        self.modules.retain(|m| m.key != rec.key);
        self.modules.push(rec);
    }

    pub fn remove(&mut self, key: &str) {
        self.modules.retain(|m| m.key != key);
        self.spare.retain(|(k, _), _| k != key);
    }

    /// Frames that bring a new worker to what the others hold: every module as
    /// added and the attributes of the record, then every broadcast still in
    /// flight (whose acknowledgement is now awaited from this worker too). Returns
    /// the frames and the last sequence number among them.
    pub fn replay(&mut self, wid: u32) -> Result<(Vec<Chunk>, Option<u64>), PoolError> {
        let mut frames: Vec<Chunk> = Vec::new();
        let mut last = None;
        let mut seq = self.next_seq;
        let mut next = || {
            let s = seq;
            seq += 1;
            s
        };
        for rec in &self.modules {
            let s = next();
            frames.push(Chunk::Own(Self::add_frame(rec, s)?));
            last = Some(s);
            let in_memory: Vec<(&str, &Arc<Vec<u8>>)> = rec
                .sent
                .iter()
                .filter_map(|(k, (_, v))| match v {
                    Held::Bytes(b) => Some((*k, b)),
                    Held::File(_) => None,
                })
                .collect();
            if !in_memory.is_empty() {
                let s = next();
                frames.extend(attribute_frame(s, &rec.key, &in_memory)?);
                last = Some(s);
            }
            for (name, (_, held)) in &rec.sent {
                if let Held::File(file) = held {
                    let s = next();
                    frames.push(shared_frame(s, &rec.key, name, file)?);
                    last = Some(s);
                }
            }
        }
        self.next_seq = seq;
        let mut in_flight: Vec<(&u64, &mut AckWait)> = self.acks.iter_mut().collect();
        in_flight.sort_by_key(|(seq, _)| **seq);
        for (seq, wait) in in_flight {
            frames.extend(wait.frame.iter().map(Chunk::for_another));
            wait.remaining.insert(wid);
            last = Some(last.map_or(*seq, |l: u64| l.max(*seq)));
        }
        Ok((frames, last))
    }

    /// Worker `wid` acknowledged operation `seq`; true if that was a broadcast.
    pub fn ack(&mut self, seq: u64, wid: u32, error: Option<&String>) -> bool {
        match self.acks.get_mut(&seq) {
            Some(wait) => {
                wait.remaining.remove(&wid);
                if let Some(e) = error {
                    wait.errors.push((wid, e.clone()));
                }
                true
            }
            None => false,
        }
    }

    /// When worker `wid` was first asked for an acknowledgement it still owes.
    pub fn owed_since(&self, wid: u32) -> Option<Instant> {
        self.acks
            .values()
            .filter(|a| a.remaining.contains(&wid))
            .map(|a| a.sent)
            .min()
    }

    /// A lost worker owes nothing any more.
    pub fn forget(&mut self, wid: u32) {
        for wait in self.acks.values_mut() {
            wait.remaining.remove(&wid);
        }
    }

    /// The changed dynamic attributes of record `i`, read from `m` (all, or only
    /// those in `only`). A changed value is copied once: into a memory file when
    /// large and the transport passes descriptors, else into a buffer.
    pub fn changes(
        &mut self,
        i: usize,
        m: &dyn ErasedModule,
        only: Option<&[&str]>,
        bulk: Bulk,
    ) -> Result<Vec<Change>, PoolError> {
        let rec = &self.modules[i];
        let mut out = Vec::new();
        for &name in m.attribute_names() {
            if only.is_some_and(|list| !list.contains(&name)) {
                continue;
            }
            let bytes = m.get_attribute(name).map_err(|e| codec(&rec.key, e))?;
            let hash = xxhash_rust::xxh3::xxh3_64(&bytes);
            if rec.sent.get(name).map(|(old, _)| *old) == Some(hash) {
                continue;
            }
            let large = bytes.len() >= SHARED_MIN;
            let (held, route) = match bulk {
                Bulk::MemoryFiles if large => {
                    let reuse = self.spare.remove(&(rec.key.clone(), name));
                    let file = SharedFile::write(&bytes, reuse)
                        .map_err(|e| PoolError::io(format!("sharing {}.{name}", rec.key), e))?;
                    (Held::File(Arc::new(file)), Route::File)
                }
                _ => (Held::Bytes(Arc::new(bytes.into_owned())), Route::Inline),
            };
            out.push(Change {
                name,
                hash,
                held,
                route,
            });
        }
        if let Some(list) = only {
            let declared = m.attribute_names();
            if let Some(name) = list.iter().find(|n| !declared.contains(n)) {
                return Err(codec(
                    &rec.key,
                    format!(
                        "no dynamic attribute '{name}' (dynamic: {})",
                        declared.join(", ")
                    ),
                ));
            }
        }
        Ok(out)
    }

    /// Records values every live worker has acknowledged.
    pub fn commit(&mut self, i: usize, changes: Vec<Change>) {
        let rec = &mut self.modules[i];
        for c in changes {
            if let Some((_, Held::File(file))) = rec.sent.insert(c.name, (c.hash, c.held)) {
                // No worker needs the old value any more: keep its pages (mapped,
                // in memory) for the next value of this attribute.
                if let Ok(file) = Arc::try_unwrap(file) {
                    self.spare.insert((rec.key.clone(), c.name), file);
                }
            }
        }
    }
}

/// The frame that sends `changes` (all of one route) of module `key`.
pub(super) fn change_frame(
    seq: u64,
    key: &str,
    changes: &[Change],
) -> Result<Vec<Chunk>, PoolError> {
    match changes.first() {
        Some(Change {
            name,
            held: Held::File(file),
            ..
        }) => Ok(vec![shared_frame(seq, key, name, file)?]),
        _ => {
            let values: Vec<(&str, &Arc<Vec<u8>>)> = changes
                .iter()
                .filter_map(|c| match &c.held {
                    Held::Bytes(b) => Some((c.name, b)),
                    Held::File(_) => None,
                })
                .collect();
            attribute_frame(seq, key, &values)
        }
    }
}

/// Bytes the frame of `changes` moves to one worker, values sent outside the
/// stream included.
pub(super) fn frame_bytes(frame: &[Chunk], changes: &[Change]) -> usize {
    let stream: usize = frame.iter().map(|c| c.bytes().len()).sum();
    let outside: usize = changes
        .iter()
        .filter(|c| c.route != Route::Inline)
        .map(|c| match &c.held {
            Held::File(file) => file.len(),
            Held::Bytes(b) => b.len(),
        })
        .sum();
    stream + outside
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

/// A `SetAttributesShared` frame for the value in `file`, which travels with it.
fn shared_frame(
    seq: u64,
    key: &str,
    name: &str,
    file: &Arc<SharedFile>,
) -> Result<Chunk, PoolError> {
    let msg = ToWorker::SetAttributesShared {
        seq,
        key: key.to_string(),
        attributes: vec![(name.to_string(), file.len() as u64)],
    };
    Ok(Chunk::SharedFd(Arc::new(encode_frame(&msg)?), file.clone()))
}
