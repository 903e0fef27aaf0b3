//! Neighbour lists for clusters, slabs and bulk: every pair of atoms closer than
//! a cutoff, periodic images included.
//!
//! The list works for any cell: none at all (a cluster), triclinic, and mixed
//! periodicity such as slabs (`pbc = [true, true, false]`). A pair is reported as
//! atom `j` seen from atom `i` through an integer image shift `S`, so that the
//! displacement vector is `positions[j] + S · cell − positions[i]`. Periodic
//! images of atom `i` itself are included (only the zero-shift self pair is left
//! out), and a neighbour `j` appears once per image inside the cutoff, so cutoffs
//! larger than the cell are fine.
//!
//! Construction uses binning (a cell list) in fractional coordinates, which
//! scales linearly with the number of atoms; small clusters go through a plain
//! double loop, which is faster for them. An optional Verlet *skin* lets
//! [`NeighborList::update`] reuse the previous list while no atom has moved by
//! more than half the skin, which is what makes repeated calls during a local
//! relaxation cheap.

use crate::atoms::Atoms;

/// Clusters with at most this many atoms and no periodic direction are handled
/// with a direct double loop instead of binning.
const BRUTE_FORCE_MAX_ATOMS: usize = 48;

/// Why a neighbour list could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NeighborError {
    /// The cutoff (or skin) must be finite, the cutoff positive, the skin non-negative.
    #[error("neighbour list: cutoff must be finite and > 0 and skin finite and >= 0 (cutoff {cutoff}, skin {skin})")]
    InvalidCutoff {
        /// The cutoff that was given.
        cutoff: f64,
        /// The skin that was given.
        skin: f64,
    },
    /// A position is NaN or infinite.
    #[error("neighbour list: position of atom {index} is not finite")]
    NonFinitePosition {
        /// Index of the offending atom.
        index: usize,
    },
    /// The cell holds NaN or infinite numbers.
    #[error("neighbour list: cell is not finite")]
    NonFiniteCell,
    /// The periodic lattice vectors are zero or linearly dependent.
    #[error("neighbour list: periodic lattice vectors are zero or linearly dependent")]
    DegenerateCell,
}

/// One neighbour of an atom.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    /// Index of the neighbouring atom (may equal the central atom for its images).
    pub j: usize,
    /// Integer image shift `S` (zero along non-periodic directions).
    pub shift: [i32; 3],
    /// Cartesian image offset `S · cell` (Å): the displacement is
    /// `positions[j] + offset − positions[i]` for the current positions.
    pub offset: [f64; 3],
}

impl Neighbor {
    /// Displacement vector (Å) from atom `i` to this neighbour for the given
    /// positions: `positions[j] + offset − positions[i]`.
    ///
    /// The list does not store vectors or distances, so that it stays small
    /// (potentials stream through it every call) and stays valid when reused
    /// with a skin while the atoms move.
    #[inline]
    pub fn vector(&self, positions: &[[f64; 3]], i: usize) -> [f64; 3] {
        let (xi, xj) = (positions[i], positions[self.j]);
        [
            xj[0] + self.offset[0] - xi[0],
            xj[1] + self.offset[1] - xi[1],
            xj[2] + self.offset[2] - xi[2],
        ]
    }

    /// Distance (Å) from atom `i` to this neighbour for the given positions.
    #[inline]
    pub fn distance(&self, positions: &[[f64; 3]], i: usize) -> f64 {
        norm2(self.vector(positions, i)).sqrt()
    }
}

/// A reusable neighbour list.
///
/// Holds its storage between builds, so rebuilding for a structure of the same
/// size does not allocate.
#[derive(Debug, Clone)]
pub struct NeighborList {
    cutoff: f64,
    skin: f64,
    bothways: bool,
    // Result, compressed by atom: neighbours of i are entries[start[i]..start[i + 1]].
    start: Vec<usize>,
    entries: Vec<Neighbor>,
    // State of the last build, for reuse with a skin.
    built: bool,
    ref_positions: Vec<[f64; 3]>,
    ref_cell: [[f64; 3]; 3],
    ref_pbc: [bool; 3],
    // Scratch.
    pairs: Vec<(usize, Neighbor)>,
    frac: Vec<[f64; 3]>,
    image: Vec<[i32; 3]>,
    bin_of: Vec<usize>,
    bin_start: Vec<usize>,
    sorted: Vec<usize>,
    spos: Vec<[f64; 3]>,
    cursor: Vec<usize>,
    offsets: Vec<[i64; 3]>,
}

