//! What distinguishes the search algorithms, in one place.
//!
//! The loop ([`crate::search`]), the evaluator and the script checker ask an
//! [`Algorithm`] instead of matching on it themselves:
//!
//! | question | `rss` | `bh` | `gofee` |
//! | --- | --- | --- | --- |
//! | sampler ([`Algorithm::sampler`]) | `lowest` when a generator needs parents, else none | required (`[sampler]`) | `kmeans` unless given |
//! | generators when none are given ([`Algorithm::default_generators`]) | – (required) | – (required) | AGOX's: random, then random and rattle |
//! | model candidates relax in ([`Algorithm::relaxation_model`]) | the calculator | the calculator | the acquisition `E − κσ` of the trained model |
//! | `[relax]` defaults ([`Algorithm::relax_defaults`]) | 200 steps from iteration 0 | 200 steps from iteration 0 | 100 steps from iteration 1 (AGOX's `start_relax = 2`) |
//! | candidates whose relaxation took no step ([`Algorithm::drops_unmoved`]) | kept | kept | dropped (AGOX) |
//! | which candidates are evaluated ([`Algorithm::choose`]) | all, or the `[evaluator] count` lowest model energies | all | the lowest acquisition values, tried in order until `count` (1) succeed ([`Algorithm::replaces_failed_evaluations`]) |
//! | `[evaluator]` defaults ([`Algorithm::evaluator_defaults`]) | single point of all | single point of all | a single point and one BFGS step, both stored |
//! | a model trained on every stored structure ([`Algorithm::trains_model`]) | no | no | yes, after every store |
//! | next iteration's candidates may start early ([`Algorithm::lookahead_is_exact`]) | when no generator needs a parent and evaluation is a single point in the driver | never | never |
//!
//! In every algorithm the evaluator calculates in the real calculator, the iteration's
//! evaluations are stored in one transaction and then offered to the model (if any)
//! and the sampler.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::script::{
    CalculatorSettings, CountSchedule, EvaluatorKind, EvaluatorSettings, GeneratorKind,
    GeneratorSettings, Optimizer, SamplerSettings,
};

/// The search algorithm (`[search] algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Random structure search: generate, relax, evaluate all (or the lowest few).
    Rss,
    /// Basin hopping: modify the current structure, relax, Metropolis accept.
    Bh,
    /// GOFEE: relax candidates in the lower confidence bound of a Gaussian process
    /// trained on every evaluation, evaluate the most promising.
    Gofee,
}

/// The model a candidate is relaxed in on the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelaxationModel {
    /// The script's calculator (the real potential).
    Calculator,
    /// The acquisition of the search's surrogate model (`[model]`, `[acquisition]`).
    Acquisition,
}

/// Defaults of `[relax]` for an algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelaxDefaults {
    /// Largest number of optimizer steps.
    pub steps: usize,
    /// First iteration (from 0) whose candidates are relaxed.
    pub start_iteration: u64,
}

/// What an algorithm needs of `[sampler]`.
#[derive(Debug, Clone, PartialEq)]
pub enum SamplerNeed {
    /// The sampler to use (`None`: the search has none).
    Use(Option<SamplerSettings>),
    /// The section is required; the message says what to write.
    Required(&'static str),
}

impl Algorithm {
    /// Every algorithm, in the order the script reference lists them.
    pub const ALL: [Algorithm; 3] = [Algorithm::Rss, Algorithm::Bh, Algorithm::Gofee];

