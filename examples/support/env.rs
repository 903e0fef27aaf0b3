//! Settings the examples read from the environment (included with `#[path]`).

use anyhow::{anyhow, Error};

/// The whole number in environment variable `name`, `default` when it is unset; a
/// value that is not a number of at least `least` is an error that names it.
pub fn env_usize(name: &str, default: usize, least: usize) -> Result<usize, Error> {
    let Some(value) = std::env::var_os(name) else {
        return Ok(default);
    };
    value
        .to_str()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n >= least)
        .ok_or_else(|| {
            anyhow!(format!(
                "{name} must be a whole number of at least {least}, not {value:?}"
            ))
        })
}
