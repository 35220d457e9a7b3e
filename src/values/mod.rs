//! Carried values checked against the API of each hop's target.
//!
//! meshplan carries `istio.values`, `istio.baseValues` and `gateways[].values` into every new
//! release unchanged, so a mistake in them reaches the cluster at the moment nobody expects it.
//! This phase walks every carried value through what the target of each hop accepts (see
//! [`api`]) and reports, at the inventory's line and column:
//!
//! - a key the target does not know: a warning (Istio's charts and istiod ignore it), with the
//!   minor that removed it or the first that knows it, or a likely spelling; an error in gateway
//!   values, whose chart schema makes Helm refuse the install;
//! - a value of the wrong type, outside an enumeration, or a duration Go cannot read: an error.
//!   istiod parses `meshConfig` as its MeshConfig API and the istiod chart's values as the
//!   operator's values API (its sidecar injector, `NewValuesConfig`), so either fails to load
//!   after the upgrade; istioctl refuses such values; Helm refuses gateway values outside the
//!   chart's values.schema.json.
//!
//! Keys a target does not know have no effect there, so the values meshplan writes for that
//! target leave them out ([`carried_istiod`], [`carried_base`]).
//!
//! A finding is reported once, for the first hop whose target rejects it.

pub mod api;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::diagnostic::{Code, Diagnostic, Diagnostics, Severity, suggest};
use crate::inventory::InstallMethod;
use crate::path::{ClusterPath, MeshPath};
use crate::source::{Source, YamlPath};
use crate::validate::{ClusterSpec, Mesh};
use crate::version::Minor;
use api::{Api, Charts, Kind, Node, is_go_duration};

/// Which chart, or which part of it, a value belongs to: it decides how bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chart {
    /// The istiod chart's values (IstioOperator `spec.values` for istioctl).
    Istiod,
    /// `meshConfig`, which istiod parses as its MeshConfig API.
    Mesh,
    Base,
    Gateway,
    Cni,
}

impl Chart {
    fn root(self, charts: &Charts) -> Option<usize> {
        match self {
            Chart::Istiod | Chart::Mesh => Some(charts.istiod),
            Chart::Base => Some(charts.base),
            Chart::Gateway => charts.gateway,
            Chart::Cni => charts.cni,
        }
    }

    fn noun(self, minor: Minor) -> String {
        match self {
            Chart::Istiod => format!("the istiod chart of Istio {minor}"),
            Chart::Mesh => format!("Istio {minor}'s mesh config API (MeshConfig, ProxyConfig)"),
            Chart::Base => format!("the base chart of Istio {minor}"),
            Chart::Gateway => format!("the gateway chart of Istio {minor} (values.schema.json)"),
            Chart::Cni => format!("the cni chart of Istio {minor}"),
        }
    }
}

#[derive(Debug)]
enum Problem {
    /// A key the target does not know; `hint` says more (removed, added later, a spelling).
    Unknown(Option<String>),
    /// A value none of `expected` accepts.
    Type(Vec<Kind>),
    /// A value outside an enumeration.
    Enum(Vec<Value>),
}

#[derive(Debug)]
struct Finding {
    at: YamlPath,
    /// The value's path inside the values (`meshConfig.defaultConfig.drainDuration`).
    shown: String,
    chart: Chart,
    problem: Problem,
    /// Rendered value, for type findings.
    value: String,
}

/// The carried istiod values as the istiod chart (or istioctl's values API) of `minor` takes
/// them: keys it does not know are left out, since they would have no effect there (`check`
/// warns about each, at its line). Without a record of `minor`, the values as they are.
pub fn carried_istiod(values: &BTreeMap<String, Value>, minor: Minor) -> Map<String, Value> {
    carried(values, minor, Chart::Istiod)
}

/// The carried base chart values as the base chart of `minor` takes them (see
/// [`carried_istiod`]).
pub fn carried_base(values: &BTreeMap<String, Value>, minor: Minor) -> Map<String, Value> {
    carried(values, minor, Chart::Base)
}

/// The carried cni chart values as the cni chart of `minor` takes them (see
/// [`carried_istiod`]).
pub fn carried_cni(values: &BTreeMap<String, Value>, minor: Minor) -> Map<String, Value> {
    carried(values, minor, Chart::Cni)
}

