//! Effective-medium theory (EMT), reproducing `ase.calculators.emt.EMT` of
//! ASE 3.29 with its default `asap_cutoff=False`.
//!
//! The model (Jacobsen, Stoltze and Nørskov, Surf. Sci. 366, 394 (1996)) gives
//! each atom a cohesive energy that depends on the electron density its
//! neighbours put on it, plus an atomic-sphere correction:
//!
//! * the density `σ1_i = Σ_j χ_ij exp(−η2_j (r_ij − β s0_j)) w(r_ij)`, with
//!   `χ_ij = n0_j / n0_i`, defines the neutral-sphere radius
//!   `s_i = −ln(σ1_i / (12 γ1_i)) / (β η2_i)`;
//! * the cohesive function is `E_c,i = E0_i (1 + λ_i s_i) exp(−λ_i s_i) + 6 V0_i exp(−κ_i s_i)`;
//! * the pair part is `−V0_i/(2 γ2_i) Σ_j χ_ij exp(−κ_j (r_ij/β − s0_j)) w(r_ij)`,
//!   symmetrised over the pair and split half and half between its atoms;
//! * finally `E0_i` is subtracted from every atom, so a perfect fcc crystal at
//!   its EMT lattice constant has zero energy and an isolated atom has `−E0 > 0`.
//!
//! The weight `w(r) = 1 / (1 + exp(a (r − rc)))` uses one global `rc` derived
//! from the largest `s0` in the whole parameter table (silver), and pairs with
//! `r ≥ rc_list = rc + 0.5 Å` are dropped outright, as ASE does (so energy and
//! forces jump by a few µeV there). `γ1`, `γ2` normalise the sums over the first
//! three fcc shells with the same weight.

use crate::atoms::Atoms;
use crate::calc::{CalcError, Calculator, Evaluation};
use crate::neighbors::{cell_volume, NeighborError, NeighborList};

/// Bohr radius in Å, the value ASE uses (`ase.units.Bohr`, CODATA 2014).
pub const BOHR: f64 = 0.5291772105638411;

/// ASE's β = (16π/3)^(1/3) / √2 with its historical rounding; the fcc
/// nearest-neighbour distance is `β s0`.
pub const BETA: f64 = 1.809;

/// Extra range (Å) the neighbour list keeps so it can be reused while atoms move.
const SKIN: f64 = 0.3;

/// ASE's parameter table: symbol, Z, E0 (eV), s0 (bohr), V0 (eV), η2 (1/bohr),
/// κ (1/bohr), λ (1/bohr), n0 (1/bohr³).
const TABLE: [(&str, u8, [f64; 7]); 11] = [
    ("Al", 13, [-3.28, 3.00, 1.493, 1.240, 2.000, 1.169, 0.00700]),
    ("Cu", 29, [-3.51, 2.67, 2.476, 1.652, 2.740, 1.906, 0.00910]),
    ("Ag", 47, [-2.96, 3.01, 2.132, 1.652, 2.790, 1.892, 0.00547]),
    ("Au", 79, [-3.80, 3.00, 2.321, 1.674, 2.873, 2.182, 0.00703]),
    ("Ni", 28, [-4.44, 2.60, 3.673, 1.669, 2.757, 1.948, 0.01030]),
    ("Pd", 46, [-3.90, 2.87, 2.773, 1.818, 3.107, 2.155, 0.00688]),
    ("Pt", 78, [-5.85, 2.90, 4.067, 1.812, 3.145, 2.192, 0.00802]),
    ("H", 1, [-3.21, 1.31, 0.132, 2.652, 2.790, 3.892, 0.00547]),
    ("C", 6, [-3.50, 1.81, 0.332, 1.652, 2.790, 1.892, 0.01322]),
    ("N", 7, [-5.10, 1.88, 0.132, 1.652, 2.790, 1.892, 0.01222]),
    ("O", 8, [-4.60, 1.95, 0.332, 1.652, 2.790, 1.892, 0.00850]),
];

const N_KINDS: usize = TABLE.len();

