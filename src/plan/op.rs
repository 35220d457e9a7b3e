//! Typed operations: what a step does, as data. A step is a list of [`Op`]s, the [`Wait`]s
//! that must pass after them, and the `Op`s that undo it. Commands are rendered from operations
//! in one place (`render::shell`), and the cluster model (`model`) executes the same operations,
//! so what the plan says and what the model checks cannot drift apart.
//!
//! Each operation carries its *meaning*, not only its arguments: a Helm upgrade of the gateway
//! chart says which pods, ServiceAccount and Service the release will render; a Service patch
//! says the selector it sets. The artifact files (values, patches, manifests) are rendered from
//! the same specs.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::inventory::{ServiceType, WorkloadKind};
use crate::version::IstioVersion;

/// The charts meshplan installs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Chart {
    Base,
    Istiod,
    /// The control plane of a remote cluster before 1.24 (from 1.24: the istiod chart with the
    /// `remote` profile).
    IstiodRemote,
    Gateway,
    /// The istio-cni node agent (not revisioned).
    Cni,
    /// The ztunnel node proxy of ambient mode (not revisioned; its `revision` value says which
    /// istiod it connects to).
    Ztunnel,
}

impl Chart {
    pub fn name(self) -> &'static str {
        match self {
            Chart::Base => "base",
            Chart::Istiod => "istiod",
            Chart::IstiodRemote => "istiod-remote",
            Chart::Gateway => "gateway",
            Chart::Cni => "cni",
            Chart::Ztunnel => "ztunnel",
        }
    }
}

/// A Service as the plan knows it: everything a selector switch must never change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    pub name: String,
    pub namespace: String,
    pub kind: ServiceType,
    pub ports: Vec<crate::inventory::ServicePort>,
    pub annotations: BTreeMap<String, String>,
    /// Other spec fields carried verbatim (externalTrafficPolicy, loadBalancerSourceRanges, ...).
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The pods, ServiceAccount and Service a gateway release (chart or IstioOperator component)
/// renders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayDeploy {
    /// The Deployment's name.
    pub name: String,
    pub namespace: String,
    /// The `istio.io/rev` label of the pods (`None`: no such label; the default revision
    /// injects them through `sidecar.istio.io/inject`).
    pub pod_revision: Option<String>,
    pub app: String,
    pub istio: String,
    /// Further pod labels (from a custom selector of an istioctl gateway).
    pub extra_labels: BTreeMap<String, String>,
    /// The ServiceAccount the pods run as.
    pub service_account: String,
    /// The release renders that ServiceAccount (and, for the chart, its secrets Role).
    pub creates_service_account: bool,
    /// `helm.sh/resource-policy: keep` on the ServiceAccount.
    pub keep_service_account: bool,
    /// The release renders the RBAC that lets the ServiceAccount read TLS secrets.
    pub rbac: bool,
    /// The release's own Service (`None`: `service.type: None`).
    pub service: Option<GatewayServiceRender>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayServiceRender {
    pub spec: ServiceSpec,
    /// `helm.sh/resource-policy: keep` on it.
    pub keep: bool,
}

impl GatewayDeploy {
    /// The labels of the gateway's pods.
    pub fn pod_labels(&self) -> BTreeMap<String, String> {
        let mut l = self.extra_labels.clone();
        l.insert("app".into(), self.app.clone());
        l.insert("istio".into(), self.istio.clone());
        if let Some(r) = &self.pod_revision {
            l.insert(REV_LABEL.into(), r.clone());
        }
        l
    }
}

pub const REV_LABEL: &str = "istio.io/rev";
/// The label istiod puts on a Gateway API gateway's pods and selects them by (the deprecated
/// `istio.io/gateway-name` on Deployments created before 1.21, which istiod keeps: selectors
/// are immutable).
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
pub const INJECTION_LABEL: &str = "istio-injection";

/// What a Helm release of the istiod chart renders that the plan cares about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IstiodDeploy {
    /// `None`: the default (unrevisioned) control plane.
    pub revision: Option<String>,
    /// Revision tags the release renders (`revisionTags`).
    pub tags: Vec<String>,
    /// `helm.sh/resource-policy: keep` on its injector webhooks (1.24+ charts).
    pub keep_webhooks: bool,
    /// A remote cluster's control plane: the Service `istiod-<revision>` points at the
    /// primary's istiod (through its east-west gateway), and no istiod runs here.
    pub remote: bool,
}

