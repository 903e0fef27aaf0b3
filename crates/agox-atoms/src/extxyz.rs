//! Extended XYZ input/output, compatible with ASE's `format='extxyz'` both ways.
//!
//! # Data model
//!
//! A frame is read into a [`Frame`]: the structure itself ([`Atoms`]: numbers,
//! positions, cell, pbc, fixed atoms, info) plus what a calculator produced for it
//! (`energy`, `forces`, `stress`) and any other per-atom columns (`columns`, e.g.
//! `tags:I:1`, `energies:R:1`, `momenta:R:3`). `Atoms` stays a pure structure; results
//! live beside it. The comment-line keys map as follows:
//!
//! | comment line | where it goes |
//! | --- | --- |
//! | `Lattice="ax ay az bx by bz cx cy cz"` (or `lattice`) | `atoms.cell` (rows a, b, c) |
//! | `pbc="T T F"` | `atoms.pbc` (default `T T T` with a Lattice, else `F F F`) |
//! | `Properties=species:S:1:pos:R:3:...` (or `properties`) | the column layout |
//! | `energy=...` | `Frame::energy` |
//! | `stress="9 numbers"` (3×3, or 6 in Voigt order) | `Frame::stress` (Voigt xx yy zz yz xz xy) |
//! | anything else (`key=value`, `key="a b c"`, bare `key`) | `atoms.info` as [`InfoValue`] |
//!
//! Per-atom columns: `species` (or `Z`) → `atoms.numbers`; `pos` → `atoms.positions`;
//! `forces:R:3` → `Frame::forces`; `move_mask:L:1` (what ASE writes for `FixAtoms`,
//! `F` = fixed) → `atoms.fixed`; `move_mask:L:3` (ASE's `FixCartesian`) marks an atom
//! fixed when all three flags are `F` and is additionally kept as a column when some
//! atom is only partly fixed; every other column → `Frame::columns`.
//!
//! Info values are typed the way ASE types them: all tokens (split on whitespace and
//! commas) integers → `Int`/`Ints`; else all reals → `Float`/`Floats`; else all of
//! `T F true false True False TRUE FALSE` → `Bool`/`Bools`; else the text (`Str`);
//! a bare key is `Bool(true)`; `uid` is always text. Hence, as in ASE, a string such
//! as `"12"` or `"T"` comes back as a number or a bool, and a one-element list comes
//! back as a scalar.
//!
//! # Writing
//!
//! Reals are written in Rust's shortest round-trip form (`{:?}`, e.g. `0.1`, `1e-20`),
//! so a file we write reads back bit-for-bit, by us and by ASE. Columns are
//! `species:S:1:pos:R:3`, then `move_mask:L:1` when atoms are fixed, `forces:R:3` when
//! present, then `Frame::columns` in order. The comment line holds `Lattice` (when the
//! cell is non-zero), `Properties`, `energy`, `stress` (full 3×3), the info keys in
//! sorted order, and `pbc` (always).
//!
//! # Errors
//!
//! Malformed input gives an [`ExtxyzError`] naming the 0-based frame index, the
//! 1-based line number and what was wrong, e.g.
//! `frame 2, line 17: column 3 (pos y): expected a real number, found "abc"`.
//! We are stricter than ASE in one place: an atom line must have exactly as many
//! columns as `Properties` declares (ASE silently ignores extra ones).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

use crate::atoms::{Atoms, InfoValue};
use crate::elements;
use crate::geometry::Vec3;

/// One extxyz frame: the structure, its calculator results, and extra columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    /// The structure (cell, pbc, fixed atoms and info included).
    pub atoms: Atoms,
    /// Total energy (eV) from the `energy=` key.
    pub energy: Option<f64>,
    /// Forces (eV/Å) from a `forces:R:3` column.
    pub forces: Option<Vec<Vec3>>,
    /// Stress (eV/Å³, Voigt order xx yy zz yz xz xy) from the `stress=` key.
    pub stress: Option<[f64; 6]>,
    /// Other per-atom columns, in file order.
    pub columns: Vec<Column>,
}

impl Frame {
    /// A frame holding just a structure, without results or extra columns.
    pub fn new(atoms: Atoms) -> Self {
        Frame {
            atoms,
            ..Frame::default()
        }
    }

    /// The extra column with this name, if any.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

impl From<Atoms> for Frame {
    fn from(atoms: Atoms) -> Self {
        Frame::new(atoms)
    }
}

/// A named per-atom column with `ncols` values per atom.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Property name as in `Properties=` (e.g. `tags`, `energies`).
    pub name: String,
    /// Values per atom (1 for scalars, 3 for vectors).
    pub ncols: usize,
    /// The values, row-major: atom `i` holds `data[i * ncols .. (i + 1) * ncols]`.
    pub data: ColumnData,
}

/// The values of a [`Column`], by extxyz type.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    /// `R`: reals.
    Real(Vec<f64>),
    /// `I`: integers.
    Int(Vec<i64>),
    /// `L`: logicals.
    Bool(Vec<bool>),
    /// `S`: strings (no whitespace).
    Str(Vec<String>),
}

