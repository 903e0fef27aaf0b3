//! Periodic geometry: cell algebra (volume, inverse, completion), fractional
//! coordinates, wrapping, and the minimum-image convention for any triclinic cell.
//!
//! Conventions (as ASE): the cell's **rows** are the lattice vectors a, b, c (Å);
//! Cartesian `r = f · cell` for fractional coordinates `f`; `pbc[i]` says whether the
//! structure repeats along row `i`. Rows of zeros mean "no cell along this axis".
//!
//! # Minimum image
//!
//! Rounding fractional coordinates to the nearest integer gives the nearest image only
//! for (near-)orthogonal cells; for a skewed cell it can be wrong by a lot. [`MinimumImage`]
//! instead solves the closest-vector problem exactly:
//!
//! 1. the periodic lattice vectors are **reduced** (greedy reduction: sort by length and
//!    replace each vector by its distance vector to the lattice spanned by the shorter ones,
//!    until nothing changes; in dimension ≤ 3 this yields a Minkowski-reduced basis, so the
//!    search below stays tiny even for extremely skewed input cells);
//! 2. in the reduced basis the rounded image gives a first candidate of length `r`; any
//!    closer image has coefficient `n_j` within `r · |row j of B⁻¹|` of the fractional
//!    coordinate (a rigorous bound), and **all** integer points in that box are checked.
//!
//! The result is exact (up to floating-point rounding) for every cell, which the property
//! tests check against brute force over many images of strongly skewed cells.

/// A 3-vector (Å).
pub type Vec3 = [f64; 3];
/// A 3×3 matrix; for a cell, rows are lattice vectors.
pub type Mat3 = [[f64; 3]; 3];

/// Why a geometric operation could not be done.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GeometryError {
    /// The (completed) cell is singular, so fractional coordinates are undefined.
    #[error("the cell is singular (its non-zero vectors are linearly dependent): {cell:?}")]
    SingularCell {
        /// The offending cell.
        cell: Mat3,
    },
    /// A periodic direction has a zero cell vector, or the periodic vectors are
    /// linearly dependent, so periodic images are undefined.
    #[error(
        "periodic cell vectors are zero or linearly dependent (pbc {pbc:?}, cell {cell:?}); \
         a periodic axis needs a non-zero, independent lattice vector"
    )]
    DegeneratePeriodicCell {
        /// The cell.
        cell: Mat3,
        /// The periodicity flags.
        pbc: [bool; 3],
    },
    /// An atom index past the end.
    #[error("atom index {index} out of range for {len} atoms")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The number of atoms.
        len: usize,
    },
}

