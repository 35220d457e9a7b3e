//! The order across clusters. Clusters that stand alone are upgraded one after another, in
//! inventory order, each hop finished (cleanup included) before the next. The clusters of a
//! multicluster mesh are interleaved:
//!
//! - A remote runs no istiod: its primary's serves it. So a primary's hop runs up to its data
//!   plane (the new istiod installed and exposed), then each remote it serves runs that hop
//!   whole, then the primary's cleanup removes the old istiod, which no remote uses any more.
//!   A remote's proxies are therefore never ahead of the istiod that serves them, and never
//!   left on one that goes.
//! - Multi-primary peers (several primaries of one mesh) go one hop at a time, the peer that
//!   is furthest behind first, so that the versions the peers run never spread further apart
//!   than they started.
//!
//! `model::mesh` runs the order on a model of the primaries' istiods and the remotes' proxies.

use serde::Serialize;

use crate::path::{MeshPath, Strategy};
use crate::plan::{ClusterPlan, Phase, cluster_dir};
use crate::validate::Mesh;

/// Part of one hop of one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    pub cluster: String,
    /// The cluster's directory.
    pub dir: String,
    pub hop: usize,
    /// The phases of the hop this stage runs (`plan.yaml`'s `phase` values).
    pub phases: Vec<Phase>,
    /// Why the stage is where it is.
    pub why: String,
    /// The cluster's `plan.yaml`, and the stage's steps in it (indexes into `steps`, first and
    /// last, inclusive).
    pub plan: String,
    pub first_step: usize,
    pub last_step: usize,
    /// The cluster's position in the inventory (not written).
    #[serde(skip)]
    pub index: usize,
}

fn before_cleanup() -> Vec<Phase> {
    Phase::ALL
        .iter()
        .copied()
        .filter(|p| !matches!(p, Phase::Cleanup | Phase::Cni))
        .collect()
}

fn from_cleanup() -> Vec<Phase> {
    vec![Phase::Cleanup, Phase::Cni]
}

/// Whether the mesh needs an order other than cluster after cluster.
pub fn interleaved(mesh: &Mesh) -> bool {
    mesh.clusters.iter().any(|c| {
        c.remote_of().is_some()
            || c.multicluster.as_ref().is_some_and(|m| {
                mesh.clusters
                    .iter()
                    .filter(|o| o.name != c.name && o.remote_of().is_none())
                    .any(|o| {
                        o.multicluster
                            .as_ref()
                            .is_some_and(|n| n.mesh_id == m.mesh_id)
                    })
            })
    })
}

