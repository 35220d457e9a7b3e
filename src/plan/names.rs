//! Names Istio's charts give the objects of a revision, as their templates build them. The plan
//! and the model both use these, so a rename in a chart is one change here.

/// `istiod` or `istiod-<revision>`: the control plane's Deployment and Service.
pub fn istiod(revision: Option<&str>) -> String {
    match revision {
        Some(r) => format!("istiod-{r}"),
        None => "istiod".to_string(),
    }
}

/// The sidecar injector webhook of a revision
/// (`istio-control/istio-discovery/templates/mutatingwebhook.yaml`).
pub fn injector_webhook(revision: Option<&str>, namespace: &str) -> String {
    let base = match revision {
        Some(r) => format!("istio-sidecar-injector-{r}"),
        None => "istio-sidecar-injector".to_string(),
    };
    if namespace == "istio-system" {
        base
    } else {
        format!("{base}-{namespace}")
    }
}

/// The validating webhook of a revision
/// (`istio-control/istio-discovery/templates/validatingwebhookconfiguration.yaml`).
pub fn validator_webhook(revision: Option<&str>, namespace: &str) -> String {
    match revision {
        Some(r) => format!("istio-validator-{r}-{namespace}"),
        None => format!("istio-validator-{namespace}"),
    }
}

/// A revision tag's webhook (`revision-tags.yaml`, `revision-tags-mwc.yaml`).
pub fn tag_webhook(tag: &str, namespace: &str) -> String {
    if namespace == "istio-system" {
        format!("istio-revision-tag-{tag}")
    } else {
        format!("istio-revision-tag-{tag}-{namespace}")
    }
}

/// The base chart's validating webhook for the default revision.
pub const DEFAULT_VALIDATOR: &str = "istiod-default-validator";

/// meshplan's standalone Role and RoleBinding that let a gateway's ServiceAccount read TLS
/// secrets (what the gateway chart's own RBAC grants).
pub fn secrets_rbac(service_account: &str) -> String {
    format!("{service_account}-sds")
}

/// The istio-cni node agent's DaemonSet (every version of the `cni` chart).
pub const CNI_DAEMONSET: &str = "istio-cni-node";

/// The ztunnel node proxy's DaemonSet as the 1.24 chart names it (from 1.25: `resourceName`,
/// or else the release's name).
pub const ZTUNNEL_DAEMONSET: &str = "ztunnel";

/// The VirtualService that routes a revision's istiod through the east-west gateway to remote
/// clusters: `istiod-vs-<revision>` (samples/multicluster/expose-istiod-rev.yaml.tmpl), or
/// `istiod-vs` for the default revision (expose-istiod.yaml).
pub fn istiod_route(revision: Option<&str>) -> String {
    match revision {
        Some(r) => format!("istiod-vs-{r}"),
        None => "istiod-vs".to_string(),
    }
}

/// The Gateway on the east-west gateway that every revision's route is bound to.
pub const ISTIOD_GATEWAY: &str = "istiod-gateway";
