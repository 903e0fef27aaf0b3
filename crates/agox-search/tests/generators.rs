//! The generators alone and on the pool: distance rules, the box, the template,
//! what rattle and permutation may change, determinism, failures, and the same
//! candidates from 0 and 2 workers.

use agox_atoms::Atoms;
use agox_pool::{Pool, PoolConfig, Registry};
use agox_search::environment::{covalent_radius, Confinement, Environment};
use agox_search::generators::{
    register, GenerateError, GenerateRequest, Generator, GeneratorModule, PermutationGenerator,
    RandomGenerator, RattleGenerator, RattleSelection,
};
use agox_search::samplers::{LowestSampler, Sampler, SamplerModule};
use agox_search::Candidate;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const AU: u8 = 79;
const CU: u8 = 29;

fn diag(a: f64, b: f64, c: f64) -> [[f64; 3]; 3] {
    [[a, 0.0, 0.0], [0.0, b, 0.0], [0.0, 0.0, c]]
}

/// Au8Cu4 in a 12 Å cell, 6 Å box at (3, 3, 3): the benchmark system.
fn cluster_env() -> Environment {
    let mut numbers = vec![AU; 8];
    numbers.extend([CU; 4]);
    Environment {
        template: Atoms::default().with_cell(diag(12.0, 12.0, 12.0), [false; 3]),
        numbers,
        cell: diag(12.0, 12.0, 12.0),
        pbc: [false; 3],
        confinement: Confinement {
            corner: [3.0; 3],
            cell: diag(6.0, 6.0, 6.0),
            pbc: [false; 3],
        },
    }
}

