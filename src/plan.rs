//! The plan: every step of every hop of every cluster, in apply order, with the files it needs,
//! the commands that apply it, what to wait for, and how to undo it. Pure data: nothing here
//! renders text or touches a file system. Templates turn each [`Artifact`] into a file.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::catalog::Catalog;
use crate::inventory::{GatewayKind, GatewayUpgrade, InstallMethod, ServiceOwner, ServiceType};
use crate::path::{ClusterPath, Hop, MeshPath, Strategy};
use crate::validate::{ClusterSpec, DEFAULT_REVISION, GatewaySpec, Mesh};
use crate::version::{IstioVersion, Minor};

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
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Preflight,
        Phase::Crds,
        Phase::ControlPlane,
        Phase::Gateways,
        Phase::Traffic,
        Phase::DataPlane,
        Phase::Cleanup,
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
    pub data: Value,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub id: String,
    pub cluster: String,
    pub hop: usize,
    pub phase: Phase,
    pub title: String,
    /// Why the step exists and what it changes.
    pub why: String,
    pub files: Vec<String>,
    /// Commands to run, in order, from the root of the output directory.
    pub apply: Vec<String>,
    /// Commands that must succeed before the next step starts.
    pub wait: Vec<String>,
    /// What a person must confirm before the next step (no command can).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub confirm: Vec<String>,
    /// Commands that undo the step.
    pub rollback: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rollback_files: Vec<String>,
    /// What a person must know about undoing the step (no command says it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_note: Option<String>,
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
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub mesh: String,
    /// The inventory's file name (no directories), as headers name it.
    pub inventory: String,
    pub target: IstioVersion,
    pub clusters: Vec<ClusterPlan>,
    pub steps: Vec<Step>,
    #[serde(skip)]
    pub artifacts: Vec<Artifact>,
}

/// One cluster's part of the plan.
#[derive(Clone, Debug)]
pub struct ClusterOut {
    pub summary: ClusterPlan,
    pub steps: Vec<Step>,
    pub artifacts: Vec<Artifact>,
}

/// Builds the plan of the `index`-th cluster. Cannot fail: every check ran before. Clusters are
/// independent, so a large mesh is planned, rendered and written one cluster at a time.
pub fn build_cluster(
    index: usize,
    c: &ClusterSpec,
    path: &ClusterPath,
    catalog: &Catalog,
) -> ClusterOut {
    let dir = format!("{:02}-{}", index + 1, c.name);
    ClusterBuilder::new(c, path, catalog, dir).build()
}

/// Builds the whole plan in memory.
pub fn build(mesh: &Mesh, paths: &MeshPath, catalog: &Catalog, inventory_name: &str) -> Plan {
    let mut plan = Plan {
        mesh: mesh.name.clone(),
        inventory: inventory_name.to_string(),
        target: paths.target.clone(),
        clusters: Vec::new(),
        steps: Vec::new(),
        artifacts: Vec::new(),
    };
    for (i, (c, p)) in mesh.clusters.iter().zip(&paths.clusters).enumerate() {
        let out = build_cluster(i, c, p, catalog);
        plan.clusters.push(out.summary);
        plan.steps.extend(out.steps);
        plan.artifacts.extend(out.artifacts);
    }
    plan
}

/// The state of a gateway between hops.
#[derive(Clone, Debug)]
struct GatewayState {
    release: String,
    selector: BTreeMap<String, String>,
    owner: ServiceOwner,
    version: IstioVersion,
}

/// The labels of a namespace between hops.
#[derive(Clone, Debug)]
struct NamespaceState {
    rev: Option<String>,
    injection: bool,
}

struct ClusterBuilder<'a> {
    c: &'a ClusterSpec,
    path: &'a ClusterPath,
    catalog: &'a Catalog,
    dir: String,
    steps: Vec<Step>,
    artifacts: Vec<Artifact>,
    gateways: Vec<GatewayState>,
    namespaces: Vec<NamespaceState>,
    webhooks: Vec<String>,
}

impl<'a> ClusterBuilder<'a> {
    fn new(c: &'a ClusterSpec, path: &'a ClusterPath, catalog: &'a Catalog, dir: String) -> Self {
        let gateways = c
            .gateways
            .iter()
            .map(|g| GatewayState {
                release: g.release.clone(),
                selector: g
                    .service()
                    .and_then(|s| s.selector.clone())
                    .unwrap_or_else(|| chart_selector(&g.release, &g.istio_label)),
                owner: g.service().map_or(ServiceOwner::Standalone, |s| s.owner),
                version: c.version.clone(),
            })
            .collect();
        let namespaces = c
            .namespaces
            .iter()
            .map(|n| NamespaceState {
                rev: n.namespace.revision.clone(),
                injection: n.namespace.istio_injection.is_some(),
            })
            .collect();
        Self {
            c,
            path,
            catalog,
            dir,
            steps: Vec::new(),
            artifacts: Vec::new(),
            gateways,
            namespaces,
            webhooks: Vec::new(),
        }
    }

