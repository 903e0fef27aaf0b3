//! AGOX's local `SimpleFingerprint` (`agox/models/descriptors/simple_fingerprint.py`,
//! AGOX 3.11.1): per atom, a Gaussian-smeared radial histogram of its neighbours,
//! one block per (centre species, neighbour species), with an analytic gradient.
//!
//! For centre i and every other atom j with `r_ij ≤ r_cut + 4·width` (AGOX skips
//! `r > 3.8` Å at the defaults, so 3.8 itself counts), every bin k gets
//!
//! ```text
//! x_i[(s_i·n_s + s_j)·n_bins + k] += ½·exp(−½((b_k − r_ij)/width)²) / r_ij²,
//! b_k = linspace(0, r_cut, n_bins)      (spacing r_cut/(n_bins − 1), not width)
//! ```
//!
//! with the species indices `s` in the order of their **chemical symbols** (AGOX's
//! `Environment.get_species()`: Au before Cu). Only the centre's own species block
//! is non-zero. Without `separate_center_species` the block is `s_j` alone.
//! Nothing smooths the cutoff: a pair crossing it changes the last bins by
//! ½·e⁻⁸/3.8² ≈ 1.2e-5, as in AGOX.
//!
//! Distances are minimum-image distances (AGOX's `get_all_distances(mic=True)`):
//! one image per pair, so in a periodic cell shorter than twice the cutoff further
//! images are not counted — AGOX's behaviour, kept.
//!
//! **Gradient.** AGOX differentiates the features by central differences
//! (δ = 1e-4 Å, `DescriptorBaseClass.central_difference_gradient`), which moves the
//! positions it is given. Here it is the analytic derivative,
//! `∂/∂r [½ g_k / r²] = ½ g_k / r² · ((b_k − r)/width² − 2/r)` along the pair's unit
//! vector, which agrees with a five-point difference to 1e-12 where AGOX's central
//! difference is off by up to 3e-8.

use agox_atoms::geometry::MinimumImage;
use agox_atoms::{elements, Atoms};

use crate::descriptor::{Descriptor, DescriptorError, DescriptorKind, FeatureSet};

const NAME: &str = "simple_fingerprint";

/// The SimpleFingerprint's settings; [`Default`] gives AGOX's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimpleFingerprintParams {
    /// Bins per block; AGOX `Nbins = 30`.
    pub nbins: usize,
    /// Gaussian width (Å); AGOX `width = 0.2`.
    pub width: f64,
    /// Last bin centre (Å); pairs up to `r_cut + 4·width` count; AGOX `r_cut = 3`.
    pub r_cut: f64,
    /// One block per (centre species, neighbour species) rather than per
    /// neighbour species; AGOX `separate_center_species = True`.
    pub separate_center_species: bool,
}

impl Default for SimpleFingerprintParams {
    fn default() -> Self {
        SimpleFingerprintParams {
            nbins: 30,
            width: 0.2,
            r_cut: 3.0,
            separate_center_species: true,
        }
    }
}

/// What a SimpleFingerprint is built from; its serialized form.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimpleFingerprintSpec {
    /// The settings.
    pub params: SimpleFingerprintParams,
    /// The environment's species (atomic numbers, any order, repeats allowed).
    pub species: Vec<u8>,
}

/// AGOX's SimpleFingerprint for one set of species. See the module docs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "SimpleFingerprintSpec", into = "SimpleFingerprintSpec")]
pub struct SimpleFingerprint {
    spec: SimpleFingerprintSpec,
    /// Distinct species sorted by chemical symbol.
    species: Vec<u8>,
    /// Atomic number → species index, `u8::MAX` for absent species.
    index_of: Vec<u8>,
    /// Bin centres, `linspace(0, r_cut, nbins)`.
    bins: Vec<f64>,
    /// Pairs with r above this are skipped.
    cutoff: f64,
    n_features: usize,
}

/// Scratch of a SimpleFingerprint call; keep one per caller.
#[derive(Debug, Default, Clone)]
pub struct SimpleFingerprintWorkspace {
    species: Vec<u8>,
    bins: Vec<f64>,
}

impl SimpleFingerprint {
    /// The descriptor for the species `species` (atomic numbers; order and
    /// repeats do not matter).
    pub fn new(params: SimpleFingerprintParams, species: &[u8]) -> Result<Self, DescriptorError> {
        Self::from_spec(SimpleFingerprintSpec {
            params,
            species: species.to_vec(),
        })
    }

