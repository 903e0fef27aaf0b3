//! Modules: the stateful objects every worker holds a copy of, their dynamic
//! attributes, and the typed handles that name them.

use parking_lot::{MappedMutexGuard, Mutex, MutexGuard};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::any::Any;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// Why an attribute could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributeError {
    /// The module has no dynamic attribute of that name.
    #[error("module type {type_name} has no dynamic attribute '{name}' (dynamic: {known})")]
    Unknown {
        /// The module's registered type name.
        type_name: &'static str,
        /// The requested name.
        name: String,
        /// The attributes it does declare.
        known: String,
    },
    /// The value could not be encoded or decoded.
    #[error("attribute '{name}': {message}")]
    Codec {
        /// The attribute.
        name: String,
        /// What went wrong.
        message: String,
    },
}

/// A stateful object held by every worker (a model, a generator, a counter).
///
/// The whole module is shipped once, when it is added to a pool. Afterwards only
/// its **dynamic attributes** travel: the fields named with
/// [`dynamic_attributes!`](crate::dynamic_attributes), pushed to the workers by
/// [`Pool::synchronize`](crate::Pool::synchronize) when their value changed.
/// Other fields are never synchronized: a worker keeps the value it was given at
/// `add` time (or whatever its own tasks made of it).
pub trait Module: Serialize + DeserializeOwned + Send + 'static {
    /// The name the type is registered under; it crosses the wire, so it must be
    /// the same in the coordinator and in every worker.
    const TYPE_NAME: &'static str;

    /// Names of the dynamic attributes, in a fixed order.
    fn dynamic_attribute_names() -> &'static [&'static str]
    where
        Self: Sized,
    {
        &[]
    }

    /// Encodes one dynamic attribute; raw-encoded values are borrowed, not copied.
    fn get_attribute(&self, name: &str) -> Result<Cow<'_, [u8]>, AttributeError> {
        Err(AttributeError::Unknown {
            type_name: Self::TYPE_NAME,
            name: name.to_string(),
            known: String::new(),
        })
    }

    /// Overwrites one dynamic attribute from its encoding.
    fn set_attribute(&mut self, name: &str, bytes: &[u8]) -> Result<(), AttributeError> {
        let _ = bytes;
        Err(AttributeError::Unknown {
            type_name: Self::TYPE_NAME,
            name: name.to_string(),
            known: String::new(),
        })
    }

    /// A self-synchronizing module is skipped by the end-of-iteration
    /// [`Pool::synchronize`](crate::Pool::synchronize); it pushes its attributes itself
    /// with [`Pool::synchronize_module`](crate::Pool::synchronize_module) when it
    /// knows they changed.
    fn self_synchronizing(&self) -> bool {
        false
    }
}

/// Declares a module's dynamic attributes inside its `impl Module` block.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize)]
/// struct Model { weights: Vec<f64>, steps: u64, bias: f64 }
/// impl agox_pool::Module for Model {
///     const TYPE_NAME: &'static str = "Model";
///     agox_pool::dynamic_attributes!(weights, steps);
/// }
/// ```
///
/// Each name must be a field of the struct, so a misspelt attribute is a compile
/// error. `Vec<f64>`, `Vec<f32>` and `Vec<[f64; 3]>` fields travel as raw
/// little-endian bytes (one memory copy each way); any other `Serialize` type
/// travels as MessagePack.
#[macro_export]
macro_rules! dynamic_attributes {
    ($($field:ident),* $(,)?) => {
        fn dynamic_attribute_names() -> &'static [&'static str] {
            &[$(stringify!($field)),*]
        }

        fn get_attribute(&self, name: &str)
            -> ::std::result::Result<::std::borrow::Cow<'_, [u8]>, $crate::AttributeError>
        {
            #[allow(unused_imports)]
            use $crate::__codec::{RawEncode as _, SerdeEncode as _};
            match name {
                $(stringify!($field) => (&$crate::__codec::Enc(&self.$field)).agox_encode(name),)*
                _ => ::std::result::Result::Err($crate::AttributeError::Unknown {
                    type_name: <Self as $crate::Module>::TYPE_NAME,
                    name: name.to_string(),
                    known: [$(stringify!($field)),*].join(", "),
                }),
            }
        }

        fn set_attribute(&mut self, name: &str, bytes: &[u8])
            -> ::std::result::Result<(), $crate::AttributeError>
        {
            #[allow(unused_imports)]
            use $crate::__codec::{RawDecode as _, SerdeDecode as _};
            match name {
                $(stringify!($field) =>
                    (&mut $crate::__codec::Dec(&mut self.$field)).agox_decode(name, bytes),)*
                _ => ::std::result::Result::Err($crate::AttributeError::Unknown {
                    type_name: <Self as $crate::Module>::TYPE_NAME,
                    name: name.to_string(),
                    known: [$(stringify!($field)),*].join(", "),
                }),
            }
        }
    };
}

