//! The Fingerprint's loops: features and their gradient in one pass.

use agox_atoms::neighbors::NeighborList;
use agox_atoms::Atoms;

use super::erf::ErfTable;
use super::{Fingerprint, Smearing, NAME, NSIGMA, R_MIN};
use crate::descriptor::{DescriptorError, FeatureSet};

/// A neighbour of an angular centre within `rc2`.
#[derive(Debug, Clone, Copy, Default)]
struct AngularNeighbor {
    atom: usize,
    ty: u8,
    /// Vector from the centre to the neighbour (image) (Å).
    v: [f64; 3],
    r: f64,
    /// Cutoff function and its derivative at `r`.
    fc: f64,
    dfc: f64,
}

/// Scratch of [`Fingerprint`]: keep one per caller; after the first call on a
/// structure of a given size, further calls do not allocate.
#[derive(Debug, Default)]
pub struct FingerprintWorkspace {
    nl: Option<NeighborList>,
    types: Vec<u8>,
    /// Pairs within `rc2`: (i, j, vector i → j image, distance).
    close: Vec<(usize, usize, [f64; 3], f64)>,
    ang_start: Vec<usize>,
    ang_cursor: Vec<usize>,
    ang: Vec<AngularNeighbor>,
    /// erf and exp at a window's bin edges.
    erfs: Vec<f64>,
    exps: Vec<f64>,
    /// Per-bin derivative of a radial contribution.
    dv: Vec<f64>,
    /// Per folded angular bin: window value and its derivative per radian.
    acc_g: Vec<f64>,
    acc_dg: Vec<f64>,
}

pub(super) fn compute(
    fp: &Fingerprint,
    atoms: &Atoms,
    gradient: bool,
    ws: &mut FingerprintWorkspace,
    out: &mut FeatureSet,
) -> Result<(), DescriptorError> {
    fp.structure_types(atoms, &mut ws.types)?;
    let n = atoms.len();
    let nf = fp.n_features;
    out.reset(1, n, nf, gradient);
    if ws.nl.as_ref().is_some_and(|l| l.cutoff() != fp.cutoff) {
        ws.nl = None;
    }
    let nl = ws
        .nl
        .get_or_insert_with(|| NeighborList::new(fp.cutoff).half());
    nl.update(atoms).map_err(|e| DescriptorError::Geometry {
        descriptor: NAME,
        message: e.to_string(),
    })?;

    let p = &fp.spec.params;
    let table = ErfTable::get();
    let pos = &atoms.positions;
    let nt = fp.types.len();
    let (features, grad) = out.parts_mut();
    let r_radial = p.rc1 + NSIGMA * p.sigma1;

    ws.close.clear();
    for i in 0..n {
        for nb in nl.neighbors(i) {
            let v = nb.vector(pos, i);
            let r = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            if r < R_MIN {
                continue;
            }
            if r <= r_radial {
                let (a, b) = order(ws.types[i], ws.types[nb.j]);
                let bt = fp.bond2[usize::from(a) * nt + usize::from(b)];
                if bt < 0 {
                    return Err(no_block(fp, atoms, &[i, nb.j]));
                }
                let block = bt as usize * fp.nbins1;
                radial_pair(
                    fp,
                    table,
                    r,
                    v,
                    (i, nb.j),
                    block,
                    gradient,
                    &mut ws.erfs,
                    &mut ws.exps,
                    &mut ws.dv,
                    features,
                    grad,
                );
            }
            if p.use_angular && r <= p.rc2 {
                ws.close.push((i, nb.j, v, r));
            }
        }
    }
    if !p.use_angular {
        return Ok(());
    }

    // Every centre's neighbours within rc2, both directions of each close pair.
    ws.ang_start.clear();
    ws.ang_start.resize(n + 1, 0);
    for &(i, j, _, _) in &ws.close {
        ws.ang_start[i + 1] += 1;
        ws.ang_start[j + 1] += 1;
    }
    for i in 0..n {
        ws.ang_start[i + 1] += ws.ang_start[i];
    }
    ws.ang.clear();
    ws.ang.resize(ws.ang_start[n], AngularNeighbor::default());
    ws.ang_cursor.clear();
    ws.ang_cursor.extend_from_slice(&ws.ang_start[..n]);
    for &(i, j, v, r) in &ws.close {
        let (fc, dfc) = cutoff(r, p.rc2, p.gamma);
        let mut put = |centre: usize, atom: usize, v: [f64; 3]| {
            ws.ang[ws.ang_cursor[centre]] = AngularNeighbor {
                atom,
                ty: ws.types[atom],
                v,
                r,
                fc,
                dfc,
            };
            ws.ang_cursor[centre] += 1;
        };
        put(i, j, v);
        put(j, i, [-v[0], -v[1], -v[2]]);
    }

    ws.acc_g.clear();
    ws.acc_g.resize(p.nbins, 0.0);
    ws.acc_dg.clear();
    ws.acc_dg.resize(p.nbins, 0.0);
    let angular_base = fp.n_bond2 * fp.nbins1;
    for i in 0..n {
        let ti = usize::from(ws.types[i]);
        let nbrs = &ws.ang[ws.ang_start[i]..ws.ang_start[i + 1]];
        for (a, ea) in nbrs.iter().enumerate() {
            for eb in &nbrs[a + 1..] {
                let (t2, t3) = order(ea.ty, eb.ty);
                let bt = fp.bond3[(ti * nt + usize::from(t2)) * nt + usize::from(t3)];
                if bt < 0 {
                    return Err(no_block(fp, atoms, &[i, ea.atom, eb.atom]));
                }
                let block = angular_base + bt as usize * p.nbins;
                angular_triplet(
                    fp,
                    table,
                    i,
                    ea,
                    eb,
                    block,
                    gradient,
                    &mut ws.erfs,
                    &mut ws.exps,
                    &mut ws.acc_g,
                    &mut ws.acc_dg,
                    features,
                    grad,
                );
            }
        }
    }
    Ok(())
}

