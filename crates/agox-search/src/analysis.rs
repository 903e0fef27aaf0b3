//! What a finished, interrupted or running search found, read from its run directory:
//! the data behind `agox-coord analyze` (its table, its JSON and its plots).
//!
//! A run directory holds `db.db` (every evaluation, AGOX's schema), `run.json` (the
//! settings, hence the energy unit) and, once the run has ended, `summary.json`.
//! [`Run::read`] reads them without writing anything (see
//! [`Database::read_snapshot`]), so a run may be analysed while it is being written.
//!
//! From a run's evaluations in storage order (a row without a finite energy counts as
//! an evaluation but never as a best):
//!
//! * **best so far** against evaluations and against iterations ([`Run::best_by_evaluation`],
//!   [`Run::best_by_iteration`]): step curves, one point where the best improved plus
//!   one at the end;
//! * the **first hit** of an energy ([`Run::first_at_or_below`]): the first evaluation
//!   (1-based, in storage order) whose energy is at or below it, and its iteration;
//!   "first within a tolerance of the best" is the first hit of `best + tolerance`;
//! * over several runs, the **success fraction** ([`success_curve`]): the fraction of
//!   runs whose best so far is at or below a threshold, against evaluations; a run
//!   that stopped before reaching it counts as a failure at every later evaluation.
//!
//! [`Report`] gathers all of it for a set of runs; it serializes to the JSON that
//! `agox-coord analyze --json` prints.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::db::{Database, DbError, EnergyRecord};
use crate::search::{DB_FILE, RUN_FILE, SUMMARY_FILE};

/// Default tolerance on "within the best" and on the default success threshold,
/// in the run's energy unit.
pub const DEFAULT_TOLERANCE: f64 = 0.01;

/// Errors reading a run directory or combining runs.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// The path does not exist.
    #[error("`{0}` does not exist")]
    NotFound(PathBuf),
    /// The path is not a directory.
    #[error("`{0}` is not a run directory (not a directory)")]
    NotADirectory(PathBuf),
    /// The directory has no database.
    #[error("`{0}` is not a run directory: it holds no `db.db`")]
    NoDatabase(PathBuf),
    /// The database cannot be read (another schema, not SQLite, corrupt...).
    #[error("reading `{path}`")]
    Database {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: DbError,
    },
    /// A JSON file of the run cannot be read or parsed.
    #[error("reading `{path}`")]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file of the run lacks a key, or holds a value of another type.
    #[error("`{path}`: key `{key}`: expected {expected}")]
    Key {
        /// The file.
        path: PathBuf,
        /// The key (dotted path).
        key: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// Runs whose energies are in different units cannot be compared.
    #[error("`{first}` has energies in {first_unit}, `{other}` in {other_unit}: analyse them separately")]
    MixedUnits {
        /// A run.
        first: PathBuf,
        /// Its unit.
        first_unit: EnergyUnit,
        /// A run with another unit.
        other: PathBuf,
        /// Its unit.
        other_unit: EnergyUnit,
    },
}

/// The unit of a run's energies: the calculator's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EnergyUnit {
    /// Electronvolts: every physical calculator (EMT, ...), and AGOX's own runs.
    #[serde(rename = "eV")]
    Ev,
    /// Lennard-Jones runs: the unit of the script's `epsilon` (multiples of ε for the
    /// customary `epsilon = 1`).
    #[serde(rename = "ε")]
    Epsilon,
}

impl EnergyUnit {
    /// The unit of a calculator `kind` as the script names it.
    pub fn of_calculator(kind: &str) -> EnergyUnit {
        if kind == "lj" {
            EnergyUnit::Epsilon
        } else {
            EnergyUnit::Ev
        }
    }
}

impl fmt::Display for EnergyUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EnergyUnit::Ev => "eV",
            EnergyUnit::Epsilon => "ε",
        })
    }
}

