//! From a cluster's saved state to the inventory's description of it: the control plane (its
//! revision and version from the istiod Deployment's labels and image), the install method
//! (Helm releases), revision tags (their webhooks), node agents, gateways with their Services and
//! identities, namespaces with their labels and workloads. What the state cannot decide is a
//! finding, which the generated inventory shows as a comment at the field it concerns.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::state::{ClusterState, Release};

/// The namespace label import reads a namespace's wave from (a number, 1 when absent): waves
/// are the operator's choice, which no other cluster state records.
pub const WAVE_LABEL: &str = "meshplan.dev/wave";

/// Something import could not decide, or a mixed state it found, at an inventory field.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// The inventory field it concerns, as `clusters[i]...` with names (for stderr).
    pub at: String,
    pub message: String,
}

/// A field of the generated inventory with an optional comment above it.
#[derive(Clone, Debug)]
pub struct Field {
    pub key: String,
    pub value: Node,
    pub comment: Vec<String>,
}

/// The generated inventory as an ordered tree (comments and key order are kept as written).
#[derive(Clone, Debug)]
pub enum Node {
    Scalar(Value),
    /// Written block-style from a JSON value (Helm values, Service ports).
    Block(Value),
    Map(Vec<Field>),
    Seq(Vec<Node>),
}

fn field(key: &str, value: Node) -> Field {
    Field {
        key: key.into(),
        value,
        comment: Vec::new(),
    }
}

fn scalar(v: impl Into<Value>) -> Node {
    Node::Scalar(v.into())
}

/// The string map at `pointer` (labels), empty when absent.
fn string_map(o: &Value, pointer: &str) -> BTreeMap<String, String> {
    o.pointer(pointer)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn labels(o: &Value) -> BTreeMap<String, String> {
    string_map(o, "/metadata/labels")
}

fn pod_labels(o: &Value) -> BTreeMap<String, String> {
    string_map(o, "/spec/template/metadata/labels")
}

fn name(o: &Value) -> &str {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn namespace(o: &Value) -> &str {
    o.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `hub/image:tag[-variant]` of a container: (hub, version, variant suffix).
fn image_parts(image: &str) -> Option<(String, semver::Version, String)> {
    let (repo, tag) = image.rsplit_once(':')?;
    let (hub, _) = repo.rsplit_once('/')?;
    let digits = tag.find(|c: char| !(c.is_ascii_digit() || c == '.'));
    let (v, rest) = match digits {
        Some(i) => (&tag[..i], &tag[i..]),
        None => (tag, ""),
    };
    let version = semver::Version::parse(v).ok()?;
    Some((hub.to_string(), version, rest.to_string()))
}

fn container_image<'a>(o: &'a Value, container: &str) -> Option<&'a str> {
    o.pointer("/spec/template/spec/containers")?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(container))
        .or_else(|| o.pointer("/spec/template/spec/containers/0"))?
        .get("image")?
        .as_str()
}

/// `multicluster` from an istiod release's values: a primary, when they set `global.meshID`
/// (Istio's multicluster installs do); `clusterName` only where it differs from the cluster's
/// name in the inventory.
fn multicluster_block(values: &Value, cluster: &str, remote: bool) -> Option<Node> {
    let g = values.get("global")?;
    let mesh = g
        .get("meshID")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty());
    // A remote's values need not name the mesh (Istio's guides do not set it there): its
    // primary's meshID is filled in once every cluster is read.
    if mesh.is_none() && !remote {
        return None;
    }
    let mut fields = vec![field(
        "meshID",
        scalar(mesh.map_or(Value::Null, |m| Value::from(m.to_string()))),
    )];
    if let Some(n) = g
        .get("network")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        fields.push(field("network", scalar(n.to_string())));
    }
    if let Some(c) = g
        .pointer("/multiCluster/clusterName")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty() && *c != cluster)
    {
        fields.push(field("clusterName", scalar(c.to_string())));
    }
    if remote {
        fields.push(field("role", scalar("remote")));
        if let Some(a) = g.get("remotePilotAddress").and_then(Value::as_str) {
            fields.push(field("remotePilotAddress", scalar(a.to_string())));
        }
    }
    Some(Node::Map(fields))
}

/// A remote cluster's control plane release and its saved values: the istiod-remote chart, or
/// the istiod chart with the remote profile (`istiodRemote.enabled`).
fn remote_release(s: &ClusterState) -> Option<(Release, Value)> {
    s.releases.iter().find_map(|r| {
        let v = s.values.get(&(r.namespace.clone(), r.name.clone()))?;
        let remote = match r.chart_parts().0 {
            "istiod-remote" => true,
            "istiod" => {
                v.get("profile").and_then(Value::as_str) == Some("remote")
                    || v.pointer("/istiodRemote/enabled") == Some(&Value::Bool(true))
            }
            _ => false,
        };
        remote.then(|| (r.clone(), v.clone()))
    })
}

