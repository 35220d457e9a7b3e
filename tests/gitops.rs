//! The GitOps layouts' stages, built the way kustomize builds them (resources, JSON patches,
//! `$patch: delete`), independently of how meshplan computed them: every stage of every golden
//! case and of random inventories must build, patch only objects that exist, and define no
//! object twice. `kubectl kustomize` itself is not in CI; the validators run it (README).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::support::{list_tree, run_in};

type Files = BTreeMap<String, String>;

fn docs(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for d in serde_yaml::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(d).map_err(|e| e.to_string())?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

fn s<'v>(v: &'v Value, p: &str) -> &'v str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn id(o: &Value) -> String {
    format!(
        "{} {} {}/{}",
        s(o, "/apiVersion"),
        s(o, "/kind"),
        s(o, "/metadata/namespace"),
        s(o, "/metadata/name")
    )
}

/// `a/b/../c` as `a/c`.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(p),
        }
    }
    parts.join("/")
}

fn unescape(seg: &str) -> String {
    seg.replace("~1", "/").replace("~0", "~")
}

fn apply_op(obj: &mut Value, op: &Value) -> Result<(), String> {
    let path = op["path"]
        .as_str()
        .ok_or("a patch operation without a path")?;
    let segs: Vec<String> = path.split('/').skip(1).map(unescape).collect();
    let (last, parents) = segs.split_last().ok_or("a patch of the whole object")?;
    let mut cur = obj;
    for p in parents {
        cur = cur
            .get_mut(p.as_str())
            .ok_or_else(|| format!("patch path {path}: no `{p}`"))?;
    }
    let m = cur
        .as_object_mut()
        .ok_or_else(|| format!("patch path {path}: not a map"))?;
    match op["op"].as_str() {
        Some("add") => {
            m.insert(last.clone(), op["value"].clone());
        }
        Some("replace") => {
            if !m.contains_key(last) {
                return Err(format!("replace of missing {path}"));
            }
            m.insert(last.clone(), op["value"].clone());
        }
        Some("remove") => {
            m.remove(last)
                .ok_or_else(|| format!("remove of missing {path}"))?;
        }
        other => return Err(format!("unexpected patch op {other:?}")),
    }
    Ok(())
}

fn matches(o: &Value, target: &Value) -> bool {
    let api = s(o, "/apiVersion");
    let (group, version) = api.rsplit_once('/').unwrap_or(("", api));
    let want = |k: &str, have: &str| {
        target
            .get(k)
            .and_then(Value::as_str)
            .is_none_or(|w| w == have)
    };
    want("group", group)
        && want("version", version)
        && want("kind", s(o, "/kind"))
        && want("name", s(o, "/metadata/name"))
        && want("namespace", s(o, "/metadata/namespace"))
}

