//! Executes a cluster's plan on the model: every step forward, with the invariants checked
//! after every operation and every wait evaluated; and from every step, its rollback, which
//! must return the cluster to the checkpoint it names (and, by the same check at each
//! checkpoint, to where the hop started) with the invariants holding throughout.
//!
//! The cost is linear in the number of steps: a rollback trial only runs back to the previous
//! checkpoint, and the large part of the state (namespaces, workloads) is compared only where
//! the segment touched it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use super::invariants::{Checking, Violation};
use super::state::{Body, Cluster, Key, Kind, Obj, Small};
use crate::catalog::Catalog;
use crate::path::Strategy;
use crate::plan::op::{Op, Wait};
use crate::plan::{ClusterOut, Step, names};
use crate::render::shell::Shell;
use crate::validate::{ClusterSpec, DEFAULT_REVISION};

/// Why the model rejected a plan: a bug in meshplan, with what is needed to report it.
#[derive(Clone, Debug)]
pub struct Failure {
    pub cluster: String,
    pub step: String,
    /// The operation that broke it (its command), if one did.
    pub operation: Option<String>,
    /// `forward`, or the step whose rollback was being run.
    pub during: String,
    pub problem: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the plan fails on the cluster model: cluster `{}`, step `{}` ({}): {}",
            self.cluster, self.step, self.during, self.problem
        )?;
        if let Some(op) = &self.operation {
            write!(f, "\n  operation: {op}")?;
        }
        Ok(())
    }
}

/// What the cluster looks like after a step, for reviewers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepState {
    /// Traffic Service -> the gateway Deployments it sends traffic to.
    pub services: BTreeMap<String, Vec<String>>,
    /// istiod -> how many namespaces get new pods injected by it.
    pub namespaces: BTreeMap<String, usize>,
    /// istiod (version) -> how many workloads run proxies of it.
    pub proxies: BTreeMap<String, usize>,
}

/// What a comparison of two states looks at: everything that decides traffic and injection.
/// Not compared, on purpose: who owns an object (a rolled-back gateway's Service stays
/// standalone), `keep` marks, the RBAC objects that grant a ServiceAccount (only whether one
/// does), the base chart's version and the CRDs (never downgraded).
fn canon(s: &Small) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (k, o) in &s.objects {
        match k.kind {
            Kind::Role | Kind::RoleBinding => {}
            _ => {
                m.insert(format!("object {k}"), format!("{:?}", o.body));
            }
        }
    }
    let bound: BTreeSet<String> = s
        .objects
        .iter()
        .filter_map(|(k, o)| match &o.body {
            Body::RoleBinding { service_account } => Some(format!(
                "{}/{service_account}",
                k.namespace.clone().unwrap_or_default()
            )),
            _ => None,
        })
        .collect();
    m.insert("bound service accounts".into(), format!("{bound:?}"));
    for ((ns, name), r) in &s.releases {
        let v = match &r.content {
            crate::plan::op::ReleaseContent::Base { default_revision } => {
                format!("base defaultRevision={default_revision}")
            }
            _ => format!("{} {}", r.chart.name(), r.version),
        };
        m.insert(format!("release {ns}/{name}"), v);
    }
    m.insert("operators".into(), format!("{:?}", s.operators));
    if let Some(sail) = &s.sail {
        m.insert("sail".into(), format!("{sail:?}"));
    }
    m
}

fn describe_difference(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> String {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("{k} is gone (was {v})")),
            Some(w) if w != v => out.push(format!("{k} is {w}, was {v}")),
            _ => {}
        }
    }
    for (k, w) in b {
        if !a.contains_key(k) {
            out.push(format!("{k} is left over ({w})"));
        }
    }
    out.truncate(4);
    out.join("; ")
}

