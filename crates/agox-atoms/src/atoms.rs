//! The `Atoms` structure type and its constructors, element bookkeeping and
//! periodic-geometry methods (the cell algebra itself lives in [`crate::geometry`]).

use std::collections::BTreeMap;

use crate::elements;
use crate::formula::{Formula, FormulaError};
use crate::geometry::{self, GeometryError, Mat3, MinimumImage, Vec3};

/// A free-form value in a structure's info map (extxyz comment keys).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum InfoValue {
    /// An integer.
    Int(i64),
    /// A real number.
    Float(f64),
    /// A boolean (`T`/`F` in extxyz).
    Bool(bool),
    /// Text.
    Str(String),
    /// A list of reals.
    Floats(Vec<f64>),
    /// A list of integers (extxyz `key="1 2 3"`).
    Ints(Vec<i64>),
    /// A list of booleans (extxyz `key="T F T"`).
    Bools(Vec<bool>),
}

/// An atomic structure: what ASE calls `Atoms`, reduced to what a search needs.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Atoms {
    /// Atomic numbers, one per atom.
    pub numbers: Vec<u8>,
    /// Cartesian positions (Å), one row per atom.
    pub positions: Vec<[f64; 3]>,
    /// Lattice vectors as rows (Å); all zeros means no cell.
    pub cell: [[f64; 3]; 3],
    /// Periodicity along each lattice vector.
    pub pbc: [bool; 3],
    /// Indices of atoms held fixed by optimizers (sorted, unique).
    pub fixed: Vec<usize>,
    /// Free-form key/value data (energy, steps, ids, ...).
    pub info: BTreeMap<String, InfoValue>,
}

impl Atoms {
    /// Number of atoms.
    pub fn len(&self) -> usize {
        self.numbers.len()
    }

