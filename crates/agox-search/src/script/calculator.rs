//! `[calculator]`: the potential that evaluates (and, in `rss` and `bh`, relaxes)
//! candidates: a built-in one (`emt`, `lj`) or an external program speaking the
//! i-PI protocol (`socket`). The same table, alone in a file, is what
//! `agox-coord calc/relax --calculator FILE.toml` reads ([`super::load_calculator`]).

use std::path::Path;

use agox_ipi::command::shell_quote;
use agox_ipi::{CommandError, CommandTemplate, Transport};
use serde::{Deserialize, Serialize};

use super::read::{not_for_kind, Ctx, Keys};
use super::tree::Node;
pub use crate::socket::SocketSettings;
use crate::socket::MAX_SECONDS;

/// The energy unit of Lennard-Jones runs unless the script names one: the well depth.
pub const LJ_DEFAULT_UNIT: &str = "ε";

/// The placeholder a `command` may use for the directory of the file it is written
/// in; replaced when the file is read.
pub const SCRIPT_DIR: &str = "{script_dir}";

/// Most restarts `max_restarts` may allow.
pub const MAX_RESTARTS: i64 = 1000;

/// `[calculator]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CalculatorSettings {
    /// ASE-compatible EMT (elements H, C, N, O, Al, Ni, Cu, Pd, Ag, Pt, Au); energies in eV.
    Emt,
    /// Lennard-Jones (as ASE's `LennardJones(smooth=False)`).
    Lj {
        /// Well depth (eV or reduced units).
        epsilon: f64,
        /// Length scale (Å or reduced units).
        sigma: f64,
        /// Pair cutoff (default 3σ, ASE's default).
        cutoff: f64,
        /// Shift pair energies to zero at the cutoff (default true, as ASE).
        shift: bool,
        /// The unit energies are shown in (default "ε": reduced units).
        #[serde(default = "lj_default_unit")]
        energy_unit: String,
    },
    /// An external program (DFT, tight binding, ML potential) speaking the i-PI
    /// protocol: one client process per worker; energies in eV.
    Socket(SocketSettings),
}

fn lj_default_unit() -> String {
    LJ_DEFAULT_UNIT.to_owned()
}

impl CalculatorSettings {
    /// The unit of the energies this calculator computes, as shown to the user.
    pub fn energy_unit(&self) -> &str {
        match self {
            CalculatorSettings::Emt | CalculatorSettings::Socket(_) => "eV",
            CalculatorSettings::Lj { energy_unit, .. } => energy_unit,
        }
    }

    /// Where a search's single points run: in the driver for the built-in
    /// potentials (a calculation takes microseconds, less than a round trip to a
    /// worker), on the pool for an external calculator, whose clients live on the
    /// workers (so the driver starts no client of its own while there are workers;
    /// an in-process pool runs its tasks in the driver, which then owns the one
    /// client).
    pub fn single_points_in_driver(&self) -> bool {
        !matches!(self, CalculatorSettings::Socket(_))
    }

    /// The external calculator's settings, if this is one.
    pub fn socket(&self) -> Option<&SocketSettings> {
        match self {
            CalculatorSettings::Socket(s) => Some(s),
            _ => None,
        }
    }
}

/// The keys of each kind (besides `kind`).
const LJ_KEYS: [&str; 5] = ["epsilon", "sigma", "cutoff", "shift", "energy_unit"];
const SOCKET_KEYS: [&str; 8] = [
    "command",
    "transport",
    "timeout",
    "connect_timeout",
    "max_restarts",
    "grace",
    "ranks_per_client",
    "oversubscribe",
];

