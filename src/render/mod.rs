//! Rendering: the plan through the minijinja templates into an in-memory [`OutputTree`].
//! Templates are embedded in the binary; a user's templates directory can replace any of them.
//! Commands come from the operations, through [`shell`] only.

pub mod shell;

use std::collections::BTreeMap;

use minijinja::value::{Kwargs, Value as JValue};
use minijinja::{
    AutoEscape, Environment, Error as JError, ErrorKind, Output, State, UndefinedBehavior,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::model::StepState;
use crate::output::OutputTree;
use crate::plan::{Artifact, ClusterPlan, Phase, Step};
use crate::version::IstioVersion;
use crate::yaml;

/// Every built-in template, by name. A tidy test checks this list matches `templates/`.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "PLAN-cluster.md.j2",
        include_str!("../../templates/PLAN-cluster.md.j2"),
    ),
    ("PLAN.md.j2", include_str!("../../templates/PLAN.md.j2")),
    ("_header.j2", include_str!("../../templates/_header.j2")),
    (
        "base.values.yaml.j2",
        include_str!("../../templates/base.values.yaml.j2"),
    ),
    (
        "cni.values.yaml.j2",
        include_str!("../../templates/cni.values.yaml.j2"),
    ),
    (
        "gateway.iop.yaml.j2",
        include_str!("../../templates/gateway.iop.yaml.j2"),
    ),
    (
        "gateway.values.yaml.j2",
        include_str!("../../templates/gateway.values.yaml.j2"),
    ),
    (
        "gitops-README.md.j2",
        include_str!("../../templates/gitops-README.md.j2"),
    ),
    (
        "gitops-kustomization.yaml.j2",
        include_str!("../../templates/gitops-kustomization.yaml.j2"),
    ),
    (
        "gitops-resources.yaml.j2",
        include_str!("../../templates/gitops-resources.yaml.j2"),
    ),
    (
        "istiod-route.yaml.j2",
        include_str!("../../templates/istiod-route.yaml.j2"),
    ),
    (
        "istiod.iop.yaml.j2",
        include_str!("../../templates/istiod.iop.yaml.j2"),
    ),
    (
        "istiod.values.yaml.j2",
        include_str!("../../templates/istiod.values.yaml.j2"),
    ),
    (
        "keep.values.yaml.j2",
        include_str!("../../templates/keep.values.yaml.j2"),
    ),
    (
        "namespace.patch.yaml.j2",
        include_str!("../../templates/namespace.patch.yaml.j2"),
    ),
    ("plan.yaml.j2", include_str!("../../templates/plan.yaml.j2")),
    (
        "preflight.md.j2",
        include_str!("../../templates/preflight.md.j2"),
    ),
    (
        "sail-istio.yaml.j2",
        include_str!("../../templates/sail-istio.yaml.j2"),
    ),
    (
        "secrets-rbac.yaml.j2",
        include_str!("../../templates/secrets-rbac.yaml.j2"),
    ),
    (
        "service-selector.patch.yaml.j2",
        include_str!("../../templates/service-selector.patch.yaml.j2"),
    ),
    (
        "service.yaml.j2",
        include_str!("../../templates/service.yaml.j2"),
    ),
    (
        "workload-restart.patch.yaml.j2",
        include_str!("../../templates/workload-restart.patch.yaml.j2"),
    ),
    (
        "ztunnel.values.yaml.j2",
        include_str!("../../templates/ztunnel.values.yaml.j2"),
    ),
];

#[derive(Debug, thiserror::Error)]
#[error("template `{template}` failed for `{file}`: {message}")]
pub struct RenderError {
    pub template: String,
    pub file: String,
    pub message: String,
}