/// How far a run got, as its files tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// `summary.json` describes the database as it is, and every planned iteration ran.
    Complete,
    /// `summary.json` describes the database as it is, but the run stopped early
    /// (Ctrl-C, or an error that ended it).
    Stopped,
    /// No `summary.json`, or one written before the database grew further: the run is
    /// still going, or was killed before it could write its summary.
    Partial,
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunStatus::Complete => "complete",
            RunStatus::Stopped => "stopped",
            RunStatus::Partial => "partial",
        })
    }
}

/// What `summary.json` says that the analysis uses.
#[derive(Debug, Clone, PartialEq)]
struct SummaryFacts {
    evaluations: u64,
    interrupted: bool,
    iterations_done: u64,
    iterations_planned: u64,
    calculator_calls: Option<u64>,
}

/// One run directory, read.
#[derive(Debug, Clone)]
pub struct Run {
    /// The directory as given.
    pub dir: PathBuf,
    /// The unit of its energies.
    pub unit: EnergyUnit,
    /// Every stored evaluation, in storage order.
    pub evaluations: Vec<EnergyRecord>,
    summary: Option<SummaryFacts>,
}

/// The first evaluation at or below an energy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Hit {
    /// 1-based position in storage order: the number of evaluations done by then.
    pub evaluation: u64,
    /// Its iteration.
    pub iteration: u64,
    /// Its database id.
    pub id: i64,
    /// Its energy.
    pub energy: f64,
}

fn read_json(path: &Path) -> Result<Option<Value>, AnalysisError> {
    let json_error = |source| AnalysisError::Json {
        path: path.to_path_buf(),
        source,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(json_error(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| json_error(e.into()))
}

fn key<'v>(value: &'v Value, dotted: &str) -> Option<&'v Value> {
    dotted.split('.').try_fold(value, |v, k| v.get(k))
}

impl Run {
    /// Reads the run in `dir`: its database (read-only, also while the run writes it),
    /// `run.json` for the unit (absent: eV, as for AGOX's own runs) and `summary.json`
    /// if present. Errors name the path and what is wrong with it.
    pub fn read(dir: impl AsRef<Path>) -> Result<Run, AnalysisError> {
        let dir = dir.as_ref();
        match std::fs::metadata(dir) {
            Err(_) => return Err(AnalysisError::NotFound(dir.to_path_buf())),
            Ok(m) if !m.is_dir() => return Err(AnalysisError::NotADirectory(dir.to_path_buf())),
            Ok(_) => {}
        }
        let db_path = dir.join(DB_FILE);
        if !db_path.is_file() {
            return Err(AnalysisError::NoDatabase(dir.to_path_buf()));
        }
        let evaluations =
            Database::read_snapshot(&db_path, Database::energy_records).map_err(|source| {
                AnalysisError::Database {
                    path: db_path.clone(),
                    source,
                }
            })?;
        Ok(Run {
            dir: dir.to_path_buf(),
            unit: read_unit(&dir.join(RUN_FILE))?,
            evaluations,
            summary: read_summary(&dir.join(SUMMARY_FILE))?,
        })
    }

    /// A run from records already in hand (for tests and custom drivers): energies in
    /// `unit`, no summary.
    pub fn from_records(
        dir: impl Into<PathBuf>,
        unit: EnergyUnit,
        evaluations: Vec<EnergyRecord>,
    ) -> Run {
        Run {
            dir: dir.into(),
            unit,
            evaluations,
            summary: None,
        }
    }

    /// The summary, when it describes the database as it is now (a summary written
    /// before a resumed run stored more is stale).
    fn current_summary(&self) -> Option<&SummaryFacts> {
        self.summary
            .as_ref()
            .filter(|s| s.evaluations == self.evaluations.len() as u64)
    }

    /// How far the run got.
    pub fn status(&self) -> RunStatus {
        match self.current_summary() {
            None => RunStatus::Partial,
            Some(s) if s.interrupted || s.iterations_done < s.iterations_planned => {
                RunStatus::Stopped
            }
            Some(_) => RunStatus::Complete,
        }
    }

