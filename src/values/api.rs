//! What the charts of each Istio minor accept as values: the data `src/data/values-api.py`
//! derives from Istio's sources (the operator's values API, the charts' values.yaml and
//! templates, istio/api's MeshConfig and ProxyConfig, the gateway chart's values.schema.json),
//! embedded as interned nodes so what does not change between minors is stored once.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

use crate::version::Minor;

/// What a value may be. `PInt`/`PNum` are protobuf JSON numbers, which may also be written as
/// numeric strings; `Int`/`Num` are JSON Schema's, which may not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Any,
    Bool,
    Int,
    Pint,
    Num,
    Pnum,
    Str,
    /// A Go duration (`10s`, `1m30s`), as istiod's protobuf JSON reader parses Durations.
    Dur,
    Obj,
    List,
    Null,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Any => "any value",
            Kind::Bool => "a boolean (true or false, without quotes)",
            Kind::Int | Kind::Pint => "an integer",
            Kind::Num | Kind::Pnum => "a number",
            Kind::Str => "a string",
            Kind::Dur => "a duration such as 10s, 500ms or 1m30s",
            Kind::Obj => "a mapping",
            Kind::List => "a list",
            Kind::Null => "null",
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Node {
    #[serde(rename = "t")]
    pub kinds: Vec<Kind>,
    /// Known keys of a mapping.
    #[serde(rename = "f", default)]
    pub fields: BTreeMap<String, usize>,
    /// Whether keys other than `fields` are unknown (else they are free, or typed by `values`).
    #[serde(rename = "c", default)]
    pub closed: bool,
    /// The type of every other key's value (a protobuf map, JSON Schema additionalProperties).
    #[serde(rename = "v")]
    pub values: Option<usize>,
    /// The type of a list's items.
    #[serde(rename = "i")]
    pub items: Option<usize>,
    /// The values an enumeration allows.
    #[serde(rename = "e")]
    pub allowed: Option<Vec<Value>>,
}

/// The roots of one minor's charts.
#[derive(Debug, Deserialize)]
pub struct Charts {
    /// The istio/istio tag the data was read at.
    pub from: String,
    pub istiod: usize,
    pub base: usize,
    pub gateway: Option<usize>,
    pub cni: Option<usize>,
}

#[derive(Debug, Deserialize)]
pub struct Api {
    minors: BTreeMap<String, Charts>,
    /// chart -> minor -> dotted key -> the istio/istio release note announcing the key's removal
    /// in that minor (`releasenotes/notes/<file>@<the minor whose notes carry it>`).
    #[serde(rename = "removalNotes")]
    removal_notes: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
    nodes: Vec<Node>,
    #[serde(skip)]
    by_minor: BTreeMap<Minor, String>,
}

const DATA: &str = include_str!("../data/values-api.json");

impl Api {
    /// The embedded data. It is generated and tested, so a parse failure is a build defect.
    pub fn embedded() -> &'static Api {
        static API: OnceLock<Api> = OnceLock::new();
        API.get_or_init(|| {
            let mut api: Api =
                serde_json::from_str(DATA).expect("src/data/values-api.json is valid");
            api.by_minor = api
                .minors
                .keys()
                .filter_map(|k| Some((k.parse::<Minor>().ok()?, k.clone())))
                .collect();
            api
        })
    }

    pub fn charts(&self, minor: Minor) -> Option<&Charts> {
        self.minors.get(self.by_minor.get(&minor)?)
    }

    pub fn node(&self, id: usize) -> &Node {
        &self.nodes[id]
    }

    /// The release note that announces `chart`'s key `dotted` removed in `minor`: its path in
    /// istio/istio and the minor whose notes carry it.
    pub fn removal_note(&self, chart: &str, minor: Minor, dotted: &str) -> Option<(&str, &str)> {
        self.removal_notes
            .get(chart)?
            .get(&minor.to_string())?
            .get(dotted)?
            .split_once('@')
    }

    /// The minors the data covers, oldest first.
    pub fn minors(&self) -> impl DoubleEndedIterator<Item = Minor> + '_ {
        self.by_minor.keys().copied()
    }

    /// The field `key` of `node`, by its name or, for protobuf fields, its snake_case spelling.
    pub fn field(&self, node: &Node, key: &str) -> Option<usize> {
        node.fields
            .get(key)
            .or_else(|| {
                key.contains('_')
                    .then(|| node.fields.get(&camel(key)))
                    .flatten()
            })
            .copied()
    }

    /// The node at `path` under `root`, following mappings only.
    pub fn lookup(&self, root: usize, path: &[&str]) -> Option<usize> {
        let mut id = root;
        for key in path {
            id = self.field(self.node(id), key)?;
        }
        Some(id)
    }
}

