//! Helm: the `base`, `istiod` and `gateway` charts. Undoing an upgrade re-applies the recorded
//! values of the version before it (`helm upgrade --version <old> -f <old values>`), never a
//! bare `helm rollback`: the plan cannot know a release's revision numbers, and after cleanup
//! uninstalled and reinstalled a release its history is gone.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{Backend, Draft, TagMove};
use crate::chart_facts;
use crate::inventory::ServiceOwner;
use crate::plan::op::{
    Chart, GatewayDeploy, GatewayServiceRender, HelmUpgrade, IstiodDeploy, Manifest, ObjRef, Op,
    ReleaseContent, TagTemplate, Wait,
};
use crate::plan::state::TagOwner;
use crate::plan::{Builder, HopCtx, Phase, names, seq};
use crate::validate::{ClusterSpec, GatewaySpec};
use crate::version::{IstioVersion, Minor};

pub struct Helm;

const KEEP: &str = "helm.sh/resource-policy";

/// Helm values of the istiod chart for `version` and `revision`, in the layout that chart
/// version expects (`pilot.*` flattened to the top level from 1.24 on). Revision tags are never
/// carried: a release renders only the tags the plan gives it.
pub fn istiod_values(
    c: &ClusterSpec,
    version: &IstioVersion,
    revision: Option<&str>,
    tags: &[String],
    keep_webhooks: bool,
    compatibility: Option<&str>,
) -> Value {
    let mut values = crate::values::carried_istiod(&c.values, version.minor());
    values.remove("revisionTags");
    ambient_profile(c, &mut values);
    if let Some(cv) = compatibility {
        values.insert("compatibilityVersion".into(), json!(cv));
    }
    if version.minor()
        >= (Minor {
            major: 1,
            minor: 24,
        })
        && let Some(Value::Object(pilot)) = values.remove("pilot")
    {
        for (k, v) in pilot {
            values.entry(k).or_insert(v);
        }
    }
    if let Some(r) = revision {
        values.insert("revision".into(), json!(r));
    }
    if !tags.is_empty() {
        values.insert("revisionTags".into(), json!(tags));
    }
    if keep_webhooks && let Value::Object(marks) = keep_marks(version) {
        for (k, m) in marks {
            if let Value::Object(m) = m {
                for (a, v) in m {
                    annotate(&mut values, &k, &a, v.as_str().unwrap_or_default());
                }
            }
        }
    }
    multicluster_values(c, version, &mut values);
    let global = object(&mut values, "global");
    global.insert("hub".into(), json!(c.hub));
    global.insert("tag".into(), json!(format!("{version}{}", c.tag_suffix)));
    global.insert("istioNamespace".into(), json!(c.namespace));
    if let Some(v) = &c.variant {
        global.insert("variant".into(), json!(v));
    }
    Value::Object(values)
}

fn base_values(c: &ClusterSpec, version: &IstioVersion, default_revision: &str) -> Value {
    let mut values = crate::values::carried_base(&c.base_values, version.minor());
    values.insert("defaultRevision".into(), json!(default_revision));
    if c.remote_of().is_some() && version.minor() >= V1_24 {
        // As Istio installs a remote's base chart from 1.24.
        values.insert("profile".into(), json!("remote"));
    }
    object(&mut values, "global").insert("istioNamespace".into(), json!(c.namespace));
    Value::Object(values)
}

/// Helm values of the `ztunnel` chart of `version`: the carried values, with the images, the
/// control-plane namespace and the revision (the istiod it connects to) set. The chart reads
/// them at the top level (global values only fill in what is not set there).
fn ztunnel_values(c: &ClusterSpec, version: &IstioVersion, revision: Option<&str>) -> Value {
    let z = c.ztunnel.as_ref().expect("only for ambient clusters");
    let mut values: Map<String, Value> = z.values.clone().into_iter().collect();
    values.insert("hub".into(), json!(c.hub));
    values.insert("tag".into(), json!(format!("{version}{}", c.tag_suffix)));
    if let Some(v) = &c.variant {
        values.insert("variant".into(), json!(v));
    }
    values.insert("istioNamespace".into(), json!(c.namespace));
    if ztunnel_renamed(version)
        && !values.contains_key("resourceName")
        && !ztunnel_renamed(&c.version)
        && z.release != names::ZTUNNEL_DAEMONSET
    {
        // From 1.25 the chart names its DaemonSet after the release: keep the 1.24 name,
        // which Istio's 1.25 upgrade notes ask for, so that the DaemonSet is upgraded, not
        // replaced by a second one.
        values.insert("resourceName".into(), json!(names::ZTUNNEL_DAEMONSET));
    }
    match revision {
        Some(r) => values.insert("revision".into(), json!(r)),
        None => values.remove("revision"),
    };
    Value::Object(values)
}

/// Whether the ztunnel chart of `version` names its DaemonSet after `resourceName` or the
/// release (1.25 and later) instead of `ztunnel`.
fn ztunnel_renamed(version: &IstioVersion) -> bool {
    version.minor()
        >= Minor {
            major: 1,
            minor: 25,
        }
}

/// The name of the ztunnel DaemonSet the chart of `version` renders for this cluster: `ztunnel`
/// in 1.24, and kept so for a cluster that starts at 1.24 (`resourceName`, above); from 1.25,
/// the carried `resourceName`, or else the release's name.
pub fn ztunnel_daemonset(c: &ClusterSpec, version: &IstioVersion) -> String {
    let z = c.ztunnel.as_ref().expect("only for ambient clusters");
    let carried = match z.values.get("resourceName") {
        Some(Value::String(n)) if !n.is_empty() => Some(n.clone()),
        _ => None,
    };
    if !ztunnel_renamed(version) {
        names::ZTUNNEL_DAEMONSET.to_string()
    } else if let Some(n) = carried {
        n
    } else if !ztunnel_renamed(&c.version) {
        names::ZTUNNEL_DAEMONSET.to_string()
    } else {
        z.release.clone()
    }
}

/// Ambient mode: the istiod and cni charts take the `ambient` profile, as Istio installs and
/// upgrades them for ambient, unless the carried values choose a profile.
fn ambient_profile(c: &ClusterSpec, values: &mut Map<String, Value>) {
    if c.ztunnel.is_some() && !values.contains_key("profile") {
        values.insert("profile".into(), json!("ambient"));
    }
}

