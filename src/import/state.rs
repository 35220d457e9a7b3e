//! Reading saved cluster state: one directory per cluster, holding what documented read-only
//! commands print (`meshplan import --print-commands`). Every file is checked for what it must
//! be (JSON, the right kind, from one cluster); a problem names the file and, for JSON, the
//! line and column, and nothing is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The files of a cluster's state directory.
pub const VERSION: &str = "version.json";
pub const OBJECTS: &str = "objects.json";
pub const GATEWAYS: &str = "gateways.json";
/// IstioOperator resources (istioctl's installed state, or the in-cluster operator's input).
pub const ISTIOOPERATORS: &str = "istiooperators.json";
/// The Sail Operator's `Istio` and `IstioRevisionTag` resources (absent: no Sail Operator).
pub const SAIL: &str = "sail.json";
pub const RELEASES: &str = "helm-releases.json";
pub const VALUES_DIR: &str = "helm-values";
/// Injected pods, one line each: namespace, pod, `istio.io/rev` (the proxy's revision), owner
/// kind and name (optional).
pub const PROXIES: &str = "proxies.txt";
/// The kubeconfig context the state was saved from (one line; default: the directory's name).
pub const CONTEXT: &str = "context";

/// The most a state file may hold (a cluster of 1,000 namespaces and 3,000 workloads prints
/// about 40 MB of objects).
pub const MAX_STATE_FILE: u64 = 512 << 20;

/// What `kubectl get namespaces,deployments,...` lists, as import reads it.
pub const OBJECT_KINDS: &[&str] = &[
    "namespaces",
    "deployments",
    "statefulsets",
    "daemonsets",
    "services",
    "serviceaccounts",
    "mutatingwebhookconfigurations",
    "validatingwebhookconfigurations",
];

#[derive(Debug)]
pub struct StateError {
    pub file: PathBuf,
    pub message: String,
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

/// A Helm release as `helm list -o json` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub name: String,
    pub namespace: String,
    /// `<chart>-<version>`, e.g. `istiod-1.20.2`.
    pub chart: String,
}

impl Release {
    /// The chart's name and version (`istiod`, `1.20.2`).
    pub fn chart_parts(&self) -> (&str, &str) {
        // Chart versions start with a digit; chart names may contain dashes.
        match self
            .chart
            .char_indices()
            .find(|(i, c)| *i > 0 && c.is_ascii_digit() && self.chart.as_bytes()[i - 1] == b'-')
        {
            Some((i, _)) => (&self.chart[..i - 1], &self.chart[i..]),
            None => (&self.chart, ""),
        }
    }
}

/// One cluster's saved state.
#[derive(Debug)]
pub struct ClusterState {
    pub name: String,
    /// The kubeconfig context the state was saved from.
    pub context: String,
    pub dir: PathBuf,
    /// `serverVersion` of `kubectl version -o json`.
    pub server: (u64, u64),
    /// Every object of `objects.json` (and `gateways.json`), by kind.
    pub objects: BTreeMap<String, Vec<Value>>,
    pub releases: Vec<Release>,
    /// User-supplied values of each release, by (namespace, release).
    pub values: BTreeMap<(String, String), Value>,
    /// Injected pods (`None`: not saved).
    pub proxies: Option<Vec<Proxy>>,
}

impl ClusterState {
    pub fn of_kind(&self, kind: &str) -> &[Value] {
        self.objects.get(kind).map_or(&[], Vec::as_slice)
    }
}

fn parse_json(path: &Path, text: &str) -> Result<Value, StateError> {
    let err = |message: String| StateError {
        file: path.to_path_buf(),
        message,
    };
    serde_json::from_str(text).map_err(|e| {
        let what = if e.is_eof() {
            "ends early (truncated?)"
        } else {
            "is not valid JSON"
        };
        let text = e.to_string();
        let detail = text
            .rsplit_once(" at line ")
            .map_or(text.as_str(), |(d, _)| d);
        err(format!(
            "{what} at line {}, column {} ({detail}); save it again with the command `meshplan import --print-commands` prints",
            e.line(),
            e.column()
        ))
    })
}

