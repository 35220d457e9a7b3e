//! CLI behaviour, through the real binary: the upgrade rules on the contract inventory, exit
//! codes, standard input, and the GitOps safety of `compile` (ownership, `--check`, crashes).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{TODAY, bin, list_tree, run_in};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn contract() -> String {
    fs::read_to_string(repo().join("examples/prod-mesh.yaml")).unwrap()
}

/// `check --output json` on an inventory given on stdin.
fn check_json(inventory: &str, extra: &[&str]) -> (i32, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["check", "-", "--output", "json"];
    args.extend_from_slice(extra);
    let out = run_in(dir.path(), &args, Some(inventory));
    let json: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    (out.status, json, out.stderr)
}

fn hops(json: &Value, cluster: usize) -> Vec<(String, String, String)> {
    json["clusters"][cluster]["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["from"].as_str().unwrap().to_string(),
                h["to"].as_str().unwrap().to_string(),
                h["strategy"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn hop(from: &str, to: &str, strategy: &str) -> (String, String, String) {
    (from.into(), to.into(), strategy.into())
}

#[test]
fn contract_inventory_paths() {
    let inv = contract();
    let (status, json, _) = check_json(&inv, &["--to", "1.20.2"]);
    assert_eq!(status, 0, "{json}");
    assert_eq!(hops(&json, 0), vec![hop("1.19.6", "1.20.2", "canary")]);

    let (status, json, _) = check_json(&inv, &["--to", "1.21.0"]);
    assert_eq!(status, 0);
    for c in 0..2 {
        assert_eq!(hops(&json, c), vec![hop("1.19.6", "1.21.0", "canary")]);
    }

    let (status, json, _) = check_json(&inv, &["--to", "1.22.8"]);
    assert_eq!(status, 0);
    assert_eq!(
        hops(&json, 1),
        vec![
            hop("1.19.6", "1.21.6", "canary"),
            hop("1.21.6", "1.22.8", "canary")
        ]
    );
    assert!(
        json["clusters"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("at most two minors")
    );

    let (status, json, _) = check_json(&inv, &["--to", "1.18.0"]);
    assert_eq!(status, 1);
    assert_eq!(json["ok"], false);
    assert!(
        json["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["code"] == "downgrade")
    );

    // Kubernetes 1.22 is not supported by Istio 1.20: refused, naming the cluster.
    let old_k8s = inv.replacen(
        "kubernetesVersion: \"1.28\"",
        "kubernetesVersion: \"1.22\"",
        1,
    );
    let (status, json, _) = check_json(&old_k8s, &["--to", "1.20.2"]);
    assert_eq!(status, 1);
    let d = json["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "kubernetes-unsupported")
        .expect("kubernetes-unsupported");
    assert!(d["message"].as_str().unwrap().contains("`east`"));
    assert!(d["help"][0].as_str().unwrap().contains("1.25-1.29"));
    assert_eq!(d["line"], 12);
}

#[test]
fn policies_and_forced_intermediates() {
    let inv = contract();
    let (_, json, _) = check_json(&inv, &["--to", "1.21.0", "--one-minor-at-a-time"]);
    assert_eq!(
        hops(&json, 0),
        vec![
            hop("1.19.6", "1.20.8", "canary"),
            hop("1.20.8", "1.21.0", "canary")
        ]
    );
    let strict = inv.replace(
        "  revisionFormat: minor",
        "  revisionFormat: minor\n  upgradePolicy: oneMinorAtATime",
    );
    let (_, json, _) = check_json(&strict, &["--to", "1.21.0"]);
    assert_eq!(hops(&json, 1).len(), 2);
    let in_place = inv.replace(
        "  revisionFormat: minor",
        "  revisionFormat: minor\n  controlPlaneUpgrade: inPlace",
    );
    let (_, json, _) = check_json(&in_place, &["--to", "1.21.0"]);
    assert_eq!(
        hops(&json, 0),
        vec![
            hop("1.19.6", "1.20.8", "inPlace"),
            hop("1.20.8", "1.21.0", "inPlace")
        ]
    );
    let (_, json, _) = check_json(&inv, &["--to", "1.22.8", "--via", "1.20.5"]);
    assert_eq!(
        hops(&json, 0),
        vec![
            hop("1.19.6", "1.20.5", "canary"),
            hop("1.20.5", "1.22.8", "canary")
        ]
    );
    // A minor alone means its newest known patch.
    let (_, json, _) = check_json(&inv, &["--to", "1.20"]);
    assert_eq!(json["target"], "1.20.8");
}

#[test]
fn dated_warnings_stay_out_of_stdout_and_files() {
    let (status, json, stderr) = check_json(&contract(), &["--to", "1.20.2"]);
    assert_eq!(status, 0);
    assert!(stderr.contains("warning[end-of-life]"), "{stderr}");
    assert!(!json.to_string().contains("end of life"));
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("inv.yaml"), contract()).unwrap();
    let out = run_in(
        dir.path(),
        &["compile", "inv.yaml", "--to", "1.20.2", "--out", "plan"],
        None,
    );
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(out.stderr.contains("end-of-life"));
    for (path, text) in list_tree(&dir.path().join("plan")) {
        assert!(!text.contains("end of life"), "{path}");
        assert!(!text.contains(TODAY), "{path}");
    }
}

#[test]
fn help_usage_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["--help"], None);
    assert_eq!(out.status, 0);
    assert!(
        out.stdout
            .contains("meshplan compile examples/prod-mesh.yaml --to 1.20.2 --out plan/")
    );
    assert!(out.stdout.contains("Exit codes"));
    let out = run_in(dir.path(), &["check", "inv.yaml"], None);
    assert_eq!(out.status, 2, "missing --to is a usage error");
    assert!(out.stderr.contains("--to"));
    let out = run_in(dir.path(), &["--version"], None);
    assert_eq!(out.status, 0);
    assert!(out.stdout.starts_with("meshplan "));
    let out = run_in(
        dir.path(),
        &["check", "missing.yaml", "--to", "1.20.2"],
        None,
    );
    assert_eq!(out.status, 4);
    assert!(out.stderr.contains("missing.yaml"));
}

#[test]
fn schema_and_versions_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["schema"], None);
    assert_eq!(out.status, 0);
    assert_eq!(
        out.stdout,
        fs::read_to_string(repo().join("schemas/inventory.schema.json")).unwrap()
    );
    let out = run_in(dir.path(), &["versions"], None);
    assert_eq!(out.status, 0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("MINOR"));
    assert!(lines[1].starts_with("1.6 "));
    assert!(out.stdout.contains("\n1.31 "));
    assert!(out.stdout.contains("1.8 (canary, alpha)"));
    let out = run_in(dir.path(), &["versions", "--output", "json"], None);
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["releases"].as_array().unwrap().len(), 26);
}

