//! The one interface every potential implements.

use crate::atoms::Atoms;

/// What a calculator computed for one structure.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// Total potential energy (eV).
    pub energy: f64,
    /// Forces, −∂E/∂positions, one row per atom (eV/Å).
    pub forces: Vec<[f64; 3]>,
    /// Stress in Voigt order (xx, yy, zz, yz, xz, xy), eV/Å³, when it was asked for
    /// and is defined for this structure (a cell of rank 3).
    pub stress: Option<[f64; 6]>,
    /// Per-atom energies as the potential partitions them, when it does (eV).
    pub energies: Option<Vec<f64>>,
}

/// Why a calculation could not be done.
#[derive(Debug, thiserror::Error)]
pub enum CalcError {
    /// The structure holds an element the potential has no parameters for.
    #[error("{calculator}: no parameters for element {symbol} (Z = {number}); known: {known}")]
    UnsupportedElement {
        /// Calculator name.
        calculator: &'static str,
        /// Chemical symbol of the element.
        symbol: String,
        /// Atomic number.
        number: u8,
        /// Comma-separated list of supported symbols.
        known: String,
    },
    /// The structure cannot be evaluated (e.g. two atoms on top of each other).
    #[error("{calculator}: {message}")]
    Invalid {
        /// Calculator name.
        calculator: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// A potential: energy and forces (and stress where defined) of a structure.
///
/// `&mut self` lets implementations keep scratch buffers between calls, which is
/// what makes thousands of calls inside a relaxation cheap.
pub trait Calculator: Send {
    /// Short name used in messages and outputs (`"emt"`, `"lj"`).
    fn name(&self) -> &'static str;

    /// Energy and forces of `atoms`; stress too when `stress` is true and the cell
    /// has rank 3.
    fn calculate(&mut self, atoms: &Atoms, stress: bool) -> Result<Evaluation, CalcError>;

    /// Forgets anything carried over from earlier structures (a neighbour list kept
    /// for reuse), keeping allocations: after `reset`, the next result is bit for
    /// bit what a fresh calculator gives. Reusing a list for a nearby structure sums
    /// the same pairs in another order, which changes last bits.
    fn reset(&mut self) {}
}
