//! The model must reject plans with the failures that executing real plans found (issue 7):
//! each test builds a correct plan, checks that the model accepts it, brings one failure back,
//! and checks that the model rejects it for the right reason.

use super::check_cluster;
use crate::catalog::Catalog;
use crate::diagnostic::Diagnostics;
use crate::path::{Target, plan_paths};
use crate::plan::op::{Op, Wait};
use crate::plan::{ClusterOut, build_cluster, rollback};
use crate::source::Source;
use crate::validate::{ClusterSpec, validate};

pub fn cluster(text: &str, to: &str) -> (ClusterSpec, ClusterOut) {
    cluster_with(text, to, Default::default())
}

/// The plan with the options a layout sets; `to` may name the versions to go through first
/// (`1.25.5,1.26.8`).
pub fn cluster_with(text: &str, to: &str, opts: crate::plan::Options) -> (ClusterSpec, ClusterOut) {
    let mut versions: Vec<&str> = to.split(',').collect();
    let to = versions.pop().unwrap_or(to);
    let src = Source::new("inventory.yaml", text);
    let (inv, d) = crate::load::inventory(&src);
    assert!(
        !d.has_errors(),
        "{}",
        crate::diagnostic::render(&d, Some(&src))
    );
    let mut diags = Diagnostics::default();
    let mesh = validate(&inv.expect("inventory"), &src, &mut diags)
        .unwrap_or_else(|| panic!("{}", crate::diagnostic::render(&diags, Some(&src))));
    let catalog = Catalog::embedded();
    let target = Target {
        version: to.parse().unwrap(),
        via: versions.iter().map(|v| v.parse().unwrap()).collect(),
        one_minor: false,
        today: None,
        artifacts: true,
    };
    let paths = plan_paths(&mesh, &target, &catalog, &src, &mut diags)
        .unwrap_or_else(|| panic!("{}", crate::diagnostic::render(&diags, Some(&src))));
    let c = mesh.clusters[0].clone();
    let out = build_cluster(0, &c, &paths.clusters[0], &catalog, opts);
    (c, out)
}

const HELM: &str = "apiVersion: meshplan.dev/v1alpha1
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
        revision: 1-19
        service:
          name: istio-ingressgateway
          ports: [{name: http2, port: 80, targetPort: 8080}]
    namespaces:
      - name: shop
        revision: 1-19
        workloads: [{kind: Deployment, name: web}, {kind: Deployment, name: api}]
      - name: tagged
        revision: prod-stable
        wave: 2
        workloads: [{kind: Deployment, name: app}]
";

const ISTIOCTL: &str = "apiVersion: meshplan.dev/v1alpha1
kind: MeshInventory
name: m
defaults: {installMethod: istioctl, revisionFormat: patch}
clusters:
  - name: c
    kubernetesVersion: \"1.20\"
    istio: {version: 1.9.7, revision: 1-9-7}
    gateways:
      - name: istio-ingressgateway
        kind: ingress
        namespace: istio-gateways
        revision: 1-9-7
        release: istio-ingressgateway-1-9-7
        appLabel: istio-ingressgateway
        service:
          name: istio-ingressgateway
          owner: standalone
          selector: {istio: ingressgateway, version: 1-9-7}
          ports: [{name: http2, port: 80, targetPort: 8080}]
    namespaces:
      - name: shop
        revision: 1-9-7
        workloads: [{kind: Deployment, name: web}]
";

fn recompose(out: &mut ClusterOut) {
    for s in &mut out.steps {
        s.checkpoint = false;
    }
    rollback::compose(&mut out.steps);
}

fn step<'a>(out: &'a mut ClusterOut, suffix: &str) -> &'a mut crate::plan::Step {
    out.steps
        .iter_mut()
        .find(|s| s.id.ends_with(suffix))
        .unwrap_or_else(|| panic!("no step ending in {suffix}"))
}

fn rejected(c: &ClusterSpec, out: &ClusterOut) -> String {
    match check_cluster(c, out, &Catalog::embedded()) {
        Ok(_) => panic!("the model accepted a broken plan"),
        Err(f) => f.to_string(),
    }
}

#[test]
fn correct_plans_pass() {
    for (text, to) in [(HELM, "1.20.2"), (HELM, "1.21.6"), (ISTIOCTL, "1.11.8")] {
        let (c, out) = cluster(text, to);
        if let Err(f) = check_cluster(&c, &out, &Catalog::embedded()) {
            panic!("{to}: {f}");
        }
    }
}