impl NeighborList {
    /// A list of all pairs closer than `cutoff` (Å), listed both ways (`j` in the
    /// list of `i` and `i` in the list of `j`), without a skin.
    pub fn new(cutoff: f64) -> Self {
        NeighborList {
            cutoff,
            skin: 0.0,
            bothways: true,
            start: Vec::new(),
            entries: Vec::new(),
            built: false,
            ref_positions: Vec::new(),
            ref_cell: [[0.0; 3]; 3],
            ref_pbc: [false; 3],
            pairs: Vec::new(),
            frac: Vec::new(),
            image: Vec::new(),
            bin_of: Vec::new(),
            bin_start: Vec::new(),
            sorted: Vec::new(),
            spos: Vec::new(),
            cursor: Vec::new(),
            offsets: Vec::new(),
        }
    }

    /// Lists each pair once instead of both ways (a "half" list): of the two
    /// mirror entries `(i, j, S)` and `(j, i, −S)` only one is kept. Pair
    /// potentials need only this and do half the work.
    pub fn half(mut self) -> Self {
        self.bothways = false;
        self.built = false;
        self
    }

    /// Adds a Verlet skin (Å): the list holds pairs closer than `cutoff + skin`,
    /// and [`NeighborList::update`] reuses it until some atom has moved by half
    /// the skin or the cell, periodicity or atom count changed. Consumers must
    /// then recompute distances from `offset` and drop pairs beyond their cutoff.
    pub fn with_skin(mut self, skin: f64) -> Self {
        self.skin = skin;
        self.built = false;
        self
    }

    /// Forgets the structure the list was built for, so the next `update` builds
    /// afresh; the allocations are kept.
    pub fn invalidate(&mut self) {
        self.built = false;
    }

    /// The cutoff (Å) given at construction.
    pub fn cutoff(&self) -> f64 {
        self.cutoff
    }

    /// The skin (Å).
    pub fn skin(&self) -> f64 {
        self.skin
    }

    /// True when pairs are listed both ways.
    pub fn bothways(&self) -> bool {
        self.bothways
    }

    /// Number of atoms the list was last built for.
    pub fn len(&self) -> usize {
        self.start.len().saturating_sub(1)
    }

    /// True when the list covers no atoms.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total number of stored neighbour entries.
    pub fn n_entries(&self) -> usize {
        self.entries.len()
    }

    /// The neighbours of atom `i` (empty for an index out of range).
    pub fn neighbors(&self, i: usize) -> &[Neighbor] {
        match (self.start.get(i), self.start.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.entries[a..b],
            _ => &[],
        }
    }

    /// Brings the list up to date for `atoms`; see [`NeighborList::update_with`].
    pub fn update(&mut self, atoms: &Atoms) -> Result<bool, NeighborError> {
        self.update_with(&atoms.positions, &atoms.cell, atoms.pbc)
    }

    /// Brings the list up to date: rebuilds it unless a skin is set and the
    /// previous list is still valid (same number of atoms, identical cell and
    /// pbc, every atom within half the skin of where it was at the last build).
    /// Returns whether it rebuilt.
    pub fn update_with(
        &mut self,
        positions: &[[f64; 3]],
        cell: &[[f64; 3]; 3],
        pbc: [bool; 3],
    ) -> Result<bool, NeighborError> {
        if self.built
            && self.skin > 0.0
            && positions.len() == self.ref_positions.len()
            && *cell == self.ref_cell
            && pbc == self.ref_pbc
        {
            let limit = 0.25 * self.skin * self.skin;
            let still_valid = positions
                .iter()
                .zip(&self.ref_positions)
                .all(|(p, q)| norm2(sub(*p, *q)) < limit);
            if still_valid {
                return Ok(false);
            }
        }
        self.build(positions, cell, pbc)?;
        Ok(true)
    }

