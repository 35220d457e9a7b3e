//! 20-control-plane: the new istiod revision beside the old one (canary), or the running one
//! upgraded where it is (in place); and the old release's revision tags handed over.

use crate::plan::{Builder, HopCtx, Phase};

impl Builder<'_> {
    pub(crate) fn control_plane(&mut self, h: &HopCtx) {
        let hop = h.hop;
        let be = self.backend;
        let draft = be.control_plane(self, h);
        let (title, why) = if h.canary() {
            (
                format!(
                    "Install istiod revision `{}` ({}) beside `{}`",
                    hop.to_label(),
                    hop.to,
                    hop.from_label()
                ),
                format!(
                    "the new control plane runs beside the old one; no proxy moves to it until its namespace is relabelled (or its tag moves) and its pods restart, so sidecars never lose their control plane{}",
                    if hop.minor_distance() >= 2 {
                        format!(
                            "; this hop skips a minor, and {} proxies must never be served by a {} istiod: they stay on `{}` until restarted, and `{}` is removed only after every namespace and gateway has moved",
                            hop.from.minor(),
                            hop.to.minor(),
                            hop.from_label(),
                            hop.from_label()
                        )
                    } else {
                        String::new()
                    }
                ),
            )
        } else {
            (
                format!(
                    "Upgrade istiod revision `{}` in place to {}",
                    hop.to_label(),
                    hop.to
                ),
                format!(
                    "the running revision keeps its name; its proxies ({}) stay connected to the upgraded istiod, which is at most one minor ahead of them, until they restart",
                    hop.from
                ),
            )
        };
        if !h.canary() {
            // In place, every rollback from here on puts the control plane back first, or the
            // pods it restarts would get the new proxy again.
            self.restore = draft.undo.clone();
        }
        let s = self.step(h, Phase::ControlPlane, "istiod", title, why);
        let mut s = draft.fill(s);
        if !h.canary() {
            // The upgraded istiod re-renders the Gateway API gateways it deploys.
            let waits = self.gateway_api_rollouts(|_| true);
            if !waits.is_empty() {
                s.traffic = true;
                s.waits.extend(waits);
            }
        }
        self.push_step(s);
        self.expose_istiod(h);

        if h.canary()
            && let Some(draft) = be.hand_over_tags(self, h)
        {
            let why = if self.tags_in_values(h) {
                "the revision tags move to the new istiod release in its values (`revisionTags`), one at a time, while the old release stops rendering each: whichever of the two upgrades a controller runs first, Helm must keep the tag webhook for the other release to take over, so the old release first marks its webhooks, tags included, to be kept (and renders the standalone tags too, so that each moves the same way)"
            } else {
                "the old istiod release renders revision tags; uninstalling it in cleanup would delete them right after they were moved to the new revision, and tagged namespaces would come up without sidecars. The release stops rendering them and marks them to be kept, so they become standalone webhooks the plan moves"
            };
            let s = self.step(
                h,
                Phase::ControlPlane,
                "tags-handover",
                format!(
                    "Hand the revision tags over from release `{}`",
                    self.now.istiod_release
                ),
                why.to_string(),
            );
            let s = draft.fill(s);
            self.push_step(s);
        }
    }
}
