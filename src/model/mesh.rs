//! The order across clusters (`plan::order`) run on a model of what crosses clusters: the
//! istiods each primary runs and exposes to its remotes, and the revision each remote's
//! proxies use. Each cluster's own steps are checked by `check.rs`, a remote's against the
//! istiods this model says its primary runs during its hop; this checks that the order makes
//! that true, and that no primary removes an istiod a remote still uses.

use std::collections::BTreeMap;

use super::check::Failure;
use crate::path::{MeshPath, Strategy};
use crate::plan::Phase;
use crate::plan::order::Stage;
use crate::validate::Mesh;
use crate::version::IstioVersion;

/// Runs `order` on the model; the first problem, as a failure of the stage that causes it.
pub fn check_order(mesh: &Mesh, paths: &MeshPath, order: &[Stage]) -> Result<(), Failure> {
    // Per primary: revision -> version of each istiod, and the revisions exposed to remotes.
    let mut istiods: BTreeMap<usize, BTreeMap<String, IstioVersion>> = BTreeMap::new();
    let mut exposed: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    // Per remote: the revision and version its proxies run.
    let mut remote_on: BTreeMap<usize, (String, IstioVersion)> = BTreeMap::new();
    let index = |name: &str| mesh.clusters.iter().position(|c| c.name == name);
    for (i, c) in mesh.clusters.iter().enumerate() {
        if c.remote_of().is_some() {
            remote_on.insert(i, (c.revision_label().to_string(), c.version.clone()));
        } else if c.multicluster.is_some() {
            istiods.insert(
                i,
                BTreeMap::from([(c.revision_label().to_string(), c.version.clone())]),
            );
            exposed.insert(i, vec![c.revision_label().to_string()]);
        }
    }
    let fail = |s: &Stage, problem: String| Failure {
        cluster: s.cluster.clone(),
        step: format!("{}/hop-{:02}", s.cluster, s.hop),
        operation: None,
        during: "the order across clusters".to_string(),
        problem,
    };
    for s in order {
        let c = &mesh.clusters[s.index];
        let Some(hop) = paths.clusters[s.index].hops.get(s.hop - 1) else {
            return Err(fail(
                s,
                "the order names a hop the cluster does not have".into(),
            ));
        };
        let (from, to) = (hop.from_label().to_string(), hop.to_label().to_string());
        if let Some(primary) = c.remote_of() {
            let Some(p) = index(primary) else {
                return Err(fail(s, format!("primary `{primary}` is not in the mesh")));
            };
            let running = istiods.get(&p).cloned().unwrap_or_default();
            let shown = exposed.get(&p).cloned().unwrap_or_default();
            for (rev, want) in [(&from, &hop.from), (&to, &hop.to)] {
                if hop.strategy == Strategy::InPlace && *rev == from {
                    continue;
                }
                match running.get(rev) {
                    Some(v) if v == want || hop.strategy == Strategy::InPlace => {}
                    _ => {
                        return Err(fail(
                            s,
                            format!(
                                "the remote's hop needs istiod `{rev}` ({want}) of its primary `{primary}`, which does not run it at this point of the order"
                            ),
                        ));
                    }
                }
                if hop.strategy == Strategy::Canary && !shown.contains(rev) {
                    return Err(fail(
                        s,
                        format!(
                            "istiod `{rev}` of `{primary}` is not exposed through its east-west gateway yet"
                        ),
                    ));
                }
            }
            remote_on.insert(s.index, (to, hop.to.clone()));
            continue;
        }
        let Some(running) = istiods.get_mut(&s.index) else {
            continue;
        };
        if s.phases.contains(&Phase::ControlPlane) {
            if hop.strategy == Strategy::InPlace {
                running.insert(to.clone(), hop.to.clone());
            } else {
                running.insert(to.clone(), hop.to.clone());
                exposed.entry(s.index).or_default().push(to.clone());
            }
            // A remote's proxies are never ahead of the istiod that serves them, nor more
            // than a minor behind it.
            for (r, (rev, v)) in &remote_on {
                if mesh.clusters[*r].remote_of() != Some(c.name.as_str()) {
                    continue;
                }
                if let Some(iv) = running.get(rev) {
                    let d = iv.minor().distance_from(v.minor());
                    if !(0..=1).contains(&d) {
                        return Err(fail(
                            s,
                            format!(
                                "remote `{}` runs {v} proxies against istiod `{rev}` at {iv}",
                                mesh.clusters[*r].name
                            ),
                        ));
                    }
                }
            }
        }
        if s.phases.contains(&Phase::Cleanup) && hop.strategy == Strategy::Canary {
            for (r, (rev, _)) in &remote_on {
                if mesh.clusters[*r].remote_of() == Some(c.name.as_str()) && *rev == from {
                    return Err(fail(
                        s,
                        format!(
                            "the cleanup removes istiod `{from}`, which remote `{}` still uses: its sidecars would lose their control plane",
                            mesh.clusters[*r].name
                        ),
                    ));
                }
            }
            running.remove(&from);
            if let Some(e) = exposed.get_mut(&s.index) {
                e.retain(|x| *x != from);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::diagnostic::Diagnostics;
    use crate::path::{Target, plan_paths};
    use crate::source::Source;

    const PAIR: &str = "apiVersion: meshplan.dev/v1alpha1
kind: MeshInventory
name: m
clusters:
  - name: c1
    kubernetesVersion: \"1.30\"
    multicluster: {meshID: mesh1, network: n1}
    istio: {version: 1.23.6, revision: 1-23}
    gateways:
      - name: istio-eastwestgateway
        kind: eastwest
        namespace: istio-system
        revision: 1-23
        service:
          name: istio-eastwestgateway
          ports: [{name: tls-istiod, port: 15012}, {name: tls-webhook, port: 15017}]
  - name: c2
    kubernetesVersion: \"1.30\"
    multicluster: {meshID: mesh1, network: n1, role: remote, primary: c1, remotePilotAddress: 10.0.0.1}
    istio: {version: 1.23.6, revision: 1-23}
    namespaces:
      - name: shop
        revision: 1-23
        workloads: [{kind: Deployment, name: web}]
";

    fn planned() -> (Mesh, MeshPath) {
        let src = Source::new("inventory.yaml", PAIR);
        let (inv, d) = crate::load::inventory(&src);
        assert!(
            !d.has_errors(),
            "{}",
            crate::diagnostic::render(&d, Some(&src))
        );
        let mut diags = Diagnostics::default();
        let mesh = crate::validate::validate(&inv.unwrap(), &src, &mut diags)
            .unwrap_or_else(|| panic!("{}", crate::diagnostic::render(&diags, Some(&src))));
        let target = Target {
            version: "1.24.6".parse().unwrap(),
            via: vec![],
            one_minor: false,
            today: None,
            artifacts: true,
        };
        let paths = plan_paths(&mesh, &target, &Catalog::embedded(), &src, &mut diags)
            .unwrap_or_else(|| panic!("{}", crate::diagnostic::render(&diags, Some(&src))));
        (mesh, paths)
    }

    #[test]
    fn a_primary_and_its_remote_interleave_and_pass() {
        let (mesh, paths) = planned();
        let order = crate::plan::order::mesh_order(&mesh, &paths);
        let shown: Vec<String> = order
            .iter()
            .map(|s| {
                format!(
                    "{} {} {}",
                    s.cluster,
                    s.hop,
                    s.phases.contains(&Phase::Cleanup)
                )
            })
            .collect();
        assert_eq!(shown, ["c1 1 false", "c2 1 true", "c1 1 true"]);
        check_order(&mesh, &paths, &order).unwrap();
    }

    #[test]
    fn a_remote_after_its_primary_cleanup_is_found() {
        // Cluster after cluster, as before multicluster planning: the primary's cleanup removes
        // the istiod the remote's sidecars still use.
        let (mesh, paths) = planned();
        let mut order = crate::plan::order::mesh_order(&mesh, &paths);
        let remote = order.remove(1);
        order.push(remote);
        let e = check_order(&mesh, &paths, &order).unwrap_err().to_string();
        assert!(e.contains("still uses"), "{e}");
    }

    #[test]
    fn a_remote_before_its_primary_is_found() {
        let (mesh, paths) = planned();
        let mut order = crate::plan::order::mesh_order(&mesh, &paths);
        order.swap(0, 1);
        let e = check_order(&mesh, &paths, &order).unwrap_err().to_string();
        assert!(e.contains("does not run it"), "{e}");
    }
}