    /// Calculator calls as the run's current `summary.json` reports them (`None`: no
    /// summary, a stale one, or one without the count).
    pub fn calculator_calls(&self) -> Option<u64> {
        self.current_summary().and_then(|s| s.calculator_calls)
    }

    /// Search time up to the last stored evaluation (s): its `time_stamp`, which runs
    /// on over resumed sessions.
    pub fn wall_time_s(&self) -> Option<f64> {
        self.evaluations
            .iter()
            .filter_map(|r| r.time_stamp)
            .reduce(f64::max)
    }

    /// The lowest-energy evaluation (the earliest on ties), if any has an energy.
    pub fn best(&self) -> Option<Hit> {
        let mut best: Option<Hit> = None;
        for (k, r) in self.evaluations.iter().enumerate() {
            let Some(e) = energy_of(r) else { continue };
            if best.is_none_or(|b| e < b.energy) {
                best = Some(hit(k, r, e));
            }
        }
        best
    }

    /// The first evaluation whose energy is at or below `energy`.
    pub fn first_at_or_below(&self, energy: f64) -> Option<Hit> {
        self.evaluations
            .iter()
            .enumerate()
            .find_map(|(k, r)| energy_of(r).filter(|&e| e <= energy).map(|e| hit(k, r, e)))
    }

    /// The first evaluation within `tolerance` of the run's best.
    pub fn first_within(&self, tolerance: f64) -> Option<Hit> {
        self.first_at_or_below(self.best()?.energy + tolerance)
    }

    /// Best energy so far against the number of evaluations (1-based, storage order),
    /// as a step curve: `(n, best)` where the best improved, and at the last evaluation.
    pub fn best_by_evaluation(&self) -> Vec<(u64, f64)> {
        steps(
            self.evaluations
                .iter()
                .enumerate()
                .map(|(k, r)| (k as u64 + 1, energy_of(r))),
        )
    }

    /// Best energy so far against the iteration, as a step curve: `(iteration, best
    /// after it)` where the best improved, and at the last iteration.
    pub fn best_by_iteration(&self) -> Vec<(u64, f64)> {
        let mut per_iteration: BTreeMap<u64, Option<f64>> = BTreeMap::new();
        for r in &self.evaluations {
            let slot = per_iteration.entry(r.iteration).or_default();
            if let Some(e) = energy_of(r) {
                *slot = Some(slot.map_or(e, |s| s.min(e)));
            }
        }
        steps(per_iteration)
    }
}

/// A row's energy, if it has a finite one (a NULL, or an infinity some writers store
/// for a failed evaluation, counts as an evaluation without an energy).
fn energy_of(r: &EnergyRecord) -> Option<f64> {
    r.energy.filter(|e| e.is_finite())
}

fn hit(k: usize, r: &EnergyRecord, energy: f64) -> Hit {
    Hit {
        evaluation: k as u64 + 1,
        iteration: r.iteration,
        id: r.id,
        energy,
    }
}

/// The running minimum of `(x, value)` in order, as a step curve: the points where it
/// fell, and the last x (with the final minimum) when no fall happened there.
fn steps(points: impl IntoIterator<Item = (u64, Option<f64>)>) -> Vec<(u64, f64)> {
    let mut out: Vec<(u64, f64)> = Vec::new();
    let mut last_x = None;
    for (x, value) in points {
        last_x = Some(x);
        let Some(e) = value else { continue };
        if out.last().is_none_or(|&(_, best)| e < best) {
            out.push((x, e));
        }
    }
    if let (Some(x), Some(&(lx, best))) = (last_x, out.last()) {
        if lx != x {
            out.push((x, best));
        }
    }
    out
}

