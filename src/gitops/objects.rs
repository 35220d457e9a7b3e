//! The desired state as each layout's objects, and a stage's files.
//!
//! - **flux**: a `HelmRelease` per Helm release (with `dependsOn` the base and istiod releases
//!   it needs, and the `HelmRepository` it installs from), owned objects as they are, and
//!   partials annotated `kustomize.toolkit.fluxcd.io/ssa: Merge` (Flux keeps the fields other
//!   managers own) and `kustomize.toolkit.fluxcd.io/prune: disabled` (Flux never deletes them).
//! - **argocd**: an `Application` per Helm release (sync waves: base, control plane, gateways),
//!   plus one `Application` that syncs the stage's objects (`objects/`) from the repository;
//!   partials carry `argocd.argoproj.io/sync-options: ServerSideApply=true,Validate=false,Prune=false,Delete=false`
//!   and the objects Application turns off `ClientSideApplyMigration`.
//! - **kustomize**: the objects and partials only; Helm releases stay helm commands.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::inventory::Layout;
use crate::plan::op::Chart;
use crate::validate::ClusterSpec;

use super::GitopsSpec;
use super::patch;
use super::stages::{Desired, Release, Stage, State};

const KEEP: &str = "helm.sh/resource-policy";
const ARGO_SYNC: &str = "argocd.argoproj.io/sync-options";
const ARGO_WAVE: &str = "argocd.argoproj.io/sync-wave";

/// Rendered objects by (kind, namespace, name).
type Objects = BTreeMap<(String, String, String), Arc<Value>>;

/// The kustomizations of a stage: the main one and, in the Argo CD layout, `objects/`.
pub struct Sets {
    main: Objects,
    objects: Option<Objects>,
}

fn id(o: &Value) -> (String, String, String) {
    let s = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (s("/kind"), s("/metadata/namespace"), s("/metadata/name"))
}

fn insert(set: &mut Objects, o: Value) {
    set.insert(id(&o), Arc::new(o));
}

fn annotate(o: &mut Value, pairs: &[(&str, &str)]) {
    let meta = o
        .as_object_mut()
        .expect("objects are maps")
        .entry("metadata")
        .or_insert_with(|| json!({}));
    let ann = meta
        .as_object_mut()
        .expect("metadata is a map")
        .entry("annotations")
        .or_insert_with(|| json!({}));
    for (k, v) in pairs {
        ann[*k] = json!(v);
    }
}

/// A stage's desired state as the layout's objects. An object the previous stage's state
/// shares unchanged (`prev`) is not rendered again: the previous rendering is shared, and the
/// comparison of the two stages skips it.
pub fn sets(
    c: &ClusterSpec,
    spec: &GitopsSpec,
    root: &str,
    stage_dir: &str,
    state: &State,
    prev: Option<(&State, &Sets)>,
) -> Sets {
    let mut main = Objects::new();
    let mut objects = Objects::new();
    let argo = spec.layout == Layout::Argocd;
    if spec.layout == Layout::Flux {
        insert(&mut main, helm_repository(spec));
    }
    for (k, d) in state {
        let set = if argo { &mut objects } else { &mut main };
        if !matches!(&**d, Desired::Release(_))
            && let Some((ps, pset)) = prev
            && ps.get(k).is_some_and(|p| Arc::ptr_eq(p, d))
        {
            let id = (k.kind.clone(), k.namespace.clone(), k.name.clone());
            let from = if argo {
                pset.objects.as_ref()
            } else {
                Some(&pset.main)
            };
            if let Some(o) = from.and_then(|f| f.get(&id)) {
                set.insert(id, Arc::clone(o));
                continue;
            }
        }
        match &**d {
            Desired::Release(r) => match spec.layout {
                Layout::Flux => insert(&mut main, helm_release(spec, r, state)),
                Layout::Argocd => insert(&mut main, application(c, spec, r)),
                _ => {}
            },
            Desired::Object(o) => insert(set, o.clone()),
            Desired::Partial(o) => {
                let mut o = o.clone();
                match spec.layout {
                    Layout::Flux => annotate(
                        &mut o,
                        &[
                            ("kustomize.toolkit.fluxcd.io/ssa", "Merge"),
                            ("kustomize.toolkit.fluxcd.io/prune", "disabled"),
                        ],
                    ),
                    Layout::Argocd => annotate(
                        &mut o,
                        // A partial is not a valid whole object: Argo CD applies it server-side
                        // without client validation (its documented way to patch a live object).
                        &[(
                            ARGO_SYNC,
                            "ServerSideApply=true,Validate=false,Prune=false,Delete=false",
                        )],
                    ),
                    _ => {}
                }
                insert(set, o);
            }
        }
    }
    if argo {
        insert(&mut main, objects_application(c, spec, root, stage_dir));
    }
    Sets {
        main,
        objects: argo.then_some(objects),
    }
}

