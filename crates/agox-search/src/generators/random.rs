//! `random`: AGOX's `RandomGenerator` — atoms placed one by one inside the box.

use agox_atoms::{elements, Atoms};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{unit_vector, GenerateError};
use crate::environment::{covalent_radius, BondRules, Environment, Placement};

/// Places the environment's atoms one at a time, in a random order, inside the
/// confinement box.
///
/// For each atom, up to `attempts` positions are proposed:
/// * the first placed atom, and every atom when `contiguous` is false: a point drawn
///   uniformly in the box;
/// * otherwise: a point at distance `r` from a randomly chosen already-placed
///   (non-template) atom `j`, `r³` uniform in `[(c1·s)³, (c2·s)³]` with
///   `s = r_new + r_j`, in a uniformly random direction.
///
/// A proposal is kept when it lies strictly inside the box, no atom (template
/// included) is closer than `c1·(r_i + r_j)` and at least one is within
/// `c2·(r_i + r_j)` — except for the very first atom of an empty structure, which is
/// free. So with `contiguous = false` atoms may nucleate at several places on a
/// template, but every atom still bonds to something (as in AGOX).
///
/// The placed atoms are returned in formula order (the environment's `numbers`),
/// whatever order they were placed in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomGenerator {
    /// Lower distance factor (default 0.75).
    pub c1: f64,
    /// Upper distance factor (default 1.25).
    pub c2: f64,
    /// Propose new atoms next to placed ones (default true).
    pub contiguous: bool,
    /// Proposals per atom before giving up (default 100).
    pub attempts: usize,
}

impl Default for RandomGenerator {
    fn default() -> Self {
        RandomGenerator {
            c1: 0.75,
            c2: 1.25,
            contiguous: true,
            attempts: 100,
        }
    }
}

impl RandomGenerator {
    /// The name stored in candidates.
    pub const NAME: &'static str = "random";

    /// A new structure: the template (fixed) followed by the placed atoms.
    pub fn generate<R: Rng + ?Sized>(
        &self,
        env: &Environment,
        rng: &mut R,
    ) -> Result<Atoms, GenerateError> {
        let frame = env
            .frame()
            .map_err(|e| GenerateError::environment(Self::NAME, e))?;
        let rules = BondRules {
            c1: self.c1,
            c2: self.c2,
        };
        let t = env.template_len();
        let n = env.numbers.len();
        let mut atoms = env.starting_atoms();
        atoms.numbers.reserve(n);
        atoms.positions.reserve(n);

        // order[k] = index (into env.numbers) of the k-th atom placed
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(rng);

        for (k, &which) in order.iter().enumerate() {
            let z = env.numbers[which];
            let mut placed = None;
            for _ in 0..self.attempts {
                let p = if k == 0 || !self.contiguous {
                    frame.box_point([rng.gen(), rng.gen(), rng.gen()])
                } else {
                    let j = rng.gen_range(t..t + k);
                    let s = covalent_radius(z) + covalent_radius(atoms.numbers[j]);
                    let (lo, hi) = ((self.c1 * s).powi(3), (self.c2 * s).powi(3));
                    let r = if hi > lo { rng.gen_range(lo..hi) } else { lo }.cbrt();
                    let u = unit_vector(rng);
                    let pj = atoms.positions[j];
                    [pj[0] + r * u[0], pj[1] + r * u[1], pj[2] + r * u[2]]
                };
                if !frame.inside_box(p) {
                    continue;
                }
                if atoms.is_empty()
                    || rules.check(&frame, &atoms, p, z, |_| false) == Placement::Valid
                {
                    placed = Some(p);
                    break;
                }
            }
            let Some(p) = placed else {
                return Err(GenerateError::Placement {
                    generator: Self::NAME.to_owned(),
                    atom: k + 1,
                    of: n,
                    element: elements::symbol(z).unwrap_or("X").to_owned(),
                    attempts: self.attempts,
                    c1: self.c1,
                    c2: self.c2,
                });
            };
            atoms.numbers.push(z);
            atoms.positions.push(p);
        }

        // Back to formula order: the atom placed k-th is env.numbers[order[k]].
        let mut positions = vec![[0.0; 3]; n];
        for (k, &which) in order.iter().enumerate() {
            positions[which] = atoms.positions[t + k];
        }
        atoms.positions.truncate(t);
        atoms.positions.extend(positions);
        atoms.numbers.truncate(t);
        atoms.numbers.extend_from_slice(&env.numbers);
        Ok(atoms)
    }
}