/// Au2Cu2 on a 3×3 square Au layer, periodic in x and y, box above the layer.
fn slab_env() -> Environment {
    let a = 2.88;
    let mut positions = Vec::new();
    for i in 0..3 {
        for j in 0..3 {
            positions.push([a * i as f64 + 0.5, a * j as f64 + 0.5, 5.0]);
        }
    }
    let cell = diag(3.0 * a, 3.0 * a, 20.0);
    let template = Atoms::new(vec![AU; 9], positions)
        .expect("template")
        .with_cell(cell, [true, true, false]);
    Environment {
        template,
        numbers: vec![AU, AU, CU, CU],
        cell,
        pbc: [true, true, false],
        confinement: Confinement {
            corner: [0.0, 0.0, 6.0],
            cell: diag(3.0 * a, 3.0 * a, 4.0),
            pbc: [true, true, false],
        },
    }
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Minimum-image distance between atoms i and j of `atoms`.
fn dist(atoms: &Atoms, i: usize, j: usize) -> f64 {
    atoms.distance(i, j, true).expect("distance")
}

fn box_fraction(env: &Environment, r: [f64; 3]) -> [f64; 3] {
    let f = env.frame().expect("frame");
    f.box_fractional(r)
}

/// Checks everything a generated structure must satisfy: the template untouched and
/// fixed, the composition, every placed atom strictly inside the box, every pair
/// involving a placed atom at least c1·(r_i + r_j) apart; and, if `bonded`, every
/// placed atom connected through c2-bonds to a template atom (or, without template,
/// all placed atoms in one c2-connected cluster).
fn check_structure(env: &Environment, atoms: &Atoms, c1: f64, c2: f64, bonded: bool) {
    let t = env.template_len();
    assert_eq!(atoms.len(), env.total_len());
    assert_eq!(atoms.numbers[..t], env.template.numbers[..]);
    assert_eq!(
        atoms.positions[..t],
        env.template.positions[..],
        "template atoms moved"
    );
    assert_eq!(atoms.fixed, (0..t).collect::<Vec<_>>());
    let mut placed = atoms.numbers[t..].to_vec();
    let mut want = env.numbers.clone();
    placed.sort_unstable();
    want.sort_unstable();
    assert_eq!(placed, want, "composition");
    for i in t..atoms.len() {
        let s = box_fraction(env, atoms.positions[i]);
        assert!(
            s.iter().all(|&x| x > 0.0 && x < 1.0),
            "atom {i} outside the box: {s:?}"
        );
    }
    let n = atoms.len();
    let sum =
        |i: usize, j: usize| covalent_radius(atoms.numbers[i]) + covalent_radius(atoms.numbers[j]);
    for i in t..n {
        for j in 0..i {
            let d = dist(atoms, i, j);
            assert!(
                d >= c1 * sum(i, j) - 1e-9,
                "atoms {j},{i} at {d:.3} Å < c1·(r_i+r_j) = {:.3}",
                c1 * sum(i, j)
            );
        }
    }
    if bonded {
        // Flood fill over c2-bonds from the template (or from the first placed atom).
        let mut seen = vec![false; n];
        let mut stack: Vec<usize> = if t > 0 { (0..t).collect() } else { vec![0] };
        for &s in &stack {
            seen[s] = true;
        }
        while let Some(i) = stack.pop() {
            for (j, s) in seen.iter_mut().enumerate() {
                if !*s && dist(atoms, i, j) <= c2 * sum(i, j) + 1e-9 {
                    *s = true;
                    stack.push(j);
                }
            }
        }
        assert!(
            seen.iter().all(|&s| s),
            "some placed atom has no c2-bond path: {seen:?}"
        );
    }
}

fn random(contiguous: bool) -> Generator {
    Generator::Random(RandomGenerator {
        contiguous,
        ..RandomGenerator::default()
    })
}

fn parent(env: &Environment, seed: u64, c1: f64, c2: f64, id: i64) -> Candidate {
    let g = Generator::Random(RandomGenerator {
        c1,
        c2,
        ..RandomGenerator::default()
    });
    let mut c = g.generate(env, None, &mut rng(seed)).expect("parent");
    c.meta.id = Some(id);
    c.energy = Some(-1.0);
    c
}

#[test]
fn random_cluster_obeys_rules_and_is_in_formula_order() {
    let env = cluster_env();
    for seed in 0..40 {
        let c = random(true)
            .generate(&env, None, &mut rng(seed))
            .expect("generate");
        check_structure(&env, &c.atoms, 0.75, 1.25, true);
        assert_eq!(c.atoms.numbers, env.numbers, "formula order");
        assert_eq!(c.meta.generator, "random");
        assert_eq!(c.meta.template_len, 0);
        assert!(c.meta.parents.is_empty() && c.energy.is_none());
    }
}

#[test]
fn random_on_slab_template() {
    let env = slab_env();
    for contiguous in [true, false] {
        for seed in 0..20 {
            let c = random(contiguous)
                .generate(&env, None, &mut rng(seed))
                .expect("generate");
            check_structure(&env, &c.atoms, 0.75, 1.25, true);
            assert_eq!(c.meta.template_len, 9);
        }
    }
}

#[test]
fn random_non_contiguous_cluster() {
    let env = cluster_env();
    for seed in 0..10 {
        // uniform proposals in the box: needs more attempts to find bonding sites
        let g = Generator::Random(RandomGenerator {
            contiguous: false,
            attempts: 2000,
            ..RandomGenerator::default()
        });
        let c = g.generate(&env, None, &mut rng(seed)).expect("generate");
        check_structure(&env, &c.atoms, 0.75, 1.25, true);
    }
}

#[test]
fn random_is_deterministic_per_seed() {
    let env = cluster_env();
    let a = random(true).generate(&env, None, &mut rng(5)).expect("a");
    let b = random(true).generate(&env, None, &mut rng(5)).expect("b");
    let c = random(true).generate(&env, None, &mut rng(6)).expect("c");
    assert_eq!(a, b);
    assert_ne!(a.atoms.positions, c.atoms.positions);
}

#[test]
fn impossible_box_is_an_error_not_a_hang() {
    let mut env = cluster_env();
    env.numbers = vec![AU; 40];
    env.confinement.cell = diag(4.0, 4.0, 4.0);
    let start = std::time::Instant::now();
    for contiguous in [true, false] {
        let err = random(contiguous)
            .generate(&env, None, &mut rng(1))
            .expect_err("40 Au cannot fit a 4 Å cube");
        match &err {
            GenerateError::Placement {
                generator,
                atom,
                of,
                element,
                attempts,
                ..
            } => {
                assert_eq!(generator, "random");
                assert!(*atom > 1 && *atom <= 40, "{atom}");
                assert_eq!((*of, element.as_str(), *attempts), (40, "Au", 100));
            }
            other => panic!("unexpected error {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("Au") && msg.contains("100 attempts"), "{msg}");
    }
    assert!(start.elapsed().as_secs_f64() < 5.0);
}

#[test]
fn degenerate_box_is_an_error() {
    let mut env = cluster_env();
    env.confinement.cell = [[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0]];
    let err = random(true)
        .generate(&env, None, &mut rng(1))
        .expect_err("degenerate");
    assert!(matches!(err, GenerateError::Environment { .. }), "{err:?}");
}

fn moved(a: &Atoms, b: &Atoms) -> Vec<usize> {
    (0..a.len())
        .filter(|&i| a.positions[i] != b.positions[i])
        .collect()
}

#[test]
fn rattle_moves_at_most_n_rattle_atoms_within_amplitude() {
    for env in [cluster_env(), slab_env()] {
        for seed in 0..30 {
            let p = parent(&env, 100 + seed, 0.75, 1.25, 7);
            let g = RattleGenerator {
                n_rattle: 3,
                amplitude: 2.0,
                ..RattleGenerator::default()
            };
            let c = Generator::Rattle(g)
                .generate(&env, Some(&p), &mut rng(seed))
                .expect("rattle");
            let m = moved(&p.atoms, &c.atoms);
            assert!(!m.is_empty() && m.len() <= 3, "moved {m:?}");
            assert!(
                m.iter().all(|&i| i >= env.template_len()),
                "a template atom moved"
            );
            for &i in &m {
                let d = agox_atoms::geometry::norm(agox_atoms::geometry::sub(
                    c.atoms.positions[i],
                    p.atoms.positions[i],
                ));
                assert!(d <= 2.0 + 1e-12, "atom {i} moved {d} Å");
            }
            assert_eq!(c.atoms.numbers, p.atoms.numbers);
            check_structure(&env, &c.atoms, 0.75, 1.25, false);
            assert_eq!(c.meta.generator, "rattle");
            assert_eq!(c.meta.parents, vec![7]);
            assert!(c.energy.is_none() && c.meta.id.is_none());
        }
    }
}

#[test]
fn rattle_selection_modes() {
    let g = RattleGenerator {
        n_rattle: 3,
        ..RattleGenerator::default()
    };
    let mut r = rng(9);
    for _ in 0..100 {
        let mut idx = g.choose(5, 12, &mut r);
        assert_eq!(idx.len(), 3);
        idx.sort_unstable();
        idx.dedup();
        assert_eq!(idx.len(), 3);
        assert!(idx.iter().all(|&i| (5..17).contains(&i)));
    }
    // n_rattle beyond the free atoms: all of them
    let all = RattleGenerator {
        n_rattle: 50,
        ..g.clone()
    };
    assert_eq!(all.choose(0, 4, &mut r).len(), 4);
    // AGOX's binomial rule: mean n_rattle, at least one
    let b = RattleGenerator {
        selection: RattleSelection::Binomial,
        ..g
    };
    let n = 4000;
    let mut total = 0;
    for _ in 0..n {
        let k = b.choose(0, 12, &mut r).len();
        assert!((1..=12).contains(&k));
        total += k;
    }
    let mean = total as f64 / n as f64;
    assert!((mean - 3.0).abs() < 0.1, "binomial mean {mean}");
}

#[test]
fn rattle_without_parent() {
    let env = cluster_env();
    let g = Generator::Rattle(RattleGenerator::default());
    let err = g.generate(&env, None, &mut rng(1)).expect_err("no parent");
    assert!(matches!(err, GenerateError::NoParent { .. }));
    // AGOX's start_candidate fallback
    let c = g
        .generate_or_start(&env, None, &mut rng(1))
        .expect("fallback");
    assert_eq!(c.meta.generator, "random");
    check_structure(&env, &c.atoms, 0.75, 1.25, true);
}

#[test]
fn rattle_rejects_a_parent_from_another_environment() {
    let env = cluster_env();
    let p = parent(&slab_env(), 1, 0.75, 1.25, 1);
    let err = Generator::Rattle(RattleGenerator::default())
        .generate(&env, Some(&p), &mut rng(1))
        .expect_err("mismatch");
    assert!(matches!(err, GenerateError::BadParent { .. }), "{err:?}");
}

#[test]
fn permutation_swaps_unlike_atoms() {
    for env in [cluster_env(), slab_env()] {
        for seed in 0..30 {
            let p = parent(&env, 200 + seed, 0.9, 1.1, 3);
            let g = Generator::Permutation(PermutationGenerator::default());
            let c = g
                .generate(&env, Some(&p), &mut rng(seed))
                .expect("permutation");
            assert_eq!(
                c.atoms.numbers, p.atoms.numbers,
                "composition and order kept"
            );
            let m = moved(&p.atoms, &c.atoms);
            assert_eq!(m.len(), 2, "one swap moves two atoms");
            let (i, j) = (m[0], m[1]);
            assert!(i >= env.template_len());
            assert_ne!(c.atoms.numbers[i], c.atoms.numbers[j]);
            assert_eq!(c.atoms.positions[i], p.atoms.positions[j]);
            assert_eq!(c.atoms.positions[j], p.atoms.positions[i]);
            assert_eq!(c.meta.parents, vec![3]);
            assert_eq!(c.meta.generator, "permutation");
        }
    }
}

#[test]
fn permutation_multiple_swaps_keep_the_position_set() {
    let env = cluster_env();
    let p = parent(&env, 5, 0.9, 1.1, 3);
    let g = Generator::Permutation(PermutationGenerator {
        n_swaps: 3,
        ..PermutationGenerator::default()
    });
    let c = g
        .generate(&env, Some(&p), &mut rng(2))
        .expect("permutation");
    let key = |v: &[[f64; 3]]| {
        let mut k: Vec<[u64; 3]> = v.iter().map(|r| r.map(f64::to_bits)).collect();
        k.sort_unstable();
        k
    };
    assert_eq!(key(&c.atoms.positions), key(&p.atoms.positions));
    assert_eq!(c.atoms.numbers, p.atoms.numbers);
    assert_ne!(c.atoms.positions, p.atoms.positions);
}

#[test]
fn permutation_needs_two_species() {
    let mut env = cluster_env();
    env.numbers = vec![AU; 6];
    let p = parent(&env, 1, 0.9, 1.1, 1);
    let err = Generator::Permutation(PermutationGenerator::default())
        .generate(&env, Some(&p), &mut rng(1))
        .expect_err("single species");
    assert!(
        matches!(&err, GenerateError::SingleSpecies { element } if element == "Au"),
        "{err:?}"
    );
}

#[test]
fn permutation_reports_when_no_swap_is_valid() {
    // Two atoms far apart plus a third bonded to neither after a swap: with tight
    // c1/c2 no swap keeps a bond.
    let mut env = cluster_env();
    env.numbers = vec![AU, CU, CU];
    let atoms = Atoms::new(
        env.numbers.clone(),
        vec![[4.0, 4.0, 4.0], [6.0, 4.0, 4.0], [8.0, 4.0, 4.0]],
    )
    .expect("atoms")
    .with_cell(env.cell, env.pbc);
    let p = Candidate::new(atoms, 0, "test", 0);
    let g = PermutationGenerator {
        n_swaps: 1,
        c1: 0.99,
        c2: 1.0,
    };
    let err = Generator::Permutation(g)
        .generate(&env, Some(&p), &mut rng(1))
        .expect_err("no swap");
    assert!(
        matches!(err, GenerateError::NoValidSwap { pairs: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn generators_round_trip_through_serde() {
    for g in [
        random(false),
        Generator::Rattle(RattleGenerator::default()),
        Generator::Permutation(PermutationGenerator::default()),
    ] {
        let m = GeneratorModule::new(g, slab_env());
        let json = serde_json::to_string(&m).expect("ser");
        let back: GeneratorModule = serde_json::from_str(&json).expect("de");
        assert_eq!(back, m);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any seed and any reasonable c1 < c2 give a valid structure (or a clean error).
    #[test]
    fn random_structures_are_valid(seed in any::<u64>(), c1 in 0.6f64..0.9, dc in 0.2f64..0.6, slab in any::<bool>()) {
        let env = if slab { slab_env() } else { cluster_env() };
        let c2 = c1 + dc;
        let g = Generator::Random(RandomGenerator { c1, c2, ..RandomGenerator::default() });
        match g.generate(&env, None, &mut rng(seed)) {
            Ok(c) => check_structure(&env, &c.atoms, c1, c2, true),
            Err(e) => prop_assert!(matches!(e, GenerateError::Placement { .. }), "{e:?}"),
        }
    }

    /// Rattle from any seed keeps the box, the template and the c1 rule.
    #[test]
    fn rattled_structures_are_valid(seed in any::<u64>(), n_rattle in 1usize..8, amplitude in 0.1f64..4.0) {
        let env = slab_env();
        let p = parent(&env, seed ^ 0x55, 0.75, 1.25, 1);
        let g = Generator::Rattle(RattleGenerator { n_rattle, amplitude, ..RattleGenerator::default() });
        let c = g.generate(&env, Some(&p), &mut rng(seed)).expect("rattle");
        let m = moved(&p.atoms, &c.atoms);
        prop_assert!(m.len() <= n_rattle.min(4));
        check_structure(&env, &c.atoms, 0.75, 1.25, false);
    }
}

// ---------------------------------------------------------------------------------
// On the pool

fn start(workers: usize) -> (Pool, agox_search::generators::GenFns) {
    let mut reg = Registry::new();
    let fns = register(&mut reg);
    let pool = Pool::start(reg, PoolConfig::with_workers(workers).seed(11)).expect("pool");
    (pool, fns)
}

/// Runs random and rattle requests of two iterations, updating the sampler between
/// them as a search would; returns every candidate.
fn pool_run(workers: usize) -> Vec<Candidate> {
    let env = cluster_env();
    let (pool, fns) = start(workers);
    let random_m = pool
        .add_module(
            "gen-random",
            GeneratorModule::new(random(true), env.clone()),
        )
        .expect("add");
    let rattle_m = pool
        .add_module(
            "gen-rattle",
            GeneratorModule::new(Generator::Rattle(RattleGenerator::default()), env.clone()),
        )
        .expect("add");
    let sampler = pool
        .add_module(
            "sampler",
            SamplerModule::new(Sampler::Lowest(LowestSampler)),
        )
        .expect("add");

    let mut out = Vec::new();
    for iteration in 0..3u64 {
        let mut args = Vec::new();
        for k in 0..3 {
            args.push((
                random_m.link(),
                None,
                GenerateRequest::new(42, iteration, 0, k),
            ));
            args.push((
                rattle_m.link(),
                Some(sampler.link()),
                GenerateRequest::new(42, iteration, 1, k),
            ));
        }
        let results = pool.map(&fns.generate, args).expect("map");
        let mut cands: Vec<Candidate> =
            results.into_iter().map(|r| r.expect("generated")).collect();
        for c in &cands {
            assert_eq!(c.meta.iteration, iteration);
        }
        if iteration == 0 {
            // empty sampler: rattle fell back to random placement
            assert!(cands.iter().all(|c| c.meta.generator == "random"));
        } else {
            // every rattle started from the parent the driver chose last iteration
            let parent = sampler.lock().parents[0].clone();
            for c in cands.iter().skip(1).step_by(2) {
                assert_eq!(c.meta.generator, "rattle");
                assert_eq!(c.meta.parents, vec![parent.meta.id.expect("id")]);
                let same = (0..c.len())
                    .filter(|&i| c.atoms.positions[i] == parent.atoms.positions[i])
                    .count();
                assert!(
                    same >= c.len() - 3,
                    "rattle did not start from the synchronized parent"
                );
            }
        }
        // "evaluate": a fake energy, an id; the driver updates the sampler and syncs
        for (i, c) in cands.iter_mut().enumerate() {
            c.meta.id = Some((iteration * 100 + i as u64) as i64);
            c.energy = Some(c.atoms.positions.iter().map(|p| p[0]).sum::<f64>());
        }
        let update = sampler
            .lock()
            .update(&cands, &mut rng(iteration))
            .expect("update");
        assert!(update.changed || iteration > 0);
        let report = pool.synchronize().expect("sync");
        if update.changed {
            assert!(
                report.attributes >= 1,
                "the new parents were not sent: {report:?}"
            );
        }
        out.extend(cands);
    }
    if workers > 0 {
        let on_workers: u64 = pool.stats().workers.iter().map(|w| w.tasks).sum();
        assert_eq!(on_workers, 18, "the tasks did not run on the workers");
    }
    out
}

#[test]
fn pool_generation_matches_in_process_and_follows_the_sampler() {
    let local = pool_run(0);
    let remote = pool_run(2);
    assert_eq!(local.len(), 18);
    assert_eq!(
        local, remote,
        "2 workers and 0 workers gave different candidates"
    );
}

#[test]
fn driver_side_run_equals_pool_task() {
    let env = slab_env();
    let m = GeneratorModule::new(random(true), env);
    let req = GenerateRequest::new(1, 2, 3, 4);
    let local = m.run(None, &req).expect("run");
    let (pool, fns) = start(1);
    let h = pool.add_module("g", m).expect("add");
    let remote = pool
        .map(&fns.generate, [(h.link(), None, req)])
        .expect("map");
    assert_eq!(remote[0].as_ref().expect("generated"), &local);
}
