//! Golden tests: every directory under `golden/` is a case. `case.yaml` gives the arguments and
//! the expected exit status; `stdout` and `stderr` (absent = empty) and `expected/` (the complete
//! output tree of `--out out`) are compared byte for byte, with a diff on failure.
//!
//! Bless after an intended change: `MESHPLAN_BLESS=1 cargo test --test integration golden`, then
//! review `git diff golden/`. Blessing is refused when `CI` is set.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::support::{diff_text, list_tree, run_in};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// What the case shows, one line.
    #[allow(dead_code)]
    description: String,
    args: Vec<String>,
    status: i32,
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .expect("golden/ exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn blessing() -> bool {
    let bless = std::env::var_os("MESHPLAN_BLESS").is_some();
    assert!(
        !(bless && std::env::var_os("CI").is_some()),
        "refusing to bless golden files in CI"
    );
    bless
}

/// Copies the case's inputs (everything but the expectations) into a fresh directory.
fn stage(case: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in fs::read_dir(case).unwrap().filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if matches!(
            name.as_str(),
            "case.yaml" | "expected" | "stdout" | "stderr"
        ) {
            continue;
        }
        copy(&e.path(), &dir.path().join(&name));
    }
    dir
}

/// Copies a file, or a directory with everything in it (saved cluster state for `import`).
fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap().filter_map(Result::ok) {
            copy(&e.path(), &to.join(e.file_name()));
        }
    } else if from.is_file() {
        fs::copy(from, to).unwrap();
    }
}

#[test]
fn golden() {
    let bless = blessing();
    let mut failures = Vec::new();
    let all = cases();
    assert!(
        all.len() >= 10,
        "expected the golden cases, found {}",
        all.len()
    );
    for case_dir in all {
        let name = case_dir.file_name().unwrap().to_string_lossy().into_owned();
        let case: Case =
            serde_yaml::from_str(&fs::read_to_string(case_dir.join("case.yaml")).unwrap())
                .unwrap_or_else(|e| panic!("{name}/case.yaml: {e}"));
        let work = stage(&case_dir);
        let out = run_in(work.path(), &case.args, None);
        let tree_dir = work.path().join("out");
        let actual_tree = if tree_dir.exists() {
            list_tree(&tree_dir)
        } else {
            BTreeMap::new()
        };

        if bless {
            // Blessing records what a case does, never a case that fails differently.
            assert_eq!(
                out.status, case.status,
                "golden/{name}: refusing to bless exit status {} (case.yaml says {})\n{}",
                out.status, case.status, out.stderr
            );
            write_expect(&case_dir.join("stdout"), &out.stdout);
            write_expect(&case_dir.join("stderr"), &out.stderr);
            let exp = case_dir.join("expected");
            if exp.exists() {
                fs::remove_dir_all(&exp).unwrap();
            }
            for (p, text) in &actual_tree {
                let f = exp.join(p);
                fs::create_dir_all(f.parent().unwrap()).unwrap();
                fs::write(f, text).unwrap();
            }
            continue;
        }

        let mut problems = Vec::new();
        if out.status != case.status {
            problems.push(format!(
                "exit status {} (expected {})\nstderr:\n{}",
                out.status, case.status, out.stderr
            ));
        }
        let ok_case = name.starts_with("ok-");
        if ok_case != (case.status == 0) {
            problems.push("`ok-` cases must exit 0 and `err-` cases must not".to_string());
        }
        for (file, actual) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            let expected = fs::read_to_string(case_dir.join(file)).unwrap_or_default();
            if &expected != actual {
                problems.push(format!("{file} differs:\n{}", diff_text(&expected, actual)));
            }
        }
        let expected_tree = if case_dir.join("expected").exists() {
            list_tree(&case_dir.join("expected"))
        } else {
            BTreeMap::new()
        };
        problems.extend(compare_trees(&expected_tree, &actual_tree));

        // Every successful compile is deterministic and idempotent.
        if ok_case && case.args.first().map(String::as_str) == Some("compile") {
            let again = run_in(work.path(), &case.args, None);
            if !again.stdout.contains("created 0, updated 0, removed 0") {
                problems.push(format!("a second run changed files: {}", again.stdout));
            }
            let mut check_args = case.args.clone();
            check_args.push("--check".into());
            let check = run_in(work.path(), &check_args, None);
            if check.status != 0 || !check.stdout.is_empty() {
                problems.push(format!(
                    "--check after compile: exit {}\n{}",
                    check.status, check.stdout
                ));
            }
            let fresh = stage(&case_dir);
            run_in(fresh.path(), &case.args, None);
            if list_tree(&fresh.path().join("out")) != actual_tree {
                problems.push("two runs into fresh directories gave different trees".to_string());
            }
        }
        if !problems.is_empty() {
            failures.push(format!("=== golden/{name}\n{}", problems.join("\n")));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nIf the change is intended: MESHPLAN_BLESS=1 cargo test --test integration golden, then review git diff golden/",
        failures.join("\n\n")
    );
}

fn write_expect(path: &Path, text: &str) {
    if text.is_empty() {
        let _ = fs::remove_file(path);
    } else {
        fs::write(path, text).unwrap();
    }
}

fn compare_trees(
    expected: &BTreeMap<String, String>,
    actual: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (p, e) in expected {
        match actual.get(p) {
            None => problems.push(format!("missing file: {p}")),
            Some(a) if a != e => problems.push(format!("{p} differs:\n{}", diff_text(e, a))),
            Some(_) => {}
        }
    }
    for p in actual.keys() {
        if !expected.contains_key(p) {
            problems.push(format!("unexpected file: {p}"));
        }
    }
    problems
}
