//! The model's picture of one cluster: the objects that decide where traffic goes and which
//! istiod injects and serves each proxy, the Helm releases that own them, and every namespace
//! and workload of the inventory.
//!
//! The state has a small part (objects and releases: tens of entries, cloned freely) and a
//! large part (namespaces and workloads: as many as the inventory lists), which is changed only
//! through [`Large::set`], so that a rollback trial can be undone and compared cheaply.

use std::collections::{BTreeMap, BTreeSet};

use crate::inventory::{InstallMethod, ServiceOwner, WorkloadKind};
use crate::plan::names;
use crate::plan::op::{
    Chart, GATEWAY_NAME_LABEL, GatewayDeploy, IopContent, ReleaseContent, ServiceSpec,
};
use crate::plan::state::{Carried, running_gateway};
use crate::validate::{ClusterSpec, DEFAULT_REVISION};
use crate::version::IstioVersion;

/// Object kinds the model tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Deployment,
    Service,
    ServiceAccount,
    Role,
    RoleBinding,
    MutatingWebhook,
    ValidatingWebhook,
    IstioOperator,
    DaemonSet,
    /// A Gateway API `Gateway` (class `istio`).
    Gateway,
    /// An Istio VirtualService (the primary's istiod exposed to remote clusters).
    VirtualService,
}

impl Kind {
    pub fn from_resource(r: &str) -> Option<Kind> {
        Some(match r {
            "deployment" => Kind::Deployment,
            "service" => Kind::Service,
            "serviceaccount" => Kind::ServiceAccount,
            "role" => Kind::Role,
            "rolebinding" => Kind::RoleBinding,
            "mutatingwebhookconfiguration" => Kind::MutatingWebhook,
            "validatingwebhookconfiguration" => Kind::ValidatingWebhook,
            "istiooperator" => Kind::IstioOperator,
            "daemonset" => Kind::DaemonSet,
            "gateways.gateway.networking.k8s.io" => Kind::Gateway,
            "virtualservices.networking.istio.io" => Kind::VirtualService,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment",
            Kind::Service => "service",
            Kind::ServiceAccount => "serviceaccount",
            Kind::Role => "role",
            Kind::RoleBinding => "rolebinding",
            Kind::MutatingWebhook => "mutatingwebhookconfiguration",
            Kind::ValidatingWebhook => "validatingwebhookconfiguration",
            Kind::IstioOperator => "istiooperator",
            Kind::DaemonSet => "daemonset",
            Kind::Gateway => "gateways.gateway.networking.k8s.io",
            Kind::VirtualService => "virtualservices.networking.istio.io",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
}

impl Key {
    pub fn new(kind: Kind, namespace: Option<&str>, name: &str) -> Key {
        Key {
            kind,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind.name(), self.name),
            None => write!(f, "{} {}", self.kind.name(), self.name),
        }
    }
}

/// Who manages an object: removing the owner removes it (unless it is kept).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    Helm {
        release: String,
        namespace: String,
    },
    /// istioctl-installed, pruned by `istioctl uninstall --revision <revision>`.
    Istioctl {
        revision: String,
    },
    /// Reconciled by the in-cluster operator from an IstioOperator resource.
    Operator {
        iop: String,
    },
    /// Reconciled by the Sail Operator from an `IstioRevision` or `IstioRevisionTag`.
    Sail,
    /// Nobody: applied on its own, or kept after its owner went.
    None,
}

/// Where a proxy gets its configuration: the istiod Service it was injected for, and the
/// version of the sidecar it was injected with.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Proxy {
    pub service: String,
    pub version: IstioVersion,
}

