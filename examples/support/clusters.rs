//! Test structures and statistics shared by the benchmarks (included with `#[path]`).

use agox::atoms::emt::Emt;
use agox::atoms::optimize::{relax, RelaxOptions};
use agox::atoms::Atoms;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use anyhow::{Context, Error};

/// A random compact Au8Cu4 cluster in a 12 Å box, `steps` BFGS steps into EMT, with
/// its EMT energy.
pub fn cluster(seed: u64, steps: usize) -> Result<(Atoms, f64), Error> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut positions: Vec<[f64; 3]> = vec![[6.0; 3]];
    while positions.len() < 12 {
        let base = positions[rng.gen_range(0..positions.len())];
        let d: [f64; 3] = std::array::from_fn(|_| rng.gen_range(-1.0..1.0));
        let n = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        if !(0.2..=1.0).contains(&n) {
            continue;
        }
        let r = rng.gen_range(2.5..2.9);
        let p: [f64; 3] = std::array::from_fn(|k| base[k] + r * d[k] / n);
        if positions
            .iter()
            .all(|q| (0..3).map(|k| (p[k] - q[k]).powi(2)).sum::<f64>() > 2.3 * 2.3)
        {
            positions.push(p);
        }
    }
    let mut numbers = vec![79u8; 8];
    numbers.extend([29u8; 4]);
    let mut atoms = Atoms::new(numbers, positions)
        .with_context(|| format!("cluster {seed}"))?
        .with_cell(
            [[12.0, 0.0, 0.0], [0.0, 12.0, 0.0], [0.0, 0.0, 12.0]],
            [false; 3],
        );
    let opts = RelaxOptions {
        steps,
        ..Default::default()
    };
    let r = relax(&mut atoms, &mut Emt::new(), &opts)
        .with_context(|| format!("relaxing cluster {seed} in EMT"))?;
    Ok((atoms, r.evaluation.energy))
}

/// The median (the mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}
