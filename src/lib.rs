//! agox-rs facade: re-exports the workspace crates.
pub use agox_atoms as atoms;
pub use agox_pool as pool;
pub use agox_search as search;
pub use agox_wire as wire;
