//! The socket calculator against real clients: ASE's `SocketClient` serving ASE's
//! EMT and tblite's GFN2-xTB, and a client that misbehaves on purpose. Every test
//! checks through /proc that no client process outlives it.
//!
//! The Python environment comes from `.ci/python-env` (created on first use); if
//! it cannot be created, these tests fail and say why.

#![allow(clippy::unwrap_used)]

mod emt;
mod faults;
mod lifecycle;
mod support;
mod tblite;
