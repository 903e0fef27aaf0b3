//! `[[generator]]`: the generators and how many candidates each makes per iteration.
//! Defaults are the generators' own (`RandomGenerator::default()`, ...).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::read::{not_for_kind, Ctx, Keys};
use super::tree::{Kind, Node};
use crate::generators::{PermutationGenerator, RandomGenerator, RattleGenerator};

/// How many candidates a generator makes in each iteration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CountSchedule {
    /// The same count every iteration.
    Fixed(usize),
    /// From iteration `k` (key) on, the count is the value, until the next key; before
    /// the first key the count is 0. AGOX's `num_candidates = {0: [10, 0], 5: [3, 7]}`
    /// becomes `{0: 10, 5: 3}` for the first generator and `{0: 0, 5: 7}` for the second.
    Schedule(BTreeMap<u64, usize>),
}

impl<'de> Deserialize<'de> for CountSchedule {
    /// A number, or a map from iteration to count. JSON writes the iterations as
    /// strings, which an untagged enum cannot turn back into numbers by itself.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Fixed(usize),
            Schedule(BTreeMap<String, usize>),
        }
        match Raw::deserialize(d)? {
            Raw::Fixed(n) => Ok(CountSchedule::Fixed(n)),
            Raw::Schedule(map) => map
                .into_iter()
                .map(|(k, n)| {
                    k.parse::<u64>().map(|k| (k, n)).map_err(|_| {
                        serde::de::Error::custom(format!(
                            "schedule key \"{k}\" is not an iteration"
                        ))
                    })
                })
                .collect::<Result<_, _>>()
                .map(CountSchedule::Schedule),
        }
    }
}

impl CountSchedule {
    /// The count at `iteration`.
    pub fn at(&self, iteration: u64) -> usize {
        match self {
            CountSchedule::Fixed(n) => *n,
            CountSchedule::Schedule(map) => {
                map.range(..=iteration).next_back().map_or(0, |(_, &n)| n)
            }
        }
    }

    /// Iterations at which the count may change (empty for a fixed count).
    pub fn breakpoints(&self) -> Vec<u64> {
        match self {
            CountSchedule::Fixed(_) => Vec::new(),
            CountSchedule::Schedule(map) => map.keys().copied().collect(),
        }
    }

    /// The largest count of any iteration.
    pub fn max(&self) -> usize {
        match self {
            CountSchedule::Fixed(n) => *n,
            CountSchedule::Schedule(map) => map.values().copied().max().unwrap_or(0),
        }
    }
}

/// One `[[generator]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorSettings {
    /// What it does.
    pub kind: GeneratorKind,
    /// Candidates per iteration.
    pub count: CountSchedule,
}

/// Generator kinds and their parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GeneratorKind {
    /// Place atoms one by one inside the confinement box, each at a distance between
    /// `c1·(r_i + r_j)` and `c2·(r_i + r_j)` (covalent radii) of the placed atoms.
    Random {
        /// Lower distance factor (default 0.75).
        c1: f64,
        /// Upper distance factor (default 1.25).
        c2: f64,
        /// Each new atom must be within `c2·(r_i + r_j)` of some placed atom (default true).
        contiguous: bool,
        /// Attempts per atom before giving up (default 100).
        attempts: usize,
    },
    /// Displace `n_rattle` random atoms of a parent within `amplitude` Å, inside the box.
    Rattle {
        /// Atoms displaced (default 3).
        n_rattle: usize,
        /// Largest displacement (Å, default 3.0).
        amplitude: f64,
        /// Distance factor below which a displaced atom is rejected (default 0.75).
        c1: f64,
        /// Distance factor within which a displaced atom must have a neighbour (default 1.25).
        c2: f64,
        /// Attempts per atom before giving up (default 100).
        attempts: usize,
    },
    /// Swap `n_swaps` pairs of atoms of different species in a parent.
    Permutation {
        /// Swaps per candidate (default 1).
        n_swaps: usize,
    },
}

impl GeneratorKind {
    /// The generator's name (`random`, `rattle`, `permutation`).
    pub fn name(&self) -> &'static str {
        match self {
            GeneratorKind::Random { .. } => RandomGenerator::NAME,
            GeneratorKind::Rattle { .. } => RattleGenerator::NAME,
            GeneratorKind::Permutation { .. } => PermutationGenerator::NAME,
        }
    }

    /// Whether it modifies a parent chosen by the sampler.
    pub fn needs_parent(&self) -> bool {
        !matches!(self, GeneratorKind::Random { .. })
    }
}

const COUNT: &str =
    "an integer ≥ 1, or a schedule table { 0 = n, 5 = m } (from iteration → count ≥ 0)";