impl Cluster {
    fn wait_holds(&self, w: &Wait) -> Result<(), String> {
        match w {
            Wait::Rollout {
                kind,
                name,
                namespace,
                ..
            } => {
                let key = Key::new(Kind::Deployment, Some(namespace), name);
                if *kind == crate::inventory::WorkloadKind::Deployment
                    && self.small.get(&key).is_some()
                {
                    return Ok(());
                }
                let key = Key::new(Kind::DaemonSet, Some(namespace), name);
                if *kind == crate::inventory::WorkloadKind::DaemonSet
                    && self.small.get(&key).is_some()
                {
                    return Ok(());
                }
                match self
                    .workload_at(*kind, name, namespace)
                    .map(|i| &self.workloads.items[i])
                {
                    Some(x) if x.on_delete => Err(format!(
                        "`kubectl rollout status` fails on {kind:?} {namespace}/{name}: it uses updateStrategy OnDelete"
                    )),
                    Some(_) => Ok(()),
                    None => Err(format!("{kind:?} {namespace}/{name} does not exist")),
                }
            }
            Wait::CrdsEstablished { selector } => match &self.small.crds {
                Some(c) if c.templated == (selector == "app.kubernetes.io/part-of=istio") => Ok(()),
                Some(_) => Err(format!(
                    "no CRD carries the label {selector} at this version: `kubectl wait` finds no matching resources"
                )),
                None => Err("there are no Istio CRDs".into()),
            },
            Wait::ServiceKept { service, namespace } => {
                match self
                    .small
                    .get(&Key::new(Kind::Service, Some(namespace), service))
                {
                    Some(o) if o.keep => Ok(()),
                    _ => Err(format!(
                        "Service {namespace}/{service} does not carry helm.sh/resource-policy: keep"
                    )),
                }
            }
            Wait::Selector {
                service,
                namespace,
                key,
                value,
            } => match self
                .small
                .get(&Key::new(Kind::Service, Some(namespace), service))
            {
                Some(Obj {
                    body: Body::Service { selector, .. },
                    ..
                }) if selector.get(key) == Some(value) => Ok(()),
                _ => Err(format!(
                    "the selector of Service {namespace}/{service} never has {key}={value}"
                )),
            },
            Wait::OperatorHealthy { name, namespace } => {
                match self
                    .small
                    .get(&Key::new(Kind::IstioOperator, Some(namespace), name))
                {
                    Some(_) => Ok(()),
                    None => Err(format!("IstioOperator {namespace}/{name} does not exist")),
                }
            }
            Wait::NamespaceLabel {
                namespace,
                key,
                value,
            } => {
                let n = self
                    .namespace_index(namespace)
                    .map(|i| &self.namespaces.items[i])
                    .ok_or_else(|| format!("namespace {namespace} does not exist"))?;
                let v = match key.as_str() {
                    "istio.io/rev" => n.rev.as_ref(),
                    "istio-injection" => n.injection.as_ref(),
                    _ => None,
                };
                if v == Some(value) {
                    Ok(())
                } else {
                    Err(format!("namespace {namespace} never has {key}={value}"))
                }
            }
            Wait::SailRevisionDeleted { revision, .. } => match &self.small.sail {
                Some(s) if s.revisions.contains_key(revision) => Err(format!(
                    "the Sail Operator never deletes IstioRevision `{revision}`: something still uses it, or the plan holds it"
                )),
                _ => Ok(()),
            },
            Wait::Tag {
                tag,
                namespace,
                revision,
            } => {
                let key = Key::new(
                    Kind::MutatingWebhook,
                    None,
                    &names::tag_webhook(tag, namespace),
                );
                let want = if revision == DEFAULT_REVISION {
                    names::istiod(None)
                } else {
                    names::istiod(Some(revision))
                };
                match self.small.get(&key) {
                    Some(Obj {
                        body: Body::Injector(s),
                        ..
                    }) if s.service == want => Ok(()),
                    _ => Err(format!("tag `{tag}` never points at `{revision}`")),
                }
            }
        }
    }

