//! The Sail Operator's releases, as data (`src/data/sail-releases.yaml`, generated from
//! istio-ecosystem/sail-operator by `src/data/sail-releases.py`): which Istio versions each
//! release's `Istio` CRD accepts. A plan for a Sail-managed cluster may install only those,
//! and may roll back only to one of them.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::version::{IstioVersion, Minor};

const DATA: &str = include_str!("data/sail-releases.yaml");

#[derive(Deserialize)]
struct File {
    releases: BTreeMap<String, Vec<String>>,
}

fn releases() -> &'static BTreeMap<String, Vec<IstioVersion>> {
    static RELEASES: OnceLock<BTreeMap<String, Vec<IstioVersion>>> = OnceLock::new();
    RELEASES.get_or_init(|| {
        let f: File = serde_yaml::from_str(DATA).expect("src/data/sail-releases.yaml is valid");
        f.releases
            .into_iter()
            .map(|(k, vs)| {
                let vs = vs
                    .iter()
                    .map(|v| v.parse().expect("sail-releases.yaml holds versions"))
                    .collect();
                (k, vs)
            })
            .collect()
    })
}

/// The Istio versions Sail Operator `release` installs, oldest first (`None`: a release
/// meshplan does not know).
pub fn supported(release: &str) -> Option<&'static [IstioVersion]> {
    releases().get(release).map(Vec::as_slice)
}

/// The Sail Operator releases meshplan knows, oldest first.
pub fn known_releases() -> Vec<&'static str> {
    let mut v: Vec<&str> = releases().keys().map(String::as_str).collect();
    v.sort_by_key(|r| {
        r.split('.')
            .map(|x| x.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>()
    });
    v
}

/// The newest version of `minor` that `release` installs.
pub fn newest_patch(release: &str, minor: Minor) -> Option<IstioVersion> {
    supported(release)?
        .iter()
        .filter(|v| v.minor() == minor)
        .max()
        .cloned()
}

/// The oldest Sail Operator releases that install `v` (for help texts).
pub fn releases_installing(v: &IstioVersion) -> Vec<&'static str> {
    known_releases()
        .into_iter()
        .filter(|r| supported(r).is_some_and(|s| s.contains(v)))
        .collect()
}

/// The name Sail gives the revision of `Istio` resource `name` at `version`
/// (`<name>-v<version with dashes>`: `default-v1-27-3`).
pub fn revision_name(name: &str, version: &IstioVersion) -> String {
    format!("{name}-v{}", version.to_string().replace('.', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_matches_the_crd_enums_read_at_the_tags() {
        let v: IstioVersion = "1.24.3".parse().unwrap();
        assert!(supported("1.0.0").unwrap().contains(&v));
        // 1.27.0 and 1.27.1 list no 1.26.1.
        let missing: IstioVersion = "1.26.1".parse().unwrap();
        assert!(!supported("1.27.0").unwrap().contains(&missing));
        assert!(supported("1.27.2").unwrap().contains(&missing));
        assert_eq!(
            newest_patch("1.28.3", "1.27".parse().unwrap()).map(|v| v.to_string()),
            Some("1.27.5".to_string())
        );
        assert_eq!(supported("9.9.9"), None);
        assert_eq!(known_releases().first(), Some(&"1.0.0"));
    }

    #[test]
    fn revision_names_follow_the_operator() {
        assert_eq!(
            revision_name("default", &"1.27.3".parse().unwrap()),
            "default-v1-27-3"
        );
    }
}
