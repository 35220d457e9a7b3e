//! The Sail Operator (istio-ecosystem/sail-operator): the control plane is the `Istio`
//! resource with `updateStrategy: RevisionBased`, so a new `spec.version` installs the new
//! revision (`<name>-v<x-y-z>`) beside the old one; `IstioRevisionTag`s are the revision
//! tags; gateways are gateway-chart Helm releases (Sail does not manage gateways), so they are
//! the Helm backend's.
//!
//! The operator deletes an inactive revision once nothing uses it and its grace period has
//! passed. A rollback needs the old revision until cleanup, so the plan holds it: the new
//! version is applied with a grace period of ten years, and cleanup restores the user's, at
//! which the operator prunes the old revision. Tags that follow the `Istio` resource would
//! move the moment the new revision became active, so they are pinned to the old revision
//! first, moved namespace wave by wave like any tag, and made to follow again in cleanup.

use serde_json::{Value, json};

use super::{Backend, Draft, Helm};
use crate::plan::op::{GatewayDeploy, Op, Wait};
use crate::plan::{Builder, HopCtx, Phase};
use crate::validate::{ClusterSpec, SailSpec};
use crate::version::IstioVersion;

pub struct Sail;

/// The grace period that holds inactive revisions for the length of an upgrade.
pub const HOLD_SECONDS: u64 = 315_360_000;

fn spec(c: &ClusterSpec) -> &SailSpec {
    c.sail
        .as_ref()
        .expect("validation gives every sail cluster its istio.sail")
}

/// The `Istio` resource at `version`; `hold`: inactive revisions are kept.
fn istio_resource(
    c: &ClusterSpec,
    version: &IstioVersion,
    hold: bool,
    compat: Option<&str>,
) -> Value {
    let s = spec(c);
    let mut values = crate::values::carried_istiod(&c.values, version.minor());
    // The operator names and tags revisions itself, and picks each version's images.
    values.remove("revision");
    values.remove("revisionTags");
    if let Some(Value::Object(g)) = values.get_mut("global") {
        g.remove("tag");
    }
    if let Some(cv) = compat {
        values.insert("compatibilityVersion".into(), json!(cv));
    }
    super::helm::multicluster_values(c, version, &mut values);
    let mut spec = serde_json::Map::new();
    spec.insert("namespace".into(), json!(c.namespace));
    if let Some(p) = &s.profile {
        spec.insert("profile".into(), json!(p));
    }
    spec.insert(
        "updateStrategy".into(),
        json!({
            "type": "RevisionBased",
            "inactiveRevisionDeletionGracePeriodSeconds": if hold { HOLD_SECONDS } else { s.grace_seconds },
        }),
    );
    if !values.is_empty() {
        spec.insert("values".into(), Value::Object(values));
    }
    spec.insert("version".into(), json!(format!("v{version}")));
    json!({
        "apiVersion": "sailoperator.io/v1",
        "kind": "Istio",
        "metadata": {"name": s.name},
        "spec": spec,
    })
}

impl Sail {
    /// Writes the `Istio` resource at `version` to `path`; the operation that applies it.
    fn write(
        b: &mut Builder,
        path: &str,
        version: &IstioVersion,
        hold: bool,
        compat: Option<&str>,
        note: &str,
    ) -> Op {
        let s = spec(b.c).clone();
        let op = Op::SailIstio {
            file: path.to_string(),
            name: s.name.clone(),
            version: version.clone(),
            hold,
        };
        let grace_note = if hold {
            format!(
                "inactiveRevisionDeletionGracePeriodSeconds {HOLD_SECONDS} (ten years) holds the old revision while the plan may still roll back to it; cleanup restores {}.",
                s.grace_seconds
            )
        } else {
            format!(
                "inactiveRevisionDeletionGracePeriodSeconds {} (the cluster's own): the operator deletes each inactive revision nothing uses.",
                s.grace_seconds
            )
        };
        b.artifact(
            path,
            "sail-istio.yaml.j2",
            format!("Istio {} {version}{note}", s.name),
            &op,
            json!({"istio": istio_resource(b.c, version, hold, compat), "grace_note": grace_note}),
        );
        op
    }

    fn tags(b: &Builder) -> Vec<String> {
        b.now.tags.iter().map(|t| t.name.clone()).collect()
    }

    fn tag(b: &Builder, tag: &str, revision: Option<&str>) -> Op {
        Op::SailTag {
            tag: tag.to_string(),
            istio: spec(b.c).name.clone(),
            revision: revision.map(str::to_string),
        }
    }
}

