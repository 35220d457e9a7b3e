//! The plan's steps grouped into stages, and the desired state after each stage.
//!
//! A stage is one step of the plan, except in the data plane, where a wave's steps (relabel its
//! namespaces, restart their workloads) are one stage: the controller applies Namespaces before
//! the workloads of a stage, and a wave is what a team promotes and reverts at once.
//!
//! Each operation either changes the desired state (a Helm release's chart and values, an
//! object, a partial of an object the plan does not own) or has no declarative form in the
//! layout and becomes a command a person runs before or after the stage syncs: pods deleted one
//! at a time, a label removed that someone else set, a revision tag moved, CRDs labelled for
//! adoption. Read-only checks and waits become what to confirm before promoting the next stage.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::inventory::{Layout, WorkloadKind};
use crate::plan::backend::running_releases;
use crate::plan::op::{Chart, LabelPatch, Op, REV_LABEL, RestartMethod};
use crate::plan::{ClusterOut, Phase, Step};
use crate::render::RenderError;
use crate::render::shell::Shell;
use crate::validate::ClusterSpec;
use crate::version::IstioVersion;

use super::GitopsSpec;

/// An object's identity in a stage: `kind` is the Kubernetes kind, or `Release` for a Helm
/// release.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl Key {
    fn new(kind: &str, namespace: &str, name: &str) -> Key {
        Key {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    pub fn describe(&self) -> String {
        let kind = if self.kind == RELEASE {
            "Helm release"
        } else {
            &self.kind
        };
        if self.namespace.is_empty() {
            format!("{kind} {}", self.name)
        } else {
            format!("{kind} {}/{}", self.namespace, self.name)
        }
    }
}

const RELEASE: &str = "Release";

#[derive(Clone, Debug, PartialEq)]
pub struct Release {
    pub name: String,
    pub namespace: String,
    pub chart: Chart,
    pub version: IstioVersion,
    pub values: Value,
    /// The chart's values.schema.json rejects its own defaults (istio/istio#57354).
    pub skip_schema: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Desired {
    Release(Release),
    /// A whole object the layout owns from then on (created, pruned, deleted by it).
    Object(Value),
    /// The fields the plan sets on an object it does not own (a Namespace's labels, a
    /// workload's pod-template annotations, a Service's selector).
    Partial(Value),
}

/// The desired state; objects are shared between the stages' states until a stage changes them.
pub type State = BTreeMap<Key, Arc<Desired>>;

/// One stage: what changes, what a person runs around it, what to confirm after it.
#[derive(Clone, Debug)]
pub struct Stage {
    /// `NNN-<name>`: the number orders the stages, the name says which steps it holds (never a
    /// version, so a version bump changes lines, not names).
    pub dir: String,
    pub title: String,
    pub steps: Vec<String>,
    /// Commands to run before promoting to this stage.
    pub before: Vec<String>,
    /// Commands to run once the stage has synced.
    pub after: Vec<String>,
    /// Commands whose result must hold before the next stage is promoted.
    pub checks: Vec<String>,
    /// What a person must confirm before promoting this stage (read-only steps folded into it).
    pub confirm_before: Vec<String>,
    /// What a person must confirm before the next stage is promoted.
    pub confirm: Vec<String>,
    /// Commands to run before reverting this stage: they put back what decides injection (a
    /// revision tag), so that the pods the revert restarts get the previous proxy.
    pub revert_before: Vec<String>,
    /// Commands to run after a revert of this stage has synced.
    pub revert: Vec<String>,
    /// What a person must know about reverting the stage.
    pub notes: Vec<String>,
    /// The desired state once the stage has synced.
    pub state: State,
}

type Read<'a> = dyn Fn(&str) -> Result<String, RenderError> + 'a;

/// Groups the cluster's steps into stages and computes the desired state after each.
pub fn build(
    c: &ClusterSpec,
    part: &ClusterOut,
    spec: &GitopsSpec,
    read: &Read<'_>,
) -> Result<Vec<Stage>, RenderError> {
    // First pass: what every object the plan touches looks like before the plan (it reads no
    // file: only what objects exist before matters).
    let mut first = Machine::new(c, spec, State::new(), &read);
    first.learning = true;
    for step in &part.steps {
        first.step(step)?;
    }
    let initial = first.initial;
    let mut m = Machine::new(c, spec, initial.clone(), &read);
    m.initial = initial.clone();
    let mut stages = vec![Stage {
        dir: "000-adopt".into(),
        title: "Adopt what runs today, unchanged".into(),
        steps: Vec::new(),
        before: Vec::new(),
        after: Vec::new(),
        checks: Vec::new(),
        confirm_before: Vec::new(),
        confirm: Vec::new(),
        revert_before: Vec::new(),
        revert: Vec::new(),
        notes: vec![
            "the first stage: it only takes over what already runs, at the values the inventory records; revert it by pointing the controller away (the adopted objects are kept)".into(),
        ],
        state: initial,
    }];
    let groups = group(&part.steps);
    // A stage must never change one object twice (the plan's two upgrades of one release, the
    // first marking what the second must keep): such a step is split where it happens.
    let mut parts: Vec<(String, String, Out, State)> = Vec::new();
    let mut pending = Out::default();
    // The hop of the steps pending, and the group that started them.
    let mut pending_from: Option<(usize, &Group)> = None;
    let mut part_hops: Vec<usize> = Vec::new();
    for g in &groups {
        let hop = g.steps[0].hop;
        if let Some((h, first)) = pending_from.filter(|(h, _)| *h != hop) {
            // A stage never spans two hops (its revert would have to undo the end of one and
            // the start of the next): what is pending stays with its own hop.
            let rest = std::mem::take(&mut pending);
            match parts.last_mut() {
                Some(last) if part_hops.last() == Some(&h) => last.2.append(rest),
                _ => {
                    parts.push((
                        first.name.clone(),
                        first.title.clone(),
                        rest,
                        m.state.clone(),
                    ));
                    part_hops.push(h);
                }
            }
            pending_from = None;
        }
        let mut out = Out::default();
        let mut keys: BTreeSet<Key> = BTreeSet::new();
        let mut split = 0;
        for step in &g.steps {
            out.steps.push(step.id.clone());
            for op in &step.ops {
                let ks = m.keys_of(op);
                if ks.iter().any(|k| keys.contains(k)) {
                    split += 1;
                    let name = format!("{}-{split}", g.name);
                    parts.push((
                        name,
                        g.title.clone(),
                        std::mem::take(&mut out),
                        m.state.clone(),
                    ));
                    part_hops.push(hop);
                    out.steps.push(step.id.clone());
                    keys.clear();
                }
                let e = m.op(op)?;
                out.effect(e);
                keys.extend(ks);
            }
            m.finish(step, &mut out);
        }
        // Beside kustomize stages every step is a stage of its own, commands only or not: a
        // person runs it all, and a stage's revert can only undo its commands in their order
        // when it holds one step (or one wave).
        if !out.changed && split == 0 && spec.layout != Layout::Kustomize {
            // Nothing declarative: what a person runs goes before the next stage.
            pending.absorb(out);
            pending_from.get_or_insert((hop, g));
            continue;
        }
        let name = if split > 0 {
            format!("{}-{}", g.name, split + 1)
        } else {
            g.name.clone()
        };
        let first = std::mem::take(&mut pending);
        if split > 0 {
            let at = parts.len() - split;
            parts[at].2.prepend(first);
        } else {
            out.prepend(first);
        }
        parts.push((name, g.title.clone(), out, m.state.clone()));
        part_hops.push(hop);
        pending_from = None;
    }
    let count = parts.len();
    for (i, (name, title, out, state)) in parts.into_iter().enumerate() {
        stages.push(Stage {
            dir: format!("{}-{name}", crate::plan::seq(i + 1, count.max(100))),
            title,
            steps: out.steps,
            before: out.before,
            after: out.after,
            checks: out.checks,
            confirm_before: out.confirm_before,
            confirm: out.confirm,
            revert_before: out.revert_before,
            revert: out.revert,
            notes: out.notes,
            state,
        });
    }
    let index: BTreeMap<&str, usize> = part
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let sh = Shell {
        context: c.context.as_deref(),
    };
    let text = |ops: &[Op]| -> Vec<String> {
        ops.iter()
            .flat_map(|o| sh.op(o))
            .map(|c| c.text())
            .collect()
    };
    // Each stage's first step, to find the stage that upgrades a hop's control plane.
    let starts: Vec<(usize, String)> = stages
        .iter()
        .skip(1)
        .filter_map(|st| {
            st.steps
                .iter()
                .filter_map(|id| index.get(id.as_str()).copied())
                .min()
                .map(|f| (f, st.dir.clone()))
        })
        .collect();
    for st in stages.iter_mut().skip(1) {
        let ix: Vec<usize> = st
            .steps
            .iter()
            .filter_map(|id| index.get(id.as_str()).copied())
            .collect();
        let (Some(&first), Some(&last)) = (ix.iter().min(), ix.iter().max()) else {
            continue;
        };
        match restore_around(part, first, last, spec.layout) {
            Around::Nothing => {}
            Around::Manual { before, after } => {
                st.revert_before.splice(0..0, text(&before));
                // The stage's own tag moves are in the restore too.
                let mut seen = BTreeSet::new();
                st.revert_before.retain(|c| seen.insert(c.clone()));
                st.revert.extend(text(&after));
                st.notes.push("the revert creates pods: the revision tags this hop moved go back first, so that they get the previous proxy, and forward again once it synced".into());
            }
            Around::NotAlone(why) => {
                let firsts: Vec<usize> = starts.iter().map(|(f, _)| *f).collect();
                let from = restore_stage_start(part, &firsts, first, last);
                // The stage before the one holding the restore's first step.
                let back_to = starts
                    .iter()
                    .filter(|(f, _)| *f < from)
                    .max_by_key(|(f, _)| *f)
                    .map_or_else(|| "000-adopt".to_string(), |(_, d)| d.clone());
                let again = text(&restart_again(part, from, last));
                // What the revert itself restarts by hand is restarted again anyway.
                st.revert.retain(|c| !again.contains(c));
                st.revert.extend(again);
                st.notes.push(match why {
                    NotAlone::InPlace => format!(
                        "this hop upgrades the control plane in place, so this stage is not reverted alone: revert the hop's stages from its control plane on at once, by pointing the controller at `{back_to}`; once that synced (istiod back at the previous version), run the commands under *after a revert*: they restart what these stages restarted, which the upgraded istiod may have injected while the revert ran"
                    ),
                    NotAlone::Tags => format!(
                        "the revert creates pods, which must get the previous proxy, but the revision tags this hop moved are in the istiod releases' values, and a controller does not order a Helm upgrade before the restarts of the same sync: so this stage is not reverted alone. Revert the hop's stages from its first tag move on at once, by pointing the controller at `{back_to}`; once that synced (every tag back at the previous revision), run the commands under *after a revert*: they restart what the revert restarted or recreated, which may have started before the tags moved back"
                    ),
                });
            }
        }
    }
    if let Some(last) = stages.last_mut() {
        last.after.extend(pending.before);
        last.after.extend(pending.after);
        last.after.extend(pending.checks);
        last.confirm.extend(pending.confirm_before);
        last.confirm.extend(pending.confirm);
        last.revert_before.extend(pending.revert_before);
        last.revert.splice(0..0, pending.revert);
    }
    Ok(stages)
}

/// "Data plane wave 1 of hop 2 (3 steps)" for `hop-02/50-data-plane/wave-01`.
fn wave_title(key: &str, steps: usize) -> String {
    let num = |p: &str, pre: &str| {
        p.strip_prefix(pre)
            .and_then(|n| n.parse::<usize>().ok())
            .map_or_else(|| p.to_string(), |n| n.to_string())
    };
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        [hop, _, wave] => format!(
            "Data plane wave {} of hop {} ({steps} steps)",
            num(wave, "wave-"),
            num(hop, "hop-")
        ),
        _ => format!("{key} ({steps} steps)"),
    }
}

/// Steps that become one stage.
struct Group<'a> {
    name: String,
    title: String,
    steps: Vec<&'a Step>,
    declarative: bool,
}