impl ColumnData {
    fn len(&self) -> usize {
        match self {
            ColumnData::Real(v) => v.len(),
            ColumnData::Int(v) => v.len(),
            ColumnData::Bool(v) => v.len(),
            ColumnData::Str(v) => v.len(),
        }
    }

    fn type_char(&self) -> char {
        match self {
            ColumnData::Real(_) => 'R',
            ColumnData::Int(_) => 'I',
            ColumnData::Bool(_) => 'L',
            ColumnData::Str(_) => 'S',
        }
    }
}

/// A read error: where (0-based frame, 1-based line) and what.
#[derive(Debug, thiserror::Error)]
#[error("frame {frame}, line {line}: {kind}")]
pub struct ExtxyzError {
    /// 0-based index of the frame being read.
    pub frame: usize,
    /// 1-based line number in the input.
    pub line: usize,
    /// What went wrong.
    pub kind: ErrorKind,
}

/// What went wrong while reading (see [`ExtxyzError`] for where).
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The reader failed (includes input that is not UTF-8).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The first line of a frame is not a non-negative integer.
    #[error("expected the number of atoms, found {found:?}")]
    BadAtomCount {
        /// The line's text.
        found: String,
    },
    /// The input ended inside a frame.
    #[error("input ends after {found} of {expected} atom lines")]
    Truncated {
        /// Atoms announced by the header.
        expected: usize,
        /// Atom lines present.
        found: usize,
    },
    /// The input ended right after the atom count.
    #[error("input ends before the comment line")]
    MissingComment,
    /// The comment line does not tokenize (e.g. an unterminated quote).
    #[error("comment line: {message}")]
    BadComment {
        /// Description.
        message: String,
    },
    /// A key has a value of the wrong shape (e.g. a Lattice without 9 numbers).
    #[error("key {key:?}: {message}")]
    BadKey {
        /// The key.
        key: String,
        /// Description.
        message: String,
    },
    /// The `Properties` specification is invalid.
    #[error("Properties={spec:?}: {message}")]
    BadProperties {
        /// The specification.
        spec: String,
        /// Description.
        message: String,
    },
    /// An atom line has the wrong number of columns.
    #[error("expected {expected} columns, found {found}")]
    ColumnCount {
        /// Columns declared by `Properties`.
        expected: usize,
        /// Columns on the line.
        found: usize,
    },
    /// A value in an atom line does not parse as its declared type.
    #[error("column {column} ({field}): expected {expected}, found {found:?}")]
    BadValue {
        /// 1-based column on the line.
        column: usize,
        /// Property and component, e.g. `pos y`.
        field: String,
        /// What was expected, e.g. `a real number`.
        expected: &'static str,
        /// The text found.
        found: String,
    },
    /// A species or atomic number that is not an element.
    #[error("column {column} ({field}): not an element: {found:?}")]
    UnknownElement {
        /// 1-based column on the line.
        column: usize,
        /// Property name (`species` or `Z`).
        field: String,
        /// The text found.
        found: String,
    },
}

/// Why a frame could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The writer failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The frame cannot be represented (message names the frame and the field).
    #[error("frame {frame}: {message}")]
    Invalid {
        /// 0-based index of the frame among those written by this call.
        frame: usize,
        /// What is wrong.
        message: String,
    },
}

// ---------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------

/// Iterator over the frames of an extxyz stream. Stops after the first error.
pub struct Reader<R> {
    input: R,
    line_no: usize,
    frame: usize,
    done: bool,
    buf: String,
}

impl<R: BufRead> Reader<R> {
    /// Read frames from `input` lazily.
    pub fn new(input: R) -> Self {
        Reader {
            input,
            line_no: 0,
            frame: 0,
            done: false,
            buf: String::new(),
        }
    }

    fn err(&self, kind: ErrorKind) -> ExtxyzError {
        ExtxyzError {
            frame: self.frame,
            line: self.line_no,
            kind,
        }
    }

    /// Next line without its terminator, or `None` at end of input.
    fn next_line(&mut self) -> Result<Option<String>, ExtxyzError> {
        self.buf.clear();
        let n = self
            .input
            .read_line(&mut self.buf)
            .map_err(|e| ExtxyzError {
                frame: self.frame,
                line: self.line_no + 1,
                kind: ErrorKind::Io(e),
            })?;
        if n == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        let line = self.buf.trim_end_matches(['\n', '\r']);
        Ok(Some(line.to_string()))
    }