/// `kubectl get ... -o json`: a `List` of objects, each with `kind` and `metadata.name`.
fn parse_list(path: &Path, text: &str, kinds: &[&str]) -> Result<Vec<Value>, StateError> {
    let v = parse_json(path, text)?;
    let err = |message: String| StateError {
        file: path.to_path_buf(),
        message,
    };
    if v.get("kind").and_then(Value::as_str) != Some("List") {
        return Err(err(format!(
            "is not the output of `kubectl get ... -o json` (a List), but {}",
            v.get("kind").and_then(Value::as_str).map_or_else(
                || "something without a kind".to_string(),
                |k| format!("a {k}")
            )
        )));
    }
    let mut v = v;
    let items = match v.get_mut("items").map(Value::take) {
        Some(Value::Array(items)) => items,
        _ => return Err(err("has no `items` list".into())),
    };
    for (i, item) in items.iter().enumerate() {
        let kind = item.get("kind").and_then(Value::as_str).unwrap_or("");
        if !kinds.iter().any(|k| k.eq_ignore_ascii_case(kind)) {
            return Err(err(format!(
                "items[{i}] is a {kind:?}, which this file does not hold (expected: {})",
                kinds.join(", ")
            )));
        }
        if item
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .is_none()
        {
            return Err(err(format!("items[{i}] has no metadata.name")));
        }
    }
    Ok(items)
}

const OBJECT_KIND_NAMES: &[&str] = &[
    "Namespace",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Service",
    "ServiceAccount",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// The texts of one cluster's state files (`None`: the file is absent).
#[derive(Debug, Default)]
pub struct StateFiles {
    pub version: String,
    pub objects: String,
    pub gateways: Option<String>,
    pub istiooperators: Option<String>,
    pub sail: Option<String>,
    pub releases: String,
    pub context: Option<String>,
    /// `helm get values` of each release, by `<namespace>.<release>`.
    pub values: BTreeMap<String, String>,
    pub proxies: Option<String>,
}

/// An injected pod: which workload it belongs to and which revision's proxy it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    pub namespace: String,
    /// `Deployment`, `StatefulSet` or `DaemonSet`, and its name (a ReplicaSet's Deployment).
    pub owner: Option<(String, String)>,
    pub revision: String,
}

fn read_text(path: &Path) -> Result<String, StateError> {
    let err = |message: String| StateError {
        file: path.to_path_buf(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(err("is not a regular file".into()));
    }
    if meta.len() > MAX_STATE_FILE {
        return Err(err(format!(
            "is {} bytes, more than the {} MiB a cluster's state ever needs",
            meta.len(),
            MAX_STATE_FILE >> 20
        )));
    }
    std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))
}

/// Reads the state directory of one cluster (`dir`, named after the cluster).
pub fn read_cluster(dir: &Path) -> Result<ClusterState, StateError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let optional = |f: &str| -> Result<Option<String>, StateError> {
        let p = dir.join(f);
        if p.exists() {
            read_text(&p).map(Some)
        } else {
            Ok(None)
        }
    };
    let mut files = StateFiles {
        version: read_text(&dir.join(VERSION))?,
        objects: read_text(&dir.join(OBJECTS))?,
        gateways: optional(GATEWAYS)?,
        istiooperators: optional(ISTIOOPERATORS)?,
        sail: optional(SAIL)?,
        releases: read_text(&dir.join(RELEASES))?,
        context: optional(CONTEXT)?,
        values: BTreeMap::new(),
        proxies: optional(PROXIES)?,
    };
    let values_dir = dir.join(VALUES_DIR);
    if values_dir.is_dir() {
        let entries = std::fs::read_dir(&values_dir).map_err(|e| StateError {
            file: values_dir.clone(),
            message: format!("cannot read it: {e}"),
        })?;
        for e in entries.filter_map(Result::ok) {
            let file = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = file.strip_suffix(".json") {
                files.values.insert(stem.to_string(), read_text(&e.path())?);
            }
        }
    }
    parse_cluster(dir, &name, files)
}