fn group(steps: &[Step]) -> Vec<Group<'_>> {
    let mut out: Vec<Group> = Vec::new();
    for s in steps {
        let rel = s.id.split_once('/').map_or(s.id.as_str(), |(_, r)| r);
        // A wave's step that upgrades releases (a revision tag moving through their values) is
        // a stage of its own: a controller cannot order a Helm upgrade before the restarts of
        // the same sync, and they must get the tag's new revision.
        let upgrades = s.ops.iter().any(|o| matches!(o, Op::HelmUpgrade(_)));
        let key = match (s.phase, rel.split('/').collect::<Vec<_>>().as_slice()) {
            (Phase::DataPlane, [hop, phase, wave, ..])
                if wave.starts_with("wave-") && !upgrades =>
            {
                format!("{hop}/{phase}/{wave}")
            }
            _ => rel.to_string(),
        };
        let name = key.replace('/', "-");
        let declarative = !s.ops.iter().all(|o| matches!(o, Op::Probe { .. }));
        match out.last_mut() {
            Some(g) if g.name == name => {
                g.steps.push(s);
                g.declarative |= declarative;
                g.title = wave_title(&key, g.steps.len());
            }
            _ => out.push(Group {
                name,
                title: s.title.clone(),
                steps: vec![s],
                declarative,
            }),
        }
    }
    out
}

