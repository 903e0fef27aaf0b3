//! The figure of `agox-coord analyze --plot`, in four panels:
//!
//! | | |
//! | --- | --- |
//! | best energy so far against iterations | best energy so far against evaluations |
//! | fraction of runs at or below the threshold against evaluations | the legend: one line per run |
//!
//! Energies are on a linear axis in the runs' unit (they are negative and differences
//! matter, so no log axis); the success threshold is a dashed line on both energy
//! panels, and a dot marks each run's first evaluation within the tolerance of its
//! best. Everything drawn comes from the [`Report`] that `--json` prints.
//!
//! Text is laid out with the DejaVu Sans font compiled into the binary
//! (`fonts/README.md`), so no system font or font library is needed.

use std::sync::OnceLock;

use ab_glyph::FontRef;
use agox_search::analysis::{Report, RunReport};
use anyhow::{anyhow, bail, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::crisp_text::CrispText;
use super::table::{duration, energy};
use super::{PlotFormat, PlotSize};

static FONT: &[u8] = include_bytes!("../../fonts/DejaVuSans.ttf");
/// The name the embedded font is registered under; an SVG names it as its font
/// family, so a viewer with DejaVu Sans shows the text with the metrics it was laid
/// out with, and any other viewer falls back to its sans-serif font.
const FAMILY: &str = "DejaVu Sans, sans-serif";

/// Matplotlib's default ("tab10") colours: familiar, and told apart by most readers.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// The threshold line and the success curve.
const INK: RGBColor = RGBColor(40, 40, 40);
const GRID: RGBColor = RGBColor(225, 225, 225);
const FAINT: RGBColor = RGBColor(90, 90, 90);

/// The colour of run `k` (the palette repeats after ten runs).
fn run_color(k: usize) -> RGBColor {
    COLORS[k % COLORS.len()]
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if !ok {
        bail!("the embedded font DejaVuSans.ttf cannot be read");
    }
    Ok(())
}

/// Draws the figure for `report` as a PNG or SVG file's bytes.
pub fn render(report: &Report, format: PlotFormat, size: PlotSize) -> Result<Vec<u8>> {
    register_font()?;
    if !report.runs.iter().any(|r| r.best.is_some()) {
        bail!("nothing to plot: no run has an evaluated structure yet");
    }
    let dims = (size.width, size.height);
    match format {
        PlotFormat::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, dims).into_drawing_area();
                draw(&root, report).map_err(|e| anyhow!("{e}"))?;
                root.present().map_err(|e| anyhow!("{e}"))?;
            }
            Ok(svg.into_bytes())
        }
        PlotFormat::Png => {
            let (w, h) = (size.width as usize, size.height as usize);
            let mut rgb = vec![0u8; w * h * 3];
            {
                let font = FontRef::try_from_slice(FONT)?;
                let bitmap = BitMapBackend::with_buffer(&mut rgb, dims);
                let root = CrispText::new(bitmap, font).into_drawing_area();
                draw(&root, report).map_err(|e| anyhow!("{e}"))?;
                root.present().map_err(|e| anyhow!("{e}"))?;
            }
            encode_png(&rgb, size)
        }
    }
}

fn encode_png(rgb: &[u8], size: PlotSize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, size.width, size.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // A figure is mostly flat colour: the best compression makes it three times smaller
    // (66 kB instead of 193 kB for two runs at 1200x800).
    encoder.set_compression(png::Compression::Best);
    encoder.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

/// Font sizes and margins, scaled with the figure (1200x800 is the reference).
struct Look {
    caption: f64,
    label: f64,
    tick: f64,
    legend: f64,
    margin: u32,
    /// Width of the curves (never under 2 pixels).
    curve: u32,
}

impl Look {
    fn for_size(w: u32, h: u32) -> Look {
        let s = (f64::from(w) / 1200.0).min(f64::from(h) / 800.0).max(0.45);
        Look {
            caption: 20.0 * s,
            label: 16.0 * s,
            tick: 14.0 * s,
            legend: 15.0 * s,
            margin: (12.0 * s).round() as u32,
            curve: (2.0 * s).round().max(2.0) as u32,
        }
    }

    fn font(&self, size: f64) -> TextStyle<'static> {
        (FAMILY, size).into_font().color(&BLACK)
    }
}

/// The points of a step curve (`(x, y)` where y changes, and the end) as the corners
/// of its staircase: each y holds until the next point's x.
fn staircase(points: &[(u64, f64)]) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(2 * points.len());
    for &(x, y) in points {
        let x = i64::try_from(x).unwrap_or(i64::MAX);
        if let Some(&(_, prev)) = out.last() {
            out.push((x, prev));
        }
        if out.last() != Some(&(x, y)) {
            out.push((x, y));
        }
    }
    out
}

