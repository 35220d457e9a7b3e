//! What the Sail Operator does with the resources a plan applies (istio-ecosystem/
//! sail-operator: `controllers/istio`, `controllers/istiorevision`, `pkg/revision/prune.go`):
//!
//! - An `Istio` resource at a version has an `IstioRevision` `<name>-v<x-y-z>` of it, which
//!   the operator creates if needed and makes active; the others stay.
//! - An inactive revision that nothing uses (no `IstioRevisionTag` resolves to it, no namespace
//!   is labelled with it, no pod was injected by it) is deleted once the grace period has
//!   passed. The model deletes it at once unless the plan holds it (the most pessimistic
//!   reading of a short grace period).
//! - An `IstioRevisionTag` follows the `Istio` resource's active revision, or names an
//!   `IstioRevision`; its webhook sends pods to that revision's istiod.

use super::state::{Body, Cluster, Owner, istiod_objects, tag_object};
use crate::plan::names;
use crate::plan::op::Op;

impl Cluster {
    /// Applies a Sail operation (`Ok(false)`: not one).
    pub(super) fn apply_sail(&mut self, op: &Op) -> Result<bool, String> {
        match op {
            Op::SailIstio {
                name,
                version,
                hold,
                ..
            } => {
                let Some(sail) = self.small.sail.as_mut() else {
                    return Err("no Sail Operator runs in the cluster".into());
                };
                if *name != sail.name {
                    return Err(format!(
                        "Istio `{name}` is not the resource that runs the control plane (`{}`): the operator would install a second control plane",
                        sail.name
                    ));
                }
                sail.version = version.clone();
                sail.hold = *hold;
                let active = sail.active();
                if !sail.revisions.contains_key(&active) {
                    sail.revisions.insert(active.clone(), version.clone());
                    let ns = self.control_namespace.clone();
                    for (k, b) in istiod_objects(Some(&active), version, &ns, &[]) {
                        self.small.put(k, Owner::Sail, b);
                    }
                }
                self.sail_tags();
                Ok(true)
            }
            Op::SailTag { tag, revision, .. } => {
                let Some(sail) = self.small.sail.as_mut() else {
                    return Err("no Sail Operator runs in the cluster".into());
                };
                let Some(t) = sail.tags.get_mut(tag) else {
                    return Err(format!(
                        "IstioRevisionTag `{tag}` does not exist: `kubectl patch` fails"
                    ));
                };
                *t = revision.clone();
                self.sail_tags();
                Ok(true)
            }
            Op::SailAwaitRevision { revision } => match self.small.sail.as_ref() {
                Some(s) if s.revisions.contains_key(revision) => Ok(true),
                _ => Err(format!(
                    "IstioRevision `{revision}` does not exist and nothing creates it: the wait times out"
                )),
            },
            _ => Ok(false),
        }
    }

    /// Points every tag's webhook at the istiod of the revision it resolves to.
    fn sail_tags(&mut self) {
        let Some(sail) = &self.small.sail else {
            return;
        };
        let ns = self.control_namespace.clone();
        let resolved: Vec<(String, Option<String>)> = sail
            .tags
            .keys()
            .map(|t| (t.clone(), sail.tag_revision(t)))
            .collect();
        for (tag, rev) in resolved {
            let service = rev.map(|r| names::istiod(Some(&r))).unwrap_or_default();
            let (k, b) = tag_object(&tag, &service, &ns);
            self.small.put(k, Owner::Sail, b);
        }
    }

    /// Whether anything uses Sail revision `rev`: a tag resolves to it, a namespace carries it,
    /// or a proxy (workload or gateway) was injected by its istiod.
    fn sail_in_use(&self, rev: &str) -> bool {
        let Some(sail) = &self.small.sail else {
            return false;
        };
        if sail
            .tags
            .keys()
            .any(|t| sail.tag_revision(t).as_deref() == Some(rev))
        {
            return true;
        }
        if self
            .ns_counts
            .iter()
            .any(|((r, _), n)| *n > 0 && r.as_deref() == Some(rev))
        {
            return true;
        }
        let service = names::istiod(Some(rev));
        if self
            .proxy_counts
            .iter()
            .any(|(p, n)| *n > 0 && p.service == service)
        {
            return true;
        }
        self.small.objects.values().any(
            |o| matches!(&o.body, Body::Gateway { proxy: Some(p), .. } if p.service == service),
        )
    }

    /// The operator's pruning: without a hold, every inactive revision nothing uses is deleted
    /// with what it rendered.
    pub(super) fn sail_prune(&mut self) {
        let Some(sail) = &self.small.sail else {
            return;
        };
        if sail.hold {
            return;
        }
        let active = sail.active();
        let doomed: Vec<String> = sail
            .revisions
            .keys()
            .filter(|r| **r != active && !self.sail_in_use(r))
            .cloned()
            .collect();
        for rev in doomed {
            let ns = self.control_namespace.clone();
            let version = self.small.sail.as_ref().map(|s| s.revisions[&rev].clone());
            if let Some(v) = version {
                for (k, _) in istiod_objects(Some(&rev), &v, &ns, &[]) {
                    if self.small.get(&k).is_some_and(|o| o.owner == Owner::Sail) {
                        self.small.objects.remove(&k);
                    }
                }
            }
            if let Some(s) = self.small.sail.as_mut() {
                s.revisions.remove(&rev);
            }
        }
    }
}