    fn build(mut self) -> ClusterOut {
        let mut hops = Vec::new();
        for (i, hop) in self.path.hops.iter().enumerate() {
            let number = i + 1;
            let hop_dir = format!("{}/hop-{:02}-{}", self.dir, number, hop.to);
            let h = HopBuilder {
                number,
                hop,
                dir: hop_dir.clone(),
            };
            self.hop(&h);
            let phases = Phase::ALL
                .iter()
                .map(|p| {
                    (
                        *p,
                        self.steps
                            .iter()
                            .filter(|s| s.hop == number && s.phase == *p)
                            .count(),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .map(|(phase, steps)| PhaseCount { phase, steps })
                .collect();
            hops.push(HopSummary {
                number,
                dir: hop_dir,
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
        };
        ClusterOut {
            summary,
            steps: self.steps,
            artifacts: self.artifacts,
        }
    }

    // ----- command helpers -------------------------------------------------------------

    fn kubectl(&self, args: &str) -> String {
        match &self.c.context {
            Some(ctx) => format!("kubectl --context {ctx} {args}"),
            None => format!("kubectl {args}"),
        }
    }

    fn helm(&self, args: &str) -> String {
        match &self.c.context {
            Some(ctx) => format!("helm --kube-context {ctx} {args}"),
            None => format!("helm {args}"),
        }
    }

    fn istioctl(&self, args: &str) -> String {
        match &self.c.context {
            Some(ctx) => format!("istioctl --context {ctx} {args}"),
            None => format!("istioctl {args}"),
        }
    }

    fn chart(&self, name: &str) -> String {
        format!("{}/{name}", self.c.chart_repository.trim_end_matches('/'))
    }

    fn tag(&self, v: &IstioVersion) -> String {
        format!("{v}{}", self.c.tag_suffix)
    }

    fn push_step(&mut self, step: Step) {
        self.steps.push(step);
    }

    fn push_artifact(&mut self, a: Artifact) {
        self.artifacts.push(a);
    }

    // ----- one hop ---------------------------------------------------------------------

    fn hop(&mut self, h: &HopBuilder) {
        self.preflight(h);
        if self.c.install == InstallMethod::Helm {
            self.crds(h);
        }
        self.control_plane(h);
        self.gateways_phase(h);
        self.traffic(h);
        self.data_plane(h);
        if h.hop.strategy == Strategy::Canary {
            self.cleanup(h);
        }
    }

    fn step(&self, h: &HopBuilder, phase: Phase, name: &str, title: String, why: String) -> Step {
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
            why,
            files: Vec::new(),
            apply: Vec::new(),
            wait: Vec::new(),
            confirm: Vec::new(),
            rollback: Vec::new(),
            rollback_files: Vec::new(),
            rollback_note: None,
        }
    }

    fn preflight(&mut self, h: &HopBuilder) {
        let hop = h.hop;
        let ns = &self.c.namespace;
        let path = format!("{}/{}/README.md", h.dir, Phase::Preflight.dir());
        let mut checks: Vec<(String, String)> = vec![
            (
                self.kubectl("get namespaces -L istio.io/rev -L istio-injection"),
                format!(
                    "the application namespaces carry the labels the inventory lists (revision `{}`)",
                    hop.from_label()
                ),
            ),
            (
                self.kubectl(&format!("get pods -n {ns} -l app=istiod -L istio.io/rev")),
                format!(
                    "istiod of revision `{}` is running and ready",
                    hop.from_label()
                ),
            ),
            (
                self.kubectl("get mutatingwebhookconfigurations,validatingwebhookconfigurations"),
                "note every webhook present now: cleanup must leave only the new revision's"
                    .to_string(),
            ),
            (
                self.istioctl(&format!("x precheck --revision {}", hop.to_label())),
                format!("run with istioctl {}: no errors", hop.to),
            ),
        ];
        if self.c.install == InstallMethod::Helm {
            checks.insert(
                1,
                (
                    self.helm(&format!("list -n {ns}")),
                    format!(
                        "the releases `{}` and `{}` are deployed at {}",
                        self.c.base_release,
                        self.release_of(hop.from_revision.as_deref()),
                        hop.from
                    ),
                ),
            );
        } else {
            checks.insert(
                1,
                (
                    self.istioctl("version"),
                    format!("the control plane reports {}", hop.from),
                ),
            );
        }
        let mut gateway_namespaces: Vec<&str> = self
            .c
            .gateways
            .iter()
            .map(|g| g.gateway.namespace.as_str())
            .collect();
        gateway_namespaces.sort_unstable();
        gateway_namespaces.dedup();
        for ns in gateway_namespaces {
            checks.push((
                self.kubectl(&format!("get namespace {ns} -L istio.io/rev -L istio-injection")),
                format!(
                    "`{ns}` carries neither label: a namespace label, not the gateway's revision, decides which istiod injects gateway pods, so a labelled namespace would give the new gateway the old proxy"
                ),
            ));
        }
        for g in &self.c.gateways {
            if let Some(s) = g.service() {
                checks.push((
                    self.kubectl(&format!(
                        "get service {} -n {} -o wide",
                        s.name, g.gateway.namespace
                    )),
                    format!(
                        "write down the {} of `{}`: it must be the same after every step",
                        if s.kind == ServiceType::LoadBalancer {
                            "external address"
                        } else {
                            "cluster IP and ports"
                        },
                        s.name
                    ),
                ));
            }
        }
        let ingress: Vec<String> = self
            .c
            .gateways
            .iter()
            .filter(|g| g.gateway.kind == GatewayKind::Ingress)
            .filter_map(|g| {
                g.service()
                    .map(|s| format!("{}/{}", g.gateway.namespace, s.name))
            })
            .collect();
        let notes: Vec<Value> = hop
            .minors_crossed
            .iter()
            .filter_map(|m| m.parse::<Minor>().ok())
            .filter_map(|m| self.catalog.get(m))
            .map(|r| json!({"minor": r.minor.to_string(), "notes": r.notes}))
            .collect();
        let apply_header =
            "read-only checks; run each command and compare with the expected result".to_string();
        self.push_artifact(Artifact {
            path: path.clone(),
            template: "preflight.md.j2",
            targets: format!("cluster {}, hop {} ({} -> {})", self.c.name, h.number, hop.from, hop.to),
            apply: apply_header,
            data: json!({
                "cluster": self.c.name,
                "context": self.c.context,
                "hop": hop_json(h.number, hop),
                "checks": checks.iter().map(|(c, e)| json!({"command": c, "expect": e})).collect::<Vec<_>>(),
                "ingress": ingress,
                "upgradeNotes": notes,
                "twoMinor": hop.minor_distance() >= 2,
            }),
        });
        let mut s = self.step(
            h,
            Phase::Preflight,
            "checks",
            format!("Check cluster `{}` before {} -> {}", self.c.name, hop.from, hop.to),
            "read-only checks that the cluster is in the state the inventory describes; start the load test that proves zero downtime".to_string(),
        );
        s.files.push(path);
        s.apply = checks.iter().map(|(c, _)| c.clone()).collect();
        s.confirm.push(format!(
            "every check in {}/{}/README.md gives the expected result",
            h.dir,
            Phase::Preflight.dir()
        ));
        if !ingress.is_empty() {
            s.confirm.push("a load test against the ingress gateway is running and stays running until the hop's cleanup is done".to_string());
        }
        s.rollback_note = Some("nothing to undo: read-only".to_string());
        self.push_step(s);
    }

    fn release_of(&self, revision: Option<&str>) -> String {
        match revision {
            Some(r) if Some(r) == self.c.revision.as_deref() => self.c.release.clone(),
            Some(r) => format!("istiod-{r}"),
            None => self.c.release.clone(),
        }
    }

    fn base_values(&self, default_revision: &str) -> Value {
        let mut values: Map<String, Value> = self.c.base_values.clone().into_iter().collect();
        values.insert("defaultRevision".into(), json!(default_revision));
        let global = values.entry("global").or_insert_with(|| json!({}));
        if let Value::Object(g) = global {
            g.insert("istioNamespace".into(), json!(self.c.namespace));
        }
        Value::Object(values)
    }

    fn crds(&mut self, h: &HopBuilder) {
        let hop = h.hop;
        let ns = self.c.namespace.clone();
        let release = self.c.base_release.clone();
        let Some(target) = self.catalog.get(hop.to.minor()) else {
            return;
        };
        let from_templates = self
            .catalog
            .get(hop.from.minor())
            .is_some_and(|r| r.crd_templates);
        let path = format!("{}/{}/base.values.yaml", h.dir, Phase::Crds.dir());
        let upgrade = self.helm(&format!(
            "upgrade {release} {} --version {} -n {ns} -f {path}",
            self.chart("base"),
            hop.to
        ));
        let mut apply = Vec::new();
        let mut why = vec![format!(
            "the base chart holds the cluster-wide CRDs and must be upgraded before any {} component; its defaultRevision stays `{}` so that validation keeps using the running istiod until cleanup",
            hop.to.minor(),
            hop.from_label()
        )];
        if target.crd_templates && !from_templates {
            why.push("crossing into 1.24 or later: the base chart now templates the CRDs, so Helm must first be told it owns the CRDs that 1.23 or older installed (one-time labels and annotations), or the upgrade fails with \"invalid ownership metadata\"".to_string());
            // The documented one-time migration (1.24 upgrade notes): CRDs carry either label.
            let crds = format!(
                "$({} && {})",
                self.kubectl("get crds -l chart=istio -o name"),
                self.kubectl("get crds -l app.kubernetes.io/part-of=istio -o name")
            );
            apply.push(self.kubectl(&format!(
                "label {crds} app.kubernetes.io/managed-by=Helm --overwrite"
            )));
            apply.push(self.kubectl(&format!(
                "annotate {crds} meta.helm.sh/release-name={release} meta.helm.sh/release-namespace={ns} --overwrite"
            )));
        }
        if !target.crd_templates {
            why.push(format!(
                "before 1.24 the CRDs sit in the chart's crds/ folder, which `helm upgrade` never touches: they are applied from the {} chart first",
                hop.to
            ));
            apply.push(format!(
                "{} | {}",
                self.helm(&format!(
                    "show crds {} --version {}",
                    self.chart("base"),
                    hop.to
                )),
                self.kubectl("apply -f -")
            ));
        }
        apply.push(upgrade.clone());
        self.push_artifact(Artifact {
            path: path.clone(),
            template: "base.values.yaml.j2",
            targets: format!(
                "chart {} {} (release {release} in {ns})",
                self.chart("base"),
                hop.to
            ),
            apply: upgrade,
            data: json!({"values": self.base_values(hop.from_label())}),
        });
        let mut s = self.step(
            h,
            Phase::Crds,
            "base",
            format!("Upgrade CRDs and the base chart to {}", hop.to),
            why.join("; "),
        );
        s.files.push(path);
        s.apply = apply;
        s.wait
            .push(self.kubectl("wait --for condition=established crd -l chart=istio --timeout=2m"));
        s.rollback
            .push(self.helm(&format!("rollback {release} -n {ns}")));
        s.rollback_note = Some("CRDs are not downgraded by a rollback: Istio CRDs are backward compatible, so the running control plane keeps working with the newer ones".to_string());
        self.push_step(s);
    }

    /// Helm values of the istiod chart for `version` and `revision`, in the layout that chart
    /// version expects (`pilot.*` flattened to the top level from 1.24 on).
    fn istiod_values(&self, version: &IstioVersion, revision: Option<&str>) -> Value {
        let mut values: Map<String, Value> = self.c.values.clone().into_iter().collect();
        if version.minor()
            >= (Minor {
                major: 1,
                minor: 24,
            })
            && let Some(Value::Object(pilot)) = values.remove("pilot")
        {
            for (k, v) in pilot {
                values.entry(k).or_insert(v);
            }
        }
        if let Some(r) = revision {
            values.insert("revision".into(), json!(r));
        }
        let global = values.entry("global").or_insert_with(|| json!({}));
        if let Value::Object(g) = global {
            g.insert("hub".into(), json!(self.c.hub));
            g.insert("tag".into(), json!(self.tag(version)));
            g.insert("istioNamespace".into(), json!(self.c.namespace));
            if let Some(v) = &self.c.variant {
                g.insert("variant".into(), json!(v));
            }
        }
        Value::Object(values)
    }

    /// An IstioOperator for the control plane of `version` and `revision`.
    fn istiod_operator(&self, version: &IstioVersion, revision: Option<&str>) -> Value {
        let mut values: Map<String, Value> = self.c.values.clone().into_iter().collect();
        let mesh_config = values.remove("meshConfig");
        let global = values.entry("global").or_insert_with(|| json!({}));
        if let Value::Object(g) = global {
            g.insert("istioNamespace".into(), json!(self.c.namespace));
            if let Some(v) = &self.c.variant {
                g.insert("variant".into(), json!(v));
            }
        }
        let mut spec = Map::new();
        spec.insert("profile".into(), json!("minimal"));
        if let Some(r) = revision {
            spec.insert("revision".into(), json!(r));
        }
        spec.insert("hub".into(), json!(self.c.hub));
        spec.insert("tag".into(), json!(self.tag(version)));
        if let Some(m) = mesh_config {
            spec.insert("meshConfig".into(), m);
        }
        spec.insert(
            "components".into(),
            json!({
                "ingressGateways": [{"name": "istio-ingressgateway", "enabled": false}],
                "egressGateways": [{"name": "istio-egressgateway", "enabled": false}],
            }),
        );
        spec.insert("values".into(), Value::Object(values));
        json!({
            "apiVersion": "install.istio.io/v1alpha1",
            "kind": "IstioOperator",
            "metadata": {"name": iop_name("istiod", revision), "namespace": self.c.namespace},
            "spec": spec,
        })
    }

    fn control_plane(&mut self, h: &HopBuilder) {
        let hop = h.hop;
        let ns = self.c.namespace.clone();
        let rev = hop.to_revision.as_deref();
        let release = self.release_of(rev);
        let deploy = match rev {
            Some(r) => format!("istiod-{r}"),
            None => "istiod".to_string(),
        };
        let canary = hop.strategy == Strategy::Canary;
        let mut s = self.step(
            h,
            Phase::ControlPlane,
            "istiod",
            if canary {
                format!("Install istiod revision `{}` ({}) beside `{}`", hop.to_label(), hop.to, hop.from_label())
            } else {
                format!("Upgrade istiod revision `{}` in place to {}", hop.to_label(), hop.to)
            },
            if canary {
                format!(
                    "the new control plane runs beside the old one; no proxy moves to it until its namespace is relabelled and its pods restart, so sidecars never lose their control plane{}",
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
                )
            } else {
                format!(
                    "the running revision keeps its name; its proxies ({}) stay connected to the upgraded istiod, which is at most one minor ahead of them, until they restart",
                    hop.from
                )
            },
        );
        s.wait.push(self.kubectl(&format!(
            "rollout status deployment/{deploy} -n {ns} --timeout=5m"
        )));
        match self.c.install {
            InstallMethod::Helm => {
                let path = format!(
                    "{}/{}/{release}.values.yaml",
                    h.dir,
                    Phase::ControlPlane.dir()
                );
                let cmd = self.helm(&format!(
                    "upgrade --install {release} {} --version {} -n {ns} --wait -f {path}",
                    self.chart("istiod"),
                    hop.to
                ));
                self.push_artifact(Artifact {
                    path: path.clone(),
                    template: "istiod.values.yaml.j2",
                    targets: format!(
                        "chart {} {} (release {release} in {ns})",
                        self.chart("istiod"),
                        hop.to
                    ),
                    apply: cmd.clone(),
                    data: json!({"values": self.istiod_values(&hop.to, rev)}),
                });
                s.files.push(path);
                s.apply.push(cmd);
                s.rollback.push(if canary {
                    self.helm(&format!("uninstall {release} -n {ns}"))
                } else {
                    self.helm(&format!("rollback {release} -n {ns}"))
                });
            }
            InstallMethod::Istioctl | InstallMethod::Operator => {
                let name = iop_name("istiod", rev);
                let path = format!("{}/{}/{name}.iop.yaml", h.dir, Phase::ControlPlane.dir());
                let operator = self.c.install == InstallMethod::Operator;
                let cmds = if operator {
                    vec![
                        self.istioctl(&format!(
                            "operator init --revision {} --hub {} --tag {}",
                            hop.to_label(),
                            self.c.hub,
                            self.tag(&hop.to)
                        )),
                        self.kubectl(&format!("apply -f {path}")),
                    ]
                } else {
                    vec![self.istioctl(&format!("install -y -f {path}"))]
                };
                self.push_artifact(Artifact {
                    path: path.clone(),
                    template: "istiod.iop.yaml.j2",
                    targets: format!(
                        "IstioOperator {ns}/{name} (Istio {}, revision {})",
                        hop.to,
                        hop.to_label()
                    ),
                    apply: format!("{} (istioctl {})", cmds.join(" && "), hop.to),
                    data: json!({"operator": self.istiod_operator(&hop.to, rev)}),
                });
                s.files.push(path);
                s.apply = cmds;
                if operator {
                    // The operator reconciles asynchronously: wait for it before the Deployment.
                    s.wait.insert(
                        0,
                        self.kubectl(&format!(
                            "wait --for=jsonpath={{.status.status}}=HEALTHY istiooperator/{name} -n {ns} --timeout=10m"
                        )),
                    );
                }
                s.confirm.push(format!(
                    "the istioctl on PATH is version {} (`istioctl version --remote=false`)",
                    hop.to
                ));
                if !canary {
                    s.rollback_note = Some(format!("run the rollback with istioctl {}", hop.from));
                }
                if canary {
                    if operator {
                        s.rollback
                            .push(self.kubectl(&format!("delete istiooperator {name} -n {ns}")));
                        s.rollback.push(
                            self.istioctl(&format!(
                                "operator remove --revision {}",
                                hop.to_label()
                            )),
                        );
                    } else {
                        s.rollback.push(
                            self.istioctl(&format!("uninstall --revision {} -y", hop.to_label())),
                        );
                    }
                } else {
                    let old = format!(
                        "{}/{}/{name}.rollback.iop.yaml",
                        h.dir,
                        Phase::ControlPlane.dir()
                    );
                    let back = if operator {
                        self.kubectl(&format!("apply -f {old}"))
                    } else {
                        self.istioctl(&format!("install -y -f {old}"))
                    };
                    if operator {
                        // The operator itself goes back first, with the old istioctl.
                        s.rollback.push(self.istioctl(&format!(
                            "operator init --revision {} --hub {} --tag {}",
                            hop.from_label(),
                            self.c.hub,
                            self.tag(&hop.from)
                        )));
                    }
                    self.push_artifact(Artifact {
                        path: old.clone(),
                        template: "istiod.iop.yaml.j2",
                        targets: format!("IstioOperator {ns}/{name} (Istio {}, revision {}): rollback", hop.from, hop.from_label()),
                        apply: format!("{back} (istioctl {})", hop.from),
                        data: json!({"operator": self.istiod_operator(&hop.from, hop.from_revision.as_deref())}),
                    });
                    s.rollback.push(back);
                    s.rollback_files.push(old);
                }
            }
        }
        self.push_step(s);
    }

    fn gateways_phase(&mut self, h: &HopBuilder) {
        let hop = h.hop;
        for gi in 0..self.c.gateways.len() {
            let g = &self.c.gateways[gi];
            let ns = g.gateway.namespace.clone();
            let blue_green =
                g.gateway.upgrade == GatewayUpgrade::BlueGreen && hop.strategy == Strategy::Canary;
            let old = self.gateways[gi].clone();
            let new_release = if blue_green {
                format!("{}-{}", g.gateway.name, hop.to_label())
            } else {
                old.release.clone()
            };
            let title = if blue_green {
                format!("Install gateway `{new_release}` beside `{}`", old.release)
            } else {
                format!(
                    "Move gateway `{}` to revision `{}` in place",
                    old.release,
                    hop.to_label()
                )
            };
            let why = if blue_green {
                format!(
                    "the new {} gateway starts with no external traffic: its own Service is ClusterIP and the LoadBalancer Service `{}` still selects the old pods; its pods keep the `istio: {}` label, so the Gateway resources that select it configure it too",
                    g.gateway.kind.name(),
                    g.service().map_or("(none)", |s| s.name.as_str()),
                    g.istio_label
                )
            } else {
                format!(
                    "the gateway's release moves to revision `{}`: a rolling update replaces its pods, each new pod injected by the new istiod",
                    hop.to_label()
                )
            };
            let mut s = self.step(h, Phase::Gateways, &new_release, title, why);
            s.wait.push(self.kubectl(&format!(
                "rollout status deployment/{new_release} -n {ns} --timeout=5m"
            )));
            if blue_green {
                s.confirm.push(format!(
                    "`{new_release}` runs as many ready replicas as `{}` (`kubectl get deployment -n {ns}`) before traffic moves to it",
                    old.release
                ));
            }
            // The release renders the traffic Service only while it owns it; otherwise its own
            // Service is a ClusterIP one and the traffic Service stands alone.
            let own_service = !blue_green && old.owner == ServiceOwner::Release;
            let values = self.gateway_values(g, hop, own_service);
            match self.c.install {
                InstallMethod::Helm => {
                    let path = format!(
                        "{}/{}/{}-{new_release}.values.yaml",
                        h.dir,
                        Phase::Gateways.dir(),
                        seq(gi + 1, self.c.gateways.len())
                    );
                    let cmd = self.helm(&format!(
                        "upgrade --install {new_release} {} --version {} -n {ns} --wait -f {path}",
                        self.chart("gateway"),
                        hop.to
                    ));
                    self.push_artifact(Artifact {
                        path: path.clone(),
                        template: "gateway.values.yaml.j2",
                        targets: format!(
                            "chart {} {} (release {new_release} in {ns})",
                            self.chart("gateway"),
                            hop.to
                        ),
                        apply: cmd.clone(),
                        data: json!({"values": values}),
                    });
                    s.files.push(path);
                    s.apply.push(cmd);
                    s.rollback.push(if blue_green {
                        self.helm(&format!("uninstall {new_release} -n {ns}"))
                    } else {
                        self.helm(&format!("rollback {new_release} -n {ns}"))
                    });
                }
                InstallMethod::Istioctl | InstallMethod::Operator => {
                    let path = format!(
                        "{}/{}/{}-{new_release}.iop.yaml",
                        h.dir,
                        Phase::Gateways.dir(),
                        seq(gi + 1, self.c.gateways.len())
                    );
                    let iop = self.gateway_operator(g, hop, &new_release, own_service);
                    let cmd = if self.c.install == InstallMethod::Operator {
                        self.kubectl(&format!("apply -f {path}"))
                    } else {
                        self.istioctl(&format!("install -y -f {path}"))
                    };
                    self.push_artifact(Artifact {
                        path: path.clone(),
                        template: "gateway.iop.yaml.j2",
                        targets: format!("IstioOperator {}/{new_release} (gateway {new_release} in {ns}, revision {})", self.c.namespace, hop.to_label()),
                        apply: format!("{cmd} (istioctl {})", hop.to),
                        data: json!({"operator": iop}),
                    });
                    s.files.push(path.clone());
                    s.apply.push(cmd);
                    if blue_green {
                        s.rollback.push(self.kubectl(&format!(
                            "delete deployment,service,horizontalpodautoscaler,poddisruptionbudget,serviceaccount -n {ns} -l app={new_release} --ignore-not-found"
                        )));
                        if self.c.install == InstallMethod::Operator {
                            s.rollback.push(self.kubectl(&format!(
                                "delete istiooperator {new_release} -n {} --ignore-not-found",
                                self.c.namespace
                            )));
                        }
                    } else {
                        let back = format!(
                            "{}/{}/{}-{new_release}.rollback.iop.yaml",
                            h.dir,
                            Phase::Gateways.dir(),
                            seq(gi + 1, self.c.gateways.len())
                        );
                        let iop_back = self.gateway_operator_at(
                            g,
                            &hop.from,
                            hop.from_revision.as_deref(),
                            &new_release,
                            own_service,
                        );
                        self.push_artifact(Artifact {
                            path: back.clone(),
                            template: "gateway.iop.yaml.j2",
                            targets: format!(
                                "IstioOperator {}/{new_release}: rollback to {}",
                                self.c.namespace, hop.from
                            ),
                            apply: self.istioctl(&format!("install -y -f {back}")),
                            data: json!({"operator": iop_back}),
                        });
                        s.rollback
                            .push(if self.c.install == InstallMethod::Operator {
                                self.kubectl(&format!("apply -f {back}"))
                            } else {
                                self.istioctl(&format!("install -y -f {back}"))
                            });
                        s.rollback_files.push(back);
                    }
                }
            }
            self.push_step(s);
            if !blue_green {
                self.gateways[gi].version = hop.to.clone();
            }
        }
    }

    fn gateway_values(&self, g: &GatewaySpec, hop: &Hop, own_service: bool) -> Value {
        let mut values: Map<String, Value> = g.gateway.values.clone().into_iter().collect();
        values.remove("name");
        if let Some(r) = &hop.to_revision {
            values.insert("revision".into(), json!(r));
        }
        let labels = values.entry("labels").or_insert_with(|| json!({}));
        if let Value::Object(l) = labels {
            l.insert("istio".into(), json!(g.istio_label));
            l.remove("app");
        }
        if let Some(svc) = g.service() {
            let service = values.entry("service").or_insert_with(|| json!({}));
            if let Value::Object(sv) = service {
                sv.insert("ports".into(), chart_ports(svc));
                if !own_service {
                    sv.insert("type".into(), json!("ClusterIP"));
                    sv.remove("annotations");
                    sv.remove("loadBalancerIP");
                    sv.remove("loadBalancerSourceRanges");
                    sv.remove("externalTrafficPolicy");
                } else {
                    sv.insert("type".into(), json!(service_type(svc.kind)));
                    if !svc.annotations.is_empty() {
                        sv.insert("annotations".into(), json!(svc.annotations));
                    }
                }
            }
        } else {
            // No traffic Service in the inventory (an egress gateway, say): the release gets a
            // ClusterIP Service unless its carried values say otherwise, never the chart's
            // default LoadBalancer.
            let service = values.entry("service").or_insert_with(|| json!({}));
            if let Value::Object(sv) = service {
                sv.entry("type").or_insert_with(|| json!("ClusterIP"));
            }
        }
        if let Some(v) = &self.c.variant {
            let global = values.entry("global").or_insert_with(|| json!({}));
            if let Value::Object(gl) = global {
                gl.insert("variant".into(), json!(v));
            }
        }
        Value::Object(values)
    }

    fn gateway_operator(&self, g: &GatewaySpec, hop: &Hop, name: &str, own_service: bool) -> Value {
        self.gateway_operator_at(g, &hop.to, hop.to_revision.as_deref(), name, own_service)
    }

    fn gateway_operator_at(
        &self,
        g: &GatewaySpec,
        version: &IstioVersion,
        revision: Option<&str>,
        name: &str,
        own_service: bool,
    ) -> Value {
        let mut component = Map::new();
        component.insert("name".into(), json!(name));
        component.insert("namespace".into(), json!(g.gateway.namespace));
        component.insert("enabled".into(), json!(true));
        component.insert("label".into(), json!({"app": name, "istio": g.istio_label}));
        // For istioctl installs the gateway's carried values are the component's Kubernetes
        // settings (IstioOperator `k8s`: resources, hpaSpec, replicaCount, ...); the Service
        // settings meshplan manages take precedence.
        let mut k8s: Map<String, Value> = g.gateway.values.clone().into_iter().collect();
        if let Some(svc) = g.service() {
            let mut service = Map::new();
            service.insert(
                "type".into(),
                json!(if own_service {
                    service_type(svc.kind)
                } else {
                    "ClusterIP"
                }),
            );
            service.insert("ports".into(), chart_ports(svc));
            k8s.insert("service".into(), Value::Object(service));
            if own_service && !svc.annotations.is_empty() {
                k8s.insert("serviceAnnotations".into(), json!(svc.annotations));
            }
        }
        if !k8s.is_empty() {
            component.insert("k8s".into(), Value::Object(k8s));
        }
        let list = if g.gateway.kind == GatewayKind::Egress {
            "egressGateways"
        } else {
            "ingressGateways"
        };
        let mut spec = Map::new();
        spec.insert("profile".into(), json!("empty"));
        if let Some(r) = revision {
            spec.insert("revision".into(), json!(r));
        }
        spec.insert("hub".into(), json!(self.c.hub));
        spec.insert("tag".into(), json!(self.tag(version)));
        spec.insert(
            "components".into(),
            json!({ list: [Value::Object(component)] }),
        );
        json!({
            "apiVersion": "install.istio.io/v1alpha1",
            "kind": "IstioOperator",
            "metadata": {"name": name, "namespace": self.c.namespace},
            "spec": spec,
        })
    }

    fn traffic(&mut self, h: &HopBuilder) {
        let hop = h.hop;
        if hop.strategy != Strategy::Canary {
            return;
        }
        for gi in 0..self.c.gateways.len() {
            let g = &self.c.gateways[gi];
            if g.gateway.upgrade != GatewayUpgrade::BlueGreen {
                continue;
            }
            let Some(svc) = g.service() else { continue };
            let ns = g.gateway.namespace.clone();
            let old = self.gateways[gi].clone();
            let new_release = format!("{}-{}", g.gateway.name, hop.to_label());
            let new_selector = chart_selector(&new_release, &g.istio_label);
            let dir = format!("{}/{}", h.dir, Phase::Traffic.dir());

            if old.owner == ServiceOwner::Release {
                let mut s = self.step(
                    h,
                    Phase::Traffic,
                    &format!("{}-handover", svc.name),
                    format!("Hand the Service `{}` over from release `{}`", svc.name, old.release),
                    format!(
                        "the LoadBalancer Service `{}` is still part of the old gateway `{}`; removing that gateway in cleanup would delete it and lose its external IP. This one-time step marks the Service so that it survives the old gateway's removal, with no change to its spec, selector or address; from then on meshplan owns it (see the Service manifest in cleanup)",
                        svc.name, old.release
                    ),
                );
                match self.c.install {
                    InstallMethod::Helm => {
                        let path = format!(
                            "{dir}/{}-{}.1-keep.values.yaml",
                            seq(gi + 1, self.c.gateways.len()),
                            svc.name
                        );
                        let cmd = self.helm(&format!(
                            "upgrade {} {} --version {} -n {ns} --reuse-values -f {path}",
                            old.release,
                            self.chart("gateway"),
                            old.version
                        ));
                        self.push_artifact(Artifact {
                            path: path.clone(),
                            template: "keep-service.values.yaml.j2",
                            targets: format!(
                                "chart {} {} (release {} in {ns}): keeps Service {} on helm uninstall",
                                self.chart("gateway"),
                                old.version,
                                old.release,
                                svc.name
                            ),
                            apply: cmd.clone(),
                            data: json!({"values": {"service": {"annotations": {"helm.sh/resource-policy": "keep"}}}}),
                        });
                        s.files.push(path);
                        s.apply.push(cmd);
                        s.wait.push(self.kubectl(&format!(
                            "get service {} -n {ns} -o jsonpath={{.metadata.annotations.helm\\.sh/resource-policy}}",
                            svc.name
                        )));
                        s.confirm.push(format!(
                            "the last command prints `keep`, and the external address of `{}` is unchanged",
                            svc.name
                        ));
                        s.rollback
                            .push(self.helm(&format!("rollback {} -n {ns}", old.release)));
                    }
                    InstallMethod::Istioctl | InstallMethod::Operator => {
                        s.apply.push(self.kubectl(&format!(
                            "label service {} -n {ns} istio.io/rev- operator.istio.io/component- operator.istio.io/managed- operator.istio.io/version- install.operator.istio.io/owning-resource- install.operator.istio.io/owning-resource-namespace-",
                            svc.name
                        )));
                        s.confirm.push(format!(
                            "`kubectl get service {} -n {ns} --show-labels` shows no istio.io/rev or operator.istio.io labels, and its external address is unchanged",
                            svc.name
                        ));
                        s.rollback_note = Some("nothing to undo: the labels only mark which installation prunes the Service".to_string());
                    }
                }
                self.push_step(s);
            }

            let switch = format!(
                "{dir}/{}-{}.2-switch.patch.yaml",
                seq(gi + 1, self.c.gateways.len()),
                svc.name
            );
            let back = format!(
                "{dir}/{}-{}.2-switch.rollback.patch.yaml",
                seq(gi + 1, self.c.gateways.len()),
                svc.name
            );
            let apply = self.kubectl(&format!(
                "patch service {} -n {ns} --type merge --patch-file {switch}",
                svc.name
            ));
            let undo = self.kubectl(&format!(
                "patch service {} -n {ns} --type merge --patch-file {back}",
                svc.name
            ));
            self.push_artifact(Artifact {
                path: switch.clone(),
                template: "service-selector.patch.yaml.j2",
                targets: format!("Service {ns}/{}: selector -> {new_release}", svc.name),
                apply: apply.clone(),
                data: json!({"name": svc.name, "namespace": ns, "selector": selector_patch(&old.selector, &new_selector)}),
            });
            self.push_artifact(Artifact {
                path: back.clone(),
                template: "service-selector.patch.yaml.j2",
                targets: format!("Service {ns}/{}: selector -> {} (rollback)", svc.name, old.release),
                apply: undo.clone(),
                data: json!({"name": svc.name, "namespace": ns, "selector": selector_patch(&new_selector, &old.selector)}),
            });
            let mut s = self.step(
                h,
                Phase::Traffic,
                &format!("{}-switch", svc.name),
                format!("Switch `{}` from `{}` to `{new_release}`", svc.name, old.release),
                format!(
                    "only the selector of the existing Service changes, so its external IP and node ports stay; new connections go to the `{}` pods, and open connections to the old pods drain while those pods keep running until cleanup",
                    hop.to_label()
                ),
            );
            s.files.push(switch);
            s.apply.push(apply);
            s.wait.push(self.kubectl(&format!(
                "wait --for=jsonpath={{.spec.selector.app}}={new_release} service/{} -n {ns} --timeout=1m",
                svc.name
            )));
            s.wait
                .push(self.kubectl(&format!("get endpoints {} -n {ns} -o wide", svc.name)));
            s.confirm.push(format!(
                "the endpoints of `{}` are the `{new_release}` pods only, its external address is unchanged, and the load test shows no errors",
                svc.name
            ));
            s.rollback.push(undo);
            s.rollback_files.push(back);
            self.push_step(s);
        }
    }

    fn data_plane(&mut self, h: &HopBuilder) {
        let hop = h.hop;
        let canary = hop.strategy == Strategy::Canary;
        let mut waves: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, n) in self.c.namespaces.iter().enumerate() {
            waves.entry(n.namespace.wave).or_default().push(i);
        }
        for (wave, members) in waves {
            let wave_dir = format!("{}/{}/wave-{wave:02}", h.dir, Phase::DataPlane.dir());
            let count = members.len();
            for (pos, ni) in members.into_iter().enumerate() {
                let n = &self.c.namespaces[ni];
                let name = n.namespace.name.clone();
                let old = self.namespaces[ni].clone();
                let dir = format!("{wave_dir}/{}-{name}", seq(pos + 1, count));
                if canary {
                    let fwd = format!("{dir}/00-namespace.patch.yaml");
                    let back = format!("{dir}/00-namespace.rollback.patch.yaml");
                    let mut labels = Map::new();
                    labels.insert("istio.io/rev".into(), json!(hop.to_label()));
                    if old.injection {
                        labels.insert("istio-injection".into(), Value::Null);
                    }
                    let mut undo_labels = Map::new();
                    undo_labels.insert(
                        "istio.io/rev".into(),
                        old.rev.as_ref().map_or(Value::Null, |r| json!(r)),
                    );
                    if old.injection {
                        undo_labels.insert("istio-injection".into(), json!("enabled"));
                    }
                    let apply = self.kubectl(&format!(
                        "patch namespace {name} --type merge --patch-file {fwd}"
                    ));
                    let undo = self.kubectl(&format!(
                        "patch namespace {name} --type merge --patch-file {back}"
                    ));
                    self.push_artifact(Artifact {
                        path: fwd.clone(),
                        template: "namespace.patch.yaml.j2",
                        targets: format!("Namespace {name}: istio.io/rev={}", hop.to_label()),
                        apply: apply.clone(),
                        data: json!({"name": name, "labels": labels}),
                    });
                    self.push_artifact(Artifact {
                        path: back.clone(),
                        template: "namespace.patch.yaml.j2",
                        targets: format!("Namespace {name}: labels as before (rollback)"),
                        apply: undo.clone(),
                        data: json!({"name": name, "labels": undo_labels}),
                    });
                    let mut s = self.step(
                        h,
                        Phase::DataPlane,
                        &format!("wave-{wave:02}/{name}"),
                        format!("Wave {wave}: point namespace `{name}` at revision `{}`", hop.to_label()),
                        if old.injection {
                            "new pods in the namespace will be injected by the new revision; the legacy istio-injection label is removed because it takes precedence over istio.io/rev. Running pods are untouched until restarted".to_string()
                        } else {
                            "new pods in the namespace will be injected by the new revision; running pods are untouched until restarted".to_string()
                        },
                    );
                    s.files.push(fwd);
                    s.apply.push(apply);
                    s.wait.push(self.kubectl(&format!(
                        "get namespace {name} -L istio.io/rev -L istio-injection"
                    )));
                    s.rollback.push(undo);
                    s.rollback_files.push(back);
                    self.push_step(s);
                }
                let workloads: Vec<_> = n.workloads().to_vec();
                let wcount = workloads.len();
                for (wi, w) in workloads.into_iter().enumerate() {
                    let kind = w.kind.resource();
                    let prefix = format!("{dir}/{}-{kind}-{}", seq(wi + 1, wcount), w.name);
                    let fwd = format!("{prefix}.restart.patch.yaml");
                    let back = format!("{prefix}.restart.rollback.patch.yaml");
                    let apply = self.kubectl(&format!(
                        "patch {kind} {} -n {name} --type merge --patch-file {fwd}",
                        w.name
                    ));
                    let undo = self.kubectl(&format!(
                        "patch {kind} {} -n {name} --type merge --patch-file {back}",
                        w.name
                    ));
                    let api = "apps/v1";
                    self.push_artifact(Artifact {
                        path: fwd.clone(),
                        template: "workload-restart.patch.yaml.j2",
                        targets: format!("{:?} {name}/{}: restart onto {} ({})", w.kind, w.name, hop.to_label(), hop.to),
                        apply: apply.clone(),
                        data: json!({"apiVersion": api, "kind": format!("{:?}", w.kind), "name": w.name, "namespace": name,
                                     "annotations": {RESTART_REVISION_ANNOTATION: hop.to_label(), RESTART_VERSION_ANNOTATION: hop.to.to_string()}}),
                    });
                    self.push_artifact(Artifact {
                        path: back.clone(),
                        template: "workload-restart.patch.yaml.j2",
                        targets: format!("{:?} {name}/{}: restart onto {} ({}) (rollback)", w.kind, w.name, hop.from_label(), hop.from),
                        apply: undo.clone(),
                        data: json!({"apiVersion": api, "kind": format!("{:?}", w.kind), "name": w.name, "namespace": name,
                                     "annotations": {RESTART_REVISION_ANNOTATION: hop.from_label(), RESTART_VERSION_ANNOTATION: hop.from.to_string()}}),
                    });
                    let mut s = self.step(
                        h,
                        Phase::DataPlane,
                        &format!("wave-{wave:02}/{name}/{kind}-{}", w.name),
                        format!("Wave {wave}: restart {kind} `{name}/{}` onto {}", w.name, hop.to),
                        "a pod-template annotation naming the new revision triggers a rolling restart declaratively (no `kubectl rollout restart`); the new pods get the new sidecar. One workload at a time, each finished before the next".to_string(),
                    );
                    s.files.push(fwd);
                    s.apply.push(apply);
                    s.wait.push(self.kubectl(&format!(
                        "rollout status {kind}/{} -n {name} --timeout=10m",
                        w.name
                    )));
                    s.rollback.push(undo);
                    s.rollback_note = Some(if canary {
                        format!(
                            "first undo the namespace label step of `{name}`, then this restart"
                        )
                    } else {
                        "first roll the control plane back (its step in 20-control-plane), then this restart".to_string()
                    });
                    s.rollback_files.push(back);
                    self.push_step(s);
                }
                if canary {
                    self.namespaces[ni] = NamespaceState {
                        rev: Some(hop.to_label().to_string()),
                        injection: false,
                    };
                }
            }
        }
    }

    fn cleanup(&mut self, h: &HopBuilder) {
        let hop = h.hop;
        let ns = self.c.namespace.clone();
        let old_label = hop.from_label().to_string();
        let dir = format!("{}/{}", h.dir, Phase::Cleanup.dir());

        // 1. Old gateways, then the Services meshplan now owns.
        for gi in 0..self.c.gateways.len() {
            let g = &self.c.gateways[gi];
            if g.gateway.upgrade != GatewayUpgrade::BlueGreen {
                continue;
            }
            let gns = g.gateway.namespace.clone();
            let old = self.gateways[gi].clone();
            let new_release = format!("{}-{}", g.gateway.name, hop.to_label());
            let mut s = self.step(
                h,
                Phase::Cleanup,
                &format!("{}-remove", old.release),
                format!("Remove the old gateway `{}`", old.release),
                "traffic has moved to the new gateway; the old one only drains now".to_string(),
            );
            let reinstall = format!(
                "{dir}/{}-{}.reinstall.values.yaml",
                seq(gi + 1, self.c.gateways.len()),
                old.release
            );
            match self.c.install {
                InstallMethod::Helm => {
                    s.apply
                        .push(self.helm(&format!("uninstall {} -n {gns}", old.release)));
                    let rb = self.helm(&format!(
                        "upgrade --install {} {} --version {} -n {gns} --wait -f {reinstall}",
                        old.release,
                        self.chart("gateway"),
                        old.version
                    ));
                    let mut values = self.gateway_values(
                        g,
                        &Hop {
                            to: old.version.clone(),
                            to_revision: hop.from_revision.clone(),
                            ..hop.clone()
                        },
                        false,
                    );
                    // No Service of its own: the release's Service could share the traffic
                    // Service's name, and Helm would then adopt it and change its type.
                    if let Value::Object(m) = &mut values {
                        m.insert("service".into(), json!({"type": "None"}));
                    }
                    self.push_artifact(Artifact {
                        path: reinstall.clone(),
                        template: "gateway.values.yaml.j2",
                        targets: format!(
                            "chart {} {} (release {} in {gns}): rollback only",
                            self.chart("gateway"),
                            old.version,
                            old.release
                        ),
                        apply: rb.clone(),
                        data: json!({"values": values}),
                    });
                    s.rollback.push(rb);
                    s.rollback_files.push(reinstall);
                }
                InstallMethod::Istioctl | InstallMethod::Operator => {
                    // The objects the istioctl gateway chart names after the gateway; its Service
                    // only when it is not the traffic Service.
                    let r = &old.release;
                    let mut objects = format!(
                        "deployment/{r} horizontalpodautoscaler/{r} poddisruptionbudget/{r} serviceaccount/{r}-service-account role/{r}-sds rolebinding/{r}-sds"
                    );
                    if g.service().is_none_or(|svc| svc.name != *r) {
                        objects.push_str(&format!(" service/{r}"));
                    }
                    s.apply.push(
                        self.kubectl(&format!("delete {objects} -n {gns} --ignore-not-found")),
                    );
                    s.rollback_note = Some(format!(
                        "reinstall the old gateway from the previous plan's gateway IstioOperator with istioctl {}",
                        old.version
                    ));
                }
            }
            s.wait
                .push(self.kubectl(&format!("get pods -n {gns} -l istio.io/rev={old_label}")));
            s.confirm
                .push(format!("no `{}` pods are left in `{gns}`", old.release));
            s.confirm.push("the rollback reinstalls the old gateway beside the new one; then undo the traffic switch".to_string());
            self.push_step(s);

            if let Some(svc) = g.service() {
                let path = format!(
                    "{dir}/{}-{}.service.yaml",
                    seq(gi + 1, self.c.gateways.len()),
                    svc.name
                );
                let apply = self.kubectl(&format!("apply -f {path}"));
                let selector = chart_selector(&new_release, &g.istio_label);
                self.push_artifact(Artifact {
                    path: path.clone(),
                    template: "service.yaml.j2",
                    targets: format!("Service {gns}/{} (owned by meshplan from now on)", svc.name),
                    apply: apply.clone(),
                    data: json!({
                        "name": svc.name, "namespace": gns, "type": service_type(svc.kind),
                        "annotations": svc.annotations, "selector": selector, "ports": service_ports(svc),
                    }),
                });
                let mut s = self.step(
                    h,
                    Phase::Cleanup,
                    &format!("{}-own", svc.name),
                    format!("Record the Service `{}` as meshplan's", svc.name),
                    "the Service outlived the old gateway; applying its manifest (selector already on the new pods) makes it a standalone object that the next plan patches: set `service.owner: standalone` in the inventory".to_string(),
                );
                s.files.push(path);
                s.apply.push(apply);
                s.wait
                    .push(self.kubectl(&format!("get endpoints {} -n {gns}", svc.name)));
                s.rollback_note = Some(
                    "nothing to undo: the manifest matches the Service as it already runs"
                        .to_string(),
                );
                self.push_step(s);
            }
            self.gateways[gi] = GatewayState {
                release: new_release.clone(),
                selector: chart_selector(&new_release, &g.istio_label),
                owner: ServiceOwner::Standalone,
                version: hop.to.clone(),
            };
        }

        // 2. Nothing may still run on the old revision.
        let mut s = self.step(
            h,
            Phase::Cleanup,
            "verify-drained",
            format!("Verify that nothing uses revision `{old_label}`"),
            format!(
                "removing istiod `{old_label}` while a proxy still uses it would cut that proxy off its control plane{}",
                if hop.minor_distance() >= 2 {
                    format!("; with this two-minor hop, no {} proxy may be left for the {} istiod", hop.from.minor(), hop.to.minor())
                } else {
                    String::new()
                }
            ),
        );
        s.apply
            .push(self.kubectl(&format!("get pods -A -l istio.io/rev={old_label}")));
        s.apply
            .push(self.kubectl(&format!("get namespaces -l istio.io/rev={old_label}")));
        if hop.from_revision.is_none() {
            s.apply
                .push(self.kubectl("get namespaces -l istio-injection=enabled"));
        }
        s.apply
            .push(self.istioctl(&format!("proxy-status --revision {old_label}")));
        s.confirm.push(format!("every command lists nothing on `{old_label}`; otherwise restart what is left before going on"));
        s.rollback_note = Some("nothing to undo: read-only".to_string());
        self.push_step(s);

        // 3. The default revision and the tags move before the old istiod goes, so validation
        //    and tag-based injection never point at a deleted Service.
        let mut s = self.step(
            h,
            Phase::Cleanup,
            "default-revision",
            format!("Make `{}` the default revision", hop.to_label()),
            "the validating webhook and any revision tags must point at the new istiod before the old one is removed, or they would point at a deleted Service".to_string(),
        );
        if self.c.install == InstallMethod::Helm {
            let path = format!("{dir}/50-base.values.yaml");
            let cmd = self.helm(&format!(
                "upgrade {} {} --version {} -n {ns} -f {path}",
                self.c.base_release,
                self.chart("base"),
                hop.to
            ));
            self.push_artifact(Artifact {
                path: path.clone(),
                template: "base.values.yaml.j2",
                targets: format!(
                    "chart {} {} (release {} in {ns}): defaultRevision {}",
                    self.chart("base"),
                    hop.to,
                    self.c.base_release,
                    hop.to_label()
                ),
                apply: cmd.clone(),
                data: json!({"values": self.base_values(hop.to_label())}),
            });
            s.files.push(path);
            s.apply.push(cmd);
            s.rollback.push(self.helm(&format!(
                "upgrade {} {} --version {} -n {ns} -f {}/{}/base.values.yaml",
                self.c.base_release,
                self.chart("base"),
                hop.to,
                h.dir,
                Phase::Crds.dir()
            )));
        }
        // With istioctl, the `default` tag is what points validation (and the legacy injection
        // selectors) at a revision: Istio's canary procedure moves it to the new revision. An
        // unrevisioned install gets it only at the end, once its own webhooks are gone.
        let mut tags: Vec<String> = self.c.tags.clone();
        if self.c.install != InstallMethod::Helm
            && hop.from_revision.is_some()
            && !tags.iter().any(|t| t == DEFAULT_REVISION)
        {
            tags.insert(0, DEFAULT_REVISION.to_string());
        }
        // Revision tags move to the new revision; namespaces were relabelled to the revision
        // itself, so this only matters to whatever still uses the tags.
        for tag in &tags {
            s.apply.push(self.istioctl(&format!(
                "tag set {tag} --revision {} --overwrite",
                hop.to_label()
            )));
            s.rollback
                .push(self.istioctl(&format!("tag set {tag} --revision {old_label} --overwrite")));
        }
        s.wait.push(
            self.kubectl("get validatingwebhookconfigurations,mutatingwebhookconfigurations"),
        );
        if !s.apply.is_empty() {
            self.push_step(s);
        }

        // 4. The old control plane.
        let old_release = self.release_of(hop.from_revision.as_deref());
        let mut s = self.step(
            h,
            Phase::Cleanup,
            "remove-old-istiod",
            format!("Remove istiod revision `{old_label}`"),
            "every proxy and gateway has moved; the old control plane only serves nothing now"
                .to_string(),
        );
        match self.c.install {
            InstallMethod::Helm => {
                s.apply
                    .push(self.helm(&format!("uninstall {old_release} -n {ns}")));
                let path = format!("{dir}/60-{old_release}.reinstall.values.yaml");
                let rb = self.helm(&format!(
                    "upgrade --install {old_release} {} --version {} -n {ns} --wait -f {path}",
                    self.chart("istiod"),
                    hop.from
                ));
                self.push_artifact(Artifact {
                    path: path.clone(),
                    template: "istiod.values.yaml.j2",
                    targets: format!("chart {} {} (release {old_release} in {ns}): rollback only", self.chart("istiod"), hop.from),
                    apply: rb.clone(),
                    data: json!({"values": self.istiod_values(&hop.from, hop.from_revision.as_deref())}),
                });
                s.rollback.push(rb);
                s.rollback_files.push(path);
            }
            InstallMethod::Istioctl => {
                s.apply
                    .push(self.istioctl(&format!("uninstall --revision {old_label} -y")));
                s.rollback_note = Some(format!(
                    "reinstall revision `{old_label}` from the previous plan's IstioOperator with istioctl {}",
                    hop.from
                ));
            }
            InstallMethod::Operator => {
                s.apply.push(self.kubectl(&format!(
                    "delete istiooperator {} -n {ns}",
                    iop_name("istiod", hop.from_revision.as_deref())
                )));
                s.apply
                    .push(self.istioctl(&format!("operator remove --revision {old_label}")));
                s.rollback_note = Some(format!(
                    "reinstall revision `{old_label}` from the previous plan's IstioOperator with istioctl {}",
                    hop.from
                ));
            }
        }
        s.wait
            .push(self.kubectl(&format!("get pods -n {ns} -l app=istiod -L istio.io/rev")));
        s.confirm
            .push(format!("only `{}` istiod pods are listed", hop.to_label()));
        self.push_step(s);

        // 5. Webhooks the old revision may leave behind.
        let webhooks = old_webhooks(hop.from_revision.as_deref(), &ns);
        let mut s = self.step(
            h,
            Phase::Cleanup,
            "leftover-webhooks",
            format!("Delete webhooks left behind by revision `{old_label}`"),
            "uninstalling a revision can leave its injector and validator webhooks behind (istio/istio#35590, #36905); a webhook pointing at a deleted istiod breaks pod creation or config validation".to_string(),
        );
        for w in &webhooks {
            s.apply
                .push(self.kubectl(&format!("delete {w} --ignore-not-found")));
        }
        s.wait.push(
            self.kubectl("get mutatingwebhookconfigurations,validatingwebhookconfigurations"),
        );
        s.confirm.push(format!(
            "only webhooks of revision `{}` (and the default validator and tags pointing at it) are left",
            hop.to_label()
        ));
        s.rollback_note = Some(
            "nothing to undo: reinstalling the old revision recreates its webhooks".to_string(),
        );
        self.webhooks.extend(webhooks);
        self.push_step(s);

        // 6. An unrevisioned install served `istio-injection=enabled` and unlabelled pods that
        //    ask for injection; with its webhook gone, a `default` tag on the new revision takes
        //    over. It comes last, so that it never injects beside the old webhook.
        if hop.from_revision.is_none() && !self.c.tags.iter().any(|t| t == DEFAULT_REVISION) {
            let mut s = self.step(
                h,
                Phase::Cleanup,
                "default-tag",
                format!("Point the `default` tag at revision `{}`", hop.to_label()),
                "the removed unrevisioned control plane injected namespaces labelled istio-injection=enabled; the `default` tag gives that job to the new revision, so that namespaces created later with the legacy label are still injected".to_string(),
            );
            s.apply.push(self.istioctl(&format!(
                "tag set default --revision {} --overwrite",
                hop.to_label()
            )));
            s.wait
                .push(self.kubectl("get mutatingwebhookconfigurations -l istio.io/tag=default"));
            s.rollback.push(self.istioctl("tag remove default -y"));
            self.push_step(s);
        }
    }
}

struct HopBuilder<'a> {
    number: usize,
    hop: &'a Hop,
    dir: String,
}

fn hop_json(number: usize, hop: &Hop) -> Value {
    json!({
        "number": number,
        "from": hop.from.to_string(),
        "to": hop.to.to_string(),
        "strategy": hop.strategy.name(),
        "fromRevision": hop.from_label(),
        "toRevision": hop.to_label(),
        "minorsCrossed": hop.minors_crossed,
    })
}

/// `i` zero-padded so that it sorts among `count` siblings (at least two digits).
fn seq(i: usize, count: usize) -> String {
    let width = count.to_string().len().max(2);
    format!("{i:0width$}")
}

/// The name of an IstioOperator resource for a revision.
fn iop_name(base: &str, revision: Option<&str>) -> String {
    match revision {
        Some(r) => format!("{base}-{r}"),
        None => base.to_string(),
    }
}

/// The selector the gateway chart gives a release: `{app: <release>, istio: <label>}`.
fn chart_selector(release: &str, istio_label: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".to_string(), release.to_string()),
        ("istio".to_string(), istio_label.to_string()),
    ])
}

