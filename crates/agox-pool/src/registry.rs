//! The registry: module types and functions by name.
//!
//! Rust cannot ship closures between processes, so the coordinator and its workers
//! run the same program and agree on *names*: a task names its function, an added
//! module names its type. Both sides build the same registry at start-up; the
//! handshake compares fingerprints so two different registries never talk.

use crate::module::{try_lock_typed, ErasedModule, Link, Module, ModuleStore};
use agox_wire::FailureKind;
use parking_lot::MappedMutexGuard;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::marker::PhantomData;

/// The error type a pooled function returns: anything that converts into a boxed
/// error (so `?` works on most errors, and `"text".into()` makes one).
pub type TaskError = Box<dyn Error + Send + Sync>;

type Constructor = fn(&[u8]) -> Result<Box<dyn ErasedModule>, rmp_serde::decode::Error>;
type Erased =
    Box<dyn Fn(&TaskContext<'_>, &[u8]) -> Result<Vec<u8>, (FailureKind, String)> + Send + Sync>;

struct FnEntry {
    call: Erased,
    signature: String,
}

/// Module types and functions known by name. Build it once at start-up, identically
/// in every process that takes part in a pool, then hand it to
/// [`Pool::start`](crate::Pool::start).
#[derive(Default)]
pub struct Registry {
    modules: BTreeMap<&'static str, Constructor>,
    functions: BTreeMap<String, FnEntry>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("modules", &self.modules.keys().collect::<Vec<_>>())
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn construct<M: Module>(state: &[u8]) -> Result<Box<dyn ErasedModule>, rmp_serde::decode::Error> {
    let m: M = rmp_serde::from_slice(state)?;
    Ok(Box::new(m))
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers module type `M` under [`Module::TYPE_NAME`].
    pub fn module<M: Module>(&mut self) -> &mut Self {
        self.modules.insert(M::TYPE_NAME, construct::<M>);
        self
    }

    /// Registers `f` under `name` and returns its typed handle. `f` receives the
    /// task's context (modules, seed) and its decoded arguments.
    ///
    /// Registering a second function under the same name replaces the first.
    pub fn function<A, O, E, F>(&mut self, name: &str, f: F) -> FnHandle<A, O>
    where
        A: Serialize + DeserializeOwned + 'static,
        O: Serialize + DeserializeOwned + 'static,
        E: Into<TaskError>,
        F: Fn(&TaskContext<'_>, A) -> Result<O, E> + Send + Sync + 'static,
    {
        let call: Erased = Box::new(move |ctx, bytes| {
            let args: A = rmp_serde::from_slice(bytes).map_err(|e| {
                (
                    FailureKind::BadArguments,
                    format!("cannot decode arguments: {e}"),
                )
            })?;
            let out = f(ctx, args).map_err(|e| (FailureKind::Error, error_chain(&*e.into())))?;
            rmp_serde::to_vec(&out)
                .map_err(|e| (FailureKind::Error, format!("cannot encode output: {e}")))
        });
        let signature = format!(
            "{}({})->{}",
            name,
            std::any::type_name::<A>(),
            std::any::type_name::<O>()
        );
        self.functions
            .insert(name.to_string(), FnEntry { call, signature });
        FnHandle::new(name)
    }

    /// True if a function of that name is registered.
    pub fn has_function(&self, name: &str) -> bool {
        self.functions.contains_key(name)
    }

    /// True if a module type of that name is registered.
    pub fn has_module(&self, type_name: &str) -> bool {
        self.modules.contains_key(type_name)
    }

    /// A hash of every registered module type name and function signature. Two
    /// processes with equal fingerprints resolve every name to the same code.
    pub fn fingerprint(&self) -> u64 {
        let mut text = String::new();
        for m in self.modules.keys() {
            text.push_str("module:");
            text.push_str(m);
            text.push('\n');
        }
        for f in self.functions.values() {
            text.push_str("fn:");
            text.push_str(&f.signature);
            text.push('\n');
        }
        xxhash_rust::xxh3::xxh3_64(text.as_bytes())
    }

    pub(crate) fn construct(
        &self,
        type_name: &str,
        state: &[u8],
    ) -> Result<Box<dyn ErasedModule>, String> {
        let ctor = self.modules.get(type_name).ok_or_else(|| {
            format!(
                "module type '{type_name}' is not registered (registered: {})",
                self.modules.keys().copied().collect::<Vec<_>>().join(", ")
            )
        })?;
        ctor(state).map_err(|e| format!("cannot decode module of type '{type_name}': {e}"))
    }

    /// Runs function `name` in this process. Used by workers, and by the
    /// coordinator for in-process (zero-worker) pools.
    pub(crate) fn call(
        &self,
        name: &str,
        ctx: &TaskContext<'_>,
        args: &[u8],
    ) -> Result<Vec<u8>, (FailureKind, String)> {
        let entry = self.functions.get(name).ok_or_else(|| {
            (
                FailureKind::UnknownFunction,
                format!("function '{name}' is not registered"),
            )
        })?;
        (entry.call)(ctx, args)
    }
}

/// "outer: inner: innermost", the way `anyhow` prints a chain.
fn error_chain(e: &(dyn Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// A typed name of a registered function: call sites are type-checked, the name
/// is what crosses the wire.
pub struct FnHandle<A, O> {
    name: String,
    _t: PhantomData<fn(A) -> O>,
}

impl<A, O> FnHandle<A, O> {
    /// The handle of a function registered elsewhere under `name`. The types must
    /// match the registration; a mismatch shows up as a decode error of the task.
    pub fn new(name: impl Into<String>) -> Self {
        FnHandle {
            name: name.into(),
            _t: PhantomData,
        }
    }

    /// The registered name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<A, O> Clone for FnHandle<A, O> {
    fn clone(&self) -> Self {
        FnHandle::new(self.name.clone())
    }
}

impl<A, O> fmt::Debug for FnHandle<A, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FnHandle({})", self.name)
    }
}

/// What a running task can see: the modules of the process running it, its seed,
/// and which worker it is on.
pub struct TaskContext<'a> {
    pub(crate) store: &'a ModuleStore,
    pub(crate) seed: u64,
    pub(crate) worker: Option<u32>,
}

impl<'a> TaskContext<'a> {
    /// Locks the local copy of the linked module: on a worker, the worker's copy.
    /// Fails if no such module was added, if its type differs, or if this task
    /// already holds it.
    pub fn module<M: Module>(&self, link: &Link<M>) -> Result<MappedMutexGuard<'a, M>, TaskError> {
        let slot = self.store.slot(link.key()).ok_or_else(|| {
            format!(
                "no module '{}' in this process (have: {})",
                link.key(),
                self.store.keys().join(", ")
            )
        })?;
        try_lock_typed::<M>(slot).map_err(|why| {
            format!(
                "module '{}' cannot be used as {}: {why}",
                link.key(),
                M::TYPE_NAME
            )
            .into()
        })
    }

    /// The task's seed: a function of (pool seed, call number, task index) only,
    /// never of the worker, so results do not depend on who ran the task.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A ChaCha8 generator seeded with [`seed`](Self::seed).
    pub fn rng(&self) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed)
    }

    /// The worker running the task, or `None` when it runs in the driver's process.
    pub fn worker_id(&self) -> Option<u32> {
        self.worker
    }
}

/// The seed of task `index` of call `call` in a pool seeded with `pool_seed`.
pub fn task_seed(pool_seed: u64, call: u64, index: u64) -> u64 {
    let mut bytes = [0u8; 24];
    bytes[..8].copy_from_slice(&pool_seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&call.to_le_bytes());
    bytes[16..].copy_from_slice(&index.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes)
}
