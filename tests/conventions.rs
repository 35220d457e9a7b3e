//! The conventions a command-line user expects, through the real binary: version, colour,
//! explanations, completions, the manual page, CI-native output validated against the
//! schemas in `schemas/`, silencing warnings on purpose, and `compile`'s JSON report.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::support::run_in;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn example() -> String {
    fs::read_to_string(repo().join("examples/prod-mesh.yaml")).unwrap()
}

/// The example with one gateway on a revision its cluster does not run.
fn unknown_revision() -> String {
    let text = example();
    let at = text.find("        revision: 1-19\n").unwrap();
    format!(
        "{}        revision: 1-18\n{}",
        &text[..at],
        &text[at + "        revision: 1-19\n".len()..]
    )
}

/// `stdout` parsed as JSON and valid against `schemas/<schema>`.
fn valid_json(stdout: &str, schema: &str) -> Value {
    let json: Value = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let schema: Value =
        serde_json::from_str(&fs::read_to_string(repo().join("schemas").join(schema)).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{stdout}");
    json
}

#[test]
fn version_names_the_commit_and_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["--version"], None);
    assert_eq!(out.status, 0);
    let v = out.stdout.trim();
    assert!(
        v.starts_with(&format!("meshplan {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    assert!(
        v.contains("release catalog: Istio 1.6 to 1.31, newest 1.31."),
        "{v}"
    );
}

#[test]
fn colour_follows_the_terminal_the_flag_and_no_color() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("inv.yaml"), example()).unwrap();
    let args = ["check", "inv.yaml", "--to", "1.20.2"];
    // Not a terminal (and NO_COLOR set by the harness): plain text.
    let out = run_in(dir.path(), &args, None);
    assert!(!out.stderr.contains('\x1b'), "{}", out.stderr);
    assert!(out.stderr.contains("warning[end-of-life]"));
    let mut always = args.to_vec();
    always.extend(["--color", "always"]);
    let out = run_in(dir.path(), &always, None);
    assert!(
        out.stderr.contains("\x1b[1;33mwarning[end-of-life]\x1b[0m"),
        "{}",
        out.stderr
    );
    // Colour never reaches standard output.
    assert!(!out.stdout.contains('\x1b'));
    // Nor progress, away from a terminal: the summary line has no time, so logs compare.
    let out = run_in(
        dir.path(),
        &[
            "compile", "inv.yaml", "--to", "1.20.2", "--out", "plan", "--color", "always",
        ],
        None,
    );
    assert!(!out.stderr.contains("compiling:"), "{}", out.stderr);
    assert_eq!(
        out.stdout.lines().last().unwrap_or_default(),
        "plan: created 60, updated 0, removed 0, unchanged 0"
    );
    let mut never = args.to_vec();
    never.extend(["--color", "never"]);
    assert!(!run_in(dir.path(), &never, None).stderr.contains('\x1b'));
}

#[test]
fn every_code_has_an_explanation() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["explain", "--list"], None);
    assert_eq!(out.status, 0);
    let codes: Vec<&str> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert!(codes.len() > 30, "{codes:?}");
    for code in codes {
        let out = run_in(dir.path(), &["explain", code], None);
        assert_eq!(out.status, 0, "{code}: {}", out.stderr);
        assert!(
            out.stdout.starts_with(&format!("{code}: ")),
            "{}",
            out.stdout
        );
        assert!(out.stdout.lines().count() >= 3, "{code} has no long text");
    }
    let out = run_in(dir.path(), &["explain", "value-invalid"], None);
    assert_eq!(out.status, 2);
    assert!(
        out.stderr.contains("did you mean `values-invalid`?"),
        "{}",
        out.stderr
    );
}

#[test]
fn completions_and_the_manual_page() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "_meshplan()"),
        ("zsh", "#compdef meshplan"),
        ("fish", "complete -c meshplan"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = run_in(dir.path(), &["completions", shell], None);
        assert_eq!(out.status, 0, "{shell}");
        assert!(
            out.stdout.contains(marker),
            "{shell}: {}",
            &out.stdout[..200.min(out.stdout.len())]
        );
        assert!(
            out.stdout.contains("compile"),
            "{shell} completes subcommands"
        );
    }
    let out = run_in(dir.path(), &["man"], None);
    assert_eq!(out.status, 0);
    assert!(out.stdout.contains(".TH meshplan 1"));
    assert!(out.stdout.contains("compile"));
}