    /// True when there are no atoms.
    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty()
    }

    /// Atoms with these atomic numbers at these Cartesian positions (Å), no cell,
    /// no periodicity, nothing fixed, empty info.
    pub fn new(numbers: Vec<u8>, positions: Vec<Vec3>) -> Result<Self, AtomsError> {
        if numbers.len() != positions.len() {
            return Err(AtomsError::LengthMismatch {
                numbers: numbers.len(),
                positions: positions.len(),
            });
        }
        if let Some((index, &number)) = numbers
            .iter()
            .enumerate()
            .find(|(_, z)| elements::symbol(**z).is_none())
        {
            return Err(AtomsError::UnknownNumber { index, number });
        }
        Ok(Atoms {
            numbers,
            positions,
            ..Atoms::default()
        })
    }

    /// Atoms from chemical symbols (`["Au", "Cu"]`, case-sensitive as ASE) and positions.
    pub fn from_symbols<S: AsRef<str>>(
        symbols: &[S],
        positions: Vec<Vec3>,
    ) -> Result<Self, AtomsError> {
        let mut numbers = Vec::with_capacity(symbols.len());
        for (index, s) in symbols.iter().enumerate() {
            let s = s.as_ref();
            let z = elements::number(s).ok_or_else(|| AtomsError::UnknownSymbol {
                index,
                symbol: s.to_string(),
            })?;
            numbers.push(z);
        }
        Atoms::new(numbers, positions)
    }

    /// Atoms from a chemical formula (`"Au8Cu4"`, `"H2O"`; see [`crate::formula`]) and
    /// one position per atom, in formula order (what ASE's `Atoms("H2O", positions)` does).
    pub fn from_formula(formula: &str, positions: Vec<Vec3>) -> Result<Self, AtomsError> {
        Atoms::new(Formula::parse(formula)?.numbers(), positions)
    }

    /// A periodic fcc crystal of element `number`: `repeat` conventional cubic cells
    /// of edge `a` (Å), four atoms each (ASE's `bulk(..., cubic=True).repeat(...)`
    /// atom order: cell by cell, basis (0,0,0), (0,½,½), (½,0,½), (½,½,0)).
    pub fn fcc_cubic(number: u8, a: f64, repeat: [usize; 3]) -> Self {
        const BASIS: [Vec3; 4] = [
            [0.0, 0.0, 0.0],
            [0.0, 0.5, 0.5],
            [0.5, 0.0, 0.5],
            [0.5, 0.5, 0.0],
        ];
        let mut positions = Vec::with_capacity(4 * repeat.iter().product::<usize>());
        for i in 0..repeat[0] {
            for j in 0..repeat[1] {
                for k in 0..repeat[2] {
                    for b in BASIS {
                        positions.push([
                            (i as f64 + b[0]) * a,
                            (j as f64 + b[1]) * a,
                            (k as f64 + b[2]) * a,
                        ]);
                    }
                }
            }
        }
        let edge = |n: usize| n as f64 * a;
        Atoms {
            numbers: vec![number; positions.len()],
            positions,
            cell: [
                [edge(repeat[0]), 0.0, 0.0],
                [0.0, edge(repeat[1]), 0.0],
                [0.0, 0.0, edge(repeat[2])],
            ],
            pbc: [true; 3],
            ..Default::default()
        }
    }

    /// The same atoms with this cell (rows are lattice vectors, Å) and periodicity.
    pub fn with_cell(mut self, cell: Mat3, pbc: [bool; 3]) -> Self {
        self.cell = cell;
        self.pbc = pbc;
        self
    }

    /// The same atoms with these atoms held fixed (see [`Atoms::set_fixed`]).
    pub fn with_fixed(
        mut self,
        fixed: impl IntoIterator<Item = usize>,
    ) -> Result<Self, AtomsError> {
        self.set_fixed(fixed)?;
        Ok(self)
    }

    /// Hold these atoms fixed (replaces the previous set; duplicates are merged).
    /// Errors, leaving `self` unchanged, if an index is out of range.
    pub fn set_fixed(&mut self, fixed: impl IntoIterator<Item = usize>) -> Result<(), AtomsError> {
        let mut v: Vec<usize> = fixed.into_iter().collect();
        if let Some(&index) = v.iter().find(|i| **i >= self.len()) {
            return Err(AtomsError::FixedOutOfRange {
                index,
                len: self.len(),
            });
        }
        v.sort_unstable();
        v.dedup();
        self.fixed = v;
        Ok(())
    }

    /// True if atom `i` is held fixed (`fixed` is kept sorted, so this is a binary search).
    pub fn is_fixed(&self, i: usize) -> bool {
        self.fixed.binary_search(&i).is_ok()
    }

    /// Chemical symbols, one per atom; `"X"` for an atomic number outside 1..=118.
    pub fn symbols(&self) -> Vec<&'static str> {
        self.numbers
            .iter()
            .map(|z| elements::symbol(*z).unwrap_or("X"))
            .collect()
    }

    /// Atomic masses (u) as ASE has them; 1.0 (ASE's dummy `X`) for unknown numbers.
    pub fn masses(&self) -> Vec<f64> {
        self.numbers
            .iter()
            .map(|z| elements::mass(*z).unwrap_or(elements::ATOMIC_MASSES[0]))
            .collect()
    }

    /// The chemical formula in Hill order, as ASE's `get_chemical_formula()` (default
    /// `mode='hill'`): with carbon present, C then H then the rest alphabetically;
    /// without carbon, all elements alphabetically. Counts of 1 are omitted:
    /// `"Au8Cu4"`, `"CH4"`, `"HNa"`, `"AuCu"`; empty atoms give `""`.
    pub fn chemical_formula(&self) -> String {
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        for s in self.symbols() {
            *counts.entry(s).or_insert(0) += 1;
        }
        let mut out = String::new();
        let mut push = |s: &str, n: usize| {
            out.push_str(s);
            if n > 1 {
                out.push_str(&n.to_string());
            }
        };
        if let Some(nc) = counts.remove("C") {
            push("C", nc);
            if let Some(nh) = counts.remove("H") {
                push("H", nh);
            }
        }
        // BTreeMap order on &str is byte order, which for symbols is ASE's `sorted()`.
        for (s, n) in counts {
            push(s, n);
        }
        out
    }

    /// Cell volume (Å³), |det(cell)|; 0 for a cell of rank < 3.
    pub fn volume(&self) -> f64 {
        geometry::volume(&self.cell)
    }

    /// Inverse of the cell matrix, or `None` if the cell is singular.
    pub fn cell_inverse(&self) -> Option<Mat3> {
        geometry::inverse(&self.cell)
    }

    /// Fractional coordinates (`r = f · cell`), using the completed cell (missing
    /// vectors replaced by orthogonal unit vectors, as ASE does).
    pub fn scaled_positions(&self) -> Result<Vec<Vec3>, GeometryError> {
        geometry::fractional(&self.cell, &self.positions)
    }

    /// Set positions from fractional coordinates (one per atom; the completed cell is used).
    pub fn set_scaled_positions(&mut self, scaled: &[Vec3]) -> Result<(), AtomsError> {
        if scaled.len() != self.len() {
            return Err(AtomsError::LengthMismatch {
                numbers: self.len(),
                positions: scaled.len(),
            });
        }
        self.positions = geometry::cartesian(&self.cell, scaled);
        Ok(())
    }

    /// Move every atom into the cell along the periodic axes (fractional coordinates
    /// in [−1e-7, 1−1e-7), as ASE's `wrap()`); non-periodic axes are untouched.
    pub fn wrap(&mut self) -> Result<(), GeometryError> {
        self.positions = geometry::wrap_positions(&self.cell, self.pbc, &self.positions)?;
        Ok(())
    }

    /// Translate every atom by `v` (Å).
    pub fn translate(&mut self, v: Vec3) {
        for p in &mut self.positions {
            *p = geometry::add(*p, v);
        }
    }

    /// Centre the atoms in the cell along all three axes, as ASE's `center(vacuum)`;
    /// see [`Atoms::center_axes`].
    pub fn center(&mut self, vacuum: Option<f64>) -> Result<(), GeometryError> {
        self.center_axes(vacuum, [true; 3])
    }

    /// Centre the atoms along the chosen axes so that the empty space on both sides of
    /// each is equal, measured perpendicular to the cell faces (ASE's `center`).
    ///
    /// With `vacuum = Some(v)` the cell vector along each chosen axis is also rescaled
    /// (keeping its direction) so that exactly `v` Å of space separates the atoms from
    /// each face; a missing (zero) cell vector is first completed to a unit vector, so
    /// a bare cluster gets a box of extent + 2v. With `None` the cell is not changed;
    /// along an axis with no cell vector the atoms are then centred about the origin.
    pub fn center_axes(
        &mut self,
        vacuum: Option<f64>,
        axes: [bool; 3],
    ) -> Result<(), GeometryError> {
        let full = geometry::complete_cell(&self.cell);
        if geometry::inverse(&full).is_none() {
            return Err(GeometryError::SingularCell { cell: self.cell });
        }
        let mut translation = [0.0; 3];
        let mut new_cell = self.cell;
        for i in 0..3 {
            if !axes[i] {
                continue;
            }
            // Unit normal of the face spanned by the two other vectors, pointing along cell[i].
            let mut n = geometry::cross(full[(i + 1) % 3], full[(i + 2) % 3]);
            n = geometry::scale(1.0 / geometry::norm(n), n);
            if geometry::dot(n, full[i]) < 0.0 {
                n = geometry::scale(-1.0, n);
            }
            let (p0, p1) = if self.positions.is_empty() {
                (0.0, 0.0)
            } else {
                self.positions
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                        let s = geometry::dot(*p, n);
                        (lo.min(s), hi.max(s))
                    })
            };
            let height = geometry::dot(full[i], n);
            let length = geometry::norm(full[i]);
            let grow = match vacuum {
                Some(v) => (p1 - p0 + 2.0 * v) - height,
                None => 0.0,
            };
            // Perpendicular shift that puts the atoms midway, converted to a step along cell[i].
            let shift_perp = 0.5 * ((grow + height - p1) - p0);
            let cos_phi = height / length;
            if vacuum.is_some() {
                new_cell[i] = geometry::scale(1.0 + grow / cos_phi / length, full[i]);
            }
            translation = geometry::add(
                translation,
                geometry::scale(shift_perp / cos_phi / length, full[i]),
            );
            if new_cell[i].iter().all(|x| *x == 0.0) {
                // Centred along a stand-in unit vector: recentre about the origin (ASE).
                translation[i] -= 0.5;
            }
        }
        self.cell = new_cell;
        self.translate(translation);
        Ok(())
    }

    /// Append the atoms of `other` (numbers, positions, fixed flags). This structure's
    /// cell, pbc and info are kept; `other`'s are ignored.
    pub fn extend(&mut self, other: &Atoms) {
        let offset = self.len();
        self.numbers.extend_from_slice(&other.numbers);
        self.positions.extend_from_slice(&other.positions);
        self.fixed.extend(other.fixed.iter().map(|i| i + offset));
        self.fixed.sort_unstable();
        self.fixed.dedup();
    }

    /// Minimum-image helper for this structure's cell and pbc (build once, query often).
    pub fn minimum_image(&self) -> Result<MinimumImage, GeometryError> {
        MinimumImage::new(&self.cell, self.pbc)
    }

    /// Vector from atom `i` to atom `j`, the shortest periodic image when `mic`.
    pub fn vector(&self, i: usize, j: usize, mic: bool) -> Result<Vec3, GeometryError> {
        let pi = self.position(i)?;
        let pj = self.position(j)?;
        let d = geometry::sub(pj, pi);
        if mic && self.pbc.iter().any(|p| *p) {
            Ok(self.minimum_image()?.apply(d))
        } else {
            Ok(d)
        }
    }

    /// Distance between atoms `i` and `j` (Å); to the nearest periodic image when `mic`.
    pub fn distance(&self, i: usize, j: usize, mic: bool) -> Result<f64, GeometryError> {
        Ok(geometry::norm(self.vector(i, j, mic)?))
    }

    /// All pairwise distances as an N×N matrix (zeros on the diagonal); minimum-image
    /// distances when `mic`.
    pub fn all_distances(&self, mic: bool) -> Result<Vec<Vec<f64>>, GeometryError> {
        let n = self.len();
        let mi = if mic && self.pbc.iter().any(|p| *p) {
            Some(self.minimum_image()?)
        } else {
            None
        };
        let mut out = vec![vec![0.0; n]; n];
        for (i, pi) in self.positions.iter().enumerate() {
            for (j, pj) in self.positions.iter().enumerate().skip(i + 1) {
                let mut d = geometry::sub(*pj, *pi);
                if let Some(mi) = &mi {
                    d = mi.apply(d);
                }
                let r = geometry::norm(d);
                out[i][j] = r;
                out[j][i] = r;
            }
        }
        Ok(out)
    }

    /// Smallest distance between any two atoms, periodic images included: the minimum
    /// over pairs of their minimum-image distance and, when some axis is periodic, the
    /// distance from an atom to its own nearest image. `None` when there is no pair.
    pub fn min_distance(&self) -> Result<Option<f64>, GeometryError> {
        let n = self.len();
        let mi = self.minimum_image()?;
        let mut best = if n > 0 {
            mi.shortest_lattice_vector()
        } else {
            None
        };
        for i in 0..n {
            for j in (i + 1)..n {
                let r =
                    geometry::norm(mi.apply(geometry::sub(self.positions[j], self.positions[i])));
                best = Some(best.map_or(r, |b: f64| b.min(r)));
            }
        }
        Ok(best)
    }

    fn position(&self, i: usize) -> Result<Vec3, GeometryError> {
        self.positions
            .get(i)
            .copied()
            .ok_or(GeometryError::IndexOutOfRange {
                index: i,
                len: self.len(),
            })
    }
}

