//! `agox-coord analyze` on real runs of the real binary: its table, its JSON and its
//! plots must show what the runs' databases hold (read here independently with
//! rusqlite), a run in progress must be readable without being written to, and bad
//! input must be refused with the path named.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

mod common;

use common::{run as agox, s, start_long_run, write_script};

const TOLERANCE: f64 = 0.01;

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Finished runs of 8 iterations, one per seed, in `dir/seed-N`.
fn make_runs(dir: &Path, seeds: &[u64]) -> Vec<PathBuf> {
    let script = write_script(dir, 8);
    seeds
        .iter()
        .map(|seed| {
            let out_dir = dir.join(format!("seed-{seed}"));
            let seed = seed.to_string();
            stdout_of(&agox(&[
                "run",
                s(&script),
                "--workers",
                "1",
                "--seed",
                &seed,
                "--output",
                s(&out_dir),
            ]));
            out_dir
        })
        .collect()
}

/// One row of `structures`, read here without the library.
#[derive(Debug, Clone, Copy)]
struct Row {
    iteration: u64,
    energy: f64,
    time_stamp: f64,
}

/// Every row of a run's database, in id order.
fn rows(dir: &Path) -> Vec<Row> {
    let conn =
        Connection::open_with_flags(dir.join("db.db"), OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let stamps: BTreeMap<i64, f64> = conn
        .prepare("SELECT id, value FROM float_key_values WHERE key = 'time_stamp'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut stmt = conn
        .prepare("SELECT id, iteration, energy FROM structures ORDER BY id")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, f64>(2)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .map(|(id, iteration, energy)| Row {
            iteration: iteration as u64,
            energy,
            time_stamp: stamps[&id],
        })
        .collect();
    rows
}

/// Best so far after each evaluation (index 0: after the first).
fn running_min(rows: &[Row]) -> Vec<f64> {
    rows.iter()
        .scan(f64::INFINITY, |best, r| {
            *best = best.min(r.energy);
            Some(*best)
        })
        .collect()
}

/// 1-based index of the first row at or below `energy`.
fn first_at_or_below(rows: &[Row], energy: f64) -> Option<usize> {
    rows.iter().position(|r| r.energy <= energy).map(|k| k + 1)
}

fn best(rows: &[Row]) -> f64 {
    rows.iter().map(|r| r.energy).fold(f64::INFINITY, f64::min)
}

/// The value of a JSON step curve (`[[x, y], ...]`) at `x`.
fn step_value(curve: &Value, x: u64) -> Option<f64> {
    curve
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|p| p[0].as_u64().unwrap() <= x)
        .map(|p| p[1].as_f64().unwrap())
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// Names and contents of every file in `dir`, to show nothing was written there.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_table_shows_what_the_databases_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = make_runs(tmp.path(), &[1, 2]);
    let before: Vec<_> = runs.iter().map(|d| snapshot(d)).collect();
    let table = stdout_of(&agox(&["analyze", s(&runs[0]), s(&runs[1])]));
    // Reading wrote nothing into the run directories (no -wal, no -shm, no change).
    let after: Vec<_> = runs.iter().map(|d| snapshot(d)).collect();
    assert_eq!(before, after);

    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].contains("first within 0.01 ε"), "{table}");
    assert!(lines[1].contains("best (ε)"), "{table}");
    let mut lowest = f64::INFINITY;
    for (k, dir) in runs.iter().enumerate() {
        let rows = rows(dir);
        let b = best(&rows);
        lowest = lowest.min(b);
        let first = first_at_or_below(&rows, b + TOLERANCE).unwrap();
        let calls = summary(dir)
            .get("calculator_calls")
            .map_or("-".to_string(), |c| c.as_u64().unwrap().to_string());
        let wall = rows.iter().map(|r| r.time_stamp).fold(0.0, f64::max);
        let expected = [
            format!("seed-{}", k + 1),
            "complete".to_string(),
            format!("{b:.6}"),
            rows[first - 1].iteration.to_string(),
            first.to_string(),
            rows.len().to_string(),
            calls,
            format!("{wall:.1}"),
            "s".to_string(),
        ];
        let cells: Vec<&str> = lines[2 + k].split_whitespace().collect();
        assert_eq!(cells, expected, "{table}");
    }
    let total: usize = runs.iter().map(|d| rows(d).len()).sum();
    let all: Vec<&str> = lines[4].split_whitespace().collect();
    assert_eq!(
        all[..5],
        [
            "all",
            "2",
            "runs",
            &format!("{lowest:.6}"),
            &total.to_string()
        ],
        "{table}"
    );
    let successes = runs
        .iter()
        .filter(|d| best(&rows(d)) <= lowest + TOLERANCE)
        .count();
    assert!(
        lines[5].starts_with(&format!(
            "success: {successes} of 2 runs reached E ≤ {:.6} ε",
            lowest + TOLERANCE
        )),
        "{table}"
    );
}