/// Helm values of the `cni` chart of `version`: the carried values, with the images set.
fn cni_values(c: &ClusterSpec, version: &IstioVersion) -> Value {
    let cni = c.cni.as_ref().expect("only for clusters with istio-cni");
    let mut values = crate::values::carried_cni(&cni.values, version.minor());
    ambient_profile(c, &mut values);
    let global = object(&mut values, "global");
    global.insert("hub".into(), json!(c.hub));
    global.insert("tag".into(), json!(format!("{version}{}", c.tag_suffix)));
    if let Some(v) = &c.variant {
        global.insert("variant".into(), json!(v));
    }
    Value::Object(values)
}

fn object<'m>(m: &'m mut Map<String, Value>, key: &str) -> &'m mut Map<String, Value> {
    let v = m.entry(key).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().expect("just made an object")
}

fn annotate(m: &mut Map<String, Value>, key: &str, name: &str, value: &str) {
    object(m, key).insert(name.into(), json!(value));
}

/// Ports as the gateway chart takes them (its schema has no nodePort).
fn chart_ports(ports: &[crate::inventory::ServicePort]) -> Value {
    Value::Array(
        ports
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "port": p.port,
                    "protocol": p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    "targetPort": p.target_port.unwrap_or(p.port),
                })
            })
            .collect(),
    )
}

/// Helm values of the gateway chart of `version` that render `d`: the carried values, with
/// everything the plan decides (names, labels, revision, ServiceAccount, RBAC, Service) set.
pub fn gateway_values(
    c: &ClusterSpec,
    g: &GatewaySpec,
    release: &str,
    d: &GatewayDeploy,
    version: &IstioVersion,
) -> Value {
    let mut values: Map<String, Value> = g.gateway.values.clone().into_iter().collect();
    if d.name == release {
        values.remove("name");
    } else {
        values.insert("name".into(), json!(d.name));
    }
    let labels = object(&mut values, "labels");
    labels.insert("app".into(), json!(d.app));
    labels.insert("istio".into(), json!(d.istio));
    for (k, v) in &d.extra_labels {
        labels.insert(k.clone(), json!(v));
    }
    match &d.pod_revision {
        Some(r) => {
            values.insert("revision".into(), json!(r));
        }
        None => {
            values.remove("revision");
        }
    }
    let sa = object(&mut values, "serviceAccount");
    sa.insert("create".into(), json!(d.creates_service_account));
    sa.insert("name".into(), json!(d.service_account));
    if d.keep_service_account {
        annotate(sa, "annotations", KEEP, "keep");
    }
    object(&mut values, "rbac").insert("enabled".into(), json!(d.rbac));
    match &d.service {
        None => {
            values.insert("service".into(), json!({"type": "None"}));
        }
        Some(GatewayServiceRender { spec, keep }) => {
            let service_annotations = chart_facts::gateway_service_field(version, "annotations");
            let mut sv = Map::new();
            sv.insert("type".into(), json!(spec.kind));
            sv.insert("ports".into(), chart_ports(&spec.ports));
            let mut ann: BTreeMap<String, String> = spec.annotations.clone();
            if *keep {
                ann.insert(KEEP.into(), "keep".into());
            }
            if !ann.is_empty() {
                if service_annotations {
                    sv.insert("annotations".into(), json!(ann));
                } else {
                    // Before 1.12.2 the Service takes the release's top-level annotations.
                    for (k, v) in &ann {
                        annotate(&mut values, "annotations", k, v);
                    }
                }
            }
            for (k, v) in &spec.extra {
                if chart_facts::gateway_service_field(version, k) {
                    sv.insert(k.clone(), v.clone());
                }
            }
            values.insert("service".into(), Value::Object(sv));
        }
    }
    if let Some(v) = &c.variant {
        object(&mut values, "global").insert("variant".into(), json!(v));
    }
    Value::Object(values)
}

/// The release of the running istiod is kept for a rollback with its tags, without them once
/// they were handed over.
fn istiod_content(
    c: &ClusterSpec,
    revision: Option<&str>,
    tags: Vec<String>,
    keep: bool,
) -> ReleaseContent {
    ReleaseContent::Istiod(IstiodDeploy {
        revision: revision.map(str::to_string),
        tags,
        keep_webhooks: keep,
        remote: c.remote_of().is_some(),
    })
}

/// The chart of a cluster's control plane at `version`: istiod, except for a remote cluster
/// before 1.24 (the istiod-remote chart; from 1.24 the istiod chart's `remote` profile).
pub fn istiod_chart(c: &ClusterSpec, version: &IstioVersion) -> Chart {
    if c.remote_of().is_some() && version.minor() < V1_24 {
        Chart::IstiodRemote
    } else {
        Chart::Istiod
    }
}

const V1_24: Minor = Minor {
    major: 1,
    minor: 24,
};

/// What a multicluster mesh needs in every control plane's values: the mesh, cluster and
/// network it belongs to; for a remote, where its primary's istiod is (its east-west gateway)
/// and the injection path that names the cluster and network.
pub(crate) fn multicluster_values(
    c: &ClusterSpec,
    version: &IstioVersion,
    values: &mut Map<String, Value>,
) {
    let Some(m) = &c.multicluster else {
        return;
    };
    if let crate::validate::MeshRole::Remote { pilot_address, .. } = &m.role {
        if version.minor() >= V1_24 {
            values.insert("profile".into(), json!("remote"));
        }
        let remote = object(values, "istiodRemote");
        remote.insert(
            "injectionPath".into(),
            json!(format!(
                "/inject/cluster/{}/net/{}",
                m.cluster_name,
                m.network.as_deref().unwrap_or("")
            )),
        );
        object(values, "global").insert("remotePilotAddress".into(), json!(pilot_address));
    }
    let global = object(values, "global");
    global.insert("meshID".into(), json!(m.mesh_id));
    if let Some(n) = &m.network {
        global.insert("network".into(), json!(n));
    }
    object(global, "multiCluster").insert("clusterName".into(), json!(m.cluster_name));
}

impl Helm {
    fn upgrade(
        b: &Builder,
        release: &str,
        namespace: &str,
        chart: Chart,
        version: &IstioVersion,
        values: &str,
        content: ReleaseContent,
    ) -> HelmUpgrade {
        HelmUpgrade {
            release: release.to_string(),
            namespace: namespace.to_string(),
            chart,
            chart_ref: b.chart_ref(chart.name()),
            version: version.clone(),
            values: values.to_string(),
            install: false,
            reuse_values: false,
            wait: false,
            skip_schema_validation: chart == Chart::Gateway
                && chart_facts::gateway_schema_rejects_values(version),
            take_ownership: false,
            content,
        }
    }

