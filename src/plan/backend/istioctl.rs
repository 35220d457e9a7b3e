//! istioctl (`istioctl install -f <IstioOperator>`) and the in-cluster operator (an
//! IstioOperator resource that `istioctl operator init` reconciles): one IstioOperator for the
//! control plane of each revision, one per gateway.

use serde_json::{Map, Value, json};

use super::{Backend, Draft};
use crate::inventory::{GatewayKind, ServiceOwner, ServiceType};
use crate::plan::op::{
    GatewayDeploy, GatewayServiceRender, IopContent, ObjRef, Op, ServiceSpec, Wait,
};
use crate::plan::{Builder, HopCtx, Phase, names, seq};
use crate::validate::{ClusterSpec, GatewaySpec};
use crate::version::IstioVersion;

pub struct Istioctl {
    /// The in-cluster operator reconciles the IstioOperator (`kubectl apply`), rather than
    /// `istioctl install`.
    pub operator: bool,
}

/// The labels istioctl and the operator put on what they install, by which they prune it.
pub const PRUNE_LABELS: [&str; 6] = [
    "istio.io/rev",
    "operator.istio.io/component",
    "operator.istio.io/managed",
    "operator.istio.io/version",
    "install.operator.istio.io/owning-resource",
    "install.operator.istio.io/owning-resource-namespace",
];

fn iop_name(base: &str, revision: Option<&str>) -> String {
    match revision {
        Some(r) => format!("{base}-{r}"),
        None => base.to_string(),
    }
}

/// An IstioOperator for the control plane of `version` and `revision`.
fn istiod_operator(
    c: &ClusterSpec,
    version: &IstioVersion,
    revision: Option<&str>,
    compatibility: Option<&str>,
) -> Value {
    let mut values = crate::values::carried_istiod(&c.values, version.minor());
    values.remove("revisionTags");
    super::helm::multicluster_values(c, version, &mut values);
    let mesh_config = values.remove("meshConfig");
    let global = values.entry("global").or_insert_with(|| json!({}));
    if let Value::Object(g) = global {
        g.insert("istioNamespace".into(), json!(c.namespace));
        if let Some(v) = &c.variant {
            g.insert("variant".into(), json!(v));
        }
    }
    let mut spec = Map::new();
    spec.insert("profile".into(), json!("minimal"));
    if let Some(r) = revision {
        spec.insert("revision".into(), json!(r));
    }
    spec.insert("hub".into(), json!(c.hub));
    spec.insert("tag".into(), json!(format!("{version}{}", c.tag_suffix)));
    if let Some(cv) = compatibility {
        spec.insert("compatibilityVersion".into(), json!(cv));
    }
    if let Some(m) = mesh_config {
        spec.insert("meshConfig".into(), m);
    }
    spec.insert(
        "components".into(),
        json!({
            "ingressGateways": [{"name": "istio-ingressgateway", "enabled": false}],
            "egressGateways": [{"name": "istio-egressgateway", "enabled": false}],
        }),
    );
    spec.insert("values".into(), Value::Object(values));
    json!({
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "metadata": {"name": iop_name("istiod", revision), "namespace": c.namespace},
        "spec": spec,
    })
}

