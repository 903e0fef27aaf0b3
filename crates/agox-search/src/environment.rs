//! The search environment: what is fixed (the template), what is placed (the atoms of
//! the formula), the cell, and the confinement box where generators may put atoms.
//!
//! This is AGOX's `Environment` plus the generators' `Confinement` in one serde value,
//! so it can be shipped to the workers inside the generator modules. It also carries
//! the geometric checks every generator shares ([`Environment::inside_box`], the
//! bond-length rules of [`BondRules`]).

use std::ops::Range;

use agox_atoms::elements;
use agox_atoms::geometry::{GeometryError, MinimumImage};
use agox_atoms::optimize::BoxConstraint;
use agox_atoms::Atoms;
use serde::{Deserialize, Serialize};

use crate::script;

/// A parallelepiped `corner + s·cell` (0 < s < 1 along every edge) in which generated
/// atoms must lie. The same box confines the placed atoms during relaxations
/// ([`Environment::box_constraint`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confinement {
    /// Corner (Å, Cartesian).
    pub corner: [f64; 3],
    /// Edge vectors as rows (Å); they span 3-D space (the script guarantees it).
    pub cell: [[f64; 3]; 3],
    /// Edges along which relaxations do not confine (the box is periodic there).
    /// Generators still place atoms inside the box along every edge, as AGOX does.
    pub pbc: [bool; 3],
}

impl From<&script::Confinement> for Confinement {
    fn from(c: &script::Confinement) -> Self {
        Confinement {
            corner: c.corner,
            cell: c.cell,
            pbc: c.pbc,
        }
    }
}

impl Confinement {
    /// Inverse of the edge matrix (rows), or `None` if the box is degenerate.
    fn inverse(&self) -> Option<[[f64; 3]; 3]> {
        agox_atoms::geometry::inverse(&self.cell)
    }
}

/// The fixed part of a search and the atoms to place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// Fixed atoms (possibly none), with the environment's cell and pbc; they come
    /// first in every candidate and never move.
    pub template: Atoms,
    /// Atomic numbers of the atoms to place, in formula order.
    pub numbers: Vec<u8>,
    /// Cell vectors as rows (Å).
    pub cell: [[f64; 3]; 3],
    /// Periodicity along each cell vector.
    pub pbc: [bool; 3],
    /// The box inside which generators place atoms.
    pub confinement: Confinement,
}

impl Environment {
    /// The environment described by a validated script's `[environment]`.
    pub fn from_script(s: &script::EnvironmentSettings) -> Self {
        let mut template = s.template.clone();
        template.cell = s.cell;
        template.pbc = s.pbc;
        Environment {
            template,
            numbers: s.numbers.clone(),
            cell: s.cell,
            pbc: s.pbc,
            confinement: Confinement::from(&s.confinement),
        }
    }

    /// Number of template atoms (they come first in every candidate).
    pub fn template_len(&self) -> usize {
        self.template.len()
    }

    /// Total number of atoms in a candidate: template plus placed atoms.
    pub fn total_len(&self) -> usize {
        self.template.len() + self.numbers.len()
    }

    /// Indices of the placed (search) atoms in a candidate.
    pub fn placed_indices(&self) -> Range<usize> {
        self.template_len()..self.total_len()
    }

    /// The confinement box for relaxations: confines only the placed atoms (indices
    /// `template_len..`), periodic along the confinement's periodic edges.
    pub fn box_constraint(&self) -> BoxConstraint {
        BoxConstraint::new(
            self.confinement.corner,
            self.confinement.cell,
            self.placed_indices().collect(),
        )
        .with_periodic(self.confinement.pbc)
    }

    /// The template with the environment's cell and pbc, every template atom fixed:
    /// the structure generators start from.
    pub fn starting_atoms(&self) -> Atoms {
        let mut atoms = self.template.clone();
        atoms.cell = self.cell;
        atoms.pbc = self.pbc;
        atoms.fixed = (0..atoms.len()).collect();
        atoms.info.clear();
        atoms
    }

    /// Precomputed geometry for the generators' checks (box inverse, minimum image).
    pub fn frame(&self) -> Result<EnvFrame, EnvironmentError> {
        let box_inv = self
            .confinement
            .inverse()
            .ok_or(EnvironmentError::DegenerateBox {
                cell: self.confinement.cell,
            })?;
        let mic = MinimumImage::new(&self.cell, self.pbc)?;
        Ok(EnvFrame {
            corner: self.confinement.corner,
            cell: self.confinement.cell,
            box_inv,
            mic,
        })
    }

