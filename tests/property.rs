//! Property test: plans for random valid inventories survive the model. Each generated inventory
//! goes through the whole pipeline from its YAML text (load, validate, path); those meshplan
//! accepts are planned, and every cluster's plan must pass the model: invariants after every
//! operation, every wait, and the rollback from every step.
//!
//! CI runs a bounded number of cases with a fixed seed. More:
//! `MESHPLAN_PROPERTY_CASES=10000 cargo test --release --test integration property`, and
//! `MESHPLAN_PROPERTY_SEED=<n>` for another sequence. A failure is shrunk to a small inventory,
//! printed as YAML to become a golden case.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value, json};

use meshplan::catalog::Catalog;

#[derive(Clone, Debug)]
struct GGateway {
    kind: u8,
    blue_green: bool,
    service: bool,
    service_standalone: bool,
    sa_standalone: bool,
    pods: u8,
    instant: bool,
    custom_selector: bool,
    service_type: u8,
}

#[derive(Clone, Debug)]
struct GNamespace {
    label: u8,
    wave: u8,
    workloads: Vec<(u8, u8)>,
    /// Gateway API gateways: 0 or 3 none, 1 one following the namespace, 2 one with its own
    /// label (the running revision) and one following the namespace.
    gateway_api: u8,
}

#[derive(Clone, Debug)]
struct GCluster {
    install: u8,
    back: u8,
    patch: u8,
    revisioned: bool,
    patch_revisions: bool,
    in_place: bool,
    tags: u8,
    helm_owned_tags: bool,
    kubernetes: u8,
    context: bool,
    cni: bool,
    gateways: Vec<GGateway>,
    namespaces: Vec<GNamespace>,
}

#[derive(Clone, Debug)]
struct GMesh {
    target: u8,
    target_patch: u8,
    clusters: Vec<GCluster>,
    /// The second cluster is a remote of the first (when both can be).
    remote: bool,
    /// Every other cluster joins the mesh as a multi-primary peer.
    peers: bool,
}

fn gateway() -> impl Strategy<Value = GGateway> {
    (
        0u8..3,
        any::<bool>(),
        prop::bool::weighted(0.85),
        any::<bool>(),
        prop::bool::weighted(0.3),
        0u8..3,
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.2),
        0u8..3,
    )
        .prop_map(
            |(
                kind,
                blue_green,
                service,
                service_standalone,
                sa_standalone,
                pods,
                instant,
                custom_selector,
                service_type,
            )| GGateway {
                kind,
                blue_green,
                service,
                service_standalone,
                sa_standalone,
                pods,
                instant,
                custom_selector,
                service_type,
            },
        )
}

fn namespace() -> impl Strategy<Value = GNamespace> {
    (
        0u8..4,
        1u8..4,
        prop::collection::vec((0u8..3, 0u8..4), 0..4),
        0u8..4,
    )
        .prop_map(|(label, wave, workloads, gateway_api)| GNamespace {
            label,
            wave,
            workloads,
            gateway_api,
        })
}

fn cluster() -> impl Strategy<Value = GCluster> {
    (
        (0u8..4, 0u8..5, any::<u8>(), prop::bool::weighted(0.8)),
        (
            any::<bool>(),
            prop::bool::weighted(0.2),
            0u8..4,
            any::<bool>(),
        ),
        (any::<u8>(), any::<bool>(), prop::bool::weighted(0.3)),
        prop::collection::vec(gateway(), 0..3),
        prop::collection::vec(namespace(), 0..4),
    )
        .prop_map(
            |(
                (install, back, patch, revisioned),
                (patch_revisions, in_place, tags, helm_owned_tags),
                (kubernetes, context, cni),
                gateways,
                namespaces,
            )| GCluster {
                install,
                back,
                patch,
                revisioned,
                patch_revisions,
                in_place,
                tags,
                helm_owned_tags,
                kubernetes,
                context,
                cni,
                gateways,
                namespaces,
            },
        )
}