    /// The state summary reviewers read in PLAN.md.
    pub fn summary(&self) -> StepState {
        let mut namespaces: BTreeMap<String, usize> = BTreeMap::new();
        for ((rev, inj), n) in &self.ns_counts {
            let probe = super::state::Namespace {
                name: String::new(),
                rev: rev.clone(),
                injection: inj.clone(),
            };
            let who = match self.inject(&probe, &BTreeMap::new()) {
                Ok(Some(p)) => p.service,
                Ok(None) => "no sidecar".into(),
                Err(_) => "failing".into(),
            };
            *namespaces.entry(who).or_default() += n;
        }
        let mut proxies: BTreeMap<String, usize> = BTreeMap::new();
        for (p, n) in &self.proxy_counts {
            *proxies
                .entry(format!("{} ({})", p.service, p.version))
                .or_default() += n;
        }
        StepState {
            services: self.traffic_selection(),
            namespaces,
            proxies,
        }
    }

    fn new_violations(&self, opts: Checking, baseline: &BTreeSet<String>) -> Option<Violation> {
        self.violations(opts)
            .into_iter()
            .find(|v| !baseline.contains(&v.key))
    }
}

fn op_text(sh: &Shell, op: &Op) -> String {
    sh.op(op)
        .iter()
        .map(|c| c.text())
        .collect::<Vec<_>>()
        .join(" && ")
}