fn carried(values: &BTreeMap<String, Value>, minor: Minor, chart: Chart) -> Map<String, Value> {
    let api = Api::embedded();
    let mut out: Map<String, Value> = values.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some(root) = api.charts(minor).and_then(|c| chart.root(c)) {
        out.retain(|k, v| {
            k == "revisionTags" || keep_known(api, api.field(api.node(root), k), api.node(root), v)
        });
    }
    out
}

/// Whether a value under a key whose node is `id` (in `parent`) is kept, after dropping the
/// unknown keys inside it.
fn keep_known(api: &Api, id: Option<usize>, parent: &Node, v: &mut Value) -> bool {
    let Some(id) = id.or(parent.values) else {
        return !parent.closed;
    };
    let node = api.node(id);
    match v {
        Value::Object(map) => {
            map.retain(|k, child| keep_known(api, api.field(node, k), node, child))
        }
        Value::Array(items) => {
            if let Some(item) = node.items {
                let item_node = api.node(item);
                for child in items.iter_mut() {
                    if let Value::Object(map) = child {
                        map.retain(|k, c| keep_known(api, api.field(item_node, k), item_node, c));
                    }
                }
            }
        }
        _ => {}
    }
    true
}

/// Checks the carried values of every cluster against each hop's target.
pub fn check(mesh: &Mesh, paths: &MeshPath, src: &Source, diags: &mut Diagnostics) {
    let api = Api::embedded();
    for path in &paths.clusters {
        let Some(c) = mesh.clusters.iter().find(|c| c.name == path.cluster) else {
            continue;
        };
        check_cluster(api, c, path, src, diags);
    }
}

fn check_cluster(
    api: &Api,
    c: &ClusterSpec,
    path: &ClusterPath,
    src: &Source,
    diags: &mut Diagnostics,
) {
    let mut targets: Vec<(usize, Minor)> = Vec::new();
    for (i, hop) in path.hops.iter().enumerate() {
        let m = hop.to.minor();
        if targets.last().map(|(_, t)| *t) != Some(m) {
            targets.push((i, m));
        }
    }
    let helm = c.install == InstallMethod::Helm;
    let mut sets: Vec<(Chart, YamlPath, Value)> = Vec::new();
    let istio = c.at.key("istio");
    sets.push((Chart::Istiod, istio.key("values"), object(&c.values)));
    if helm {
        sets.push((Chart::Base, istio.key("baseValues"), object(&c.base_values)));
    }
    if c.install.helm_gateways() {
        for g in &c.gateways {
            sets.push((
                Chart::Gateway,
                g.at.key("values"),
                object(&g.gateway.values),
            ));
        }
    }
    if helm && let Some(cni) = &c.cni {
        sets.push((
            Chart::Cni,
            istio.key("cni").key("values"),
            object(&cni.values),
        ));
    }
    let mut reported: BTreeSet<(YamlPath, bool)> = BTreeSet::new();
    for (hop, minor) in targets {
        let Some(charts) = api.charts(minor) else {
            if !sets
                .iter()
                .all(|(_, _, v)| v.as_object().is_some_and(|o| o.is_empty()))
            {
                diags.push(
                    Diagnostic::note(
                        Code::ValuesUnchecked,
                        format!(
                            "cluster `{}`: meshplan has no record of what Istio {minor}'s charts accept, so the carried values are not checked for it",
                            c.name
                        ),
                    )
                    .at(src, &c.at.key("name"))
                    .help("src/data/values-api.py derives that record from Istio's sources; run it for the new release"),
                );
            }
            continue;
        };
        for (chart, at, values) in &sets {
            let Some(root) = chart.root(charts) else {
                continue;
            };
            let mut findings = Vec::new();
            let mut walk = Walk {
                api,
                minor,
                chart: *chart,
                findings: &mut findings,
            };
            walk.value(root, values, at, &mut Vec::new());
            for f in findings {
                let unknown = matches!(f.problem, Problem::Unknown(_));
                if reported.insert((f.at.clone(), unknown)) {
                    diags.push(diagnostic(f, c, path, hop, minor, helm, src));
                }
            }
        }
    }
}