#[test]
fn a_restart_undone_before_its_namespace_strands_the_pods() {
    let (c, mut out) = cluster(HELM, "1.20.2");
    // The old rollback: only the restart patch, the namespace label left on the new revision.
    let s = step(&mut out, "shop/deployment-web");
    s.undo.retain(|op| matches!(op, Op::Restart { .. }));
    recompose(&mut out);
    let e = rejected(&c, &out);
    assert!(e.contains("rollback") && e.contains("web"), "{e}");
}

#[test]
fn a_default_revision_left_on_the_new_revision_is_found() {
    let (c, mut out) = cluster(HELM, "1.20.2");
    step(&mut out, "default-revision").undo.clear();
    recompose(&mut out);
    let e = rejected(&c, &out);
    assert!(e.contains("defaultRevision"), "{e}");
}

#[test]
fn an_old_gateway_that_is_not_reinstalled_is_found() {
    let (c, mut out) = cluster(HELM, "1.20.2");
    step(&mut out, "istio-ingressgateway/remove-old")
        .undo
        .clear();
    recompose(&mut out);
    let e = rejected(&c, &out);
    assert!(
        e.contains("deployment istio-ingress/istio-ingressgateway is gone"),
        "{e}"
    );
}

#[test]
fn istioctl_cleanup_without_rollback_commands_is_found() {
    let (c, mut out) = cluster(ISTIOCTL, "1.11.8");
    step(&mut out, "istio-ingressgateway/remove-old")
        .undo
        .clear();
    recompose(&mut out);
    let e = rejected(&c, &out);
    assert!(
        e.contains("deployment istio-gateways/istio-ingressgateway-1-9-7 is gone"),
        "{e}"
    );
}

#[test]
fn a_wait_that_can_never_pass_is_found() {
    let (c, mut out) = cluster(HELM, "1.20.2");
    let s = step(&mut out, "istio-ingressgateway/handover");
    for w in &mut s.waits {
        if let Wait::ServiceKept { service, .. } = w {
            *service = "istio-ingressgateway-1-20".into();
        }
    }
    let e = rejected(&c, &out);
    assert!(e.contains("a wait can never pass"), "{e}");
}

#[test]
fn removing_the_old_istiod_before_a_tag_moves_is_found() {
    let (c, mut out) = cluster(HELM, "1.20.2");
    // Move the tag step after the removal of the old control plane.
    let i = out
        .steps
        .iter()
        .position(|s| s.id.ends_with("tag-prod-stable"))
        .unwrap();
    let tag = out.steps.remove(i);
    let j = out
        .steps
        .iter()
        .position(|s| s.id.ends_with("remove-old-istiod"))
        .unwrap();
    out.steps.insert(j + 1, tag);
    recompose(&mut out);
    let e = rejected(&c, &out);
    assert!(e.contains("prod-stable"), "{e}");
}

/// Release-owned tags at 1.24, as GitOps layouts move them (through the releases' values).
fn values_tags() -> (ClusterSpec, ClusterOut) {
    values_tags_to("1.25.5")
}

fn values_tags_to(to: &str) -> (ClusterSpec, ClusterOut) {
    let text = HELM
        .replace(
            "{version: 1.19.6, revision: 1-19, tags: [prod-stable]}",
            "{version: 1.24.3, revision: 1-24, tags: [prod-stable, canary], values: {revisionTags: [prod-stable]}}",
        )
        .replace("1-19", "1-24");
    let opts = crate::plan::Options {
        tags_through_values: true,
    };
    cluster_with(&text, to, opts)
}

/// The `keep_webhooks` of the istiod content the operations of step `suffix` render.
fn set_keep(out: &mut ClusterOut, suffix: &str, undo: bool, keep: bool) {
    let s = step(out, suffix);
    for op in if undo { &mut s.undo } else { &mut s.ops } {
        if let Op::HelmUpgrade(h) = op
            && let crate::plan::op::ReleaseContent::Istiod(d) = &mut h.content
        {
            d.keep_webhooks = keep;
        }
    }
}

