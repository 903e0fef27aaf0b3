//! AGOX's CUR sparsifier (`agox/utils/sparsifiers/CUR.py`): inducing points are
//! environments drawn without replacement with probability proportional to their
//! leverage scores.
//!
//! * Fewer environments than `m`: all of them, in order.
//! * Otherwise the scores `p_i = Σ_{k<d} U_ik² / d`, `d = min(n, F)`, from the
//!   left singular vectors of `X` (n × F), and `m` distinct rows drawn in
//!   sequence with probability ∝ `p` (numpy's `choice(replace=False, p=p)`); the
//!   inducing points are in draw order.
//!
//! AGOX computes a **full** SVD (`scipy.linalg.svd`, an n × n U) to use its first
//! `d` columns: 13.8 s for 12000 × 63. The **thin** SVD (faer) gives the same
//! columns. The sequential draw is done by Efraimidis–Spirakis keys
//! `ln(u_i)/p_i`, taken in decreasing order, which has exactly the distribution
//! of successive weighted draws, in one pass and a sort. Environments with score
//! 0 (a centre with no neighbour, a zero feature vector) are never drawn; if
//! fewer than `m` have a positive score, all of those are taken (numpy raises).
//!
//! For a numerically rank-deficient X the scores depend on rounding (AGOX's too),
//! so a draw is reproducible for the same features and seed, not across
//! implementations; explicit inducing indices remove that dependence.

use faer::linalg::solvers::Svd;
use rand::Rng;

use super::dense::rows;
use super::SparseError;

/// Leverage scores of the rows of `x` (row-major, `f` columns).
pub fn leverage_scores(x: &[f64], f: usize) -> Result<Vec<f64>, SparseError> {
    let xr = rows(x, f);
    let svd = Svd::new_thin(xr).map_err(|_| SparseError::Decomposition {
        what: "the CUR singular value decomposition",
    })?;
    let u = svd.U();
    let d = u.ncols();
    Ok((0..u.nrows())
        .map(|i| (0..d).map(|k| u[(i, k)] * u[(i, k)]).sum::<f64>() / d as f64)
        .collect())
}

/// The rows CUR picks for `m` inducing points, in draw order.
pub fn cur_select<R: Rng>(
    x: &[f64],
    f: usize,
    m: usize,
    rng: &mut R,
) -> Result<Vec<usize>, SparseError> {
    let n = x.len() / f;
    if n < m {
        return Ok((0..n).collect());
    }
    let scores = leverage_scores(x, f)?;
    let mut keys: Vec<(f64, usize)> = scores
        .iter()
        .enumerate()
        .filter(|(_, p)| **p > 0.0)
        .map(|(i, p)| ((1.0 - rng.gen::<f64>()).ln() / p, i))
        .collect();
    keys.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    keys.truncate(m);
    Ok(keys.into_iter().map(|(_, i)| i).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn scores_sum_to_one_and_follow_the_row_space() {
        // Rows along e0 carry the leverage of one direction between them.
        let x = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 2.0];
        let p = leverage_scores(&x, 2).unwrap();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-14);
        assert!((p[0] - 0.25).abs() < 1e-14 && (p[1] - 0.25).abs() < 1e-14);
        assert!((p[2] - 0.1).abs() < 1e-14 && (p[3] - 0.4).abs() < 1e-14);
    }

    #[test]
    fn selection_is_distinct_seeded_and_follows_the_weights() {
        let f = 3;
        let x: Vec<f64> = (0..40 * f).map(|k| ((k * 7 % 13) as f64).sin()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let a = cur_select(&x, f, 10, &mut rng).unwrap();
        let mut sorted = a.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 10);
        assert_eq!(
            cur_select(&x, f, 10, &mut ChaCha8Rng::seed_from_u64(1)).unwrap(),
            a
        );
        // Fewer rows than points: all, in order.
        assert_eq!(
            cur_select(&x[..5 * f], f, 10, &mut rng).unwrap(),
            vec![0, 1, 2, 3, 4]
        );
        // The first draw follows the scores: frequencies over many seeds.
        let p = leverage_scores(&x, f).unwrap();
        let mut counts = vec![0usize; 40];
        let trials = 4000;
        for s in 0..trials {
            let first = cur_select(&x, f, 1, &mut ChaCha8Rng::seed_from_u64(s)).unwrap()[0];
            counts[first] += 1;
        }
        for (c, p) in counts.iter().zip(&p) {
            let expected = p * trials as f64;
            assert!(
                (*c as f64 - expected).abs() < 5.0 * expected.sqrt() + 5.0,
                "{c} vs {expected}"
            );
        }
    }
}