    /// The name used in scripts and summaries (`rss`, `bh`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rss => "rss",
            Algorithm::Bh => "bh",
            Algorithm::Gofee => "gofee",
        }
    }

    /// The algorithm named `name` in a script.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The sampler of a search whose script gives `given` (its `[sampler]`, if any)
    /// and `generators`.
    pub fn sampler(
        self,
        given: Option<&SamplerSettings>,
        generators: &[GeneratorSettings],
    ) -> SamplerNeed {
        if let Some(s) = given {
            return SamplerNeed::Use(Some(s.clone()));
        }
        match self {
            Algorithm::Bh => SamplerNeed::Required(
                "basin hopping needs `[sampler]` with `kind = \"metropolis\"` and a \
                 `temperature` (or `kind = \"lowest\"`)",
            ),
            Algorithm::Rss => SamplerNeed::Use(
                generators
                    .iter()
                    .any(|g| g.kind.needs_parent())
                    .then_some(SamplerSettings::Lowest),
            ),
            Algorithm::Gofee => SamplerNeed::Use(Some(SamplerSettings::kmeans())),
        }
    }

    /// The generators of a script without `[[generator]]`, placing `n_atoms` atoms;
    /// `None`: the section is required.
    ///
    /// GOFEE: AGOX's `GOFEEConfig` — 10 random candidates per iteration, from AGOX's
    /// iteration 5 (our iteration 4: AGOX counts from 1) 2 random and 8 rattled
    /// ones, rattling ⌊N/4⌋ atoms (at least 1) within 3 Å.
    pub fn default_generators(self, n_atoms: usize) -> Option<Vec<GeneratorSettings>> {
        match self {
            Algorithm::Rss | Algorithm::Bh => None,
            Algorithm::Gofee => {
                let random = crate::generators::RandomGenerator::default();
                let rattle = crate::generators::RattleGenerator::default();
                let schedule = |first: usize, later: usize| {
                    CountSchedule::Schedule([(0, first), (4, later)].into_iter().collect())
                };
                Some(vec![
                    GeneratorSettings {
                        kind: GeneratorKind::Random {
                            c1: random.c1,
                            c2: random.c2,
                            contiguous: random.contiguous,
                            attempts: random.attempts,
                        },
                        count: schedule(10, 2),
                    },
                    GeneratorSettings {
                        kind: GeneratorKind::Rattle {
                            n_rattle: (n_atoms / 4).max(1),
                            amplitude: rattle.amplitude,
                            c1: rattle.c1,
                            c2: rattle.c2,
                            attempts: rattle.attempts,
                        },
                        count: schedule(0, 8),
                    },
                ])
            }
        }
    }

    /// The model candidates are relaxed in (`[relax]`).
    pub fn relaxation_model(self) -> RelaxationModel {
        match self {
            Algorithm::Rss | Algorithm::Bh => RelaxationModel::Calculator,
            Algorithm::Gofee => RelaxationModel::Acquisition,
        }
    }

    /// Defaults of `[relax]` (BFGS and `fmax = 0.05` in every algorithm).
    pub fn relax_defaults(self) -> RelaxDefaults {
        match self {
            Algorithm::Rss | Algorithm::Bh => RelaxDefaults {
                steps: crate::script::relax::DEFAULT_STEPS,
                start_iteration: 0,
            },
            // AGOX's GOFEEConfig: ≤ 100 steps from `start_relax = 2`, its second
            // iteration (AGOX counts from 1).
            Algorithm::Gofee => RelaxDefaults {
                steps: 100,
                start_iteration: 1,
            },
        }
    }

    /// Whether the search always relaxes its candidates, `[relax]` given or not.
    pub fn always_relaxes(self) -> bool {
        self == Algorithm::Gofee
    }

    /// Whether a candidate whose relaxation took no step is left out (AGOX's
    /// `ParallelRelaxPostprocess` drops them: already at a minimum of the
    /// acquisition, so nothing new).
    pub fn drops_unmoved(self) -> bool {
        self == Algorithm::Gofee
    }

    /// Defaults of `[evaluator]`.
    ///
    /// GOFEE: AGOX's `LocalOptimizationEvaluator` with one BFGS step and its
    /// trajectory stored — a single point of the chosen candidate and one after a
    /// step, both stored — for one candidate per iteration.
    pub fn evaluator_defaults(self) -> EvaluatorSettings {
        match self {
            Algorithm::Rss | Algorithm::Bh => EvaluatorSettings::default(),
            Algorithm::Gofee => EvaluatorSettings {
                kind: EvaluatorKind::Relax {
                    optimizer: Optimizer::Bfgs,
                    fmax: crate::script::relax::DEFAULT_FMAX,
                    steps: 1,
                    store_trajectory: true,
                },
                count: Some(1),
            },
        }
    }

    /// Whether a failed evaluation is made up for by the next candidate in order
    /// (AGOX's evaluator tries candidates until `number_to_evaluate` succeed).
    pub fn replaces_failed_evaluations(self) -> bool {
        self == Algorithm::Gofee
    }

    /// Whether the search trains a surrogate model (`[model]`) on every stored
    /// structure.
    pub fn trains_model(self) -> bool {
        self == Algorithm::Gofee
    }

    /// Indices of the candidates to evaluate, in evaluation order, given each
    /// candidate's energy in the relaxation model (`None`: not relaxed) and
    /// `[evaluator] count`.
    ///
    /// `bh`, or `count == None`: all, in generation order. `rss` with a count: the
    /// `count` lowest model energies, lowest first (ties and candidates without a
    /// model energy keep generation order, the latter after every candidate that
    /// has one). `gofee`: every candidate in that order (the evaluator stops after
    /// `count` successes); before the model is trained no candidate has a model
    /// energy, so the first generated comes first, as in AGOX.
    pub fn choose(self, count: Option<usize>, model_energies: &[Option<f64>]) -> Vec<usize> {
        let n = model_energies.len();
        let count = match (self, count) {
            (Algorithm::Bh, _) | (_, None) => return (0..n).collect(),
            (Algorithm::Gofee, Some(_)) => n,
            (Algorithm::Rss, Some(c)) => c,
        };
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| match (model_energies[a], model_energies[b]) {
            (Some(x), Some(y)) => x.total_cmp(&y).then(a.cmp(&b)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => a.cmp(&b),
        });
        order.truncate(count.min(n));
        order
    }

    /// True when iteration `i + 1`'s candidates may be generated and relaxed before
    /// iteration `i` ends, giving exactly the same candidates: nothing a task reads
    /// may change at the end of an iteration (no generator needs a parent, and the
    /// relaxation model is the fixed calculator), and the evaluation runs in the
    /// driver (a single point with a built-in `calculator`), so queued look-ahead
    /// tasks delay no evaluation.
    pub fn lookahead_is_exact(
        self,
        generators: &[GeneratorSettings],
        evaluator: &EvaluatorKind,
        calculator: &CalculatorSettings,
    ) -> bool {
        self == Algorithm::Rss
            && self.relaxation_model() == RelaxationModel::Calculator
            && generators.iter().all(|g| !g.kind.needs_parent())
            && matches!(evaluator, EvaluatorKind::SinglePoint)
            && calculator.single_points_in_driver()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::{CountSchedule, GeneratorKind};

    #[test]
    fn names_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
        }
        assert_eq!(Algorithm::from_name("gofee2"), None);
    }

    #[test]
    fn choose_all_for_bh_and_without_count() {
        let e = [Some(3.0), None, Some(1.0)];
        assert_eq!(Algorithm::Bh.choose(Some(1), &e), [0, 1, 2]);
        assert_eq!(Algorithm::Rss.choose(None, &e), [0, 1, 2]);
    }

    #[test]
    fn choose_lowest_model_energies_first() {
        let e = [Some(3.0), None, Some(1.0), Some(1.0), Some(-2.0)];
        assert_eq!(Algorithm::Rss.choose(Some(3), &e), [4, 2, 3]);
        assert_eq!(Algorithm::Rss.choose(Some(10), &e), [4, 2, 3, 0, 1]);
        assert_eq!(Algorithm::Rss.choose(Some(2), &[None, None, None]), [0, 1]);
        assert_eq!(Algorithm::Gofee.choose(Some(1), &e), [4, 2, 3, 0, 1]);
        assert_eq!(Algorithm::Gofee.choose(Some(1), &[None, None]), [0, 1]);
    }

    fn generator(kind: GeneratorKind) -> GeneratorSettings {
        GeneratorSettings {
            kind,
            count: CountSchedule::Fixed(1),
        }
    }

    #[test]
    fn samplers_and_lookahead() {
        let random = generator(GeneratorKind::Random {
            c1: 0.75,
            c2: 1.25,
            contiguous: true,
            attempts: 100,
        });
        let rattle = generator(GeneratorKind::Rattle {
            n_rattle: 3,
            amplitude: 3.0,
            c1: 0.75,
            c2: 1.25,
            attempts: 100,
        });
        let only_random = [random.clone()];
        let with_rattle = [random, rattle];
        assert_eq!(
            Algorithm::Rss.sampler(None, &only_random),
            SamplerNeed::Use(None)
        );
        assert_eq!(
            Algorithm::Rss.sampler(None, &with_rattle),
            SamplerNeed::Use(Some(SamplerSettings::Lowest))
        );
        assert!(matches!(
            Algorithm::Bh.sampler(None, &with_rattle),
            SamplerNeed::Required(_)
        ));
        let sp = EvaluatorKind::SinglePoint;
        let emt = CalculatorSettings::Emt;
        assert!(Algorithm::Rss.lookahead_is_exact(&only_random, &sp, &emt));
        assert!(!Algorithm::Rss.lookahead_is_exact(&with_rattle, &sp, &emt));
        assert!(!Algorithm::Bh.lookahead_is_exact(&only_random, &sp, &emt));
        // Single points of an external calculator run on the pool: look-ahead tasks
        // queued before them would delay them.
        let socket = CalculatorSettings::Socket(crate::socket::SocketSettings::new("client"));
        assert!(!Algorithm::Rss.lookahead_is_exact(&only_random, &sp, &socket));
        assert!(!Algorithm::Gofee.lookahead_is_exact(&only_random, &sp, &emt));
        assert_eq!(
            Algorithm::Gofee.sampler(None, &only_random),
            SamplerNeed::Use(Some(SamplerSettings::kmeans()))
        );
    }

    #[test]
    fn gofee_default_generators_follow_agox_config() {
        let g = Algorithm::Gofee.default_generators(12).expect("defaults");
        let counts = |i| g.iter().map(|g| g.count.at(i)).collect::<Vec<_>>();
        assert_eq!(counts(0), [10, 0]);
        assert_eq!(counts(3), [10, 0]);
        assert_eq!(counts(4), [2, 8]);
        assert!(matches!(
            g[1].kind,
            GeneratorKind::Rattle { n_rattle: 3, .. }
        ));
        assert!(Algorithm::Rss.default_generators(12).is_none());
    }
}