/// Runs `out` (the plan of cluster `c`) on the model; returns what reviewers see after each
/// step (shared between steps that leave the same), or the first failure.
pub fn check_cluster(
    c: &ClusterSpec,
    out: &ClusterOut,
    catalog: &Catalog,
) -> Result<Vec<Arc<StepState>>, Failure> {
    let mut m = Cluster::from_spec(c, catalog);
    let sh = Shell {
        context: c.context.as_deref(),
    };
    let baseline: BTreeSet<String> = m
        .violations(Checking {
            allow_proxy_ahead: true,
        })
        .into_iter()
        .map(|v| v.key)
        .collect();
    let mut states: Vec<Arc<StepState>> = Vec::with_capacity(out.steps.len());
    let fail = |step: &Step, op: Option<&Op>, during: &str, problem: String| Failure {
        cluster: c.name.clone(),
        step: step.id.clone(),
        operation: op.map(|o| op_text(&sh, o)),
        during: during.to_string(),
        problem,
    };
    let mut start = 0;
    while start < out.steps.len() {
        let hop = out.steps[start].hop;
        let end = out.steps[start..]
            .iter()
            .position(|s| s.hop != hop)
            .map_or(out.steps.len(), |p| start + p);
        let steps = &out.steps[start..end];
        let in_place = out.summary.hops[hop - 1].strategy == Strategy::InPlace;
        if c.remote_of().is_some() {
            // A remote's control plane is its primary's: while this hop runs, the primary runs
            // the hop's old and new istiod (in place: the upgraded one), both exposed.
            let h = &out.summary.hops[hop - 1];
            let svc = |label: &str| names::istiod((label != DEFAULT_REVISION).then_some(label));
            m.external.clear();
            if !in_place {
                m.external.insert(svc(&h.from_revision), h.from.clone());
            }
            m.external.insert(svc(&h.to_revision), h.to.clone());
        }
        let forward = Checking::default();
        let rollback = Checking {
            allow_proxy_ahead: in_place,
        };
        m.namespaces.begin_segment();
        m.workloads.begin_segment();
        let mut seg_canon = canon(&m.small);
        for (k, step) in steps.iter().enumerate() {
            let selection = m.traffic_selection();
            for op in &step.ops {
                m.apply(op, catalog)
                    .map_err(|e| fail(step, Some(op), "forward", e))?;
                if let Some(v) = m.new_violations(forward, &baseline) {
                    return Err(fail(step, Some(op), "forward", v.text));
                }
            }
            for w in &step.waits {
                m.wait_holds(w).map_err(|e| {
                    fail(step, None, "forward", format!("a wait can never pass: {e}"))
                })?;
            }
            if !step.traffic && m.traffic_selection() != selection {
                return Err(fail(
                    step,
                    None,
                    "forward",
                    format!(
                        "the step changes which gateway pods serve traffic ({:?} -> {:?}) but is not a traffic step",
                        selection,
                        m.traffic_selection()
                    ),
                ));
            }
            // Consecutive steps mostly leave the same state: it is shared, not copied.
            let now = m.summary();
            match states.last() {
                Some(last) if **last == now => states.push(Arc::clone(last)),
                _ => states.push(Arc::new(now)),
            }

            // The rollback from here, back to the previous checkpoint.
            let during = format!("rollback from `{}`", step.id);
            let kept = m.small.clone();
            m.namespaces.begin_trial();
            m.workloads.begin_trial();
            for op in &crate::plan::rollback::ops(steps, k) {
                m.apply(op, catalog)
                    .map_err(|e| fail(step, Some(op), &during, e))?;
                if let Some(v) = m.new_violations(rollback, &baseline) {
                    return Err(fail(step, Some(op), &during, v.text));
                }
            }
            let back = canon(&m.small);
            let mut problem = None;
            if back != seg_canon {
                problem = Some(describe_difference(&seg_canon, &back));
            } else if let Some(i) = m.namespaces.changed_since_segment().first() {
                problem = Some(format!(
                    "namespace {} is labelled {:?}, was {:?}",
                    m.namespaces.items[*i].name, m.namespaces.items[*i], m.namespaces.first[i]
                ));
            } else if let Some(i) = m.workloads.changed_since_segment().first() {
                let w = &m.workloads.items[*i];
                problem = Some(format!(
                    "{:?} {}/{} runs {:?}, ran {:?}",
                    w.kind,
                    m.namespaces.items[w.namespace].name,
                    w.name,
                    w.proxy,
                    m.workloads.first[i].proxy
                ));
            }
            if let Some(p) = problem {
                let target = step
                    .rollback_then
                    .as_deref()
                    .map_or("the start of the hop".to_string(), |t| {
                        format!("checkpoint `{t}`")
                    });
                return Err(fail(
                    step,
                    None,
                    &during,
                    format!("the rollback does not return the cluster to {target}: {p}"),
                ));
            }
            m.small = kept;
            m.revert_trial();
            if step.checkpoint {
                m.namespaces.begin_segment();
                m.workloads.begin_segment();
                // What later rollbacks must reach: this state after the step's restore prefix,
                // which its own rollback runs first; or, when its rollback restores only after
                // its undo brought the old control plane back, this state as it is.
                let kept = m.small.clone();
                m.namespaces.begin_trial();
                m.workloads.begin_trial();
                let prefix: &[Op] = if step.restore_after {
                    &[]
                } else {
                    &step.restore
                };
                for op in prefix {
                    m.apply(op, catalog)
                        .map_err(|e| fail(step, Some(op), "rollback", e))?;
                }
                seg_canon = canon(&m.small);
                m.small = kept;
                m.revert_trial();
            }
        }
        // A canary hop leaves nothing of the old revision behind.
        let h = &out.summary.hops[hop - 1];
        if h.strategy == Strategy::Canary
            && let Some(last) = steps.last()
        {
            let old = if h.from_revision == DEFAULT_REVISION {
                None
            } else {
                Some(h.from_revision.as_str())
            };
            let ns = &c.namespace;
            let route = (!c.serves().is_empty())
                .then(|| Key::new(Kind::VirtualService, Some(ns), &names::istiod_route(old)));
            for key in [
                Key::new(Kind::Deployment, Some(ns), &names::istiod(old)),
                Key::new(Kind::Service, Some(ns), &names::istiod(old)),
                Key::new(
                    Kind::MutatingWebhook,
                    None,
                    &names::injector_webhook(old, ns),
                ),
                Key::new(
                    Kind::ValidatingWebhook,
                    None,
                    &names::validator_webhook(old, ns),
                ),
            ]
            .into_iter()
            .chain(route)
            {
                if m.small.get(&key).is_some() {
                    return Err(fail(
                        last,
                        None,
                        "forward",
                        format!("{key} of the old revision is left behind"),
                    ));
                }
            }
        }
        start = end;
    }
    Ok(states)
}

/// A stage of a GitOps layout as the model checks its revert: the steps `first..=last` (indexes
/// into the cluster's steps) and the operations a revert of it amounts to, in an order a
/// controller may run them.
#[derive(Clone, Debug)]
pub struct StageRevert {
    pub name: String,
    pub first: usize,
    pub last: usize,
    pub ops: Vec<Op>,
}