/// What a stage collects from its operations.
#[derive(Default)]
struct Out {
    changed: bool,
    steps: Vec<String>,
    before: Vec<String>,
    after: Vec<String>,
    checks: Vec<String>,
    confirm_before: Vec<String>,
    confirm: Vec<String>,
    revert_before: Vec<String>,
    revert: Vec<String>,
    notes: Vec<String>,
}

impl Out {
    fn effect(&mut self, e: Effect) {
        // A command after anything the stage changes runs once it has synced.
        let manual = if (self.changed && !e.before) || e.after {
            &mut self.after
        } else {
            &mut self.before
        };
        manual.extend(e.manual);
        self.checks.extend(e.checks);
        self.changed |= e.changed;
    }

    /// Steps with nothing declarative, folded into the stage that follows.
    fn absorb(&mut self, o: Out) {
        self.before.extend(o.before);
        self.before.extend(o.after);
        self.before.extend(o.checks);
        // What they ask to confirm holds before the stage they are folded into.
        self.confirm_before.extend(o.confirm_before);
        self.confirm_before.extend(o.confirm);
        self.revert_before.splice(0..0, o.revert_before);
        self.revert.splice(0..0, o.revert);
        self.notes.extend(o.notes);
        self.steps.extend(o.steps);
    }

    /// Steps with nothing declarative at the end of a hop: run once the stage has synced.
    fn append(&mut self, o: Out) {
        self.after.extend(o.before);
        self.after.extend(o.after);
        self.after.extend(o.checks);
        self.confirm.extend(o.confirm_before);
        self.confirm.extend(o.confirm);
        self.revert_before.splice(0..0, o.revert_before);
        self.revert.splice(0..0, o.revert);
        self.notes.extend(o.notes);
        self.steps.extend(o.steps);
    }

    fn prepend(&mut self, o: Out) {
        self.before.splice(0..0, o.before);
        self.confirm_before.splice(0..0, o.confirm_before);
        self.confirm.splice(0..0, o.confirm);
        self.revert_before.extend(o.revert_before);
        self.revert.extend(o.revert);
        self.notes.splice(0..0, o.notes);
        self.steps.splice(0..0, o.steps);
    }
}

/// Executes operations on the desired state.
struct Machine<'a> {
    c: &'a ClusterSpec,
    layout: Layout,
    sh: Shell<'a>,
    read: &'a Read<'a>,
    /// The first pass: only what every object looked like before the plan is learnt.
    learning: bool,
    running: BTreeMap<Key, Release>,
    /// Every touched object as it was before the plan touched it.
    initial: State,
    touched: BTreeSet<Key>,
    state: State,
}

impl<'a> Machine<'a> {
    fn new(c: &'a ClusterSpec, spec: &GitopsSpec, state: State, read: &'a Read<'a>) -> Self {
        let running = running_releases(c)
            .into_iter()
            .map(|r| {
                (
                    Key::new(RELEASE, &r.namespace, &r.release),
                    Release {
                        skip_schema: r.chart == Chart::Gateway
                            && crate::chart_facts::gateway_schema_rejects_values(&r.version),
                        name: r.release,
                        namespace: r.namespace,
                        chart: r.chart,
                        version: r.version,
                        values: r.values,
                    },
                )
            })
            .collect();
        Machine {
            c,
            layout: spec.layout,
            sh: Shell {
                context: c.context.as_deref(),
            },
            read,
            learning: false,
            running,
            initial: State::new(),
            touched: BTreeSet::new(),
            state,
        }
    }

    fn commands(&self, op: &Op) -> Vec<String> {
        self.sh.op(op).iter().map(|c| c.text()).collect()
    }

    /// Records what `key` was before the plan first touched it (`before`: `None` when it did
    /// not exist), and puts it into the state.
    fn touch(&mut self, key: &Key, before: impl FnOnce(&Self) -> Option<Desired>) {
        if !self.touched.insert(key.clone()) {
            return;
        }
        if self.state.contains_key(key) {
            return;
        }
        if let Some(d) = before(self) {
            let d = Arc::new(d);
            self.initial.insert(key.clone(), Arc::clone(&d));
            self.state.insert(key.clone(), d);
        }
    }

    /// Runs a whole step (the first pass, which only learns what the plan touches).
    fn step(&mut self, step: &Step) -> Result<(), RenderError> {
        for op in &step.ops {
            self.op(op)?;
        }
        Ok(())
    }

