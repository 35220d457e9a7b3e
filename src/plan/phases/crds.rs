//! 10-crds: the CRDs and the base chart, before any component of the new version.

use crate::plan::{Builder, HopCtx, Phase};

impl Builder<'_> {
    pub(crate) fn crds(&mut self, h: &HopCtx) {
        let be = self.backend;
        let Some(draft) = be.crds(self, h) else {
            return;
        };
        let hop = h.hop;
        let mut why = vec![format!(
            "the base chart holds the cluster-wide CRDs and must be upgraded before any {} component; its defaultRevision stays `{}`, so validation keeps using the running istiod until cleanup",
            hop.to.minor(),
            self.now.default_revision
        )];
        let templates = self
            .catalog
            .get(hop.to.minor())
            .is_some_and(|r| r.crd_templates);
        let from_templates = self
            .catalog
            .get(hop.from.minor())
            .is_some_and(|r| r.crd_templates);
        if templates && !from_templates {
            why.push("crossing into 1.24 or later: the base chart now templates the CRDs, so Helm must first be told it owns the CRDs that 1.23 or older installed (one-time labels and annotations), or the upgrade fails with \"invalid ownership metadata\"".to_string());
        }
        if !templates {
            why.push(format!(
                "before 1.24 the CRDs sit in the chart's crds/ folder, which `helm upgrade` never touches: they are applied from the {} chart first",
                hop.to
            ));
        }
        let s = self.step(
            h,
            Phase::Crds,
            "base",
            format!("Upgrade CRDs and the base chart to {}", hop.to),
            why.join("; "),
        );
        let s = draft.fill(s);
        self.push_step(s);
    }
}