/// A JSON merge patch from one selector to another: new keys set, stale keys nulled.
fn selector_patch(from: &BTreeMap<String, String>, to: &BTreeMap<String, String>) -> Value {
    let mut m = Map::new();
    for k in from.keys() {
        if !to.contains_key(k) {
            m.insert(k.clone(), Value::Null);
        }
    }
    for (k, v) in to {
        m.insert(k.clone(), json!(v));
    }
    Value::Object(m)
}

fn service_type(t: ServiceType) -> &'static str {
    match t {
        ServiceType::LoadBalancer => "LoadBalancer",
        ServiceType::NodePort => "NodePort",
        ServiceType::ClusterIP => "ClusterIP",
    }
}

/// Ports as the gateway chart takes them (its schema has no nodePort).
fn chart_ports(svc: &crate::inventory::GatewayService) -> Value {
    Value::Array(
        svc.ports
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "port": p.port,
                    "protocol": p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    "targetPort": p.target_port.unwrap_or(p.port),
                })
            })
            .collect(),
    )
}

/// Ports as a Service manifest has them.
fn service_ports(svc: &crate::inventory::GatewayService) -> Value {
    Value::Array(
        svc.ports
            .iter()
            .map(|p| {
                let mut m = Map::new();
                m.insert("name".into(), json!(p.name));
                if let Some(np) = p.node_port {
                    m.insert("nodePort".into(), json!(np));
                }
                m.insert("port".into(), json!(p.port));
                m.insert(
                    "protocol".into(),
                    json!(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                );
                m.insert("targetPort".into(), json!(p.target_port.unwrap_or(p.port)));
                Value::Object(m)
            })
            .collect(),
    )
}

/// The webhook configurations a revision installs, as `kind/name`.
fn old_webhooks(revision: Option<&str>, ns: &str) -> Vec<String> {
    match revision {
        Some(r) => vec![
            format!("mutatingwebhookconfiguration/istio-sidecar-injector-{r}"),
            format!("validatingwebhookconfiguration/istio-validator-{r}-{ns}"),
        ],
        None => vec![
            "mutatingwebhookconfiguration/istio-sidecar-injector".to_string(),
            format!("validatingwebhookconfiguration/istio-validator-{ns}"),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_sort_in_apply_order() {
        let mut dirs: Vec<&str> = Phase::ALL.iter().map(|p| p.dir()).collect();
        let sorted = {
            let mut d = dirs.clone();
            d.sort_unstable();
            d
        };
        assert_eq!(dirs, sorted);
        dirs.dedup();
        assert_eq!(dirs.len(), Phase::ALL.len());
    }

    #[test]
    fn selector_patch_nulls_stale_keys() {
        let from = BTreeMap::from([
            ("istio".into(), "ingressgateway".into()),
            ("version".into(), "1-9-7".into()),
        ]);
        let to = chart_selector("istio-ingressgateway-1-10", "ingressgateway");
        assert_eq!(
            selector_patch(&from, &to),
            json!({"app": "istio-ingressgateway-1-10", "istio": "ingressgateway", "version": null})
        );
    }

    #[test]
    fn lists_the_webhooks_of_a_revision() {
        assert_eq!(
            old_webhooks(Some("1-19"), "istio-system"),
            vec![
                "mutatingwebhookconfiguration/istio-sidecar-injector-1-19",
                "validatingwebhookconfiguration/istio-validator-1-19-istio-system"
            ]
        );
    }
}

#[cfg(test)]
mod invariants {
    //! Properties every plan must have, checked on plans built in memory from real inventories.

    use super::*;
    use crate::diagnostic::Diagnostics;
    use crate::path::{Target, plan_paths};
    use crate::source::Source;

    fn plan_for(text: &str, to: &str) -> Plan {
        let src = Source::new("inventory.yaml", text);
        let inv = crate::load::inventory(&src).0.expect("valid inventory");
        let mut diags = Diagnostics::default();
        let mesh = crate::validate::validate(&inv, &src, &mut diags).expect("valid mesh");
        let catalog = Catalog::embedded();
        let target = Target {
            version: to.parse().unwrap(),
            via: vec![],
            one_minor: false,
            today: None,
            artifacts: true,
        };
        let paths = plan_paths(&mesh, &target, &catalog, &src, &mut diags).expect("a path");
        build(&mesh, &paths, &catalog, "inventory.yaml")
    }

    fn plans() -> Vec<(&'static str, Plan)> {
        let contract = include_str!("../examples/prod-mesh.yaml");
        let solo = include_str!("../golden/ok-solo-istioctl-bluegreen/inventory.yaml");
        let legacy = include_str!("../golden/ok-legacy-injection-to-1-24/inventory.yaml");
        let operator = include_str!("../golden/ok-operator-in-place-multi-hop/inventory.yaml");
        vec![
            ("contract 1.20.2", plan_for(contract, "1.20.2")),
            ("contract 1.21.0", plan_for(contract, "1.21.0")),
            ("contract 1.22.8", plan_for(contract, "1.22.8")),
            ("solo", plan_for(solo, "1.11.8")),
            ("legacy", plan_for(legacy, "1.24.6")),
            ("operator", plan_for(operator, "1.23.6")),
        ]
    }

    #[test]
    fn a_gateway_without_a_traffic_service_never_gets_a_load_balancer() {
        let text = "apiVersion: meshplan.dev/v1alpha1\nkind: MeshInventory\nname: m\nclusters:\n  - name: c\n    kubernetesVersion: \"1.28\"\n    istio: {version: 1.19.6, revision: 1-19}\n    gateways:\n      - {name: istio-egressgateway, kind: egress, namespace: istio-egress, revision: 1-19}\n      - {name: egress-b, kind: egress, namespace: egress-b, revision: 1-19, upgrade: inPlace}\n";
        let plan = plan_for(text, "1.20.2");
        let gateway_values: Vec<&Artifact> = plan
            .artifacts
            .iter()
            .filter(|a| a.template == "gateway.values.yaml.j2")
            .collect();
        assert_eq!(
            gateway_values.len(),
            3,
            "two new or moved releases, one rollback reinstall"
        );
        for a in gateway_values {
            let t = a.data["values"]["service"]["type"].as_str();
            assert!(matches!(t, Some("ClusterIP" | "None")), "{}: {t:?}", a.path);
        }
        // Without a traffic Service there is nothing to switch.
        assert!(!plan.steps.iter().any(|s| s.phase == Phase::Traffic));
    }

    #[test]
    fn steps_are_in_cluster_hop_phase_order() {
        for (name, plan) in plans() {
            let cluster_index = |c: &str| plan.clusters.iter().position(|x| x.name == c).unwrap();
            let keys: Vec<_> = plan
                .steps
                .iter()
                .map(|s| (cluster_index(&s.cluster), s.hop, s.phase))
                .collect();
            let mut sorted = keys.clone();
            sorted.sort();
            assert_eq!(keys, sorted, "{name}");
        }
    }

    #[test]
    fn the_old_revision_goes_only_after_everything_moved() {
        for (name, plan) in plans() {
            for (i, s) in plan.steps.iter().enumerate() {
                if s.id.ends_with("remove-old-istiod") {
                    let later_moves = plan.steps[i..]
                        .iter()
                        .filter(|t| t.cluster == s.cluster && t.hop == s.hop)
                        .any(|t| {
                            matches!(t.phase, Phase::DataPlane | Phase::Traffic | Phase::Gateways)
                        });
                    assert!(
                        !later_moves,
                        "{name}: {} comes before its hop's moves end",
                        s.id
                    );
                }
            }
        }
    }

    #[test]
    fn every_change_can_be_undone() {
        for (name, plan) in plans() {
            for s in &plan.steps {
                assert!(
                    !s.apply.is_empty() || !s.confirm.is_empty(),
                    "{name}: {} does nothing",
                    s.id
                );
                assert!(
                    !s.rollback.is_empty() || s.rollback_note.is_some(),
                    "{name}: {} has no rollback",
                    s.id
                );
            }
        }
    }

    #[test]
    fn steps_and_files_match() {
        for (name, plan) in plans() {
            let files: std::collections::BTreeSet<&str> =
                plan.artifacts.iter().map(|a| a.path.as_str()).collect();
            assert_eq!(
                files.len(),
                plan.artifacts.len(),
                "{name}: a path is generated twice"
            );
            let mut used = std::collections::BTreeSet::new();
            for s in &plan.steps {
                for f in s.files.iter().chain(&s.rollback_files) {
                    assert!(
                        files.contains(f.as_str()),
                        "{name}: {} names missing {f}",
                        s.id
                    );
                    used.insert(f.as_str());
                    // Every file a step applies appears in one of its commands.
                    assert!(
                        s.apply
                            .iter()
                            .chain(&s.rollback)
                            .any(|c| c.contains(f.as_str()))
                            || f.ends_with("README.md"),
                        "{name}: {} never uses {f}",
                        s.id
                    );
                }
            }
            let unused: Vec<_> = files.difference(&used).collect();
            assert!(unused.is_empty(), "{name}: no step uses {unused:?}");
        }
    }
}
