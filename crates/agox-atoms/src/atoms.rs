//! The `Atoms` structure type.

use std::collections::BTreeMap;

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
}