#[test]
fn a_newer_catalog_without_a_new_release() {
    let dir = tempfile::tempdir().unwrap();
    let builtin = fs::read_to_string(repo().join("src/data/istio-releases.yaml")).unwrap();
    let newer = format!(
        "{builtin}  - minor: \"1.32\"\n    ga: \"2026-11-20\"\n    latestPatch: 1.32.0\n    kubernetes: {{supported: [\"1.33\", \"1.34\"]}}\n    inClusterOperator: false\n    helm: beta\n    gatewayChart: true\n    crdTemplates: true\n    upgradeFrom: {{inPlace: [\"1.31\"], canary: [\"1.30\", \"1.31\"]}}\n"
    );
    fs::write(dir.path().join("catalog.yaml"), newer).unwrap();
    let inv = contract()
        .replace("1.19.6", "1.31.1")
        .replace("1-19", "1-31")
        .replace("\"1.28\"", "\"1.33\"")
        .replace("\"1.29\"", "\"1.34\"");
    fs::write(dir.path().join("inv.yaml"), inv).unwrap();
    let out = run_in(dir.path(), &["check", "inv.yaml", "--to", "1.32.0"], None);
    assert_eq!(out.status, 1, "the built-in catalog does not know 1.32");
    assert!(out.stderr.contains("unknown-target"));
    let out = run_in(
        dir.path(),
        &[
            "check",
            "inv.yaml",
            "--to",
            "1.32.0",
            "--catalog",
            "catalog.yaml",
        ],
        None,
    );
    assert_eq!(out.status, 0, "{}", out.stderr);
    fs::write(
        dir.path().join("bad.yaml"),
        "schemaVersion: 1\nreleases:\n  - minor: 1.32\n",
    )
    .unwrap();
    let out = run_in(dir.path(), &["versions", "--catalog", "bad.yaml"], None);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("bad.yaml:3:"), "{}", out.stderr);
}