fn mesh() -> impl Strategy<Value = GMesh> {
    (
        12u8..32,
        any::<u8>(),
        prop::collection::vec(cluster(), 1..4),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(target, target_patch, clusters, remote, peers)| GMesh {
            target,
            target_patch,
            clusters,
            remote,
            peers,
        })
}

/// The inventory text and the target version of a generated mesh.
fn render(m: &GMesh, catalog: &Catalog) -> Option<(String, String)> {
    let minor = |n: u8| meshplan::version::Minor {
        major: 1,
        minor: u64::from(n),
    };
    let target_release = catalog.get(minor(m.target))?;
    let tp = target_release.latest_patch.0.patch;
    let target = format!("1.{}.{}", m.target, u64::from(m.target_patch) % (tp + 1));
    let mut clusters = Vec::new();
    for (ci, c) in m.clusters.iter().enumerate() {
        let mut install = ["helm", "istioctl", "operator", "sail"][usize::from(c.install)];
        let s = m.target.saturating_sub(c.back).max(12);
        if install == "operator" && (m.target > 23 || s > 23) {
            return None;
        }
        let source = catalog.get(minor(s))?;
        let sp = source.latest_patch.0.patch;
        let mut version = format!("1.{s}.{}", u64::from(c.patch) % (sp + 1));
        if version.parse::<meshplan::version::IstioVersion>().ok()? > target.parse().ok()? {
            version = format!("1.{s}.0");
        }
        // Sail: a running version and a target some operator release installs (the newest
        // such release), else the cluster is a Helm one.
        let mut sail_release = None;
        if install == "sail" {
            let t: meshplan::version::IstioVersion = target.parse().ok()?;
            let pick = meshplan::sail::known_releases()
                .into_iter()
                .rev()
                .find_map(|r| {
                    let list = meshplan::sail::supported(r)?;
                    if !list.contains(&t) {
                        return None;
                    }
                    let ofs: Vec<_> = list
                        .iter()
                        .filter(|v| v.minor() == minor(s) && **v <= t)
                        .collect();
                    let v = ofs.get(usize::from(c.patch) % ofs.len().max(1))?;
                    Some((r, v.to_string()))
                });
            match pick {
                Some((r, v)) => {
                    sail_release = Some(r);
                    version = v;
                }
                None => install = "helm",
            }
        }
        let format = if c.patch_revisions { "patch" } else { "minor" };
        let v: meshplan::version::IstioVersion = version.parse().ok()?;
        let rev = if let Some(_r) = sail_release {
            Some(meshplan::sail::revision_name("default", &v))
        } else if c.revisioned {
            Some(v.revision(if c.patch_revisions {
                meshplan::version::RevisionFormat::Patch
            } else {
                meshplan::version::RevisionFormat::Minor
            }))
        } else {
            None
        };
        // Kubernetes: one every minor on the way supports, when there is one.
        let mut common: Option<Vec<meshplan::version::Minor>> = None;
        for n in s..=m.target {
            let ks = catalog.get(minor(n))?.kubernetes.clone();
            common = Some(match common {
                None => ks,
                Some(c) => c.into_iter().filter(|k| ks.contains(k)).collect(),
            });
        }
        let ks = common.filter(|c| !c.is_empty()).unwrap_or_else(|| {
            catalog
                .get(minor(m.target))
                .map(|r| r.kubernetes.clone())
                .unwrap_or_default()
        });
        let k8s = ks
            .get(usize::from(c.kubernetes) % ks.len().max(1))?
            .to_string();
        let mut tags: Vec<String> = Vec::new();
        if c.tags & 1 == 1 {
            tags.push("prod-stable".into());
        }
        if c.tags & 2 == 2 && rev.is_some() {
            tags.push("default".into());
        }
        let serves_default = rev.is_none() || tags.iter().any(|t| t == "default");
        let mut istio = json!({"version": version, "tags": tags});
        if let Some(r) = &rev {
            istio["revision"] = json!(r);
        }
        if let Some(r) = sail_release {
            istio["sail"] = json!({"operatorVersion": r});
        }
        if install == "helm" && c.helm_owned_tags && s >= 24 && !tags.is_empty() {
            istio["values"] = json!({"revisionTags": tags});
        }
        if install == "helm" && c.cni {
            istio["cni"] = json!({"namespace": "kube-system"});
        }
        // Ambient mode (1.24+, Helm, with istio-cni) for half of the clusters that can have it.
        let ambient = install == "helm" && c.cni && s >= 24 && c.patch & 0x80 != 0;
        if ambient {
            istio["ztunnel"] = json!({});
        }
        let label = rev.clone().unwrap_or_else(|| "default".into());
        let mut gateways = Vec::new();
        for (gi, g) in c.gateways.iter().enumerate() {
            let kind = ["ingress", "eastwest", "egress"][usize::from(g.kind)];
            let name = format!("gw{gi}");
            let mut gw = json!({
                "name": name, "kind": kind, "namespace": format!("gw{gi}-ns"),
                "upgrade": if g.blue_green { "blueGreen" } else { "inPlace" },
            });
            match g.pods {
                _ if install == "operator" => gw["revision"] = json!(label),
                0 => gw["revision"] = json!(label),
                1 if !tags.is_empty() && install != "operator" => gw["revision"] = json!(tags[0]),
                _ if serves_default => {}
                _ => gw["revision"] = json!(label),
            }
            if g.instant {
                gw["traffic"] = json!("instant");
            }
            if g.sa_standalone {
                gw["serviceAccount"] = json!({"owner": "standalone"});
            }
            if g.service {
                let service_type =
                    ["LoadBalancer", "NodePort", "ClusterIP"][usize::from(g.service_type)];
                // A standalone Service never has the name istioctl gives the component's own.
                let svc_name = if g.service_standalone && install != "helm" {
                    format!("{name}-lb")
                } else {
                    name.clone()
                };
                let mut svc = json!({
                    "name": svc_name,
                    "type": service_type,
                    "ports": [{"name": "http2", "port": 80, "targetPort": 8080}],
                    "owner": if g.service_standalone { "standalone" } else { "release" },
                });
                if g.custom_selector {
                    // istioctl's own Service selects every label of the component.
                    if install == "helm" || g.service_standalone {
                        svc["selector"] = json!({"istio": name, "version": label});
                    } else {
                        svc["selector"] = json!({"app": name, "istio": name, "version": label});
                    }
                    gw["appLabel"] = json!(name);
                }
                gw["service"] = svc;
            }
            gateways.push(gw);
        }
        let mut namespaces = Vec::new();
        for (ni, n) in c.namespaces.iter().enumerate() {
            let mut ns = json!({"name": format!("ns{ni}"), "wave": n.wave});
            if ambient && n.label == 3 {
                // An ambient namespace: no injection label, workloads that never restart, and
                // waypoints on their own label (the revision, or a tag).
                ns["dataplaneMode"] = json!("ambient");
                let wls: Vec<Value> = (0..n.workloads.len())
                    .map(|wi| json!({"kind": "Deployment", "name": format!("w{wi}")}))
                    .collect();
                ns["workloads"] = Value::Array(wls);
                match n.gateway_api {
                    1 => {
                        ns["gatewayApi"] = json!([{"name": "waypoint", "class": "istio-waypoint", "revision": label}])
                    }
                    2 => {
                        let rev = tags.first().cloned().unwrap_or_else(|| label.clone());
                        ns["gatewayApi"] = json!([{"name": "waypoint", "class": "istio-waypoint", "revision": rev}])
                    }
                    _ => {}
                }
                namespaces.push(ns);
                continue;
            }
            match n.label {
                0 => ns["revision"] = json!(label),
                1 if !tags.is_empty() => ns["revision"] = json!(tags[tags.len() - 1]),
                2 if serves_default => ns["istioInjection"] = json!("enabled"),
                _ => ns["revision"] = json!(label),
            }
            let mut wls = Vec::new();
            for (wi, (kind, strategy)) in n.workloads.iter().enumerate() {
                let kind = ["Deployment", "StatefulSet", "DaemonSet"][usize::from(*kind)];
                let mut w = json!({"kind": kind, "name": format!("w{wi}")});
                match (kind, strategy) {
                    ("StatefulSet" | "DaemonSet", 1) => w["updateStrategy"] = json!("OnDelete"),
                    ("StatefulSet", 2) => w["partition"] = json!(1),
                    _ => {}
                }
                wls.push(w);
            }
            ns["workloads"] = Value::Array(wls);
            // istiod hands Gateways over between revisions from 1.18.
            if s >= 18 {
                match n.gateway_api {
                    1 => ns["gatewayApi"] = json!([{"name": "gw"}]),
                    2 => {
                        ns["gatewayApi"] =
                            json!([{"name": "gw"}, {"name": "own", "revision": label}])
                    }
                    _ => {}
                }
            }
            namespaces.push(ns);
        }
        let mut cl = json!({
            "name": format!("c{ci}"),
            "kubernetesVersion": k8s,
            "installMethod": install,
            "revisionFormat": format,
            "istio": istio,
            "gateways": gateways,
            "namespaces": namespaces,
        });
        if c.in_place && install != "sail" {
            cl["controlPlaneUpgrade"] = json!("inPlace");
        }
        if c.context {
            cl["context"] = json!(format!("ctx-{ci}"));
        }
        clusters.push(cl);
    }
    if m.remote && clusters.len() >= 2 {
        make_remote(&mut clusters);
    }
    if m.peers {
        // The clusters not yet in a mesh become multi-primary peers of mesh `m`, each on a
        // network of its own.
        for (i, c) in clusters.iter_mut().enumerate() {
            if c.get("multicluster").is_none() {
                c["multicluster"] = json!({"meshID": "m", "network": format!("n{}", i + 2)});
            }
        }
    }
    let inv = json!({
        "apiVersion": "meshplan.dev/v1alpha1",
        "kind": "MeshInventory",
        "name": "generated",
        "clusters": clusters,
    });
    Some((serde_yaml::to_string(&inv).ok()?, target))
}