/// Fills in each imported remote's `primary` (and a missing `meshID`): the imported primary of
/// its mesh, when there is exactly one.
pub fn link_remotes(clusters: &mut [Node], findings: &mut Vec<Finding>) {
    let mc = |c: &Node| -> Option<(String, Option<String>, bool)> {
        let Node::Map(fs) = c else { return None };
        let name = fs
            .iter()
            .find(|f| f.key == "name")
            .and_then(|f| match &f.value {
                Node::Scalar(Value::String(s)) => Some(s.clone()),
                _ => None,
            })?;
        let Node::Map(m) = &fs.iter().find(|f| f.key == "multicluster")?.value else {
            return None;
        };
        let mesh = m
            .iter()
            .find(|f| f.key == "meshID")
            .and_then(|f| match &f.value {
                Node::Scalar(Value::String(s)) => Some(s.clone()),
                _ => None,
            });
        let remote = m.iter().any(|f| f.key == "role");
        Some((name, mesh, remote))
    };
    let primaries: Vec<(String, Option<String>)> = clusters
        .iter()
        .filter_map(mc)
        .filter(|(_, _, r)| !r)
        .map(|(n, m, _)| (n, m))
        .collect();
    for (i, c) in clusters.iter_mut().enumerate() {
        let Some((name, mesh, true)) = mc(c) else {
            continue;
        };
        let candidates: Vec<&(String, Option<String>)> = primaries
            .iter()
            .filter(|(_, m)| mesh.is_none() || *m == mesh)
            .collect();
        let [(primary, pmesh)] = candidates.as_slice() else {
            findings.push(Finding {
                at: format!("clusters[{i}] ({name}).multicluster.primary"),
                message: format!(
                    "remote cluster: {} imported primaries could serve it ({}); set `primary` (and `meshID`) to the one whose east-west gateway is its remotePilotAddress",
                    candidates.len(),
                    candidates
                        .iter()
                        .map(|(n, _)| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
            continue;
        };
        let Node::Map(fs) = c else { continue };
        let Some(Field {
            value: Node::Map(m),
            ..
        }) = fs.iter_mut().find(|f| f.key == "multicluster")
        else {
            continue;
        };
        if let Some(f) = m.iter_mut().find(|f| f.key == "meshID")
            && let Some(pm) = pmesh
        {
            f.value = scalar(pm.clone());
        }
        let at = m
            .iter()
            .position(|f| f.key == "role")
            .map_or(m.len(), |i| i + 1);
        m.insert(at, field("primary", scalar(primary.clone())));
    }
}

/// The version of a Sail `Istio` resource (`spec.version` `v1.27.5`; `None` for an alias).
fn sail_version(o: &Value) -> Option<crate::version::IstioVersion> {
    o.pointer("/spec/version")?
        .as_str()?
        .strip_prefix('v')?
        .parse()
        .ok()
}

/// `istio.sail` from the `Istio` resource and the operator's Deployment (its image's tag is
/// the release); without one, the newest release meshplan knows that accepts the running
/// version, reported.
fn sail_block(
    o: &Value,
    deployments: &[Value],
    cp: &Istiod,
    found: &mut impl FnMut(&str, String),
    comment: &mut Vec<String>,
) -> Node {
    let mut fields = Vec::new();
    if name(o) != "default" {
        fields.push(field("name", scalar(name(o).to_string())));
    }
    let running: Option<crate::version::IstioVersion> = cp.version.to_string().parse().ok();
    let image_release = deployments.iter().find_map(|d| {
        let image = d
            .pointer("/spec/template/spec/containers")?
            .as_array()?
            .iter()
            .filter_map(|c| c.get("image")?.as_str())
            .find(|i| {
                i.rsplit_once(':')
                    .is_some_and(|(r, _)| r.ends_with("/sail-operator"))
            })?;
        let tag = image.rsplit_once(':')?.1;
        Some(tag.strip_prefix('v').unwrap_or(tag).to_string())
    });
    let release = match image_release {
        Some(r) if crate::sail::supported(&r).is_some() => r,
        other => {
            let guess = crate::sail::known_releases()
                .into_iter()
                .rev()
                .find(|r| {
                    running
                        .as_ref()
                        .is_some_and(|v| crate::sail::supported(r).is_some_and(|l| l.contains(v)))
                })
                .unwrap_or("1.0.0")
                .to_string();
            let msg = match other {
                Some(r) => format!(
                    "the Sail Operator runs release `{r}`, which meshplan does not know; operatorVersion is set to {guess}, the newest known release that installs {}: check it before planning",
                    cp.version
                ),
                None => format!(
                    "no Sail Operator Deployment (image .../sail-operator:<release>) in the saved state; operatorVersion is set to {guess}, the newest known release that installs {}: set it to the release that runs",
                    cp.version
                ),
            };
            found(".istio.sail.operatorVersion", msg.clone());
            comment.push(msg);
            guess
        }
    };
    fields.push(field("operatorVersion", scalar(release)));
    if let Some(p) = o.pointer("/spec/profile").and_then(Value::as_str) {
        fields.push(field("profile", scalar(p.to_string())));
    }
    if let Some(g) = o
        .pointer("/spec/updateStrategy/inactiveRevisionDeletionGracePeriodSeconds")
        .and_then(Value::as_u64)
        .filter(|g| *g != crate::validate::SAIL_DEFAULT_GRACE_SECONDS)
    {
        fields.push(field(
            "inactiveRevisionDeletionGracePeriodSeconds",
            scalar(g),
        ));
    }
    Node::Map(fields)
}

/// A control plane the state shows: an istiod Deployment.
struct Istiod<'a> {
    deployment: &'a Value,
    revision: Option<String>,
    version: semver::Version,
    hub: String,
    suffix: String,
}

/// Keys meshplan sets itself in the values of the charts it writes: carrying them would fight
/// the plan (`revision`, the images, the control-plane namespace).
fn strip_set_keys(values: &Value, keys: &[&[&str]]) -> Value {
    fn remove(v: &mut Value, path: &[&str]) {
        let Some(obj) = v.as_object_mut() else {
            return;
        };
        match path {
            [] => {}
            [last] => {
                obj.remove(*last);
            }
            [first, rest @ ..] => {
                if let Some(next) = obj.get_mut(*first) {
                    remove(next, rest);
                    // A map the stripping emptied goes too (`multiCluster: {}`).
                    if next.as_object().is_some_and(|m| m.is_empty()) {
                        obj.remove(*first);
                    }
                }
            }
        }
    }
    let mut v = values.clone();
    for path in keys {
        remove(&mut v, path);
    }
    // Drop maps the stripping emptied (`global: {}`).
    if let Some(obj) = v.as_object_mut() {
        obj.retain(|_, x| !matches!(x, Value::Object(m) if m.is_empty()));
    }
    v
}

fn release_of<'a>(s: &'a ClusterState, chart: &str, ns: &str) -> Vec<&'a Release> {
    s.releases
        .iter()
        .filter(|r| r.namespace == ns && r.chart_parts().0 == chart)
        .collect()
}

/// Derives the inventory's cluster entry from one cluster's state.
pub fn cluster(s: &ClusterState, index: usize, findings: &mut Vec<Finding>) -> Option<Node> {
    let at = format!("clusters[{index}] ({})", s.name);
    let mut found = |path: &str, message: String| {
        findings.push(Finding {
            at: format!("{at}{path}"),
            message,
        })
    };
    let deployments = s.of_kind("Deployment");
    let mut istiods: Vec<Istiod> = deployments
        .iter()
        .filter(|d| labels(d).get("app").map(String::as_str) == Some("istiod"))
        .filter_map(|d| {
            let (hub, version, suffix) = image_parts(container_image(d, "discovery")?)?;
            let rev = labels(d).get("istio.io/rev").cloned();
            Some(Istiod {
                deployment: d,
                revision: rev.filter(|r| r != "default"),
                version,
                hub,
                suffix,
            })
        })
        .collect();
    // A remote cluster runs no istiod: its control plane is a release of the istiod-remote
    // chart, or of the istiod chart with the remote profile.
    let remote = if istiods.is_empty() {
        remote_release(s)
    } else {
        None
    };
    let synthetic = remote
        .as_ref()
        .map(|(r, _)| json!({"metadata": {"namespace": r.namespace, "labels": {}}}));
    if let (Some((r, values)), Some(d)) = (&remote, &synthetic)
        && let Ok(version) = semver::Version::parse(r.chart_parts().1)
    {
        istiods.push(Istiod {
            deployment: d,
            revision: values
                .get("revision")
                .and_then(Value::as_str)
                .filter(|x| !x.is_empty() && *x != "default")
                .map(str::to_string),
            version,
            hub: values
                .pointer("/global/hub")
                .and_then(Value::as_str)
                .unwrap_or("docker.io/istio")
                .to_string(),
            suffix: String::new(),
        });
    }
    if istiods.is_empty() {
        found(
            "",
            "no istiod Deployment (label app=istiod), nor a remote control plane (a release of the istiod-remote chart, or of the istiod chart with the remote profile), in the saved state: the cluster is left out of the inventory".into(),
        );
        return None;
    }
    istiods.sort_by(|a, b| a.version.cmp(&b.version));
    let cp = &istiods[0];
    let cp_ns = namespace(cp.deployment).to_string();
    let mut cluster_comment = Vec::new();
    if istiods.len() > 1 {
        let others: Vec<String> = istiods[1..]
            .iter()
            .map(|i| {
                format!(
                    "`{}` ({})",
                    i.revision.as_deref().unwrap_or("default"),
                    i.version
                )
            })
            .collect();
        let msg = format!(
            "mixed state: {} istiod revisions run; the inventory describes the oldest, `{}` ({}), and {} also run{} (an upgrade or rollback in progress?): finish or undo it before planning the next one",
            istiods.len(),
            cp.revision.as_deref().unwrap_or("default"),
            cp.version,
            others.join(", "),
            if others.len() == 1 { "s" } else { "" }
        );
        found(".istio", msg.clone());
        cluster_comment.push(msg);
    }
    let helm_istiod = remote.as_ref().map(|(r, _)| r.clone()).or_else(|| {
        release_of(s, "istiod", &cp_ns)
            .into_iter()
            .find(|r| {
                let rev_values = s
                    .values
                    .get(&(r.namespace.clone(), r.name.clone()))
                    .and_then(|v| v.get("revision"))
                    .and_then(Value::as_str)
                    .filter(|x| !x.is_empty())
                    .map(str::to_string);
                rev_values == cp.revision && r.chart_parts().1 == cp.version.to_string()
            })
            .cloned()
    });
    // The in-cluster operator (its chart labels its pods `name: istio-operator`).
    let operator = deployments
        .iter()
        .any(|d| pod_labels(d).get("name").map(String::as_str) == Some("istio-operator"));
    // The Sail Operator: an `Istio` resource whose revision (`<name>-v<version>`) is the
    // running one. Its istiod has no Helm release.
    let sail_istio = s.of_kind("Istio").iter().find(|o| {
        sail_version(o)
            .is_some_and(|v| Some(crate::sail::revision_name(name(o), &v)) == cp.revision)
    });
    for o in s.of_kind("Istio") {
        if sail_istio.is_none() {
            found(
                ".installMethod",
                format!(
                    "the Sail Operator's Istio `{}` (spec.version {}) is not the running revision `{}` by the operator's naming: an alias version (`-latest`) or another control plane? the cluster is described as {}",
                    name(o),
                    o.pointer("/spec/version")
                        .and_then(Value::as_str)
                        .unwrap_or("none"),
                    cp.revision.as_deref().unwrap_or("default"),
                    if helm_istiod.is_some() {
                        "Helm-installed"
                    } else {
                        "not Sail-managed"
                    }
                ),
            );
        }
    }
    let install = if helm_istiod.is_some() {
        "helm"
    } else if sail_istio.is_some() {
        "sail"
    } else if operator {
        "operator"
    } else if labels(cp.deployment).contains_key("operator.istio.io/component")
        || labels(cp.deployment).contains_key("install.operator.istio.io/owning-resource")
    {
        "istioctl"
    } else {
        "helm"
    };

    let mut istio = vec![
        field("version", scalar(cp.version.to_string())),
        field(
            "revision",
            scalar(cp.revision.clone().map_or(Value::Null, Value::from)),
        ),
    ];
    if cp.revision.is_none() {
        istio.pop();
    }
    if cp_ns != "istio-system" {
        istio.push(field("namespace", scalar(cp_ns.clone())));
    }
    // Webhooks left behind: an Istio webhook whose Service is gone answers nothing (injection
    // or validation fails, or is skipped, for whatever it selects).
    let services_by_name: BTreeSet<(&str, &str)> = s
        .of_kind("Service")
        .iter()
        .map(|x| (namespace(x), name(x)))
        .collect();
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        for w in s.of_kind(kind) {
            let l = labels(w);
            if !l.contains_key("istio.io/rev") && !l.contains_key("istio.io/tag") {
                continue;
            }
            let missing: BTreeSet<String> = w
                .get("webhooks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|h| {
                    let svc = h.pointer("/clientConfig/service")?;
                    let (sn, sns) = (svc.get("name")?.as_str()?, svc.get("namespace")?.as_str()?);
                    (!services_by_name.contains(&(sns, sn))).then(|| format!("{sns}/{sn}"))
                })
                .collect();
            if !missing.is_empty() {
                let msg = format!(
                    "mixed state: {kind} `{}` calls Service {}, which does not exist: a revision removed without its webhooks? delete it once nothing needs it",
                    name(w),
                    missing.into_iter().collect::<Vec<_>>().join(", ")
                );
                found(".istio", msg.clone());
                cluster_comment.push(msg);
            }
        }
    }
    // Revision tags: the tag webhooks (label istio.io/tag) and the revision they point at.
    let mut tags = BTreeSet::new();
    for w in s.of_kind("MutatingWebhookConfiguration") {
        let l = labels(w);
        let Some(tag) = l.get("istio.io/tag") else {
            continue;
        };
        let rev = l
            .get("istio.io/rev")
            .map(String::as_str)
            .unwrap_or("default");
        if Some(rev) == cp.revision.as_deref() || (rev == "default" && cp.revision.is_none()) {
            tags.insert(tag.clone());
        } else {
            found(
                ".istio.tags",
                format!(
                    "revision tag `{tag}` (webhook {}) points at `{rev}`, not at `{}`: left out (mixed state: a tag moved half way?)",
                    name(w),
                    cp.revision.as_deref().unwrap_or("default")
                ),
            );
        }
    }
    if !tags.is_empty() {
        istio.push(field(
            "tags",
            Node::Seq(tags.iter().map(|t| scalar(t.clone())).collect()),
        ));
    }
    let mut istio_comment = Vec::new();
    // A primary of a multicluster mesh: its meshID (and network, clusterName) as installed.
    let mut multicluster = None;
    if let Some(r) = &helm_istiod {
        let default_release = match &cp.revision {
            Some(rev) => format!("istiod-{rev}"),
            None => "istiod".to_string(),
        };
        if r.name != default_release {
            istio.push(field("release", scalar(r.name.clone())));
        }
        match s.values.get(&(r.namespace.clone(), r.name.clone())) {
            Some(v) => {
                multicluster = multicluster_block(v, &s.name, remote.is_some());
                // What meshplan sets in a remote's values (its profile from 1.24, where its
                // primary is, the injection path).
                let v = if remote.is_some() {
                    strip_set_keys(
                        v,
                        &[
                            &["profile"],
                            &["istiodRemote", "injectionPath"],
                            &["global", "remotePilotAddress"],
                        ],
                    )
                } else {
                    v.clone()
                };
                let v = strip_set_keys(
                    &v,
                    &[
                        &["revision"],
                        &["global", "hub"],
                        &["global", "tag"],
                        &["global", "istioNamespace"],
                        &["global", "variant"],
                        &["global", "meshID"],
                        &["global", "network"],
                        &["global", "multiCluster", "clusterName"],
                    ],
                );
                if v.as_object().is_some_and(|o| !o.is_empty()) {
                    istio.push(field("values", Node::Block(v)));
                }
            }
            None => {
                let msg = format!(
                    "no saved values for release {}/{} (helm-values/{}.{}.json): the inventory carries none, so every new revision gets the chart's defaults",
                    r.namespace, r.name, r.namespace, r.name
                );
                found(".istio.values", msg.clone());
                istio_comment.push(msg);
            }
        }
    } else if let Some(o) = sail_istio {
        istio.push(field(
            "sail",
            sail_block(o, deployments, cp, &mut found, &mut istio_comment),
        ));
        let v = strip_set_keys(
            &o.pointer("/spec/values")
                .cloned()
                .unwrap_or_else(|| json!({})),
            &[
                &["revision"],
                &["revisionTags"],
                &["global", "tag"],
                &["global", "istioNamespace"],
            ],
        );
        if v.as_object().is_some_and(|o| !o.is_empty()) {
            istio.push(field("values", Node::Block(v)));
        }
        for t in s.of_kind("IstioRevisionTag") {
            if t.pointer("/spec/targetRef/kind").and_then(Value::as_str) == Some("IstioRevision") {
                let msg = format!(
                    "IstioRevisionTag `{}` names IstioRevision `{}`: meshplan moves it like any tag, and leaves it following the Istio resource after the upgrade",
                    name(t),
                    t.pointer("/spec/targetRef/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                );
                found(".istio.tags", msg.clone());
                istio_comment.push(msg);
            }
        }
    } else if install != "helm" {
        // The IstioOperator that installed the control plane: its revision, with pilot.
        let iop = s.of_kind("IstioOperator").iter().find(|o| {
            let spec = o.get("spec");
            spec.and_then(|x| x.get("revision"))
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                == cp.revision
                && spec
                    .and_then(|x| x.pointer("/components/pilot/enabled"))
                    .and_then(Value::as_bool)
                    != Some(false)
        });
        match iop {
            Some(o) => {
                // meshplan keeps mesh config under `values.meshConfig` and writes it back to
                // spec.meshConfig; it sets the namespace, images and revision itself.
                let mut v = o
                    .pointer("/spec/values")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                if let (Some(obj), Some(m)) = (v.as_object_mut(), o.pointer("/spec/meshConfig")) {
                    obj.insert("meshConfig".into(), m.clone());
                }
                let v = strip_set_keys(
                    &v,
                    &[
                        &["revision"],
                        &["global", "hub"],
                        &["global", "tag"],
                        &["global", "istioNamespace"],
                        &["global", "variant"],
                        &["gateways"],
                    ],
                );
                if v.as_object().is_some_and(|o| !o.is_empty()) {
                    istio.push(field("values", Node::Block(v)));
                }
            }
            None => {
                let msg = format!(
                    "installed by {install}: no IstioOperator of revision `{}` is in the saved state, so `values` is empty; copy them from the IstioOperator you installed with",
                    cp.revision.as_deref().unwrap_or("default")
                );
                found(".istio.values", msg.clone());
                istio_comment.push(msg);
            }
        }
    }
    if let Some(r) = release_of(s, "base", &cp_ns).into_iter().next() {
        if r.name != "istio-base" {
            istio.push(field("baseRelease", scalar(r.name.clone())));
        }
        if let Some(v) = s.values.get(&(r.namespace.clone(), r.name.clone())) {
            // A remote's base chart gets the remote profile from meshplan (1.24+).
            let remote_keys: &[&[&str]] = if remote.is_some() {
                &[&["profile"]]
            } else {
                &[]
            };
            let mut v = strip_set_keys(v, &[&["defaultRevision"], &["global", "istioNamespace"]]);
            if !remote_keys.is_empty() {
                v = strip_set_keys(&v, remote_keys);
            }
            if v.as_object().is_some_and(|o| !o.is_empty()) {
                istio.push(field("baseValues", Node::Block(v)));
            }
        }
    }
    // Node agents.
    for (chart, key, ds_name) in [("cni", "cni", "istio-cni-node"), ("ztunnel", "ztunnel", "")] {
        let ds = s.of_kind("DaemonSet").iter().find(|d| {
            if ds_name.is_empty() {
                labels(d).get("app.kubernetes.io/name").map(String::as_str) == Some("ztunnel")
                    || name(d) == "ztunnel"
            } else {
                name(d) == ds_name
            }
        });
        let Some(ds) = ds else { continue };
        let ns = namespace(ds).to_string();
        let mut agent = Vec::new();
        let release = release_of(s, chart, &ns).into_iter().next();
        if let Some(r) = release {
            let default = if chart == "cni" {
                "istio-cni"
            } else {
                "ztunnel"
            };
            if r.name != default {
                agent.push(field("release", scalar(r.name.clone())));
            }
        }
        if ns != cp_ns {
            agent.push(field("namespace", scalar(ns.clone())));
        }
        if let Some(r) = release
            && let Some(v) = s.values.get(&(r.namespace.clone(), r.name.clone()))
        {
            let v = strip_set_keys(
                v,
                &[
                    &["global", "hub"],
                    &["global", "tag"],
                    &["hub"],
                    &["tag"],
                    &["revision"],
                    &["istioNamespace"],
                ],
            );
            if v.as_object().is_some_and(|o| !o.is_empty()) {
                agent.push(field("values", Node::Block(v)));
            }
        }
        istio.push(field(key, Node::Map(agent)));
    }

    // Gateways: releases of the gateway chart.
    let services = s.of_kind("Service");
    let mut gateway_namespaces = BTreeSet::new();
    let mut gateway_deployments = BTreeSet::new();
    let mut gateways = Vec::new();
    let mut gw_releases: Vec<&Release> = s
        .releases
        .iter()
        .filter(|r| r.chart_parts().0 == "gateway")
        .collect();
    gw_releases.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    // Gateways: Helm releases of the gateway chart, and istioctl's gateway components.
    let mut candidates: Vec<GatewayCandidate> = Vec::new();
    for r in &gw_releases {
        let values = s
            .values
            .get(&(r.namespace.clone(), r.name.clone()))
            .cloned()
            .unwrap_or_else(|| json!({}));
        let dep_name = values
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(&r.name)
            .to_string();
        match deployments
            .iter()
            .find(|d| name(d) == dep_name && namespace(d) == r.namespace)
        {
            Some(dep) => candidates.push(GatewayCandidate {
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                deployment: dep,
                values: Some(values),
                component: None,
            }),
            None => found(
                &format!(".gateways (release {}/{})", r.namespace, r.name),
                format!(
                    "Helm release {}/{} of the gateway chart has no Deployment `{dep_name}`: left out",
                    r.namespace, r.name
                ),
            ),
        }
    }
    // istioctl (and operator) gateways: the chart's component label, no Helm release.
    let mut istioctl_gateways: Vec<&Value> = deployments
        .iter()
        .filter(|d| {
            matches!(
                labels(d)
                    .get("operator.istio.io/component")
                    .map(String::as_str),
                Some("IngressGateways" | "EgressGateways")
            )
        })
        .filter(|d| {
            !candidates
                .iter()
                .any(|c| c.namespace == namespace(d) && name(c.deployment) == name(d))
        })
        .collect();
    istioctl_gateways.sort_by_key(|d| (namespace(d).to_string(), name(d).to_string()));
    for d in istioctl_gateways {
        let component = labels(d)
            .get("operator.istio.io/component")
            .cloned()
            .unwrap_or_default();
        candidates.push(GatewayCandidate {
            namespace: namespace(d).to_string(),
            name: name(d).to_string(),
            deployment: d,
            values: None,
            component: Some(component),
        });
    }
    candidates.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for (gi, r) in candidates.into_iter().enumerate() {
        let dep = r.deployment;
        let dep_name = name(dep).to_string();
        let component = r.component.clone();
        let istioctl = component.is_some();
        let values = r.values.clone().unwrap_or_else(|| json!({}));
        gateway_namespaces.insert(r.namespace.clone());
        gateway_deployments.insert((r.namespace.clone(), dep_name.clone()));
        let pods = pod_labels(dep);
        let lower = dep_name.to_ascii_lowercase();
        // A gateway meshplan replaced runs as `<name>-<revision>` (blue/green): its name in the
        // inventory is the one before the suffix, its release the full one.
        let logical = pods
            .get("istio.io/rev")
            .and_then(|rev| dep_name.strip_suffix(&format!("-{rev}")))
            .filter(|n| !n.is_empty())
            .unwrap_or(&dep_name)
            .to_string();
        let mut g = vec![field("name", scalar(logical.clone()))];
        let kind = if lower.contains("eastwest") || pods.contains_key("topology.istio.io/network") {
            "eastwest"
        } else if lower.contains("egress") || component.as_deref() == Some("EgressGateways") {
            "egress"
        } else {
            "ingress"
        };
        let mut kind_field = field("kind", scalar(kind));
        if !lower.contains("ingress") && !lower.contains("eastwest") && !lower.contains("egress") {
            let msg = format!(
                "gateway `{dep_name}`: its name does not say whether it is an ingress, east-west or egress gateway; `ingress` is a guess"
            );
            found(&format!(".gateways[{gi}].kind"), msg.clone());
            kind_field.comment.push(msg);
        }
        g.push(kind_field);
        g.push(field("namespace", scalar(r.namespace.clone())));
        match pods
            .get("istio.io/rev")
            .filter(|r| !(r.as_str() == "default" && cp.revision.is_none()))
        {
            Some(rev) => g.push(field("revision", scalar(rev.clone()))),
            None => {
                let msg = format!(
                    "gateway `{dep_name}`: its pods carry no istio.io/rev label, so the default revision injects them"
                );
                found(&format!(".gateways[{gi}].revision"), msg);
            }
        }
        if r.name != logical {
            g.push(field("release", scalar(r.name.clone())));
        }
        if let Some(app) = pods.get("app")
            && app != &r.name
        {
            g.push(field("appLabel", scalar(app.clone())));
        }
        let default_istio = logical.strip_prefix("istio-").unwrap_or(&logical);
        if let Some(il) = pods.get("istio")
            && il != default_istio
        {
            g.push(field("istioLabel", scalar(il.clone())));
        }
        let default_sa = if istioctl {
            format!("{}-service-account", r.name)
        } else {
            dep_name.clone()
        };
        if let Some(sa) = dep
            .pointer("/spec/template/spec/serviceAccountName")
            .and_then(Value::as_str)
        {
            // Rendered by the release (or component), or left standalone by an earlier
            // handover (still carrying the old release's annotations).
            let owned = s
                .of_kind("ServiceAccount")
                .iter()
                .find(|x| name(x) == sa && namespace(x) == r.namespace)
                .is_none_or(|x| {
                    if istioctl {
                        labels(x).contains_key("operator.istio.io/component")
                    } else {
                        x.pointer("/metadata/annotations/meta.helm.sh~1release-name")
                            .and_then(Value::as_str)
                            == Some(r.name.as_str())
                    }
                });
            let mut fields = Vec::new();
            if sa != default_sa {
                fields.push(field("name", scalar(sa)));
            }
            if !owned {
                fields.push(field("owner", scalar("standalone")));
            }
            if !fields.is_empty() {
                g.push(field("serviceAccount", Node::Map(fields)));
            }
        }
        let gv = strip_set_keys(
            &values,
            &[&["revision"], &["global", "hub"], &["global", "tag"]],
        );
        if gv.as_object().is_some_and(|o| !o.is_empty()) {
            g.push(field("values", Node::Block(gv)));
        }
        if istioctl {
            // The gateway component of an IstioOperator: its Kubernetes settings are the
            // gateway's values (meshplan sets the Service and labels itself).
            let k8s = s.of_kind("IstioOperator").iter().find_map(|o| {
                ["ingressGateways", "egressGateways"]
                    .iter()
                    .find_map(|list| {
                        o.pointer(&format!("/spec/components/{list}"))?
                            .as_array()?
                            .iter()
                            .find(|c| {
                                c.get("name").and_then(Value::as_str) == Some(dep_name.as_str())
                                    && c.get("enabled").and_then(Value::as_bool) != Some(false)
                            })
                            .map(|c| c.get("k8s").cloned().unwrap_or_else(|| json!({})))
                    })
            });
            match k8s {
                Some(k8s) => {
                    let k = strip_set_keys(&k8s, &[&["service"], &["serviceAnnotations"]]);
                    if k.as_object().is_some_and(|o| !o.is_empty()) {
                        g.push(field("values", Node::Block(k)));
                    }
                }
                None => {
                    let msg = format!(
                        "gateway `{dep_name}` was installed by istioctl: no IstioOperator component of that name is in the saved state, so its k8s settings (replicas, resources, ...) are not carried; copy them into `values`"
                    );
                    found(&format!(".gateways[{gi}].values"), msg.clone());
                    g[0].comment.push(msg);
                }
            }
        }
        // The traffic Service: one in the namespace whose selector the pods match.
        let matching: Vec<&Value> = services
            .iter()
            .filter(|svc| namespace(svc) == r.namespace)
            .filter(|svc| {
                svc.pointer("/spec/selector")
                    .and_then(Value::as_object)
                    .is_some_and(|sel| {
                        !sel.is_empty()
                            && sel
                                .iter()
                                .all(|(k, v)| pods.get(k).map(String::as_str) == v.as_str())
                    })
            })
            .collect();
        if let Some(svc) = matching.first() {
            // Rendered by the gateway's release (Helm's annotations) or its IstioOperator
            // component (istioctl's label), or standalone.
            let owned = if istioctl {
                labels(svc).contains_key("operator.istio.io/component")
            } else {
                svc.pointer("/metadata/annotations/meta.helm.sh~1release-name")
                    .and_then(Value::as_str)
                    == Some(r.name.as_str())
            };
            let (node, notes) = service(svc, owned);
            let mut f = field("service", node);
            if matching.len() > 1 {
                let names: Vec<&str> = matching.iter().map(|x| name(x)).collect();
                f.comment.push(format!(
                    "gateway `{dep_name}`: Services {} all select its pods; the first is its traffic Service, the rest are left out",
                    names.join(", ")
                ));
            }
            f.comment.extend(notes);
            for m in &f.comment {
                found(&format!(".gateways[{gi}].service"), m.clone());
            }
            g.push(f);
        }
        gateways.push(Node::Map(g));
    }

    // The `istio.io/rev` value injected pods of the running revision carry.
    let cp_label = cp.revision.clone().unwrap_or_else(|| "default".to_string());
    // Workloads by kind and namespace: a cluster of thousands of namespaces is read once.
    let mut by_namespace: BTreeMap<(&str, &str), Vec<&Value>> = BTreeMap::new();
    for kind in ["Deployment", "StatefulSet", "DaemonSet"] {
        for w in s.of_kind(kind) {
            by_namespace
                .entry((kind, namespace(w)))
                .or_default()
                .push(w);
        }
    }
    // Namespaces in the mesh.
    let mut namespaces = Vec::new();
    let mut waves_labelled = false;
    let mut ns_objects: Vec<&Value> = s.of_kind("Namespace").iter().collect();
    ns_objects.sort_by_key(|n| name(n).to_string());
    let gateway_api: Vec<&Value> = s.of_kind("Gateway").iter().collect();
    for n in ns_objects {
        let nm = name(n).to_string();
        let l = labels(n);
        let rev = l.get("istio.io/rev");
        let injection = l.get("istio-injection").filter(|v| *v == "enabled");
        let ambient = l.get("istio.io/dataplane-mode").filter(|v| *v == "ambient");
        let holds_gateways = gateway_api.iter().any(|g| {
            namespace(g) == nm
                && matches!(
                    g.pointer("/spec/gatewayClassName").and_then(Value::as_str),
                    Some("istio" | "istio-waypoint")
                )
        });
        if rev.is_none() && injection.is_none() && ambient.is_none() && !holds_gateways {
            continue;
        }
        if nm == cp_ns {
            continue;
        }
        if gateway_namespaces.contains(&nm) {
            found(
                &format!(".namespaces ({nm})"),
                format!(
                    "namespace `{nm}` holds gateways and carries an injection label: left out of `namespaces` (meshplan moves gateways by their releases; remove the label, or the new gateways would get the old proxy)"
                ),
            );
            continue;
        }
        let mut f = vec![field("name", scalar(nm.clone()))];
        let mut ns_comment = Vec::new();
        if let Some(a) = ambient {
            f.push(field("dataplaneMode", scalar(a.clone())));
            if rev.is_some() || injection.is_some() {
                let msg = format!(
                    "namespace `{nm}` is in ambient mode and carries an injection label: its pods get sidecars; decide which it is"
                );
                found(&format!(".namespaces ({nm})"), msg.clone());
                ns_comment.push(msg);
            }
        }
        if let Some(r) = rev
            && ambient.is_none()
        {
            f.push(field("revision", scalar(r.clone())));
        }
        if injection.is_some() && ambient.is_none() {
            f.push(field("istioInjection", scalar("enabled")));
        }
        match l.get(WAVE_LABEL).map(|w| w.parse::<u32>()) {
            None | Some(Ok(1)) => {}
            Some(Ok(w)) if w > 1 => {
                waves_labelled = true;
                f.push(field("wave", scalar(w)));
            }
            Some(_) => {
                let msg = format!(
                    "namespace `{nm}`: its {WAVE_LABEL} label is not a wave number (1, 2, ...): wave 1"
                );
                found(&format!(".namespaces ({nm}).wave"), msg.clone());
                ns_comment.push(msg);
            }
        }
        if l.contains_key(WAVE_LABEL) {
            waves_labelled = true;
        }
        let mut workloads = Vec::new();
        for kind in ["Deployment", "StatefulSet", "DaemonSet"] {
            let mut items: Vec<&Value> = by_namespace
                .get(&(kind, nm.as_str()))
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .copied()
                .filter(|w| !gateway_deployments.contains(&(nm.clone(), name(w).to_string())))
                // What istiod deploys for a Gateway API gateway or waypoint moves with it.
                .filter(|w| {
                    let p = pod_labels(w);
                    !p.contains_key("gateway.networking.k8s.io/gateway-name")
                        && !p.contains_key("istio.io/gateway-name")
                })
                .collect();
            items.sort_by_key(|w| name(w).to_string());
            for w in items {
                let mut wf = vec![
                    field("kind", scalar(kind)),
                    field("name", scalar(name(w).to_string())),
                ];
                // The revisions its pods' proxies run, against the one its namespace's label
                // (or the default revision) gives new pods.
                if let Some(proxies) = &s.proxies {
                    let expected = match (ambient, rev, injection) {
                        (Some(_), _, _) => None,
                        (None, Some(r), _) if injection.is_none() => Some(if tags.contains(r) {
                            cp_label.clone()
                        } else {
                            r.clone()
                        }),
                        (None, _, Some(_)) => Some(cp_label.clone()),
                        _ => None,
                    };
                    let mut running: BTreeMap<&str, usize> = BTreeMap::new();
                    for p in proxies.iter().filter(|p| {
                        p.namespace == nm
                            && p.owner
                                .as_ref()
                                .is_some_and(|(k, n)| k == kind && n == name(w))
                    }) {
                        *running.entry(p.revision.as_str()).or_default() += 1;
                    }
                    let off: Vec<String> = running
                        .iter()
                        .filter(|(r, _)| Some(**r) != expected.as_deref())
                        .map(|(r, n)| format!("{n} on `{r}`"))
                        .collect();
                    if let Some(e) = &expected
                        && !off.is_empty()
                    {
                        let msg = format!(
                            "mixed state: {kind} `{nm}/{}` runs proxies {} while its namespace's pods get `{e}`: it has not restarted since the namespace was relabelled (or its tag moved)",
                            name(w),
                            off.join(", ")
                        );
                        found(
                            &format!(".namespaces ({nm}).workloads ({})", name(w)),
                            msg.clone(),
                        );
                        wf[0].comment.push(msg);
                    }
                }
                let strategy = if kind == "Deployment" {
                    None
                } else {
                    w.pointer("/spec/updateStrategy/type")
                        .and_then(Value::as_str)
                };
                if strategy == Some("OnDelete") {
                    wf.push(field("updateStrategy", scalar("OnDelete")));
                }
                if let Some(p) = w
                    .pointer("/spec/updateStrategy/rollingUpdate/partition")
                    .and_then(Value::as_u64)
                    .filter(|p| *p > 0 && kind == "StatefulSet")
                {
                    wf.push(field("partition", scalar(p)));
                }
                workloads.push(Node::Map(wf));
            }
        }
        if !workloads.is_empty() {
            f.push(field("workloads", Node::Seq(workloads)));
        }
        let mut gws: Vec<&Value> = gateway_api
            .iter()
            .copied()
            .filter(|_| !gateway_api.is_empty())
            .filter(|g| namespace(g) == nm)
            .filter(|g| {
                matches!(
                    g.pointer("/spec/gatewayClassName").and_then(Value::as_str),
                    Some("istio" | "istio-waypoint")
                )
            })
            .collect();
        gws.sort_by_key(|g| name(g).to_string());
        if !gws.is_empty() {
            let items = gws
                .iter()
                .map(|g| {
                    let mut gf = vec![field("name", scalar(name(g).to_string()))];
                    if g.pointer("/spec/gatewayClassName").and_then(Value::as_str)
                        == Some("istio-waypoint")
                    {
                        gf.push(field("class", scalar("istio-waypoint")));
                    }
                    if let Some(r) = labels(g).get("istio.io/rev") {
                        gf.push(field("revision", scalar(r.clone())));
                    }
                    Node::Map(gf)
                })
                .collect();
            f.push(field("gatewayApi", Node::Seq(items)));
        }
        let mut item = Node::Map(f);
        if !ns_comment.is_empty()
            && let Node::Map(fs) = &mut item
        {
            fs[0].comment = ns_comment;
        }
        namespaces.push(item);
    }
    if !namespaces.is_empty() && !waves_labelled {
        found(
            ".namespaces",
            format!(
                "every namespace is in wave 1 (none carries a {WAVE_LABEL} label): set `wave` to move them in several waves, lowest risk first"
            ),
        );
    }

    let mut c = vec![
        field("name", scalar(s.name.clone())),
        field(
            "kubernetesVersion",
            scalar(format!("{}.{}", s.server.0, s.server.1)),
        ),
        field("context", scalar(s.context.clone())),
        field("installMethod", scalar(install)),
    ];
    if let Some(m) = multicluster {
        c.insert(3, field("multicluster", m));
    }
    // Revisions named after the patch (1-27-9) mean the next one is too.
    if let Some(r) = &cp.revision
        && *r
            == format!(
                "{}-{}-{}",
                cp.version.major, cp.version.minor, cp.version.patch
            )
    {
        c.push(field("revisionFormat", scalar("patch")));
    }
    if cp.hub != "docker.io/istio" {
        c.push(field("hub", scalar(cp.hub.clone())));
    }
    match cp.suffix.as_str() {
        "" => {}
        "-distroless" => c.push(field("variant", scalar("distroless"))),
        other => c.push(field("tagSuffix", scalar(other.to_string()))),
    }
    let mut istio_field = field("istio", Node::Map(istio));
    istio_field.comment = istio_comment;
    c.push(istio_field);
    c.push(field("gateways", Node::Seq(gateways)));
    c.push(field("namespaces", Node::Seq(namespaces)));
    if !cluster_comment.is_empty() {
        c[0].comment = cluster_comment;
    }
    Some(Node::Map(c))
}

/// A gateway import found: a Helm release of the gateway chart (with its values), or an
/// istioctl gateway component (its `operator.istio.io/component`).
struct GatewayCandidate<'a> {
    namespace: String,
    /// The Helm release, or the component's (Deployment's) name.
    name: String,
    deployment: &'a Value,
    values: Option<Value>,
    component: Option<String>,
}

