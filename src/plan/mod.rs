//! The plan: every step of every hop of every cluster, in apply order, as typed operations.
//! Pure data: nothing here renders text or touches a file system.
//!
//! Where things live:
//!
//! | file | what |
//! | --- | --- |
//! | `op.rs` | the operations, waits and specs a step is made of |
//! | `state.rs` | what the plan knows of a cluster between hops (releases, selectors, labels) |
//! | `phases/*.rs` | one file per phase of a hop, in apply order |
//! | `backend/*.rs` | how an install method (Helm, istioctl, the in-cluster operator, the Sail Operator) carries out a phase's intent |
//! | `rollback.rs` | checkpoints, and the rollback of every step composed from the steps' undos |
//! | `order.rs` | the order across clusters (a primary, the remotes it serves, multi-primary peers) |
//!
//! A hop runs the phases of [`Phase::ALL`] in order. Each step has its own `undo`, written so
//! that undoing steps in reverse order (last first) returns the cluster to where the hop
//! started; `rollback.rs` turns that into the exact command sequence of every step, and the
//! `model` module executes both before anything is written.

pub(crate) mod backend;
pub mod names;
pub mod op;
pub mod order;
pub(crate) mod phases;
pub mod rollback;
pub mod state;

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::catalog::Catalog;
use crate::inventory::InstallMethod;
use crate::path::{ClusterPath, Hop, MeshPath, Strategy};
use crate::render::shell::Shell;
use crate::validate::{ClusterSpec, Mesh};
use crate::version::IstioVersion;

use self::backend::Backend;
use self::op::{Op, Wait};
use self::state::Carried;

/// The annotation on pod templates whose change restarts a workload declaratively.
pub const RESTART_REVISION_ANNOTATION: &str = "meshplan.dev/istio-revision";
pub const RESTART_VERSION_ANNOTATION: &str = "meshplan.dev/istio-version";

/// The phases of a hop, in apply order. The number prefixes the phase's directory, so that a
/// sorted listing is the apply order and a new step never renames the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Preflight,
    Crds,
    ControlPlane,
    Gateways,
    Traffic,
    DataPlane,
    Cleanup,
    Cni,
    /// Ambient mode: istio-cni and ztunnel, in place, right after the new istiod.
    NodeAgents,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::Preflight,
        Phase::Crds,
        Phase::ControlPlane,
        Phase::NodeAgents,
        Phase::Gateways,
        Phase::Traffic,
        Phase::DataPlane,
        Phase::Cleanup,
        Phase::Cni,
    ];

    pub fn dir(self) -> &'static str {
        match self {
            Phase::Preflight => "00-preflight",
            Phase::Crds => "10-crds",
            Phase::ControlPlane => "20-control-plane",
            Phase::Gateways => "30-gateways",
            Phase::Traffic => "40-traffic",
            Phase::DataPlane => "50-data-plane",
            Phase::Cleanup => "90-cleanup",
            Phase::Cni => "95-cni",
            Phase::NodeAgents => "25-node-agents",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Phase::Preflight => "Preflight",
            Phase::Crds => "CRDs and base chart",
            Phase::ControlPlane => "Control plane",
            Phase::Gateways => "Gateways",
            Phase::Traffic => "Traffic switch",
            Phase::DataPlane => "Data plane",
            Phase::Cleanup => "Cleanup",
            Phase::Cni => "istio-cni node agent",
            Phase::NodeAgents => "istio-cni and ztunnel (ambient)",
        }
    }
}

/// A file the plan writes: the template that renders it and the data it renders.
#[derive(Clone, Debug, Serialize)]
pub struct Artifact {
    /// Path relative to the output directory, `/`-separated.
    pub path: String,
    /// The template under `templates/`.
    pub template: &'static str,
    /// What the file configures, for its header ("chart istio/istiod 1.20.2, release ...").
    pub targets: String,
    /// The command that applies it, for its header.
    pub apply: String,
    /// What the file is for, as `key: value` comment lines (chart, Istio version, release,
    /// namespace), so that it explains itself and tools can check it against the right chart.
    pub hints: Vec<String>,
    /// What the template renders, as compact JSON: a cluster of thousands of workloads keeps
    /// one string per file in memory, not a tree of values.
    pub data: Box<str>,
}