fn helm_repository(spec: &GitopsSpec) -> Value {
    let mut s = json!({"interval": "1h", "url": spec.chart_url});
    if spec.chart_url.starts_with("oci://") {
        s["type"] = json!("oci");
    }
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmRepository",
        "metadata": {"name": "istio", "namespace": spec.flux_namespace},
        "spec": s,
    })
}

/// The istiod release of the revision a release's values name (`None`: unrevisioned).
fn istiod_of<'s>(state: &'s State, revision: Option<&Value>) -> Option<&'s Release> {
    state.values().find_map(|d| match &**d {
        Desired::Release(r)
            if matches!(r.chart, Chart::Istiod | Chart::IstiodRemote)
                && r.values.get("revision") == revision =>
        {
            Some(r)
        }
        _ => None,
    })
}

fn helm_release(spec: &GitopsSpec, r: &Release, state: &State) -> Value {
    let base = state.values().find_map(|d| match &**d {
        Desired::Release(b) if b.chart == Chart::Base => Some(b),
        _ => None,
    });
    let needs: Vec<&Release> = match r.chart {
        Chart::Istiod | Chart::IstiodRemote | Chart::Cni => base.into_iter().collect(),
        Chart::Gateway | Chart::Ztunnel => istiod_of(state, r.values.get("revision"))
            .into_iter()
            .collect(),
        Chart::Base => Vec::new(),
    };
    let mut s = json!({
        "interval": spec.flux_interval,
        "releaseName": r.name,
        "chart": {"spec": {
            "chart": r.chart.name(),
            "version": r.version.to_string(),
            "sourceRef": {"kind": "HelmRepository", "name": "istio", "namespace": spec.flux_namespace},
        }},
        "values": r.values,
    });
    let mut install = serde_json::Map::new();
    let mut upgrade = serde_json::Map::new();
    if r.chart == Chart::Base {
        // Before 1.24 the CRDs are in the chart's crds/ directory, which Helm never upgrades.
        install.insert("crds".into(), json!("CreateReplace"));
        upgrade.insert("crds".into(), json!("CreateReplace"));
    }
    if r.skip_schema {
        install.insert("disableSchemaValidation".into(), json!(true));
        upgrade.insert("disableSchemaValidation".into(), json!(true));
    }
    if !install.is_empty() {
        s["install"] = Value::Object(install);
        s["upgrade"] = Value::Object(upgrade);
    }
    if !needs.is_empty() {
        s["dependsOn"] = json!(
            needs
                .iter()
                .map(|n| json!({"name": n.name, "namespace": n.namespace}))
                .collect::<Vec<_>>()
        );
    }
    json!({
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": r.name, "namespace": r.namespace},
        "spec": s,
    })
}

