//! 90-cleanup, only after every namespace and gateway has moved: the old gateways go (their
//! Service and ServiceAccount stay, standalone), nothing may still use the old revision, the
//! remaining tags and the default revision move, and the old control plane goes with its
//! webhooks.

use serde_json::json;

use crate::inventory::ServiceOwner;
use crate::plan::op::{Manifest, Op, Tool};
use crate::plan::state::GatewayNow;
use crate::plan::{Builder, HopCtx, Phase, seq};

impl Builder<'_> {
    pub(crate) fn cleanup(&mut self, h: &HopCtx) {
        if !h.canary() {
            return;
        }
        let hop = h.hop;
        let be = self.backend;
        let old = hop.from_label().to_string();
        let new = hop.to_label().to_string();

        // 1. Old gateways, then the Services meshplan now owns.
        for gi in 0..self.c.gateways.len() {
            let Some(next) = self.now.gateways[gi].next.clone() else {
                continue;
            };
            let now = self.now.gateways[gi].clone();
            let g = &self.c.gateways[gi];
            let gname = g.gateway.name.clone();
            let gns = g.gateway.namespace.clone();
            let draft = be.remove_gateway(self, h, gi);
            let mut s = self.step(
                h,
                Phase::Cleanup,
                &format!("{gname}/remove-old"),
                format!("Remove the old gateway `{}`", now.release),
                "traffic has moved to the new gateway; the old one only drains now. Its Service and ServiceAccount were handed over and stay".to_string(),
            );
            s.confirm.push(format!(
                "`kubectl get deployment {} -n {gns}` finds nothing; the Service's external address is unchanged",
                now.deploy.name
            ));
            let s = draft.fill(s);
            self.push_step(s);

            if let Some(spec) = crate::plan::state::service_spec(&self.c.gateways[gi]) {
                let path = format!(
                    "{}/{}-{}.service.yaml",
                    h.phase_dir(Phase::Cleanup),
                    seq(gi + 1, self.c.gateways.len()),
                    gname
                );
                let selector = now.selector.clone();
                let op = Op::Apply {
                    file: path.clone(),
                    objects: vec![Manifest::Service {
                        spec: spec.clone(),
                        selector: selector.clone(),
                    }],
                };
                self.artifact(
                    &path,
                    "service.yaml.j2",
                    format!("Service {gns}/{} (standalone from now on)", spec.name),
                    &op,
                    service_data(self.c, gi, &spec, &selector),
                );
                let mut s = self.step(
                    h,
                    Phase::Cleanup,
                    &format!("{gname}/service"),
                    format!("Record the Service `{}` as a standalone object", spec.name),
                    "the Service outlived the old gateway; its manifest (every field the inventory records, the selector already on the new pods) makes it an object of its own that later plans patch: set `service.owner: standalone` and `serviceAccount.owner: standalone` in the inventory".to_string(),
                );
                s.ops.push(op);
                s.undo_note = Some(
                    "nothing to undo: the manifest matches the Service as it runs".to_string(),
                );
                self.push_step(s);
            }
            self.now.gateways[gi] = GatewayNow {
                release: next.deploy.name.clone(),
                version: hop.to.clone(),
                deploy: next.deploy.clone(),
                selector: now.selector.clone(),
                service_owner: ServiceOwner::Standalone,
                sa_owner: ServiceOwner::Standalone,
                next: None,
            };
        }

        // 2. Nothing may still run on the old revision.
        let ns = self.c.namespace.clone();
        let mut s = self.step(
            h,
            Phase::Cleanup,
            "verify-drained",
            format!("Verify that nothing uses revision `{old}`"),
            format!(
                "removing istiod `{old}` while a proxy still uses it would cut that proxy off its control plane{}",
                if hop.minor_distance() >= 2 {
                    format!(
                        "; with this two-minor hop, no {} proxy may be left for the {} istiod",
                        hop.from.minor(),
                        hop.to.minor()
                    )
                } else {
                    String::new()
                }
            ),
        );
        let probe = |args: &[&str], expect: &str| Op::Probe {
            tool: if args[0] == "proxy-status" {
                Tool::Istioctl
            } else {
                Tool::Kubectl
            },
            args: args.iter().map(|a| (*a).to_string()).collect(),
            expect: expect.to_string(),
        };
        if self.c.remote_of().is_some() {
            // No istiod runs here to ask: the injector labels every pod with its revision.
            s.ops.push(probe(
                &["get", "pods", "-A", "-l", &format!("istio.io/rev={old}")],
                &format!("no pod was injected by `{old}` (run `istioctl proxy-status --revision {old}` against the primary to see its proxies too)"),
            ));
        } else {
            s.ops.push(probe(
                &["proxy-status", "--revision", &old, "-i", &ns],
                &format!("no proxy is connected to istiod `{old}` (a pod records its revision in an annotation, not a label, so only the control plane can tell)"),
            ));
        }
        s.ops.push(probe(
            &["get", "namespaces", "-l", &format!("istio.io/rev={old}")],
            &format!("no namespace is labelled with revision `{old}`"),
        ));
        if hop.from_revision.is_none() {
            s.ops.push(probe(
                &["get", "namespaces", "-l", "istio-injection=enabled"],
                "no namespace still asks the removed default control plane for sidecars",
            ));
        }
        s.ops.push(probe(
            &[
                "get",
                "mutatingwebhookconfigurations",
                "-l",
                "istio.io/tag",
                "-L",
                "istio.io/tag,istio.io/rev",
            ],
            &format!("no revision tag points at `{old}` except those the next step moves"),
        ));
        s.confirm.push(format!(
            "every command lists nothing on `{old}`; otherwise restart what is left before going on"
        ));
        s.undo_note = Some("nothing to undo: read-only".to_string());
        self.push_step(s);

        // 3. The default revision and the tags no namespace moved: before the old istiod goes,
        //    so that validation and tag-based injection never point at a deleted Service.
        let left: Vec<String> = self
            .now
            .tags
            .iter()
            .filter(|t| t.revision == old)
            .map(|t| t.name.clone())
            .collect();
        for t in left {
            self.move_tag_step(
                h,
                Phase::Cleanup,
                &format!("tag-{t}"),
                &t,
                format!("no namespace of the inventory uses the tag, but it must not point at `{old}` once that istiod is gone; anything that uses it gets `{new}` sidecars on its next restart"),
            );
        }
        if let Some(draft) = be.default_revision(self, h) {
            let s = self.step(
                h,
                Phase::Cleanup,
                "default-revision",
                format!("Make `{new}` the default revision"),
                "the validating webhook istiod-default-validator must point at the new istiod before the old one is removed, or it would point at a deleted Service".to_string(),
            );
            let s = draft.fill(s);
            self.push_step(s);
        }

        // 4. The old control plane, and the webhooks it may leave behind; first, for a primary
        //    that serves remote clusters, the route they reached it by.
        self.unexpose_istiod(h);
        let draft = be.remove_control_plane(self, h);
        // From 1.28 the tag handover's keep mark is on istiod's Service too.
        let kept_service = draft.ops.iter().any(|o| {
            matches!(o, crate::plan::op::Op::Delete { objects } if objects.iter().any(|r| r.kind == "service"))
        });
        let s = self.step(
            h,
            Phase::Cleanup,
            "remove-old-istiod",
            format!("Remove istiod revision `{old}`"),
            format!(
                "every proxy and gateway has moved and no tag or namespace points at it; its webhooks{} are deleted first (uninstalling can leave them behind: istio/istio#35590, #36905), then the control plane",
                if kept_service {
                    ", and its Service that the tag handover marked kept,"
                } else {
                    ""
                }
            ),
        );
        let mut s = draft.fill(s);
        s.restore_after = true;
        for g in &self.c.gateways {
            if g.gateway.kind == crate::inventory::GatewayKind::Ingress && g.service().is_some() {
                s.confirm.push(format!(
                    "the load test against `{}` has finished, and `vegeta report load-test-{}.bin` shows a success ratio of 100%",
                    g.gateway.name, g.gateway.name
                ));
            }
        }
        s.confirm.push(if self.c.remote_of().is_some() {
            format!("`kubectl get mutatingwebhookconfigurations,validatingwebhookconfigurations` names no `{old}`, and `kubectl get service istiod-{old} -n {ns}` finds nothing")
        } else {
            format!(
                "`kubectl get pods -n {ns} -l app=istiod -L istio.io/rev` lists only `{new}` pods, and no webhook names `{old}`"
            )
        });
        self.push_step(s);
        self.now.istiod_release = crate::plan::names::istiod(hop.to_revision.as_deref());
    }
}

