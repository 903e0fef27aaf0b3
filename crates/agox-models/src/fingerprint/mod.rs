//! AGOX's global `Fingerprint` descriptor (`agox.models.descriptors.fingerprint`,
//! Cython backend `angular_fingerprintFeature_cy.pyx`, AGOX 3.11.1), with its exact
//! derivative.
//!
//! The feature vector is a smeared radial distribution function per pair of
//! species followed by a smeared bond-angle distribution per triple of species:
//!
//! * **radial**: every ordered pair (i, j + image) with 1e-6 ≤ R ≤ `rc1` + 4σ₁
//!   adds `g_b(R/binwidth) · V / (erf(4/√2) · 4πR² · binwidth · N²)` to bin `b` of
//!   its species pair, for the bins `0 ≤ b < ceil(rc1/binwidth)`, where
//!   `g_b(u) = ½[erf(c·min(m, b+1−u)) − erf(c·max(−m, b−u))]`, `c = binwidth/(σ√2)`,
//!   `m = 4σ/binwidth`: a Gaussian truncated at ±4σ, integrated over the bin;
//! * **angular**: for every centre i and unordered pair of neighbours j, k within
//!   `rc2`, the angle θ adds `η · g_b(θ/(π/nbins)) · fc(R_ij) fc(R_ik) · V / (erf(4/√2) · N³)`
//!   to the species triple (type_i, sorted(type_j, type_k)), with the cutoff
//!   `fc(r) = 1 + γ(r/rc2)^(γ+1) − (γ+1)(r/rc2)^γ`; bins beyond [0, π] are folded
//!   back (`b < 0 → −b`, `b ≥ nbins → 2·nbins − b − 1`, AGOX's rule).
//!
//! N, V and the species come from the **environment** (template plus the atoms a
//! search places), fixed when the descriptor is built: for a cluster the volume is
//! that of its box. Which species pairs and triples get a block follows AGOX's
//! tables (see [`Fingerprint::bond_types_2body`]). Feature order: the radial blocks,
//! then the angular blocks, each `nbins` long.
//!
//! **Gradient.** AGOX's analytic gradient also differentiates the truncated ends
//! of each Gaussian window (where the bin edge is clipped at ±m and the value no
//! longer depends on the position), adding `∓ e^{−8}/(σ√(2π))` times the
//! normalisation there. The default [`GradientConvention::Exact`] gives the true
//! derivative of the features; [`GradientConvention::Agox`] reproduces AGOX's.
//!
//! **Cost.** The work is ~5k `erf` and the gradient's multiply-adds per
//! Au₈Cu₄ structure. Three things keep it small: the `erf` arguments are bounded
//! (±4/√2), so a piecewise-polynomial `erf` ([`erf`]) replaces the general one; the
//! bin edges are equally spaced, so `exp(−c²t²)` at the edges follows a
//! two-multiplication recurrence from two `exp` calls per pair or triplet; the
//! pair list, distances and cutoff functions are computed once per structure,
//! each unordered pair once.

mod compute;
pub mod erf;

use agox_atoms::geometry;
use agox_atoms::{elements, Atoms};

use crate::descriptor::{Descriptor, DescriptorError, DescriptorKind, FeatureSet};

pub use compute::FingerprintWorkspace;

/// Gaussians are truncated at this many standard deviations (AGOX's `nsigma`).
pub const NSIGMA: f64 = 4.0;
/// Pairs closer than this (Å) are ignored, as in AGOX.
const R_MIN: f64 = 1e-6;

const NAME: &str = "fingerprint";

/// Which derivative the gradient is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GradientConvention {
    /// The true derivative of the features.
    #[default]
    Exact,
    /// AGOX 3.11.1's `get_feature_gradient`, which adds the derivative of the
    /// clipped window edges (see the module docs).
    Agox,
}

