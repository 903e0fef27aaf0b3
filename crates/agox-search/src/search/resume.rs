//! `--resume`: continue a run from its database.
//!
//! The database holds every evaluated structure with its iteration. Resuming
//! replays them **in storage order, iteration by iteration**, through the sampler,
//! exactly as the loop offered them (same candidates, same energies, the same
//! per-iteration Metropolis random stream), so the sampler ends in the state it had
//! after the last committed iteration. The run then continues at the first
//! iteration that is not complete, with the counters stored with the last complete
//! one ([`super::record`]); an iteration stopped part-way stored nothing and is
//! redone whole. Since every random choice of an iteration derives from (run seed,
//! iteration, ...) and never from the pool's call counter, the continued run gives
//! the energies an uninterrupted run would have given.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::outputs::{RunRecord, RUN_FILE};
use super::record::RunCounters;
use super::SearchError;
use crate::candidate::Candidate;
use crate::db::Progress;
use crate::script::Script;

/// What the database says about a run so far.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Every stored candidate, in id order, grouped by iteration (ascending).
    pub iterations: BTreeMap<u64, Vec<Candidate>>,
    /// Number of stored candidates.
    pub evaluations: u64,
    /// The lowest-energy candidate (the earliest on ties).
    pub best: Option<Candidate>,
    /// Largest `time_stamp` stored (s), so a resumed run's time stamps go on from it.
    pub last_time_stamp: f64,
    /// Iterations complete, as the database records them (`None`: it records no
    /// progress, and the iteration after the last stored one is next).
    pub complete: Option<u64>,
    /// The run's counters after them, as recorded.
    pub counters: Option<RunCounters>,
    /// The run's calculator calls when its last candidate was stored.
    pub calculator_calls: u64,
    /// The run's optimizer steps in the surrogate when its last candidate was stored.
    pub surrogate_steps: u64,
}

impl History {
    /// Groups `stored` (id order) by iteration and finds the best.
    pub fn from_stored(stored: Vec<Candidate>) -> Self {
        let mut h = History {
            evaluations: stored.len() as u64,
            ..History::default()
        };
        for c in stored {
            if let Some(e) = c.energy.filter(|e| e.is_finite()) {
                if better(e, h.best.as_ref()) {
                    h.best = Some(c.clone());
                }
            }
            if let Some(t) = c.meta.time_stamp {
                h.last_time_stamp = h.last_time_stamp.max(t);
            }
            h.calculator_calls = h.calculator_calls.max(c.meta.calculator_calls.unwrap_or(0));
            h.surrogate_steps = h.surrogate_steps.max(c.meta.surrogate_steps.unwrap_or(0));
            h.iterations.entry(c.meta.iteration).or_default().push(c);
        }
        h
    }

    /// Adds the database's recorded progress, checking that no structure is stored
    /// for an iteration it does not count as complete.
    pub fn with_progress(mut self, progress: Option<Progress>) -> Result<Self, SearchError> {
        let Some(p) = progress else {
            return Ok(self);
        };
        if let Some(&last) = self.iterations.keys().next_back() {
            if last >= p.next_iteration {
                return Err(SearchError::Resume(format!(
                    "the database holds structures of iteration {last}, but records only \
                     {} complete iteration(s)",
                    p.next_iteration
                )));
            }
        }
        let counters = serde_json::from_str(&p.counters).map_err(|e| {
            SearchError::Resume(format!("the database's counters cannot be read: {e}"))
        })?;
        self.complete = Some(p.next_iteration);
        self.counters = Some(counters);
        Ok(self)
    }

    /// The iteration to continue at: the first that is not complete (for a database
    /// without recorded progress, one past the last stored iteration; 0 if none).
    pub fn next_iteration(&self) -> u64 {
        self.complete
            .unwrap_or_else(|| self.iterations.keys().next_back().map_or(0, |&i| i + 1))
    }
}

/// True when energy `e` improves on `best` (no best yet, or strictly lower).
pub(crate) fn better(e: f64, best: Option<&Candidate>) -> bool {
    match best.and_then(|b| b.energy) {
        Some(b) => e < b,
        None => true,
    }
}

