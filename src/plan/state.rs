//! What the plan knows about a cluster between steps: which releases run, what the traffic
//! Services select, how namespaces are labelled, who renders each revision tag. It starts from
//! the inventory and the phases update it as they plan; the model (`crate::model`) starts from
//! the same description, so the plan and its check agree on where the cluster begins.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::inventory::{GatewayUpgrade, InstallMethod, ServiceOwner, TrafficMode};
use crate::path::Hop;
use crate::plan::op::{GatewayDeploy, GatewayServiceRender, REV_LABEL, ServiceSpec};
use crate::validate::{ClusterSpec, DEFAULT_REVISION, GatewaySpec};
use crate::version::IstioVersion;

/// Who renders a revision tag's webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagOwner {
    /// The istiod Helm release of that name (`revisionTags` in its values).
    Release(String),
    /// No release: `istioctl tag set`, or `helm template | kubectl apply`.
    Standalone,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagNow {
    pub name: String,
    pub owner: TagOwner,
    /// The revision the tag points at.
    pub revision: String,
}

/// A gateway as it runs between steps.
#[derive(Clone, Debug)]
pub struct GatewayNow {
    /// The Helm release or IstioOperator (component) name.
    pub release: String,
    pub version: IstioVersion,
    /// What the release renders.
    pub deploy: GatewayDeploy,
    /// The traffic Service's selector.
    pub selector: BTreeMap<String, String>,
    pub service_owner: ServiceOwner,
    pub sa_owner: ServiceOwner,
    /// During a hop that replaces the gateway: the new release and how traffic moves to it.
    pub next: Option<NextGateway>,
}

/// A blue/green gateway's new release, between its install and the cleanup of the old one.
#[derive(Clone, Debug)]
pub struct NextGateway {
    pub deploy: GatewayDeploy,
    pub traffic: TrafficPlan,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceNow {
    /// The `istio.io/rev` label.
    pub rev: Option<String>,
    /// The legacy `istio-injection=enabled` label.
    pub injection: bool,
}

/// A Gateway API gateway as it runs between steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayApiNow {
    /// Its namespace's index in the inventory.
    pub namespace: usize,
    pub name: String,
    /// The Deployment istiod renders for it.
    pub deployment: String,
    /// Its own `istio.io/rev` label.
    pub rev: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Carried {
    pub version: IstioVersion,
    /// The running revision; `None` for the default (unrevisioned) control plane.
    pub revision: Option<String>,
    /// The istiod Helm release (or IstioOperator) of the running revision.
    pub istiod_release: String,
    pub tags: Vec<TagNow>,
    /// The istiod Helm releases whose webhooks the plan marked `helm.sh/resource-policy: keep`
    /// (the inventory does not say whether a running release's are).
    pub kept_webhooks: Vec<String>,
    /// The base chart's `defaultRevision` (Helm installs).
    pub default_revision: String,
    pub gateways: Vec<GatewayNow>,
    pub namespaces: Vec<NamespaceNow>,
    pub gateway_api: Vec<GatewayApiNow>,
}

/// The `revisionTags` a release was installed with, from its carried values.
pub fn helm_tags(values: &BTreeMap<String, Value>) -> Vec<String> {
    values
        .get("revisionTags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The Service a gateway's traffic goes through, as the inventory describes it.
pub fn service_spec(g: &GatewaySpec) -> Option<ServiceSpec> {
    g.service().map(|s| ServiceSpec {
        name: s.name.clone(),
        namespace: g.gateway.namespace.clone(),
        kind: s.kind,
        ports: s.ports.clone(),
        annotations: s.annotations.clone(),
        extra: s.extra(),
    })
}

/// The `istio.io/rev` label the pods of a running gateway carry: the gateway chart sets it
/// only when the release has a `revision`; istioctl's gateway chart always sets it, to the
/// revision or `default`.
pub fn running_pod_revision(install: InstallMethod, g: &GatewaySpec) -> Option<String> {
    match install {
        InstallMethod::Helm | InstallMethod::Sail => g.gateway.revision.clone(),
        InstallMethod::Istioctl | InstallMethod::Operator => Some(
            g.gateway
                .revision
                .clone()
                .unwrap_or_else(|| DEFAULT_REVISION.to_string()),
        ),
    }
}

/// What a running gateway release renders, from the inventory.
pub fn running_gateway(c: &ClusterSpec, g: &GatewaySpec) -> GatewayDeploy {
    let deployment = match c.install {
        InstallMethod::Helm | InstallMethod::Sail => g
            .gateway
            .values
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| g.release.clone(), str::to_string),
        _ => g.release.clone(),
    };
    let mut extra = BTreeMap::new();
    if let Some(sel) = g.service().and_then(|s| s.selector.as_ref()) {
        // A custom selector names labels the pods carry (the Solo architecture's `version`).
        for (k, v) in sel {
            if k != "app" && k != "istio" && k != REV_LABEL {
                extra.insert(k.clone(), v.clone());
            }
        }
    }
    let mut service = match (service_spec(g), g.service().map(|s| s.owner)) {
        (Some(spec), Some(ServiceOwner::Release)) => {
            Some(GatewayServiceRender { spec, keep: false })
        }
        _ => None,
    };
    if !c.install.helm_gateways() && service.as_ref().is_none_or(|s| s.spec.name != deployment) {
        // istioctl's gateway chart always renders a Service named after the component: a
        // ClusterIP one when the traffic goes through a Service of its own.
        service = Some(GatewayServiceRender {
            spec: ServiceSpec {
                name: deployment.clone(),
                namespace: g.gateway.namespace.clone(),
                kind: crate::inventory::ServiceType::ClusterIP,
                ports: g.service().map(|s| s.ports.clone()).unwrap_or_default(),
                annotations: BTreeMap::new(),
                extra: BTreeMap::new(),
            },
            keep: false,
        });
    }
    let creates_sa = g.service_account_owner == ServiceOwner::Release;
    GatewayDeploy {
        name: deployment,
        namespace: g.gateway.namespace.clone(),
        pod_revision: running_pod_revision(c.install, g),
        app: g.app_label.clone(),
        istio: g.istio_label.clone(),
        extra_labels: extra,
        service_account: g.service_account.clone(),
        creates_service_account: creates_sa,
        keep_service_account: false,
        rbac: creates_sa,
        service,
    }
}

/// The selector of a gateway's traffic Service today.
pub fn running_selector(g: &GatewaySpec) -> BTreeMap<String, String> {
    g.service()
        .and_then(|s| s.selector.clone())
        .unwrap_or_else(|| shared_selector(g))
}

/// The labels old and new pods of a gateway share: `app` and `istio`.
pub fn shared_selector(g: &GatewaySpec) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".to_string(), g.app_label.clone()),
        ("istio".to_string(), g.istio_label.clone()),
    ])
}

