//! The public face of the pool.

use crate::config::PoolConfig;
use crate::core::Core;
use crate::error::PoolError;
use crate::module::{Handle, Module};
use crate::registry::{FnHandle, Registry};
use crate::stats::{PoolStats, SyncReport};
use parking_lot::Mutex;
use serde::{de::DeserializeOwned, Serialize};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// A pool of stateful worker processes.
///
/// Cloning a `Pool` gives another handle to the same workers (a module may keep
/// one to run its own parallel work, as AGOX's `RayPoolUser` does). The workers
/// stop when the last handle is dropped.
///
/// Calls take `&self`; one call runs at a time (others wait for it).
#[derive(Clone)]
pub struct Pool {
    core: Arc<Mutex<Core>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let core = self.core.lock();
        f.debug_struct("Pool")
            .field("workers", &core.size())
            .field("seed", &core.seed())
            .finish()
    }
}

/// A submitted task whose result has not been collected yet.
#[must_use = "collect the result with Pool::get"]
pub struct Pending<O> {
    id: u64,
    function: String,
    _o: PhantomData<fn() -> O>,
}

impl<O> std::fmt::Debug for Pending<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pending({} #{})", self.function, self.id)
    }
}

fn encode_args<A: Serialize>(function: &str, a: &A) -> Result<Vec<u8>, PoolError> {
    rmp_serde::to_vec(a).map_err(|e| PoolError::Codec {
        what: format!("arguments of '{function}'"),
        message: e.to_string(),
    })
}

fn decode_output<O: DeserializeOwned>(function: &str, bytes: &[u8]) -> Result<O, PoolError> {
    rmp_serde::from_slice(bytes).map_err(|e| PoolError::Codec {
        what: format!("output of '{function}'"),
        message: e.to_string(),
    })
}

/// A finished task's output, decoded.
fn take_output<O: DeserializeOwned>(
    core: &mut Core,
    id: u64,
    function: &str,
) -> Result<O, PoolError> {
    core.take_result(id)
        .and_then(|bytes| decode_output(function, &bytes))
}

impl Pool {
    /// Starts a pool: forks (or executes) `config.workers` workers and waits until
    /// every one has shaken hands. With `workers == 0` every task runs in the
    /// calling process, with the same seeds, which is the reference for
    /// reproducibility.
    pub fn start(registry: Registry, config: PoolConfig) -> Result<Pool, PoolError> {
        let core = Core::start(Arc::new(registry), config)?;
        Ok(Pool {
            core: Arc::new(Mutex::new(core)),
        })
    }

    /// A pool of `workers` workers with the other settings at their defaults.
    pub fn with_workers(registry: Registry, workers: usize) -> Result<Pool, PoolError> {
        Pool::start(registry, PoolConfig::with_workers(workers))
    }

    /// Number of worker processes (0 for an in-process pool).
    pub fn size(&self) -> usize {
        self.core.lock().size()
    }

    /// The pool's seed.
    pub fn seed(&self) -> u64 {
        self.core.lock().seed()
    }

    /// Where workers connect (`None` for an in-process pool). Exposed for
    /// launchers that start workers themselves, and for tests.
    pub fn address(&self) -> Option<String> {
        self.core.lock().address()
    }