#[test]
fn stdin_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(
        dir.path(),
        &["check", "-", "--to", "1.21.0"],
        Some(&contract()),
    );
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("hop 1: 1.19.6 -> 1.21.0  canary (revision 1-19 -> 1-21)")
    );
    let out = run_in(
        dir.path(),
        &["check", "-", "--to", "1.21.0"],
        Some("kind: [\n"),
    );
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("<stdin>:"), "{}", out.stderr);
}

#[test]
fn rejected_input_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("inv.yaml"), contract()).unwrap();
    let out = run_in(
        dir.path(),
        &["compile", "inv.yaml", "--to", "1.18.0", "--out", "plan"],
        None,
    );
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("nothing written"));
    assert!(!dir.path().join("plan").exists());
}

fn compile(dir: &Path, extra: &[&str]) -> crate::support::Output {
    let mut args = vec!["compile", "inv.yaml", "--to", "1.20.2", "--out", "plan"];
    args.extend_from_slice(extra);
    run_in(dir, &args, None)
}

#[test]
fn check_reports_drift_and_a_rerun_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("inv.yaml"), contract()).unwrap();
    assert_eq!(compile(dir.path(), &[]).status, 0);
    let clean = list_tree(&dir.path().join("plan"));
    let out = compile(dir.path(), &["--check"]);
    assert_eq!((out.status, out.stdout.as_str()), (0, ""));

    let plan = dir.path().join("plan");
    let edited = "01-east/hop-01/20-control-plane/istiod.values.yaml";
    let deleted = "02-west/hop-01/10-crds/base.values.yaml";
    fs::write(
        plan.join(edited),
        fs::read_to_string(plan.join(edited))
            .unwrap()
            .replace("autoscaleMin: 2", "autoscaleMin: 9"),
    )
    .unwrap();
    fs::remove_file(plan.join(deleted)).unwrap();
    fs::write(plan.join("01-east/NOTES.md"), "hand-written\n").unwrap();

    let out = compile(dir.path(), &["--check"]);
    assert_eq!(out.status, 3);
    assert!(out.stdout.contains(&format!("--- a/plan/{edited}")));
    assert!(
        out.stdout
            .contains("-    autoscaleMin: 9\n+    autoscaleMin: 2")
            || out
                .stdout
                .contains("-  autoscaleMin: 9\n+  autoscaleMin: 2"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(&format!("+++ b/plan/{deleted}")));
    assert!(!out.stdout.contains("NOTES.md"));
    assert!(
        out.stderr.contains("to create 1, to update 1"),
        "{}",
        out.stderr
    );
    assert_eq!(
        fs::read_to_string(plan.join("01-east/NOTES.md")).unwrap(),
        "hand-written\n"
    );

    let out = compile(dir.path(), &[]);
    assert_eq!(out.status, 0);
    assert!(
        out.stdout.contains("created 1, updated 1, removed 0"),
        "{}",
        out.stdout
    );
    let mut now = list_tree(&plan);
    assert_eq!(
        now.remove("01-east/NOTES.md").as_deref(),
        Some("hand-written\n")
    );
    assert_eq!(now, clean);

    // A version bump changes lines in the same files: no file is renamed.
    let files = |p: &std::path::Path| -> Vec<String> { list_tree(p).into_keys().collect() };
    let before = files(&plan);
    let bump = |to: &str| {
        run_in(
            dir.path(),
            &[
                "compile", "inv.yaml", "--to", to, "--out", "plan", "--quiet",
            ],
            None,
        )
    };
    let out = bump("1.21.0");
    assert_eq!((out.status, out.stdout.as_str()), (0, ""));
    assert_eq!(files(&plan), before);
    // A longer path adds a hop; going back removes what is no longer generated, and nothing else.
    assert_eq!(bump("1.22.8").status, 0);
    assert!(plan.join("01-east/hop-02").exists());
    assert_eq!(bump("1.21.0").status, 0);
    assert!(!plan.join("01-east/hop-02").exists());
    assert!(plan.join("01-east/NOTES.md").exists());
}