/// Every stage of every cluster's plan, in apply order.
pub fn mesh_order(mesh: &Mesh, paths: &MeshPath) -> Vec<Stage> {
    let all = Phase::ALL.to_vec();
    let stage = |i: usize, hop: usize, phases: Vec<Phase>, why: String| Stage {
        cluster: mesh.clusters[i].name.clone(),
        dir: cluster_dir(i, &mesh.clusters[i].name),
        hop,
        phases,
        why,
        plan: format!("{}/plan.yaml", cluster_dir(i, &mesh.clusters[i].name)),
        first_step: 0,
        last_step: 0,
        index: i,
    };
    let mut out = Vec::new();
    let mut done = vec![false; mesh.clusters.len()];
    for (i, c) in mesh.clusters.iter().enumerate() {
        if done[i] || c.remote_of().is_some() {
            continue;
        }
        let Some(m) = &c.multicluster else {
            done[i] = true;
            for h in 1..=paths.clusters[i].hops.len() {
                out.push(stage(
                    i,
                    h,
                    all.clone(),
                    "a cluster of its own: every hop whole, in inventory order".into(),
                ));
            }
            continue;
        };
        // The primaries of this mesh, and how far each has gone.
        let peers: Vec<usize> = mesh
            .clusters
            .iter()
            .enumerate()
            .filter(|(_, o)| {
                o.remote_of().is_none()
                    && o.multicluster
                        .as_ref()
                        .is_some_and(|n| n.mesh_id == m.mesh_id)
            })
            .map(|(j, _)| j)
            .collect();
        let mut next: Vec<usize> = vec![0; peers.len()];
        loop {
            // The peer furthest behind (the oldest version its next hop starts from).
            let pick = (0..peers.len())
                .filter(|&k| next[k] < paths.clusters[peers[k]].hops.len())
                .min_by(|&a, &b| {
                    let ha = &paths.clusters[peers[a]].hops[next[a]];
                    let hb = &paths.clusters[peers[b]].hops[next[b]];
                    ha.from.cmp(&hb.from).then(peers[a].cmp(&peers[b]))
                });
            let Some(k) = pick else { break };
            let p = peers[k];
            let hop = next[k] + 1;
            next[k] += 1;
            let remotes: Vec<usize> = mesh
                .clusters
                .iter()
                .enumerate()
                .filter(|(_, r)| r.remote_of() == Some(mesh.clusters[p].name.as_str()))
                .map(|(j, _)| j)
                .collect();
            let peer_why = if peers.len() > 1 {
                format!(
                    "multi-primary mesh `{}`: one peer at a time, the one furthest behind first",
                    m.mesh_id
                )
            } else {
                format!("primary of mesh `{}`", m.mesh_id)
            };
            if remotes.is_empty() {
                out.push(stage(p, hop, all.clone(), peer_why));
                continue;
            }
            let names = remotes
                .iter()
                .map(|&r| format!("`{}`", mesh.clusters[r].name))
                .collect::<Vec<_>>()
                .join(", ");
            let canary = paths.clusters[p].hops[hop - 1].strategy == Strategy::Canary;
            out.push(stage(
                p,
                hop,
                before_cleanup(),
                format!(
                    "{peer_why}; {} for the remotes {names}, which follow",
                    if canary {
                        "its new istiod is installed and exposed"
                    } else {
                        "its istiod is upgraded"
                    }
                ),
            ));
            for &r in &remotes {
                done[r] = true;
                out.push(stage(
                    r,
                    hop,
                    all.clone(),
                    format!(
                        "remote of `{}`: its hop runs while the primary runs both istiods, so its sidecars are never ahead of the istiod that serves them",
                        mesh.clusters[p].name
                    ),
                ));
            }
            out.push(stage(
                p,
                hop,
                from_cleanup(),
                format!("every remote ({names}) has left the old revision, so the primary's old istiod can go"),
            ));
        }
        for &p in &peers {
            done[p] = true;
        }
    }
    // Remotes whose primary has no hop (already at the target) still run theirs.
    for (i, c) in mesh.clusters.iter().enumerate() {
        if c.remote_of().is_some() && !out.iter().any(|s| s.index == i) {
            for h in 1..=paths.clusters[i].hops.len() {
                out.push(stage(
                    i,
                    h,
                    all.clone(),
                    "remote: its primary has no hop to wait for".into(),
                ));
            }
        }
    }
    out
}

/// Fills in where each stage's steps are in its cluster's `plan.yaml`, from the clusters'
/// summaries (in inventory order), and drops the stages that have no step (the cleanup of an
/// in-place hop).
pub fn locate(order: Vec<Stage>, clusters: &[ClusterPlan]) -> Vec<Stage> {
    order
        .into_iter()
        .filter_map(|mut s| {
            let c = clusters.get(s.index)?;
            let before: usize = c.hops[..s.hop - 1]
                .iter()
                .flat_map(|h| &h.phases)
                .map(|p| p.steps)
                .sum();
            let hop = &c.hops[s.hop - 1];
            let mut first = None;
            let mut at = before;
            let mut last = before;
            for p in &hop.phases {
                if s.phases.contains(&p.phase) && p.steps > 0 {
                    first.get_or_insert(at);
                    last = at + p.steps - 1;
                }
                at += p.steps;
            }
            s.first_step = first?;
            s.last_step = last;
            Some(s)
        })
        .collect()
}
