//! Install methods as backends behind one interface. A phase decides *what* happens (install the
//! new control plane, hand the traffic Service over, remove the old gateway); the backend of the
//! cluster's install method decides *how*: which operations, files and waits, and how to undo
//! them. A new install method is a new file here.

mod helm;
pub(crate) use helm::Helm;
pub use helm::{istiod_chart, running_releases, ztunnel_daemonset};
mod istioctl;
mod sail;

use crate::inventory::InstallMethod;
use crate::plan::op::{GatewayDeploy, Op, Wait};
use crate::plan::{Builder, HopCtx, Phase, Step};

/// A step's content, as a backend drafts it.
#[derive(Default)]
pub(crate) struct Draft {
    pub ops: Vec<Op>,
    pub undo: Vec<Op>,
    pub waits: Vec<Wait>,
    pub confirm: Vec<String>,
    pub undo_note: Option<String>,
    /// Why the step exists, where the install method changes what the phase says.
    pub why: Option<String>,
}

impl Draft {
    pub fn fill(self, mut s: Step) -> Step {
        s.ops.extend(self.ops);
        s.undo.extend(self.undo);
        s.waits.extend(self.waits);
        s.confirm.extend(self.confirm);
        if self.undo_note.is_some() {
            s.undo_note = self.undo_note;
        }
        if let Some(why) = self.why {
            s.why = why.into();
        }
        s
    }
}

/// A revision tag moved through the istiod releases' values.
pub(crate) struct TagMove {
    pub ops: Vec<Op>,
    pub undo: Vec<Op>,
    /// Every tag of the hop back with the old release, from wherever the hop's moves got to:
    /// each move sets whole lists of tags, so a rollback puts them all back at once.
    pub all_back: Vec<Op>,
}

pub(crate) trait Backend: Sync {
    /// The base chart and CRDs, before any new component (Helm only: istioctl installs the
    /// CRDs itself).
    fn crds(&self, _b: &mut Builder, _h: &HopCtx) -> Option<Draft> {
        None
    }

    /// Canary: the new revision beside the old one. In place: the running one upgraded.
    fn control_plane(&self, b: &mut Builder, h: &HopCtx) -> Draft;

    /// Revision tags the old control plane's release renders become standalone, so that
    /// removing the old release leaves them (Helm only).
    fn hand_over_tags(&self, _b: &mut Builder, _h: &HopCtx) -> Option<Draft> {
        None
    }

    /// The traffic Service and the ServiceAccount of gateway `gi` survive the removal of its
    /// old release.
    fn hand_over_gateway(&self, b: &mut Builder, h: &HopCtx, gi: usize) -> Option<Draft>;

    /// What lets the new gateway's pods run as the old gateway's ServiceAccount.
    fn gateway_identity(&self, _b: &mut Builder, _h: &HopCtx, _gi: usize) -> Option<Draft> {
        None
    }

    /// What a blue/green gateway's new release renders.
    fn new_gateway(&self, b: &Builder, h: &HopCtx, gi: usize) -> GatewayDeploy;

    /// Installs the new release of a blue/green gateway.
    fn install_gateway(&self, b: &mut Builder, h: &HopCtx, gi: usize, new: &GatewayDeploy)
    -> Draft;

    /// Moves gateway `gi`'s release to the new version and revision where it is.
    fn upgrade_gateway(&self, b: &mut Builder, h: &HopCtx, gi: usize, new: &GatewayDeploy)
    -> Draft;

    /// Removes the old release of a blue/green gateway (cleanup).
    fn remove_gateway(&self, b: &mut Builder, h: &HopCtx, gi: usize) -> Draft;

    /// Points an existing revision tag at `revision`.
    fn set_tag(&self, b: &Builder, h: &HopCtx, tag: &str, revision: &str) -> Op;

    /// Where the plan moves tags through the releases' values (Helm, a GitOps controller
    /// owning the releases): moves `tag` from the old control plane's release to the new
    /// one's, writing the values files in `dir` and `back_dir`.
    fn move_tag_in_values(
        &self,
        _b: &mut Builder,
        _h: &HopCtx,
        _dirs: (&str, &str),
        _tag: &str,
    ) -> Option<TagMove> {
        None
    }

    /// Moves the default revision (validation) to the new revision, if it pointed at the old
    /// one (Helm: the base chart's `defaultRevision`).
    fn default_revision(&self, _b: &mut Builder, _h: &HopCtx) -> Option<Draft> {
        None
    }

    /// Removes the old control plane (cleanup).
    fn remove_control_plane(&self, b: &mut Builder, h: &HopCtx) -> Draft;

    /// Upgrades the istio-cni node agent in place to the hop's target (Helm only: validation
    /// refuses istio-cni with other install methods).
    fn cni(&self, _b: &mut Builder, _h: &HopCtx, _phase: Phase) -> Option<Draft> {
        None
    }

    /// Upgrades ztunnel in place to the hop's target and points it at the hop's new revision
    /// (Helm only: validation refuses ambient mode with other install methods).
    fn ztunnel(&self, _b: &mut Builder, _h: &HopCtx) -> Option<Draft> {
        None
    }
}

static HELM: helm::Helm = helm::Helm;
static ISTIOCTL: istioctl::Istioctl = istioctl::Istioctl { operator: false };
static OPERATOR: istioctl::Istioctl = istioctl::Istioctl { operator: true };
static SAIL: sail::Sail = sail::Sail;

pub(crate) fn for_method(m: InstallMethod) -> &'static dyn Backend {
    match m {
        InstallMethod::Helm => &HELM,
        InstallMethod::Istioctl => &ISTIOCTL,
        InstallMethod::Operator => &OPERATOR,
        InstallMethod::Sail => &SAIL,
    }
}