/// The one place a template environment is built. `overrides` replaces built-in templates by
/// name (from `--templates DIR`).
pub fn environment(
    overrides: &BTreeMap<String, String>,
) -> Result<Environment<'static>, RenderError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(TEMPLATE_FUEL));
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .map_err(|e| RenderError {
            template: String::new(),
            file: String::new(),
            message: e.to_string(),
        })?;
    env.set_syntax(syntax);
    env.set_auto_escape_callback(|name| {
        if name.contains(".yaml") || name.starts_with('_') {
            AutoEscape::Custom("yaml".into())
        } else {
            AutoEscape::None
        }
    });
    env.set_formatter(yaml_formatter);
    env.add_filter("toyaml", toyaml);
    for (name, text) in TEMPLATES {
        let text = overrides
            .get(*name)
            .cloned()
            .unwrap_or_else(|| (*text).to_string());
        env.add_template_owned(*name, text)
            .map_err(|e| RenderError {
                template: (*name).to_string(),
                file: String::new(),
                message: describe(&e),
            })?;
    }
    Ok(env)
}

/// In YAML templates, `{{ value }}` prints a YAML scalar that keeps its type (`"1.20"` stays a
/// string, `"on"` is quoted); values marked safe (from `toyaml`) pass through.
fn yaml_formatter(out: &mut Output, state: &mut State, value: &JValue) -> Result<(), JError> {
    if matches!(state.auto_escape(), AutoEscape::Custom(n) if n == "yaml") && !value.is_safe() {
        if value.is_undefined() {
            return Err(JError::new(ErrorKind::UndefinedError, "undefined value"));
        }
        let json = serde_json::to_value(value)
            .map_err(|e| JError::new(ErrorKind::BadSerialization, e.to_string()))?;
        return out
            .write_str(&yaml::scalar(&json))
            .map_err(|e| JError::new(ErrorKind::WriteFailure, e.to_string()));
    }
    minijinja::escape_formatter(out, state, value)
}

/// `value|toyaml` or `value|toyaml(4)`: block YAML, every line indented, no final newline.
fn toyaml(value: &JValue, indent: Option<usize>, _kwargs: Kwargs) -> Result<JValue, JError> {
    let json = serde_json::to_value(value)
        .map_err(|e| JError::new(ErrorKind::BadSerialization, e.to_string()))?;
    let text = yaml::to_string(&json);
    let pad = " ".repeat(indent.unwrap_or(0));
    let body: Vec<String> = text.lines().map(|l| format!("{pad}{l}")).collect();
    Ok(JValue::from_safe_string(body.join("\n")))
}

fn describe(e: &JError) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// What `plan.yaml` holds above its steps.
/// What `plan.yaml` at the root of the plan holds: the mesh, its clusters and where each
/// cluster's steps are. Not a Kubernetes object, so it has no `apiVersion` or `kind` that a
/// GitOps controller would try to apply.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PlanIndex<'a> {
    format: &'static str,
    mesh: &'a str,
    inventory: &'a str,
    target: String,
    how_to_apply: &'static str,
    clusters: Vec<IndexEntry<'a>>,
    /// Multicluster meshes: the stages in apply order (a hop of a cluster, or the phases of one
    /// its steps' `hop` and `phase` select).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    order: &'a [crate::plan::order::Stage],
}

/// A cluster as the index shows it: enough to find and order its plan; the rest (upgrade
/// notes, phases, webhooks) is in the cluster's own files, so the index stays small.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry<'a> {
    name: &'a str,
    dir: &'a str,
    /// The cluster's steps, as data.
    plan: String,
    /// The cluster's steps, for reviewers.
    readme: String,
    context: Option<&'a str>,
    kubernetes: &'a str,
    install_method: crate::inventory::InstallMethod,
    from: String,
    to: String,
    hops: Vec<IndexHop<'a>>,
    steps: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexHop<'a> {
    to: String,
    strategy: &'static str,
    to_revision: &'a str,
}

/// The `format` of the root `plan.yaml`.
pub const INDEX_FORMAT: &str = "meshplan.dev/plan-index/v1alpha2";
/// The `format` of a cluster's `plan.yaml`.
pub const CLUSTER_FORMAT: &str = "meshplan.dev/cluster-plan/v1alpha2";

/// The file that holds a cluster's steps as data.
pub fn cluster_plan_yaml(dir: &str) -> String {
    format!("{dir}/plan.yaml")
}

