//! The samplers: which structure becomes the parent, Metropolis acceptance statistics,
//! and the state travelling as a dynamic attribute.

use agox_atoms::Atoms;
use agox_models::fingerprint::{Fingerprint, FingerprintParams, FingerprintSpec};
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

/// The Fingerprint of an Ar₂ environment (what a `kmeans` sampler describes by).
fn descriptor() -> FingerprintSpec {
    let template = Atoms::default().with_cell(
        [[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]],
        [false; 3],
    );
    Fingerprint::for_search(FingerprintParams::default(), &template, &[18, 18])
        .expect("descriptor")
        .spec()
        .clone()
}

#[test]
fn from_settings() {
    let m = SamplerModule::from_settings(&SamplerSettings::Metropolis { temperature: 0.25 }, None)
        .expect("sampler");
    assert_eq!(m.sampler, Sampler::Metropolis(MetropolisSampler::new(0.25)));
    assert_eq!(m.sampler.name(), "metropolis");
    assert!(!m.is_initialized());
    let l = SamplerModule::from_settings(&SamplerSettings::Lowest, None).expect("sampler");
    // A kmeans sampler needs the descriptor.
    assert!(SamplerModule::from_settings(&SamplerSettings::kmeans(), None).is_err());
    assert_eq!(l.sampler, Sampler::Lowest(LowestSampler));
}

#[test]
fn lowest_keeps_the_lowest() {
    let mut m = SamplerModule::new(Sampler::Lowest(LowestSampler));
    let mut r = rng(1);
    assert!(m.get_parent(&mut r).is_none());
    let u = m
        .update(
            &[
                cand(1, Some(-1.0)),
                cand(2, Some(-3.0)),
                cand(3, None),
                cand(4, Some(-2.0)),
            ],
            &mut r,
        )
        .expect("update");
    assert_eq!(u.accepted, [false, true, false, false]);
    assert!(u.changed);
    assert_eq!(parent_id(&m), Some(2));
    let u = m
        .update(&[cand(5, Some(-2.5)), cand(6, Some(f64::NAN))], &mut r)
        .expect("update");
    assert!(!u.changed);
    assert_eq!(u.accepted, [false, false]);
    assert_eq!(parent_id(&m), Some(2));
    let u = m.update(&[cand(7, Some(-3.5))], &mut r).expect("update");
    assert!(u.changed);
    assert_eq!(parent_id(&m), Some(7));
    assert_eq!(m.parents.len(), 1);
}

#[test]
fn metropolis_first_proposal_is_accepted_and_best_of_batch_is_tested() {
    let mut m = metropolis(0.1, false);
    let mut r = rng(2);
    let u = m
        .update(
            &[cand(1, Some(5.0)), cand(2, Some(4.0)), cand(3, None)],
            &mut r,
        )
        .expect("update");
    assert_eq!(u.accepted, [false, true, false]);
    assert_eq!(parent_id(&m), Some(2));
    // the batch's best is far uphill at a low temperature: rejected
    let u = m
        .update(&[cand(4, Some(100.0)), cand(5, Some(90.0))], &mut r)
        .expect("update");
    assert!(!u.changed);
    assert_eq!(u.accepted, [false, false]);
    assert_eq!(parent_id(&m), Some(2));
    // the batch's best is downhill: accepted, even if another member is higher
    let u = m
        .update(&[cand(6, Some(10.0)), cand(7, Some(3.0))], &mut r)
        .expect("update");
    assert_eq!(u.accepted, [false, true]);
    assert_eq!(parent_id(&m), Some(7));
    // no usable energy: nothing happens
    let u = m.update(&[cand(8, None)], &mut r).expect("update");
    assert!(!u.changed);
}