fn read_unit(path: &Path) -> Result<EnergyUnit, AnalysisError> {
    let Some(record) = read_json(path)? else {
        return Ok(EnergyUnit::Ev);
    };
    const KEY: &str = "settings.calculator.kind";
    key(&record, KEY)
        .and_then(Value::as_str)
        .map(EnergyUnit::of_calculator)
        .ok_or_else(|| AnalysisError::Key {
            path: path.to_path_buf(),
            key: KEY,
            expected: "the calculator's kind (a string)",
        })
}

fn read_summary(path: &Path) -> Result<Option<SummaryFacts>, AnalysisError> {
    let Some(summary) = read_json(path)? else {
        return Ok(None);
    };
    let bad = |key, expected| AnalysisError::Key {
        path: path.to_path_buf(),
        key,
        expected,
    };
    let count = |k: &'static str| {
        summary
            .get(k)
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(k, "a non-negative integer"))
    };
    let calculator_calls = match summary.get("calculator_calls") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| bad("calculator_calls", "a non-negative integer"))?,
        ),
    };
    Ok(Some(SummaryFacts {
        evaluations: count("evaluations")?,
        interrupted: summary
            .get("interrupted")
            .and_then(Value::as_bool)
            .ok_or_else(|| bad("interrupted", "true or false"))?,
        iterations_done: count("iterations_done")?,
        iterations_planned: count("iterations_planned")?,
        calculator_calls,
    }))
}

/// The fraction of `runs` whose best so far is at or below `threshold`, against
/// evaluations: a step curve starting at `(0, 0)`, with a point at each evaluation
/// count where some run first reached it, and one at the longest run's end.
pub fn success_curve(runs: &[Run], threshold: f64) -> Vec<(u64, f64)> {
    let n = runs.len();
    let mut hits: Vec<u64> = runs
        .iter()
        .filter_map(|r| r.first_at_or_below(threshold))
        .map(|h| h.evaluation)
        .collect();
    hits.sort_unstable();
    let mut out = vec![(0, 0.0)];
    for (k, &x) in hits.iter().enumerate() {
        let fraction = (k + 1) as f64 / n as f64;
        match out.last_mut() {
            Some(last) if last.0 == x => last.1 = fraction,
            _ => out.push((x, fraction)),
        }
    }
    let end = runs
        .iter()
        .map(|r| r.evaluations.len() as u64)
        .max()
        .unwrap_or(0);
    if let Some(&(x, fraction)) = out.last() {
        if end > x {
            out.push((end, fraction));
        }
    }
    out
}

/// One run's line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The directory as given.
    pub dir: PathBuf,
    /// Its name in tables and legends: the directory's name, or the whole path when
    /// two runs share a name.
    pub label: String,
    /// How far it got.
    pub status: RunStatus,
    /// Stored evaluations.
    pub evaluations: u64,
    /// The lowest energy and where it was found.
    pub best: Option<Hit>,
    /// The first evaluation within the tolerance of this run's best.
    pub first_within_tolerance: Option<Hit>,
    /// The first evaluation at or below the report's threshold.
    pub threshold_hit: Option<Hit>,
    /// Calculator calls (from a current `summary.json` that reports them).
    pub calculator_calls: Option<u64>,
    /// Search time to the last stored evaluation (s).
    pub wall_time_s: Option<f64>,
    /// Best so far against evaluations (step curve).
    pub best_by_evaluation: Vec<(u64, f64)>,
    /// Best so far against iterations (step curve).
    pub best_by_iteration: Vec<(u64, f64)>,
}

/// Totals over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct Aggregate {
    /// Number of runs.
    pub runs: usize,
    /// The lowest best over the runs.
    pub best_energy: Option<f64>,
    /// Label of the run that found it (the first such run on ties).
    pub best_run: Option<String>,
    /// Evaluations over all runs.
    pub evaluations: u64,
    /// Calculator calls over all runs (`None` unless every run reports them).
    pub calculator_calls: Option<u64>,
    /// Wall time summed over the runs (s; `None` unless every run has time stamps).
    pub wall_time_s: Option<f64>,
    /// Runs that reached the threshold.
    pub successes: usize,
    /// Median number of evaluations those runs needed to reach it.
    pub median_evaluations_to_threshold: Option<f64>,
}