/// The file that holds a cluster's steps for reviewers.
pub fn cluster_plan_md(dir: &str) -> String {
    format!("{dir}/PLAN.md")
}

/// What the top of `plan.yaml` and `PLAN.md` need: the plan without its steps.
pub struct PlanHead<'a> {
    pub mesh: &'a str,
    pub inventory: &'a str,
    pub target: &'a IstioVersion,
    pub clusters: &'a [ClusterPlan],
    /// The findings PLAN.md lists (never date-dependent ones).
    pub warnings: &'a [String],
    /// The order across clusters, when it is not cluster after cluster (multicluster meshes).
    pub order: &'a [crate::plan::order::Stage],
    /// The GitOps layout whose stages each cluster's directory holds (`None`: plain).
    pub layout: Option<&'a str>,
}

fn err(template: &str, file: &str, e: impl std::fmt::Display) -> RenderError {
    RenderError {
        template: template.to_string(),
        file: file.to_string(),
        message: e.to_string(),
    }
}

/// Renders the artifact files of one cluster (or of a whole plan).
pub fn render_files(
    artifacts: &[Artifact],
    inventory: &str,
    env: &Environment<'_>,
) -> Result<OutputTree, RenderError> {
    let mut tree = OutputTree::default();
    for a in artifacts {
        let file = json!({"targets": one_line(&a.targets), "apply": one_line(&a.apply), "path": a.path,
                          "hints": a.hints.iter().map(|h| one_line(h)).collect::<Vec<_>>()});
        let data: Value = serde_json::from_str(&a.data).map_err(|e| err(a.template, &a.path, e))?;
        let ctx = json!({"inventory": inventory, "file": file, "data": data});
        let text = render_one(env, a.template, &a.path, &ctx)?;
        tree.insert(&a.path, text)
            .map_err(|m| err(a.template, &a.path, m))?;
    }
    Ok(tree)
}

/// The root `plan.yaml`: the index of the clusters' plans.
pub fn plan_yaml_index(head: &PlanHead<'_>, env: &Environment<'_>) -> Result<String, RenderError> {
    let index = PlanIndex {
        format: INDEX_FORMAT,
        mesh: head.mesh,
        inventory: head.inventory,
        target: head.target.to_string(),
        how_to_apply: if head.order.is_empty() {
            "for each cluster in order, run the steps of its plan from this directory: each step's apply commands, then its wait commands; do what its confirm items say before the next step. Each step's rollback commands undo it"
        } else {
            "for each stage of `order`, run the steps firstStep to lastStep of its plan, from this directory: each step's apply commands, then its wait commands; do what its confirm items say before the next step. Each step's rollback commands undo it; roll back a remote's hop before its primary's control plane"
        },
        order: head.order,
        clusters: head
            .clusters
            .iter()
            .map(|c| IndexEntry {
                name: &c.name,
                dir: &c.dir,
                plan: cluster_plan_yaml(&c.dir),
                readme: cluster_plan_md(&c.dir),
                context: c.context.as_deref(),
                kubernetes: &c.kubernetes,
                install_method: c.install_method,
                from: c.from.to_string(),
                to: c.to.to_string(),
                hops: c
                    .hops
                    .iter()
                    .map(|h| IndexHop {
                        to: h.to.to_string(),
                        strategy: h.strategy.name(),
                        to_revision: &h.to_revision,
                    })
                    .collect(),
                steps: c.steps,
            })
            .collect(),
    };
    let ctx = json!({
        "file": {"targets": "the whole plan: its clusters, and where each cluster's steps are", "apply": "a shell loop over .clusters[].plan (see PLAN.md)", "path": "plan.yaml"},
        "plan": serde_json::to_value(&index).map_err(|e| err("plan.yaml.j2", "plan.yaml", e))?,
    });
    render_one(env, "plan.yaml.j2", "plan.yaml", &ctx)
}

