//! `agox-coord analyze RUN_DIR...`: what one or several searches found, as a table
//! (or JSON) and, with `--plot`, as a figure (`plot.rs`). The numbers come from
//! `agox_search::analysis`; this module only parses the flags and renders.

mod crisp_text;
mod plot;
mod table;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agox_search::analysis::{Report, Run, DEFAULT_TOLERANCE};
use agox_search::search::write_atomically;
use anyhow::{bail, Context, Result};
use clap::Args;

/// Flags of `agox-coord analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Run directories, as `agox-coord run` writes them (each holds db.db); runs in progress are read too
    #[arg(value_name = "RUN_DIR", required = true)]
    pub runs: Vec<PathBuf>,
    /// "Within the best" means within E of it, in the runs' energy unit (eV, or ε for LJ)
    #[arg(long, value_name = "E", default_value_t = DEFAULT_TOLERANCE, value_parser = non_negative)]
    pub tolerance: f64,
    /// Success threshold: a run succeeds once its best is at or below E [default: the lowest best over the runs + the tolerance]
    #[arg(long, value_name = "E", allow_negative_numbers = true, value_parser = finite)]
    pub threshold: Option<f64>,
    /// Draw best energy so far against iterations and evaluations, and the success fraction, to FILE (.png or .svg)
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Size of the plot in pixels, width x height
    #[arg(long, value_name = "WxH", default_value = "1200x800", value_parser = parse_size)]
    pub size: PlotSize,
    /// Print the table's data, with the plotted curves, as JSON instead of the table
    #[arg(long)]
    pub json: bool,
}

/// A plot's size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlotSize {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// Smallest plot that leaves its four panels readable.
const MIN_SIZE: (u32, u32) = (400, 300);
/// Largest plot (a PNG of this size takes 200 MB while it is drawn).
const MAX_SIDE: u32 = 8192;

fn parse_size(text: &str) -> Result<PlotSize, String> {
    let bad = || format!("`{text}` is not a size: expected WIDTHxHEIGHT in pixels, e.g. 1200x800");
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(bad)?;
    let width: u32 = w.trim().parse().map_err(|_| bad())?;
    let height: u32 = h.trim().parse().map_err(|_| bad())?;
    if width < MIN_SIZE.0 || height < MIN_SIZE.1 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(format!(
            "{width}x{height} is out of range: width {} to {MAX_SIDE}, height {} to {MAX_SIDE} pixels",
            MIN_SIZE.0, MIN_SIZE.1
        ));
    }
    Ok(PlotSize { width, height })
}

fn finite(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("`{text}` is not a finite number")),
    }
}

fn non_negative(text: &str) -> Result<f64, String> {
    match finite(text)? {
        v if v >= 0.0 => Ok(v),
        v => Err(format!("{v} is negative: expected 0 or more")),
    }
}

/// The plot formats, chosen by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotFormat {
    /// A PNG image.
    Png,
    /// An SVG drawing.
    Svg,
}

impl PlotFormat {
    fn of(path: &Path) -> Result<PlotFormat> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("png") => Ok(PlotFormat::Png),
            Some("svg") => Ok(PlotFormat::Svg),
            _ => bail!(
                "--plot {}: unknown format: expected a file name ending in .png or .svg",
                path.display()
            ),
        }
    }
}

/// Runs `agox-coord analyze`.
pub fn run(args: AnalyzeArgs) -> Result<ExitCode> {
    let format = args.plot.as_deref().map(PlotFormat::of).transpose()?;
    let runs = args
        .runs
        .iter()
        .map(Run::read)
        .collect::<Result<Vec<_>, _>>()?;
    let report = Report::new(&runs, args.tolerance, args.threshold)?;

    let text = if args.json {
        serde_json::to_string_pretty(&report).context("encoding the JSON")? + "\n"
    } else {
        table::render(&report, args.threshold.is_some())
    };
    let printed = {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).and_then(|()| out.flush())
    };

    if let (Some(path), Some(format)) = (&args.plot, format) {
        let bytes = plot::render(&report, format, args.size)
            .with_context(|| format!("drawing {}", path.display()))?;
        // As every output: atomically for a regular file, in place for a FIFO or a
        // device, through a symbolic link to its target.
        write_atomically(path, &bytes)?;
        // A note only: a closed standard error does not undo the plot.
        let _ = writeln!(
            std::io::stderr(),
            "plot: {} ({}x{} pixels)",
            path.display(),
            args.size.width,
            args.size.height
        );
    }
    match printed {
        // The reader went away (`| head`): it has what it wanted, and nothing is lost.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).context("writing to standard output"),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_are_bounded() {
        assert_eq!(
            parse_size("1200x800").unwrap(),
            PlotSize {
                width: 1200,
                height: 800
            }
        );
        assert_eq!(parse_size("640X480").unwrap().height, 480);
        assert!(parse_size("1200").unwrap_err().contains("WIDTHxHEIGHT"));
        assert!(parse_size("10x10").unwrap_err().contains("out of range"));
        assert!(parse_size("100000x800")
            .unwrap_err()
            .contains("out of range"));
    }

    #[test]
    fn the_extension_chooses_the_format() {
        assert_eq!(
            PlotFormat::of(Path::new("a/b.PNG")).unwrap(),
            PlotFormat::Png
        );
        assert_eq!(PlotFormat::of(Path::new("b.svg")).unwrap(), PlotFormat::Svg);
        let e = PlotFormat::of(Path::new("b.pdf")).unwrap_err().to_string();
        assert!(e.contains("b.pdf") && e.contains(".png or .svg"), "{e}");
        assert!(PlotFormat::of(Path::new("png")).is_err());
    }

    #[test]
    fn tolerances_and_thresholds_are_checked() {
        assert_eq!(non_negative("0").unwrap(), 0.0);
        assert!(non_negative("-0.1").unwrap_err().contains("negative"));
        assert!(finite("inf").is_err() && finite("nan").is_err());
        assert_eq!(finite("-44.3").unwrap(), -44.3);
    }
}
