//! A candidate structure: atoms plus what the search knows about where it came from.
//!
//! This is what flows through an iteration (generated → relaxed → evaluated → stored)
//! and what the [`Database`](crate::db::Database) stores. The meta fields mirror the
//! meta information AGOX keeps for a candidate (iteration, generator, parents, number
//! of relaxation steps, template atoms, database id, uuid, time stamp), so that a
//! database we write reads naturally in AGOX's tools.

use agox_atoms::Atoms;
use serde::{Deserialize, Serialize};

/// A structure under consideration by the search, with its (optional) evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The structure. Template atoms (if any) come first: `atoms[..meta.template_len]`.
    pub atoms: Atoms,
    /// Energy from the calculator that evaluated the candidate (eV); `None` before evaluation.
    pub energy: Option<f64>,
    /// Forces (eV/Å), one row per atom; `None` if not computed.
    pub forces: Option<Vec<[f64; 3]>>,
    /// Provenance and bookkeeping.
    pub meta: CandidateMeta,
}

/// Provenance of a candidate: which iteration and generator made it, from which parents,
/// and where it was stored. Field names follow AGOX's meta information where one exists.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CandidateMeta {
    /// Search iteration in which the candidate was created (AGOX column `iteration`).
    pub iteration: u64,
    /// Name of the generator that produced it (e.g. `"random"`, `"rattle"`); AGOX key `generator`.
    pub generator: String,
    /// Database ids of the parent structures the generator modified (empty for `random`).
    pub parents: Vec<i64>,
    /// Number of local-relaxation steps taken (AGOX key `relax_index`), if it was relaxed.
    pub relax_steps: Option<u64>,
    /// Number of template (fixed) atoms at the front of `atoms`; AGOX column `template_indices`
    /// holds `0..template_len`.
    pub template_len: usize,
    /// Row id in the database once stored (AGOX column `id`, 1-based); `None` before.
    pub id: Option<i64>,
    /// A unique identifier (AGOX key `uuid`, also written as `cache_key`). Filled by the
    /// database when storing a candidate that has none.
    pub uuid: Option<String>,
    /// Seconds since the start of the run when the candidate was evaluated
    /// (AGOX key `time_stamp`, used by `agox analysis` for its time axis).
    pub time_stamp: Option<f64>,
    /// Creation time in AGOX's unit (years since 2000-01-01, AGOX column `ctime`). Filled by
    /// the database when storing a candidate that has none.
    pub ctime: Option<f64>,
    /// Energy and force calculations of the real calculator the run had made when
    /// this candidate was stored (relaxations and evaluations, failed ones
    /// included), so a resumed run's count goes on from the database.
    #[serde(default)]
    pub calculator_calls: Option<u64>,
    /// Optimizer steps in the surrogate (the acquisition) the run had made when this
    /// candidate was stored.
    #[serde(default)]
    pub surrogate_steps: Option<u64>,
}

impl Candidate {
    /// A fresh, unevaluated candidate made by `generator` in `iteration`, with
    /// `template_len` template atoms at the front of `atoms`.
    pub fn new(atoms: Atoms, iteration: u64, generator: &str, template_len: usize) -> Self {
        Candidate {
            atoms,
            energy: None,
            forces: None,
            meta: CandidateMeta {
                iteration,
                generator: generator.to_owned(),
                template_len,
                ..CandidateMeta::default()
            },
        }
    }

    /// Number of atoms (template included).
    pub fn len(&self) -> usize {
        self.atoms.len()
    }

    /// True when the candidate has no atoms.
    pub fn is_empty(&self) -> bool {
        self.atoms.is_empty()
    }

    /// Indices of the non-template atoms (the ones a search moves).
    pub fn free_indices(&self) -> std::ops::Range<usize> {
        self.meta.template_len.min(self.len())..self.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_and_free_indices() {
        let atoms = Atoms {
            numbers: vec![79, 79, 29],
            positions: vec![[0.0; 3], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0]],
            ..Atoms::default()
        };
        let c = Candidate::new(atoms, 3, "random", 2);
        assert_eq!(c.len(), 3);
        assert_eq!(c.free_indices(), 2..3);
        assert_eq!(c.meta.iteration, 3);
        assert_eq!(c.meta.generator, "random");
        assert!(c.energy.is_none() && c.meta.id.is_none());
        let json = serde_json::to_string(&c).expect("serialize");
        let back: Candidate = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, c);
    }
}
