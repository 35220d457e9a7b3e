//! Semantic validation: what the schema cannot say. Names, versions, references between
//! revisions and the things that use them, duplicates. Produces the resolved [`Mesh`] (defaults
//! applied, versions parsed) that the later stages work on, or every problem found.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic, Diagnostics, suggest};
use crate::inventory::{
    ControlPlaneUpgrade, Gateway, GatewayService, InstallMethod, Inventory, Namespace,
    ServiceOwner, Settings, TrafficMode, UpgradePolicy, Workload, WorkloadKind,
};
use crate::source::{Source, YamlPath};
use crate::version::{IstioVersion, MAX_REVISION_LEN, Minor, RevisionFormat, is_dns_label};

/// The label value of the default revision (an unrevisioned install, or the `default` tag).
pub const DEFAULT_REVISION: &str = "default";

/// The inventory after validation: defaults applied, versions parsed, references checked.
#[derive(Clone, Debug)]
pub struct Mesh {
    pub name: String,
    pub clusters: Vec<ClusterSpec>,
    /// The output layout and its settings.
    pub gitops: crate::gitops::GitopsSpec,
}

#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub name: String,
    pub at: YamlPath,
    pub context: Option<String>,
    pub kubernetes: Minor,
    pub install: InstallMethod,
    pub hub: String,
    pub tag_suffix: String,
    pub variant: Option<String>,
    pub revision_format: RevisionFormat,
    pub control_plane_upgrade: ControlPlaneUpgrade,
    pub policy: UpgradePolicy,
    pub chart_repository: String,
    /// Whether the cluster sets `installMethod` itself (rather than through `defaults`).
    pub install_set_here: bool,
    pub version: IstioVersion,
    /// The running revision; `None` for a default (unrevisioned) install.
    pub revision: Option<String>,
    pub namespace: String,
    pub tags: Vec<String>,
    pub values: BTreeMap<String, Value>,
    pub release: String,
    pub base_release: String,
    pub base_values: BTreeMap<String, Value>,
    /// `previous` or `1.N`: the compatibility profile every new istiod gets.
    pub compatibility_version: Option<String>,
    /// The istio-cni node agent, when the cluster runs it.
    pub cni: Option<CniSpec>,
    /// The ztunnel node proxy: the cluster runs ambient mode.
    pub ztunnel: Option<CniSpec>,
    /// The Sail Operator's `Istio` resource (install method `sail`).
    pub sail: Option<SailSpec>,
    /// The cluster's place in a multicluster mesh.
    pub multicluster: Option<MulticlusterSpec>,
    pub gateways: Vec<GatewaySpec>,
    pub namespaces: Vec<NamespaceSpec>,
}

impl ClusterSpec {
    /// The label value of the running revision: its name, or `default`.
    pub fn revision_label(&self) -> &str {
        self.revision.as_deref().unwrap_or(DEFAULT_REVISION)
    }
}

/// A cluster's place in a multicluster mesh.
#[derive(Clone, Debug)]
pub struct MulticlusterSpec {
    pub mesh_id: String,
    pub cluster_name: String,
    pub network: Option<String>,
    pub role: MeshRole,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MeshRole {
    /// Runs istiod; serves the remote clusters of the inventory named here.
    Primary { remotes: Vec<String> },
    /// Runs no istiod: `primary`'s serves it through the east-west gateway at `pilot_address`.
    Remote {
        primary: String,
        pilot_address: String,
    },
}

impl ClusterSpec {
    /// The primary that serves this cluster, if it is a remote.
    pub fn remote_of(&self) -> Option<&str> {
        match &self.multicluster.as_ref()?.role {
            MeshRole::Remote { primary, .. } => Some(primary),
            MeshRole::Primary { .. } => None,
        }
    }