/// Turns the second cluster into a remote served by the first (a primary-remote pair): it
/// takes the primary's version, revision, Kubernetes and upgrade settings; the primary gets an
/// east-west gateway if it has none. Pairs meshplan cannot plan (not Helm, before 1.20.4) are
/// left alone.
fn make_remote(clusters: &mut [serde_json::Value]) {
    // The first Helm cluster is the primary; the next cluster its remote.
    let Some(pi) = clusters.iter().position(|c| c["installMethod"] == "helm") else {
        return;
    };
    clusters.swap(0, pi);
    let p = clusters[0].clone();
    let version: meshplan::version::IstioVersion =
        match p["istio"]["version"].as_str().and_then(|v| v.parse().ok()) {
            Some(v) => v,
            None => return,
        };
    if p["installMethod"] != "helm" || version.0 < semver::Version::new(1, 20, 4) {
        return;
    }
    // A pair is planned as canaries only (a remote cannot be rolled back on its own in place).
    for c in clusters.iter_mut().take(2) {
        c["revisionFormat"] = json!("patch");
        if let Some(o) = c.as_object_mut() {
            o.remove("controlPlaneUpgrade");
        }
    }
    let p = clusters[0].clone();
    let rev = p["istio"]["revision"].clone();
    let label = rev.as_str().unwrap_or("default").to_string();
    let r = &mut clusters[1];
    for k in [
        "kubernetesVersion",
        "installMethod",
        "revisionFormat",
        "controlPlaneUpgrade",
    ] {
        match p.get(k) {
            Some(v) => r[k] = v.clone(),
            None => {
                if let Some(o) = r.as_object_mut() {
                    o.remove(k);
                }
            }
        }
    }
    let mut istio = json!({"version": p["istio"]["version"].clone()});
    if !rev.is_null() {
        istio["revision"] = rev.clone();
    }
    r["istio"] = istio;
    r["multicluster"] = json!({"meshID": "m", "network": "n1", "role": "remote", "primary": p["name"].clone(), "remotePilotAddress": "10.0.0.1"});
    if let Some(ns) = r["namespaces"].as_array_mut() {
        for n in ns {
            let o = n.as_object_mut().expect("a namespace is a map");
            o.remove("istioInjection");
            o.remove("dataplaneMode");
            o.remove("gatewayApi");
            o.remove("revision");
            if rev.is_null() {
                o.insert("istioInjection".into(), json!("enabled"));
            } else {
                o.insert("revision".into(), json!(label));
            }
        }
    }
    if let Some(gs) = r["gateways"].as_array_mut() {
        for g in gs {
            g["revision"] = json!(label);
        }
    }
    let pc = &mut clusters[0];
    pc["multicluster"] = json!({"meshID": "m", "network": "n1"});
    let has_ew = pc["gateways"]
        .as_array()
        .is_some_and(|gs| gs.iter().any(|g| g["kind"] == "eastwest"));
    if !has_ew {
        let mut ew = json!({"name": "ew", "kind": "eastwest", "namespace": "ew-ns",
            "service": {"name": "ew", "ports": [{"name": "tls-istiod", "port": 15012}]}});
        if !rev.is_null() {
            ew["revision"] = json!(label);
        }
        if let Some(gs) = pc["gateways"].as_array_mut() {
            gs.push(ew);
        }
    }
}

