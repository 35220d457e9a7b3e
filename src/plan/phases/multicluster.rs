//! A primary that serves remote clusters exposes each revision's istiod through its east-west
//! gateway (20-control-plane: the new revision's route, before any remote moves to it; 90-cleanup:
//! the old revision's route, once every remote has left it). The order across clusters that
//! makes "once every remote has left it" true is `plan::order`.

use serde_json::json;

use crate::inventory::GatewayKind;
use crate::plan::op::{Manifest, ObjRef, Op};
use crate::plan::{Builder, HopCtx, Phase, names};
use crate::version::Minor;

impl Builder<'_> {
    /// The route's manifest for `revision`, written to `path`; the operation that applies it.
    fn istiod_route(&mut self, h: &HopCtx, path: &str, revision: Option<&str>) -> Op {
        let ns = self.c.namespace.clone();
        let name = names::istiod_route(revision);
        let service = names::istiod(revision);
        let op = Op::Apply {
            file: path.to_string(),
            objects: vec![Manifest::IstiodRoute {
                name: name.clone(),
                namespace: ns.clone(),
                service: service.clone(),
            }],
        };
        // The east-west gateway's pods carry its `istio` label whatever their revision (the
        // blue/green gateway keeps it), so the Gateway selects old and new pods alike.
        let label = self
            .c
            .gateways
            .iter()
            .find(|g| g.gateway.kind == GatewayKind::Eastwest)
            .map_or_else(|| "eastwestgateway".to_string(), |g| g.istio_label.clone());
        let api = if h.hop.to.minor()
            >= (Minor {
                major: 1,
                minor: 22,
            }) {
            "networking.istio.io/v1"
        } else {
            "networking.istio.io/v1beta1"
        };
        let sni: Vec<String> = match revision {
            Some(_) => vec![
                format!("{service}.{ns}.svc"),
                format!("{service}.{ns}.svc.cluster.local"),
            ],
            None => vec!["*".to_string()],
        };
        self.artifact(
            path,
            "istiod-route.yaml.j2",
            format!(
                "Gateway {ns}/{} and VirtualService {ns}/{name}",
                names::ISTIOD_GATEWAY
            ),
            &op,
            json!({
                "api": api, "gateway": names::ISTIOD_GATEWAY, "namespace": ns, "name": name,
                "service": service, "revision": revision, "sni": sni,
                "selector": {"istio": label},
            }),
        );
        // The CRDs it is checked against are the hop target's (10-crds installed them).
        if let Some(a) = self.artifacts.last_mut() {
            a.hints
                .push(format!("meshplan-istio-version: {}", h.hop.to));
        }
        op
    }

    /// 20-control-plane: the new revision reachable from the remotes.
    pub(crate) fn expose_istiod(&mut self, h: &HopCtx) {
        if self.c.serves().is_empty() || !h.canary() {
            return;
        }
        let new = h.hop.to_revision.clone();
        let path = format!("{}/istiod-route.yaml", h.phase_dir(Phase::ControlPlane));
        let op = self.istiod_route(h, &path, new.as_deref());
        let mut s = self.step(
            h,
            Phase::ControlPlane,
            "expose-istiod",
            format!(
                "Expose istiod `{}` to the remote clusters {}",
                h.hop.to_label(),
                remotes(self.c.serves())
            ),
            format!(
                "the remotes reach this cluster's istiod through its east-west gateway, routed by the SNI name of each revision's Service; `{}` gets its route before any remote installs it, and the old revision's route stays until every remote has left it",
                h.hop.to_label()
            ),
        );
        s.ops.push(op);
        s.undo.push(Op::Delete {
            objects: vec![ObjRef::new(
                "virtualservices.networking.istio.io",
                &names::istiod_route(new.as_deref()),
                Some(&self.c.namespace),
            )],
        });
        s.confirm.push(format!(
            "from a remote: `istioctl proxy-status` lists no errors; `kubectl get virtualservice {} -n {}` exists",
            names::istiod_route(new.as_deref()),
            self.c.namespace
        ));
        self.push_step(s);
    }

    /// 90-cleanup: the old revision's route goes, just before the old istiod.
    pub(crate) fn unexpose_istiod(&mut self, h: &HopCtx) {
        if self.c.serves().is_empty() || !h.canary() {
            return;
        }
        let old = h.hop.from_revision.clone();
        let back = format!("{}/istiod-route.yaml", h.rollback_phase_dir(Phase::Cleanup));
        let reapply = self.istiod_route(h, &back, old.as_deref());
        let mut s = self.step(
            h,
            Phase::Cleanup,
            "unexpose-istiod",
            format!("Remove the route of istiod `{}`", h.hop.from_label()),
            format!(
                "the remote clusters {} finished this hop (the order across clusters puts their hop before this cleanup), so no remote proxy or webhook reaches `{}` any more",
                remotes(self.c.serves()),
                h.hop.from_label()
            ),
        );
        s.ops.push(Op::Delete {
            objects: vec![ObjRef::new(
                "virtualservices.networking.istio.io",
                &names::istiod_route(old.as_deref()),
                Some(&self.c.namespace),
            )],
        });
        s.undo.push(reapply);
        self.push_step(s);
    }
}

fn remotes(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
