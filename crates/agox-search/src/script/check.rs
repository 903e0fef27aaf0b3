//! From TOML text to a validated [`Script`]: serde catches unknown keys and the
//! document's shape, then every value is checked by hand so that each error names its
//! key, its line and what was expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agox_atoms::elements;
use agox_atoms::emt::Emt;
use agox_atoms::formula::Formula;
use serde::Deserialize;
use serde_spanned::Spanned;
use toml::Value;

use super::error::{ScriptError, ScriptErrors, Source};
use super::*;

type V = Option<Spanned<Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    search: Option<Spanned<RawSearch>>,
    environment: Option<Spanned<RawEnvironment>>,
    calculator: Option<Spanned<RawCalculator>>,
    #[serde(default)]
    generator: Vec<Spanned<RawGenerator>>,
    sampler: Option<Spanned<RawSampler>>,
    relax: Option<Spanned<RawRelax>>,
    evaluator: Option<Spanned<RawEvaluator>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSearch {
    algorithm: V,
    iterations: V,
    seed: V,
    workers: V,
    output: V,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvironment {
    symbols: V,
    cell: V,
    pbc: V,
    confinement: Option<Spanned<RawConfinement>>,
    template: V,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfinement {
    corner: V,
    size: V,
    cell: V,
    pbc: V,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalculator {
    kind: V,
    epsilon: V,
    sigma: V,
    cutoff: V,
    shift: V,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGenerator {
    kind: V,
    count: V,
    c1: V,
    c2: V,
    contiguous: V,
    attempts: V,
    n_rattle: V,
    amplitude: V,
    n_swaps: V,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSampler {
    kind: V,
    temperature: V,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelax {
    optimizer: V,
    fmax: V,
    steps: V,
    start_iteration: V,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvaluator {
    kind: V,
    count: V,
    optimizer: V,
    fmax: V,
    steps: V,
}

/// Default distance factors of the generators (AGOX's defaults).
const DEFAULT_C1: f64 = 0.75;
const DEFAULT_C2: f64 = 1.25;

/// A short description of a TOML value for "found ..." messages.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string \"{s}\""),
        Value::Integer(i) => format!("the integer {i}"),
        Value::Float(f) => format!("the number {f}"),
        Value::Boolean(b) => format!("the boolean {b}"),
        Value::Datetime(d) => format!("the date {d}"),
        Value::Array(a) => format!("an array of {} element(s)", a.len()),
        Value::Table(_) => "a table".to_owned(),
    }
}

struct Ctx<'a> {
    src: Source<'a>,
    errors: Vec<ScriptError>,
}

impl Ctx<'_> {
    fn err(&mut self, offset: usize, key: &str, message: impl Into<String>) {
        let e = self.src.error(offset, key.to_owned(), message);
        self.errors.push(e);
    }

    fn expected(&mut self, v: &Spanned<Value>, key: &str, what: &str) {
        let m = format!("expected {what}, found {}", describe(v.get_ref()));
        self.err(v.span().start, key, m);
    }

    fn missing(&mut self, section_offset: usize, key: &str, what: &str) {
        self.err(section_offset, key, format!("missing; expected {what}"));
    }

    fn string(&mut self, v: &Spanned<Value>, key: &str, what: &str) -> Option<String> {
        match v.get_ref() {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.expected(v, key, what);
                None
            }
        }
    }

    /// A string that must be one of `choices`.
    fn choice(&mut self, v: &Spanned<Value>, key: &str, choices: &[&str]) -> Option<String> {
        let what = format!("one of {}", quoted(choices));
        let s = self.string(v, key, &what)?;
        if choices.contains(&s.as_str()) {
            Some(s)
        } else {
            self.expected(v, key, &what);
            None
        }
    }

    fn boolean(&mut self, v: &Spanned<Value>, key: &str) -> Option<bool> {
        match v.get_ref() {
            Value::Boolean(b) => Some(*b),
            _ => {
                self.expected(v, key, "true or false");
                None
            }
        }
    }

    /// An integer ≥ `min`.
    fn int(&mut self, v: &Spanned<Value>, key: &str, min: i64) -> Option<i64> {
        let what = format!("an integer ≥ {min}");
        match v.get_ref() {
            Value::Integer(i) if *i >= min => Some(*i),
            _ => {
                self.expected(v, key, &what);
                None
            }
        }
    }

    fn usize_at_least(&mut self, v: &Spanned<Value>, key: &str, min: i64) -> Option<usize> {
        self.int(v, key, min).and_then(|i| usize::try_from(i).ok())
    }

    fn u64_at_least(&mut self, v: &Spanned<Value>, key: &str, min: i64) -> Option<u64> {
        self.int(v, key, min).and_then(|i| u64::try_from(i).ok())
    }

    /// A finite number (integers accepted).
    fn number(&mut self, v: &Spanned<Value>, key: &str, what: &str) -> Option<f64> {
        match v.get_ref() {
            Value::Float(f) if f.is_finite() => Some(*f),
            Value::Integer(i) => Some(*i as f64),
            _ => {
                self.expected(v, key, what);
                None
            }
        }
    }

    /// A finite number > 0.
    fn positive(&mut self, v: &Spanned<Value>, key: &str) -> Option<f64> {
        let x = self.number(v, key, "a number > 0")?;
        if x > 0.0 {
            Some(x)
        } else {
            self.expected(v, key, "a number > 0");
            None
        }
    }

    /// An array of exactly 3 finite numbers.
    fn vec3(&mut self, v: &Spanned<Value>, key: &str) -> Option<[f64; 3]> {
        let what = "an array of 3 numbers";
        let Value::Array(a) = v.get_ref() else {
            self.expected(v, key, what);
            return None;
        };
        let nums: Option<Vec<f64>> = a
            .iter()
            .map(|x| match x {
                Value::Float(f) if f.is_finite() => Some(*f),
                Value::Integer(i) => Some(*i as f64),
                _ => None,
            })
            .collect();
        match nums {
            Some(n) if n.len() == 3 => Some([n[0], n[1], n[2]]),
            _ => {
                self.expected(v, key, what);
                None
            }
        }
    }

    /// A cell: 3 positive lengths (orthorhombic) or a 3×3 matrix of rows; non-singular.
    fn cell(&mut self, v: &Spanned<Value>, key: &str) -> Option<[[f64; 3]; 3]> {
        let what =
            "3 positive lengths [a, b, c] or a 3×3 matrix [[..], [..], [..]] of cell vectors";
        let Value::Array(a) = v.get_ref() else {
            self.expected(v, key, what);
            return None;
        };
        let num = |x: &Value| match x {
            Value::Float(f) if f.is_finite() => Some(*f),
            Value::Integer(i) => Some(*i as f64),
            _ => None,
        };
        let cell = if a.len() == 3 && a.iter().all(|x| num(x).is_some()) {
            let l: Vec<f64> = a.iter().filter_map(num).collect();
            if l.iter().any(|&x| x <= 0.0) {
                self.expected(v, key, what);
                return None;
            }
            [[l[0], 0.0, 0.0], [0.0, l[1], 0.0], [0.0, 0.0, l[2]]]
        } else {
            let rows: Option<Vec<[f64; 3]>> = a
                .iter()
                .map(|row| match row {
                    Value::Array(r) if r.len() == 3 => {
                        Some([num(&r[0])?, num(&r[1])?, num(&r[2])?])
                    }
                    _ => None,
                })
                .collect();
            match rows {
                Some(r) if r.len() == 3 => [r[0], r[1], r[2]],
                _ => {
                    self.expected(v, key, what);
                    return None;
                }
            }
        };
        if det(&cell).abs() < 1e-9 {
            self.err(
                v.span().start,
                key,
                "the cell vectors are linearly dependent (zero volume); expected a 3-D cell",
            );
            return None;
        }
        Some(cell)
    }

    /// `true`/`false` for all three directions, or an array of 3 booleans.
    fn pbc(&mut self, v: &Spanned<Value>, key: &str) -> Option<[bool; 3]> {
        let what = "a boolean or an array of 3 booleans";
        match v.get_ref() {
            Value::Boolean(b) => Some([*b; 3]),
            Value::Array(a) if a.len() == 3 => {
                let b: Option<Vec<bool>> = a.iter().map(Value::as_bool).collect();
                match b {
                    Some(b) => Some([b[0], b[1], b[2]]),
                    None => {
                        self.expected(v, key, what);
                        None
                    }
                }
            }
            _ => {
                self.expected(v, key, what);
                None
            }
        }
    }

    /// Keys that are only valid for some kinds: report each one present.
    fn not_for_kind(&mut self, section: &str, kind: &str, keys: &[(&str, &V)]) {
        for (name, v) in keys {
            if let Some(v) = v {
                let key = format!("{section} {name}");
                self.err(
                    v.span().start,
                    &key,
                    format!("`{name}` is not a setting of kind \"{kind}\""),
                );
            }
        }
    }
}

fn quoted(choices: &[&str]) -> String {
    let q: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
    q.join(", ")
}

fn det(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn norm(a: [f64; 3]) -> f64 {
    (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt()
}

/// Fractional coordinates of Cartesian `p` in `cell` (rows are vectors): `p = s · cell`.
fn fractional(cell: &[[f64; 3]; 3], p: [f64; 3]) -> [f64; 3] {
    let d = det(cell);
    // Columns of the inverse of the row matrix: s_k = p · (b_i × b_j) / det.
    let c0 = cross(cell[1], cell[2]);
    let c1 = cross(cell[2], cell[0]);
    let c2 = cross(cell[0], cell[1]);
    let dot = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    [dot(p, c0) / d, dot(p, c1) / d, dot(p, c2) / d]
}

/// Volume of the parallelepiped `cell` grown by a ball of radius `rho` (Steiner's
/// formula): `V + A·ρ + π(a + b + c)·ρ² + (4/3)πρ³`, with `A` the surface area and
/// `a, b, c` the edge lengths. Exact for any parallelepiped: along each edge direction
/// the exterior dihedral angles of its four edges sum to 2π.
pub(crate) fn grown_volume(cell: &[[f64; 3]; 3], rho: f64) -> f64 {
    let v = det(cell).abs();
    let area = 2.0
        * (norm(cross(cell[0], cell[1]))
            + norm(cross(cell[1], cell[2]))
            + norm(cross(cell[2], cell[0])));
    let edges = norm(cell[0]) + norm(cell[1]) + norm(cell[2]);
    let pi = std::f64::consts::PI;
    v + area * rho + pi * edges * rho * rho + 4.0 / 3.0 * pi * rho.powi(3)
}

/// Elements ASE's EMT has parameters for (and our `Emt` too).
fn emt_supports(z: u8) -> bool {
    Emt::new().parameters(z).is_some()
}

pub(super) fn parse(text: &str, path: &Path) -> Result<Script, ScriptErrors> {
    let src = Source { file: path, text };
    // Syntax first, so that a syntax error says so; then the document's shape.
    if let Err(e) = text.parse::<toml::Table>() {
        let offset = e.span().map_or(0, |s| s.start);
        let key = src.key_at(offset);
        let message = format!("invalid TOML: {}", e.message().trim());
        return Err(ScriptErrors(vec![src.error(offset, key, message)]));
    }
    let raw: RawScript = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            let key = src.key_at(offset);
            let message = e.message().trim().to_owned();
            return Err(ScriptErrors(vec![src.error(offset, key, message)]));
        }
    };
    let mut cx = Ctx {
        src,
        errors: Vec::new(),
    };
    let script = resolve(&mut cx, raw, path);
    if cx.errors.is_empty() {
        if let Some(s) = script {
            return Ok(s);
        }
        cx.errors.push(ScriptError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: "script".into(),
            message: "invalid script".into(),
        });
    }
    cx.errors.sort_by_key(|e| (e.line, e.column));
    Err(ScriptErrors(cx.errors))
}

fn script_dir(path: &Path) -> PathBuf {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    std::path::absolute(&dir).unwrap_or(dir)
}

/// A whole section is missing: reported at line 0 (the file as a whole).
fn missing_section(cx: &mut Ctx<'_>, name: &str, message: &str) {
    cx.errors.push(ScriptError {
        file: cx.src.file.to_path_buf(),
        line: 0,
        column: 0,
        key: format!("[{name}]"),
        message: format!("missing section: {message}"),
    });
}

fn resolve(cx: &mut Ctx<'_>, raw: RawScript, path: &Path) -> Option<Script> {
    let dir = script_dir(path);
    let search = match &raw.search {
        Some(s) => search(cx, s, path, &dir),
        None => {
            missing_section(
                cx,
                "search",
                "expected at least `algorithm` and `iterations`",
            );
            None
        }
    };
    let calculator = match &raw.calculator {
        Some(c) => calculator(cx, c),
        None => {
            missing_section(
                cx,
                "calculator",
                "expected `kind = \"emt\"` or `kind = \"lj\"`",
            );
            None
        }
    };
    let mut generators = Vec::new();
    let mut gen_ok = true;
    for (i, g) in raw.generator.iter().enumerate() {
        match generator(cx, g, i + 1) {
            Some(g) => generators.push(g),
            None => gen_ok = false,
        }
    }
    if raw.generator.is_empty() {
        missing_section(
            cx,
            "[generator]",
            "expected at least one `[[generator]]` with a `kind`",
        );
        gen_ok = false;
    }
    let environment = match &raw.environment {
        Some(e) => environment(cx, e, &dir),
        None => {
            missing_section(cx, "environment", "expected at least `symbols` and `cell`");
            None
        }
    };
    let sampler = raw.sampler.as_ref().map(|s| sampler(cx, s));
    let relax = raw.relax.as_ref().map(|r| relax(cx, r));
    let evaluator = match &raw.evaluator {
        Some(e) => evaluator(cx, e),
        None => Some(EvaluatorSettings {
            kind: EvaluatorKind::SinglePoint,
            count: None,
        }),
    };

    // Checks across sections.
    if let (Some(env), Some(calc)) = (&environment, &calculator) {
        if matches!(calc, CalculatorSettings::Emt) {
            let mut bad: Vec<&str> = env
                .numbers
                .iter()
                .chain(env.template.numbers.iter())
                .filter(|&&z| !emt_supports(z))
                .filter_map(|&z| elements::symbol(z))
                .collect();
            bad.dedup();
            if !bad.is_empty() {
                let (offset, key) = raw
                    .calculator
                    .as_ref()
                    .and_then(|c| c.get_ref().kind.as_ref().map(|k| k.span().start))
                    .map_or((0, "[calculator] kind"), |o| (o, "[calculator] kind"));
                cx.err(
                    offset,
                    key,
                    format!(
                        "EMT has no parameters for {}; it supports H, C, N, O, Al, Ni, Cu, Pd, Ag, Pt, Au",
                        bad.join(", ")
                    ),
                );
            }
        }
    }
    if let (Some(env), true) = (&environment, gen_ok) {
        generator_vs_environment(cx, &raw, &generators, env);
    }
    if gen_ok && !generators.is_empty() {
        schedule_totals(cx, &raw, &generators);
    }
    let sampler = match sampler {
        Some(s) => s,
        None => {
            let needs = generators.iter().any(|g| g.kind.needs_parent());
            let algorithm = search.as_ref().map(|s| s.algorithm);
            match algorithm {
                Some(Algorithm::Bh) => {
                    missing_section(
                        cx,
                        "sampler",
                        "basin hopping needs `[sampler]` with `kind = \"metropolis\"` and a `temperature` (or `kind = \"lowest\"`)",
                    );
                    None
                }
                _ if needs => Some(SamplerSettings::Lowest),
                _ => None,
            }
        }
    };
    let relax = match relax {
        Some(Some(r)) => Some(r),
        Some(None) => return None,
        None => None,
    };
    Some(Script {
        path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
        search: search?,
        environment: environment?,
        calculator: calculator?,
        generators,
        sampler,
        relax,
        evaluator: evaluator?,
    })
    .filter(|_| gen_ok)
}

fn search(
    cx: &mut Ctx<'_>,
    s: &Spanned<RawSearch>,
    path: &Path,
    dir: &Path,
) -> Option<SearchSettings> {
    let at = s.span().start;
    let r = s.get_ref();
    let algorithm = match &r.algorithm {
        Some(v) => match v.get_ref() {
            Value::String(a) if a == "gofee" => {
                cx.err(
                    v.span().start,
                    "[search] algorithm",
                    "\"gofee\" is not available yet; expected \"rss\" or \"bh\"",
                );
                None
            }
            _ => cx.choice(v, "[search] algorithm", &["rss", "bh"]).map(|a| {
                if a == "bh" {
                    Algorithm::Bh
                } else {
                    Algorithm::Rss
                }
            }),
        },
        None => {
            cx.missing(at, "[search] algorithm", "\"rss\" or \"bh\"");
            None
        }
    };
    let iterations = match &r.iterations {
        Some(v) => cx.u64_at_least(v, "[search] iterations", 1),
        None => {
            cx.missing(at, "[search] iterations", "an integer ≥ 1");
            None
        }
    };
    let seed = match &r.seed {
        Some(v) => Some(cx.u64_at_least(v, "[search] seed", 0)?),
        None => None,
    };
    let workers = match &r.workers {
        Some(v) => Some(cx.usize_at_least(v, "[search] workers", 1)?),
        None => None,
    };
    let output = match &r.output {
        Some(v) => {
            let o = cx.string(v, "[search] output", "a directory path (string)")?;
            if o.trim().is_empty() {
                cx.expected(v, "[search] output", "a non-empty directory path");
                return None;
            }
            dir.join(o)
        }
        None => {
            let stem = path
                .file_stem()
                .map_or_else(|| "output".into(), |s| s.to_string_lossy().into_owned());
            dir.join(stem)
        }
    };
    Some(SearchSettings {
        algorithm: algorithm?,
        iterations: iterations?,
        seed,
        workers,
        output,
    })
}

fn environment(
    cx: &mut Ctx<'_>,
    e: &Spanned<RawEnvironment>,
    dir: &Path,
) -> Option<EnvironmentSettings> {
    let at = e.span().start;
    let r = e.get_ref();
    let symbols = match &r.symbols {
        Some(v) => {
            let s = cx.string(
                v,
                "[environment] symbols",
                "a chemical formula such as \"Au8Cu4\"",
            );
            s.and_then(|s| match Formula::parse(&s) {
                Ok(f) => Some((s, f.numbers())),
                Err(err) => {
                    cx.err(
                        v.span().start,
                        "[environment] symbols",
                        format!("{err}; expected a chemical formula such as \"Au8Cu4\""),
                    );
                    None
                }
            })
        }
        None => {
            cx.missing(
                at,
                "[environment] symbols",
                "a chemical formula such as \"Au8Cu4\"",
            );
            None
        }
    };

    let template = match &r.template {
        Some(v) => {
            let rel = cx.string(v, "[environment] template", "a path to an extxyz file")?;
            let p = dir.join(&rel);
            if !p.is_file() {
                cx.err(
                    v.span().start,
                    "[environment] template",
                    format!(
                        "file `{}` not found; expected an extxyz file (relative to the script)",
                        p.display()
                    ),
                );
                return None;
            }
            match agox_atoms::extxyz::read_file(&p) {
                Ok(frames) => match frames.into_iter().last() {
                    Some(f) => Some((p, f.atoms)),
                    None => {
                        cx.err(
                            v.span().start,
                            "[environment] template",
                            format!("`{}` holds no structure", p.display()),
                        );
                        return None;
                    }
                },
                Err(err) => {
                    cx.err(
                        v.span().start,
                        "[environment] template",
                        format!("cannot read `{}` as extxyz: {err}", p.display()),
                    );
                    return None;
                }
            }
        }
        None => None,
    };

    let cell = match (&r.cell, &template) {
        (Some(v), _) => cx.cell(v, "[environment] cell"),
        (None, Some((p, t))) => {
            if det(&t.cell).abs() < 1e-9 {
                cx.missing(
                    at,
                    "[environment] cell",
                    &format!("a cell (the template `{}` has none)", p.display()),
                );
                None
            } else {
                Some(t.cell)
            }
        }
        (None, None) => {
            cx.missing(
                at,
                "[environment] cell",
                "3 lengths [a, b, c] or a 3×3 matrix (Å)",
            );
            None
        }
    };
    let pbc = match (&r.pbc, &template) {
        (Some(v), _) => cx.pbc(v, "[environment] pbc")?,
        (None, Some((_, t))) => t.pbc,
        (None, None) => [false; 3],
    };
    let cell = cell?;

    let confinement = match &r.confinement {
        None => Confinement {
            corner: [0.0; 3],
            cell,
            pbc,
        },
        Some(c) => confinement(cx, c, &cell, pbc)?,
    };

    let (template_path, mut template) = match template {
        Some((p, t)) => (Some(p), t),
        None => (None, agox_atoms::Atoms::default()),
    };
    template.cell = cell;
    template.pbc = pbc;
    template.fixed = (0..template.len()).collect();
    let (symbols, numbers) = symbols?;
    Some(EnvironmentSettings {
        symbols,
        numbers,
        cell,
        pbc,
        confinement,
        template_path,
        template,
    })
}

fn confinement(
    cx: &mut Ctx<'_>,
    c: &Spanned<RawConfinement>,
    cell: &[[f64; 3]; 3],
    env_pbc: [bool; 3],
) -> Option<Confinement> {
    let at = c.span().start;
    let r = c.get_ref();
    let corner = match &r.corner {
        Some(v) => cx.vec3(v, "[environment] confinement.corner")?,
        None => [0.0; 3],
    };
    let box_cell = match (&r.size, &r.cell) {
        (Some(_), Some(v)) => {
            cx.err(
                v.span().start,
                "[environment] confinement.cell",
                "give either `size` or `cell`, not both",
            );
            return None;
        }
        (Some(v), None) => {
            let s = cx.vec3(v, "[environment] confinement.size")?;
            if s.iter().any(|&x| x <= 0.0) {
                cx.expected(v, "[environment] confinement.size", "3 lengths > 0");
                return None;
            }
            [[s[0], 0.0, 0.0], [0.0, s[1], 0.0], [0.0, 0.0, s[2]]]
        }
        (None, Some(v)) => cx.cell(v, "[environment] confinement.cell")?,
        (None, None) => *cell,
    };
    let pbc = match &r.pbc {
        Some(v) => {
            let p = cx.pbc(v, "[environment] confinement.pbc")?;
            if (0..3).any(|k| p[k] && !env_pbc[k]) {
                cx.err(
                    v.span().start,
                    "[environment] confinement.pbc",
                    "the box can only be periodic along directions where the cell is periodic ([environment] pbc)",
                );
                return None;
            }
            p
        }
        None => env_pbc,
    };
    // Every corner of the box must lie inside the cell (fractional coordinates in [0, 1]).
    let tol = 1e-6;
    let mut worst: Option<([f64; 3], [f64; 3])> = None;
    for mask in 0..8u8 {
        let mut p = corner;
        for (k, row) in box_cell.iter().enumerate() {
            if mask & (1 << k) != 0 {
                for d in 0..3 {
                    p[d] += row[d];
                }
            }
        }
        let s = fractional(cell, p);
        if s.iter().any(|&x| !(-tol..=1.0 + tol).contains(&x)) {
            worst = Some((p, s));
            break;
        }
    }
    if let Some((p, s)) = worst {
        let key = if r.size.is_some() {
            "[environment] confinement.size"
        } else {
            "[environment] confinement"
        };
        cx.err(
            at,
            key,
            format!(
                "the confinement box reaches outside the cell: its corner ({:.3}, {:.3}, {:.3}) Å has \
                 fractional coordinates ({:.3}, {:.3}, {:.3}); expected every corner within [0, 1] of the cell",
                p[0], p[1], p[2], s[0], s[1], s[2]
            ),
        );
        return None;
    }
    Some(Confinement {
        corner,
        cell: box_cell,
        pbc,
    })
}

fn calculator(cx: &mut Ctx<'_>, c: &Spanned<RawCalculator>) -> Option<CalculatorSettings> {
    let r = c.get_ref();
    let Some(kind_v) = &r.kind else {
        cx.missing(c.span().start, "[calculator] kind", "\"emt\" or \"lj\"");
        return None;
    };
    let kind = cx.choice(kind_v, "[calculator] kind", &["emt", "lj"])?;
    if kind == "emt" {
        cx.not_for_kind(
            "[calculator]",
            "emt",
            &[
                ("epsilon", &r.epsilon),
                ("sigma", &r.sigma),
                ("cutoff", &r.cutoff),
                ("shift", &r.shift),
            ],
        );
        return Some(CalculatorSettings::Emt);
    }
    let epsilon = match &r.epsilon {
        Some(v) => cx.positive(v, "[calculator] epsilon"),
        None => Some(1.0),
    };
    let sigma = match &r.sigma {
        Some(v) => cx.positive(v, "[calculator] sigma"),
        None => Some(1.0),
    };
    let cutoff = match (&r.cutoff, sigma) {
        (Some(v), _) => cx.positive(v, "[calculator] cutoff"),
        (None, s) => s.map(|s| 3.0 * s),
    };
    let shift = match &r.shift {
        Some(v) => cx.boolean(v, "[calculator] shift"),
        None => Some(true),
    };
    Some(CalculatorSettings::Lj {
        epsilon: epsilon?,
        sigma: sigma?,
        cutoff: cutoff?,
        shift: shift?,
    })
}

fn count(cx: &mut Ctx<'_>, v: &Spanned<Value>, key: &str) -> Option<CountSchedule> {
    let what = "an integer ≥ 1, or a schedule table { 0 = n, 5 = m } (from iteration → count ≥ 0)";
    match v.get_ref() {
        Value::Integer(_) => cx.usize_at_least(v, key, 1).map(CountSchedule::Fixed),
        Value::Table(t) => {
            let mut map = BTreeMap::new();
            for (k, n) in t {
                let Ok(it) = k.trim().parse::<u64>() else {
                    cx.err(
                        v.span().start,
                        key,
                        format!("schedule key \"{k}\" is not an iteration number; expected integers ≥ 0 as keys"),
                    );
                    return None;
                };
                match n {
                    Value::Integer(n) if *n >= 0 => {
                        map.insert(it, usize::try_from(*n).ok()?);
                    }
                    other => {
                        cx.err(
                            v.span().start,
                            key,
                            format!(
                                "schedule entry {k}: expected a count ≥ 0, found {}",
                                describe(other)
                            ),
                        );
                        return None;
                    }
                }
            }
            if map.is_empty() {
                cx.expected(v, key, what);
                return None;
            }
            Some(CountSchedule::Schedule(map))
        }
        _ => {
            cx.expected(v, key, what);
            None
        }
    }
}

fn generator(cx: &mut Ctx<'_>, g: &Spanned<RawGenerator>, n: usize) -> Option<GeneratorSettings> {
    let sec = format!("[[generator]] #{n}");
    let key = |k: &str| format!("{sec} {k}");
    let r = g.get_ref();
    let Some(kind_v) = &r.kind else {
        cx.missing(
            g.span().start,
            &key("kind"),
            "\"random\", \"rattle\" or \"permutation\"",
        );
        return None;
    };
    let kind = cx.choice(kind_v, &key("kind"), &["random", "rattle", "permutation"])?;
    let count = match &r.count {
        Some(v) => count(cx, v, &key("count")),
        None => Some(CountSchedule::Fixed(1)),
    };
    let c1 = match &r.c1 {
        Some(v) => cx.positive(v, &key("c1")),
        None => Some(DEFAULT_C1),
    };
    let c2 = match &r.c2 {
        Some(v) => cx.positive(v, &key("c2")),
        None => Some(DEFAULT_C2),
    };
    if let (Some(a), Some(b)) = (c1, c2) {
        if a >= b {
            let v = r.c1.as_ref().or(r.c2.as_ref());
            let offset = v.map_or(g.span().start, |v| v.span().start);
            cx.err(
                offset,
                &key("c1"),
                format!("c1 = {a} must be smaller than c2 = {b}"),
            );
            return None;
        }
    }
    let attempts = match &r.attempts {
        Some(v) => cx.usize_at_least(v, &key("attempts"), 1),
        None => Some(100),
    };
    let kind = match kind.as_str() {
        "random" => {
            cx.not_for_kind(
                &sec,
                "random",
                &[
                    ("n_rattle", &r.n_rattle),
                    ("amplitude", &r.amplitude),
                    ("n_swaps", &r.n_swaps),
                ],
            );
            let contiguous = match &r.contiguous {
                Some(v) => cx.boolean(v, &key("contiguous")),
                None => Some(true),
            };
            GeneratorKind::Random {
                c1: c1?,
                c2: c2?,
                contiguous: contiguous?,
                attempts: attempts?,
            }
        }
        "rattle" => {
            cx.not_for_kind(
                &sec,
                "rattle",
                &[("contiguous", &r.contiguous), ("n_swaps", &r.n_swaps)],
            );
            let n_rattle = match &r.n_rattle {
                Some(v) => cx.usize_at_least(v, &key("n_rattle"), 1),
                None => Some(3),
            };
            let amplitude = match &r.amplitude {
                Some(v) => cx.positive(v, &key("amplitude")),
                None => Some(3.0),
            };
            GeneratorKind::Rattle {
                n_rattle: n_rattle?,
                amplitude: amplitude?,
                c1: c1?,
                c2: c2?,
                attempts: attempts?,
            }
        }
        _ => {
            cx.not_for_kind(
                &sec,
                "permutation",
                &[
                    ("c1", &r.c1),
                    ("c2", &r.c2),
                    ("contiguous", &r.contiguous),
                    ("attempts", &r.attempts),
                    ("n_rattle", &r.n_rattle),
                    ("amplitude", &r.amplitude),
                ],
            );
            let n_swaps = match &r.n_swaps {
                Some(v) => cx.usize_at_least(v, &key("n_swaps"), 1),
                None => Some(1),
            };
            GeneratorKind::Permutation { n_swaps: n_swaps? }
        }
    };
    Some(GeneratorSettings {
        kind,
        count: count?,
    })
}

/// Checks that need both the generators and the environment.
fn generator_vs_environment(
    cx: &mut Ctx<'_>,
    raw: &RawScript,
    gens: &[GeneratorSettings],
    env: &EnvironmentSettings,
) {
    let n = env.numbers.len();
    for (i, (g, rg)) in gens.iter().zip(&raw.generator).enumerate() {
        let sec = format!("[[generator]] #{}", i + 1);
        let r = rg.get_ref();
        match &g.kind {
            GeneratorKind::Rattle { n_rattle, .. } if *n_rattle > n => {
                let offset = r
                    .n_rattle
                    .as_ref()
                    .map_or(rg.span().start, |v| v.span().start);
                cx.err(
                    offset,
                    &format!("{sec} n_rattle"),
                    format!("{n_rattle} atoms to rattle but only {n} atoms are placed; expected at most {n}"),
                );
            }
            GeneratorKind::Permutation { .. } => {
                let first = env.numbers.first();
                if env.numbers.iter().all(|z| Some(z) == first) {
                    let offset = r.kind.as_ref().map_or(rg.span().start, |v| v.span().start);
                    cx.err(
                        offset,
                        &format!("{sec} kind"),
                        format!(
                            "a permutation swaps atoms of different elements, but \"{}\" has only one element",
                            env.symbols
                        ),
                    );
                }
            }
            _ => {}
        }
    }

    // Capacity: non-overlapping spheres of radius c1·r_i (the random generator keeps
    // every pair at least c1·(r_i + r_j) apart) with centres in the box fit in the box
    // grown by c1·r_max, so their total volume cannot exceed that grown volume.
    let c1 = gens
        .iter()
        .filter_map(|g| match g.kind {
            GeneratorKind::Random { c1, .. } => Some(c1),
            _ => None,
        })
        .fold(f64::INFINITY, f64::min);
    let c1 = if c1.is_finite() { c1 } else { DEFAULT_C1 };
    let radii: Vec<f64> = env
        .numbers
        .iter()
        .map(|&z| elements::covalent_radius(z).unwrap_or(0.0))
        .collect();
    let r_max = radii.iter().copied().fold(0.0, f64::max);
    let pi = std::f64::consts::PI;
    let needed: f64 = radii
        .iter()
        .map(|r| 4.0 / 3.0 * pi * (c1 * r).powi(3))
        .sum();
    let available = grown_volume(&env.confinement.cell, c1 * r_max);
    if needed > available {
        let offset = raw
            .environment
            .as_ref()
            .and_then(|e| e.get_ref().symbols.as_ref().map(|v| v.span().start))
            .unwrap_or(0);
        cx.err(
            offset,
            "[environment] symbols",
            format!(
                "{n} atoms cannot fit in the confinement box: their spheres of radius c1·r_covalent \
                 (c1 = {c1}) need {needed:.1} Å³, but the box, grown by {:.2} Å on every side, offers only \
                 {available:.1} Å³; expected fewer atoms or a larger box",
                c1 * r_max
            ),
        );
    }
}

/// Every iteration must produce at least one candidate.
fn schedule_totals(cx: &mut Ctx<'_>, raw: &RawScript, gens: &[GeneratorSettings]) {
    let mut points: Vec<u64> = gens.iter().flat_map(|g| g.count.breakpoints()).collect();
    points.push(0);
    points.sort_unstable();
    points.dedup();
    for it in points {
        let total: usize = gens.iter().map(|g| g.count.at(it)).sum();
        if total == 0 {
            let offset = raw.generator.first().map_or(0, |g| g.span().start);
            cx.err(
                offset,
                "[[generator]] count",
                format!("no generator makes a candidate in iteration {it}; expected a total count ≥ 1 in every iteration"),
            );
            return;
        }
    }
}

fn sampler(cx: &mut Ctx<'_>, s: &Spanned<RawSampler>) -> Option<SamplerSettings> {
    let r = s.get_ref();
    let Some(kind_v) = &r.kind else {
        cx.missing(
            s.span().start,
            "[sampler] kind",
            "\"lowest\" or \"metropolis\"",
        );
        return None;
    };
    match cx
        .choice(kind_v, "[sampler] kind", &["lowest", "metropolis"])?
        .as_str()
    {
        "lowest" => {
            cx.not_for_kind("[sampler]", "lowest", &[("temperature", &r.temperature)]);
            Some(SamplerSettings::Lowest)
        }
        _ => match &r.temperature {
            Some(v) => cx
                .positive(v, "[sampler] temperature")
                .map(|temperature| SamplerSettings::Metropolis { temperature }),
            None => {
                cx.missing(
                    s.span().start,
                    "[sampler] temperature",
                    "a temperature > 0 in energy units (eV)",
                );
                None
            }
        },
    }
}

fn optimizer(cx: &mut Ctx<'_>, v: &V, key: &str) -> Option<Optimizer> {
    match v {
        Some(v) => cx.choice(v, key, &["bfgs", "fire"]).map(|o| {
            if o == "fire" {
                Optimizer::Fire
            } else {
                Optimizer::Bfgs
            }
        }),
        None => Some(Optimizer::Bfgs),
    }
}

fn relax(cx: &mut Ctx<'_>, s: &Spanned<RawRelax>) -> Option<RelaxSettings> {
    let r = s.get_ref();
    let optimizer = optimizer(cx, &r.optimizer, "[relax] optimizer");
    let fmax = match &r.fmax {
        Some(v) => cx.positive(v, "[relax] fmax"),
        None => Some(0.05),
    };
    let steps = match &r.steps {
        Some(v) => cx.usize_at_least(v, "[relax] steps", 1),
        None => Some(200),
    };
    let start_iteration = match &r.start_iteration {
        Some(v) => cx.u64_at_least(v, "[relax] start_iteration", 0),
        None => Some(0),
    };
    Some(RelaxSettings {
        optimizer: optimizer?,
        fmax: fmax?,
        steps: steps?,
        start_iteration: start_iteration?,
    })
}

fn evaluator(cx: &mut Ctx<'_>, s: &Spanned<RawEvaluator>) -> Option<EvaluatorSettings> {
    let r = s.get_ref();
    let kind = match &r.kind {
        Some(v) => cx.choice(v, "[evaluator] kind", &["single_point", "relax"])?,
        None => "single_point".to_owned(),
    };
    let count = match &r.count {
        Some(v) => Some(cx.usize_at_least(v, "[evaluator] count", 1)?),
        None => None,
    };
    let kind = if kind == "single_point" {
        cx.not_for_kind(
            "[evaluator]",
            "single_point",
            &[
                ("optimizer", &r.optimizer),
                ("fmax", &r.fmax),
                ("steps", &r.steps),
            ],
        );
        EvaluatorKind::SinglePoint
    } else {
        let optimizer = optimizer(cx, &r.optimizer, "[evaluator] optimizer");
        let fmax = match &r.fmax {
            Some(v) => cx.positive(v, "[evaluator] fmax"),
            None => Some(0.05),
        };
        let steps = match &r.steps {
            Some(v) => cx.usize_at_least(v, "[evaluator] steps", 1),
            None => Some(200),
        };
        EvaluatorKind::Relax {
            optimizer: optimizer?,
            fmax: fmax?,
            steps: steps?,
        }
    };
    Some(EvaluatorSettings { kind, count })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steiner_volume_of_a_box() {
        let c = [[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 4.0]];
        assert_eq!(grown_volume(&c, 0.0), 24.0);
        let rho: f64 = 0.5;
        let pi = std::f64::consts::PI;
        let expected = 24.0
            + 2.0 * (6.0 + 12.0 + 8.0) * rho
            + pi * 9.0 * rho * rho
            + 4.0 / 3.0 * pi * rho.powi(3);
        assert!((grown_volume(&c, rho) - expected).abs() < 1e-12);
        // A sheared cell with the same edge lengths' volume is smaller, never larger.
        let s = [[2.0, 0.0, 0.0], [1.0, 8.0f64.sqrt(), 0.0], [0.0, 0.0, 4.0]];
        assert!(grown_volume(&s, rho) < expected);
    }

    #[test]
    fn fractional_coordinates() {
        let c = [[2.0, 0.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 4.0]];
        let s = fractional(&c, [1.5, 1.0, 2.0]);
        assert!(
            (s[0] - 0.5).abs() < 1e-12 && (s[1] - 0.5).abs() < 1e-12 && (s[2] - 0.5).abs() < 1e-12
        );
    }
}