    /// The descriptor for a search placing atoms `search` on `template` (AGOX's
    /// `Environment(template, symbols)`): the species of both.
    pub fn for_search(
        params: SimpleFingerprintParams,
        template: &Atoms,
        search: &[u8],
    ) -> Result<Self, DescriptorError> {
        let mut species = template.numbers.clone();
        species.extend_from_slice(search);
        Self::new(params, &species)
    }

    fn from_spec(spec: SimpleFingerprintSpec) -> Result<Self, DescriptorError> {
        let p = spec.params;
        let positive = |name, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(invalid(name, v, "a finite number > 0"))
            }
        };
        positive("width", p.width)?;
        positive("r_cut", p.r_cut)?;
        if p.nbins == 0 {
            return Err(invalid("nbins", p.nbins, "at least 1"));
        }
        if spec.species.is_empty() {
            return Err(invalid("species", "[]", "at least one species"));
        }
        let mut species = Vec::new();
        for &z in &spec.species {
            if elements::symbol(z).is_none() {
                return Err(invalid("species", z, "atomic numbers 1..=118"));
            }
            if !species.contains(&z) {
                species.push(z);
            }
        }
        // AGOX sorts the species by symbol (Environment.get_species).
        species.sort_by_key(|&z| elements::symbol(z));
        let mut index_of = vec![u8::MAX; 256];
        for (k, &z) in species.iter().enumerate() {
            index_of[usize::from(z)] = k as u8;
        }
        let n = species.len();
        let blocks = if p.separate_center_species { n * n } else { n };
        Ok(SimpleFingerprint {
            bins: linspace(p.r_cut, p.nbins),
            cutoff: p.r_cut + 4.0 * p.width,
            n_features: blocks * p.nbins,
            species,
            index_of,
            spec,
        })
    }

    /// The settings.
    pub fn params(&self) -> &SimpleFingerprintParams {
        &self.spec.params
    }

    /// The species, in feature-block order (sorted by chemical symbol).
    pub fn species(&self) -> &[u8] {
        &self.species
    }

    /// The bin centres.
    pub fn bins(&self) -> &[f64] {
        &self.bins
    }

    /// Feature block of a centre of species index `si` and a neighbour of `sj`.
    fn block(&self, si: usize, sj: usize) -> usize {
        if self.spec.params.separate_center_species {
            si * self.species.len() + sj
        } else {
            sj
        }
    }
}

/// numpy's `linspace(0, stop, n)`: `k·(stop/(n − 1))`, the last exactly `stop`.
fn linspace(stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![0.0];
    }
    let step = stop / (n - 1) as f64;
    let mut out: Vec<f64> = (0..n).map(|k| k as f64 * step).collect();
    out[n - 1] = stop;
    out
}

impl From<SimpleFingerprint> for SimpleFingerprintSpec {
    fn from(f: SimpleFingerprint) -> Self {
        f.spec
    }
}

impl TryFrom<SimpleFingerprintSpec> for SimpleFingerprint {
    type Error = DescriptorError;
    fn try_from(spec: SimpleFingerprintSpec) -> Result<Self, Self::Error> {
        SimpleFingerprint::from_spec(spec)
    }
}

impl PartialEq for SimpleFingerprint {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl Descriptor for SimpleFingerprint {
    type Workspace = SimpleFingerprintWorkspace;

    fn name(&self) -> &'static str {
        NAME
    }

    fn kind(&self) -> DescriptorKind {
        DescriptorKind::Local
    }

    fn n_features(&self) -> usize {
        self.n_features
    }

    fn n_centers(&self, atoms: &Atoms) -> usize {
        atoms.len()
    }