/// The value of a step curve at `x` (its last point at or before `x`).
fn value_at(points: &[(u64, f64)], x: u64) -> Option<f64> {
    points.iter().rev().find(|p| p.0 <= x).map(|p| p.1)
}

/// An energy with a true minus sign, for the figure.
fn minus(text: String) -> String {
    text.replace('-', "\u{2212}")
}

/// Labels on the energy axis (plotters places at most this many).
const ENERGY_TICKS: usize = 7;

/// The fewest decimals that write every one of `ticks` exactly (up to 8), so that
/// all labels of an axis have the same number of decimals and none is rounded.
fn decimals(ticks: &[f64]) -> usize {
    let exact = |t: f64, d: i32| {
        let scaled = t * 10f64.powi(d);
        (scaled - scaled.round()).abs() < 1e-6 * scaled.abs().max(1.0)
    };
    ticks
        .iter()
        .map(|&t| (0..=8).find(|&d| exact(t, d)).unwrap_or(8) as usize)
        .max()
        .unwrap_or(0)
}

/// The end of an x axis that shows `x_max` a little inside it, so curves and dots that
/// end there are not drawn on the frame.
fn with_margin(x_max: u64) -> i64 {
    let x = i64::try_from(x_max).unwrap_or(i64::MAX / 2);
    x + (x / 50).max(1)
}

/// One run's curve on an energy panel.
struct Curve<'a> {
    color: RGBColor,
    points: &'a [(u64, f64)],
    marker: Option<(u64, f64)>,
}

/// The axes of an energy panel.
struct Axes<'a> {
    caption: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    x_max: u64,
    y: (f64, f64),
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, report: &Report) -> DrawResult<DB> {
    let (w, h) = root.dim_in_pixel();
    let look = Look::for_size(w, h);
    root.fill(&WHITE)?;
    let panels = root.split_evenly((2, 2));
    let unit = report.unit;
    let y_desc = format!("best energy so far ({unit})");

    // One energy range for both panels, so they read side by side.
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for r in &report.runs {
        for &(_, e) in r.best_by_evaluation.iter() {
            lo = lo.min(e);
            hi = hi.max(e);
        }
    }
    if let Some(t) = report.threshold {
        lo = lo.min(t);
        hi = hi.max(t);
    }
    let pad = if hi > lo {
        0.05 * (hi - lo)
    } else {
        0.05 * lo.abs().max(1.0)
    };
    let y = (lo - pad, hi + pad);

    let by_iteration: Vec<Curve> = report
        .runs
        .iter()
        .enumerate()
        .map(|(k, r)| Curve {
            color: run_color(k),
            points: &r.best_by_iteration,
            marker: r.first_within_tolerance.and_then(|hit| {
                value_at(&r.best_by_iteration, hit.iteration).map(|e| (hit.iteration, e))
            }),
        })
        .collect();
    let last_iteration = report
        .runs
        .iter()
        .filter_map(|r| r.best_by_iteration.last().map(|p| p.0))
        .max()
        .unwrap_or(0);
    energy_panel(
        &panels[0],
        &look,
        &Axes {
            caption: "Best energy against iterations",
            x_desc: "iteration",
            y_desc: &y_desc,
            x_max: last_iteration.max(1),
            y,
        },
        &by_iteration,
        report.threshold,
    )?;

    let by_evaluation: Vec<Curve> = report
        .runs
        .iter()
        .enumerate()
        .map(|(k, r)| Curve {
            color: run_color(k),
            points: &r.best_by_evaluation,
            marker: r
                .first_within_tolerance
                .map(|hit| (hit.evaluation, hit.energy)),
        })
        .collect();
    let evaluations = report.runs.iter().map(|r| r.evaluations).max().unwrap_or(0);
    energy_panel(
        &panels[1],
        &look,
        &Axes {
            caption: "Best energy against evaluations",
            x_desc: "evaluations (structures evaluated)",
            y_desc: &y_desc,
            x_max: evaluations.max(1),
            y,
        },
        &by_evaluation,
        report.threshold,
    )?;

    success_panel(&panels[2], &look, report, evaluations.max(1))?;
    legend(&panels[3], &look, report)
}