/// Reads `[calculator]`; `dir` is the directory of the file it is written in
/// (for `{script_dir}`).
pub(super) fn read(cx: &mut Ctx<'_>, mut keys: Keys<'_>, dir: &Path) -> Option<CalculatorSettings> {
    let kind_v = keys.get("kind");
    let lj: Vec<Option<&Node>> = LJ_KEYS.iter().map(|k| keys.get(k)).collect();
    let socket: Vec<Option<&Node>> = SOCKET_KEYS.iter().map(|k| keys.get(k)).collect();
    let kind = match kind_v {
        Some(v) => cx.choice(v, &keys.key("kind"), &["emt", "lj", "socket"]),
        None => {
            cx.missing(
                keys.at(),
                &keys.key("kind"),
                "\"emt\", \"lj\" or \"socket\"",
            );
            None
        }
    };
    let settings = match kind.as_deref() {
        Some("emt") => {
            not_for_kind(cx, &keys, "emt", &LJ_KEYS);
            not_for_kind(cx, &keys, "emt", &SOCKET_KEYS);
            Some(CalculatorSettings::Emt)
        }
        Some("lj") => {
            not_for_kind(cx, &keys, "lj", &SOCKET_KEYS);
            read_lj(cx, &keys, &lj)
        }
        Some(_) => {
            not_for_kind(cx, &keys, "socket", &LJ_KEYS);
            read_socket(cx, &keys, &socket, dir).map(CalculatorSettings::Socket)
        }
        None => None,
    };
    let clean = keys.finish(cx);
    settings.filter(|_| clean)
}

fn read_lj(cx: &mut Ctx<'_>, keys: &Keys<'_>, v: &[Option<&Node>]) -> Option<CalculatorSettings> {
    let key = |k: &str| keys.key(k);
    let [epsilon_v, sigma_v, cutoff_v, shift_v, unit_v] = [v[0], v[1], v[2], v[3], v[4]];
    let epsilon = epsilon_v.map_or(Some(1.0), |v| cx.positive(v, &key("epsilon")));
    let sigma = sigma_v.map_or(Some(1.0), |v| cx.positive(v, &key("sigma")));
    let cutoff = match (cutoff_v, sigma) {
        (Some(v), _) => cx.positive(v, &key("cutoff")),
        (None, s) => s.map(|s| 3.0 * s),
    };
    let shift = shift_v.map_or(Some(true), |v| cx.boolean(v, &key("shift")));
    let energy_unit = match unit_v {
        Some(v) => cx
            .string(v, &key("energy_unit"), "a unit name such as \"eV\"")
            .filter(|u| {
                let ok = !u.trim().is_empty();
                if !ok {
                    cx.expected(
                        v,
                        &key("energy_unit"),
                        "a non-empty unit name such as \"eV\"",
                    );
                }
                ok
            }),
        None => Some(lj_default_unit()),
    };
    Some(CalculatorSettings::Lj {
        epsilon: epsilon?,
        sigma: sigma?,
        cutoff: cutoff?,
        shift: shift?,
        energy_unit: energy_unit?,
    })
}