    /// What the stage holding `step` must confirm after it, and how a revert of it goes.
    fn finish(&self, step: &Step, out: &mut Out) {
        for w in &step.waits {
            out.checks.push(self.sh.wait(w).text());
        }
        out.confirm.extend(step.confirm.iter().cloned());
        let (mut before, mut after) = (Vec::new(), Vec::new());
        for op in &step.undo {
            match self.manual_undo(op) {
                Some(Revert::Before) => before.extend(self.commands(op)),
                Some(Revert::After) => after.extend(self.commands(op)),
                None => {}
            }
        }
        // Steps are reverted last first.
        out.revert_before.splice(0..0, before);
        out.revert.splice(0..0, after);
        // A read-only step folded into a stage that changes something has nothing to say
        // about reverting it ("nothing to undo" would read as the stage's).
        let read_only = step.ops.iter().all(|o| matches!(o, Op::Probe { .. }));
        if let Some(n) = &step.undo_note
            && !(read_only && self.layout != Layout::Kustomize)
        {
            out.notes.push(n.clone());
        }
    }

    /// The objects `op` changes.
    fn keys_of(&self, op: &Op) -> Vec<Key> {
        let kustomize = self.layout == Layout::Kustomize;
        match op {
            // Helm commands beside kustomize stages change no object of theirs.
            Op::HelmUpgrade(_) | Op::HelmUninstall { .. } if kustomize => Vec::new(),
            Op::HelmUpgrade(h) => vec![Key::new(RELEASE, &h.namespace, &h.release)],
            Op::HelmUninstall { release, namespace } => {
                vec![Key::new(RELEASE, namespace, release)]
            }
            Op::PatchSelector {
                service, namespace, ..
            } => vec![Key::new("Service", namespace, service)],
            Op::LabelNamespace { namespace, .. } => vec![Key::new("Namespace", "", namespace)],
            Op::LabelGateway {
                name, namespace, ..
            } => vec![Key::new("Gateway", namespace, name)],
            Op::Restart {
                kind,
                name,
                namespace,
                ..
            } => vec![Key::new(kind_name(*kind), namespace, name)],
            _ => Vec::new(),
        }
    }

    fn manual_undo(&self, op: &Op) -> Option<Revert> {
        manual_undo(self.layout, op)
    }

