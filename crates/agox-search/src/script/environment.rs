//! `[environment]`: what to place (the formula), in which cell, inside which box,
//! on which template.

use std::path::{Path, PathBuf};

use agox_atoms::formula::Formula;
use agox_atoms::geometry;
use agox_atoms::Atoms;
use serde::{Deserialize, Serialize};

use super::read::{table, Ctx, Keys};

/// `[environment]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentSettings {
    /// The formula as written (`"Au8Cu4"`).
    pub symbols: String,
    /// Atomic numbers of the atoms to place, in formula order.
    pub numbers: Vec<u8>,
    /// Cell vectors as rows (Å).
    pub cell: [[f64; 3]; 3],
    /// Periodicity along each cell vector.
    pub pbc: [bool; 3],
    /// The box inside which generated atoms must lie.
    pub confinement: Confinement,
    /// Template file (absolute path), if any.
    pub template_path: Option<PathBuf>,
    /// The template's atoms (fixed during the search; its cell and pbc are replaced by
    /// the environment's); empty without a template.
    pub template: Atoms,
}

/// A parallelepiped `corner + s·cell` (0 ≤ s < 1 per vector) in which atoms are placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confinement {
    /// Corner (Å, Cartesian).
    pub corner: [f64; 3],
    /// Edge vectors as rows (Å).
    pub cell: [[f64; 3]; 3],
    /// Directions in which the box is periodic (atoms wrap instead of being confined).
    pub pbc: [bool; 3],
}

const FORMULA: &str = "a chemical formula such as \"Au8Cu4\"";

pub(super) fn read(
    cx: &mut Ctx<'_>,
    mut keys: Keys<'_>,
    dir: &Path,
) -> Option<EnvironmentSettings> {
    let at = keys.at();
    let symbols_v = keys.get("symbols");
    let cell_v = keys.get("cell");
    let pbc_v = keys.get("pbc");
    let confinement_v = keys.get("confinement");
    let template_v = keys.get("template");
    let key = |k: &str| keys.key(k);

    let symbols = match symbols_v {
        Some(v) => cx
            .string(v, &key("symbols"), FORMULA)
            .and_then(|s| match Formula::parse(&s) {
                Ok(f) => Some((s, f.numbers())),
                Err(err) => {
                    cx.err(
                        v.span.start,
                        &key("symbols"),
                        format!("{err}; expected {FORMULA}"),
                    );
                    None
                }
            }),
        None => {
            cx.missing(at, &key("symbols"), FORMULA);
            None
        }
    };
    // `None`: no template; `Some(None)`: a template that could not be read.
    let template = template_v.map(|v| template(cx, v, &key("template"), dir));
    let read_template = template.as_ref().and_then(Option::as_ref);
    let cell = match (cell_v, read_template) {
        (Some(v), _) => cx.cell(v, &key("cell")),
        (None, Some((p, t))) => {
            if geometry::det(&t.cell).abs() < 1e-9 {
                cx.missing(
                    at,
                    &key("cell"),
                    &format!("a cell (the template `{}` has none)", p.display()),
                );
                None
            } else {
                Some(t.cell)
            }
        }
        (None, None) if template.is_some() => None, // the template's error says why
        (None, None) => {
            cx.missing(at, &key("cell"), "3 lengths [a, b, c] or a 3×3 matrix (Å)");
            None
        }
    };
    let pbc = match (pbc_v, read_template) {
        (Some(v), _) => cx.pbc(v, &key("pbc")),
        (None, Some((_, t))) => Some(t.pbc),
        (None, None) => Some([false; 3]),
    };
    let confinement = match (confinement_v, cell, pbc) {
        (None, Some(cell), Some(pbc)) => Some(Confinement {
            corner: [0.0; 3],
            cell,
            pbc,
        }),
        (Some(v), cell, pbc) => table(cx, v, &key("confinement"))
            .and_then(|t| confinement(cx, Keys::nested(key("confinement"), t), cell.as_ref(), pbc)),
        _ => None,
    };
    if !keys.finish(cx) {
        return None;
    }

    let (template_path, mut template) = match template {
        Some(Some((p, t))) => (Some(p), t),
        Some(None) => return None,
        None => (None, Atoms::default()),
    };
    let (cell, pbc) = (cell?, pbc?);
    template.cell = cell;
    template.pbc = pbc;
    template.fixed = (0..template.len()).collect();
    let (symbols, numbers) = symbols?;
    Some(EnvironmentSettings {
        symbols,
        numbers,
        cell,
        pbc,
        confinement: confinement?,
        template_path,
        template,
    })
}

