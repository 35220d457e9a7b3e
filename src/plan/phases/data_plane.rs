//! 50-data-plane: wave by wave, each namespace is pointed at the new revision and its workloads
//! restart one after another onto it. A namespace on a revision tag keeps its label: the tag
//! moves (once, at the start of the first wave that uses it) and the restarts pick it up.
//!
//! Each restart's undo first puts back what decides injection (the namespace's label, the tag,
//! or, in place, the control plane), then restarts: undone last-first, every pod is injected by
//! the old revision again.

use std::collections::BTreeMap;

use serde_json::json;

use crate::plan::op::{INJECTION_LABEL, LabelPatch, Op, REV_LABEL, RestartMethod, Wait};
use crate::plan::state::NamespaceNow;
use crate::plan::{
    Builder, HopCtx, Phase, RESTART_REVISION_ANNOTATION, RESTART_VERSION_ANNOTATION, seq,
};
use crate::validate::DEFAULT_REVISION;

/// What decides which istiod injects a namespace's new pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Injector {
    /// A revision tag (`istio.io/rev=<tag>`, or `istio-injection=enabled` with a `default` tag).
    Tag(String),
    /// A revision's own webhook (`istio.io/rev=<revision>`, or `istio-injection=enabled` with
    /// an unrevisioned control plane).
    Revision(String),
}

/// Restarts per rollback segment: a checkpoint after this many restarts in a namespace keeps
/// every step's written rollback short.
pub const SEGMENT: usize = 16;