    fn op(&mut self, op: &Op) -> Result<Effect, RenderError> {
        let kustomize = self.layout == Layout::Kustomize;
        Ok(match op {
            Op::Probe { .. } => Effect {
                checks: self.commands(op),
                ..Effect::default()
            },
            Op::HelmUpgrade(_) | Op::HelmUninstall { .. } | Op::ApplyCrds { .. } if kustomize => {
                Effect::manual(self.commands(op))
            }
            // The base release applies the CRDs (Flux: `crds: CreateReplace`; Argo CD applies
            // the chart's crds/ directory).
            Op::ApplyCrds { .. } => Effect::default(),
            Op::HelmUpgrade(h) => {
                let key = Key::new(RELEASE, &h.namespace, &h.release);
                self.touch(&key, |m| m.running.get(&key).cloned().map(Desired::Release));
                if self.learning {
                    return Ok(Effect::CHANGED);
                }
                let file = yaml_docs(&(self.read)(&h.values)?, &h.values)?;
                let given = file.into_iter().next().unwrap_or(Value::Null);
                let values = match (h.reuse_values, self.state.get(&key).map(|d| &**d)) {
                    (true, Some(Desired::Release(r))) => {
                        let mut v = r.values.clone();
                        merge(&mut v, &given);
                        v
                    }
                    _ => given,
                };
                self.state.insert(
                    key,
                    Arc::new(Desired::Release(Release {
                        name: h.release.clone(),
                        namespace: h.namespace.clone(),
                        chart: h.chart,
                        version: h.version.clone(),
                        values,
                        skip_schema: h.skip_schema_validation,
                    })),
                );
                Effect::CHANGED
            }
            Op::HelmUninstall { release, namespace } => {
                let key = Key::new(RELEASE, namespace, release);
                self.touch(&key, |m| m.running.get(&key).cloned().map(Desired::Release));
                self.state.remove(&key);
                Effect::CHANGED
            }
            Op::Apply { file, .. } => {
                if self.learning {
                    return Ok(Effect::CHANGED);
                }
                for doc in yaml_docs(&(self.read)(file)?, file)? {
                    let key = key_of(&doc);
                    self.touch(&key, |_| None);
                    self.state.insert(key, Arc::new(Desired::Object(doc)));
                }
                Effect::CHANGED
            }
            Op::PatchSelector {
                service,
                namespace,
                patch,
                ..
            } => {
                let key = Key::new("Service", namespace, service);
                self.touch(&key, |m| {
                    // The whole Service as the inventory records it, as the plan writes it once
                    // it owns it: the adopted fields stay co-owned, so no later stage or revert
                    // strips a port or an annotation.
                    let gi = m.c.gateways.iter().position(|g| {
                        g.gateway.namespace == *namespace
                            && g.service().is_some_and(|s| s.name == *service)
                    });
                    let obj = gi.and_then(|gi| {
                        let g = &m.c.gateways[gi];
                        crate::plan::state::service_spec(g).map(|spec| {
                            let sel = crate::plan::state::running_selector(g);
                            service_object(&crate::plan::phases::cleanup::service_data(
                                m.c, gi, &spec, &sel,
                            ))
                        })
                    });
                    Some(Desired::Partial(obj.unwrap_or_else(|| {
                        json!({
                            "apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": service, "namespace": namespace},
                            "spec": {"selector": {}},
                        })
                    })))
                });
                // A Service's selector is an atomic map: the partial always holds all of it,
                // so a key it drops is removed.
                let obj = self.object_mut(&key);
                let sel = path_mut(obj, &["spec", "selector"]);
                apply_labels(sel, patch);
                Effect::CHANGED
            }
            Op::LabelNamespace {
                namespace, patch, ..
            } => {
                let key = Key::new("Namespace", "", namespace);
                self.touch(&key, |m| {
                    let labels =
                        m.c.namespaces
                            .iter()
                            .find(|n| n.namespace.name == *namespace)
                            .map(|n| {
                                let mut l = Map::new();
                                if let Some(r) = &n.namespace.revision {
                                    l.insert(REV_LABEL.into(), json!(r));
                                }
                                if let Some(i) = &n.namespace.istio_injection {
                                    l.insert(crate::plan::op::INJECTION_LABEL.into(), json!(i));
                                }
                                l
                            })
                            .unwrap_or_default();
                    Some(Desired::Partial(json!({
                        "apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": namespace, "labels": labels},
                    })))
                });
                self.label(&key, patch, op)
            }
            Op::LabelGateway {
                name,
                namespace,
                revision,
            } => {
                let key = Key::new("Gateway", namespace, name);
                self.touch(&key, |m| {
                    let rev =
                        m.c.namespaces
                            .iter()
                            .filter(|n| n.namespace.name == *namespace)
                            .flat_map(|n| &n.namespace.gateway_api)
                            .find(|g| g.name == *name)
                            .and_then(|g| g.revision.clone());
                    let mut labels = Map::new();
                    if let Some(r) = rev {
                        labels.insert(REV_LABEL.into(), json!(r));
                    }
                    Some(Desired::Partial(json!({
                        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                        "metadata": {"name": name, "namespace": namespace, "labels": labels},
                    })))
                });
                let patch: LabelPatch = [(REV_LABEL.to_string(), revision.clone())].into();
                self.label(&key, &patch, op)
            }
            Op::Restart {
                kind,
                name,
                namespace,
                method: RestartMethod::TemplatePatch,
                file: Some(file),
            } => {
                let key = Key::new(kind_name(*kind), namespace, name);
                self.touch(&key, |_| {
                    Some(Desired::Partial(json!({
                        "apiVersion": "apps/v1", "kind": kind_name(*kind),
                        "metadata": {"name": name, "namespace": namespace},
                    })))
                });
                if self.learning {
                    return Ok(Effect::CHANGED);
                }
                let doc = yaml_docs(&(self.read)(file)?, file)?
                    .into_iter()
                    .next()
                    .unwrap_or(Value::Null);
                let ann = doc
                    .pointer("/spec/template/metadata/annotations")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                let obj = self.object_mut(&key);
                *path_mut(obj, &["spec", "template", "metadata", "annotations"]) = ann;
                Effect::CHANGED
            }
            Op::Delete { objects } => {
                let keys: Vec<Key> = objects
                    .iter()
                    .filter_map(|o| {
                        self.state.keys().find(|k| {
                            k.kind.eq_ignore_ascii_case(&o.kind)
                                && k.name == o.name
                                && k.namespace == o.namespace.clone().unwrap_or_default()
                        })
                    })
                    .cloned()
                    .collect();
                let owned = keys.len() == objects.len()
                    && keys.iter().all(|k| {
                        matches!(self.state.get(k).map(|d| &**d), Some(Desired::Object(_)))
                    });
                if owned && !kustomize {
                    for k in keys {
                        self.state.remove(&k);
                    }
                    Effect::CHANGED
                } else if kustomize {
                    Effect::manual(self.commands(op))
                } else {
                    // What a release leaves behind (kept webhooks and Services) is deleted once
                    // the controller removed the release: before, Argo CD's self-heal would
                    // put it back, and then leave it (its keep mark says `Delete=false`).
                    Effect {
                        after: true,
                        ..Effect::manual(self.commands(op))
                    }
                }
            }
            _ => Effect::manual(self.commands(op)),
        })
    }

    /// Sets and removes labels in a partial. A label someone else set before the plan cannot
    /// be removed by omitting it (server-side apply keeps a field another manager owns): the
    /// plan's own patch command does that, before the stage.
    fn label(&mut self, key: &Key, patch: &LabelPatch, op: &Op) -> Effect {
        let foreign = patch.iter().any(|(k, v)| {
            v.is_none()
                && matches!(self.initial.get(key).map(|d| &**d), Some(Desired::Partial(o))
                    if o.pointer(&format!("/metadata/labels/{}", patch::escape(k))).is_some())
        });
        let obj = self.object_mut(key);
        apply_labels(path_mut(obj, &["metadata", "labels"]), patch);
        Effect {
            changed: true,
            // Run before the stage, which then sets the same labels.
            manual: if foreign {
                self.commands(op)
            } else {
                Vec::new()
            },
            before: true,
            after: false,
            checks: Vec::new(),
        }
    }

    fn object_mut(&mut self, key: &Key) -> &mut Value {
        let d = self
            .state
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Desired::Partial(json!({}))));
        match Arc::make_mut(d) {
            Desired::Object(v) | Desired::Partial(v) => v,
            Desired::Release(_) => unreachable!("a release key never names an object"),
        }
    }
}

use super::patch;

/// Whether reverting a stage leaves `op` (one of its steps' undo operations) to a person, and
/// when.
fn manual_undo(layout: Layout, op: &Op) -> Option<Revert> {
    let kustomize = layout == Layout::Kustomize;
    match op {
        // Beside kustomize stages the helm commands ran before the stage they belong to: they
        // are undone after the revert, once nothing the stage applied needs them.
        Op::HelmUpgrade(_) | Op::HelmUninstall { .. } | Op::ApplyCrds { .. } => {
            kustomize.then_some(Revert::After)
        }
        // A revert of a kustomize stage applies the previous one, which deletes nothing; a
        // revision tag's Service (1.28+) is no object of the stages, and was kept.
        Op::Delete { objects } => {
            (kustomize || objects.iter().any(|o| o.kind == "service")).then_some(Revert::After)
        }
        Op::Apply { .. }
        | Op::PatchSelector { .. }
        | Op::LabelNamespace { .. }
        | Op::LabelGateway { .. }
        | Op::Probe { .. } => None,
        Op::Restart { method, .. } => {
            (*method == RestartMethod::DeletePods).then_some(Revert::After)
        }
        // A revision tag moved back before the revert restarts anything.
        _ => Some(Revert::Before),
    }
}

