//! Atomic units on the wire, Å and eV outside: the constants and the arithmetic of
//! ASE's `SocketIOCalculator` (ase 3.29, `ase/calculators/socketio.py`), operation
//! for operation, so a structure sent through this crate reaches a client as the
//! same bits as through ASE, and the client's answer comes back as the same bits.
//!
//! | quantity | wire unit | to the wire | from the wire |
//! | --- | --- | --- | --- |
//! | cell | Bohr | `x / BOHR` | |
//! | inverse cell | 1/Bohr | `x * BOHR` | |
//! | positions | Bohr | `x / BOHR` | |
//! | energy | Hartree | | `e * HARTREE` |
//! | forces | Hartree/Bohr | | `(HARTREE / BOHR) * f` |
//! | virial | Hartree | | `HARTREE * w` |
//!
//! The stress ASE derives from the virial, `-voigt(virial) / volume`, is
//! [`stress_from_virial`]. ASE takes the volume from numpy's LU-based determinant,
//! this crate from the triple product, so the stress agrees to rounding (a few
//! units in the last place), not bit for bit.

use agox_atoms::geometry::{self, Mat3, Vec3};

/// One Bohr radius in Å (`ase.units.Bohr`, CODATA 2014).
pub const BOHR: f64 = 0.5291772105638411;

/// One Hartree in eV (`ase.units.Ha`, CODATA 2014).
pub const HARTREE: f64 = 27.211386024367243;

/// eV/Å per Hartree/Bohr, evaluated as ASE does (`units.Ha / units.Bohr`, one
/// division) before it multiplies the forces.
pub const FORCE: f64 = HARTREE / BOHR;

/// Cartesian positions (Å) in Bohr.
pub fn positions_to_bohr(positions: &[Vec3]) -> Vec<Vec3> {
    positions
        .iter()
        .map(|p| [p[0] / BOHR, p[1] / BOHR, p[2] / BOHR])
        .collect()
}

/// A cell (rows are lattice vectors, Å) in Bohr.
pub fn cell_to_bohr(cell: &Mat3) -> Mat3 {
    cell.map(|row| row.map(|x| x / BOHR))
}

/// The (pseudo-)inverse of a cell (Å), in 1/Bohr: `pinv(cell) * BOHR`, as ASE,
/// which uses numpy's pseudo-inverse so that a missing cell (all zeros) or a
/// slab's cell of rank 2 still has one. Singular values below 1e-15 times the
/// largest count as zero (numpy's default `rcond`).
pub fn inverse_cell_to_bohr(cell: &Mat3) -> Mat3 {
    pseudo_inverse(cell).map(|row| row.map(|x| x * BOHR))
}

/// Moore–Penrose pseudo-inverse of a 3×3 matrix through its singular value
/// decomposition, with numpy's cutoff (`rcond = 1e-15` relative to the largest
/// singular value).
pub fn pseudo_inverse(m: &Mat3) -> Mat3 {
    let a = nalgebra::Matrix3::from_fn(|i, j| m[i][j]);
    let svd = a.svd(true, true);
    let largest = svd.singular_values.max();
    // A cutoff of zero keeps every positive singular value; zero ones (a zero
    // matrix) map to zero, never to an infinity.
    match svd.pseudo_inverse(1e-15 * largest) {
        Ok(p) => std::array::from_fn(|i| std::array::from_fn(|j| p[(i, j)])),
        // Only reachable if U or Vᵀ were not computed, and both were asked for.
        Err(_) => [[0.0; 3]; 3],
    }
}

/// Energy in Hartree to eV.
pub fn energy_from_hartree(e: f64) -> f64 {
    e * HARTREE
}

/// Forces in Hartree/Bohr to eV/Å.
pub fn forces_from_atomic(forces: &[Vec3]) -> Vec<Vec3> {
    forces
        .iter()
        .map(|f| [FORCE * f[0], FORCE * f[1], FORCE * f[2]])
        .collect()
}

/// A virial in Hartree to eV.
pub fn virial_from_hartree(virial: &Mat3) -> Mat3 {
    virial.map(|row| row.map(|w| HARTREE * w))
}