/// What `service.yaml.j2` renders for a gateway's traffic Service as a standalone object: every
/// spec field the inventory records, with `selector`.
pub(crate) fn service_data(
    c: &crate::validate::ClusterSpec,
    gi: usize,
    spec: &crate::plan::op::ServiceSpec,
    selector: &std::collections::BTreeMap<String, String>,
) -> serde_json::Value {
    let mut spec_json: serde_json::Map<String, serde_json::Value> = spec
        .extra
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    spec_json.insert("type".into(), json!(spec.kind));
    spec_json.insert("selector".into(), json!(selector));
    spec_json.insert(
        "ports".into(),
        serde_json::Value::Array(
            spec.ports
                .iter()
                .map(|p| {
                    let mut m = serde_json::Map::new();
                    m.insert("name".into(), json!(p.name));
                    if let Some(np) = p.node_port {
                        m.insert("nodePort".into(), json!(np));
                    }
                    m.insert("port".into(), json!(p.port));
                    m.insert(
                        "protocol".into(),
                        json!(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    );
                    m.insert("targetPort".into(), json!(p.target_port.unwrap_or(p.port)));
                    serde_json::Value::Object(m)
                })
                .collect(),
        ),
    );
    // The label the gateway chart gives an east-west gateway's Service, by which istiod finds
    // the network's gateway address.
    let labels: std::collections::BTreeMap<&str, &str> = c.gateways[gi]
        .gateway
        .values
        .get("networkGateway")
        .and_then(serde_json::Value::as_str)
        .map(|n| ("topology.istio.io/network", n))
        .into_iter()
        .collect();
    json!({"name": spec.name, "namespace": spec.namespace, "labels": labels, "annotations": spec.annotations, "spec": spec_json})
}