#[test]
fn refuses_directories_it_did_not_create() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("inv.yaml"), contract()).unwrap();
    let plan = dir.path().join("plan");
    fs::create_dir(&plan).unwrap();
    fs::write(plan.join("README.md"), "my repo\n").unwrap();
    let out = compile(dir.path(), &[]);
    assert_eq!(out.status, 4);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    assert_eq!(list_tree(&plan).len(), 1);
    let out = compile(dir.path(), &["--force"]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_eq!(
        fs::read_to_string(plan.join("README.md")).unwrap(),
        "my repo\n"
    );
}

#[test]
fn template_overrides() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("inv.yaml"), contract()).unwrap();
    fs::create_dir(dir.path().join("tpl")).unwrap();
    fs::write(
        dir.path().join("tpl/namespace.patch.yaml.j2"),
        "# custom\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {{ data.name }}\n  labels:\n{{ data.labels|toyaml(4) }}\n",
    )
    .unwrap();
    let out = compile(dir.path(), &["--templates", "tpl"]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let text = fs::read_to_string(
        dir.path()
            .join("plan/01-east/hop-01/50-data-plane/wave-01/01-bookinfo/00-namespace.patch.yaml"),
    )
    .unwrap();
    assert_eq!(
        text,
        "# custom\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: bookinfo\n  labels:\n    istio.io/rev: \"1-20\"\n"
    );
    // An undefined variable is an error, and nothing is written.
    fs::write(
        dir.path().join("tpl/namespace.patch.yaml.j2"),
        "{{ data.nope }}\n",
    )
    .unwrap();
    fs::remove_dir_all(dir.path().join("plan")).unwrap();
    let out = compile(dir.path(), &["--templates", "tpl"]);
    assert_eq!(out.status, 70);
    assert!(
        out.stderr.contains("namespace.patch.yaml.j2"),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("plan").exists());
    fs::write(dir.path().join("tpl/nope.j2"), "x").unwrap();
    assert_eq!(compile(dir.path(), &["--templates", "tpl"]).status, 4);
}

