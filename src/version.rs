//! Istio versions, minors, Kubernetes versions and revision names.

use std::fmt;
use std::str::FromStr;

/// An Istio version (`1.20.2`, or a pre-release such as `1.21.0-rc.0`). Build metadata
/// (`+...`) is refused: no Istio release has it, and an image tag cannot carry it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IstioVersion(pub semver::Version);

impl IstioVersion {
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self(semver::Version::new(major, minor, patch))
    }

    pub fn minor(&self) -> Minor {
        Minor {
            major: self.0.major,
            minor: self.0.minor,
        }
    }

    /// The revision name of this version in the given format: `1-20` or `1-20-2`. A
    /// pre-release keeps its suffix in the patch format (`1.21.0-rc.0`: `1-21-0-rc-0`), so that
    /// it never shares a revision with the release; in the minor format it shares `1-21` with
    /// every patch of the minor, as patches do.
    pub fn revision(&self, format: RevisionFormat) -> String {
        match format {
            RevisionFormat::Minor => format!("{}-{}", self.0.major, self.0.minor),
            RevisionFormat::Patch if self.0.pre.is_empty() => {
                format!("{}-{}-{}", self.0.major, self.0.minor, self.0.patch)
            }
            RevisionFormat::Patch => format!(
                "{}-{}-{}-{}",
                self.0.major,
                self.0.minor,
                self.0.patch,
                self.0.pre.as_str().replace('.', "-")
            ),
        }
    }
}

impl FromStr for IstioVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let t = t.strip_prefix('v').unwrap_or(t);
        let v = semver::Version::parse(t)
            .map_err(|e| format!("`{s}` is not a version of the form MAJOR.MINOR.PATCH ({e})"))?;
        if !v.build.is_empty() {
            return Err(format!(
                "`{s}` carries build metadata (`+{}`), which no Istio release has and no image tag can carry; give the version without it",
                v.build
            ));
        }
        if !v
            .pre
            .as_str()
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return Err(format!(
                "`{s}` has a pre-release suffix with characters Istio's releases never use; pre-releases look like `1.21.0-rc.0` (lower-case letters, digits, `.` and `-`)"
            ));
        }
        Ok(Self(v))
    }
}

impl serde::Serialize for IstioVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for IstioVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A minor release line (`1.20`). Also used for Kubernetes versions, which have the same shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Minor {
    pub major: u64,
    pub minor: u64,
}

impl Minor {
    /// How many minors `self` is ahead of `other` (negative when behind). Istio has only ever
    /// had major 1, so different majors are treated as far apart.
    pub fn distance_from(self, other: Minor) -> i64 {
        if self.major != other.major {
            return if self.major > other.major {
                1000
            } else {
                -1000
            };
        }
        i64::try_from(self.minor).unwrap_or(i64::MAX)
            - i64::try_from(other.minor).unwrap_or(i64::MAX)
    }
}

impl FromStr for Minor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let t = t.strip_prefix('v').unwrap_or(t);
        let mut parts = t.split('.');
        let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "`{s}` is not of the form MAJOR.MINOR (for example \"1.28\")"
            ));
        };
        let num = |p: &str| {
            if p.is_empty()
                || !p.chars().all(|c| c.is_ascii_digit())
                || (p.len() > 1 && p.starts_with('0'))
            {
                Err(format!(
                    "`{s}` is not of the form MAJOR.MINOR (for example \"1.28\")"
                ))
            } else {
                p.parse::<u64>().map_err(|e| e.to_string())
            }
        };
        Ok(Minor {
            major: num(a)?,
            minor: num(b)?,
        })
    }
}

impl fmt::Display for Minor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// How revision names are derived from versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RevisionFormat {
    /// `1.20.2` -> `1-20`: patch upgrades keep the revision and run in place.
    Minor,
    /// `1.20.2` -> `1-20-2`: every upgrade, patch ones included, is a canary.
    Patch,
}

/// Whether `s` is a DNS-1123 label: lower-case alphanumerics and `-`, starting and ending
/// with an alphanumeric, at most `max` characters.
pub fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The longest revision name that still fits in `istiod-<revision>`, a Service name of at most
/// 63 characters.
pub const MAX_REVISION_LEN: usize = 63 - "istiod-".len();

/// Formats a sorted list of Kubernetes minors as ranges: `1.25–1.29` or `1.23, 1.25`.
pub fn format_ranges(minors: &[Minor]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < minors.len() {
        let start = minors[i];
        let mut end = start;
        while i + 1 < minors.len() && minors[i + 1].distance_from(end) == 1 {
            i += 1;
            end = minors[i];
        }
        if start == end {
            out.push(start.to_string());
        } else {
            out.push(format!("{start}-{end}"));
        }
        i += 1;
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn minor(s: &str) -> Minor {
        s.parse().unwrap()
    }

    #[test]
    fn parses_versions_and_minors() {
        let cases: &[(&str, bool)] = &[
            ("1.20.2", true),
            ("v1.20.2", true),
            ("1.20", false),
            ("1.20.x", false),
            ("", false),
            ("1.20.2+meta", false),
            ("1.21.0-rc.0", true),
            ("1.21.0-RC.0", false),
        ];
        for (s, ok) in cases {
            assert_eq!(s.parse::<IstioVersion>().is_ok(), *ok, "{s}");
        }
        for (s, ok) in [
            ("1.28", true),
            ("1.3", true),
            ("1.28.1", false),
            ("1.", false),
            ("1.05", false),
        ] {
            assert_eq!(s.parse::<Minor>().is_ok(), ok, "{s}");
        }
        assert!(minor("1.30") > minor("1.3"));
    }

    #[test]
    fn derives_revisions() {
        let v: IstioVersion = "1.20.2".parse().unwrap();
        assert_eq!(v.revision(RevisionFormat::Minor), "1-20");
        assert_eq!(v.revision(RevisionFormat::Patch), "1-20-2");
        let rc: IstioVersion = "1.21.0-rc.0".parse().unwrap();
        assert_eq!(rc.revision(RevisionFormat::Patch), "1-21-0-rc-0");
        assert_eq!(rc.revision(RevisionFormat::Minor), "1-21");
    }

    #[test]
    fn checks_dns_labels() {
        for (s, ok) in [
            ("1-20", true),
            ("east", true),
            ("East", false),
            ("1.20", false),
            ("-a", false),
            ("a-", false),
            ("", false),
        ] {
            assert_eq!(is_dns_label(s, 63), ok, "{s}");
        }
        assert!(!is_dns_label(&"a".repeat(64), 63));
    }

    #[test]
    fn formats_ranges() {
        let ms: Vec<Minor> = ["1.23", "1.24", "1.25", "1.27"]
            .iter()
            .map(|s| minor(s))
            .collect();
        assert_eq!(format_ranges(&ms), "1.23-1.25, 1.27");
    }
}