    /// Checks that `atoms` has this environment's shape: the template's atoms first
    /// (same numbers), then exactly the atoms to place (same composition).
    pub fn check_structure(&self, atoms: &Atoms) -> Result<(), EnvironmentError> {
        if atoms.len() != self.total_len() {
            return Err(EnvironmentError::WrongSize {
                expected: self.total_len(),
                found: atoms.len(),
            });
        }
        let t = self.template_len();
        if atoms.numbers[..t] != self.template.numbers[..] {
            return Err(EnvironmentError::WrongComposition);
        }
        let mut a = atoms.numbers[t..].to_vec();
        let mut b = self.numbers.clone();
        a.sort_unstable();
        b.sort_unstable();
        if a != b {
            return Err(EnvironmentError::WrongComposition);
        }
        Ok(())
    }
}

/// Why an environment cannot be used, or a structure does not belong to it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnvironmentError {
    /// The confinement box's edges do not span 3-D space.
    #[error("the confinement box is degenerate (edges {cell:?})")]
    DegenerateBox {
        /// The box edges.
        cell: [[f64; 3]; 3],
    },
    /// The cell's periodic vectors are unusable for minimum-image distances.
    #[error("the cell cannot be used for minimum-image distances: {0}")]
    Geometry(GeometryError),
    /// A structure (a parent) has the wrong number of atoms.
    #[error("structure has {found} atoms, the environment needs {expected} (template + placed)")]
    WrongSize {
        /// Template plus placed atoms.
        expected: usize,
        /// Atoms in the structure.
        found: usize,
    },
    /// A structure's template part or composition differs from the environment's.
    #[error("structure's template atoms or composition differ from the environment's")]
    WrongComposition,
}

// By hand, not `#[from]`: the message above already carries the cause, so it must
// not also be the error's `source` (a chain would print it twice).
impl From<GeometryError> for EnvironmentError {
    fn from(e: GeometryError) -> Self {
        EnvironmentError::Geometry(e)
    }
}

/// An environment's geometry, prepared once per generation: the confinement box's
/// inverse and the cell's minimum-image convention.
#[derive(Debug, Clone)]
pub struct EnvFrame {
    corner: [f64; 3],
    cell: [[f64; 3]; 3],
    box_inv: [[f64; 3]; 3],
    mic: MinimumImage,
}

impl EnvFrame {
    /// Fractional coordinates of `r` in the confinement box.
    pub fn box_fractional(&self, r: [f64; 3]) -> [f64; 3] {
        let d = [
            r[0] - self.corner[0],
            r[1] - self.corner[1],
            r[2] - self.corner[2],
        ];
        let mut s = [0.0; 3];
        for (k, sk) in s.iter_mut().enumerate() {
            *sk = d[0] * self.box_inv[0][k] + d[1] * self.box_inv[1][k] + d[2] * self.box_inv[2][k];
        }
        s
    }

    /// True when `r` lies strictly inside the box along every edge (AGOX's
    /// `check_confinement`: `0 < s < 1` for all three fractional coordinates).
    pub fn inside_box(&self, r: [f64; 3]) -> bool {
        self.box_fractional(r).iter().all(|&s| s > 0.0 && s < 1.0)
    }

    /// The point of the box at fractional coordinates `s`.
    pub fn box_point(&self, s: [f64; 3]) -> [f64; 3] {
        let mut r = self.corner;
        for (k, rk) in r.iter_mut().enumerate() {
            *rk += s[0] * self.cell[0][k] + s[1] * self.cell[1][k] + s[2] * self.cell[2][k];
        }
        r
    }

    /// Minimum-image distance between two points (plain distance without periodicity).
    pub fn distance(&self, a: [f64; 3], b: [f64; 3]) -> f64 {
        let v = self.mic.apply([b[0] - a[0], b[1] - a[1], b[2] - a[2]]);
        (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
    }
}

/// The bond-length rules generators enforce (AGOX's `check_new_position`): a new
/// position for an atom of number `z` is valid when every other atom `j` is at least
/// `c1·(r_z + r_j)` away (covalent radii) and at least one is within `c2·(r_z + r_j)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BondRules {
    /// Lower factor: closer than `c1·(r_i + r_j)` is a clash.
    pub c1: f64,
    /// Upper factor: within `c2·(r_i + r_j)` is a bond.
    pub c2: f64,
}

/// Outcome of checking a proposed position against [`BondRules`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// No clash and at least one bond.
    Valid,
    /// Some atom is closer than `c1·(r_i + r_j)`.
    Clash,
    /// No clash, but no atom within `c2·(r_i + r_j)`.
    Isolated,
}

/// Covalent radius (ASE's table) of atomic number `z`; 0.2 Å (ASE's placeholder)
/// for a number without one.
pub fn covalent_radius(z: u8) -> f64 {
    elements::covalent_radius(z).unwrap_or(0.2)
}

