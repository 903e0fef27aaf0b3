//! The interface every descriptor implements: a structure in, feature vectors
//! (one per centre) and their derivatives with respect to the atomic positions out.
//!
//! A **global** descriptor (the [`Fingerprint`](crate::fingerprint::Fingerprint))
//! has one centre per structure; a **local** one (a per-atom environment such as
//! SOAP or AGOX's `SimpleFingerprint`) has one centre per atom, and a model built
//! on it sums per-centre contributions. Both fill the same [`FeatureSet`]:
//!
//! * features, `[centre][feature]`, row-major;
//! * the gradient, `[centre][atom][xyz][feature]`, row-major: AGOX's
//!   `get_feature_gradient` layout (`[n_centers, n_atoms, 3, n_features]`), so a
//!   force is one dot product of a feature-space vector with each `(atom, xyz)` row.
//!
//! Descriptors take `&self` and keep their scratch in a separate
//! [`Descriptor::Workspace`], so one descriptor can be shared by the model, the
//! sampler and every relaxation while each caller owns its buffers; a workspace
//! reused across calls makes a call allocation-free once the sizes are known.

use agox_atoms::Atoms;

/// Whether a descriptor describes the whole structure or each atom's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DescriptorKind {
    /// One feature vector per structure.
    Global,
    /// One feature vector per atom (or per chosen centre).
    Local,
}

