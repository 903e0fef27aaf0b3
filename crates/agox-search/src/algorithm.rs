//! What distinguishes the search algorithms, in one place.
//!
//! The loop ([`crate::search`]), the evaluator and the script checker ask an
//! [`Algorithm`] instead of matching on it themselves:
//!
//! | question | `rss` | `bh` |
//! | --- | --- | --- |
//! | sampler ([`Algorithm::sampler`]) | `lowest` when a generator needs parents, else none | required (`[sampler]`) |
//! | model candidates relax in ([`Algorithm::relaxation_model`]) | the calculator | the calculator |
//! | which candidates are evaluated ([`Algorithm::choose`]) | all, or the `[evaluator] count` lowest model energies | all |
//! | next iteration's candidates may start early ([`Algorithm::lookahead_is_exact`]) | when no generator needs a parent and evaluation is a single point in the driver | never |
//!
//! In every algorithm the evaluator calculates in the real calculator, the iteration's
//! evaluations are stored in one transaction and then offered to the sampler.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::script::{CalculatorSettings, EvaluatorKind, GeneratorSettings, SamplerSettings};

/// The search algorithm (`[search] algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Random structure search: generate, relax, evaluate all (or the lowest few).
    Rss,
    /// Basin hopping: modify the current structure, relax, Metropolis accept.
    Bh,
}

/// The model a candidate is relaxed in on the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelaxationModel {
    /// The script's calculator (the real potential).
    Calculator,
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
    pub const ALL: [Algorithm; 2] = [Algorithm::Rss, Algorithm::Bh];

    /// The name used in scripts and summaries (`rss`, `bh`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rss => "rss",
            Algorithm::Bh => "bh",
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
        }
    }

    /// The model candidates are relaxed in (`[relax]`).
    pub fn relaxation_model(self) -> RelaxationModel {
        match self {
            Algorithm::Rss | Algorithm::Bh => RelaxationModel::Calculator,
        }
    }

    /// Indices of the candidates to evaluate, in evaluation order, given each
    /// candidate's energy in the relaxation model (`None`: not relaxed) and
    /// `[evaluator] count`.
    ///
    /// `bh`, or `count == None`: all, in generation order. `rss` with a count: the
    /// `count` lowest model energies, lowest first (ties and candidates without a
    /// model energy keep generation order, the latter after every candidate that
    /// has one).
    pub fn choose(self, count: Option<usize>, model_energies: &[Option<f64>]) -> Vec<usize> {
        let n = model_energies.len();
        let count = match (self, count) {
            (Algorithm::Bh, _) | (_, None) => return (0..n).collect(),
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
    }
}
