//! The mesh inventory as the user writes it (format `meshplan.dev/v1alpha1`). Serde types only:
//! the JSON Schema in `schemas/inventory.schema.json` decides what is accepted, and
//! `validate.rs` checks what a schema cannot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::version::RevisionFormat;

pub const API_VERSION: &str = "meshplan.dev/v1alpha1";
pub const KIND: &str = "MeshInventory";

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub defaults: Settings,
    #[serde(default)]
    pub gitops: Gitops,
    pub clusters: Vec<Cluster>,
}

/// The inventory without its clusters, which are read one at a time.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryHead {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub defaults: Settings,
    #[serde(default)]
    pub gitops: Gitops,
}

/// How the plan is laid out for the tool that applies it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// helm and kubectl commands and the files they apply
    #[default]
    Plain,
    /// stages applied with `kubectl apply --server-side -k`; Helm releases stay helm commands
    Kustomize,
    /// stages of HelmReleases and objects that a Flux Kustomization applies
    Flux,
    /// stages of Argo CD Applications (app of apps)
    #[value(name = "argocd")]
    Argocd,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Plain => "plain",
            Layout::Kustomize => "kustomize",
            Layout::Flux => "flux",
            Layout::Argocd => "argocd",
        }
    }
}

/// The inventory's `gitops` block.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gitops {
    pub layout: Option<Layout>,
    #[serde(rename = "chartRepositoryURL")]
    pub chart_repository_url: Option<String>,
    #[serde(default)]
    pub flux: FluxSettings,
    pub argocd: Option<ArgoSettings>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxSettings {
    pub namespace: Option<String>,
    pub interval: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgoSettings {
    pub namespace: Option<String>,
    pub project: Option<String>,
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    pub path: Option<String>,
    pub target_revision: Option<String>,
    /// Inventory cluster name -> the Argo CD cluster it deploys to.
    #[serde(default)]
    pub destinations: BTreeMap<String, String>,
}

/// Settings that `defaults` gives every cluster and a cluster may override.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub install_method: Option<InstallMethod>,
    pub hub: Option<String>,
    pub tag_suffix: Option<String>,
    pub variant: Option<String>,
    pub revision_format: Option<RevisionFormat>,
    pub control_plane_upgrade: Option<ControlPlaneUpgrade>,
    pub upgrade_policy: Option<UpgradePolicy>,
    pub chart_repository: Option<String>,
}