/// `enable_auto_mtls` as protobuf JSON names it: `enableAutoMtls`.
fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `s` is a Go duration, as `time.ParseDuration` reads it: `0`, or an optional sign and
/// one or more decimal numbers each with a unit (ns, us, µs, ms, s, m, h).
pub fn is_go_duration(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"]
            .iter()
            .filter(|u| rest.starts_with(**u))
            .max_by_key(|u| u.len());
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Minor {
        s.parse().unwrap()
    }

    #[test]
    fn durations_as_go_reads_them() {
        for ok in [
            "0",
            "10s",
            "1m30s",
            "1.5h",
            "500ms",
            "-2s",
            "1h2m3s4ms5us6ns",
            ".5s",
        ] {
            assert!(is_go_duration(ok), "{ok}");
        }
        for bad in ["", "10", "s", "1x", "1..5s", "ten seconds", "1s ", "+"] {
            assert!(!is_go_duration(bad), "{bad}");
        }
    }

    #[test]
    fn snake_case_protobuf_names_are_found() {
        assert_eq!(camel("enable_auto_mtls"), "enableAutoMtls");
        let api = Api::embedded();
        let root = api.charts(m("1.20")).unwrap().istiod;
        assert!(
            api.lookup(root, &["meshConfig", "enable_auto_mtls"])
                .is_some()
        );
        assert!(
            api.lookup(root, &["meshConfig", "enableAutoMtls"])
                .is_some()
        );
    }

    #[test]
    fn the_data_covers_every_minor_meshplan_writes_values_for() {
        let api = Api::embedded();
        let minors: Vec<String> = api.minors().map(|m| m.to_string()).collect();
        for minor in ["1.8", "1.12", "1.20", "1.24", "1.28"] {
            assert!(minors.iter().any(|m| m == minor), "{minor} in {minors:?}");
        }
        // The gateway chart exists from 1.12; its schema is part of the data from then on.
        assert!(api.charts(m("1.11")).unwrap().gateway.is_none());
        assert!(api.charts(m("1.12")).unwrap().gateway.is_some());
    }

    #[test]
    fn facts_read_from_istios_sources() {
        let api = Api::embedded();
        let at = |minor: &str, path: &[&str]| {
            api.lookup(api.charts(m(minor)).unwrap().istiod, path)
                .map(|id| api.node(id).kinds.clone())
        };
        // ProxyConfig.holdApplicationUntilProxyStarts is a BoolValue in every version that has it.
        assert_eq!(
            at(
                "1.15",
                &[
                    "meshConfig",
                    "defaultConfig",
                    "holdApplicationUntilProxyStarts"
                ]
            ),
            Some(vec![Kind::Bool])
        );
        assert_eq!(
            at("1.20", &["meshConfig", "defaultConfig", "drainDuration"]),
            Some(vec![Kind::Dur])
        );
        // Removed from the operator's values API in 1.23 (istio/istio#51987's fields).
        assert!(at("1.22", &["sidecarInjectorWebhook", "useLegacySelectors"]).is_some());
        assert!(at("1.23", &["sidecarInjectorWebhook", "useLegacySelectors"]).is_none());
        // 1.24 flattened the chart: `pilot.*` keys are also top-level keys.
        assert!(at("1.23", &["autoscaleEnabled"]).is_none());
        assert!(at("1.24", &["autoscaleEnabled"]).is_some());
        assert!(at("1.24", &["pilot", "autoscaleEnabled"]).is_some());
        // Chart internals are not for users.
        assert!(at("1.24", &["_internal_defaults_do_not_set"]).is_none());
    }
}
