//! Reading typed values out of the script tree. Every reader reports what it found
//! and what was expected at the value's place, and returns `None` so that checking
//! goes on: one run of the checker finds every error.

use std::path::Path;

use super::error::{ScriptError, Source};
use super::tree::{Kind, Node, Table};

/// Collects the errors of one script.
pub(crate) struct Ctx<'a> {
    pub src: Source<'a>,
    pub errors: Vec<ScriptError>,
}

/// A value's source text, shortened for a message.
fn excerpt(text: &str, node: &Node) -> String {
    let raw = text.get(node.span.clone()).unwrap_or("").trim();
    if raw.chars().count() > 60 {
        let cut: String = raw.chars().take(57).collect();
        format!("{cut}...")
    } else {
        raw.to_owned()
    }
}

/// A number as written in messages (`inf`, `nan` as TOML spells them).
pub(crate) fn show(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        x.to_string()
    }
}

/// A finite number (integers accepted), or why not.
fn finite(n: &Node) -> Result<f64, String> {
    match n.kind {
        Kind::Int(i) => Ok(i as f64),
        Kind::Float(f) if f.is_finite() => Ok(f),
        Kind::Float(f) => Err(format!("{} is not finite", show(f))),
        _ => Err("is not a number".into()),
    }
}

impl<'a> Ctx<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        Ctx {
            src: Source { file, text },
            errors: Vec::new(),
        }
    }

    pub fn err(&mut self, offset: usize, key: &str, message: impl Into<String>) {
        let e = self.src.error(offset, key.to_owned(), message);
        self.errors.push(e);
    }

    /// A problem with the file as a whole, or a whole section missing (`0:0`).
    pub fn err_file(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ScriptError {
            file: self.src.file.to_path_buf(),
            line: 0,
            column: 0,
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// What a value is, for "found ..." messages.
    pub fn describe(&self, v: &Node) -> String {
        match &v.kind {
            Kind::Str(s) => format!("the string \"{s}\""),
            Kind::Int(i) => format!("the integer {i}"),
            Kind::Float(f) => format!("the number {}", show(*f)),
            Kind::Bool(b) => format!("the boolean {b}"),
            Kind::Datetime => format!("the date {}", excerpt(self.src.text, v)),
            Kind::Array(_) => format!("the array {}", excerpt(self.src.text, v)),
            Kind::Table(_) => format!("the table {}", excerpt(self.src.text, v)),
        }
    }

    pub fn expected(&mut self, v: &Node, key: &str, what: &str) {
        let m = format!("expected {what}, found {}", self.describe(v));
        self.err(v.span.start, key, m);
    }

    pub fn missing(&mut self, at: usize, key: &str, what: &str) {
        self.err(at, key, format!("missing; expected {what}"));
    }

    pub fn string(&mut self, v: &Node, key: &str, what: &str) -> Option<String> {
        match &v.kind {
            Kind::Str(s) => Some(s.clone()),
            _ => {
                self.expected(v, key, what);
                None
            }
        }
    }

    /// A string that must be one of `choices`.
    pub fn choice(&mut self, v: &Node, key: &str, choices: &[&str]) -> Option<String> {
        let q: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
        let what = format!("one of {}", q.join(", "));
        let s = self.string(v, key, &what)?;
        if choices.contains(&s.as_str()) {
            Some(s)
        } else {
            self.expected(v, key, &what);
            None
        }
    }

    pub fn boolean(&mut self, v: &Node, key: &str) -> Option<bool> {
        match v.kind {
            Kind::Bool(b) => Some(b),
            _ => {
                self.expected(v, key, "true or false");
                None
            }
        }
    }

    /// An integer ≥ `min`.
    pub fn int(&mut self, v: &Node, key: &str, min: i64) -> Option<i64> {
        match v.kind {
            Kind::Int(i) if i >= min => Some(i),
            _ => {
                self.expected(v, key, &format!("an integer ≥ {min}"));
                None
            }
        }
    }

    pub fn usize_at_least(&mut self, v: &Node, key: &str, min: i64) -> Option<usize> {
        self.int(v, key, min).and_then(|i| usize::try_from(i).ok())
    }

    pub fn u64_at_least(&mut self, v: &Node, key: &str, min: i64) -> Option<u64> {
        self.int(v, key, min).and_then(|i| u64::try_from(i).ok())
    }

    /// A finite number > 0 (integers accepted).
    pub fn positive(&mut self, v: &Node, key: &str) -> Option<f64> {
        match finite(v) {
            Ok(x) if x > 0.0 => Some(x),
            _ => {
                self.expected(v, key, "a number > 0");
                None
            }
        }
    }

    /// A finite number ≥ `min` (integers accepted).
    pub fn at_least(&mut self, v: &Node, key: &str, min: f64) -> Option<f64> {
        match finite(v) {
            Ok(x) if x >= min => Some(x),
            _ => {
                self.expected(v, key, &format!("a number ≥ {}", show(min)));
                None
            }
        }
    }

    /// A finite number (integers accepted).
    pub fn number(&mut self, v: &Node, key: &str) -> Option<f64> {
        match finite(v) {
            Ok(x) => Some(x),
            _ => {
                self.expected(v, key, "a finite number");
                None
            }
        }
    }

    /// `[lower, upper]`: two numbers with `0 < lower ≤ upper`.
    pub fn bounds(&mut self, v: &Node, key: &str) -> Option<[f64; 2]> {
        let what = "[lower, upper] with 0 < lower ≤ upper";
        let pair = match &v.kind {
            Kind::Array(a) if a.len() == 2 => finite(&a[0]).ok().zip(finite(&a[1]).ok()),
            _ => None,
        };
        match pair {
            Some((lo, hi)) if lo > 0.0 && lo <= hi => Some([lo, hi]),
            _ => {
                self.expected(v, key, what);
                None
            }
        }
    }

    /// An array of exactly 3 finite numbers; `positive` also requires each > 0.
    /// `names` name the elements in messages (`a, b, c` or `x, y, z`).
    pub fn vec3(
        &mut self,
        v: &Node,
        key: &str,
        positive: bool,
        names: [&str; 3],
    ) -> Option<[f64; 3]> {
        let what = if positive {
            "an array of 3 numbers > 0"
        } else {
            "an array of 3 numbers"
        };
        let Kind::Array(a) = &v.kind else {
            self.expected(v, key, what);
            return None;
        };
        if a.len() != 3 {
            self.expected(v, key, what);
            return None;
        }
        let mut out = [0.0; 3];
        for (k, x) in a.iter().enumerate() {
            let problem = match finite(x) {
                Ok(f) if positive && f <= 0.0 => format!("{} is not > 0", show(f)),
                Ok(f) => {
                    out[k] = f;
                    continue;
                }
                Err(why) if matches!(x.kind, Kind::Float(_)) => why,
                Err(_) => format!("{} is not a number", self.describe(x)),
            };
            self.err(
                x.span.start,
                key,
                format!("{} = {problem}; expected {what}", names[k]),
            );
            return None;
        }
        Some(out)
    }

    /// A cell: 3 positive lengths (orthorhombic) or a 3×3 matrix of rows; non-singular.
    pub fn cell(&mut self, v: &Node, key: &str) -> Option<[[f64; 3]; 3]> {
        let what = "3 lengths > 0 [a, b, c] or a 3×3 matrix [[..], [..], [..]] of cell vectors";
        let Kind::Array(a) = &v.kind else {
            self.expected(v, key, what);
            return None;
        };
        let all_rows = a.iter().all(|r| matches!(r.kind, Kind::Array(_)));
        let cell = if a.len() == 3 && !all_rows {
            let l = self.vec3(v, key, true, ["length a", "length b", "length c"])?;
            [[l[0], 0.0, 0.0], [0.0, l[1], 0.0], [0.0, 0.0, l[2]]]
        } else if a.len() == 3 {
            let mut m = [[0.0; 3]; 3];
            for (i, row) in a.iter().enumerate() {
                let names = [1, 2, 3].map(|j| format!("row {}, column {j}", i + 1));
                let names = [names[0].as_str(), names[1].as_str(), names[2].as_str()];
                m[i] = self.vec3(row, key, false, names)?;
            }
            m
        } else {
            self.expected(v, key, what);
            return None;
        };
        if agox_atoms::geometry::det(&cell).abs() < 1e-9 {
            self.err(
                v.span.start,
                key,
                format!(
                    "the cell vectors {} are linearly dependent (zero volume); expected a 3-D cell",
                    excerpt(self.src.text, v)
                ),
            );
            return None;
        }
        Some(cell)
    }

    /// `true`/`false` for all three directions, or an array of 3 booleans.
    pub fn pbc(&mut self, v: &Node, key: &str) -> Option<[bool; 3]> {
        let what = "a boolean or an array of 3 booleans";
        match &v.kind {
            Kind::Bool(b) => Some([*b; 3]),
            Kind::Array(a) if a.len() == 3 => {
                let b: Vec<bool> = a
                    .iter()
                    .filter_map(|x| match x.kind {
                        Kind::Bool(b) => Some(b),
                        _ => None,
                    })
                    .collect();
                if b.len() == 3 {
                    Some([b[0], b[1], b[2]])
                } else {
                    self.expected(v, key, what);
                    None
                }
            }
            _ => {
                self.expected(v, key, what);
                None
            }
        }
    }
}

/// The keys of one table, taken one by one by its reader; whatever is left when the
/// reader is done is an unknown key. The keys asked for are the known ones, so the
/// list in "expected one of ..." is the reader's own.
pub(crate) struct Keys<'t> {
    /// `[relax]`, `[[generator]] #2`, `[environment] confinement`.
    pub name: String,
    pub table: &'t Table,
    known: Vec<&'static str>,
    /// How a key is written in messages: `{name} {key}`, or `{name}.{key}` inside a
    /// table that is itself a key.
    dotted: bool,
}