/// Attribute codecs chosen at compile time by the field's type (autoref
/// specialization): raw bytes for flat float vectors, MessagePack otherwise.
#[doc(hidden)]
pub mod __codec {
    use super::AttributeError;
    use serde::{de::DeserializeOwned, Serialize};
    use std::borrow::Cow;

    pub struct Enc<'a, T>(pub &'a T);
    pub struct Dec<'a, T>(pub &'a mut T);

    fn codec_err(name: &str, e: impl std::fmt::Display) -> AttributeError {
        AttributeError::Codec {
            name: name.to_string(),
            message: e.to_string(),
        }
    }

    pub trait RawEncode<'a> {
        fn agox_encode(&self, name: &str) -> Result<Cow<'a, [u8]>, AttributeError>;
    }
    pub trait SerdeEncode<'a> {
        fn agox_encode(&self, name: &str) -> Result<Cow<'a, [u8]>, AttributeError>;
    }
    pub trait RawDecode {
        fn agox_decode(&mut self, name: &str, bytes: &[u8]) -> Result<(), AttributeError>;
    }
    pub trait SerdeDecode {
        fn agox_decode(&mut self, name: &str, bytes: &[u8]) -> Result<(), AttributeError>;
    }

    impl<'a, T: Serialize> SerdeEncode<'a> for &Enc<'a, T> {
        fn agox_encode(&self, name: &str) -> Result<Cow<'a, [u8]>, AttributeError> {
            rmp_serde::to_vec(self.0)
                .map(Cow::Owned)
                .map_err(|e| codec_err(name, e))
        }
    }
    impl<T: DeserializeOwned> SerdeDecode for &mut Dec<'_, T> {
        fn agox_decode(&mut self, name: &str, bytes: &[u8]) -> Result<(), AttributeError> {
            *self.0 = rmp_serde::from_slice(bytes).map_err(|e| codec_err(name, e))?;
            Ok(())
        }
    }

    macro_rules! raw_vec {
        ($elem:ty, $scalar:ty) => {
            impl<'a> RawEncode<'a> for Enc<'a, Vec<$elem>> {
                fn agox_encode(&self, _name: &str) -> Result<Cow<'a, [u8]>, AttributeError> {
                    let flat: &'a [$scalar] = bytemuck::cast_slice(self.0.as_slice());
                    if cfg!(target_endian = "little") {
                        // Little-endian in memory already: no copy at all.
                        return Ok(Cow::Borrowed(bytemuck::cast_slice::<$scalar, u8>(flat)));
                    }
                    let mut out = Vec::with_capacity(std::mem::size_of_val(flat));
                    for x in flat {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                    Ok(Cow::Owned(out))
                }
            }
            impl RawDecode for Dec<'_, Vec<$elem>> {
                fn agox_decode(&mut self, name: &str, bytes: &[u8]) -> Result<(), AttributeError> {
                    let size = std::mem::size_of::<$elem>();
                    if bytes.len() % size != 0 {
                        return Err(codec_err(
                            name,
                            format!(
                                "{} bytes is not a whole number of {}-byte elements",
                                bytes.len(),
                                size
                            ),
                        ));
                    }
                    let v = &mut *self.0;
                    let n = bytes.len() / size;
                    v.clear();
                    v.reserve_exact(n);
                    if cfg!(target_endian = "little") {
                        // SAFETY: the element type is plain old data (any bit pattern
                        // is a valid value), the capacity holds `n` elements, and the
                        // `n * size` bytes copied initialise exactly those elements.
                        // One copy, without first zeroing the memory as `resize` would.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                bytes.as_ptr(),
                                v.as_mut_ptr().cast::<u8>(),
                                n * size,
                            );
                            v.set_len(n);
                        }
                        return Ok(());
                    }
                    v.resize(n, <$elem>::default());
                    let flat: &mut [$scalar] = bytemuck::cast_slice_mut(v.as_mut_slice());
                    const W: usize = std::mem::size_of::<$scalar>();
                    for (x, c) in flat.iter_mut().zip(bytes.chunks_exact(W)) {
                        let mut b = [0u8; W];
                        b.copy_from_slice(c);
                        *x = <$scalar>::from_le_bytes(b);
                    }
                    Ok(())
                }
            }
        };
    }
    raw_vec!(f64, f64);
    raw_vec!(f32, f32);
    raw_vec!([f64; 3], f64);
}