/// A cluster's `plan.yaml`, written to `out`: its summary, then its steps a step at a time (a
/// cluster of any size never has its whole list as one value).
pub fn plan_yaml_cluster(
    cluster: &ClusterPlan,
    steps: &[Step],
    env: &Environment<'_>,
    out: &mut dyn std::io::Write,
) -> Result<(), RenderError> {
    let path = cluster_plan_yaml(&cluster.dir);
    let head = json!({
        "format": CLUSTER_FORMAT,
        "cluster": cluster,
    });
    let ctx = json!({
        "file": {"targets": format!("cluster `{}`: every step, as data", cluster.name), "apply": "a shell loop over .steps, from the plan's root directory (see PLAN.md there)", "path": path},
        "plan": head,
        "steps": if steps.is_empty() { "empty" } else { "follow" },
    });
    out.write_all(render_one(env, "plan.yaml.j2", &path, &ctx)?.as_bytes())
        .map_err(|e| err("plan.yaml.j2", &path, e))?;
    let sh = shell::Shell {
        context: cluster.context.as_deref(),
    };
    let mut chunk = String::new();
    for k in 0..steps.len() {
        let value = serde_json::to_value(step_view(&sh, steps, k))
            .map_err(|e| err("plan.yaml.j2", &path, e))?;
        let text = yaml::to_string(&serde_json::Value::Array(vec![value]));
        chunk.clear();
        for line in text.lines() {
            chunk.push_str("  ");
            chunk.push_str(line);
            chunk.push('\n');
        }
        out.write_all(chunk.as_bytes())
            .map_err(|e| err("plan.yaml.j2", &path, e))?;
    }
    Ok(())
}

/// A step as `plan.yaml` shows it: the operations as the commands that carry them out.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StepView<'a> {
    id: &'a str,
    cluster: &'a str,
    hop: usize,
    phase: Phase,
    title: &'a str,
    why: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    files: Vec<String>,
    apply: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    wait: Vec<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    confirm: &'a [String],
    /// The istioctl version its istioctl commands need.
    #[serde(skip_serializing_if = "Option::is_none")]
    istioctl: Option<String>,
    /// It changes which pods a gateway's traffic Service selects.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    traffic: bool,
    /// Later steps' rollbacks return here before continuing with this step's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    checkpoint: bool,
    /// The exact commands from right after this step back to `rollbackThen` (or the hop's
    /// start).
    rollback: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback_then: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rollback_files: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback_note: Option<&'a str>,
}

fn commands(sh: &shell::Shell, ops: &[crate::plan::op::Op]) -> Vec<String> {
    ops.iter()
        .flat_map(|op| sh.op(op))
        .map(|c| c.text())
        .collect()
}

fn step_view<'a>(sh: &shell::Shell, steps: &'a [Step], k: usize) -> StepView<'a> {
    let s = &steps[k];
    let rollback = crate::plan::rollback::ops(steps, k);
    StepView {
        id: &s.id,
        cluster: &s.cluster,
        hop: s.hop,
        phase: s.phase,
        title: &s.title,
        why: &s.why,
        files: s.files(),
        apply: commands(sh, &s.ops),
        wait: s.waits.iter().map(|w| sh.wait(w).text()).collect(),
        confirm: &s.confirm,
        istioctl: s.istioctl.as_ref().map(ToString::to_string),
        traffic: s.traffic,
        checkpoint: s.checkpoint,
        rollback_files: Step::files_of(&rollback),
        rollback: commands(sh, &rollback),
        rollback_then: s.rollback_then.as_deref(),
        rollback_note: if s.undo.is_empty() {
            s.undo_note.as_deref()
        } else {
            None
        },
    }
}

/// The root `PLAN.md`: summary, diagram, warnings, how to apply, links to the clusters' plans.
pub fn plan_md_index(head: &PlanHead<'_>, env: &Environment<'_>) -> Result<String, RenderError> {
    let ctx = json!({
        "file": {"targets": "reviewers and operators", "apply": "read it", "path": "PLAN.md"},
        "plan": {"mesh": head.mesh, "inventory": head.inventory, "target": head.target.to_string(), "clusters": head.clusters, "order": head.order, "layout": head.layout},
        "diagram": diagram(head.clusters),
        "warnings": head.warnings,
    });
    render_one(env, "PLAN.md.j2", "PLAN.md", &ctx)
}

