//! The client's command line: a shell command with placeholders.
//!
//! | placeholder | value | transport |
//! | --- | --- | --- |
//! | `{unix}` | the socket's name as i-PI clients take it: they connect to `/tmp/ipi_` followed by it (ASE's `unixsocket=`, `pw.x --ipi {unix}:UNIX`) | unix |
//! | `{socket}` | the socket file's full path | unix |
//! | `{host}` | `127.0.0.1` | tcp |
//! | `{port}` | the port the server listens on (the one the OS chose for port 0) | tcp |
//! | `{dir}` | the client's working directory (also its current directory) | both |
//! | `{worker}` | the owner's id (the pool worker's index) | both |
//! | `{structure}` | an extxyz file with the structure of the evaluation that started the client, written before every start: element order and periodicity for clients that need them up front (ASE's) | both |
//!
//! `{{` and `}}` are literal braces. Values are shell-quoted where they need it,
//! so write placeholders bare. The same values are in the client's environment as
//! `AGOX_IPI_UNIX`, `AGOX_IPI_SOCKET`, `AGOX_IPI_HOST`, `AGOX_IPI_PORT`,
//! `AGOX_IPI_DIR`, `AGOX_IPI_WORKER` and `AGOX_IPI_STRUCTURE` (those that apply),
//! for wrapper scripts that write a code's input file.

use std::fmt;

/// A value that can stand in a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placeholder {
    /// `{unix}`.
    Unix,
    /// `{socket}`.
    Socket,
    /// `{host}`.
    Host,
    /// `{port}`.
    Port,
    /// `{dir}`.
    Dir,
    /// `{worker}`.
    Worker,
    /// `{structure}`.
    Structure,
}

impl Placeholder {
    /// Every placeholder.
    pub const ALL: [Placeholder; 7] = [
        Placeholder::Unix,
        Placeholder::Socket,
        Placeholder::Host,
        Placeholder::Port,
        Placeholder::Dir,
        Placeholder::Worker,
        Placeholder::Structure,
    ];

    /// The name between the braces.
    pub fn name(self) -> &'static str {
        match self {
            Placeholder::Unix => "unix",
            Placeholder::Socket => "socket",
            Placeholder::Host => "host",
            Placeholder::Port => "port",
            Placeholder::Dir => "dir",
            Placeholder::Worker => "worker",
            Placeholder::Structure => "structure",
        }
    }

    /// The environment variable that carries the same value.
    pub fn env(self) -> &'static str {
        match self {
            Placeholder::Unix => "AGOX_IPI_UNIX",
            Placeholder::Socket => "AGOX_IPI_SOCKET",
            Placeholder::Host => "AGOX_IPI_HOST",
            Placeholder::Port => "AGOX_IPI_PORT",
            Placeholder::Dir => "AGOX_IPI_DIR",
            Placeholder::Worker => "AGOX_IPI_WORKER",
            Placeholder::Structure => "AGOX_IPI_STRUCTURE",
        }
    }

    /// The transport it belongs to, if only one.
    pub fn transport(self) -> Option<&'static str> {
        match self {
            Placeholder::Unix | Placeholder::Socket => Some("unix"),
            Placeholder::Host | Placeholder::Port => Some("tcp"),
            _ => None,
        }
    }

    fn from_name(name: &str) -> Option<Placeholder> {
        Placeholder::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.name())
    }
}

/// Why a command does not parse or render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Nothing to run.
    #[error("the client command is empty")]
    Empty,
    /// `{name}` with an unknown name.
    #[error("unknown placeholder {{{name}}} at byte {at} of the client command (known: {}; write {{{{ and }}}} for literal braces)", known())]
    Unknown {
        /// The name.
        name: String,
        /// Byte offset of its `{`.
        at: usize,
    },
    /// A `{` without its `}`.
    #[error("unclosed '{{' at byte {at} of the client command (write {{{{ for a literal brace)")]
    Unclosed {
        /// Byte offset.
        at: usize,
    },
    /// A `}` without its `{`.
    #[error("unmatched '}}' at byte {at} of the client command (write }}}} for a literal brace)")]
    Unmatched {
        /// Byte offset.
        at: usize,
    },
    /// A placeholder of the other transport.
    #[error("placeholder {placeholder} needs transport \"{}\", but the transport is \"{transport}\"", .placeholder.transport().unwrap_or("any"))]
    WrongTransport {
        /// The placeholder.
        placeholder: Placeholder,
        /// The configured transport.
        transport: &'static str,
    },
}

fn known() -> String {
    Placeholder::ALL
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Value(Placeholder),
}

/// A parsed command: text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTemplate {
    source: String,
    parts: Vec<Part>,
}

