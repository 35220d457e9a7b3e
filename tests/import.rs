//! `meshplan import`: saved cluster state (rendered by Istio's real charts, see
//! tests/import/make-state.py) becomes an inventory that compiles to the same plan as the
//! hand-written one; bad state files are refused, naming the file, and nothing is written.

use std::fs;
use std::path::Path;

use crate::support::{list_tree, run_in};

fn case() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/golden/ok-import-quickstart"
    ))
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

fn compile(dir: &Path, inventory: &str, to: &str) -> std::collections::BTreeMap<String, String> {
    let work = dir.join(inventory.replace('.', "-"));
    fs::create_dir_all(&work).unwrap();
    fs::copy(dir.join(inventory), work.join("inventory.yaml")).unwrap();
    let out = run_in(
        &work,
        &["compile", "inventory.yaml", "--to", to, "--out", "plan"],
        None,
    );
    assert_eq!(out.status, 0, "{inventory}: {}", out.stderr);
    list_tree(&work.join("plan"))
        .into_iter()
        .filter(|(p, _)| !p.starts_with(".meshplan/"))
        .collect()
}

/// Every `golden/ok-import-*` case: state rendered by Istio's charts from `reference.yaml`
/// (tests/import/make-state.py), the target of `compile.yaml`.
fn import_cases() -> Vec<std::path::PathBuf> {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/golden"));
    let mut v: Vec<_> = fs::read_dir(root)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ok-import-"))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn imported_inventories_compile_to_the_plans_of_the_hand_written_ones() {
    let cases = import_cases();
    assert!(cases.len() >= 3, "{cases:?}");
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&case.join("state"), &dir.path().join("state"));
        fs::copy(
            case.join("reference.yaml"),
            dir.path().join("reference.yaml"),
        )
        .unwrap();
        let to: serde_json::Value =
            serde_yaml::from_str(&fs::read_to_string(case.join("compile.yaml")).unwrap()).unwrap();
        let to = to["to"].as_str().unwrap().to_string();
        let reference: serde_json::Value =
            serde_yaml::from_str(&fs::read_to_string(case.join("reference.yaml")).unwrap())
                .unwrap();
        let name = reference["name"].as_str().unwrap().to_string();
        let out = run_in(
            dir.path(),
            &["import", "state", "--name", &name, "--out", "imported.yaml"],
            None,
        );
        assert_eq!(out.status, 0, "{}: {}", case.display(), out.stderr);
        let check = run_in(dir.path(), &["check", "imported.yaml", "--to", &to], None);
        assert_eq!(check.status, 0, "{}: {}", case.display(), check.stderr);
        let imported = compile(dir.path(), "imported.yaml", &to);
        let reference = compile(dir.path(), "reference.yaml", &to);
        assert_eq!(
            imported.keys().collect::<Vec<_>>(),
            reference.keys().collect::<Vec<_>>(),
            "{}",
            case.display()
        );
        for (k, v) in &reference {
            assert_eq!(&imported[k], v, "{}: {k}", case.display());
        }
        // No drift between the reference and the state it was rendered from.
        let drift = run_in(dir.path(), &["drift", "reference.yaml", "state"], None);
        assert_eq!(drift.status, 0, "{}: {}", case.display(), drift.stderr);
    }
}

#[test]
fn an_import_is_deterministic_and_never_replaces_a_file_by_accident() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&case().join("state"), &dir.path().join("state"));
    let out = run_in(
        dir.path(),
        &[
            "import",
            "state",
            "--name",
            "quickstart-mesh",
            "--out",
            "imported.yaml",
        ],
        None,
    );
    assert_eq!(out.status, 0, "{}", out.stderr);
    let again = run_in(
        dir.path(),
        &["import", "state", "--name", "quickstart-mesh"],
        None,
    );
    assert_eq!(
        again.stdout,
        fs::read_to_string(dir.path().join("imported.yaml")).unwrap()
    );
    let refused = run_in(
        dir.path(),
        &["import", "state", "--out", "imported.yaml"],
        None,
    );
    assert_eq!(refused.status, 4, "{}", refused.stderr);
}

