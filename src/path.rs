//! The upgrade path of each cluster: which hops, by which strategy, through which versions, and
//! whether Istio supports them. The rules come from the release catalog (`upgradeFrom` of each
//! minor); this module only searches them.

use serde::Serialize;

use crate::catalog::{Catalog, Date, EndOfLife, HelmMaturity, KubeSupport, Release};
use crate::diagnostic::{Code, Diagnostic, Diagnostics, Severity};
use crate::inventory::{ControlPlaneUpgrade, InstallMethod, UpgradePolicy};
use crate::source::{Source, YamlPath};
use crate::validate::{ClusterSpec, Mesh};
use crate::version::{IstioVersion, Minor, format_ranges};

/// What the user asked for on the command line.
#[derive(Clone, Debug)]
pub struct Target {
    pub version: IstioVersion,
    /// Intermediate versions forced with `--via`.
    pub via: Vec<IstioVersion>,
    /// `--one-minor-at-a-time`: every hop is one minor, whatever the inventory says.
    pub one_minor: bool,
    /// Today's date, for end-of-life warnings (which never reach generated files).
    pub today: Option<Date>,
    /// Artifacts will be written (`compile`): what meshplan cannot render for a hop is then an
    /// error, not only a warning as in `check`, which judges the path by Istio's rules alone.
    pub artifacts: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Strategy {
    /// A new revision beside the old one.
    Canary,
    /// The running control plane (and its revision name) is upgraded where it is.
    InPlace,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Canary => "canary",
            Strategy::InPlace => "in-place",
        }
    }
}

/// One step of a cluster's path.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hop {
    pub from: IstioVersion,
    pub to: IstioVersion,
    pub strategy: Strategy,
    /// Revision names; `None` is the default (unrevisioned) control plane.
    pub from_revision: Option<String>,
    pub to_revision: Option<String>,
    /// Minors this hop enters, whose upgrade notes apply (empty for a patch hop).
    pub minors_crossed: Vec<String>,
    /// The skip is supported only at alpha level (1.8 -> 1.10).
    pub alpha: bool,
}

impl Hop {
    pub fn minor_distance(&self) -> i64 {
        self.to.minor().distance_from(self.from.minor())
    }

    pub fn from_label(&self) -> &str {
        self.from_revision.as_deref().unwrap_or("default")
    }

