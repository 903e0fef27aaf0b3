//! The samplers: which structure becomes the parent, Metropolis acceptance statistics,
//! and the state travelling as a dynamic attribute.

use agox_atoms::Atoms;
use agox_pool::Module;
use agox_search::samplers::{LowestSampler, MetropolisSampler, Sampler, SamplerModule};
use agox_search::script::SamplerSettings;
use agox_search::Candidate;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn cand(id: i64, energy: Option<f64>) -> Candidate {
    let atoms = Atoms::new(vec![18, 18], vec![[0.0; 3], [id as f64, 0.0, 1.0]]).expect("atoms");
    let mut c = Candidate::new(atoms, 0, "test", 0);
    c.meta.id = Some(id);
    c.energy = energy;
    c
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn parent_id(m: &SamplerModule) -> Option<i64> {
    m.get_parent(&mut rng(0)).and_then(|p| p.meta.id)
}

fn metropolis(t: f64, sequential: bool) -> SamplerModule {
    SamplerModule::new(Sampler::Metropolis(MetropolisSampler {
        temperature: t,
        sequential,
    }))
}

#[test]
fn from_settings() {
    let m = SamplerModule::from_settings(&SamplerSettings::Metropolis { temperature: 0.25 });
    assert_eq!(m.sampler, Sampler::Metropolis(MetropolisSampler::new(0.25)));
    assert_eq!(m.sampler.name(), "metropolis");
    assert!(!m.is_initialized());
    let l = SamplerModule::from_settings(&SamplerSettings::Lowest);
    assert_eq!(l.sampler, Sampler::Lowest(LowestSampler));
}

#[test]
fn lowest_keeps_the_lowest() {
    let mut m = SamplerModule::new(Sampler::Lowest(LowestSampler));
    let mut r = rng(1);
    assert!(m.get_parent(&mut r).is_none());
    let u = m.update(
        &[
            cand(1, Some(-1.0)),
            cand(2, Some(-3.0)),
            cand(3, None),
            cand(4, Some(-2.0)),
        ],
        &mut r,
    );
    assert_eq!(u.accepted, [false, true, false, false]);
    assert!(u.changed);
    assert_eq!(parent_id(&m), Some(2));
    let u = m.update(&[cand(5, Some(-2.5)), cand(6, Some(f64::NAN))], &mut r);
    assert!(!u.changed);
    assert_eq!(u.accepted, [false, false]);
    assert_eq!(parent_id(&m), Some(2));
    let u = m.update(&[cand(7, Some(-3.5))], &mut r);
    assert!(u.changed);
    assert_eq!(parent_id(&m), Some(7));
    assert_eq!(m.parents.len(), 1);
}

#[test]
fn metropolis_first_proposal_is_accepted_and_best_of_batch_is_tested() {
    let mut m = metropolis(0.1, false);
    let mut r = rng(2);
    let u = m.update(
        &[cand(1, Some(5.0)), cand(2, Some(4.0)), cand(3, None)],
        &mut r,
    );
    assert_eq!(u.accepted, [false, true, false]);
    assert_eq!(parent_id(&m), Some(2));
    // the batch's best is far uphill at a low temperature: rejected
    let u = m.update(&[cand(4, Some(100.0)), cand(5, Some(90.0))], &mut r);
    assert!(!u.changed);
    assert_eq!(u.accepted, [false, false]);
    assert_eq!(parent_id(&m), Some(2));
    // the batch's best is downhill: accepted, even if another member is higher
    let u = m.update(&[cand(6, Some(10.0)), cand(7, Some(3.0))], &mut r);
    assert_eq!(u.accepted, [false, true]);
    assert_eq!(parent_id(&m), Some(7));
    // no usable energy: nothing happens
    let u = m.update(&[cand(8, None)], &mut r);
    assert!(!u.changed);
}

#[test]
fn metropolis_accepts_downhill_always() {
    for sequential in [false, true] {
        let mut m = metropolis(1e-6, sequential);
        let mut r = rng(3);
        m.update(&[cand(0, Some(0.0))], &mut r);
        let mut e = 0.0;
        for i in 1..500 {
            e -= 1e-3 * (i % 7) as f64; // includes equal-energy steps (ΔE = 0)
            let u = m.update(&[cand(i, Some(e))], &mut r);
            assert!(
                u.changed && u.accepted == [true],
                "downhill step {i} rejected"
            );
        }
    }
}

/// Acceptance frequency of uphill steps ΔE over `n` trials (each from the same current
/// structure) must match exp(−ΔE/T).
fn uphill_frequency(t: f64, de: f64, n: usize, seed: u64, sequential: bool) -> f64 {
    let mut r = rng(seed);
    let mut accepted = 0;
    for i in 0..n {
        let mut m = metropolis(t, sequential);
        m.update(&[cand(0, Some(1.0))], &mut r);
        let u = m.update(&[cand(i as i64 + 1, Some(1.0 + de))], &mut r);
        assert_eq!(u.changed, u.accepted[0]);
        if u.changed {
            accepted += 1;
            assert_eq!(parent_id(&m), Some(i as i64 + 1));
        } else {
            assert_eq!(parent_id(&m), Some(0));
        }
    }
    accepted as f64 / n as f64
}

#[test]
fn metropolis_uphill_frequency_matches_boltzmann() {
    let n = 20_000;
    // binomial standard deviation ≤ 0.0036 at n = 20000: tolerance ≈ 4σ
    for (t, de, seed) in [
        (0.25, 0.25 * 2f64.ln(), 1),
        (0.25, 0.5, 2),
        (1.0, 0.1, 3),
        (0.05, 0.3, 4),
    ] {
        for sequential in [false, true] {
            let f = uphill_frequency(t, de, n, seed, sequential);
            let p = (-de / t).exp();
            assert!(
                (f - p).abs() < 0.015,
                "T={t} ΔE={de}: accepted {f:.4}, expected {p:.4}"
            );
        }
    }
    // T = 0: never uphill
    assert_eq!(uphill_frequency(0.0, 1e-9, 200, 5, false), 0.0);
}

#[test]
fn acceptance_probability() {
    let m = MetropolisSampler::new(0.5);
    assert_eq!(m.acceptance(1.0, 0.0), 1.0);
    assert_eq!(m.acceptance(1.0, 1.0), 1.0);
    assert!((m.acceptance(0.0, 1.0) - (-2.0f64).exp()).abs() < 1e-15);
    assert_eq!(MetropolisSampler::new(0.0).acceptance(0.0, 1.0), 0.0);
}

#[test]
fn sequential_metropolis_tests_each_candidate_in_turn() {
    // T huge: every step accepted, so the last candidate ends up current
    let mut m = metropolis(1e9, true);
    let mut r = rng(6);
    let u = m.update(
        &[cand(1, Some(0.0)), cand(2, Some(1.0)), cand(3, Some(2.0))],
        &mut r,
    );
    assert_eq!(u.accepted, [true, true, true]);
    assert_eq!(parent_id(&m), Some(3));
    // best-of-batch at the same temperature would take the lowest
    let mut b = metropolis(1e9, false);
    b.update(
        &[cand(1, Some(0.0)), cand(2, Some(1.0)), cand(3, Some(2.0))],
        &mut r,
    );
    assert_eq!(parent_id(&b), Some(1));
}

#[test]
fn parents_are_the_dynamic_attribute() {
    assert_eq!(SamplerModule::dynamic_attribute_names(), ["parents"]);
    let mut driver = metropolis(0.25, false);
    let mut worker = driver.clone();
    driver.update(&[cand(9, Some(-1.0))], &mut rng(7));
    assert_ne!(driver, worker);
    let bytes = driver.get_attribute("parents").expect("encode");
    worker.set_attribute("parents", &bytes).expect("decode");
    assert_eq!(worker, driver);
    assert_eq!(parent_id(&worker), Some(9));
    assert!(
        driver.get_attribute("sampler").is_err(),
        "the sampler itself is static"
    );
}

#[test]
fn module_round_trips_through_serde() {
    let mut m = metropolis(0.3, true);
    m.update(&[cand(1, Some(2.0))], &mut rng(8));
    let json = serde_json::to_string(&m).expect("ser");
    let back: SamplerModule = serde_json::from_str(&json).expect("de");
    assert_eq!(back, m);
}
