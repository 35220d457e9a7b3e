//! `meshplan drift INVENTORY STATE_DIR`: every difference between an inventory and the saved
//! state of its clusters, located at the inventory's field, so that CI can refuse to compile a
//! plan from a stale inventory. The state is read as `import` reads it, and the two
//! descriptions are compared field by field: what a plan depends on (versions, revisions,
//! tags, values, gateways and their Services, namespaces, their labels and workloads).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::inventory::{Cluster, Inventory};
use crate::source::{Source, YamlPath};

/// Compares `inv` (from `src`) with `state` (the inventory `import` derived, parsed).
pub fn compare(inv: &Inventory, src: &Source, state: &Inventory, diags: &mut Diagnostics) {
    let by_context: BTreeMap<&str, &Cluster> = state
        .clusters
        .iter()
        .map(|c| (c.context.as_deref().unwrap_or(&c.name), c))
        .collect();
    let by_name: BTreeMap<&str, &Cluster> = state
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let root = YamlPath::root();
    let mut seen = BTreeSet::new();
    for (ci, c) in inv.clusters.iter().enumerate() {
        let at = root.key("clusters").index(ci);
        let found = c
            .context
            .as_deref()
            .and_then(|ctx| by_context.get(ctx))
            .or_else(|| by_name.get(c.name.as_str()))
            .copied();
        let Some(s) = found else {
            diags.push(
                Diagnostic::error(
                    Code::Drift,
                    format!(
                        "cluster `{}`: the state directory has no cluster of this context or name",
                        c.name
                    ),
                )
                .at(src, &at.key("name"))
                .help("save its state with the commands `meshplan import --print-commands --context <its context>` prints"),
            );
            continue;
        };
        seen.insert(s.name.as_str());
        cluster(c, s, inv, state, src, &at, diags);
    }
    for s in &state.clusters {
        if !seen.contains(s.name.as_str()) {
            diags.push(
                Diagnostic::error(
                    Code::Drift,
                    format!(
                        "the saved state has cluster `{}`, which the inventory does not list",
                        s.name
                    ),
                )
                .at_key(src, &root.key("clusters"))
                .help("add it (`meshplan import` writes its entry), or remove its state directory if it is not part of this mesh"),
            );
        }
    }
}

fn drift(src: &Source, at: &YamlPath, what: String, diags: &mut Diagnostics) {
    diags.push(Diagnostic::error(Code::Drift, what).at(src, at));
}