/// Checks and parses one cluster's state files (`dir` only names them in errors). Pure: the
/// fuzz target runs it on arbitrary input.
pub fn parse_cluster(
    dir: &Path,
    name: &str,
    files: StateFiles,
) -> Result<ClusterState, StateError> {
    let version_path = dir.join(VERSION);
    let version = parse_json(&version_path, &files.version)?;
    let server = version.get("serverVersion").ok_or_else(|| StateError {
        file: version_path.clone(),
        message: "has no serverVersion: save it with `kubectl version -o json` against the cluster (not `--client`)".into(),
    })?;
    let num = |k: &str| -> Option<u64> {
        let s = server.get(k)?.as_str()?;
        s.trim_end_matches('+').parse().ok()
    };
    let (Some(major), Some(minor)) = (num("major"), num("minor")) else {
        return Err(StateError {
            file: version_path,
            message: "serverVersion has no numeric major and minor".into(),
        });
    };
    let mut objects: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for item in parse_list(&dir.join(OBJECTS), &files.objects, OBJECT_KIND_NAMES)? {
        let kind = item["kind"].as_str().unwrap_or_default().to_string();
        objects.entry(kind).or_default().push(item);
    }
    if !objects.contains_key("Namespace") {
        return Err(StateError {
            file: dir.join(OBJECTS),
            message: "lists no namespace: save it with `kubectl get namespaces,deployments,... -A -o json` as `meshplan import --print-commands` prints".into(),
        });
    }
    if let Some(text) = &files.gateways {
        for item in parse_list(&dir.join(GATEWAYS), text, &["Gateway"])? {
            objects.entry("Gateway".into()).or_default().push(item);
        }
    }
    if let Some(text) = &files.istiooperators {
        for item in parse_list(&dir.join(ISTIOOPERATORS), text, &["IstioOperator"])? {
            objects
                .entry("IstioOperator".into())
                .or_default()
                .push(item);
        }
    }
    if let Some(text) = &files.sail {
        for item in parse_list(&dir.join(SAIL), text, &["Istio", "IstioRevisionTag"])? {
            let kind = item["kind"].as_str().unwrap_or_default().to_string();
            objects.entry(kind).or_default().push(item);
        }
    }
    let releases_path = dir.join(RELEASES);
    let releases = match parse_json(&releases_path, &files.releases)? {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let field = |k: &str| {
                    r.get(k)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| StateError {
                            file: releases_path.clone(),
                            message: format!(
                                "[{i}] has no `{k}`: this is not what `helm list -A -o json` prints (Helm 3)"
                            ),
                        })
                };
                Ok(Release {
                    name: field("name")?,
                    namespace: field("namespace")?,
                    chart: field("chart")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(StateError {
                file: releases_path,
                message: "is not a JSON list: save it with `helm list -A -o json` (Helm 3)".into(),
            });
        }
    };
    let mut values = BTreeMap::new();
    for r in &releases {
        let key = format!("{}.{}", r.namespace, r.name);
        let Some(text) = files.values.get(&key) else {
            continue;
        };
        let path = dir.join(VALUES_DIR).join(format!("{key}.json"));
        let v = match parse_json(&path, text)? {
            Value::Null => Value::Object(Default::default()),
            v @ Value::Object(_) => v,
            _ => {
                return Err(StateError {
                    file: path,
                    message: "is not a JSON object: save it with `helm get values <release> -n <namespace> -o json`".into(),
                });
            }
        };
        values.insert((r.namespace.clone(), r.name.clone()), v);
    }
    let context = match &files.context {
        Some(text) => {
            let c = text.trim();
            if c.is_empty() || c.contains(char::is_control) || c.len() > 253 {
                return Err(StateError {
                    file: dir.join(CONTEXT),
                    message: "is not one kubeconfig context name on one line".into(),
                });
            }
            c.to_string()
        }
        None => name.to_string(),
    };
    let proxies = match &files.proxies {
        None => None,
        Some(text) => Some(parse_proxies(&dir.join(PROXIES), text)?),
    };
    Ok(ClusterState {
        proxies,
        context,
        name: name.to_string(),
        dir: dir.to_path_buf(),
        server: (major, minor),
        objects,
        releases,
        values,
    })
}