/// A gateway's traffic Service, with every field a plan keeps, and what it had to leave out.
fn service(svc: &Value, owned: bool) -> (Node, Vec<String>) {
    let mut notes = Vec::new();
    let spec = svc.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut f = vec![field("name", scalar(name(svc).to_string()))];
    if let Some(t) = spec.get("type").and_then(Value::as_str) {
        f.push(field("type", scalar(t)));
    }
    f.push(field(
        "owner",
        scalar(if owned { "release" } else { "standalone" }),
    ));
    if let Some(sel) = spec.get("selector").and_then(Value::as_object) {
        let keys: BTreeSet<&str> = sel.keys().map(String::as_str).collect();
        if keys != BTreeSet::from(["app", "istio"]) {
            f.push(field("selector", Node::Block(Value::Object(sel.clone()))));
        }
    }
    let annotations: Map<String, Value> = svc
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                // Helm's and kubectl's bookkeeping, which the plan sets itself where needed.
                .filter(|(k, _)| {
                    !k.starts_with("meta.helm.sh/")
                        && k.as_str() != "helm.sh/resource-policy"
                        && k.as_str() != "kubectl.kubernetes.io/last-applied-configuration"
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    if !annotations.is_empty() {
        f.push(field(
            "annotations",
            Node::Block(Value::Object(annotations)),
        ));
    }
    for key in [
        "externalTrafficPolicy",
        "internalTrafficPolicy",
        "loadBalancerSourceRanges",
        "loadBalancerIP",
        "loadBalancerClass",
        "ipFamilies",
        "ipFamilyPolicy",
        "sessionAffinity",
        "allocateLoadBalancerNodePorts",
        "externalIPs",
    ] {
        // Kubernetes fills in some of these by default: only what differs is worth carrying,
        // and every manifest meshplan writes keeps what the inventory records.
        let Some(v) = spec.get(key) else { continue };
        let default = match key {
            "internalTrafficPolicy" => Some(json!("Cluster")),
            "sessionAffinity" => Some(json!("None")),
            "ipFamilyPolicy" => Some(json!("SingleStack")),
            "ipFamilies" => Some(json!(["IPv4"])),
            "allocateLoadBalancerNodePorts" => Some(json!(true)),
            "externalTrafficPolicy" => Some(json!("Cluster")),
            _ => None,
        };
        if default.as_ref() != Some(v) {
            f.push(field(key, Node::Scalar(v.clone())));
        }
    }
    let ports: Vec<Node> = spec
        .get("ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let mut pf = Vec::new();
                    for k in ["name", "port", "targetPort", "nodePort", "protocol"] {
                        if let Some(v) = p.get(k) {
                            if k == "protocol" && v == "TCP" {
                                continue;
                            }
                            if k == "targetPort" && !v.is_u64() {
                                notes.push(format!(
                                    "Service `{}` port {}: its targetPort {v} is a named port, which the inventory cannot record; left out (the chart's default applies)",
                                    name(svc),
                                    p.get("port").cloned().unwrap_or_default()
                                ));
                                continue;
                            }
                            pf.push(field(k, Node::Scalar(v.clone())));
                        }
                    }
                    Node::Map(pf)
                })
                .collect()
        })
        .unwrap_or_default();
    f.push(field("ports", Node::Seq(ports)));
    (Node::Map(f), notes)
}