fn cluster(
    c: &Cluster,
    s: &Cluster,
    inv: &Inventory,
    state: &Inventory,
    src: &Source,
    at: &YamlPath,
    diags: &mut Diagnostics,
) {
    let name = &c.name;
    let mut differ = |path: &YamlPath, field: &str, ours: String, theirs: String| {
        if ours != theirs {
            drift(
                src,
                path,
                format!(
                    "cluster `{name}`: {field} is {ours} in the inventory, {theirs} in the cluster"
                ),
                diags,
            );
        }
    };
    let k8s = |v: &str| v.trim_start_matches('v').to_string();
    differ(
        &at.key("kubernetesVersion"),
        "kubernetesVersion",
        k8s(&c.kubernetes_version),
        k8s(&s.kubernetes_version),
    );
    let install = |x: &Cluster, i: &Inventory| {
        x.settings
            .or(&i.defaults)
            .install_method
            .map_or("helm", |m| m.name())
            .to_string()
    };
    differ(
        &at.key("installMethod"),
        "the install method",
        install(c, inv),
        install(s, state),
    );
    let istio = at.key("istio");
    differ(
        &istio.key("version"),
        "istio.version",
        c.istio.version.clone(),
        s.istio.version.clone(),
    );
    let rev = |r: &Option<String>| r.clone().unwrap_or_else(|| "(none)".into());
    differ(
        &istio.key("revision"),
        "istio.revision",
        rev(&c.istio.revision),
        rev(&s.istio.revision),
    );
    differ(
        &istio.key("namespace"),
        "istio.namespace",
        c.istio.namespace.clone(),
        s.istio.namespace.clone(),
    );
    let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
    differ(
        &istio.key("tags"),
        "istio.tags",
        format!("{:?}", set(&c.istio.tags)),
        format!("{:?}", set(&s.istio.tags)),
    );
    values(
        src,
        &istio.key("values"),
        &format!("cluster `{name}`: istio.values"),
        &c.istio.values,
        &s.istio.values,
        diags,
    );
    values(
        src,
        &istio.key("baseValues"),
        &format!("cluster `{name}`: istio.baseValues"),
        &c.istio.base_values,
        &s.istio.base_values,
        diags,
    );
    for (key, ours, theirs) in [
        (
            "cni",
            c.istio.cni.as_ref().map(|x| &x.values),
            s.istio.cni.as_ref().map(|x| &x.values),
        ),
        (
            "ztunnel",
            c.istio.ztunnel.as_ref().map(|x| &x.values),
            s.istio.ztunnel.as_ref().map(|x| &x.values),
        ),
    ] {
        match (ours, theirs) {
            (Some(a), Some(b)) => values(
                src,
                &istio.key(key).key("values"),
                &format!("cluster `{name}`: istio.{key}.values"),
                a,
                b,
                diags,
            ),
            (None, None) => {}
            (Some(_), None) => drift(
                src,
                &istio.key(key),
                format!(
                    "cluster `{name}`: the inventory describes {key}, which the cluster does not run"
                ),
                diags,
            ),
            (None, Some(_)) => drift(
                src,
                &istio,
                format!(
                    "cluster `{name}`: the cluster runs {key}, which the inventory does not describe"
                ),
                diags,
            ),
        }
    }
    // Gateways, by namespace and name.
    let theirs: BTreeMap<(&str, &str), &crate::inventory::Gateway> = s
        .gateways
        .iter()
        .map(|g| ((g.namespace.as_str(), g.name.as_str()), g))
        .collect();
    let mut matched = BTreeSet::new();
    for (gi, g) in c.gateways.iter().enumerate() {
        let gp = at.key("gateways").index(gi);
        let Some(t) = theirs.get(&(g.namespace.as_str(), g.name.as_str())) else {
            drift(
                src,
                &gp.key("name"),
                format!(
                    "cluster `{name}`: gateway `{}/{}` is not in the cluster (no release of the gateway chart deploys it)",
                    g.namespace, g.name
                ),
                diags,
            );
            continue;
        };
        matched.insert((g.namespace.as_str(), g.name.as_str()));
        let what = format!("cluster `{name}`: gateway `{}`", g.name);
        if g.revision != t.revision {
            drift(
                src,
                &gp.key("revision"),
                format!(
                    "{what}: its pods are on {} in the cluster, {} in the inventory",
                    rev(&t.revision),
                    rev(&g.revision)
                ),
                diags,
            );
        }
        values(
            src,
            &gp.key("values"),
            &format!("{what}: values"),
            &g.values,
            &t.values,
            diags,
        );
        match (&g.service, &t.service) {
            (Some(a), Some(b)) => {
                let sp = gp.key("service");
                if a.name != b.name {
                    drift(
                        src,
                        &sp.key("name"),
                        format!("{what}: its traffic Service is `{}` in the cluster", b.name),
                        diags,
                    );
                }
                if a.kind != b.kind {
                    drift(
                        src,
                        &sp.key("type"),
                        format!("{what}: its Service is of type {:?} in the cluster", b.kind),
                        diags,
                    );
                }
                let ports = |p: &[crate::inventory::ServicePort]| {
                    p.iter()
                        .map(|x| (x.name.clone(), x.port, x.target_port))
                        .collect::<BTreeSet<_>>()
                };
                if ports(&a.ports) != ports(&b.ports) {
                    drift(
                        src,
                        &sp.key("ports"),
                        format!(
                            "{what}: its Service's ports are {:?} in the cluster (name, port, targetPort)",
                            ports(&b.ports)
                        ),
                        diags,
                    );
                }
                if a.annotations != b.annotations {
                    drift(
                        src,
                        &sp.key("annotations"),
                        format!("{what}: its Service's annotations differ from the cluster's"),
                        diags,
                    );
                }
                if a.extra() != b.extra() {
                    drift(
                        src,
                        &sp,
                        format!(
                            "{what}: its Service's traffic settings differ: {:?} in the cluster",
                            b.extra()
                        ),
                        diags,
                    );
                }
            }
            (None, Some(b)) => drift(
                src,
                &gp,
                format!(
                    "{what}: a Service `{}` selects its pods in the cluster; the inventory gives none",
                    b.name
                ),
                diags,
            ),
            (Some(_), None) => drift(
                src,
                &gp.key("service"),
                format!("{what}: no Service selects its pods in the cluster"),
                diags,
            ),
            (None, None) => {}
        }
    }
    for g in &s.gateways {
        if !matched.contains(&(g.namespace.as_str(), g.name.as_str())) {
            drift(
                src,
                &at.key("gateways"),
                format!(
                    "cluster `{name}`: the cluster runs gateway `{}/{}`, which the inventory does not list",
                    g.namespace, g.name
                ),
                diags,
            );
        }
    }
    // Namespaces, by name.
    let theirs: BTreeMap<&str, &crate::inventory::Namespace> =
        s.namespaces.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut matched = BTreeSet::new();
    for (ni, n) in c.namespaces.iter().enumerate() {
        let np = at.key("namespaces").index(ni);
        let Some(t) = theirs.get(n.name.as_str()) else {
            drift(
                src,
                &np.key("name"),
                format!(
                    "cluster `{name}`: namespace `{}` is not in the mesh in the cluster (no istio.io/rev, istio-injection or ambient label, or no such namespace)",
                    n.name
                ),
                diags,
            );
            continue;
        };
        matched.insert(n.name.as_str());
        let what = format!("cluster `{name}`: namespace `{}`", n.name);
        for (key, ours, theirs) in [
            ("revision", &n.revision, &t.revision),
            ("istioInjection", &n.istio_injection, &t.istio_injection),
            ("dataplaneMode", &n.dataplane_mode, &t.dataplane_mode),
        ] {
            if ours != theirs {
                drift(
                    src,
                    &if ours.is_some() {
                        np.key(key)
                    } else {
                        np.key("name")
                    },
                    format!(
                        "{what}: {key} is {} in the cluster, {} in the inventory",
                        rev(theirs),
                        rev(ours)
                    ),
                    diags,
                );
            }
        }
        let workloads = |x: &crate::inventory::Namespace| {
            x.workloads
                .iter()
                .map(|w| (w.kind, w.name.clone()))
                .collect::<BTreeSet<_>>()
        };
        let (a, b) = (workloads(n), workloads(t));
        for (kind, w) in b.difference(&a) {
            drift(
                src,
                &np.key("workloads"),
                format!(
                    "{what}: {} `{w}` runs in the cluster, and the inventory does not list it (it would keep its old proxy)",
                    kind.resource()
                ),
                diags,
            );
        }
        for (wi, w) in n.workloads.iter().enumerate() {
            if !b.contains(&(w.kind, w.name.clone())) {
                drift(
                    src,
                    &np.key("workloads").index(wi).key("name"),
                    format!(
                        "{what}: {} `{}` is not in the cluster",
                        w.kind.resource(),
                        w.name
                    ),
                    diags,
                );
            }
        }
        let gateways = |x: &crate::inventory::Namespace| {
            x.gateway_api
                .iter()
                .map(|g| (g.name.clone(), g.revision.clone()))
                .collect::<BTreeSet<_>>()
        };
        if gateways(n) != gateways(t) {
            drift(
                src,
                &np.key("gatewayApi"),
                format!(
                    "{what}: its Gateway API gateways are {:?} in the cluster (name, istio.io/rev)",
                    gateways(t)
                ),
                diags,
            );
        }
    }
    for n in &s.namespaces {
        if !matched.contains(n.name.as_str()) {
            drift(
                src,
                &at.key("namespaces"),
                format!(
                    "cluster `{name}`: namespace `{}` is in the mesh in the cluster, and the inventory does not list it",
                    n.name
                ),
                diags,
            );
        }
    }
}

