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

#[test]
fn gofee_defaults_are_agox_gofee_config() {
    use agox_search::script::{
        AcquisitionSettings, EvaluatorKind, KernelSettings, ModelSettings, Optimizer,
    };
    let s = Script::load(Path::new(INPUTS).join("good/gofee_defaults.toml")).unwrap();
    assert_eq!(s.search.algorithm, Algorithm::Gofee);
    // 10 random candidates, from AGOX's iteration 5 (our 4) 2 random and 8 rattled.
    let counts = |i| {
        s.generators
            .iter()
            .map(|g| g.count.at(i))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        (counts(0), counts(3), counts(4)),
        (vec![10, 0], vec![10, 0], vec![2, 8])
    );
    assert!(matches!(
        s.generators[1].kind,
        GeneratorKind::Rattle { n_rattle: 3, amplitude, .. } if amplitude == 3.0
    ));
    assert_eq!(s.sampler, Some(SamplerSettings::kmeans()));
    assert_eq!(
        s.sampler,
        Some(SamplerSettings::Kmeans {
            sample_size: 10,
            max_energy: 5.0,
            n_init: 10
        })
    );
    let r = s.relax.as_ref().unwrap();
    assert_eq!((r.fmax, r.steps, r.start_iteration), (0.05, 100, 1));
    assert_eq!(
        s.evaluator.kind,
        EvaluatorKind::Relax {
            optimizer: Optimizer::Bfgs,
            fmax: 0.05,
            steps: 1,
            store_trajectory: true
        }
    );
    assert_eq!(s.evaluator.count, Some(1));
    assert_eq!(s.acquisition, Some(AcquisitionSettings::Lcb { kappa: 2.0 }));
    let Some(ModelSettings::Gpr(m)) = &s.model else {
        panic!("a model")
    };
    assert_eq!((m.n_optimize, m.optimizer_maxiter), (2, 100));
    assert_eq!(m.kernel, KernelSettings::default());
    assert_eq!(m.prior, Some(agox_models::prior::Repulsive::default()));
    // The settings read back from their JSON (run.json), and a script written out
    // in full means the same.
    let back: Script = serde_json::from_str(&s.to_json()).unwrap();
    assert_eq!(back, s);
    let full =
        Script::load(Path::new(INPUTS).join("../../examples/scripts/gofee_au8cu4.toml")).unwrap();
    assert_eq!(
        (
            &full.generators,
            &full.sampler,
            &full.relax,
            &full.evaluator,
            &full.model,
            &full.acquisition
        ),
        (
            &s.generators,
            &s.sampler,
            &s.relax,
            &s.evaluator,
            &s.model,
            &s.acquisition
        )
    );
}

#[test]
fn sparse_model_defaults_are_agox_sparse_gpr_and_the_example_writes_them_out() {
    use agox_search::script::{ModelSettings, SparseDescriptorSettings, SparseModelSettings};
    let full =
        Script::load(Path::new(INPUTS).join("../../examples/scripts/gofee_sparse_au8cu4.toml"))
            .unwrap();
    let Some(ModelSettings::SparseGpr(m)) = &full.model else {
        panic!("a sparse model: {:?}", full.model)
    };
    // Every value written out is the default but n_optimize.
    let d = SparseModelSettings::default();
    assert_eq!(
        m,
        &SparseModelSettings {
            n_optimize: 8,
            ..d.clone()
        }
    );
    assert_eq!((d.n_inducing, d.noise, d.centralize), (1000, 0.01, true));
    assert!(matches!(
        d.descriptor,
        SparseDescriptorSettings::SimpleFingerprint(p)
            if p == agox_models::simple_fingerprint::SimpleFingerprintParams::default()
    ));
    let k = d.kernel.kernel().unwrap();
    assert_eq!(k, agox_models::isotropic::ConstantRbf::default());
    // The same search as the full Gaussian process's example, model aside.
    let gpr =
        Script::load(Path::new(INPUTS).join("../../examples/scripts/gofee_au8cu4.toml")).unwrap();
    assert_eq!(
        (
            &full.generators,
            &full.sampler,
            &full.relax,
            &full.evaluator
        ),
        (&gpr.generators, &gpr.sampler, &gpr.relax, &gpr.evaluator)
    );
    let back: Script = serde_json::from_str(&full.to_json()).unwrap();
    assert_eq!(back, full);
    // The global Fingerprint with its own keys, and the kmeans sampler clusters by it.
    let g = Script::load(Path::new(INPUTS).join("good/gofee_sparse_fingerprint.toml")).unwrap();
    let Some(m @ ModelSettings::SparseGpr(s)) = &g.model else {
        panic!("a sparse model: {:?}", g.model)
    };
    assert!(matches!(
        s.descriptor,
        SparseDescriptorSettings::Fingerprint(f) if f.rc1 == 5.0
    ));
    assert!(s.train_forces && s.n_inducing == 200 && s.noise == 0.2);
    assert_eq!(m.descriptor().rc1, 5.0);
}