impl CommandTemplate {
    /// Parses `{name}` placeholders and `{{` / `}}` escapes.
    pub fn parse(source: &str) -> Result<CommandTemplate, CommandError> {
        if source.trim().is_empty() {
            return Err(CommandError::Empty);
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '}' => return Err(CommandError::Unmatched { at }),
                '{' => {
                    let rest = &source[at + 1..];
                    let end = rest.find('}').ok_or(CommandError::Unclosed { at })?;
                    let name = &rest[..end];
                    let p = Placeholder::from_name(name).ok_or_else(|| CommandError::Unknown {
                        name: name.to_string(),
                        at,
                    })?;
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Value(p));
                    // Skip the name and the closing brace.
                    for _ in 0..=name.chars().count() {
                        chars.next();
                    }
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(CommandTemplate {
            source: source.to_string(),
            parts,
        })
    }

    /// The command as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The placeholders used, in order of appearance (repeats included).
    pub fn placeholders(&self) -> impl Iterator<Item = Placeholder> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Value(v) => Some(*v),
            Part::Text(_) => None,
        })
    }

    /// Checks that every placeholder has a value under `transport` (`"unix"` or `"tcp"`).
    pub fn check_transport(&self, transport: &'static str) -> Result<(), CommandError> {
        match self
            .placeholders()
            .find(|p| p.transport().is_some_and(|t| t != transport))
        {
            Some(placeholder) => Err(CommandError::WrongTransport {
                placeholder,
                transport,
            }),
            None => Ok(()),
        }
    }

    /// The shell command with every placeholder replaced by its shell-quoted value.
    /// A placeholder without a value renders empty; [`check_transport`] rules that
    /// out beforehand.
    ///
    /// [`check_transport`]: CommandTemplate::check_transport
    pub fn render(&self, value: impl Fn(Placeholder) -> Option<String>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Value(p) => out.push_str(&shell_quote(&value(*p).unwrap_or_default())),
            }
        }
        out
    }
}

/// `s` as one shell word: bare when it holds only characters no shell treats
/// specially, single-quoted otherwise.
pub fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn values(p: Placeholder) -> Option<String> {
        Some(match p {
            Placeholder::Unix => "agox.Ab12/sock".into(),
            Placeholder::Socket => "/tmp/ipi_agox.Ab12/sock".into(),
            Placeholder::Host => "127.0.0.1".into(),
            Placeholder::Port => "40123".into(),
            Placeholder::Dir => "/runs/my run/worker 0".into(),
            Placeholder::Worker => "0".into(),
            Placeholder::Structure => "/runs/it's/s.xyz".into(),
        })
    }

    #[test]
    fn renders_placeholders_quoted_where_needed() {
        let t = CommandTemplate::parse("mpirun -n 4 pw.x --ipi {unix}:UNIX -in pw.in").unwrap();
        assert_eq!(
            t.render(values),
            "mpirun -n 4 pw.x --ipi agox.Ab12/sock:UNIX -in pw.in"
        );
        let t =
            CommandTemplate::parse("cd {dir} && python c.py --structure {structure} --w {worker}")
                .unwrap();
        assert_eq!(
            t.render(values),
            r"cd '/runs/my run/worker 0' && python c.py --structure '/runs/it'\''s/s.xyz' --w 0"
        );
        let t = CommandTemplate::parse("lmp -var h {host} -var p {port}").unwrap();
        assert_eq!(t.render(values), "lmp -var h 127.0.0.1 -var p 40123");
    }

    #[test]
    fn quoting_survives_the_shell() {
        for s in [
            "plain",
            "with space",
            "it's",
            "$HOME",
            "a\"b",
            "`x`",
            "",
            "ü",
        ] {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn braces_escape_and_errors_name_the_spot() {
        let t = CommandTemplate::parse("awk '{{print $1}}' {dir}").unwrap();
        assert_eq!(t.render(values), "awk '{print $1}' '/runs/my run/worker 0'");
        assert_eq!(t.placeholders().collect::<Vec<_>>(), vec![Placeholder::Dir]);

        let e = CommandTemplate::parse("run {sock}").unwrap_err();
        assert_eq!(
            e,
            CommandError::Unknown {
                name: "sock".into(),
                at: 4
            }
        );
        assert_eq!(
            e.to_string(),
            "unknown placeholder {sock} at byte 4 of the client command (known: {unix}, \
             {socket}, {host}, {port}, {dir}, {worker}, {structure}; write {{ and }} for \
             literal braces)"
        );
        assert_eq!(
            CommandTemplate::parse("run {unix").unwrap_err(),
            CommandError::Unclosed { at: 4 }
        );
        assert_eq!(
            CommandTemplate::parse("run }").unwrap_err(),
            CommandError::Unmatched { at: 4 }
        );
        assert_eq!(
            CommandTemplate::parse("  ").unwrap_err(),
            CommandError::Empty
        );
    }

    #[test]
    fn placeholders_must_fit_the_transport() {
        let t = CommandTemplate::parse("c --port {port} --dir {dir}").unwrap();
        assert!(t.check_transport("tcp").is_ok());
        let e = t.check_transport("unix").unwrap_err();
        assert_eq!(
            e.to_string(),
            "placeholder {port} needs transport \"tcp\", but the transport is \"unix\""
        );
        let t = CommandTemplate::parse("c {unix} {socket}").unwrap();
        assert!(t.check_transport("unix").is_ok());
        assert!(t.check_transport("tcp").is_err());
    }
}
