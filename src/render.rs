//! Rendering: the plan through the minijinja templates into an in-memory [`OutputTree`].
//! Templates are embedded in the binary; a user's templates directory can replace any of them.

use std::collections::BTreeMap;

use minijinja::value::{Kwargs, Value as JValue};
use minijinja::{AutoEscape, Environment, Error as JError, ErrorKind, Output, State, UndefinedBehavior};
use serde::Serialize;
use serde_json::{Value, json};

use crate::output::OutputTree;
use crate::plan::{Phase, Plan};
use crate::yaml;

/// Every built-in template, by name. A tidy test checks this list matches `templates/`.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("_header.j2", include_str!("../templates/_header.j2")),
    ("PLAN.md.j2", include_str!("../templates/PLAN.md.j2")),
    ("base.values.yaml.j2", include_str!("../templates/base.values.yaml.j2")),
    ("gateway.iop.yaml.j2", include_str!("../templates/gateway.iop.yaml.j2")),
    ("gateway.values.yaml.j2", include_str!("../templates/gateway.values.yaml.j2")),
    ("istiod.iop.yaml.j2", include_str!("../templates/istiod.iop.yaml.j2")),
    ("istiod.values.yaml.j2", include_str!("../templates/istiod.values.yaml.j2")),
    ("keep-service.values.yaml.j2", include_str!("../templates/keep-service.values.yaml.j2")),
    ("namespace.patch.yaml.j2", include_str!("../templates/namespace.patch.yaml.j2")),
    ("plan.yaml.j2", include_str!("../templates/plan.yaml.j2")),
    ("preflight.md.j2", include_str!("../templates/preflight.md.j2")),
    ("service-selector.patch.yaml.j2", include_str!("../templates/service-selector.patch.yaml.j2")),
    ("service.yaml.j2", include_str!("../templates/service.yaml.j2")),
    ("workload-restart.patch.yaml.j2", include_str!("../templates/workload-restart.patch.yaml.j2")),
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
pub fn environment(overrides: &BTreeMap<String, String>) -> Result<Environment<'static>, RenderError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
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
        let text = overrides.get(*name).cloned().unwrap_or_else(|| (*text).to_string());
        env.add_template_owned(*name, text).map_err(|e| RenderError {
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
        let json = serde_json::to_value(value).map_err(|e| JError::new(ErrorKind::BadSerialization, e.to_string()))?;
        return out
            .write_str(&yaml::scalar(&json))
            .map_err(|e| JError::new(ErrorKind::WriteFailure, e.to_string()));
    }
    minijinja::escape_formatter(out, state, value)
}

/// `value|toyaml` or `value|toyaml(4)`: block YAML, every line indented, no final newline.
fn toyaml(value: &JValue, indent: Option<usize>, _kwargs: Kwargs) -> Result<JValue, JError> {
    let json = serde_json::to_value(value).map_err(|e| JError::new(ErrorKind::BadSerialization, e.to_string()))?;
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

/// What `plan.yaml` holds: the plan as data for tools.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PlanIndex<'a> {
    api_version: &'static str,
    kind: &'static str,
    mesh: &'a str,
    inventory: &'a str,
    target: String,
    how_to_apply: &'static str,
    clusters: &'a [crate::plan::ClusterPlan],
    steps: &'a [crate::plan::Step],
}

/// Renders the whole plan. `warnings` are the findings PLAN.md lists (never date-dependent).
pub fn render(plan: &Plan, warnings: &[String], env: &Environment<'_>) -> Result<OutputTree, RenderError> {
    let mut tree = OutputTree::default();
    for a in &plan.artifacts {
        let file = json!({"targets": one_line(&a.targets), "apply": one_line(&a.apply), "path": a.path});
        let ctx = json!({"inventory": plan.inventory, "file": file, "data": a.data});
        let text = render_one(env, a.template, &a.path, &ctx)?;
        tree.insert(&a.path, text).map_err(|message| RenderError {
            template: a.template.to_string(),
            file: a.path.clone(),
            message,
        })?;
    }
    let index = PlanIndex {
        api_version: "meshplan.dev/v1alpha1",
        kind: "UpgradePlan",
        mesh: &plan.mesh,
        inventory: &plan.inventory,
        target: plan.target.to_string(),
        how_to_apply: "run the steps in order from this directory: each step's apply commands, then its wait commands; do what its confirm items say before the next step. Each step's rollback commands undo it",
        clusters: &plan.clusters,
        steps: &plan.steps,
    };
    let index_json = serde_json::to_value(&index).map_err(|e| RenderError {
        template: "plan.yaml.j2".into(),
        file: "plan.yaml".into(),
        message: e.to_string(),
    })?;
    let ctx = json!({
        "inventory": plan.inventory,
        "file": {"targets": "the whole plan, as data", "apply": "a shell loop over .steps (see PLAN.md)", "path": "plan.yaml"},
        "plan": index_json,
    });
    let text = render_one(env, "plan.yaml.j2", "plan.yaml", &ctx)?;
    tree.insert("plan.yaml", text).map_err(|message| RenderError {
        template: "plan.yaml.j2".into(),
        file: "plan.yaml".into(),
        message,
    })?;

    let ctx = json!({
        "inventory": plan.inventory,
        "file": {"targets": "reviewers and operators", "apply": "read it", "path": "PLAN.md"},
        "plan": index_json,
        "phases": Phase::ALL.iter().map(|p| json!({"id": p, "dir": p.dir(), "title": p.title()})).collect::<Vec<_>>(),
        "diagram": diagram(plan),
        "warnings": warnings,
    });
    let text = render_one(env, "PLAN.md.j2", "PLAN.md", &ctx)?;
    tree.insert("PLAN.md", text).map_err(|message| RenderError {
        template: "PLAN.md.j2".into(),
        file: "PLAN.md".into(),
        message,
    })?;
    Ok(tree)
}

fn render_one(env: &Environment<'_>, template: &str, file: &str, ctx: &Value) -> Result<String, RenderError> {
    let err = |e: JError| RenderError {
        template: template.to_string(),
        file: file.to_string(),
        message: describe(&e),
    };
    let t = env.get_template(template).map_err(err)?;
    let text = t.render(JValue::from(minijinja::value::Serde(ctx))).map_err(err)?;
    Ok(crate::output::normalize(&text))
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The phases each hop goes through, for the Mermaid diagram in PLAN.md.
fn diagram(plan: &Plan) -> Value {
    let clusters: Vec<Value> = plan
        .clusters
        .iter()
        .enumerate()
        .map(|(ci, c)| {
            let hops: Vec<Value> = c
                .hops
                .iter()
                .map(|h| {
                    let mut phases: Vec<Value> = Vec::new();
                    for p in Phase::ALL {
                        let count = plan
                            .steps
                            .iter()
                            .filter(|s| s.cluster == c.name && s.hop == h.number && s.phase == p)
                            .count();
                        if count > 0 {
                            phases.push(json!({
                                "id": format!("c{}h{}p{}", ci + 1, h.number, p.dir().split('-').next().unwrap_or("0")),
                                "title": p.title(),
                                "steps": count,
                            }));
                        }
                    }
                    json!({"number": h.number, "from": h.from.to_string(), "to": h.to.to_string(),
                           "strategy": h.strategy.name(), "toRevision": h.to_revision, "phases": phases})
                })
                .collect();
            json!({"id": format!("c{}", ci + 1), "name": c.name, "from": c.from.to_string(), "to": c.to.to_string(), "hops": hops})
        })
        .collect();
    Value::Array(clusters)
}