#[test]
fn the_json_curves_are_the_databases_running_minima() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = make_runs(tmp.path(), &[3, 4]);
    let threshold = -16.4;
    let json: Value = serde_json::from_str(&stdout_of(&agox(&[
        "analyze",
        "--json",
        "--threshold",
        "-16.4",
        "--tolerance",
        "0.05",
        s(&runs[0]),
        s(&runs[1]),
    ])))
    .unwrap();
    assert_eq!(json["unit"], "ε");
    assert_eq!(json["tolerance"], 0.05);
    assert_eq!(json["threshold"], threshold);
    let mut hits = Vec::new();
    for (k, dir) in runs.iter().enumerate() {
        let rows = rows(dir);
        let run = &json["runs"][k];
        assert_eq!(run["evaluations"], rows.len());
        assert_eq!(run["status"], "complete");
        // Best so far against evaluations, at every evaluation.
        let mins = running_min(&rows);
        for (n, &m) in mins.iter().enumerate() {
            let n = n as u64 + 1;
            assert_eq!(
                step_value(&run["best_by_evaluation"], n),
                Some(m),
                "run {k} at {n}"
            );
        }
        // Against iterations: the best over every row of that iteration and before.
        let last = rows.last().unwrap().iteration;
        for it in 0..=last {
            let m = rows
                .iter()
                .filter(|r| r.iteration <= it)
                .map(|r| r.energy)
                .fold(f64::INFINITY, f64::min);
            assert_eq!(
                step_value(&run["best_by_iteration"], it),
                Some(m),
                "run {k} it {it}"
            );
        }
        let b = best(&rows);
        assert_eq!(run["best"]["energy"], b);
        let first = first_at_or_below(&rows, b + 0.05).unwrap();
        assert_eq!(run["first_within_tolerance"]["evaluation"], first);
        assert_eq!(
            run["first_within_tolerance"]["iteration"],
            rows[first - 1].iteration
        );
        let hit = first_at_or_below(&rows, threshold);
        match hit {
            Some(h) => assert_eq!(run["threshold_hit"]["evaluation"], h),
            None => assert!(run["threshold_hit"].is_null()),
        }
        hits.push(hit);
    }
    // The success fraction at every evaluation count.
    let end = runs.iter().map(|d| rows(d).len()).max().unwrap();
    for (n, fraction) in success_fractions(&hits, end).into_iter().enumerate() {
        assert_eq!(
            step_value(&json["success"], n as u64),
            Some(fraction),
            "success at {n}"
        );
    }
}

/// The fraction of runs that reached a threshold by each evaluation count 0..=`end`,
/// from each run's first evaluation at or below it.
fn success_fractions(hits: &[Option<usize>], end: usize) -> Vec<f64> {
    (0..=end)
        .map(|n| {
            let reached = hits.iter().filter(|h| h.is_some_and(|h| h <= n)).count();
            reached as f64 / hits.len() as f64
        })
        .collect()
}

#[test]
fn a_png_plot_is_a_valid_image_of_the_requested_size() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = make_runs(tmp.path(), &[5, 6]);
    let png_path = tmp.path().join("search.png");
    let out = agox(&[
        "analyze",
        s(&runs[0]),
        s(&runs[1]),
        "--plot",
        s(&png_path),
        "--size",
        "640x480",
    ]);
    stdout_of(&out);
    let decoder = png::Decoder::new(std::fs::File::open(&png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), (640, 480));
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let rgb = &pixels[..info.buffer_size()];
    let count = |c: [u8; 3]| rgb.chunks_exact(3).filter(|p| *p == c).count();
    // A white figure with both runs' curves drawn in their colours.
    assert!(count([255, 255, 255]) > 640 * 480 / 2);
    assert!(count([31, 119, 180]) > 100, "first run's colour");
    assert!(count([255, 127, 14]) > 100, "second run's colour");
}

#[test]
fn a_plot_through_a_symlink_or_into_a_fifo_keeps_them() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = make_runs(tmp.path(), &[5]);

    // A symbolic link stays a link; its target gets the plot.
    let target = tmp.path().join("target.svg");
    std::fs::write(&target, b"old").unwrap();
    let link = tmp.path().join("link.svg");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    stdout_of(&agox(&["analyze", s(&runs[0]), "--plot", s(&link)]));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let svg = std::fs::read_to_string(&target).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);

    // A FIFO is written in place (a reader gets the whole plot), never replaced.
    let fifo = tmp.path().join("plot.svg");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    stdout_of(&agox(&["analyze", s(&runs[0]), "--plot", s(&fifo)]));
    let piped = reader.join().unwrap();
    assert_eq!(piped, svg);
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
}