/// One step: what it does, what must hold after it, and how to undo it.
#[derive(Clone, Debug)]
pub struct Step {
    pub id: String,
    pub cluster: String,
    pub hop: usize,
    pub phase: Phase,
    pub title: String,
    /// Why the step exists and what it changes (mostly the same text for many steps).
    pub why: Cow<'static, str>,
    pub ops: Vec<Op>,
    pub waits: Vec<Wait>,
    /// What a person must confirm before the next step (no command can).
    pub confirm: Vec<String>,
    /// The operations that undo this step, from the state right after it, given that every
    /// later step was undone first. Self-contained: they restore what they depend on.
    pub undo: Vec<Op>,
    /// What a person must know about undoing the step.
    pub undo_note: Option<String>,
    /// What decides injection hop-wide and was changed before this step (a moved revision
    /// tag; in place, the control plane): its rollback puts these back first, so that the
    /// restarts it undoes get the old proxy.
    pub restore: Vec<Op>,
    /// A rollback runs the restore right after this step's undo (which brings the old control
    /// plane back), before anything that creates pods.
    pub restore_after: bool,
    /// The step may change which pods a gateway's traffic Service selects.
    pub traffic: bool,
    /// The istioctl version the step's istioctl commands need.
    pub istioctl: Option<IstioVersion>,
    /// A point the rollbacks of later steps return to, before they continue with this
    /// step's own rollback.
    pub checkpoint: bool,
    /// The checkpoint this step's rollback returns to (`None`: the start of the hop). The
    /// operations themselves are composed when needed ([`rollback::ops`]).
    pub rollback_then: Option<String>,
}