/// Each stage's revert as the model runs it: the undo commands a person runs first, then what
/// the controller applies (the stage's steps' undo operations, last step first) in the order
/// most likely to hurt (labels, selectors and tags set back, then workloads restarted, then
/// releases and objects), then the commands a person runs after. Stages that split one step are
/// reverted together.
pub fn reverts(
    part: &ClusterOut,
    stages: &[Stage],
    layout: Layout,
) -> Vec<crate::model::StageRevert> {
    let index: BTreeMap<&str, usize> = part
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut out: Vec<crate::model::StageRevert> = Vec::new();
    for st in stages.iter().skip(1) {
        let ix: Vec<usize> = st
            .steps
            .iter()
            .filter_map(|id| index.get(id.as_str()).copied())
            .collect();
        let (Some(&first), Some(&last)) = (ix.iter().min(), ix.iter().max()) else {
            continue;
        };
        match out.last_mut() {
            // The second half of a split step: one revert for both.
            Some(prev) if prev.last >= first => {
                prev.last = prev.last.max(last);
                prev.name = st.dir.clone();
            }
            _ => out.push(crate::model::StageRevert {
                name: st.dir.clone(),
                first,
                last,
                ops: Vec::new(),
            }),
        }
    }
    let starts: Vec<usize> = out.iter().map(|r| r.first).collect();
    for r in &mut out {
        let (around_before, around_after, from) =
            match restore_around(part, r.first, r.last, layout) {
                Around::Manual { before, after } => (before, after, r.first),
                Around::Nothing => (Vec::new(), Vec::new(), r.first),
                // In place, or with tags in the releases' values: the hop's stages from the
                // restore's first step on are reverted at once, then what they restarted or
                // recreated restarts again, onto the previous istiod.
                Around::NotAlone(_) => {
                    let from = restore_stage_start(part, &starts, r.first, r.last);
                    (Vec::new(), restart_again(part, from, r.last), from)
                }
            };
        let (mut before, mut after) = (Vec::new(), Vec::new());
        let mut declarative: Vec<(u8, Op)> = Vec::new();
        for step in part.steps[from..=r.last].iter().rev() {
            for op in &step.undo {
                match manual_undo(layout, op) {
                    Some(Revert::Before) => before.push(op.clone()),
                    Some(Revert::After) => after.push(op.clone()),
                    None => {
                        let class = match op {
                            Op::Probe { .. } => continue,
                            Op::LabelNamespace { .. }
                            | Op::PatchSelector { .. }
                            | Op::LabelGateway { .. } => 0,
                            Op::Restart { .. } => 1,
                            _ => 2,
                        };
                        declarative.push((class, op.clone()));
                    }
                }
            }
        }
        declarative.sort_by_key(|(c, _)| *c);
        after.retain(|o| !around_after.contains(o));
        r.first = from;
        r.ops = crate::plan::op::drop_repeated_setters(
            around_before
                .into_iter()
                .chain(before)
                .chain(declarative.into_iter().map(|(_, o)| o))
                .chain(after)
                .chain(around_after)
                .collect(),
        );
    }
    out
}

/// The first step of the stage that holds the first step of `first`'s hop the restore of step
/// `last` undoes: in place, the control plane (its undo is the restore's); with tags in the
/// releases' values, the first tag move (`starts`: each stage's first step).
fn restore_stage_start(part: &ClusterOut, starts: &[usize], first: usize, last: usize) -> usize {
    let hop = part.steps[first].hop;
    let restore = &part.steps[last].restore;
    let tags = restore.iter().any(crate::plan::rollback::moves_tags);
    let step = part
        .steps
        .iter()
        .position(|s| {
            s.hop == hop
                && if tags {
                    s.ops.iter().any(crate::plan::rollback::moves_tags)
                        && s.waits
                            .iter()
                            .any(|w| matches!(w, crate::plan::op::Wait::Tag { .. }))
                } else {
                    s.undo.iter().any(|o| restore.contains(o))
                }
        })
        .unwrap_or(first)
        .min(first);
    starts
        .iter()
        .copied()
        .filter(|s| *s <= step)
        .max()
        .unwrap_or(step)
}

/// What the steps `from..=last` restarted, or their revert recreates, restarted again: the
/// gateways upgraded or reinstalled and the workloads (`kubectl rollout restart`; pods of
/// `OnDelete` workloads deleted one at a time).
fn restart_again(part: &ClusterOut, from: usize, last: usize) -> Vec<Op> {
    let mut out: Vec<Op> = Vec::new();
    let gateway = |op: &Op| match op {
        Op::HelmUpgrade(h) => match &h.content {
            crate::plan::op::ReleaseContent::Gateway(g) => Some(Op::RolloutRestart {
                kind: WorkloadKind::Deployment,
                name: g.name.clone(),
                namespace: g.namespace.clone(),
            }),
            _ => None,
        },
        _ => None,
    };
    for s in &part.steps[from..=last] {
        let forward = s.ops.iter().filter_map(|op| match op {
            Op::Restart {
                kind,
                name,
                namespace,
                method: RestartMethod::TemplatePatch,
                ..
            } => Some(Op::RolloutRestart {
                kind: *kind,
                name: name.clone(),
                namespace: namespace.clone(),
            }),
            Op::Restart { .. } => Some(op.clone()),
            _ => gateway(op),
        });
        // A gateway the revert reinstalls (cleanup removed it) is created while it runs too.
        let recreated = s.undo.iter().filter_map(gateway);
        for op in forward.chain(recreated).collect::<Vec<_>>() {
            if !out.contains(&op) {
                out.push(op);
            }
        }
    }
    out
}

/// What a stage's revert needs around it.
enum Around {
    Nothing,
    /// Put back what decides injection hop-wide (revision tags) before the revert, so that the
    /// pods it creates get the previous proxy, and set it forward again after.
    Manual {
        before: Vec<Op>,
        after: Vec<Op>,
    },
    /// The controller owns what must be put back first: the stage is reverted only with every
    /// stage of the hop from the first one the restore undoes.
    NotAlone(NotAlone),
}