    /// Builds the list from scratch for these positions, cell (rows are lattice
    /// vectors; ignored along non-periodic directions) and periodicity.
    pub fn build(
        &mut self,
        positions: &[[f64; 3]],
        cell: &[[f64; 3]; 3],
        pbc: [bool; 3],
    ) -> Result<(), NeighborError> {
        self.built = false;
        if !(self.cutoff.is_finite()
            && self.cutoff > 0.0
            && self.skin.is_finite()
            && self.skin >= 0.0)
        {
            return Err(NeighborError::InvalidCutoff {
                cutoff: self.cutoff,
                skin: self.skin,
            });
        }
        if let Some(index) = positions
            .iter()
            .position(|p| !p.iter().all(|x| x.is_finite()))
        {
            return Err(NeighborError::NonFinitePosition { index });
        }
        if pbc.iter().any(|&p| p) && !cell.iter().flatten().all(|x| x.is_finite()) {
            return Err(NeighborError::NonFiniteCell);
        }
        let rc = self.cutoff + self.skin;
        self.pairs.clear();
        if pbc.iter().any(|&p| p) || positions.len() > BRUTE_FORCE_MAX_ATOMS {
            self.find_pairs_binned(positions, cell, pbc, rc)?;
        } else {
            self.find_pairs_brute(positions, rc);
        }
        self.compress(positions.len());
        self.ref_positions.clear();
        self.ref_positions.extend_from_slice(positions);
        self.ref_cell = *cell;
        self.ref_pbc = pbc;
        self.built = true;
        Ok(())
    }

    /// Double loop over pairs of a non-periodic structure.
    fn find_pairs_brute(&mut self, positions: &[[f64; 3]], rc: f64) {
        let rc2 = rc * rc;
        for (i, &pi) in positions.iter().enumerate() {
            for (j, &pj) in positions.iter().enumerate().skip(i + 1) {
                if norm2(sub(pj, pi)) < rc2 {
                    self.pairs.push((
                        i,
                        Neighbor {
                            j,
                            shift: [0; 3],
                            offset: [0.0; 3],
                        },
                    ));
                }
            }
        }
    }