/// Whether `selector` selects pods labelled `labels`.
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// How a blue/green gateway's traffic moves, decided before anything is installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrafficPlan {
    /// The Service's selector already excludes the new pods; it moves by `widen` (gradual)
    /// and/or `switch`.
    Separate {
        pin: Option<BTreeMap<String, String>>,
    },
    /// Old pods carry nothing that tells them from the new ones, so the new pods join the
    /// Service as soon as they are ready (gradual, by replica count), then the Service narrows.
    JoinAtInstall,
}

/// Decides how the traffic of a blue/green gateway moves to pods labelled `new_labels`.
/// `Err` explains why the requested mode cannot be done safely.
pub fn traffic_plan(
    mode: TrafficMode,
    old_selector: &BTreeMap<String, String>,
    old_pod_revision: Option<&str>,
    new_labels: &BTreeMap<String, String>,
) -> Result<TrafficPlan, String> {
    if !selects(old_selector, new_labels) {
        return Ok(TrafficPlan::Separate { pin: None });
    }
    if let Some(r) = old_pod_revision {
        let mut pinned = old_selector.clone();
        pinned.insert(REV_LABEL.to_string(), r.to_string());
        if !selects(&pinned, new_labels) {
            return Ok(TrafficPlan::Separate { pin: Some(pinned) });
        }
    }
    match mode {
        TrafficMode::Gradual => Ok(TrafficPlan::JoinAtInstall),
        TrafficMode::Instant => Err("the old gateway's pods carry no label that tells them from the new gateway's (no `istio.io/rev`: the release was installed without a revision), so the Service would send traffic to the new pods as soon as they are ready".to_string()),
    }
}

impl Carried {
    pub fn from_spec(c: &ClusterSpec) -> Carried {
        let owned = helm_tags(&c.values);
        let tags = c
            .tags
            .iter()
            .map(|t| TagNow {
                name: t.clone(),
                owner: if c.install == InstallMethod::Helm && owned.contains(t) {
                    TagOwner::Release(c.release.clone())
                } else {
                    TagOwner::Standalone
                },
                revision: c.revision_label().to_string(),
            })
            .collect();
        let default_revision = c
            .base_values
            .get("defaultRevision")
            .and_then(Value::as_str)
            .map_or_else(|| c.revision_label().to_string(), str::to_string);
        Carried {
            version: c.version.clone(),
            revision: c.revision.clone(),
            istiod_release: c.release.clone(),
            tags,
            kept_webhooks: Vec::new(),
            default_revision,
            gateways: c
                .gateways
                .iter()
                .map(|g| GatewayNow {
                    release: g.release.clone(),
                    version: c.version.clone(),
                    deploy: running_gateway(c, g),
                    selector: running_selector(g),
                    service_owner: g.service().map_or(ServiceOwner::Standalone, |s| s.owner),
                    sa_owner: g.service_account_owner,
                    next: None,
                })
                .collect(),
            namespaces: c
                .namespaces
                .iter()
                .map(|n| NamespaceNow {
                    rev: n.namespace.revision.clone(),
                    injection: n.namespace.istio_injection.is_some(),
                })
                .collect(),
            gateway_api: c
                .namespaces
                .iter()
                .enumerate()
                .flat_map(|(ni, n)| {
                    n.namespace.gateway_api.iter().map(move |g| GatewayApiNow {
                        namespace: ni,
                        name: g.name.clone(),
                        deployment: g.deployment(),
                        rev: g.revision.clone(),
                    })
                })
                .collect(),
        }
    }

    /// The `istio.io/rev` value that decides which istiod deploys Gateway API gateway `g`:
    /// its own label, or else its namespace's (`default` when neither has one).
    pub fn gateway_api_label(&self, g: &GatewayApiNow) -> String {
        g.rev
            .clone()
            .or_else(|| self.namespaces[g.namespace].rev.clone())
            .unwrap_or_else(|| DEFAULT_REVISION.to_string())
    }

    /// The label value of the running revision.
    pub fn revision_label(&self) -> &str {
        self.revision.as_deref().unwrap_or(DEFAULT_REVISION)
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t.name == tag)
    }

    pub fn finish_hop(&mut self, hop: &Hop) {
        self.version = hop.to.clone();
        self.revision = hop.to_revision.clone();
    }
}

/// Whether a gateway is replaced beside itself in this hop.
pub fn blue_green(g: &GatewaySpec, hop: &Hop) -> bool {
    g.gateway.upgrade == GatewayUpgrade::BlueGreen && hop.strategy == crate::path::Strategy::Canary
}