    fn read_frame(&mut self) -> Result<Option<Frame>, ExtxyzError> {
        // Header, skipping blank lines between frames.
        let header = loop {
            match self.next_line()? {
                None => return Ok(None),
                Some(l) if l.trim().is_empty() => continue,
                Some(l) => break l,
            }
        };
        let natoms: usize = header.trim().parse().map_err(|_| {
            self.err(ErrorKind::BadAtomCount {
                found: header.clone(),
            })
        })?;
        let comment = self
            .next_line()?
            .ok_or_else(|| self.err(ErrorKind::MissingComment))?;
        let header = parse_comment(&comment).map_err(|k| self.err(k))?;
        let mut rows = RowParser::new(&header.properties, natoms).map_err(|k| self.err(k))?;
        for i in 0..natoms {
            let line = self.next_line()?.ok_or_else(|| {
                self.err(ErrorKind::Truncated {
                    expected: natoms,
                    found: i,
                })
            })?;
            rows.push(&line).map_err(|k| self.err(k))?;
        }
        Ok(Some(rows.finish(header)))
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Frame, ExtxyzError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.read_frame() {
            Ok(Some(f)) => {
                self.frame += 1;
                Some(Ok(f))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Read every frame from a buffered reader.
pub fn read<R: BufRead>(input: R) -> Result<Vec<Frame>, ExtxyzError> {
    Reader::new(input).collect()
}

/// Read every frame from a string.
pub fn read_str(text: &str) -> Result<Vec<Frame>, ExtxyzError> {
    read(text.as_bytes())
}

/// Read every frame from a file.
pub fn read_file(path: impl AsRef<Path>) -> Result<Vec<Frame>, ExtxyzError> {
    let file = std::fs::File::open(path).map_err(|e| ExtxyzError {
        frame: 0,
        line: 0,
        kind: ErrorKind::Io(e),
    })?;
    read(std::io::BufReader::new(file))
}

/// What the comment line says.
struct Header {
    cell: Option<[[f64; 3]; 3]>,
    pbc: Option<[bool; 3]>,
    properties: Vec<Property>,
    energy: Option<f64>,
    stress: Option<[f64; 6]>,
    info: BTreeMap<String, InfoValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PropType {
    Real,
    Int,
    Bool,
    Str,
}

impl PropType {
    fn expected(self) -> &'static str {
        match self {
            PropType::Real => "a real number",
            PropType::Int => "an integer",
            PropType::Bool => "a logical (T or F)",
            PropType::Str => "a string",
        }
    }
}

#[derive(Debug, Clone)]
struct Property {
    name: String,
    ty: PropType,
    ncols: usize,
}

/// Split a comment line into (key, value) pairs: whitespace-separated entries,
/// `key=value` with optional spaces around `=`, values delimited by `"…"`, `'…'`,
/// `{…}` or `[…]`, backslash escaping the next character, bare keys with no value.
fn tokenize(line: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();

    // One word: plain characters and delimited chunks, up to whitespace or '='.
    let word = |i: &mut usize| -> Result<String, String> {
        let mut s = String::new();
        while *i < chars.len() {
            let c = chars[*i];
            if c.is_whitespace() || c == '=' {
                break;
            }
            *i += 1;
            match c {
                '\\' => {
                    if *i < chars.len() {
                        s.push(chars[*i]);
                        *i += 1;
                    }
                }
                '"' | '\'' | '{' | '[' => {
                    let close = match c {
                        '{' => '}',
                        '[' => ']',
                        other => other,
                    };
                    let start = *i - 1;
                    loop {
                        if *i >= chars.len() {
                            return Err(format!(
                                "unterminated {c} starting at character {}",
                                start + 1
                            ));
                        }
                        let d = chars[*i];
                        *i += 1;
                        if d == '\\' && *i < chars.len() {
                            s.push(chars[*i]);
                            *i += 1;
                        } else if d == close {
                            break;
                        } else {
                            s.push(d);
                        }
                    }
                }
                _ => s.push(c),
            }
        }
        Ok(s)
    };
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };

    loop {
        skip_ws(&mut i);
        if i >= chars.len() {
            break;
        }
        if chars[i] == '=' {
            return Err(format!("'=' without a key at character {}", i + 1));
        }
        let key = word(&mut i)?;
        let save = i;
        skip_ws(&mut i);
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            skip_ws(&mut i);
            let mut value = word(&mut i)?;
            // ASE keeps further '=' inside an unquoted value ("a=b=c" → a: "b=c").
            while i < chars.len() && chars[i] == '=' {
                i += 1;
                value.push('=');
                value.push_str(&word(&mut i)?);
            }
            out.push((key, Some(value)));
        } else {
            i = save;
            out.push((key, None));
        }
    }
    Ok(out)
}

fn split_tokens(value: &str) -> Vec<&str> {
    value
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_bool(token: &str) -> Option<bool> {
    match token {
        "T" | "true" | "True" | "TRUE" => Some(true),
        "F" | "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Python-compatible float parse (Rust accepts the same spellings ASE writes,
/// including `nan`, `inf`, `1e-20`).
fn parse_f64(token: &str) -> Option<f64> {
    token.parse::<f64>().ok()
}

/// Type an info value the way ASE does (ints, then reals, then bools, else text).
fn infer_value(key: &str, raw: String) -> InfoValue {
    if key.eq_ignore_ascii_case("uid") {
        return InfoValue::Str(raw);
    }
    let tokens = split_tokens(&raw);
    if tokens.is_empty() {
        return InfoValue::Str(raw);
    }
    if let Some(ints) = tokens
        .iter()
        .map(|t| t.parse::<i64>().ok())
        .collect::<Option<Vec<i64>>>()
    {
        return if ints.len() == 1 {
            InfoValue::Int(ints[0])
        } else {
            InfoValue::Ints(ints)
        };
    }
    if let Some(floats) = tokens
        .iter()
        .map(|t| parse_f64(t))
        .collect::<Option<Vec<f64>>>()
    {
        return if floats.len() == 1 {
            InfoValue::Float(floats[0])
        } else {
            InfoValue::Floats(floats)
        };
    }
    if let Some(bools) = tokens
        .iter()
        .map(|t| parse_bool(t))
        .collect::<Option<Vec<bool>>>()
    {
        return if bools.len() == 1 {
            InfoValue::Bool(bools[0])
        } else {
            InfoValue::Bools(bools)
        };
    }
    InfoValue::Str(raw)
}

fn numbers_of(key: &str, raw: &str, allowed: &[usize]) -> Result<Vec<f64>, ErrorKind> {
    let bad = |message: String| ErrorKind::BadKey {
        key: key.to_string(),
        message,
    };
    let tokens = split_tokens(raw);
    let mut out = Vec::with_capacity(tokens.len());
    for t in &tokens {
        out.push(parse_f64(t).ok_or_else(|| bad(format!("expected a real number, found {t:?}")))?);
    }
    if !allowed.contains(&out.len()) {
        let want: Vec<String> = allowed.iter().map(|n| n.to_string()).collect();
        return Err(bad(format!(
            "expected {} numbers, found {} in {raw:?}",
            want.join(" or "),
            out.len()
        )));
    }
    Ok(out)
}

fn parse_properties(spec: &str) -> Result<Vec<Property>, ErrorKind> {
    let bad = |message: String| ErrorKind::BadProperties {
        spec: spec.to_string(),
        message,
    };
    let fields: Vec<&str> = spec.split(':').collect();
    if !fields.chunks_exact(3).remainder().is_empty() {
        return Err(bad(format!(
            "expected name:type:columns triples, found {} fields",
            fields.len()
        )));
    }
    let mut props: Vec<Property> = Vec::new();
    for t in fields.chunks(3) {
        let name = t[0].to_string();
        if name.is_empty() {
            return Err(bad("empty property name".into()));
        }
        if props.iter().any(|p| p.name == name) {
            return Err(bad(format!("property {name:?} given twice")));
        }
        let ty = match t[1] {
            "R" => PropType::Real,
            "I" => PropType::Int,
            "L" => PropType::Bool,
            "S" => PropType::Str,
            other => {
                return Err(bad(format!(
                    "property {name:?}: unknown type {other:?} (expected R, I, L or S)"
                )))
            }
        };
        let ncols: usize = t[2]
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| bad(format!("property {name:?}: bad column count {:?}", t[2])))?;
        props.push(Property { name, ty, ncols });
    }
    let find = |n: &str| props.iter().find(|p| p.name == n);
    match find("pos") {
        Some(p) if p.ty == PropType::Real && p.ncols == 3 => {}
        Some(_) => return Err(bad("pos must be R:3".into())),
        None => return Err(bad("no pos property (positions)".into())),
    }
    let species_ok = matches!(find("species"), Some(p) if p.ty == PropType::Str && p.ncols == 1);
    let z_ok = matches!(find("Z"), Some(p) if p.ty == PropType::Int && p.ncols == 1);
    if !species_ok && !z_ok {
        return Err(bad("no species:S:1 or Z:I:1 property (elements)".into()));
    }
    if let Some(p) = find("forces") {
        if p.ty != PropType::Real || p.ncols != 3 {
            return Err(bad("forces must be R:3".into()));
        }
    }
    Ok(props)
}

fn parse_comment(line: &str) -> Result<Header, ErrorKind> {
    let pairs = tokenize(line).map_err(|message| ErrorKind::BadComment { message })?;
    let mut header = Header {
        cell: None,
        pbc: None,
        properties: Vec::new(),
        energy: None,
        stress: None,
        info: BTreeMap::new(),
    };
    let mut spec: Option<String> = None;
    for (key, value) in pairs {
        let bad = |message: String| ErrorKind::BadKey {
            key: key.clone(),
            message,
        };
        match key.as_str() {
            "Lattice" | "lattice" => {
                let raw = value.ok_or_else(|| bad("needs 9 numbers".into()))?;
                let v = numbers_of(&key, &raw, &[9])?;
                header.cell = Some([[v[0], v[1], v[2]], [v[3], v[4], v[5]], [v[6], v[7], v[8]]]);
            }
            "pbc" => {
                let raw = value.unwrap_or_else(|| "T".into());
                let flags: Option<Vec<bool>> =
                    split_tokens(&raw).iter().map(|t| parse_bool(t)).collect();
                header.pbc = Some(match flags.as_deref() {
                    Some([a]) => [*a; 3],
                    Some([a, b, c]) => [*a, *b, *c],
                    _ => return Err(bad(format!("expected 1 or 3 of T/F, found {raw:?}"))),
                });
            }
            "Properties" | "properties" => {
                spec = Some(value.ok_or_else(|| bad("needs a value".into()))?);
            }
            "energy" => {
                let raw = value.ok_or_else(|| bad("needs a number".into()))?;
                header.energy = Some(numbers_of(&key, &raw, &[1])?[0]);
            }
            "stress" => {
                let raw = value.ok_or_else(|| bad("needs 9 numbers".into()))?;
                let v = numbers_of(&key, &raw, &[9, 6])?;
                header.stress = Some(if v.len() == 6 {
                    [v[0], v[1], v[2], v[3], v[4], v[5]]
                } else {
                    // 3×3 written column-major (Fortran order), as ASE does.
                    let m = |i: usize, j: usize| v[i + 3 * j];
                    [m(0, 0), m(1, 1), m(2, 2), m(1, 2), m(0, 2), m(0, 1)]
                });
            }
            _ => {
                let v = match value {
                    None => InfoValue::Bool(true),
                    Some(raw) => {
                        if key == "virial" {
                            numbers_of(&key, &raw, &[9])?;
                        }
                        infer_value(&key, raw)
                    }
                };
                header.info.insert(key, v);
            }
        }
    }
    let spec = spec.unwrap_or_else(|| "species:S:1:pos:R:3".to_string());
    header.properties = parse_properties(&spec)?;
    Ok(header)
}

/// Column data being filled while reading atom lines.
enum Buf {
    Real(Vec<f64>),
    Int(Vec<i64>),
    Bool(Vec<bool>),
    Str(Vec<String>),
}

struct RowParser {
    props: Vec<Property>,
    bufs: Vec<Buf>,
    ncols_total: usize,
}

fn field_name(name: &str, ncols: usize, k: usize) -> String {
    match ncols {
        1 => name.to_string(),
        3 => format!("{name} {}", ["x", "y", "z"][k]),
        _ => format!("{name}[{k}]"),
    }
}

impl RowParser {
    fn new(props: &[Property], natoms: usize) -> Result<Self, ErrorKind> {
        let bufs = props
            .iter()
            .map(|p| {
                let cap = natoms.saturating_mul(p.ncols).min(1 << 24);
                match p.ty {
                    PropType::Real => Buf::Real(Vec::with_capacity(cap)),
                    PropType::Int => Buf::Int(Vec::with_capacity(cap)),
                    PropType::Bool => Buf::Bool(Vec::with_capacity(cap)),
                    PropType::Str => Buf::Str(Vec::with_capacity(cap)),
                }
            })
            .collect();
        Ok(RowParser {
            props: props.to_vec(),
            bufs,
            ncols_total: props.iter().map(|p| p.ncols).sum(),
        })
    }

    fn push(&mut self, line: &str) -> Result<(), ErrorKind> {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.len() != self.ncols_total {
            return Err(ErrorKind::ColumnCount {
                expected: self.ncols_total,
                found: tokens.len(),
            });
        }
        let mut col = 0;
        for (p, buf) in self.props.iter().zip(self.bufs.iter_mut()) {
            for k in 0..p.ncols {
                let t = tokens[col];
                col += 1;
                let bad = || ErrorKind::BadValue {
                    column: col,
                    field: field_name(&p.name, p.ncols, k),
                    expected: p.ty.expected(),
                    found: t.to_string(),
                };
                match buf {
                    Buf::Real(v) => v.push(parse_f64(t).ok_or_else(bad)?),
                    Buf::Int(v) => v.push(t.parse::<i64>().map_err(|_| bad())?),
                    Buf::Bool(v) => v.push(parse_bool(t).ok_or_else(bad)?),
                    Buf::Str(v) => v.push(t.to_string()),
                }
                if p.name == "species" && p.ty == PropType::Str {
                    if elements::number_ignore_case(t).is_none() {
                        return Err(ErrorKind::UnknownElement {
                            column: col,
                            field: p.name.clone(),
                            found: t.to_string(),
                        });
                    }
                } else if p.name == "Z" && p.ty == PropType::Int {
                    let ok = t.parse::<u8>().ok().and_then(elements::symbol).is_some();
                    if !ok {
                        return Err(ErrorKind::UnknownElement {
                            column: col,
                            field: p.name.clone(),
                            found: t.to_string(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(self, header: Header) -> Frame {
        let mut atoms = Atoms {
            cell: header.cell.unwrap_or([[0.0; 3]; 3]),
            pbc: header.pbc.unwrap_or([header.cell.is_some(); 3]),
            info: header.info,
            ..Atoms::default()
        };
        let mut frame = Frame {
            energy: header.energy,
            stress: header.stress,
            ..Frame::default()
        };
        let mut species: Option<Vec<u8>> = None;
        let mut z: Option<Vec<u8>> = None;
        for (p, buf) in self.props.into_iter().zip(self.bufs) {
            match (p.name.as_str(), buf) {
                ("species", Buf::Str(v)) => {
                    // Validated in `push`.
                    species = Some(
                        v.iter()
                            .map(|s| elements::number_ignore_case(s).unwrap_or(0))
                            .collect(),
                    );
                }
                ("Z", Buf::Int(v)) => {
                    z = Some(v.iter().map(|n| u8::try_from(*n).unwrap_or(0)).collect());
                }
                ("pos", Buf::Real(v)) => atoms.positions = triples(&v),
                ("forces", Buf::Real(v)) => frame.forces = Some(triples(&v)),
                ("move_mask", Buf::Bool(v)) if p.ncols == 1 => {
                    atoms.fixed = v
                        .iter()
                        .enumerate()
                        .filter(|(_, m)| !**m)
                        .map(|(i, _)| i)
                        .collect();
                }
                ("move_mask", Buf::Bool(v)) if p.ncols == 3 => {
                    atoms.fixed = v
                        .chunks(3)
                        .enumerate()
                        .filter(|(_, m)| m.iter().all(|x| !*x))
                        .map(|(i, _)| i)
                        .collect();
                    let partial = v
                        .chunks(3)
                        .any(|m| m.iter().any(|x| *x) && m.iter().any(|x| !*x));
                    if partial {
                        frame.columns.push(Column {
                            name: p.name,
                            ncols: 3,
                            data: ColumnData::Bool(v),
                        });
                    }
                }
                (_, buf) => {
                    let data = match buf {
                        Buf::Real(v) => ColumnData::Real(v),
                        Buf::Int(v) => ColumnData::Int(v),
                        Buf::Bool(v) => ColumnData::Bool(v),
                        Buf::Str(v) => ColumnData::Str(v),
                    };
                    frame.columns.push(Column {
                        name: p.name,
                        ncols: p.ncols,
                        data,
                    });
                }
            }
        }
        // ASE takes Z over species when both are present.
        atoms.numbers = z.or(species).unwrap_or_default();
        frame.atoms = atoms;
        frame
    }
}

fn triples(v: &[f64]) -> Vec<Vec3> {
    v.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect()
}

// ---------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------

/// Shortest decimal text that parses back to exactly `x` (Python reads it too).
fn fmt_f64(x: f64) -> String {
    format!("{x:?}")
}

fn fmt_bool(b: bool) -> &'static str {
    if b {
        "T"
    } else {
        "F"
    }
}

/// Quote `s` for the comment line when it holds anything the tokenizer treats specially.
fn quote(s: &str) -> String {
    let special = s.is_empty()
        || s.chars().any(|c| {
            c.is_whitespace() || matches!(c, '"' | '\'' | '{' | '}' | '[' | ']' | '=' | '\\')
        });
    if !special {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn join<T>(v: &[T], f: impl Fn(&T) -> String) -> String {
    v.iter().map(f).collect::<Vec<_>>().join(" ")
}

fn info_text(v: &InfoValue) -> String {
    match v {
        InfoValue::Int(i) => i.to_string(),
        InfoValue::Float(x) => fmt_f64(*x),
        InfoValue::Bool(b) => fmt_bool(*b).to_string(),
        InfoValue::Str(s) => s.clone(),
        InfoValue::Floats(v) => join(v, |x| fmt_f64(*x)),
        InfoValue::Ints(v) => join(v, |x| x.to_string()),
        InfoValue::Bools(v) => join(v, |b| fmt_bool(*b).to_string()),
    }
}

/// Comment line and data lines of one frame.
fn render(frame: &Frame, index: usize) -> Result<String, WriteError> {
    let invalid = |message: String| WriteError::Invalid {
        frame: index,
        message,
    };
    let atoms = &frame.atoms;
    let n = atoms.len();
    if atoms.positions.len() != n {
        return Err(invalid(format!(
            "{n} atomic numbers but {} positions",
            atoms.positions.len()
        )));
    }
    let mut symbols = Vec::with_capacity(n);
    for (i, z) in atoms.numbers.iter().enumerate() {
        symbols
            .push(elements::symbol(*z).ok_or_else(|| {
                invalid(format!("atom {i}: atomic number {z} is not an element"))
            })?);
    }
    if let Some(&i) = atoms.fixed.iter().find(|i| **i >= n) {
        return Err(invalid(format!(
            "fixed atom index {i} out of range for {n} atoms"
        )));
    }
    if let Some(f) = &frame.forces {
        if f.len() != n {
            return Err(invalid(format!("{} force rows for {n} atoms", f.len())));
        }
    }
    let mut columns: Vec<&Column> = Vec::new();
    for c in &frame.columns {
        let reserved = ["species", "pos", "Z", "forces"];
        if reserved.contains(&c.name.as_str())
            || (c.name == "move_mask" && !atoms.fixed.is_empty() && c.ncols == 1)
        {
            return Err(invalid(format!(
                "column {:?} clashes with a column written from the structure",
                c.name
            )));
        }
        if c.name.is_empty()
            || c.name
                .contains(|ch: char| ch == ':' || ch.is_whitespace() || ch == '"')
        {
            return Err(invalid(format!(
                "column name {:?} cannot be written",
                c.name
            )));
        }
        if c.ncols == 0 || c.data.len() != n * c.ncols {
            return Err(invalid(format!(
                "column {:?}: {} values for {n} atoms × {} columns",
                c.name,
                c.data.len(),
                c.ncols
            )));
        }
        if let ColumnData::Str(v) = &c.data {
            if let Some(s) = v
                .iter()
                .find(|s| s.is_empty() || s.chars().any(char::is_whitespace))
            {
                return Err(invalid(format!(
                    "column {:?}: string {s:?} is empty or has whitespace",
                    c.name
                )));
            }
        }
        columns.push(c);
    }
    let has_move_mask_col = columns.iter().any(|c| c.name == "move_mask");
    let write_mask = !atoms.fixed.is_empty() && !has_move_mask_col;

    // Comment line.
    let mut parts: Vec<String> = Vec::new();
    if atoms.cell.iter().flatten().any(|x| *x != 0.0) {
        let flat: Vec<f64> = atoms.cell.iter().flatten().copied().collect();
        parts.push(format!("Lattice=\"{}\"", join(&flat, |x| fmt_f64(*x))));
    }
    let mut spec = String::from("species:S:1:pos:R:3");
    if write_mask {
        spec.push_str(":move_mask:L:1");
    }
    if frame.forces.is_some() {
        spec.push_str(":forces:R:3");
    }
    for c in &columns {
        spec.push_str(&format!(":{}:{}:{}", c.name, c.data.type_char(), c.ncols));
    }
    parts.push(format!("Properties={spec}"));
    if let Some(e) = frame.energy {
        parts.push(format!("energy={}", fmt_f64(e)));
    }
    if let Some(s) = frame.stress {
        // Full symmetric 3×3 (column-major = row-major for a symmetric matrix).
        let m = [s[0], s[5], s[4], s[5], s[1], s[3], s[4], s[3], s[2]];
        parts.push(format!("stress=\"{}\"", join(&m, |x| fmt_f64(*x))));
    }
    for (key, value) in &atoms.info {
        let clash = match key.as_str() {
            "Lattice" | "lattice" | "Properties" | "properties" | "pbc" => true,
            "energy" => frame.energy.is_some(),
            "stress" => frame.stress.is_some(),
            _ => false,
        };
        if clash {
            return Err(invalid(format!(
                "info key {key:?} clashes with a key written from the frame"
            )));
        }
        if key.is_empty() {
            return Err(invalid("empty info key".into()));
        }
        let numeric_len = match value {
            InfoValue::Int(_) | InfoValue::Float(_) => Some(1),
            InfoValue::Ints(v) => Some(v.len()),
            InfoValue::Floats(v) => Some(v.len()),
            _ => None,
        };
        let needs = match key.as_str() {
            "energy" => Some((&[1usize][..], "a number")),
            "stress" => Some((&[6usize, 9][..], "6 or 9 numbers")),
            "virial" => Some((&[9usize][..], "9 numbers")),
            _ => None,
        };
        if let Some((lens, what)) = needs {
            if !numeric_len.is_some_and(|l| lens.contains(&l)) {
                return Err(invalid(format!(
                    "info key {key:?} must hold {what} to be readable back"
                )));
            }
        }
        let text = info_text(value);
        if key.contains(['\n', '\r']) || text.contains(['\n', '\r']) {
            return Err(invalid(format!(
                "info key {key:?}: line breaks cannot be written on the comment line"
            )));
        }
        parts.push(format!("{}={}", quote(key), quote(&text)));
    }
    parts.push(format!(
        "pbc=\"{} {} {}\"",
        fmt_bool(atoms.pbc[0]),
        fmt_bool(atoms.pbc[1]),
        fmt_bool(atoms.pbc[2])
    ));

    let mut out = String::new();
    out.push_str(&n.to_string());
    out.push('\n');
    out.push_str(&parts.join(" "));
    out.push('\n');
    for i in 0..n {
        let p = atoms.positions[i];
        out.push_str(&format!(
            "{:<2} {:>24} {:>24} {:>24}",
            symbols[i],
            fmt_f64(p[0]),
            fmt_f64(p[1]),
            fmt_f64(p[2])
        ));
        if write_mask {
            out.push_str(&format!(" {}", fmt_bool(!atoms.is_fixed(i))));
        }
        if let Some(f) = &frame.forces {
            for x in f[i] {
                out.push_str(&format!(" {:>24}", fmt_f64(x)));
            }
        }
        for c in &columns {
            let r = i * c.ncols..(i + 1) * c.ncols;
            match &c.data {
                ColumnData::Real(v) => {
                    for x in &v[r] {
                        out.push_str(&format!(" {:>24}", fmt_f64(*x)));
                    }
                }
                ColumnData::Int(v) => {
                    for x in &v[r] {
                        out.push_str(&format!(" {x:>8}"));
                    }
                }
                ColumnData::Bool(v) => {
                    for x in &v[r] {
                        out.push_str(&format!(" {}", fmt_bool(*x)));
                    }
                }
                ColumnData::Str(v) => {
                    for x in &v[r] {
                        out.push_str(&format!(" {x}"));
                    }
                }
            }
        }
        out.push('\n');
    }
    Ok(out)
}

/// Write one frame (appending to whatever `w` already holds).
pub fn write_frame<W: Write>(w: &mut W, frame: &Frame) -> Result<(), WriteError> {
    let text = render(frame, 0)?;
    w.write_all(text.as_bytes())?;
    Ok(())
}

/// Write frames one after another. Each frame is checked before any of its text is
/// written, so an invalid frame leaves the frames before it complete in `w`.
pub fn write_frames<'a, W: Write>(
    w: &mut W,
    frames: impl IntoIterator<Item = &'a Frame>,
) -> Result<(), WriteError> {
    for (i, frame) in frames.into_iter().enumerate() {
        let text = render(frame, i)?;
        w.write_all(text.as_bytes())?;
    }
    Ok(())
}

/// Write a bare structure (no results, no extra columns).
pub fn write_atoms<W: Write>(w: &mut W, atoms: &Atoms) -> Result<(), WriteError> {
    write_frame(w, &Frame::new(atoms.clone()))
}

/// Frames as extxyz text.
pub fn to_string<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> Result<String, WriteError> {
    let mut out = Vec::new();
    write_frames(&mut out, frames)?;
    // Everything we render is UTF-8 text.
    String::from_utf8(out)
        .map_err(|e| WriteError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Write frames to a file, replacing it.
pub fn write_file<'a>(
    path: impl AsRef<Path>,
    frames: impl IntoIterator<Item = &'a Frame>,
) -> Result<(), WriteError> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    write_frames(&mut w, frames)?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_handles_quotes_escapes_and_bare_keys() {
        let t = tokenize(r#"a=1 b="x y" c='q' d={1 2} e=[3,4] flag f = 2 g="say \"hi\"" h=u=v"#)
            .unwrap();
        let get = |k: &str| t.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone());
        assert_eq!(get("a"), Some(Some("1".into())));
        assert_eq!(get("b"), Some(Some("x y".into())));
        assert_eq!(get("c"), Some(Some("q".into())));
        assert_eq!(get("d"), Some(Some("1 2".into())));
        assert_eq!(get("e"), Some(Some("3,4".into())));
        assert_eq!(get("flag"), Some(None));
        assert_eq!(get("f"), Some(Some("2".into())));
        assert_eq!(get("g"), Some(Some("say \"hi\"".into())));
        assert_eq!(get("h"), Some(Some("u=v".into())));
        assert!(tokenize("a=\"open").is_err());
        assert!(tokenize("=3").is_err());
    }

    #[test]
    fn value_typing_follows_ase() {
        assert_eq!(infer_value("k", "3".into()), InfoValue::Int(3));
        assert_eq!(infer_value("k", "3.5".into()), InfoValue::Float(3.5));
        assert_eq!(infer_value("k", "1e-20".into()), InfoValue::Float(1e-20));
        assert_eq!(infer_value("k", "1 2".into()), InfoValue::Ints(vec![1, 2]));
        assert_eq!(
            infer_value("k", "1 2.5".into()),
            InfoValue::Floats(vec![1.0, 2.5])
        );
        assert_eq!(infer_value("k", "T".into()), InfoValue::Bool(true));
        assert_eq!(infer_value("k", "false".into()), InfoValue::Bool(false));
        assert_eq!(
            infer_value("k", "T F".into()),
            InfoValue::Bools(vec![true, false])
        );
        assert_eq!(
            infer_value("k", "hello".into()),
            InfoValue::Str("hello".into())
        );
        assert_eq!(
            infer_value("uid", "123".into()),
            InfoValue::Str("123".into())
        );
        assert!(matches!(infer_value("k", "nan".into()), InfoValue::Float(x) if x.is_nan()));
        assert_eq!(
            infer_value("k", "inf".into()),
            InfoValue::Float(f64::INFINITY)
        );
    }

    #[test]
    fn float_text_round_trips() {
        for x in [
            0.1,
            1e-20,
            1e300,
            -0.0,
            123456789.12345679,
            f64::MIN_POSITIVE,
            5e-324,
        ] {
            assert_eq!(fmt_f64(x).parse::<f64>().unwrap().to_bits(), x.to_bits());
        }
    }

    #[test]
    fn quoting_round_trips_through_tokenizer() {
        for s in [
            "plain",
            "with space",
            "q\"uote",
            "back\\slash",
            "",
            "a=b",
            "{br}",
        ] {
            let line = format!("k={}", quote(s));
            let t = tokenize(&line).unwrap();
            assert_eq!(t, vec![("k".to_string(), Some(s.to_string()))], "{line}");
        }
    }
}