fn read_socket(
    cx: &mut Ctx<'_>,
    keys: &Keys<'_>,
    v: &[Option<&Node>],
    dir: &Path,
) -> Option<SocketSettings> {
    let key = |k: &str| keys.key(k);
    let [command_v, transport_v, timeout_v, connect_v, restarts_v, grace_v, ranks_v, over_v] =
        [v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]];
    let defaults = SocketSettings::new(String::new());
    let transport = match transport_v {
        Some(v) => cx
            .choice(v, &key("transport"), &["unix", "tcp"])
            .map(|t| match t.as_str() {
                "tcp" => Transport::Tcp { port: 0 },
                _ => Transport::Unix,
            }),
        None => Some(defaults.transport),
    };
    let command = match command_v {
        Some(v) => {
            let what = "a shell command that starts an i-PI client, such as \
                        \"python client.py --unix {unix}\"";
            cx.string(v, &key("command"), what).and_then(|c| {
                if c.trim().is_empty() {
                    cx.expected(v, &key("command"), what);
                    return None;
                }
                let resolved = resolve_script_dir(&c, dir);
                let checked = CommandTemplate::parse(&resolved).and_then(|t| {
                    // A bad transport is reported at `transport`; the command
                    // is then checked on its own.
                    match transport {
                        Some(tr) => t.check_transport(tr.name()),
                        None => Ok(()),
                    }
                });
                match checked {
                    Ok(()) => Some(resolved),
                    Err(e @ CommandError::Unknown { .. }) => {
                        let m = format!("{e}; in a script also {SCRIPT_DIR}, its directory");
                        cx.err(v.span.start, &key("command"), m);
                        None
                    }
                    Err(e) => {
                        cx.err(v.span.start, &key("command"), e.to_string());
                        None
                    }
                }
            })
        }
        None => {
            cx.missing(
                keys.at(),
                &key("command"),
                "the shell command that starts an i-PI client",
            );
            None
        }
    };
    let timeout = match timeout_v {
        Some(v) => seconds(cx, v, &key("timeout")).map(Some),
        None => Some(defaults.timeout),
    };
    let connect_timeout = connect_v.map_or(Some(defaults.connect_timeout), |v| {
        seconds(cx, v, &key("connect_timeout"))
    });
    let grace = grace_v.map_or(Some(defaults.grace), |v| seconds(cx, v, &key("grace")));
    let max_restarts = match restarts_v {
        Some(v) => match cx.int(v, &key("max_restarts"), 0) {
            Some(n) if n <= MAX_RESTARTS => u32::try_from(n).ok(),
            Some(_) => {
                cx.expected(
                    v,
                    &key("max_restarts"),
                    &format!("an integer from 0 to {MAX_RESTARTS}"),
                );
                None
            }
            None => None,
        },
        None => Some(defaults.max_restarts),
    };
    let ranks_per_client = ranks_v.map_or(Some(defaults.ranks_per_client), |v| {
        cx.usize_at_least(v, &key("ranks_per_client"), 1)
    });
    let oversubscribe = over_v.map_or(Some(defaults.oversubscribe), |v| {
        cx.boolean(v, &key("oversubscribe"))
    });
    Some(SocketSettings {
        command: command?,
        transport: transport?,
        timeout: timeout?,
        connect_timeout: connect_timeout?,
        max_restarts: max_restarts?,
        grace: grace?,
        ranks_per_client: ranks_per_client?,
        oversubscribe: oversubscribe?,
    })
}

/// A time in seconds: a number > 0, at most [`MAX_SECONDS`].
fn seconds(cx: &mut Ctx<'_>, v: &Node, key: &str) -> Option<f64> {
    let what = format!("a number of seconds > 0 and ≤ {MAX_SECONDS:e}");
    match cx.positive(v, key) {
        Some(s) if s <= MAX_SECONDS => Some(s),
        Some(_) => {
            cx.expected(v, key, &what);
            None
        }
        None => None,
    }
}

/// `command` with every `{script_dir}` replaced by `dir`, shell-quoted; `{{` and
/// `}}` (literal braces) are left for the command's own parser.
pub fn resolve_script_dir(command: &str, dir: &Path) -> String {
    let value = shell_quote(&dir.display().to_string())
        .replace('{', "{{")
        .replace('}', "}}");
    let mut out = String::with_capacity(command.len());
    let mut rest = command;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("{{") || rest.starts_with("}}") {
            out.push_str(&rest[..2]);
            rest = &rest[2..];
        } else if rest.starts_with(SCRIPT_DIR) {
            out.push_str(&value);
            rest = &rest[SCRIPT_DIR.len()..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_dir_is_replaced_quoted_and_escaped_braces_are_kept() {
        let dir = Path::new("/runs/a b");
        assert_eq!(
            resolve_script_dir("python {script_dir}/c.py --unix {unix}", dir),
            "python '/runs/a b'/c.py --unix {unix}"
        );
        assert_eq!(
            resolve_script_dir("echo {{script_dir}} {script_dir}", Path::new("/x")),
            "echo {{script_dir}} /x"
        );
        assert_eq!(
            resolve_script_dir("{script_dir}", Path::new("/odd{dir}")),
            "'/odd{{dir}}'"
        );
        assert_eq!(
            resolve_script_dir("ünï {script_dir}", Path::new("/x")),
            "ünï /x"
        );
    }
}
