//! Micro-benchmarks of the atomistic core: EMT energy + forces and a BFGS
//! relaxation. Run with `cargo run --release --example bench_atoms`.
//!
//! Prints one JSON line on stdout (details go to stderr):
//! `{"emt_au13_us":…,"emt_au256_us":…,"bfgs_au13_ms":…}`
//!
//! * `emt_au13_us`: time per energy+forces call on an Au13 icosahedron;
//! * `emt_au256_us`: the same for a periodic 4×4×4 cubic fcc Au cell (256 atoms,
//!   a = 4.08 Å);
//! * `bfgs_au13_ms`: mean time of one BFGS relaxation (ASE parameters, fmax 0.05)
//!   of an Au13 icosahedron rattled by σ = 0.3 Å per coordinate (fixed seed).
//!
//! Each figure is the median over several repetitions. The EMT calls alternate
//! between two structures 1e-3 Å apart, so nothing can be served from a
//! result cache, while a neighbour list with a skin may be reused, as it is in a
//! relaxation.

use std::time::Instant;

use agox::atoms::emt::Emt;
use agox::atoms::optimize::{relax, RelaxOptions};
use agox::atoms::{Atoms, Calculator};
use rand::{Rng, SeedableRng};

use anyhow::{Context, Error};

const AU: u8 = 79;

/// Au13: the centre plus the 12 vertices (0, ±1, ±φ) and cyclic permutations,
/// scaled so that the vertex–vertex (surface) distance is 2.88 Å.
fn au13() -> Atoms {
    let phi = (1.0 + 5f64.sqrt()) / 2.0;
    let scale = 2.88 / 2.0; // the edge of the (0, ±1, ±φ) icosahedron is 2
    let mut positions = vec![[0.0; 3]];
    for s1 in [-1.0, 1.0] {
        for s2 in [-1.0, 1.0] {
            let (a, b) = (s1 * scale, s2 * phi * scale);
            positions.push([0.0, a, b]);
            positions.push([a, b, 0.0]);
            positions.push([b, 0.0, a]);
        }
    }
    Atoms {
        numbers: vec![AU; positions.len()],
        positions,
        ..Default::default()
    }
}

/// 4×4×4 cubic fcc Au cell (256 atoms), periodic.
fn au256() -> Atoms {
    Atoms::fcc_cubic(AU, 4.08, [4, 4, 4])
}

/// Standard normal deviate (Box–Muller).
fn gaussian(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median over `reps` of the mean time (µs) per energy+forces call.
fn time_calls(
    calc: &mut dyn Calculator,
    atoms: &Atoms,
    calls: usize,
    reps: usize,
) -> Result<f64, Error> {
    let mut moved = atoms.clone();
    moved.positions[0][0] += 1e-3;
    let pair = [atoms, &moved];
    for s in pair {
        calc.calculate(s, false)
            .context("EMT on the benchmark structure")?;
    }
    let times = (0..reps)
        .map(|_| {
            let t = Instant::now();
            for c in 0..calls {
                let e = calc
                    .calculate(pair[c % 2], false)
                    .context("EMT on the benchmark structure")?;
                std::hint::black_box(e);
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / calls as f64)
        })
        .collect::<Result<_, Error>>()?;
    Ok(median(times))
}

fn main() -> Result<(), Error> {
    let mut emt = Emt::new();
    let small = au13();
    let big = au256();
    let emt_au13_us = time_calls(&mut emt, &small, 4000, 7)?;
    let emt_au256_us = time_calls(&mut emt, &big, 100, 7)?;

    // Rattled icosahedra, one fixed seed.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2024);
    let starts: Vec<Atoms> = (0..10)
        .map(|_| {
            let mut a = small.clone();
            for p in &mut a.positions {
                for x in p.iter_mut() {
                    *x += 0.3 * gaussian(&mut rng);
                }
            }
            a
        })
        .collect();
    let opts = RelaxOptions {
        fmax: 0.05,
        steps: 10_000,
        ..Default::default()
    };
    let mut total_steps = 0;
    let mut energies = Vec::new();
    let times = (0..5)
        .map(|rep| {
            let t = Instant::now();
            for s in &starts {
                let mut a = s.clone();
                let r = relax(&mut a, &mut emt, &opts).context("relaxing a rattled Au13")?;
                if rep == 0 {
                    total_steps += r.steps;
                    energies.push(r.evaluation.energy);
                }
                std::hint::black_box(r);
            }
            Ok(t.elapsed().as_secs_f64() * 1e3 / starts.len() as f64)
        })
        .collect::<Result<_, Error>>()?;
    let bfgs_au13_ms = median(times);
    let au13_energy = emt.calculate(&small, false).context("EMT on Au13")?.energy;
    eprintln!(
        "au13 EMT energy {:.6} eV; BFGS: {} relaxations, mean {:.1} steps, final energies {:?}",
        au13_energy,
        starts.len(),
        total_steps as f64 / starts.len() as f64,
        energies
            .iter()
            .map(|e| (e * 1e4).round() / 1e4)
            .collect::<Vec<_>>()
    );
    println!(
        "{{\"emt_au13_us\":{:.2},\"emt_au256_us\":{:.1},\"bfgs_au13_ms\":{:.3}}}",
        emt_au13_us, emt_au256_us, bfgs_au13_ms
    );
    Ok(())
}