/// How many data-plane steps a cluster's `PLAN.md` section shows in full.
pub const COMPACT_DATA_PLANE_ABOVE: usize = 60;

/// A cluster's `PLAN.md`, written to `out` as it is rendered.
pub fn plan_md_cluster(
    cluster: &ClusterPlan,
    steps: std::sync::Arc<Vec<Step>>,
    states: &[std::sync::Arc<StepState>],
    env: &Environment<'_>,
    out: &mut dyn std::io::Write,
) -> Result<(), RenderError> {
    // Past COMPACT_DATA_PLANE_ABOVE data-plane steps, those steps are one line each (their
    // commands are in plan.yaml): a cluster of thousands of namespaces keeps a PLAN.md a
    // reviewer can read, and a small one keeps every command in front of the reader.
    let compact =
        steps.iter().filter(|s| s.phase == Phase::DataPlane).count() > COMPACT_DATA_PLANE_ABOVE;
    // The state after a step is shown where it changed, at the end of each phase and namespace.
    let mut shown = Vec::with_capacity(steps.len());
    let mut last_shown: Option<&StepState> = None;
    for (i, s) in steps.iter().enumerate() {
        let show = states.get(i).filter(|st| {
            (s.phase != Phase::DataPlane || s.checkpoint)
                && last_shown.is_none_or(|l| !same_state(l, st))
        });
        if let Some(st) = show {
            last_shown = Some(st);
        }
        shown.push(show.cloned());
    }
    let path = cluster_plan_md(&cluster.dir);
    let ctx = minijinja::context! {
        file => jvalue(json!({"targets": format!("reviewers and operators of cluster `{}`", cluster.name), "apply": "read it", "path": path})),
        cluster => jvalue(cluster),
        steps => JValue::from_object(MdSteps {
            steps,
            shown,
            compact,
            context: cluster.context.clone(),
        }),
    };
    render_to(
        env,
        "PLAN-cluster.md.j2",
        &path,
        ctx,
        out,
        MAX_STREAMED_BYTES,
    )
}

fn jvalue<T: Serialize>(x: T) -> JValue {
    JValue::from(minijinja::value::Serde(x))
}

/// A cluster's steps as `PLAN-cluster.md.j2` reads them, each made when the template reaches
/// it: a cluster of any size never has all of them in memory at once.
#[derive(Debug)]
struct MdSteps {
    steps: std::sync::Arc<Vec<Step>>,
    /// The state to show after each step, if any.
    shown: Vec<Option<std::sync::Arc<StepState>>>,
    compact: bool,
    context: Option<String>,
}

/// A data-plane step of a large cluster, as one line of `PLAN.md`.
#[derive(Serialize)]
struct CompactStep<'a> {
    hop: usize,
    title: &'a str,
    files: Vec<String>,
    compact: bool,
    checkpoint: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a StepState>,
}

/// Any other step of `PLAN.md`: as `plan.yaml` shows it, with the state after it.
#[derive(Serialize)]
struct MdStep<'a> {
    #[serde(flatten)]
    view: StepView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a StepState>,
}

impl minijinja::value::Object for MdSteps {
    fn repr(self: &std::sync::Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Seq
    }

    fn get_value(self: &std::sync::Arc<Self>, key: &JValue) -> Option<JValue> {
        let i = key.as_usize()?;
        let s = self.steps.get(i)?;
        let state = self.shown.get(i)?.as_deref();
        Some(if self.compact && s.phase == Phase::DataPlane {
            jvalue(CompactStep {
                hop: s.hop,
                title: &s.title,
                files: s.files(),
                compact: true,
                checkpoint: s.checkpoint,
                state,
            })
        } else {
            let sh = shell::Shell {
                context: self.context.as_deref(),
            };
            jvalue(MdStep {
                view: step_view(&sh, &self.steps, i),
                state,
            })
        })
    }

    fn enumerate(self: &std::sync::Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Seq(self.steps.len())
    }
}