/// Reads the template file (the last frame of an extxyz file, relative to the script).
fn template(
    cx: &mut Ctx<'_>,
    v: &super::tree::Node,
    key: &str,
    dir: &Path,
) -> Option<(PathBuf, Atoms)> {
    let rel = cx.string(v, key, "a path to an extxyz file")?;
    let p = dir.join(&rel);
    let problem = match std::fs::metadata(&p) {
        Ok(m) if m.is_dir() => Some(format!(
            "`{}` is a directory; expected an extxyz file (relative to the script)",
            p.display()
        )),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
            "file `{}` not found; expected an extxyz file (relative to the script)",
            p.display()
        )),
        Err(e) => Some(format!("cannot read `{}`: {e}", p.display())),
    };
    if let Some(problem) = problem {
        cx.err(v.span.start, key, problem);
        return None;
    }
    match agox_atoms::extxyz::read_file(&p) {
        Ok(frames) => match frames.into_iter().last() {
            Some(f) => Some((p, f.atoms)),
            None => {
                cx.err(
                    v.span.start,
                    key,
                    format!("`{}` holds no structure", p.display()),
                );
                None
            }
        },
        Err(err) => {
            cx.err(
                v.span.start,
                key,
                format!("cannot read `{}` as extxyz: {err}", p.display()),
            );
            None
        }
    }
}

fn confinement(
    cx: &mut Ctx<'_>,
    mut keys: Keys<'_>,
    cell: Option<&[[f64; 3]; 3]>,
    env_pbc: Option<[bool; 3]>,
) -> Option<Confinement> {
    let at = keys.at();
    let corner_v = keys.get("corner");
    let size_v = keys.get("size");
    let cell_v = keys.get("cell");
    let pbc_v = keys.get("pbc");
    let key = |k: &str| keys.key(k);

    let corner = match corner_v {
        Some(v) => cx.vec3(v, &key("corner"), false, ["x", "y", "z"]),
        None => Some([0.0; 3]),
    };
    let box_cell = match (size_v, cell_v) {
        (Some(_), Some(v)) => {
            cx.err(
                v.span.start,
                &key("cell"),
                "give either `size` or `cell`, not both",
            );
            None
        }
        (Some(v), None) => cx
            .vec3(v, &key("size"), true, ["a", "b", "c"])
            .map(|s| [[s[0], 0.0, 0.0], [0.0, s[1], 0.0], [0.0, 0.0, s[2]]]),
        (None, Some(v)) => cx.cell(v, &key("cell")),
        (None, None) => cell.copied(),
    };
    let pbc = match (pbc_v, env_pbc) {
        (Some(v), env_pbc) => cx.pbc(v, &key("pbc")).and_then(|p| {
            let env_pbc = env_pbc?;
            if (0..3).any(|k| p[k] && !env_pbc[k]) {
                cx.err(
                    v.span.start,
                    &key("pbc"),
                    "the box can only be periodic along directions where the cell is periodic ([environment] pbc)",
                );
                None
            } else {
                Some(p)
            }
        }),
        (None, p) => p,
    };
    let whole_key = if size_v.is_some() {
        key("size")
    } else {
        keys.name.clone()
    };
    if !keys.finish(cx) {
        return None;
    }
    let (corner, box_cell, pbc, cell) = (corner?, box_cell?, pbc?, cell?);

    // Every corner of the box must lie inside the cell (fractional coordinates in [0, 1]).
    let tol = 1e-6;
    let corners: Vec<[f64; 3]> = (0..8u8)
        .map(|mask| {
            (0..3)
                .filter(|k| mask & (1 << k) != 0)
                .fold(corner, |p, k| geometry::add(p, box_cell[k]))
        })
        .collect();
    let fractional = geometry::fractional(cell, &corners).ok()?;
    for (p, s) in corners.iter().zip(&fractional) {
        if s.iter().any(|&x| !(-tol..=1.0 + tol).contains(&x)) {
            cx.err(
                at,
                &whole_key,
                format!(
                    "the confinement box reaches outside the cell: its corner ({:.3}, {:.3}, {:.3}) Å has \
                     fractional coordinates ({:.3}, {:.3}, {:.3}); expected every corner within [0, 1] of the cell",
                    p[0], p[1], p[2], s[0], s[1], s[2]
                ),
            );
            return None;
        }
    }
    Some(Confinement {
        corner,
        cell: box_cell,
        pbc,
    })
}
