//! 25-node-agents (ambient mode): istio-cni, then ztunnel, upgraded in place right after the
//! new istiod, before gateways and waypoints move.
//!
//! This is the order Istio's ambient upgrade documents (istio.io docs/ambient/upgrade/helm):
//! CRDs, istiod, the CNI node agent, ztunnel, then gateways and waypoints by their labels and
//! tags, and the old control plane last. Neither node agent is revisioned ("Istio does not
//! currently support canary upgrades of ztunnel, even with the use of revisions"); each "at
//! version 1.x is compatible with the control plane at version 1.x+1 and 1.x", so each goes
//! at most one minor per hop (`path.rs`), and ztunnel's `revision` value moves it to the new
//! istiod, which must be running. The model checks, after every operation, that ztunnel's
//! istiod runs and is at most one minor ahead of it, and that neither agent is behind the
//! newest istiod by more than a minor nor ahead of it.

use crate::plan::{Builder, HopCtx, Phase};

impl Builder<'_> {
    pub(crate) fn node_agents(&mut self, h: &HopCtx) {
        if self.c.ztunnel.is_none() {
            return;
        }
        let be = self.backend;
        let hop = h.hop;
        if let Some(cni) = &self.c.cni
            && let Some(draft) = be.cni(self, h, Phase::NodeAgents)
        {
            let title = format!(
                "Upgrade istio-cni (release `{}` in {}) in place to {}",
                cni.release, cni.namespace, hop.to
            );
            let why = format!(
                "ambient mode: the CNI node agent is not revisioned and moves right after the new istiod, before ztunnel, as Istio's ambient upgrade does; while an agent restarts, pods scheduled on its node wait for it, and pods already in the mesh keep their traffic rules; it goes back to {} on rollback",
                hop.from
            );
            let s = self.step(h, Phase::NodeAgents, "istio-cni", title, why);
            let s = draft.fill(s);
            self.agents_back_first(h, s.undo.clone());
            self.push_step(s);
        }
        if let Some(draft) = be.ztunnel(self, h) {
            let z = self.c.ztunnel.as_ref().expect("ambient cluster");
            let title = format!(
                "Upgrade ztunnel (release `{}` in {}) in place to {}, connected to `{}`",
                z.release,
                z.namespace,
                hop.to,
                hop.to_label()
            );
            let why = "ambient mode: ztunnel, the node proxy of every ambient pod, is not revisioned; its DaemonSet replaces it node by node, now connected to the new istiod, and ambient pods keep running without a restart. Each replacement resets the long-lived TCP connections of the ambient pods on that node (Istio documents this for every in-place ztunnel upgrade): cordon and drain nodes, or move to a new node pool, where that matters";
            let s = self.step(h, Phase::NodeAgents, "ztunnel", title, why);
            let mut s = draft.fill(s);
            s.confirm.push(format!(
                "ambient workloads serve traffic again on every node (ztunnel {} restarted node by node): clients with long-lived connections reconnected",
                hop.to
            ));
            self.agents_back_first(h, s.undo.clone());
            self.push_step(s);
        }
    }

    /// In place, every rollback from here on puts the control plane back first (the restore),
    /// and the agents, which may not be ahead of it, must go back before it does: the
    /// restore starts with their undo, this step's included, so that every rollback of the
    /// hop returns to the same checkpoint states.
    fn agents_back_first(&mut self, h: &HopCtx, undo: Vec<crate::plan::op::Op>) {
        if !h.canary() {
            let mut restore = undo;
            restore.append(&mut self.restore);
            self.restore = restore;
        }
    }
}
