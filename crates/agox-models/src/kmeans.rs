//! k-means clustering as scikit-learn's `KMeans(init="k-means++", n_init, algorithm="lloyd")`
//! does it, which AGOX's KMeans sampler calls on the summed fingerprints:
//!
//! * **greedy k-means++** initialization: the first centre is a uniformly drawn
//!   point; every further centre is the best (lowest resulting potential Σ min d²)
//!   of `2 + ⌊ln k⌋` candidates drawn with probability ∝ d² to the nearest centre;
//! * **Lloyd iterations**: assign each point to its nearest centre, move each
//!   centre to its points' mean; a centre left without points is moved to the
//!   point farthest from its own centre; stop when the labels no longer change or
//!   the centres moved by Σ‖Δc‖² ≤ `tol` × (mean variance of the features), or
//!   after `max_iter` iterations; a final assignment makes the labels agree with
//!   the centres;
//! * `n_init` runs, the lowest inertia (Σ min d²) kept, ties to the first.
//!
//! Everything is drawn from one ChaCha8 generator seeded explicitly, so a seed
//! fixes the result (scikit-learn's draws differ, so the clusters match its
//! results in distribution, not bit for bit).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::kernel::squared_distance;

/// Settings; [`Default`] gives scikit-learn's (with AGOX's `n_init = 10`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KMeansSettings {
    /// Independent runs; the best is kept.
    pub n_init: usize,
    /// Lloyd iterations per run at most.
    pub max_iter: usize,
    /// Relative tolerance on the centres' movement.
    pub tol: f64,
}

impl Default for KMeansSettings {
    fn default() -> Self {
        Self {
            n_init: 10,
            max_iter: 300,
            tol: 1e-4,
        }
    }
}

/// A clustering.
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    /// Cluster of each point.
    pub labels: Vec<usize>,
    /// Centres, `k × n_features` row-major.
    pub centers: Vec<f64>,
    /// Σ over points of the squared distance to their centre.
    pub inertia: f64,
}

/// Why a clustering cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KMeansError {
    /// More clusters than points, or none, or points of no features.
    #[error("k-means: cannot make {k} clusters of {n_points} points with {n_features} features")]
    Shape {
        /// Clusters asked for.
        k: usize,
        /// Points given.
        n_points: usize,
        /// Features per point.
        n_features: usize,
    },
    /// A non-finite coordinate.
    #[error("k-means: point {index} has a non-finite coordinate")]
    NonFinite {
        /// The point.
        index: usize,
    },
    /// `n_init` or `max_iter` is zero, or `tol` is negative.
    #[error("k-means: n_init and max_iter must be at least 1 and tol >= 0")]
    Settings,
}