/// Dot product.
#[inline]
pub fn dot(a: Vec3, b: Vec3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Cross product `a × b`.
#[inline]
pub fn cross(a: Vec3, b: Vec3) -> Vec3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// Euclidean length.
#[inline]
pub fn norm(a: Vec3) -> f64 {
    dot(a, a).sqrt()
}

/// `a + b`.
#[inline]
pub fn add(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

/// `a − b`.
#[inline]
pub fn sub(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

/// `s · a`.
#[inline]
pub fn scale(s: f64, a: Vec3) -> Vec3 {
    [s * a[0], s * a[1], s * a[2]]
}

/// Determinant of a 3×3 matrix (signed volume of a cell).
pub fn det(m: &Mat3) -> f64 {
    dot(m[0], cross(m[1], m[2]))
}

/// Cell volume (Å³): the absolute determinant; 0 for a cell of rank < 3.
pub fn volume(cell: &Mat3) -> f64 {
    det(cell).abs()
}

/// True if the row is exactly zero (ASE's test for a missing cell vector).
fn is_zero(v: Vec3) -> bool {
    v.iter().all(|x| *x == 0.0)
}

/// Relative threshold under which a volume counts as zero.
const SINGULAR_RTOL: f64 = 1e-12;

/// Inverse of a 3×3 matrix, or `None` when it is singular relative to its size
/// (|det| ≤ 1e-12 · |row0| · |row1| · |row2|).
pub fn inverse(m: &Mat3) -> Option<Mat3> {
    let d = det(m);
    let size = norm(m[0]) * norm(m[1]) * norm(m[2]);
    if !d.is_finite() || d.abs() <= SINGULAR_RTOL * size {
        return None;
    }
    // The inverse's columns are the cross products of rows divided by det.
    let c0 = cross(m[1], m[2]);
    let c1 = cross(m[2], m[0]);
    let c2 = cross(m[0], m[1]);
    let mut inv = [[0.0; 3]; 3];
    for i in 0..3 {
        inv[i][0] = c0[i] / d;
        inv[i][1] = c1[i] / d;
        inv[i][2] = c2[i] / d;
    }
    Some(inv)
}

/// Replace missing (all-zero) cell vectors by unit vectors orthogonal to the
/// present ones, giving a right-handed cell of rank 3 when the present vectors are
/// independent. Matches ASE's `complete_cell` for 0, 1 and 3 missing vectors; with
/// 2 missing the pair chosen may differ from ASE's (any orthonormal pair is valid).
pub fn complete_cell(cell: &Mat3) -> Mat3 {
    let mut out = *cell;
    let missing: Vec<usize> = (0..3).filter(|&i| is_zero(cell[i])).collect();
    match missing.len() {
        3 => {
            out = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        }
        2 => {
            let k = (0..3).find(|i| !missing.contains(i)).unwrap_or(0);
            let a = scale(1.0 / norm(cell[k]), cell[k]);
            // Pick the coordinate axis least aligned with `a`, orthogonalize.
            let axis = (0..3)
                .min_by(|&i, &j| a[i].abs().total_cmp(&a[j].abs()))
                .unwrap_or(0);
            let mut e = [0.0; 3];
            e[axis] = 1.0;
            let u = sub(e, scale(dot(e, a), a));
            let u = scale(1.0 / norm(u), u);
            let w = cross(a, u);
            // Rows (k, k+1, k+2) cyclic: a, u, w is right-handed.
            out[(k + 1) % 3] = u;
            out[(k + 2) % 3] = w;
        }
        1 => {
            let i = missing[0];
            let v = cross(cell[(i + 1) % 3], cell[(i + 2) % 3]);
            let n = norm(v);
            if n > 0.0 {
                out[i] = scale(1.0 / n, v);
            }
        }
        _ => {}
    }
    out
}

/// Fractional coordinates of Cartesian `positions` in `cell` (completed first, as ASE
/// does, so a cluster or slab without some cell vectors still has coordinates).
pub fn fractional(cell: &Mat3, positions: &[Vec3]) -> Result<Vec<Vec3>, GeometryError> {
    let full = complete_cell(cell);
    let inv = inverse(&full).ok_or(GeometryError::SingularCell { cell: *cell })?;
    Ok(positions.iter().map(|p| mat_vec_row(p, &inv)).collect())
}

/// Cartesian coordinates of fractional coordinates `scaled` in `cell` (completed first).
pub fn cartesian(cell: &Mat3, scaled: &[Vec3]) -> Vec<Vec3> {
    let full = complete_cell(cell);
    scaled.iter().map(|f| mat_vec_row(f, &full)).collect()
}

/// Row vector times matrix: `v · m`.
#[inline]
fn mat_vec_row(v: &Vec3, m: &Mat3) -> Vec3 {
    [
        v[0] * m[0][0] + v[1] * m[1][0] + v[2] * m[2][0],
        v[0] * m[0][1] + v[1] * m[1][1] + v[2] * m[2][1],
        v[0] * m[0][2] + v[1] * m[1][2] + v[2] * m[2][2],
    ]
}

/// ASE's wrap tolerance: fractional coordinates in [−1e-7, 0) stay put instead of
/// jumping to ≈1, so atoms exactly on a face are not moved across the cell.
pub const WRAP_EPS: f64 = 1e-7;

/// Wrap positions into the cell along periodic axes: fractional coordinates go to
/// [−ε, 1−ε) with ε = [`WRAP_EPS`], like ASE's `wrap_positions` (default arguments).
/// Non-periodic axes are left alone.
pub fn wrap_positions(
    cell: &Mat3,
    pbc: [bool; 3],
    positions: &[Vec3],
) -> Result<Vec<Vec3>, GeometryError> {
    if (0..3).any(|i| pbc[i] && is_zero(cell[i])) {
        return Err(GeometryError::DegeneratePeriodicCell { cell: *cell, pbc });
    }
    if !pbc.iter().any(|p| *p) {
        return Ok(positions.to_vec());
    }
    let full = complete_cell(cell);
    let mut frac = fractional(cell, positions)?;
    for f in &mut frac {
        for i in 0..3 {
            if pbc[i] {
                f[i] = (f[i] + WRAP_EPS).rem_euclid(1.0) - WRAP_EPS;
            }
        }
    }
    Ok(frac.iter().map(|f| mat_vec_row(f, &full)).collect())
}

/// Closest-vector solver for a reduced basis of up to 3 linearly independent vectors.
#[derive(Debug, Clone, PartialEq)]
struct Lattice {
    /// Basis vectors (reduced when built by [`MinimumImage::new`]).
    basis: Vec<Vec3>,
    /// Inverse Gram matrix (k×k stored 3×3).
    gram_inv: Mat3,
}

impl Lattice {
    /// Build from independent vectors; `None` when they are (numerically) dependent.
    fn new(basis: Vec<Vec3>) -> Option<Self> {
        let k = basis.len();
        let mut g = [[0.0; 3]; 3];
        for i in 0..k {
            for j in 0..k {
                g[i][j] = dot(basis[i], basis[j]);
            }
        }
        let gram_inv = match k {
            0 => [[0.0; 3]; 3],
            1 => {
                if !g[0][0].is_finite() || g[0][0] <= 0.0 {
                    return None;
                }
                [[1.0 / g[0][0], 0.0, 0.0], [0.0; 3], [0.0; 3]]
            }
            2 => {
                let d = g[0][0] * g[1][1] - g[0][1] * g[1][0];
                if !d.is_finite() || d <= SINGULAR_RTOL * g[0][0] * g[1][1] {
                    return None;
                }
                [
                    [g[1][1] / d, -g[0][1] / d, 0.0],
                    [-g[1][0] / d, g[0][0] / d, 0.0],
                    [0.0; 3],
                ]
            }
            _ => {
                let m = [basis[0], basis[1], basis[2]];
                let d = det(&m);
                let size = norm(m[0]) * norm(m[1]) * norm(m[2]);
                if !d.is_finite() || d.abs() <= SINGULAR_RTOL * size {
                    return None;
                }
                // G⁻¹ for a full-rank 3×3 basis via its symmetric adjugate.
                let mut inv = [[0.0; 3]; 3];
                let dg = d * d;
                for (i, row) in inv.iter_mut().enumerate() {
                    for (j, x) in row.iter_mut().enumerate() {
                        let (i1, i2) = ((i + 1) % 3, (i + 2) % 3);
                        let (j1, j2) = ((j + 1) % 3, (j + 2) % 3);
                        *x = (g[j1][i1] * g[j2][i2] - g[j1][i2] * g[j2][i1]) / dg;
                    }
                }
                inv
            }
        };
        Some(Lattice { basis, gram_inv })
    }

    /// The lattice vector closest to `t` (closest to its projection on the span).
    /// Exhaustive within the rigorous coefficient bounds; returns zero for k = 0.
    fn closest(&self, t: Vec3) -> Vec3 {
        let k = self.basis.len();
        if k == 0 {
            return [0.0; 3];
        }
        let mut rhs = [0.0; 3];
        for (r, b) in rhs.iter_mut().zip(&self.basis) {
            *r = dot(*b, t);
        }
        let mut f = [0.0; 3];
        for (i, fi) in f.iter_mut().enumerate().take(k) {
            *fi = (0..k).map(|j| self.gram_inv[i][j] * rhs[j]).sum();
        }
        if f.iter().any(|x| !x.is_finite()) {
            return [0.0; 3];
        }
        let combo = |n: &[f64; 3]| {
            let mut v = [0.0; 3];
            for (j, b) in self.basis.iter().enumerate() {
                v = add(v, scale(n[j], *b));
            }
            v
        };
        // The projection of t on the span, and the rounded first candidate.
        let t_par = combo(&f);
        let n0 = [f[0].round(), f[1].round(), f[2].round()];
        let mut best = combo(&n0);
        let mut best_d2 = dot(sub(t_par, best), sub(t_par, best));
        let r = best_d2.sqrt();
        let mut lo = [0i64; 3];
        let mut hi = [0i64; 3];
        for j in 0..k {
            let w = r * self.gram_inv[j][j].sqrt() * (1.0 + 1e-9) + 1e-12;
            // Finite because f and r are; huge only for non-reduced bases.
            lo[j] = (f[j] - w).ceil() as i64;
            hi[j] = (f[j] + w).floor() as i64;
        }
        let mut n = [0.0f64; 3];
        for a in lo[0]..=hi[0] {
            n[0] = a as f64;
            for b in lo[1]..=hi[1] {
                n[1] = b as f64;
                for c in lo[2]..=hi[2] {
                    n[2] = c as f64;
                    let v = combo(&n);
                    let d = sub(t_par, v);
                    let d2 = dot(d, d);
                    if d2 < best_d2 {
                        best_d2 = d2;
                        best = v;
                    }
                }
            }
        }
        best
    }
}

/// Minimum-image convention for a cell and its periodicity, precomputed once
/// (reduced basis and inverse Gram matrix) so that each query is cheap.
#[derive(Debug, Clone, PartialEq)]
pub struct MinimumImage {
    lattice: Lattice,
}

impl MinimumImage {
    /// Prepare minimum-image queries for `cell` with periodicity `pbc`. Errors when a
    /// periodic axis has a zero vector or the periodic vectors are dependent.
    pub fn new(cell: &Mat3, pbc: [bool; 3]) -> Result<Self, GeometryError> {
        let degenerate = || GeometryError::DegeneratePeriodicCell { cell: *cell, pbc };
        let vectors: Vec<Vec3> = (0..3).filter(|&i| pbc[i]).map(|i| cell[i]).collect();
        if vectors
            .iter()
            .any(|v| is_zero(*v) || v.iter().any(|x| !x.is_finite()))
        {
            return Err(degenerate());
        }
        if Lattice::new(vectors.clone()).is_none() {
            return Err(degenerate());
        }
        let reduced = reduce_basis(vectors).ok_or_else(degenerate)?;
        let lattice = Lattice::new(reduced).ok_or_else(degenerate)?;
        Ok(MinimumImage { lattice })
    }

    /// Number of periodic directions.
    pub fn n_periodic(&self) -> usize {
        self.lattice.basis.len()
    }

    /// The reduced periodic lattice vectors (sorted by length; the first is a
    /// shortest non-zero lattice vector).
    pub fn reduced_basis(&self) -> &[Vec3] {
        &self.lattice.basis
    }

    /// The shortest vector equivalent to `v` under the periodic lattice translations:
    /// `v − L` with `L` the lattice vector closest to `v`. With no periodic axis,
    /// `v` itself.
    pub fn apply(&self, v: Vec3) -> Vec3 {
        sub(v, self.lattice.closest(v))
    }

    /// Length of the shortest non-zero lattice vector (the distance from an atom to its
    /// own nearest periodic image), or `None` without periodic axes.
    pub fn shortest_lattice_vector(&self) -> Option<f64> {
        // After greedy reduction in dim ≤ 3 the first vector is a shortest one; verify
        // by enumeration within the rigorous bound anyway (cheap for a reduced basis).
        let first = *self.lattice.basis.first()?;
        let k = self.lattice.basis.len();
        let r = norm(first);
        let mut best = r;
        let mut w = [0i64; 3];
        for (j, wj) in w.iter_mut().enumerate().take(k) {
            *wj = (r * self.lattice.gram_inv[j][j].sqrt() * (1.0 + 1e-9)).floor() as i64;
        }
        for a in -w[0]..=w[0] {
            for b in -w[1]..=w[1] {
                for c in -w[2]..=w[2] {
                    if a == 0 && b == 0 && c == 0 {
                        continue;
                    }
                    let n = [a as f64, b as f64, c as f64];
                    let mut v = [0.0; 3];
                    for (j, bv) in self.lattice.basis.iter().enumerate() {
                        v = add(v, scale(n[j], *bv));
                    }
                    best = best.min(norm(v));
                }
            }
        }
        Some(best)
    }
}

/// Greedy lattice reduction (Minkowski-reduced for up to 3 vectors). `None` when the
/// vectors turn out to be dependent (a vector collapses to ~0) or it fails to settle.
fn reduce_basis(mut basis: Vec<Vec3>) -> Option<Vec<Vec3>> {
    let scale_len = basis.iter().map(|v| norm(*v)).fold(0.0, f64::max);
    // Each change shortens a vector by a finite factor; the cap only guards against
    // pathological (nearly dependent) input.
    for _ in 0..10_000 {
        basis.sort_by(|a, b| dot(*a, *a).total_cmp(&dot(*b, *b)));
        if basis.iter().any(|v| norm(*v) <= 1e-10 * scale_len) {
            return None;
        }
        let mut changed = false;
        for i in 1..basis.len() {
            let sub_lattice = Lattice::new(basis[..i].to_vec())?;
            let c = sub_lattice.closest(basis[i]);
            let reduced = sub(basis[i], c);
            if dot(reduced, reduced) < dot(basis[i], basis[i]) * (1.0 - 1e-12) {
                basis[i] = reduced;
                changed = true;
                break;
            }
        }
        if !changed {
            return Some(basis);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn inverse_and_volume() {
        let cell = [[3.0, 0.0, 0.0], [1.0, 4.0, 0.0], [0.5, 0.3, 5.0]];
        assert!(close(volume(&cell), 60.0, 1e-14));
        let inv = inverse(&cell).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let s: f64 = (0..3).map(|k| cell[i][k] * inv[k][j]).sum();
                assert!(close(s, if i == j { 1.0 } else { 0.0 }, 1e-14));
            }
        }
        assert!(inverse(&[[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]).is_none());
        assert_eq!(volume(&[[0.0; 3]; 3]), 0.0);
    }

    #[test]
    fn complete_cell_matches_ase_cases() {
        assert_eq!(
            complete_cell(&[[0.0; 3]; 3]),
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        );
        // One missing: ASE uses the normalized cross product of the other two.
        let c = complete_cell(&[[2.0, 0.0, 0.0], [1.0, 2.0, 0.0], [0.0; 3]]);
        assert_eq!(c[2], [0.0, 0.0, 1.0]);
        // Two missing: orthonormal, right-handed.
        let c = complete_cell(&[[0.0; 3], [1.0, 1.0, 0.0], [0.0; 3]]);
        assert!(det(&c) > 0.0);
        assert!(close(dot(c[0], c[1]), 0.0, 1e-14));
        assert!(close(dot(c[2], c[1]), 0.0, 1e-14));
        assert!(close(norm(c[0]), 1.0, 1e-14));
    }

    #[test]
    fn naive_rounding_is_wrong_for_skewed_cell_but_we_are_right() {
        // b is nearly parallel to a: the square lattice Z² in disguise.
        let cell = [[1.0, 0.0, 0.0], [7.0, 1.0, 0.0], [0.0, 0.0, 10.0]];
        let mic = MinimumImage::new(&cell, [true, true, false]).unwrap();
        let v = [0.1, 0.45, 0.0];
        // Naive: fractional coordinates in this basis are (0.1 - 7*0.45, 0.45).
        let f: [f64; 2] = [0.1 - 7.0 * 0.45, 0.45];
        let naive: [f64; 2] = [
            v[0] - f[0].round() * 1.0 - f[1].round() * 7.0,
            v[1] - f[1].round() * 1.0,
        ];
        let naive_len = (naive[0] * naive[0] + naive[1] * naive[1]).sqrt();
        let ours = mic.apply(v);
        assert!(close(norm(ours), norm(v), 1e-12), "{ours:?}");
        assert!(naive_len > norm(v) + 0.5, "naive {naive:?}");
        assert_eq!(mic.shortest_lattice_vector(), Some(1.0));
    }

    #[test]
    fn degenerate_periodic_cells_are_errors() {
        let cell = [[1.0, 0.0, 0.0], [0.0; 3], [0.0, 0.0, 1.0]];
        assert!(MinimumImage::new(&cell, [true, true, true]).is_err());
        assert!(MinimumImage::new(&cell, [true, false, true]).is_ok());
        let dep = [[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0]];
        assert!(MinimumImage::new(&dep, [true, true, false]).is_err());
        let none = MinimumImage::new(&[[0.0; 3]; 3], [false; 3]).unwrap();
        assert_eq!(none.apply([5.0, 6.0, 7.0]), [5.0, 6.0, 7.0]);
        assert_eq!(none.shortest_lattice_vector(), None);
    }

    #[test]
    fn wrap_matches_ase_example() {
        // ase.geometry.wrap_positions docstring example.
        let cell = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 4.0]];
        let w = wrap_positions(&cell, [true, true, false], &[[-0.1, 1.01, -0.5]]).unwrap();
        assert!(close(w[0][0], 0.9, 1e-12));
        assert!(close(w[0][1], 0.01, 1e-12));
        assert_eq!(w[0][2], -0.5);
        // Slightly negative within eps stays.
        let w = wrap_positions(&cell, [true; 3], &[[-1e-9, 0.0, 0.0]]).unwrap();
        assert!(close(w[0][0], -1e-9, 1e-12), "{w:?}");
    }

    use proptest::prelude::*;

    /// Random unimodular k×k integer matrix (det ±1): products of shears and swaps.
    fn unimodular(k: usize, ops: &[(usize, usize, i64)]) -> Vec<Vec<i64>> {
        let mut m: Vec<Vec<i64>> = (0..k)
            .map(|i| (0..k).map(|j| i64::from(i == j)).collect())
            .collect();
        for &(i, j, s) in ops {
            let (i, j) = (i % k, j % k);
            if i == j {
                continue;
            }
            if s == 0 {
                m.swap(i, j);
            } else {
                for c in 0..k {
                    m[i][c] += s * m[j][c];
                }
            }
        }
        m
    }

    /// Closest image by brute force over the *nice* (unskewed) basis of the same lattice.
    fn brute_force(v: Vec3, nice: &[Vec3], range: i64) -> f64 {
        let k = nice.len();
        let r = |j: usize| if j < k { range } else { 0 };
        let mut best = f64::INFINITY;
        for a in -r(0)..=r(0) {
            for b in -r(1)..=r(1) {
                for c in -r(2)..=r(2) {
                    let n = [a as f64, b as f64, c as f64];
                    let mut w = v;
                    for j in 0..k {
                        w = sub(w, scale(n[j], nice[j]));
                    }
                    best = best.min(norm(w));
                }
            }
        }
        best
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Minimum image in strongly skewed cells (a well-shaped lattice disguised by a
        /// unimodular transform with large entries) equals brute force over ±6 images
        /// of the well-shaped basis, for every periodicity pattern.
        #[test]
        fn minimum_image_matches_brute_force(
            lens in proptest::array::uniform3(2.0f64..6.0),
            tilt in proptest::array::uniform3(-0.3f64..0.3),
            ops in proptest::collection::vec((0usize..3, 0usize..3, -4i64..=4), 0..12),
            pbc in proptest::array::uniform3(any::<bool>()),
            v in proptest::array::uniform3(-25.0f64..25.0),
        ) {
            let nice_cell = [
                [lens[0], 0.0, 0.0],
                [tilt[0] * lens[1], lens[1], 0.0],
                [tilt[1] * lens[2], tilt[2] * lens[2], lens[2]],
            ];
            let axes: Vec<usize> = (0..3).filter(|&i| pbc[i]).collect();
            let k = axes.len();
            let nice: Vec<Vec3> = axes.iter().map(|&i| nice_cell[i]).collect();
            // Skew only the periodic vectors among themselves: same lattice, ugly basis.
            let u = unimodular(k.max(1), &ops);
            let mut cell = nice_cell;
            for (r, &i) in axes.iter().enumerate() {
                let mut row = [0.0; 3];
                for (c, b) in nice.iter().enumerate() {
                    row = add(row, scale(u[r][c] as f64, *b));
                }
                cell[i] = row;
            }
            let mic = MinimumImage::new(&cell, pbc).unwrap();
            let got = mic.apply(v);
            // |v| ≤ 25√3 ≈ 43.3 and heights ≥ ~1.8 Å: ±30 images would be overkill;
            // the nice basis is near-orthogonal, so its rounding plus ±6 is exhaustive.
            let mut vv = v;
            let frac = fractional(&nice_cell, &[v]).unwrap()[0];
            for (j, &i) in axes.iter().enumerate() {
                vv = sub(vv, scale(frac[i].round(), nice[j]));
            }
            let want = brute_force(vv, &nice, 6);
            prop_assert!((norm(got) - want).abs() <= 1e-9 * (1.0 + want), "got {} want {}", norm(got), want);
            // `got` differs from v by a lattice vector: integer coefficients in the nice basis.
            let d = sub(v, got);
            let fd = fractional(&nice_cell, &[d]).unwrap()[0];
            for i in 0..3 {
                let expect_int = pbc[i];
                if expect_int {
                    prop_assert!((fd[i] - fd[i].round()).abs() < 1e-7, "{fd:?}");
                } else {
                    prop_assert!(fd[i].abs() < 1e-7, "{fd:?}");
                }
            }
            // Shortest lattice vector agrees with brute force over the nice basis.
            if k > 0 {
                let mut best = f64::INFINITY;
                let r = |j: usize| if j < k { 3i64 } else { 0 };
                for a in -r(0)..=r(0) { for b in -r(1)..=r(1) { for c in -r(2)..=r(2) {
                    if (a, b, c) == (0, 0, 0) { continue; }
                    let n = [a as f64, b as f64, c as f64];
                    let mut w = [0.0; 3];
                    for j in 0..k { w = add(w, scale(n[j], nice[j])); }
                    best = best.min(norm(w));
                }}}
                let s = mic.shortest_lattice_vector().unwrap();
                prop_assert!((s - best).abs() <= 1e-9 * best, "shortest {s} vs {best}");
            }
        }
    }
}