/// Which pods an injector webhook configuration injects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectorSpec {
    /// The `istio.io/rev` value its `rev.*` webhooks match (a revision name, `default`, or a
    /// tag).
    pub label: String,
    /// It also has the default webhooks (`istio-injection=enabled`,
    /// `sidecar.istio.io/inject=true`): an unrevisioned control plane, or the `default` tag.
    pub default_selectors: bool,
    /// The istiod Service it sends pods to.
    pub service: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// An istiod Deployment of a version.
    Istiod {
        version: IstioVersion,
    },
    /// A gateway Deployment: its pods' labels and ServiceAccount, and their proxy.
    Gateway {
        pod_labels: BTreeMap<String, String>,
        service_account: String,
        /// The release version that rendered it (a new version changes the pod template).
        version: IstioVersion,
        proxy: Option<Proxy>,
        /// Its ServiceAccount must be allowed to read TLS secrets (chart and istioctl
        /// gateways); istiod serves the certificates of the gateways it deploys itself.
        reads_secrets: bool,
    },
    Service {
        spec: Option<ServiceSpec>,
        selector: BTreeMap<String, String>,
    },
    ServiceAccount,
    Role,
    RoleBinding {
        service_account: String,
    },
    Injector(InjectorSpec),
    Validator {
        service: Option<String>,
    },
    IstioOperator,
    /// The istio-cni node agent of a version.
    CniAgent {
        version: IstioVersion,
    },
    /// The ztunnel node proxy of a version, connected to the istiod Deployment and Service
    /// `istiod` (or `istiod-<revision>`) in `istio_namespace`.
    Ztunnel {
        version: IstioVersion,
        istiod: String,
        istio_namespace: String,
    },
    /// A VirtualService that routes the SNI names of the istiod Service `service` through the
    /// east-west gateway to it (remote clusters reach that istiod so).
    IstiodRoute {
        service: String,
    },
    /// A Gateway API Gateway: its own `istio.io/rev` label, and the Deployment istiod renders
    /// for it (which the istiod that label, or else the namespace's, names reconciles).
    GatewayApi {
        rev: Option<String>,
        deployment: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Obj {
    pub owner: Owner,
    /// `helm.sh/resource-policy: keep`.
    pub keep: bool,
    /// The release Helm's ownership metadata names (it adopts the object if that release is
    /// installed again).
    pub helm_meta: Option<(String, String)>,
    /// Changes only when the object is deleted and created again (a Service's address).
    pub uid: u64,
    pub body: Body,
}

/// A Helm release: its chart and version, what it renders, and the objects it owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub chart: Chart,
    pub version: IstioVersion,
    pub content: ReleaseContent,
    pub objects: BTreeSet<Key>,
}

/// How Istio's CRDs are labelled: by the files of a pre-1.24 chart (`chart=istio`), or by the
/// base chart's templates (`app.kubernetes.io/part-of=istio`, owned by a release).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crds {
    pub version: IstioVersion,
    pub templated: bool,
    /// Helm may own them (labelled and annotated for the base release).
    pub helm_owned: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub rev: Option<String>,
    pub injection: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub namespace: usize,
    pub kind: WorkloadKind,
    pub name: String,
    /// A pod-template change restarts every pod (no OnDelete, no partition).
    pub restarts_on_template_change: bool,
    /// `updateStrategy: OnDelete` (`kubectl rollout status` refuses it).
    pub on_delete: bool,
    pub proxy: Option<Proxy>,
}

/// A vector whose changes can be recorded: the first value of each touched entry since the
/// segment began, and the values a trial overwrote.
#[derive(Clone, Debug, Default)]
pub struct Large<T: Clone> {
    pub items: Vec<T>,
    pub first: BTreeMap<usize, T>,
    trial: Option<Vec<(usize, T)>>,
}

impl<T: Clone + PartialEq> Large<T> {
    pub fn new(items: Vec<T>) -> Self {
        Large {
            items,
            first: BTreeMap::new(),
            trial: None,
        }
    }

    pub fn set(&mut self, i: usize, v: T) {
        let old = std::mem::replace(&mut self.items[i], v);
        self.first.entry(i).or_insert_with(|| old.clone());
        if let Some(t) = &mut self.trial {
            t.push((i, old));
        }
    }

    /// Starts a new segment: from now on, `first` records values as of now.
    pub fn begin_segment(&mut self) {
        self.first.clear();
    }

    pub fn begin_trial(&mut self) {
        self.trial = Some(Vec::new());
    }

    /// Ends the trial: the values it overwrote, oldest first, for the caller to put back.
    pub fn take_trial(&mut self) -> Vec<(usize, T)> {
        self.trial.take().unwrap_or_default()
    }

    /// The entries that differ from what they were when the segment began.
    pub fn changed_since_segment(&self) -> Vec<usize> {
        self.first
            .iter()
            .filter(|(i, v)| self.items[**i] != **v)
            .map(|(i, _)| *i)
            .collect()
    }
}