/// Everything `agox-coord analyze` shows about a set of runs.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The unit of every energy in the report.
    pub unit: EnergyUnit,
    /// "Within the best" means within this much of it.
    pub tolerance: f64,
    /// The success threshold: given, or the lowest best over the runs + tolerance
    /// (`None` when no run has an energy yet).
    pub threshold: Option<f64>,
    /// One entry per run, in the order given.
    pub runs: Vec<RunReport>,
    /// Totals.
    pub aggregate: Aggregate,
    /// Fraction of runs at or below the threshold against evaluations (step curve).
    pub success: Vec<(u64, f64)>,
}

impl Report {
    /// The report on `runs` (all in one energy unit) with a `tolerance` and an
    /// optional success `threshold` (default: the lowest best + `tolerance`).
    pub fn new(
        runs: &[Run],
        tolerance: f64,
        threshold: Option<f64>,
    ) -> Result<Report, AnalysisError> {
        let unit = runs.first().map_or(EnergyUnit::Ev, |r| r.unit);
        if let (Some(first), Some(other)) = (runs.first(), runs.iter().find(|r| r.unit != unit)) {
            return Err(AnalysisError::MixedUnits {
                first: first.dir.clone(),
                first_unit: first.unit,
                other: other.dir.clone(),
                other_unit: other.unit,
            });
        }
        let bests: Vec<Option<Hit>> = runs.iter().map(Run::best).collect();
        let lowest = bests
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.map(|b| (i, b.energy)))
            .reduce(|a, b| if b.1 < a.1 { b } else { a });
        let threshold = threshold.or(lowest.map(|(_, e)| e + tolerance));
        let labels = labels(runs);
        let reports: Vec<RunReport> = runs
            .iter()
            .zip(&bests)
            .zip(&labels)
            .map(|((run, best), label)| RunReport {
                dir: run.dir.clone(),
                label: label.clone(),
                status: run.status(),
                evaluations: run.evaluations.len() as u64,
                best: *best,
                first_within_tolerance: run.first_within(tolerance),
                threshold_hit: threshold.and_then(|t| run.first_at_or_below(t)),
                calculator_calls: run.calculator_calls(),
                wall_time_s: run.wall_time_s(),
                best_by_evaluation: run.best_by_evaluation(),
                best_by_iteration: run.best_by_iteration(),
            })
            .collect();
        let mut to_threshold: Vec<u64> = reports
            .iter()
            .filter_map(|r| r.threshold_hit.map(|h| h.evaluation))
            .collect();
        to_threshold.sort_unstable();
        let aggregate = Aggregate {
            runs: runs.len(),
            best_energy: lowest.map(|(_, e)| e),
            best_run: lowest.map(|(i, _)| labels[i].clone()),
            evaluations: reports.iter().map(|r| r.evaluations).sum(),
            calculator_calls: reports.iter().map(|r| r.calculator_calls).sum(),
            wall_time_s: reports.iter().map(|r| r.wall_time_s).sum(),
            successes: to_threshold.len(),
            median_evaluations_to_threshold: median(&to_threshold),
        };
        Ok(Report {
            unit,
            tolerance,
            threshold,
            success: threshold.map_or_else(Vec::new, |t| success_curve(runs, t)),
            runs: reports,
            aggregate,
        })
    }
}

fn median(sorted: &[u64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2] as f64),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0),
    }
}

