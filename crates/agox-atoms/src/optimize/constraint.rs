//! The confinement box: keeps chosen atoms inside a parallelepiped during a
//! relaxation, the way AGOX's `BoxConstraint` does.
//!
//! AGOX (3.11, `agox/utils/constraints/box_constraint.py`) acts in two places:
//!
//! * **positions**: when a step would put a confined atom outside the box, the
//!   atom keeps its previous coordinates along the non-periodic directions (it is
//!   held where it was, just inside the wall);
//! * **forces**: with `c` the atom's fractional coordinates in the box (periodic
//!   axes count as 0.5), if any `c > 0.95` the force is multiplied by a factor that
//!   falls linearly from 1 at `max(c) = 0.95` to 0 at `max(c) = 0.999`; otherwise,
//!   if any `c < 0.05`, by a factor falling from 1 at `min(c) = 0.05` to 0 at
//!   `min(c) = 0.001`. Only the Cartesian components of non-periodic directions are
//!   scaled. The optimizer therefore slows down near the walls instead of bumping
//!   into them.
//!
//! Deliberate differences from AGOX, all in corner cases (documented in
//! `docs/atoms.md, "Local optimization"`): the factor is clamped to `[0, 1]` (AGOX lets it go
//! slightly negative for `c > 0.999` or `c < 0.001`, pushing the atom outwards);
//! an atom found outside the box gets zero force (what AGOX's check intends, but
//! its `(c < 0) * (c > 1)` test is never true); and only the non-periodic axes
//! decide whether a step leaves the box (AGOX also reverts the non-periodic
//! coordinates when an atom crosses a periodic face).

/// Fractional coordinate below which (or above `1 −` which) the force starts to be
/// damped.
const SOFT: f64 = 0.05;
/// Fractional coordinate below which (or above `1 −` which) the force is zero.
const HARD: f64 = 0.001;

/// A parallelepiped (corner + three edge vectors) that confines a subset of the
/// atoms during a relaxation.
///
/// In a search this box is the region where the generator placed the new atoms;
/// the template (a slab, say) is not confined, so `indices` lists only the placed
/// atoms.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BoxConstraint {
    /// The box's origin corner (Å).
    pub corner: [f64; 3],
    /// The box's edge vectors as rows (Å); they must span 3-D space.
    pub cell: [[f64; 3]; 3],
    /// Axes along which the box is periodic: atoms are not confined along them
    /// (a surface search is periodic in-plane and confined along z). For the
    /// Cartesian masking to mean what it says, periodic edges should be
    /// orthogonal to the non-periodic ones, as AGOX also requires.
    pub periodic: [bool; 3],
    /// Atoms confined by the box (indices into the structure).
    pub indices: Vec<usize>,
}

/// Why a [`BoxConstraint`] cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BoxError {
    /// The edge vectors are (nearly) linearly dependent or not finite.
    #[error("confinement box edges do not span 3-D space (|det| = {det:e} Å³)")]
    Degenerate {
        /// Determinant of the edge matrix.
        det: f64,
    },
    /// A confined index does not name an atom.
    #[error("confinement box index {index} out of range for {n_atoms} atoms")]
    IndexOutOfRange {
        /// The offending index.
        index: usize,
        /// Number of atoms in the structure.
        n_atoms: usize,
    },
}

impl BoxConstraint {
    /// A box with edge vectors `cell` (rows) starting at `corner`, confining
    /// `indices`, non-periodic in all directions.
    pub fn new(corner: [f64; 3], cell: [[f64; 3]; 3], indices: Vec<usize>) -> Self {
        Self {
            corner,
            cell,
            periodic: [false; 3],
            indices,
        }
    }

    /// An axis-aligned box from `corner` to `corner + size`.
    pub fn axis_aligned(corner: [f64; 3], size: [f64; 3], indices: Vec<usize>) -> Self {
        let cell = [
            [size[0], 0.0, 0.0],
            [0.0, size[1], 0.0],
            [0.0, 0.0, size[2]],
        ];
        Self::new(corner, cell, indices)
    }