/// What one Helm release renders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "chart")]
pub enum ReleaseContent {
    Base {
        /// `defaultRevision`: where `istiod-default-validator` sends requests (`""`: none).
        default_revision: String,
    },
    Istiod(IstiodDeploy),
    Gateway(Box<GatewayDeploy>),
    /// The `istio-cni-node` DaemonSet.
    Cni,
    /// The ztunnel DaemonSet `daemonset`, connected to the istiod of `revision` (`None`:
    /// `istiod`).
    Ztunnel {
        revision: Option<String>,
        daemonset: String,
    },
}

/// `helm upgrade [--install]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmUpgrade {
    pub release: String,
    pub namespace: String,
    pub chart: Chart,
    /// `<repository>/<chart>`.
    pub chart_ref: String,
    pub version: IstioVersion,
    /// The values file (relative to the plan root).
    pub values: String,
    /// `--install`: the release may not exist yet.
    pub install: bool,
    /// `--reuse-values`: the file only adds to the values the release has.
    pub reuse_values: bool,
    /// `--wait`.
    pub wait: bool,
    /// `--skip-schema-validation`: the chart's values.schema.json rejects its own defaults
    /// under Helm 3.18.5 and later (istio/istio#57354).
    pub skip_schema_validation: bool,
    /// `--take-ownership` (Helm 3.17+; Flux's helm-controller does it unless
    /// `disableTakeOwnership`): the release adopts what it renders even where another release
    /// or nobody owns it (a revision tag moving from one istiod release to the next).
    pub take_ownership: bool,
    /// What the release renders afterwards. For `reuse_values`, the release's content after
    /// the merge.
    pub content: ReleaseContent,
}

/// An istioctl-installed component (`istioctl install -f`, or an IstioOperator the in-cluster
/// operator reconciles).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "component")]
pub enum IopContent {
    Istiod { revision: Option<String> },
    Gateway(Box<GatewayDeploy>),
}

/// A reference to a Kubernetes object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjRef {
    /// kubectl's resource name (`service`, `mutatingwebhookconfiguration`, ...).
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

impl ObjRef {
    pub fn new(kind: &str, name: &str, namespace: Option<&str>) -> Self {
        ObjRef {
            kind: kind.to_string(),
            name: name.to_string(),
            namespace: namespace.map(str::to_string),
        }
    }
}

/// A label or selector change: `Some` sets a key, `None` removes it.
pub type LabelPatch = BTreeMap<String, Option<String>>;

/// How a workload's pods are replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RestartMethod {
    /// A pod-template annotation patch: the controller rolls the pods.
    TemplatePatch,
    /// The pods are deleted one at a time, each replacement ready before the next
    /// (`updateStrategy: OnDelete`, or a partitioned StatefulSet).
    DeletePods,
}

/// The command-line tools a plan runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Tool {
    Kubectl,
    Helm,
    Istioctl,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Kubectl => "kubectl",
            Tool::Helm => "helm",
            Tool::Istioctl => "istioctl",
        }
    }
}