fn object(values: &std::collections::BTreeMap<String, Value>) -> Value {
    Value::Object(values.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn diagnostic(
    f: Finding,
    c: &ClusterSpec,
    path: &ClusterPath,
    hop: usize,
    minor: Minor,
    helm: bool,
    src: &Source,
) -> Diagnostic {
    let which = if path.hops.len() > 1 {
        let h = &path.hops[hop];
        format!(
            " (hop {} of {}, {} -> {})",
            hop + 1,
            path.hops.len(),
            h.from,
            h.to
        )
    } else {
        String::new()
    };
    let noun = f.chart.noun(minor);
    match f.problem {
        Problem::Unknown(hint) => {
            let severity = if f.chart == Chart::Gateway {
                Severity::Error
            } else {
                Severity::Warning
            };
            let effect = match f.chart {
                Chart::Gateway => {
                    "Helm refuses values the chart's schema does not allow".to_string()
                }
                Chart::Mesh => format!(
                    "istiod ignores mesh config fields it does not know, so it would have no effect: meshplan leaves it out of what it writes for Istio {minor}"
                ),
                _ if helm => format!(
                    "the chart ignores keys it does not read, so it would have no effect: meshplan leaves it out of the values it writes for Istio {minor}"
                ),
                _ => format!(
                    "istioctl's values API of Istio {minor} does not know it, so meshplan leaves it out of the IstioOperator it writes for that version"
                ),
            };
            let mut d = Diagnostic::new(
                severity,
                Code::ValuesUnknownKey,
                format!(
                    "cluster `{}`: `{}` is not a key {noun} knows{which}",
                    c.name, f.shown
                ),
            )
            .at_key(src, &f.at);
            if let Some(h) = hint {
                d = d.help(h);
            }
            d.help(effect)
        }
        Problem::Type(kinds) => invalid(
            f.shown,
            f.value,
            expected_text(&kinds),
            f.chart,
            f.at,
            c,
            &noun,
            &which,
            helm,
            src,
        ),
        Problem::Enum(allowed) => {
            let allowed: Vec<String> = allowed.iter().map(Value::to_string).collect();
            let wanted = format!("one of {}", allowed.join(", "));
            invalid(
                f.shown, f.value, wanted, f.chart, f.at, c, &noun, &which, helm, src,
            )
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn invalid(
    shown: String,
    value: String,
    wanted: String,
    chart: Chart,
    at: YamlPath,
    c: &ClusterSpec,
    noun: &str,
    which: &str,
    helm: bool,
    src: &Source,
) -> Diagnostic {
    let severity = match chart {
        Chart::Base | Chart::Cni => Severity::Warning,
        _ => Severity::Error,
    };
    let effect = match chart {
        Chart::Mesh => "istiod would fail to load this mesh config after the upgrade",
        Chart::Gateway => "Helm refuses values the chart's schema does not allow",
        Chart::Istiod if helm => {
            "istiod's sidecar injector reads the chart's values with this API and would fail to load its configuration after the upgrade"
        }
        Chart::Istiod => "istioctl reads its values with this API and refuses the install",
        Chart::Base | Chart::Cni => "the chart renders it as given",
    };
    Diagnostic::new(
        severity,
        Code::ValuesInvalid,
        format!(
            "cluster `{}`: `{shown}` is {value}, but {noun} takes {wanted}{which}",
            c.name
        ),
    )
    .at(src, &at)
    .help(effect)
}

fn expected_text(kinds: &[Kind]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for k in kinds {
        if *k != Kind::Null && !seen.contains(&k.describe()) {
            seen.push(k.describe());
        }
    }
    match seen.split_last() {
        None => "null".to_string(),
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// A value as a message shows it: short, with its YAML type.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let shown: String = s.chars().take(40).collect();
            let cut = if shown.len() < s.len() { "..." } else { "" };
            format!("{:?} (a string)", format!("{shown}{cut}"))
        }
        Value::Bool(b) => format!("{b} (a boolean)"),
        Value::Number(n) => format!("{n} (a number)"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "a mapping".to_string(),
        Value::Null => "null".to_string(),
    }
}

/// One walk of a chart's values against one minor's data.
struct Walk<'a> {
    api: &'a Api,
    minor: Minor,
    chart: Chart,
    findings: &'a mut Vec<Finding>,
}

/// A step of a value's path inside the values: a key, or any item of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Item(usize),
}

impl Walk<'_> {
    fn value(&mut self, id: usize, v: &Value, at: &YamlPath, steps: &mut Vec<Step>) {
        let node = self.api.node(id);
        if v.is_null() {
            return;
        }
        if !node.kinds.contains(&Kind::Any) && !accepts(node, v) {
            self.found(at, steps, v, Problem::Type(node.kinds.clone()));
            return;
        }
        if let Some(allowed) = &node.allowed
            && !in_enum(node, allowed, v)
        {
            self.found(at, steps, v, Problem::Enum(allowed.clone()));
            return;
        }
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    if steps.is_empty() && self.chart == Chart::Istiod && k == "revisionTags" {
                        continue; // never carried: the plan decides which release renders tags
                    }
                    let chart = self.chart;
                    if steps.is_empty() && chart == Chart::Istiod && k == "meshConfig" {
                        self.chart = Chart::Mesh;
                    }
                    steps.push(Step::Key(k.clone()));
                    let child_at = at.key(k);
                    match self.api.field(node, k).or(node.values) {
                        Some(cid) => self.value(cid, child, &child_at, steps),
                        None if node.closed => {
                            let hint = self.hint(node, steps);
                            self.found(&child_at, steps, child, Problem::Unknown(hint));
                        }
                        None => {}
                    }
                    steps.pop();
                    self.chart = chart;
                }
            }
            Value::Array(items) => {
                if let Some(item) = node.items {
                    for (i, child) in items.iter().enumerate() {
                        steps.push(Step::Item(i));
                        self.value(item, child, &at.index(i), steps);
                        steps.pop();
                    }
                }
            }
            _ => {}
        }
    }

    fn found(&mut self, at: &YamlPath, steps: &[Step], v: &Value, problem: Problem) {
        self.findings.push(Finding {
            at: at.clone(),
            shown: shown(steps),
            chart: self.chart,
            problem,
            value: describe(v),
        });
    }

    /// What more there is to say about an unknown key: the minor that removed it, the first
    /// that knows it, or the known key it is likely a misspelling of.
    fn hint(&self, node: &Node, steps: &[Step]) -> Option<String> {
        let keys: Option<Vec<&str>> = steps
            .iter()
            .map(|s| match s {
                Step::Key(k) => Some(k.as_str()),
                Step::Item(_) => None,
            })
            .collect();
        if let Some(keys) = keys {
            let known_in = |m: Minor| {
                self.api
                    .charts(m)
                    .and_then(|c| self.chart.root(c))
                    .and_then(|root| self.api.lookup(root, &keys))
                    .is_some()
            };
            if let Some(last) = self
                .api
                .minors()
                .rev()
                .find(|m| *m < self.minor && known_in(*m))
            {
                let removed = self.api.minors().find(|m| *m > last).unwrap_or(self.minor);
                let chart = match self.chart {
                    Chart::Istiod | Chart::Mesh => "istiod",
                    Chart::Base => "base",
                    Chart::Gateway => "gateway",
                    Chart::Cni => "cni",
                };
                return Some(
                    match self.api.removal_note(chart, removed, &keys.join(".")) {
                        Some((note, release)) => format!(
                            "Istio {removed} removed it (Istio {last} still knows it); Istio {release}'s release note says so: istio/istio {note}"
                        ),
                        None => format!(
                            "Istio {removed} removed it (Istio {last} still knows it): see the upgrade notes of {removed} for what replaces it"
                        ),
                    },
                );
            }
            if let Some(first) = self.api.minors().find(|m| *m > self.minor && known_in(*m)) {
                return Some(format!("Istio {first} is the first version that knows it"));
            }
        }
        let Some(Step::Key(key)) = steps.last() else {
            return None;
        };
        suggest(key, node.fields.keys().map(String::as_str)).map(|s| format!("did you mean `{s}`?"))
    }
}