/// Carried values: every leaf that differs, by its dotted key (at most a few per map).
fn values(
    src: &Source,
    at: &YamlPath,
    what: &str,
    ours: &BTreeMap<String, Value>,
    theirs: &BTreeMap<String, Value>,
    diags: &mut Diagnostics,
) {
    let a = Value::Object(ours.clone().into_iter().collect());
    let b = Value::Object(theirs.clone().into_iter().collect());
    let mut diffs = Vec::new();
    leaf_diffs(&a, &b, &mut Vec::new(), &mut diffs);
    const SHOWN: usize = 5;
    for (path, x, y) in diffs.iter().take(SHOWN) {
        let mut p = at.clone();
        let mut in_inventory = true;
        for k in path {
            let deeper = p.key(k);
            if in_inventory && src.key_position(&deeper).is_some() {
                p = deeper;
            } else {
                in_inventory = false;
            }
        }
        let show = |v: &Option<&Value>| v.map_or_else(|| "absent".to_string(), ToString::to_string);
        drift(
            src,
            &p,
            format!(
                "{what}: `{}` is {} in the inventory, {} in the cluster (helm get values)",
                path.join("."),
                show(x),
                show(y)
            ),
            diags,
        );
    }
    if diffs.len() > SHOWN {
        drift(
            src,
            at,
            format!("{what}: {} more values differ", diffs.len() - SHOWN),
            diags,
        );
    }
}

type Leaf<'v> = (Vec<String>, Option<&'v Value>, Option<&'v Value>);

fn leaf_diffs<'v>(a: &'v Value, b: &'v Value, path: &mut Vec<String>, out: &mut Vec<Leaf<'v>>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                path.push(k.clone());
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => leaf_diffs(p, q, path, out),
                    (p, q) => out.push((path.clone(), p, q)),
                }
                path.pop();
            }
        }
        _ if a == b => {}
        _ => out.push((path.clone(), Some(a), Some(b))),
    }
}