/// Clusters the rows of `x` (`n_features` each) into `k` groups; the result
/// depends only on the inputs and `seed`.
pub fn kmeans(
    x: &[f64],
    n_features: usize,
    k: usize,
    settings: &KMeansSettings,
    seed: u64,
) -> Result<Clustering, KMeansError> {
    let n = x.len().checked_div(n_features).unwrap_or(0);
    if n_features == 0 || k == 0 || k > n || x.len() != n * n_features {
        return Err(KMeansError::Shape {
            k,
            n_points: n,
            n_features,
        });
    }
    if let Some(index) = x
        .chunks_exact(n_features)
        .position(|r| r.iter().any(|v| !v.is_finite()))
    {
        return Err(KMeansError::NonFinite { index });
    }
    if settings.n_init == 0 || settings.max_iter == 0 || settings.tol.is_nan() || settings.tol < 0.0
    {
        return Err(KMeansError::Settings);
    }
    let tol = settings.tol * mean_variance(x, n_features);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut best: Option<Clustering> = None;
    for _ in 0..settings.n_init {
        let centers = plus_plus(x, n_features, k, &mut rng);
        let run = lloyd(x, n_features, centers, settings.max_iter, tol);
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    best.ok_or(KMeansError::Settings)
}

fn row(x: &[f64], i: usize, f: usize) -> &[f64] {
    &x[i * f..(i + 1) * f]
}

/// Mean over features of the per-feature variance (scikit-learn's tolerance scale).
fn mean_variance(x: &[f64], f: usize) -> f64 {
    let n = (x.len() / f) as f64;
    let mut total = 0.0;
    for j in 0..f {
        let mean = x.iter().skip(j).step_by(f).sum::<f64>() / n;
        total += x
            .iter()
            .skip(j)
            .step_by(f)
            .map(|v| (v - mean).powi(2))
            .sum::<f64>()
            / n;
    }
    total / f as f64
}

/// Greedy k-means++ centres.
fn plus_plus(x: &[f64], f: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let n = x.len() / f;
    let trials = 2 + (k as f64).ln().floor() as usize;
    let mut centers = Vec::with_capacity(k * f);
    let first = rng.gen_range(0..n);
    centers.extend_from_slice(row(x, first, f));
    let mut closest: Vec<f64> = (0..n)
        .map(|i| squared_distance(row(x, i, f), row(x, first, f)))
        .collect();
    let mut candidate_closest = vec![0.0; n];
    let mut best_closest = vec![0.0; n];
    for _ in 1..k {
        let potential: f64 = closest.iter().sum();
        let mut best: Option<(usize, f64)> = None;
        for _ in 0..trials {
            let c = if potential > 0.0 {
                let target = rng.gen::<f64>() * potential;
                let mut acc = 0.0;
                let mut pick = n - 1;
                for (i, d) in closest.iter().enumerate() {
                    acc += d;
                    if acc > target {
                        pick = i;
                        break;
                    }
                }
                pick
            } else {
                rng.gen_range(0..n)
            };
            for (i, cc) in candidate_closest.iter_mut().enumerate() {
                *cc = closest[i].min(squared_distance(row(x, i, f), row(x, c, f)));
            }
            let p: f64 = candidate_closest.iter().sum();
            if best.is_none_or(|(_, bp)| p < bp) {
                best = Some((c, p));
                best_closest.copy_from_slice(&candidate_closest);
            }
        }
        if let Some((c, _)) = best {
            centers.extend_from_slice(row(x, c, f));
            closest.copy_from_slice(&best_closest);
        }
    }
    centers
}

/// Nearest centre of every point; returns the inertia.
fn assign(x: &[f64], f: usize, centers: &[f64], labels: &mut [usize], dist: &mut [f64]) -> f64 {
    let mut inertia = 0.0;
    for (i, (l, d)) in labels.iter_mut().zip(dist.iter_mut()).enumerate() {
        let p = row(x, i, f);
        let (mut best, mut best_d) = (0, f64::INFINITY);
        for (c, centre) in centers.chunks_exact(f).enumerate() {
            let dc = squared_distance(p, centre);
            if dc < best_d {
                best = c;
                best_d = dc;
            }
        }
        *l = best;
        *d = best_d;
        inertia += best_d;
    }
    inertia
}

fn lloyd(x: &[f64], f: usize, mut centers: Vec<f64>, max_iter: usize, tol: f64) -> Clustering {
    let n = x.len() / f;
    let k = centers.len() / f;
    let mut labels = vec![usize::MAX; n];
    let mut new_labels = vec![0; n];
    let mut dist = vec![0.0; n];
    let mut sums = vec![0.0; k * f];
    let mut counts = vec![0usize; k];
    for _ in 0..max_iter {
        assign(x, f, &centers, &mut new_labels, &mut dist);
        let unchanged = new_labels == labels;
        labels.copy_from_slice(&new_labels);
        if unchanged {
            break;
        }
        sums.fill(0.0);
        counts.fill(0);
        for (i, &l) in labels.iter().enumerate() {
            counts[l] += 1;
            for (s, v) in sums[l * f..(l + 1) * f].iter_mut().zip(row(x, i, f)) {
                *s += v;
            }
        }
        // Empty clusters take the points farthest from their centres.
        let mut far: Vec<usize> = (0..n).collect();
        far.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]).then(a.cmp(&b)));
        let mut next_far = far.into_iter();
        for c in 0..k {
            if counts[c] == 0 {
                if let Some(p) = next_far.next() {
                    let old = labels[p];
                    if counts[old] > 1 {
                        counts[old] -= 1;
                        for (s, v) in sums[old * f..(old + 1) * f].iter_mut().zip(row(x, p, f)) {
                            *s -= v;
                        }
                        counts[c] = 1;
                        sums[c * f..(c + 1) * f].copy_from_slice(row(x, p, f));
                        labels[p] = c;
                    }
                }
            }
        }
        let mut shift = 0.0;
        for c in 0..k {
            if counts[c] == 0 {
                continue;
            }
            let inv = 1.0 / counts[c] as f64;
            for (centre, s) in centers[c * f..(c + 1) * f]
                .iter_mut()
                .zip(&sums[c * f..(c + 1) * f])
            {
                let new = s * inv;
                shift += (new - *centre).powi(2);
                *centre = new;
            }
        }
        if shift <= tol {
            break;
        }
    }
    let inertia = assign(x, f, &centers, &mut labels, &mut dist);
    Clustering {
        labels,
        centers,
        inertia,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Three well-separated blobs of 20 points in 4 dimensions.
    fn blobs(seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Vec::new();
        for c in 0..3 {
            for _ in 0..20 {
                for j in 0..4 {
                    x.push(
                        10.0 * c as f64 * (j % 2) as f64
                            + c as f64 * 5.0
                            + rng.gen_range(-0.5..0.5),
                    );
                }
            }
        }
        x
    }

    #[test]
    fn finds_separated_blobs_and_is_deterministic_per_seed() {
        let x = blobs(1);
        let s = KMeansSettings::default();
        let a = kmeans(&x, 4, 3, &s, 7).unwrap();
        assert_eq!(a, kmeans(&x, 4, 3, &s, 7).unwrap());
        for blob in 0..3 {
            let l = a.labels[blob * 20];
            assert!(a.labels[blob * 20..(blob + 1) * 20].iter().all(|&m| m == l));
        }
        let distinct: std::collections::BTreeSet<_> = a.labels.iter().collect();
        assert_eq!(distinct.len(), 3);
        // Inertia is the sum of squared distances to the centres.
        let direct: f64 = (0..60)
            .map(|i| squared_distance(row(&x, i, 4), row(&a.centers, a.labels[i], 4)))
            .sum();
        assert!((direct - a.inertia).abs() < 1e-9);
        // Other seeds find the same partition of well-separated blobs.
        let b = kmeans(&x, 4, 3, &s, 8).unwrap();
        assert!((b.inertia - a.inertia).abs() < 1e-9);
    }

    #[test]
    fn as_many_clusters_as_points_puts_each_alone() {
        let x = vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0];
        let c = kmeans(&x, 2, 3, &KMeansSettings::default(), 1).unwrap();
        let mut l = c.labels.clone();
        l.sort();
        assert_eq!(l, vec![0, 1, 2]);
        assert_eq!(c.inertia, 0.0);
        // Duplicates: still a valid clustering with k = points.
        let d = kmeans(&[1.0, 1.0, 1.0], 1, 2, &KMeansSettings::default(), 1).unwrap();
        assert_eq!(d.inertia, 0.0);
    }

    #[test]
    fn bad_input_is_refused() {
        let s = KMeansSettings::default();
        assert!(matches!(
            kmeans(&[0.0, 1.0], 1, 3, &s, 1),
            Err(KMeansError::Shape { .. })
        ));
        assert!(matches!(
            kmeans(&[0.0, f64::NAN], 1, 1, &s, 1),
            Err(KMeansError::NonFinite { index: 1 })
        ));
        assert!(matches!(
            kmeans(&[0.0, 1.0], 1, 1, &KMeansSettings { n_init: 0, ..s }, 1),
            Err(KMeansError::Settings)
        ));
    }
}