/// Something a step does. Every variant names the tool that carries it out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "op")]
pub enum Op {
    /// `helm upgrade [--install]`.
    HelmUpgrade(HelmUpgrade),
    /// `helm uninstall`.
    HelmUninstall { release: String, namespace: String },
    /// Pre-1.24 CRDs: `helm show crds <base chart> | kubectl apply -f -`.
    ApplyCrds {
        chart_ref: String,
        version: IstioVersion,
    },
    /// Crossing into 1.24: label and annotate the CRDs so the base release may own them.
    AdoptCrds { release: String, namespace: String },
    /// `istioctl install -f` (or, for the in-cluster operator, `kubectl apply -f` of the
    /// IstioOperator).
    IstioctlInstall {
        file: String,
        version: IstioVersion,
        operator: bool,
        /// The IstioOperator resource's name and namespace.
        name: String,
        namespace: String,
        content: IopContent,
    },
    /// `istioctl operator init --revision`: the in-cluster operator of a version.
    OperatorInit {
        revision: String,
        hub: String,
        tag: String,
        version: IstioVersion,
    },
    /// `istioctl operator remove --revision`.
    OperatorRemove {
        revision: String,
        version: IstioVersion,
    },
    /// `istioctl uninstall --revision`: every istioctl-managed object of a revision.
    IstioctlUninstall {
        revision: String,
        version: IstioVersion,
    },
    /// Point an existing revision tag at a revision (never creates one). `helm` says how:
    /// `Some(chart)` renders the chart's tag templates (`helm template | kubectl apply`),
    /// `None` uses `istioctl tag set`.
    SetTag {
        tag: String,
        revision: String,
        version: IstioVersion,
        helm: Option<TagTemplate>,
    },
    /// `kubectl apply -f` of a manifest meshplan writes (standalone objects).
    Apply {
        file: String,
        objects: Vec<Manifest>,
    },
    /// A JSON merge patch of a Service's selector (`kubectl patch --type merge`).
    PatchSelector {
        service: String,
        namespace: String,
        file: String,
        patch: LabelPatch,
    },
    /// A JSON merge patch of a namespace's labels.
    LabelNamespace {
        namespace: String,
        file: String,
        patch: LabelPatch,
    },
    /// Sets (`Some`) or removes (`None`) a Gateway API Gateway's `istio.io/rev` label
    /// (`kubectl label --overwrite`): the istiod that label names takes the Gateway over and
    /// rolls its Deployment.
    LabelGateway {
        name: String,
        namespace: String,
        revision: Option<String>,
    },
    /// Remove labels from objects (istioctl handover: the pruning labels).
    RemoveLabels {
        objects: Vec<ObjRef>,
        labels: Vec<String>,
    },
    /// Restart a workload so that its pods are injected anew.
    Restart {
        kind: WorkloadKind,
        name: String,
        namespace: String,
        method: RestartMethod,
        /// The patch file (template patch only).
        file: Option<String>,
    },
    /// `kubectl rollout restart`: a gateway's Deployment or a workload rolls its pods, which
    /// are injected anew (a workload with `updateStrategy: OnDelete` keeps its pods).
    RolloutRestart {
        kind: WorkloadKind,
        name: String,
        namespace: String,
    },
    /// `kubectl delete --ignore-not-found`.
    Delete { objects: Vec<ObjRef> },
    /// `kubectl apply -f` of the Sail Operator's `Istio` resource: at a new version, the
    /// operator installs that version's revision (`<name>-v<x-y-z>`) beside the others and
    /// makes it active; while `hold` is set, it keeps inactive revisions however long nothing
    /// uses them, and without it prunes each one nothing uses.
    SailIstio {
        file: String,
        name: String,
        version: IstioVersion,
        hold: bool,
    },
    /// Points an `IstioRevisionTag` at an `IstioRevision` (`Some`), or back at the `Istio`
    /// resource's active revision (`None`), with `kubectl patch` (never creates one).
    SailTag {
        tag: String,
        istio: String,
        revision: Option<String>,
    },
    /// `kubectl wait` until the operator reports `IstioRevision` `revision` ready (it exists).
    SailAwaitRevision { revision: String },
    /// A read-only command and what it must show (preflight, verification). Changes nothing.
    Probe {
        tool: Tool,
        args: Vec<String>,
        expect: String,
    },
}

/// How Helm renders a revision tag: the istiod chart's tag templates, by chart version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TagTemplate {
    pub chart_ref: String,
    pub namespace: String,
    /// `templates/revision-tags.yaml` (1.10 to 1.27) or `revision-tags-mwc.yaml` and
    /// `revision-tags-svc.yaml` (1.28+).
    pub templates: Vec<String>,
}

/// A standalone object meshplan applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Manifest {
    /// A gateway's traffic Service, owned by meshplan from now on.
    Service {
        spec: ServiceSpec,
        selector: BTreeMap<String, String>,
    },
    /// The primary's istiod of `revision` exposed to remote clusters through the east-west
    /// gateway: the Gateway `istiod-gateway` (shared by every revision) and the
    /// VirtualService `name` that routes the revision's SNI names to its Service.
    IstiodRoute {
        name: String,
        namespace: String,
        /// The istiod Service (`istiod-<revision>`) it routes to.
        service: String,
    },
    /// The Role and RoleBinding that let a gateway's ServiceAccount read TLS secrets.
    SecretsRbac {
        name: String,
        namespace: String,
        service_account: String,
    },
}