/// Each run's directory name, or its whole path where two runs share a name.
fn labels(runs: &[Run]) -> Vec<String> {
    let name = |r: &Run| {
        r.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| r.dir.display().to_string())
    };
    let names: Vec<String> = runs.iter().map(name).collect();
    names
        .iter()
        .zip(runs)
        .map(|(n, r)| {
            if names.iter().filter(|m| *m == n).count() > 1 {
                r.dir.display().to_string()
            } else {
                n.clone()
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn records(rows: &[(u64, Option<f64>)]) -> Vec<EnergyRecord> {
        rows.iter()
            .enumerate()
            .map(|(k, &(iteration, energy))| EnergyRecord {
                id: k as i64 + 1,
                iteration,
                energy,
                time_stamp: Some(k as f64 * 0.5),
            })
            .collect()
    }

    fn run(name: &str, rows: &[(u64, Option<f64>)]) -> Run {
        Run::from_records(name, EnergyUnit::Ev, records(rows))
    }

    #[test]
    fn best_so_far_curves_are_running_minima_as_steps() {
        let r = run(
            "a",
            &[
                (0, Some(-1.0)),
                (0, Some(-3.0)),
                (1, Some(-2.0)),
                (1, None),
                (2, Some(-3.5)),
                (3, Some(-3.5)),
                (4, Some(0.0)),
            ],
        );
        assert_eq!(
            r.best_by_evaluation(),
            [(1, -1.0), (2, -3.0), (5, -3.5), (7, -3.5)]
        );
        assert_eq!(r.best_by_iteration(), [(0, -3.0), (2, -3.5), (4, -3.5)]);
        // The earliest of equal energies is the best.
        assert_eq!(r.best().unwrap().evaluation, 5);
        assert_eq!(r.wall_time_s(), Some(3.0));
    }

    proptest::proptest! {
        /// The step curves, looked up at any x, are the brute-force running minima; the
        /// rows' iterations may come in any order, and some energies may be missing.
        #[test]
        fn step_curves_are_running_minima(
            rows in proptest::collection::vec(
                (0u64..12, proptest::option::weighted(0.9, -10.0f64..0.0)),
                0..120,
            )
        ) {
            let r = run("a", &rows);
            let by_evaluation = r.best_by_evaluation();
            let mut best: Option<f64> = None;
            for (k, &(_, e)) in rows.iter().enumerate() {
                if let Some(e) = e {
                    best = Some(best.map_or(e, |b| b.min(e)));
                }
                let n = k as u64 + 1;
                let stepped = by_evaluation.iter().rev().find(|p| p.0 <= n).map(|p| p.1);
                proptest::prop_assert_eq!(stepped, best, "evaluation {}", n);
            }
            if best.is_some() {
                proptest::prop_assert_eq!(by_evaluation.last().map(|p| p.0), Some(rows.len() as u64));
            }
            let by_iteration = r.best_by_iteration();
            for it in 0..12u64 {
                let brute = rows
                    .iter()
                    .filter(|(i, _)| *i <= it)
                    .filter_map(|(_, e)| *e)
                    .reduce(f64::min);
                let stepped = by_iteration.iter().rev().find(|p| p.0 <= it).map(|p| p.1);
                proptest::prop_assert_eq!(stepped, brute, "iteration {}", it);
            }
        }
    }

    #[test]
    fn first_hits_count_evaluations_from_one() {
        let r = run(
            "a",
            &[
                (0, Some(-1.0)),
                (1, Some(-1.995)),
                (2, Some(-2.0)),
                (3, None),
            ],
        );
        let h = r.first_within(0.01).unwrap();
        assert_eq!((h.evaluation, h.iteration, h.id), (2, 1, 2));
        assert_eq!(r.first_within(0.0).unwrap().evaluation, 3);
        assert_eq!(r.first_at_or_below(-5.0), None);
        assert_eq!(run("empty", &[]).best(), None);
        assert_eq!(run("empty", &[]).best_by_evaluation(), []);
        // Infinite energies are no energies.
        let r = run("inf", &[(0, Some(f64::NEG_INFINITY)), (0, Some(-1.0))]);
        assert_eq!(r.best().unwrap().evaluation, 2);
        assert_eq!(r.best_by_evaluation(), [(2, -1.0)]);
    }

    #[test]
    fn success_curve_counts_runs_at_or_below_the_threshold() {
        let runs = [
            run("a", &[(0, Some(-1.0)), (1, Some(-2.0)), (2, Some(-2.0))]),
            run("b", &[(0, Some(-2.0))]),
            run(
                "c",
                &[
                    (0, Some(-1.0)),
                    (1, Some(-1.5)),
                    (2, Some(-1.9)),
                    (3, Some(-1.9)),
                ],
            ),
            run("d", &[(0, Some(-0.5)), (1, Some(-2.5))]),
        ];
        let curve = success_curve(&runs, -2.0);
        assert_eq!(curve, [(0, 0.0), (1, 0.25), (2, 0.75), (4, 0.75)]);
        assert_eq!(success_curve(&runs, -10.0), [(0, 0.0), (4, 0.0)]);
    }

    #[test]
    fn report_defaults_the_threshold_and_aggregates() {
        let runs = [
            run("x/a", &[(0, Some(-1.0)), (1, Some(-2.0))]),
            run(
                "y/a",
                &[(0, Some(-2.005)), (1, Some(-1.0)), (2, Some(-1.0))],
            ),
            run("b", &[]),
        ];
        let report = Report::new(&runs, 0.01, None).unwrap();
        assert_eq!(report.threshold, Some(-2.005 + 0.01));
        let labels: Vec<_> = report.runs.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["x/a", "y/a", "b"]);
        let a = &report.aggregate;
        assert_eq!(a.best_energy, Some(-2.005));
        assert_eq!(a.best_run.as_deref(), Some("y/a"));
        assert_eq!(a.evaluations, 5);
        assert_eq!(a.successes, 2);
        assert_eq!(a.median_evaluations_to_threshold, Some(1.5));
        assert_eq!(a.calculator_calls, None);
        // `b` has no time stamps, so there is no total.
        assert_eq!(a.wall_time_s, None);
        assert_eq!(report.runs[2].status, RunStatus::Partial);
        let fixed = Report::new(&runs, 0.01, Some(-1.5)).unwrap();
        assert_eq!(fixed.aggregate.successes, 2);
        assert_eq!(
            fixed.success,
            [(0, 0.0), (1, 1.0 / 3.0), (2, 2.0 / 3.0), (3, 2.0 / 3.0)]
        );
    }

    /// A database AGOX itself wrote, read as AGOX's own analysis reads it.
    #[test]
    fn an_agox_written_run_reads_as_agox_s_analysis_reads_it() {
        let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
        let reference: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{data}/agox_analysis.json")).unwrap(),
        )
        .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("agox-run");
        std::fs::create_dir(&dir).unwrap();
        std::fs::copy(format!("{data}/agox_written.db"), dir.join(DB_FILE)).unwrap();
        let run = Run::read(&dir).unwrap();
        // Nothing was created beside the file (AGOX writes rollback-journal files).
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert_eq!(run.unit, EnergyUnit::Ev);
        assert_eq!(run.status(), RunStatus::Partial);
        assert_eq!(run.evaluations.len() as u64, reference["candidates"]);
        assert_eq!(run.best().unwrap().energy, reference["min_energy"]);
        for case in reference["thresholds"].as_array().unwrap() {
            let threshold = case["threshold"].as_f64().unwrap();
            let hit = run.first_at_or_below(threshold);
            // AGOX counts candidates from 0, we count evaluations from 1.
            let index = case["first_index"].as_u64();
            assert_eq!(hit.map(|h| h.evaluation - 1), index, "{threshold}");
            let iteration = case["first_iteration"].as_u64();
            assert_eq!(hit.map(|h| h.iteration), iteration, "{threshold}");
        }
    }

    #[test]
    fn runs_in_different_units_are_refused() {
        let a = run("a", &[(0, Some(-1.0))]);
        let b = Run::from_records("b", EnergyUnit::Epsilon, records(&[(0, Some(-3.0))]));
        let e = Report::new(&[a, b], 0.01, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`a` has energies in eV, `b` in ε: analyse them separately"
        );
    }
}