impl Step {
    /// The files the step's operations apply.
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for op in &self.ops {
            for f in op.files() {
                if !v.iter().any(|x| x == f) {
                    v.push(f.to_string());
                }
            }
        }
        v
    }

    /// The files a rollback of `ops` applies.
    pub fn files_of(ops: &[Op]) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for op in ops {
            for f in op.files() {
                if !v.iter().any(|x| x == f) {
                    v.push(f.to_string());
                }
            }
        }
        v
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PhaseCount {
    pub phase: Phase,
    pub steps: usize,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HopSummary {
    pub number: usize,
    pub dir: String,
    /// How many steps each phase of the hop has.
    pub phases: Vec<PhaseCount>,
    pub from: IstioVersion,
    pub to: IstioVersion,
    pub strategy: Strategy,
    pub from_revision: String,
    pub to_revision: String,
    pub minors_crossed: Vec<String>,
    pub two_minor: bool,
    pub alpha: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct UpgradeNote {
    pub minor: String,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPlan {
    pub name: String,
    pub dir: String,
    pub context: Option<String>,
    pub kubernetes: String,
    pub install_method: InstallMethod,
    pub from: IstioVersion,
    pub to: IstioVersion,
    pub hops: Vec<HopSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub upgrade_notes: Vec<UpgradeNote>,
    /// Old-revision webhooks the cleanup deletes, so that none is left behind.
    pub leftover_webhooks: Vec<String>,
    /// How many steps the cluster's plan has.
    pub steps: usize,
    /// In a multicluster mesh: where its hops go among the other clusters'.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
}

/// One cluster's part of the plan.
#[derive(Clone, Debug)]
pub struct ClusterOut {
    pub summary: ClusterPlan,
    pub steps: Vec<Step>,
    pub artifacts: Vec<Artifact>,
    /// What the cluster runs once every step ran (what `advance` writes back).
    pub after: state::Carried,
}

/// The whole plan in memory (tests and small meshes; `compile` works a cluster at a time).
#[derive(Clone, Debug)]
pub struct Plan {
    pub mesh: String,
    pub target: IstioVersion,
    pub clusters: Vec<ClusterOut>,
}

/// The directory of a cluster's part of the output.
pub fn cluster_dir(index: usize, name: &str) -> String {
    format!("{:02}-{name}", index + 1)
}

/// Builds the plan of the `index`-th cluster. Cannot fail: every check ran before. Clusters are
/// independent, so a large mesh is planned, rendered and written one cluster at a time.
pub fn build_cluster(
    index: usize,
    c: &ClusterSpec,
    path: &ClusterPath,
    catalog: &Catalog,
    opts: Options,
) -> ClusterOut {
    Builder::new(c, path, catalog, cluster_dir(index, &c.name), opts).build()
}

/// What the output's layout changes in the plan itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Revision tags move through the istiod releases' values (`revisionTags`), handed from
    /// the old release to the new one, instead of with `helm template | kubectl apply`: where
    /// a controller owns the Helm releases (Flux, Argo CD), a command would fight it.
    pub tags_through_values: bool,
}

impl Options {
    pub fn for_layout(layout: crate::inventory::Layout) -> Options {
        use crate::inventory::Layout;
        Options {
            tags_through_values: matches!(layout, Layout::Flux | Layout::Argocd),
        }
    }
}

/// Builds the whole plan in memory.
pub fn build(mesh: &Mesh, paths: &MeshPath, catalog: &Catalog) -> Plan {
    let opts = Options::for_layout(mesh.gitops.layout);
    Plan {
        mesh: mesh.name.clone(),
        target: paths.target.clone(),
        clusters: mesh
            .clusters
            .iter()
            .zip(&paths.clusters)
            .enumerate()
            .map(|(i, (c, p))| build_cluster(i, c, p, catalog, opts))
            .collect(),
    }
}

/// The hop being built.
pub(crate) struct HopCtx<'a> {
    pub number: usize,
    pub hop: &'a Hop,
    /// `<cluster>/hop-NN`: forward artifacts live below it.
    pub dir: String,
    /// `rollback/<cluster>/hop-NN`: the files only a rollback applies.
    pub rollback_dir: String,
}

impl HopCtx<'_> {
    pub fn phase_dir(&self, phase: Phase) -> String {
        format!("{}/{}", self.dir, phase.dir())
    }

    pub fn rollback_phase_dir(&self, phase: Phase) -> String {
        format!("{}/{}", self.rollback_dir, phase.dir())
    }

    pub fn canary(&self) -> bool {
        self.hop.strategy == Strategy::Canary
    }
}

/// Builds one cluster's steps and artifacts, hop after hop.
pub(crate) struct Builder<'a> {
    pub c: &'a ClusterSpec,
    pub path: &'a ClusterPath,
    pub catalog: &'a Catalog,
    pub dir: String,
    pub sh: Shell<'a>,
    pub backend: &'static dyn Backend,
    pub opts: Options,
    /// What the cluster runs now, as the plan has changed it so far.
    pub now: Carried,
    pub steps: Vec<Step>,
    pub artifacts: Vec<Artifact>,
    pub webhooks: Vec<String>,
    /// The operations that put back what decides injection hop-wide, as changed so far in
    /// this hop (see [`Step::restore`]).
    pub restore: Vec<Op>,
}

impl<'a> Builder<'a> {
    /// Whether hop `h` moves the revision tags through the istiod releases' values: the layout
    /// asks for it, the cluster is installed with Helm, the hop is a canary, and both charts
    /// mark their webhooks keep on request (1.24+), which makes the handover safe whichever
    /// release a controller upgrades first.
    pub(crate) fn tags_in_values(&self, h: &HopCtx) -> bool {
        self.opts.tags_through_values
            && self.c.install == InstallMethod::Helm
            && h.canary()
            && crate::chart_facts::istiod_webhook_annotations(&h.hop.from)
            && crate::chart_facts::istiod_webhook_annotations(&h.hop.to)
    }