/// The small part of the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Small {
    pub objects: BTreeMap<Key, Obj>,
    pub releases: BTreeMap<(String, String), Release>,
    pub crds: Option<Crds>,
    /// In-cluster operators, by revision.
    pub operators: BTreeMap<String, IstioVersion>,
    /// The Sail Operator's resources (install method `sail`).
    pub sail: Option<SailState>,
    pub next_uid: u64,
}

/// The Sail Operator's `Istio` resource, the `IstioRevision`s it created and the
/// `IstioRevisionTag`s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SailState {
    pub name: String,
    /// `spec.version`: its revision is the active one.
    pub version: IstioVersion,
    /// The grace period meshplan sets during an upgrade: inactive revisions are kept.
    pub hold: bool,
    /// The `IstioRevision`s, with their versions.
    pub revisions: BTreeMap<String, IstioVersion>,
    /// The tags: `None` follows the active revision (`targetRef` kind `Istio`), `Some`
    /// names an `IstioRevision`.
    pub tags: BTreeMap<String, Option<String>>,
}

impl SailState {
    pub fn active(&self) -> String {
        crate::sail::revision_name(&self.name, &self.version)
    }

    /// The revision tag `tag` resolves to.
    pub fn tag_revision(&self, tag: &str) -> Option<String> {
        self.tags
            .get(tag)
            .map(|t| t.clone().unwrap_or_else(|| self.active()))
    }
}

/// A gateway's traffic Service as it must stay: its address never changes (same object),
/// nor do its type, ports and annotations; and the pods it sends traffic to keep the gateway's
/// identity.
#[derive(Clone, Debug)]
pub struct TrafficService {
    pub gateway: String,
    pub key: Key,
    pub uid: u64,
    pub spec: ServiceSpec,
    pub service_account: String,
    /// The pods' `app` label (`None`: the gateway has none, as istiod's Gateway API
    /// gateways).
    pub app: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Cluster {
    pub name: String,
    pub install: InstallMethod,
    pub control_namespace: String,
    pub small: Small,
    pub namespaces: Large<Namespace>,
    pub workloads: Large<Workload>,
    pub traffic: Vec<TrafficService>,
    /// How many namespaces carry each pair of (`istio.io/rev`, `istio-injection`) labels.
    pub ns_counts: BTreeMap<(Option<String>, Option<String>), usize>,
    /// How many workloads run each proxy.
    pub proxy_counts: BTreeMap<Proxy, usize>,
    /// Lookups by name (never iterated).
    pub ns_index: std::collections::HashMap<String, usize>,
    pub workload_index: std::collections::HashMap<(usize, WorkloadKind, String), usize>,
    /// A remote cluster: the primary's istiods its remote Services reach (by Service name),
    /// as they run while this cluster's hop does.
    pub external: BTreeMap<String, IstioVersion>,
}

impl Cluster {
    /// The version of the istiod behind Service `service` of the control-plane namespace: a
    /// local Deployment, or, in a remote cluster, the primary's istiod its remote Service
    /// reaches. `None`: nothing answers.
    pub fn istiod_behind(&self, service: &str) -> Option<&IstioVersion> {
        let ns = Some(self.control_namespace.as_str());
        self.small.get(&Key::new(Kind::Service, ns, service))?;
        match self.small.get(&Key::new(Kind::Deployment, ns, service)) {
            Some(Obj {
                body: Body::Istiod { version },
                ..
            }) => Some(version),
            Some(_) => None,
            None => self.external.get(service),
        }
    }
}

impl Small {
    pub fn get(&self, k: &Key) -> Option<&Obj> {
        self.objects.get(k)
    }

