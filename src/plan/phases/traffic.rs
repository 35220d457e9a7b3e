//! 40-traffic: the traffic Service of each blue/green gateway moves from the old pods to the
//! new ones by its selector alone, so its address, ports and node ports never change. Gradual
//! (the default): first old and new pods together, a soak, then the new pods only. Instant: one
//! selector change.

use std::collections::BTreeMap;

use crate::inventory::TrafficMode;
use crate::plan::op::{REV_LABEL, Wait};
use crate::plan::state::{TrafficPlan, shared_selector};
use crate::plan::{Builder, HopCtx, Phase};

impl Builder<'_> {
    pub(crate) fn traffic(&mut self, h: &HopCtx) {
        if !h.canary() {
            return;
        }
        for gi in 0..self.c.gateways.len() {
            let Some(next) = self.now.gateways[gi].next.clone() else {
                continue;
            };
            let g = &self.c.gateways[gi];
            let Some(svc) = g.service() else { continue };
            let svc = svc.name.clone();
            let ns = g.gateway.namespace.clone();
            let gname = g.gateway.name.clone();
            let mode = g.traffic;
            let shared = shared_selector(g);
            let new_rev = next.deploy.pod_revision.clone().unwrap_or_default();
            let mut narrowed: BTreeMap<String, String> = shared.clone();
            narrowed.insert(REV_LABEL.to_string(), new_rev.clone());
            let dir = h.phase_dir(Phase::Traffic);
            let rdir = h.rollback_phase_dir(Phase::Traffic);

            let separate = matches!(next.traffic, TrafficPlan::Separate { .. });
            if separate && mode == TrafficMode::Gradual {
                let before = self.now.gateways[gi].selector.clone();
                let op = self.selector_op(
                    gi,
                    &dir,
                    "1-widen.patch.yaml",
                    &before,
                    &shared,
                    "old and new pods",
                );
                let back = self.selector_op(
                    gi,
                    &rdir,
                    "1-widen.patch.yaml",
                    &shared,
                    &before,
                    "old pods only (rollback)",
                );
                let mut s = self.step(
                    h,
                    Phase::Traffic,
                    &format!("{gname}/widen"),
                    format!("Send part of `{svc}`'s traffic to the new gateway"),
                    "the selector keeps only the labels old and new pods share, so both sets serve: each new connection goes to one of them (split by replica count), and the load balancer registers the new pods while the old ones still serve (which an instant switch cannot give with externalTrafficPolicy: Local or pod-IP targets). Its address, ports and node ports do not change".to_string(),
                );
                s.traffic = true;
                s.ops.push(op);
                s.undo.push(back);
                s.waits.push(Wait::Selector {
                    service: svc.clone(),
                    namespace: ns.clone(),
                    key: "app".into(),
                    value: shared.get("app").cloned().unwrap_or_default(),
                });
                s.confirm.push(format!(
                    "soak: `kubectl get endpoints {svc} -n {ns}` lists old and new pods, and the load test shows no errors for as long as your change policy asks (at least a few minutes)"
                ));
                self.push_step(s);
                self.now.gateways[gi].selector = shared.clone();
            }

            let before = self.now.gateways[gi].selector.clone();
            let op = self.selector_op(
                gi,
                &dir,
                "2-switch.patch.yaml",
                &before,
                &narrowed,
                "new pods only",
            );
            let back = self.selector_op(
                gi,
                &rdir,
                "2-switch.patch.yaml",
                &narrowed,
                &before,
                "as before the switch (rollback)",
            );
            let mut s = self.step(
                h,
                Phase::Traffic,
                &format!("{gname}/switch"),
                format!("Move `{svc}` to the new gateway `{}`", next.deploy.name),
                format!(
                    "only the selector of the existing Service changes (`istio.io/rev: {new_rev}`), so its external address and node ports stay; new connections go to the new pods only, and open connections to the old pods drain while those pods keep running until cleanup"
                ),
            );
            s.traffic = true;
            s.ops.push(op);
            s.undo.push(back);
            s.waits.push(Wait::Selector {
                service: svc.clone(),
                namespace: ns.clone(),
                key: REV_LABEL.into(),
                value: new_rev,
            });
            s.confirm.push(format!(
                "`kubectl get endpoints {svc} -n {ns}` lists only the new pods, the Service's external address is unchanged, and the load test shows no errors"
            ));
            self.push_step(s);
            self.now.gateways[gi].selector = narrowed;
        }
    }
}