enum Outcome {
    Rejected(String),
    /// Whether a cluster's GitOps plan moved revision tags through the releases' values.
    Passed {
        tags_in_values: bool,
    },
}

fn codes(d: &meshplan::diagnostic::Diagnostics) -> String {
    let mut v: Vec<&str> = d
        .iter()
        .filter(|d| d.severity == meshplan::diagnostic::Severity::Error)
        .map(|d| d.code.name())
        .collect();
    v.sort_unstable();
    v.dedup();
    v.join(",")
}

fn run(text: &str, to: &str, catalog: &Catalog) -> Result<Outcome, String> {
    let src = meshplan::source::Source::new("inventory.yaml", text);
    let (inv, loaded) = meshplan::load::inventory(&src);
    let Some(inv) = inv else {
        return Err(format!(
            "the generator wrote an inventory the loader rejects:\n{}",
            meshplan::diagnostic::render(&loaded, Some(&src))
        ));
    };
    let mut diags = meshplan::diagnostic::Diagnostics::default();
    let Some(mesh) = meshplan::validate::validate(&inv, &src, &mut diags) else {
        return Ok(Outcome::Rejected(codes(&diags)));
    };
    let target = meshplan::path::Target {
        version: to.parse().map_err(|e: String| e.clone())?,
        via: vec![],
        one_minor: false,
        today: None,
        artifacts: true,
    };
    let Some(paths) = meshplan::path::plan_paths(&mesh, &target, catalog, &src, &mut diags) else {
        return Ok(Outcome::Rejected(codes(&diags)));
    };
    let mut outs = Vec::new();
    let mut tags_in_values = false;
    for (i, (c, p)) in mesh.clusters.iter().zip(&paths.clusters).enumerate() {
        let out = meshplan::plan::build_cluster(i, c, p, catalog, Default::default());
        // The rollback chain only ever points back to checkpoints of the same hop.
        for (k, s) in out.steps.iter().enumerate() {
            if let Some(t) = &s.rollback_then {
                let j = out
                    .steps
                    .iter()
                    .position(|x| x.id == *t)
                    .ok_or("dangling rollbackThen")?;
                if j >= k || !out.steps[j].checkpoint || out.steps[j].hop != s.hop {
                    return Err(format!(
                        "{} rolls back to {t}, which is not an earlier checkpoint of its hop",
                        s.id
                    ));
                }
            }
        }
        meshplan::model::check_cluster(c, &out, catalog).map_err(|f| f.to_string())?;
        if c.install == meshplan::inventory::InstallMethod::Helm {
            // The layout's own plan (Flux and Argo CD move tags through the releases' values),
            // checked on the model like any plan, then its stages and their reverts.
            let spec = gitops_spec(text.len() % 3);
            let opts = meshplan::plan::Options::for_layout(spec.layout);
            let laid = meshplan::plan::build_cluster(i, c, p, catalog, opts);
            meshplan::model::check_cluster(c, &laid, catalog).map_err(|f| f.to_string())?;
            gitops_stages(c, &laid, &spec)?;
            tags_in_values |= laid
                .steps
                .iter()
                .any(|s| s.ops.iter().any(meshplan::plan::rollback::moves_tags));
        }
        outs.push(out);
    }
    if meshplan::plan::order::interleaved(&mesh) {
        let order = meshplan::plan::order::mesh_order(&mesh, &paths);
        meshplan::model::mesh::check_order(&mesh, &paths, &order).map_err(|f| f.to_string())?;
    }
    // `advance` writes what the plans leave behind: a valid inventory at the target, from
    // which the path to the same target has nothing left to do.
    let pairs: Vec<_> = mesh
        .clusters
        .iter()
        .zip(&outs)
        .map(|(c, o)| (c, &o.after))
        .collect();
    let (advanced, _) = meshplan::import::advance::advance(text, &pairs)
        .map_err(|e| format!("advance failed: {}", e.0))?;
    let asrc = meshplan::source::Source::new("advanced.yaml", &advanced);
    let (ainv, aloaded) = meshplan::load::inventory(&asrc);
    let ainv = ainv.ok_or_else(|| {
        format!(
            "the advanced inventory does not load:\n{}\n{advanced}",
            meshplan::diagnostic::render(&aloaded, Some(&asrc))
        )
    })?;
    let mut adiags = meshplan::diagnostic::Diagnostics::default();
    let amesh = meshplan::validate::validate(&ainv, &asrc, &mut adiags).ok_or_else(|| {
        format!(
            "the advanced inventory does not validate:\n{}\n{advanced}",
            meshplan::diagnostic::render(&adiags, Some(&asrc))
        )
    })?;
    for (c, o) in amesh.clusters.iter().zip(&outs) {
        if c.version != o.after.version || c.revision != o.after.revision {
            return Err(format!(
                "advance left cluster `{}` at {} ({:?}), its plan at {} ({:?})\n{advanced}",
                c.name, c.version, c.revision, o.after.version, o.after.revision
            ));
        }
    }
    Ok(Outcome::Passed { tags_in_values })
}

