//! Repository invariants, checked by `cargo test` rather than by separate CI scripts.

use std::fs;
use std::path::{Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn built_in_template_list_matches_the_templates_directory() {
    let mut on_disk: Vec<String> = fs::read_dir(repo().join("templates"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let listed: Vec<String> = meshplan::render::TEMPLATES
        .iter()
        .map(|(n, _)| (*n).to_string())
        .collect();
    assert_eq!(listed, on_disk);
}

#[test]
fn text_files_are_canonical() {
    for dir in ["templates", "schemas", "golden", "examples", "src/data"] {
        for p in files_under(&repo().join(dir)) {
            let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let name = p.display();
            assert!(!text.contains('\r'), "{name}: CR line ending");
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "{name}: no final newline"
            );
            assert!(!text.ends_with("\n\n"), "{name}: blank lines at the end");
            let yaml = p.extension().is_some_and(|e| e == "yaml" || e == "j2");
            assert!(!(yaml && text.contains('\t')), "{name}: tab in YAML");
        }
    }
}

#[test]
fn every_diagnostic_code_is_documented() {
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    for code in meshplan::diagnostic::Code::ALL {
        assert!(
            readme.contains(&format!("`{}`", code.name())),
            "README does not list `{}`",
            code.name()
        );
    }
}

#[test]
fn readme_test_command_is_what_ci_runs() {
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let ci = fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(
        readme.contains("bash .ci/run"),
        "README names the test command"
    );
    assert!(ci.contains("cargo test"), ".ci/run runs the tests");
}

#[test]
fn no_debugging_leftovers_in_src() {
    for p in files_under(&repo().join("src")) {
        if p.extension().is_some_and(|e| e == "rs") {
            let text = fs::read_to_string(&p).unwrap();
            for bad in ["dbg!(", "todo!(", "unimplemented!("] {
                assert!(!text.contains(bad), "{}: {bad}", p.display());
            }
        }
    }
}
