//! Checks that need more than one section: elements the calculator lacks, generators
//! that cannot work in the environment, atoms that cannot fit in the box, iterations
//! without candidates, and settings whose memory would not fit in this machine.

use agox_atoms::{elements, geometry};

use super::generators::{GeneratorKind, GeneratorSettings};
use super::read::Ctx;
use super::tree::{Kind, Table};
use super::{CalculatorSettings, EnvironmentSettings, ModelSettings};
use crate::generators::RandomGenerator;

/// The table of section `name` (element `index` of an array of tables).
pub(super) fn section<'t>(root: &'t Table, name: &str, index: Option<usize>) -> Option<&'t Table> {
    let node = root.get(name)?;
    let node = match (&node.kind, index) {
        (Kind::Array(a), Some(i)) => a.get(i)?,
        (_, None) => node,
        _ => return None,
    };
    match &node.kind {
        Kind::Table(t) => Some(t),
        _ => None,
    }
}

/// Where `key` of a section is written; else where the section starts; else 0.
fn place(root: &Table, name: &str, index: Option<usize>, key: &str) -> usize {
    section(root, name, index).map_or(0, |t| t.get(key).map_or(t.at, |v| v.span.start))
}

/// Elements that ASE's EMT (and ours) has parameters for.
fn emt_supports(z: u8) -> bool {
    agox_atoms::emt::Emt::new().parameters(z).is_some()
}

pub(super) fn calculator_elements(
    cx: &mut Ctx<'_>,
    root: &Table,
    env: &EnvironmentSettings,
    calc: &CalculatorSettings,
) {
    if !matches!(calc, CalculatorSettings::Emt) {
        return;
    }
    let mut bad: Vec<&str> = env
        .numbers
        .iter()
        .chain(env.template.numbers.iter())
        .filter(|&&z| !emt_supports(z))
        .filter_map(|&z| elements::symbol(z))
        .collect();
    bad.sort_unstable();
    bad.dedup();
    if !bad.is_empty() {
        cx.err(
            place(root, "calculator", None, "kind"),
            "[calculator] kind",
            format!(
                "EMT has no parameters for {}; it supports H, C, N, O, Al, Ni, Cu, Pd, Ag, Pt, Au",
                bad.join(", ")
            ),
        );
    }
}

/// The model's descriptor must describe the environment's structures (AGOX's
/// Fingerprint is built for the environment's composition and cell).
pub(super) fn model_in_environment(
    cx: &mut Ctx<'_>,
    root: &Table,
    model: &ModelSettings,
    env: &EnvironmentSettings,
) {
    let template = env.template.clone().with_cell(env.cell, env.pbc);
    if let Err(e) = agox_models::fingerprint::Fingerprint::for_search(
        model.descriptor(),
        &template,
        &env.numbers,
    ) {
        let at = section(root, "model", None)
            .map_or(0, |t| t.get("descriptor").map_or(t.at, |v| v.span.start));
        cx.err(at, "[model] descriptor", format!("{e}"));
    }
}

/// Volume of the parallelepiped `cell` grown by a ball of radius `rho` (Steiner's
/// formula): `V + A·ρ + π(a + b + c)·ρ² + (4/3)πρ³`, with `A` the surface area and
/// `a, b, c` the edge lengths. Exact for any parallelepiped: along each edge direction
/// the exterior dihedral angles of its four edges sum to 2π.
pub(crate) fn grown_volume(cell: &[[f64; 3]; 3], rho: f64) -> f64 {
    use geometry::{cross, norm};
    let area = 2.0
        * (norm(cross(cell[0], cell[1]))
            + norm(cross(cell[1], cell[2]))
            + norm(cross(cell[2], cell[0])));
    let edges = norm(cell[0]) + norm(cell[1]) + norm(cell[2]);
    let pi = std::f64::consts::PI;
    geometry::volume(cell) + area * rho + pi * edges * rho * rho + 4.0 / 3.0 * pi * rho.powi(3)
}