    fn compute(
        &self,
        atoms: &Atoms,
        gradient: bool,
        ws: &mut SimpleFingerprintWorkspace,
        out: &mut FeatureSet,
    ) -> Result<(), DescriptorError> {
        let n = atoms.len();
        ws.species.clear();
        for (index, &z) in atoms.numbers.iter().enumerate() {
            let s = self.index_of[usize::from(z)];
            if s == u8::MAX {
                return Err(DescriptorError::Mismatch {
                    descriptor: NAME,
                    message: format!(
                        "atom {index} has atomic number {z}, the descriptor was built for species {:?}",
                        self.species
                    ),
                });
            }
            ws.species.push(s);
        }
        if let Some(i) = atoms
            .positions
            .iter()
            .position(|p| p.iter().any(|x| !x.is_finite()))
        {
            return Err(DescriptorError::Geometry {
                descriptor: NAME,
                message: format!("atom {i} has a non-finite position"),
            });
        }
        let mic = if atoms.pbc.iter().any(|&p| p) {
            Some(MinimumImage::new(&atoms.cell, atoms.pbc).map_err(|e| {
                DescriptorError::Geometry {
                    descriptor: NAME,
                    message: e.to_string(),
                }
            })?)
        } else {
            None
        };
        let nf = self.n_features;
        let nb = self.bins.len();
        let width = self.spec.params.width;
        let inv_w2 = 1.0 / (width * width);
        out.reset(n, n, nf, gradient);
        ws.bins.resize(nb, 0.0);
        for i in 0..n {
            for j in (i + 1)..n {
                let mut v = [0.0; 3];
                for (x, vx) in v.iter_mut().enumerate() {
                    *vx = atoms.positions[j][x] - atoms.positions[i][x];
                }
                if let Some(mi) = &mic {
                    v = mi.apply(v);
                }
                let r = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
                if r > self.cutoff {
                    continue;
                }
                let inv_r2 = 1.0 / (r * r);
                // g_k = ½ exp(−½((b_k − r)/w)²) / r², the same for both centres of the pair.
                for (g, &b) in ws.bins.iter_mut().zip(&self.bins) {
                    let t = (b - r) / width;
                    *g = 0.5 * (-0.5 * (t * t)).exp() * inv_r2;
                }
                let (si, sj) = (usize::from(ws.species[i]), usize::from(ws.species[j]));
                for (centre, block) in [(i, self.block(si, sj)), (j, self.block(sj, si))] {
                    let start = centre * nf + block * nb;
                    let (features, _) = out.parts_mut();
                    for (f, g) in features[start..start + nb].iter_mut().zip(&ws.bins) {
                        *f += g;
                    }
                }
                if !gradient {
                    continue;
                }
                // ∂g_k/∂r, then along u = v/r: +u on atom j, −u on atom i, for
                // both centres (r_ij is symmetric).
                let inv_r = 1.0 / r;
                for (g, &b) in ws.bins.iter_mut().zip(&self.bins) {
                    *g *= (b - r) * inv_w2 - 2.0 * inv_r;
                }
                let u = [v[0] * inv_r, v[1] * inv_r, v[2] * inv_r];
                for (centre, block) in [(i, self.block(si, sj)), (j, self.block(sj, si))] {
                    let (_, grad) = out.parts_mut();
                    for (atom, sign) in [(j, 1.0), (i, -1.0)] {
                        for (x, ux) in u.iter().enumerate() {
                            let start = ((centre * n + atom) * 3 + x) * nf + block * nb;
                            let s = sign * ux;
                            for (dst, g) in grad[start..start + nb].iter_mut().zip(&ws.bins) {
                                *dst += s * g;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cluster() -> Atoms {
        Atoms::from_symbols(
            &["Au", "Cu", "Au", "Cu"],
            vec![
                [0.0, 0.0, 0.0],
                [2.5, 0.1, 0.0],
                [1.2, 2.2, 0.3],
                [1.1, 0.9, 2.4],
            ],
        )
        .unwrap()
    }

    #[test]
    fn species_follow_symbols_and_bins_numpy() {
        let d = SimpleFingerprint::new(SimpleFingerprintParams::default(), &[29, 79, 29]).unwrap();
        assert_eq!(d.species(), &[79, 29]);
        assert_eq!(d.n_features(), 120);
        assert_eq!(d.bins().len(), 30);
        assert_eq!(d.bins()[29], 3.0);
        assert!((d.bins()[1] - 3.0 / 29.0).abs() < 1e-16);
    }

    #[test]
    fn a_dimer_by_hand() {
        let d = SimpleFingerprint::new(SimpleFingerprintParams::default(), &[79, 29]).unwrap();
        let a = Atoms::from_symbols(&["Cu", "Au"], vec![[0.0; 3], [0.0, 0.0, 2.5]]).unwrap();
        let mut out = FeatureSet::new();
        d.compute(&a, false, &mut Default::default(), &mut out)
            .unwrap();
        // Cu (species 1) centre, Au (0) neighbour: block 1·2 + 0 = 2.
        let k = 24;
        let b = 3.0 * k as f64 / 29.0;
        let expected = 0.5 * (-0.5 * ((b - 2.5) / 0.2f64).powi(2)).exp() / 6.25;
        assert!((out.center(0)[2 * 30 + k] - expected).abs() < 1e-16);
        assert!((out.center(1)[30 + k] - expected).abs() < 1e-16);
        let nonzero = |c: usize| out.center(c).iter().filter(|v| **v != 0.0).count();
        assert_eq!((nonzero(0), nonzero(1)), (30, 30));
        // Beyond r_cut + 4·width nothing.
        let far = Atoms::from_symbols(&["Cu", "Au"], vec![[0.0; 3], [0.0, 0.0, 3.81]]).unwrap();
        d.compute(&far, false, &mut Default::default(), &mut out)
            .unwrap();
        assert!(out.features().iter().all(|v| *v == 0.0));
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn gradient_matches_five_point_differences() {
        let d = SimpleFingerprint::new(SimpleFingerprintParams::default(), &[79, 29]).unwrap();
        let a = cluster();
        let mut ws = SimpleFingerprintWorkspace::default();
        let mut out = FeatureSet::new();
        d.compute(&a, true, &mut ws, &mut out).unwrap();
        let mut tmp = FeatureSet::new();
        let h = 1e-3;
        let mut worst = 0.0f64;
        for atom in 0..a.len() {
            for x in 0..3 {
                let at = |s: f64, tmp: &mut FeatureSet, ws: &mut SimpleFingerprintWorkspace| {
                    let mut b = a.clone();
                    b.positions[atom][x] += s * h;
                    d.compute(&b, false, ws, tmp).unwrap();
                    tmp.features().to_vec()
                };
                let (p2, p1, m1, m2) = (
                    at(2.0, &mut tmp, &mut ws),
                    at(1.0, &mut tmp, &mut ws),
                    at(-1.0, &mut tmp, &mut ws),
                    at(-2.0, &mut tmp, &mut ws),
                );
                for c in 0..a.len() {
                    let row = out.gradient_row(c, atom, x);
                    for f in 0..d.n_features() {
                        let i = c * d.n_features() + f;
                        let fd = (-p2[i] + 8.0 * p1[i] - 8.0 * m1[i] + m2[i]) / (12.0 * h);
                        worst = worst.max((fd - row[f]).abs());
                    }
                }
            }
        }
        assert!(worst < 1e-8, "{worst:e}");
    }

    #[test]
    fn periodic_pairs_use_the_minimum_image() {
        let d = SimpleFingerprint::new(SimpleFingerprintParams::default(), &[29]).unwrap();
        let cell = [[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]];
        let a = Atoms::from_symbols(&["Cu", "Cu"], vec![[0.5, 5.0, 5.0], [8.0, 5.0, 5.0]])
            .unwrap()
            .with_cell(cell, [true, false, false]);
        let b = Atoms::from_symbols(&["Cu", "Cu"], vec![[0.5, 5.0, 5.0], [-2.0, 5.0, 5.0]])
            .unwrap()
            .with_cell(cell, [false; 3]);
        let (mut fa, mut fb) = (FeatureSet::new(), FeatureSet::new());
        let mut ws = SimpleFingerprintWorkspace::default();
        d.compute(&a, true, &mut ws, &mut fa).unwrap();
        d.compute(&b, true, &mut ws, &mut fb).unwrap();
        assert_eq!(fa, fb);
    }

    #[test]
    fn foreign_species_and_bad_settings_are_errors() {
        let d = SimpleFingerprint::new(SimpleFingerprintParams::default(), &[79]).unwrap();
        let a = Atoms::from_symbols(&["Cu"], vec![[0.0; 3]]).unwrap();
        let err = d
            .compute(&a, false, &mut Default::default(), &mut FeatureSet::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("atom 0 has atomic number 29"), "{err}");
        let bad = SimpleFingerprintParams {
            width: 0.0,
            ..Default::default()
        };
        assert!(SimpleFingerprint::new(bad, &[79]).is_err());
        assert!(SimpleFingerprint::new(SimpleFingerprintParams::default(), &[]).is_err());
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<SimpleFingerprint>(&json).unwrap(), d);
    }
}
