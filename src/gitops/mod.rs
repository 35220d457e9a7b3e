//! GitOps layouts: the same typed operations as the plain layout, rendered as *stages* that a
//! controller applies as they are.
//!
//! | file | what |
//! | --- | --- |
//! | `mod.rs` | the layout settings, what each layout refuses, and the entry point |
//! | `stages.rs` | the plan's steps grouped into stages, and the desired state after each one |
//! | `objects.rs` | the desired state as the layout's objects (HelmRelease, Application, partials) |
//! | `patch.rs` | the change from one stage to the next as kustomize patches |
//!
//! A stage is a kustomization that builds on the one before it (`resources: [../<previous>]`)
//! and holds only its own change: new objects, JSON patches of changed ones, `$patch: delete`
//! of removed ones. Building a stage gives the whole desired state at that point, so pointing a
//! Flux Kustomization or an Argo CD Application at the next stage promotes, and pointing it
//! back reverts. The first stage (`000-adopt`) adopts what runs today, unchanged.
//!
//! Before anything is written, the model (`crate::model::check_stage_reverts`) runs every
//! stage's revert as a controller and a person would (`stages::reverts`), from where the stage
//! ends, and checks that it returns the cluster to where the stage started.

mod objects;
mod patch;
mod stages;

use std::collections::BTreeMap;

use minijinja::Environment;
use serde_json::json;

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::inventory::{InstallMethod, Inventory, Layout};
use crate::output::OutputTree;
use crate::plan::ClusterOut;
use crate::render::RenderError;
use crate::source::{Source, YamlPath};
use crate::validate::{ClusterSpec, Mesh};

pub use stages::Stage;

/// The chart repository Istio publishes its charts to.
pub const ISTIO_CHARTS: &str = "https://istio-release.storage.googleapis.com/charts";

/// The layout and its settings, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitopsSpec {
    pub layout: Layout,
    pub chart_url: String,
    pub flux_namespace: String,
    pub flux_interval: String,
    pub argo: Option<ArgoSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgoSpec {
    pub namespace: String,
    pub project: String,
    pub repo_url: String,
    /// The plan's directory in the repository, without a trailing `/` (`""`: the root).
    pub path: String,
    pub target_revision: String,
    /// Inventory cluster name -> Argo CD cluster name, where they differ.
    pub destinations: std::collections::BTreeMap<String, String>,
}

impl ArgoSpec {
    /// The Argo CD cluster an inventory cluster deploys to.
    pub fn destination<'s>(&'s self, cluster: &'s str) -> &'s str {
        self.destinations
            .get(cluster)
            .map_or(cluster, String::as_str)
    }
}

impl Default for GitopsSpec {
    /// The plain layout.
    fn default() -> Self {
        GitopsSpec::from_settings(&crate::inventory::Gitops::default())
    }
}

impl GitopsSpec {
    pub fn from_inventory(inv: &Inventory) -> GitopsSpec {
        GitopsSpec::from_settings(&inv.gitops)
    }

    fn from_settings(g: &crate::inventory::Gitops) -> GitopsSpec {
        GitopsSpec {
            layout: g.layout.unwrap_or_default(),
            chart_url: g
                .chart_repository_url
                .clone()
                .unwrap_or_else(|| ISTIO_CHARTS.to_string()),
            flux_namespace: g
                .flux
                .namespace
                .clone()
                .unwrap_or_else(|| "flux-system".into()),
            flux_interval: g.flux.interval.clone().unwrap_or_else(|| "10m".into()),
            argo: g.argocd.as_ref().map(|a| ArgoSpec {
                namespace: a.namespace.clone().unwrap_or_else(|| "argocd".into()),
                project: a.project.clone().unwrap_or_else(|| "default".into()),
                repo_url: a.repo_url.clone(),
                path: a
                    .path
                    .as_deref()
                    .unwrap_or("")
                    .trim_matches('/')
                    .to_string(),
                target_revision: a.target_revision.clone().unwrap_or_else(|| "HEAD".into()),
                destinations: a.destinations.clone(),
            }),
        }
    }

    /// The directory below a cluster's directory the layout's stages live in.
    pub fn dir(&self) -> &'static str {
        self.layout.name()
    }
}

/// What the chosen layout cannot carry, as errors: a cluster whose install method it does not
/// render, an Argo CD layout without the repository its objects are synced from.
pub fn check(mesh: &Mesh, src: &Source, layout_from_cli: bool, diags: &mut Diagnostics) {
    let spec = &mesh.gitops;
    if spec.layout == Layout::Plain {
        return;
    }
    let layout_at = YamlPath::root().key("gitops").key("layout");
    let origin = if layout_from_cli {
        "--layout".to_string()
    } else {
        "gitops.layout".to_string()
    };
    if spec.layout == Layout::Argocd && spec.argo.is_none() {
        let mut d = Diagnostic::error(
            Code::LayoutUnsupported,
            format!("the argocd layout ({origin}) needs gitops.argocd.repoURL: each stage's objects are synced by an Argo CD Application from the repository the plan is committed to"),
        )
        .help("add `gitops: {argocd: {repoURL: <your Git repository>, path: <the plan's directory in it>}}` to the inventory");
        if !layout_from_cli {
            d = d.at(src, &layout_at);
        }
        diags.push(d);
    }
    if let Some(a) = &spec.argo {
        for name in a.destinations.keys() {
            if !mesh.clusters.iter().any(|c| c.name == *name) {
                let known: Vec<&str> = mesh.clusters.iter().map(|c| c.name.as_str()).collect();
                diags.push(
                    Diagnostic::error(
                        Code::LayoutUnsupported,
                        format!("gitops.argocd.destinations names `{name}`, which is not a cluster of the inventory"),
                    )
                    .at(
                        src,
                        &YamlPath::root()
                            .key("gitops")
                            .key("argocd")
                            .key("destinations")
                            .key(name),
                    )
                    .help(format!("the clusters are: {}", known.join(", "))),
                );
            }
        }
    }
    for c in &mesh.clusters {
        if c.install != InstallMethod::Helm {
            diags.push(
                Diagnostic::error(
                    Code::LayoutUnsupported,
                    format!(
                        "cluster `{}`: the {} layout ({origin}) renders Helm installs; this cluster is installed with {}",
                        c.name,
                        spec.layout.name(),
                        c.install.name()
                    ),
                )
                .at(src, &install_at(c))
                .help("compile this mesh with --layout plain, or move the cluster to Helm first"),
            );
        }
    }
}