fn order(a: u8, b: u8) -> (u8, u8) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// A pair or triplet whose species have no block: only reachable when the
/// structure's composition differs from the environment's, which is checked
/// first, so this reports a broken invariant rather than panicking.
fn no_block(fp: &Fingerprint, atoms: &Atoms, which: &[usize]) -> DescriptorError {
    DescriptorError::Mismatch {
        descriptor: NAME,
        message: format!(
            "atoms {which:?} (numbers {:?}) form a species combination without a block \
             in a descriptor built for numbers {:?}",
            which.iter().map(|&k| atoms.numbers[k]).collect::<Vec<_>>(),
            fp.types
        ),
    }
}

/// AGOX's polynomial cutoff and its derivative.
fn cutoff(r: f64, rc: f64, gamma: f64) -> (f64, f64) {
    if gamma == 0.0 {
        return (1.0, 0.0);
    }
    let x = r / rc;
    let xg1 = x.powf(gamma - 1.0);
    let xg = xg1 * x;
    (
        1.0 + gamma * xg * x - (gamma + 1.0) * xg,
        gamma * (gamma + 1.0) / rc * (xg - xg1),
    )
}

/// erf(c·t_e) at the bin edges e = e_lo..=e_hi of the window [b0, b1 + 1] around
/// `u` (t_e = e − u; the ends are clipped at ∓m and take ∓erf(c·m)), and, when
/// `exps` is given, exp(−c²t_e²) at the same edges (the convention's constant at
/// the clipped ends). Successive inner exponentials follow
/// x_{e+1} = x_e·ρ_e, ρ_{e+1} = ρ_e·exp(−2c²), from two `exp` calls.
#[allow(clippy::too_many_arguments)]
fn edges(
    s: &Smearing,
    table: &ErfTable,
    u: f64,
    (b0, b1): (i64, i64),
    (e_lo, e_hi): (i64, i64),
    erfs: &mut Vec<f64>,
    exps: Option<&mut Vec<f64>>,
) {
    erfs.clear();
    for e in e_lo..=e_hi {
        erfs.push(if e == b0 {
            -s.edge_erf
        } else if e == b1 + 1 {
            s.edge_erf
        } else {
            table.erf(s.c * (e as f64 - u))
        });
    }
    if let Some(exps) = exps {
        exps.clear();
        let first = e_lo.max(b0 + 1);
        let last = e_hi.min(b1);
        for _ in e_lo..first {
            exps.push(s.edge_exp);
        }
        if first <= last {
            let t = first as f64 - u;
            let mut x = (-s.c_sq * t * t).exp();
            let mut rho = (-s.c_sq * (2.0 * t + 1.0)).exp();
            for _ in first..=last {
                exps.push(x);
                x *= rho;
                rho *= s.q;
            }
        }
        for _ in (last + 1).max(first)..=e_hi {
            exps.push(s.edge_exp);
        }
    }
}

/// The window [b0, b1] of bins a Gaussian at `u` (in bins) reaches.
fn window(s: &Smearing, u: f64) -> (i64, i64) {
    ((u - s.m).floor() as i64, (u + s.m - 1.0).ceil() as i64)
}