/// Why a descriptor cannot describe a structure, or cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DescriptorError {
    /// The descriptor's settings are unusable.
    #[error("{descriptor}: invalid setting {name} = {value}: {expected}")]
    InvalidSetting {
        /// Descriptor name.
        descriptor: &'static str,
        /// The setting.
        name: &'static str,
        /// Its value, as written.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The structure does not have the composition (or periodicity) the
    /// descriptor was built for.
    #[error("{descriptor}: structure does not match the descriptor: {message}")]
    Mismatch {
        /// Descriptor name.
        descriptor: &'static str,
        /// What differs.
        message: String,
    },
    /// The structure's geometry cannot be handled (non-finite positions, a
    /// degenerate periodic cell).
    #[error("{descriptor}: {message}")]
    Geometry {
        /// Descriptor name.
        descriptor: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Feature vectors of one structure and, when asked for, their gradient.
///
/// Reuse one `FeatureSet` across calls: [`FeatureSet::reset`] keeps the
/// allocations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureSet {
    n_centers: usize,
    n_atoms: usize,
    n_features: usize,
    has_gradient: bool,
    features: Vec<f64>,
    gradient: Vec<f64>,
}

impl FeatureSet {
    /// An empty set; descriptors size it on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sizes the set for `n_centers × n_features` features (and the gradient over
    /// `n_atoms` atoms when `gradient` is true) and zeroes it, keeping allocations.
    pub fn reset(&mut self, n_centers: usize, n_atoms: usize, n_features: usize, gradient: bool) {
        self.n_centers = n_centers;
        self.n_atoms = n_atoms;
        self.n_features = n_features;
        self.has_gradient = gradient;
        self.features.clear();
        self.features.resize(n_centers * n_features, 0.0);
        self.gradient.clear();
        if gradient {
            self.gradient
                .resize(n_centers * n_atoms * 3 * n_features, 0.0);
        }
    }

    /// Number of centres (1 for a global descriptor).
    pub fn n_centers(&self) -> usize {
        self.n_centers
    }

    /// Number of atoms of the structure described.
    pub fn n_atoms(&self) -> usize {
        self.n_atoms
    }

    /// Features per centre.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// True when the gradient was computed.
    pub fn has_gradient(&self) -> bool {
        self.has_gradient
    }

    /// All features, `[centre][feature]` row-major.
    pub fn features(&self) -> &[f64] {
        &self.features
    }

    /// The feature vector of centre `c`.
    pub fn center(&self, c: usize) -> &[f64] {
        &self.features[c * self.n_features..(c + 1) * self.n_features]
    }

    /// The whole gradient, `[centre][atom][xyz][feature]` row-major (∂feature/∂position,
    /// 1/Å); empty unless it was asked for.
    pub fn gradient(&self) -> &[f64] {
        &self.gradient
    }

    /// The gradient of centre `c`'s features with respect to coordinate `xyz` of
    /// atom `atom`: one row of `n_features` values.
    pub fn gradient_row(&self, c: usize, atom: usize, xyz: usize) -> &[f64] {
        let start = ((c * self.n_atoms + atom) * 3 + xyz) * self.n_features;
        &self.gradient[start..start + self.n_features]
    }

    /// Mutable features and gradient, for descriptor implementations.
    pub fn parts_mut(&mut self) -> (&mut [f64], &mut [f64]) {
        (&mut self.features, &mut self.gradient)
    }

    /// Forces from a feature-space gradient: `out[a] = −Σ_f g[f] · ∂x_f/∂r_a`
    /// for centre `c` (the chain rule a model applies to `∂E/∂x`). `out` must
    /// hold one row per atom; it is overwritten.
    pub fn contract_gradient(&self, c: usize, g: &[f64], out: &mut [[f64; 3]]) {
        debug_assert_eq!(g.len(), self.n_features);
        debug_assert_eq!(out.len(), self.n_atoms);
        for (atom, f) in out.iter_mut().enumerate() {
            for (xyz, fx) in f.iter_mut().enumerate() {
                let row = self.gradient_row(c, atom, xyz);
                *fx = -row.iter().zip(g).map(|(a, b)| a * b).sum::<f64>();
            }
        }
    }
}

/// A map from a structure to feature vectors, with their gradient.
pub trait Descriptor {
    /// The scratch a call needs (neighbour lists, per-bin buffers); keep one per
    /// caller and pass it to every call.
    type Workspace: Default + Send;

    /// Short name used in messages (`"fingerprint"`).
    fn name(&self) -> &'static str;

    /// Global (one centre per structure) or local (one per atom).
    fn kind(&self) -> DescriptorKind;

    /// Length of each centre's feature vector.
    fn n_features(&self) -> usize;

    /// Number of centres `atoms` has: 1 for a global descriptor.
    fn n_centers(&self, atoms: &Atoms) -> usize;

    /// Features of `atoms` into `out` (resized and overwritten), with their
    /// gradient when `gradient` is true.
    fn compute(
        &self,
        atoms: &Atoms,
        gradient: bool,
        workspace: &mut Self::Workspace,
        out: &mut FeatureSet,
    ) -> Result<(), DescriptorError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_sizes_and_zeroes() {
        let mut s = FeatureSet::new();
        s.reset(2, 3, 4, true);
        assert_eq!(s.features().len(), 8);
        assert_eq!(s.gradient().len(), 2 * 3 * 3 * 4);
        s.parts_mut().0[5] = 1.0;
        s.parts_mut().1[7] = 2.0;
        assert_eq!(s.center(1), &[0.0, 1.0, 0.0, 0.0]);
        assert_eq!(s.gradient_row(0, 0, 1), &[0.0, 0.0, 0.0, 2.0]);
        s.reset(1, 3, 4, false);
        assert!(s.features().iter().all(|v| *v == 0.0));
        assert!(s.gradient().is_empty() && !s.has_gradient());
    }

    #[test]
    fn contract_gradient_is_minus_the_chain_rule() {
        let mut s = FeatureSet::new();
        s.reset(1, 2, 2, true);
        // d x / d r: atom 0 x -> [1, 2], atom 1 z -> [3, -1].
        s.parts_mut().1[..2].copy_from_slice(&[1.0, 2.0]);
        s.parts_mut().1[10..12].copy_from_slice(&[3.0, -1.0]);
        let mut f = [[0.0; 3]; 2];
        s.contract_gradient(0, &[0.5, 1.0], &mut f);
        assert_eq!(f, [[-2.5, 0.0, 0.0], [0.0, 0.0, -0.5]]);
    }
}
