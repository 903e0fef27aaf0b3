//! The Lennard-Jones pair potential, matching `ase.calculators.lj.LennardJones`
//! with `smooth=False`.
//!
//! `u(r) = 4ε[(σ/r)¹² − (σ/r)⁶]` for every pair with `r ≤ cutoff`. By default the
//! pair energy is shifted by `u(cutoff)` so that it goes to zero at the cutoff,
//! exactly as ASE does; [`LennardJones::shifted`] switches the shift off (the
//! textbook potential, e.g. for Cambridge Cluster Database energies with a large
//! cutoff). Forces are not affected by the shift. Each pair energy is split half
//! and half between its two atoms for the per-atom energies.

use crate::atoms::Atoms;
use crate::calc::{CalcError, Calculator, Evaluation};
use crate::neighbors::{cell_volume, NeighborError, NeighborList};

/// Lennard-Jones calculator (name `"lj"`).
#[derive(Debug, Clone)]
pub struct LennardJones {
    epsilon: f64,
    sigma: f64,
    cutoff: f64,
    shifted: bool,
    nl: NeighborList,
}

impl LennardJones {
    /// A Lennard-Jones potential with well depth `epsilon`, length scale `sigma`
    /// and pair cutoff `cutoff` (same length unit as the positions).
    ///
    /// The energy shift at the cutoff is **on** by default, matching ASE's
    /// `LennardJones(smooth=False)`; ASE's default cutoff is `3 * sigma`.
    /// Parameters are validated when [`Calculator::calculate`] runs.
    pub fn new(epsilon: f64, sigma: f64, cutoff: f64) -> Self {
        LennardJones {
            epsilon,
            sigma,
            cutoff,
            shifted: true,
            nl: NeighborList::new(cutoff)
                .half()
                .with_skin(0.3 * sigma.abs()),
        }
    }

    /// Chooses whether every pair inside the cutoff is shifted by `−u(cutoff)`
    /// (`true`, the default and ASE's behaviour) or not (`false`).
    pub fn shifted(mut self, shifted: bool) -> Self {
        self.shifted = shifted;
        self
    }

    /// Well depth ε.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// Length scale σ (the pair minimum is at 2^(1/6) σ).
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// Pair cutoff.
    pub fn cutoff(&self) -> f64 {
        self.cutoff
    }

    /// Whether the cutoff shift is applied.
    pub fn is_shifted(&self) -> bool {
        self.shifted
    }

    /// The constant subtracted from each pair inside the cutoff: `u(cutoff)`
    /// when shifted, otherwise 0.
    pub fn pair_shift(&self) -> f64 {
        if self.shifted {
            let sr6 = (self.sigma / self.cutoff).powi(6);
            4.0 * self.epsilon * (sr6 * sr6 - sr6)
        } else {
            0.0
        }
    }

    /// Energy of one pair at distance `r` as this calculator counts it (zero
    /// beyond the cutoff, shift included when enabled).
    pub fn pair_energy(&self, r: f64) -> f64 {
        if r > self.cutoff {
            return 0.0;
        }
        let sr6 = (self.sigma / r).powi(6);
        4.0 * self.epsilon * (sr6 * sr6 - sr6) - self.pair_shift()
    }

    fn invalid(message: String) -> CalcError {
        CalcError::Invalid {
            calculator: "lj",
            message,
        }
    }
}