#[test]
fn check_speaks_github_and_sarif() {
    let dir = tempfile::tempdir().unwrap();
    let bad = unknown_revision();
    fs::write(dir.path().join("inv.yaml"), &bad).unwrap();
    let out = run_in(
        dir.path(),
        &["check", "inv.yaml", "--to", "1.20.2", "--output", "github"],
        None,
    );
    assert_eq!(out.status, 1);
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("::error file=inv.yaml,line=")
            && first.contains(",title=unknown-revision::"),
        "{}",
        out.stdout
    );
    // Dated findings stay out of standard output.
    assert!(!out.stdout.contains("end-of-life"));

    let out = run_in(
        dir.path(),
        &["check", "inv.yaml", "--to", "1.20.2", "--output", "sarif"],
        None,
    );
    assert_eq!(out.status, 1);
    let sarif: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let r = &sarif["runs"][0]["results"][0];
    assert_eq!(r["ruleId"], "unknown-revision");
    assert_eq!(r["level"], "error");
    assert_eq!(
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "inv.yaml"
    );
    assert!(
        r["locations"][0]["physicalLocation"]["region"]["startLine"]
            .as_u64()
            .unwrap()
            > 1
    );
}

#[test]
fn json_outputs_follow_their_schemas() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("inv.yaml"), example()).unwrap();
    for to in ["1.20.2", "1.22.8", "1.18.0"] {
        let out = run_in(
            dir.path(),
            &["check", "inv.yaml", "--to", to, "--output", "json"],
            None,
        );
        valid_json(&out.stdout, "check-output.schema.json");
    }
    let out = run_in(dir.path(), &["versions", "--output", "json"], None);
    valid_json(&out.stdout, "versions-output.schema.json");

    let compile = |extra: &[&str]| {
        let mut args = vec![
            "compile", "inv.yaml", "--to", "1.20.2", "--out", "plan", "--output", "json",
        ];
        args.extend_from_slice(extra);
        run_in(dir.path(), &args, None)
    };
    let out = compile(&[]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let json = valid_json(&out.stdout, "compile-output.schema.json");
    assert_eq!(json["upToDate"], false);
    assert!(json["created"].as_u64().unwrap() > 10);
    assert!(
        json["changes"][0]["path"]
            .as_str()
            .unwrap()
            .starts_with("plan/")
    );

    let edited = dir.path().join("plan/PLAN.md");
    fs::write(&edited, "edited\n").unwrap();
    let out = compile(&["--check"]);
    assert_eq!(out.status, 3);
    let json = valid_json(&out.stdout, "compile-output.schema.json");
    assert_eq!(json["upToDate"], false);
    assert_eq!(
        json["changes"],
        serde_json::json!([{"change": "updated", "path": "plan/PLAN.md"}])
    );
}

#[test]
fn check_diffs_name_files_from_where_the_command_runs() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("inv.yaml"), example()).unwrap();
    let args = ["compile", "inv.yaml", "--to", "1.20.2", "--out", "out/plan"];
    assert_eq!(run_in(dir.path(), &args, None).status, 0);
    fs::write(dir.path().join("out/plan/PLAN.md"), "edited\n").unwrap();
    let mut check = args.to_vec();
    check.push("--check");
    let out = run_in(dir.path(), &check, None);
    assert_eq!(out.status, 3);
    assert!(
        out.stdout
            .contains("--- a/out/plan/PLAN.md\n+++ b/out/plan/PLAN.md"),
        "{}",
        out.stdout
    );
}

#[test]
fn warnings_are_silenced_only_on_purpose() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("inv.yaml"), example()).unwrap();
    let out = run_in(dir.path(), &["check", "inv.yaml", "--to", "1.20.2"], None);
    assert!(out.stderr.contains("end-of-life"));
    let out = run_in(
        dir.path(),
        &[
            "check",
            "inv.yaml",
            "--to",
            "1.20.2",
            "--allow",
            "end-of-life",
        ],
        None,
    );
    assert_eq!(out.status, 0);
    assert!(!out.stderr.contains("end-of-life"), "{}", out.stderr);
    // An error cannot be allowed away.
    let bad = unknown_revision();
    fs::write(dir.path().join("bad.yaml"), bad).unwrap();
    let out = run_in(
        dir.path(),
        &[
            "check",
            "bad.yaml",
            "--to",
            "1.20.2",
            "--allow",
            "unknown-revision",
        ],
        None,
    );
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("unknown-revision"));
    let out = run_in(
        dir.path(),
        &[
            "check",
            "inv.yaml",
            "--to",
            "1.20.2",
            "--allow",
            "end-of-lif",
        ],
        None,
    );
    assert_eq!(out.status, 2);
    assert!(
        out.stderr.contains("did you mean `end-of-life`?"),
        "{}",
        out.stderr
    );
}

#[test]
fn yaml_mistakes_point_at_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let head = "apiVersion: meshplan.dev/v1alpha1\nkind: MeshInventory\nname: m\nclusters:\n  - name: c\n    kubernetesVersion: \"1.28\"\n    istio:\n      version: 1.19.6\n";
    let check = |name: &str, tail: &str| {
        fs::write(dir.path().join(name), format!("{head}{tail}")).unwrap();
        run_in(dir.path(), &["check", name, "--to", "1.20.2"], None)
    };
    // One space short: which columns disagree.
    let out = check("indent.yaml", "     revision: 1-19\n");
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("--> indent.yaml:9:6"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("this line starts in column 6, line 8 in column 7"),
        "{}",
        out.stderr
    );
    // A tab: shown on its own line, not on the token before it.
    let out = check("tab.yaml", "\trevision: 1-19\n");
    assert!(out.stderr.contains("--> tab.yaml:9:1"), "{}", out.stderr);
    assert!(out.stderr.contains("indent with spaces"));
    // An unquoted revision: the fix that passes, not "quote it", which fails next.
    let out = check("rev.yaml", "      revision: 1.19\n");
    assert!(out.stderr.contains("write 1-19"), "{}", out.stderr);
    assert!(!out.stderr.contains("write it in quotes"), "{}", out.stderr);
}