/// Runs the plan forward and, at the end of each stage, the stage's revert: the invariants must
/// hold throughout, and the revert must return the cluster to where the stage started (which,
/// unlike a rollback's checkpoint, may be any step's end).
pub fn check_stage_reverts(
    c: &ClusterSpec,
    out: &ClusterOut,
    catalog: &Catalog,
    stages: &[StageRevert],
) -> Result<(), Failure> {
    let mut m = Cluster::from_spec(c, catalog);
    let sh = Shell {
        context: c.context.as_deref(),
    };
    let baseline: BTreeSet<String> = m
        .violations(Checking {
            allow_proxy_ahead: true,
        })
        .into_iter()
        .map(|v| v.key)
        .collect();
    let fail = |stage: &str, op: Option<&Op>, problem: String| Failure {
        cluster: c.name.clone(),
        step: stage.to_string(),
        operation: op.map(|o| op_text(&sh, o)),
        during: "the revert of the GitOps stage".to_string(),
        problem,
    };
    // What the cluster looked like where each revert must return (stages of an in-place hop
    // share the start of the hop's control-plane stage).
    let firsts: BTreeSet<usize> = stages.iter().map(|s| s.first).collect();
    type Snapshot = (
        BTreeMap<String, String>,
        Vec<super::state::Namespace>,
        Vec<super::state::Workload>,
    );
    let mut snaps: BTreeMap<usize, Snapshot> = BTreeMap::new();
    let mut hop = 0;
    for (i, step) in out.steps.iter().enumerate() {
        let in_place = out.summary.hops[step.hop - 1].strategy == Strategy::InPlace;
        if step.hop != hop {
            hop = step.hop;
            if c.remote_of().is_some() {
                let h = &out.summary.hops[hop - 1];
                let svc = |label: &str| names::istiod((label != DEFAULT_REVISION).then_some(label));
                m.external.clear();
                if !in_place {
                    m.external.insert(svc(&h.from_revision), h.from.clone());
                }
                m.external.insert(svc(&h.to_revision), h.to.clone());
            }
        }
        if firsts.contains(&i) {
            snaps.insert(
                i,
                (
                    canon(&m.small),
                    m.namespaces.items.clone(),
                    m.workloads.items.clone(),
                ),
            );
        }
        for op in &step.ops {
            m.apply(op, catalog)
                .map_err(|e| fail(&step.id, Some(op), format!("forward: {e}")))?;
        }
        for stage in stages.iter().filter(|s| s.last == i) {
            let Some((start_canon, start_ns, start_wl)) = snaps.get(&stage.first) else {
                continue;
            };
            let kept = m.small.clone();
            m.namespaces.begin_trial();
            m.workloads.begin_trial();
            let checking = Checking {
                allow_proxy_ahead: in_place,
            };
            for op in &stage.ops {
                m.apply(op, catalog)
                    .map_err(|e| fail(&stage.name, Some(op), e))?;
                if let Some(v) = m.new_violations(checking, &baseline) {
                    return Err(fail(&stage.name, Some(op), v.text));
                }
            }
            let back = canon(&m.small);
            let problem = if back != *start_canon {
                Some(describe_difference(start_canon, &back))
            } else if let Some((now, was)) = m
                .namespaces
                .items
                .iter()
                .zip(start_ns)
                .find(|(a, b)| a != b)
            {
                Some(format!(
                    "namespace {} is labelled {now:?}, was {was:?}",
                    now.name
                ))
            } else {
                m.workloads
                    .items
                    .iter()
                    .zip(start_wl)
                    .find(|(a, b)| a != b)
                    .map(|(now, was)| {
                        format!(
                            "{:?} {}/{} runs {:?}, ran {:?}",
                            now.kind,
                            m.namespaces.items[now.namespace].name,
                            now.name,
                            now.proxy,
                            was.proxy
                        )
                    })
            };
            if let Some(p) = problem {
                return Err(fail(
                    &stage.name,
                    None,
                    format!(
                        "reverting the stage does not return the cluster to where it started: {p}"
                    ),
                ));
            }
            m.small = kept;
            m.revert_trial();
        }
    }
    Ok(())
}