/// The `points` of every `<polyline>` drawn in `stroke` with width 2 (the curves'
/// width up to 1200x800), in order.
fn polylines(svg: &str, stroke: &str) -> Vec<Vec<(f64, f64)>> {
    svg.split("<polyline")
        .skip(1)
        .filter(|p| {
            let tag = &p[..p.find("/>").unwrap()];
            tag.contains(&format!("stroke=\"{stroke}\"")) && tag.contains("stroke-width=\"2\"")
        })
        .map(|p| {
            let start = p.find("points=\"").unwrap() + 8;
            let end = start + p[start..].find('"').unwrap();
            p[start..end]
                .split_whitespace()
                .map(|xy| {
                    let (x, y) = xy.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect()
        })
        .collect()
}

/// The corners of a step curve given at every x (`values[k]` at `x0 + k`): where it
/// changes, held until the next change, and the last x.
fn staircase(x0: u64, values: &[f64]) -> Vec<(f64, f64)> {
    let mut points: Vec<(u64, f64)> = Vec::new();
    for (k, &v) in values.iter().enumerate() {
        if points.last().is_none_or(|p| v < p.1) {
            points.push((x0 + k as u64, v));
        }
    }
    let end = x0 + values.len() as u64 - 1;
    if points.last().unwrap().0 != end {
        points.push((end, *values.last().unwrap()));
    }
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (x, y) in points {
        if let Some(&(_, prev)) = out.last() {
            out.push((x as f64, prev));
        }
        if out.last() != Some(&(x as f64, y)) {
            out.push((x as f64, y));
        }
    }
    out
}

/// A drawn polyline's vertices, in pixels.
type Pixels<'a> = &'a [(f64, f64)];
/// A curve's vertices, in data units.
type Points = Vec<(f64, f64)>;

/// The linear map `pixel = offset + scale * value` through the pairs with the smallest
/// and the largest value.
fn linear_map(pairs: &[(f64, f64)]) -> (f64, f64) {
    let lo = pairs
        .iter()
        .copied()
        .fold((0.0, f64::INFINITY), |a, p| if p.1 < a.1 { p } else { a });
    let hi = pairs.iter().copied().fold(
        (0.0, f64::NEG_INFINITY),
        |a, p| if p.1 > a.1 { p } else { a },
    );
    let scale = (hi.0 - lo.0) / (hi.1 - lo.1);
    (scale, lo.0 - scale * lo.1)
}

/// Checks that each curve's pixels are its data drawn through one linear map per axis:
/// its own for x, one for y shared by all `curves` (plotters rounds to whole pixels:
/// within 1 px). Higher values are drawn higher up the page (smaller y pixels).
fn assert_drawn(curves: &[(Pixels, Points)], what: &str) {
    let mut y_pairs = Vec::new();
    for (pixels, data) in curves {
        assert_eq!(pixels.len(), data.len(), "{what}: number of vertices");
        y_pairs.extend(pixels.iter().zip(data).map(|(p, d)| (p.1, d.1)));
    }
    let (sy, oy) = linear_map(&y_pairs);
    assert!(sy < 0.0, "{what}: y scale {sy}");
    for (pixels, data) in curves {
        let x_pairs: Vec<(f64, f64)> = pixels.iter().zip(data).map(|(p, d)| (p.0, d.0)).collect();
        let (sx, ox) = linear_map(&x_pairs);
        assert!(sx > 0.0, "{what}: x scale {sx}");
        for (p, d) in pixels.iter().zip(data) {
            assert!(
                (p.0 - (ox + sx * d.0)).abs() <= 1.0,
                "{what}: x of {d:?} drawn at {p:?}"
            );
            assert!(
                (p.1 - (oy + sy * d.1)).abs() <= 1.0,
                "{what}: y of {d:?} drawn at {p:?}"
            );
        }
    }
}

#[test]
fn an_svg_plot_has_the_requested_size_and_draws_the_databases_curves() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = make_runs(tmp.path(), &[7, 8]);
    let svg_path = tmp.path().join("search.svg");
    stdout_of(&agox(&[
        "analyze",
        s(&runs[0]),
        s(&runs[1]),
        "--plot",
        s(&svg_path),
        "--size",
        "900x700",
    ]));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(
        svg.starts_with(
            "<svg width=\"900\" height=\"700\" viewBox=\"0 0 900 700\" \
             xmlns=\"http://www.w3.org/2000/svg\">"
        ),
        "{}",
        &svg[..200]
    );
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<svg").count(), 1);

    // Both energy panels share one energy axis; each has its own x axis.
    let mut drawn_curves = Vec::new();
    let mut expected = Vec::new();
    for (dir, color) in runs.iter().zip(["#1F77B4", "#FF7F0E"]) {
        let rows = rows(dir);
        let drawn = polylines(&svg, color);
        assert_eq!(drawn.len(), 2, "{color}: one curve per energy panel");
        // Against iterations: the best after each iteration.
        let last = rows.last().unwrap().iteration;
        let per_iteration: Vec<f64> = (0..=last)
            .map(|it| {
                rows.iter()
                    .filter(|r| r.iteration <= it)
                    .map(|r| r.energy)
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
        expected.push(staircase(0, &per_iteration));
        // Against evaluations, from the first.
        expected.push(staircase(1, &running_min(&rows)));
        drawn_curves.extend(drawn);
    }
    let curves: Vec<(Pixels, Points)> = drawn_curves
        .iter()
        .map(Vec::as_slice)
        .zip(expected)
        .collect();
    assert_drawn(&curves, "best energy so far");
    // The success curve: both runs reach the default threshold (the lowest best +
    // tolerance) at their own first hit.
    let lowest = runs
        .iter()
        .map(|d| best(&rows(d)))
        .fold(f64::INFINITY, f64::min);
    let n = runs.iter().map(|d| rows(d).len()).max().unwrap();
    let hits: Vec<Option<usize>> = runs
        .iter()
        .map(|d| first_at_or_below(&rows(d), lowest + TOLERANCE))
        .collect();
    let fractions = success_fractions(&hits, n);
    let drawn = polylines(&svg, "#282828");
    assert_eq!(drawn.len(), 1, "one success curve");
    assert_drawn(&[(&drawn[0], staircase_rising(&fractions))], "success");
}

/// The staircase of a rising step curve given at every x from 0 ([`staircase`] keeps
/// the points where a value falls: negated, they are the rises).
fn staircase_rising(values: &[f64]) -> Vec<(f64, f64)> {
    let negated: Vec<f64> = values.iter().map(|v| -v).collect();
    staircase(0, &negated)
        .into_iter()
        .map(|(x, y)| (x, -y))
        .collect()
}

#[test]
fn a_run_in_progress_and_an_interrupted_run_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let script = write_script(tmp.path(), 100_000);
    let dir = tmp.path().join("live");
    let child = start_long_run(&dir, &script, 6);
    let live = agox(&["analyze", "--json", s(&dir)]);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let status = child.wait_with_output().unwrap().status;
    assert_eq!(status.code(), Some(130));
    let json: Value = serde_json::from_str(&stdout_of(&live)).unwrap();
    assert_eq!(json["runs"][0]["status"], "partial");
    let seen = json["runs"][0]["evaluations"].as_u64().unwrap();
    assert!(seen >= 6, "{json}");

    // Interrupted: the summary describes the database, and the run shows as stopped.
    let rows = rows(&dir);
    assert!(rows.len() as u64 >= seen);
    let json: Value =
        serde_json::from_str(&stdout_of(&agox(&["analyze", "--json", s(&dir)]))).unwrap();
    assert_eq!(json["runs"][0]["status"], "stopped");
    assert_eq!(json["runs"][0]["evaluations"], rows.len());
    assert_eq!(json["runs"][0]["best"]["energy"], best(&rows));
}

#[test]
fn bad_input_is_refused_with_the_path_named() {
    let tmp = tempfile::tempdir().unwrap();
    let fails = |args: &[&str], needle: &str| {
        let out = agox(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    };
    let missing = tmp.path().join("no-such-run");
    fails(
        &["analyze", s(&missing)],
        &format!("`{}` does not exist", s(&missing)),
    );

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails(
        &["analyze", s(&empty)],
        &format!(
            "`{}` is not a run directory: it holds no `db.db`",
            s(&empty)
        ),
    );
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);

    let file = tmp.path().join("notes.txt");
    std::fs::write(&file, "x").unwrap();
    fails(&["analyze", s(&file)], "not a directory");

    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    Connection::open(other.join("db.db"))
        .unwrap()
        .execute("CREATE TABLE t (x INTEGER)", [])
        .unwrap();
    fails(
        &["analyze", s(&other)],
        &format!(
            "reading `{}`: database schema differs from AGOX's",
            s(&other.join("db.db"))
        ),
    );

    let runs = make_runs(tmp.path(), &[1]);
    let pdf = tmp.path().join("plot.pdf");
    fails(
        &["analyze", s(&runs[0]), "--plot", s(&pdf)],
        "unknown format: expected a file name ending in .png or .svg",
    );
    assert!(!pdf.exists());

    // A broken summary names the file.
    std::fs::write(runs[0].join("summary.json"), "{").unwrap();
    fails(
        &["analyze", s(&runs[0])],
        &format!("reading `{}`", s(&runs[0].join("summary.json"))),
    );
}
