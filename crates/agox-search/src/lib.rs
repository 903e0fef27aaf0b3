//! AGOX's search on a pool of workers: candidates, the AGOX-schema database, the
//! script format, and (to come) generators, samplers, relaxation and the iteration loop.
//!
//! * [`candidate`]: a structure plus its provenance (iteration, generator, parents, ...).
//! * [`db`]: every evaluated structure in SQLite, in AGOX's own schema
//!   (`docs/database.md`), so AGOX's tools read our runs.
//! * [`script`]: the TOML script a user runs, parsed and validated before anything
//!   starts (`docs/script-reference.md`).

pub mod algorithm;
pub mod analysis;
pub mod calculator;
pub mod candidate;
pub mod db;
pub mod environment;
pub mod generators;
pub mod registry;
pub mod relax_model;
pub mod samplers;
pub mod script;
pub mod search;
pub mod socket;
pub mod surrogate;
pub mod tasks;

pub use candidate::{Candidate, CandidateMeta};
pub use db::{Database, DbError};