/// The layout a case renders: Flux, Argo CD or kustomize (`which`).
fn gitops_spec(which: usize) -> meshplan::gitops::GitopsSpec {
    let mut spec = meshplan::gitops::GitopsSpec {
        layout: meshplan::inventory::Layout::Flux,
        ..Default::default()
    };
    if which == 2 {
        spec.layout = meshplan::inventory::Layout::Kustomize;
    }
    if which == 1 {
        spec.layout = meshplan::inventory::Layout::Argocd;
        spec.argo = Some(meshplan::gitops::ArgoSpec {
            namespace: "argocd".into(),
            project: "default".into(),
            repo_url: "https://git.example.com/mesh.git".into(),
            path: "plans".into(),
            target_revision: "main".into(),
            destinations: Default::default(),
        });
    }
    spec
}

/// The cluster's plan as the stages of `spec`'s layout: the model ran every stage's revert
/// (inside render_cluster), every stage builds, and with releases in them the first adopts the
/// releases at the running version and the last leaves every release at the cluster's target.
fn gitops_stages(
    c: &meshplan::validate::ClusterSpec,
    out: &meshplan::plan::ClusterOut,
    spec: &meshplan::gitops::GitopsSpec,
) -> Result<(), String> {
    let env = meshplan::render::environment(&Default::default()).map_err(|e| e.to_string())?;
    let tree = meshplan::gitops::render_cluster(
        c,
        out,
        spec,
        &meshplan::catalog::Catalog::embedded(),
        "inventory.yaml",
        &env,
    )
    .map_err(|e| e.to_string())?;
    let built = crate::gitops::build_all(&tree.0)?;
    let versions = |objs: &[serde_json::Value]| -> std::collections::BTreeSet<String> {
        crate::gitops::chart_versions(objs)
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    };
    let stages: Vec<_> = built
        .iter()
        .filter(|(d, _)| !d.ends_with("/objects"))
        .collect();
    let (first, last) = (stages[0], stages[stages.len() - 1]);
    if spec.layout == meshplan::inventory::Layout::Kustomize {
        // No release objects: the helm commands stay beside the stages.
        return Ok(());
    }
    if out.steps.is_empty() {
        // Nothing to do: nothing is adopted either.
        return match versions(first.1).is_empty() && stages.len() == 1 {
            true => Ok(()),
            false => Err(format!("{}: stages for a plan without steps", first.0)),
        };
    }
    let from = c.version.to_string();
    if versions(first.1) != [from.clone()].into() {
        return Err(format!(
            "{}: adopts {:?}, the cluster runs {from}",
            first.0,
            versions(first.1)
        ));
    }
    let to = out.after.version.to_string();
    if versions(last.1) != [to.clone()].into() {
        return Err(format!(
            "{}: ends at {:?}, the plan at {to}",
            last.0,
            versions(last.1)
        ));
    }
    Ok(())
}

