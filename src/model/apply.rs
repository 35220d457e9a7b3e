//! What each operation does to the model, with the semantics that matter for an upgrade:
//!
//! - Helm: a release owns what it renders; installing or upgrading it over an object another
//!   release (or nobody) owns fails on ownership, unless Helm's metadata names this release
//!   (adoption); objects it stops rendering, and everything on uninstall, are deleted unless
//!   marked `helm.sh/resource-policy: keep`; a Service it renders keeps a selector someone
//!   patched (three-way merge); a gateway's pods restart when their template changes.
//! - istioctl and the operator own what they install and prune it by revision (or with the
//!   IstioOperator resource); they overwrite a Service's selector with their own.
//! - Pods get their proxy from the webhooks at the moment they are created (`inject.rs`).

use std::collections::{BTreeMap, BTreeSet};

use super::state::{
    Body, Cluster, Crds, Key, Kind, Obj, Owner, Release, base_objects, cni_object, gateway_objects,
    istiod_objects, tag_object, tag_service, ztunnel_object,
};
use crate::catalog::Catalog;
use crate::plan::names;
use crate::plan::op::{
    HelmUpgrade, IopContent, LabelPatch, Manifest, Op, ReleaseContent, RestartMethod,
};
use crate::validate::DEFAULT_REVISION;

fn patch_labels(labels: &mut BTreeMap<String, String>, patch: &LabelPatch) {
    for (k, v) in patch {
        match v {
            Some(v) => {
                labels.insert(k.clone(), v.clone());
            }
            None => {
                labels.remove(k);
            }
        }
    }
}

fn owner_name(o: &Owner) -> String {
    match o {
        Owner::Helm { release, namespace } => format!("Helm release {namespace}/{release}"),
        Owner::Istioctl { revision } => format!("istioctl (revision {revision})"),
        Owner::Operator { iop } => format!("the operator's IstioOperator {iop}"),
        Owner::Sail => "the Sail Operator".to_string(),
        Owner::None => "nobody (no Helm ownership metadata for it)".to_string(),
    }
}

impl Cluster {
    /// Applies `op`; `Err` says why the real tool would fail, or what would break. Then istiod
    /// reconciles the Gateway API gateways whose owner the operation changed.
    pub fn apply(&mut self, op: &Op, catalog: &Catalog) -> Result<(), String> {
        if !self.apply_sail(op)? {
            self.apply_op(op, catalog)?;
        }
        self.reconcile_gateway_api();
        self.sail_prune();
        Ok(())
    }

    /// istiod's Gateway deployment controller: a Gateway belongs to the istiod whose revision
    /// or tags include its `istio.io/rev` label, or else its namespace's (none: the default
    /// revision), and that istiod renders its Deployment with its own proxy. A Gateway no
    /// running istiod owns keeps what it has.
    pub fn reconcile_gateway_api(&mut self) {
        let gateways: Vec<(Key, Option<String>, String)> = self
            .small
            .objects
            .iter()
            .filter_map(|(k, o)| match &o.body {
                Body::GatewayApi { rev, deployment } => {
                    Some((k.clone(), rev.clone(), deployment.clone()))
                }
                _ => None,
            })
            .collect();
        for (k, rev, deployment) in gateways {
            let ns = k.namespace.clone().unwrap_or_default();
            let label = rev.or_else(|| {
                self.namespace_index(&ns)
                    .and_then(|i| self.namespaces.items[i].rev.clone())
            });
            let probe = super::state::Namespace {
                name: ns.clone(),
                rev: Some(label.unwrap_or_else(|| DEFAULT_REVISION.to_string())),
                injection: None,
            };
            let Ok(Some(owner)) = self.inject(&probe, &BTreeMap::new()) else {
                continue;
            };
            let dkey = Key::new(Kind::Deployment, Some(&ns), &deployment);
            if let Some(Obj {
                body: Body::Gateway { version, proxy, .. },
                ..
            }) = self.small.objects.get_mut(&dkey)
                && proxy.as_ref() != Some(&owner)
            {
                *version = owner.version.clone();
                *proxy = Some(owner);
            }
        }
    }