/// Parameters of one element in Å-based units, with the derived normalisations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmtParameters {
    /// Chemical symbol.
    pub symbol: &'static str,
    /// Atomic number.
    pub number: u8,
    /// Cohesive energy E0 (eV, negative); subtracted from every atom's energy.
    pub e0: f64,
    /// Neutral-sphere radius s0 (Å).
    pub s0: f64,
    /// V0 (eV).
    pub v0: f64,
    /// η2 (1/Å).
    pub eta2: f64,
    /// κ (1/Å).
    pub kappa: f64,
    /// λ (1/Å).
    pub lambda: f64,
    /// n0 (1/Å³).
    pub n0: f64,
    /// γ1: weighted first-three-shell sum of the density term in fcc.
    pub gamma1: f64,
    /// γ2: weighted first-three-shell sum of the pair term in fcc.
    pub gamma2: f64,
}

/// Per-kind constants used in the pair loop.
#[derive(Debug, Clone, Copy, Default)]
struct KindConstants {
    /// β s0.
    beta_s0: f64,
    /// η2.
    eta2: f64,
    /// κ / β.
    kappa_over_beta: f64,
    /// −V0 / (2 γ2).
    neg_half_v0_over_gamma2: f64,
}

/// Per-pair values kept between the two passes of a calculation.
#[derive(Debug, Clone, Copy)]
struct PairScratch {
    i: u32,
    j: u32,
    d: [f64; 3],
    inv_r: f64,
    /// d(contribution of j to σ1_i)/dr.
    g_ij: f64,
    /// d(contribution of i to σ1_j)/dr.
    g_ji: f64,
}

/// The EMT calculator (name `"emt"`), ASE-compatible; see the module docs.
///
/// Supports Al, Cu, Ag, Au, Ni, Pd, Pt, and ASE's "not for serious use" H, C,
/// N, O. Keeps its neighbour list and work arrays between calls.
#[derive(Debug, Clone)]
pub struct Emt {
    rc: f64,
    rc_list: f64,
    acut: f64,
    params: [EmtParameters; N_KINDS],
    /// χ[a][b] = n0_b / n0_a.
    chi: [[f64; N_KINDS]; N_KINDS],
    /// Per-kind constants of the pair loop, precomputed to avoid divisions.
    fast: [KindConstants; N_KINDS],
    /// Below this distance the logistic weight is exactly 1.0 in f64.
    r_weight_one: f64,
    nl: NeighborList,
    kind: Vec<u8>,
    sigma1: Vec<f64>,
    deds: Vec<f64>,
    pairs: Vec<PairScratch>,
}

impl Default for Emt {
    fn default() -> Self {
        Self::new()
    }
}

impl Emt {
    /// EMT with ASE's parameters and cutoff convention (`asap_cutoff=False`).
    pub fn new() -> Self {
        let max_s0 = TABLE
            .iter()
            .map(|t| t.2[1])
            .fold(f64::NEG_INFINITY, f64::max)
            * BOHR;
        let r1nn = BETA * max_s0;
        let rc = r1nn * 0.5 * (3f64.sqrt() + 2.0);
        let r4nn = 2.0 * r1nn;
        let eps: f64 = 1e-4;
        let acut = (1.0 / eps - 1.0).ln() / (r4nn - rc);
        let rc_list = rc + 0.5;
        let weight = |r: f64| 1.0 / (1.0 + (acut * (r - rc)).exp());

        let params = TABLE.map(|(symbol, number, p)| {
            let s0 = p[1] * BOHR;
            let eta2 = p[3] / BOHR;
            let kappa = p[4] / BOHR;
            // First three fcc shells: 12, 6 and 24 neighbours at β s0 √{1,2,3}.
            let mut gamma1 = 0.0;
            let mut gamma2 = 0.0;
            for (count, mult) in [(12.0, 1.0f64), (6.0, 2.0), (24.0, 3.0)] {
                let r = BETA * s0 * mult.sqrt();
                let x = count * weight(r) / 12.0;
                gamma1 += x * (-eta2 * (r - BETA * s0)).exp();
                gamma2 += x * (-kappa / BETA * (r - BETA * s0)).exp();
            }
            EmtParameters {
                symbol,
                number,
                e0: p[0],
                s0,
                v0: p[2],
                eta2,
                kappa,
                lambda: p[5] / BOHR,
                n0: p[6] / (BOHR * BOHR * BOHR),
                gamma1,
                gamma2,
            }
        });
        let mut chi = [[0.0; N_KINDS]; N_KINDS];
        for a in 0..N_KINDS {
            for b in 0..N_KINDS {
                chi[a][b] = params[b].n0 / params[a].n0;
            }
        }
        let fast = params.map(|p| KindConstants {
            beta_s0: BETA * p.s0,
            eta2: p.eta2,
            kappa_over_beta: p.kappa / BETA,
            neg_half_v0_over_gamma2: -0.5 * p.v0 / p.gamma2,
        });
        // exp(acut (r − rc)) < 2⁻⁵⁴ makes 1 + exp(..) round to exactly 1.
        let r_weight_one = rc - 54.0 * std::f64::consts::LN_2 / acut;
        Emt {
            rc,
            rc_list,
            acut,
            params,
            chi,
            fast,
            r_weight_one,
            nl: NeighborList::new(rc_list).half().with_skin(SKIN),
            kind: Vec::new(),
            sigma1: Vec::new(),
            deds: Vec::new(),
            pairs: Vec::new(),
        }
    }