/// Why a stage is not reverted alone.
#[derive(Clone, Copy)]
enum NotAlone {
    /// The hop upgrades the control plane in place.
    InPlace,
    /// The hop moved revision tags through the istiod releases' values.
    Tags,
}

fn restore_around(part: &ClusterOut, first: usize, last: usize, layout: Layout) -> Around {
    // What the plan's rollback from the stage's last step puts back first: everything of the
    // hop changed before that step that decides injection, the stage's own steps included.
    let step = &part.steps[last];
    let restore = &step.restore;
    // Only pods a revert creates are injected (gateways reinstalled, workloads restarted).
    let creates_pods = part.steps[first..=last]
        .iter()
        .flat_map(|s| &s.undo)
        .any(|o| match o {
            Op::HelmUpgrade(h) => matches!(h.content, crate::plan::op::ReleaseContent::Gateway(_)),
            Op::Restart { .. } => true,
            _ => false,
        });
    if restore.is_empty() || !creates_pods {
        return Around::Nothing;
    }
    // The restore must wait for the old control plane the stage's revert brings back, or it
    // is the control plane itself (in place), which the controller owns.
    // (A tag's restore may delete the tag's standalone Service: a command, like the tag move.)
    let controller_owned = |o: &Op| {
        matches!(o, Op::HelmUpgrade(_) | Op::HelmUninstall { .. })
            && manual_undo(layout, o).is_none()
    };
    if step.restore_after || restore.iter().any(controller_owned) {
        // Tags in the releases' values; in place, the restore is the control plane's undo.
        let tags = restore.iter().any(crate::plan::rollback::moves_tags);
        return Around::NotAlone(if tags {
            NotAlone::Tags
        } else {
            NotAlone::InPlace
        });
    }
    // Set forward again what was changed before the stage, in the order it went forward (the
    // restore's reverse); what the stage itself changed stays undone, as its start had it.
    let after = restore
        .iter()
        .rev()
        .filter_map(|r| {
            let target = r.setter_target()?;
            part.steps[..first]
                .iter()
                .flat_map(|s| &s.ops)
                .rfind(|o| o.setter_target().as_ref() == Some(&target))
                .cloned()
        })
        .collect();
    Around::Manual {
        before: restore.clone(),
        after,
    }
}

/// When a person runs an undo command around a revert.
enum Revert {
    Before,
    After,
}

/// What an operation does to a stage: changes the desired state, and/or leaves commands to a
/// person (before the stage when nothing of it was changed yet), and/or adds checks.
#[derive(Default)]
struct Effect {
    changed: bool,
    manual: Vec<String>,
    /// The commands must run before the stage, wherever the operation is in it.
    before: bool,
    /// The commands must run once the stage has synced, wherever the operation is in it.
    after: bool,
    checks: Vec<String>,
}

impl Effect {
    const CHANGED: Effect = Effect {
        changed: true,
        manual: Vec::new(),
        before: false,
        after: false,
        checks: Vec::new(),
    };

    fn manual(cmds: Vec<String>) -> Effect {
        Effect {
            manual: cmds,
            ..Effect::default()
        }
    }
}

/// The Service `service.yaml.j2` renders from `data`.
fn service_object(data: &Value) -> Value {
    let mut meta = json!({"name": data["name"], "namespace": data["namespace"]});
    for k in ["labels", "annotations"] {
        if data[k].as_object().is_some_and(|m| !m.is_empty()) {
            meta[k] = data[k].clone();
        }
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": data["spec"]})
}

fn kind_name(k: WorkloadKind) -> &'static str {
    match k {
        WorkloadKind::Deployment => "Deployment",
        WorkloadKind::StatefulSet => "StatefulSet",
        WorkloadKind::DaemonSet => "DaemonSet",
    }
}

fn key_of(doc: &Value) -> Key {
    let s = |p: &str| doc.pointer(p).and_then(Value::as_str).unwrap_or("");
    Key::new(s("/kind"), s("/metadata/namespace"), s("/metadata/name"))
}

fn apply_labels(map: &mut Value, patch: &LabelPatch) {
    if !map.is_object() {
        *map = json!({});
    }
    let m = map.as_object_mut().expect("made an object above");
    for (k, v) in patch {
        match v {
            Some(v) => m.insert(k.clone(), json!(v)),
            None => m.remove(k),
        };
    }
}

/// The value at `path`, created as an empty map where missing.
fn path_mut<'v>(v: &'v mut Value, path: &[&str]) -> &'v mut Value {
    let mut cur = v;
    for p in path {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .expect("made an object above")
            .entry(p.to_string())
            .or_insert_with(|| json!({}));
    }
    cur
}

/// Helm's merge of `--reuse-values` with a values file: maps merge key by key, anything else
/// replaces, and a null removes the key.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(bv) = b.get_mut(k) {
                    merge(bv, v);
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The documents of a file meshplan rendered (comments dropped).
fn yaml_docs(text: &str, path: &str) -> Result<Vec<Value>, RenderError> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(doc).map_err(|e| RenderError {
            template: String::new(),
            file: path.to_string(),
            message: format!("a rendered file does not read back as YAML: {e}"),
        })?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_helms_reuse_values() {
        let mut v = json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
        merge(&mut v, &json!({"a": {"c": [3], "e": true}, "d": null}));
        assert_eq!(v, json!({"a": {"b": 1, "c": [3], "e": true}}));
    }

    #[test]
    fn data_plane_steps_of_a_wave_are_one_stage() {
        let mk = |id: &str, phase| {
            let mut s = crate::plan::Step {
                id: id.into(),
                cluster: "c".into(),
                hop: 1,
                phase,
                title: id.into(),
                why: "".into(),
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
            };
            s.ops.push(Op::Delete {
                objects: Vec::new(),
            });
            s
        };
        let steps = vec![
            mk("c/hop-01/40-traffic/gw/switch", Phase::Traffic),
            mk(
                "c/hop-01/50-data-plane/wave-01/ns/namespace",
                Phase::DataPlane,
            ),
            mk(
                "c/hop-01/50-data-plane/wave-01/ns/deployment-a",
                Phase::DataPlane,
            ),
            mk(
                "c/hop-01/50-data-plane/wave-02/ns2/namespace",
                Phase::DataPlane,
            ),
            mk("c/hop-01/90-cleanup/remove-old-istiod", Phase::Cleanup),
        ];
        let names: Vec<String> = group(&steps).into_iter().map(|g| g.name).collect();
        assert_eq!(
            names,
            [
                "hop-01-40-traffic-gw-switch",
                "hop-01-50-data-plane-wave-01",
                "hop-01-50-data-plane-wave-02",
                "hop-01-90-cleanup-remove-old-istiod"
            ]
        );
    }
}