impl Calculator for LennardJones {
    fn name(&self) -> &'static str {
        "lj"
    }

    fn reset(&mut self) {
        self.nl.invalidate();
    }

    fn calculate(&mut self, atoms: &Atoms, stress: bool) -> Result<Evaluation, CalcError> {
        let (eps, sigma, rc) = (self.epsilon, self.sigma, self.cutoff);
        if !(eps.is_finite() && sigma.is_finite() && sigma > 0.0 && rc.is_finite() && rc > 0.0) {
            return Err(Self::invalid(format!(
                "parameters must be finite with sigma > 0 and cutoff > 0 (epsilon {eps}, sigma {sigma}, cutoff {rc})"
            )));
        }
        let n = atoms.len();
        if atoms.positions.len() != n {
            return Err(Self::invalid(format!(
                "{} atomic numbers but {} positions",
                n,
                atoms.positions.len()
            )));
        }
        self.nl
            .update(atoms)
            .map_err(|e: NeighborError| Self::invalid(e.to_string()))?;
        let e0 = self.pair_shift();
        let rc2 = rc * rc;
        let s2 = sigma * sigma;
        let want_stress = stress;
        let volume = if want_stress {
            cell_volume(&atoms.cell)
        } else {
            None
        };

        let mut energies = vec![0.0; n];
        let mut forces = vec![[0.0; 3]; n];
        let mut virial = [[0.0; 3]; 3];
        let x = &atoms.positions;
        for i in 0..n {
            let xi = x[i];
            for nb in self.nl.neighbors(i) {
                let j = nb.j;
                let d = [
                    x[j][0] + nb.offset[0] - xi[0],
                    x[j][1] + nb.offset[1] - xi[1],
                    x[j][2] + nb.offset[2] - xi[2],
                ];
                let r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
                if r2 > rc2 {
                    continue;
                }
                if r2 == 0.0 {
                    return Err(Self::invalid(format!(
                        "atoms {i} and {j} (image {:?}) are on top of each other",
                        nb.shift
                    )));
                }
                let c6 = (s2 / r2).powi(3);
                let c12 = c6 * c6;
                let e = 4.0 * eps * (c12 - c6) - e0;
                // (du/dr) / r: the pair force on i is du * d.
                let du = -24.0 * eps * (2.0 * c12 - c6) / r2;
                let f = [du * d[0], du * d[1], du * d[2]];
                energies[i] += 0.5 * e;
                energies[j] += 0.5 * e;
                for k in 0..3 {
                    forces[i][k] += f[k];
                    forces[j][k] -= f[k];
                }
                if volume.is_some() {
                    for (a, row) in virial.iter_mut().enumerate() {
                        for (b, v) in row.iter_mut().enumerate() {
                            *v += f[a] * d[b];
                        }
                    }
                }
            }
        }
        let energy = energies.iter().sum();
        let stress = volume.map(|v| {
            [
                virial[0][0] / v,
                virial[1][1] / v,
                virial[2][2] / v,
                virial[1][2] / v,
                virial[0][2] / v,
                virial[0][1] / v,
            ]
        });
        Ok(Evaluation {
            energy,
            forces,
            stress,
            energies: Some(energies),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop)]
mod tests {
    use super::*;

    fn cluster(positions: Vec<[f64; 3]>) -> Atoms {
        Atoms {
            numbers: vec![18; positions.len()],
            positions,
            ..Default::default()
        }
    }

    #[test]
    fn dimer_at_minimum() {
        let r0 = 2f64.powf(1.0 / 6.0);
        let atoms = cluster(vec![[0.0; 3], [r0, 0.0, 0.0]]);
        let mut lj = LennardJones::new(1.0, 1.0, 100.0).shifted(false);
        let ev = lj.calculate(&atoms, false).unwrap();
        assert!((ev.energy + 1.0).abs() < 1e-14);
        assert!(ev.forces[0][0].abs() < 1e-12);
        assert!(ev.stress.is_none());
        let energies = ev.energies.unwrap();
        assert!((energies[0] + 0.5).abs() < 1e-14 && (energies[1] + 0.5).abs() < 1e-14);
    }

    #[test]
    fn shift_and_cutoff() {
        let mut lj = LennardJones::new(2.0, 1.5, 4.0);
        assert!(lj.is_shifted());
        let e_rc = lj.clone().shifted(false).pair_energy(4.0);
        assert!((lj.pair_shift() - e_rc).abs() < 1e-15);
        assert!(lj.pair_energy(4.0).abs() < 1e-15);
        // A pair beyond the cutoff contributes nothing, inside it contributes u - u(rc).
        let atoms = cluster(vec![[0.0; 3], [3.0, 0.0, 0.0], [7.5, 0.0, 0.0]]);
        let ev = lj.calculate(&atoms, false).unwrap();
        let expect = lj.pair_energy(3.0) + lj.pair_energy(4.5);
        assert!(
            (ev.energy - expect).abs() < 1e-13,
            "{} {}",
            ev.energy,
            expect
        );
    }

    #[test]
    fn periodic_simple_cubic_matches_direct_sum() {
        // One atom in a cubic cell: the energy per atom is half the lattice sum.
        let a = 1.1;
        let rc = 2.5;
        let atoms = Atoms {
            numbers: vec![18],
            positions: vec![[0.3, 0.2, 0.1]],
            cell: [[a, 0.0, 0.0], [0.0, a, 0.0], [0.0, 0.0, a]],
            pbc: [true; 3],
            ..Default::default()
        };
        let mut lj = LennardJones::new(1.0, 1.0, rc);
        let ev = lj.calculate(&atoms, true).unwrap();
        let mut sum = 0.0;
        let mut w = 0.0;
        for i in -4i32..=4 {
            for j in -4i32..=4 {
                for k in -4i32..=4 {
                    let r = a * ((i * i + j * j + k * k) as f64).sqrt();
                    if r > 0.0 && r <= rc {
                        sum += 0.5 * lj.pair_energy(r);
                        let sr6 = r.powi(-6);
                        // r du/dr, half per pair, x component share = 1/3 of trace.
                        w += 0.5 * (-24.0 * (2.0 * sr6 * sr6 - sr6)) / 3.0;
                    }
                }
            }
        }
        assert!((ev.energy - sum).abs() < 1e-12);
        assert!(ev.forces[0].iter().all(|f| f.abs() < 1e-12));
        let s = ev.stress.unwrap();
        let p = w / (a * a * a);
        for c in 0..3 {
            assert!((s[c] - p).abs() < 1e-10, "{s:?} {p}");
        }
        for c in 3..6 {
            assert!(s[c].abs() < 1e-10);
        }
    }

    #[test]
    fn overlapping_atoms_are_an_error() {
        let atoms = cluster(vec![[1.0; 3], [1.0; 3]]);
        let mut lj = LennardJones::new(1.0, 1.0, 3.0);
        assert!(matches!(
            lj.calculate(&atoms, false),
            Err(CalcError::Invalid { .. })
        ));
        let mut bad = LennardJones::new(1.0, -1.0, 3.0);
        assert!(bad.calculate(&cluster(vec![[0.0; 3]]), false).is_err());
    }
}
