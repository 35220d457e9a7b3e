//! What must hold after every operation, forward and in every rollback. Each violation has a
//! stable key, so that what was already wrong before the plan (a webhook left behind by an
//! earlier upgrade) is reported once and not blamed on the plan.

use std::collections::BTreeMap;

use super::state::{Body, Cluster, Key, Kind, Namespace, Obj, Proxy};
use crate::plan::state::selects;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// Identifies the invariant and what it is about.
    pub key: String,
    pub text: String,
}

/// Options of a check.
#[derive(Clone, Copy, Debug, Default)]
pub struct Checking {
    /// During the rollback of an in-place hop the control plane goes back before the proxies
    /// restarted onto the new version do: Istio's own in-place downgrade has this window.
    pub allow_proxy_ahead: bool,
}

impl Cluster {
    fn istiod_version(&self, service: &str) -> Option<&crate::version::IstioVersion> {
        self.istiod_behind(service)
    }

    fn check_proxy(&self, who: &str, p: &Proxy, opts: Checking, out: &mut Vec<Violation>) {
        match self.istiod_version(&p.service) {
            None => out.push(Violation {
                key: format!("proxy-orphaned/{}", p.service),
                text: format!(
                    "{who} run proxies configured by istiod `{}`, which is gone: they lose their control plane",
                    p.service
                ),
            }),
            Some(v) => {
                let d = v.minor().distance_from(p.version.minor());
                if d < 0 && !opts.allow_proxy_ahead {
                    out.push(Violation {
                        key: format!("proxy-ahead/{}/{}", p.service, p.version),
                        text: format!(
                            "{who} run {} proxies against istiod `{}` at {v}: the data plane may not be ahead of the control plane",
                            p.version, p.service
                        ),
                    });
                }
                if d > 1 {
                    out.push(Violation {
                        key: format!("proxy-behind/{}/{}", p.service, p.version),
                        text: format!(
                            "{who} run {} proxies against istiod `{}` at {v}: more than one minor behind",
                            p.version, p.service
                        ),
                    });
                }
            }
        }
    }