#[cfg(test)]
mod revert_tests {
    use super::*;
    use crate::catalog::Catalog;

    const MESH: &str = "apiVersion: meshplan.dev/v1alpha1
kind: MeshInventory
name: m
clusters:
  - name: c
    kubernetesVersion: \"1.28\"
    istio: {version: 1.19.6, revision: 1-19, tags: [prod-stable]}
    gateways:
      - name: istio-ingressgateway
        kind: ingress
        namespace: istio-ingress
        revision: prod-stable
        service:
          name: istio-ingressgateway
          ports: [{name: http2, port: 80, targetPort: 8080}]
    namespaces:
      - name: shop
        revision: prod-stable
        workloads: [{kind: Deployment, name: web}]
";

    fn stage(out: &ClusterOut, suffix: &str) -> Stage {
        let id = out
            .steps
            .iter()
            .find(|s| s.id.ends_with(suffix))
            .unwrap_or_else(|| panic!("no step {suffix}"))
            .id
            .clone();
        Stage {
            dir: suffix.replace('/', "-"),
            title: String::new(),
            steps: vec![id],
            before: Vec::new(),
            after: Vec::new(),
            checks: Vec::new(),
            confirm_before: Vec::new(),
            confirm: Vec::new(),
            revert_before: Vec::new(),
            revert: Vec::new(),
            notes: Vec::new(),
            state: State::new(),
        }
    }

    #[test]
    fn reverting_a_gateway_removal_puts_the_tags_back_around_it() {
        let (c, out) = crate::model::tests::cluster(MESH, "1.20.8");
        let catalog = Catalog::embedded();
        // The first stage (000-adopt) has no revert of its own.
        let removal = stage(&out, "istio-ingressgateway/remove-old");
        let stages = [removal.clone(), removal];
        let stages = &stages[..];
        let good = reverts(&out, stages, Layout::Flux);
        assert_eq!(good.len(), 1);
        assert!(
            good[0].ops.iter().any(|o| matches!(o, Op::SetTag { .. })),
            "{:?}",
            good[0].ops
        );
        crate::model::check_stage_reverts(&c, &out, &catalog, &good).unwrap();
        // Without the tags moved back first, the reinstalled old gateway comes up with the new
        // proxy, and the revert does not return to where the stage started.
        let mut bad = good.clone();
        bad[0].ops.retain(|o| !matches!(o, Op::SetTag { .. }));
        let e = crate::model::check_stage_reverts(&c, &out, &catalog, &bad).unwrap_err();
        assert!(e.problem.contains("does not return"), "{e}");
    }

    #[test]
    fn an_in_place_hop_is_reverted_past_its_control_plane_then_restarted_again() {
        let mesh = "apiVersion: meshplan.dev/v1alpha1
kind: MeshInventory
name: m
clusters:
  - name: c
    kubernetesVersion: \"1.27\"
    revisionFormat: minor
    istio: {version: 1.20.1, revision: 1-20}
    namespaces:
      - name: shop
        revision: 1-20
        workloads: [{kind: Deployment, name: web}]
";
        let (c, out) = crate::model::tests::cluster(mesh, "1.20.8");
        let catalog = Catalog::embedded();
        let cp = stage(&out, "20-control-plane/istiod");
        let wave = stage(&out, "shop/deployment-web");
        let stages = [cp.clone(), cp, wave];
        let good = reverts(&out, &stages, Layout::Flux);
        let last = good.last().unwrap();
        assert!(
            last.ops
                .iter()
                .any(|o| matches!(o, Op::RolloutRestart { .. })),
            "{:?}",
            last.ops
        );
        crate::model::check_stage_reverts(&c, &out, &catalog, &good).unwrap();
        // Pointing back past the control plane restarts `web` while the upgraded istiod still
        // runs: without restarting it again it stays on the new proxy.
        let mut bad = good.clone();
        bad.last_mut()
            .unwrap()
            .ops
            .retain(|o| !matches!(o, Op::RolloutRestart { .. }));
        let e = crate::model::check_stage_reverts(&c, &out, &catalog, &bad).unwrap_err();
        assert!(e.problem.contains("does not return"), "{e}");
    }

    #[test]
    fn reverting_a_wave_restarts_after_its_namespaces_are_relabelled() {
        let (c, out) = crate::model::tests::cluster(
            &MESH.replace(
                "revision: prod-stable\n        workloads",
                "revision: 1-19\n        workloads",
            ),
            "1.20.8",
        );
        let catalog = Catalog::embedded();
        let wave: Vec<String> = out
            .steps
            .iter()
            .filter(|s| s.id.contains("/50-data-plane/"))
            .map(|s| s.id.clone())
            .collect();
        let mut st = stage(&out, "istio-ingressgateway/remove-old");
        st.steps = wave;
        let good = reverts(&out, &[st.clone(), st], Layout::Argocd);
        crate::model::check_stage_reverts(&c, &out, &catalog, &good).unwrap();
        // A controller that restarted the workloads before relabelling their namespace would
        // leave them on the new revision.
        let mut bad = good.clone();
        bad[0].ops.sort_by_key(|o| !matches!(o, Op::Restart { .. }));
        let e = crate::model::check_stage_reverts(&c, &out, &catalog, &bad).unwrap_err();
        assert!(e.problem.contains("does not return"), "{e}");
    }
}