/// Why an [`Atoms`] could not be built or changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AtomsError {
    /// The per-atom lists have different lengths.
    #[error("{numbers} atomic numbers but {positions} positions")]
    LengthMismatch {
        /// Number of atoms (atomic numbers).
        numbers: usize,
        /// Number of positions given.
        positions: usize,
    },
    /// An atomic number outside 1..=118.
    #[error("atom {index}: atomic number {number} is not an element (valid: 1..=118)")]
    UnknownNumber {
        /// Atom index.
        index: usize,
        /// The number given.
        number: u8,
    },
    /// A chemical symbol that is not an element.
    #[error("atom {index}: unknown chemical symbol {symbol:?}")]
    UnknownSymbol {
        /// Atom index.
        index: usize,
        /// The symbol given.
        symbol: String,
    },
    /// A fixed-atom index past the end.
    #[error("fixed atom index {index} out of range for {len} atoms")]
    FixedOutOfRange {
        /// The index given.
        index: usize,
        /// The number of atoms.
        len: usize,
    },
    /// The formula did not parse.
    #[error(transparent)]
    Formula(#[from] FormulaError),
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    fn load(name: &str) -> serde_json::Value {
        let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn mat(v: &serde_json::Value) -> Vec<Vec<f64>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            })
            .collect()
    }

    fn v3(v: &serde_json::Value) -> Vec<[f64; 3]> {
        mat(v).into_iter().map(|r| [r[0], r[1], r[2]]).collect()
    }

    fn atoms_of(case: &serde_json::Value) -> Atoms {
        let numbers = case["numbers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|z| z.as_u64().unwrap() as u8)
            .collect();
        let cell = v3(&case["cell"]);
        let pbc: Vec<bool> = case["pbc"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_bool().unwrap())
            .collect();
        Atoms::new(numbers, v3(&case["positions"]))
            .unwrap()
            .with_cell([cell[0], cell[1], cell[2]], [pbc[0], pbc[1], pbc[2]])
    }

    fn assert_rows_close(a: &[[f64; 3]], b: &[[f64; 3]], tol: f64, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            for k in 0..3 {
                assert!(close(x[k], y[k], tol), "{what}: row {i}: {x:?} vs {y:?}");
            }
        }
    }

    #[test]
    fn element_tables_match_ase_fixture() {
        let d = load("ase_elements.json");
        let syms = d["symbols"].as_array().unwrap();
        let masses = d["masses"].as_array().unwrap();
        let radii = d["covalent_radii"].as_array().unwrap();
        assert_eq!(syms.len(), 119);
        for z in 1..=118u8 {
            let i = usize::from(z);
            assert_eq!(elements::symbol(z), syms[i].as_str(), "Z={z}");
            assert_eq!(elements::mass(z), masses[i].as_f64(), "mass Z={z}");
            assert_eq!(
                elements::covalent_radius(z),
                radii[i].as_f64(),
                "radius Z={z}"
            );
        }
    }

    #[test]
    fn geometry_matches_ase() {
        let d = load("ase_geometry.json");
        for case in d["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let a = atoms_of(case);
            assert_eq!(
                a.chemical_formula(),
                case["formula"].as_str().unwrap(),
                "{name}"
            );
            assert!(
                close(a.volume(), case["volume"].as_f64().unwrap(), 1e-12),
                "{name}"
            );
            for (mic, key) in [(true, "distances_mic"), (false, "distances")] {
                let want = mat(&case[key]);
                let got = a.all_distances(mic).unwrap();
                for i in 0..a.len() {
                    for j in 0..a.len() {
                        assert!(close(got[i][j], want[i][j], 1e-10), "{name} {key} {i} {j}");
                        assert!(close(a.distance(i, j, mic).unwrap(), want[i][j], 1e-10));
                    }
                }
            }
            if let Some(s) = case.get("scaled") {
                assert_rows_close(&a.scaled_positions().unwrap(), &v3(s), 1e-12, name);
                let mut b = a.clone();
                b.set_scaled_positions(&v3(s)).unwrap();
                assert_rows_close(&b.positions, &a.positions, 1e-12, name);
            }
            let mut w = a.clone();
            w.wrap().unwrap();
            assert_rows_close(
                &w.positions,
                &v3(&case["wrapped"]),
                1e-12,
                &format!("{name} wrap"),
            );
            let mut c = a.clone();
            c.center(None).unwrap();
            assert_rows_close(
                &c.positions,
                &v3(&case["centered"]),
                1e-12,
                &format!("{name} center"),
            );
            let mut c = a.clone();
            c.center(Some(4.5)).unwrap();
            assert_rows_close(
                &c.positions,
                &v3(&case["centered_vacuum_positions"]),
                1e-12,
                &format!("{name} center(4.5)"),
            );
            assert_rows_close(
                &c.cell,
                &v3(&case["centered_vacuum_cell"]),
                1e-12,
                &format!("{name} cell"),
            );
        }
    }

    #[test]
    fn min_distance_matches_reference_data() {
        for file in ["emt.json", "lj.json"] {
            let path = format!(
                "{}/../../tests/reference/{file}",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let d: serde_json::Value = serde_json::from_str(&text).unwrap();
            let mut checked = 0;
            for e in d["entries"].as_array().unwrap() {
                let Some(want) = e.get("min_distance").and_then(|v| v.as_f64()) else {
                    continue;
                };
                let a = atoms_of(e);
                let got = a.min_distance().unwrap().unwrap();
                assert!(
                    close(got, want, 1e-10),
                    "{file} {}: {got} vs {want}",
                    e["id"]
                );
                checked += 1;
            }
            assert!(checked >= 10, "{file}: only {checked} entries checked");
        }
    }

    #[test]
    fn constructors_and_errors() {
        let a =
            Atoms::from_formula("H2O", vec![[0.0; 3], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).unwrap();
        assert_eq!(a.numbers, vec![1, 1, 8]);
        assert_eq!(a.symbols(), vec!["H", "H", "O"]);
        assert_eq!(a.chemical_formula(), "H2O");
        assert_eq!(a.masses()[2], 15.999);
        let b = Atoms::from_symbols(&["Cu", "Au"], vec![[0.0; 3], [2.5, 0.0, 0.0]]).unwrap();
        assert_eq!(b.numbers, vec![29, 79]);
        assert_eq!(b.chemical_formula(), "AuCu");
        assert!(matches!(
            Atoms::new(vec![1, 2], vec![[0.0; 3]]),
            Err(AtomsError::LengthMismatch {
                numbers: 2,
                positions: 1
            })
        ));
        assert!(matches!(
            Atoms::new(vec![1, 0], vec![[0.0; 3]; 2]),
            Err(AtomsError::UnknownNumber {
                index: 1,
                number: 0
            })
        ));
        assert!(matches!(
            Atoms::from_symbols(&["Cu", "Qq"], vec![[0.0; 3]; 2]),
            Err(AtomsError::UnknownSymbol { index: 1, .. })
        ));
        assert!(matches!(
            Atoms::from_formula("Au2", vec![[0.0; 3]]),
            Err(AtomsError::LengthMismatch { .. })
        ));
        assert!(matches!(
            Atoms::from_formula("Aq2", vec![[0.0; 3]; 2]),
            Err(AtomsError::Formula(_))
        ));
        assert_eq!(Atoms::default().chemical_formula(), "");
        let c = Atoms::from_formula("OH2C", vec![[0.0; 3]; 4]).unwrap();
        assert_eq!(c.chemical_formula(), "CH2O");
        let c = Atoms::from_formula("Cu4Au8", vec![[0.0; 3]; 12]).unwrap();
        assert_eq!(c.chemical_formula(), "Au8Cu4");
        let c = Atoms::from_formula("NaH", vec![[0.0; 3]; 2]).unwrap();
        assert_eq!(c.chemical_formula(), "HNa");
    }

    #[test]
    fn fixed_translate_extend() {
        let mut a = Atoms::from_formula("Cu3", vec![[0.0; 3], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
            .unwrap()
            .with_fixed([2, 0, 2])
            .unwrap();
        assert_eq!(a.fixed, vec![0, 2]);
        assert!(a.is_fixed(0) && !a.is_fixed(1) && a.is_fixed(2) && !a.is_fixed(7));
        assert!(matches!(
            a.set_fixed([3]),
            Err(AtomsError::FixedOutOfRange { index: 3, len: 3 })
        ));
        assert_eq!(a.fixed, vec![0, 2]);
        a.translate([1.0, 2.0, 3.0]);
        assert_eq!(a.positions[1], [2.0, 2.0, 3.0]);
        let b = Atoms::from_formula("Au2", vec![[5.0; 3], [6.0; 3]])
            .unwrap()
            .with_fixed([1])
            .unwrap();
        a.info.insert("k".into(), InfoValue::Int(1));
        a.extend(&b);
        assert_eq!(a.numbers, vec![29, 29, 29, 79, 79]);
        assert_eq!(a.fixed, vec![0, 2, 4]);
        assert_eq!(a.positions[4], [6.0; 3]);
        assert_eq!(a.info.len(), 1);
    }

    #[test]
    fn distances_edge_cases() {
        let a = Atoms::from_formula("Cu", vec![[0.0; 3]])
            .unwrap()
            .with_cell(
                [[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 4.0]],
                [true, true, false],
            );
        assert_eq!(a.min_distance().unwrap(), Some(2.0));
        assert!(matches!(
            a.distance(0, 1, true),
            Err(GeometryError::IndexOutOfRange { index: 1, len: 1 })
        ));
        let free = Atoms::from_formula("Cu", vec![[0.0; 3]]).unwrap();
        assert_eq!(free.min_distance().unwrap(), None);
        let bad = free.clone().with_cell([[0.0; 3]; 3], [true; 3]);
        assert!(bad.min_distance().is_err());
        assert!(bad.distance(0, 0, false).is_ok());
        assert_eq!(Atoms::default().all_distances(true).unwrap().len(), 0);
    }
}