    /// Midpoint of the logistic weight, `rc` (Å): 5.3768 Å.
    pub fn rc(&self) -> f64 {
        self.rc
    }

    /// Hard cutoff (Å): pairs with `r >= rc_list` are ignored. `rc + 0.5` = 5.8768 Å.
    pub fn rc_list(&self) -> f64 {
        self.rc_list
    }

    /// Steepness `a` of the logistic weight (1/Å).
    pub fn acut(&self) -> f64 {
        self.acut
    }

    /// The parameters for atomic number `number`, if EMT knows the element.
    pub fn parameters(&self, number: u8) -> Option<&EmtParameters> {
        kind_of(number).map(|k| &self.params[k])
    }

    /// Every element with parameters, in ASE's table order.
    pub fn elements(&self) -> impl Iterator<Item = &EmtParameters> {
        self.params.iter()
    }

    fn invalid(message: String) -> CalcError {
        CalcError::Invalid {
            calculator: "emt",
            message,
        }
    }
}

/// Index of an element in [`TABLE`].
fn kind_of(number: u8) -> Option<usize> {
    TABLE.iter().position(|t| t.1 == number)
}

/// Chemical symbol for an atomic number (for error messages).
fn symbol_of(number: u8) -> String {
    const SYMBOLS: &str = "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn \
        Fe Co Ni Cu Zn Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe \
        Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi \
        Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn \
        Nh Fl Mc Lv Ts Og";
    SYMBOLS
        .split_whitespace()
        .nth(number as usize)
        .map_or_else(|| format!("Z{number}"), str::to_string)
}