fn service_ports(ports: &[crate::inventory::ServicePort], node_ports: bool) -> Value {
    Value::Array(
        ports
            .iter()
            .map(|p| {
                let mut m = Map::new();
                m.insert("name".into(), json!(p.name));
                if node_ports && let Some(np) = p.node_port {
                    m.insert("nodePort".into(), json!(np));
                }
                m.insert("port".into(), json!(p.port));
                m.insert(
                    "protocol".into(),
                    json!(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                );
                m.insert("targetPort".into(), json!(p.target_port.unwrap_or(p.port)));
                Value::Object(m)
            })
            .collect(),
    )
}

/// An IstioOperator with one gateway component that renders `d`. The gateway's carried values
/// are the component's Kubernetes settings (`k8s`); what meshplan decides (labels, Service,
/// ServiceAccount) takes precedence.
fn gateway_operator(
    c: &ClusterSpec,
    g: &GatewaySpec,
    d: &GatewayDeploy,
    version: &IstioVersion,
) -> Value {
    let mut component = Map::new();
    component.insert("name".into(), json!(d.name));
    component.insert("namespace".into(), json!(d.namespace));
    component.insert("enabled".into(), json!(true));
    let mut label = Map::new();
    label.insert("app".into(), json!(d.app));
    label.insert("istio".into(), json!(d.istio));
    for (k, v) in &d.extra_labels {
        label.insert(k.clone(), json!(v));
    }
    component.insert("label".into(), Value::Object(label));
    let mut k8s: Map<String, Value> = g.gateway.values.clone().into_iter().collect();
    k8s.remove("service");
    k8s.remove("serviceAnnotations");
    let (kind, ports, annotations, node_ports) = match &d.service {
        Some(GatewayServiceRender { spec, .. }) => {
            (spec.kind, &spec.ports, spec.annotations.clone(), true)
        }
        None => (
            ServiceType::ClusterIP,
            &g.service().map(|s| s.ports.clone()).unwrap_or_default(),
            Default::default(),
            false,
        ),
    };
    let mut service = Map::new();
    service.insert("type".into(), json!(kind));
    if !ports.is_empty() {
        service.insert("ports".into(), service_ports(ports, node_ports));
    }
    k8s.insert("service".into(), Value::Object(service));
    if !annotations.is_empty() {
        k8s.insert("serviceAnnotations".into(), json!(annotations));
    }
    let own_sa = format!("{}-service-account", d.name);
    if d.service_account != own_sa {
        let overlay = json!({
            "kind": "Deployment",
            "name": d.name,
            "patches": [{"path": "spec.template.spec.serviceAccountName", "value": d.service_account}],
        });
        let overlays = k8s.entry("overlays").or_insert_with(|| json!([]));
        if let Value::Array(a) = overlays {
            a.push(overlay);
        }
    }
    component.insert("k8s".into(), Value::Object(k8s));
    let list = if g.gateway.kind == GatewayKind::Egress {
        "egressGateways"
    } else {
        "ingressGateways"
    };
    let mut spec = Map::new();
    spec.insert("profile".into(), json!("empty"));
    if let Some(r) = &d.pod_revision
        && r != crate::validate::DEFAULT_REVISION
    {
        spec.insert("revision".into(), json!(r));
    }
    spec.insert("hub".into(), json!(c.hub));
    spec.insert("tag".into(), json!(format!("{version}{}", c.tag_suffix)));
    spec.insert(
        "components".into(),
        json!({ list: [Value::Object(component)] }),
    );
    json!({
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "metadata": {"name": d.name, "namespace": c.namespace},
        "spec": spec,
    })
}

/// The objects istioctl's gateway chart names after a component, except the ones a gateway
/// keeps: its traffic Service and, when the pods still run as it, the ServiceAccount and the
/// Role that lets it read secrets.
fn component_objects(name: &str, ns: &str, keep: &[String]) -> Vec<ObjRef> {
    let mut v = Vec::new();
    for (kind, n) in [
        ("deployment", name.to_string()),
        ("horizontalpodautoscaler", name.to_string()),
        ("poddisruptionbudget", name.to_string()),
        ("service", name.to_string()),
        ("serviceaccount", format!("{name}-service-account")),
        ("role", format!("{name}-sds")),
        ("rolebinding", format!("{name}-sds")),
    ] {
        if !keep.iter().any(|k| *k == format!("{kind}/{n}")) {
            v.push(ObjRef::new(kind, &n, Some(ns)));
        }
    }
    v
}

impl Istioctl {
    fn install_op(
        &self,
        b: &Builder,
        file: &str,
        version: &IstioVersion,
        name: &str,
        content: IopContent,
    ) -> Op {
        Op::IstioctlInstall {
            file: file.to_string(),
            version: version.clone(),
            operator: self.operator,
            name: name.to_string(),
            namespace: b.c.namespace.clone(),
            content,
        }
    }

    fn gateway_dir(b: &Builder, dir: &str, gi: usize) -> String {
        format!(
            "{dir}/{}-{}",
            seq(gi + 1, b.c.gateways.len()),
            b.c.gateways[gi].gateway.name
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn write_gateway(
        &self,
        b: &mut Builder,
        gi: usize,
        path: &str,
        d: &GatewayDeploy,
        version: &IstioVersion,
        note: &str,
    ) -> Op {
        let op = self.install_op(
            b,
            path,
            version,
            &d.name,
            IopContent::Gateway(Box::new(d.clone())),
        );
        let iop = gateway_operator(b.c, &b.c.gateways[gi], d, version);
        b.artifact(
            path,
            "gateway.iop.yaml.j2",
            format!(
                "IstioOperator {}/{} (gateway {} in {}, Istio {version}){note}",
                b.c.namespace, d.name, d.name, d.namespace
            ),
            &op,
            json!({"operator": iop}),
        );
        op
    }

    fn write_istiod(
        &self,
        b: &mut Builder,
        path: &str,
        version: &IstioVersion,
        revision: Option<&str>,
        compatibility: Option<&str>,
        note: &str,
    ) -> Op {
        let name = iop_name("istiod", revision);
        let op = self.install_op(
            b,
            path,
            version,
            &name,
            IopContent::Istiod {
                revision: revision.map(str::to_string),
            },
        );
        b.artifact(
            path,
            "istiod.iop.yaml.j2",
            format!(
                "IstioOperator {}/{name} (Istio {version}, revision {}){note}",
                b.c.namespace,
                revision.unwrap_or("default")
            ),
            &op,
            json!({"operator": istiod_operator(b.c, version, revision, compatibility)}),
        );
        op
    }

    fn operator_init(&self, b: &Builder, version: &IstioVersion, revision: &str) -> Op {
        Op::OperatorInit {
            revision: revision.to_string(),
            hub: b.c.hub.clone(),
            tag: b.image_tag(version),
            version: version.clone(),
        }
    }
}

impl Backend for Istioctl {
    fn control_plane(&self, b: &mut Builder, h: &HopCtx) -> Draft {
        let hop = h.hop;
        let ns = b.c.namespace.clone();
        let path = format!("{}/istiod.iop.yaml", h.phase_dir(Phase::ControlPlane));
        let mut d = Draft::default();
        let rev = if h.canary() {
            hop.to_revision.clone()
        } else {
            b.now.revision.clone()
        };
        let name = iop_name("istiod", rev.as_deref());
        if self.operator {
            d.ops.push(self.operator_init(b, &hop.to, hop.to_label()));
        }
        let compat = super::helm::compatibility(b, h);
        let op = self.write_istiod(b, &path, &hop.to, rev.as_deref(), compat.as_deref(), "");
        d.ops.push(op);
        if self.operator {
            d.waits.push(Wait::OperatorHealthy {
                name: name.clone(),
                namespace: ns.clone(),
            });
        }
        d.waits.push(Wait::Rollout {
            kind: crate::inventory::WorkloadKind::Deployment,
            name: names::istiod(rev.as_deref()),
            namespace: ns.clone(),
            timeout: "5m".into(),
        });
        if h.canary() {
            let r = hop.to_label().to_string();
            if self.operator {
                d.undo.push(Op::Delete {
                    objects: vec![ObjRef::new("istiooperator", &name, Some(&ns))],
                });
                d.undo.push(Op::OperatorRemove {
                    revision: r,
                    version: hop.to.clone(),
                });
            } else {
                d.undo.push(Op::IstioctlUninstall {
                    revision: r,
                    version: hop.to.clone(),
                });
            }
        } else {
            let back_path = format!(
                "{}/istiod.iop.yaml",
                h.rollback_phase_dir(Phase::ControlPlane)
            );
            if self.operator {
                // The operator itself goes back first, with the old istioctl.
                d.undo
                    .push(self.operator_init(b, &hop.from, hop.from_label()));
            }
            let back =
                self.write_istiod(b, &back_path, &hop.from, rev.as_deref(), None, ": rollback");
            d.undo.push(back);
            d.undo_note = Some(format!(
                "the control plane goes back in place: proxies restarted onto {} stay ahead of it until the rollback restarts them too",
                hop.to
            ));
        }
        d
    }

    fn hand_over_gateway(&self, b: &mut Builder, h: &HopCtx, gi: usize) -> Option<Draft> {
        let now = b.now.gateways[gi].clone();
        let g = &b.c.gateways[gi];
        let ns = g.gateway.namespace.clone();
        let mut objects = Vec::new();
        if now.service_owner == ServiceOwner::Release
            && let Some(s) = g.service()
        {
            objects.push(ObjRef::new("service", &s.name, Some(&ns)));
        }
        if now.sa_owner == ServiceOwner::Release {
            objects.push(ObjRef::new("serviceaccount", &g.service_account, Some(&ns)));
            let role = format!("{}-sds", now.release);
            objects.push(ObjRef::new("role", &role, Some(&ns)));
            objects.push(ObjRef::new("rolebinding", &role, Some(&ns)));
        }
        if objects.is_empty() {
            return None;
        }
        let _ = h;
        let what = objects
            .iter()
            .map(|o| format!("{}/{}", o.kind, o.name))
            .collect::<Vec<_>>()
            .join(", ");
        Some(Draft {
            ops: vec![Op::RemoveLabels {
                objects,
                labels: PRUNE_LABELS.iter().map(|l| (*l).to_string()).collect(),
            }],
            confirm: vec![format!(
                "`kubectl get {what} -n {ns} --show-labels` shows no istio.io/rev or operator.istio.io labels: removing the old gateway or revision no longer prunes them"
            )],
            undo_note: Some(
                "nothing to undo: the labels only mark what istioctl prunes with the old revision"
                    .to_string(),
            ),
            ..Draft::default()
        })
    }

    fn new_gateway(&self, b: &Builder, h: &HopCtx, gi: usize) -> GatewayDeploy {
        let g = &b.c.gateways[gi];
        let now = &b.now.gateways[gi];
        let name = format!("{}-{}", g.gateway.name, h.hop.to_label());
        GatewayDeploy {
            name: name.clone(),
            namespace: g.gateway.namespace.clone(),
            pod_revision: Some(h.hop.to_label().to_string()),
            app: now.deploy.app.clone(),
            istio: now.deploy.istio.clone(),
            extra_labels: Default::default(),
            service_account: g.service_account.clone(),
            creates_service_account: false,
            keep_service_account: false,
            rbac: false,
            // istioctl's gateway chart always renders a Service: a ClusterIP one of its own.
            service: Some(GatewayServiceRender {
                spec: ServiceSpec {
                    name,
                    namespace: g.gateway.namespace.clone(),
                    kind: ServiceType::ClusterIP,
                    ports: g.service().map(|s| s.ports.clone()).unwrap_or_default(),
                    annotations: Default::default(),
                    extra: Default::default(),
                },
                keep: false,
            }),
        }
    }

    fn install_gateway(
        &self,
        b: &mut Builder,
        h: &HopCtx,
        gi: usize,
        new: &GatewayDeploy,
    ) -> Draft {
        let path = format!(
            "{}/4-gateway.iop.yaml",
            Self::gateway_dir(b, &h.phase_dir(Phase::Gateways), gi)
        );
        let op = self.write_gateway(b, gi, &path, new, &h.hop.to, "");
        let mut undo = vec![Op::Delete {
            objects: component_objects(&new.name, &new.namespace, &[]),
        }];
        if self.operator {
            undo.insert(
                0,
                Op::Delete {
                    objects: vec![ObjRef::new(
                        "istiooperator",
                        &new.name,
                        Some(&b.c.namespace),
                    )],
                },
            );
        }
        Draft {
            ops: vec![op],
            undo,
            waits: vec![Wait::Rollout {
                kind: crate::inventory::WorkloadKind::Deployment,
                name: new.name.clone(),
                namespace: new.namespace.clone(),
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
        let path = format!(
            "{}/gateway.iop.yaml",
            Self::gateway_dir(b, &h.phase_dir(Phase::Gateways), gi)
        );
        let op = self.write_gateway(b, gi, &path, new, &h.hop.to, "");
        let back_path = format!(
            "{}/gateway.iop.yaml",
            Self::gateway_dir(b, &h.rollback_phase_dir(Phase::Gateways), gi)
        );
        let back = self.write_gateway(b, gi, &back_path, &now.deploy, &now.version, ": rollback");
        Draft {
            ops: vec![op],
            undo: vec![back],
            waits: vec![Wait::Rollout {
                kind: crate::inventory::WorkloadKind::Deployment,
                name: new.name.clone(),
                namespace: new.namespace.clone(),
                timeout: "5m".into(),
            }],
            ..Draft::default()
        }
    }

    fn remove_gateway(&self, b: &mut Builder, h: &HopCtx, gi: usize) -> Draft {
        let now = b.now.gateways[gi].clone();
        let g = &b.c.gateways[gi];
        let ns = now.deploy.namespace.clone();
        let mut keep = Vec::new();
        if let Some(s) = g.service() {
            keep.push(format!("service/{}", s.name));
        }
        keep.push(format!("serviceaccount/{}", g.service_account));
        keep.push(format!("role/{}-sds", now.release));
        keep.push(format!("rolebinding/{}-sds", now.release));
        let mut ops = Vec::new();
        if self.operator {
            ops.push(Op::Delete {
                objects: vec![ObjRef::new(
                    "istiooperator",
                    &now.release,
                    Some(&b.c.namespace),
                )],
            });
        }
        ops.push(Op::Delete {
            objects: component_objects(&now.deploy.name, &ns, &keep),
        });
        // A rollback reinstalls the old gateway as it ran. When its own Service is the traffic
        // Service, the component renders that Service as it is (type, ports, node ports,
        // annotations); its selector then widens to the old and the new pods until the traffic
        // step's rollback moves it back.
        let traffic_is_own = g.service().is_some_and(|s| s.name == now.deploy.name);
        let back_deploy = GatewayDeploy {
            creates_service_account: false,
            keep_service_account: false,
            rbac: false,
            service: if traffic_is_own {
                crate::plan::state::service_spec(g)
                    .map(|spec| GatewayServiceRender { spec, keep: false })
            } else {
                Some(GatewayServiceRender {
                    spec: ServiceSpec {
                        name: now.deploy.name.clone(),
                        namespace: ns.clone(),
                        kind: ServiceType::ClusterIP,
                        ports: g.service().map(|s| s.ports.clone()).unwrap_or_default(),
                        annotations: Default::default(),
                        extra: Default::default(),
                    },
                    keep: false,
                })
            },
            ..now.deploy.clone()
        };
        let path = format!(
            "{}/gateway.reinstall.iop.yaml",
            Self::gateway_dir(b, &h.rollback_phase_dir(Phase::Cleanup), gi)
        );
        let back = self.write_gateway(b, gi, &path, &back_deploy, &now.version, ": rollback only");
        let mut undo = vec![back];
        if traffic_is_own {
            // istioctl writes its own selector (the old pods' labels) into the Service: put
            // back the one it had, on the new pods, until the traffic step's rollback moves it.
            let rendered = crate::model::state::selector_of(&back_deploy);
            let dir = h.rollback_phase_dir(Phase::Cleanup);
            undo.push(b.selector_op(
                gi,
                &dir,
                "selector.patch.yaml",
                &rendered,
                &now.selector,
                "as before the old gateway's reinstall (rollback)",
            ));
        }
        Draft {
            ops,
            undo,
            ..Draft::default()
        }
    }

    fn set_tag(&self, _b: &Builder, h: &HopCtx, tag: &str, revision: &str) -> Op {
        Op::SetTag {
            tag: tag.to_string(),
            revision: revision.to_string(),
            version: h.hop.to.clone(),
            helm: None,
        }
    }

    fn remove_control_plane(&self, b: &mut Builder, h: &HopCtx) -> Draft {
        let ns = b.c.namespace.clone();
        let old = h.hop.from_revision.clone();
        let old_label = h.hop.from_label().to_string();
        let webhooks = vec![
            ObjRef::new(
                "mutatingwebhookconfiguration",
                &names::injector_webhook(old.as_deref(), &ns),
                None,
            ),
            ObjRef::new(
                "validatingwebhookconfiguration",
                &names::validator_webhook(old.as_deref(), &ns),
                None,
            ),
        ];
        b.webhooks
            .extend(webhooks.iter().map(|o| format!("{}/{}", o.kind, o.name)));
        let mut ops = vec![Op::Delete { objects: webhooks }];
        if self.operator {
            ops.push(Op::Delete {
                objects: vec![ObjRef::new(
                    "istiooperator",
                    &iop_name("istiod", old.as_deref()),
                    Some(&ns),
                )],
            });
            ops.push(Op::OperatorRemove {
                revision: old_label.clone(),
                version: h.hop.from.clone(),
            });
        } else {
            ops.push(Op::IstioctlUninstall {
                revision: old_label.clone(),
                version: h.hop.from.clone(),
            });
        }
        let path = format!(
            "{}/istiod.reinstall.iop.yaml",
            h.rollback_phase_dir(Phase::Cleanup)
        );
        let mut undo = Vec::new();
        if self.operator {
            undo.push(self.operator_init(b, &h.hop.from, &old_label));
        }
        let back = self.write_istiod(
            b,
            &path,
            &h.hop.from,
            old.as_deref(),
            None,
            ": rollback only",
        );
        undo.push(back);
        Draft {
            ops,
            undo,
            ..Draft::default()
        }
    }
}
