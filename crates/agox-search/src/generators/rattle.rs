//! `rattle`: AGOX's `RattleGenerator` — a few atoms of a parent displaced at random.

use agox_atoms::Atoms;
use rand::seq::index;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{child_of, unit_vector, GenerateError};
use crate::candidate::Candidate;
use crate::environment::{BondRules, Environment, Placement};

/// How the atoms to displace are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RattleSelection {
    /// Exactly `min(n_rattle, placed atoms)` distinct atoms, uniformly (the default).
    #[default]
    Exact,
    /// AGOX's rule: each placed atom independently with probability
    /// `n_rattle / placed atoms` (so `n_rattle` on average, possibly more), at least one.
    Binomial,
}

/// Displaces atoms of a parent (never template atoms).
///
/// Each chosen atom, in random order, gets up to `attempts` proposals
/// `r + d`, `d` uniform in the ball of radius `amplitude` (radius `amplitude·u^(1/3)`,
/// uniform direction). A proposal is kept when it lies strictly inside the box, no
/// other atom is closer than `c1·(r_i + r_j)` and at least one is within
/// `c2·(r_i + r_j)` (checked against the structure as modified so far). An atom with
/// no valid proposal stays where it was, as in AGOX.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RattleGenerator {
    /// Atoms displaced (default 3).
    pub n_rattle: usize,
    /// Largest displacement (Å, default 3.0).
    pub amplitude: f64,
    /// Lower distance factor (default 0.75).
    pub c1: f64,
    /// Upper distance factor (default 1.25).
    pub c2: f64,
    /// Proposals per atom (default 100).
    pub attempts: usize,
    /// How the displaced atoms are chosen (default [`RattleSelection::Exact`]).
    #[serde(default)]
    pub selection: RattleSelection,
}

impl Default for RattleGenerator {
    fn default() -> Self {
        RattleGenerator {
            n_rattle: 3,
            amplitude: 3.0,
            c1: 0.75,
            c2: 1.25,
            attempts: 100,
            selection: RattleSelection::Exact,
        }
    }
}

impl RattleGenerator {
    /// The name stored in candidates.
    pub const NAME: &'static str = "rattle";

    /// Indices (into the structure) of the atoms to displace, in the order they are
    /// displaced.
    pub fn choose<R: Rng + ?Sized>(
        &self,
        template_len: usize,
        n_free: usize,
        rng: &mut R,
    ) -> Vec<usize> {
        if n_free == 0 {
            return Vec::new();
        }
        match self.selection {
            RattleSelection::Exact => index::sample(rng, n_free, self.n_rattle.min(n_free))
                .into_iter()
                .map(|i| template_len + i)
                .collect(),
            RattleSelection::Binomial => {
                let p = self.n_rattle as f64 / n_free as f64;
                let mut chosen: Vec<usize> = (template_len..template_len + n_free)
                    .filter(|_| rng.gen::<f64>() < p)
                    .collect();
                if chosen.is_empty() {
                    chosen.push(rng.gen_range(template_len..template_len + n_free));
                }
                // random order
                let k = chosen.len();
                index::sample(rng, k, k)
                    .into_iter()
                    .map(|i| chosen[i])
                    .collect()
            }
        }
    }

    /// The parent with some atoms displaced.
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
        let n_free = atoms.len() - t;
        if n_free == 0 {
            return Err(GenerateError::NoFreeAtoms {
                generator: Self::NAME.to_owned(),
            });
        }
        let rules = BondRules {
            c1: self.c1,
            c2: self.c2,
        };
        let alone = atoms.len() == 1;
        for i in self.choose(t, n_free, rng) {
            let z = atoms.numbers[i];
            let old = atoms.positions[i];
            for _ in 0..self.attempts {
                let r = self.amplitude * rng.gen::<f64>().cbrt();
                let u = unit_vector(rng);
                let p = [old[0] + r * u[0], old[1] + r * u[1], old[2] + r * u[2]];
                if !frame.inside_box(p) {
                    continue;
                }
                if alone || rules.check(&frame, &atoms, p, z, |j| j == i) == Placement::Valid {
                    atoms.positions[i] = p;
                    break;
                }
            }
        }
        Ok(atoms)
    }
}