    /// Cell-list search; records each pair once.
    fn find_pairs_binned(
        &mut self,
        positions: &[[f64; 3]],
        cell: &[[f64; 3]; 3],
        pbc: [bool; 3],
        rc: f64,
    ) -> Result<(), NeighborError> {
        let n = positions.len();
        let m = complete_cell(cell, pbc)?;
        let minv = inverse(&m).ok_or(NeighborError::DegenerateCell)?;
        // |b_d|: norm of column d of the inverse = 1 / spacing of the lattice planes.
        let mut recip = [0.0; 3];
        for (d, r) in recip.iter_mut().enumerate() {
            *r = (minv[0][d] * minv[0][d] + minv[1][d] * minv[1][d] + minv[2][d] * minv[2][d])
                .sqrt();
        }

        // Fractional coordinates; wrap periodic directions into [0, 1).
        self.frac.clear();
        self.image.clear();
        let mut lo = [f64::INFINITY; 3];
        let mut hi = [f64::NEG_INFINITY; 3];
        for &x in positions {
            let mut f = vec_mat(x, &minv);
            let mut k = [0i32; 3];
            for d in 0..3 {
                if pbc[d] {
                    let fl = f[d].floor();
                    f[d] -= fl;
                    k[d] = -(fl as i32);
                    if f[d] >= 1.0 {
                        f[d] -= 1.0;
                        k[d] -= 1;
                    }
                }
                lo[d] = lo[d].min(f[d]);
                hi[d] = hi[d].max(f[d]);
            }
            // Store fractional coordinates for binning for now.
            self.frac.push(f);
            self.image.push(k);
        }
        // Bin geometry per direction.
        let mut nb = [1usize; 3];
        let mut lo_b = [0.0; 3];
        let mut extent = [1.0; 3];
        for d in 0..3 {
            if pbc[d] {
                lo_b[d] = 0.0;
                extent[d] = 1.0;
            } else if n > 0 {
                lo_b[d] = lo[d];
                extent[d] = hi[d] - lo[d];
            } else {
                extent[d] = 0.0;
            }
            // Bins about half the search radius wide (perpendicular distance).
            let length = extent[d] / recip[d];
            let want = (length / (0.5 * rc)).floor();
            nb[d] = if want.is_finite() && want >= 1.0 {
                want.min(1.0e6) as usize
            } else {
                1
            };
        }
        // Keep the number of bins in proportion to the number of atoms.
        let limit = (2 * n).max(8);
        while nb[0] * nb[1] * nb[2] > limit {
            let total = (nb[0] * nb[1] * nb[2]) as f64;
            let factor = (limit as f64 / total).cbrt();
            let before = nb;
            for v in nb.iter_mut() {
                *v = ((*v as f64 * factor).floor() as usize).max(1);
            }
            if nb == before {
                let largest = (0..3).max_by_key(|&d| nb[d]).unwrap_or(0);
                nb[largest] = (nb[largest] / 2).max(1);
            }
        }
        let mut width = [1.0; 3];
        let mut reach = [0i64; 3];
        for d in 0..3 {
            if extent[d] > 0.0 {
                width[d] = extent[d] / nb[d] as f64;
                let r = (rc * recip[d] / width[d] + 1e-9).ceil();
                reach[d] = if r.is_finite() && r < 1.0e6 {
                    r as i64
                } else {
                    1_000_000
                };
            } else {
                reach[d] = 0;
            }
            if !pbc[d] {
                reach[d] = reach[d].min(nb[d] as i64 - 1);
            }
        }

        // Counting sort of atoms into bins.
        let n_bins = nb[0] * nb[1] * nb[2];
        self.bin_of.clear();
        self.bin_start.clear();
        self.bin_start.resize(n_bins + 1, 0);
        for f in &self.frac {
            let mut b = [0usize; 3];
            for d in 0..3 {
                let u = ((f[d] - lo_b[d]) / width[d]).floor();
                b[d] = if u > 0.0 {
                    (u as usize).min(nb[d] - 1)
                } else {
                    0
                };
            }
            let idx = b[0] + nb[0] * (b[1] + nb[1] * b[2]);
            self.bin_of.push(idx);
            self.bin_start[idx + 1] += 1;
        }
        for b in 0..n_bins {
            self.bin_start[b + 1] += self.bin_start[b];
        }
        self.sorted.clear();
        self.sorted.resize(n, 0);
        self.cursor.clear();
        self.cursor.extend_from_slice(&self.bin_start[..n_bins]);
        for (atom, &b) in self.bin_of.iter().enumerate() {
            self.sorted[self.cursor[b]] = atom;
            self.cursor[b] += 1;
        }
        // Wrapped Cartesian positions, in bin order, so that the inner loop
        // streams through memory.
        self.spos.clear();
        for &atom in &self.sorted {
            let k = self.image[atom];
            let mut x = positions[atom];
            for d in 0..3 {
                if k[d] != 0 {
                    for (c, xc) in x.iter_mut().enumerate() {
                        *xc += k[d] as f64 * m[d][c];
                    }
                }
            }
            self.spos.push(x);
        }

        // Half of the bin offsets: lexicographically non-negative (o2, o1, o0).
        self.offsets.clear();
        for o2 in 0..=reach[2] {
            let o1_lo = if o2 == 0 { 0 } else { -reach[1] };
            for o1 in o1_lo..=reach[1] {
                let o0_lo = if o2 == 0 && o1 == 0 { 0 } else { -reach[0] };
                for o0 in o0_lo..=reach[0] {
                    self.offsets.push([o0, o1, o2]);
                }
            }
        }

        let NeighborList {
            pairs,
            spos,
            sorted,
            image,
            bin_start,
            offsets,
            ..
        } = self;
        let rc2 = rc * rc;
        let nbi = [nb[0] as i64, nb[1] as i64, nb[2] as i64];
        for c2 in 0..nbi[2] {
            for c1 in 0..nbi[1] {
                for c0 in 0..nbi[0] {
                    let c = [c0, c1, c2];
                    let cb = (c0 + nbi[0] * (c1 + nbi[1] * c2)) as usize;
                    let (a_lo, a_hi) = (bin_start[cb], bin_start[cb + 1]);
                    if a_lo == a_hi {
                        continue;
                    }
                    'offset: for &o in offsets.iter() {
                        let mut t = [0i64; 3];
                        let mut s = [0i64; 3];
                        for d in 0..3 {
                            let v = c[d] + o[d];
                            if pbc[d] {
                                s[d] = v.div_euclid(nbi[d]);
                                t[d] = v.rem_euclid(nbi[d]);
                            } else {
                                if v < 0 || v >= nbi[d] {
                                    continue 'offset;
                                }
                                t[d] = v;
                            }
                        }
                        let tb = (t[0] + nbi[0] * (t[1] + nbi[1] * t[2])) as usize;
                        let (b_lo, b_hi) = (bin_start[tb], bin_start[tb + 1]);
                        if b_lo == b_hi {
                            continue;
                        }
                        let mut sh = [0.0; 3];
                        for d in 0..3 {
                            if s[d] != 0 {
                                for (k, shk) in sh.iter_mut().enumerate() {
                                    *shk += s[d] as f64 * m[d][k];
                                }
                            }
                        }
                        let same = o == [0, 0, 0];
                        let targets = &spos[b_lo..b_hi];
                        for pa in a_lo..a_hi {
                            let base = sub(spos[pa], sh);
                            let first = if same { pa + 1 - b_lo } else { 0 };
                            for (q, &xj) in targets.iter().enumerate().skip(first) {
                                let d = sub(xj, base);
                                if norm2(d) < rc2 {
                                    let i = sorted[pa];
                                    let j = sorted[b_lo + q];
                                    let (ki, kj) = (image[i], image[j]);
                                    let shift = [
                                        (s[0] as i32) + kj[0] - ki[0],
                                        (s[1] as i32) + kj[1] - ki[1],
                                        (s[2] as i32) + kj[2] - ki[2],
                                    ];
                                    pairs.push((
                                        i,
                                        Neighbor {
                                            j,
                                            shift,
                                            offset: lattice_offset(shift, cell),
                                        },
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Turns the pair buffer into the per-atom compressed layout.
    fn compress(&mut self, n: usize) {
        self.start.clear();
        self.start.resize(n + 1, 0);
        for (i, nb) in &self.pairs {
            self.start[i + 1] += 1;
            if self.bothways {
                self.start[nb.j + 1] += 1;
            }
        }
        for i in 0..n {
            self.start[i + 1] += self.start[i];
        }
        let total = self.start[n];
        let filler = Neighbor {
            j: 0,
            shift: [0; 3],
            offset: [0.0; 3],
        };
        self.entries.clear();
        self.entries.resize(total, filler);
        self.cursor.clear();
        self.cursor.extend_from_slice(&self.start[..n]);
        for &(i, nb) in &self.pairs {
            self.entries[self.cursor[i]] = nb;
            self.cursor[i] += 1;
            if self.bothways {
                let j = nb.j;
                self.entries[self.cursor[j]] = Neighbor {
                    j: i,
                    shift: [-nb.shift[0], -nb.shift[1], -nb.shift[2]],
                    offset: [-nb.offset[0], -nb.offset[1], -nb.offset[2]],
                };
                self.cursor[j] += 1;
            }
        }
    }
}

/// `S · cell` for an integer shift.
fn lattice_offset(shift: [i32; 3], cell: &[[f64; 3]; 3]) -> [f64; 3] {
    let mut o = [0.0; 3];
    for d in 0..3 {
        if shift[d] != 0 {
            let s = shift[d] as f64;
            for (k, ok) in o.iter_mut().enumerate() {
                *ok += s * cell[d][k];
            }
        }
    }
    o
}

/// The cell with its non-periodic rows replaced by an orthonormal completion of
/// the periodic rows, so that fractional coordinates are always defined.
fn complete_cell(cell: &[[f64; 3]; 3], pbc: [bool; 3]) -> Result<[[f64; 3]; 3], NeighborError> {
    let periodic: Vec<usize> = (0..3).filter(|&d| pbc[d]).collect();
    let free: Vec<usize> = (0..3).filter(|&d| !pbc[d]).collect();
    let mut m = [[0.0; 3]; 3];
    for &d in &periodic {
        if norm2(cell[d]) == 0.0 {
            return Err(NeighborError::DegenerateCell);
        }
        m[d] = cell[d];
    }
    match periodic.len() {
        0 => {
            m = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        }
        1 => {
            let u = scale(cell[periodic[0]], 1.0 / norm2(cell[periodic[0]]).sqrt());
            // The Cartesian axis least aligned with u.
            let axis = (0..3)
                .min_by(|&a, &b| u[a].abs().total_cmp(&u[b].abs()))
                .unwrap_or(0);
            let mut e = [0.0; 3];
            e[axis] = 1.0;
            let v1 = sub(e, scale(u, dot(e, u)));
            let v1 = scale(v1, 1.0 / norm2(v1).sqrt());
            let v2 = cross(u, v1);
            m[free[0]] = v1;
            m[free[1]] = v2;
        }
        2 => {
            let nrm = cross(cell[periodic[0]], cell[periodic[1]]);
            let len = norm2(nrm).sqrt();
            let scale_ref = (norm2(cell[periodic[0]]) * norm2(cell[periodic[1]])).sqrt();
            // The periodic rows are finite here (checked by the caller).
            if len <= 1e-12 * scale_ref {
                return Err(NeighborError::DegenerateCell);
            }
            m[free[0]] = scale(nrm, 1.0 / len);
        }
        _ => {}
    }
    let det = dot(m[0], cross(m[1], m[2]));
    let scale_ref = (norm2(m[0]) * norm2(m[1]) * norm2(m[2])).sqrt();
    if det.abs() <= 1e-12 * scale_ref {
        return Err(NeighborError::DegenerateCell);
    }
    Ok(m)
}

/// Inverse of a 3×3 matrix, `None` when singular.
fn inverse(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let c0 = cross(m[1], m[2]);
    let c1 = cross(m[2], m[0]);
    let c2 = cross(m[0], m[1]);
    let det = dot(m[0], c0);
    if det == 0.0 || !det.is_finite() {
        return None;
    }
    let inv_det = 1.0 / det;
    // inverse = (1/det) [c0 c1 c2] as columns.
    let mut r = [[0.0; 3]; 3];
    for k in 0..3 {
        r[k][0] = c0[k] * inv_det;
        r[k][1] = c1[k] * inv_det;
        r[k][2] = c2[k] * inv_det;
    }
    Some(r)
}

fn vec_mat(x: [f64; 3], m: &[[f64; 3]; 3]) -> [f64; 3] {
    [
        x[0] * m[0][0] + x[1] * m[1][0] + x[2] * m[2][0],
        x[0] * m[0][1] + x[1] * m[1][1] + x[2] * m[2][1],
        x[0] * m[0][2] + x[1] * m[1][2] + x[2] * m[2][2],
    ]
}

/// Volume of the cell (absolute determinant), and whether the cell has rank 3
/// in the sense ASE uses to decide that stress is defined.
pub(crate) fn cell_volume(cell: &[[f64; 3]; 3]) -> Option<f64> {
    let det = dot(cell[0], cross(cell[1], cell[2])).abs();
    let scale_ref = (norm2(cell[0]) * norm2(cell[1]) * norm2(cell[2])).sqrt();
    if det.is_finite() && det > 1e-12 * scale_ref && det > 0.0 {
        Some(det)
    } else {
        None
    }
}

#[cfg(test)]
#[inline]
pub(crate) fn add(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

#[inline]
pub(crate) fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

#[inline]
pub(crate) fn scale(a: [f64; 3], s: f64) -> [f64; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}

#[inline]
pub(crate) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

#[inline]
pub(crate) fn norm2(a: [f64; 3]) -> f64 {
    dot(a, a)
}

#[inline]
pub(crate) fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (i, j, shift) triples with distances, sorted, from a direct search over
    /// all image shifts that can possibly be within reach.
    fn brute_force(
        positions: &[[f64; 3]],
        cell: &[[f64; 3]; 3],
        pbc: [bool; 3],
        rc: f64,
    ) -> Vec<(usize, usize, [i32; 3], f64)> {
        let mut reach = [0i32; 3];
        if pbc.iter().any(|&p| p) {
            let m = complete_cell(cell, pbc).unwrap();
            let minv = inverse(&m).unwrap();
            let fr: Vec<[f64; 3]> = positions.iter().map(|&x| vec_mat(x, &minv)).collect();
            for d in 0..3 {
                if pbc[d] {
                    let h = (0..3).map(|k| minv[k][d] * minv[k][d]).sum::<f64>().sqrt();
                    let lo = fr.iter().map(|f| f[d]).fold(f64::INFINITY, f64::min);
                    let hi = fr.iter().map(|f| f[d]).fold(f64::NEG_INFINITY, f64::max);
                    reach[d] = (rc * h + (hi - lo)).ceil() as i32 + 1;
                }
            }
        }
        let mut out = Vec::new();
        for i in 0..positions.len() {
            for j in 0..positions.len() {
                for a in -reach[0]..=reach[0] {
                    for b in -reach[1]..=reach[1] {
                        for c in -reach[2]..=reach[2] {
                            if i == j && a == 0 && b == 0 && c == 0 {
                                continue;
                            }
                            let s = [a, b, c];
                            let d = sub(add(positions[j], lattice_offset(s, cell)), positions[i]);
                            let r = norm2(d).sqrt();
                            if r < rc {
                                out.push((i, j, s, r));
                            }
                        }
                    }
                }
            }
        }
        out.sort_by_key(|x| (x.0, x.1, x.2));
        out
    }

    fn listed(nl: &NeighborList, positions: &[[f64; 3]]) -> Vec<(usize, usize, [i32; 3], f64)> {
        let mut out = Vec::new();
        for i in 0..positions.len() {
            for nb in nl.neighbors(i) {
                out.push((i, nb.j, nb.shift, nb.distance(positions, i)));
            }
        }
        out.sort_by_key(|x| (x.0, x.1, x.2));
        out
    }

    /// Compares two sorted pair lists, ignoring pairs within 1e-9 of the cutoff
    /// (where rounding may legitimately decide either way).
    fn same_pairs(
        a: &[(usize, usize, [i32; 3], f64)],
        b: &[(usize, usize, [i32; 3], f64)],
        rc: f64,
    ) -> Result<(), String> {
        let keep = |v: &[(usize, usize, [i32; 3], f64)]| -> Vec<(usize, usize, [i32; 3], f64)> {
            v.iter()
                .copied()
                .filter(|p| (p.3 - rc).abs() > 1e-9)
                .collect()
        };
        let (a, b) = (keep(a), keep(b));
        if a.len() != b.len() {
            return Err(format!("{} pairs vs {} pairs", a.len(), b.len()));
        }
        for (x, y) in a.iter().zip(&b) {
            if (x.0, x.1, x.2) != (y.0, y.1, y.2) || (x.3 - y.3).abs() > 1e-9 {
                return Err(format!("{x:?} vs {y:?}"));
            }
        }
        Ok(())
    }

    #[test]
    fn empty_and_single_atom() {
        let mut nl = NeighborList::new(2.5);
        nl.build(&[], &[[0.0; 3]; 3], [false; 3]).unwrap();
        assert!(nl.is_empty());
        nl.build(&[[0.0; 3]], &[[0.0; 3]; 3], [false; 3]).unwrap();
        assert_eq!(nl.len(), 1);
        assert!(nl.neighbors(0).is_empty());
        // One atom in a small periodic cell sees its own images.
        let cell = [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]];
        nl.build(&[[0.5; 3]], &cell, [true; 3]).unwrap();
        assert_eq!(nl.neighbors(0).len(), 6);
        assert!(nl
            .neighbors(0)
            .iter()
            .all(|n| n.j == 0 && (n.distance(&[[0.5; 3]], 0) - 2.0).abs() < 1e-12));
    }

    #[test]
    fn errors() {
        let cell = [[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 2.0]];
        let mut nl = NeighborList::new(3.0);
        assert_eq!(
            nl.build(&[[0.0; 3]], &cell, [true; 3]),
            Err(NeighborError::DegenerateCell)
        );
        // The same cell is fine when the zero vector is not periodic.
        assert!(nl.build(&[[0.0; 3]], &cell, [true, false, true]).is_ok());
        assert_eq!(
            nl.build(&[[f64::NAN, 0.0, 0.0]], &cell, [false; 3]),
            Err(NeighborError::NonFinitePosition { index: 0 })
        );
        let mut bad = NeighborList::new(-1.0);
        assert!(matches!(
            bad.build(&[[0.0; 3]], &cell, [false; 3]),
            Err(NeighborError::InvalidCutoff { .. })
        ));
    }

    #[test]
    fn fcc_neighbour_counts() {
        // Cubic fcc, 4x4x4 conventional cells: 12 + 6 + 24 + 12 neighbours below 5.9 Å.
        let fcc = crate::Atoms::fcc_cubic(79, 4.08, [4, 4, 4]);
        let (positions, cell) = (fcc.positions, fcc.cell);
        let mut nl = NeighborList::new(5.9);
        nl.build(&positions, &cell, [true; 3]).unwrap();
        for i in 0..positions.len() {
            assert_eq!(nl.neighbors(i).len(), 54);
        }
        let mut half = NeighborList::new(5.9).half();
        half.build(&positions, &cell, [true; 3]).unwrap();
        assert_eq!(half.n_entries(), 256 * 27);
    }

    #[test]
    fn skin_reuse() {
        let positions = vec![[0.0; 3], [1.0, 0.0, 0.0], [3.05, 0.0, 0.0]];
        let cell = [[0.0; 3]; 3];
        let mut nl = NeighborList::new(2.0).with_skin(0.5);
        assert!(nl.update_with(&positions, &cell, [false; 3]).unwrap());
        // 1 -> 2 is at 2.05: inside cutoff + skin, kept for later; 0 -> 2 is not.
        assert_eq!(nl.n_entries(), 4);
        let mut moved = positions.clone();
        moved[2][0] -= 0.2;
        assert!(!nl.update_with(&moved, &cell, [false; 3]).unwrap());
        moved[2][0] -= 0.1;
        assert!(nl.update_with(&moved, &cell, [false; 3]).unwrap());
    }

    type Case = ([[f64; 3]; 3], [bool; 3], Vec<[f64; 3]>, f64, bool);

    fn arb_case() -> impl Strategy<Value = Case> {
        let vec3 = || (-1.0f64..1.0, -1.0f64..1.0, -1.0f64..1.0).prop_map(|(a, b, c)| [a, b, c]);
        (
            (1.5f64..5.0, 1.5f64..5.0, 1.5f64..5.0),
            (vec3(), vec3(), vec3()),
            any::<[bool; 3]>(),
            proptest::collection::vec((-0.3f64..1.3, -0.3f64..1.3, -0.3f64..1.3), 0..40),
            0.3f64..6.0,
            any::<bool>(),
        )
            .prop_map(|(len, (p, q, r), pbc, fr, rc, cluster)| {
                // Triclinic cell: scaled axes plus a skew of up to ~0.5 of the length.
                let cell = [
                    [len.0 + 0.5 * p[0], 0.5 * p[1], 0.5 * p[2]],
                    [0.8 * q[0], len.1 + 0.5 * q[1], 0.5 * q[2]],
                    [0.8 * r[0], 0.8 * r[1], len.2 + 0.5 * r[2]],
                ];
                let positions = fr
                    .iter()
                    .map(|&(a, b, c)| {
                        let mut x = [0.0; 3];
                        for k in 0..3 {
                            x[k] = a * cell[0][k] + b * cell[1][k] + c * cell[2][k];
                        }
                        x
                    })
                    .collect();
                // Sometimes a cluster with no cell at all.
                if cluster {
                    ([[0.0; 3]; 3], [false; 3], positions, rc, true)
                } else {
                    (cell, pbc, positions, rc, false)
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn matches_brute_force((cell, pbc, positions, rc, _cluster) in arb_case()) {
            let want = brute_force(&positions, &cell, pbc, rc);
            let mut nl = NeighborList::new(rc);
            nl.build(&positions, &cell, pbc).unwrap();
            let got = listed(&nl, &positions);
            if let Err(msg) = same_pairs(&got, &want, rc) {
                return Err(TestCaseError::fail(msg));
            }
            // The half list holds exactly one of each mirror pair.
            let mut half = NeighborList::new(rc).half();
            half.build(&positions, &cell, pbc).unwrap();
            let mut mirrored = Vec::new();
            for i in 0..positions.len() {
                for nb in half.neighbors(i) {
                    let r = nb.distance(&positions, i);
                    mirrored.push((i, nb.j, nb.shift, r));
                    mirrored.push((nb.j, i, [-nb.shift[0], -nb.shift[1], -nb.shift[2]], r));
                }
            }
            mirrored.sort_by_key(|x| (x.0, x.1, x.2));
            if let Err(msg) = same_pairs(&mirrored, &want, rc) {
                return Err(TestCaseError::fail(format!("half list: {msg}")));
            }
            // Offsets are the shifts times the cell.
            for i in 0..positions.len() {
                for nb in nl.neighbors(i) {
                    prop_assert_eq!(nb.offset, lattice_offset(nb.shift, &cell));
                }
            }
        }
    }
}
