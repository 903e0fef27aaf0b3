//! Behaviour of the worker pool through its public API, against real forked workers.

// Test helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

mod common;
mod faults;
mod lifecycle;
#[path = "../support/proc.rs"]
mod proc;
mod recovery;
mod scheduling;
mod state;
mod strangers;