impl Settings {
    /// `self` where set, else `fallback`.
    pub fn or(&self, fallback: &Settings) -> Settings {
        Settings {
            install_method: self.install_method.or(fallback.install_method),
            hub: self.hub.clone().or_else(|| fallback.hub.clone()),
            tag_suffix: self
                .tag_suffix
                .clone()
                .or_else(|| fallback.tag_suffix.clone()),
            variant: self.variant.clone().or_else(|| fallback.variant.clone()),
            revision_format: self.revision_format.or(fallback.revision_format),
            control_plane_upgrade: self
                .control_plane_upgrade
                .or(fallback.control_plane_upgrade),
            upgrade_policy: self.upgrade_policy.or(fallback.upgrade_policy),
            chart_repository: self
                .chart_repository
                .clone()
                .or_else(|| fallback.chart_repository.clone()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum InstallMethod {
    Helm,
    Istioctl,
    Operator,
    /// The Sail Operator: an `Istio` resource with `updateStrategy: RevisionBased`; gateways are
    /// gateway-chart Helm releases (Sail does not manage gateways).
    Sail,
}

impl InstallMethod {
    pub fn name(self) -> &'static str {
        match self {
            InstallMethod::Helm => "helm",
            InstallMethod::Istioctl => "istioctl",
            InstallMethod::Operator => "operator",
            InstallMethod::Sail => "sail",
        }
    }

    /// Whether the cluster's gateways are releases of the gateway Helm chart.
    pub fn helm_gateways(self) -> bool {
        matches!(self, InstallMethod::Helm | InstallMethod::Sail)
    }
}

/// How the control plane moves to a new version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ControlPlaneUpgrade {
    /// A new revision beside the old one (the default, and the only way to skip a minor).
    Canary,
    /// The running control plane is upgraded where it is, one minor at a time.
    InPlace,
}

/// How far one hop may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum UpgradePolicy {
    /// What Istio documents: canary may skip one minor (N-2 -> N), in place may not.
    Istio,
    /// One minor per hop even for canary upgrades, as some vendors require.
    OneMinorAtATime,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// The cluster's position in the inventory (set by the loader; not part of the format).
    #[serde(skip)]
    pub index: usize,
    pub name: String,
    pub kubernetes_version: String,
    /// The kubeconfig context, passed to every command of this cluster.
    pub context: Option<String>,
    /// The cluster's place in a multicluster mesh.
    pub multicluster: Option<Multicluster>,
    #[serde(flatten)]
    pub settings: Settings,
    pub istio: Istio,
    #[serde(default)]
    pub gateways: Vec<Gateway>,
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
}

/// A cluster's place in a multicluster mesh.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Multicluster {
    #[serde(rename = "meshID")]
    pub mesh_id: String,
    pub cluster_name: Option<String>,
    pub network: Option<String>,
    #[serde(default)]
    pub role: ClusterRole,
    /// Role remote: the primary that serves it.
    pub primary: Option<String>,
    /// Role remote: the primary's east-west gateway address.
    pub remote_pilot_address: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ClusterRole {
    /// Runs istiod (several primaries of one mesh are multi-primary peers).
    #[default]
    Primary,
    /// Runs no istiod: its primary's istiod serves it.
    Remote,
    /// An external control plane (not planned).
    External,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Istio {
    pub version: String,
    /// The running revision; absent for a default (unrevisioned) install.
    pub revision: Option<String>,
    #[serde(default = "default_istio_namespace")]
    pub namespace: String,
    /// Revision tags pointing at the running revision (`default`, `prod-stable`, ...).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Helm values (or IstioOperator `spec.values`) carried into every new revision.
    #[serde(default)]
    pub values: BTreeMap<String, Value>,
    /// The running istiod Helm release; default `istiod-<revision>`, or `istiod` unrevisioned.
    pub release: Option<String>,
    /// The Helm release of the `base` chart.
    #[serde(default = "default_base_release")]
    pub base_release: String,
    /// Helm values of the `base` chart carried into every upgrade of it.
    #[serde(default)]
    pub base_values: BTreeMap<String, Value>,
    /// `previous` or `1.N`: the behaviour every new istiod keeps.
    pub compatibility_version: Option<String>,
    /// The Sail Operator's `Istio` resource (install method `sail`).
    pub sail: Option<Sail>,
    /// The istio-cni node agent, when the cluster runs it.
    pub cni: Option<Cni>,
    /// The ztunnel node proxy: the cluster runs ambient mode.
    pub ztunnel: Option<Ztunnel>,
}

/// The Sail Operator's `Istio` resource that runs the control plane.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sail {
    #[serde(default = "default_sail_name")]
    pub name: String,
    /// The Sail Operator release: its CRD decides which Istio versions it installs.
    pub operator_version: String,
    /// `updateStrategy.inactiveRevisionDeletionGracePeriodSeconds` as the user runs it.
    pub inactive_revision_deletion_grace_period_seconds: Option<u64>,
    /// The Istio resource's `spec.profile`, carried into every version.
    pub profile: Option<String>,
}

fn default_sail_name() -> String {
    "default".to_string()
}

/// The ztunnel node proxy (ambient mode): the `ztunnel` chart, not revisioned, pointed at one
/// istiod revision by its `revision` value.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ztunnel {
    #[serde(default = "default_ztunnel_release")]
    pub release: String,
    /// Default: the control-plane namespace.
    pub namespace: Option<String>,
    /// Helm values of the `ztunnel` chart carried into every upgrade of it.
    #[serde(default)]
    pub values: BTreeMap<String, Value>,
}

fn default_ztunnel_release() -> String {
    "ztunnel".to_string()
}