impl Calculator for Emt {
    fn name(&self) -> &'static str {
        "emt"
    }

    fn reset(&mut self) {
        self.nl.invalidate();
    }

    fn calculate(&mut self, atoms: &Atoms, stress: bool) -> Result<Evaluation, CalcError> {
        let n = atoms.len();
        if atoms.positions.len() != n {
            return Err(Self::invalid(format!(
                "{} atomic numbers but {} positions",
                n,
                atoms.positions.len()
            )));
        }
        self.kind.clear();
        for &z in &atoms.numbers {
            match kind_of(z) {
                Some(k) => self.kind.push(k as u8),
                None => {
                    return Err(CalcError::UnsupportedElement {
                        calculator: "emt",
                        symbol: symbol_of(z),
                        number: z,
                        known: TABLE.iter().map(|t| t.0).collect::<Vec<_>>().join(", "),
                    })
                }
            }
        }
        self.nl
            .update(atoms)
            .map_err(|e: NeighborError| Self::invalid(e.to_string()))?;
        let volume = if stress {
            cell_volume(&atoms.cell)
        } else {
            None
        };

        let Emt {
            rc,
            rc_list,
            acut,
            params,
            chi: chi_table,
            fast,
            r_weight_one,
            nl,
            kind,
            sigma1,
            deds,
            pairs,
        } = self;
        let (rc, rc_list, acut, r_weight_one) = (*rc, *rc_list, *acut, *r_weight_one);
        sigma1.clear();
        sigma1.resize(n, 0.0);
        deds.clear();
        deds.resize(n, 0.0);
        pairs.clear();
        pairs.reserve(nl.n_entries());
        let mut energies = vec![0.0; n];
        let mut forces = vec![[0.0; 3]; n];
        let mut virial = [[0.0; 3]; 3];
        let x = &atoms.positions;

        // Pass 1: densities, the pair (atomic-sphere) term and its forces.
        for (i, &xi) in x.iter().enumerate() {
            let ki = kind[i] as usize;
            let ci = fast[ki];
            // Atom i's sums are kept in registers and stored once.
            let (mut s1_i, mut e_i, mut f_i) = (0.0, 0.0, [0.0; 3]);
            for nb in nl.neighbors(i) {
                let j = nb.j;
                let xj = x[j];
                let d = [
                    xj[0] + nb.offset[0] - xi[0],
                    xj[1] + nb.offset[1] - xi[1],
                    xj[2] + nb.offset[2] - xi[2],
                ];
                let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
                // Positions and offsets are finite (checked by the neighbour list).
                if r >= rc_list {
                    continue;
                }
                if r == 0.0 {
                    return Err(Self::invalid(format!(
                        "atoms {i} and {j} (image {:?}) are on top of each other",
                        nb.shift
                    )));
                }
                let kj = kind[j] as usize;
                let cj = fast[kj];
                // Logistic weight w and w'/w; exactly (1, 0) well inside rc.
                let (w, dw) = if r < r_weight_one {
                    (1.0, 0.0)
                } else {
                    let w = 1.0 / (1.0 + fast_exp(acut * (r - rc)));
                    (w, acut * (w - 1.0))
                };
                let e1j = fast_exp(-cj.eta2 * (r - cj.beta_s0));
                let e2j = fast_exp(-cj.kappa_over_beta * (r - cj.beta_s0));
                let (e1i, e2i, chi, inv_chi) = if ki == kj {
                    (e1j, e2j, 1.0, 1.0)
                } else {
                    (
                        fast_exp(-ci.eta2 * (r - ci.beta_s0)),
                        fast_exp(-ci.kappa_over_beta * (r - ci.beta_s0)),
                        chi_table[ki][kj],
                        chi_table[kj][ki],
                    )
                };
                let s1ij = e1j * chi * w;
                let s1ji = e1i * inv_chi * w;
                s1_i += s1ij;
                sigma1[j] += s1ji;

                let es = ci.neg_half_v0_over_gamma2 * e2j * chi * w;
                let eo = cj.neg_half_v0_over_gamma2 * e2i * inv_chi * w;
                let half = 0.5 * (es + eo);
                e_i += half;
                energies[j] += half;
                let dedr = es * (dw - cj.kappa_over_beta) + eo * (dw - ci.kappa_over_beta);
                let inv_r = 1.0 / r;
                let g = dedr * inv_r;
                let f = [g * d[0], g * d[1], g * d[2]];
                let fj = &mut forces[j];
                for k in 0..3 {
                    f_i[k] += f[k];
                    fj[k] -= f[k];
                }
                if volume.is_some() {
                    add_outer(&mut virial, d, f);
                }
                pairs.push(PairScratch {
                    i: i as u32,
                    j: j as u32,
                    d,
                    inv_r,
                    g_ij: s1ij * (dw - cj.eta2),
                    g_ji: s1ji * (dw - ci.eta2),
                });
            }
            sigma1[i] += s1_i;
            energies[i] += e_i;
            for k in 0..3 {
                forces[i][k] += f_i[k];
            }
        }

        // Per atom: the cohesive function and its derivative with respect to σ1.
        // Every pair inside rc_list adds a positive amount to σ1, so σ1 > 0
        // exactly when the atom has a neighbour; lone atoms keep E_c = 0 as in ASE.
        for (a, e) in energies.iter_mut().enumerate() {
            let p = &params[kind[a] as usize];
            let s1 = sigma1[a];
            if s1 > 0.0 {
                let ds = -(s1 / (12.0 * p.gamma1)).ln() / (BETA * p.eta2);
                let lds = p.lambda * ds;
                let ex = (-lds).exp();
                let six = 6.0 * p.v0 * (-p.kappa * ds).exp();
                *e += p.e0 * (1.0 + lds) * ex + six;
                let de_ds = -p.e0 * p.lambda * lds * ex - p.kappa * six;
                deds[a] = de_ds / (-BETA * p.eta2 * s1);
            }
            *e -= p.e0;
        }

        // Pass 2: forces from the cohesive function through σ1.
        for ps in pairs.iter() {
            let (i, j) = (ps.i as usize, ps.j as usize);
            let g = (deds[i] * ps.g_ij + deds[j] * ps.g_ji) * ps.inv_r;
            let f = [g * ps.d[0], g * ps.d[1], g * ps.d[2]];
            for k in 0..3 {
                forces[i][k] += f[k];
                forces[j][k] -= f[k];
            }
            if volume.is_some() {
                add_outer(&mut virial, ps.d, f);
            }
        }

        let energy = energies.iter().sum();
        let stress = volume.map(|v| {
            let s = |a: usize, b: usize| 0.5 * (virial[a][b] + virial[b][a]) / v;
            [s(0, 0), s(1, 1), s(2, 2), s(1, 2), s(0, 2), s(0, 1)]
        });
        Ok(Evaluation {
            energy,
            forces,
            stress,
            energies: Some(energies),
        })
    }
}