    /// Process ids of the current workers, by slot.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.core.lock().worker_pids()
    }

    /// Changes the task timeout for calls made from now on.
    pub fn set_task_timeout(&self, timeout: Option<Duration>) {
        self.core.lock().set_task_timeout(timeout);
    }

    /// Reasons of every refused handshake so far.
    pub fn refusals(&self) -> Vec<String> {
        self.core.lock().refusals()
    }

    /// Adds `module` under `key`: every worker gets its own copy and keeps it between
    /// calls. Returns the driver's copy. Replaces a module already under `key`.
    pub fn add_module<M: Module>(&self, key: &str, module: M) -> Result<Handle<M>, PoolError> {
        let slot = self.core.lock().add_module(key, Box::new(module))?;
        Ok(Handle::new(key, slot))
    }

    /// Removes module `key` from the driver and every worker.
    pub fn remove_module(&self, key: &str) -> Result<(), PoolError> {
        self.core.lock().remove_module(key)
    }

    /// The driver's copy of module `key`, if it exists and has type `M`.
    pub fn module<M: Module>(&self, key: &str) -> Option<Handle<M>> {
        let slot = self.core.lock().slot(key)?;
        let is_m = slot.lock().as_any().is::<M>();
        is_m.then(|| Handle::new(key, slot))
    }

    /// Submits one call and returns at once; collect it with [`get`](Self::get).
    /// The task's seed is that of task 0 of a new call.
    pub fn submit<A: Serialize, O: DeserializeOwned>(
        &self,
        f: &FnHandle<A, O>,
        args: &A,
    ) -> Result<Pending<O>, PoolError> {
        let bytes = encode_args(f.name(), args)?;
        let ids = self.core.lock().submit_call(f.name(), vec![bytes], None);
        Ok(Pending {
            id: ids[0],
            function: f.name().to_string(),
            _o: PhantomData,
        })
    }

    /// Submits one call of `f` per argument and returns at once; collect each with
    /// [`get`](Self::get). Like [`map`](Self::map), task `k` gets the seed of index
    /// `k` of one new call.
    pub fn submit_all<A: Serialize, O: DeserializeOwned>(
        &self,
        f: &FnHandle<A, O>,
        args: impl IntoIterator<Item = A>,
    ) -> Result<Vec<Pending<O>>, PoolError> {
        let ids = self.submit_many(f.name(), args, None)?;
        Ok(ids
            .into_iter()
            .map(|id| Pending {
                id,
                function: f.name().to_string(),
                _o: PhantomData,
            })
            .collect())
    }

    /// Waits for a submitted task and returns its output.
    pub fn get<O: DeserializeOwned>(&self, pending: Pending<O>) -> Result<O, PoolError> {
        let mut core = self.core.lock();
        core.drive(|c| c.is_finished(pending.id))?;
        take_output(&mut core, pending.id, &pending.function)
    }

    /// True once a submitted task has finished (without waiting).
    pub fn is_ready<O>(&self, pending: &Pending<O>) -> bool {
        self.core.lock().is_finished(pending.id)
    }

    fn submit_many<A: Serialize>(
        &self,
        f: &str,
        args: impl IntoIterator<Item = A>,
        pin: Option<Vec<u32>>,
    ) -> Result<Vec<u64>, PoolError> {
        let encoded: Vec<Vec<u8>> = args
            .into_iter()
            .map(|a| encode_args(f, &a))
            .collect::<Result<_, _>>()?;
        Ok(self.core.lock().submit_call(f, encoded, pin))
    }

    fn collect<O: DeserializeOwned>(
        &self,
        f: &str,
        ids: &[u64],
    ) -> Result<Vec<Result<O, PoolError>>, PoolError> {
        let mut core = self.core.lock();
        // Results arrive roughly in order: remember how far all are finished, so
        // each check is amortised O(1) instead of a scan of the whole call.
        let mut done = 0;
        core.drive(|c| {
            while done < ids.len() && c.is_finished(ids[done]) {
                done += 1;
            }
            done == ids.len()
        })?;
        Ok(ids
            .iter()
            .map(|id| take_output(&mut core, *id, f))
            .collect())
    }

    /// Runs `f` on every argument in parallel and returns the outputs **in input
    /// order**. Fails with the first failed task's error (after all have finished).
    pub fn map<A: Serialize, O: DeserializeOwned>(
        &self,
        f: &FnHandle<A, O>,
        args: impl IntoIterator<Item = A>,
    ) -> Result<Vec<O>, PoolError> {
        self.map_results(f, args)?.into_iter().collect()
    }

    /// Like [`map`](Self::map), but every task's own result, in input order.
    pub fn map_results<A: Serialize, O: DeserializeOwned>(
        &self,
        f: &FnHandle<A, O>,
        args: impl IntoIterator<Item = A>,
    ) -> Result<Vec<Result<O, PoolError>>, PoolError> {
        let ids = self.submit_many(f.name(), args, None)?;
        self.collect(f.name(), &ids)
    }

    /// Runs `f` on every argument in parallel and yields `(input index, result)` in
    /// **completion order**.
    pub fn map_unordered<A: Serialize, O: DeserializeOwned>(
        &self,
        f: &FnHandle<A, O>,
        args: impl IntoIterator<Item = A>,
    ) -> Result<Unordered<'_, O>, PoolError> {
        let ids = self.submit_many(f.name(), args, None)?;
        Ok(Unordered {
            pool: self,
            function: f.name().to_string(),
            pending: ids.into_iter().enumerate().collect(),
            _o: PhantomData,
        })
    }

    /// Runs `f(args)` once on every worker (to read or set per-worker state) and
    /// returns the outputs by worker slot. In an in-process pool it runs once, here.
    pub fn broadcast<A: Serialize + Clone, O: DeserializeOwned>(
        &self,
        f: &FnHandle<A, O>,
        args: &A,
    ) -> Result<Vec<O>, PoolError> {
        let n = self.size();
        if n == 0 {
            return self.map(f, [args.clone()]);
        }
        let ids = self.submit_many(
            f.name(),
            vec![args.clone(); n],
            Some((0..n as u32).collect()),
        )?;
        self.collect(f.name(), &ids)?.into_iter().collect()
    }

    /// Runs `f(args)` on worker `worker` only.
    pub fn run_on<A: Serialize, O: DeserializeOwned>(
        &self,
        worker: u32,
        f: &FnHandle<A, O>,
        args: &A,
    ) -> Result<O, PoolError> {
        let n = self.size();
        if n == 0 {
            let ids = self.submit_many(f.name(), [args], None)?;
            let mut v = self.collect::<O>(f.name(), &ids)?;
            return v.pop().ok_or(PoolError::Config("no result".into()))?;
        }
        if worker as usize >= n {
            return Err(PoolError::NoSuchWorker { worker, size: n });
        }
        let ids = self.submit_many(f.name(), [args], Some(vec![worker]))?;
        let mut v = self.collect::<O>(f.name(), &ids)?;
        v.pop().ok_or(PoolError::Config("no result".into()))?
    }

    /// End-of-iteration synchronization: for every module that is not
    /// self-synchronizing, pushes each dynamic attribute whose value changed since
    /// the workers last received it — only those — to every worker, and waits until
    /// all have applied them.
    pub fn synchronize(&self) -> Result<SyncReport, PoolError> {
        self.core.lock().synchronize(None, None)
    }

    /// Pushes the changed attributes of one module (all its dynamic attributes, or
    /// just `attributes`), whether or not it is self-synchronizing. Locks the
    /// driver's copy: from inside the module's own code use
    /// [`synchronize_from`](Self::synchronize_from).
    pub fn synchronize_module(
        &self,
        key: &str,
        attributes: Option<&[&str]>,
    ) -> Result<SyncReport, PoolError> {
        self.core.lock().synchronize(Some((key, attributes)), None)
    }

    /// Like [`synchronize_module`](Self::synchronize_module), reading the values from
    /// `module` itself: what a module calls on itself (`pool_synchronize`) while the
    /// driver's copy is locked by the caller.
    pub fn synchronize_from<M: Module>(
        &self,
        key: &str,
        module: &M,
        attributes: Option<&[&str]>,
    ) -> Result<SyncReport, PoolError> {
        self.core
            .lock()
            .synchronize(Some((key, attributes)), Some(module))
    }

    /// Counters: per worker tasks, busy time, restarts; retries, timeouts, syncs.
    pub fn stats(&self) -> PoolStats {
        self.core.lock().stats()
    }

    /// Stops every worker now (also done when the last handle is dropped).
    pub fn shutdown(&self) {
        self.core.lock().shutdown();
    }
}

/// Results of [`Pool::map_unordered`] as they complete.
pub struct Unordered<'p, O> {
    pool: &'p Pool,
    function: String,
    pending: Vec<(usize, u64)>,
    _o: PhantomData<fn() -> O>,
}

impl<O: DeserializeOwned> Iterator for Unordered<'_, O> {
    type Item = (usize, Result<O, PoolError>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pending.is_empty() {
            return None;
        }
        let mut core = self.pool.core.lock();
        let pending = &self.pending;
        if let Err(e) = core.drive(|c| pending.iter().any(|(_, id)| c.is_finished(*id))) {
            let (index, _) = self.pending.remove(0);
            return Some((index, Err(e)));
        }
        let pos = self
            .pending
            .iter()
            .position(|(_, id)| core.is_finished(*id))?;
        let (index, id) = self.pending.remove(pos);
        Some((index, take_output(&mut core, id, &self.function)))
    }
}