/// The istio-cni node agent (sidecar mode): the `cni` chart, not revisioned.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cni {
    #[serde(default = "default_cni_release")]
    pub release: String,
    /// Default: the control-plane namespace.
    pub namespace: Option<String>,
    /// Helm values of the `cni` chart carried into every upgrade of it.
    #[serde(default)]
    pub values: BTreeMap<String, Value>,
}

fn default_cni_release() -> String {
    "istio-cni".to_string()
}

fn default_istio_namespace() -> String {
    "istio-system".to_string()
}

fn default_base_release() -> String {
    "istio-base".to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum GatewayKind {
    Ingress,
    Eastwest,
    Egress,
}

impl GatewayKind {
    pub fn name(self) -> &'static str {
        match self {
            GatewayKind::Ingress => "ingress",
            GatewayKind::Eastwest => "eastwest",
            GatewayKind::Egress => "egress",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum GatewayUpgrade {
    /// A new gateway beside the old one; the Service selector moves traffic over.
    BlueGreen,
    /// The gateway's own release moves to the new revision, rolling its pods.
    InPlace,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    pub name: String,
    pub kind: GatewayKind,
    pub namespace: String,
    pub revision: Option<String>,
    #[serde(default = "default_gateway_upgrade")]
    pub upgrade: GatewayUpgrade,
    /// The running Helm release (or IstioOperator gateway component); default: `name`.
    pub release: Option<String>,
    /// The pods' `istio` label, which `Gateway` resources select on; default: the release
    /// name without its `istio-` prefix, as the gateway chart sets it.
    pub istio_label: Option<String>,
    /// The pods' `app` label; default: the release name, as the gateway chart sets it.
    pub app_label: Option<String>,
    /// The ServiceAccount the pods run as (their mTLS identity), and who manages it.
    pub service_account: Option<GatewayServiceAccount>,
    /// How a blue/green gateway takes over its traffic Service.
    pub traffic: Option<TrafficMode>,
    /// The zero-downtime load test against the gateway.
    pub load_test: Option<LoadTest>,
    /// Helm values of the `gateway` chart carried into every new gateway.
    #[serde(default)]
    pub values: BTreeMap<String, Value>,
    pub service: Option<GatewayService>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TrafficMode {
    /// Old and new pods behind the Service together, then the new ones only.
    Gradual,
    /// One selector change from the old pods to the new ones.
    Instant,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadTest {
    pub host: Option<String>,
    pub path: Option<String>,
    pub scheme: Option<String>,
    pub port: Option<u32>,
    pub rate: Option<u32>,
    pub duration: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayServiceAccount {
    pub name: Option<String>,
    pub owner: Option<ServiceOwner>,
}

fn default_gateway_upgrade() -> GatewayUpgrade {
    GatewayUpgrade::BlueGreen
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub enum ServiceType {
    LoadBalancer,
    NodePort,
    ClusterIP,
}

/// Who manages a gateway's Service today.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ServiceOwner {
    /// Rendered by the gateway's own Helm release or IstioOperator (the usual starting point).
    Release,
    /// Applied on its own (by a previous meshplan plan or by hand).
    Standalone,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayService {
    pub name: String,
    #[serde(rename = "type", default = "default_service_type")]
    pub kind: ServiceType,
    pub ports: Vec<ServicePort>,
    #[serde(default = "default_service_owner")]
    pub owner: ServiceOwner,
    /// The Service's current selector, when it is not the chart's `{app, istio}` pair.
    pub selector: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub external_traffic_policy: Option<String>,
    pub internal_traffic_policy: Option<String>,
    pub load_balancer_source_ranges: Option<Vec<String>>,
    #[serde(rename = "loadBalancerIP")]
    pub load_balancer_ip: Option<String>,
    pub load_balancer_class: Option<String>,
    pub ip_families: Option<Vec<String>>,
    pub ip_family_policy: Option<String>,
    pub session_affinity: Option<String>,
    pub allocate_load_balancer_node_ports: Option<bool>,
    #[serde(rename = "externalIPs")]
    pub external_ips: Option<Vec<String>>,
}

impl GatewayService {
    /// The spec fields beyond type, ports and selector, by their Kubernetes names.
    pub fn extra(&self) -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        put(
            "externalTrafficPolicy",
            self.external_traffic_policy.clone().map(Value::from),
        );
        put(
            "internalTrafficPolicy",
            self.internal_traffic_policy.clone().map(Value::from),
        );
        put(
            "loadBalancerSourceRanges",
            self.load_balancer_source_ranges.clone().map(Value::from),
        );
        put(
            "loadBalancerIP",
            self.load_balancer_ip.clone().map(Value::from),
        );
        put(
            "loadBalancerClass",
            self.load_balancer_class.clone().map(Value::from),
        );
        put("ipFamilies", self.ip_families.clone().map(Value::from));
        put(
            "ipFamilyPolicy",
            self.ip_family_policy.clone().map(Value::from),
        );
        put(
            "sessionAffinity",
            self.session_affinity.clone().map(Value::from),
        );
        put(
            "allocateLoadBalancerNodePorts",
            self.allocate_load_balancer_node_ports.map(Value::from),
        );
        put("externalIPs", self.external_ips.clone().map(Value::from));
        m
    }
}

fn default_service_type() -> ServiceType {
    ServiceType::LoadBalancer
}

fn default_service_owner() -> ServiceOwner {
    ServiceOwner::Release
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub name: String,
    pub port: u32,
    pub target_port: Option<u32>,
    pub protocol: Option<String>,
    pub node_port: Option<u32>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    pub name: String,
    /// The namespace's `istio.io/rev` label.
    pub revision: Option<String>,
    /// The legacy `istio-injection` label (`enabled`).
    pub istio_injection: Option<String>,
    /// `istio.io/dataplane-mode` (`ambient`): ztunnel serves its pods.
    pub dataplane_mode: Option<String>,
    #[serde(default = "default_wave")]
    pub wave: u32,
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// Gateway API Gateways (class `istio`) istiod deploys in this namespace.
    #[serde(default)]
    pub gateway_api: Vec<GatewayApiGateway>,
}

/// A Gateway API `Gateway` of class `istio`: istiod deploys it (Deployment, Service and
/// ServiceAccount `<name>-istio`), the istiod its `istio.io/rev` label names, or else its
/// namespace's.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiGateway {
    pub name: String,
    /// Its own `istio.io/rev` label.
    pub revision: Option<String>,
    /// Its `gatewayClassName`.
    #[serde(default)]
    pub class: GatewayClass,
}

/// The gateway classes istiod deploys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum GatewayClass {
    #[default]
    #[serde(rename = "istio")]
    Istio,
    /// An ambient waypoint.
    #[serde(rename = "istio-waypoint")]
    IstioWaypoint,
}

impl GatewayApiGateway {
    /// The Deployment, Service and ServiceAccount istiod renders for it: the class is appended
    /// to the Gateway's name, except for waypoints (`disableNameSuffix`), whose Service is a
    /// ClusterIP one.
    pub fn deployment(&self) -> String {
        match self.class {
            GatewayClass::Istio => format!("{}-istio", self.name),
            GatewayClass::IstioWaypoint => self.name.clone(),
        }
    }

    pub fn is_waypoint(&self) -> bool {
        self.class == GatewayClass::IstioWaypoint
    }
}

fn default_wave() -> u32 {
    1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    pub fn resource(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
            WorkloadKind::DaemonSet => "daemonset",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub enum UpdateStrategy {
    RollingUpdate,
    OnDelete,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
    /// `RollingUpdate` (default) or `OnDelete`.
    pub update_strategy: Option<UpdateStrategy>,
    /// A StatefulSet's `rollingUpdate.partition`.
    pub partition: Option<u32>,
}

impl Workload {
    /// Whether a pod-template change restarts every pod of the workload.
    pub fn restarts_on_template_change(&self) -> bool {
        self.update_strategy != Some(UpdateStrategy::OnDelete) && self.partition.unwrap_or(0) == 0
    }
}
