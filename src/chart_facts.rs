//! Facts about Istio's Helm charts that change between releases (which Service fields the
//! gateway chart renders, which templates render revision tags, ...). Data, not code:
//! `src/data/chart-facts.yaml` is generated from Istio's sources at every release tag by
//! `src/data/chart-facts.py`, so the next Istio release is one command.

use std::sync::OnceLock;

use serde::Deserialize;

use crate::version::IstioVersion;

const TEXT: &str = include_str!("data/chart-facts.yaml");

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Facts {
    gateway: Vec<GatewayEntry>,
    istiod: Vec<IstiodEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GatewayEntry {
    from: String,
    service_fields: Vec<String>,
    schema_rejects_values: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IstiodEntry {
    from: String,
    revision_tag_templates: Vec<String>,
    webhook_annotations: bool,
    compatibility_versions: Vec<String>,
    gateway_api: String,
}

fn facts() -> &'static Facts {
    static FACTS: OnceLock<Facts> = OnceLock::new();
    FACTS.get_or_init(|| serde_yaml::from_str(TEXT).expect("embedded chart facts are valid"))
}

/// The entry in effect at `v`: the last whose `from` is at or before it.
fn at<'a, T>(entries: &'a [T], from: impl Fn(&T) -> &str, v: &IstioVersion) -> Option<&'a T> {
    entries
        .iter()
        .rfind(|e| from(e).parse::<IstioVersion>().is_ok_and(|f| f.0 <= v.0))
}

/// The gateway chart of version `v` renders the Service field `service.<field>`.
pub fn gateway_service_field(v: &IstioVersion, field: &str) -> bool {
    at(&facts().gateway, |e| &e.from, v)
        .is_some_and(|e| e.service_fields.iter().any(|f| f == field))
}

/// The gateway chart of version `v` has a values.schema.json that Helm 3.18.5 and later apply
/// to every key, rejecting the chart's own defaults (istio/istio#57354): it needs
/// `--skip-schema-validation`.
pub fn gateway_schema_rejects_values(v: &IstioVersion) -> bool {
    at(&facts().gateway, |e| &e.from, v).is_some_and(|e| e.schema_rejects_values)
}

/// The istiod chart's templates that render revision tags at version `v`.
pub fn revision_tag_templates(v: &IstioVersion) -> Vec<String> {
    at(&facts().istiod, |e| &e.from, v)
        .map(|e| e.revision_tag_templates.clone())
        .unwrap_or_default()
}

/// A revision tag of the istiod chart of version `v` is also a Service
/// (`istiod-revision-tag-<tag>`, 1.28+), annotated like istiod's own with `serviceAnnotations`.
pub fn istiod_tag_services(v: &IstioVersion) -> bool {
    revision_tag_templates(v)
        .iter()
        .any(|t| t.ends_with("revision-tags-svc.yaml"))
}

/// The istiod chart of version `v` annotates its webhooks with
/// `sidecarInjectorWebhookAnnotations` (so they can be kept when the release goes).
pub fn istiod_webhook_annotations(v: &IstioVersion) -> bool {
    at(&facts().istiod, |e| &e.from, v).is_some_and(|e| e.webhook_annotations)
}

/// The `compatibilityVersion` values the istiod chart of `v` ships a profile for.
pub fn compatibility_versions(v: &IstioVersion) -> Vec<String> {
    at(&facts().istiod, |e| &e.from, v)
        .map(|e| e.compatibility_versions.clone())
        .unwrap_or_default()
}

/// The Gateway API release istiod `v` is built against: the CRD version it expects at least
/// (empty when unknown).
pub fn gateway_api(v: &IstioVersion) -> String {
    at(&facts().istiod, |e| &e.from, v)
        .map(|e| e.gateway_api.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> IstioVersion {
        s.parse().unwrap()
    }

    #[test]
    fn facts_follow_the_last_change() {
        assert!(!gateway_service_field(&v("1.12.1"), "annotations"));
        assert!(gateway_service_field(&v("1.12.2"), "annotations"));
        assert!(gateway_service_field(&v("1.18.5"), "ipFamilies"));
        assert!(!gateway_service_field(&v("1.19.0"), "ipFamilies"));
        assert!(gateway_service_field(&v("1.19.1"), "ipFamilies"));
        assert_eq!(
            revision_tag_templates(&v("1.27.3")),
            vec!["templates/revision-tags.yaml"]
        );
        assert_eq!(revision_tag_templates(&v("1.28.0")).len(), 2);
        assert!(istiod_tag_services(&v("1.28.0")) && !istiod_tag_services(&v("1.27.3")));
        assert!(!istiod_webhook_annotations(&v("1.23.6")));
        assert_eq!(compatibility_versions(&v("1.21.6")), vec!["1.20"]);
        assert_eq!(
            compatibility_versions(&v("1.24.6")),
            vec!["1.21", "1.22", "1.23"]
        );
        assert!(compatibility_versions(&v("1.20.8")).is_empty());
        assert_eq!(gateway_api(&v("1.28.1")), "1.4.0");
        for (version, broken) in [
            ("1.20.8", false),
            ("1.21.0", true),
            ("1.24.6", true),
            ("1.25.4", true),
            ("1.25.5", false),
            ("1.26.3", true),
            ("1.26.4", false),
            ("1.27.0", true),
            ("1.27.1", false),
        ] {
            assert_eq!(
                gateway_schema_rejects_values(&v(version)),
                broken,
                "{version}"
            );
        }
        assert!(istiod_webhook_annotations(&v("1.24.0")));
    }
}