/// The stress (eV/Å³, Voigt order xx, yy, zz, yz, xz, xy) that ASE's
/// `SocketIOCalculator` reports for a virial (eV): `-voigt(virial) / volume`, with
/// the off-diagonal pairs averaged. `None` where ASE reports none: a cell with
/// fewer than three lattice vectors, or no periodic direction.
pub fn stress_from_virial(virial: &Mat3, cell: &Mat3, pbc: [bool; 3]) -> Option<[f64; 6]> {
    let rank = cell.iter().filter(|v| v.iter().any(|x| *x != 0.0)).count();
    if rank != 3 || !pbc.iter().any(|p| *p) {
        return None;
    }
    let volume = geometry::volume(cell);
    let w = virial;
    let voigt = [
        w[0][0],
        w[1][1],
        w[2][2],
        (w[1][2] + w[2][1]) / 2.0,
        (w[0][2] + w[2][0]) / 2.0,
        (w[0][1] + w[1][0]) / 2.0,
    ];
    Some(voigt.map(|s| -s / volume))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_follow_from_codata_2014_as_ase_derives_them() {
        // ase/units.py, CODATA 2014, in its operation order (`x**n` is libm's pow).
        use std::f64::consts::PI;
        let c = 299_792_458.0f64;
        let mu0 = 4.0e-7 * PI;
        let hplanck = 6.626_070_040e-34f64;
        let e = 1.602_176_620_8e-19_f64;
        let me = 9.109_383_56e-31f64;
        let eps0 = 1.0 / mu0 / c.powf(2.0);
        let hbar = hplanck / (2.0 * PI);
        let bohr = 4e10 * PI * eps0 * hbar.powf(2.0) / me / e.powf(2.0);
        let hartree = me * e.powf(3.0) / 16.0 / PI.powf(2.0) / eps0.powf(2.0) / hbar.powf(2.0);
        assert_eq!(BOHR.to_bits(), bohr.to_bits());
        // e³ rather than e⁴ in the numerator: the Hartree comes out in eV.
        assert_eq!(HARTREE.to_bits(), hartree.to_bits());
        // The EMT parameters use the same Bohr.
        assert_eq!(BOHR.to_bits(), agox_atoms::emt::BOHR.to_bits());
    }

    #[test]
    fn pseudo_inverse_of_zero_cell_is_zero() {
        assert_eq!(pseudo_inverse(&[[0.0; 3]; 3]), [[0.0; 3]; 3]);
    }

    #[test]
    fn pseudo_inverse_inverts_a_full_cell_and_a_slab() {
        let cell = [[4.0, 0.0, 0.0], [1.0, 3.0, 0.0], [0.5, 0.2, 7.0]];
        let p = pseudo_inverse(&cell);
        let inv = geometry::inverse(&cell).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                assert!((p[i][j] - inv[i][j]).abs() < 1e-15, "{p:?} vs {inv:?}");
            }
        }
        // A slab: two lattice vectors; pinv(cell) · cell projects onto their plane.
        let slab = [[4.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 0.0]];
        let p = pseudo_inverse(&slab);
        let expect = [[0.25, 0.0, 0.0], [0.0, 0.2, 0.0], [0.0, 0.0, 0.0]];
        for i in 0..3 {
            for j in 0..3 {
                assert!((p[i][j] - expect[i][j]).abs() < 1e-16);
            }
        }
    }

    #[test]
    fn stress_only_for_periodic_cells_of_rank_three() {
        let w = [[1.0, 0.25, 0.0], [0.75, 2.0, 0.0], [0.0, 0.0, 3.0]];
        let cell = [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]];
        let s = stress_from_virial(&w, &cell, [true; 3]).unwrap();
        assert_eq!(s, [-0.125, -0.25, -0.375, 0.0, 0.0, -0.0625]);
        assert!(stress_from_virial(&w, &cell, [false; 3]).is_none());
        let slab = [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]];
        assert!(stress_from_virial(&w, &slab, [true, true, false]).is_none());
    }
}
