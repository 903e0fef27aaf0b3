//! `permutation`: AGOX's `PermutationGenerator` — atoms of different species swapped.

use agox_atoms::{elements, Atoms};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{child_of, GenerateError};
use crate::candidate::Candidate;
use crate::environment::{BondRules, Environment, Placement};

/// Swaps the positions of `n_swaps` pairs of placed atoms of different species.
///
/// For each swap: a species `a` is drawn uniformly among the placed atoms' species,
/// then `b ≠ a`; the `a`–`b` pairs are tried in random order and the first whose
/// swapped atoms both satisfy the bond rules with `c1`/`c2` (no atom closer than
/// `c1·(r_i + r_j)`, one within `c2·(r_i + r_j)`; the two swapped atoms are not
/// checked against each other) is swapped. The numbers array is unchanged (positions
/// move), so the composition and the set of positions are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermutationGenerator {
    /// Swaps per candidate (default 1).
    pub n_swaps: usize,
    /// Lower distance factor after a swap (default 0.85, AGOX's fixed value).
    pub c1: f64,
    /// Upper distance factor after a swap (default 1.15, AGOX's fixed value).
    pub c2: f64,
}

impl Default for PermutationGenerator {
    fn default() -> Self {
        PermutationGenerator {
            n_swaps: 1,
            c1: 0.85,
            c2: 1.15,
        }
    }
}

fn symbol(z: u8) -> String {
    elements::symbol(z).unwrap_or("X").to_owned()
}

impl PermutationGenerator {
    /// The name stored in candidates.
    pub const NAME: &'static str = "permutation";

    /// The parent with `n_swaps` pairs of unlike atoms swapped.
    pub fn generate<R: Rng + ?Sized>(
        &self,
        env: &Environment,
        parent: &Candidate,
        rng: &mut R,
    ) -> Result<Atoms, GenerateError> {
        let mut atoms = child_of(Self::NAME, env, parent)?;
        let frame = env
            .frame()
            .map_err(|e| GenerateError::environment(Self::NAME, e))?;
        let t = env.template_len();
        let mut species: Vec<u8> = atoms.numbers[t..].to_vec();
        species.sort_unstable();
        species.dedup();
        match species.len() {
            0 => {
                return Err(GenerateError::NoFreeAtoms {
                    generator: Self::NAME.to_owned(),
                })
            }
            1 => {
                return Err(GenerateError::SingleSpecies {
                    element: symbol(species[0]),
                })
            }
            _ => {}
        }
        let rules = BondRules {
            c1: self.c1,
            c2: self.c2,
        };
        for swap in 0..self.n_swaps {
            let ia = rng.gen_range(0..species.len());
            let mut ib = rng.gen_range(0..species.len() - 1);
            if ib >= ia {
                ib += 1;
            }
            let (a, b) = (species[ia], species[ib]);
            let of = |z: u8| -> Vec<usize> {
                (t..atoms.len())
                    .filter(|&i| atoms.numbers[i] == z)
                    .collect()
            };
            let mut pairs: Vec<(usize, usize)> = of(a)
                .into_iter()
                .flat_map(|i| of(b).into_iter().map(move |j| (i, j)))
                .collect();
            pairs.shuffle(rng);
            let mut done = false;
            for &(i, j) in &pairs {
                let (pi, pj) = (atoms.positions[i], atoms.positions[j]);
                let skip = |k: usize| k == i || k == j;
                // With no third atom there is nothing to bond to: any swap is fine.
                let ok = |pl: Placement| {
                    pl == Placement::Valid || (pl == Placement::Isolated && atoms.len() <= 2)
                };
                if ok(rules.check(&frame, &atoms, pj, atoms.numbers[i], skip))
                    && ok(rules.check(&frame, &atoms, pi, atoms.numbers[j], skip))
                {
                    atoms.positions[i] = pj;
                    atoms.positions[j] = pi;
                    done = true;
                    break;
                }
            }
            if !done {
                return Err(GenerateError::NoValidSwap {
                    swap: swap + 1,
                    of: self.n_swaps,
                    a: symbol(a),
                    b: symbol(b),
                    pairs: pairs.len(),
                });
            }
        }
        Ok(atoms)
    }
}