    /// The same box with the given axes periodic (not confining).
    pub fn with_periodic(mut self, periodic: [bool; 3]) -> Self {
        self.periodic = periodic;
        self
    }

    /// Fractional coordinates of `position` in the box (0..1 inside), or an error
    /// when the box is degenerate.
    pub fn fractional(&self, position: [f64; 3]) -> Result<[f64; 3], BoxError> {
        Ok(self.frame()?.fractional(position))
    }

    /// True when `position` lies strictly inside the box along every non-periodic
    /// axis (the test the relaxation uses to reject a step).
    pub fn contains(&self, position: [f64; 3]) -> Result<bool, BoxError> {
        let frame = self.frame()?;
        Ok(frame.inside(&frame.fractional(position)))
    }

    /// Precomputes what a relaxation needs (the inverse edge matrix), checking the
    /// box is usable.
    pub(crate) fn frame(&self) -> Result<BoxFrame, BoxError> {
        let m = &self.cell;
        let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
        let scale = m
            .iter()
            .map(|r| (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]).sqrt())
            .product::<f64>();
        if !det.is_finite() || scale == 0.0 || det.abs() <= 1e-12 * scale {
            return Err(BoxError::Degenerate { det });
        }
        // Inverse of the row matrix M: position − corner = c · M, so c = (r − o) · M⁻¹.
        let mut inv = [[0.0; 3]; 3];
        for (i, row) in inv.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                // cofactor C_ji / det (adjugate transpose)
                let (a0, a1) = ((j + 1) % 3, (j + 2) % 3);
                let (b0, b1) = ((i + 1) % 3, (i + 2) % 3);
                *v = (m[a0][b0] * m[a1][b1] - m[a0][b1] * m[a1][b0]) / det;
            }
        }
        Ok(BoxFrame {
            corner: self.corner,
            inv,
            hard: self.periodic.map(|p| !p),
        })
    }
}

/// A validated box ready for per-step use.
#[derive(Debug, Clone)]
pub(crate) struct BoxFrame {
    corner: [f64; 3],
    inv: [[f64; 3]; 3],
    /// Non-periodic axes (AGOX's `hard_boundaries`), also used as the Cartesian
    /// component mask.
    hard: [bool; 3],
}

impl BoxFrame {
    /// Fractional coordinates of `r`.
    pub(crate) fn fractional(&self, r: [f64; 3]) -> [f64; 3] {
        let d = [
            r[0] - self.corner[0],
            r[1] - self.corner[1],
            r[2] - self.corner[2],
        ];
        let mut c = [0.0; 3];
        for (k, ck) in c.iter_mut().enumerate() {
            *ck = d[0] * self.inv[0][k] + d[1] * self.inv[1][k] + d[2] * self.inv[2][k];
        }
        c
    }

    /// Strictly inside along every non-periodic axis.
    pub(crate) fn inside(&self, c: &[f64; 3]) -> bool {
        (0..3).all(|k| !self.hard[k] || (c[k] > 0.0 && c[k] < 1.0))
    }

    /// Replaces `new` by the previous position `old` along the hard Cartesian
    /// components when `new` lies outside the box.
    pub(crate) fn adjust_position(&self, old: &[f64; 3], new: &mut [f64; 3]) {
        if !self.inside(&self.fractional(*new)) {
            for k in 0..3 {
                if self.hard[k] {
                    new[k] = old[k];
                }
            }
        }
    }