#[test]
fn an_unchanged_rerun_trusts_only_what_it_recorded() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("inv.yaml"), example()).unwrap();
    let args = ["compile", "inv.yaml", "--to", "1.20.2", "--out", "plan"];
    let first = run_in(dir.path(), &args, None);
    assert_eq!(first.status, 0);
    let plan = dir.path().join("plan");
    assert!(plan.join(".meshplan/cache").is_file());
    assert_eq!(
        fs::read_to_string(plan.join(".meshplan/.gitignore"))
            .unwrap()
            .lines()
            .last(),
        Some("cache")
    );
    let total = "created 60, updated 0, removed 0, unchanged 0";
    assert!(first.stdout.contains(total), "{}", first.stdout);
    // Unchanged: every file is reported unchanged, and --check agrees.
    let again = run_in(dir.path(), &args, None);
    assert!(
        again
            .stdout
            .contains("created 0, updated 0, removed 0, unchanged 60"),
        "{}",
        again.stdout
    );
    let mut check = args.to_vec();
    check.push("--check");
    assert_eq!(run_in(dir.path(), &check, None).status, 0);
    // A hand edit that keeps the size is still found, by --check and by a re-run.
    let f = plan.join("01-east/hop-01/20-control-plane/istiod.values.yaml");
    let text = fs::read_to_string(&f).unwrap();
    fs::write(&f, text.replace("autoscaleMin: 2", "autoscaleMin: 3")).unwrap();
    let out = run_in(dir.path(), &check, None);
    assert_eq!(out.status, 3, "{}", out.stdout);
    assert!(
        out.stdout.contains("+  autoscaleMin: 2") || out.stdout.contains("+    autoscaleMin: 2"),
        "{}",
        out.stdout
    );
    let out = run_in(dir.path(), &args, None);
    assert!(out.stdout.contains("updated 1"), "{}", out.stdout);
    assert_eq!(fs::read_to_string(&f).unwrap(), text);
    // Other inputs (another target) never take the shortcut.
    let other = run_in(
        dir.path(),
        &["compile", "inv.yaml", "--to", "1.20.8", "--out", "plan"],
        None,
    );
    assert!(!other.stdout.contains("updated 0,"), "{}", other.stdout);
}

#[test]
fn a_rerun_after_one_cluster_changed_writes_what_a_fresh_compile_writes() {
    let dir = tempfile::tempdir().unwrap();
    let text = example();
    fs::write(dir.path().join("inv.yaml"), &text).unwrap();
    let args = ["compile", "inv.yaml", "--to", "1.20.2", "--out", "plan"];
    assert_eq!(run_in(dir.path(), &args, None).status, 0);
    // Only the first cluster's values change.
    let at = text.find("autoscaleMin: 2").unwrap();
    let changed = format!(
        "{}autoscaleMin: 3{}",
        &text[..at],
        &text[at + "autoscaleMin: 2".len()..]
    );
    fs::write(dir.path().join("inv.yaml"), &changed).unwrap();
    let mut check = args.to_vec();
    check.extend(["--check", "--output", "json"]);
    let out = run_in(dir.path(), &check, None);
    assert_eq!(out.status, 3);
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    let changes: Vec<&str> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert!(!changes.is_empty());
    assert!(
        changes.iter().all(|p| !p.contains("02-west")),
        "the unchanged cluster is kept: {changes:?}"
    );
    assert_eq!(run_in(dir.path(), &args, None).status, 0);
    // The same bytes as a fresh compile of the changed inventory.
    let fresh = tempfile::tempdir().unwrap();
    fs::write(fresh.path().join("inv.yaml"), &changed).unwrap();
    assert_eq!(run_in(fresh.path(), &args, None).status, 0);
    let a = crate::support::list_tree(&dir.path().join("plan"));
    let b = crate::support::list_tree(&fresh.path().join("plan"));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in &a {
        assert_eq!(v, &b[k], "{k}");
    }
    // And a hand edit inside the kept cluster is still found.
    let f = dir
        .path()
        .join("plan/02-west/hop-01/20-control-plane/istiod.values.yaml");
    let original = fs::read_to_string(&f).unwrap();
    fs::write(&f, format!("{original}# hand edit\n")).unwrap();
    fs::write(dir.path().join("inv.yaml"), &text).unwrap();
    let out = run_in(dir.path(), &args, None);
    assert_eq!(out.status, 0);
    assert_eq!(fs::read_to_string(&f).unwrap(), original);
}