/// The settings a resumed run continues with: those recorded in `dir`'s `run.json`
/// (with the run's seed), never the script file's, so a script edited since, a
/// script whose seed was overridden on the command line, or no script at all resumes
/// the same search. `given` (a script file naming the same search) may only confirm
/// them; its `iterations` become the new total. The output directory is `dir`.
pub fn resume_settings(dir: &Path, given: Option<&Script>) -> Result<Script, SearchError> {
    let record = RunRecord::read(dir)?.ok_or_else(|| {
        SearchError::Resume(format!(
            "{} has no {RUN_FILE} recording the run's settings and seed",
            dir.display()
        ))
    })?;
    let mut script: Script = serde_json::from_value(record.settings.clone()).map_err(|e| {
        SearchError::Resume(format!(
            "{}: the recorded settings cannot be read: {e}",
            dir.join(RUN_FILE).display()
        ))
    })?;
    if let Some(given) = given {
        // Compared with the recorded settings as this version reads them (a key
        // added since, such as `model`, takes its default in both).
        let recorded = serde_json::to_value(&script)
            .map_err(|e| SearchError::Resume(format!("{}: {e}", dir.join(RUN_FILE).display())))?;
        check_same_search(given, &recorded)?;
        script.search.iterations = given.search.iterations;
        // How faults are handled may change: it changes no result of the
        // iterations done.
        script.search.on_task_failure = given.search.on_task_failure;
        script.pool = given.pool.clone();
    }
    script.search.seed = Some(record.seed);
    script.search.output = dir.to_path_buf();
    Ok(script)
}

/// The parts of the resolved settings that must not change between a run and its
/// resumption (everything but iterations, workers, output, seed, `[pool]` and
/// `on_task_failure`).
const FROZEN: [&str; 8] = [
    "environment",
    "calculator",
    "generators",
    "sampler",
    "relax",
    "evaluator",
    "model",
    "acquisition",
];

/// Checks that `script` describes the same search as the recorded `settings`
/// (`Script::to_json` of the original run): same algorithm, environment,
/// calculator, generators, sampler, relaxation, evaluator, model and acquisition.
pub fn check_same_search(script: &Script, settings: &Value) -> Result<(), SearchError> {
    let now: Value =
        serde_json::from_str(&script.to_json()).map_err(|e| SearchError::Resume(e.to_string()))?;
    let mut changed: Vec<String> = FROZEN
        .iter()
        .filter(|k| now.get(**k) != settings.get(**k))
        .map(|k| k.to_string())
        .collect();
    let algo = |v: &Value| v.get("search").and_then(|s| s.get("algorithm")).cloned();
    if algo(&now) != algo(settings) {
        changed.insert(0, "search.algorithm".into());
    }
    if changed.is_empty() {
        Ok(())
    } else {
        Err(SearchError::Resume(format!(
            "the script describes a different search than the one in the output directory \
             (changed: {}); only iterations, workers, output, `on_task_failure` and `[pool]` \
             may change on --resume",
            changed.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agox_atoms::Atoms;

    fn cand(iteration: u64, energy: f64, t: f64) -> Candidate {
        let atoms = Atoms::new(vec![18], vec![[0.0; 3]]).expect("atoms");
        let mut c = Candidate::new(atoms, iteration, "random", 0);
        c.energy = Some(energy);
        c.meta.time_stamp = Some(t);
        c
    }

    #[test]
    fn history_groups_and_finds_best() {
        let h = History::from_stored(vec![
            cand(0, -1.0, 0.1),
            cand(0, -3.0, 0.2),
            cand(1, -3.0, 0.3),
            cand(3, -2.0, 0.25),
        ]);
        assert_eq!(h.evaluations, 4);
        assert_eq!(h.next_iteration(), 4);
        assert_eq!(h.iterations[&0].len(), 2);
        let best = h.best.expect("best");
        assert_eq!((best.meta.iteration, best.energy), (0, Some(-3.0)));
        assert_eq!(h.last_time_stamp, 0.3);
        assert_eq!(History::from_stored(Vec::new()).next_iteration(), 0);
    }
}