    /// The remote clusters this cluster's istiod serves.
    pub fn serves(&self) -> &[String] {
        match self.multicluster.as_ref().map(|m| &m.role) {
            Some(MeshRole::Primary { remotes }) => remotes,
            _ => &[],
        }
    }
}

/// The first version whose remote charts name the Service and Endpoints of a revision after it
/// (`istiod-<revision>`), so that a remote cluster can run two revisions (istio/istio#47552,
/// fixed by #48942 in 1.20.4).
pub const REMOTE_REVISIONS_FROM: (u64, u64, u64) = (1, 20, 4);

/// The Sail Operator's `Istio` resource.
#[derive(Clone, Debug)]
pub struct SailSpec {
    pub name: String,
    /// The Sail Operator release.
    pub operator: String,
    /// `inactiveRevisionDeletionGracePeriodSeconds` as the user runs it.
    pub grace_seconds: u64,
    /// `spec.profile`.
    pub profile: Option<String>,
}

/// Sail's default `inactiveRevisionDeletionGracePeriodSeconds`.
pub const SAIL_DEFAULT_GRACE_SECONDS: u64 = 30;

/// A node agent (istio-cni, ztunnel): a release of its chart at the cluster's Istio version.
#[derive(Clone, Debug)]
pub struct CniSpec {
    pub release: String,
    pub namespace: String,
    pub values: BTreeMap<String, Value>,
}

#[derive(Clone, Debug)]
pub struct GatewaySpec {
    pub at: YamlPath,
    pub gateway: Gateway,
    pub release: String,
    pub istio_label: String,
    /// The pods' `app` label, which the new gateway keeps.
    pub app_label: String,
    /// The ServiceAccount the pods run as (their identity), which the new gateway keeps.
    pub service_account: String,
    /// Who renders that ServiceAccount today.
    pub service_account_owner: ServiceOwner,
    pub traffic: TrafficMode,
}

impl GatewaySpec {
    pub fn service(&self) -> Option<&GatewayService> {
        self.gateway.service.as_ref()
    }
}

#[derive(Clone, Debug)]
pub struct NamespaceSpec {
    pub at: YamlPath,
    pub namespace: Namespace,
}

impl NamespaceSpec {
    pub fn workloads(&self) -> &[Workload] {
        &self.namespace.workloads
    }
}

/// Checks the inventory and resolves it. Every problem is reported; the mesh is returned only
/// when there are no errors.
pub fn validate(inv: &Inventory, src: &Source, diags: &mut Diagnostics) -> Option<Mesh> {
    let root = YamlPath::root();
    let mut clusters = Vec::new();
    let mut seen_clusters: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &inv.clusters {
        let ci = c.index;
        let at = root.key("clusters").index(ci);
        check_label(src, diags, &at.key("name"), "cluster name", &c.name);
        if let Some(first) = seen_clusters.insert(&c.name, ci) {
            diags.push(
                Diagnostic::error(
                    Code::DuplicateName,
                    format!("cluster `{}` is defined twice", c.name),
                )
                .at(src, &at.key("name"))
                .help(format!(
                    "the first definition is clusters[{first}]; cluster names must be unique"
                )),
            );
        }
        if let Some(spec) = validate_cluster(inv, c, src, diags) {
            clusters.push(spec);
        }
    }
    check_mesh(&mut clusters, src, diags);
    (!diags.has_errors()).then(|| Mesh {
        name: inv.name.clone(),
        clusters,
        gitops: crate::gitops::GitopsSpec::from_inventory(inv),
    })
}

fn validate_cluster(
    inv: &Inventory,
    c: &crate::inventory::Cluster,
    src: &Source,
    diags: &mut Diagnostics,
) -> Option<ClusterSpec> {
    let ci = c.index;
    let at = YamlPath::root().key("clusters").index(ci);
    let settings: Settings = c.settings.or(&inv.defaults);
    // Only what this cluster adds is looked at: counting every diagnostic so far for each
    // cluster made many errors quadratic.
    let first_new = diags.0.len();

    let kubernetes = match c.kubernetes_version.parse::<Minor>() {
        Ok(m) => Some(m),
        Err(e) => {
            diags.push(
                Diagnostic::error(
                    Code::InvalidVersion,
                    format!("cluster `{}`: Kubernetes version {e}", c.name),
                )
                .at(src, &at.key("kubernetesVersion"))
                .help(
                    "give the Kubernetes minor in quotes, for example kubernetesVersion: \"1.28\"",
                ),
            );
            None
        }
    };
    let version = match c.istio.version.parse::<IstioVersion>() {
        Ok(v) => Some(v),
        Err(e) => {
            diags.push(
                Diagnostic::error(
                    Code::InvalidVersion,
                    format!("cluster `{}`: Istio version {e}", c.name),
                )
                .at(src, &at.key("istio").key("version"))
                .help("give the full running version, for example version: 1.19.6"),
            );
            None
        }
    };
    if let Some(rev) = &c.istio.revision {
        check_revision(src, diags, &at.key("istio").key("revision"), rev);
    }
    check_label(
        src,
        diags,
        &at.key("istio").key("namespace"),
        "control-plane namespace",
        &c.istio.namespace,
    );
    for (ti, tag) in c.istio.tags.iter().enumerate() {
        let p = at.key("istio").key("tags").index(ti);
        check_revision(src, diags, &p, tag);
        let service = format!("istiod-revision-tag-{tag}");
        if is_dns_label(tag, MAX_REVISION_LEN) && service.len() > crate::path::MAX_SERVICE_NAME {
            diags.push(
                Diagnostic::error(
                    Code::NameTooLong,
                    format!(
                        "tag `{tag}` gives the Service `{service}` ({} characters); a Service name has at most {}",
                        service.len(),
                        crate::path::MAX_SERVICE_NAME
                    ),
                )
                .at(src, &p)
                .help(format!(
                    "Istio's charts (1.28 and later) create that Service for every tag: use a tag of at most {} characters",
                    crate::path::MAX_SERVICE_NAME - "istiod-revision-tag-".len()
                )),
            );
        }
        if Some(tag) == c.istio.revision.as_ref() {
            diags.push(
                Diagnostic::error(Code::InvalidRevision, format!("tag `{tag}` has the same name as the revision it points at"))
                    .at(src, &p)
                    .help("Istio refuses a revision tag named like an existing revision; rename or remove the tag"),
            );
        }
    }
    if let Some(ctx) = &c.context
        && ctx.chars().any(char::is_whitespace)
    {
        diags.push(
            Diagnostic::error(
                Code::InvalidName,
                format!("context `{ctx}` contains white space"),
            )
            .at(src, &at.key("context")),
        );
    }

    // What `istio.io/rev` values the cluster's control plane answers to.
    let mut known: Vec<String> = Vec::new();
    match &c.istio.revision {
        Some(r) => known.push(r.clone()),
        None => known.push(DEFAULT_REVISION.to_string()),
    }
    known.extend(c.istio.tags.iter().cloned());
    let serves_default = known.iter().any(|k| k == DEFAULT_REVISION);

    let ns_names: BTreeSet<&str> = c.namespaces.iter().map(|n| n.name.as_str()).collect();
    let mut gateways = Vec::new();
    let mut seen_gw: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (gi, g) in c.gateways.iter().enumerate() {
        let gp = at.key("gateways").index(gi);
        check_label(src, diags, &gp.key("name"), "gateway name", &g.name);
        check_label(
            src,
            diags,
            &gp.key("namespace"),
            "gateway namespace",
            &g.namespace,
        );
        if let Some(first) = seen_gw.insert((&g.namespace, &g.name), gi) {
            diags.push(
                Diagnostic::error(
                    Code::DuplicateName,
                    format!(
                        "gateway `{}` in namespace `{}` is defined twice",
                        g.name, g.namespace
                    ),
                )
                .at(src, &gp.key("name"))
                .help(format!("the first definition is gateways[{first}]")),
            );
        }
        check_reference(
            src,
            diags,
            &gp.key("revision"),
            &format!("gateway `{}`", g.name),
            g.revision.as_deref(),
            &known,
            &c.name,
        );
        if ns_names.contains(g.namespace.as_str()) {
            diags.push(
                Diagnostic::error(
                    Code::GatewayNamespaceMigrated,
                    format!("gateway namespace `{}` is also listed as an application namespace", g.namespace),
                )
                .at(src, &gp.key("namespace"))
                .help("relabelling a gateway namespace with istio.io/rev would re-inject the old and the new gateway alike; keep gateways in namespaces of their own and remove this namespace from `namespaces`"),
            );
        }
        let release = g.release.clone().unwrap_or_else(|| g.name.clone());
        if g.release.is_some() {
            check_label(src, diags, &gp.key("release"), "gateway release", &release);
        }
        let install = settings.install_method.unwrap_or(InstallMethod::Helm);
        let value_str = |path: &[&str]| -> Option<String> {
            let mut v = g.values.get(path[0])?;
            for k in &path[1..] {
                v = v.get(*k)?;
            }
            v.as_str().map(str::to_string)
        };
        // What the gateway chart names things after: `name` in its values, else the release.
        let chart_name = match install {
            InstallMethod::Helm | InstallMethod::Sail => {
                value_str(&["name"]).unwrap_or_else(|| release.clone())
            }
            _ => release.clone(),
        };
        let istio_label = g.istio_label.clone().unwrap_or_else(|| {
            value_str(&["labels", "istio"])
                .unwrap_or_else(|| g.name.strip_prefix("istio-").unwrap_or(&g.name).to_string())
        });
        let app_label = g
            .app_label
            .clone()
            .unwrap_or_else(|| value_str(&["labels", "app"]).unwrap_or_else(|| chart_name.clone()));
        let sa = g.service_account.clone().unwrap_or_default();
        let service_account = sa.name.clone().unwrap_or_else(|| match install {
            InstallMethod::Helm | InstallMethod::Sail => {
                value_str(&["serviceAccount", "name"]).unwrap_or_else(|| chart_name.clone())
            }
            _ => format!("{release}-service-account"),
        });
        if let Some(name) = &sa.name {
            check_label_len(
                src,
                diags,
                &gp.key("serviceAccount").key("name"),
                "service account name",
                name,
                253,
            );
        }
        if let Some(app) = &g.app_label {
            check_label_value(src, diags, &gp.key("appLabel"), "app label", app);
        }
        if let Some(svc) = &g.service {
            let sp = gp.key("service");
            check_label(src, diags, &sp.key("name"), "service name", &svc.name);
            let mut names = BTreeSet::new();
            let mut ports = BTreeSet::new();
            for (pi, port) in svc.ports.iter().enumerate() {
                let pp = sp.key("ports").index(pi);
                if !names.insert(port.name.as_str()) {
                    diags.push(
                        Diagnostic::error(
                            Code::DuplicateName,
                            format!("port name `{}` is used twice", port.name),
                        )
                        .at(src, &pp.key("name")),
                    );
                }
                if !ports.insert((port.port, port.protocol.clone())) {
                    diags.push(
                        Diagnostic::error(
                            Code::DuplicateName,
                            format!("port {} is listed twice", port.port),
                        )
                        .at(src, &pp.key("port")),
                    );
                }
            }
        }
        gateways.push(GatewaySpec {
            at: gp,
            gateway: g.clone(),
            release,
            istio_label,
            app_label,
            service_account,
            service_account_owner: sa.owner.unwrap_or(ServiceOwner::Release),
            traffic: g.traffic.unwrap_or(TrafficMode::Gradual),
        });
    }

    let mut namespaces = Vec::new();
    let mut seen_ns: BTreeMap<&str, usize> = BTreeMap::new();
    for (ni, n) in c.namespaces.iter().enumerate() {
        let np = at.key("namespaces").index(ni);
        check_label(src, diags, &np.key("name"), "namespace name", &n.name);
        if let Some(first) = seen_ns.insert(&n.name, ni) {
            diags.push(
                Diagnostic::error(
                    Code::DuplicateName,
                    format!("namespace `{}` is listed twice in cluster `{}`", n.name, c.name),
                )
                .at(src, &np.key("name"))
                .help(format!("the first entry is namespaces[{first}]; list each namespace once, in the wave it moves in")),
            );
        }
        if n.name == c.istio.namespace {
            diags.push(
                Diagnostic::error(
                    Code::GatewayNamespaceMigrated,
                    format!("namespace `{}` is the control-plane namespace", n.name),
                )
                .at(src, &np.key("name"))
                .help("the control plane is not injected; remove it from `namespaces`"),
            );
        }
        let only_labelled_gateways = n.workloads.is_empty()
            && !n.gateway_api.is_empty()
            && n.gateway_api.iter().all(|g| g.revision.is_some());
        let ambient = n.dataplane_mode.is_some();
        if ambient {
            check_ambient_namespace(n, &np, c.istio.ztunnel.is_some(), &c.name, src, diags);
        }
        match (&n.revision, &n.istio_injection) {
            (None, None) if only_labelled_gateways || ambient => {}
            (None, None) => diags.push(
                Diagnostic::error(
                    Code::UnknownRevision,
                    format!("namespace `{}` has neither `revision` nor `istioInjection`", n.name),
                )
                .at(src, &np.key("name"))
                .help("give its istio.io/rev label as `revision`, or `istioInjection: enabled` for the legacy label; a namespace outside the mesh has nothing to migrate, so leave it out"),
            ),
            (Some(_), Some(_)) => diags.push(
                Diagnostic::warning(
                    Code::InjectionPrecedence,
                    format!(
                        "namespace `{}` carries both istio-injection and istio.io/rev; istio-injection wins, so its pods use the default revision",
                        n.name
                    ),
                )
                .at(src, &np.key("istioInjection"))
                .help("the plan removes istio-injection when it relabels the namespace"),
            ),
            _ => {}
        }
        if let Some(r) = &n.revision {
            check_reference(
                src,
                diags,
                &np.key("revision"),
                &format!("namespace `{}`", n.name),
                Some(r),
                &known,
                &c.name,
            );
        }
        if n.istio_injection.is_some() && !serves_default {
            diags.push(
                Diagnostic::error(
                    Code::UnknownRevision,
                    format!(
                        "namespace `{}` uses istio-injection=enabled, but cluster `{}` has no default revision",
                        n.name, c.name
                    ),
                )
                .at(src, &np.key("istioInjection"))
                .help(format!(
                    "istio-injection=enabled is served by the default revision: an unrevisioned install, or a `default` tag (add `default` to clusters[{ci}].istio.tags if `istioctl tag list` shows it)"
                )),
            );
        }
        check_gateway_api(
            n,
            &np,
            version.as_ref(),
            (&known, serves_default, c.istio.ztunnel.is_some()),
            &c.name,
            src,
            diags,
        );
        let mut seen_wl = BTreeSet::new();
        for (wi, w) in n.workloads.iter().enumerate() {
            let wp = np.key("workloads").index(wi);
            check_label_len(src, diags, &wp.key("name"), "workload name", &w.name, 253);
            if w.kind == WorkloadKind::Deployment
                && w.update_strategy == Some(crate::inventory::UpdateStrategy::OnDelete)
            {
                diags.push(
                    Diagnostic::error(
                        Code::SchemaInvalidValue,
                        format!("Deployment `{}` cannot use updateStrategy OnDelete", w.name),
                    )
                    .at(src, &wp.key("updateStrategy"))
                    .help("only StatefulSets and DaemonSets have the OnDelete strategy; a Deployment is RollingUpdate or Recreate, both of which restart on a template change"),
                );
            }
            if w.kind != WorkloadKind::StatefulSet && w.partition.is_some() {
                diags.push(
                    Diagnostic::error(
                        Code::SchemaInvalidValue,
                        format!("{:?} `{}` cannot have a partition", w.kind, w.name),
                    )
                    .at(src, &wp.key("partition"))
                    .help("rollingUpdate.partition exists only on StatefulSets; remove it"),
                );
            }
            if !seen_wl.insert((w.kind, w.name.as_str())) {
                diags.push(
                    Diagnostic::error(
                        Code::DuplicateName,
                        format!(
                            "{:?} `{}` is listed twice in namespace `{}`",
                            w.kind, w.name, n.name
                        ),
                    )
                    .at(src, &wp.key("name")),
                );
            }
        }
        namespaces.push(NamespaceSpec {
            at: np,
            namespace: n.clone(),
        });
    }

    let install = settings.install_method.unwrap_or(InstallMethod::Helm);
    let canary = settings
        .control_plane_upgrade
        .unwrap_or(ControlPlaneUpgrade::Canary)
        == ControlPlaneUpgrade::Canary;
    for g in &gateways {
        if !install.helm_gateways()
            && let Some(svc) = g.service()
            && svc.owner == crate::inventory::ServiceOwner::Release
            && let Some(sel) = &svc.selector
            && (sel.get("app") != Some(&g.app_label) || sel.get("istio") != Some(&g.istio_label))
        {
            diags.push(
                Diagnostic::error(
                    Code::SchemaInvalidValue,
                    format!(
                        "the selector of Service `{}` cannot be what istioctl renders for gateway `{}`",
                        svc.name, g.gateway.name
                    ),
                )
                .at(src, &g.at.key("service").key("selector"))
                .help(format!(
                    "istioctl gives a gateway's own Service a selector of every label of the component, so it has app={} and istio={} (the gateway's appLabel and istioLabel)",
                    g.app_label, g.istio_label
                ))
                .help("fix the selector, appLabel or istioLabel; or, if the Service is applied on its own, set `owner: standalone`"),
            );
        }
        let gw_rev = g.gateway.revision.as_deref().unwrap_or(DEFAULT_REVISION);
        let cp_rev = c.istio.revision.as_deref().unwrap_or(DEFAULT_REVISION);
        if install == InstallMethod::Operator && gw_rev != cp_rev {
            let mut d = Diagnostic::error(
                Code::UnknownRevision,
                format!(
                    "operator-managed gateway `{}` is on `{gw_rev}`, not on the revision `{cp_rev}` whose operator reconciles it",
                    g.gateway.name
                ),
            )
            .help(format!("the in-cluster operator of a revision reconciles only IstioOperators whose spec.revision is that revision (never a tag); give the gateway `revision: {cp_rev}`"));
            d = if g.gateway.revision.is_some() {
                d.at(src, &g.at.key("revision"))
            } else {
                d.at(src, &g.at.key("name"))
            };
            diags.push(d);
        }
        if !install.helm_gateways()
            && let Some(svc) = g.service()
            && svc.owner == crate::inventory::ServiceOwner::Standalone
            && svc.name == g.release
        {
            diags.push(
                Diagnostic::error(
                    Code::SchemaInvalidValue,
                    format!(
                        "Service `{}` cannot stand alone: istioctl renders a Service of that name for gateway `{}`",
                        svc.name, g.gateway.name
                    ),
                )
                .at(src, &g.at.key("service").key("owner"))
                .help("istioctl's gateway chart always renders a Service named after the component and overwrites one that exists; set `owner: release`, or name the standalone Service differently"),
            );
        }
        if g.gateway.upgrade != crate::inventory::GatewayUpgrade::BlueGreen || !canary {
            continue;
        }
        if g.service().is_none() {
            diags.push(
                Diagnostic::error(
                    Code::GatewayUnsafe,
                    format!("blue/green gateway `{}` declares no Service", g.gateway.name),
                )
                .at(src, &g.at.key("name"))
                .help("a blue/green upgrade keeps the gateway's Service and moves its selector to the new pods; without it, removing the old release would delete the Service clients reach the gateway through (an egress gateway's ClusterIP Service too)")
                .help("declare `service` (name, type, ports), or set `upgrade: inPlace`"),
            );
            continue;
        }
        let old_rev = crate::plan::state::running_pod_revision(install, g);
        let mut new_labels = crate::plan::state::shared_selector(g);
        new_labels.insert("istio.io/rev".into(), "\u{0}new".into());
        if let Err(why) = crate::plan::state::traffic_plan(
            g.traffic,
            &crate::plan::state::running_selector(g),
            old_rev.as_deref(),
            &new_labels,
        ) {
            diags.push(
                Diagnostic::error(
                    Code::GatewayUnsafe,
                    format!("gateway `{}` cannot switch its traffic at once", g.gateway.name),
                )
                .at(src, &g.at.key("traffic"))
                .help(why)
                .help("use `traffic: gradual` (the default: the new pods join the Service as they become ready, then it narrows to them), or reinstall the gateway with a `revision` first"),
            );
        }
    }
    let helm_tags = crate::plan::state::helm_tags(&c.istio.values);
    if install == InstallMethod::Helm && !helm_tags.is_empty() {
        let at_tags = at.key("istio").key("values").key("revisionTags");
        for t in &helm_tags {
            if !c.istio.tags.contains(t) {
                diags.push(
                    Diagnostic::error(
                        Code::UnknownRevision,
                        format!("values.revisionTags lists `{t}`, which istio.tags does not"),
                    )
                    .at(src, &at_tags)
                    .help(
                        "istio.tags lists every tag pointing at the running revision; add it there",
                    ),
                );
            }
        }
        if let Some(v) = &version
            && !crate::chart_facts::istiod_webhook_annotations(v)
        {
            diags.push(
                Diagnostic::error(
                    Code::TagsUnmovable,
                    format!(
                        "the istiod release renders the revision tags {} and its {} chart cannot keep them when it is removed",
                        helm_tags.join(", "),
                        v
                    ),
                )
                .at(src, &at_tags)
                .help("before 1.24 the istiod chart cannot mark its tag webhooks `helm.sh/resource-policy: keep`, so uninstalling the old release would delete the tags right after they moved, and tagged namespaces would come up without sidecars")
                .help("first make the tags standalone, as Istio's Helm docs do (`helm template istiod istio/istiod -s templates/revision-tags.yaml --set revisionTags={<tag>} --set revision=<revision> | kubectl apply -f -`, then remove revisionTags from the release), and remove revisionTags from istio.values"),
            );
        }
    }

    if let Some(z) = &c.istio.ztunnel {
        check_ztunnel(
            z,
            c.istio.cni.is_some(),
            install,
            version.as_ref(),
            &at.key("istio").key("ztunnel"),
            src,
            diags,
        );
    }
    let sail = check_sail(c, install, version.as_ref(), &settings, &at, src, diags);
    let multicluster = check_multicluster(c, install, version.as_ref(), &at, src, diags);
    if let Some(cni) = &c.istio.cni {
        check_cni(
            cni,
            install,
            version.as_ref(),
            &at.key("istio").key("cni"),
            src,
            diags,
        );
    }

    if diags.0[first_new..]
        .iter()
        .any(|d| d.severity == crate::diagnostic::Severity::Error)
    {
        return None;
    }
    let version = version?;
    let release = c
        .istio
        .release
        .clone()
        .unwrap_or_else(|| match &c.istio.revision {
            Some(r) if r != DEFAULT_REVISION => format!("istiod-{r}"),
            _ => "istiod".to_string(),
        });
    Some(ClusterSpec {
        name: c.name.clone(),
        at,
        context: c.context.clone(),
        kubernetes: kubernetes?,
        install: settings.install_method.unwrap_or(InstallMethod::Helm),
        hub: settings
            .hub
            .unwrap_or_else(|| "docker.io/istio".to_string()),
        tag_suffix: settings.tag_suffix.unwrap_or_default(),
        variant: settings.variant,
        revision_format: settings.revision_format.unwrap_or(RevisionFormat::Minor),
        control_plane_upgrade: settings
            .control_plane_upgrade
            .unwrap_or(ControlPlaneUpgrade::Canary),
        policy: settings.upgrade_policy.unwrap_or(UpgradePolicy::Istio),
        chart_repository: settings
            .chart_repository
            .unwrap_or_else(|| "istio".to_string()),
        install_set_here: c.settings.install_method.is_some(),
        version,
        revision: c.istio.revision.clone().filter(|r| r != DEFAULT_REVISION),
        namespace: c.istio.namespace.clone(),
        tags: c.istio.tags.clone(),
        values: c.istio.values.clone(),
        release,
        base_release: c.istio.base_release.clone(),
        base_values: c.istio.base_values.clone(),
        compatibility_version: c.istio.compatibility_version.clone(),
        cni: c.istio.cni.as_ref().map(|cni| CniSpec {
            release: cni.release.clone(),
            namespace: cni
                .namespace
                .clone()
                .unwrap_or_else(|| c.istio.namespace.clone()),
            values: cni.values.clone(),
        }),
        ztunnel: c.istio.ztunnel.as_ref().map(|z| CniSpec {
            release: z.release.clone(),
            namespace: z
                .namespace
                .clone()
                .unwrap_or_else(|| c.istio.namespace.clone()),
            values: z.values.clone(),
        }),
        sail,
        multicluster,
        gateways,
        namespaces,
    })
}

/// A cluster's multicluster block, on its own (what involves other clusters is checked by
/// [`check_mesh`]).
fn check_multicluster(
    c: &crate::inventory::Cluster,
    install: InstallMethod,
    version: Option<&IstioVersion>,
    at: &YamlPath,
    src: &Source,
    diags: &mut Diagnostics,
) -> Option<MulticlusterSpec> {
    use crate::inventory::ClusterRole;
    let m = c.multicluster.as_ref()?;
    let am = at.key("multicluster");
    let before = diags.0.len();
    let refuse = |diags: &mut Diagnostics, at: &YamlPath, msg: String, help: &str| {
        diags.push(
            Diagnostic::error(Code::TopologyUnsupported, msg)
                .at(src, at)
                .help(help.to_string()),
        );
    };
    let role = match m.role {
        ClusterRole::External => {
            refuse(
                diags,
                &am.key("role"),
                format!(
                    "cluster `{}`: an external control plane is not planned",
                    c.name
                ),
                "an external control plane runs istiod outside the clusters it serves (istio.io docs/setup/install/external-controlplane); meshplan plans primaries and the remotes they serve: upgrade the external control plane by hand",
            );
            return None;
        }
        ClusterRole::Primary => {
            if m.primary.is_some() || m.remote_pilot_address.is_some() {
                diags.push(
                    Diagnostic::error(
                        Code::SchemaInvalidValue,
                        format!("cluster `{}` is a primary: `primary` and `remotePilotAddress` describe a remote", c.name),
                    )
                    .at(src, &if m.primary.is_some() { am.key("primary") } else { am.key("remotePilotAddress") })
                    .help("set `role: remote`, or remove them"),
                );
            }
            MeshRole::Primary {
                remotes: Vec::new(),
            }
        }
        ClusterRole::Remote => {
            let mut missing = |k: &str, v: &Option<String>, what: &str| {
                if v.is_none() {
                    diags.push(
                        Diagnostic::error(
                            Code::SchemaMissingField,
                            format!("remote cluster `{}` does not say {what}", c.name),
                        )
                        .at(src, &am)
                        .help(format!("add `{k}` under multicluster")),
                    );
                }
            };
            missing("primary", &m.primary, "which primary serves it");
            missing(
                "remotePilotAddress",
                &m.remote_pilot_address,
                "the address of its primary's east-west gateway (global.remotePilotAddress)",
            );
            if install != InstallMethod::Helm {
                refuse(
                    diags,
                    &at.key("installMethod"),
                    format!(
                        "remote cluster `{}` uses {}: remote clusters are planned for Helm installs only",
                        c.name,
                        install.name()
                    ),
                    "a remote's control plane is the istiod chart with the remote profile (1.24+) or the istiod-remote chart (before); install the remote with Helm",
                );
            }
            if c.istio.cni.is_some() || c.istio.ztunnel.is_some() {
                refuse(
                    diags,
                    &at.key("istio").key(if c.istio.cni.is_some() {
                        "cni"
                    } else {
                        "ztunnel"
                    }),
                    format!(
                        "remote cluster `{}`: istio-cni and ambient mode in a remote are not planned",
                        c.name
                    ),
                    "upgrade the remote's node agents by hand after each hop, or describe the cluster without them",
                );
            }
            if !c.istio.tags.is_empty() {
                refuse(
                    diags,
                    &at.key("istio").key("tags"),
                    format!(
                        "remote cluster `{}`: revision tags in a remote are not planned",
                        c.name
                    ),
                    "the istiod chart renders tags in a remote only from 1.26 (istio/istio#56029, `istiodRemote`); label the remote's namespaces with the revision instead",
                );
            }
            for (ni, n) in c.namespaces.iter().enumerate() {
                if !n.gateway_api.is_empty() {
                    refuse(
                        diags,
                        &at.key("namespaces").index(ni).key("gatewayApi"),
                        format!(
                            "remote cluster `{}`: Gateway API gateways in a remote are not planned",
                            c.name
                        ),
                        "the primary's istiod deploys them; move them by hand after each hop",
                    );
                }
            }
            if let Some(v) = version {
                let (a, b, p) = REMOTE_REVISIONS_FROM;
                let first = semver::Version::new(a, b, p);
                if v.0 < first {
                    refuse(
                        diags,
                        &at.key("istio").key("version"),
                        format!(
                            "remote cluster `{}` runs {v}: its remote chart cannot run two revisions",
                            c.name
                        ),
                        "before 1.20.4 the remote chart names its Service and Endpoints `istiod` whatever the revision (istio/istio#47552, fixed by #48942), so a canary would send the old revision's sidecars to the new istiod; upgrade the pair to 1.20.4 or later in place first",
                    );
                }
                if v.minor()
                    < (Minor {
                        major: 1,
                        minor: 24,
                    })
                    && c.istio
                        .values
                        .get("global")
                        .and_then(|g| g.get("configCluster"))
                        == Some(&Value::Bool(true))
                {
                    refuse(
                        diags,
                        &at.key("istio")
                            .key("values")
                            .key("global")
                            .key("configCluster"),
                        format!(
                            "remote cluster `{}`: its istiod-remote release renders Istio's CRDs (global.configCluster)",
                            c.name
                        ),
                        "a second istiod-remote release for the new revision would render the same CRDs and Helm refuses to install it; install the base chart in the remote (as Istio requires from 1.24), let it own the CRDs, and set configCluster to false",
                    );
                }
            }
            MeshRole::Remote {
                primary: m.primary.clone().unwrap_or_default(),
                pilot_address: m.remote_pilot_address.clone().unwrap_or_default(),
            }
        }
    };
    (diags.0.len() == before).then(|| MulticlusterSpec {
        mesh_id: m.mesh_id.clone(),
        cluster_name: m.cluster_name.clone().unwrap_or_else(|| c.name.clone()),
        network: m.network.clone(),
        role,
    })
}

/// What involves several clusters of a mesh: a remote's primary is a primary of the same mesh,
/// at the same version and revision, with an east-west gateway to expose istiod through;
/// cluster names are unique within a mesh. Fills in which remotes each primary serves.
fn check_mesh(clusters: &mut [ClusterSpec], src: &Source, diags: &mut Diagnostics) {
    let mut names: BTreeMap<(String, String), String> = BTreeMap::new();
    for c in clusters.iter() {
        let Some(m) = &c.multicluster else { continue };
        if let Some(other) =
            names.insert((m.mesh_id.clone(), m.cluster_name.clone()), c.name.clone())
        {
            diags.push(
                Diagnostic::error(
                    Code::DuplicateName,
                    format!("clusters `{other}` and `{}` share clusterName `{}` in mesh `{}`", c.name, m.cluster_name, m.mesh_id),
                )
                .at(src, &c.at.key("multicluster"))
                .help("istiod tells clusters apart by clusterName (global.multiCluster.clusterName): give each its own"),
            );
        }
    }
    let mut serves: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in clusters.iter() {
        let Some(primary) = c.remote_of() else {
            continue;
        };
        let at = c.at.key("multicluster").key("primary");
        let mesh = &c
            .multicluster
            .as_ref()
            .expect("a remote has a multicluster block")
            .mesh_id;
        let Some(p) = clusters.iter().find(|p| p.name == primary) else {
            diags.push(
                Diagnostic::error(Code::UnknownRevision, format!("remote cluster `{}` names primary `{primary}`, which the inventory does not list", c.name))
                    .at(src, &at)
                    .help(suggest(primary, clusters.iter().map(|x| x.name.as_str())).map_or_else(
                        || "the primary must be a cluster of this inventory: its hop comes before the remote's, and its cleanup after".to_string(),
                        |s| format!("did you mean `{s}`?"),
                    )),
            );
            continue;
        };
        let ok_role = matches!(
            p.multicluster.as_ref().map(|m| &m.role),
            Some(MeshRole::Primary { .. })
        );
        let same_mesh = p.multicluster.as_ref().is_some_and(|m| m.mesh_id == *mesh);
        if !ok_role || !same_mesh {
            diags.push(
                Diagnostic::error(Code::TopologyUnsupported, format!("remote cluster `{}` names `{primary}`, which is not a primary of mesh `{mesh}`", c.name))
                    .at(src, &at)
                    .help(format!("give `{primary}` `multicluster: {{meshID: {mesh}}}` (role primary is the default), or name the primary that serves this cluster")),
            );
            continue;
        }
        if p.version != c.version || p.revision != c.revision {
            diags.push(
                Diagnostic::error(
                    Code::UnknownRevision,
                    format!(
                        "remote cluster `{}` runs {} (revision `{}`), and its primary `{primary}` runs {} (revision `{}`)",
                        c.name, c.version, c.revision_label(), p.version, p.revision_label()
                    ),
                )
                .at(src, &c.at.key("istio").key("version"))
                .help("a remote's control plane is its primary's istiod: the remote chart runs the primary's version and revision; describe what runs, or finish the upgrade in progress first"),
            );
        }
        if !p
            .gateways
            .iter()
            .any(|g| g.gateway.kind == crate::inventory::GatewayKind::Eastwest)
        {
            diags.push(
                Diagnostic::error(Code::TopologyUnsupported, format!("primary `{primary}` serves remote `{}` and declares no east-west gateway", c.name))
                    .at(src, &p.at.key("gateways"))
                    .help("remotes reach the primary's istiod through its east-west gateway (istio.io docs/setup/install/multicluster/primary-remote), and each new revision is exposed there; declare it (kind: eastwest)"),
            );
        }
        serves
            .entry(primary.to_string())
            .or_default()
            .push(c.name.clone());
    }
    for c in clusters.iter_mut() {
        if let (
            Some(r),
            Some(MulticlusterSpec {
                role: MeshRole::Primary { remotes },
                ..
            }),
        ) = (serves.remove(&c.name), c.multicluster.as_mut())
        {
            *remotes = r;
        }
    }
}

/// Install method `sail`: the `Istio` resource's settings, a running version the operator still
/// accepts (a rollback returns to it), and the revision name the operator gives it.
fn check_sail(
    c: &crate::inventory::Cluster,
    install: InstallMethod,
    version: Option<&IstioVersion>,
    settings: &Settings,
    at: &YamlPath,
    src: &Source,
    diags: &mut Diagnostics,
) -> Option<SailSpec> {
    let at_istio = at.key("istio");
    let Some(s) = &c.istio.sail else {
        if install == InstallMethod::Sail {
            diags.push(
                Diagnostic::error(
                    Code::SchemaMissingField,
                    format!("cluster `{}` is installed by the Sail Operator and does not say which release", c.name),
                )
                .at(src, &at_istio)
                .help("add `sail: {operatorVersion: <the Sail Operator release, e.g. 1.28.3>}` (and `name:` if the Istio resource is not called `default`) under istio"),
            );
        }
        return None;
    };
    let at_sail = at_istio.key("sail");
    if install != InstallMethod::Sail {
        diags.push(
            Diagnostic::error(
                Code::SchemaInvalidValue,
                format!(
                    "istio.sail describes a Sail Operator install, and cluster `{}` uses {}",
                    c.name,
                    install.name()
                ),
            )
            .at(src, &at_sail)
            .help("set `installMethod: sail` on the cluster, or remove istio.sail"),
        );
        return None;
    }
    check_label(
        src,
        diags,
        &at_sail.key("name"),
        "Istio resource name",
        &s.name,
    );
    let before = diags.0.len();
    if settings.control_plane_upgrade == Some(ControlPlaneUpgrade::InPlace) {
        diags.push(
            Diagnostic::error(
                Code::TopologyUnsupported,
                format!("cluster `{}`: meshplan plans Sail Operator installs as RevisionBased canaries only", c.name),
            )
            .at(src, &at.key("controlPlaneUpgrade"))
            .help("with updateStrategy InPlace the operator replaces istiod under every proxy at once, and switching an InPlace Istio to RevisionBased renames its revision; remove `controlPlaneUpgrade: inPlace`"),
        );
    }
    let Some(supported) = crate::sail::supported(&s.operator_version) else {
        diags.push(
            Diagnostic::error(
                Code::SailUnsupported,
                format!("Sail Operator release `{}` is not one meshplan knows", s.operator_version),
            )
            .at(src, &at_sail.key("operatorVersion"))
            .help(format!(
                "known releases: {} (src/data/sail-releases.yaml, generated from the operator's tags)",
                crate::sail::known_releases().join(", ")
            )),
        );
        return None;
    };
    if let Some(v) = version {
        if !supported.contains(v) {
            let newer = crate::sail::releases_installing(v);
            diags.push(
                Diagnostic::error(
                    Code::SailUnsupported,
                    format!(
                        "Sail Operator {} does not accept Istio {v}, which cluster `{}` runs: a rollback could not return to it",
                        s.operator_version, c.name
                    ),
                )
                .at(src, &at_istio.key("version"))
                .help(if newer.is_empty() {
                    format!("no Sail Operator release meshplan knows installs {v}")
                } else {
                    format!("Sail Operator releases that install {v}: {}", newer.join(", "))
                }),
            );
        }
        let want = crate::sail::revision_name(&s.name, v);
        if c.istio.revision.as_deref() != Some(want.as_str()) {
            let mut d = Diagnostic::error(
                Code::InvalidRevision,
                format!(
                    "the Sail Operator names the revision of Istio `{}` at {v} `{want}`, not `{}`",
                    s.name,
                    c.istio.revision.as_deref().unwrap_or(DEFAULT_REVISION)
                ),
            )
            .help("with updateStrategy RevisionBased every revision is `<Istio name>-v<version with dashes>` (`kubectl get istiorevision` lists it)");
            d = if c.istio.revision.is_some() {
                d.at(src, &at_istio.key("revision"))
            } else {
                d.at(src, &at_istio)
            };
            diags.push(d);
        }
    }
    (diags.0.len() == before).then(|| SailSpec {
        name: s.name.clone(),
        operator: s.operator_version.clone(),
        grace_seconds: s
            .inactive_revision_deletion_grace_period_seconds
            .unwrap_or(SAIL_DEFAULT_GRACE_SECONDS),
        profile: s.profile.clone(),
    })
}

/// Gateway API Gateways: names that fit, revisions the cluster runs, and a version whose
/// istiod hands a Gateway over between revisions (per-revision ownership, 1.18 and later).
fn check_gateway_api(
    n: &crate::inventory::Namespace,
    np: &YamlPath,
    version: Option<&IstioVersion>,
    (known, serves_default, ambient): (&[String], bool, bool),
    cluster: &str,
    src: &Source,
    diags: &mut Diagnostics,
) {
    let mut seen = BTreeSet::new();
    for (gi, g) in n.gateway_api.iter().enumerate() {
        let gp = np.key("gatewayApi").index(gi);
        check_label(src, diags, &gp.key("name"), "Gateway name", &g.name);
        if g.is_waypoint() && !ambient {
            diags.push(
                Diagnostic::error(
                    Code::TopologyUnsupported,
                    format!(
                        "Gateway `{}/{}` is a waypoint, and cluster `{cluster}` does not run ambient mode",
                        n.name, g.name
                    ),
                )
                .at(src, &gp.key("class"))
                .help("waypoints serve ambient workloads: describe the cluster's ztunnel as `istio.ztunnel`, or use class `istio`"),
            );
        }
        if g.deployment().len() > crate::path::MAX_SERVICE_NAME && is_dns_label(&g.name, 63) {
            diags.push(
                Diagnostic::error(
                    Code::NameTooLong,
                    format!(
                        "istiod names Gateway `{}`'s Deployment and Service `{}`, longer than {} characters",
                        g.name,
                        g.deployment(),
                        crate::path::MAX_SERVICE_NAME
                    ),
                )
                .at(src, &gp.key("name")),
            );
        }
        if !seen.insert(g.name.as_str()) {
            diags.push(
                Diagnostic::error(
                    Code::DuplicateName,
                    format!(
                        "Gateway `{}` is listed twice in namespace `{}`",
                        g.name, n.name
                    ),
                )
                .at(src, &gp.key("name")),
            );
        }
        if let Some(r) = &g.revision {
            check_reference(
                src,
                diags,
                &gp.key("revision"),
                &format!("Gateway `{}/{}`", n.name, g.name),
                Some(r),
                known,
                cluster,
            );
        } else if n.revision.is_none() && !serves_default {
            diags.push(
                Diagnostic::error(
                    Code::UnknownRevision,
                    format!(
                        "neither Gateway `{}/{}` nor its namespace has an istio.io/rev label, so the default revision deploys it, which cluster `{cluster}` does not run",
                        n.name, g.name
                    ),
                )
                .at(src, &gp.key("name"))
                .help("give the Gateway's istio.io/rev label as `revision`"),
            );
        }
        if gi == 0
            && let Some(v) = version
            && v.minor()
                < (Minor {
                    major: 1,
                    minor: 18,
                })
        {
            diags.push(
                Diagnostic::error(
                    Code::TopologyUnsupported,
                    format!(
                        "Gateway API gateways on {v}: before 1.18 istiod does not hand a Gateway over between revisions (one global owner, istio/istio#44164)"
                    ),
                )
                .at_key(src, &np.key("gatewayApi"))
                .help("upgrade to 1.18 first with these Gateways left out of the inventory, then plan them"),
            );
        }
    }
}

/// A namespace in ambient mode: the cluster runs ztunnel, and no injection label would give its
/// pods sidecars instead (the injector does not look at `istio.io/dataplane-mode`: a sidecar
/// wins, and ztunnel leaves the pod alone).
fn check_ambient_namespace(
    n: &crate::inventory::Namespace,
    np: &YamlPath,
    ambient_cluster: bool,
    cluster: &str,
    src: &Source,
    diags: &mut Diagnostics,
) {
    if !ambient_cluster {
        diags.push(
            Diagnostic::error(
                Code::TopologyUnsupported,
                format!(
                    "namespace `{}` is in ambient mode, and cluster `{cluster}` runs no ztunnel",
                    n.name
                ),
            )
            .at(src, &np.key("dataplaneMode"))
            .help("describe the cluster's ztunnel as `istio.ztunnel` (with its istio-cni as `istio.cni`)"),
        );
    }
    for (key, label) in [
        ("revision", n.revision.is_some().then_some("istio.io/rev")),
        (
            "istioInjection",
            n.istio_injection.is_some().then_some("istio-injection"),
        ),
    ] {
        if let Some(label) = label {
            diags.push(
                Diagnostic::error(
                    Code::TopologyUnsupported,
                    format!(
                        "namespace `{}` is in ambient mode and carries {label}: its pods get sidecars, which win over ztunnel",
                        n.name
                    ),
                )
                .at(src, &np.key(key))
                .help("leave the label off an ambient namespace (give its waypoints their own `revision`), or describe the namespace as a sidecar one without `dataplaneMode`"),
            );
        }
    }
}

/// Ambient mode is planned for Helm installs from 1.24, when it became stable, with the
/// istio-cni node agent it needs.
fn check_ztunnel(
    z: &crate::inventory::Ztunnel,
    has_cni: bool,
    install: InstallMethod,
    version: Option<&IstioVersion>,
    at: &YamlPath,
    src: &Source,
    diags: &mut Diagnostics,
) {
    if install != InstallMethod::Helm {
        diags.push(
            Diagnostic::error(
                Code::TopologyUnsupported,
                format!(
                    "ambient mode is planned for Helm installs only, and this cluster uses {}",
                    install.name()
                ),
            )
            .at_key(src, at)
            .help("Istio documents ambient upgrades with Helm (istio.io docs/ambient/upgrade/helm); istioctl installs ztunnel as an IstioOperator component, which meshplan does not plan"),
        );
    }
    if let Some(v) = version
        && v.minor()
            < (Minor {
                major: 1,
                minor: 24,
            })
    {
        diags.push(
            Diagnostic::error(
                Code::TopologyUnsupported,
                format!("ztunnel runs {v}: meshplan plans ambient mode from 1.24, where it is stable"),
            )
            .at_key(src, at)
            .help("before 1.24 ambient mode was alpha or beta, without a supported upgrade path: reinstall it at 1.24 or later"),
        );
    }
    if !has_cni {
        diags.push(
            Diagnostic::error(
                Code::TopologyUnsupported,
                "ambient mode needs the istio-cni node agent, and the inventory gives none".to_string(),
            )
            .at_key(src, at)
            .help("describe it as `istio.cni` (release, namespace, values): the plan upgrades it right before ztunnel"),
        );
    }
    check_agent_names(z.namespace.as_deref(), &z.release, at, src, diags);
}

/// istio-cni is planned for Helm installs of 1.12 and later, whose `cni` chart meshplan
/// upgrades in place.
fn check_cni(
    cni: &crate::inventory::Cni,
    install: InstallMethod,
    version: Option<&IstioVersion>,
    at: &YamlPath,
    src: &Source,
    diags: &mut Diagnostics,
) {
    if install != InstallMethod::Helm {
        diags.push(
            Diagnostic::error(
                Code::TopologyUnsupported,
                format!("istio-cni is planned for Helm installs only, and this cluster uses {}", install.name()),
            )
            .at_key(src, at)
            .help(if install == InstallMethod::Sail {
                "the Sail Operator runs istio-cni as an IstioCNI resource, which meshplan does not plan yet: upgrade it by hand after each hop (spec.version of the IstioCNI, once the old revision is gone), or remove istio.cni from this cluster"
            } else {
                "istioctl installs istio-cni as a component of the IstioOperator (components.cni), which meshplan does not plan yet: upgrade it by hand after each hop, once the old control plane is gone, or install Istio with Helm"
            }),
        );
    }
    if let Some(v) = version
        && v.minor()
            < (Minor {
                major: 1,
                minor: 12,
            })
    {
        diags.push(
            Diagnostic::error(
                Code::TopologyUnsupported,
                format!("istio-cni runs {v}: meshplan upgrades the `cni` Helm chart, which Istio names so from 1.12"),
            )
            .at_key(src, at)
            .help("before 1.12 the chart is `istio-cni`, from the release archive's manifests/charts; upgrade this cluster to 1.12 by hand first"),
        );
    }
    check_agent_names(cni.namespace.as_deref(), &cni.release, at, src, diags);
}

/// A node agent's namespace is a label, and its Helm release fits Helm's limit.
fn check_agent_names(
    namespace: Option<&str>,
    release: &str,
    at: &YamlPath,
    src: &Source,
    diags: &mut Diagnostics,
) {
    if let Some(ns) = namespace {
        check_label(src, diags, &at.key("namespace"), "namespace", ns);
    }
    if release.len() > crate::path::MAX_HELM_RELEASE {
        diags.push(
            Diagnostic::error(
                Code::NameTooLong,
                format!(
                    "the Helm release name `{release}` is longer than Helm's {} characters",
                    crate::path::MAX_HELM_RELEASE
                ),
            )
            .at(src, &at.key("release")),
        );
    }
}

fn check_label(src: &Source, diags: &mut Diagnostics, at: &YamlPath, what: &str, value: &str) {
    check_label_len(src, diags, at, what, value, 63);
}

fn check_label_len(
    src: &Source,
    diags: &mut Diagnostics,
    at: &YamlPath,
    what: &str,
    value: &str,
    max: usize,
) {
    if is_dns_label(value, max) {
        return;
    }
    let fixed: String = value
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_string();
    let mut d = Diagnostic::error(Code::InvalidName, format!("{what} `{value}` is not a valid DNS-1123 label"))
        .at(src, at)
        .help(format!(
            "use lower-case letters, digits and `-`, starting and ending with a letter or digit, at most {max} characters"
        ));
    if !fixed.is_empty() && fixed != value && fixed.len() <= max {
        d = d.help(format!("for example `{fixed}`"));
    }
    diags.push(d);
}

/// A Kubernetes label value: at most 63 characters, alphanumerics, `-`, `_` and `.`, beginning
/// and ending with an alphanumeric.
fn check_label_value(src: &Source, diags: &mut Diagnostics, at: &YamlPath, what: &str, v: &str) {
    let ok = v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && v.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if !ok {
        diags.push(
            Diagnostic::error(Code::InvalidName, format!("{what} `{v}` is not a valid label value"))
                .at(src, at)
                .help("a label value has at most 63 characters: letters, digits, `-`, `_` and `.`, beginning and ending with a letter or digit"),
        );
    }
}

fn check_revision(src: &Source, diags: &mut Diagnostics, at: &YamlPath, rev: &str) {
    if rev.contains('.') {
        diags.push(
            Diagnostic::error(Code::InvalidRevision, format!("revision `{rev}` contains `.`"))
                .at(src, at)
                .help(format!(
                    "`.` is not a valid revision character; Istio's convention replaces it with `-`: `{}`",
                    rev.replace('.', "-")
                )),
        );
    } else if !is_dns_label(rev, MAX_REVISION_LEN) {
        diags.push(
            Diagnostic::error(Code::InvalidRevision, format!("revision `{rev}` cannot be used as a revision name"))
                .at(src, at)
                .help(format!(
                    "a revision is a DNS-1123 label that fits in the Service name `istiod-<revision>`: lower-case letters, digits and `-`, at most {MAX_REVISION_LEN} characters"
                )),
        );
    }
}

fn check_reference(
    src: &Source,
    diags: &mut Diagnostics,
    at: &YamlPath,
    who: &str,
    rev: Option<&str>,
    known: &[String],
    cluster: &str,
) {
    let rev = rev.unwrap_or(DEFAULT_REVISION);
    if known.iter().any(|k| k == rev) {
        return;
    }
    let mut d = Diagnostic::error(
        Code::UnknownRevision,
        format!("{who} uses revision `{rev}`, which cluster `{cluster}` does not run"),
    )
    .at(src, at)
    .help(format!("the cluster answers to: {}", known.join(", ")));
    if let Some(s) = suggest(rev, known.iter().map(String::as_str)) {
        d = d.help(format!("did you mean `{s}`?"));
    }
    diags.push(d);
}