    pub fn to_label(&self) -> &str {
        self.to_revision.as_deref().unwrap_or("default")
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPath {
    pub cluster: String,
    pub from: IstioVersion,
    pub to: IstioVersion,
    pub hops: Vec<Hop>,
    /// Why the path has more than one hop, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The path of every cluster, in inventory order.
#[derive(Clone, Debug)]
pub struct MeshPath {
    pub target: IstioVersion,
    pub clusters: Vec<ClusterPath>,
}

/// Checks the target and plans every cluster's path. All problems are reported; the paths are
/// returned only when there is no error.
pub fn plan_paths(
    mesh: &Mesh,
    target: &Target,
    catalog: &Catalog,
    src: &Source,
    diags: &mut Diagnostics,
) -> Option<MeshPath> {
    let before = error_count(diags);
    let target_release = check_target(target, catalog, diags)?;
    let via = check_via(target, catalog, diags);
    for v in &via {
        if !mesh.clusters.is_empty() && mesh.clusters.iter().all(|c| *v <= c.version) {
            diags.push(
                Diagnostic::error(
                    Code::InvalidVia,
                    format!("--via {v} is at or below the version every cluster runs, so it forces no hop"),
                )
                .on_flag("--via")
                .help("--via lists intermediate versions, each newer than what a cluster runs and of a minor below the target"),
            );
        }
    }
    let mut clusters = Vec::new();
    for c in &mesh.clusters {
        if let Some(p) = cluster_path(c, target, &via, target_release, catalog, src, diags) {
            check_size(c, &p, src, diags);
            check_derived_names(c, &p, src, diags);
            clusters.push(p);
        }
    }
    if error_count(diags) == before {
        check_remote_paths(mesh, &clusters, src, diags);
    }
    if let Some(today) = target.today {
        end_of_life(&clusters, catalog, today, diags);
    }
    (error_count(diags) == before).then(|| MeshPath {
        target: target.version.clone(),
        clusters,
    })
}

/// A remote cluster goes through its primary's hops, revision for revision: its control
/// plane is the primary's istiod. A remote upgraded in place across 1.24 would change its
/// release's chart (istiod-remote -> istiod with the remote profile), which a canary avoids.
fn check_remote_paths(mesh: &Mesh, paths: &[ClusterPath], src: &Source, diags: &mut Diagnostics) {
    let path_of = |name: &str| {
        mesh.clusters
            .iter()
            .position(|c| c.name == name)
            .and_then(|i| paths.get(i))
    };
    let key = |p: &ClusterPath| -> Vec<(IstioVersion, Option<String>, Strategy)> {
        p.hops
            .iter()
            .map(|h| (h.to.clone(), h.to_revision.clone(), h.strategy))
            .collect()
    };
    let show = |p: &ClusterPath| -> String {
        std::iter::once(p.from.to_string())
            .chain(
                p.hops
                    .iter()
                    .map(|h| format!("{} ({})", h.to, h.to_label())),
            )
            .collect::<Vec<_>>()
            .join(" -> ")
    };
    for (c, p) in mesh.clusters.iter().zip(paths) {
        let Some(primary) = c.remote_of() else {
            continue;
        };
        let Some(pp) = path_of(primary) else {
            continue;
        };
        if key(p) != key(pp) {
            diags.push(
                Diagnostic::error(
                    Code::TopologyUnsupported,
                    format!(
                        "remote cluster `{}` would go {}, and its primary `{primary}` {}",
                        c.name,
                        show(p),
                        show(pp)
                    ),
                )
                .at(src, &c.at.key("multicluster").key("primary"))
                .help("a remote's control plane is its primary's istiod, so both take the same hops with the same revisions: give the remote the primary's revisionFormat, controlPlaneUpgrade and upgradePolicy, and a Kubernetes version every hop of the primary's path supports"),
            );
            continue;
        }
        let v124 = Minor {
            major: 1,
            minor: 24,
        };
        if let Some(h) = p.hops.iter().find(|h| h.strategy == Strategy::InPlace) {
            let crossing = if h.from.minor() < v124 && h.to.minor() >= v124 {
                " (in place across 1.24 the remote's release would also move from the istiod-remote chart to the istiod chart)"
            } else {
                ""
            };
            diags.push(
                Diagnostic::error(
                    Code::TopologyUnsupported,
                    format!(
                        "remote cluster `{}`: the hop {} -> {} would run in place (revision `{}` kept)",
                        c.name,
                        h.from,
                        h.to,
                        h.to_label()
                    ),
                )
                .at(src, &c.at.key("multicluster").key("primary"))
                .help(format!(
                    "in place, the primary's istiod changes version under the remote's sidecars, so rolling the remote back on its own cannot give its pods the old sidecars again (only rolling the primary back first can, across clusters, which meshplan does not plan){crossing}; give the pair revisionFormat: patch (every version a new revision) and controlPlaneUpgrade: canary"
                )),
            );
        }
    }
}

/// The longest Helm release name (Helm stores a release in Secrets named after it).
pub const MAX_HELM_RELEASE: usize = 53;

/// The longest Kubernetes Service name (a DNS-1035 label), which a gateway's Deployment and
/// Service names share.
pub const MAX_SERVICE_NAME: usize = 63;

/// Checks the names the plan derives from the new revisions against the limits of the places
/// they go, so that a plan never fails half-way with a name Helm or Kubernetes refuses.
fn check_derived_names(c: &ClusterSpec, p: &ClusterPath, src: &Source, diags: &mut Diagnostics) {
    let mut seen = std::collections::BTreeSet::new();
    for hop in &p.hops {
        if hop.strategy != Strategy::Canary {
            continue;
        }
        let rev = hop.to_label();
        let mut derived: Vec<(String, usize, &str, YamlPath, String)> = Vec::new();
        let istiod = crate::plan::names::istiod(hop.to_revision.as_deref());
        if c.install == InstallMethod::Sail {
            derived.push((
                istiod.clone(),
                MAX_SERVICE_NAME,
                "the Service of the new istiod",
                c.at.key("istio").key("sail").key("name"),
                "use a shorter Istio resource name: the operator names revisions `<name>-v<version>`".to_string(),
            ));
        }
        if c.install == InstallMethod::Helm {
            derived.push((
                istiod,
                MAX_HELM_RELEASE,
                "the Helm release of the new istiod",
                c.at.key("istio").key("version"),
                format!("use a shorter revision than `{rev}` (revisionFormat `minor` gives `1-N`)"),
            ));
        }
        for g in c
            .gateways
            .iter()
            .filter(|g| crate::plan::state::blue_green(g, hop))
        {
            let name = format!("{}-{rev}", g.gateway.name);
            let (limit, place) = if c.install.helm_gateways() {
                (
                    MAX_HELM_RELEASE,
                    "the Helm release (and Deployment) of the new gateway",
                )
            } else {
                (
                    MAX_SERVICE_NAME,
                    "the Deployment and Service of the new gateway",
                )
            };
            let keep = limit.saturating_sub(rev.len() + 1);
            derived.push((
                name,
                limit,
                place,
                g.at.key("name"),
                format!("shorten the gateway's name to at most {keep} characters, or use a shorter revision"),
            ));
        }
        for (name, limit, place, at, help) in derived {
            if name.len() > limit && seen.insert(name.clone()) {
                diags.push(
                    Diagnostic::error(
                        Code::NameTooLong,
                        format!(
                            "`{name}`, {place} in cluster `{}`, is {} characters long; the limit is {limit}",
                            c.name,
                            name.len()
                        ),
                    )
                    .at(src, &at)
                    .help(help),
                );
            }
        }
    }
}

/// The most namespace and workload moves one cluster's plan may hold (each namespace and each
/// workload counts once per hop). A cluster's plan is held in memory while it is checked and
/// rendered, about 10 KB per move: at this limit `compile` stays under 512 MiB.
pub const MAX_MOVES_PER_CLUSTER: usize = 40_000;

fn workloads(c: &ClusterSpec) -> usize {
    c.namespaces.iter().map(|n| n.workloads().len()).sum()
}

/// How many namespace and workload moves the plan of cluster `c` holds.
pub fn moves(c: &ClusterSpec, p: &ClusterPath) -> usize {
    (c.namespaces.len() + workloads(c)).saturating_mul(p.hops.len())
}

fn check_size(c: &ClusterSpec, p: &ClusterPath, src: &Source, diags: &mut Diagnostics) {
    let workloads = workloads(c);
    let moves = moves(c, p);
    if moves > MAX_MOVES_PER_CLUSTER {
        diags.push(
            Diagnostic::error(
                Code::ClusterTooLarge,
                format!(
                    "cluster `{}` has {} namespaces and {workloads} workloads to move over {} hop(s): {moves} moves, more than the {MAX_MOVES_PER_CLUSTER} one plan may hold",
                    c.name,
                    c.namespaces.len(),
                    p.hops.len()
                ),
            )
            .at(src, &c.at.key("namespaces"))
            .help(if p.hops.len() > 1 {
                "plan fewer hops at a time: compile with --to the first hop's target, apply it, then compile the rest"
            } else {
                "meshplan cannot hold a plan this large for one cluster; this limit is documented in the README (Limits)"
            }),
        );
    }
}

fn error_count(diags: &Diagnostics) -> usize {
    diags
        .iter()
        .filter(|d| d.severity == crate::diagnostic::Severity::Error)
        .count()
}

fn check_target<'a>(
    target: &Target,
    catalog: &'a Catalog,
    diags: &mut Diagnostics,
) -> Option<&'a Release> {
    let minor = target.version.minor();
    let Some(release) = catalog.get(minor) else {
        let known = format!(
            "{}..{}",
            catalog.first().map(|m| m.to_string()).unwrap_or_default(),
            catalog.last().map(|m| m.to_string()).unwrap_or_default()
        );
        diags.push(
            Diagnostic::error(
                Code::UnknownTarget,
                format!("Istio {minor} is not in the release catalog ({known})"),
            )
            .on_flag("--to")
            .help(format!(
                "pick a version from `meshplan versions`, or pass a newer catalog with --catalog FILE (this one is {})",
                catalog.origin
            )),
        );
        return None;
    };
    if target.version.0.patch > release.latest_patch.0.patch {
        diags.push(
            Diagnostic::warning(
                Code::NewerPatch,
                format!(
                    "{} is newer than the newest {minor} patch the catalog knows ({}); its upgrade notes may be missing",
                    target.version, release.latest_patch
                ),
            )
            .on_flag("--to")
            .help("check the version exists (https://github.com/istio/istio/releases), or pass a newer catalog with --catalog FILE"),
        );
    }
    Some(release)
}

fn check_via(target: &Target, catalog: &Catalog, diags: &mut Diagnostics) -> Vec<IstioVersion> {
    let mut via = target.via.clone();
    via.sort();
    via.dedup();
    let mut ok = Vec::new();
    for v in via {
        let minor = v.minor();
        if v.minor() >= target.version.minor() {
            diags.push(
                Diagnostic::error(
                    Code::InvalidVia,
                    format!("--via {v} is not older than the target minor {}", target.version.minor()),
                )
                .on_flag("--via")
                .help("--via lists intermediate versions, each of a minor between the running one and the target"),
            );
            continue;
        }
        match catalog.get(minor) {
            None => diags.push(
                Diagnostic::error(
                    Code::InvalidVia,
                    format!("--via {v}: Istio {minor} is not in the release catalog"),
                )
                .on_flag("--via"),
            ),
            Some(r) => {
                if v.0.patch > r.latest_patch.0.patch {
                    diags.push(
                        Diagnostic::warning(
                            Code::NewerPatch,
                            format!("--via {v} is newer than the newest {minor} patch the catalog knows ({})", r.latest_patch),
                        )
                        .on_flag("--via"),
                    );
                }
                ok.push(v);
            }
        }
    }
    ok
}

/// One warning per minor on the paths that is past its end of life, naming the clusters.
fn end_of_life(paths: &[ClusterPath], catalog: &Catalog, today: Date, diags: &mut Diagnostics) {
    let mut by_minor: std::collections::BTreeMap<Minor, Vec<&str>> =
        std::collections::BTreeMap::new();
    for p in paths {
        for h in &p.hops {
            let users = by_minor.entry(h.to.minor()).or_default();
            if !users.contains(&p.cluster.as_str()) {
                users.push(&p.cluster);
            }
        }
    }
    for (minor, clusters) in by_minor {
        let (date, how) = match catalog.end_of_life(minor) {
            EndOfLife::Stated(d) => (d, ""),
            EndOfLife::Derived(d) => (d, ", derived from Istio's support policy"),
            EndOfLife::Unknown => continue,
        };
        if today > date {
            diags.push(
                Diagnostic::warning(
                    Code::EndOfLife,
                    format!(
                        "Istio {minor} reached its end of life on {date}{how}; the path of {} goes through it",
                        clusters.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
                    ),
                )
                .on_flag("--to")
                .help("it receives no more security fixes: move on to a supported minor soon"),
            );
        }
    }
}

/// Whether a direct hop from minor `a` to minor `b` is allowed, and whether only at alpha level.
fn hop_allowed(
    a: Minor,
    b: Minor,
    strategy: Strategy,
    policy: UpgradePolicy,
    catalog: &Catalog,
) -> Option<bool> {
    let r = catalog.get(b)?;
    if a == b {
        return Some(false);
    }
    if policy == UpgradePolicy::OneMinorAtATime && b.distance_from(a) != 1 {
        return None;
    }
    match strategy {
        Strategy::InPlace => r.from_in_place.contains(&a).then_some(false),
        Strategy::Canary => {
            if r.from_canary.contains(&a) {
                Some(false)
            } else if r.from_canary_alpha.contains(&a) {
                Some(true)
            } else {
                None
            }
        }
    }
}

/// The cost of entering a minor on a cluster: Kubernetes errors, hops, Kubernetes warnings,
/// alpha-level skips. Paths are compared on the sum, in this order.
type Cost = (u32, u32, u32, u32);

fn add(a: Cost, b: Cost) -> Cost {
    (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3)
}

/// Minors entered by a path, each with whether its hop is an alpha-level skip.
type Stops = Vec<(Minor, bool)>;

/// The best sequence of minors from `from` (exclusive) to `to` (inclusive), or `None`.
fn search(
    from: Minor,
    to: Minor,
    k8s: Minor,
    strategy: Strategy,
    policy: UpgradePolicy,
    catalog: &Catalog,
) -> Option<Vec<(Minor, bool)>> {
    let minors: Vec<Minor> = catalog
        .minors()
        .filter(|m| *m >= from && *m <= to)
        .collect();
    if minors.first() != Some(&from) || minors.last() != Some(&to) {
        return None;
    }
    // best[i]: the best path from minors[i] to `to`, with its cost.
    let n = minors.len();
    let mut best: Vec<Option<(Cost, Stops)>> = vec![None; n];
    best[n - 1] = Some(((0, 0, 0, 0), Vec::new()));
    for i in (0..n - 1).rev() {
        let mut choice: Option<(Cost, Stops)> = None;
        // Larger jumps first: on equal cost the first found wins, so the path skips early.
        for j in (i + 1..n).rev() {
            let Some(alpha) = hop_allowed(minors[i], minors[j], strategy, policy, catalog) else {
                continue;
            };
            let Some((rest_cost, rest)) = &best[j] else {
                continue;
            };
            let release = catalog.get(minors[j])?;
            let node: Cost = match release.kube_support(k8s) {
                KubeSupport::Supported => (0, 1, 0, 0),
                KubeSupport::Tested => (0, 1, 1, 0),
                KubeSupport::Unsupported => (1, 1, 0, 0),
            };
            let cost = add(add(node, (0, 0, 0, u32::from(alpha))), *rest_cost);
            if choice.as_ref().is_none_or(|(c, _)| cost < *c) {
                let mut path = vec![(minors[j], alpha)];
                path.extend(rest.iter().copied());
                choice = Some((cost, path));
            }
        }
        best[i] = choice;
    }
    best[0].take().map(|(_, p)| p)
}

#[allow(clippy::too_many_lines)]
fn cluster_path(
    c: &ClusterSpec,
    target: &Target,
    via: &[IstioVersion],
    target_release: &Release,
    catalog: &Catalog,
    src: &Source,
    diags: &mut Diagnostics,
) -> Option<ClusterPath> {
    let at_version = c.at.key("istio").key("version");
    let from = &c.version;
    let to = &target.version;
    let from_minor = from.minor();
    let name = &c.name;

    if to < from {
        let rev = c.revision_label();
        diags.push(
            Diagnostic::error(
                Code::Downgrade,
                format!("cluster `{name}` runs {from}; {to} would be a downgrade"),
            )
            .at(src, &at_version)
            .help(format!(
                "meshplan plans upgrades only; to go back after a canary upgrade, follow the rollback steps of that plan: relabel namespaces to istio.io/rev={rev}, restart their workloads, switch the gateway Service selectors back, then remove the newer revision"
            ))
            .help("an in-place downgrade may go back at most one minor and must use the istioctl binary of the version you return to"),
        );
        return None;
    }
    if catalog.get(from_minor).is_none() {
        diags.push(
            Diagnostic::error(
                Code::UnknownSource,
                format!("cluster `{name}` runs Istio {from_minor}, which the release catalog does not know"),
            )
            .at(src, &at_version)
            .help(format!(
                "the catalog covers {}..{}; pass a catalog that includes {from_minor} with --catalog FILE",
                catalog.first().map(|m| m.to_string()).unwrap_or_default(),
                catalog.last().map(|m| m.to_string()).unwrap_or_default()
            )),
        );
        return None;
    }
    if to == from {
        diags.push(
            Diagnostic::note(
                Code::AlreadyAtTarget,
                format!("cluster `{name}` already runs {to}; nothing to do"),
            )
            .at(src, &at_version),
        );
        return Some(ClusterPath {
            cluster: name.clone(),
            from: from.clone(),
            to: to.clone(),
            hops: Vec::new(),
            reason: None,
        });
    }

    // istio-cni is upgraded in place once the old control plane is gone, and may run only
    // the version of a running istiod or one minor behind it: a canary across two minors
    // would leave it two behind the new istiod.
    let cni_forces = c.cni.is_some() && !target.one_minor && c.policy == UpgradePolicy::Istio;
    let policy = if target.one_minor || c.cni.is_some() {
        UpgradePolicy::OneMinorAtATime
    } else {
        c.policy
    };
    let strategy = match c.control_plane_upgrade {
        ControlPlaneUpgrade::Canary => Strategy::Canary,
        ControlPlaneUpgrade::InPlace => Strategy::InPlace,
    };

    // The versions the path goes through, after the running one.
    let mut stops: Vec<(IstioVersion, bool)> = Vec::new();
    let mut reason = None;
    let distance = to.minor().distance_from(from_minor);
    let via_here: Vec<&IstioVersion> = via.iter().filter(|v| v.minor() > from_minor).collect();
    if distance == 0 {
        stops.push((to.clone(), false));
    } else if !via_here.is_empty() {
        let mut prev = from_minor;
        for v in via_here
            .iter()
            .map(|v| (*v).clone())
            .chain(std::iter::once(to.clone()))
        {
            match hop_allowed(prev, v.minor(), strategy, policy, catalog) {
                Some(alpha) => stops.push((v.clone(), alpha)),
                None => {
                    diags.push(
                        Diagnostic::error(
                            Code::InvalidVia,
                            format!(
                                "cluster `{name}`: the hop {prev} -> {} forced by --via is not a supported {} upgrade",
                                v.minor(),
                                strategy.name()
                            ),
                        )
                        .at(src, &at_version)
                        .help(allowed_help(v.minor(), strategy, policy, catalog)),
                    );
                    return None;
                }
            }
            prev = v.minor();
        }
        reason = Some(format!(
            "intermediate versions forced with --via {}",
            via_here
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ));
    } else {
        let Some(minors) = search(
            from_minor,
            to.minor(),
            c.kubernetes,
            strategy,
            policy,
            catalog,
        ) else {
            diags.push(
                Diagnostic::error(
                    Code::SkipNotAllowed,
                    format!(
                        "cluster `{name}`: no supported {} path from {from} to {to}",
                        strategy.name()
                    ),
                )
                .at(src, &at_version)
                .help(allowed_help(to.minor(), strategy, policy, catalog)),
            );
            return None;
        };
        for (m, alpha) in &minors {
            let v = if *m == to.minor() {
                to.clone()
            } else {
                catalog.get(*m)?.latest_patch.clone()
            };
            stops.push((v, *alpha));
        }
        if minors.len() > 1 {
            reason = Some(
                if cni_forces && strategy == Strategy::Canary && c.ztunnel.is_some() {
                    format!(
                        "ambient mode: istio-cni and ztunnel are not revisioned and are upgraded in place right after each new istiod, and \"the ztunnel at version 1.x is compatible with the control plane at version 1.x+1 and 1.x\" (istio-cni likewise), so a canary across two minors would leave them two behind; {} -> {} goes one minor per hop",
                        from_minor,
                        to.minor()
                    )
                } else if cni_forces && strategy == Strategy::Canary {
                    format!(
                        "istio-cni is not revisioned: it is upgraded in place once the old istiod is gone, and may run only the version of a running istiod or one minor behind it (\"The CNI at version 1.x is compatible with the control plane at version 1.x+1 and 1.x\"), so a canary across two minors would leave it two behind; {} -> {} goes one minor per hop",
                        from_minor,
                        to.minor()
                    )
                } else {
                    multi_hop_reason(from_minor, to.minor(), strategy, policy, catalog)
                },
            );
        }
    }

    if let Some(sail) = &c.sail
        && !sail_stops(c, sail, &mut stops, via, src, diags)
    {
        return None;
    }

    // Turn the stops into hops with revisions.
    let mut hops = Vec::new();
    let mut cur = from.clone();
    let mut cur_rev = c.revision.clone();
    for (v, alpha) in stops {
        let (hop_strategy, new_rev) = match strategy {
            Strategy::InPlace => (Strategy::InPlace, cur_rev.clone()),
            Strategy::Canary => {
                let derived = match &c.sail {
                    Some(sail) => crate::sail::revision_name(&sail.name, &v),
                    None => v.revision(c.revision_format),
                };
                if cur_rev.as_deref() == Some(derived.as_str()) {
                    if v.minor() != cur.minor() {
                        // A running revision already named after the target minor: a canary
                        // cannot install beside it, and in place it would skip minors.
                        diags.push(
                            Diagnostic::error(
                                Code::InvalidRevision,
                                format!(
                                    "cluster `{name}` runs {cur} under revision `{derived}`, the name its {} revision would get",
                                    v.minor()
                                ),
                            )
                            .at(src, &c.at.key("istio").key("revision"))
                            .help("a canary needs a new revision name: set revisionFormat: patch for this cluster, or move it to a revision named after its version first"),
                        );
                        return None;
                    }
                    (Strategy::InPlace, cur_rev.clone())
                } else {
                    (Strategy::Canary, Some(derived))
                }
            }
        };
        let crossed: Vec<String> = catalog
            .minors()
            .filter(|m| *m > cur.minor() && *m <= v.minor())
            .map(|m| m.to_string())
            .collect();
        hops.push(Hop {
            from: cur.clone(),
            to: v.clone(),
            strategy: hop_strategy,
            from_revision: cur_rev.clone(),
            to_revision: new_rev.clone(),
            minors_crossed: crossed,
            alpha,
        });
        cur = v;
        cur_rev = new_rev;
    }

    check_hops(
        c,
        &hops,
        target_release,
        catalog,
        target.artifacts,
        src,
        diags,
    );
    if let Some(r) = &reason {
        diags.push(
            Diagnostic::note(
                Code::MultiHop,
                format!(
                    "cluster `{name}` is planned as {} hops: {} ({r})",
                    hops.len(),
                    std::iter::once(from.to_string())
                        .chain(hops.iter().map(|h| h.to.to_string()))
                        .collect::<Vec<_>>()
                        .join(" -> ")
                ),
            )
            .at(src, &at_version),
        );
    }
    Some(ClusterPath {
        cluster: name.clone(),
        from: from.clone(),
        to: to.clone(),
        hops,
        reason,
    })
}

/// A Sail-managed cluster's stops must be versions its operator installs: an intermediate
/// stop becomes the newest patch of its minor the operator lists; the target and `--via`
/// versions must be listed as they are.
fn sail_stops(
    c: &ClusterSpec,
    sail: &crate::validate::SailSpec,
    stops: &mut [(IstioVersion, bool)],
    via: &[IstioVersion],
    src: &Source,
    diags: &mut Diagnostics,
) -> bool {
    let supported = crate::sail::supported(&sail.operator).unwrap_or(&[]);
    let last = stops.len().saturating_sub(1);
    for (i, (v, _)) in stops.iter_mut().enumerate() {
        if supported.contains(v) {
            continue;
        }
        let chosen = i == last || via.contains(v);
        if !chosen && let Some(p) = crate::sail::newest_patch(&sail.operator, v.minor()) {
            *v = p;
            continue;
        }
        let newer = crate::sail::releases_installing(v);
        diags.push(
            Diagnostic::error(
                Code::SailUnsupported,
                format!(
                    "cluster `{}`: Sail Operator {} does not install Istio {}{}",
                    c.name,
                    sail.operator,
                    if chosen { v.to_string() } else { format!("{} (any {} patch)", v, v.minor()) },
                    if chosen { "" } else { ", a stop on the path" }
                ),
            )
            .at(src, &c.at.key("istio").key("sail").key("operatorVersion"))
            .help(if newer.is_empty() {
                format!("no Sail Operator release meshplan knows installs {v}")
            } else {
                format!(
                    "upgrade the Sail Operator first, to a release that installs {v} and still accepts {} (rollback): {}",
                    c.version,
                    newer
                        .iter()
                        .filter(|r| crate::sail::supported(r).is_some_and(|s| s.contains(&c.version)))
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
        );
        return false;
    }
    true
}

fn multi_hop_reason(
    from: Minor,
    to: Minor,
    strategy: Strategy,
    policy: UpgradePolicy,
    catalog: &Catalog,
) -> String {
    let distance = to.distance_from(from);
    match (strategy, policy) {
        (Strategy::InPlace, _) => {
            format!("in-place upgrades go one minor at a time; {from} -> {to} is {distance} minors")
        }
        (Strategy::Canary, UpgradePolicy::OneMinorAtATime) => {
            format!(
                "the one-minor-at-a-time policy allows one minor per hop; {from} -> {to} is {distance} minors"
            )
        }
        (Strategy::Canary, UpgradePolicy::Istio) => {
            if hop_allowed(from, to, strategy, policy, catalog).is_some() {
                "a direct hop would run on a Kubernetes version the target does not support"
                    .to_string()
            } else if distance == 2 {
                format!(
                    "Istio supports skipping a minor with canary upgrades only from 1.8 -> 1.10 and into 1.11 or later; {from} -> {to} is not such a skip"
                )
            } else {
                format!(
                    "Istio supports canary upgrades of at most two minors per hop; {from} -> {to} is {distance} minors"
                )
            }
        }
    }
}

fn allowed_help(to: Minor, strategy: Strategy, policy: UpgradePolicy, catalog: &Catalog) -> String {
    let Some(r) = catalog.get(to) else {
        return format!("Istio {to} is not in the release catalog");
    };
    let mut list: Vec<Minor> = match strategy {
        Strategy::InPlace => r.from_in_place.clone(),
        Strategy::Canary => r
            .from_canary
            .iter()
            .chain(&r.from_canary_alpha)
            .copied()
            .collect(),
    };
    if policy == UpgradePolicy::OneMinorAtATime {
        list.retain(|m| to.distance_from(*m) == 1);
    }
    list.sort();
    let list: Vec<String> = list.iter().map(ToString::to_string).collect();
    format!(
        "a {} upgrade to {to} may start from: {}",
        strategy.name(),
        if list.is_empty() {
            "no listed minor".to_string()
        } else {
            list.join(", ")
        }
    )
}

/// The `compatibilityVersion` a hop's new control plane gets for the inventory's setting.
pub fn compatibility_for(setting: &str, hop: &Hop) -> String {
    if setting == "previous" {
        hop.from.minor().to_string()
    } else {
        setting.to_string()
    }
}

fn check_hops(
    c: &ClusterSpec,
    hops: &[Hop],
    target_release: &Release,
    catalog: &Catalog,
    artifacts: bool,
    src: &Source,
    diags: &mut Diagnostics,
) {
    let name = &c.name;
    let at_k8s = c.at.key("kubernetesVersion");
    let at_install = if c.install_set_here {
        c.at.key("installMethod")
    } else {
        YamlPath::root().key("defaults").key("installMethod")
    };
    let mut operator_reported = false;
    let mut compat_reported = false;
    for (i, hop) in hops.iter().enumerate() {
        let minor = hop.to.minor();
        let Some(r) = catalog.get(minor) else {
            continue;
        };
        let which = if hops.len() > 1 {
            format!("hop {} ({} -> {})", i + 1, hop.from, hop.to)
        } else {
            format!("{}", hop.to)
        };
        if let Some(cv) = &c.compatibility_version
            && !compat_reported
        {
            let want = compatibility_for(cv, hop);
            let have = crate::chart_facts::compatibility_versions(&hop.to);
            if !have.contains(&want) {
                compat_reported = true;
                diags.push(
                    Diagnostic::error(
                        Code::CompatibilityUnavailable,
                        if hops.len() > 1 {
                            format!(
                                "cluster `{name}`: Istio {} has no compatibility profile {want} ({which})",
                                hop.to
                            )
                        } else {
                            format!(
                                "cluster `{name}`: Istio {} has no compatibility profile {want}",
                                hop.to
                            )
                        },
                    )
                    .at(src, &c.at.key("istio").key("compatibilityVersion"))
                    .help(if have.is_empty() {
                        "compatibility profiles exist from Istio 1.21 on".to_string()
                    } else {
                        format!("Istio {} keeps the behaviour of {}", hop.to.minor(), have.join(", "))
                    })
                    .help("a hop that skips a minor can keep only a profile its target ships; take the hops one minor at a time (--one-minor-at-a-time) or name a newer minor"),
                );
            }
        }
        match r.kube_support(c.kubernetes) {
            KubeSupport::Supported => {}
            KubeSupport::Tested => diags.push(
                Diagnostic::warning(
                    Code::KubernetesUntested,
                    format!(
                        "cluster `{name}` runs Kubernetes {}, which Istio {minor} is tested on but does not support ({which})",
                        c.kubernetes
                    ),
                )
                .at(src, &at_k8s)
                .help(format!("Istio {minor} supports Kubernetes {}", format_ranges(&r.kubernetes))),
            ),
            KubeSupport::Unsupported => diags.push(
                Diagnostic::error(
                    Code::KubernetesUnsupported,
                    format!(
                        "cluster `{name}` runs Kubernetes {}, which Istio {minor} does not support ({which})",
                        c.kubernetes
                    ),
                )
                .at(src, &at_k8s)
                .help(format!(
                    "Istio {minor} supports Kubernetes {}{}; upgrade the cluster's Kubernetes first, or choose a target that supports {}",
                    format_ranges(&r.kubernetes),
                    if r.kubernetes_tested.is_empty() {
                        String::new()
                    } else {
                        format!(" (tested, unsupported: {})", format_ranges(&r.kubernetes_tested))
                    },
                    c.kubernetes
                )),
            ),
        }
        if c.install == InstallMethod::Operator && !r.in_cluster_operator && !operator_reported {
            operator_reported = true;
            let last = catalog
                .releases
                .values()
                .filter(|r| r.in_cluster_operator)
                .map(|r| r.minor)
                .max();
            diags.push(
                Diagnostic::error(
                    Code::OperatorRemoved,
                    format!(
                        "cluster `{name}` is installed by the in-cluster operator, which cannot install Istio {minor}"
                    ),
                )
                .at(src, &at_install)
                .help(format!(
                    "the in-cluster IstioOperator controller was removed in 1.24{}; migrate first: set installMethod: istioctl (istioctl install -f keeps using your IstioOperator files) or installMethod: helm (`istioctl manifest translate` turns an IstioOperator into Helm values), then remove the operator with `istioctl operator remove`",
                    last.map(|l| format!(" (last release that ships it: {l})")).unwrap_or_default()
                )),
            );
        }
        if c.install == InstallMethod::Helm {
            // Chart availability limits the artifacts meshplan can write, not the upgrade path.
            let severity = if artifacts {
                Severity::Error
            } else {
                Severity::Warning
            };
            if r.helm == HelmMaturity::None {
                diags.push(
                    Diagnostic::new(
                        severity,
                        Code::HelmUnsupported,
                        format!("cluster `{name}` installs with Helm, but Istio {minor} has no supported Helm charts for meshplan to write values for"),
                    )
                    .at(src, &at_install)
                    .help("Helm installs start with Istio 1.8; use installMethod: istioctl for this hop"),
                );
            } else if !r.gateway_chart && !c.gateways.is_empty() {
                diags.push(
                    Diagnostic::new(
                        severity,
                        Code::HelmUnsupported,
                        format!("cluster `{name}` has gateways, but Istio {minor} publishes no `gateway` Helm chart for meshplan to write values for"),
                    )
                    .at(src, &at_install)
                    .help("the `gateway` chart exists from Istio 1.12; use installMethod: istioctl for this hop"),
                );
            } else if r.helm == HelmMaturity::Alpha {
                diags.push(
                    Diagnostic::warning(
                        Code::HelmAlpha,
                        format!("Helm installs of Istio {minor} are alpha (cluster `{name}`)"),
                    )
                    .at(src, &at_install),
                );
            }
        }
        if hop.alpha {
            diags.push(
                Diagnostic::warning(
                    Code::AlphaSkip,
                    format!(
                        "cluster `{name}`: Istio supports the skip {} -> {minor} only at alpha level",
                        hop.from.minor()
                    ),
                )
                .at(src, &c.at.key("istio").key("version"))
                .help("run it as a canary (the plan does) and test it on a non-production cluster first"),
            );
        }
    }
    if target_release.minor
        >= (Minor {
            major: 1,
            minor: 31,
        })
        && (c.hub.starts_with("gcr.io/istio-release") || c.hub.starts_with("registry.istio.io"))
    {
        diags.push(
            Diagnostic::warning(
                Code::RetiredHub,
                format!(
                    "cluster `{name}` pulls images from `{}`, which receives no Istio 1.31+ images",
                    c.hub
                ),
            )
            .at(src, &c.at)
            .help("use docker.io/istio (hub: docker.io/istio)"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{InstallMethod, UpgradePolicy};
    use crate::validate::GatewaySpec;
    use crate::version::RevisionFormat;

    fn cluster(
        version: &str,
        k8s: &str,
        upgrade: ControlPlaneUpgrade,
        install: InstallMethod,
    ) -> ClusterSpec {
        ClusterSpec {
            name: "c".into(),
            at: YamlPath::root().key("clusters").index(0),
            context: None,
            kubernetes: k8s.parse().unwrap(),
            install,
            hub: "docker.io/istio".into(),
            tag_suffix: String::new(),
            variant: None,
            revision_format: RevisionFormat::Minor,
            control_plane_upgrade: upgrade,
            policy: UpgradePolicy::Istio,
            chart_repository: "istio".into(),
            install_set_here: false,
            version: version.parse().unwrap(),
            revision: Some(
                version
                    .parse::<IstioVersion>()
                    .unwrap()
                    .revision(RevisionFormat::Minor),
            ),
            namespace: "istio-system".into(),
            tags: vec![],
            values: Default::default(),
            release: "istiod".into(),
            base_release: "istio-base".into(),
            base_values: Default::default(),
            compatibility_version: None,
            cni: None,
            ztunnel: None,
            sail: None,
            multicluster: None,
            gateways: vec![],
            namespaces: vec![],
        }
    }

    fn target(version: &str, via: &[&str], today: Option<Date>) -> Target {
        Target {
            version: version.parse().unwrap(),
            via: via.iter().map(|v| v.parse().unwrap()).collect(),
            one_minor: false,
            today,
            artifacts: true,
        }
    }

    /// Plans the path of one cluster.
    fn plan_one(c: ClusterSpec, target: &Target) -> (Option<MeshPath>, Diagnostics) {
        let mesh = Mesh {
            name: "m".into(),
            clusters: vec![c],
            gitops: Default::default(),
        };
        let mut diags = Diagnostics::default();
        let p = plan_paths(
            &mesh,
            target,
            &Catalog::embedded(),
            &Source::new("i", ""),
            &mut diags,
        );
        (p, diags)
    }

    struct Case {
        from: &'static str,
        k8s: &'static str,
        to: &'static str,
        upgrade: ControlPlaneUpgrade,
        install: InstallMethod,
        one_minor: bool,
    }

    impl Case {
        fn new(from: &'static str, k8s: &'static str, to: &'static str) -> Self {
            Case {
                from,
                k8s,
                to,
                upgrade: ControlPlaneUpgrade::Canary,
                install: InstallMethod::Helm,
                one_minor: false,
            }
        }
    }

    /// Runs one case; returns the hop versions (`"1.19.6>1.21.0:canary"`, ...) or the error codes.
    #[track_caller]
    fn run(case: Case) -> Result<Vec<String>, Vec<&'static str>> {
        let c = cluster(case.from, case.k8s, case.upgrade, case.install);
        let mut t = target(case.to, &[], None);
        t.one_minor = case.one_minor;
        let (p, diags) = plan_one(c, &t);
        match p {
            Some(p) => Ok(p.clusters[0]
                .hops
                .iter()
                .map(|h| {
                    format!(
                        "{}>{}:{}{}",
                        h.from,
                        h.to,
                        h.strategy.name(),
                        if h.alpha { ":alpha" } else { "" }
                    )
                })
                .collect()),
            None => Err(diags
                .iter()
                .filter(|d| d.severity == crate::diagnostic::Severity::Error)
                .map(|d| d.code.name())
                .collect()),
        }
    }

    fn ok(v: &[&str]) -> Result<Vec<String>, Vec<&'static str>> {
        Ok(v.iter().map(ToString::to_string).collect())
    }

    type Expect = Result<Vec<String>, Vec<&'static str>>;

    #[test]
    fn canary_paths() {
        use ControlPlaneUpgrade::{Canary as C, InPlace as I};
        let table: Vec<(Case, Expect)> = vec![
            // one minor, two minors (canary only), more than two: hops through latest patches
            (
                Case::new("1.19.6", "1.28", "1.20.2"),
                ok(&["1.19.6>1.20.2:canary"]),
            ),
            (
                Case::new("1.19.6", "1.28", "1.21.0"),
                ok(&["1.19.6>1.21.0:canary"]),
            ),
            (
                Case::new("1.19.6", "1.28", "1.22.8"),
                ok(&["1.19.6>1.21.6:canary", "1.21.6>1.22.8:canary"]),
            ),
            (
                Case::new("1.13.4", "1.22", "1.15.0"),
                ok(&["1.13.4>1.15.0:canary"]),
            ),
            (
                Case::new("1.18.2", "1.27", "1.22.8"),
                ok(&["1.18.2>1.20.8:canary", "1.20.8>1.22.8:canary"]),
            ),
            // patch upgrades: same revision name -> in place
            (
                Case::new("1.20.1", "1.28", "1.20.2"),
                ok(&["1.20.1>1.20.2:in-place"]),
            ),
            // before 1.11 no skip, except 1.8 -> 1.10 (alpha)
            (
                Case::new("1.7.3", "1.18", "1.9.0"),
                ok(&["1.7.3>1.8.6:canary", "1.8.6>1.9.0:canary"]),
            ),
            (
                Case::new("1.8.1", "1.19", "1.10.0"),
                ok(&["1.8.1>1.10.0:canary:alpha"]),
            ),
            (
                Case::new("1.9.1", "1.19", "1.11.0"),
                ok(&["1.9.1>1.11.0:canary"]),
            ),
            // downgrade and unknown target refused
            (
                Case::new("1.19.6", "1.28", "1.18.0"),
                Err(vec!["downgrade"]),
            ),
            (
                Case::new("1.19.6", "1.28", "1.40.0"),
                Err(vec!["unknown-target"]),
            ),
            // Kubernetes too old for the target
            (
                Case::new("1.19.6", "1.22", "1.20.2"),
                Err(vec!["kubernetes-unsupported"]),
            ),
            // in place: one minor per hop
            (
                Case {
                    upgrade: I,
                    ..Case::new("1.19.6", "1.28", "1.21.0")
                },
                ok(&["1.19.6>1.20.8:in-place", "1.20.8>1.21.0:in-place"]),
            ),
            (
                Case {
                    upgrade: I,
                    ..Case::new("1.19.6", "1.28", "1.20.2")
                },
                ok(&["1.19.6>1.20.2:in-place"]),
            ),
            // stricter vendor policy: one minor per canary hop
            (
                Case {
                    one_minor: true,
                    upgrade: C,
                    ..Case::new("1.19.6", "1.28", "1.21.0")
                },
                ok(&["1.19.6>1.20.8:canary", "1.20.8>1.21.0:canary"]),
            ),
            // in-cluster operator cannot reach 1.24+
            (
                Case {
                    install: InstallMethod::Operator,
                    ..Case::new("1.22.3", "1.28", "1.24.0")
                },
                Err(vec!["operator-removed"]),
            ),
            (
                Case {
                    install: InstallMethod::Operator,
                    ..Case::new("1.21.3", "1.28", "1.23.0")
                },
                ok(&["1.21.3>1.23.0:canary"]),
            ),
            // Helm has no charts before 1.8
            (
                Case::new("1.6.3", "1.17", "1.7.0"),
                Err(vec!["helm-unsupported"]),
            ),
            (
                Case {
                    install: InstallMethod::Istioctl,
                    ..Case::new("1.6.3", "1.17", "1.7.0")
                },
                ok(&["1.6.3>1.7.0:canary"]),
            ),
        ];
        for (case, want) in table {
            let label = format!("{} -> {} (k8s {})", case.from, case.to, case.k8s);
            assert_eq!(run(case), want, "{label}");
        }
    }

    #[test]
    fn prefers_intermediates_that_support_the_cluster() {
        // On Kubernetes 1.26, Istio 1.22 is only tested (not supported) while 1.21 supports it:
        // 1.20 -> 1.23 goes through 1.21, not through the greedy 1.22.
        let hops = run(Case::new("1.20.3", "1.26", "1.23.0")).unwrap();
        assert_eq!(hops, vec!["1.20.3>1.21.6:canary", "1.21.6>1.23.0:canary"]);
        // Where both are supported, the path skips early.
        let hops = run(Case::new("1.20.3", "1.28", "1.23.0")).unwrap();
        assert_eq!(hops, vec!["1.20.3>1.22.8:canary", "1.22.8>1.23.0:canary"]);
    }

    #[test]
    fn revisions_follow_the_format() {
        let mut c = cluster(
            "1.20.1",
            "1.28",
            ControlPlaneUpgrade::Canary,
            InstallMethod::Helm,
        );
        c.revision_format = RevisionFormat::Patch;
        c.revision = Some("1-20-1".into());
        let (p, _) = plan_one(c, &target("1.20.2", &[], None));
        let h = &p.unwrap().clusters[0].hops[0];
        assert_eq!((h.strategy, h.to_label()), (Strategy::Canary, "1-20-2"));
    }

    #[test]
    fn via_forces_intermediates() {
        let c = cluster(
            "1.18.2",
            "1.27",
            ControlPlaneUpgrade::Canary,
            InstallMethod::Helm,
        );
        let (p, _) = plan_one(c.clone(), &target("1.22.8", &["1.19.10", "1.21.2"], None));
        let tos: Vec<String> = p.unwrap().clusters[0]
            .hops
            .iter()
            .map(|h| h.to.to_string())
            .collect();
        assert_eq!(tos, ["1.19.10", "1.21.2", "1.22.8"]);
        // A forced hop that skips too far is refused.
        let (p, diags) = plan_one(c.clone(), &target("1.22.8", &["1.21.2"], None));
        assert!(p.is_none());
        assert!(diags.iter().any(|d| d.code == Code::InvalidVia));
        // So is a --via at or below what the cluster runs: it would force nothing.
        for v in ["1.18.2", "1.17.8"] {
            let (p, diags) = plan_one(c.clone(), &target("1.22.8", &[v], None));
            assert!(p.is_none(), "{v}");
            assert!(
                diags
                    .iter()
                    .any(|d| d.code == Code::InvalidVia && d.message.contains("forces no hop")),
                "{v}"
            );
        }
    }

    #[test]
    fn a_revision_already_named_after_the_target_is_refused() {
        let mut c = cluster(
            "1.19.6",
            "1.28",
            ControlPlaneUpgrade::Canary,
            InstallMethod::Helm,
        );
        c.revision = Some("1-21".into());
        let (p, diags) = plan_one(c, &target("1.21.0", &[], None));
        assert!(p.is_none());
        assert!(diags.iter().any(|d| d.code == Code::InvalidRevision));
    }

    #[test]
    fn chart_limits_are_errors_only_when_writing_artifacts() {
        let mut c = cluster(
            "1.9.4",
            "1.20",
            ControlPlaneUpgrade::Canary,
            InstallMethod::Helm,
        );
        c.gateways = vec![GatewaySpec {
            at: YamlPath::root(),
            gateway: serde_json::from_value(
                serde_json::json!({"name": "gw", "kind": "ingress", "namespace": "gw"}),
            )
            .unwrap(),
            release: "gw".into(),
            istio_label: "gw".into(),
            app_label: "gw".into(),
            service_account: "gw".into(),
            service_account_owner: crate::inventory::ServiceOwner::Release,
            traffic: crate::inventory::TrafficMode::Gradual,
        }];
        let mut t = target("1.11.8", &[], None);
        t.artifacts = false;
        let (p, diags) = plan_one(c.clone(), &t);
        assert!(p.is_some(), "check accepts the path");
        assert!(
            diags
                .iter()
                .any(|d| d.code == Code::HelmUnsupported && d.severity == Severity::Warning)
        );
        t.artifacts = true;
        let (p, diags) = plan_one(c, &t);
        assert!(
            p.is_none(),
            "compile cannot write a gateway chart that does not exist"
        );
        assert!(
            diags
                .iter()
                .any(|d| d.code == Code::HelmUnsupported && d.severity == Severity::Error)
        );
    }

    #[test]
    fn warns_on_end_of_life_only_with_a_date() {
        let c = cluster(
            "1.19.6",
            "1.28",
            ControlPlaneUpgrade::Canary,
            InstallMethod::Helm,
        );
        let (_, diags) = plan_one(c.clone(), &target("1.20.2", &[], Date::parse("2026-11-24")));
        assert!(diags.iter().any(|d| d.code == Code::EndOfLife));
        let (_, diags) = plan_one(c, &target("1.20.2", &[], Date::parse("2024-01-01")));
        assert!(!diags.iter().any(|d| d.code == Code::EndOfLife));
    }
}
