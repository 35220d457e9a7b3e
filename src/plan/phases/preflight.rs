//! 00-preflight: read-only checks that the cluster is what the inventory says, the tools are
//! the right versions, and a load test runs against the ingress.

use serde_json::json;

use crate::inventory::{GatewayKind, InstallMethod, ServiceType};
use crate::plan::op::{Op, Tool};
use crate::plan::{Builder, HopCtx, Phase, names};
use crate::render::shell::join;
use crate::version::Minor;

fn probe(tool: Tool, args: &[&str], expect: String) -> Op {
    Op::Probe {
        tool,
        args: args.iter().map(|a| (*a).to_string()).collect(),
        expect,
    }
}

impl Builder<'_> {
    pub(crate) fn preflight(&mut self, h: &HopCtx) {
        let hop = h.hop;
        let ns = self.c.namespace.clone();
        let from_label = hop.from_label().to_string();
        let mut checks = vec![probe(
            Tool::Kubectl,
            &[
                "get",
                "namespaces",
                "-L",
                "istio.io/rev",
                "-L",
                "istio-injection",
            ],
            format!(
                "the application namespaces carry the labels the inventory lists (revision `{from_label}`)"
            ),
        )];
        if let Some(sail) = &self.c.sail {
            checks.push(probe(
                Tool::Kubectl,
                &["get", "istio", &sail.name, "-o", "jsonpath={.spec.version} {.spec.updateStrategy.type} {.status.activeRevisionName}"],
                format!("v{} RevisionBased {from_label}", hop.from),
            ));
            checks.push(probe(
                Tool::Kubectl,
                &["get", "istiorevisions,istiorevisiontags"],
                format!("only the revision `{from_label}`, and the tags the inventory lists ({}), following Istio `{}`", if self.c.tags.is_empty() { "none".to_string() } else { self.c.tags.join(", ") }, sail.name),
            ));
            checks.push(probe(
                Tool::Kubectl,
                &["get", "deployments", "-A", "-l", "app.kubernetes.io/name=sail-operator", "-o", "jsonpath={..image}"],
                format!("the Sail Operator release {} (its image tag), which installs {} and still accepts {}", sail.operator, hop.to, hop.from),
            ));
        }
        if self.c.install.helm_gateways()
            && !self.c.gateways.is_empty()
            && self.c.install != InstallMethod::Helm
        {
            checks.push(probe(
                Tool::Helm,
                &["list", "-A"],
                format!(
                    "the gateway releases {} are deployed at {}",
                    self.c
                        .gateways
                        .iter()
                        .map(|g| format!("`{}`", g.release))
                        .collect::<Vec<_>>()
                        .join(", "),
                    hop.from
                ),
            ));
        }
        if self.c.install == InstallMethod::Helm {
            checks.push(probe(
                Tool::Helm,
                &["list", "-n", &ns],
                format!(
                    "the releases `{}` and `{}` are deployed at {}",
                    self.c.base_release, self.now.istiod_release, hop.from
                ),
            ));
        } else if self.c.install != InstallMethod::Sail {
            checks.push(probe(
                Tool::Istioctl,
                &["version"],
                format!("the control plane reports {}", hop.from),
            ));
        }
        if let Some(crate::validate::MeshRole::Remote {
            primary,
            pilot_address,
        }) = self.c.multicluster.as_ref().map(|m| &m.role)
        {
            let svc = crate::plan::names::istiod(hop.from_revision.as_deref());
            checks.push(probe(
                Tool::Kubectl,
                &["get", "service,endpoints", &svc, "-n", &ns, "-o", "wide"],
                format!(
                    "the remote's Service `{svc}` reaches `{primary}`'s east-west gateway at {pilot_address} (no istiod runs in a remote cluster)"
                ),
            ));
        } else {
            checks.push(probe(
                Tool::Kubectl,
                &[
                    "get",
                    "pods",
                    "-n",
                    &ns,
                    "-l",
                    "app=istiod",
                    "-L",
                    "istio.io/rev",
                ],
                format!("istiod of revision `{from_label}` is running and ready"),
            ));
        }
        checks.push(probe(
            Tool::Kubectl,
            &[
                "get",
                "mutatingwebhookconfigurations,validatingwebhookconfigurations",
            ],
            "note every webhook present now: cleanup must leave only the new revision's".into(),
        ));
        let from_version = hop.from.minor().to_string();
        let precheck: Vec<&str> = if hop.to.minor()
            >= (Minor {
                major: 1,
                minor: 21,
            }) {
            vec!["x", "precheck", "--from-version", &from_version]
        } else {
            vec!["x", "precheck"]
        };
        checks.push(probe(
            Tool::Istioctl,
            &precheck,
            format!("run with istioctl {}: no issues found", hop.to),
        ));
        let gateway_api = crate::chart_facts::gateway_api(&hop.to);
        if !gateway_api.is_empty()
            && hop.to.minor()
                >= (Minor {
                    major: 1,
                    minor: 16,
                })
        {
            checks.push(probe(
                Tool::Kubectl,
                &[
                    "get",
                    "crd",
                    "gateways.gateway.networking.k8s.io",
                    "-o",
                    "jsonpath={.metadata.annotations.gateway\\.networking\\.k8s\\.io/bundle-version}",
                ],
                format!(
                    "either no Gateway API CRDs (NotFound: the mesh uses no Gateway API), or v{gateway_api} or later, the Gateway API Istio {} is built against; upgrade the CRDs first if older",
                    hop.to.minor()
                ),
            ));
        }
        // Tools: every later step names the istioctl it needs.
        let mut helm_min = "3.8";
        let mut helm_why = String::new();
        if self.uses_skip_schema(h) {
            helm_min = "3.16";
            helm_why.push_str("; `--skip-schema-validation` for this hop's gateway chart");
        }
        if self.tags_in_values(h) && !self.now.tags.is_empty() {
            helm_min = "3.17";
            helm_why.push_str(
                "; `--take-ownership` for the revision tags the istiod releases hand over",
            );
        }
        if self.c.install.helm_gateways() {
            checks.push(probe(
                Tool::Helm,
                &["version", "--short"],
                format!("Helm {helm_min} or later (`--patch-file`-style flags and `upgrade --install --wait` as the plan uses them{helm_why})"),
            ));
        }
        checks.push(probe(
            Tool::Kubectl,
            &["version", "--client"],
            "kubectl 1.23 or later (`kubectl wait --for=jsonpath`)".into(),
        ));
        checks.push(probe(
            Tool::Istioctl,
            &["version", "--remote=false"],
            format!(
                "istioctl {} (each step names the istioctl it needs)",
                hop.to
            ),
        ));
        let mut gateway_namespaces: Vec<&str> = self
            .c
            .gateways
            .iter()
            .map(|g| g.gateway.namespace.as_str())
            .collect();
        gateway_namespaces.sort_unstable();
        gateway_namespaces.dedup();
        for gns in gateway_namespaces {
            checks.push(probe(
                Tool::Kubectl,
                &["get", "namespace", gns, "-L", "istio.io/rev", "-L", "istio-injection"],
                format!(
                    "`{gns}` carries neither label: a namespace label, not the gateway's revision, decides which istiod injects gateway pods, so a labelled namespace would give the new gateway the old proxy"
                ),
            ));
        }
        for g in &self.c.gateways {
            let gns = g.gateway.namespace.as_str();
            if let Some(s) = g.service() {
                checks.push(probe(
                    Tool::Kubectl,
                    &["get", "service", &s.name, "-n", gns, "-o", "wide"],
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
            // What a change of the gateway's identity would break: policies that name it.
            checks.push(probe(
                Tool::Kubectl,
                &["get", "authorizationpolicies.security.istio.io", "-A", "-o", "wide"],
                format!(
                    "note the policies whose principals name `cluster.local/ns/{gns}/sa/{}`: the new gateway keeps this identity, so they keep matching",
                    g.service_account
                ),
            ));
            checks.push(probe(
                Tool::Kubectl,
                &["get", "networkpolicies", "-A", "-o", "wide"],
                format!(
                    "note the NetworkPolicies that select `app={}` in `{gns}`: the new gateway's pods keep that label",
                    g.app_label
                ),
            ));
        }
        if !self.now.gateway_api.is_empty() {
            checks.push(probe(
                Tool::Kubectl,
                &[
                    "get",
                    "gateways.gateway.networking.k8s.io",
                    "-A",
                    "-L",
                    "istio.io/rev",
                ],
                "every Gateway of class istio the inventory lists is there, with the istio.io/rev label it gives (none: its namespace's decides)".to_string(),
            ));
            for g in &self.now.gateway_api {
                let gns = self.c.namespaces[g.namespace].namespace.name.as_str();
                checks.push(probe(
                    Tool::Kubectl,
                    &["get", "deployment,service", &g.deployment, "-n", gns, "-o", "wide"],
                    format!(
                        "write down the address of Service `{}`: it must be the same after every step; its Deployment should run at least two replicas, so that istiod's rolling update of it keeps ready pods",
                        g.deployment
                    ),
                ));
            }
        }
        if let Some(z) = &self.c.ztunnel {
            let ztunnel = crate::plan::backend::ztunnel_daemonset(self.c, &hop.from);
            let mut daemonsets = vec![ztunnel.as_str()];
            if self
                .c
                .cni
                .as_ref()
                .is_some_and(|c| c.namespace == z.namespace)
            {
                daemonsets.push(names::CNI_DAEMONSET);
            }
            let mut args = vec!["get", "daemonset"];
            args.extend(daemonsets.iter().copied());
            args.extend(["-n", z.namespace.as_str(), "-o", "wide"]);
            checks.push(probe(
                Tool::Kubectl,
                &args,
                format!(
                    "{} run a ready pod on every node, at {}",
                    daemonsets.join(" and "),
                    hop.from
                ),
            ));
            checks.push(probe(
                Tool::Kubectl,
                &[
                    "get",
                    "namespaces",
                    "-l",
                    "istio.io/dataplane-mode=ambient",
                    "-L",
                    "istio.io/rev,istio-injection",
                ],
                "exactly the namespaces the inventory marks `dataplaneMode: ambient`, none with an istio.io/rev or istio-injection label (their pods would get sidecars instead of ztunnel)".to_string(),
            ));
        }
        let ingress: Vec<serde_json::Value> = self
            .c
            .gateways
            .iter()
            .filter(|g| g.gateway.kind == GatewayKind::Ingress)
            .filter_map(|g| g.service().map(|s| self.load_test(g, s)))
            .collect();
        let notes: Vec<serde_json::Value> = hop
            .minors_crossed
            .iter()
            .filter_map(|m| m.parse::<Minor>().ok())
            .filter_map(|m| self.catalog.get(m))
            .map(|r| json!({"minor": r.minor.to_string(), "notes": r.notes}))
            .collect();
        let path = format!("{}/README.md", h.phase_dir(Phase::Preflight));
        let rendered: Vec<serde_json::Value> = checks
            .iter()
            .map(|op| {
                let Op::Probe { expect, .. } = op else {
                    unreachable!("preflight checks are probes")
                };
                let cmd = self
                    .sh
                    .op(op)
                    .iter()
                    .map(|c| c.text())
                    .collect::<Vec<_>>()
                    .join(" && ");
                json!({"command": cmd, "expect": expect})
            })
            .collect();
        self.artifacts.push(crate::plan::Artifact {
            path: path.clone(),
            template: "preflight.md.j2",
            targets: format!(
                "cluster {}, hop {} ({} -> {})",
                self.c.name, h.number, hop.from, hop.to
            ),
            apply: "read-only checks; run each command and compare with the expected result"
                .to_string(),
            hints: Vec::new(),
            data: json!({
                "cluster": self.c.name,
                "context": self.c.context,
                "hop": {
                    "number": h.number,
                    "from": hop.from.to_string(),
                    "to": hop.to.to_string(),
                    "strategy": hop.strategy.name(),
                    "fromRevision": hop.from_label(),
                    "toRevision": hop.to_label(),
                    "minorsCrossed": hop.minors_crossed,
                },
                "checks": rendered,
                "ingress": ingress,
                "upgradeNotes": notes,
                "twoMinor": hop.minor_distance() >= 2,
                "kubectl": join(&self.sh.tool(Tool::Kubectl, &[])),
            })
            .to_string()
            .into_boxed_str(),
        });
        let mut s = self.step(
            h,
            Phase::Preflight,
            "checks",
            format!(
                "Check cluster `{}` before {} -> {}",
                self.c.name, hop.from, hop.to
            ),
            "read-only checks that the cluster is in the state the inventory describes and the tools are the versions the plan needs; start the load test that proves zero downtime".to_string(),
        );
        s.ops = checks;
        s.confirm
            .push(format!("every check in {path} gives the expected result"));
        if !ingress.is_empty() {
            s.confirm.push("a load test against the ingress gateway is running (see the README) and stays running until the hop's cleanup is done".to_string());
        }
        s.undo_note = Some("nothing to undo: read-only".to_string());
        self.push_step(s);
    }

    /// The load test against an ingress gateway: how to find its address, the attack, and the
    /// report to read once it has run.
    fn load_test(
        &self,
        g: &crate::validate::GatewaySpec,
        s: &crate::inventory::GatewayService,
    ) -> serde_json::Value {
        use crate::render::shell::quote;
        let lt = g.gateway.load_test.clone().unwrap_or_default();
        let scheme = lt.scheme.clone().unwrap_or_else(|| "http".into());
        let named = |names: &[&str]| {
            s.ports
                .iter()
                .find(|p| names.contains(&p.name.as_str()))
                .map(|p| p.port)
        };
        let port = lt.port.or_else(|| {
            if scheme == "https" {
                named(&["https", "https-443", "tls"])
            } else {
                named(&["http2", "http", "http-80"])
            }
        });
        let port = port
            .or_else(|| s.ports.first().map(|p| p.port))
            .unwrap_or(80);
        let (port, address) = match s.kind {
            ServiceType::LoadBalancer => (
                port,
                self.sh.tool(
                    Tool::Kubectl,
                    &[
                        "get",
                        "service",
                        &s.name,
                        "-n",
                        &g.gateway.namespace,
                        "-o",
                        "jsonpath={.status.loadBalancer.ingress[0].ip}{.status.loadBalancer.ingress[0].hostname}",
                    ],
                ),
            ),
            ServiceType::NodePort | ServiceType::ClusterIP => (
                if s.kind == ServiceType::NodePort {
                    s.ports
                        .iter()
                        .find(|p| p.port == port)
                        .and_then(|p| p.node_port)
                        .unwrap_or(port)
                } else {
                    port
                },
                self.sh.tool(
                    Tool::Kubectl,
                    &[
                        "get",
                        "service",
                        &s.name,
                        "-n",
                        &g.gateway.namespace,
                        "-o",
                        "jsonpath={.spec.clusterIP}",
                    ],
                ),
            ),
        };
        let path = lt.path.clone().unwrap_or_else(|| "/".into());
        let rate = lt.rate.unwrap_or(10);
        let duration = lt.duration.clone().unwrap_or_else(|| "60m".into());
        let file = format!("load-test-{}.bin", g.gateway.name);
        let mut attack = vec![
            "vegeta".to_string(),
            "attack".into(),
            format!("-rate={rate}/1s"),
            format!("-duration={duration}"),
        ];
        if let Some(h) = &lt.host {
            attack.push("-header".into());
            attack.push(format!("Host: {h}"));
        }
        if scheme == "https" {
            attack.push("-insecure".into());
        }
        attack.push(format!("-output={file}"));
        json!({
            "gateway": g.gateway.name,
            "service": format!("{}/{}", g.gateway.namespace, s.name),
            "kind": s.kind,
            "address": format!("ADDRESS=$({})", crate::render::shell::join(&address)),
            "attack": format!(
                "echo \"GET {scheme}://$ADDRESS:{port}{}\" | {}",
                crate::render::shell::dquote_inner(&path),
                crate::render::shell::join(&attack)
            ),
            "report": format!("vegeta report {}", quote(&file)),
            "host": lt.host,
            "rate": rate,
            "duration": duration,
        })
    }

    /// Whether a gateway chart this hop installs needs `--skip-schema-validation`.
    fn uses_skip_schema(&self, h: &HopCtx) -> bool {
        self.c.install.helm_gateways()
            && !self.c.gateways.is_empty()
            && (crate::chart_facts::gateway_schema_rejects_values(&h.hop.to)
                || crate::chart_facts::gateway_schema_rejects_values(&h.hop.from))
    }
}