fn energy_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    look: &Look,
    axes: &Axes,
    curves: &[Curve],
    threshold: Option<f64>,
) -> DrawResult<DB> {
    let (y0, y1) = axes.y;
    // The ticks the mesh will label (the same computation as plotters' own).
    let ticks = RangedCoordf64::from(y0..y1).key_points(ENERGY_TICKS);
    let places = decimals(&ticks);
    let widest = ticks
        .iter()
        .map(|v| format!("{v:.places$}").chars().count())
        .max()
        .unwrap_or(8);
    let x_max = with_margin(axes.x_max);
    let mut chart = ChartBuilder::on(area)
        .caption(axes.caption, look.font(look.caption))
        .margin(look.margin)
        .x_label_area_size(look.tick * 1.3 + look.label * 2.0)
        .y_label_area_size(look.tick * 0.62 * widest as f64 + look.label * 2.2)
        .build_cartesian_2d(0..x_max, y0..y1)?;
    let y_fmt = |v: &f64| minus(format!("{v:.places$}"));
    chart
        .configure_mesh()
        .x_desc(axes.x_desc)
        .y_desc(axes.y_desc)
        .axis_desc_style(look.font(look.label))
        .label_style(look.font(look.tick))
        .y_label_formatter(&y_fmt)
        .x_labels(8)
        .y_labels(ENERGY_TICKS)
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .draw()?;
    if let Some(t) = threshold {
        chart.draw_series(DashedLineSeries::new(
            [(0, t), (x_max, t)],
            8,
            5,
            INK.stroke_width(1),
        ))?;
    }
    let radius = (look.tick * 0.35).max(3.0) as i32;
    for c in curves {
        chart.draw_series(LineSeries::new(
            staircase(c.points),
            c.color.stroke_width(look.curve),
        ))?;
        if let Some((x, e)) = c.marker {
            let x = i64::try_from(x).unwrap_or(i64::MAX);
            chart.draw_series(std::iter::once(Circle::new(
                (x, e),
                radius,
                c.color.filled(),
            )))?;
        }
    }
    Ok(())
}

fn success_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    look: &Look,
    report: &Report,
    evaluations: u64,
) -> DrawResult<DB> {
    let caption = match report.threshold {
        Some(t) => minus(format!(
            "Success: runs with best ≤ {} {}",
            energy(t),
            report.unit
        )),
        None => "Success".to_string(),
    };
    let x_max = with_margin(evaluations);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, look.font(look.caption))
        .margin(look.margin)
        .x_label_area_size(look.tick * 1.3 + look.label * 2.0)
        .y_label_area_size(look.tick * 0.62 * 4.0 + look.label * 2.2)
        .build_cartesian_2d(0..x_max, 0.0..1.02)?;
    let n = report.runs.len();
    let y_desc = format!("fraction of the {n} run{}", if n == 1 { "" } else { "s" });
    chart
        .configure_mesh()
        .x_desc("evaluations (structures evaluated)")
        .y_desc(y_desc)
        .axis_desc_style(look.font(look.label))
        .label_style(look.font(look.tick))
        .y_label_formatter(&|v: &f64| format!("{v:.1}"))
        .x_labels(8)
        .y_labels(6)
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .draw()?;
    chart.draw_series(LineSeries::new(
        staircase(&report.success),
        INK.stroke_width(look.curve),
    ))?;
    Ok(())
}

fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    look: &Look,
    report: &Report,
) -> DrawResult<DB> {
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let m = look.margin as i32 * 2;
    let line = (look.legend * 1.45).ceil() as i32;
    let swatch = (look.legend * 1.6) as i32;
    let indent = swatch + line / 2;
    let font = look.font(look.legend);
    let small = look.font(look.legend * 0.88).color(&FAINT);
    let unit = report.unit;
    let tol = report.tolerance;
    // `text`, cut with an ellipsis to `width` pixels.
    let fit = |text: String, style: &TextStyle, width: i32| -> String {
        let fits = |t: &str| {
            area.estimate_text_size(t, style)
                .is_ok_and(|s| i64::from(s.0) <= i64::from(width))
        };
        let mut chars: Vec<char> = text.chars().collect();
        let mut t = text;
        while !fits(&t) && !chars.is_empty() {
            chars.pop();
            t = chars.iter().collect::<String>() + "…";
        }
        t
    };

    area.draw(&Text::new(
        format!("Runs ({}), energies in {unit}", report.runs.len()),
        (m, m),
        look.font(look.caption),
    ))?;
    let top = m + (look.caption * 1.6) as i32;
    // The key (threshold, dot) takes the last three lines.
    let key_top = h - 3 * line - m;
    let rows = usize::try_from((key_top - top) / line).unwrap_or(0);

    // Two lines per run (name and status; best and first hit) when they fit, else one
    // line (name and best), in two columns if need be.
    let n = report.runs.len();
    let (per_run, columns) = if 2 * n <= rows {
        (2, 1)
    } else if n <= rows {
        (1, 1)
    } else {
        (1, 2)
    };
    let per_column = rows / per_run;
    let capacity = per_column * columns;
    let shown = if n <= capacity {
        n
    } else {
        capacity.saturating_sub(1)
    };
    let column_width = (w - m) / columns as i32;
    let text_width = column_width - indent - look.margin as i32;
    let slot = |k: usize| {
        let column = (k / per_column.max(1)) as i32;
        let row = (k % per_column.max(1)) as i32;
        (m + column * column_width, top + row * per_run as i32 * line)
    };
    let row_font = if per_run == 2 { &font } else { &small };
    for (k, r) in report.runs.iter().enumerate().take(shown) {
        let (x, y) = slot(k);
        area.draw(&Rectangle::new(
            [(x, y + line / 5), (x + swatch, y + line - line / 5)],
            run_color(k).filled(),
        ))?;
        let first = if per_run == 2 {
            format!("{} ({}, {} evaluations)", r.label, r.status, r.evaluations)
        } else {
            let best = r.best.map_or("no energy yet".to_string(), |b| {
                minus(format!("{} {unit}", energy(b.energy)))
            });
            format!("{}: {best}", r.label)
        };
        let first = fit(first, row_font, text_width);
        area.draw(&Text::new(first, (x + indent, y), row_font.clone()))?;
        if per_run == 2 {
            let details = fit(run_details(r, unit, tol), &small, text_width);
            area.draw(&Text::new(details, (x + indent, y + line), small.clone()))?;
        }
    }
    if shown < n {
        let (x, y) = slot(shown);
        let more = format!("… and {} more (see the table)", n - shown);
        area.draw(&Text::new(
            fit(more, &small, text_width),
            (x + indent, y),
            small.clone(),
        ))?;
    }

    let key_width = w - m - indent - look.margin as i32;
    let mut y = key_top + line;
    if let Some(t) = report.threshold {
        let mid = y + line / 2;
        for x in (m..m + swatch).step_by(9) {
            area.draw(&PathElement::new(
                vec![(x, mid), ((x + 5).min(m + swatch), mid)],
                INK.stroke_width(1),
            ))?;
        }
        let text = minus(format!("success threshold: best ≤ {} {unit}", energy(t)));
        area.draw(&Text::new(
            fit(text, &small, key_width),
            (m + indent, y),
            small.clone(),
        ))?;
        y += line;
    }
    area.draw(&Circle::new(
        (m + swatch / 2, y + line / 2),
        (look.tick * 0.35).max(3.0) as i32,
        FAINT.filled(),
    ))?;
    let text = format!("first evaluation within {tol} {unit} of the run's best");
    area.draw(&Text::new(
        fit(text, &small, key_width),
        (m + indent, y),
        small.clone(),
    ))?;
    Ok(())
}

/// A run's second legend line: its best and when it was first (nearly) reached.
fn run_details(r: &RunReport, unit: impl std::fmt::Display, tol: f64) -> String {
    let mut text = match r.best {
        Some(b) => minus(format!("best {} {unit}", energy(b.energy))),
        None => "no evaluated structure yet".to_string(),
    };
    if let Some(hit) = r.first_within_tolerance {
        text += &format!(
            "; within {tol} {unit} at evaluation {} (iteration {})",
            hit.evaluation, hit.iteration
        );
    }
    if let Some(s) = r.wall_time_s {
        text += &format!("; {}", duration(s));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staircases_hold_each_value_until_the_next_point() {
        assert_eq!(
            staircase(&[(1, -1.0), (3, -2.0), (7, -2.0)]),
            [(1, -1.0), (3, -1.0), (3, -2.0), (7, -2.0)]
        );
        assert_eq!(staircase(&[(0, 5.0)]), [(0, 5.0)]);
        assert_eq!(value_at(&[(1, -1.0), (3, -2.0)], 2), Some(-1.0));
        assert_eq!(value_at(&[(1, -1.0), (3, -2.0)], 0), None);
    }

    #[test]
    fn tick_labels_have_the_decimals_their_values_need() {
        assert_eq!(decimals(&[-46.0, -45.0, -44.0]), 0);
        assert_eq!(decimals(&[-16.5, -16.0, -15.5]), 1);
        assert_eq!(decimals(&[-16.51, -16.505, -16.5]), 3);
        assert_eq!(decimals(&[0.1 + 0.2]), 1);
        assert_eq!(decimals(&[]), 0);
        // The energy axis of a narrow range gets enough decimals for its ticks.
        let ticks = RangedCoordf64::from(-16.52..-16.49).key_points(ENERGY_TICKS);
        let places = decimals(&ticks);
        let labels: Vec<String> = ticks.iter().map(|t| format!("{t:.places$}")).collect();
        let mut unique = labels.clone();
        unique.dedup();
        assert_eq!(unique, labels);
    }
}