/// Kills `compile` at several moments while it writes a large plan; every later run converges to
/// exactly the tree a clean run writes, and a hand-written file survives.
#[test]
fn killed_runs_converge() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("inv.yaml"),
        meshplan::synthetic::inventory(2, 150, 3),
    )
    .unwrap();
    let clean_dir = tempfile::tempdir().unwrap();
    fs::write(
        clean_dir.path().join("inv.yaml"),
        meshplan::synthetic::inventory(2, 150, 3),
    )
    .unwrap();
    assert_eq!(compile(clean_dir.path(), &[]).status, 0);
    let clean = list_tree(&clean_dir.path().join("plan"));
    assert!(clean.len() > 2000);

    fs::create_dir_all(dir.path().join("plan")).unwrap();
    let mut killed = 0;
    for (i, delay_ms) in [5u64, 20, 40, 80, 120, 200].iter().enumerate() {
        if i == 3 {
            // Part-way, switch targets so that removals are interrupted too.
            let out = run_in(
                dir.path(),
                &[
                    "compile", "inv.yaml", "--to", "1.21.0", "--out", "plan", "--force",
                ],
                None,
            );
            assert_eq!(out.status, 0, "{}", out.stderr);
            fs::write(dir.path().join("plan/mine.txt"), "hand-written\n").unwrap();
        }
        let mut child = Command::new(bin())
            .current_dir(dir.path())
            .args([
                "compile", "inv.yaml", "--to", "1.20.2", "--out", "plan", "--force",
            ])
            .env("MESHPLAN_TODAY", TODAY)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(*delay_ms));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        killed > 0,
        "no run was killed while writing; the plan is too small to test this"
    );
    let out = compile(dir.path(), &["--force"]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let mut now = list_tree(&dir.path().join("plan"));
    assert_eq!(now.remove("mine.txt").as_deref(), Some("hand-written\n"));
    let extra: Vec<_> = now.keys().filter(|k| !clean.contains_key(*k)).collect();
    let missing: Vec<_> = clean.keys().filter(|k| !now.contains_key(*k)).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "extra {extra:?}, missing {missing:?}"
    );
    assert!(now == clean, "contents differ after convergence");
    assert_eq!(compile(dir.path(), &["--check"]).status, 0);
}

#[test]
fn examples_pass_check() {
    for e in fs::read_dir(repo().join("examples"))
        .unwrap()
        .filter_map(Result::ok)
    {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let dir = tempfile::tempdir().unwrap();
            let out = run_in(
                dir.path(),
                // The quick start's target, a supported release.
                &["check", p.to_str().unwrap(), "--to", "1.30.5"],
                None,
            );
            assert_eq!(out.status, 0, "{}: {}", p.display(), out.stderr);
        }
    }
}

/// Two compiles into one directory at the same time: the second is refused with a clear
/// message while the first holds the lock, and the directory always ends complete (a check
/// finds nothing to change, the manifest lists every file).
#[test]
fn concurrent_compiles_are_serialised_by_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("inv.yaml"),
        meshplan::synthetic::inventory(2, 60, 3),
    )
    .unwrap();
    let args = [
        "compile", "inv.yaml", "--to", "1.20.2", "--out", "plan", "--quiet",
    ];
    for round in 0..6 {
        let spawn = || {
            std::process::Command::new(crate::support::bin())
                .current_dir(dir.path())
                .args(args)
                .env("MESHPLAN_TODAY", crate::support::TODAY)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        for out in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
            let code = out.status.code().unwrap_or(-1);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                code == 0 || (code == 4 && err.contains("another meshplan run")),
                "round {round}: exit {code}: {err}"
            );
        }
        let check = run_in(dir.path(), &[&args[..], &["--check"]].concat(), None);
        assert_eq!(check.status, 0, "round {round}: {}", check.stderr);
        let read = |rel: &str| -> Value {
            serde_json::from_str(&fs::read_to_string(dir.path().join("plan").join(rel)).unwrap())
                .unwrap()
        };
        let manifest = read(".meshplan/manifest.json");
        let mut listed = manifest["files"].as_array().unwrap().len();
        for part in manifest["parts"].as_array().unwrap() {
            let part = read(&format!(
                ".meshplan/manifest/{}.json",
                part.as_str().unwrap()
            ));
            listed += part["files"].as_array().unwrap().len();
        }
        let files = list_tree(&dir.path().join("plan"))
            .keys()
            .filter(|p| !p.starts_with(".meshplan/"))
            .count();
        assert_eq!(
            listed, files,
            "round {round}: the manifest lists every file"
        );
    }
}
