//! Errors of the benchmark examples (included with `#[path]`): what was being done
//! and why, each cause once, on one line.
//!
//! `main` returns `Result<(), Error>`; Rust prints a returned error with `Debug`,
//! which for the errors made here is that line, not a dump of the structure.

#![allow(dead_code)] // each example uses part of it

use std::fmt;

/// What the examples' fallible functions return.
pub type Error = Box<dyn std::error::Error>;

/// A failure as one line of text.
struct Failure(String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// An error that says `message`.
pub fn failure(message: impl Into<String>) -> Error {
    Box::new(Failure(message.into()))
}

/// "`what`: the error: its cause: …", each cause once (the way `agox-coord`
/// prints a chain: a cause whose text already ends the line is not repeated).
fn line(what: String, e: &(dyn std::error::Error + 'static)) -> Error {
    let mut line = what;
    let mut cause = Some(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    failure(line)
}

/// Says what was being done when something failed. The message is built only on
/// failure, so this costs nothing more than a `?` inside a timed loop.
pub trait Context<T> {
    /// On failure, an error that starts with `what`.
    fn context(self, what: &str) -> Result<T, Error>;
    /// On failure, an error that starts with `what()`.
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T, E: Into<Error>> Context<T> for Result<T, E> {
    fn context(self, what: &str) -> Result<T, Error> {
        self.with_context(|| what.to_owned())
    }

    fn with_context(self, what: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|e| line(what(), &*e.into()))
    }
}

/// For a missing value, `what` is the whole message.
impl<T> Context<T> for Option<T> {
    fn context(self, what: &str) -> Result<T, Error> {
        self.ok_or_else(|| failure(what))
    }

    fn with_context(self, what: impl FnOnce() -> String) -> Result<T, Error> {
        self.ok_or_else(|| failure(what()))
    }
}
