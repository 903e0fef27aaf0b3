//! SIGINT and SIGTERM for `run`: the first asks the search to stop at the end of
//! its current step; a second ends the process at once.
//!
//! Ending at once is safe for what is stored: every complete iteration is one
//! committed SQLite transaction, which a killed process cannot undo, and `--resume`
//! redoes the iteration that was going on. The status is then 128 + the signal's
//! number, as the signal's default action would report it to a shell.

use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use anyhow::{Context, Result};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// Set by the first signal; the loop checks it between steps.
static STOP: AtomicBool = AtomicBool::new(false);
/// The first signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: c_int) {
    // Atomics and `_exit` only: both are async-signal-safe.
    if RECEIVED
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // SAFETY: `_exit` ends the process without running anything else.
        unsafe { libc::_exit(128 + signal) };
    }
    STOP.store(true, Ordering::SeqCst);
}

/// Installs the handler for SIGINT and SIGTERM. System calls interrupted by it are
/// restarted, so the pool's I/O goes on undisturbed.
pub fn install() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler touches only atomics and calls `_exit`, both
        // async-signal-safe.
        unsafe { sigaction(signal, &action) }
            .with_context(|| format!("installing the {signal} handler"))?;
    }
    Ok(())
}

/// The flag the first signal sets.
pub fn stop_flag() -> &'static AtomicBool {
    &STOP
}

/// The first signal received (0 when none was).
pub fn received() -> c_int {
    RECEIVED.load(Ordering::SeqCst)
}

/// A signal's name (`SIGTERM`), or its number.
pub fn name(signal: c_int) -> String {
    Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.to_string())
}

/// The exit status of a run the signal interrupted: 128 + its number.
pub fn exit_status(signal: c_int) -> u8 {
    u8::try_from(128 + signal).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_names() {
        assert_eq!(exit_status(Signal::SIGINT as c_int), 130);
        assert_eq!(exit_status(Signal::SIGTERM as c_int), 143);
        assert_eq!(name(Signal::SIGTERM as c_int), "SIGTERM");
        assert_eq!(name(0), "signal 0");
    }
}