/// Object-safe view of a [`Module`], as stored by pools and workers.
pub trait ErasedModule: Send {
    /// The registered type name.
    fn type_name(&self) -> &'static str;
    /// The dynamic attribute names.
    fn attribute_names(&self) -> &'static [&'static str];
    /// See [`Module::get_attribute`].
    fn get_attribute(&self, name: &str) -> Result<Cow<'_, [u8]>, AttributeError>;
    /// See [`Module::set_attribute`].
    fn set_attribute(&mut self, name: &str, bytes: &[u8]) -> Result<(), AttributeError>;
    /// See [`Module::self_synchronizing`].
    fn self_synchronizing(&self) -> bool;
    /// The whole module, MessagePack-encoded (what `add` ships to workers).
    fn encode_state(&self) -> Result<Vec<u8>, rmp_serde::encode::Error>;
    /// For typed access.
    fn as_any(&self) -> &dyn Any;
    /// For typed access.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<M: Module> ErasedModule for M {
    fn type_name(&self) -> &'static str {
        M::TYPE_NAME
    }
    fn attribute_names(&self) -> &'static [&'static str] {
        M::dynamic_attribute_names()
    }
    fn get_attribute(&self, name: &str) -> Result<Cow<'_, [u8]>, AttributeError> {
        Module::get_attribute(self, name)
    }
    fn set_attribute(&mut self, name: &str, bytes: &[u8]) -> Result<(), AttributeError> {
        Module::set_attribute(self, name, bytes)
    }
    fn self_synchronizing(&self) -> bool {
        Module::self_synchronizing(self)
    }
    fn encode_state(&self) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        rmp_serde::to_vec_named(self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A shared, lockable slot holding one module.
pub(crate) type Slot = Arc<Mutex<Box<dyn ErasedModule>>>;

/// The modules of one process (the driver's copies, or one worker's), by key.
#[derive(Default)]
pub struct ModuleStore {
    slots: HashMap<String, Slot>,
}

impl fmt::Debug for ModuleStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleStore")
            .field("keys", &self.slots.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ModuleStore {
    pub(crate) fn insert(&mut self, key: &str, module: Box<dyn ErasedModule>) -> Slot {
        let slot: Slot = Arc::new(Mutex::new(module));
        self.insert_slot(key, slot.clone());
        slot
    }

    /// Keeps `slot` under `key` (replacing what was there).
    pub(crate) fn insert_slot(&mut self, key: &str, slot: Slot) {
        self.slots.insert(key.to_string(), slot);
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<Slot> {
        self.slots.remove(key)
    }

    pub(crate) fn slot(&self, key: &str) -> Option<&Slot> {
        self.slots.get(key)
    }

    /// Keys of the modules held, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.slots.keys().cloned().collect();
        k.sort();
        k
    }
}

/// The serializable name of a pooled module of type `M`: what a module stores to
/// refer to another one (an acquisitor holding its model), and what task arguments
/// carry. It resolves, through [`TaskContext::module`](crate::TaskContext::module),
/// to the copy held by whichever process runs the code: on a worker, the worker's
/// own copy, with the attributes most recently synchronized.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct Link<M> {
    key: String,
    #[serde(skip)]
    _m: PhantomData<fn() -> M>,
}

impl<M> Link<M> {
    /// A link to the module added under `key`.
    pub fn new(key: impl Into<String>) -> Self {
        Link {
            key: key.into(),
            _m: PhantomData,
        }
    }
    /// The pool key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl<M> Clone for Link<M> {
    fn clone(&self) -> Self {
        Link::new(self.key.clone())
    }
}

impl<M> fmt::Debug for Link<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Link({})", self.key)
    }
}

impl<M> PartialEq for Link<M> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

/// The driver's own copy of a pooled module, returned by
/// [`Pool::add_module`](crate::Pool::add_module). Lock it to read or change the
/// module; changes to dynamic attributes reach the workers at the next
/// synchronization.
pub struct Handle<M> {
    link: Link<M>,
    slot: Slot,
}

impl<M> Clone for Handle<M> {
    fn clone(&self) -> Self {
        Handle {
            link: self.link.clone(),
            slot: self.slot.clone(),
        }
    }
}

impl<M> fmt::Debug for Handle<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({})", self.link.key)
    }
}

impl<M: Module> Handle<M> {
    pub(crate) fn new(key: &str, slot: Slot) -> Self {
        Handle {
            link: Link::new(key),
            slot,
        }
    }

    /// The module's pool key.
    pub fn key(&self) -> &str {
        &self.link.key
    }

    /// A serializable link to this module, for task arguments and other modules.
    pub fn link(&self) -> Link<M> {
        self.link.clone()
    }

    /// Locks the driver's copy. Do not hold the guard across a pool call that runs
    /// tasks in process or synchronizes this module: that call needs the lock too.
    pub fn lock(&self) -> MappedMutexGuard<'_, M> {
        MutexGuard::map(self.slot.lock(), |m| {
            match m.as_any_mut().downcast_mut::<M>() {
                Some(m) => m,
                // A handle is only built for the type that was stored in its slot.
                None => unreachable!("module handle type mismatch"),
            }
        })
    }
}

/// Locks `slot` as type `M` without blocking. `None` if the type differs; `Err`
/// if another borrow holds it (in-process) — both are caller errors worth naming.
pub(crate) fn try_lock_typed<M: Module>(
    slot: &Slot,
) -> Result<MappedMutexGuard<'_, M>, &'static str> {
    let guard = slot.try_lock().ok_or("it is already borrowed")?;
    MutexGuard::try_map(guard, |m| m.as_any_mut().downcast_mut::<M>())
        .map_err(|_| "it has another type")
}