/// The Fingerprint's settings; [`Default`] gives AGOX's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FingerprintParams {
    /// Radial cutoff (Å); AGOX `rc1 = 6`.
    pub rc1: f64,
    /// Angular cutoff (Å); AGOX `rc2 = 4`.
    pub rc2: f64,
    /// Radial bin width (Å); AGOX `binwidth = 0.2`.
    pub binwidth: f64,
    /// Number of angular bins over [0, π]; AGOX `Nbins = 30`.
    pub nbins: usize,
    /// Radial Gaussian width (Å); AGOX `sigma1 = 0.2`.
    pub sigma1: f64,
    /// Angular Gaussian width (rad); AGOX `sigma2 = 0.2`.
    pub sigma2: f64,
    /// Steepness of the angular cutoff function; AGOX `gamma = 2`.
    pub gamma: f64,
    /// Weight of the angular block; AGOX `eta = 20`.
    pub eta: f64,
    /// Include the angular block; AGOX `use_angular = True`.
    pub use_angular: bool,
    /// Which gradient to compute.
    pub gradient: GradientConvention,
}

impl Default for FingerprintParams {
    fn default() -> Self {
        Self {
            rc1: 6.0,
            rc2: 4.0,
            binwidth: 0.2,
            nbins: 30,
            sigma1: 0.2,
            sigma2: 0.2,
            gamma: 2.0,
            eta: 20.0,
            use_angular: true,
            gradient: GradientConvention::Exact,
        }
    }
}

/// What a Fingerprint is built from: its settings and the environment's
/// composition, cell volume and periodicity. This is its serialized form.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FingerprintSpec {
    /// The settings.
    pub params: FingerprintParams,
    /// Atomic numbers of every atom of the environment (template and searched
    /// atoms), in any order.
    pub numbers: Vec<u8>,
    /// Volume of the template's cell (Å³).
    pub volume: f64,
    /// The template's periodicity.
    pub pbc: [bool; 3],
}

/// One truncated-Gaussian smearing (radial or angular), with its derived constants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Smearing {
    /// Bin width (Å or rad).
    pub binwidth: f64,
    /// Half-width of the window in bins, `NSIGMA · σ / binwidth`.
    pub m: f64,
    /// `binwidth / (σ √2)`: erf argument per bin.
    pub c: f64,
    /// `c²`.
    pub c_sq: f64,
    /// `exp(−2c²)`: ratio of successive edge-exponential ratios.
    pub q: f64,
    /// `erf(c·m)`: the value at a clipped edge.
    pub edge_erf: f64,
    /// `exp(−(c·m)²)` at a clipped edge in [`GradientConvention::Agox`], else 0.
    pub edge_exp: f64,
    /// `1/(σ √(2π))`: derivative of the window per unit of the smeared coordinate.
    pub gauss: f64,
}

impl Smearing {
    fn new(binwidth: f64, sigma: f64, convention: GradientConvention) -> Self {
        let m = NSIGMA * sigma / binwidth;
        // As AGOX computes it: c = 1/sqrt(2) * binwidth / sigma.
        let c = 1.0 / 2f64.sqrt() * binwidth / sigma;
        let cm = c * m;
        Smearing {
            binwidth,
            m,
            c,
            c_sq: c * c,
            q: (-2.0 * c * c).exp(),
            edge_erf: libm::erf(cm),
            edge_exp: match convention {
                GradientConvention::Exact => 0.0,
                GradientConvention::Agox => (-cm * cm).exp(),
            },
            gauss: 1.0 / (sigma * (2.0 * std::f64::consts::PI).sqrt()),
        }
    }

    /// AGOX's `smearing_norm`: the weight of the Gaussian inside the window.
    fn norm(binwidth: f64, sigma: f64) -> f64 {
        let m = NSIGMA * sigma / binwidth;
        libm::erf(1.0 / 2f64.sqrt() * m * binwidth / sigma)
    }
}