/// Argo CD deletes an Application's objects without reading `helm.sh/resource-policy: keep`:
/// wherever the values keep an object, they keep it from Argo CD too.
fn keep_from_argo(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.get(KEEP).and_then(Value::as_str) == Some("keep") {
                m.insert(ARGO_SYNC.into(), json!("Delete=false,Prune=false"));
            }
            for x in m.values_mut() {
                keep_from_argo(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(keep_from_argo),
        _ => {}
    }
}

fn app_name(c: &ClusterSpec, name: &str) -> String {
    format!("{}-{name}", c.name)
}

fn argo_spec(spec: &GitopsSpec) -> &super::ArgoSpec {
    spec.argo
        .as_ref()
        .expect("the argocd layout is refused without its settings")
}

fn application(c: &ClusterSpec, spec: &GitopsSpec, r: &Release) -> Value {
    let a = argo_spec(spec);
    let mut values = r.values.clone();
    keep_from_argo(&mut values);
    let wave = match r.chart {
        Chart::Base => "-3",
        Chart::Istiod | Chart::IstiodRemote | Chart::Cni => "-2",
        Chart::Ztunnel => "-1",
        Chart::Gateway => "0",
    };
    let mut helm = json!({"releaseName": r.name, "valuesObject": values});
    if r.skip_schema {
        helm["skipSchemaValidation"] = json!(true);
    }
    // istiod writes these fields itself (its CA bundle, the validator's failure policy).
    let mut ignore = vec![
        json!({"group": "admissionregistration.k8s.io", "kind": "MutatingWebhookConfiguration",
               "jqPathExpressions": [".webhooks[]?.clientConfig.caBundle"]}),
        json!({"group": "admissionregistration.k8s.io", "kind": "ValidatingWebhookConfiguration",
               "jqPathExpressions": [".webhooks[]?.clientConfig.caBundle", ".webhooks[]?.failurePolicy"]}),
    ];
    let mut sync = vec![json!("ServerSideApply=true")];
    if r.chart == Chart::Gateway {
        // The plan moves the Service's selector (pin, widen, switch) through the objects
        // Application; the chart's Application must neither report nor re-apply the chart's
        // own selector over it, or a self-heal would send traffic back to the old pods.
        ignore.push(json!({"group": "", "kind": "Service", "jsonPointers": ["/spec/selector"]}));
        sync.push(json!("RespectIgnoreDifferences=true"));
    }
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": app_name(c, &r.name),
            "namespace": a.namespace,
            "annotations": {ARGO_WAVE: wave},
            // Removing the Application uninstalls what it rendered (except what the values keep).
            "finalizers": ["resources-finalizer.argocd.argoproj.io"],
        },
        "spec": {
            "project": a.project,
            "source": {
                // Argo CD names an OCI registry of Helm charts without the scheme.
                "repoURL": spec.chart_url.strip_prefix("oci://").unwrap_or(&spec.chart_url),
                "chart": r.chart.name(),
                "targetRevision": r.version.to_string(),
                "helm": helm,
            },
            "destination": {"name": a.destination(&c.name), "namespace": r.namespace},
            "syncPolicy": {
                "automated": {"prune": true, "selfHeal": true},
                "syncOptions": sync,
            },
            "ignoreDifferences": ignore,
        },
    })
}

fn objects_application(c: &ClusterSpec, spec: &GitopsSpec, root: &str, stage_dir: &str) -> Value {
    let a = argo_spec(spec);
    let path = [a.path.as_str(), root, stage_dir, "objects"]
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": app_name(c, "meshplan-objects"),
            "namespace": a.namespace,
            "annotations": {ARGO_WAVE: "1"},
        },
        "spec": {
            "project": a.project,
            "source": {"repoURL": a.repo_url, "targetRevision": a.target_revision, "path": path},
            "destination": {"name": a.destination(&c.name)},
            "syncPolicy": {
                "automated": {"prune": true, "selfHeal": true},
                // The migration would hand Argo CD every field `kubectl apply` set on the live
                // objects the partials patch, and the next sync would remove them.
                "syncOptions": ["ServerSideApply=true", "ClientSideApplyMigration=false"],
            },
        },
    })
}