    /// Damps the force on an atom at `r` near the walls (see the module docs).
    pub(crate) fn adjust_force(&self, r: [f64; 3], force: &mut [f64]) {
        let frac = self.fractional(r);
        let c = [0, 1, 2].map(|k| if self.hard[k] { frac[k] } else { 0.5 });
        if !self.inside(&frac) {
            force.iter_mut().for_each(|f| *f = 0.0);
            return;
        }
        let cmax = c[0].max(c[1]).max(c[2]);
        let cmin = c[0].min(c[1]).min(c[2]);
        let factor = if cmax > 1.0 - SOFT {
            ((1.0 - HARD) - cmax) / ((1.0 - HARD) - (1.0 - SOFT))
        } else if cmin < SOFT {
            (cmin - HARD) / (SOFT - HARD)
        } else {
            return;
        };
        let factor = factor.clamp(0.0, 1.0);
        for (f, hard) in force.iter_mut().zip(self.hard) {
            if hard {
                *f *= factor;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fractional_of_skewed_box() {
        let b = BoxConstraint::new(
            [1.0, 2.0, 3.0],
            [[2.0, 0.0, 0.0], [1.0, 2.0, 0.0], [0.0, 1.0, 4.0]],
            vec![],
        );
        // r = o + 0.25 a + 0.5 b + 0.75 c
        let r = [1.0 + 0.5 + 0.5, 2.0 + 1.0 + 0.75, 3.0 + 3.0];
        let c = b.fractional(r).unwrap();
        for (x, e) in c.iter().zip([0.25, 0.5, 0.75]) {
            assert!((x - e).abs() < 1e-14, "{c:?}");
        }
        assert!(b.contains(r).unwrap());
        assert!(!b.contains([0.0, 0.0, 0.0]).unwrap());
    }

    #[test]
    fn degenerate_box_is_rejected() {
        let b = BoxConstraint::new(
            [0.0; 3],
            [[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
            vec![],
        );
        assert!(matches!(b.frame(), Err(BoxError::Degenerate { .. })));
    }

    #[test]
    fn force_damping_matches_agox_ramp() {
        let f = BoxConstraint::axis_aligned([0.0; 3], [10.0; 3], vec![0])
            .frame()
            .unwrap();
        // deep inside: untouched
        let mut force = [1.0, -2.0, 3.0];
        f.adjust_force([5.0, 5.0, 5.0], &mut force);
        assert_eq!(force, [1.0, -2.0, 3.0]);
        // c_max = 0.97: factor (0.999 − 0.97)/0.049
        let mut force = [1.0, -2.0, 3.0];
        f.adjust_force([5.0, 9.7, 5.0], &mut force);
        let s = (0.999 - 0.97) / 0.049;
        for (x, e) in force.iter().zip([1.0, -2.0, 3.0]) {
            assert!((x - e * s).abs() < 1e-12);
        }
        // c_min = 0.02: factor (0.02 − 0.001)/0.049
        let mut force = [1.0, 1.0, 1.0];
        f.adjust_force([0.2, 5.0, 5.0], &mut force);
        assert!((force[2] - (0.02 - 0.001) / 0.049).abs() < 1e-12);
        // beyond the hard boundary: zero, never negative
        let mut force = [1.0, 1.0, 1.0];
        f.adjust_force([9.995, 5.0, 5.0], &mut force);
        assert_eq!(force, [0.0; 3]);
    }

    #[test]
    fn periodic_axes_are_free() {
        let f = BoxConstraint::axis_aligned([0.0; 3], [10.0; 3], vec![0])
            .with_periodic([true, true, false])
            .frame()
            .unwrap();
        let mut force = [1.0, 1.0, 1.0];
        // x outside the box but periodic: no effect on x/y, z in the middle
        f.adjust_force([12.0, 9.9, 5.0], &mut force);
        assert_eq!(force, [1.0, 1.0, 1.0]);
        let mut new = [12.0, -3.0, 11.0];
        f.adjust_position(&[9.0, 1.0, 9.0], &mut new);
        assert_eq!(new, [12.0, -3.0, 9.0]);
        let mut new = [12.0, -3.0, 8.0];
        f.adjust_position(&[9.0, 1.0, 9.0], &mut new);
        assert_eq!(new, [12.0, -3.0, 8.0]);
    }
}
