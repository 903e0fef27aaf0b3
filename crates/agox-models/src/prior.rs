//! AGOX's repulsive prior (`agox/models/GPR/priors/repulsive.pyx`, `Repulsive(rcut=3,
//! ratio=0.7)`): a steep pair repulsion the Gaussian process is trained on top of,
//! so that surrogate relaxations do not collapse atoms onto each other.
//!
//! ```text
//! E = Σ_{pairs i<j (images included), 1e-5 < r < rcut} (r + 1 − r_min)^−12,
//! r_min = ratio · (r_cov,i + r_cov,j)
//! ```
//!
//! with ASE's covalent radii (`ase_ga`'s `closest_distances_generator`). Nothing
//! smooths the cut, so the energy steps by (rcut + 1 − r_min)^−12 (≈ 1e-5 eV for
//! Au–Au) when a pair crosses `rcut`, as in AGOX. Every periodic image within
//! `rcut` counts; AGOX's image shells reach at least that far.

use agox_atoms::neighbors::NeighborList;
use agox_atoms::{elements, Atoms};

/// Pairs closer than this (Å) are ignored, as in AGOX.
const R_MIN: f64 = 1e-5;

/// The repulsive prior's settings; [`Default`] gives AGOX's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Repulsive {
    /// Pair cutoff (Å); AGOX `rcut = 3`.
    pub rcut: f64,
    /// `r_min` as a fraction of the covalent-radius sum; AGOX `ratio = 0.7`.
    pub ratio: f64,
}

impl Default for Repulsive {
    fn default() -> Self {
        Self {
            rcut: 3.0,
            ratio: 0.7,
        }
    }
}

/// Why the prior cannot be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PriorError {
    /// Unusable settings.
    #[error("repulsive prior: rcut = {rcut} and ratio = {ratio} must be finite and > 0")]
    Settings {
        /// The cutoff.
        rcut: f64,
        /// The ratio.
        ratio: f64,
    },
    /// An atom whose element has no covalent radius.
    #[error(
        "repulsive prior: atom {index} has atomic number {number}, which has no covalent radius"
    )]
    UnknownElement {
        /// Atom index.
        index: usize,
        /// Its atomic number.
        number: u8,
    },
    /// The geometry cannot be handled (non-finite positions, degenerate cell).
    #[error("repulsive prior: {0}")]
    Geometry(String),
}

/// Scratch of the prior: keep one per caller.
#[derive(Debug, Default, Clone)]
pub struct PriorWorkspace {
    nl: Option<NeighborList>,
    radii: Vec<f64>,
}

impl Repulsive {
    /// The prior's energy (eV).
    pub fn energy(&self, atoms: &Atoms, ws: &mut PriorWorkspace) -> Result<f64, PriorError> {
        self.evaluate(atoms, ws, None)
    }

    /// The prior's energy (eV) and forces (eV/Å; `forces` is resized and overwritten).
    pub fn energy_forces(
        &self,
        atoms: &Atoms,
        ws: &mut PriorWorkspace,
        forces: &mut Vec<[f64; 3]>,
    ) -> Result<f64, PriorError> {
        forces.clear();
        forces.resize(atoms.len(), [0.0; 3]);
        self.evaluate(atoms, ws, Some(forces))
    }