    fn apply_op(&mut self, op: &Op, catalog: &Catalog) -> Result<(), String> {
        match op {
            Op::HelmUpgrade(h) => self.helm_upgrade(h, catalog),
            Op::HelmUninstall { release, namespace } => {
                let Some(r) = self
                    .small
                    .releases
                    .remove(&(namespace.clone(), release.clone()))
                else {
                    return Err(format!(
                        "release {namespace}/{release} does not exist: `helm uninstall` fails"
                    ));
                };
                let owner = Owner::Helm {
                    release: release.clone(),
                    namespace: namespace.clone(),
                };
                for k in r.objects {
                    self.remove_owned(&k, &owner);
                }
                Ok(())
            }
            Op::ApplyCrds { version, .. } => {
                let owned = self.small.crds.as_ref().is_some_and(|c| c.helm_owned);
                self.small.crds = Some(Crds {
                    version: version.clone(),
                    templated: false,
                    helm_owned: owned,
                });
                Ok(())
            }
            Op::AdoptCrds { .. } => {
                match &mut self.small.crds {
                    Some(c) => c.helm_owned = true,
                    None => return Err("there are no Istio CRDs to label".into()),
                }
                Ok(())
            }
            Op::IstioctlInstall {
                operator,
                name,
                namespace,
                content,
                version,
                ..
            } => {
                let label = match content {
                    IopContent::Istiod { revision } => revision
                        .clone()
                        .unwrap_or_else(|| DEFAULT_REVISION.to_string()),
                    IopContent::Gateway(d) => d
                        .pod_revision
                        .clone()
                        .unwrap_or_else(|| DEFAULT_REVISION.to_string()),
                };
                let owner = if *operator {
                    if !self.small.operators.contains_key(&label) {
                        return Err(format!(
                            "no in-cluster operator of revision `{label}` runs to reconcile IstioOperator {name}"
                        ));
                    }
                    self.small.put(
                        Key::new(Kind::IstioOperator, Some(namespace), name),
                        Owner::None,
                        Body::IstioOperator,
                    );
                    Owner::Operator { iop: name.clone() }
                } else {
                    Owner::Istioctl { revision: label }
                };
                let rendered = self.iop_objects(content, version);
                self.install_objects(rendered, &owner, None).map(|_| ())
            }
            Op::OperatorInit {
                revision, version, ..
            } => {
                self.small
                    .operators
                    .insert(revision.clone(), version.clone());
                Ok(())
            }
            Op::OperatorRemove { revision, .. } => {
                self.small.operators.remove(revision);
                Ok(())
            }
            Op::IstioctlUninstall { revision, .. } => {
                let doomed: Vec<Key> = self
                    .small
                    .objects
                    .iter()
                    .filter(|(_, o)| {
                        o.owner
                            == Owner::Istioctl {
                                revision: revision.clone(),
                            }
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in doomed {
                    self.small.objects.remove(&k);
                }
                Ok(())
            }
            Op::SetTag {
                tag,
                revision,
                version,
                helm,
            } => {
                // From 1.28 a tag is a Service too, which the same command writes.
                let with_service = match helm {
                    Some(t) => t
                        .templates
                        .iter()
                        .any(|x| x.ends_with("revision-tags-svc.yaml")),
                    None => crate::chart_facts::istiod_tag_services(version),
                };
                if with_service {
                    let (k, b) = tag_service(tag, revision, &self.control_namespace);
                    let owner = match self.small.get(&k) {
                        Some(o) if self.release_alive(&o.owner) => {
                            return Err(format!(
                                "the Service of revision tag `{tag}` is rendered by {}, which would put it back or delete it",
                                owner_name(&o.owner)
                            ));
                        }
                        _ => Owner::None,
                    };
                    self.small.put(k, owner, b);
                }
                let (key, _) = tag_object(tag, "", &self.control_namespace);
                let service = if revision == DEFAULT_REVISION {
                    names::istiod(None)
                } else {
                    names::istiod(Some(revision))
                };
                match self.small.objects.get_mut(&key) {
                    None => Err(format!(
                        "revision tag `{tag}` does not exist: moving it would create it, and a new tag starts injecting whatever carries its label (for `default`: every istio-injection=enabled namespace)"
                    )),
                    Some(o) if matches!(o.owner, Owner::Helm { .. }) => Err(format!(
                        "revision tag `{tag}` is rendered by {}, which would put it back or delete it",
                        owner_name(&o.owner)
                    )),
                    Some(o) => {
                        if let Body::Injector(s) = &mut o.body {
                            s.service = service;
                        }
                        Ok(())
                    }
                }
            }
            Op::Apply { objects, .. } => {
                for m in objects {
                    match m {
                        Manifest::Service { spec, selector } => {
                            let key = Key::new(Kind::Service, Some(&spec.namespace), &spec.name);
                            let owner = match self.small.get(&key) {
                                Some(o) if self.release_alive(&o.owner) => o.owner.clone(),
                                _ => Owner::None,
                            };
                            self.small.put(
                                key,
                                owner,
                                Body::Service {
                                    spec: Some(spec.clone()),
                                    selector: selector.clone(),
                                },
                            );
                        }
                        Manifest::IstiodRoute {
                            name,
                            namespace,
                            service,
                        } => {
                            self.small.put(
                                Key::new(Kind::VirtualService, Some(namespace), name),
                                Owner::None,
                                Body::IstiodRoute {
                                    service: service.clone(),
                                },
                            );
                        }
                        Manifest::SecretsRbac {
                            name,
                            namespace,
                            service_account,
                        } => {
                            self.small.put(
                                Key::new(Kind::Role, Some(namespace), name),
                                Owner::None,
                                Body::Role,
                            );
                            self.small.put(
                                Key::new(Kind::RoleBinding, Some(namespace), name),
                                Owner::None,
                                Body::RoleBinding {
                                    service_account: service_account.clone(),
                                },
                            );
                        }
                    }
                }
                Ok(())
            }
            Op::PatchSelector {
                service,
                namespace,
                patch,
                ..
            } => {
                let key = Key::new(Kind::Service, Some(namespace), service);
                match self.small.objects.get_mut(&key) {
                    Some(Obj {
                        body: Body::Service { selector, .. },
                        ..
                    }) => {
                        patch_labels(selector, patch);
                        Ok(())
                    }
                    _ => Err(format!("{key} does not exist: `kubectl patch` fails")),
                }
            }
            Op::LabelNamespace {
                namespace, patch, ..
            } => {
                let Some(i) = self.namespace_index(namespace) else {
                    return Err(format!("namespace {namespace} is not in the inventory"));
                };
                let mut n = self.namespaces.items[i].clone();
                for (k, v) in patch {
                    match k.as_str() {
                        "istio.io/rev" => n.rev = v.clone(),
                        "istio-injection" => n.injection = v.clone(),
                        _ => {}
                    }
                }
                self.set_namespace(i, n);
                Ok(())
            }
            Op::RemoveLabels { objects, labels } => {
                for o in objects {
                    let Some(kind) = Kind::from_resource(&o.kind) else {
                        continue;
                    };
                    let key = Key::new(kind, o.namespace.as_deref(), &o.name);
                    match self.small.objects.get_mut(&key) {
                        None => return Err(format!("{key} does not exist: `kubectl label` fails")),
                        Some(obj) => {
                            if labels.iter().any(|l| l == "istio.io/rev")
                                && matches!(
                                    obj.owner,
                                    Owner::Istioctl { .. } | Owner::Operator { .. }
                                )
                            {
                                obj.owner = Owner::None;
                            }
                        }
                    }
                }
                Ok(())
            }
            Op::Restart {
                kind,
                name,
                namespace,
                method,
                ..
            } => {
                let Some(i) = self.workload_at(*kind, name, namespace) else {
                    return Err(format!(
                        "{kind:?} {namespace}/{name} is not in the inventory"
                    ));
                };
                let w = self.workloads.items[i].clone();
                if *method == RestartMethod::TemplatePatch && !w.restarts_on_template_change {
                    // The controller keeps the running pods: nothing restarts.
                    return Ok(());
                }
                let ns = self.namespaces.items[w.namespace].clone();
                let proxy = self
                    .inject(&ns, &BTreeMap::new())
                    .map_err(|e| format!("restarting {kind:?} {namespace}/{name}: {e}"))?;
                if proxy.is_none() {
                    return Err(format!(
                        "restarting {kind:?} {namespace}/{name}: no webhook injects its pods, which start without a sidecar and leave the mesh"
                    ));
                }
                self.set_workload(i, super::state::Workload { proxy, ..w });
                Ok(())
            }
            Op::RolloutRestart {
                kind,
                name,
                namespace,
            } => {
                let key = Key::new(Kind::Deployment, Some(namespace), name);
                if *kind == crate::inventory::WorkloadKind::Deployment
                    && matches!(
                        self.small.objects.get(&key).map(|o| &o.body),
                        Some(Body::Gateway { .. })
                    )
                {
                    return self.reinject_gateway(&key);
                }
                self.apply_op(
                    &Op::Restart {
                        kind: *kind,
                        name: name.clone(),
                        namespace: namespace.clone(),
                        method: RestartMethod::TemplatePatch,
                        file: None,
                    },
                    catalog,
                )
            }
            Op::Delete { objects } => {
                for o in objects {
                    let Some(kind) = Kind::from_resource(&o.kind) else {
                        continue;
                    };
                    let key = Key::new(kind, o.namespace.as_deref(), &o.name);
                    if kind == Kind::IstioOperator && self.small.objects.remove(&key).is_some() {
                        // The operator prunes what it reconciled from it.
                        let doomed: Vec<Key> = self
                            .small
                            .objects
                            .iter()
                            .filter(|(_, ob)| {
                                ob.owner
                                    == Owner::Operator {
                                        iop: o.name.clone(),
                                    }
                            })
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in doomed {
                            self.small.objects.remove(&k);
                        }
                    } else {
                        self.small.objects.remove(&key);
                    }
                }
                Ok(())
            }
            Op::Probe { .. } => Ok(()),
            Op::SailIstio { .. } | Op::SailTag { .. } | Op::SailAwaitRevision { .. } => {
                unreachable!("Sail operations are applied by apply_sail")
            }
            Op::LabelGateway {
                name,
                namespace,
                revision,
            } => {
                let key = Key::new(Kind::Gateway, Some(namespace), name);
                match self.small.objects.get_mut(&key) {
                    Some(Obj {
                        body: Body::GatewayApi { rev, .. },
                        ..
                    }) => {
                        *rev = revision.clone();
                        Ok(())
                    }
                    _ => Err(format!("{key} does not exist: `kubectl label` fails")),
                }
            }
        }
    }

    fn release_alive(&self, o: &Owner) -> bool {
        match o {
            Owner::Helm { release, namespace } => self
                .small
                .releases
                .contains_key(&(namespace.clone(), release.clone())),
            Owner::None => false,
            _ => true,
        }
    }

    /// Removes an object its owner no longer renders, unless it is kept.
    /// What Helm does with an object `owner` rendered and renders no more (or uninstalls): it
    /// deletes it unless the live object is marked keep, whoever owns it now (Helm checks no
    /// ownership before deleting). A kept object stays with whoever took it over.
    fn remove_owned(&mut self, k: &Key, owner: &Owner) {
        if let Some(o) = self.small.objects.get_mut(k) {
            if o.keep {
                if o.owner == *owner {
                    o.owner = Owner::None;
                }
            } else {
                self.small.objects.remove(k);
            }
        }
    }

    fn helm_upgrade(&mut self, h: &HelmUpgrade, catalog: &Catalog) -> Result<(), String> {
        let rkey = (h.namespace.clone(), h.release.clone());
        let existing = self.small.releases.get(&rkey).cloned();
        match &existing {
            None if !h.install => {
                return Err(format!(
                    "release {}/{} does not exist: `helm upgrade` without --install fails",
                    h.namespace, h.release
                ));
            }
            Some(r) if r.chart != h.chart => {
                return Err(format!(
                    "release {}/{} is of chart {}, not {}",
                    h.namespace,
                    h.release,
                    r.chart.name(),
                    h.chart.name()
                ));
            }
            _ => {}
        }
        let owner = Owner::Helm {
            release: h.release.clone(),
            namespace: h.namespace.clone(),
        };
        let rendered: Vec<(Key, Body, bool)> = match &h.content {
            ReleaseContent::Base { default_revision } => {
                let templated = catalog
                    .get(h.version.minor())
                    .is_some_and(|r| r.crd_templates);
                if templated {
                    match &self.small.crds {
                        Some(c) if !c.helm_owned => {
                            return Err(format!(
                                "the Istio CRDs are not labelled for release {}: from 1.24 the base chart templates them, and Helm refuses with \"invalid ownership metadata\"",
                                h.release
                            ));
                        }
                        _ => {
                            self.small.crds = Some(Crds {
                                version: h.version.clone(),
                                templated: true,
                                helm_owned: true,
                            });
                        }
                    }
                }
                base_objects(default_revision, &h.namespace)
                    .into_iter()
                    .map(|(k, b)| (k, b, false))
                    .collect()
            }
            ReleaseContent::Istiod(d) => {
                istiod_objects(d.revision.as_deref(), &h.version, &h.namespace, &d.tags)
                    .into_iter()
                    // A remote's control plane: the injector and the Service that reaches
                    // the primary's istiod (validation too only with global.configCluster).
                    .filter(|(k, _)| {
                        !(d.remote && matches!(k.kind, Kind::Deployment | Kind::ValidatingWebhook))
                    })
                    .map(|(k, b)| {
                        // From 1.28 the plan marks the Services too (`serviceAnnotations`: istiod's
                        // own and the tags'), whenever it marks the webhooks.
                        let keep = d.keep_webhooks
                            && (k.kind == Kind::MutatingWebhook
                                || (k.kind == Kind::Service
                                    && crate::chart_facts::istiod_tag_services(&h.version)));
                        (k, b, keep)
                    })
                    .collect()
            }
            ReleaseContent::Gateway(d) => gateway_objects(d, false, &h.version),
            ReleaseContent::Cni => {
                let (k, b) = cni_object(&h.namespace, &h.version);
                vec![(k, b, false)]
            }
            ReleaseContent::Ztunnel {
                revision,
                daemonset,
            } => {
                let (k, b) = ztunnel_object(
                    &h.namespace,
                    daemonset,
                    &h.version,
                    revision.as_deref(),
                    &self.control_namespace,
                );
                vec![(k, b, false)]
            }
        };
        let old_keys = existing.map(|r| r.objects).unwrap_or_default();
        let keys = self.install_objects(rendered, &owner, Some((&h.release, h.take_ownership)))?;
        for k in old_keys.difference(&keys) {
            self.remove_owned(k, &owner);
        }
        self.small.releases.insert(
            rkey,
            Release {
                chart: h.chart,
                version: h.version.clone(),
                content: h.content.clone(),
                objects: keys.clone(),
            },
        );
        Ok(())
    }

    /// Creates or updates rendered objects for `owner`, restarting gateway pods whose template
    /// changed. With `helm` (the release, and whether it takes ownership), objects owned by
    /// someone else are an ownership conflict unless Helm's metadata names the release, or the
    /// release takes over what another release or nobody owns.
    fn install_objects(
        &mut self,
        rendered: Vec<(Key, Body, bool)>,
        owner: &Owner,
        helm: Option<(&str, bool)>,
    ) -> Result<std::collections::BTreeSet<Key>, String> {
        let helm_release = helm.map(|(r, _)| r);
        if let (Some((release, take)), Owner::Helm { namespace, .. }) = (helm, owner) {
            for (k, _, _) in &rendered {
                if let Some(o) = self.small.get(k) {
                    let adoptable = o.owner == *owner
                        || (take && matches!(o.owner, Owner::Helm { .. } | Owner::None))
                        || (o.owner == Owner::None
                            && o.helm_meta == Some((release.to_string(), namespace.clone())));
                    if !adoptable {
                        return Err(format!(
                            "{k} exists and cannot be imported into release {namespace}/{release}: it belongs to {}",
                            owner_name(&o.owner)
                        ));
                    }
                }
            }
        }
        let mut keys = BTreeSet::new();
        let mut restart = Vec::new();
        for (k, body, keep) in rendered {
            let existing = self.small.get(&k).cloned();
            // A release taking over what it did not render before: Helm merges the live object
            // with the rendered one as if it had rendered it already, so rendered fields win.
            let taken_over = existing.as_ref().is_some_and(|o| o.owner != *owner);
            let body = match (existing.as_ref().map(|o| &o.body), body) {
                // Helm's three-way merge keeps a selector patched by hand; istioctl overwrites it.
                (Some(Body::Service { selector: live, .. }), Body::Service { spec, selector }) => {
                    Body::Service {
                        spec,
                        selector: if helm_release.is_some() && !taken_over {
                            live.clone()
                        } else if helm_release.is_some() {
                            let mut merged = live.clone();
                            merged.extend(selector);
                            merged
                        } else {
                            selector
                        },
                    }
                }
                (
                    Some(Body::Gateway {
                        pod_labels: old_labels,
                        service_account: old_sa,
                        version: old_version,
                        proxy,
                        ..
                    }),
                    Body::Gateway {
                        pod_labels,
                        service_account,
                        version,
                        reads_secrets,
                        ..
                    },
                ) => {
                    if *old_labels != pod_labels
                        || *old_sa != service_account
                        || *old_version != version
                    {
                        restart.push(k.clone());
                    }
                    Body::Gateway {
                        pod_labels,
                        service_account,
                        version,
                        proxy: proxy.clone(),
                        reads_secrets,
                    }
                }
                (None, b @ Body::Gateway { .. }) => {
                    restart.push(k.clone());
                    b
                }
                (_, b) => b,
            };
            self.small.put(k.clone(), owner.clone(), body);
            if let Some(o) = self.small.objects.get_mut(&k) {
                o.keep = keep;
            }
            keys.insert(k);
        }
        for k in restart {
            self.reinject_gateway(&k)?;
        }
        Ok(keys)
    }

    pub fn set_namespace(&mut self, i: usize, v: super::state::Namespace) {
        let old = &self.namespaces.items[i];
        dec(
            &mut self.ns_counts,
            &(old.rev.clone(), old.injection.clone()),
        );
        *self
            .ns_counts
            .entry((v.rev.clone(), v.injection.clone()))
            .or_default() += 1;
        self.namespaces.set(i, v);
    }

    pub fn set_workload(&mut self, i: usize, v: super::state::Workload) {
        if let Some(p) = &self.workloads.items[i].proxy {
            dec(&mut self.proxy_counts, p);
        }
        if let Some(p) = &v.proxy {
            *self.proxy_counts.entry(p.clone()).or_default() += 1;
        }
        self.workloads.set(i, v);
    }

    /// Puts back everything a trial changed in the large part (the small part is restored by
    /// the caller from its copy).
    pub fn revert_trial(&mut self) {
        for (i, v) in self.namespaces.take_trial().into_iter().rev() {
            let old = &self.namespaces.items[i];
            dec(
                &mut self.ns_counts,
                &(old.rev.clone(), old.injection.clone()),
            );
            *self
                .ns_counts
                .entry((v.rev.clone(), v.injection.clone()))
                .or_default() += 1;
            self.namespaces.items[i] = v;
        }
        for (i, v) in self.workloads.take_trial().into_iter().rev() {
            if let Some(p) = &self.workloads.items[i].proxy {
                dec(&mut self.proxy_counts, p);
            }
            if let Some(p) = &v.proxy {
                *self.proxy_counts.entry(p.clone()).or_default() += 1;
            }
            self.workloads.items[i] = v;
        }
    }
}

fn dec<K: Ord>(m: &mut BTreeMap<K, usize>, k: &K) {
    if let Some(n) = m.get_mut(k) {
        *n -= 1;
        if *n == 0 {
            m.remove(k);
        }
    }
}