/// One unordered pair, counted for both orders (AGOX visits i→j and j→i).
#[allow(clippy::too_many_arguments)]
fn radial_pair(
    fp: &Fingerprint,
    table: &ErfTable,
    r: f64,
    v: [f64; 3],
    (i, j): (usize, usize),
    block: usize,
    gradient: bool,
    erfs: &mut Vec<f64>,
    exps: &mut Vec<f64>,
    dv: &mut Vec<f64>,
    features: &mut [f64],
    grad: &mut [f64],
) {
    let s = &fp.radial;
    let u = r / s.binwidth;
    let (b0, b1) = window(s, u);
    let lo = b0.max(0);
    let hi = b1.min(fp.nbins1 as i64 - 1);
    if lo > hi {
        return;
    }
    // An image of the atom itself sits at a fixed distance: no gradient.
    let gradient = gradient && i != j;
    edges(
        s,
        table,
        u,
        (b0, b1),
        (lo, hi + 1),
        erfs,
        gradient.then_some(exps),
    );
    let scale = 2.0 * fp.radial_scale / (r * r);
    let nb = (hi - lo + 1) as usize;
    let out = &mut features[block + lo as usize..block + lo as usize + nb];
    for (k, f) in out.iter_mut().enumerate() {
        *f += scale * 0.5 * (erfs[k + 1] - erfs[k]);
    }
    if !gradient {
        return;
    }
    // d/dR [scale(R) g(R/bw)] with scale ∝ 1/R².
    dv.clear();
    for k in 0..nb {
        let g = 0.5 * (erfs[k + 1] - erfs[k]);
        dv.push(scale * (-2.0 / r * g + s.gauss * (exps[k] - exps[k + 1])));
    }
    let nf = fp.n_features;
    let col = block + lo as usize;
    for (x, &vx) in v.iter().enumerate() {
        let unit = vx / r;
        let ri = (i * 3 + x) * nf + col;
        for (g, d) in grad[ri..ri + nb].iter_mut().zip(dv.iter()) {
            *g -= d * unit;
        }
        let rj = (j * 3 + x) * nf + col;
        for (g, d) in grad[rj..rj + nb].iter_mut().zip(dv.iter()) {
            *g += d * unit;
        }
    }
}

/// One (centre, neighbour pair) triplet.
#[allow(clippy::too_many_arguments)]
fn angular_triplet(
    fp: &Fingerprint,
    table: &ErfTable,
    i: usize,
    ea: &AngularNeighbor,
    eb: &AngularNeighbor,
    block: usize,
    gradient: bool,
    erfs: &mut Vec<f64>,
    exps: &mut Vec<f64>,
    acc_g: &mut [f64],
    acc_dg: &mut [f64],
    features: &mut [f64],
    grad: &mut [f64],
) {
    let s = &fp.angular;
    let nbins = acc_g.len() as i64;
    let (va, vb) = (ea.v, eb.v);
    let rab = ea.r * eb.r;
    let cos = ((va[0] * vb[0] + va[1] * vb[1] + va[2] * vb[2]) / rab).clamp(-1.0, 1.0);
    let theta = cos.acos();
    let u = theta / s.binwidth;
    let (b0, b1) = window(s, u);
    edges(
        s,
        table,
        u,
        (b0, b1),
        (b0, b1 + 1),
        erfs,
        gradient.then_some(exps),
    );

    // Fold the window onto [0, nbins) and accumulate per folded bin.
    let (mut fmin, mut fmax) = (usize::MAX, 0usize);
    for k in 0..=(b1 - b0) as usize {
        let b = b0 + k as i64;
        let f = if b < 0 {
            -b
        } else if b >= nbins {
            2 * nbins - b - 1
        } else {
            b
        } as usize;
        fmin = fmin.min(f);
        fmax = fmax.max(f);
        acc_g[f] += 0.5 * (erfs[k + 1] - erfs[k]);
        if gradient {
            acc_dg[f] += s.gauss * (exps[k] - exps[k + 1]);
        }
    }
    let fcprod = ea.fc * eb.fc;
    let value = fp.angular_scale * fcprod;
    for (out, g) in features[block + fmin..=block + fmax]
        .iter_mut()
        .zip(&acc_g[fmin..=fmax])
    {
        *out += value * g;
    }

    if gradient {
        let scale = fp.angular_scale;
        // ∇(fc_a fc_b) and fc_a fc_b ∇θ for atoms (i, a, b), times the scale.
        let mut p = [[0.0; 3]; 3];
        let mut q = [[0.0; 3]; 3];
        let sin_sq = 1.0 - cos * cos;
        let dtheta = if sin_sq > 0.0 {
            -1.0 / sin_sq.sqrt()
        } else {
            0.0
        };
        for x in 0..3 {
            p[1][x] = scale * ea.dfc * eb.fc * va[x] / ea.r;
            p[2][x] = scale * ea.fc * eb.dfc * vb[x] / eb.r;
            p[0][x] = -(p[1][x] + p[2][x]);
            let ga = dtheta * (vb[x] / rab - cos * va[x] / (ea.r * ea.r));
            let gb = dtheta * (va[x] / rab - cos * vb[x] / (eb.r * eb.r));
            q[1][x] = scale * fcprod * ga;
            q[2][x] = scale * fcprod * gb;
            q[0][x] = -(q[1][x] + q[2][x]);
        }
        let nf = fp.n_features;
        let n_touched = fmax - fmin + 1;
        for (slot, atom) in [i, ea.atom, eb.atom].into_iter().enumerate() {
            for x in 0..3 {
                let (px, qx) = (p[slot][x], q[slot][x]);
                let start = (atom * 3 + x) * nf + block + fmin;
                let row = &mut grad[start..start + n_touched];
                for ((g, a), d) in row
                    .iter_mut()
                    .zip(&acc_g[fmin..=fmax])
                    .zip(&acc_dg[fmin..=fmax])
                {
                    *g += a * px + d * qx;
                }
            }
        }
        acc_dg[fmin..=fmax].fill(0.0);
    }
    acc_g[fmin..=fmax].fill(0.0);
}