#[test]
fn tags_moved_through_the_releases_values_are_accepted() {
    let (c, out) = values_tags();
    check_cluster(&c, &out, &Catalog::embedded()).unwrap_or_else(|f| panic!("{f}"));
    // Both tags move in the releases' values (the standalone one adopted first), none with
    // a command.
    let moves: Vec<&str> = out
        .steps
        .iter()
        .filter(|s| s.ops.iter().any(rollback::moves_tags))
        .map(|s| s.id.as_str())
        .collect();
    assert!(
        moves.iter().any(|m| m.ends_with("tags-handover")),
        "{moves:?}"
    );
    assert!(
        moves.iter().any(|m| m.ends_with("tag-prod-stable")),
        "{moves:?}"
    );
    assert!(moves.iter().any(|m| m.ends_with("tag-canary")), "{moves:?}");
    assert!(
        !out.steps
            .iter()
            .flat_map(|s| s.ops.iter().chain(&s.undo))
            .any(|o| matches!(o, Op::SetTag { .. }))
    );
}

#[test]
fn from_1_28_the_tags_services_move_with_them_and_nothing_is_left_behind() {
    // A tag is a Service too from 1.28, which only the webhooks' keep mark does not cover:
    // `serviceAnnotations` marks it (and istiod's own Service, which cleanup then deletes).
    let text = HELM
        .replace(
            "{version: 1.19.6, revision: 1-19, tags: [prod-stable]}",
            "{version: 1.28.3, revision: 1-28, tags: [prod-stable, canary], values: {revisionTags: [prod-stable]}}",
        )
        .replace("1-19", "1-28")
        .replace("kubernetesVersion: \"1.28\"", "kubernetesVersion: \"1.31\"");
    for tags_through_values in [false, true] {
        let opts = crate::plan::Options {
            tags_through_values,
        };
        let (c, out) = cluster_with(&text, "1.29.6", opts);
        check_cluster(&c, &out, &Catalog::embedded()).unwrap_or_else(|f| panic!("{f}"));
        let catalog = Catalog::embedded();
        let mut m = super::state::Cluster::from_spec(&c, &catalog);
        for op in out.steps.iter().flat_map(|s| &s.ops) {
            m.apply(op, &catalog).unwrap();
        }
        let service = |name: &str| {
            m.small
                .get(&super::state::Key::new(
                    super::state::Kind::Service,
                    Some("istio-system"),
                    name,
                ))
                .map(|o| o.body.clone())
        };
        for t in ["prod-stable", "canary"] {
            match service(&format!("istiod-revision-tag-{t}")) {
                Some(super::state::Body::Service { selector, .. }) => {
                    assert_eq!(selector["istio.io/rev"], "1-29", "{t}")
                }
                other => panic!("{tags_through_values}: tag {t}'s Service: {other:?}"),
            }
        }
        assert!(service("istiod-1-28").is_none(), "{tags_through_values}");
    }
}