#[test]
fn plans_for_random_inventories_survive_the_model() {
    let cases: u32 = std::env::var("MESHPLAN_PROPERTY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let seed: u64 = std::env::var("MESHPLAN_PROPERTY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261124);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    // `cases` counts inventories meshplan accepts: the others are rejections, which proptest
    // does not count (up to a bound, so that a broken generator cannot loop for ever).
    let config = Config {
        cases,
        max_global_rejects: cases.saturating_mul(2),
        max_local_rejects: cases.saturating_mul(2),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let catalog = Catalog::embedded();
    let passed = std::cell::Cell::new(0u32);
    let ambient = std::cell::Cell::new(0u32);
    let sail = std::cell::Cell::new(0u32);
    let remotes = std::cell::Cell::new(0u32);
    let peers = std::cell::Cell::new(0u32);
    let values_tags = std::cell::Cell::new(0u32);
    let reasons = std::cell::RefCell::new(std::collections::BTreeMap::<String, u32>::new());
    let result = runner.run(&mesh(), |m| {
        let Some((text, to)) = render(&m, &catalog) else {
            *reasons.borrow_mut().entry("generator".into()).or_default() += 1;
            return Err(TestCaseError::reject("not renderable"));
        };
        match run(&text, &to, &catalog) {
            Ok(Outcome::Passed { tags_in_values }) => {
                passed.set(passed.get() + 1);
                if tags_in_values {
                    values_tags.set(values_tags.get() + 1);
                }
                if text.contains("ztunnel") {
                    ambient.set(ambient.get() + 1);
                }
                if text.contains("operatorVersion") {
                    sail.set(sail.get() + 1);
                }
                if text.contains("role: remote") {
                    remotes.set(remotes.get() + 1);
                }
                if text.matches("meshID: m").count() - text.matches("role: remote").count() >= 2 {
                    peers.set(peers.get() + 1);
                }
            }
            Ok(Outcome::Rejected(why)) => {
                *reasons.borrow_mut().entry(why).or_default() += 1;
                return Err(TestCaseError::reject("rejected by meshplan"));
            }
            Err(e) => {
                return Err(TestCaseError::fail(format!(
                    "{e}\n--- compile --to {to} this inventory to reproduce:\n{text}"
                )));
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "property: {} inventories planned and checked ({} with an ambient cluster, {} with a Sail-managed one, {} with a primary-remote pair, {} with multi-primary peers, {} with revision tags moved through Helm values); rejected by meshplan's checks: {:?}",
        passed.get(),
        ambient.get(),
        sail.get(),
        remotes.get(),
        peers.get(),
        values_tags.get(),
        reasons.borrow()
    );
    assert!(
        ambient.get() > 0,
        "the generator made no ambient cluster meshplan accepts"
    );
    assert!(
        passed.get() >= cases,
        "only {} valid inventories",
        passed.get()
    );
}