/// 2^(j/32), j = 0..31, correctly rounded.
const EXP2_TABLE: [f64; 32] = [
    f64::from_bits(0x3ff0000000000000),
    f64::from_bits(0x3ff059b0d3158574),
    f64::from_bits(0x3ff0b5586cf9890f),
    f64::from_bits(0x3ff11301d0125b51),
    f64::from_bits(0x3ff172b83c7d517b),
    f64::from_bits(0x3ff1d4873168b9aa),
    f64::from_bits(0x3ff2387a6e756238),
    f64::from_bits(0x3ff29e9df51fdee1),
    f64::from_bits(0x3ff306fe0a31b715),
    f64::from_bits(0x3ff371a7373aa9cb),
    f64::from_bits(0x3ff3dea64c123422),
    f64::from_bits(0x3ff44e086061892d),
    f64::from_bits(0x3ff4bfdad5362a27),
    f64::from_bits(0x3ff5342b569d4f82),
    f64::from_bits(0x3ff5ab07dd485429),
    f64::from_bits(0x3ff6247eb03a5585),
    f64::from_bits(0x3ff6a09e667f3bcd),
    f64::from_bits(0x3ff71f75e8ec5f74),
    f64::from_bits(0x3ff7a11473eb0187),
    f64::from_bits(0x3ff82589994cce13),
    f64::from_bits(0x3ff8ace5422aa0db),
    f64::from_bits(0x3ff93737b0cdc5e5),
    f64::from_bits(0x3ff9c49182a3f090),
    f64::from_bits(0x3ffa5503b23e255d),
    f64::from_bits(0x3ffae89f995ad3ad),
    f64::from_bits(0x3ffb7f76f2fb5e47),
    f64::from_bits(0x3ffc199bdd85529c),
    f64::from_bits(0x3ffcb720dcef9069),
    f64::from_bits(0x3ffd5818dcfba487),
    f64::from_bits(0x3ffdfc97337b9b5f),
    f64::from_bits(0x3ffea4afa2a490da),
    f64::from_bits(0x3fff50765b6e4540),
];

/// `exp(x)` to within about 2 ulp, written to be inlined into the pair loop.
///
/// glibc's `exp` is accurate but an opaque call; in the pair loop its call
/// overhead and the lost overlap between neighbouring pairs cost more than the
/// arithmetic. Table-driven reduction `x = (32 m + j) ln2/32 + r` with
/// |r| ≤ ln2/64 (Cody–Waite split of ln2/32), a degree-6 Taylor polynomial for
/// `exp(r)` (truncation < 4e-18 relative), times `2^(j/32)` from a table and
/// `2^m` through the exponent field. Arguments below −708 give 0 (true values
/// are below 3.3e−308) and above 709 give +∞.
#[inline(always)]
fn fast_exp(x: f64) -> f64 {
    const INV_LN2_32: f64 = 32.0 * std::f64::consts::LOG2_E;
    // fdlibm's ln2 split (the high part has 32 significant bits), divided by 32.
    const LN2_32_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000) / 32.0;
    const LN2_32_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76) / 32.0;
    // 1.5 · 2⁵²: adding and subtracting it rounds to the nearest integer.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    if x.is_nan() {
        return x;
    }
    if x <= -708.0 {
        return 0.0;
    }
    if x > 709.0 {
        return f64::INFINITY;
    }
    let t = x * INV_LN2_32 + ROUND;
    let kf = t - ROUND;
    // The low 32 bits of t's mantissa hold the integer kf in two's complement.
    let k = (t.to_bits() as u32) as i32;
    let r = (x - kf * LN2_32_HI) - kf * LN2_32_LO;
    let r2 = r * r;
    // 1 + r + r²/2 + r³/6 + r⁴/24 + r⁵/120 + r⁶/720, in Estrin form.
    let p = (1.0 + r)
        + r2 * ((0.5 + r * (1.0 / 6.0))
            + r2 * ((1.0 / 24.0 + r * (1.0 / 120.0)) + r2 * (1.0 / 720.0)));
    let m = (k >> 5) as i64;
    let scale = f64::from_bits(((m + 1023) as u64) << 52);
    EXP2_TABLE[(k & 31) as usize] * p * scale
}