fn shown(steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        match s {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Item(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Whether one of the node's kinds takes `v`.
fn accepts(node: &Node, v: &Value) -> bool {
    node.kinds.iter().any(|k| match (k, v) {
        (Kind::Any, _) | (Kind::Null, Value::Null) => true,
        (Kind::Bool, Value::Bool(_)) => true,
        (Kind::Int | Kind::Pint, Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        (Kind::Num | Kind::Pnum, Value::Number(_)) => true,
        // protobuf JSON takes 64-bit integers (and any number) as strings too; an enum's name
        // is a string, checked against the enumeration below.
        (Kind::Pint, Value::String(s)) => s.parse::<i128>().is_ok(),
        (Kind::Pnum, Value::String(s)) => {
            s.parse::<f64>().is_ok_and(f64::is_finite)
                || ["NaN", "Infinity", "-Infinity"].contains(&s.as_str())
        }
        (Kind::Str, Value::String(_)) => true,
        (Kind::Dur, Value::String(s)) => is_go_duration(s),
        (Kind::Obj, Value::Object(_)) => true,
        (Kind::List, Value::Array(_)) => true,
        _ => false,
    })
}

/// Whether `v` is one of an enumeration's values; a protobuf enumeration also takes a number.
fn in_enum(node: &Node, allowed: &[Value], v: &Value) -> bool {
    allowed.contains(v) || (node.kinds.contains(&Kind::Pint) && v.is_number())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(s: &str) -> Minor {
        s.parse().unwrap()
    }

    /// The findings of `values` (istiod values) against `minor`, as (path, unknown?) pairs.
    fn findings(chart: Chart, minor: &str, values: Value) -> Vec<(String, String)> {
        let api = Api::embedded();
        let charts = api.charts(m(minor)).unwrap();
        let mut out = Vec::new();
        let mut walk = Walk {
            api,
            minor: m(minor),
            chart,
            findings: &mut out,
        };
        walk.value(
            chart.root(charts).unwrap(),
            &values,
            &YamlPath::root(),
            &mut Vec::new(),
        );
        out.into_iter()
            .map(|f| {
                let what = match f.problem {
                    Problem::Unknown(h) => format!("unknown {}", h.unwrap_or_default()),
                    Problem::Type(k) => format!("type {}", expected_text(&k)),
                    Problem::Enum(_) => "enum".to_string(),
                };
                (f.shown, what)
            })
            .collect()
    }

    #[test]
    fn correct_values_give_no_finding() {
        let values = json!({
            "pilot": {"autoscaleMin": 2, "env": {"ANY_NAME": "x"}, "resources": {"requests": {"cpu": "500m"}}},
            "global": {"proxy": {"holdApplicationUntilProxyStarts": true}, "imagePullSecrets": ["a"]},
            "meshConfig": {
                "enable_auto_mtls": true,
                "accessLogEncoding": "JSON",
                "defaultConfig": {"drainDuration": "45s", "concurrency": "2", "proxyMetadata": {"K": "v"}},
                "extensionProviders": [{"name": "otel", "opentelemetry": {"service": "otel.ns", "port": 4317}}],
            },
        });
        for minor in ["1.20", "1.22"] {
            assert_eq!(
                findings(Chart::Istiod, minor, values.clone()),
                vec![],
                "{minor}"
            );
        }
        // From 1.24 the chart also takes pilot's keys at the top level.
        let flat = json!({"autoscaleMin": 2, "pilot": {"autoscaleMin": 2}});
        assert_eq!(findings(Chart::Istiod, "1.24", flat.clone()), vec![]);
        assert_eq!(findings(Chart::Istiod, "1.23", flat)[0].0, "autoscaleMin");
    }

    #[test]
    fn each_kind_of_mistake_is_found_where_it_is() {
        let values = json!({
            "meshConfig": {
                "accessLogEncoding": 1,
                "defaultConfig": {"holdApplicationUntilProxyStarts": "on", "drainDuration": "45 seconds"},
                "extensionProviders": [{"name": "otel", "opentelemetry": {"port": "x"}}],
                "enableAutoMtl": true,
            },
            "global": {"hub": 5},
        });
        let got = findings(Chart::Istiod, "1.20", values);
        let expect = [
            ("global.hub", "type a string"),
            (
                "meshConfig.defaultConfig.drainDuration",
                "type a duration such as 10s, 500ms or 1m30s",
            ),
            (
                "meshConfig.defaultConfig.holdApplicationUntilProxyStarts",
                "type a boolean (true or false, without quotes)",
            ),
            (
                "meshConfig.enableAutoMtl",
                "unknown did you mean `enableAutoMtls`?",
            ),
            (
                "meshConfig.extensionProviders[0].opentelemetry.port",
                "type an integer",
            ),
        ];
        let mut got = got;
        got.sort();
        assert_eq!(
            got,
            expect
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn unknown_keys_say_which_minor_removed_them_or_first_knows_them() {
        let got = findings(
            Chart::Istiod,
            "1.24",
            json!({"global": {"autoscalingv2API": true}}),
        );
        assert!(
            got[0]
                .1
                .contains("Istio 1.24 removed it (Istio 1.23 still knows it)"),
            "{got:?}"
        );
        let got = findings(Chart::Istiod, "1.23", json!({"autoscaleMin": 2}));
        assert!(
            got[0]
                .1
                .contains("Istio 1.24 is the first version that knows it"),
            "{got:?}"
        );
    }

    #[test]
    fn cni_values_follow_the_charts_keys() {
        // 1.24 flattened the chart; `cni.<key>` is copied to the top level.
        let ok =
            json!({"cni": {"excludeNamespaces": ["kube-system"]}, "logging": {"level": "info"}});
        assert_eq!(findings(Chart::Cni, "1.24", ok), vec![]);
        let got = findings(Chart::Cni, "1.24", json!({"cni": {"logLevel": "info"}}));
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0]
                .1
                .contains("Istio 1.23 removed it (Istio 1.22 still knows it)"),
            "{got:?}"
        );
    }

    #[test]
    fn gateway_values_follow_the_charts_schema() {
        let got = findings(
            Chart::Gateway,
            "1.26",
            json!({"kind": "DaemonSet", "replicaCount": 2, "autoscaling": {"enabled": false}}),
        );
        assert_eq!(got, vec![]);
        let got = findings(
            Chart::Gateway,
            "1.26",
            json!({"kind": "Pod", "replicaCount": "2", "replicas": 2}),
        );
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["kind", "replicaCount", "replicas"]);
    }

    #[test]
    fn written_values_leave_out_what_the_target_does_not_know() {
        let values: BTreeMap<String, Value> = serde_json::from_value(json!({
            "pilot": {"configNamespace": "x", "autoscaleMin": 2, "env": {"ANY": "1"}},
            "sidecarInjectorWebhook": {"useLegacySelectors": false, "reinvocationPolicy": "IfNeeded"},
            "meshConfig": {"enableAutoMtl": true, "defaultConfig": {"drainDuration": "5s"}},
            "revisionTags": ["a"],
            "misspelt": 1,
        }))
        .unwrap();
        let kept = Value::Object(carried_istiod(&values, m("1.23")));
        assert_eq!(
            kept,
            json!({
                "pilot": {"autoscaleMin": 2, "env": {"ANY": "1"}},
                "sidecarInjectorWebhook": {"reinvocationPolicy": "IfNeeded"},
                "meshConfig": {"defaultConfig": {"drainDuration": "5s"}},
                "revisionTags": ["a"],
            })
        );
        // 1.22 still knows the keys 1.23 removed.
        let kept = Value::Object(carried_istiod(&values, m("1.22")));
        assert_eq!(kept["pilot"]["configNamespace"], json!("x"));
        // Without a record of the target, the values as they are.
        assert_eq!(carried_istiod(&values, m("1.99")).len(), values.len());
    }

    /// Values built from the data itself, with keys misspelt, made up or taken from another
    /// minor, and scalars of every type.
    fn random_values(api: &Api, id: usize, seed: &mut u64, depth: usize) -> Value {
        let mut next = move |n: u64| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed % n.max(1)
        };
        let node = api.node(id);
        if depth > 6 || node.fields.is_empty() || next(5) == 0 {
            return match next(6) {
                0 => json!(true),
                1 => json!(3),
                2 => json!("on"),
                3 => json!("10s"),
                4 => json!(["x"]),
                _ => json!({"free": 1}),
            };
        }
        let keys: Vec<(&String, &usize)> = node.fields.iter().collect();
        let mut map = Map::new();
        for _ in 0..next(4) + 1 {
            let (k, child) = keys[next(keys.len() as u64) as usize];
            let mut s2 = next(u64::MAX - 1) + 1;
            let v = random_values(api, *child, &mut s2, depth + 1);
            let key = match next(6) {
                0 => format!("{k}x"),
                1 => "madeUp".to_string(),
                _ => k.clone(),
            };
            map.insert(key, v);
        }
        Value::Object(map)
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 300, failure_persistence: None, ..Default::default() })]

        /// What meshplan writes for a target holds no key that target does not know: the
        /// check and the values it writes agree.
        #[test]
        fn written_values_hold_no_key_the_target_does_not_know(seed in 1u64.., pick in 0usize..64) {
            let api = Api::embedded();
            let minors: Vec<Minor> = api.minors().collect();
            let minor = minors[pick % minors.len()];
            let from = minors[(pick * 7 + 3) % minors.len()];
            let root = api.charts(from).unwrap().istiod;
            let mut s = seed;
            let Value::Object(generated) = random_values(api, root, &mut s, 0) else {
                return Ok(());
            };
            let values: BTreeMap<String, Value> = generated.into_iter().collect();
            let written = Value::Object(carried_istiod(&values, minor));
            let left = findings(Chart::Istiod, &minor.to_string(), written);
            let unknown: Vec<_> = left.iter().filter(|(_, w)| w.starts_with("unknown")).collect();
            proptest::prop_assert!(unknown.is_empty(), "{minor}: {unknown:?}");
        }
    }
}