/// Builds the kustomization in `dir` (a path in `files`).
pub fn build(files: &Files, dir: &str, depth: usize) -> Result<Vec<Value>, String> {
    if depth > 10_000 {
        return Err("kustomizations nest too deep".into());
    }
    let kpath = format!("{dir}/kustomization.yaml");
    let k: Value = serde_yaml::from_str(files.get(&kpath).ok_or(format!("no {kpath}"))?)
        .map_err(|e| format!("{kpath}: {e}"))?;
    let mut objs: Vec<Value> = Vec::new();
    for r in k["resources"].as_array().into_iter().flatten() {
        let r = r.as_str().ok_or("a resource that is not a string")?;
        let p = normalize(&format!("{dir}/{r}"));
        if let Some(text) = files.get(&p) {
            objs.extend(docs(text)?);
        } else {
            objs.extend(build(files, &p, depth + 1)?);
        }
    }
    for p in k["patches"].as_array().into_iter().flatten() {
        let text = p["patch"].as_str().ok_or("a patch without inline text")?;
        if let Some(t) = p.get("target") {
            let ops: Vec<Value> = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
            let hits: Vec<usize> = (0..objs.len()).filter(|i| matches(&objs[*i], t)).collect();
            if hits.len() != 1 {
                return Err(format!(
                    "{kpath}: patch target {t} matches {} objects",
                    hits.len()
                ));
            }
            for op in &ops {
                apply_op(&mut objs[hits[0]], op).map_err(|e| format!("{kpath}: {e}"))?;
            }
        } else {
            let d: Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
            if d["$patch"] != "delete" {
                return Err(format!(
                    "{kpath}: a strategic merge patch that is not a delete"
                ));
            }
            let before = objs.len();
            let want = id(&d);
            objs.retain(|o| id(o) != want);
            if objs.len() + 1 != before {
                return Err(format!(
                    "{kpath}: delete of {want} matches {} objects",
                    before - objs.len()
                ));
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for o in &objs {
        if !seen.insert(id(o)) {
            return Err(format!("{kpath}: {} defined twice", id(o)));
        }
    }
    Ok(objs)
}

/// Every stage directory below `root` (the directories holding a kustomization.yaml), built.
pub fn build_all(files: &Files) -> Result<BTreeMap<String, Vec<Value>>, String> {
    let mut out = BTreeMap::new();
    for path in files.keys() {
        if let Some(dir) = path.strip_suffix("/kustomization.yaml") {
            out.insert(dir.to_string(), build(files, dir, 0)?);
        }
    }
    Ok(out)
}

/// The HelmRelease or Application chart versions of a built stage.
pub fn chart_versions(objs: &[Value]) -> Vec<(String, String)> {
    objs.iter()
        .filter_map(|o| match s(o, "/kind") {
            "HelmRelease" => Some((
                s(o, "/metadata/name").to_string(),
                s(o, "/spec/chart/spec/version").to_string(),
            )),
            "Application" if o.pointer("/spec/source/chart").is_some() => Some((
                s(o, "/spec/source/helm/releaseName").to_string(),
                s(o, "/spec/source/targetRevision").to_string(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn every_stage_of_the_golden_layouts_builds() {
    let mut stages = 0;
    for case in std::fs::read_dir("golden").unwrap() {
        let dir = case.unwrap().path();
        let expected = dir.join("expected");
        if !expected.is_dir() {
            continue;
        }
        let files: Files = list_tree(&expected)
            .into_iter()
            .filter(|(p, _)| {
                ["/flux/", "/argocd/", "/kustomize/"]
                    .iter()
                    .any(|l| p.contains(l))
            })
            .collect();
        let built = build_all(&files).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        stages += built.len();
        // The first stage adopts releases at the running version; the last leaves none behind.
        let firsts: Vec<_> = built
            .iter()
            .filter(|(d, _)| d.ends_with("/000-adopt"))
            .collect();
        for (d, objs) in &firsts {
            let last = built
                .range(format!("{}/", d.rsplit_once('/').unwrap().0)..)
                .take_while(|(k, _)| k.starts_with(d.rsplit_once('/').unwrap().0))
                .filter(|(k, _)| !k.ends_with("/objects"))
                .last()
                .unwrap();
            let first_versions: std::collections::BTreeSet<String> =
                chart_versions(objs).into_iter().map(|(_, v)| v).collect();
            let last_versions: std::collections::BTreeSet<String> =
                chart_versions(last.1).into_iter().map(|(_, v)| v).collect();
            if !first_versions.is_empty() {
                assert_eq!(
                    first_versions.len(),
                    1,
                    "{d}: adopts releases at several versions: {first_versions:?}"
                );
                assert!(
                    last_versions.len() <= 1,
                    "{}: releases left at {last_versions:?}",
                    last.0
                );
                assert_ne!(
                    first_versions, last_versions,
                    "{}: nothing upgraded",
                    last.0
                );
            }
        }
    }
    assert!(stages >= 40, "only {stages} stages in the golden cases");
}

/// The files of `inventory` compiled to each of `versions` with `layout`: their paths (those
/// containing `within`) and the whole tree.
fn compiled(
    inventory: &str,
    layout: &str,
    versions: [&str; 2],
    within: &str,
) -> Vec<(Vec<String>, BTreeMap<String, String>)> {
    let work = tempfile::tempdir().unwrap();
    std::fs::copy(Path::new(inventory), work.path().join("inventory.yaml")).unwrap();
    let mut lists = Vec::new();
    for to in versions {
        let out = format!("out-{to}");
        let r = run_in(
            work.path(),
            &[
                "compile".into(),
                "inventory.yaml".into(),
                "--to".into(),
                to.into(),
                "--layout".into(),
                layout.into(),
                "--out".into(),
                out.clone(),
            ],
            None,
        );
        assert_eq!(r.status, 0, "{}", r.stderr);
        let tree = list_tree(&work.path().join(&out));
        let names: Vec<String> = tree
            .keys()
            .filter(|p| p.contains(within))
            .cloned()
            .collect();
        assert!(names.len() > 20);
        lists.push((names, tree));
    }
    lists
}

#[test]
fn a_version_bump_renames_no_stage_file() {
    for (inventory, layout, versions, within) in [
        (
            "golden/ok-contract-helm-two-clusters-to-1-21-0/inventory.yaml",
            "flux",
            ["1.20.2", "1.21.0"],
            "/flux/",
        ),
        // Revision tags moving through the releases' values: their files are named by role
        // (old, new release), never by version, in the stages and in the plain tree.
        (
            "golden/ok-gitops-argocd-revision-tags-1-29-to-1-30/inventory.yaml",
            "argocd",
            ["1.30.4", "1.30.5"],
            "",
        ),
    ] {
        let lists = compiled(inventory, layout, versions, within);
        assert_eq!(
            lists[0].0, lists[1].0,
            "{inventory}: the files differ between versions"
        );
        // ...and their contents do change with the version.
        let changed = lists[0]
            .0
            .iter()
            .filter(|p| lists[0].1[*p] != lists[1].1[*p])
            .count();
        assert!(changed > 0);
    }
}

#[test]
fn the_argocd_layout_from_the_command_line_needs_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let inv =
        std::fs::read_to_string("golden/ok-contract-helm-two-clusters-to-1-21-0/inventory.yaml")
            .unwrap();
    let r = run_in(
        dir.path(),
        &[
            "compile", "-", "--to", "1.21.0", "--layout", "argocd", "--out", "out",
        ],
        Some(&inv),
    );
    assert_eq!(r.status, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "error[layout-unsupported]: the argocd layout (--layout) needs gitops.argocd.repoURL"
        ),
        "{}",
        r.stderr
    );
    assert!(!dir.path().join("out").exists(), "nothing is written");
    // The same mesh compiles as Flux stages.
    let r = run_in(
        dir.path(),
        &[
            "compile", "-", "--to", "1.21.0", "--layout", "flux", "--out", "out", "-q",
        ],
        Some(&inv),
    );
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(
        dir.path()
            .join("out/01-east/flux/000-adopt/kustomization.yaml")
            .is_file()
    );
}

#[test]
fn charts_from_an_oci_registry_are_named_as_each_controller_expects() {
    let dir = tempfile::tempdir().unwrap();
    let inv =
        std::fs::read_to_string("golden/ok-contract-helm-two-clusters-to-1-21-0/inventory.yaml")
            .unwrap()
            .replace(
                "clusters:",
                "gitops:\n  chartRepositoryURL: oci://registry.example.com/istio-charts\n  argocd: {repoURL: https://git.example.com/mesh.git}\nclusters:",
            );
    for layout in ["flux", "argocd"] {
        let out = format!("out-{layout}");
        let r = run_in(
            dir.path(),
            &[
                "compile", "-", "--to", "1.21.0", "--layout", layout, "--out", &out, "-q",
            ],
            Some(&inv),
        );
        assert_eq!(r.status, 0, "{}", r.stderr);
        let adopt = std::fs::read_to_string(
            dir.path()
                .join(&out)
                .join(format!("01-east/{layout}/000-adopt/resources.yaml")),
        )
        .unwrap();
        let objs = docs(&adopt).unwrap();
        if layout == "flux" {
            // Flux: a HelmRepository of type oci, at the oci:// URL.
            let repo = objs
                .iter()
                .find(|o| s(o, "/kind") == "HelmRepository")
                .unwrap();
            assert_eq!(s(repo, "/spec/type"), "oci");
            assert_eq!(
                s(repo, "/spec/url"),
                "oci://registry.example.com/istio-charts"
            );
        } else {
            // Argo CD: the registry without the scheme (its declarative-setup docs).
            let apps: Vec<&Value> = objs
                .iter()
                .filter(|o| {
                    s(o, "/kind") == "Application" && !s(o, "/spec/source/chart").is_empty()
                })
                .collect();
            assert!(!apps.is_empty());
            for a in apps {
                assert_eq!(
                    s(a, "/spec/source/repoURL"),
                    "registry.example.com/istio-charts"
                );
            }
        }
    }
}