fn install_at(c: &ClusterSpec) -> YamlPath {
    if c.install_set_here {
        c.at.key("installMethod")
    } else {
        YamlPath::root().key("defaults").key("installMethod")
    }
}

/// Why a cluster's stages were not written.
#[derive(Debug, thiserror::Error)]
pub enum GitopsError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("{0}")]
    Model(crate::model::Failure),
}

/// Renders one cluster's stages into files below `<cluster dir>/<layout>/`, after the model
/// ran the revert of every stage.
pub fn render_cluster(
    c: &ClusterSpec,
    part: &ClusterOut,
    spec: &GitopsSpec,
    catalog: &crate::catalog::Catalog,
    inventory: &str,
    env: &Environment<'_>,
) -> Result<OutputTree, GitopsError> {
    let files: BTreeMap<&str, &crate::plan::Artifact> = part
        .artifacts
        .iter()
        .map(|a| (a.path.as_str(), a))
        .collect();
    let read = |path: &str| -> Result<String, RenderError> {
        let a = files.get(path).ok_or_else(|| RenderError {
            template: String::new(),
            file: path.to_string(),
            message: "no such artifact in the plan".into(),
        })?;
        let tree = crate::render::render_files(std::slice::from_ref(*a), inventory, env)?;
        Ok(tree.0.into_values().next().unwrap_or_default())
    };
    let stages = stages::build(c, part, spec, &read)?;
    let reverts = stages::reverts(part, &stages, spec.layout);
    crate::model::check_stage_reverts(c, part, catalog, &reverts).map_err(GitopsError::Model)?;
    let root = format!("{}/{}", part.summary.dir, spec.dir());
    let mut tree = OutputTree::default();
    let mut prev: Option<(&Stage, objects::Sets)> = None;
    let mut index = Vec::new();
    for stage in &stages {
        let sets = objects::sets(
            c,
            spec,
            &root,
            &stage.dir,
            &stage.state,
            prev.as_ref().map(|(p, s)| (&p.state, s)),
        );
        let rendered =
            objects::render_stage(spec, stage, &sets, prev.as_ref().map(|(p, s)| (*p, s)));
        for (rel, template, data) in rendered {
            let path = format!("{root}/{}/{rel}", stage.dir);
            let ctx = json!({"file": {"path": path}, "data": data, "layout": spec.layout.name()});
            let text = crate::render::render_with(env, template, &path, &ctx)?;
            tree.insert(&path, text).map_err(|m| RenderError {
                template: template.to_string(),
                file: path.clone(),
                message: m,
            })?;
        }
        index.push(objects::stage_view(stage, prev.as_ref().map(|(p, _)| *p)));
        prev = Some((stage, sets));
    }
    let path = format!("{root}/README.md");
    // How the plan moves revision tags: in the releases' values, with commands, or not at all.
    let moves = |s: &&crate::plan::Step| {
        s.waits
            .iter()
            .any(|w| matches!(w, crate::plan::op::Wait::Tag { .. }))
    };
    let tags_in_values = part
        .steps
        .iter()
        .filter(moves)
        .any(|s| s.ops.iter().any(crate::plan::rollback::moves_tags));
    let tag_commands = part
        .steps
        .iter()
        .flat_map(|s| &s.ops)
        .any(|o| matches!(o, crate::plan::op::Op::SetTag { .. }));
    let ctx = json!({
        "file": {"path": path},
        "tagsInValues": tags_in_values,
        "tagCommands": tag_commands,
        "layout": spec.layout.name(),
        "cluster": part.summary.name,
        "dir": root,
        "context": c.context,
        "argo": spec.argo.as_ref().map(|a| json!({"namespace": a.namespace, "project": a.project, "repoURL": a.repo_url, "path": a.path, "targetRevision": a.target_revision, "destination": a.destination(&c.name)})),
        "fluxNamespace": spec.flux_namespace,
        "mesh": part.summary.mesh,
        "stages": index,
    });
    let text = crate::render::render_with(env, "gitops-README.md.j2", &path, &ctx)?;
    tree.insert(&path, text).map_err(|m| RenderError {
        template: "gitops-README.md.j2".into(),
        file: path.clone(),
        message: m,
    })?;
    Ok(tree)
}
