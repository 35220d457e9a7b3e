//! Which istiod injects a new pod, decided as Istio's webhooks decide it. The selectors are
//! those of the istiod chart's `mutatingwebhook.yaml` and `revision-tags.yaml` (identical in
//! structure since 1.10): for a revision or tag `R`,
//!
//! - `rev.namespace`: the namespace has `istio.io/rev=R` and no `istio-injection`;
//! - `rev.object`: the namespace has neither label, the pod has `istio.io/rev=R`;
//!
//! and, for an unrevisioned control plane or the `default` tag only,
//!
//! - `namespace`: the namespace has `istio-injection=enabled`;
//! - `object`: the namespace has neither label, the pod has `sidecar.istio.io/inject=true` and
//!   no `istio.io/rev`.
//!
//! Every webhook also skips pods labelled `sidecar.istio.io/inject=false`.

use std::collections::BTreeMap;

use super::state::{Body, Cluster, InjectorSpec, Key, Namespace, Proxy};

const REV: &str = "istio.io/rev";
const INJECT: &str = "sidecar.istio.io/inject";

fn matches(spec: &InjectorSpec, ns: &Namespace, pod: &BTreeMap<String, String>) -> bool {
    if pod.get(INJECT).map(String::as_str) == Some("false") {
        return false;
    }
    let ns_rev = ns.rev.as_deref();
    let ns_inj = ns.injection.as_deref();
    // rev.namespace
    if ns_rev == Some(spec.label.as_str()) && ns_inj.is_none() {
        return true;
    }
    // rev.object
    if ns_rev.is_none() && ns_inj.is_none() && pod.get(REV) == Some(&spec.label) {
        return true;
    }
    if spec.default_selectors {
        if ns_inj == Some("enabled") {
            return true;
        }
        if ns_rev.is_none()
            && ns_inj.is_none()
            && pod.get(INJECT).map(String::as_str) == Some("true")
            && !pod.contains_key(REV)
        {
            return true;
        }
    }
    false
}

impl Cluster {
    /// The proxy a new pod with labels `pod` in namespace `ns` gets: `Ok(None)` when no webhook
    /// injects it, `Err` when injection fails (two injectors, or one whose istiod is gone:
    /// Istio's injector webhooks fail closed, so the pod is not created).
    pub fn inject(
        &self,
        ns: &Namespace,
        pod: &BTreeMap<String, String>,
    ) -> Result<Option<Proxy>, String> {
        let mut hits: Vec<(&Key, &InjectorSpec)> = Vec::new();
        for (k, o) in &self.small.objects {
            if let Body::Injector(spec) = &o.body
                && matches(spec, ns, pod)
            {
                hits.push((k, spec));
            }
        }
        match hits.as_slice() {
            [] => Ok(None),
            [(k, spec)] => match self.istiod_behind(&spec.service) {
                Some(version) => Ok(Some(Proxy {
                    service: spec.service.clone(),
                    version: version.clone(),
                })),
                None => Err(format!(
                    "webhook `{}` sends pods to istiod `{}`, which is not running, so the pod cannot be created",
                    k.name, spec.service
                )),
            },
            many => Err(format!(
                "{} webhooks would inject the pod ({}): double injection",
                many.len(),
                many.iter()
                    .map(|(k, _)| k.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// Restarts the pods of a gateway Deployment: they get whatever is injected now.
    pub fn reinject_gateway(&mut self, key: &Key) -> Result<(), String> {
        let Some(obj) = self.small.objects.get(key) else {
            return Err(format!("{key} does not exist"));
        };
        let Body::Gateway { pod_labels, .. } = &obj.body else {
            return Err(format!("{key} is not a gateway"));
        };
        // Gateway namespaces carry no injection label (preflight checks it).
        let ns = Namespace {
            name: key.namespace.clone().unwrap_or_default(),
            rev: None,
            injection: None,
        };
        let proxy = self.inject(&ns, pod_labels)?;
        if proxy.is_none() {
            return Err(format!(
                "no webhook injects the pods of {key} (labels {pod_labels:?}): a gateway without a proxy serves nothing"
            ));
        }
        if let Some(super::state::Obj {
            body: Body::Gateway { proxy: p, .. },
            ..
        }) = self.small.objects.get_mut(key)
        {
            *p = proxy;
        }
        Ok(())
    }
}
