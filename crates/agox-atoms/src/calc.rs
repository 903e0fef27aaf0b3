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
    /// A calculator running in another process (an i-PI client) failed this
    /// evaluation.
    #[error("{calculator}: {message}")]
    External {
        /// Calculator name.
        calculator: &'static str,
        /// How it failed, which decides whether retrying the structure can help.
        kind: ExternalFailure,
        /// What happened, ending with the external program's last output.
        message: String,
    },
}

/// How an external calculator failed an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExternalFailure {
    /// It could not be started or did not connect, within its restart budget.
    Start,
    /// It was killed by a signal during the evaluation (a crash, the out-of-memory
    /// killer, a SIGKILL): the structure is not to blame, and retrying it on the
    /// restarted program is expected to work.
    Killed,
    /// It ended the evaluation itself, exiting or closing the connection, as a
    /// program does after reporting an error (an SCF that did not converge): the
    /// structure failed.
    Failed,
    /// The evaluation exceeded its time limit; the program was killed.
    TimedOut,
    /// It broke the protocol or returned numbers that are not finite.
    Protocol,
}

impl ExternalFailure {
    /// True when the same structure may succeed if evaluated again: only after a
    /// crash that the structure did not cause ([`ExternalFailure::Killed`]).
    pub fn is_retryable(self) -> bool {
        self == ExternalFailure::Killed
    }
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
