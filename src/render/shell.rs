//! Operations and waits as shell commands. The only place a command line is built: every word
//! goes through [`quote`], so a command means the same to `sh -c` as to the operation it came
//! from. `argv` gives the words a command is meant to have, which a test compares with what a
//! POSIX shell makes of the rendered line.

use crate::plan::op::{Manifest, ObjRef, Op, RestartMethod, Tool, Wait};

/// One command: a pipeline of programs, or a short script (a loop) whose programs are listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// `a | b | c`; usually a single program.
    Pipeline(Vec<Vec<String>>),
    /// A POSIX sh script; `programs` are the commands it runs, for checking.
    Script {
        text: String,
        programs: Vec<Vec<String>>,
    },
}

impl Cmd {
    pub fn text(&self) -> String {
        match self {
            Cmd::Pipeline(p) => p.iter().map(|a| join(a)).collect::<Vec<_>>().join(" | "),
            Cmd::Script { text, .. } => text.clone(),
        }
    }

    /// The programs the command runs, with their arguments.
    pub fn programs(&self) -> &[Vec<String>] {
        match self {
            Cmd::Pipeline(p) => p,
            Cmd::Script { programs, .. } => programs,
        }
    }
}

/// A shell word: unchanged when it holds only characters no shell treats specially, otherwise
/// in single quotes (a `'` inside becomes `'\''`).
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'@' | b'%' | b'+' | b'=' | b':' | b',' | b'.' | b'/' | b'-'
                )
        });
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The inside of a double-quoted shell word: `\\`, `"`, `$` and `` ` `` escaped, so that only
/// what the caller adds around it (a `$VARIABLE`) is expanded.
pub fn dquote_inner(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub fn join(argv: &[String]) -> String {
    argv.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// Escapes a map key for a kubectl JSONPath (`istio.io/rev` -> `istio\.io/rev`).
pub fn jsonpath_key(key: &str) -> String {
    key.replace('.', "\\.")
}

/// Builds argv vectors for one cluster's kubeconfig context.
#[derive(Clone, Copy, Debug)]
pub struct Shell<'a> {
    pub context: Option<&'a str>,
}

fn words(ws: &[&str]) -> Vec<String> {
    ws.iter().map(|w| (*w).to_string()).collect()
}

impl Shell<'_> {
    pub fn tool(&self, tool: Tool, args: &[&str]) -> Vec<String> {
        let mut v = vec![tool.name().to_string()];
        if let Some(c) = self.context {
            v.push(
                match tool {
                    Tool::Helm => "--kube-context",
                    Tool::Kubectl | Tool::Istioctl => "--context",
                }
                .to_string(),
            );
            v.push(c.to_string());
        }
        v.extend(args.iter().map(|a| (*a).to_string()));
        v
    }

    fn kubectl(&self, args: &[&str]) -> Vec<String> {
        self.tool(Tool::Kubectl, args)
    }

    fn helm(&self, args: &[&str]) -> Vec<String> {
        self.tool(Tool::Helm, args)
    }

    fn istioctl(&self, args: &[&str]) -> Vec<String> {
        self.tool(Tool::Istioctl, args)
    }

    fn one(&self, argv: Vec<String>) -> Cmd {
        Cmd::Pipeline(vec![argv])
    }

    /// The commands that carry out `op`, in order.
    pub fn op(&self, op: &Op) -> Vec<Cmd> {
        match op {
            Op::HelmUpgrade(h) => {
                let version = h.version.to_string();
                let mut a = words(&["upgrade"]);
                if h.install {
                    a.push("--install".into());
                }
                a.extend(words(&[
                    &h.release,
                    &h.chart_ref,
                    "--version",
                    &version,
                    "-n",
                    &h.namespace,
                ]));
                if h.reuse_values {
                    a.push("--reuse-values".into());
                }
                if h.wait {
                    a.push("--wait".into());
                }
                if h.skip_schema_validation {
                    a.push("--skip-schema-validation".into());
                }
                if h.take_ownership {
                    a.push("--take-ownership".into());
                }
                a.extend(words(&["-f", &h.values]));
                let refs: Vec<&str> = a.iter().map(String::as_str).collect();
                vec![self.one(self.helm(&refs))]
            }
            Op::HelmUninstall { release, namespace } => {
                vec![self.one(self.helm(&["uninstall", release, "-n", namespace]))]
            }
            Op::ApplyCrds { chart_ref, version } => vec![Cmd::Pipeline(vec![
                self.helm(&["show", "crds", chart_ref, "--version", &version.to_string()]),
                self.kubectl(&["apply", "-f", "-"]),
            ])],
            Op::AdoptCrds { release, namespace } => vec![
                self.one(self.kubectl(&[
                    "label",
                    "crd",
                    "-l",
                    "chart=istio",
                    "app.kubernetes.io/managed-by=Helm",
                    "--overwrite",
                ])),
                self.one(self.kubectl(&[
                    "annotate",
                    "crd",
                    "-l",
                    "chart=istio",
                    &format!("meta.helm.sh/release-name={release}"),
                    &format!("meta.helm.sh/release-namespace={namespace}"),
                    "--overwrite",
                ])),
            ],
            Op::IstioctlInstall { file, operator, .. } => {
                if *operator {
                    vec![self.one(self.kubectl(&["apply", "-f", file]))]
                } else {
                    vec![self.one(self.istioctl(&["install", "-y", "-f", file]))]
                }
            }
            Op::OperatorInit {
                revision, hub, tag, ..
            } => vec![self.one(self.istioctl(&[
                "operator",
                "init",
                "--revision",
                revision,
                "--hub",
                hub,
                "--tag",
                tag,
            ]))],
            Op::OperatorRemove { revision, .. } => {
                vec![self.one(self.istioctl(&["operator", "remove", "--revision", revision]))]
            }
            Op::IstioctlUninstall { revision, .. } => {
                vec![self.one(self.istioctl(&["uninstall", "--revision", revision, "-y"]))]
            }
            Op::SetTag {
                tag,
                revision,
                version,
                helm,
            } => match helm {
                Some(t) => {
                    let mut a = words(&[
                        "template",
                        "istiod",
                        &t.chart_ref,
                        "--version",
                        &version.to_string(),
                        "-n",
                        &t.namespace,
                    ]);
                    for s in &t.templates {
                        a.push("-s".into());
                        a.push(s.clone());
                    }
                    a.extend(words(&[
                        "--set",
                        &format!("revisionTags={{{tag}}}"),
                        "--set",
                        &format!("revision={revision}"),
                    ]));
                    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
                    vec![Cmd::Pipeline(vec![
                        self.helm(&refs),
                        self.kubectl(&["apply", "-f", "-"]),
                    ])]
                }
                None => vec![self.one(self.istioctl(&[
                    "tag",
                    "set",
                    tag,
                    "--revision",
                    revision,
                    "--overwrite",
                ]))],
            },
            Op::Apply { file, .. } | Op::SailIstio { file, .. } => {
                vec![self.one(self.kubectl(&["apply", "-f", file]))]
            }
            Op::SailTag {
                tag,
                istio,
                revision,
            } => {
                let target = match revision {
                    Some(r) => serde_json::json!({"kind": "IstioRevision", "name": r}),
                    None => serde_json::json!({"kind": "Istio", "name": istio}),
                };
                let patch = serde_json::json!({"spec": {"targetRef": target}}).to_string();
                vec![self.one(self.kubectl(&[
                    "patch",
                    "istiorevisiontag",
                    tag,
                    "--type",
                    "merge",
                    "-p",
                    &patch,
                ]))]
            }
            Op::SailAwaitRevision { revision } => vec![self.one(self.kubectl(&[
                "wait",
                "--for=condition=Ready",
                &format!("istiorevision/{revision}"),
                "--timeout=5m",
            ]))],
            Op::PatchSelector {
                service,
                namespace,
                file,
                ..
            } => vec![self.one(self.kubectl(&[
                "patch",
                "service",
                service,
                "-n",
                namespace,
                "--type",
                "merge",
                "--patch-file",
                file,
            ]))],
            Op::LabelNamespace {
                namespace, file, ..
            } => vec![self.one(self.kubectl(&[
                "patch",
                "namespace",
                namespace,
                "--type",
                "merge",
                "--patch-file",
                file,
            ]))],
            Op::LabelGateway {
                name,
                namespace,
                revision,
            } => {
                let label = match revision {
                    Some(r) => format!("{}={r}", crate::plan::op::REV_LABEL),
                    None => format!("{}-", crate::plan::op::REV_LABEL),
                };
                vec![self.one(self.kubectl(&[
                    "label",
                    "gateways.gateway.networking.k8s.io",
                    name,
                    "-n",
                    namespace,
                    &label,
                    "--overwrite",
                ]))]
            }
            Op::RemoveLabels { objects, labels } => objects
                .iter()
                .map(|o| {
                    let mut a = words(&["label", &o.kind, &o.name]);
                    if let Some(ns) = &o.namespace {
                        a.extend(words(&["-n", ns]));
                    }
                    a.extend(labels.iter().map(|l| format!("{l}-")));
                    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
                    self.one(self.kubectl(&refs))
                })
                .collect(),
            Op::RolloutRestart {
                kind,
                name,
                namespace,
            } => vec![self.one(self.kubectl(&[
                "rollout",
                "restart",
                &format!("{}/{name}", kind.resource()),
                "-n",
                namespace,
            ]))],
            Op::Restart {
                kind,
                name,
                namespace,
                method,
                file,
            } => match (method, file) {
                (RestartMethod::TemplatePatch, Some(f)) => vec![self.one(self.kubectl(&[
                    "patch",
                    kind.resource(),
                    name,
                    "-n",
                    namespace,
                    "--type",
                    "merge",
                    "--patch-file",
                    f,
                ]))],
                _ => vec![self.delete_pods(kind.resource(), name, namespace)],
            },
            Op::Delete { objects } => {
                let mut by_ns: std::collections::BTreeMap<Option<&str>, Vec<&ObjRef>> =
                    Default::default();
                for o in objects {
                    by_ns.entry(o.namespace.as_deref()).or_default().push(o);
                }
                by_ns
                    .into_iter()
                    .map(|(ns, objs)| {
                        let mut a = vec!["delete".to_string()];
                        a.extend(objs.iter().map(|o| format!("{}/{}", o.kind, o.name)));
                        if let Some(ns) = ns {
                            a.extend(words(&["-n", ns]));
                        }
                        a.push("--ignore-not-found".into());
                        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
                        self.one(self.kubectl(&refs))
                    })
                    .collect()
            }
            Op::Probe { tool, args, .. } => {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                vec![self.one(self.tool(*tool, &refs))]
            }
        }
    }

    /// Deletes the pods of a StatefulSet or DaemonSet one at a time; after each, waits until the
    /// workload has every pod ready again (at most 10 minutes), or stops with an error.
    fn delete_pods(&self, kind: &str, name: &str, ns: &str) -> Cmd {
        let list = self.kubectl(&[
            "get",
            "pods",
            "-n",
            ns,
            "-o",
            &format!(
                "jsonpath={{range .items[?(@.metadata.ownerReferences[0].name==\"{name}\")]}}{{.metadata.name}}{{\"\\n\"}}{{end}}"
            ),
        ]);
        let (ready, want) = if kind == "statefulset" {
            ("{.status.readyReplicas}", "{.spec.replicas}")
        } else {
            ("{.status.numberReady}", "{.status.desiredNumberScheduled}")
        };
        let ready = self.kubectl(&[
            "get",
            kind,
            name,
            "-n",
            ns,
            "-o",
            &format!("jsonpath={ready}"),
        ]);
        let want = self.kubectl(&[
            "get",
            kind,
            name,
            "-n",
            ns,
            "-o",
            &format!("jsonpath={want}"),
        ]);
        let delete_head = self.kubectl(&["delete", "pod", "-n", ns]);
        let text = format!(
            "for p in $({list}); do {del} \"$p\" --wait=true || exit 1; i=0; sleep 5; until [ \"$({ready})\" = \"$({want})\" ]; do i=$((i+1)); [ \"$i\" -le 120 ] || exit 1; sleep 5; done; done",
            list = join(&list),
            del = join(&delete_head),
            ready = join(&ready),
            want = join(&want),
        );
        let mut delete = delete_head.clone();
        delete.extend(words(&["<pod>", "--wait=true"]));
        Cmd::Script {
            text,
            programs: vec![list, delete, ready, want],
        }
    }

    /// The command that checks `w`.
    pub fn wait(&self, w: &Wait) -> Cmd {
        let jp = |path: String, value: &str| format!("--for=jsonpath={{{path}}}={value}");
        match w {
            Wait::Rollout {
                kind,
                name,
                namespace,
                timeout,
            } => self.one(self.kubectl(&[
                "rollout",
                "status",
                &format!("{}/{name}", kind.resource()),
                "-n",
                namespace,
                &format!("--timeout={timeout}"),
            ])),
            Wait::CrdsEstablished { selector } => self.one(self.kubectl(&[
                "wait",
                "--for",
                "condition=established",
                "crd",
                "-l",
                selector,
                "--timeout=2m",
            ])),
            Wait::ServiceKept { service, namespace } => self.one(self.kubectl(&[
                "wait",
                &jp(
                    format!(
                        ".metadata.annotations.{}",
                        jsonpath_key("helm.sh/resource-policy")
                    ),
                    "keep",
                ),
                &format!("service/{service}"),
                "-n",
                namespace,
                "--timeout=1m",
            ])),
            Wait::Selector {
                service,
                namespace,
                key,
                value,
            } => self.one(self.kubectl(&[
                "wait",
                &jp(format!(".spec.selector.{}", jsonpath_key(key)), value),
                &format!("service/{service}"),
                "-n",
                namespace,
                "--timeout=1m",
            ])),
            Wait::OperatorHealthy { name, namespace } => self.one(self.kubectl(&[
                "wait",
                &jp(".status.status".into(), "HEALTHY"),
                &format!("istiooperator/{name}"),
                "-n",
                namespace,
                "--timeout=10m",
            ])),
            Wait::NamespaceLabel {
                namespace,
                key,
                value,
            } => self.one(self.kubectl(&[
                "wait",
                &jp(format!(".metadata.labels.{}", jsonpath_key(key)), value),
                &format!("namespace/{namespace}"),
                "--timeout=1m",
            ])),
            Wait::SailRevisionDeleted { revision, timeout } => self.one(self.kubectl(&[
                "wait",
                "--for=delete",
                &format!("istiorevision/{revision}"),
                &format!("--timeout={timeout}"),
            ])),
            Wait::Tag {
                tag,
                namespace,
                revision,
            } => self.one(self.kubectl(&[
                "wait",
                &jp(
                    format!(".metadata.labels.{}", jsonpath_key("istio.io/rev")),
                    revision,
                ),
                &format!(
                    "mutatingwebhookconfiguration/{}",
                    crate::plan::names::tag_webhook(tag, namespace)
                ),
                "--timeout=1m",
            ])),
        }
    }
}

/// The manifest kinds for a file header.
pub fn manifest_kind(m: &Manifest) -> &'static str {
    match m {
        Manifest::Service { .. } => "Service",
        Manifest::SecretsRbac { .. } => "Role and RoleBinding",
        Manifest::IstiodRoute { .. } => "Gateway and VirtualService",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_the_shell_would_change() {
        assert_eq!(quote("istio-system"), "istio-system");
        assert_eq!(quote("--for=jsonpath={.a}=b"), "'--for=jsonpath={.a}=b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(dquote_inner("/a$b\"c`d\\"), "/a\\$b\\\"c\\`d\\\\");
        assert_eq!(
            quote("{.metadata.annotations.helm\\.sh/resource-policy}"),
            "'{.metadata.annotations.helm\\.sh/resource-policy}'"
        );
    }

    #[test]
    fn context_goes_where_each_tool_takes_it() {
        let s = Shell {
            context: Some("east"),
        };
        assert_eq!(
            join(&s.tool(Tool::Helm, &["list"])),
            "helm --kube-context east list"
        );
        assert_eq!(
            join(&s.tool(Tool::Kubectl, &["get", "ns"])),
            "kubectl --context east get ns"
        );
    }
}
