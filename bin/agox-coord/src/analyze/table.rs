//! The table `agox-coord analyze` prints: one line per run, a total line for several
//! runs, and the success count.

use std::fmt::Write;

use agox_search::analysis::{Report, RunStatus};

/// Columns aligned left (the others are numbers, aligned right).
const LEFT: [bool; 8] = [true, true, false, false, false, false, false, false];

/// An energy as the table and the plot's legend print it.
pub fn energy(e: f64) -> String {
    format!("{e:.6}")
}

/// A duration in seconds, in the unit that keeps it short.
pub fn duration(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.2} h", s / 3600.0)
    }
}

fn or_dash<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or_else(|| "-".to_string(), show)
}

/// The table for `report`; `threshold_given`: the user chose the success threshold
/// (then the success line is printed for a single run too).
pub fn render(report: &Report, threshold_given: bool) -> String {
    let unit = report.unit;
    let header: [String; 8] = [
        "run".into(),
        "status".into(),
        format!("best ({unit})"),
        "iteration".into(),
        "evaluation".into(),
        "evaluations".into(),
        "calculator calls".into(),
        "wall time".into(),
    ];
    let mut rows: Vec<[String; 8]> = vec![header];
    for r in &report.runs {
        let first = r.first_within_tolerance;
        rows.push([
            r.label.clone(),
            r.status.to_string(),
            or_dash(r.best, |b| energy(b.energy)),
            or_dash(first, |h| h.iteration.to_string()),
            or_dash(first, |h| h.evaluation.to_string()),
            r.evaluations.to_string(),
            or_dash(r.calculator_calls, |c| c.to_string()),
            or_dash(r.wall_time_s, duration),
        ]);
    }
    let a = &report.aggregate;
    let several = report.runs.len() > 1;
    if several {
        rows.push([
            format!("all {} runs", a.runs),
            String::new(),
            or_dash(a.best_energy, energy),
            String::new(),
            String::new(),
            a.evaluations.to_string(),
            or_dash(a.calculator_calls, |c| c.to_string()),
            or_dash(a.wall_time_s, duration),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }

    let mut out = String::new();
    // "first within" spans the iteration and evaluation columns.
    let span = widths[3] + 2 + widths[4];
    let title = format!("first within {} {unit}", report.tolerance);
    let indent = widths[..3].iter().map(|w| w + 2).sum::<usize>();
    let _ = writeln!(
        out,
        "{}",
        format!("{:indent$}{title:^span$}", "").trim_end()
    );
    for row in &rows {
        let mut line = String::new();
        for (k, cell) in row.iter().enumerate() {
            if k > 0 {
                line.push_str("  ");
            }
            let w = widths[k];
            if LEFT[k] {
                let _ = write!(line, "{cell:<w$}");
            } else {
                let _ = write!(line, "{cell:>w$}");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }

    if several || threshold_given {
        let _ = writeln!(out, "{}", success_line(report, threshold_given));
    }
    if report.runs.iter().any(|r| r.status == RunStatus::Partial) {
        let _ = writeln!(
            out,
            "partial: no summary.json describes the database yet (the run is going on, or was \
             killed): the rows so far are shown"
        );
    }
    out
}

fn success_line(report: &Report, threshold_given: bool) -> String {
    let unit = report.unit;
    let Some(t) = report.threshold else {
        return "success: no run has an evaluated structure yet".to_string();
    };
    let a = &report.aggregate;
    let source = if threshold_given {
        "--threshold".to_string()
    } else {
        format!("the lowest best + {} {unit}", report.tolerance)
    };
    let mut line = format!(
        "success: {} of {} runs reached E ≤ {} {unit} ({source})",
        a.successes,
        a.runs,
        energy(t)
    );
    if let Some(m) = a.median_evaluations_to_threshold {
        let _ = write!(line, "; median evaluations to reach it: {m}");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_their_unit() {
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(duration(90.0), "1.5 min");
        assert_eq!(duration(5400.0), "1.50 h");
    }
}