pub(super) fn generators_in_environment(
    cx: &mut Ctx<'_>,
    root: &Table,
    gens: &[GeneratorSettings],
    env: &EnvironmentSettings,
) {
    let n = env.numbers.len();
    for (i, g) in gens.iter().enumerate() {
        let sec = format!("[[generator]] #{}", i + 1);
        match &g.kind {
            GeneratorKind::Rattle { n_rattle, .. } if *n_rattle > n => cx.err(
                place(root, "generator", Some(i), "n_rattle"),
                &format!("{sec} n_rattle"),
                format!("{n_rattle} atoms to rattle but only {n} atoms are placed; expected at most {n}"),
            ),
            GeneratorKind::Permutation { .. } => {
                let first = env.numbers.first();
                if env.numbers.iter().all(|z| Some(z) == first) {
                    cx.err(
                        place(root, "generator", Some(i), "kind"),
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
    let c1 = if c1.is_finite() {
        c1
    } else {
        RandomGenerator::default().c1
    };
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
        cx.err(
            place(root, "environment", None, "symbols"),
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
pub(super) fn schedule_totals(cx: &mut Ctx<'_>, root: &Table, gens: &[GeneratorSettings]) {
    let mut points: Vec<u64> = gens.iter().flat_map(|g| g.count.breakpoints()).collect();
    points.push(0);
    points.sort_unstable();
    points.dedup();
    if let Some(it) = points
        .into_iter()
        .find(|&it| gens.iter().map(|g| g.count.at(it)).sum::<usize>() == 0)
    {
        let at = section(root, "generator", Some(0)).map_or(0, |t| t.at);
        cx.err(
            at,
            "[[generator]] count",
            format!("no generator makes a candidate in iteration {it}; expected a total count ≥ 1 in every iteration"),
        );
    }
}

/// Estimated bytes one candidate of `atoms` atoms holds while an iteration runs: its
/// task request and result frame, the generated, relaxed and evaluated copies
/// (positions, forces, numbers), their queue entries and meta.
pub(crate) fn candidate_bytes(atoms: usize) -> u64 {
    const FIXED: u64 = 1024;
    const PER_ATOM: u64 = 256;
    FIXED + PER_ATOM * atoms as u64
}

/// This machine's physical memory (bytes), when known.
pub(crate) fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// A size in bytes for messages (`6.4 GB`).
pub(crate) fn show_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.1} kB", b / 1e3)
    }
}

/// An iteration's candidates live in memory at once (two iterations when the next
/// one is submitted early): refuse counts whose estimate exceeds the machine.
pub(super) fn memory(
    cx: &mut Ctx<'_>,
    root: &Table,
    gens: &[GeneratorSettings],
    env: &EnvironmentSettings,
    memory: Option<u64>,
) {
    let Some(memory) = memory else { return };
    let atoms = env.numbers.len() + env.template.len();
    let per_candidate = candidate_bytes(atoms);
    let per_iteration: u64 = gens.iter().map(|g| g.count.max() as u64).sum();
    let estimate = per_iteration
        .saturating_mul(per_candidate)
        .saturating_mul(2);
    if estimate <= memory {
        return;
    }
    // Name the generator with the largest count.
    let (i, g) = gens
        .iter()
        .enumerate()
        .max_by_key(|(_, g)| g.count.max())
        .map_or((0, None), |(i, g)| (i, Some(g)));
    let most = memory / per_candidate.saturating_mul(2).max(1);
    cx.err(
        place(root, "generator", Some(i), "count"),
        &format!("[[generator]] #{} count", i + 1),
        format!(
            "{per_iteration} candidates per iteration of {atoms} atoms each need an estimated {} of memory \
             ({} per candidate, two iterations in flight), more than this machine's {}; expected at most \
             about {most} candidates per iteration{}",
            show_bytes(estimate),
            show_bytes(per_candidate),
            show_bytes(memory),
            g.map_or(String::new(), |g| format!(" ({} asks for {})", g.kind.name(), g.count.max())),
        ),
    );
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
    fn memory_is_known_here() {
        // Linux: /proc/meminfo names the machine's memory.
        assert!(machine_memory().is_some_and(|m| m > 1 << 20));
        assert_eq!(show_bytes(6_400_000_000), "6.4 GB");
    }
}