#[test]
fn bad_state_files_are_refused_by_name_and_nothing_is_written() {
    let objects = fs::read_to_string(case().join("state/west/objects.json")).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "objects.json",
            objects[..200].to_string(),
            "ends early (truncated?) at line",
        ),
        (
            "objects.json",
            "not json".into(),
            "is not valid JSON at line 1, column",
        ),
        (
            "objects.json",
            r#"{"kind": "List", "items": [{"kind": "Pod", "metadata": {"name": "p"}}]}"#.into(),
            "items[0] is a \"Pod\"",
        ),
        (
            "objects.json",
            r#"{"kind": "Deployment"}"#.into(),
            "is not the output of `kubectl get ... -o json` (a List), but a Deployment",
        ),
        (
            "version.json",
            r#"{"clientVersion": {}}"#.into(),
            "has no serverVersion",
        ),
        (
            "helm-releases.json",
            r#"{"releases": []}"#.into(),
            "is not a JSON list",
        ),
        (
            "helm-releases.json",
            r#"[{"name": "x"}]"#.into(),
            "has no `namespace`",
        ),
        (
            "proxies.txt",
            "bookinfo pod-0\n".into(),
            "line 1: expected 5 columns",
        ),
    ];
    for (file, text, expect) in cases {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&case().join("state"), &dir.path().join("state"));
        fs::write(dir.path().join("state/west").join(file), &text).unwrap();
        let out = run_in(dir.path(), &["import", "state", "--out", "inv.yaml"], None);
        assert_eq!(out.status, 1, "{file}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!("state/west/{file}")) && out.stderr.contains(expect),
            "{file}: {}",
            out.stderr
        );
        assert!(
            !dir.path().join("inv.yaml").exists(),
            "{file}: nothing is written"
        );
    }
    // No cluster directory at all.
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("empty")).unwrap();
    let out = run_in(dir.path(), &["import", "empty"], None);
    assert_eq!(out.status, 1);
    assert!(
        out.stderr.contains("holds no cluster directory"),
        "{}",
        out.stderr
    );
}

#[test]
fn print_commands_lists_read_only_commands_per_context() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(
        dir.path(),
        &[
            "import",
            "--print-commands",
            "--context",
            "east",
            "--context",
            "gke_prod/west",
        ],
        None,
    );
    assert_eq!(out.status, 0, "{}", out.stderr);
    for needle in [
        "kubectl --context east version -o json > state/east/version.json",
        "kubectl --context east get namespaces,deployments,statefulsets,daemonsets,services,serviceaccounts,mutatingwebhookconfigurations,validatingwebhookconfigurations -A -o json > state/east/objects.json",
        "helm --kube-context east list -A -o json > state/east/helm-releases.json",
        "helm --kube-context east get values",
        "kubectl --context gke_prod/west version -o json > state/gke-prod-west/version.json",
    ] {
        assert!(out.stdout.contains(needle), "{needle}\n{}", out.stdout);
    }
    // Only reads: no apply, patch, label, delete, install or upgrade.
    for verb in [
        " apply ",
        " patch ",
        " label ",
        " delete ",
        " install ",
        " upgrade ",
    ] {
        assert!(!out.stdout.contains(verb), "{verb}\n{}", out.stdout);
    }
    let none = run_in(dir.path(), &["import", "--print-commands"], None);
    assert_eq!(none.status, 2, "{}", none.stderr);
}

#[test]
fn drift_finds_nothing_between_an_import_and_its_state() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&case().join("state"), &dir.path().join("state"));
    fs::copy(
        case().join("reference.yaml"),
        dir.path().join("reference.yaml"),
    )
    .unwrap();
    let out = run_in(dir.path(), &["drift", "reference.yaml", "state"], None);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let imported = run_in(
        dir.path(),
        &["import", "state", "--out", "imported.yaml"],
        None,
    );
    assert_eq!(imported.status, 0, "{}", imported.stderr);
    let out = run_in(dir.path(), &["drift", "imported.yaml", "state"], None);
    assert_eq!(out.status, 0, "{}", out.stderr);
    // A cluster the state does not have, and one the inventory does not list.
    let text = fs::read_to_string(dir.path().join("reference.yaml"))
        .unwrap()
        .replace("name: west", "name: north")
        .replace("context: west", "context: north");
    fs::write(dir.path().join("renamed.yaml"), text).unwrap();
    let out = run_in(dir.path(), &["drift", "renamed.yaml", "state"], None);
    assert_eq!(out.status, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("cluster `north`: the state directory has no cluster"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("the saved state has cluster `west`"),
        "{}",
        out.stderr
    );
}