impl Builder<'_> {
    pub(crate) fn injector(&self, ns: &NamespaceNow) -> Injector {
        if ns.injection {
            if self.now.has_tag(DEFAULT_REVISION) {
                Injector::Tag(DEFAULT_REVISION.to_string())
            } else {
                Injector::Revision(DEFAULT_REVISION.to_string())
            }
        } else {
            let r = ns
                .rev
                .clone()
                .unwrap_or_else(|| DEFAULT_REVISION.to_string());
            if self.now.has_tag(&r) {
                Injector::Tag(r)
            } else {
                Injector::Revision(r)
            }
        }
    }

    pub(crate) fn move_tag_step(
        &mut self,
        h: &HopCtx,
        phase: Phase,
        step_name: &str,
        tag: &str,
        why: String,
    ) {
        let be = self.backend;
        let from = h.hop.from_label().to_string();
        let to = h.hop.to_label().to_string();
        // Through the releases' values (a GitOps controller owns them), or with a command.
        // The values files of a wave's tag sort before its namespaces: the tag moves first.
        let files = match step_name.rsplit_once('/') {
            Some((wave, t)) => format!("{wave}/00-{t}"),
            None => step_name.to_string(),
        };
        let dirs = (
            format!("{}/{files}", h.phase_dir(phase)),
            format!("{}/{files}", h.rollback_phase_dir(phase)),
        );
        let in_values = be.move_tag_in_values(self, h, (&dirs.0, &dirs.1), tag);
        let mut all_back = None;
        let (ops, back) = if let Some(m) = in_values {
            all_back = Some(m.all_back);
            (m.ops, m.undo)
        } else {
            let op = be.set_tag(self, h, tag, &to);
            let back = be.set_tag(self, h, tag, &from);
            // From 1.28 a tag is also a Service (`revision-tags-svc.yaml`); moving it back to
            // a release without that template leaves the Service behind unless it is deleted.
            // (`istioctl tag set` makes that Service too from 1.28.)
            let tag_service = |op: &crate::plan::op::Op| match op {
                crate::plan::op::Op::SetTag { helm: Some(t), .. } => t
                    .templates
                    .iter()
                    .any(|x| x.ends_with("revision-tags-svc.yaml")),
                crate::plan::op::Op::SetTag {
                    helm: None,
                    version,
                    ..
                } => crate::chart_facts::istiod_tag_services(version),
                _ => false,
            };
            let mut back = vec![back];
            if tag_service(&op) && !crate::chart_facts::istiod_tag_services(&h.hop.from) {
                back.push(crate::plan::op::Op::Delete {
                    objects: vec![crate::plan::op::ObjRef::new(
                        "service",
                        &format!("istiod-revision-tag-{tag}"),
                        Some(&self.c.namespace),
                    )],
                });
            }
            (vec![op], back)
        };
        let mut s = self.step(
            h,
            phase,
            step_name,
            format!("Point revision tag `{tag}` at `{to}`"),
            why,
        );
        s.ops.extend(ops);
        s.waits.push(Wait::Tag {
            tag: tag.to_string(),
            namespace: self.c.namespace.clone(),
            revision: to.clone(),
        });
        // Gateway API gateways on the tag (their own label, or their namespace's) move with it.
        let gateways = self.gateway_api_rollouts(|g| self.now.gateway_api_label(g) == tag);
        if !gateways.is_empty() {
            s.traffic = true;
            s.waits.extend(gateways);
        }
        s.undo.extend(back.iter().cloned());
        if phase == Phase::DataPlane {
            // Every rollback from here on moves it back first. Through the values, a move back
            // sets whole lists of tags: every tag of the hop goes back at once.
            match all_back {
                Some(all) => self.restore = all,
                None => self.restore.extend(back),
            }
        }
        self.push_step(s);
        for t in &mut self.now.tags {
            if t.name == tag {
                t.revision = to.clone();
            }
        }
    }

    pub(crate) fn data_plane(&mut self, h: &HopCtx) {
        let hop = h.hop;
        let from = hop.from_label().to_string();
        let to = hop.to_label().to_string();
        let mut waves: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, n) in self.c.namespaces.iter().enumerate() {
            waves.entry(n.namespace.wave).or_default().push(i);
        }
        for (wave, mut members) in waves {
            let wave_dir = format!("{}/wave-{wave:02}", h.phase_dir(Phase::DataPlane));
            let rwave_dir = format!("{}/wave-{wave:02}", h.rollback_phase_dir(Phase::DataPlane));
            if h.canary() {
                let mut tags: Vec<String> = Vec::new();
                for &ni in &members {
                    if let Injector::Tag(t) = self.injector(&self.now.namespaces[ni].clone())
                        && !tags.contains(&t)
                        && self
                            .now
                            .tags
                            .iter()
                            .any(|x| x.name == t && x.revision == from)
                    {
                        tags.push(t);
                    }
                }
                for t in tags {
                    let why = format!(
                        "the namespaces labelled with the tag keep their label: moving the tag makes every new pod in them, in this wave and later ones, get a `{to}` sidecar; running pods change only when they restart, below. Moving it back is the rollback"
                    );
                    let why = if t == DEFAULT_REVISION {
                        format!(
                            "`default` also serves namespaces labelled istio-injection=enabled; {why}"
                        )
                    } else {
                        why
                    };
                    self.move_tag_step(
                        h,
                        Phase::DataPlane,
                        &format!("wave-{wave:02}/tag-{t}"),
                        &t,
                        why,
                    );
                    if let Some(last) = self.steps.last_mut() {
                        last.checkpoint = true;
                    }
                }
            }
            // Ambient namespaces have no sidecars to restart and no injection label to move
            // (validation refuses one): ztunnel moved in 25-node-agents, their waypoints move
            // by their own labels or tags.
            members.retain(|&ni| self.c.namespaces[ni].namespace.dataplane_mode.is_none());
            let count = members.len();
            for (pos, ni) in members.into_iter().enumerate() {
                let n = &self.c.namespaces[ni];
                let name = n.namespace.name.clone();
                let old = self.now.namespaces[ni].clone();
                let dir = format!("{wave_dir}/{}-{name}", seq(pos + 1, count));
                let rdir = format!("{rwave_dir}/{}-{name}", seq(pos + 1, count));
                // What a restart's undo must put back first (a moved tag, or in place the
                // control plane, is put back by every rollback's restore prefix).
                let mut ensure: Vec<Op> = Vec::new();
                if h.canary() {
                    match self.injector(&old) {
                        Injector::Tag(_) => {}
                        Injector::Revision(r) if r == from => {
                            let mut labels = LabelPatch::new();
                            labels.insert(REV_LABEL.into(), Some(to.clone()));
                            if old.injection {
                                labels.insert(INJECTION_LABEL.into(), None);
                            }
                            let mut undo_labels = LabelPatch::new();
                            undo_labels.insert(REV_LABEL.into(), old.rev.clone());
                            if old.injection {
                                undo_labels.insert(INJECTION_LABEL.into(), Some("enabled".into()));
                            }
                            let fwd = format!("{dir}/00-namespace.patch.yaml");
                            let back = format!("{rdir}/00-namespace.patch.yaml");
                            let op = Op::LabelNamespace {
                                namespace: name.clone(),
                                file: fwd.clone(),
                                patch: labels.clone(),
                            };
                            let undo = Op::LabelNamespace {
                                namespace: name.clone(),
                                file: back.clone(),
                                patch: undo_labels.clone(),
                            };
                            let shown = |p: &LabelPatch| -> BTreeMap<String, serde_json::Value> {
                                p.iter()
                                    .map(|(k, v)| {
                                        (
                                            k.clone(),
                                            v.as_ref()
                                                .map_or(serde_json::Value::Null, |s| json!(s)),
                                        )
                                    })
                                    .collect()
                            };
                            self.artifact(
                                &fwd,
                                "namespace.patch.yaml.j2",
                                format!("Namespace {name}: istio.io/rev={to}"),
                                &op,
                                json!({"name": name, "labels": shown(&labels)}),
                            );
                            self.artifact(
                                &back,
                                "namespace.patch.yaml.j2",
                                format!("Namespace {name}: labels as before (rollback)"),
                                &undo,
                                json!({"name": name, "labels": shown(&undo_labels)}),
                            );
                            let mut s = self.step(
                                h,
                                Phase::DataPlane,
                                &format!("wave-{wave:02}/{name}/namespace"),
                                format!("Wave {wave}: point namespace `{name}` at revision `{to}`"),
                                if old.injection {
                                    "new pods in the namespace will be injected by the new revision; the legacy istio-injection label is removed because it takes precedence over istio.io/rev. Running pods are untouched until restarted".to_string()
                                } else {
                                    "new pods in the namespace will be injected by the new revision; running pods are untouched until restarted".to_string()
                                },
                            );
                            s.ops.push(op);
                            s.undo.push(undo.clone());
                            s.waits.push(Wait::NamespaceLabel {
                                namespace: name.clone(),
                                key: REV_LABEL.into(),
                                value: to.clone(),
                            });
                            // Gateway API gateways without a label of their own follow the
                            // namespace: the new istiod takes them over and rolls them now.
                            let gateways =
                                self.gateway_api_rollouts(|g| g.namespace == ni && g.rev.is_none());
                            if !gateways.is_empty() {
                                s.traffic = true;
                                s.why = format!(
                                    "{}. Its Gateway API gateways have no istio.io/rev label of their own, so the new istiod takes them over now and rolls their Deployments, behind the same Services",
                                    s.why
                                )
                                .into();
                                s.waits.extend(gateways);
                            }
                            self.push_step(s);
                            self.now.namespaces[ni] = NamespaceNow {
                                rev: Some(to.clone()),
                                injection: false,
                            };
                            ensure.push(undo);
                        }
                        Injector::Revision(_) => {}
                    }
                }
                let n = &self.c.namespaces[ni];
                let workloads = n.workloads().to_vec();
                let wcount = workloads.len();
                for (wi, w) in workloads.iter().enumerate() {
                    let kind = w.kind.resource();
                    let method = if w.restarts_on_template_change() {
                        RestartMethod::TemplatePatch
                    } else {
                        RestartMethod::DeletePods
                    };
                    let prefix = format!("{}-{kind}-{}", seq(wi + 1, wcount), w.name);
                    let (fwd, back) = match method {
                        RestartMethod::TemplatePatch => {
                            let fwd = format!("{dir}/{prefix}.restart.patch.yaml");
                            let back = format!("{rdir}/{prefix}.restart.patch.yaml");
                            (Some(fwd), Some(back))
                        }
                        RestartMethod::DeletePods => (None, None),
                    };
                    let op = Op::Restart {
                        kind: w.kind,
                        name: w.name.clone(),
                        namespace: name.clone(),
                        method,
                        file: fwd.clone(),
                    };
                    let undo = Op::Restart {
                        kind: w.kind,
                        name: w.name.clone(),
                        namespace: name.clone(),
                        method,
                        file: back.clone(),
                    };
                    if let (Some(fwd), Some(back)) = (&fwd, &back) {
                        let data = |rev: &str, version: String| {
                            json!({"apiVersion": "apps/v1", "kind": format!("{:?}", w.kind), "name": w.name, "namespace": name,
                                   "annotations": {RESTART_REVISION_ANNOTATION: rev, RESTART_VERSION_ANNOTATION: version}})
                        };
                        self.artifact(
                            fwd,
                            "workload-restart.patch.yaml.j2",
                            format!(
                                "{:?} {name}/{}: restart onto {to} ({})",
                                w.kind, w.name, hop.to
                            ),
                            &op,
                            data(&to, hop.to.to_string()),
                        );
                        self.artifact(
                            back,
                            "workload-restart.patch.yaml.j2",
                            format!(
                                "{:?} {name}/{}: restart onto {from} ({}) (rollback)",
                                w.kind, w.name, hop.from
                            ),
                            &undo,
                            data(&from, hop.from.to_string()),
                        );
                    }
                    let mut s = self.step(
                        h,
                        Phase::DataPlane,
                        &format!("wave-{wave:02}/{name}/{kind}-{}", w.name),
                        format!("Wave {wave}: restart {kind} `{name}/{}` onto {}", w.name, hop.to),
                        match method {
                            RestartMethod::TemplatePatch => "a pod-template annotation naming the new revision triggers a rolling restart declaratively (no `kubectl rollout restart`); the new pods get the new sidecar. One workload at a time, each finished before the next".to_string(),
                            RestartMethod::DeletePods => format!(
                                "its update strategy ({}) does not restart pods when the template changes, so its pods are deleted one at a time, each replacement ready (with the new sidecar) before the next",
                                if w.update_strategy == Some(crate::inventory::UpdateStrategy::OnDelete) { "OnDelete".to_string() } else { format!("a rolling update with partition {}", w.partition.unwrap_or(0)) }
                            ),
                        },
                    );
                    s.ops.push(op);
                    let mut undo_ops = ensure.clone();
                    undo_ops.push(undo);
                    s.undo = undo_ops;
                    if method == RestartMethod::TemplatePatch {
                        s.waits.push(Wait::Rollout {
                            kind: w.kind,
                            name: w.name.clone(),
                            namespace: name.clone(),
                            timeout: "10m".into(),
                        });
                    }
                    s.checkpoint = (wi + 1) % SEGMENT == 0 || wi + 1 == wcount;
                    self.push_step(s);
                }
                if wcount == 0
                    && let Some(last) = self.steps.last_mut()
                    && last.phase == Phase::DataPlane
                {
                    last.checkpoint = true;
                }
            }
        }
    }
}