    /// A node agent (not revisioned) upgraded in place to the hop's target, waited for as a
    /// DaemonSet, and back to the hop's start on rollback: its values for both versions, the
    /// revision each connects to.
    fn node_agent(b: &mut Builder, h: &HopCtx, a: NodeAgent<'_>) -> Draft {
        let hop = h.hop;
        let chart = a.chart.name();
        let mut ops = Vec::new();
        for (dir, version, revision) in [
            (h.phase_dir(a.phase), &hop.to, hop.to_revision.as_deref()),
            (
                h.rollback_phase_dir(a.phase),
                &hop.from,
                hop.from_revision.as_deref(),
            ),
        ] {
            let path = format!("{dir}/{chart}.values.yaml");
            let mut up = Self::upgrade(
                b,
                &a.release,
                &a.namespace,
                a.chart,
                version,
                &path,
                (a.content)(version, revision),
            );
            up.wait = true;
            let op = Op::HelmUpgrade(up);
            b.artifact(
                &path,
                a.template,
                format!(
                    "chart {} {version} (release {} in {})",
                    b.chart_ref(chart),
                    a.release,
                    a.namespace
                ),
                &op,
                json!({"values": (a.values)(b.c, version, revision)}),
            );
            ops.push(op);
        }
        let back = ops.pop().expect("two files");
        let up = ops.pop().expect("two files");
        Draft {
            ops: vec![up],
            undo: vec![back],
            waits: vec![Wait::Rollout {
                kind: crate::inventory::WorkloadKind::DaemonSet,
                name: a.daemonset,
                namespace: a.namespace,
                timeout: "10m".to_string(),
            }],
            undo_note: Some(a.undo_note),
            ..Draft::default()
        }
    }