    fn new(
        c: &'a ClusterSpec,
        path: &'a ClusterPath,
        catalog: &'a Catalog,
        dir: String,
        opts: Options,
    ) -> Self {
        Self {
            c,
            path,
            catalog,
            dir,
            sh: Shell {
                context: c.context.as_deref(),
            },
            backend: backend::for_method(c.install),
            opts,
            now: Carried::from_spec(c),
            steps: Vec::new(),
            artifacts: Vec::new(),
            webhooks: Vec::new(),
            restore: Vec::new(),
        }
    }

    fn build(mut self) -> ClusterOut {
        let mut hops = Vec::new();
        for (i, hop) in self.path.hops.iter().enumerate() {
            let number = i + 1;
            let h = HopCtx {
                number,
                hop,
                dir: format!("{}/hop-{number:02}", self.dir),
                rollback_dir: format!("rollback/{}/hop-{number:02}", self.dir),
            };
            let first = self.steps.len();
            self.restore.clear();
            self.hop(&h);
            rollback::compose(&mut self.steps[first..]);
            let phases = Phase::ALL
                .iter()
                .map(|p| {
                    (
                        *p,
                        self.steps[first..].iter().filter(|s| s.phase == *p).count(),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .map(|(phase, steps)| PhaseCount { phase, steps })
                .collect();
            hops.push(HopSummary {
                number,
                dir: h.dir.clone(),
                phases,
                from: hop.from.clone(),
                to: hop.to.clone(),
                strategy: hop.strategy,
                from_revision: hop.from_label().to_string(),
                to_revision: hop.to_label().to_string(),
                minors_crossed: hop.minors_crossed.clone(),
                two_minor: hop.minor_distance() >= 2,
                alpha: hop.alpha,
            });
        }
        let upgrade_notes = self
            .catalog
            .minors()
            .filter(|m| *m > self.path.from.minor() && *m <= self.path.to.minor())
            .filter_map(|m| self.catalog.get(m))
            .filter(|r| !r.notes.is_empty())
            .map(|r| UpgradeNote {
                minor: r.minor.to_string(),
                notes: r.notes.clone(),
            })
            .collect();
        let summary = ClusterPlan {
            name: self.c.name.clone(),
            dir: self.dir.clone(),
            context: self.c.context.clone(),
            kubernetes: self.c.kubernetes.to_string(),
            install_method: self.c.install,
            from: self.path.from.clone(),
            to: self.path.to.clone(),
            hops,
            reason: self.path.reason.clone(),
            upgrade_notes,
            leftover_webhooks: std::mem::take(&mut self.webhooks),
            steps: self.steps.len(),
            mesh: self.mesh_note(),
        };
        ClusterOut {
            summary,
            steps: self.steps,
            artifacts: self.artifacts,
            after: self.now,
        }
    }

    /// Where this cluster's hops go among the other clusters' of its mesh (`order.rs`).
    fn mesh_note(&self) -> Option<String> {
        let m = self.c.multicluster.as_ref()?;
        let note = match &m.role {
            crate::validate::MeshRole::Remote { primary, .. } => format!(
                "remote of `{primary}` in mesh `{}`: each hop runs after `{primary}`'s hop has reached its data plane, and before `{primary}`'s cleanup; follow the order across clusters in the root PLAN.md",
                m.mesh_id
            ),
            crate::validate::MeshRole::Primary { remotes } if !remotes.is_empty() => format!(
                "primary of mesh `{}`, serving {}: each hop stops after its data plane while those remotes run theirs, then its cleanup runs; follow the order across clusters in the root PLAN.md",
                m.mesh_id,
                remotes
                    .iter()
                    .map(|r| format!("`{r}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            crate::validate::MeshRole::Primary { .. } => format!(
                "primary of mesh `{}`: where the inventory has other primaries of the mesh, its hops interleave with theirs (the one furthest behind first), as the root PLAN.md orders them",
                m.mesh_id
            ),
        };
        Some(note)
    }

    fn hop(&mut self, h: &HopCtx) {
        self.preflight(h);
        self.crds(h);
        self.control_plane(h);
        self.node_agents(h);
        self.gateways(h);
        self.traffic(h);
        self.data_plane(h);
        self.cleanup(h);
        self.cni(h);
        self.now.finish_hop(h.hop);
    }

    /// A new step of this cluster and hop.
    pub fn step(
        &self,
        h: &HopCtx,
        phase: Phase,
        name: &str,
        title: String,
        why: impl Into<Cow<'static, str>>,
    ) -> Step {
        Step {
            id: format!(
                "{}/hop-{:02}/{}/{}",
                self.c.name,
                h.number,
                phase.dir(),
                name
            ),
            cluster: self.c.name.clone(),
            hop: h.number,
            phase,
            title,
            why: why.into(),
            ops: Vec::new(),
            waits: Vec::new(),
            confirm: Vec::new(),
            undo: Vec::new(),
            undo_note: None,
            restore: Vec::new(),
            restore_after: false,
            traffic: false,
            istioctl: None,
            checkpoint: false,
            rollback_then: None,
        }
    }

    pub fn push_step(&mut self, mut step: Step) {
        step.restore = self.restore.clone();
        if step.istioctl.is_none() && uses_istioctl(&step) {
            step.istioctl = Some(self.istioctl_version_for(&step));
        }
        self.steps.push(step);
    }

    /// istioctl commands of a step run with the istioctl of the version they install; read-only
    /// and tag commands of a hop with the hop's target.
    fn istioctl_version_for(&self, step: &Step) -> IstioVersion {
        for op in step.ops.iter().chain(&step.undo) {
            match op {
                Op::IstioctlInstall { version, .. }
                | Op::OperatorInit { version, .. }
                | Op::OperatorRemove { version, .. }
                | Op::IstioctlUninstall { version, .. } => return version.clone(),
                _ => {}
            }
        }
        let hop = &self.path.hops[step.hop - 1];
        hop.to.clone()
    }

    /// Adds an artifact. `apply_op` is the operation that applies it (its command goes into
    /// the file's header).
    pub fn artifact(
        &mut self,
        path: &str,
        template: &'static str,
        targets: String,
        apply_op: &Op,
        data: Value,
    ) {
        let apply = self
            .sh
            .op(apply_op)
            .iter()
            .map(|c| c.text())
            .collect::<Vec<_>>()
            .join(" && ");
        let hints = match apply_op {
            Op::HelmUpgrade(h) => vec![
                format!("meshplan-chart: {}", h.chart.name()),
                format!("meshplan-istio-version: {}", h.version),
                format!("meshplan-release: {}", h.release),
                format!("meshplan-namespace: {}", h.namespace),
            ],
            Op::IstioctlInstall { version, .. } => {
                vec![format!("meshplan-istio-version: {version}")]
            }
            _ => Vec::new(),
        };
        self.artifacts.push(Artifact {
            path: path.to_string(),
            template,
            targets,
            apply,
            hints,
            data: data.to_string().into_boxed_str(),
        });
    }

    pub fn chart_ref(&self, chart: &str) -> String {
        format!("{}/{chart}", self.c.chart_repository.trim_end_matches('/'))
    }

    pub fn image_tag(&self, v: &IstioVersion) -> String {
        format!("{v}{}", self.c.tag_suffix)
    }
}

fn uses_istioctl(step: &Step) -> bool {
    step.ops.iter().chain(&step.undo).any(|op| {
        matches!(
            op,
            Op::IstioctlInstall {
                operator: false,
                ..
            } | Op::OperatorInit { .. }
                | Op::OperatorRemove { .. }
                | Op::IstioctlUninstall { .. }
                | Op::SetTag { helm: None, .. }
                | Op::Probe {
                    tool: op::Tool::Istioctl,
                    ..
                }
        )
    })
}

/// `i` zero-padded so that it sorts among `count` siblings (at least two digits).
pub fn seq(i: usize, count: usize) -> String {
    let width = count.to_string().len().max(2);
    format!("{i:0width$}")
}

/// A key-sorted map from pairs, for artifact data.
pub fn labels<I: IntoIterator<Item = (String, String)>>(pairs: I) -> BTreeMap<String, String> {
    pairs.into_iter().collect()
}
