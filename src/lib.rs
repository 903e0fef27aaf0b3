#![doc = include_str!("../README.md")]

/// Structures, potentials, optimizers and extxyz (`agox-atoms`).
pub use agox_atoms as atoms;
/// External calculators over the i-PI socket protocol (`agox-ipi`).
pub use agox_ipi as ipi;
/// GOFEE's surrogate: Fingerprint, prior, Gaussian process, LCB, k-means (`agox-models`).
pub use agox_models as models;
/// The worker pool (`agox-pool`).
pub use agox_pool as pool;
/// AGOX's search on the pool (`agox-search`).
pub use agox_search as search;
/// The protocol between coordinator and workers (`agox-wire`).
pub use agox_wire as wire;
