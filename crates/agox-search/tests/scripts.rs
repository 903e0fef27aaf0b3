//! The script corpus: every `tests/inputs/good/*.toml` validates, and every
//! `tests/inputs/bad/*.toml` fails with exactly the errors its `#^ ` lines state
//! (each `#^ ` line is a substring of one reported error, in order, and there are as
//! many errors as `#^ ` lines).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};

use agox_search::script::{
    load_calculator, Algorithm, CalculatorSettings, CountSchedule, GeneratorKind, SamplerSettings,
    Script, ScriptErrors,
};

const INPUTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/inputs");

fn tomls(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(INPUTS).join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// `want`'s pieces separated by ` ... ` occur in `got` in order.
fn contains_in_order(got: &str, want: &str) -> bool {
    let mut rest = got;
    for piece in want.split(" ... ") {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    true
}

#[test]
fn good_scripts_validate() {
    let files = tomls("good");
    assert!(files.len() >= 5, "{files:?}");
    for f in files {
        match Script::load(&f) {
            Ok(s) => {
                // The JSON rendering is what `agox-coord validate` prints.
                let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
                assert!(json["search"]["iterations"].as_u64().unwrap() >= 1);
            }
            Err(e) => panic!("{} should validate:\n{e}", f.display()),
        }
    }
}

/// Checks that loading each of `files` fails with exactly the errors its `#^ `
/// lines state.
fn fail_as_stated(files: Vec<PathBuf>, load: impl Fn(&Path) -> Result<(), ScriptErrors>) {
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("#^ "))
            .map(str::trim)
            .collect();
        assert!(
            !expected.is_empty(),
            "{} states no expected error",
            f.display()
        );
        let errors = match load(&f) {
            Ok(()) => panic!("{} should fail", f.display()),
            Err(e) => e.0,
        };
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered.len(),
            expected.len(),
            "{}: expected {expected:#?}\ngot {rendered:#?}",
            f.display()
        );
        for (want, got) in expected.iter().zip(&rendered) {
            assert!(
                contains_in_order(got, want),
                "{}: expected an error containing\n  {want}\ngot\n  {got}",
                f.display()
            );
            // Every error points into the file and names a key.
            assert!(got.starts_with(&f.display().to_string()), "{got}");
        }
    }
}

#[test]
fn bad_scripts_fail_as_stated() {
    let files = tomls("bad");
    assert!(files.len() >= 20, "{}", files.len());
    fail_as_stated(files, |f| Script::load(f).map(drop));
}

/// `calc/relax --calculator FILE`: a file with a `[calculator]` table alone, read
/// with the script's keys and checks.
#[test]
fn calculator_files_load_or_fail_as_stated() {
    let good = tomls("calculator/good");
    assert!(good.len() >= 2, "{good:?}");
    for f in good {
        if let Err(e) = load_calculator(&f) {
            panic!("{} should load:\n{e}", f.display());
        }
    }
    let bad = tomls("calculator/bad");
    assert!(bad.len() >= 3, "{bad:?}");
    fail_as_stated(bad, |f| load_calculator(f).map(drop));

    // `{script_dir}` is the calculator file's directory.
    let dir = Path::new(INPUTS).join("calculator/good");
    match load_calculator(dir.join("ase_emt.toml")).unwrap() {
        CalculatorSettings::Socket(s) => {
            let dir = std::path::absolute(&dir).unwrap();
            assert!(
                s.command.contains(&format!("{}/", dir.display())),
                "{}",
                s.command
            );
            assert!(!s.command.contains("{script_dir}"), "{}", s.command);
            assert_eq!(s.timeout, Some(60.0));
            assert_eq!(
                (s.connect_timeout, s.max_restarts, s.grace),
                (120.0, 3, 3.0)
            );
            assert_eq!((s.ranks_per_client, s.oversubscribe), (1, false));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn au8cu4_resolves_as_measured() {
    let s = Script::load(Path::new(INPUTS).join("good/au8cu4_rss.toml")).unwrap();
    assert_eq!(s.search.algorithm, Algorithm::Rss);
    assert_eq!(s.search.iterations, 30);
    assert_eq!(s.search.seed, Some(42));
    assert_eq!(s.workers(), 2);
    assert!(s.search.output.is_absolute() && s.search.output.ends_with("good/run-au8cu4"));
    assert_eq!(
        s.environment.numbers,
        [[79u8; 8].as_slice(), &[29; 4]].concat()
    );
    assert_eq!(s.environment.confinement.corner, [3.0; 3]);
    assert_eq!(s.environment.confinement.cell[1], [0.0, 6.0, 0.0]);
    assert_eq!(s.calculator, CalculatorSettings::Emt);
    assert_eq!(s.generators.len(), 1);
    assert_eq!(
        s.generators[0].kind,
        GeneratorKind::Random {
            c1: 0.75,
            c2: 1.25,
            contiguous: true,
            attempts: 100
        }
    );
    assert_eq!(s.generators[0].count, CountSchedule::Fixed(4));
    assert_eq!(s.candidates_at(17), 4);
    assert_eq!(s.sampler, None);
    let r = s.relax.as_ref().unwrap();
    assert_eq!((r.fmax, r.steps, r.start_iteration), (0.05, 200, 0));
}

#[test]
fn defaults_are_filled_in() {
    let text = r#"
[search]
algorithm = "bh"
iterations = 5
[environment]
symbols = "Ar13"
cell = [20, 20, 20]
[calculator]
kind = "lj"
[[generator]]
kind = "rattle"
[sampler]
kind = "metropolis"
temperature = 0.8
"#;
    let s = Script::parse(text, Path::new("/tmp/x/lj13.toml")).unwrap();
    assert_eq!(s.search.output, Path::new("/tmp/x/lj13"));
    assert_eq!(s.search.seed, None);
    assert_eq!(
        s.calculator,
        CalculatorSettings::Lj {
            epsilon: 1.0,
            sigma: 1.0,
            cutoff: 3.0,
            shift: true,
            energy_unit: "ε".into()
        }
    );
    assert_eq!(s.environment.pbc, [false; 3]);
    assert_eq!(s.environment.confinement.cell, s.environment.cell);
    assert_eq!(
        s.generators[0].kind,
        GeneratorKind::Rattle {
            n_rattle: 3,
            amplitude: 3.0,
            c1: 0.75,
            c2: 1.25,
            attempts: 100
        }
    );
    assert_eq!(s.generators[0].count, CountSchedule::Fixed(1));
    assert_eq!(
        s.sampler,
        Some(SamplerSettings::Metropolis { temperature: 0.8 })
    );
    assert!(s.relax.is_none());
    assert!(s.environment.template.is_empty());
}

#[test]
fn missing_file_is_an_error() {
    let e = Script::load("/nonexistent/dir/s.toml").unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert!(e.to_string().contains("cannot read the file"), "{e}");
}