    pub fn put(&mut self, k: Key, owner: Owner, body: Body) {
        let uid = match self.objects.get(&k) {
            Some(o) => o.uid,
            None => {
                self.next_uid += 1;
                self.next_uid
            }
        };
        let helm_meta = match &owner {
            Owner::Helm { release, namespace } => Some((release.clone(), namespace.clone())),
            _ => self.objects.get(&k).and_then(|o| o.helm_meta.clone()),
        };
        let keep = self.objects.get(&k).is_some_and(|o| o.keep);
        self.objects.insert(
            k,
            Obj {
                owner,
                keep,
                helm_meta,
                uid,
                body,
            },
        );
    }
}

/// What a running istiod (Helm release or istioctl install) of `revision` renders.
pub fn istiod_objects(
    revision: Option<&str>,
    version: &IstioVersion,
    namespace: &str,
    tags: &[String],
) -> Vec<(Key, Body)> {
    let svc = names::istiod(revision);
    let label = revision.unwrap_or(DEFAULT_REVISION).to_string();
    let mut v = vec![
        (
            Key::new(Kind::Deployment, Some(namespace), &svc),
            Body::Istiod {
                version: version.clone(),
            },
        ),
        (
            Key::new(Kind::Service, Some(namespace), &svc),
            Body::Service {
                spec: None,
                selector: BTreeMap::from([("app".into(), "istiod".into())]),
            },
        ),
        (
            Key::new(
                Kind::MutatingWebhook,
                None,
                &names::injector_webhook(revision, namespace),
            ),
            Body::Injector(InjectorSpec {
                label: label.clone(),
                default_selectors: revision.is_none(),
                service: svc.clone(),
            }),
        ),
        (
            Key::new(
                Kind::ValidatingWebhook,
                None,
                &names::validator_webhook(revision, namespace),
            ),
            Body::Validator {
                service: Some(svc.clone()),
            },
        ),
    ];
    for t in tags {
        v.push(tag_object(t, &svc, namespace));
        if crate::chart_facts::istiod_tag_services(version) {
            v.push(tag_service(t, &label, namespace));
        }
    }
    v
}

/// A revision tag's Service (1.28+): `istiod-revision-tag-<tag>`, selecting the istiod pods of
/// the revision the tag points at.
pub fn tag_service(tag: &str, revision: &str, namespace: &str) -> (Key, Body) {
    (
        Key::new(
            Kind::Service,
            Some(namespace),
            &format!("istiod-revision-tag-{tag}"),
        ),
        Body::Service {
            spec: None,
            selector: BTreeMap::from([
                ("app".into(), "istiod".into()),
                (crate::plan::op::REV_LABEL.into(), revision.to_string()),
            ]),
        },
    )
}

/// A revision tag's webhook, pointing at the istiod Service `service`.
pub fn tag_object(tag: &str, service: &str, namespace: &str) -> (Key, Body) {
    (
        Key::new(
            Kind::MutatingWebhook,
            None,
            &names::tag_webhook(tag, namespace),
        ),
        Body::Injector(InjectorSpec {
            label: tag.to_string(),
            default_selectors: tag == DEFAULT_REVISION,
            service: service.to_string(),
        }),
    )
}

/// The base chart's objects: the default validator.
/// What the `cni` chart of `version` renders that the model follows: the node agent.
pub fn cni_object(namespace: &str, version: &IstioVersion) -> (Key, Body) {
    (
        Key::new(Kind::DaemonSet, Some(namespace), names::CNI_DAEMONSET),
        Body::CniAgent {
            version: version.clone(),
        },
    )
}

/// What the `ztunnel` chart of `version` renders that the model follows: the node proxy,
/// connected to the istiod of `revision`.
pub fn ztunnel_object(
    namespace: &str,
    daemonset: &str,
    version: &IstioVersion,
    revision: Option<&str>,
    istio_namespace: &str,
) -> (Key, Body) {
    (
        Key::new(Kind::DaemonSet, Some(namespace), daemonset),
        Body::Ztunnel {
            version: version.clone(),
            istiod: names::istiod(revision),
            istio_namespace: istio_namespace.to_string(),
        },
    )
}

pub fn base_objects(default_revision: &str, namespace: &str) -> Vec<(Key, Body)> {
    if default_revision.is_empty() {
        return Vec::new();
    }
    let service = if default_revision == DEFAULT_REVISION {
        names::istiod(None)
    } else {
        names::istiod(Some(default_revision))
    };
    let _ = namespace;
    vec![(
        Key::new(Kind::ValidatingWebhook, None, names::DEFAULT_VALIDATOR),
        Body::Validator {
            service: Some(service),
        },
    )]
}

/// What a gateway (chart release or istioctl component) renders. `istioctl` components also
/// render a ServiceAccount and secrets Role of their own name.
pub fn gateway_objects(
    d: &GatewayDeploy,
    istioctl: bool,
    version: &IstioVersion,
) -> Vec<(Key, Body, bool)> {
    let ns = Some(d.namespace.as_str());
    let mut v = vec![(
        Key::new(Kind::Deployment, ns, &d.name),
        Body::Gateway {
            pod_labels: pod_labels(d),
            service_account: d.service_account.clone(),
            version: version.clone(),
            proxy: None,
            reads_secrets: true,
        },
        false,
    )];
    if let Some(s) = &d.service {
        v.push((
            Key::new(Kind::Service, ns, &s.spec.name),
            Body::Service {
                spec: Some(s.spec.clone()),
                selector: selector_of(d),
            },
            s.keep,
        ));
    }
    if istioctl {
        let own = format!("{}-service-account", d.name);
        v.push((
            Key::new(Kind::ServiceAccount, ns, &own),
            Body::ServiceAccount,
            false,
        ));
        let role = format!("{}-sds", d.name);
        v.push((Key::new(Kind::Role, ns, &role), Body::Role, false));
        v.push((
            Key::new(Kind::RoleBinding, ns, &role),
            Body::RoleBinding {
                service_account: own,
            },
            false,
        ));
    } else {
        if d.creates_service_account {
            v.push((
                Key::new(Kind::ServiceAccount, ns, &d.service_account),
                Body::ServiceAccount,
                d.keep_service_account,
            ));
        }
        if d.rbac {
            v.push((
                Key::new(Kind::Role, ns, &d.service_account),
                Body::Role,
                false,
            ));
            v.push((
                Key::new(Kind::RoleBinding, ns, &d.service_account),
                Body::RoleBinding {
                    service_account: d.service_account.clone(),
                },
                false,
            ));
        }
    }
    v
}

/// The pods' labels, as the charts render them (with the injection label gateways carry).
pub fn pod_labels(d: &GatewayDeploy) -> BTreeMap<String, String> {
    let mut l = d.pod_labels();
    l.insert("sidecar.istio.io/inject".into(), "true".into());
    l
}

/// The selector a gateway chart gives its own Service: the pods' `app` and `istio` (istioctl's:
/// every label of the component).
pub fn selector_of(d: &GatewayDeploy) -> BTreeMap<String, String> {
    let mut s = d.extra_labels.clone();
    s.insert("app".into(), d.app.clone());
    s.insert("istio".into(), d.istio.clone());
    s
}

impl Cluster {
    /// The cluster as the inventory describes it, as the plan's [`Carried`] state starts.
    pub fn from_spec(c: &ClusterSpec, catalog: &crate::catalog::Catalog) -> Cluster {
        let now = Carried::from_spec(c);
        let ns = c.namespace.as_str();
        let mut small = Small {
            objects: BTreeMap::new(),
            releases: BTreeMap::new(),
            crds: None,
            operators: BTreeMap::new(),
            sail: c.sail.as_ref().map(|s| SailState {
                name: s.name.clone(),
                version: c.version.clone(),
                hold: false,
                revisions: BTreeMap::from([(c.revision_label().to_string(), c.version.clone())]),
                tags: now.tags.iter().map(|t| (t.name.clone(), None)).collect(),
            }),
            next_uid: 0,
        };
        let rev = c.revision.as_deref();
        let cp_owner = match c.install {
            InstallMethod::Sail => Owner::Sail,
            InstallMethod::Helm => Owner::Helm {
                release: c.release.clone(),
                namespace: ns.to_string(),
            },
            InstallMethod::Istioctl => Owner::Istioctl {
                revision: c.revision_label().to_string(),
            },
            InstallMethod::Operator => Owner::Operator {
                iop: match rev {
                    Some(r) => format!("istiod-{r}"),
                    None => "istiod".to_string(),
                },
            },
        };
        let owned_tags: Vec<String> = now
            .tags
            .iter()
            .filter(|t| matches!(t.owner, crate::plan::state::TagOwner::Release(_)))
            .map(|t| t.name.clone())
            .collect();
        let remote = c.remote_of().is_some();
        let mut cp_keys = BTreeSet::new();
        for (k, b) in istiod_objects(rev, &c.version, ns, &owned_tags) {
            if remote && matches!(k.kind, Kind::Deployment | Kind::ValidatingWebhook) {
                continue;
            }
            cp_keys.insert(k.clone());
            small.put(k, cp_owner.clone(), b);
        }
        let tag_owner = if c.install == InstallMethod::Sail {
            Owner::Sail
        } else {
            Owner::None
        };
        for t in &now.tags {
            if !owned_tags.contains(&t.name) {
                let (k, b) = tag_object(&t.name, &names::istiod(rev), ns);
                small.put(k, tag_owner.clone(), b);
                // `istioctl tag set` and Helm's tag templates make the tag's Service too.
                if tag_owner == Owner::None && crate::chart_facts::istiod_tag_services(&c.version) {
                    let (k, b) = tag_service(&t.name, rev.unwrap_or(DEFAULT_REVISION), ns);
                    small.put(k, Owner::None, b);
                }
            }
        }
        if !c.serves().is_empty() {
            // The route remotes reach this istiod by (expose-istiod).
            small.put(
                Key::new(Kind::VirtualService, Some(ns), &names::istiod_route(rev)),
                Owner::None,
                Body::IstiodRoute {
                    service: names::istiod(rev),
                },
            );
        }
        if c.install == InstallMethod::Operator {
            small
                .operators
                .insert(c.revision_label().to_string(), c.version.clone());
        }
        if c.install == InstallMethod::Helm {
            small.releases.insert(
                (ns.to_string(), c.release.clone()),
                Release {
                    chart: crate::plan::backend::istiod_chart(c, &c.version),
                    version: c.version.clone(),
                    content: ReleaseContent::Istiod(crate::plan::op::IstiodDeploy {
                        revision: c.revision.clone(),
                        tags: owned_tags.clone(),
                        keep_webhooks: false,
                        remote,
                    }),
                    objects: cp_keys,
                },
            );
            let base_owner = Owner::Helm {
                release: c.base_release.clone(),
                namespace: ns.to_string(),
            };
            let mut base_keys = BTreeSet::new();
            for (k, b) in base_objects(&now.default_revision, ns) {
                base_keys.insert(k.clone());
                small.put(k, base_owner.clone(), b);
            }
            small.releases.insert(
                (ns.to_string(), c.base_release.clone()),
                Release {
                    chart: Chart::Base,
                    version: c.version.clone(),
                    content: ReleaseContent::Base {
                        default_revision: now.default_revision.clone(),
                    },
                    objects: base_keys,
                },
            );
            if let Some(cni) = &c.cni {
                let owner = Owner::Helm {
                    release: cni.release.clone(),
                    namespace: cni.namespace.clone(),
                };
                let (k, b) = cni_object(&cni.namespace, &c.version);
                small.put(k.clone(), owner, b);
                small.releases.insert(
                    (cni.namespace.clone(), cni.release.clone()),
                    Release {
                        chart: Chart::Cni,
                        version: c.version.clone(),
                        content: ReleaseContent::Cni,
                        objects: BTreeSet::from([k]),
                    },
                );
            }
            if let Some(z) = &c.ztunnel {
                let owner = Owner::Helm {
                    release: z.release.clone(),
                    namespace: z.namespace.clone(),
                };
                let daemonset = crate::plan::backend::ztunnel_daemonset(c, &c.version);
                let (k, b) = ztunnel_object(
                    &z.namespace,
                    &daemonset,
                    &c.version,
                    c.revision.as_deref(),
                    ns,
                );
                small.put(k.clone(), owner, b);
                small.releases.insert(
                    (z.namespace.clone(), z.release.clone()),
                    Release {
                        chart: Chart::Ztunnel,
                        version: c.version.clone(),
                        content: ReleaseContent::Ztunnel {
                            revision: c.revision.clone(),
                            daemonset,
                        },
                        objects: BTreeSet::from([k]),
                    },
                );
            }
            let templated = catalog
                .get(c.version.minor())
                .is_some_and(|r| r.crd_templates);
            small.crds = Some(Crds {
                version: c.version.clone(),
                templated,
                helm_owned: templated,
            });
        }
        let mut traffic = Vec::new();
        for (gi, g) in c.gateways.iter().enumerate() {
            let d = running_gateway(c, g);
            let gw_owner = match c.install {
                InstallMethod::Helm | InstallMethod::Sail => Owner::Helm {
                    release: g.release.clone(),
                    namespace: g.gateway.namespace.clone(),
                },
                InstallMethod::Istioctl => Owner::Istioctl {
                    revision: d
                        .pod_revision
                        .clone()
                        .unwrap_or_else(|| DEFAULT_REVISION.to_string()),
                },
                InstallMethod::Operator => Owner::Operator {
                    iop: g.release.clone(),
                },
            };
            let mut keys = BTreeSet::new();
            for (k, b, keep) in gateway_objects(&d, !c.install.helm_gateways(), &c.version) {
                keys.insert(k.clone());
                small.put(k.clone(), gw_owner.clone(), b);
                if let Some(o) = small.objects.get_mut(&k) {
                    o.keep = keep;
                }
            }
            let gns = Some(g.gateway.namespace.as_str());
            if g.service_account_owner == ServiceOwner::Standalone {
                // A ServiceAccount a previous plan handed over, with the Role that lets it read
                // secrets.
                let sa = &g.service_account;
                small.put(
                    Key::new(Kind::ServiceAccount, gns, sa),
                    Owner::None,
                    Body::ServiceAccount,
                );
                let rbac = names::secrets_rbac(sa);
                small.put(Key::new(Kind::Role, gns, &rbac), Owner::None, Body::Role);
                small.put(
                    Key::new(Kind::RoleBinding, gns, &rbac),
                    Owner::None,
                    Body::RoleBinding {
                        service_account: sa.clone(),
                    },
                );
            }
            if let Some(spec) = crate::plan::state::service_spec(g) {
                let key = Key::new(Kind::Service, gns, &spec.name);
                let selector = now.gateways[gi].selector.clone();
                if small.objects.contains_key(&key) {
                    if let Some(Obj {
                        body: Body::Service { selector: s, .. },
                        ..
                    }) = small.objects.get_mut(&key)
                    {
                        *s = selector;
                    }
                } else {
                    small.put(
                        key.clone(),
                        Owner::None,
                        Body::Service {
                            spec: Some(spec.clone()),
                            selector,
                        },
                    );
                }
                traffic.push(TrafficService {
                    gateway: g.gateway.name.clone(),
                    uid: small.objects[&key].uid,
                    key,
                    spec,
                    service_account: g.service_account.clone(),
                    app: Some(g.app_label.clone()),
                });
            }
            if c.install.helm_gateways() {
                small.releases.insert(
                    (g.gateway.namespace.clone(), g.release.clone()),
                    Release {
                        chart: Chart::Gateway,
                        version: c.version.clone(),
                        content: ReleaseContent::Gateway(Box::new(d.clone())),
                        objects: keys,
                    },
                );
            }
            if c.install == InstallMethod::Operator {
                small.put(
                    Key::new(Kind::IstioOperator, Some(ns), &g.release),
                    Owner::None,
                    Body::IstioOperator,
                );
            }
        }
        if c.install == InstallMethod::Operator {
            let iop = match rev {
                Some(r) => format!("istiod-{r}"),
                None => "istiod".to_string(),
            };
            small.put(
                Key::new(Kind::IstioOperator, Some(ns), &iop),
                Owner::None,
                Body::IstioOperator,
            );
        }
        let namespaces: Vec<Namespace> = c
            .namespaces
            .iter()
            .map(|n| Namespace {
                name: n.namespace.name.clone(),
                rev: n.namespace.revision.clone(),
                injection: n.namespace.istio_injection.clone(),
            })
            .collect();
        let mut workloads = Vec::new();
        for (ni, n) in c.namespaces.iter().enumerate() {
            for w in n.workloads() {
                workloads.push(Workload {
                    namespace: ni,
                    kind: w.kind,
                    name: w.name.clone(),
                    restarts_on_template_change: w.restarts_on_template_change(),
                    on_delete: w.update_strategy
                        == Some(crate::inventory::UpdateStrategy::OnDelete),
                    proxy: None,
                });
            }
        }
        let mut cluster = Cluster {
            name: c.name.clone(),
            install: c.install,
            control_namespace: ns.to_string(),
            small,
            namespaces: Large::new(namespaces),
            workloads: Large::new(Vec::new()),
            traffic,
            ns_counts: BTreeMap::new(),
            proxy_counts: BTreeMap::new(),
            ns_index: Default::default(),
            workload_index: Default::default(),
            external: if remote {
                BTreeMap::from([(names::istiod(rev), c.version.clone())])
            } else {
                BTreeMap::new()
            },
        };
        for (i, n) in cluster.namespaces.items.iter().enumerate() {
            cluster.ns_index.insert(n.name.clone(), i);
        }
        for n in &cluster.namespaces.items {
            *cluster
                .ns_counts
                .entry((n.rev.clone(), n.injection.clone()))
                .or_default() += 1;
        }
        // Every proxy runs what its namespace (or, for gateways, its labels) gets injected today.
        for mut w in workloads {
            w.proxy = cluster
                .inject(&cluster.namespaces.items[w.namespace], &BTreeMap::new())
                .ok()
                .flatten();
            if let Some(p) = &w.proxy {
                *cluster.proxy_counts.entry(p.clone()).or_default() += 1;
            }
            cluster.workload_index.insert(
                (w.namespace, w.kind, w.name.clone()),
                cluster.workloads.items.len(),
            );
            cluster.workloads.items.push(w);
        }
        let gateways: Vec<Key> = cluster
            .small
            .objects
            .iter()
            .filter(|(_, o)| matches!(o.body, Body::Gateway { .. }))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gateways {
            cluster.reinject_gateway(&k).ok();
        }
        // Gateway API gateways: the Gateway, and what istiod renders for it (Deployment,
        // Service, ServiceAccount), with the proxy of the istiod that owns it today.
        for n in &c.namespaces {
            let ns = n.namespace.name.as_str();
            for g in &n.namespace.gateway_api {
                let dep = g.deployment();
                cluster.small.put(
                    Key::new(Kind::Gateway, Some(ns), &g.name),
                    Owner::None,
                    Body::GatewayApi {
                        rev: g.revision.clone(),
                        deployment: dep.clone(),
                    },
                );
                let labels = BTreeMap::from([(GATEWAY_NAME_LABEL.to_string(), g.name.clone())]);
                cluster.small.put(
                    Key::new(Kind::Deployment, Some(ns), &dep),
                    Owner::None,
                    Body::Gateway {
                        pod_labels: labels.clone(),
                        service_account: dep.clone(),
                        version: c.version.clone(),
                        proxy: None,
                        reads_secrets: false,
                    },
                );
                cluster.small.put(
                    Key::new(Kind::ServiceAccount, Some(ns), &dep),
                    Owner::None,
                    Body::ServiceAccount,
                );
                let key = Key::new(Kind::Service, Some(ns), &dep);
                cluster.small.put(
                    key.clone(),
                    Owner::None,
                    Body::Service {
                        spec: None,
                        selector: labels,
                    },
                );
                cluster.traffic.push(TrafficService {
                    gateway: format!(
                        "{ns}/{} ({})",
                        g.name,
                        if g.is_waypoint() {
                            "waypoint"
                        } else {
                            "Gateway API"
                        }
                    ),
                    uid: cluster.small.objects[&key].uid,
                    key,
                    spec: ServiceSpec {
                        name: dep.clone(),
                        namespace: ns.to_string(),
                        kind: if g.is_waypoint() {
                            crate::inventory::ServiceType::ClusterIP
                        } else {
                            crate::inventory::ServiceType::LoadBalancer
                        },
                        ports: Vec::new(),
                        annotations: BTreeMap::new(),
                        extra: BTreeMap::new(),
                    },
                    service_account: dep,
                    app: None,
                });
            }
        }
        cluster.reconcile_gateway_api();
        cluster
    }

    /// The index of a namespace of the inventory.
    pub fn namespace_index(&self, name: &str) -> Option<usize> {
        self.ns_index.get(name).copied()
    }

    /// The index of a workload of the inventory.
    pub fn workload_at(&self, kind: WorkloadKind, name: &str, namespace: &str) -> Option<usize> {
        let ni = self.namespace_index(namespace)?;
        self.workload_index
            .get(&(ni, kind, name.to_string()))
            .copied()
    }

    /// The content an istioctl component renders, for `IstioctlInstall`.
    pub fn iop_objects(
        &self,
        content: &IopContent,
        version: &IstioVersion,
    ) -> Vec<(Key, Body, bool)> {
        match content {
            IopContent::Istiod { revision } => {
                istiod_objects(revision.as_deref(), version, &self.control_namespace, &[])
                    .into_iter()
                    .map(|(k, b)| (k, b, false))
                    .collect()
            }
            IopContent::Gateway(d) => gateway_objects(d, true, version),
        }
    }
}