    fn gateway_dir(b: &Builder, dir: &str, gi: usize) -> String {
        let g = &b.c.gateways[gi];
        format!(
            "{dir}/{}-{}",
            seq(gi + 1, b.c.gateways.len()),
            g.gateway.name
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn write_gateway_values(
        b: &mut Builder,
        op: &Op,
        gi: usize,
        path: &str,
        release: &str,
        d: &GatewayDeploy,
        version: &IstioVersion,
        note: &str,
    ) {
        let g = &b.c.gateways[gi];
        let values = gateway_values(b.c, g, release, d, version);
        let targets = format!(
            "chart {} {version} (release {release} in {}){note}",
            b.chart_ref("gateway"),
            g.gateway.namespace
        );
        b.artifact(
            path,
            "gateway.values.yaml.j2",
            targets,
            op,
            json!({"values": values}),
        );
    }
}

impl Backend for Helm {
    fn crds(&self, b: &mut Builder, h: &HopCtx) -> Option<Draft> {
        let hop = h.hop;
        let target = b.catalog.get(hop.to.minor())?;
        let templates = target.crd_templates;
        let from_templates = b
            .catalog
            .get(hop.from.minor())
            .is_some_and(|r| r.crd_templates);
        let ns = b.c.namespace.clone();
        let release = b.c.base_release.clone();
        let path = format!("{}/base.values.yaml", h.phase_dir(Phase::Crds));
        let mut d = Draft::default();
        if templates && !from_templates {
            d.ops.push(Op::AdoptCrds {
                release: release.clone(),
                namespace: ns.clone(),
            });
        }
        if !templates {
            d.ops.push(Op::ApplyCrds {
                chart_ref: b.chart_ref("base"),
                version: hop.to.clone(),
            });
        }
        let default_revision = b.now.default_revision.clone();
        let up = Op::HelmUpgrade(Self::upgrade(
            b,
            &release,
            &ns,
            Chart::Base,
            &hop.to,
            &path,
            ReleaseContent::Base {
                default_revision: default_revision.clone(),
            },
        ));
        b.artifact(
            &path,
            "base.values.yaml.j2",
            format!(
                "chart {} {} (release {release} in {ns})",
                b.chart_ref("base"),
                hop.to
            ),
            &up,
            json!({"values": base_values(b.c, &hop.to, &default_revision)}),
        );
        d.ops.push(up);
        d.waits.push(Wait::CrdsEstablished {
            selector: if templates {
                "app.kubernetes.io/part-of=istio".into()
            } else {
                "chart=istio".into()
            },
        });
        d.undo_note = Some(format!(
            "nothing to undo: CRDs are never downgraded (a downgrade can drop a version objects are stored in), and the base chart of {} keeps serving the `{}` control plane, as it did throughout this hop; its defaultRevision is unchanged",
            hop.to,
            hop.from_label()
        ));
        Some(d)
    }

    fn control_plane(&self, b: &mut Builder, h: &HopCtx) -> Draft {
        let hop = h.hop;
        let ns = b.c.namespace.clone();
        let path = format!("{}/istiod.values.yaml", h.phase_dir(Phase::ControlPlane));
        let mut d = Draft::default();
        if h.canary() {
            let rev = hop.to_revision.clone();
            let release = names::istiod(rev.as_deref());
            let mut up = Self::upgrade(
                b,
                &release,
                &ns,
                istiod_chart(b.c, &hop.to),
                &hop.to,
                &path,
                istiod_content(b.c, rev.as_deref(), Vec::new(), false),
            );
            up.install = true;
            up.wait = true;
            let op = Op::HelmUpgrade(up);
            let compat = compatibility(b, h);
            let values = istiod_values(b.c, &hop.to, rev.as_deref(), &[], false, compat.as_deref());
            b.artifact(
                &path,
                "istiod.values.yaml.j2",
                format!(
                    "chart {} {} (release {release} in {ns})",
                    b.chart_ref(istiod_chart(b.c, &hop.to).name()),
                    hop.to
                ),
                &op,
                json!({"values": values, "chart": istiod_chart(b.c, &hop.to).name()}),
            );
            d.ops.push(op);
            d.undo.push(Op::HelmUninstall {
                release: release.clone(),
                namespace: ns.clone(),
            });
            // A remote cluster runs no istiod: its primary's serves it.
            if b.c.remote_of().is_none() {
                d.waits.push(Wait::Rollout {
                    kind: crate::inventory::WorkloadKind::Deployment,
                    name: release,
                    namespace: ns,
                    timeout: "5m".into(),
                });
            }
        } else {
            let release = b.now.istiod_release.clone();
            let rev = b.now.revision.clone();
            let tags: Vec<String> = owned_tags(b, &release);
            let mut up = Self::upgrade(
                b,
                &release,
                &ns,
                istiod_chart(b.c, &hop.to),
                &hop.to,
                &path,
                istiod_content(b.c, rev.as_deref(), tags.clone(), false),
            );
            up.wait = true;
            let op = Op::HelmUpgrade(up);
            b.artifact(
                &path,
                "istiod.values.yaml.j2",
                format!(
                    "chart {} {} (release {release} in {ns})",
                    b.chart_ref(istiod_chart(b.c, &hop.to).name()),
                    hop.to
                ),
                &op,
                json!({"values": istiod_values(b.c, &hop.to, rev.as_deref(), &tags, false, compatibility(b, h).as_deref()), "chart": istiod_chart(b.c, &hop.to).name()}),
            );
            d.ops.push(op);
            let back_path = format!(
                "{}/istiod.values.yaml",
                h.rollback_phase_dir(Phase::ControlPlane)
            );
            let mut back = Self::upgrade(
                b,
                &release,
                &ns,
                istiod_chart(b.c, &hop.from),
                &hop.from,
                &back_path,
                istiod_content(b.c, rev.as_deref(), tags.clone(), false),
            );
            back.wait = true;
            let back = Op::HelmUpgrade(back);
            b.artifact(
                &back_path,
                "istiod.values.yaml.j2",
                format!(
                    "chart {} {} (release {release} in {ns}): rollback",
                    b.chart_ref(istiod_chart(b.c, &hop.from).name()),
                    hop.from
                ),
                &back,
                json!({"values": istiod_values(b.c, &hop.from, rev.as_deref(), &tags, false, None), "chart": istiod_chart(b.c, &hop.from).name()}),
            );
            d.undo.push(back);
            if b.c.remote_of().is_none() {
                d.waits.push(Wait::Rollout {
                    kind: crate::inventory::WorkloadKind::Deployment,
                    name: names::istiod(rev.as_deref()),
                    namespace: ns,
                    timeout: "5m".into(),
                });
            }
        }
        d
    }

    fn hand_over_tags(&self, b: &mut Builder, h: &HopCtx) -> Option<Draft> {
        if b.tags_in_values(h) {
            return keep_tags(b, h);
        }
        let release = b.now.istiod_release.clone();
        let tags = owned_tags(b, &release);
        if tags.is_empty() {
            return None;
        }
        let ns = b.c.namespace.clone();
        let from = h.hop.from.clone();
        let dir = h.phase_dir(Phase::ControlPlane);
        let rev = b.now.revision.clone();
        // Two upgrades: Helm checks the keep mark on the live object when it deletes what a
        // release stopped rendering, so the webhooks must carry it before the tags go.
        let mut ops = Vec::new();
        for (file, keep_tags, values, what) in [
            (
                "istiod-tags-1-keep.values.yaml",
                tags.clone(),
                keep_marks(&from),
                "marks its webhooks, tags included, to be kept",
            ),
            (
                "istiod-tags-2-release.values.yaml",
                Vec::new(),
                json!({"revisionTags": []}),
                "stops rendering its revision tags, which stay as standalone webhooks",
            ),
        ] {
            let path = format!("{dir}/{file}");
            let mut up = Self::upgrade(
                b,
                &release,
                &ns,
                istiod_chart(b.c, &from),
                &from,
                &path,
                istiod_content(b.c, rev.as_deref(), keep_tags, true),
            );
            up.reuse_values = true;
            let op = Op::HelmUpgrade(up);
            b.artifact(
                &path,
                "keep.values.yaml.j2",
                format!(
                    "chart {} {from} (release {release} in {ns}): {what}",
                    b.chart_ref(istiod_chart(b.c, &from).name())
                ),
                &op,
                json!({"what": "istiod-tags", "values": values}),
            );
            ops.push(op);
        }
        for t in &mut b.now.tags {
            if t.owner == TagOwner::Release(release.clone()) {
                t.owner = TagOwner::Standalone;
            }
        }
        b.now.kept_webhooks.push(release.clone());
        Some(Draft {
            ops,
            undo_note: Some(format!(
                "nothing to undo: the tags {} stay in place as standalone webhooks, still pointing at `{}`; the old release only stops rendering them",
                tags.join(", "),
                h.hop.from_label()
            )),
            ..Draft::default()
        })
    }

    fn hand_over_gateway(&self, b: &mut Builder, h: &HopCtx, gi: usize) -> Option<Draft> {
        let now = b.now.gateways[gi].clone();
        let g = &b.c.gateways[gi];
        let keep_service = now.service_owner == ServiceOwner::Release && g.service().is_some();
        let keep_sa = now.sa_owner == ServiceOwner::Release;
        if !keep_service && !keep_sa {
            return None;
        }
        let ns = g.gateway.namespace.clone();
        let mut deploy = now.deploy.clone();
        let mut values = Map::new();
        if keep_service {
            if let Some(s) = &mut deploy.service {
                s.keep = true;
            }
            if chart_facts::gateway_service_field(&now.version, "annotations") {
                annotate(object(&mut values, "service"), "annotations", KEEP, "keep");
            } else {
                annotate(&mut values, "annotations", KEEP, "keep");
            }
        }
        if keep_sa {
            deploy.keep_service_account = true;
            annotate(
                object(&mut values, "serviceAccount"),
                "annotations",
                KEEP,
                "keep",
            );
        }
        let path = format!(
            "{}/1-keep.values.yaml",
            Self::gateway_dir(b, &h.phase_dir(Phase::Gateways), gi)
        );
        let mut up = Self::upgrade(
            b,
            &now.release,
            &ns,
            Chart::Gateway,
            &now.version,
            &path,
            ReleaseContent::Gateway(Box::new(deploy.clone())),
        );
        up.reuse_values = true;
        let op = Op::HelmUpgrade(up);
        b.artifact(
            &path,
            "keep.values.yaml.j2",
            format!(
                "chart {} {} (release {} in {ns}): keeps its {} when the release is uninstalled",
                b.chart_ref("gateway"),
                now.version,
                now.release,
                match (keep_service, keep_sa) {
                    (true, true) => "Service and ServiceAccount",
                    (true, false) => "Service",
                    _ => "ServiceAccount",
                }
            ),
            &op,
            json!({"what": "gateway", "values": values}),
        );
        b.now.gateways[gi].deploy = deploy;
        let mut d = Draft {
            ops: vec![op],
            undo_note: Some("nothing to undo: `helm.sh/resource-policy: keep` only matters when the release is uninstalled, and a rollback never uninstalls it".to_string()),
            ..Draft::default()
        };
        if keep_service && let Some(s) = g.service() {
            d.waits.push(Wait::ServiceKept {
                service: s.name.clone(),
                namespace: ns,
            });
        }
        Some(d)
    }

    fn gateway_identity(&self, b: &mut Builder, h: &HopCtx, gi: usize) -> Option<Draft> {
        let g = &b.c.gateways[gi];
        let ns = g.gateway.namespace.clone();
        let sa = g.service_account.clone();
        let path = format!(
            "{}/2-identity.yaml",
            Self::gateway_dir(b, &h.phase_dir(Phase::Gateways), gi)
        );
        let manifest = Manifest::SecretsRbac {
            name: names::secrets_rbac(&sa),
            namespace: ns.clone(),
            service_account: sa.clone(),
        };
        let op = Op::Apply {
            file: path.clone(),
            objects: vec![manifest],
        };
        b.artifact(
            &path,
            "secrets-rbac.yaml.j2",
            format!(
                "Role and RoleBinding {ns}/{}: ServiceAccount {sa} may read TLS secrets",
                names::secrets_rbac(&sa)
            ),
            &op,
            json!({"name": names::secrets_rbac(&sa), "namespace": ns, "serviceAccount": sa}),
        );
        Some(Draft {
            ops: vec![op],
            undo_note: Some(format!(
                "nothing to undo: the Role only grants the gateway's own ServiceAccount `{sa}` what its chart granted it, and stays for the gateways that run as it"
            )),
            ..Draft::default()
        })
    }

    fn new_gateway(&self, b: &Builder, h: &HopCtx, gi: usize) -> GatewayDeploy {
        let g = &b.c.gateways[gi];
        let now = &b.now.gateways[gi];
        GatewayDeploy {
            name: format!("{}-{}", g.gateway.name, h.hop.to_label()),
            namespace: g.gateway.namespace.clone(),
            pod_revision: Some(h.hop.to_label().to_string()),
            app: now.deploy.app.clone(),
            istio: now.deploy.istio.clone(),
            extra_labels: BTreeMap::new(),
            service_account: g.service_account.clone(),
            creates_service_account: false,
            keep_service_account: false,
            rbac: false,
            service: None,
        }
    }

    fn install_gateway(
        &self,
        b: &mut Builder,
        h: &HopCtx,
        gi: usize,
        new: &GatewayDeploy,
    ) -> Draft {
        let ns = new.namespace.clone();
        let path = format!(
            "{}/4-gateway.values.yaml",
            Self::gateway_dir(b, &h.phase_dir(Phase::Gateways), gi)
        );
        let mut up = Self::upgrade(
            b,
            &new.name,
            &ns,
            Chart::Gateway,
            &h.hop.to,
            &path,
            ReleaseContent::Gateway(Box::new(new.clone())),
        );
        up.install = true;
        up.wait = true;
        let op = Op::HelmUpgrade(up);
        Self::write_gateway_values(b, &op, gi, &path, &new.name, new, &h.hop.to, "");
        Draft {
            ops: vec![op],
            undo: vec![Op::HelmUninstall {
                release: new.name.clone(),
                namespace: ns.clone(),
            }],
            waits: vec![Wait::Rollout {
                kind: crate::inventory::WorkloadKind::Deployment,
                name: new.name.clone(),
                namespace: ns,
                timeout: "5m".into(),
            }],
            ..Draft::default()
        }
    }

    fn upgrade_gateway(
        &self,
        b: &mut Builder,
        h: &HopCtx,
        gi: usize,
        new: &GatewayDeploy,
    ) -> Draft {
        let now = b.now.gateways[gi].clone();
        let ns = new.namespace.clone();
        let path = format!(
            "{}/gateway.values.yaml",
            Self::gateway_dir(b, &h.phase_dir(Phase::Gateways), gi)
        );
        let mut up = Self::upgrade(
            b,
            &now.release,
            &ns,
            Chart::Gateway,
            &h.hop.to,
            &path,
            ReleaseContent::Gateway(Box::new(new.clone())),
        );
        up.wait = true;
        let op = Op::HelmUpgrade(up);
        Self::write_gateway_values(b, &op, gi, &path, &now.release, new, &h.hop.to, "");
        let back_path = format!(
            "{}/gateway.values.yaml",
            Self::gateway_dir(b, &h.rollback_phase_dir(Phase::Gateways), gi)
        );
        let mut back = Self::upgrade(
            b,
            &now.release,
            &ns,
            Chart::Gateway,
            &now.version,
            &back_path,
            ReleaseContent::Gateway(Box::new(now.deploy.clone())),
        );
        back.wait = true;
        let back = Op::HelmUpgrade(back);
        Self::write_gateway_values(
            b,
            &back,
            gi,
            &back_path,
            &now.release,
            &now.deploy,
            &now.version,
            ": rollback",
        );
        Draft {
            ops: vec![op],
            undo: vec![back],
            waits: vec![Wait::Rollout {
                kind: crate::inventory::WorkloadKind::Deployment,
                name: new.name.clone(),
                namespace: ns,
                timeout: "5m".into(),
            }],
            ..Draft::default()
        }
    }

    fn remove_gateway(&self, b: &mut Builder, h: &HopCtx, gi: usize) -> Draft {
        let now = b.now.gateways[gi].clone();
        let ns = now.deploy.namespace.clone();
        let mut d = Draft::default();
        d.ops.push(Op::HelmUninstall {
            release: now.release.clone(),
            namespace: ns.clone(),
        });
        if now.deploy.service.as_ref().is_some_and(|s| s.keep)
            && !chart_facts::gateway_service_field(&now.version, "annotations")
        {
            // Before 1.12.2 the keep mark went on every object of the release.
            d.ops.push(Op::Delete {
                objects: vec![ObjRef::new("deployment", &now.deploy.name, Some(&ns))],
            });
        }
        // A rollback reinstalls the old gateway as it ran, but as a gateway beside the traffic
        // Service and the ServiceAccount, which now stand alone.
        let back_deploy = GatewayDeploy {
            creates_service_account: false,
            keep_service_account: false,
            rbac: false,
            service: None,
            ..now.deploy.clone()
        };
        let path = format!(
            "{}/gateway.reinstall.values.yaml",
            Self::gateway_dir(b, &h.rollback_phase_dir(Phase::Cleanup), gi)
        );
        let mut up = Self::upgrade(
            b,
            &now.release,
            &ns,
            Chart::Gateway,
            &now.version,
            &path,
            ReleaseContent::Gateway(Box::new(back_deploy.clone())),
        );
        up.install = true;
        up.wait = true;
        let back = Op::HelmUpgrade(up);
        Self::write_gateway_values(
            b,
            &back,
            gi,
            &path,
            &now.release,
            &back_deploy,
            &now.version,
            ": rollback only",
        );
        d.undo.push(back);
        d
    }

    fn set_tag(&self, b: &Builder, h: &HopCtx, tag: &str, revision: &str) -> Op {
        let version = if revision == h.hop.to_label() {
            &h.hop.to
        } else {
            &h.hop.from
        };
        Op::SetTag {
            tag: tag.to_string(),
            revision: revision.to_string(),
            version: version.clone(),
            helm: Some(TagTemplate {
                chart_ref: b.chart_ref("istiod"),
                namespace: b.c.namespace.clone(),
                templates: chart_facts::revision_tag_templates(version),
            }),
        }
    }

    fn move_tag_in_values(
        &self,
        b: &mut Builder,
        h: &HopCtx,
        (dir, back_dir): (&str, &str),
        tag: &str,
    ) -> Option<TagMove> {
        if !b.tags_in_values(h) {
            return None;
        }
        let ns = b.c.namespace.clone();
        let old = (
            b.now.istiod_release.clone(),
            h.hop.from_revision.clone(),
            &h.hop.from,
        );
        let new = (
            names::istiod(h.hop.to_revision.as_deref()),
            h.hop.to_revision.clone(),
            &h.hop.to,
        );
        // The tags each release renders, before and after the move (in the plan's tag order).
        let rendered = |release: &str, moved: bool| -> Vec<String> {
            b.now
                .tags
                .iter()
                .filter(|t| {
                    let owner = if t.name == tag && moved {
                        TagOwner::Release(new.0.clone())
                    } else {
                        t.owner.clone()
                    };
                    owner == TagOwner::Release(release.to_string())
                })
                .map(|t| t.name.clone())
                .collect()
        };
        let (old_before, old_after) = (rendered(&old.0, false), rendered(&old.0, true));
        let (new_before, new_after) = (rendered(&new.0, false), rendered(&new.0, true));
        // Both releases mark their webhooks keep while they render tags: whichever of the two
        // upgrades a controller runs first, the tag webhook one release stops rendering is kept
        // (Helm reads the mark on the live object), and the other release takes it over.
        // The new release back without tags is the release as the hop installed it: its whole
        // values, not `--reuse-values` with the mark set to null, which Helm only drops on the
        // second such upgrade (helm/helm#30765).
        let installed = istiod_values(
            b.c,
            new.2,
            new.1.as_deref(),
            &[],
            false,
            compatibility(b, h).as_deref(),
        );
        let upgrade = |b: &mut Builder,
                       path: String,
                       (release, rev, version): &(String, Option<String>, &IstioVersion),
                       tags: &[String],
                       keep_webhooks: bool,
                       mark: bool,
                       what: String| {
            let mut up = Self::upgrade(
                b,
                release,
                &ns,
                istiod_chart(b.c, version),
                version,
                &path,
                istiod_content(b.c, rev.as_deref(), tags.to_vec(), keep_webhooks),
            );
            let as_installed = tags.is_empty() && !keep_webhooks;
            up.reuse_values = !as_installed;
            up.take_ownership = true;
            let op = Op::HelmUpgrade(up);
            let mut values = json!({"revisionTags": tags});
            if mark && let Value::Object(m) = keep_marks(version) {
                values
                    .as_object_mut()
                    .into_iter()
                    .for_each(|v| v.extend(m.clone()));
            }
            // The hop's files that put every tag back are the same for each move.
            if b.artifacts.iter().any(|a| a.path == path) {
                return op;
            }
            let (template, data) = if as_installed {
                let chart = istiod_chart(b.c, version).name();
                (
                    "istiod.values.yaml.j2",
                    json!({"values": installed, "chart": chart}),
                )
            } else {
                (
                    "keep.values.yaml.j2",
                    json!({"what": "tag-move", "tag": tag, "values": values}),
                )
            };
            b.artifact(
                &path,
                template,
                format!(
                    "chart {} {version} (release {release} in {ns}): {what}",
                    b.chart_ref(istiod_chart(b.c, version).name())
                ),
                &op,
                data,
            );
            op
        };
        // Each pair runs in the order that needs the keep marks (the model checks it): the
        // release taking the tag over first, then the other stops rendering it, which deletes
        // it unless the live webhook, as the first rendered it, is marked keep.
        let forward = vec![
            upgrade(
                b,
                format!("{dir}/1-new-release.values.yaml"),
                &new,
                &new_after,
                true,
                true,
                format!("renders revision tag `{tag}`"),
            ),
            upgrade(
                b,
                format!("{dir}/2-old-release.values.yaml"),
                &old,
                &old_after,
                true,
                false,
                format!("stops rendering revision tag `{tag}`"),
            ),
        ];
        let back = vec![
            upgrade(
                b,
                format!("{back_dir}/1-old-release.values.yaml"),
                &old,
                &old_before,
                true,
                false,
                format!("renders revision tag `{tag}` again: rollback only"),
            ),
            upgrade(
                b,
                format!("{back_dir}/2-new-release.values.yaml"),
                &new,
                &new_before,
                !new_before.is_empty(),
                !new_before.is_empty(),
                format!("stops rendering revision tag `{tag}`: rollback only"),
            ),
        ];
        // From 1.28 a tag is a Service too, kept with the new release's marks: moved back to a
        // release older than that, nothing renders it any more.
        let leftover = |tags: &[String]| -> Option<Op> {
            (chart_facts::istiod_tag_services(new.2) && !chart_facts::istiod_tag_services(old.2))
                .then(|| Op::Delete {
                    objects: tags
                        .iter()
                        .map(|t| {
                            ObjRef::new("service", &format!("istiod-revision-tag-{t}"), Some(&ns))
                        })
                        .collect(),
                })
        };
        let mut back = back;
        back.extend(leftover(&[tag.to_string()]));
        // Every tag the hop moves (the old release rendered them all after the keep step).
        let hop_tags: Vec<String> = b
            .now
            .tags
            .iter()
            .filter(|t| {
                [&old.0, &new.0]
                    .iter()
                    .any(|r| t.owner == TagOwner::Release((*r).clone()))
            })
            .map(|t| t.name.clone())
            .collect();
        let all_dir = format!("{}/tags-back", h.rollback_phase_dir(Phase::DataPlane));
        let all_back = vec![
            upgrade(
                b,
                format!("{all_dir}/1-old-release.values.yaml"),
                &old,
                &hop_tags,
                true,
                false,
                "renders every revision tag again: rollback only".to_string(),
            ),
            upgrade(
                b,
                format!("{all_dir}/2-new-release.values.yaml"),
                &new,
                &[],
                false,
                false,
                "stops rendering every revision tag: rollback only".to_string(),
            ),
        ];
        for t in &mut b.now.tags {
            if t.name == tag {
                t.owner = TagOwner::Release(new.0.clone());
            }
        }
        if !b.now.kept_webhooks.contains(&new.0) {
            b.now.kept_webhooks.push(new.0.clone());
        }
        let mut all_back = all_back;
        all_back.extend(leftover(&hop_tags));
        Some(TagMove {
            ops: forward,
            undo: back,
            all_back,
        })
    }

    fn default_revision(&self, b: &mut Builder, h: &HopCtx) -> Option<Draft> {
        if b.now.default_revision != h.hop.from_label() {
            return None;
        }
        let ns = b.c.namespace.clone();
        let release = b.c.base_release.clone();
        let new = h.hop.to_label().to_string();
        let path = format!("{}/base.values.yaml", h.phase_dir(Phase::Cleanup));
        let up = Op::HelmUpgrade(Self::upgrade(
            b,
            &release,
            &ns,
            Chart::Base,
            &h.hop.to,
            &path,
            ReleaseContent::Base {
                default_revision: new.clone(),
            },
        ));
        b.artifact(
            &path,
            "base.values.yaml.j2",
            format!(
                "chart {} {} (release {release} in {ns}): defaultRevision {new}",
                b.chart_ref("base"),
                h.hop.to
            ),
            &up,
            json!({"values": base_values(b.c, &h.hop.to, &new)}),
        );
        let back = Op::HelmUpgrade(Self::upgrade(
            b,
            &release,
            &ns,
            Chart::Base,
            &h.hop.to,
            &format!("{}/base.values.yaml", h.phase_dir(Phase::Crds)),
            ReleaseContent::Base {
                default_revision: b.now.default_revision.clone(),
            },
        ));
        b.now.default_revision = new;
        Some(Draft {
            ops: vec![up],
            undo: vec![back],
            ..Draft::default()
        })
    }

    fn cni(&self, b: &mut Builder, h: &HopCtx, phase: Phase) -> Option<Draft> {
        let cni = b.c.cni.as_ref()?;
        let hop = h.hop;
        Some(Self::node_agent(
            b,
            h,
            NodeAgent {
                phase,
                chart: Chart::Cni,
                template: "cni.values.yaml.j2",
                release: cni.release.clone(),
                namespace: cni.namespace.clone(),
                daemonset: names::CNI_DAEMONSET.to_string(),
                content: &|_, _| ReleaseContent::Cni,
                values: &|c, version, _| cni_values(c, version),
                undo_note: format!(
                    "the agent goes back to {}, which the new istiod of {} still supports (one minor behind)",
                    hop.from, hop.to
                ),
            },
        ))
    }

    fn ztunnel(&self, b: &mut Builder, h: &HopCtx) -> Option<Draft> {
        let z = b.c.ztunnel.as_ref()?;
        let hop = h.hop;
        let c = b.c;
        Some(Self::node_agent(
            b,
            h,
            NodeAgent {
                phase: Phase::NodeAgents,
                chart: Chart::Ztunnel,
                template: "ztunnel.values.yaml.j2",
                release: z.release.clone(),
                namespace: z.namespace.clone(),
                daemonset: ztunnel_daemonset(c, &hop.to),
                content: &|version, revision| ReleaseContent::Ztunnel {
                    revision: revision.map(str::to_string),
                    daemonset: ztunnel_daemonset(c, version),
                },
                values: &ztunnel_values,
                undo_note: format!(
                    "ztunnel goes back to {}, connected to `{}` again, node by node: long-lived connections of ambient pods reset once more",
                    hop.from,
                    hop.from_label()
                ),
            },
        ))
    }

    fn remove_control_plane(&self, b: &mut Builder, h: &HopCtx) -> Draft {
        let ns = b.c.namespace.clone();
        let old_rev = h.hop.from_revision.clone();
        let release = b.now.istiod_release.clone();
        let webhooks = vec![
            ObjRef::new(
                "mutatingwebhookconfiguration",
                &names::injector_webhook(old_rev.as_deref(), &ns),
                None,
            ),
            ObjRef::new(
                "validatingwebhookconfiguration",
                &names::validator_webhook(old_rev.as_deref(), &ns),
                None,
            ),
        ];
        b.webhooks
            .extend(webhooks.iter().map(|o| format!("{}/{}", o.kind, o.name)));
        // From 1.28 the keep mark the tag handover set is on istiod's Service too.
        let mut webhooks = webhooks;
        if b.now.kept_webhooks.contains(&release) && chart_facts::istiod_tag_services(&h.hop.from) {
            webhooks.push(ObjRef::new(
                "service",
                &names::istiod(old_rev.as_deref()),
                Some(&ns),
            ));
        }
        let path = format!(
            "{}/istiod.reinstall.values.yaml",
            h.rollback_phase_dir(Phase::Cleanup)
        );
        let mut up = Self::upgrade(
            b,
            &release,
            &ns,
            istiod_chart(b.c, &h.hop.from),
            &h.hop.from,
            &path,
            istiod_content(b.c, old_rev.as_deref(), Vec::new(), false),
        );
        up.install = true;
        up.wait = true;
        let back = Op::HelmUpgrade(up);
        b.artifact(
            &path,
            "istiod.values.yaml.j2",
            format!(
                "chart {} {} (release {release} in {ns}): rollback only",
                b.chart_ref(istiod_chart(b.c, &h.hop.from).name()),
                h.hop.from
            ),
            &back,
            json!({"values": istiod_values(b.c, &h.hop.from, old_rev.as_deref(), &[], false, None), "chart": istiod_chart(b.c, &h.hop.from).name()}),
        );
        Draft {
            ops: vec![
                Op::Delete { objects: webhooks },
                Op::HelmUninstall {
                    release,
                    namespace: ns,
                },
            ],
            undo: vec![back],
            ..Draft::default()
        }
    }
}

/// A node agent's chart, release and what it renders, for [`Helm::node_agent`].
struct NodeAgent<'a> {
    phase: Phase,
    chart: Chart,
    template: &'static str,
    release: String,
    namespace: String,
    daemonset: String,
    content: &'a dyn Fn(&IstioVersion, Option<&str>) -> ReleaseContent,
    values: &'a dyn Fn(&ClusterSpec, &IstioVersion, Option<&str>) -> Value,
    undo_note: String,
}

/// The `compatibilityVersion` the hop's new control plane gets, if the inventory asks for one.
pub(crate) fn compatibility(b: &Builder, h: &HopCtx) -> Option<String> {
    b.c.compatibility_version
        .as_deref()
        .map(|cv| crate::path::compatibility_for(cv, h.hop))
}

/// The tags the istiod release `release` renders today.
/// The old release marks its webhooks keep and renders every tag pointing at its revision
/// (standalone ones adopted), so that each tag can move to the new release in its values.
fn keep_tags(b: &mut Builder, h: &HopCtx) -> Option<Draft> {
    let release = b.now.istiod_release.clone();
    let from = h.hop.from_label().to_string();
    let tags: Vec<String> = b
        .now
        .tags
        .iter()
        .filter(|t| t.revision == from)
        .map(|t| t.name.clone())
        .collect();
    if tags.is_empty() {
        return None;
    }
    let owned = owned_tags(b, &release);
    let adopt: Vec<String> = tags
        .iter()
        .filter(|t| !owned.contains(t))
        .cloned()
        .collect();
    // A release that took the tags over in the previous hop marked its webhooks then.
    if adopt.is_empty() && b.now.kept_webhooks.contains(&release) {
        return None;
    }
    let ns = b.c.namespace.clone();
    let version = h.hop.from.clone();
    let path = format!(
        "{}/istiod-tags-keep.values.yaml",
        h.phase_dir(Phase::ControlPlane)
    );
    let mut up = Helm::upgrade(
        b,
        &release,
        &ns,
        istiod_chart(b.c, &version),
        &version,
        &path,
        istiod_content(b.c, h.hop.from_revision.as_deref(), tags.clone(), true),
    );
    up.reuse_values = true;
    up.take_ownership = !adopt.is_empty();
    let op = Op::HelmUpgrade(up);
    let mut values = keep_marks(&version);
    if !adopt.is_empty() {
        values["revisionTags"] = json!(tags);
    }
    b.artifact(
        &path,
        "keep.values.yaml.j2",
        format!(
            "chart {} {version} (release {release} in {ns}): marks its webhooks, tags included, to be kept",
            b.chart_ref(istiod_chart(b.c, &version).name())
        ),
        &op,
        json!({"what": "istiod-tags-keep", "adopt": adopt, "values": values}),
    );
    for t in &mut b.now.tags {
        if tags.contains(&t.name) {
            t.owner = TagOwner::Release(release.clone());
        }
    }
    if !b.now.kept_webhooks.contains(&release) {
        b.now.kept_webhooks.push(release.clone());
    }
    let adopted = if adopt.is_empty() {
        String::new()
    } else {
        format!(
            "; the tags it adopted ({}) stay as they are, pointing at `{from}`",
            adopt.join(", ")
        )
    };
    Some(Draft {
        ops: vec![op],
        undo_note: Some(format!(
            "nothing to undo: the release renders its tags as before, still pointing at `{from}`, only marked to be kept{adopted}"
        )),
        ..Draft::default()
    })
}

/// The values that mark an istiod release's webhooks `helm.sh/resource-policy: keep`, and from
/// 1.28 its Services too (`serviceAnnotations`: istiod's and the revision tags', which would go
/// with the release otherwise). The model keeps both whenever a release's webhooks are marked.
fn keep_marks(version: &IstioVersion) -> Value {
    let mut v = json!({"sidecarInjectorWebhookAnnotations": {KEEP: "keep"}});
    if chart_facts::istiod_tag_services(version) {
        v["serviceAnnotations"] = json!({KEEP: "keep"});
    }
    v
}

fn owned_tags(b: &Builder, release: &str) -> Vec<String> {
    b.now
        .tags
        .iter()
        .filter(|t| t.owner == TagOwner::Release(release.to_string()))
        .map(|t| t.name.clone())
        .collect()
}

/// A Helm release as it runs before the plan, for a layout that must adopt it as it is.
#[derive(Clone, Debug)]
pub struct RunningRelease {
    pub release: String,
    pub namespace: String,
    pub chart: Chart,
    pub version: IstioVersion,
    /// The values the release runs with, as the plan's own rollbacks would reinstall it.
    pub values: Value,
}

/// The Helm releases of a Helm-installed cluster as they run before the plan: the istiod,
/// base, gateway and node-agent releases, with the values the inventory records for them.
pub fn running_releases(c: &ClusterSpec) -> Vec<RunningRelease> {
    let now = crate::plan::state::Carried::from_spec(c);
    let v = &c.version;
    let mut out = vec![
        RunningRelease {
            release: c.base_release.clone(),
            namespace: c.namespace.clone(),
            chart: Chart::Base,
            version: v.clone(),
            values: base_values(c, v, &now.default_revision),
        },
        RunningRelease {
            release: c.release.clone(),
            namespace: c.namespace.clone(),
            chart: istiod_chart(c, v),
            version: v.clone(),
            values: istiod_values(
                c,
                v,
                c.revision.as_deref(),
                &crate::plan::state::helm_tags(&c.values),
                false,
                None,
            ),
        },
    ];
    if let Some(cni) = &c.cni {
        out.push(RunningRelease {
            release: cni.release.clone(),
            namespace: cni.namespace.clone(),
            chart: Chart::Cni,
            version: v.clone(),
            values: cni_values(c, v),
        });
    }
    if let Some(z) = &c.ztunnel {
        out.push(RunningRelease {
            release: z.release.clone(),
            namespace: z.namespace.clone(),
            chart: Chart::Ztunnel,
            version: v.clone(),
            values: ztunnel_values(c, v, c.revision.as_deref()),
        });
    }
    for (g, gnow) in c.gateways.iter().zip(&now.gateways) {
        out.push(RunningRelease {
            release: g.release.clone(),
            namespace: g.gateway.namespace.clone(),
            chart: Chart::Gateway,
            version: v.clone(),
            values: gateway_values(c, g, &g.release, &gnow.deploy, v),
        });
    }
    out
}
