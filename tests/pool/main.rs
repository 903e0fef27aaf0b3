//! Behaviour of the worker pool through its public API, against real forked workers.

mod common;
mod faults;
mod lifecycle;
mod scheduling;
mod state;