fn count(cx: &mut Ctx<'_>, v: &Node, key: &str) -> Option<CountSchedule> {
    match &v.kind {
        Kind::Int(_) => cx.usize_at_least(v, key, 1).map(CountSchedule::Fixed),
        Kind::Table(t) if !t.entries.is_empty() => {
            let mut map = BTreeMap::new();
            let mut ok = true;
            for (k, at, n) in &t.entries {
                let Ok(it) = k.trim().parse::<u64>() else {
                    cx.err(
                        *at,
                        key,
                        format!("schedule key \"{k}\" is not an iteration number; expected integers ≥ 0 as keys"),
                    );
                    ok = false;
                    continue;
                };
                match n.kind {
                    Kind::Int(c) if c >= 0 => {
                        map.insert(it, usize::try_from(c).ok()?);
                    }
                    _ => {
                        let found = cx.describe(n);
                        cx.err(
                            n.span.start,
                            key,
                            format!("schedule entry {k}: expected a count ≥ 0, found {found}"),
                        );
                        ok = false;
                    }
                }
            }
            ok.then_some(CountSchedule::Schedule(map))
        }
        _ => {
            cx.expected(v, key, COUNT);
            None
        }
    }
}

pub(super) fn read(cx: &mut Ctx<'_>, mut keys: Keys<'_>) -> Option<GeneratorSettings> {
    let kind_v = keys.get("kind");
    let count_v = keys.get("count");
    let c1_v = keys.get("c1");
    let c2_v = keys.get("c2");
    let contiguous_v = keys.get("contiguous");
    let attempts_v = keys.get("attempts");
    let n_rattle_v = keys.get("n_rattle");
    let amplitude_v = keys.get("amplitude");
    let n_swaps_v = keys.get("n_swaps");
    let key = |k: &str| keys.key(k);

    let kind = match kind_v {
        Some(v) => cx.choice(v, &key("kind"), &["random", "rattle", "permutation"]),
        None => {
            cx.missing(
                keys.at(),
                &key("kind"),
                "\"random\", \"rattle\" or \"permutation\"",
            );
            None
        }
    };
    let count = count_v.map_or(Some(CountSchedule::Fixed(1)), |v| {
        count(cx, v, &key("count"))
    });
    let random = RandomGenerator::default();
    let rattle = RattleGenerator::default();
    // c1 and c2 default alike for `random` and `rattle`.
    // (a permutation has none of these: `not_for_kind` below reports them)
    let permutation = kind.as_deref() == Some("permutation");
    let c1_v = c1_v.filter(|_| !permutation);
    let c2_v = c2_v.filter(|_| !permutation);
    let attempts_v = attempts_v.filter(|_| !permutation);
    let c1 = c1_v.map_or(Some(random.c1), |v| cx.positive(v, &key("c1")));
    let c2 = c2_v.map_or(Some(random.c2), |v| cx.positive(v, &key("c2")));
    let distances = match (c1, c2) {
        (Some(a), Some(b)) if a >= b => {
            let offset = c1_v.or(c2_v).map_or(keys.at(), |v| v.span.start);
            cx.err(
                offset,
                &key("c1"),
                format!("c1 = {a} must be smaller than c2 = {b}"),
            );
            None
        }
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    };
    let attempts = attempts_v.map_or(Some(random.attempts), |v| {
        cx.usize_at_least(v, &key("attempts"), 1)
    });
    let kind = match kind.as_deref() {
        Some("random") => {
            not_for_kind(cx, &keys, "random", &["n_rattle", "amplitude", "n_swaps"]);
            let contiguous = contiguous_v.map_or(Some(random.contiguous), |v| {
                cx.boolean(v, &key("contiguous"))
            });
            distances
                .zip(contiguous)
                .zip(attempts)
                .map(|(((c1, c2), contiguous), attempts)| GeneratorKind::Random {
                    c1,
                    c2,
                    contiguous,
                    attempts,
                })
        }
        Some("rattle") => {
            not_for_kind(cx, &keys, "rattle", &["contiguous", "n_swaps"]);
            let n_rattle = n_rattle_v.map_or(Some(rattle.n_rattle), |v| {
                cx.usize_at_least(v, &key("n_rattle"), 1)
            });
            let amplitude = amplitude_v.map_or(Some(rattle.amplitude), |v| {
                cx.positive(v, &key("amplitude"))
            });
            match (distances, attempts, n_rattle, amplitude) {
                (Some((c1, c2)), Some(attempts), Some(n_rattle), Some(amplitude)) => {
                    Some(GeneratorKind::Rattle {
                        n_rattle,
                        amplitude,
                        c1,
                        c2,
                        attempts,
                    })
                }
                _ => None,
            }
        }
        Some(_) => {
            not_for_kind(
                cx,
                &keys,
                "permutation",
                &[
                    "c1",
                    "c2",
                    "contiguous",
                    "attempts",
                    "n_rattle",
                    "amplitude",
                ],
            );
            let n_swaps = n_swaps_v.map_or(Some(PermutationGenerator::default().n_swaps), |v| {
                cx.usize_at_least(v, &key("n_swaps"), 1)
            });
            n_swaps.map(|n_swaps| GeneratorKind::Permutation { n_swaps })
        }
        None => None,
    };
    if !keys.finish(cx) {
        return None;
    }
    Some(GeneratorSettings {
        kind: kind?,
        count: count?,
    })
}