impl BondRules {
    /// Checks `position` for an atom of number `z` against the atoms of `atoms`,
    /// skipping the indices for which `skip` is true.
    pub fn check(
        &self,
        frame: &EnvFrame,
        atoms: &Atoms,
        position: [f64; 3],
        z: u8,
        skip: impl Fn(usize) -> bool,
    ) -> Placement {
        let rz = covalent_radius(z);
        let mut bonded = false;
        for (j, (&zj, &pj)) in atoms.numbers.iter().zip(&atoms.positions).enumerate() {
            if skip(j) {
                continue;
            }
            let sum = rz + covalent_radius(zj);
            let d = frame.distance(position, pj);
            if d < self.c1 * sum {
                return Placement::Clash;
            }
            if d <= self.c2 * sum {
                bonded = true;
            }
        }
        if bonded {
            Placement::Valid
        } else {
            Placement::Isolated
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        let template = Atoms::from_symbols(&["Au", "Au"], vec![[1.0, 1.0, 1.0], [3.0, 1.0, 1.0]])
            .expect("atoms");
        Environment {
            template,
            numbers: vec![79, 79, 29],
            cell: [[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]],
            pbc: [true, true, false],
            confinement: Confinement {
                corner: [2.0, 2.0, 2.0],
                cell: [[6.0, 0.0, 0.0], [0.0, 6.0, 0.0], [0.0, 0.0, 4.0]],
                pbc: [false; 3],
            },
        }
    }

    #[test]
    fn starting_atoms_and_box() {
        let e = env();
        let s = e.starting_atoms();
        assert_eq!(s.fixed, vec![0, 1]);
        assert_eq!(s.cell, e.cell);
        assert_eq!(e.placed_indices(), 2..5);
        let b = e.box_constraint();
        assert_eq!(b.indices, vec![2, 3, 4]);
        let f = e.frame().expect("frame");
        assert!(f.inside_box([3.0, 3.0, 3.0]));
        assert!(!f.inside_box([3.0, 3.0, 6.5]));
        assert!(!f.inside_box([2.0, 3.0, 3.0]), "the wall itself is outside");
        let p = f.box_point([0.5, 0.5, 0.5]);
        assert_eq!(p, [5.0, 5.0, 4.0]);
    }

    #[test]
    fn minimum_image_distance() {
        let f = env().frame().expect("frame");
        // periodic along x: 0.5 and 9.5 are 1 Å apart
        assert!((f.distance([0.5, 0.0, 0.0], [9.5, 0.0, 0.0]) - 1.0).abs() < 1e-12);
        // not periodic along z
        assert!((f.distance([0.0, 0.0, 0.5], [0.0, 0.0, 9.5]) - 9.0).abs() < 1e-12);
    }

    #[test]
    fn bond_rules() {
        let e = env();
        let f = e.frame().expect("frame");
        let atoms = e.starting_atoms();
        let rules = BondRules { c1: 0.75, c2: 1.25 };
        let sum = 2.0 * covalent_radius(79);
        // below c1·sum from atom 0: clash
        // 0.7·sum from atom 0 along −x; atom 1 (x = 3) is 3.9 Å away through the
        // periodic x boundary, beyond c2·sum
        let p = [1.0 - 0.7 * sum, 1.0, 1.0];
        assert_eq!(rules.check(&f, &atoms, p, 79, |_| false), Placement::Clash);
        assert_eq!(
            rules.check(&f, &atoms, p, 79, |j| j == 0),
            Placement::Isolated
        );
        // along +y atom 1 is within c2·sum
        let p = [1.0, 1.0 + 0.7 * sum, 1.0];
        assert_eq!(rules.check(&f, &atoms, p, 79, |j| j == 0), Placement::Valid);
        let p = [1.0, 1.0 + sum, 1.0];
        assert_eq!(rules.check(&f, &atoms, p, 79, |_| false), Placement::Valid);
        let p = [1.0, 1.0, 1.0 + 1.3 * sum];
        assert_eq!(
            rules.check(&f, &atoms, p, 79, |_| false),
            Placement::Isolated
        );
    }

    #[test]
    fn check_structure() {
        let e = env();
        let mut a = e.starting_atoms();
        assert!(matches!(
            e.check_structure(&a),
            Err(EnvironmentError::WrongSize { .. })
        ));
        a.numbers.extend([29, 79, 79]);
        a.positions.extend([[0.0; 3]; 3]);
        assert_eq!(e.check_structure(&a), Ok(()));
        a.numbers[3] = 29;
        assert_eq!(
            e.check_structure(&a),
            Err(EnvironmentError::WrongComposition)
        );
    }

    #[test]
    fn serde_round_trip() {
        let e = env();
        let json = serde_json::to_string(&e).expect("ser");
        let back: Environment = serde_json::from_str(&json).expect("de");
        assert_eq!(back, e);
    }
}