/// AGOX's Fingerprint, built for one environment. See the module docs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "FingerprintSpec", into = "FingerprintSpec")]
pub struct Fingerprint {
    spec: FingerprintSpec,
    /// Sorted distinct atomic numbers of the environment.
    types: Vec<u8>,
    /// Atoms of each type in the environment.
    counts: Vec<usize>,
    /// Atomic number → type index, `u8::MAX` for absent species.
    type_of: Vec<u8>,
    nbins1: usize,
    bond2: Vec<i32>,
    n_bond2: usize,
    bond3: Vec<i32>,
    n_bond3: usize,
    radial: Smearing,
    angular: Smearing,
    /// `V / (erf(4/√2) · 4π · binwidth · N²)`: the radial normalisation times R².
    radial_scale: f64,
    /// `η · V / (erf(4/√2) · N³)`.
    angular_scale: f64,
    /// Neighbour-list cutoff: max(rc1 + 4σ₁, rc2).
    cutoff: f64,
    n_features: usize,
}

impl Fingerprint {
    /// The descriptor for a search: the environment is `template` (its atoms, cell
    /// and periodicity) plus atoms of the numbers `search` (AGOX's
    /// `Environment(template, symbols)`).
    pub fn for_search(
        params: FingerprintParams,
        template: &Atoms,
        search: &[u8],
    ) -> Result<Self, DescriptorError> {
        let mut numbers = template.numbers.clone();
        numbers.extend_from_slice(search);
        Self::new(FingerprintSpec {
            params,
            numbers,
            volume: geometry::volume(&template.cell),
            pbc: template.pbc,
        })
    }

    /// The descriptor for structures like `atoms` (same composition, cell and
    /// periodicity); AGOX's `Fingerprint.from_atoms`.
    pub fn for_structure(
        params: FingerprintParams,
        atoms: &Atoms,
    ) -> Result<Self, DescriptorError> {
        Self::for_search(
            params,
            &Atoms::default().with_cell(atoms.cell, atoms.pbc),
            &atoms.numbers,
        )
    }

    /// The descriptor from its full specification.
    pub fn new(spec: FingerprintSpec) -> Result<Self, DescriptorError> {
        let p = spec.params;
        check_params(&p)?;
        if spec.numbers.is_empty() {
            return Err(invalid(
                "numbers",
                "[]",
                "at least one atom in the environment",
            ));
        }
        if let Some(z) = spec
            .numbers
            .iter()
            .find(|z| elements::symbol(**z).is_none())
        {
            return Err(invalid("numbers", z, "atomic numbers 1..=118"));
        }
        if !(spec.volume.is_finite() && spec.volume > 0.0) {
            return Err(invalid(
                "volume",
                spec.volume,
                "a template cell of non-zero volume (for a cluster, its box): the features are normalised by it",
            ));
        }
        let mut types = spec.numbers.clone();
        types.sort_unstable();
        types.dedup();
        let counts: Vec<usize> = types
            .iter()
            .map(|t| spec.numbers.iter().filter(|z| *z == t).count())
            .collect();
        let mut type_of = vec![u8::MAX; 256];
        for (k, &t) in types.iter().enumerate() {
            type_of[usize::from(t)] = k as u8;
        }
        let periodic = spec.pbc.iter().any(|&b| b);
        let (bond2, n_bond2) = bond_types_2body(&counts, periodic);
        let (bond3, n_bond3) = bond_types_3body(&counts, periodic);
        let nbins1 = (p.rc1 / p.binwidth).ceil() as usize;
        let bw2 = std::f64::consts::PI / p.nbins as f64;
        let n_atoms = spec.numbers.len() as f64;
        let radial_scale = spec.volume
            / (Smearing::norm(p.binwidth, p.sigma1)
                * 4.0
                * std::f64::consts::PI
                * p.binwidth
                * n_atoms
                * n_atoms);
        let angular_scale =
            p.eta * spec.volume / (Smearing::norm(bw2, p.sigma2) * n_atoms * n_atoms * n_atoms);
        let mut n_features = n_bond2 * nbins1;
        let mut cutoff = p.rc1 + NSIGMA * p.sigma1;
        if p.use_angular {
            n_features += n_bond3 * p.nbins;
            cutoff = cutoff.max(p.rc2);
        }
        Ok(Fingerprint {
            radial: Smearing::new(p.binwidth, p.sigma1, p.gradient),
            angular: Smearing::new(bw2, p.sigma2, p.gradient),
            spec,
            types,
            counts,
            type_of,
            nbins1,
            bond2,
            n_bond2,
            bond3,
            n_bond3,
            radial_scale,
            angular_scale,
            cutoff,
            n_features,
        })
    }