    /// Every invariant that does not hold now.
    pub fn violations(&self, opts: Checking) -> Vec<Violation> {
        let mut out = Vec::new();
        let ns = self.control_namespace.as_str();

        // Traffic Services: same object, same spec, serving pods that keep the identity.
        for t in &self.traffic {
            let Some(obj) = self.small.get(&t.key) else {
                out.push(Violation {
                    key: format!("service-deleted/{}", t.key),
                    text: format!(
                        "the traffic Service {} of gateway `{}` is deleted: its external address is lost",
                        t.key, t.gateway
                    ),
                });
                continue;
            };
            if obj.uid != t.uid {
                out.push(Violation {
                    key: format!("service-recreated/{}", t.key),
                    text: format!(
                        "the traffic Service {} was deleted and created again: a new address",
                        t.key
                    ),
                });
            }
            let Body::Service { spec, selector } = &obj.body else {
                continue;
            };
            if let Some(spec) = spec
                && *spec != t.spec
            {
                out.push(Violation {
                    key: format!("service-changed/{}", t.key),
                    text: format!(
                        "the traffic Service {} changed its type, ports or annotations",
                        t.key
                    ),
                });
            }
            let serving: Vec<(&Key, &Obj)> = self
                .small
                .objects
                .iter()
                .filter(|(k, o)| {
                    k.kind == Kind::Deployment
                        && k.namespace == t.key.namespace
                        && matches!(&o.body, Body::Gateway { pod_labels, .. } if selects(selector, pod_labels))
                })
                .collect();
            if serving.is_empty() {
                out.push(Violation {
                    key: format!("service-empty/{}", t.key),
                    text: format!(
                        "the traffic Service {} selects no gateway pods (selector {selector:?}): traffic is lost",
                        t.key
                    ),
                });
            }
            for (k, o) in serving {
                if let Body::Gateway {
                    pod_labels,
                    service_account,
                    proxy,
                    ..
                } = &o.body
                {
                    if *service_account != t.service_account
                        || (t.app.is_some() && pod_labels.get("app") != t.app.as_ref())
                    {
                        out.push(Violation {
                            key: format!("identity/{}/{k}", t.key),
                            text: format!(
                                "the traffic Service {} sends traffic to {k}, whose pods run as ServiceAccount `{service_account}` with app={}, not the gateway's `{}` and app={}: policies that allow the gateway's identity stop matching",
                                t.key,
                                pod_labels.get("app").map_or("", String::as_str),
                                t.service_account,
                                t.app.as_deref().unwrap_or("")
                            ),
                        });
                    }
                    if proxy.is_none() {
                        out.push(Violation {
                            key: format!("gateway-no-proxy/{k}"),
                            text: format!("{k} serves traffic without a proxy"),
                        });
                    }
                }
            }
        }

        // Gateway pods: a proxy with a control plane, and a ServiceAccount that exists and may
        // read its secrets.
        for (k, o) in &self.small.objects {
            if let Body::Gateway {
                service_account,
                proxy,
                reads_secrets,
                ..
            } = &o.body
            {
                if let Some(p) = proxy {
                    self.check_proxy(&format!("the pods of {k}"), p, opts, &mut out);
                }
                let sa = Key::new(
                    Kind::ServiceAccount,
                    k.namespace.as_deref(),
                    service_account,
                );
                if self.small.get(&sa).is_none() {
                    out.push(Violation {
                        key: format!("gateway-sa/{k}"),
                        text: format!(
                            "the pods of {k} run as ServiceAccount `{service_account}`, which does not exist"
                        ),
                    });
                } else if *reads_secrets && !self.small.objects.iter().any(|(rk, ro)| {
                    rk.kind == Kind::RoleBinding
                        && rk.namespace == k.namespace
                        && matches!(&ro.body, Body::RoleBinding { service_account: s } if s == service_account)
                }) {
                    out.push(Violation {
                        key: format!("gateway-rbac/{k}"),
                        text: format!(
                            "no RoleBinding lets ServiceAccount `{service_account}` of {k} read its TLS secrets"
                        ),
                    });
                }
            }
        }

        // Workload proxies.
        for (p, n) in &self.proxy_counts {
            self.check_proxy(&format!("{n} workload(s)"), p, opts, &mut out);
        }

        // Namespace labels and tags resolve to a running istiod, through one webhook.
        for ((rev, inj), n) in &self.ns_counts {
            let probe = Namespace {
                name: String::new(),
                rev: rev.clone(),
                injection: inj.clone(),
            };
            let what = match (rev, inj) {
                (_, Some(i)) => format!("istio-injection={i}"),
                (Some(r), None) => format!("istio.io/rev={r}"),
                (None, None) => "no injection label".to_string(),
            };
            match self.inject(&probe, &BTreeMap::new()) {
                Err(e) => out.push(Violation {
                    key: format!("namespace/{what}"),
                    text: format!("{n} namespace(s) labelled {what}: {e}"),
                }),
                Ok(None) => out.push(Violation {
                    key: format!("namespace/{what}"),
                    text: format!(
                        "{n} namespace(s) labelled {what}: no webhook injects their new pods, which would start without sidecars"
                    ),
                }),
                Ok(Some(_)) => {}
            }
        }

        // Webhooks point at Services that exist.
        for (k, o) in &self.small.objects {
            let target = match &o.body {
                Body::Injector(s) => Some(&s.service),
                Body::Validator { service } => service.as_ref(),
                _ => None,
            };
            if let Some(svc) = target
                && self
                    .small
                    .get(&Key::new(Kind::Service, Some(ns), svc))
                    .is_none()
            {
                out.push(Violation {
                    key: format!("webhook/{k}"),
                    text: format!(
                        "{k} points at Service {ns}/{svc}, which does not exist: {}",
                        if k.kind == Kind::MutatingWebhook {
                            "pods it matches cannot be created"
                        } else {
                            "Istio configuration cannot be validated (writes fail once its failurePolicy is Fail)"
                        }
                    ),
                });
            }
        }
        // istio-cni runs the version of every running istiod or one minor behind it ("The CNI
        // at version 1.x is compatible with the control plane at version 1.x+1 and 1.x").
        let istiods: Vec<(&Key, &crate::version::IstioVersion)> = self
            .small
            .objects
            .iter()
            .filter_map(|(k, o)| match &o.body {
                Body::Istiod { version } => Some((k, version)),
                _ => None,
            })
            .collect();
        // Ambient mode moves both node agents right after the new istiod, while the old one
        // still runs (istio.io docs/ambient/upgrade/helm): there the window is the newest
        // istiod's.
        let ambient = self
            .small
            .objects
            .values()
            .any(|o| matches!(o.body, Body::Ztunnel { .. }));
        let newest: Vec<(&Key, &crate::version::IstioVersion)> = istiods
            .iter()
            .max_by_key(|(_, v)| v.minor())
            .into_iter()
            .copied()
            .collect();
        let against = if ambient { &newest } else { &istiods };
        for (k, o) in &self.small.objects {
            let Body::CniAgent { version: cni } = &o.body else {
                continue;
            };
            for (ik, v) in against {
                let d = v.minor().distance_from(cni.minor());
                if !(0..=1).contains(&d) {
                    out.push(Violation {
                        key: format!("cni-skew/{k}/{}", ik.name),
                        text: format!(
                            "{k} runs istio-cni {cni} beside istiod `{}` at {v}: istio-cni may run only the version of a running istiod or one minor behind it",
                            ik.name
                        ),
                    });
                }
            }
        }
        // ztunnel connects to one istiod, which must run, and "the ztunnel at version 1.x is
        // compatible with the control plane at version 1.x+1 and 1.x".
        for (k, o) in &self.small.objects {
            let Body::Ztunnel {
                version: z,
                istiod,
                istio_namespace,
            } = &o.body
            else {
                continue;
            };
            let ik = Key::new(Kind::Deployment, Some(istio_namespace), istiod);
            match self.small.objects.get(&ik).map(|o| &o.body) {
                Some(Body::Istiod { version: v }) => {
                    let d = v.minor().distance_from(z.minor());
                    if !(0..=1).contains(&d) {
                        out.push(Violation {
                            key: format!("ztunnel-skew/{k}"),
                            text: format!(
                                "{k} runs ztunnel {z} connected to istiod `{istiod}` at {v}: ztunnel may run only the version of its istiod or one minor behind it"
                            ),
                        });
                    }
                }
                _ => out.push(Violation {
                    key: format!("ztunnel-istiod/{k}"),
                    text: format!(
                        "{k} (ztunnel {z}) connects to `{istiod}.{istio_namespace}.svc`, which no istiod serves: every ambient pod on every node loses its control plane"
                    ),
                }),
            }
            if let Some((nk, v)) = newest.first()
                && !(0..=1).contains(&v.minor().distance_from(z.minor()))
            {
                out.push(Violation {
                    key: format!("ztunnel-newest/{k}"),
                    text: format!(
                        "{k} runs ztunnel {z} beside istiod `{}` at {v}: ztunnel may run only the version of the newest istiod or one minor behind it",
                        nk.name
                    ),
                });
            }
        }
        out.sort();
        out
    }

    /// Which gateway Deployments each traffic Service selects.
    pub fn traffic_selection(&self) -> BTreeMap<String, Vec<String>> {
        self.traffic
            .iter()
            .map(|t| {
                let selected = match self.small.get(&t.key) {
                    Some(Obj {
                        body: Body::Service { selector, .. },
                        ..
                    }) => self
                        .small
                        .objects
                        .iter()
                        .filter(|(k, o)| {
                            k.kind == Kind::Deployment
                                && k.namespace == t.key.namespace
                                && matches!(&o.body, Body::Gateway { pod_labels, .. } if selects(selector, pod_labels))
                        })
                        .map(|(k, _)| k.name.clone())
                        .collect(),
                    _ => Vec::new(),
                };
                (t.key.to_string(), selected)
            })
            .collect()
    }
}
