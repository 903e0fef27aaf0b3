//! Module operations and synchronization on the event loop: add, remove, push
//! changed attributes — each a broadcast that waits for every worker's
//! acknowledgement (see `replica` for what is recorded and replayed).

use super::replica::{change_frame, frame_bytes, Change, Replica, Route};
use super::Core;
use crate::error::{PoolError, WorkerName};
use crate::events::LossCause;
use crate::module::{ErasedModule, Slot};
use crate::stats::SyncReport;
use crate::transport::{Bulk, Chunk};
use agox_wire::{encode_frame, ToWorker};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

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
        let live: Vec<(usize, u64)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(w, s)| s.link.map(|l| (w, l)))
            .collect();
        let remaining: HashSet<u32> = live.iter().map(|&(w, _)| self.slots[w].id).collect();
        let links: Vec<u64> = live.iter().map(|&(_, l)| l).collect();
        self.replica.acks.insert(
            seq,
            super::replica::AckWait {
                key: key.to_string(),
                remaining,
                errors: Vec::new(),
                frame: frame.clone(),
                sent: Instant::now(),
            },
        );
        if let Some(t) = self.transport.as_mut() {
            for (link, e) in t.broadcast(&links, &frame) {
                if let Some(w) = self.slot_of(link) {
                    self.worker_lost(w, LossCause::Io(e));
                }
            }
        }
        let driven = self.drive(|c| {
            c.replica
                .acks
                .get(&seq)
                .map(|a| a.remaining.is_empty())
                .unwrap_or(true)
        });
        let wait = self.replica.acks.remove(&seq);
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
        let slot: Slot = Arc::new(parking_lot::Mutex::new(module));
        let rec = Replica::record(key, &**slot.lock(), slot.clone())?;
        if !self.slots.is_empty() {
            let seq = self.replica.seq();
            let frame = vec![Chunk::Shared(Arc::new(Replica::add_frame(&rec, seq)?))];
            // The record changes once every worker has the module: a worker joining
            // meanwhile gets the old record and this broadcast.
            self.broadcast_and_wait(key, frame, seq)?;
        }
        self.driver.insert_slot(key, slot.clone());
        self.replica.insert(rec);
        Ok(slot)
    }

    pub fn remove_module(&mut self, key: &str) -> Result<(), PoolError> {
        self.check_broken()?;
        if !self.replica.has(key) {
            return Err(self.no_such_module(key));
        }
        let result = if self.slots.is_empty() {
            Ok(())
        } else {
            let seq = self.replica.seq();
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
        self.replica.remove(key);
        self.driver.remove(key);
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
            if !self.replica.has(key) {
                return Err(self.no_such_module(key));
            }
        }
        let n_live = self.slots.iter().filter(|s| s.link.is_some()).count();
        let bulk = match (&self.transport, n_live) {
            (Some(t), 1..) => t.bulk(),
            _ => Bulk::Inline,
        };
        for i in 0..self.replica.modules.len() {
            let rec = &self.replica.modules[i];
            let (key, slot) = (rec.key.clone(), rec.slot.clone());
            let changes: Vec<Change> = match only {
                Some((k, _)) if k != key => continue,
                Some((_, list)) => match source {
                    Some(m) => self.replica.changes(i, m, list, bulk)?,
                    None => self.replica.changes(i, &**slot.lock(), list, bulk)?,
                },
                None => {
                    let guard = slot.lock();
                    if guard.self_synchronizing() {
                        continue;
                    }
                    self.replica.changes(i, &**guard, None, bulk)?
                }
            };
            if changes.is_empty() {
                continue;
            }
            report.modules += 1;
            report.attributes += changes.len();
            report
                .names
                .extend(changes.iter().map(|c| format!("{key}.{}", c.name)));
            // Small values in one frame, each large one in its own.
            let (inline, large): (Vec<Change>, Vec<Change>) =
                changes.into_iter().partition(|c| c.route == Route::Inline);
            let mut groups = Vec::new();
            if !inline.is_empty() {
                groups.push(inline);
            }
            groups.extend(large.into_iter().map(|c| vec![c]));
            for group in groups {
                if n_live > 0 {
                    let seq = self.replica.seq();
                    let frame = change_frame(seq, &key, &group)?;
                    report.bytes += frame_bytes(&frame, &group) * n_live;
                    self.broadcast_and_wait(&key, frame, seq)?;
                }
                self.replica.commit(i, group);
            }
        }
        report.elapsed = t0.elapsed();
        self.sync_totals.add(&report);
        Ok(report)
    }
}
