//! GOFEE's surrogate model as AGOX 3.11.1 builds it, as a library: the
//! Fingerprint descriptor with its exact derivative, the repulsive prior, a
//! Gaussian process with GOFEE's kernel and its L-BFGS-B hyperparameter search,
//! the lower-confidence-bound acquisition as a [`Calculator`](agox_atoms::Calculator),
//! and k-means for the KMeans sampler; and AGOX's `SparseGPR` with its local
//! `SimpleFingerprint`. `docs/models.md` and `docs/sparse-gpr.md` give the
//! formulas, AGOX's settings, where we differ from AGOX and the measured figures.
//!
//! | module | owns |
//! | --- | --- |
//! | [`descriptor`] | the interface of global and local descriptors: features and their position gradient |
//! | [`fingerprint`] | AGOX's global Fingerprint (radial + angular), its exact gradient, a bounded-interval `erf` |
//! | [`simple_fingerprint`] | AGOX's local SimpleFingerprint (a radial histogram per atom) with its analytic gradient |
//! | [`kernel`] | `C·(β·RBF(ℓ₁) + (1−β)·RBF(ℓ₂)) + noise`, θ in log space, its feature and θ gradients |
//! | [`isotropic`] | the interface of kernels of the squared distance (θ, bounds, k, ∂k/∂x), `C·RBF` |
//! | [`prior`] | AGOX's `Repulsive` prior with forces and periodic images |
//! | [`gpr`] | training rows, the trained state, log P and its gradient, the search's starts, prediction |
//! | [`lbfgsb`] | bounded quasi-Newton minimization with scipy's semantics |
//! | [`model`] | descriptor + prior + Gaussian process on structures; the `Surrogate` trait and the LCB calculator |
//! | [`sgpr`] | the sparse GP (projected process): CUR inducing points, force training, the likelihood without the dense matrix, the seeded θ search, prediction |
//! | [`kmeans`] | seeded k-means++ and Lloyd iterations |
//!
//! The Gaussian process's state splits along what a pool worker needs:
//! [`gpr::TrainingData`] (append-only rows, shipped as [`gpr::TrainingRows`]) for
//! the hyperparameter search, and [`gpr::TrainedState`] in addition for
//! prediction. One hyperparameter start ([`gpr::Gpr::optimize_start`]) depends
//! only on the rows and its θ₀, so starts run on any worker give the serial result.
//! The sparse GP splits the same way: [`sgpr::TrainingSet`] (once per training)
//! for its θ evaluations, [`sgpr::Predictor`] after training.
//!
//! ```
//! use agox_atoms::optimize::{relax, RelaxOptions};
//! use agox_atoms::{Atoms, Calculator};
//! use agox_models::model::{GprModel, Lcb, ModelWorkspace};
//!
//! // A Cu dimer in a 10 Å box: train on three bond lengths, relax in the LCB.
//! let dimer = |r: f64| {
//!     Atoms::from_symbols(&["Cu", "Cu"], vec![[4.0, 5.0, 5.0], [4.0 + r, 5.0, 5.0]])
//!         .unwrap()
//!         .with_cell([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]], [false; 3])
//! };
//! let template = Atoms::default().with_cell(dimer(2.0).cell, [false; 3]);
//! let mut model = GprModel::gofee(&template, &[29, 29]).unwrap();
//! let mut ws = ModelWorkspace::default();
//! for (r, e) in [(2.0, 1.0), (2.3, 0.2), (2.7, 0.6)] {
//!     model.add(&dimer(r), e, &mut ws).unwrap();
//! }
//! model.train(42).unwrap();
//! let mut atoms = dimer(2.6);
//! let mut lcb = Lcb::new(&model, 2.0);
//! let result = relax(&mut atoms, &mut lcb, &RelaxOptions::default()).unwrap();
//! assert!(result.evaluation.energy <= lcb.calculate(&dimer(2.6), false).unwrap().energy);
//! ```
#![forbid(unsafe_code)]

pub mod descriptor;
pub mod fingerprint;
pub mod gpr;
pub mod isotropic;
pub mod kernel;
pub mod kmeans;
pub mod lbfgsb;
pub mod model;
pub mod prior;
pub mod sgpr;
pub mod simple_fingerprint;
mod vexp;