/// The files of one stage: `(path below the stage, template, data)`.
pub fn render_stage(
    spec: &GitopsSpec,
    stage: &Stage,
    now: &Sets,
    prev: Option<(&Stage, &Sets)>,
) -> Vec<(String, &'static str, Value)> {
    let before = prev.map(|(_, s)| s);
    let prev = prev.map(|(p, _)| p);
    let mut files = Vec::new();
    let how = match spec.layout {
        Layout::Flux => {
            "promote: point the Flux Kustomization's spec.path at this directory; revert: point it back at the previous stage"
        }
        Layout::Argocd => {
            "promote: point the root Argo CD Application's spec.source.path at this directory; revert: point it back at the previous stage"
        }
        _ => {
            "promote: kubectl apply --server-side --field-manager=meshplan --force-conflicts -k <this directory>; revert: the same with the previous stage"
        }
    };
    let mut one = |sub: &str, now: &Objects, before: Option<&Objects>, up: &str| {
        let prefix = if sub.is_empty() {
            String::new()
        } else {
            format!("{sub}/")
        };
        let (added, patches) = delta(before, now);
        let mut resources = Vec::new();
        if let Some(p) = prev {
            resources.push(format!(
                "{up}{}{}",
                p.dir,
                if sub.is_empty() {
                    String::new()
                } else {
                    format!("/{sub}")
                }
            ));
        }
        if !added.is_empty() {
            resources.push("resources.yaml".to_string());
            files.push((
                format!("{prefix}resources.yaml"),
                "gitops-resources.yaml.j2",
                json!({"stage": stage.dir, "title": stage.title, "objects": added}),
            ));
        }
        files.push((
            format!("{prefix}kustomization.yaml"),
            "gitops-kustomization.yaml.j2",
            json!({"stage": stage.dir, "title": stage.title, "how": how, "resources": resources, "patches": patches}),
        ));
    };
    one("", &now.main, before.map(|b| &b.main), "../");
    if let Some(objs) = &now.objects {
        one(
            "objects",
            objs,
            before.and_then(|b| b.objects.as_ref()),
            "../../",
        );
    }
    files
}

/// The objects a stage adds, and the patches of those it changes or removes.
fn delta(before: Option<&Objects>, now: &Objects) -> (Vec<Value>, Vec<Value>) {
    let Some(before) = before else {
        return (now.values().map(|o| (**o).clone()).collect(), Vec::new());
    };
    let mut added = Vec::new();
    let mut patches = Vec::new();
    for (k, o) in now {
        match before.get(k) {
            None => added.push((**o).clone()),
            Some(b) if !Arc::ptr_eq(b, o) && b != o => {
                let ops = patch::diff(b, o);
                let api = o["apiVersion"].as_str().unwrap_or("");
                let (group, version) = api.rsplit_once('/').unwrap_or(("", api));
                let mut target = json!({"version": version, "kind": k.0, "name": k.2});
                if !group.is_empty() {
                    target["group"] = json!(group);
                }
                if !k.1.is_empty() {
                    target["namespace"] = json!(k.1);
                }
                patches
                    .push(json!({"target": target, "patch": crate::yaml::to_string(&json!(ops))}));
            }
            Some(_) => {}
        }
    }
    for (k, b) in before {
        if !now.contains_key(k) {
            let mut meta = json!({"name": k.2});
            if !k.1.is_empty() {
                meta["namespace"] = json!(k.1);
            }
            let del = json!({"$patch": "delete", "apiVersion": b["apiVersion"], "kind": k.0, "metadata": meta});
            patches.push(json!({"patch": crate::yaml::to_string(&del)}));
        }
    }
    (added, patches)
}

/// What the README says of a stage.
pub fn stage_view(stage: &Stage, prev: Option<&Stage>) -> Value {
    let mut changes = Vec::new();
    if let Some(p) = prev {
        for (k, d) in &stage.state {
            match p.state.get(k) {
                None => changes.push(format!("adds {}", describe(k, d))),
                Some(b) if !Arc::ptr_eq(b, d) && b != d => {
                    changes.push(format!("changes {}", describe(k, d)))
                }
                _ => {}
            }
        }
        for (k, d) in &p.state {
            if !stage.state.contains_key(k) {
                changes.push(format!("removes {}", describe(k, d)));
            }
        }
    } else {
        for (k, d) in &stage.state {
            changes.push(format!("adopts {}", describe(k, d)));
        }
    }
    json!({
        "dir": stage.dir, "title": stage.title, "steps": stage.steps, "changes": changes,
        "before": stage.before, "after": stage.after, "checks": stage.checks,
        "confirmBefore": stage.confirm_before, "confirm": stage.confirm, "revertBefore": stage.revert_before,
        "revert": stage.revert, "notes": stage.notes,
    })
}

fn describe(k: &super::stages::Key, d: &Desired) -> String {
    match d {
        Desired::Release(r) => format!(
            "Helm release {}/{} (chart {} {})",
            r.namespace,
            r.name,
            r.chart.name(),
            r.version
        ),
        Desired::Object(_) => k.describe(),
        Desired::Partial(_) => format!("{} (the fields the plan sets)", k.describe()),
    }
}