    fn evaluate(
        &self,
        atoms: &Atoms,
        ws: &mut PriorWorkspace,
        mut forces: Option<&mut Vec<[f64; 3]>>,
    ) -> Result<f64, PriorError> {
        if !(self.rcut.is_finite() && self.rcut > 0.0 && self.ratio.is_finite() && self.ratio > 0.0)
        {
            return Err(PriorError::Settings {
                rcut: self.rcut,
                ratio: self.ratio,
            });
        }
        ws.radii.clear();
        for (index, &number) in atoms.numbers.iter().enumerate() {
            let r = elements::covalent_radius(number)
                .ok_or(PriorError::UnknownElement { index, number })?;
            ws.radii.push(r);
        }
        if ws.nl.as_ref().is_some_and(|l| l.cutoff() != self.rcut) {
            ws.nl = None;
        }
        let nl = ws
            .nl
            .get_or_insert_with(|| NeighborList::new(self.rcut).half());
        nl.update(atoms)
            .map_err(|e| PriorError::Geometry(e.to_string()))?;
        let pos = &atoms.positions;
        let mut energy = 0.0;
        for i in 0..atoms.len() {
            for nb in nl.neighbors(i) {
                let v = nb.vector(pos, i);
                let r = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
                if r <= R_MIN || r >= self.rcut {
                    continue;
                }
                // As AGOX: r + (1 − r_min), r_min = ratio · (r_cov,i + r_cov,j).
                let shifted = r + (1.0 - self.ratio * (ws.radii[i] + ws.radii[nb.j]));
                let inv = 1.0 / shifted;
                let inv6 = {
                    let s = inv * inv * inv;
                    s * s
                };
                let e = inv6 * inv6;
                energy += e;
                if let Some(f) = forces.as_deref_mut() {
                    if nb.j != i {
                        // −dE/dx_j = 12 e / r_s · v / r; the opposite on i.
                        let s = 12.0 * e * inv / r;
                        for x in 0..3 {
                            f[nb.j][x] += s * v[x];
                            f[i][x] -= s * v[x];
                        }
                    }
                }
            }
        }
        Ok(energy)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dimer_energy_and_force_by_hand() {
        let a = Atoms::from_symbols(&["Au", "Cu"], vec![[0.0; 3], [2.5, 0.0, 0.0]]).unwrap();
        let mut ws = PriorWorkspace::default();
        let mut f = Vec::new();
        let e = Repulsive::default()
            .energy_forces(&a, &mut ws, &mut f)
            .unwrap();
        let rmin = 0.7 * (1.36 + 1.32);
        let rs: f64 = 2.5 + 1.0 - rmin;
        assert!((e - rs.powi(-12)).abs() < 1e-13 * e);
        let fx = 12.0 * rs.powi(-13);
        assert!((f[1][0] - fx).abs() < 1e-13 * fx && (f[0][0] + fx).abs() < 1e-13 * fx);
        // Beyond the cutoff: nothing.
        let far = Atoms::from_symbols(&["Au", "Cu"], vec![[0.0; 3], [3.0, 0.0, 0.0]]).unwrap();
        assert_eq!(Repulsive::default().energy(&far, &mut ws).unwrap(), 0.0);
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn forces_match_finite_differences_with_periodic_images() {
        let mut a = Atoms::fcc_cubic(29, 3.0, [1, 1, 1]);
        a.positions[1][0] += 0.13;
        a.positions[2][2] -= 0.07;
        let p = Repulsive::default();
        let mut ws = PriorWorkspace::default();
        let mut f = Vec::new();
        p.energy_forces(&a, &mut ws, &mut f).unwrap();
        let h = 1e-6;
        for i in 0..a.len() {
            for x in 0..3 {
                let mut b = a.clone();
                b.positions[i][x] += h;
                let up = p.energy(&b, &mut ws).unwrap();
                b.positions[i][x] -= 2.0 * h;
                let down = p.energy(&b, &mut ws).unwrap();
                let fd = -(up - down) / (2.0 * h);
                assert!(
                    (fd - f[i][x]).abs() < 1e-6 * fd.abs().max(1e-3),
                    "{i} {x}: {fd} vs {}",
                    f[i][x]
                );
            }
        }
    }

    #[test]
    fn unknown_elements_and_bad_settings_are_errors() {
        let mut ws = PriorWorkspace::default();
        let a = Atoms {
            numbers: vec![0],
            positions: vec![[0.0; 3]],
            ..Default::default()
        };
        assert!(matches!(
            Repulsive::default().energy(&a, &mut ws),
            Err(PriorError::UnknownElement {
                index: 0,
                number: 0
            })
        ));
        let b = Atoms::from_symbols(&["Au"], vec![[0.0; 3]]).unwrap();
        let bad = Repulsive {
            rcut: -1.0,
            ratio: 0.7,
        };
        assert!(bad
            .energy(&b, &mut ws)
            .unwrap_err()
            .to_string()
            .contains("rcut"));
    }
}
