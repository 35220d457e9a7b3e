//! The Istio release catalog: which minors exist, what they support, and which direct
//! upgrades Istio documents. The data lives in `src/data/istio-releases.yaml`, embedded in the
//! binary; `--catalog FILE` replaces it at run time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::schema;
use crate::source::{Source, YamlPath};
use crate::version::{IstioVersion, Minor};

pub const EMBEDDED: &str = include_str!("data/istio-releases.yaml");
pub const EMBEDDED_NAME: &str = "<built-in catalog>";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HelmMaturity {
    None,
    Alpha,
    Beta,
    Stable,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubernetesSupport {
    pub supported: Vec<String>,
    #[serde(default)]
    pub tested: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpgradeFrom {
    #[serde(default)]
    pub in_place: Vec<String>,
    #[serde(default)]
    pub canary: Vec<String>,
    #[serde(default)]
    pub canary_alpha: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRelease {
    pub minor: String,
    pub ga: String,
    #[serde(default)]
    pub eol: Option<String>,
    pub latest_patch: String,
    pub kubernetes: KubernetesSupport,
    pub in_cluster_operator: bool,
    pub helm: HelmMaturity,
    pub gateway_chart: bool,
    pub crd_templates: bool,
    pub upgrade_from: UpgradeFrom,
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCatalog {
    #[allow(dead_code)]
    schema_version: u32,
    releases: Vec<RawRelease>,
}

/// A minor release, with its fields parsed.
#[derive(Clone, Debug)]
pub struct Release {
    pub minor: Minor,
    pub ga: Date,
    pub eol: Option<Date>,
    pub latest_patch: IstioVersion,
    pub kubernetes: Vec<Minor>,
    pub kubernetes_tested: Vec<Minor>,
    pub in_cluster_operator: bool,
    pub helm: HelmMaturity,
    pub gateway_chart: bool,
    pub crd_templates: bool,
    pub from_in_place: Vec<Minor>,
    pub from_canary: Vec<Minor>,
    pub from_canary_alpha: Vec<Minor>,
    pub notes: Vec<String>,
    /// The release as written, for `meshplan versions --output json`.
    pub raw: RawRelease,
    /// Its position in the catalog file's `releases`, for diagnostics.
    pub index: usize,
}

/// How a cluster's Kubernetes version relates to a release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum KubeSupport {
    Supported,
    Tested,
    Unsupported,
}

impl Release {
    pub fn kube_support(&self, k8s: Minor) -> KubeSupport {
        if self.kubernetes.contains(&k8s) {
            KubeSupport::Supported
        } else if self.kubernetes_tested.contains(&k8s) {
            KubeSupport::Tested
        } else {
            KubeSupport::Unsupported
        }
    }
}

/// A calendar date, compared as (year, month, day).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Date {
    pub fn parse(s: &str) -> Option<Date> {
        let mut it = s.split('-');
        let (Some(y), Some(m), Some(d), None) = (it.next(), it.next(), it.next(), it.next()) else {
            return None;
        };
        let date = Date {
            year: y.parse().ok()?,
            month: m.parse().ok()?,
            day: d.parse().ok()?,
        };
        let leap = date.year % 4 == 0 && (date.year % 100 != 0 || date.year % 400 == 0);
        let days_in_month = match date.month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        ((1..=days_in_month).contains(&date.day) && y.len() == 4 && m.len() == 2 && d.len() == 2)
            .then_some(date)
    }

    /// Days since 1970-01-01 (proleptic Gregorian).
    pub fn to_days(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    pub fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Date {
            year: i32::try_from(year).unwrap_or(i32::MAX),
            month: u32::try_from(month).unwrap_or(1),
            day: u32::try_from(day).unwrap_or(1),
        }
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// When a release's support ends, and whether the catalog says so or meshplan derived it from
/// Istio's policy ("supported until 6 weeks after the N+2 minor release").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndOfLife {
    Stated(Date),
    Derived(Date),
    Unknown,
}

#[derive(Debug)]
pub struct Catalog {
    pub releases: BTreeMap<Minor, Release>,
    /// Where the catalog came from, for messages.
    pub origin: String,
}

/// What a catalog must mean, beyond its shape: dates in order, and upgrade edges that go from
/// older minors the catalog knows, no further than Istio ever allowed. A catalog that breaks
/// these would make meshplan plan paths Istio does not support.
fn check_meaning(releases: &BTreeMap<Minor, Release>, src: &Source, diags: &mut Diagnostics) {
    let first = releases.keys().next().copied();
    for r in releases.values() {
        let at = YamlPath::root().key("releases").index(r.index);
        let minor = r.minor;
        if let Some(eol) = r.eol
            && eol.to_days() < r.ga.to_days()
        {
            diags.push(
                Diagnostic::error(
                    Code::CatalogInvalid,
                    format!(
                        "{minor} reaches its end of life ({eol}) before its release ({})",
                        r.ga
                    ),
                )
                .at(src, &at.key("eol"))
                .help("an end-of-life date comes after the GA date"),
            );
        }
        let raw = &r.raw.upgrade_from;
        for (field, listed, widest) in [
            ("inPlace", &raw.in_place, 1),
            ("canary", &raw.canary, 2),
            ("canaryAlpha", &raw.canary_alpha, 2),
        ] {
            for (j, text) in listed.iter().enumerate() {
                let Ok(f) = text.parse::<Minor>() else {
                    continue;
                };
                let distance = minor.distance_from(f);
                let problem = if distance <= 0 {
                    Some((
                        format!("{minor} lists `{f}` in upgradeFrom.{field}: an upgrade goes from an older minor"),
                        "list only older minors; an edge from the same or a newer minor would let paths go round in circles or backwards".to_string(),
                    ))
                } else if distance > widest {
                    Some((
                        format!(
                            "{minor} lists `{f}` in upgradeFrom.{field}: {distance} minors at once, more than Istio supports for {field} upgrades ({widest})"
                        ),
                        "in-place upgrades go one minor at a time, canary upgrades at most two"
                            .to_string(),
                    ))
                } else if first.is_some_and(|first| f >= first) && !releases.contains_key(&f) {
                    Some((
                        format!(
                            "{minor} lists `{f}` in upgradeFrom.{field}, a minor the catalog does not list"
                        ),
                        format!("add {f} to the catalog, or remove the edge"),
                    ))
                } else {
                    None
                };
                if let Some((message, help)) = problem {
                    diags.push(
                        Diagnostic::error(Code::CatalogInvalid, message)
                            .at(src, &at.key("upgradeFrom").key(field).index(j))
                            .help(help),
                    );
                }
            }
        }
    }
}

impl Catalog {
    /// The catalog compiled into the binary.
    pub fn embedded() -> Catalog {
        let src = Source::new(EMBEDDED_NAME, EMBEDDED);
        match Catalog::from_source(&src) {
            Ok(c) => c,
            // The embedded catalog is checked by the tests; failing here is a build defect.
            Err(d) => panic!(
                "built-in catalog is invalid: {:?}",
                d.0.first().map(|d| &d.message)
            ),
        }
    }

    /// Parses and checks a catalog, reporting every problem with its location.
    pub fn from_source(src: &Source) -> Result<Catalog, Diagnostics> {
        Self::from_source_unlocated(src).map_err(|mut d| {
            d.locate(src);
            d
        })
    }

    fn from_source_unlocated(src: &Source) -> Result<Catalog, Diagnostics> {
        let value = schema::parse_yaml(src, schema::Kind::Catalog)?;
        let mut diags = schema::validate(src, &value, schema::Kind::Catalog);
        if diags.has_errors() {
            return Err(diags);
        }
        let raw: RawCatalog = match serde_json::from_value(value) {
            Ok(r) => r,
            Err(e) => {
                diags.push(
                    Diagnostic::error(Code::CatalogInvalid, format!("catalog cannot be read: {e}"))
                        .at(src, &YamlPath::root()),
                );
                return Err(diags);
            }
        };
        let mut releases = BTreeMap::new();
        for (i, r) in raw.releases.into_iter().enumerate() {
            let at = YamlPath::root().key("releases").index(i);
            let mut bad = |field: &str, msg: String| {
                diags.push(Diagnostic::error(Code::CatalogInvalid, msg).at(src, &at.key(field)));
            };
            let minors = |list: &[String]| -> Result<Vec<Minor>, String> {
                let mut v = list
                    .iter()
                    .map(|s| s.parse::<Minor>())
                    .collect::<Result<Vec<_>, _>>()?;
                v.sort();
                Ok(v)
            };
            let minor = r.minor.parse::<Minor>();
            let latest = r.latest_patch.parse::<IstioVersion>();
            let ga = Date::parse(&r.ga);
            let eol = r.eol.as_deref().map(Date::parse);
            let k8s = minors(&r.kubernetes.supported);
            let tested = minors(&r.kubernetes.tested);
            let inpl = minors(&r.upgrade_from.in_place);
            let can = minors(&r.upgrade_from.canary);
            let alpha = minors(&r.upgrade_from.canary_alpha);
            match (minor, latest, ga, eol, k8s, tested, inpl, can, alpha) {
                (
                    Ok(minor),
                    Ok(latest),
                    Some(ga),
                    None | Some(Some(_)),
                    Ok(k8s),
                    Ok(tested),
                    Ok(inpl),
                    Ok(can),
                    Ok(alpha),
                ) => {
                    if latest.minor() != minor {
                        bad(
                            "latestPatch",
                            format!("latest patch `{latest}` is not a {minor} release"),
                        );
                        continue;
                    }
                    if releases.contains_key(&minor) {
                        bad("minor", format!("minor `{minor}` is listed twice"));
                        continue;
                    }
                    releases.insert(
                        minor,
                        Release {
                            minor,
                            ga,
                            eol: eol.flatten(),
                            latest_patch: latest,
                            kubernetes: k8s,
                            kubernetes_tested: tested,
                            in_cluster_operator: r.in_cluster_operator,
                            helm: r.helm,
                            gateway_chart: r.gateway_chart,
                            crd_templates: r.crd_templates,
                            from_in_place: inpl,
                            from_canary: can,
                            from_canary_alpha: alpha,
                            notes: r.notes.clone(),
                            raw: r,
                            index: i,
                        },
                    );
                }
                (minor, latest, ga, eol, k8s, tested, inpl, can, alpha) => {
                    if let Err(e) = minor {
                        bad("minor", e);
                    }
                    if let Err(e) = latest {
                        bad("latestPatch", e);
                    }
                    if ga.is_none() {
                        bad(
                            "ga",
                            format!("`{}` is not a date of the form YYYY-MM-DD", r.ga),
                        );
                    }
                    if let Some(None) = eol {
                        bad(
                            "eol",
                            format!(
                                "`{}` is not a date of the form YYYY-MM-DD",
                                r.eol.unwrap_or_default()
                            ),
                        );
                    }
                    for (field, res) in [
                        ("kubernetes", k8s),
                        ("kubernetes", tested),
                        ("upgradeFrom", inpl),
                        ("upgradeFrom", can),
                        ("upgradeFrom", alpha),
                    ] {
                        if let Err(e) = res {
                            bad(field, e);
                        }
                    }
                }
            }
        }
        if diags.has_errors() {
            return Err(diags);
        }
        check_meaning(&releases, src, &mut diags);
        if diags.has_errors() {
            return Err(diags);
        }
        Ok(Catalog {
            releases,
            origin: src.name.clone(),
        })
    }

    pub fn get(&self, minor: Minor) -> Option<&Release> {
        self.releases.get(&minor)
    }

    pub fn minors(&self) -> impl Iterator<Item = Minor> + '_ {
        self.releases.keys().copied()
    }

    pub fn first(&self) -> Option<Minor> {
        self.releases.keys().next().copied()
    }

    pub fn last(&self) -> Option<Minor> {
        self.releases.keys().next_back().copied()
    }

    /// When `minor`'s support ends: the catalog's date, or 42 days after the GA of minor + 2.
    pub fn end_of_life(&self, minor: Minor) -> EndOfLife {
        let Some(r) = self.get(minor) else {
            return EndOfLife::Unknown;
        };
        if let Some(eol) = r.eol {
            return EndOfLife::Stated(eol);
        }
        let n2 = Minor {
            major: minor.major,
            minor: minor.minor + 2,
        };
        match self.get(n2) {
            Some(next) => EndOfLife::Derived(Date::from_days(next.ga.to_days() + 42)),
            None => EndOfLife::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_covers_1_6_to_1_31() {
        let c = Catalog::embedded();
        assert_eq!(c.first().unwrap().to_string(), "1.6");
        assert_eq!(c.last().unwrap().to_string(), "1.31");
        assert_eq!(c.releases.len(), 26);
        // Every minor after the first names its predecessor as an in-place source, and every
        // source named exists (or is older than the catalog).
        for r in c.releases.values() {
            for m in r
                .from_in_place
                .iter()
                .chain(&r.from_canary)
                .chain(&r.from_canary_alpha)
            {
                assert!(m < &r.minor, "{} lists {m}", r.minor);
                assert!(
                    c.get(*m).is_some() || Some(*m) < c.first(),
                    "{} lists unknown {m}",
                    r.minor
                );
            }
            assert!(!r.kubernetes.is_empty(), "{}", r.minor);
            assert_eq!(r.latest_patch.minor(), r.minor);
        }
    }

    #[test]
    fn dates_round_trip() {
        for s in ["1970-01-01", "2024-02-29", "2026-11-24", "2000-12-31"] {
            let d = Date::parse(s).unwrap();
            assert_eq!(Date::from_days(d.to_days()).to_string(), s);
        }
        assert_eq!(Date::parse("2026-13-01"), None);
        assert_eq!(Date::parse("26-1-1"), None);
    }

    #[test]
    fn derives_end_of_life_from_policy() {
        let c = Catalog::embedded();
        let m = |s: &str| s.parse::<Minor>().unwrap();
        assert_eq!(
            c.end_of_life(m("1.20")),
            EndOfLife::Stated(Date::parse("2024-06-25").unwrap())
        );
        // 1.29 has no stated EOL; 1.31 went GA on 2026-08-31, so 1.29 ends 6 weeks later.
        assert_eq!(
            c.end_of_life(m("1.29")),
            EndOfLife::Derived(Date::parse("2026-10-12").unwrap())
        );
        assert_eq!(c.end_of_life(m("1.31")), EndOfLife::Unknown);
    }

    #[test]
    fn rejects_a_broken_catalog_with_locations() {
        let src = Source::new(
            "cat.yaml",
            "schemaVersion: 1\nreleases:\n  - minor: \"1.20\"\n    ga: \"2023-11-14\"\n    latestPatch: 1.21.0\n    kubernetes: {supported: [\"1.28\"]}\n    inClusterOperator: true\n    helm: beta\n    gatewayChart: true\n    crdTemplates: false\n    upgradeFrom: {}\n",
        );
        let err = Catalog::from_source(&src).unwrap_err();
        let d = &err.0[0];
        assert_eq!(d.code, Code::CatalogInvalid);
        assert_eq!(d.position.map(|p| p.line), Some(5));
    }

    fn release(minor: &str, ga: &str, eol: &str, from: &str) -> String {
        format!(
            "  - minor: \"{minor}\"\n    ga: \"{ga}\"\n{eol}    latestPatch: {minor}.0\n    kubernetes: {{supported: [\"1.28\"]}}\n    inClusterOperator: false\n    helm: stable\n    gatewayChart: true\n    crdTemplates: true\n    upgradeFrom: {from}\n"
        )
    }

    #[test]
    fn rejects_catalogs_that_contradict_themselves() {
        let cases = [
            (release("1.20", "2024-02-30", "", "{}"), "not a date"),
            (
                release("1.20", "2024-02-01", "    eol: \"2023-01-01\"\n", "{}"),
                "end of life (2023-01-01) before its release",
            ),
            (
                release("1.20", "2024-02-01", "", "{inPlace: [\"1.20\"]}"),
                "from an older minor",
            ),
            (
                release("1.20", "2024-02-01", "", "{canary: [\"1.21\"]}"),
                "from an older minor",
            ),
            (
                release("1.20", "2024-02-01", "", "{canary: [\"1.17\"]}"),
                "3 minors at once",
            ),
            (
                release("1.20", "2024-02-01", "", "{inPlace: [\"1.18\"]}"),
                "2 minors at once",
            ),
        ];
        for (body, expected) in cases {
            let text = format!(
                "schemaVersion: 1\nreleases:\n{}{body}",
                release("1.17", "2023-01-01", "", "{}")
                    + &release("1.18", "2023-04-01", "", "{}")
                    + &release("1.19", "2023-08-01", "", "{}")
            );
            let err = Catalog::from_source(&Source::new("cat.yaml", &text))
                .err()
                .unwrap_or_else(|| panic!("accepted: {body}"));
            assert!(
                err.0.iter().any(|d| d.code == Code::CatalogInvalid
                    && d.message.contains(expected)
                    && d.position.is_some()),
                "{expected}: {:?}",
                err.0
            );
        }
        // A minor between the first and the last that the catalog does not list.
        let text = format!(
            "schemaVersion: 1\nreleases:\n{}{}",
            release("1.17", "2023-01-01", "", "{}"),
            release("1.19", "2023-08-01", "", "{canary: [\"1.18\", \"1.17\"]}")
        );
        let err = Catalog::from_source(&Source::new("cat.yaml", &text)).unwrap_err();
        assert!(
            err.0[0]
                .message
                .contains("a minor the catalog does not list"),
            "{:?}",
            err.0
        );
        // Edges from before the catalog's first minor are history, not contradictions.
        let text = format!(
            "schemaVersion: 1\nreleases:\n{}",
            release("1.17", "2023-01-01", "", "{inPlace: [\"1.16\"]}")
        );
        assert!(Catalog::from_source(&Source::new("cat.yaml", &text)).is_ok());
        assert_eq!(Date::parse("2024-02-29").map(|d| d.day), Some(29));
        assert!(Date::parse("2023-02-29").is_none());
        assert!(Date::parse("2024-4-01").is_none());
    }
}