/// `kubectl get pods -l istio.io/rev -o custom-columns=...` without headers: namespace, pod,
/// revision, owner kind, owner name (`<none>` when absent).
fn parse_proxies(path: &Path, text: &str) -> Result<Vec<Proxy>, StateError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let [ns, _pod, rev, kind, owner] = fields.as_slice() else {
            return Err(StateError {
                file: path.to_path_buf(),
                message: format!(
                    "line {}: expected 5 columns (namespace, pod, revision, owner kind, owner name), found {}; save it with the command `meshplan import --print-commands` prints",
                    i + 1,
                    fields.len()
                ),
            });
        };
        let owner = match *kind {
            // A Deployment's pods belong to a ReplicaSet named `<deployment>-<hash>`.
            "ReplicaSet" => owner
                .rsplit_once('-')
                .map(|(d, _)| ("Deployment".to_string(), d.to_string())),
            "StatefulSet" | "DaemonSet" => Some(((*kind).to_string(), (*owner).to_string())),
            _ => None,
        };
        out.push(Proxy {
            namespace: (*ns).to_string(),
            owner,
            revision: (*rev).to_string(),
        });
    }
    Ok(out)
}

/// The commands that save one cluster's state into `out/<name>/`, for `--print-commands`.
pub fn commands(context: &str, name: &str, out: &str) -> String {
    let dir = format!("{out}/{name}");
    let q = |s: &str| crate::render::shell::quote(s);
    let ctx = q(context);
    let d = q(&dir);
    format!(
        "# cluster {name} (kubeconfig context {context}): read-only commands\n\
mkdir -p {d}/{VALUES_DIR}\n\
printf '%s\\n' {ctx} > {d}/{CONTEXT}\n\
kubectl --context {ctx} version -o json > {d}/{VERSION}\n\
kubectl --context {ctx} get {kinds} -A -o json > {d}/{OBJECTS}\n\
kubectl --context {ctx} get gateways.gateway.networking.k8s.io -A -o json > {d}/{GATEWAYS} || rm -f {d}/{GATEWAYS}\n\
kubectl --context {ctx} get istiooperators.install.istio.io -A -o json > {d}/{ISTIOOPERATORS} || rm -f {d}/{ISTIOOPERATORS}\n\
kubectl --context {ctx} get istios.sailoperator.io,istiorevisiontags.sailoperator.io -o json > {d}/{SAIL} || rm -f {d}/{SAIL}\n\
kubectl --context {ctx} get pods -A -l istio.io/rev --no-headers -o custom-columns='NS:.metadata.namespace,POD:.metadata.name,REV:.metadata.labels.istio\\.io/rev,KIND:.metadata.ownerReferences[0].kind,OWNER:.metadata.ownerReferences[0].name' > {d}/{PROXIES}\n\
helm --kube-context {ctx} list -A -o json > {d}/{RELEASES}\n\
helm --kube-context {ctx} list -A -o json | jq -r '.[] | \"\\(.namespace) \\(.name)\"' | while read -r ns release; do\n\
  helm --kube-context {ctx} get values \"$release\" -n \"$ns\" -o json > {d}/{VALUES_DIR}/\"$ns.$release.json\"\n\
done\n",
        kinds = OBJECT_KINDS.join(","),
    )
}