/// Renders a template of a layout (`crate::gitops`) with its own context.
pub fn render_with(
    env: &Environment<'_>,
    template: &str,
    file: &str,
    ctx: &Value,
) -> Result<String, RenderError> {
    render_one(env, template, file, ctx)
}

fn render_one(
    env: &Environment<'_>,
    template: &str,
    file: &str,
    ctx: &Value,
) -> Result<String, RenderError> {
    let mut buf = Vec::new();
    render_to(
        env,
        template,
        file,
        JValue::from(minijinja::value::Serde(ctx)),
        &mut buf,
        MAX_RENDERED_BYTES,
    )?;
    String::from_utf8(buf).map_err(|e| RenderError {
        template: template.to_string(),
        file: file.to_string(),
        message: e.to_string(),
    })
}

/// Renders `template` into `out`, normalized ([`crate::output::normalize`]), failing past
/// `limit` bytes.
fn render_to(
    env: &Environment<'_>,
    template: &str,
    file: &str,
    ctx: JValue,
    out: &mut dyn std::io::Write,
    limit: usize,
) -> Result<(), RenderError> {
    let fail = |message: String| RenderError {
        template: template.to_string(),
        file: file.to_string(),
        message,
    };
    let t = env.get_template(template).map_err(|e| fail(describe(&e)))?;
    let mut limited = Limited {
        out: crate::output::Normalizer::new(out),
        written: 0,
        limit,
    };
    let rendered = t.render_captured_to(ctx, &mut limited);
    if limited.written >= limit {
        return Err(fail(format!(
            "the output grew past {} MiB, more than any file meshplan writes",
            limit >> 20
        )));
    }
    rendered.map_err(|e| fail(describe(&e)))?;
    limited
        .out
        .finish()
        .map_err(|e| fail(format!("cannot write the output: {e}")))?;
    Ok(())
}

/// The most one template render into memory may produce.
pub const MAX_RENDERED_BYTES: usize = 64 << 20;

/// The most a template render streamed to disk (a cluster's section of `PLAN.md`) may produce.
pub const MAX_STREAMED_BYTES: usize = 1 << 30;

/// How much work one template render may do (minijinja's fuel: about one unit per instruction).
/// The built-in templates use a small part of it even for a cluster of 20,000 namespaces; an
/// override that loops without end runs out of it and fails, naming the template and line.
pub const TEMPLATE_FUEL: u64 = 100_000_000;

/// A writer that refuses to take more than `limit` bytes.
struct Limited<W> {
    out: W,
    written: usize,
    limit: usize,
}

impl<W: std::io::Write> std::io::Write for Limited<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.written + data.len() > self.limit {
            self.written = self.limit;
            return Err(std::io::Error::other("output limit reached"));
        }
        self.out.write_all(data)?;
        self.written += data.len();
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn same_state(a: &StepState, b: &StepState) -> bool {
    a.services == b.services && a.namespaces == b.namespaces && a.proxies == b.proxies
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The phases each hop goes through, for the Mermaid diagram in PLAN.md.
fn diagram(clusters: &[ClusterPlan]) -> Value {
    let clusters: Vec<Value> = clusters
        .iter()
        .enumerate()
        .map(|(ci, c)| {
            let hops: Vec<Value> = c
                .hops
                .iter()
                .map(|h| {
                    let phases: Vec<Value> = h
                        .phases
                        .iter()
                        .map(|p| {
                            json!({
                                "id": format!("c{}h{}p{}", ci + 1, h.number, p.phase.dir().split('-').next().unwrap_or("0")),
                                "title": p.phase.title(),
                                "steps": p.steps,
                            })
                        })
                        .collect();
                    json!({"number": h.number, "from": h.from.to_string(), "to": h.to.to_string(),
                           "strategy": h.strategy.name(), "toRevision": h.to_revision, "phases": phases})
                })
                .collect();
            json!({"id": format!("c{}", ci + 1), "name": c.name, "from": c.from.to_string(), "to": c.to.to_string(), "hops": hops})
        })
        .collect();
    Value::Array(clusters)
}