#[test]
fn advance_writes_the_state_the_plan_leaves_and_the_next_plan_starts_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/current-mesh.yaml"
    ));
    fs::copy(example, dir.path().join("inv.yaml")).unwrap();
    let original = fs::read_to_string(dir.path().join("inv.yaml")).unwrap();
    let out = run_in(
        dir.path(),
        &["advance", "inv.yaml", "--to", "1.30.5", "--in-place"],
        None,
    );
    assert_eq!(out.status, 0, "{}", out.stderr);
    let advanced = fs::read_to_string(dir.path().join("inv.yaml")).unwrap();
    // Every comment line is kept.
    for line in original.lines().filter(|l| l.trim_start().starts_with('#')) {
        assert!(advanced.contains(line), "lost comment: {line}");
    }
    assert!(advanced.contains("# helm | istioctl | operator"));
    // The advanced inventory is at the target: nothing left to do there.
    let check = run_in(
        dir.path(),
        &["check", "inv.yaml", "--to", "1.30.5", "--output", "json"],
        None,
    );
    assert_eq!(check.status, 0, "{}", check.stderr);
    let json: serde_json::Value = serde_json::from_str(&check.stdout).unwrap();
    for c in json["clusters"].as_array().unwrap() {
        assert!(c["hops"].as_array().unwrap().is_empty(), "{c}");
    }
    // And the next upgrade plans from it, through the model.
    let next = run_in(
        dir.path(),
        &["compile", "inv.yaml", "--to", "1.31.1", "--out", "plan"],
        None,
    );
    assert_eq!(next.status, 0, "{}", next.stderr);
    let plan = list_tree(&dir.path().join("plan"));
    let values = &plan["01-east/hop-01/30-gateways/01-istio-ingressgateway/4-gateway.values.yaml"];
    // The gateway keeps its identity across two upgrades.
    assert!(values.contains("app: istio-ingressgateway"), "{values}");
    assert!(values.contains("name: istio-ingressgateway\n"), "{values}");
    // Standard input cannot be replaced in place.
    let refused = run_in(
        dir.path(),
        &["advance", "-", "--to", "1.30.5", "--in-place"],
        Some(&original),
    );
    assert_eq!(refused.status, 2, "{}", refused.stderr);
}

#[test]
fn a_workload_that_did_not_restart_after_a_relabel_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&case().join("state"), &dir.path().join("state"));
    let proxies = dir.path().join("state/east/proxies.txt");
    let mut text = fs::read_to_string(&proxies).unwrap();
    text.push_str("bookinfo   reviews-v1-9   1-27   ReplicaSet   reviews-v1-7c9d8f6b5\n");
    fs::write(&proxies, text).unwrap();
    let out = run_in(
        dir.path(),
        &["import", "state", "--name", "quickstart-mesh"],
        None,
    );
    assert_eq!(out.status, 0, "{}", out.stderr);
    let msg = "mixed state: Deployment `bookinfo/reviews-v1` runs proxies 1 on `1-27` while its namespace's pods get `1-28`";
    assert!(out.stderr.contains(msg), "{}", out.stderr);
    // And at the workload in the inventory, as a comment.
    let at = out
        .stdout
        .find("# import: mixed state: Deployment `bookinfo/reviews-v1`")
        .unwrap();
    assert!(
        out.stdout[at..].contains("name: reviews-v1"),
        "{}",
        out.stdout
    );
    // Every other workload runs what its namespace gives: nothing else is reported.
    assert_eq!(
        out.stderr.matches("mixed state").count(),
        1,
        "{}",
        out.stderr
    );
}

#[test]
fn a_webhook_whose_service_is_gone_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&case().join("state"), &dir.path().join("state"));
    let objects = dir.path().join("state/west/objects.json");
    let mut list: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&objects).unwrap()).unwrap();
    let items = list["items"].as_array_mut().unwrap();
    let before = items.len();
    items.retain(|o| !(o["kind"] == "Service" && o["metadata"]["name"] == "istiod-1-28"));
    assert_eq!(items.len(), before - 1, "the state has the istiod Service");
    fs::write(&objects, serde_json::to_string(&list).unwrap()).unwrap();
    let out = run_in(dir.path(), &["import", "state"], None);
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("mixed state: MutatingWebhookConfiguration `istio-sidecar-injector-1-28` calls Service istio-system/istiod-1-28, which does not exist"),
        "{}",
        out.stderr
    );
}
