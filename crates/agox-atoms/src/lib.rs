//! Atomic structures and the science that acts on them: element data, periodic
//! geometry, neighbour lists, the Lennard-Jones and EMT potentials, the BFGS and
//! FIRE local optimizers, and extxyz input/output compatible with ASE.
//!
//! Units follow ASE: positions in Å, energies in eV, forces in eV/Å, stress in
//! eV/Å³ (Voigt order xx, yy, zz, yz, xz, xy). The cell's rows are lattice vectors.

pub mod atoms;
pub mod calc;
pub mod elements;
pub mod emt;
pub mod extxyz;
pub mod formula;
pub mod geometry;
pub mod lj;
pub mod neighbors;
pub mod optimize;

pub use atoms::{Atoms, InfoValue};
pub use calc::{CalcError, Calculator, Evaluation, ExternalFailure};
