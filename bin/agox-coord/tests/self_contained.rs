//! The repository is self-contained: a fresh clone with nothing beside it builds and
//! passes its tests. Running the whole test suite a second time inside a clone would
//! double CI's time, so two cheap checks stand in for it:
//!
//! * no tracked file other than prose (`*.md`) names a place outside the repository
//!   (a sibling `shared/` folder, `/work/…`, a home directory);
//! * in a `git clone` of the committed tree, in a temporary directory with nothing
//!   beside it, `cargo metadata` resolves the workspace (every path dependency is
//!   inside), and every path a test builds from its crate's directory
//!   (`concat!(env!("CARGO_MANIFEST_DIR"), "/../…")`, `format!("{}/../…",
//!   env!("CARGO_MANIFEST_DIR"))`) or includes (`include_str!`, `include_bytes!`)
//!   stays inside the clone and exists there.
//!
//! The clone holds what is committed: uncommitted files are not seen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Component, Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// This file names the forbidden places itself; it is the one exception.
const THIS_FILE: &str = "bin/agox-coord/tests/self_contained.rs";

fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running git (the repository's tests need git)");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Files tracked by git, relative to `root`. `None` when `root` is not a git work
/// tree (an unpacked source archive): then there is no clone to check.
fn tracked_files(root: &Path) -> Option<Vec<String>> {
    if !root.join(".git").exists() {
        eprintln!(
            "{} is not a git work tree: nothing to check",
            root.display()
        );
        return None;
    }
    let out = git(root, &["ls-files", "-z"]);
    Some(
        out.stdout
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect(),
    )
}

/// Places outside the repository that code, scripts and configuration must not name.
fn forbidden() -> Vec<String> {
    // Assembled from pieces so that this file's own text does not contain them.
    [
        ["../", "shared"],
        ["/wo", "rk/"],
        ["/ho", "me/"],
        ["/ro", "ot/"],
        ["/Us", "ers/"],
    ]
    .iter()
    .map(|p| p.concat())
    .collect()
}

#[test]
fn no_tracked_file_names_a_place_outside_the_repository() {
    let root = repo();
    let Some(files) = tracked_files(&root) else {
        return;
    };
    let patterns = forbidden();
    let mut found = Vec::new();
    for f in &files {
        if f.ends_with(".md") || f == THIS_FILE {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(f)) else {
            continue; // binary
        };
        for (n, line) in text.lines().enumerate() {
            for p in &patterns {
                if line.contains(p.as_str()) {
                    found.push(format!("{f}:{}: names `{p}`: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "tracked files name places outside the repository:\n{}",
        found.join("\n")
    );
}

/// `path` with `.` and `..` resolved lexically (the path need not exist).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The directory of the crate a source file belongs to (nearest `Cargo.toml` above).
fn crate_dir(root: &Path, file: &Path) -> PathBuf {
    let mut dir = file.parent().unwrap_or(root).to_path_buf();
    while !dir.join("Cargo.toml").is_file() && dir != root {
        dir.pop();
    }
    dir
}

/// String literals of a Rust source that are paths relative to its crate's
/// directory (`"/../x"`, `"{}/../x"`) or arguments of `include_str!`/`include_bytes!`
/// (relative to the file): `(is_include, literal)`.
fn path_literals(text: &str) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices('"') {
        let rest = &text[i + 1..];
        let Some(end) = rest.find('"') else { break };
        let lit = &rest[..end];
        let before = text[..i].trim_end();
        let include = before.ends_with("include_str!(") || before.ends_with("include_bytes!(");
        if include || lit.starts_with("/../") || lit.starts_with("{}/../") {
            out.push((include, lit.to_owned()));
        }
    }
    out
}

#[test]
fn a_clone_with_nothing_beside_it_has_every_path_the_tests_open() {
    let root = repo();
    let Some(_) = tracked_files(&root) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let clone = tmp.path().join("agox-rs");
    git(
        tmp.path(),
        &["clone", "--quiet", root.to_str().unwrap(), "agox-rs"],
    );

    let meta = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&clone)
        .output()
        .unwrap();
    assert!(
        meta.status.success(),
        "cargo metadata in a fresh clone: {}",
        String::from_utf8_lossy(&meta.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).unwrap();
    let clone_real = clone.canonicalize().unwrap();
    for p in meta["packages"].as_array().unwrap() {
        let manifest = Path::new(p["manifest_path"].as_str().unwrap());
        assert!(
            manifest.starts_with(&clone_real),
            "package {} lives outside the clone: {}",
            p["name"],
            manifest.display()
        );
    }

    let mut checked = 0;
    let mut bad = Vec::new();
    for f in tracked_files(&clone).unwrap() {
        if !f.ends_with(".rs") || f == THIS_FILE {
            continue;
        }
        let file = clone_real.join(&f);
        let text = std::fs::read_to_string(&file).unwrap();
        for (include, lit) in path_literals(&text) {
            let joined = if include {
                file.parent().unwrap().join(&lit)
            } else {
                let rel = lit.trim_start_matches("{}").trim_start_matches('/');
                crate_dir(&clone_real, &file).join(rel)
            };
            // Up to the first placeholder (`{name}`): that part must exist.
            let fixed: PathBuf = normalize(&joined)
                .components()
                .take_while(|c| !c.as_os_str().to_string_lossy().contains('{'))
                .collect();
            checked += 1;
            if !fixed.starts_with(&clone_real) {
                bad.push(format!("{f}: \"{lit}\" leaves the repository"));
            } else if !fixed.exists() {
                bad.push(format!(
                    "{f}: \"{lit}\" is not in a fresh clone ({})",
                    fixed.display()
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // The reference data alone is read through several such paths.
    assert!(
        checked >= 5,
        "only {checked} paths found: is the scan broken?"
    );
}