impl Backend for Sail {
    fn control_plane(&self, b: &mut Builder, h: &HopCtx) -> Draft {
        let hop = h.hop;
        let old = hop.from_label().to_string();
        let new = hop.to_label().to_string();
        let compat = super::helm::compatibility(b, h);
        let mut d = Draft::default();
        let tags = Self::tags(b);
        for t in &tags {
            d.ops.push(Self::tag(b, t, Some(&old)));
        }
        let path = format!("{}/istio.yaml", h.phase_dir(Phase::ControlPlane));
        d.ops
            .push(Self::write(b, &path, &hop.to, true, compat.as_deref(), ""));
        d.ops.push(Op::SailAwaitRevision {
            revision: new.clone(),
        });
        d.waits.push(Wait::Rollout {
            kind: crate::inventory::WorkloadKind::Deployment,
            name: crate::plan::names::istiod(Some(&new)),
            namespace: b.c.namespace.clone(),
            timeout: "5m".into(),
        });
        let back = format!("{}/istio.yaml", h.rollback_phase_dir(Phase::ControlPlane));
        d.undo
            .push(Self::write(b, &back, &hop.from, false, None, ": rollback"));
        for t in &tags {
            d.undo.push(Self::tag(b, t, None));
        }
        d.undo_note = Some(format!(
            "the Istio resource goes back to {}, whose revision `{old}` is still there; with nothing on `{new}` the operator deletes it after the grace period",
            hop.from
        ));
        if !tags.is_empty() {
            d.why = Some(format!(
                "the tags {} follow the Istio resource and would move to `{new}` the moment it becomes active, so they are pinned to `{old}` first (nothing changes for any pod); the new revision then runs beside the old one, held past its grace period so that a rollback can return to it, and no proxy moves until its namespace or tag does and its pods restart",
                tags.iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        } else {
            d.why = Some(format!(
                "the new revision runs beside the old one, which is held past its grace period so that a rollback can return to it; no proxy moves to `{new}` until its namespace is relabelled and its pods restart"
            ));
        }
        d
    }

    fn hand_over_gateway(&self, b: &mut Builder, h: &HopCtx, gi: usize) -> Option<Draft> {
        Helm.hand_over_gateway(b, h, gi)
    }

    fn gateway_identity(&self, b: &mut Builder, h: &HopCtx, gi: usize) -> Option<Draft> {
        Helm.gateway_identity(b, h, gi)
    }

    fn new_gateway(&self, b: &Builder, h: &HopCtx, gi: usize) -> GatewayDeploy {
        Helm.new_gateway(b, h, gi)
    }

    fn install_gateway(
        &self,
        b: &mut Builder,
        h: &HopCtx,
        gi: usize,
        new: &GatewayDeploy,
    ) -> Draft {
        Helm.install_gateway(b, h, gi, new)
    }

    fn upgrade_gateway(
        &self,
        b: &mut Builder,
        h: &HopCtx,
        gi: usize,
        new: &GatewayDeploy,
    ) -> Draft {
        Helm.upgrade_gateway(b, h, gi, new)
    }

    fn remove_gateway(&self, b: &mut Builder, h: &HopCtx, gi: usize) -> Draft {
        Helm.remove_gateway(b, h, gi)
    }

    fn set_tag(&self, b: &Builder, _h: &HopCtx, tag: &str, revision: &str) -> Op {
        Self::tag(b, tag, Some(revision))
    }

    fn remove_control_plane(&self, b: &mut Builder, h: &HopCtx) -> Draft {
        let hop = h.hop;
        let old = hop.from_label().to_string();
        let new = hop.to_label().to_string();
        let grace = spec(b.c).grace_seconds;
        let compat = super::helm::compatibility(b, h);
        let tags = Self::tags(b);
        let mut d = Draft::default();
        let path = format!("{}/istio.yaml", h.phase_dir(Phase::Cleanup));
        d.ops
            .push(Self::write(b, &path, &hop.to, false, compat.as_deref(), ""));
        for t in &tags {
            d.ops.push(Self::tag(b, t, None));
        }
        d.waits.push(Wait::SailRevisionDeleted {
            revision: old.clone(),
            timeout: format!("{}s", grace + 300),
        });
        for t in &tags {
            d.undo.push(Self::tag(b, t, Some(&new)));
        }
        let back = format!("{}/istio.yaml", h.rollback_phase_dir(Phase::Cleanup));
        d.undo.push(Self::write(
            b,
            &back,
            &hop.from,
            true,
            None,
            ": rollback only",
        ));
        d.undo.push(Op::SailAwaitRevision {
            revision: old.clone(),
        });
        d.undo.push(Op::SailIstio {
            file: format!("{}/istio.yaml", h.phase_dir(Phase::ControlPlane)),
            name: spec(b.c).name.clone(),
            version: hop.to.clone(),
            hold: true,
        });
        d.why = Some(format!(
            "every proxy, namespace, gateway and tag has left `{old}`; the Istio resource gets its own grace period of {grace}s back, and the operator deletes the inactive revision `{old}` with its istiod and webhooks{}",
            if tags.is_empty() {
                String::new()
            } else {
                format!(
                    "; the tags {} follow the Istio resource again (its active revision is `{new}`, so they stay where they are)",
                    tags.iter()
                        .map(|t| format!("`{t}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
        d.undo_note = Some(format!(
            "the operator deleted `{old}`: the rollback sets the Istio resource to {} (held), waits until the operator has installed `{old}` again, and sets it back to {}, so that both revisions run and the rollbacks of earlier steps find `{old}`",
            hop.from, hop.to
        ));
        d
    }
}
