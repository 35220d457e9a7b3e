//! Helpers shared by the integration tests: run the real binary, read output trees, show diffs.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// The date every test runs on, so that end-of-life warnings are reproducible.
pub const TODAY: &str = "2026-11-24";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_meshplan")
}

pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs meshplan in `dir` with a fixed environment, optionally feeding `stdin`.
pub fn run_in(dir: &Path, args: &[impl AsRef<str>], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(bin());
    cmd.current_dir(dir)
        .args(args.iter().map(AsRef::as_ref))
        .env_clear()
        .env("MESHPLAN_TODAY", TODAY)
        .env("NO_COLOR", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("meshplan runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Output {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn list_tree(dir: &Path) -> BTreeMap<String, String> {
    meshplan::write::list_files(dir).expect("tree is readable")
}

pub fn diff_text(expected: &str, actual: &str) -> String {
    similar::TextDiff::from_lines(expected, actual)
        .unified_diff()
        .context_radius(3)
        .header("expected", "actual")
        .to_string()
}
