//! 95-cni: the istio-cni node agent upgraded in place, after the old control plane is gone.
//!
//! istio-cni is not revisioned (Istio supports no canary of it), and "the CNI at version 1.x is
//! compatible with the control plane at version 1.x+1 and 1.x": it may run the version of every
//! running istiod or one minor behind it. While the old and new istiod run side by side, only
//! the old version satisfies both, so the agent moves last, when the new istiod is the only
//! one; the path goes one minor per hop for such clusters (`path.rs`). The model checks the
//! skew after every operation, forward and in every rollback.

use crate::plan::{Builder, HopCtx, Phase};

impl Builder<'_> {
    pub(crate) fn cni(&mut self, h: &HopCtx) {
        let Some(cni) = &self.c.cni else {
            return;
        };
        if self.c.ztunnel.is_some() {
            // Ambient mode: it moved with ztunnel, right after the new istiod (25-node-agents).
            return;
        }
        let be = self.backend;
        let Some(draft) = be.cni(self, h, Phase::Cni) else {
            return;
        };
        let title = format!(
            "Upgrade istio-cni (release `{}` in {}) in place to {}",
            cni.release, cni.namespace, h.hop.to
        );
        let why = format!(
            "istio-cni is not revisioned, and may run only the version of a running istiod or one minor behind it: it stayed at {} while both control planes ran, and moves now that `{}` is the only one; the DaemonSet replaces the agent node by node, and pods scheduled on a node while its agent restarts wait for it",
            h.hop.from,
            h.hop.to_label()
        );
        let s = self.step(h, Phase::Cni, "istio-cni", title, why);
        let mut s = draft.fill(s);
        if h.canary() {
            // The old control plane is gone: what decides injection (a moved tag) can be put
            // back only once cleanup's rollback has reinstalled it, which that rollback does.
            self.restore.clear();
        } else {
            // In place, the control plane goes back right after the agent, never before it:
            // the agent may not be ahead of istiod.
            s.restore_after = true;
        }
        self.push_step(s);
    }
}