/// What must hold before the next step starts. The model evaluates each one, so a wait that
/// can never pass is found before anyone runs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "wait")]
pub enum Wait {
    /// `kubectl rollout status`.
    Rollout {
        kind: WorkloadKind,
        name: String,
        namespace: String,
        timeout: String,
    },
    /// The CRDs carrying `selector` are established.
    CrdsEstablished { selector: String },
    /// A Service carries `helm.sh/resource-policy: keep`.
    ServiceKept { service: String, namespace: String },
    /// A Service's selector has `key: value`.
    Selector {
        service: String,
        namespace: String,
        key: String,
        value: String,
    },
    /// The in-cluster operator reports the IstioOperator healthy.
    OperatorHealthy { name: String, namespace: String },
    /// A namespace carries `key: value`.
    NamespaceLabel {
        namespace: String,
        key: String,
        value: String,
    },
    /// The Sail Operator deleted `IstioRevision` `revision` (`kubectl wait --for=delete`).
    SailRevisionDeleted { revision: String, timeout: String },
    /// A revision tag's webhook points at `revision`.
    Tag {
        tag: String,
        /// The control-plane namespace (the webhook's name has it unless it is istio-system).
        namespace: String,
        revision: String,
    },
}

impl Op {
    /// The files this operation reads, relative to the plan root.
    pub fn files(&self) -> Vec<&str> {
        match self {
            Op::HelmUpgrade(h) => vec![h.values.as_str()],
            Op::IstioctlInstall { file, .. }
            | Op::SailIstio { file, .. }
            | Op::Apply { file, .. }
            | Op::PatchSelector { file, .. }
            | Op::LabelNamespace { file, .. } => vec![file.as_str()],
            Op::Restart { file: Some(f), .. } => vec![f.as_str()],
            _ => Vec::new(),
        }
    }

    /// The one thing a "set" operation determines, for dropping repetitions from a rollback
    /// sequence: applying the same setter twice, with nothing that may touch its target in
    /// between, changes nothing. `None` for operations whose effect depends on what they meet.
    pub fn setter_target(&self) -> Option<String> {
        match self {
            Op::LabelNamespace { namespace, .. } => Some(format!("namespace/{namespace}")),
            Op::SetTag { tag, .. } | Op::SailTag { tag, .. } => Some(format!("tag/{tag}")),
            Op::LabelGateway {
                name, namespace, ..
            } => Some(format!("gateway/{namespace}/{name}")),
            Op::PatchSelector {
                service, namespace, ..
            } => Some(format!("service/{namespace}/{service}")),
            // A release upgraded to recorded values ends up the same whatever it was before.
            Op::HelmUpgrade(h) if !h.reuse_values => {
                Some(format!("release/{}/{}", h.namespace, h.release))
            }
            _ => None,
        }
    }

    /// What the operation may change among setter targets: `None` when it may change anything
    /// (a Helm release or an istioctl install renders many objects).
    pub fn touches(&self) -> Option<Vec<String>> {
        match self {
            Op::Restart { .. }
            | Op::RolloutRestart { .. }
            | Op::ApplyCrds { .. }
            | Op::AdoptCrds { .. }
            | Op::Probe { .. }
            | Op::SailAwaitRevision { .. } => Some(Vec::new()),
            Op::LabelNamespace { .. }
            | Op::SetTag { .. }
            | Op::SailTag { .. }
            | Op::PatchSelector { .. }
            | Op::LabelGateway { .. } => Some(self.setter_target().into_iter().collect()),
            _ => None,
        }
    }
}

/// Drops from a sequence the setters that repeat an identical earlier one whose target nothing
/// in between may have changed.
pub fn drop_repeated_setters(ops: Vec<Op>) -> Vec<Op> {
    let mut last: BTreeMap<String, Op> = BTreeMap::new();
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        if let Some(t) = op.setter_target() {
            if last.get(&t) == Some(&op) {
                continue;
            }
            if matches!(op, Op::HelmUpgrade(_)) {
                // A release renders many objects: anything recorded before may have changed.
                last.clear();
            }
            last.insert(t, op.clone());
        } else {
            match op.touches() {
                None => last.clear(),
                Some(ts) => {
                    for t in ts {
                        last.remove(&t);
                    }
                }
            }
        }
        out.push(op);
    }
    out
}