    /// The specification it was built from.
    pub fn spec(&self) -> &FingerprintSpec {
        &self.spec
    }

    /// The settings.
    pub fn params(&self) -> &FingerprintParams {
        &self.spec.params
    }

    /// Sorted distinct atomic numbers of the environment.
    pub fn types(&self) -> &[u8] {
        &self.types
    }

    /// Radial bins per species pair, `ceil(rc1 / binwidth)`.
    pub fn n_radial_bins(&self) -> usize {
        self.nbins1
    }

    /// The 2-body table, `[type × type]` flattened (type indices into
    /// [`Fingerprint::types`]), −1 where the pair has no block; and the number of blocks.
    pub fn bond_types_2body(&self) -> (&[i32], usize) {
        (&self.bond2, self.n_bond2)
    }

    /// The 3-body table, `[type × type × type]` flattened (centre, then the two
    /// neighbours sorted), −1 where the triple has no block; and the number of blocks.
    pub fn bond_types_3body(&self) -> (&[i32], usize) {
        (&self.bond3, self.n_bond3)
    }

    /// Type indices of `atoms`, after checking that its composition and
    /// periodicity are the environment's.
    fn structure_types(&self, atoms: &Atoms, out: &mut Vec<u8>) -> Result<(), DescriptorError> {
        if atoms.pbc != self.spec.pbc {
            return Err(DescriptorError::Mismatch {
                descriptor: NAME,
                message: format!(
                    "structure has pbc {:?}, the descriptor was built for pbc {:?}",
                    atoms.pbc, self.spec.pbc
                ),
            });
        }
        out.clear();
        let mut counts = vec![0usize; self.types.len()];
        let mut foreign = false;
        for &z in &atoms.numbers {
            let t = self.type_of[usize::from(z)];
            if t == u8::MAX {
                foreign = true;
            } else {
                counts[usize::from(t)] += 1;
            }
            out.push(t);
        }
        if foreign || counts != self.counts {
            let env = Atoms {
                numbers: self.spec.numbers.clone(),
                ..Default::default()
            };
            let other = Atoms {
                numbers: atoms.numbers.clone(),
                ..Default::default()
            };
            return Err(DescriptorError::Mismatch {
                descriptor: NAME,
                message: format!(
                    "structure has composition {}, the descriptor was built for {}",
                    other.chemical_formula(),
                    env.chemical_formula()
                ),
            });
        }
        Ok(())
    }
}

impl From<Fingerprint> for FingerprintSpec {
    fn from(f: Fingerprint) -> Self {
        f.spec
    }
}

impl TryFrom<FingerprintSpec> for Fingerprint {
    type Error = DescriptorError;
    fn try_from(spec: FingerprintSpec) -> Result<Self, Self::Error> {
        Fingerprint::new(spec)
    }
}

impl PartialEq for Fingerprint {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl Descriptor for Fingerprint {
    type Workspace = FingerprintWorkspace;

    fn name(&self) -> &'static str {
        NAME
    }

    fn kind(&self) -> DescriptorKind {
        DescriptorKind::Global
    }

    fn n_features(&self) -> usize {
        self.n_features
    }

    fn n_centers(&self, _atoms: &Atoms) -> usize {
        1
    }

    fn compute(
        &self,
        atoms: &Atoms,
        gradient: bool,
        workspace: &mut FingerprintWorkspace,
        out: &mut FeatureSet,
    ) -> Result<(), DescriptorError> {
        compute::compute(self, atoms, gradient, workspace, out)
    }
}

