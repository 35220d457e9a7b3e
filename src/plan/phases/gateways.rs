//! 30-gateways: a blue/green gateway gets a new release beside the old one. Before it exists,
//! the traffic Service and the ServiceAccount are handed over (so removing the old release
//! keeps them) and the Service is pinned to the old pods (so the new pods take no traffic
//! before the traffic phase). The new gateway keeps the old one's identity: its ServiceAccount
//! (mTLS principal) and `app` label. An in-place gateway's release moves where it is.

use serde_json::json;

use crate::plan::op::{LabelPatch, Op, Wait};
use crate::plan::state::{NextGateway, TrafficPlan, blue_green, traffic_plan};
use crate::plan::{Builder, HopCtx, Phase, seq};

/// A JSON merge patch from one selector to another: new keys set, stale keys removed.
pub fn selector_patch(
    from: &std::collections::BTreeMap<String, String>,
    to: &std::collections::BTreeMap<String, String>,
) -> LabelPatch {
    let mut m = LabelPatch::new();
    for k in from.keys() {
        if !to.contains_key(k) {
            m.insert(k.clone(), None);
        }
    }
    for (k, v) in to {
        if from.get(k) != Some(v) {
            m.insert(k.clone(), Some(v.clone()));
        }
    }
    m
}

impl Builder<'_> {
    pub(crate) fn gateway_dir(&self, dir: &str, gi: usize) -> String {
        format!(
            "{dir}/{}-{}",
            seq(gi + 1, self.c.gateways.len()),
            self.c.gateways[gi].gateway.name
        )
    }

    /// A selector patch step's operation, with its file and the file of its undo.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn selector_op(
        &mut self,
        gi: usize,
        dir: &str,
        file: &str,
        from: &std::collections::BTreeMap<String, String>,
        to: &std::collections::BTreeMap<String, String>,
        what: &str,
    ) -> Op {
        let g = &self.c.gateways[gi];
        let svc = g.service().map(|s| s.name.clone()).unwrap_or_default();
        let ns = g.gateway.namespace.clone();
        let path = format!("{}/{file}", self.gateway_dir(dir, gi));
        let patch = selector_patch(from, to);
        let op = Op::PatchSelector {
            service: svc.clone(),
            namespace: ns.clone(),
            file: path.clone(),
            patch: patch.clone(),
        };
        let shown: std::collections::BTreeMap<&String, serde_json::Value> = patch
            .iter()
            .map(|(k, v)| (k, v.as_ref().map_or(serde_json::Value::Null, |s| json!(s))))
            .collect();
        self.artifact(
            &path,
            "service-selector.patch.yaml.j2",
            format!("Service {ns}/{svc}: selector {what}"),
            &op,
            json!({"name": svc, "namespace": ns, "selector": shown}),
        );
        op
    }

    /// Rollout waits for the Gateway API gateways `which` selects: istiod rolls their
    /// Deployments when the istiod their label names changes.
    pub(crate) fn gateway_api_rollouts(
        &self,
        which: impl Fn(&crate::plan::state::GatewayApiNow) -> bool,
    ) -> Vec<Wait> {
        self.now
            .gateway_api
            .iter()
            .filter(|g| which(g))
            .map(|g| Wait::Rollout {
                kind: crate::inventory::WorkloadKind::Deployment,
                name: g.deployment.clone(),
                namespace: self.c.namespaces[g.namespace].namespace.name.clone(),
                timeout: "10m".into(),
            })
            .collect()
    }

    /// Gateway API gateways labelled with the old revision itself move to the new one: the new
    /// istiod takes the Gateway over and rolls its Deployment (same Service, same
    /// ServiceAccount). Those on a tag move with the tag; those without a label of their own
    /// move with their namespace.
    fn gateway_api(&mut self, h: &HopCtx) {
        if !h.canary() {
            return;
        }
        let from = h.hop.from_label().to_string();
        let to = h.hop.to_label().to_string();
        for i in 0..self.now.gateway_api.len() {
            let g = self.now.gateway_api[i].clone();
            if g.rev.as_deref() != Some(from.as_str()) || self.now.has_tag(&from) {
                continue;
            }
            let ns = self.c.namespaces[g.namespace].namespace.name.clone();
            let mut s = self.step(
                h,
                Phase::Gateways,
                &format!("gateway-api/{ns}/{}", g.name),
                format!("Move Gateway `{ns}/{}` to revision `{to}`", g.name),
                format!(
                    "the Gateway's istio.io/rev label names the istiod that deploys it: `{to}` takes it over and rolls its Deployment `{}` onto {} with a rolling update, behind the same Service (`{}`, same address) and ServiceAccount (same identity). Keep at least two replicas and a PodDisruptionBudget so the rollout never leaves it without ready pods",
                    g.deployment, h.hop.to, g.deployment
                ),
            );
            s.ops.push(Op::LabelGateway {
                name: g.name.clone(),
                namespace: ns.clone(),
                revision: Some(to.clone()),
            });
            s.undo.push(Op::LabelGateway {
                name: g.name.clone(),
                namespace: ns.clone(),
                revision: Some(from.clone()),
            });
            s.waits.push(Wait::Rollout {
                kind: crate::inventory::WorkloadKind::Deployment,
                name: g.deployment.clone(),
                namespace: ns,
                timeout: "10m".into(),
            });
            s.traffic = true;
            self.push_step(s);
            self.now.gateway_api[i].rev = Some(to.clone());
        }
    }

    pub(crate) fn gateways(&mut self, h: &HopCtx) {
        self.gateway_api(h);
        let hop = h.hop;
        let be = self.backend;
        for gi in 0..self.c.gateways.len() {
            let g = &self.c.gateways[gi];
            let gname = g.gateway.name.clone();
            let now = self.now.gateways[gi].clone();
            if !blue_green(g, hop) {
                let mut new = now.deploy.clone();
                if h.canary() || new.pod_revision.is_some() {
                    new.pod_revision = Some(hop.to_label().to_string());
                }
                let draft = be.upgrade_gateway(self, h, gi, &new);
                let mut s = self.step(
                    h,
                    Phase::Gateways,
                    &gname,
                    format!("Move gateway `{}` to {} in place", now.release, hop.to),
                    format!(
                        "the gateway's release moves to {} (revision `{}`): a rolling update replaces its pods, each new pod injected by the new istiod, behind the same Service",
                        hop.to,
                        hop.to_label()
                    ),
                );
                s.traffic = true;
                let s = draft.fill(s);
                self.push_step(s);
                self.now.gateways[gi].deploy = new;
                self.now.gateways[gi].version = hop.to.clone();
                continue;
            }

            if let Some(draft) = be.hand_over_gateway(self, h, gi) {
                let g = &self.c.gateways[gi];
                let s = self.step(
                    h,
                    Phase::Gateways,
                    &format!("{gname}/handover"),
                    format!("Hand gateway `{}`'s Service and identity over", now.release),
                    format!(
                        "the old release `{}` renders the traffic Service{} and the ServiceAccount `{}` the gateway's identity is named after; removing the release in cleanup would delete them, losing the external address and the identity that policies allow. They are marked to be kept, with no change to their spec",
                        now.release,
                        g.service().map_or(String::new(), |s| format!(" `{}`", s.name)),
                        g.service_account
                    ),
                );
                let s = draft.fill(s);
                self.push_step(s);
            }
            if let Some(draft) = be.gateway_identity(self, h, gi) {
                let g = &self.c.gateways[gi];
                let s = self.step(
                    h,
                    Phase::Gateways,
                    &format!("{gname}/identity"),
                    format!("Let ServiceAccount `{}` read its TLS secrets on its own", g.service_account),
                    "the new release runs its pods as the old gateway's ServiceAccount, so its identity (spiffe://.../sa/<name>) does not change; the chart's RBAC for it is tied to the old release, so a standalone Role grants the same".to_string(),
                );
                let s = draft.fill(s);
                self.push_step(s);
            }

            let new = be.new_gateway(self, h, gi);
            let g = &self.c.gateways[gi];
            let plan = if g.service().is_some() {
                traffic_plan(
                    g.traffic,
                    &now.selector,
                    now.deploy.pod_revision.as_deref(),
                    &new.pod_labels(),
                )
                .unwrap_or(TrafficPlan::JoinAtInstall)
            } else {
                TrafficPlan::Separate { pin: None }
            };
            if let TrafficPlan::Separate { pin: Some(pinned) } = &plan {
                let dir = h.phase_dir(Phase::Gateways);
                let rdir = h.rollback_phase_dir(Phase::Gateways);
                let op = self.selector_op(
                    gi,
                    &dir,
                    "3-pin.patch.yaml",
                    &now.selector,
                    pinned,
                    "pinned to the old pods",
                );
                let back = self.selector_op(
                    gi,
                    &rdir,
                    "3-pin.patch.yaml",
                    pinned,
                    &now.selector,
                    "as before (rollback)",
                );
                let g = &self.c.gateways[gi];
                let svc = g.service().map(|s| s.name.clone()).unwrap_or_default();
                let mut s = self.step(
                    h,
                    Phase::Gateways,
                    &format!("{gname}/pin"),
                    format!("Pin `{svc}` to the old gateway's pods"),
                    format!(
                        "the new gateway's pods will carry the same `app` and `istio` labels as the old ones; adding `istio.io/rev: {}` to the selector keeps them out of the Service until the traffic phase. The old pods already carry it, so nothing changes now",
                        pinned.get("istio.io/rev").cloned().unwrap_or_default()
                    ),
                );
                s.ops.push(op);
                s.undo.push(back);
                s.waits.push(Wait::Selector {
                    service: svc,
                    namespace: g.gateway.namespace.clone(),
                    key: "istio.io/rev".into(),
                    value: pinned.get("istio.io/rev").cloned().unwrap_or_default(),
                });
                self.push_step(s);
                self.now.gateways[gi].selector = pinned.clone();
            }

            let draft = be.install_gateway(self, h, gi, &new);
            let g = &self.c.gateways[gi];
            let join = plan == TrafficPlan::JoinAtInstall;
            let mut s = self.step(
                h,
                Phase::Gateways,
                &format!("{gname}/install"),
                format!("Install gateway `{}` beside `{}`", new.name, now.release),
                if join {
                    format!(
                        "the old gateway's pods carry nothing that tells them from the new ones, so the Service `{}` starts sending part of the traffic to each new pod as soon as it is ready (split by replica count); the new pods keep the old gateway's `app` label and ServiceAccount, so policies and monitors keep matching",
                        g.service().map(|s| s.name.as_str()).unwrap_or_default()
                    )
                } else {
                    format!(
                        "the new {} gateway starts with no traffic; its pods keep the old gateway's `app` and `istio` labels (so Gateway resources, NetworkPolicies and monitors select them) and its ServiceAccount `{}` (so its mTLS identity and the AuthorizationPolicies that allow it do not change)",
                        g.gateway.kind.name(),
                        g.service_account
                    )
                },
            );
            s.traffic = join;
            s.confirm.push(format!(
                "`{}` runs as many ready replicas as `{}` (`kubectl get deployment -n {}`) before traffic moves to it",
                new.name, now.deploy.name, new.namespace
            ));
            if join {
                s.confirm.push(
                    "the load test shows no errors while the new pods join the Service".to_string(),
                );
            }
            let s = draft.fill(s);
            self.push_step(s);
            self.now.gateways[gi].next = Some(NextGateway {
                deploy: new,
                traffic: plan,
            });
        }
    }
}
