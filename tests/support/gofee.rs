//! What the GOFEE tests share (included with `#[path]`): a small Au4Cu2 search in
//! EMT, pools, the stored database, random training structures.

use std::path::Path;

use agox::atoms::emt::Emt;
use agox::atoms::{Atoms, Calculator};
use agox::pool::{Pool, PoolConfig};
use agox::search::candidate::Candidate;
use agox::search::db::Database;
use agox::search::environment::Environment;
use agox::search::generators::{Generator, RandomGenerator};
use agox::search::registry;
use agox::search::script::Script;
use agox::search::search::{Search, DB_FILE};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A small GOFEE search: Au4Cu2 in EMT, 6 candidates per iteration, relaxation in
/// the acquisition from iteration 1, one evaluation (2 stored points) per
/// iteration; `model` is the body of its `[model]`.
pub fn script_with_model(iterations: u64, seed: u64, model: &str) -> String {
    format!(
        r#"
[search]
algorithm = "gofee"
iterations = {iterations}
seed = {seed}

[environment]
symbols = "Au4Cu2"
cell = [10.0, 10.0, 10.0]
confinement = {{ corner = [3.0, 3.0, 3.0], size = [4.0, 4.0, 4.0] }}

[calculator]
kind = "emt"

[[generator]]
kind = "random"
count = {{ 0 = 4, 2 = 2 }}

[[generator]]
kind = "rattle"
n_rattle = 2
count = {{ 0 = 0, 2 = 2 }}

[model]
{model}

[relax]
steps = 40
"#
    )
}

/// `text` written to `dir/{out}.toml`, loaded, its output `dir/out`.
pub fn script_from(dir: &Path, text: &str, out: &str) -> Script {
    let path = dir.join(format!("{out}.toml"));
    std::fs::write(&path, text).unwrap();
    let mut s = Script::load(&path).unwrap_or_else(|e| panic!("{e}"));
    s.search.output = dir.join(out);
    s
}

pub fn pool(workers: usize) -> Pool {
    let (reg, _) = registry::build();
    Pool::start(reg, PoolConfig::with_workers(workers)).unwrap()
}

pub fn stored(dir: &Path) -> Vec<Candidate> {
    Database::open_existing(dir.join(DB_FILE))
        .unwrap()
        .read_all()
        .unwrap()
}

/// Energies and positions, bit for bit.
pub fn bits(cands: &[Candidate]) -> Vec<(u64, Vec<[u64; 3]>)> {
    cands
        .iter()
        .map(|c| {
            (
                c.energy.unwrap().to_bits(),
                c.atoms
                    .positions
                    .iter()
                    .map(|p| p.map(f64::to_bits))
                    .collect(),
            )
        })
        .collect()
}

/// Random Au4Cu2 clusters in the script's box with their EMT energies.
pub fn training_structures(n: usize, seed: u64) -> (Environment, Vec<(Atoms, f64)>) {
    let tmp = tempfile::tempdir().unwrap();
    let script = script_from(tmp.path(), &script_with_model(1, 1, ""), "env");
    let env = Environment::from_script(&script.environment);
    let gen = Generator::Random(RandomGenerator::default());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut emt = Emt::new();
    let data = std::iter::repeat_with(|| gen.generate(&env, None, &mut rng))
        .filter_map(Result::ok)
        .take(n)
        .map(|c| {
            let e = emt.calculate(&c.atoms, false).unwrap().energy;
            (c.atoms, e)
        })
        .collect();
    (env, data)
}

/// SIGKILLs worker `slot` of `pool` (the pool replaces it at its next use).
pub fn kill_worker(pool: &Pool, slot: usize) {
    let pid = pool.worker_pids()[slot];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// Runs the search `script(out)` twice, for `iterations` iterations on 2 workers:
/// undisturbed, then with a worker SIGKILLed before each iteration in `kill_at`
/// (after trainings, so the replacements' copies of the model are behind). The
/// second run must heal them (at least 2 heals) and store bit for bit what the
/// first did.
pub fn kills_change_no_result(script: impl Fn(&str) -> Script, iterations: u64, kill_at: &[u64]) {
    let quiet = script("quiet");
    let quiet_out = quiet.search.output.clone();
    Search::new(quiet, pool(2)).unwrap().run().unwrap();

    let killed = script("killed");
    let out = killed.search.output.clone();
    let mut search = Search::new(killed, pool(2)).unwrap();
    for it in 0..iterations {
        if kill_at.contains(&it) {
            kill_worker(search.pool(), it as usize % 2);
        }
        search.run_iteration().unwrap();
    }
    search.finish(false).unwrap();
    assert!(search.pool().stats().total_restarts() >= 2);
    let heals = search.model().unwrap().surrogate().heals();
    assert!(heals >= 2, "{heals} heals");
    assert_eq!(bits(&stored(&out)), bits(&stored(&quiet_out)));
}