fn invalid(
    name: &'static str,
    value: impl std::fmt::Display,
    expected: &'static str,
) -> DescriptorError {
    DescriptorError::InvalidSetting {
        descriptor: NAME,
        name,
        value: value.to_string(),
        expected,
    }
}

fn check_params(p: &FingerprintParams) -> Result<(), DescriptorError> {
    let positive = |name, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(invalid(name, v, "a finite number > 0"))
        }
    };
    positive("rc1", p.rc1)?;
    positive("rc2", p.rc2)?;
    positive("binwidth", p.binwidth)?;
    positive("sigma1", p.sigma1)?;
    positive("sigma2", p.sigma2)?;
    if !(p.gamma.is_finite() && p.gamma >= 0.0) {
        return Err(invalid("gamma", p.gamma, "a finite number >= 0"));
    }
    if !p.eta.is_finite() {
        return Err(invalid("eta", p.eta, "a finite number"));
    }
    if p.nbins == 0 {
        return Err(invalid("nbins", p.nbins, "at least 1"));
    }
    // Folding maps a bin beyond [0, π] back once; the window must not reach
    // past the far end, which holds while it is narrower than the range.
    let m2 = NSIGMA * p.sigma2 / (std::f64::consts::PI / p.nbins as f64);
    if p.use_angular && m2 > p.nbins as f64 - 1.0 {
        return Err(invalid(
            "sigma2",
            p.sigma2,
            "4·sigma2 at most π·(nbins − 1)/nbins, so that folded angular bins stay in range",
        ));
    }
    Ok(())
}

/// AGOX's 2-body table for types with these counts: loop t1, t2 over the sorted
/// types, key (min, max); a key gets the next index the first time it is seen if
/// its types differ, or if they are equal and that type has more than one atom or
/// any direction is periodic.
fn bond_types_2body(counts: &[usize], periodic: bool) -> (Vec<i32>, usize) {
    let nt = counts.len();
    let mut table = vec![-1; nt * nt];
    let mut n = 0;
    for t1 in 0..nt {
        for t2 in 0..nt {
            let (a, b) = (t1.min(t2), t1.max(t2));
            let wanted = a < b || counts[a] > 1 || periodic;
            if wanted && table[a * nt + b] == -1 {
                table[a * nt + b] = n as i32;
                n += 1;
            }
        }
    }
    (table, n)
}

/// AGOX's 3-body table: loop t1, t2, t3 over the sorted types, skipping t2 == t1
/// or t3 == t1 when t1 has a single atom and nothing is periodic; the key
/// (t1, sorted(t2, t3)) is appended when t2 < t3, or when t2 == t3 and either
/// t2 == t1 with more than two atoms of t1 (or periodic), or t2 != t1 with more than
/// one atom of t2 (or periodic). Each key is met once, so its index is its position.
fn bond_types_3body(counts: &[usize], periodic: bool) -> (Vec<i32>, usize) {
    let nt = counts.len();
    let several = |t: usize| counts[t] > 1 || periodic;
    let mut keys: Vec<(usize, usize, usize)> = Vec::new();
    for (t1, &count1) in counts.iter().enumerate() {
        for t2 in 0..nt {
            if t1 == t2 && !several(t1) {
                continue;
            }
            for t3 in 0..nt {
                if t1 == t3 && !several(t1) {
                    continue;
                }
                let key = (t1, t2.min(t3), t2.max(t3));
                let append = if t2 < t3 {
                    true
                } else if t2 == t3 {
                    if t2 == t1 {
                        count1 > 2 || periodic
                    } else {
                        several(t2)
                    }
                } else {
                    false
                };
                if append {
                    keys.push(key);
                }
            }
        }
    }
    let mut table = vec![-1; nt * nt * nt];
    for (i, &(a, b, c)) in keys.iter().enumerate() {
        table[(a * nt + b) * nt + c] = i as i32;
    }
    (table, keys.len())
}

#[cfg(test)]
pub(crate) mod tests;
