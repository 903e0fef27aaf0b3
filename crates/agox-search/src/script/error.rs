//! Script errors: each names the file, line, column, the key (`[relax] fmax`) and
//! what was expected.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found in a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    /// The script file (as given to the loader).
    pub file: PathBuf,
    /// 1-based line of the offending key or value (0 when the problem is the file itself).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// The key at fault, as `[section] key` (`[[generator]] #2 count`); `script` for the
    /// whole file.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.key,
            self.message
        )
    }
}

impl std::error::Error for ScriptError {}

/// All problems found in a script (never empty), in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptErrors(pub Vec<ScriptError>);

impl fmt::Display for ScriptErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScriptErrors {}

/// Maps byte offsets of the script text to lines, columns and the enclosing section.
#[derive(Debug)]
pub(crate) struct Source<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    /// 1-based (line, column) of a byte offset; the column counts characters.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        (line, column)
    }

    /// An error at byte `offset` about `key`.
    pub fn error(&self, offset: usize, key: String, message: impl Into<String>) -> ScriptError {
        let (line, column) = self.line_col(offset);
        ScriptError {
            file: self.file.to_path_buf(),
            line,
            column,
            key,
            message: message.into(),
        }
    }

    /// The key path around a byte offset, found from the text: the last table header
    /// before it (with the ordinal for `[[generator]]`) and the `key =` on its line.
    /// Used for errors reported by the TOML parser, which carry only a span.
    pub fn key_at(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let mut section = String::new();
        let mut counts: std::collections::HashMap<String, usize> = Default::default();
        let mut line_start = 0;
        let mut key = String::new();
        for line in self.text.split_inclusive('\n') {
            let trimmed = line.trim_start();
            if line_start > offset {
                break;
            }
            if let Some(rest) = trimmed.strip_prefix("[[") {
                let name = rest.split("]]").next().unwrap_or("").trim().to_owned();
                let n = counts.entry(name.clone()).or_insert(0);
                *n += 1;
                section = format!("[[{name}]] #{n}");
            } else if let Some(rest) = trimmed.strip_prefix('[') {
                let name = rest.split(']').next().unwrap_or("").trim().to_owned();
                section = format!("[{name}]");
            }
            if offset < line_start + line.len() || line_start + line.len() == self.text.len() {
                if !trimmed.starts_with('[') {
                    if let Some((k, _)) = line.split_once('=') {
                        key = k.trim().to_owned();
                    }
                }
                break;
            }
            line_start += line.len();
        }
        match (section.is_empty(), key.is_empty()) {
            (true, true) => "script".to_owned(),
            (true, false) => key,
            (false, true) => section,
            (false, false) => format!("{section} {key}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_sections_and_keys() {
        let text =
            "a = 1\n[relax]\nfmax = -1\n[[generator]]\nkind = 'x'\n[[generator]]\ncount = 3\n";
        let src = Source {
            file: Path::new("s.toml"),
            text,
        };
        let at = |needle: &str| text.find(needle).expect("present");
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(at("-1")), (3, 8));
        assert_eq!(src.key_at(at("-1")), "[relax] fmax");
        assert_eq!(src.key_at(at("'x'")), "[[generator]] #1 kind");
        assert_eq!(src.key_at(at("3\n")), "[[generator]] #2 count");
        assert_eq!(src.key_at(0), "a");
        let e = src.error(
            at("-1"),
            "[relax] fmax".into(),
            "expected a positive number",
        );
        assert_eq!(
            e.to_string(),
            "s.toml:3:8: [relax] fmax: expected a positive number"
        );
    }
}
