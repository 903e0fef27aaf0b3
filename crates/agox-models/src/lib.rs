//! GOFEE's surrogate model, as AGOX 3.11.1 builds it.
#![forbid(unsafe_code)]

pub mod descriptor;
pub mod fingerprint;
pub mod gpr;
pub mod kernel;
pub mod kmeans;
pub mod lbfgsb;
pub mod model;
pub mod prior;