#[inline]
fn add_outer(m: &mut [[f64; 3]; 3], d: [f64; 3], f: [f64; 3]) {
    for (a, row) in m.iter_mut().enumerate() {
        for (b, v) in row.iter_mut().enumerate() {
            *v += d[a] * f[b];
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0.0f64;
        let mut x = -707.9;
        while x < 709.0 {
            let (a, b) = (fast_exp(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
            x += 0.0137;
        }
        for i in 0..200_000 {
            let x = -40.0 + 80.0 * (i as f64 / 200_000.0).powf(1.3);
            let (a, b) = (fast_exp(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
        }
        assert!(worst < 1e-15, "max relative error {worst:e}");
        assert_eq!(fast_exp(0.0), 1.0);
        assert_eq!(fast_exp(-1000.0), 0.0);
        assert_eq!(fast_exp(f64::NEG_INFINITY), 0.0);
        assert_eq!(fast_exp(710.0), f64::INFINITY);
        assert!(fast_exp(f64::NAN).is_nan());
    }

    #[test]
    fn cutoff_constants_match_ase() {
        let emt = Emt::new();
        // Values from ASE 3.29 (reference emt.json, meta.cutoff).
        assert!((emt.rc() - 5.376798323827276).abs() < 1e-13);
        assert!((emt.rc_list() - 5.876798323827276).abs() < 1e-13);
        assert!((emt.acut() - 23.858454772693438).abs() < 1e-11);
        let w = 1.0 / (1.0 + (emt.acut() * (emt.rc_list() - emt.rc())).exp());
        assert!((w - 6.5947677984822e-06).abs() < 1e-15);
    }

    #[test]
    fn isolated_atoms_have_minus_e0() {
        let atoms = Atoms {
            numbers: vec![79, 79],
            positions: vec![[0.0; 3], [10.0, 0.0, 0.0]],
            ..Default::default()
        };
        let mut emt = Emt::new();
        let ev = emt.calculate(&atoms, true).unwrap();
        assert!((ev.energy - 7.6).abs() < 1e-12);
        assert!(ev.stress.is_none());
        assert!(ev.forces.iter().flatten().all(|&f| f == 0.0));
    }

    #[test]
    fn unsupported_element() {
        let atoms = Atoms {
            numbers: vec![79, 26],
            positions: vec![[0.0; 3], [2.5, 0.0, 0.0]],
            ..Default::default()
        };
        match Emt::new().calculate(&atoms, false) {
            Err(CalcError::UnsupportedElement {
                symbol,
                number,
                calculator,
                ..
            }) => {
                assert_eq!((symbol.as_str(), number, calculator), ("Fe", 26, "emt"));
            }
            other => panic!("expected UnsupportedElement, got {other:?}"),
        }
        assert_eq!(symbol_of(200), "Z200");
    }

    #[test]
    fn perfect_fcc_at_emt_lattice_constant_is_near_zero() {
        // One-atom fcc cell at the EMT nearest-neighbour distance β s0.
        let emt0 = Emt::new();
        let p = *emt0.parameters(29).unwrap();
        let a = BETA * p.s0 * 2f64.sqrt();
        let atoms = Atoms {
            numbers: vec![29],
            positions: vec![[0.0; 3]],
            cell: [
                [0.0, a / 2.0, a / 2.0],
                [a / 2.0, 0.0, a / 2.0],
                [a / 2.0, a / 2.0, 0.0],
            ],
            pbc: [true; 3],
            ..Default::default()
        };
        let ev = Emt::new().calculate(&atoms, true).unwrap();
        // Not exactly zero: shells beyond the third and the rounded β contribute.
        assert!(ev.energy.abs() < 0.05, "{}", ev.energy);
        assert!(ev.stress.is_some());
    }
}