#[test]
fn metropolis_accepts_downhill_always() {
    for sequential in [false, true] {
        let mut m = metropolis(1e-6, sequential);
        let mut r = rng(3);
        m.update(&[cand(0, Some(0.0))], &mut r).expect("update");
        let mut e = 0.0;
        for i in 1..500 {
            e -= 1e-3 * (i % 7) as f64; // includes equal-energy steps (ΔE = 0)
            let u = m.update(&[cand(i, Some(e))], &mut r).expect("update");
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
        m.update(&[cand(0, Some(1.0))], &mut r).expect("update");
        let u = m
            .update(&[cand(i as i64 + 1, Some(1.0 + de))], &mut r)
            .expect("update");
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
    let u = m
        .update(
            &[cand(1, Some(0.0)), cand(2, Some(1.0)), cand(3, Some(2.0))],
            &mut r,
        )
        .expect("update");
    assert_eq!(u.accepted, [true, true, true]);
    assert_eq!(parent_id(&m), Some(3));
    // best-of-batch at the same temperature would take the lowest
    let mut b = metropolis(1e9, false);
    b.update(
        &[cand(1, Some(0.0)), cand(2, Some(1.0)), cand(3, Some(2.0))],
        &mut r,
    )
    .expect("update");
    assert_eq!(parent_id(&b), Some(1));
}

#[test]
fn parents_are_the_dynamic_attribute() {
    assert_eq!(SamplerModule::dynamic_attribute_names(), ["parents"]);
    let mut driver = metropolis(0.25, false);
    let mut worker = driver.clone();
    driver
        .update(&[cand(9, Some(-1.0))], &mut rng(7))
        .expect("update");
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
    m.update(&[cand(1, Some(2.0))], &mut rng(8))
        .expect("update");
    let json = serde_json::to_string(&m).expect("ser");
    let back: SamplerModule = serde_json::from_str(&json).expect("de");
    assert_eq!(back, m);
}

fn kmeans_module(sample_size: usize) -> SamplerModule {
    SamplerModule::from_settings(
        &SamplerSettings::Kmeans {
            sample_size,
            max_energy: 5.0,
            n_init: 10,
        },
        Some(&descriptor()),
    )
    .expect("sampler")
}

/// Ar₂ at a bond length set by `id` (so the Fingerprints differ), with `energy`.
fn dimer(id: i64, energy: f64) -> Candidate {
    let r = 2.0 + 0.07 * (id % 40) as f64;
    let atoms = Atoms::new(vec![18, 18], vec![[4.0, 5.0, 5.0], [4.0 + r, 5.0, 5.0]])
        .expect("atoms")
        .with_cell(
            [[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]],
            [false; 3],
        );
    let mut c = Candidate::new(atoms, 0, "test", 0);
    c.meta.id = Some(id);
    c.energy = Some(energy);
    c
}

fn energies(m: &SamplerModule) -> Vec<f64> {
    m.parents
        .iter()
        .map(|p| p.energy.expect("energy"))
        .collect()
}

#[test]
fn kmeans_sample_is_the_lowest_of_each_cluster_in_the_energy_window() {
    let mut m = kmeans_module(10);
    assert_eq!(m.sampler.name(), "kmeans");
    // 30 structures, energies 0..=14 eV twice: 12 lie within 5 eV of the lowest
    // (fewer than 2·sample_size = 20), 22 within 10 eV, so the window widens once, to
    // those 22: 1 + min(9, ⌊22/5⌋) = 5 clusters.
    let batch: Vec<Candidate> = (0..30).map(|i| dimer(i, (i % 15) as f64)).collect();
    let u = m.update(&batch, &mut rng(4)).expect("update");
    assert!(u.changed);
    let e = energies(&m);
    assert!(!e.is_empty() && e.len() <= 5, "{e:?}");
    assert!(
        e.windows(2).all(|w| w[0] <= w[1]),
        "sorted by energy: {e:?}"
    );
    assert_eq!(
        e[0], 0.0,
        "the lowest structure is the lowest of its cluster"
    );
    assert_eq!(u.accepted.iter().filter(|&&a| a).count(), e.len());
    // A structure 100 eV up never enters the window (22 already lie within 10 eV).
    let u = m.update(&[dimer(100, 100.0)], &mut rng(5)).expect("update");
    assert_eq!(u.accepted, [false]);
    assert!(energies(&m).iter().all(|&x| x <= 10.0));
    // Parents are drawn uniformly from the sample.
    let mut r = rng(6);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        seen.insert(m.get_parent(&mut r).expect("parent").meta.id);
    }
    assert_eq!(seen.len(), m.parents.len());
}

#[test]
fn kmeans_few_structures_make_few_clusters() {
    let mut m = kmeans_module(10);
    // 4 structures: the window keeps all (fewer than 20), 1 + ⌊4/5⌋ = 1 cluster.
    let batch: Vec<Candidate> = (0..4).map(|i| dimer(i, 3.0 - i as f64)).collect();
    m.update(&batch, &mut rng(1)).expect("update");
    assert_eq!(energies(&m), [0.0]);
    assert_eq!(m.parents[0].meta.id, Some(3));
}

#[test]
fn kmeans_replay_ends_where_iteration_by_iteration_updates_end() {
    let iterations: Vec<Vec<Candidate>> = (0..6)
        .map(|it| {
            (0..5)
                .map(|k| dimer(it * 5 + k, ((it * 5 + k) % 11) as f64))
                .collect()
        })
        .collect();
    let mut stepwise = kmeans_module(4);
    for (it, batch) in iterations.iter().enumerate() {
        stepwise.update(batch, &mut rng(it as u64)).expect("update");
    }
    let mut replayed = kmeans_module(4);
    replayed
        .replay(
            iterations
                .iter()
                .enumerate()
                .map(|(it, b)| (b.as_slice(), rng(it as u64))),
        )
        .expect("replay");
    assert_eq!(replayed.parents, stepwise.parents);
    // The same offers and seed give the same sample; another seed may not.
    let mut again = kmeans_module(4);
    for (it, batch) in iterations.iter().enumerate() {
        again.update(batch, &mut rng(it as u64)).expect("update");
    }
    assert_eq!(again.parents, stepwise.parents);
}