impl<'t> Keys<'t> {
    pub fn new(name: impl Into<String>, table: &'t Table) -> Self {
        Keys {
            name: name.into(),
            table,
            known: Vec::new(),
            dotted: false,
        }
    }

    /// The keys of a table nested under a key (`confinement` in `[environment]`).
    pub fn nested(name: impl Into<String>, table: &'t Table) -> Self {
        Keys {
            dotted: true,
            ..Keys::new(name, table)
        }
    }

    /// Where the table starts.
    pub fn at(&self) -> usize {
        self.table.at
    }

    /// The value of `key`, if given.
    pub fn get(&mut self, key: &'static str) -> Option<&'t Node> {
        self.known.push(key);
        self.table.get(key)
    }

    /// `key` as written in messages.
    pub fn key(&self, key: &str) -> String {
        if self.dotted {
            format!("{}.{key}", self.name)
        } else {
            format!("{} {key}", self.name)
        }
    }

    /// Reports every key the reader did not ask for; true when there was none. A
    /// section with an unknown key yields no settings, so that checks across
    /// sections do not report the consequences of a misspelling (a default taken in
    /// place of the intended value) as errors of their own.
    #[must_use]
    pub fn finish(self, cx: &mut Ctx<'_>) -> bool {
        let mut clean = true;
        for (k, at, _) in &self.table.entries {
            if !self.known.contains(&k.as_str()) {
                clean = false;
                let list: Vec<String> = self.known.iter().map(|k| format!("`{k}`")).collect();
                cx.err(
                    *at,
                    &self.key(k),
                    format!("unknown key; expected one of {}", list.join(", ")),
                );
            }
        }
        clean
    }
}

/// The table inside `v`, or an error saying a table was expected.
pub(crate) fn table<'t>(cx: &mut Ctx<'_>, v: &'t Node, key: &str) -> Option<&'t Table> {
    match &v.kind {
        Kind::Table(t) => Some(t),
        _ => {
            cx.expected(v, key, "a table");
            None
        }
    }
}

/// Keys valid only for some kinds: report each one present.
pub(crate) fn not_for_kind(cx: &mut Ctx<'_>, keys: &Keys<'_>, kind: &str, names: &[&str]) {
    for name in names {
        if let Some(v) = keys.table.get(name) {
            cx.err(
                v.span.start,
                &keys.key(name),
                format!("`{name}` is not a setting of kind \"{kind}\""),
            );
        }
    }
}