#[test]
fn a_second_hop_moves_the_tags_on_from_the_release_that_took_them() {
    let (c, out) = values_tags_to("1.25.5,1.26.8");
    check_cluster(&c, &out, &Catalog::embedded()).unwrap_or_else(|f| panic!("{f}"));
    // The first hop's new release marked its webhooks when it took the tags: the second hop
    // has no handover, and moves both tags on from it.
    let ids: Vec<&str> = out.steps.iter().map(|s| s.id.as_str()).collect();
    assert!(
        ids.contains(&"c/hop-01/20-control-plane/tags-handover"),
        "{ids:?}"
    );
    assert!(
        !ids.contains(&"c/hop-02/20-control-plane/tags-handover"),
        "{ids:?}"
    );
    let hop2 = out.steps.iter().filter(|s| s.hop == 2);
    let from: Vec<&str> = hop2
        .flat_map(|s| &s.ops)
        .filter(|o| rollback::moves_tags(o))
        .filter_map(|o| match o {
            Op::HelmUpgrade(h) => Some(h.release.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        from.contains(&"istiod-1-25") && from.contains(&"istiod-1-26"),
        "{from:?}"
    );
}

#[test]
fn a_tag_handed_over_without_the_keep_mark_is_deleted() {
    // Forward, the new release takes the tag over first: without its keep mark, the old
    // release then deletes the webhook as it stops rendering it.
    let (c, mut out) = values_tags();
    set_keep(&mut out, "tag-prod-stable", false, false);
    let e = rejected(&c, &out);
    assert!(
        e.contains("tag-prod-stable") && !e.contains("rollback"),
        "{e}"
    );
    // Back, the old release takes it over first: without the mark the handover step set, the
    // new release deletes it.
    let (c, mut out) = values_tags();
    set_keep(&mut out, "tags-handover", false, false);
    for s in &mut out.steps {
        for op in s
            .ops
            .iter_mut()
            .chain(s.undo.iter_mut())
            .chain(s.restore.iter_mut())
        {
            if let Op::HelmUpgrade(h) = op
                && h.release == "istiod-1-24"
                && let crate::plan::op::ReleaseContent::Istiod(d) = &mut h.content
            {
                d.keep_webhooks = false;
            }
        }
    }
    let e = rejected(&c, &out);
    assert!(
        e.contains("rollback") && e.contains("without sidecars"),
        "{e}"
    );
}

#[test]
fn a_tag_taken_over_without_helm_taking_ownership_is_refused() {
    let (c, mut out) = values_tags();
    for op in &mut step(&mut out, "tag-prod-stable").ops {
        if let Op::HelmUpgrade(h) = op {
            h.take_ownership = false;
        }
    }
    let e = rejected(&c, &out);
    assert!(e.contains("cannot be imported"), "{e}");
}

#[test]
fn a_handover_skipped_loses_the_service() {
    let (c, mut out) = cluster(HELM, "1.20.2");
    let i = out
        .steps
        .iter()
        .position(|s| s.id.ends_with("istio-ingressgateway/handover"))
        .unwrap();
    out.steps.remove(i);
    recompose(&mut out);
    let e = rejected(&c, &out);
    assert!(
        e.contains("ServiceAccount `istio-ingressgateway`, which does not exist"),
        "{e}"
    );
}

#[test]
fn a_new_gateway_with_its_own_identity_is_found() {
    let (c, mut out) = cluster(HELM, "1.20.2");
    let s = step(&mut out, "istio-ingressgateway/install");
    for op in &mut s.ops {
        if let Op::HelmUpgrade(h) = op
            && let crate::plan::op::ReleaseContent::Gateway(d) = &mut h.content
        {
            d.service_account = d.name.clone();
            d.creates_service_account = true;
            d.rbac = true;
        }
    }
    let e = rejected(&c, &out);
    assert!(e.contains("ServiceAccount"), "{e}");
}

#[test]
fn an_on_delete_workload_restarted_by_a_template_patch_is_found() {
    let text = HELM.replace(
        "{kind: Deployment, name: app}",
        "{kind: StatefulSet, name: app, updateStrategy: OnDelete}",
    );
    let (c, mut out) = cluster(&text, "1.20.2");
    assert!(check_cluster(&c, &out, &Catalog::embedded()).is_ok());
    let s = step(&mut out, "tagged/statefulset-app");
    for op in &mut s.ops {
        if let Op::Restart { method, .. } = op {
            *method = crate::plan::op::RestartMethod::TemplatePatch;
        }
    }
    s.waits.push(Wait::Rollout {
        kind: crate::inventory::WorkloadKind::StatefulSet,
        name: "app".into(),
        namespace: "tagged".into(),
        timeout: "10m".into(),
    });
    let e = rejected(&c, &out);
    assert!(e.contains("OnDelete"), "{e}");
}

fn with_cni() -> String {
    HELM.replace(
        "istio: {version: 1.19.6, revision: 1-19, tags: [prod-stable]}",
        "istio: {version: 1.19.6, revision: 1-19, tags: [prod-stable], cni: {namespace: kube-system}}",
    )
}

#[test]
fn istio_cni_moves_last_and_is_accepted() {
    let (c, out) = cluster(&with_cni(), "1.21.6");
    // Two hops (one minor each), each ending with the agent.
    let cni: Vec<&str> = out
        .steps
        .iter()
        .filter(|s| s.id.ends_with("95-cni/istio-cni"))
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(
        cni,
        ["c/hop-01/95-cni/istio-cni", "c/hop-02/95-cni/istio-cni"]
    );
    if let Err(f) = check_cluster(&c, &out, &Catalog::embedded()) {
        panic!("{f}");
    }
}

#[test]
fn istio_cni_in_place_hops_are_accepted() {
    let text = with_cni().replace(
        "name: m\n",
        "name: m\ndefaults: {controlPlaneUpgrade: inPlace}\n",
    );
    let (c, out) = cluster(&text, "1.20.2");
    assert_eq!(out.summary.hops[0].strategy, crate::path::Strategy::InPlace);
    assert!(out.steps.iter().any(|s| s.id.ends_with("95-cni/istio-cni")));
    if let Err(f) = check_cluster(&c, &out, &Catalog::embedded()) {
        panic!("{f}");
    }
}

#[test]
fn istio_cni_upgraded_while_the_old_istiod_runs_is_found() {
    let (c, mut out) = cluster(&with_cni(), "1.20.2");
    // Move the agent's upgrade before the cleanup that removes the old control plane: it
    // would run 1.20 beside the 1.19 istiod, ahead of it.
    let i = out
        .steps
        .iter()
        .position(|s| s.id.ends_with("95-cni/istio-cni"))
        .unwrap();
    let s = out.steps.remove(i);
    let j = out
        .steps
        .iter()
        .position(|s| s.id.ends_with("remove-old-istiod"))
        .unwrap();
    out.steps.insert(j, s);
    recompose(&mut out);
    let e = rejected(&c, &out);
    assert!(
        e.contains("istio-cni 1.20.2 beside istiod `istiod-1-19`"),
        "{e}"
    );
}

#[test]
fn istio_cni_not_rolled_back_is_found() {
    let (c, mut out) = cluster(&with_cni(), "1.20.2");
    step(&mut out, "95-cni/istio-cni").undo.clear();
    recompose(&mut out);
    let e = rejected(&c, &out);
    assert!(e.contains("istio-cni"), "{e}");
}

const GATEWAY_API: &str = "apiVersion: meshplan.dev/v1alpha1
kind: MeshInventory
name: m
clusters:
  - name: c
    kubernetesVersion: \"1.30\"
    istio: {version: 1.26.8, revision: 1-26, tags: [prod-stable]}
    namespaces:
      - name: shop
        revision: 1-26
        workloads: [{kind: Deployment, name: web}]
        gatewayApi: [{name: shop-gateway}]
      - name: ingress
        revision: prod-stable
        wave: 2
        gatewayApi: [{name: public}, {name: partners, revision: 1-26}]
";

#[test]
fn gateway_api_gateways_move_with_their_label_and_are_accepted() {
    let (c, out) = cluster(GATEWAY_API, "1.27.9");
    assert!(
        out.steps
            .iter()
            .any(|s| s.id.ends_with("gateway-api/ingress/partners"))
    );
    if let Err(f) = check_cluster(&c, &out, &Catalog::embedded()) {
        panic!("{f}");
    }
}

#[test]
fn a_gateway_api_gateway_left_on_the_old_revision_is_found() {
    let (c, mut out) = cluster(GATEWAY_API, "1.27.9");
    let i = out
        .steps
        .iter()
        .position(|s| s.id.ends_with("gateway-api/ingress/partners"))
        .unwrap();
    out.steps.remove(i);
    recompose(&mut out);
    let e = rejected(&c, &out);
    assert!(
        e.contains("deployment ingress/partners-istio") && e.contains("istiod-1-26"),
        "{e}"
    );
}

#[test]
fn a_gateway_api_move_not_rolled_back_is_found() {
    let (c, mut out) = cluster(GATEWAY_API, "1.27.9");
    step(&mut out, "gateway-api/ingress/partners").undo.clear();
    recompose(&mut out);
    let e = rejected(&c, &out);
    assert!(e.contains("partners"), "{e}");
}

const AMBIENT: &str = "apiVersion: meshplan.dev/v1alpha1
kind: MeshInventory
name: m
clusters:
  - name: c
    kubernetesVersion: \"1.30\"
    istio: {version: 1.24.6, revision: 1-24, tags: [prod], cni: {}, ztunnel: {}}
    namespaces:
      - name: shop
        dataplaneMode: ambient
        workloads: [{kind: Deployment, name: web}]
        gatewayApi:
          - {name: waypoint, class: istio-waypoint, revision: prod}
      - name: pay
        dataplaneMode: ambient
        gatewayApi:
          - {name: waypoint, class: istio-waypoint, revision: 1-24}
      - name: legacy
        revision: 1-24
        workloads: [{kind: Deployment, name: api}]
";

#[test]
fn ambient_node_agents_move_after_the_new_istiod_and_are_accepted() {
    for to in ["1.25.5", "1.26.8"] {
        let (c, out) = cluster(AMBIENT, to);
        let ids: Vec<&str> = out.steps.iter().map(|s| s.id.as_str()).collect();
        let at = |suffix: &str| ids.iter().position(|i| i.ends_with(suffix)).unwrap();
        assert!(at("20-control-plane/istiod") < at("25-node-agents/istio-cni"));
        assert!(at("25-node-agents/istio-cni") < at("25-node-agents/ztunnel"));
        assert!(at("25-node-agents/ztunnel") < at("30-gateways/gateway-api/pay/waypoint"));
        // No ambient workload restarts, and no 95-cni in ambient mode.
        assert!(
            !ids.iter()
                .any(|i| i.contains("/shop/") && i.contains("deployment"))
        );
        assert!(!ids.iter().any(|i| i.contains("95-cni")));
        if let Err(f) = check_cluster(&c, &out, &Catalog::embedded()) {
            panic!("{to}: {f}");
        }
    }
    let text = AMBIENT.replace(
        "name: m\n",
        "name: m\ndefaults: {controlPlaneUpgrade: inPlace}\n",
    );
    let (c, out) = cluster(&text, "1.25.5");
    assert_eq!(out.summary.hops[0].strategy, crate::path::Strategy::InPlace);
    if let Err(f) = check_cluster(&c, &out, &Catalog::embedded()) {
        panic!("in place: {f}");
    }
}

#[test]
fn ztunnel_left_on_the_old_revision_is_found() {
    let (c, mut out) = cluster(AMBIENT, "1.25.5");
    // ztunnel never moves: cleanup removes the istiod it connects to.
    let s = step(&mut out, "25-node-agents/ztunnel");
    s.ops.clear();
    s.undo.clear();
    s.waits.clear();
    let e = rejected(&c, &out);
    assert!(
        e.contains("istiod-1-24.istio-system.svc") && e.contains("no istiod serves"),
        "{e}"
    );
}

#[test]
fn ztunnel_upgraded_before_its_istiod_is_found() {
    let (c, mut out) = cluster(AMBIENT, "1.25.5");
    // ztunnel moved before the new istiod exists: it connects to nothing, and runs ahead.
    let i = out
        .steps
        .iter()
        .position(|s| s.id.ends_with("25-node-agents/ztunnel"))
        .unwrap();
    let s = out.steps.remove(i);
    let j = out
        .steps
        .iter()
        .position(|s| s.id.ends_with("20-control-plane/istiod"))
        .unwrap();
    out.steps.insert(j, s);
    recompose(&mut out);
    let e = rejected(&c, &out);
    assert!(e.contains("istiod-1-25.istio-system.svc"), "{e}");
}

#[test]
fn ztunnel_not_rolled_back_is_found() {
    let (c, mut out) = cluster(AMBIENT, "1.25.5");
    step(&mut out, "25-node-agents/ztunnel").undo.clear();
    let e = rejected(&c, &out);
    assert!(e.contains("ztunnel"), "{e}");
}

#[test]
fn a_ztunnel_release_of_another_name_keeps_its_daemonset_across_1_25() {
    // The 1.24 chart names the DaemonSet `ztunnel`; from 1.25 it takes the release's name
    // unless resourceName says otherwise: the plan keeps the name, and waits for it.
    let text = AMBIENT.replace("ztunnel: {}", "ztunnel: {release: istio-ztunnel}");
    let (c, out) = cluster(&text, "1.25.5");
    let s = out
        .steps
        .iter()
        .find(|s| s.id.ends_with("25-node-agents/ztunnel"))
        .unwrap();
    assert!(
        matches!(&s.waits[0], Wait::Rollout { name, .. } if name == "ztunnel"),
        "{:?}",
        s.waits
    );
    let values = out
        .artifacts
        .iter()
        .find(|a| {
            a.path
                .ends_with("hop-01/25-node-agents/ztunnel.values.yaml")
        })
        .unwrap();
    assert!(
        values.data.contains("\"resourceName\":\"ztunnel\""),
        "{}",
        values.data
    );
    if let Err(f) = check_cluster(&c, &out, &Catalog::embedded()) {
        panic!("{f}");
    }
    // A cluster that starts at 1.25 has the release's name already.
    let text = text
        .replace(
            "version: 1.24.6, revision: 1-24",
            "version: 1.25.5, revision: 1-25",
        )
        .replace("revision: 1-24", "revision: 1-25");
    let (c, out) = cluster(&text, "1.26.8");
    let s = out
        .steps
        .iter()
        .find(|s| s.id.ends_with("25-node-agents/ztunnel"))
        .unwrap();
    assert!(
        matches!(&s.waits[0], Wait::Rollout { name, .. } if name == "istio-ztunnel"),
        "{:?}",
        s.waits
    );
    if let Err(f) = check_cluster(&c, &out, &Catalog::embedded()) {
        panic!("{f}");
    }
}

const SAIL: &str = "apiVersion: meshplan.dev/v1alpha1
kind: MeshInventory
name: m
defaults: {installMethod: sail}
clusters:
  - name: c
    kubernetesVersion: \"1.31\"
    istio:
      version: 1.27.5
      revision: default-v1-27-5
      tags: [prod]
      sail: {operatorVersion: 1.28.3}
    gateways:
      - name: istio-ingressgateway
        kind: ingress
        namespace: istio-ingress
        revision: default-v1-27-5
        service:
          name: istio-ingressgateway
          ports: [{name: http2, port: 80, targetPort: 80}]
    namespaces:
      - name: shop
        revision: default-v1-27-5
        workloads: [{kind: Deployment, name: web}]
      - name: tagged
        revision: prod
        wave: 2
        workloads: [{kind: Deployment, name: app}]
";

/// The Sail operations of a step, with `f` applied to each `Istio` resource it applies.
fn sail_istio(ops: &mut [Op], f: impl Fn(&mut bool)) {
    for op in ops {
        if let Op::SailIstio { hold, .. } = op {
            f(hold);
        }
    }
}

#[test]
fn sail_revision_based_plans_are_accepted() {
    let (c, out) = cluster(SAIL, "1.28.3");
    if let Err(f) = check_cluster(&c, &out, &Catalog::embedded()) {
        panic!("{f}");
    }
}

#[test]
fn sail_without_the_hold_prunes_the_revision_a_rollback_needs() {
    // The user's grace period from the start: once the last namespace and gateway have moved,
    // the operator deletes the old revision, and rolling a wave back relabels a namespace to a
    // revision that no longer exists.
    let (c, mut out) = cluster(SAIL, "1.28.3");
    sail_istio(&mut step(&mut out, "20-control-plane/istiod").ops, |h| {
        *h = false
    });
    recompose(&mut out);
    let e = rejected(&c, &out);
    assert!(e.contains("rollback"), "{e}");
}

#[test]
fn sail_tags_left_following_the_istio_resource_are_found() {
    // Without pinning, a tag follows the new active revision the moment it is installed: the
    // tagged namespace's next pod gets the new sidecar before its wave (and the wave's tag
    // move, which expects the old revision, is not where the model finds the change).
    let (c, mut out) = cluster(SAIL, "1.28.3");
    step(&mut out, "20-control-plane/istiod")
        .ops
        .retain(|op| !matches!(op, Op::SailTag { .. }));
    recompose(&mut out);
    let e = rejected(&c, &out);
    assert!(e.contains("rollback") || e.contains("tag"), "{e}");
}

#[test]
fn sail_cleanup_rollback_that_does_not_reinstall_the_old_revision_is_found() {
    let (c, mut out) = cluster(SAIL, "1.28.3");
    let s = step(&mut out, "90-cleanup/remove-old-istiod");
    s.undo
        .retain(|op| !matches!(op, Op::SailIstio { .. } | Op::SailAwaitRevision { .. }));
    recompose(&mut out);
    let e = rejected(&c, &out);
    assert!(
        e.contains("remove-old-istiod") && e.contains("rollback"),
        "{e}"
    );
}

#[test]
fn sail_cleanup_that_keeps_holding_never_passes_its_wait() {
    let (c, mut out) = cluster(SAIL, "1.28.3");
    sail_istio(
        &mut step(&mut out, "90-cleanup/remove-old-istiod").ops,
        |h| *h = true,
    );
    recompose(&mut out);
    let e = rejected(&c, &out);
    assert!(e.contains("never deletes IstioRevision"), "{e}");
}

#[test]
fn sail_stops_are_versions_the_operator_installs_and_two_hops_are_accepted() {
    // 1.26 -> 1.29 is three minors: two hops, through the newest 1.28 patch that Sail 1.29.2
    // lists (1.28.6), not the catalog's newest (1.28.10), which its CRD would refuse.
    let text = SAIL
        .replace("1.27.5", "1.26.8")
        .replace("default-v1-27-5", "default-v1-26-8")
        .replace("operatorVersion: 1.28.3", "operatorVersion: 1.29.2")
        .replace("\"1.31\"", "\"1.32\"");
    let (c, out) = cluster(&text, "1.29.2");
    let stops: Vec<String> = out.summary.hops.iter().map(|h| h.to.to_string()).collect();
    assert_eq!(stops, ["1.28.6", "1.29.2"]);
    assert_eq!(out.summary.hops[1].from_revision, "default-v1-28-6");
    if let Err(f) = check_cluster(&c, &out, &Catalog::embedded()) {
        panic!("{f}");
    }
}

const PRIMARY_REMOTE: &str = "apiVersion: meshplan.dev/v1alpha1
kind: MeshInventory
name: m
clusters:
  - name: c2
    kubernetesVersion: \"1.30\"
    multicluster: {meshID: mesh1, network: n1, role: remote, primary: c1, remotePilotAddress: 10.0.0.1}
    istio: {version: 1.23.6, revision: 1-23}
    namespaces:
      - name: shop
        revision: 1-23
        workloads: [{kind: Deployment, name: web}]
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
          ports: [{name: tls-istiod, port: 15012}]
";

#[test]
fn a_remote_runs_sidecars_of_its_primarys_istiod_across_1_24() {
    // The remote has no istiod: its new pods are injected through its remote Service, by the
    // primary's new istiod, and its old release (the istiod-remote chart) goes at cleanup.
    let (c, out) = cluster(PRIMARY_REMOTE, "1.24.6");
    assert!(c.remote_of().is_some());
    let states = check_cluster(&c, &out, &Catalog::embedded()).unwrap_or_else(|f| panic!("{f}"));
    let last = states.last().unwrap();
    assert_eq!(
        last.proxies.keys().collect::<Vec<_>>(),
        ["istiod-1-24 (1.24.6)"]
    );
    // The old release was of the istiod-remote chart, the new one the istiod chart's remote
    // profile.
    let charts: Vec<String> = out
        .steps
        .iter()
        .flat_map(|s| s.ops.iter().chain(&s.undo))
        .filter_map(|op| match op {
            Op::HelmUpgrade(h) if h.release.starts_with("istiod") => {
                Some(format!("{} {}", h.chart.name(), h.version))
            }
            _ => None,
        })
        .collect();
    assert!(charts.contains(&"istiod 1.24.6".to_string()), "{charts:?}");
    assert!(
        charts.contains(&"istiod-remote 1.23.6".to_string()),
        "{charts:?}"
    );
}

#[test]
fn a_remote_whose_old_release_goes_before_its_pods_move_is_found() {
    // The remote's cleanup moved before its data plane: the old remote webhook and Service go
    // while pods still run the old revision's sidecars, and a restart in a rollback would find
    // no webhook for the old revision.
    let (c, mut out) = cluster(PRIMARY_REMOTE, "1.24.6");
    let i = out
        .steps
        .iter()
        .position(|s| s.id.ends_with("remove-old-istiod"))
        .unwrap();
    let s = out.steps.remove(i);
    let first_dp = out
        .steps
        .iter()
        .position(|s| s.id.contains("50-data-plane"))
        .unwrap();
    out.steps.insert(first_dp, s);
    recompose(&mut out);
    let e = rejected(&c, &out);
    assert!(
        e.contains("rev=1-23") && e.contains("without sidecars"),
        "{e}"
    );
}

#[test]
fn a_multicluster_primary_keeps_its_mesh_identity_with_every_install_method() {
    // meshID, clusterName and network go into every new control plane, whatever installs it.
    for (method, extra) in [
        ("helm", ""),
        ("istioctl", ""),
        ("sail", ", sail: {operatorVersion: 1.28.3}"),
    ] {
        let (rev, version) = if method == "sail" {
            ("default-v1-27-5", "1.27.5")
        } else {
            ("1-27", "1.27.5")
        };
        let text = format!(
            "apiVersion: meshplan.dev/v1alpha1
kind: MeshInventory
name: m
clusters:
  - name: c
    kubernetesVersion: \"1.31\"
    installMethod: {method}
    multicluster: {{meshID: mesh7, network: net7, clusterName: east7}}
    istio: {{version: {version}, revision: {rev}{extra}}}
"
        );
        let (c, out) = cluster(&text, "1.28.3");
        check_cluster(&c, &out, &Catalog::embedded()).unwrap_or_else(|f| panic!("{method}: {f}"));
        let cp = out
            .artifacts
            .iter()
            .find(|a| a.path.contains("20-control-plane"))
            .unwrap_or_else(|| panic!("{method}: no control-plane file"));
        for want in [
            "\"meshID\":\"mesh7\"",
            "\"network\":\"net7\"",
            "\"clusterName\":\"east7\"",
        ] {
            assert!(
                cp.data.contains(want),
                "{method}: {want} not in {}",
                cp.data
            );
        }
    }
}
