//! Diagnostics about the user's input: a closed set of codes, a location, and a plain-text
//! renderer in the rustc style. Problems are collected, sorted, and printed together.

use std::fmt::Write as _;

use serde::Serialize;

use crate::source::{Anchor, Position, Source, YamlPath};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Note,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

macro_rules! codes {
    ($($variant:ident = $name:literal : $desc:literal,)*) => {
        /// Every diagnostic code meshplan emits. README lists them; a test keeps the two in step.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
        pub enum Code { $($variant,)* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn name(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }

            pub fn description(self) -> &'static str {
                match self { $(Code::$variant => $desc,)* }
            }
        }
    };
}

codes! {
    YamlSyntax = "yaml-syntax": "the file is not valid YAML",
    SchemaType = "schema-type": "a field has the wrong type",
    SchemaUnknownField = "schema-unknown-field": "a field the format does not know",
    SchemaMissingField = "schema-missing-field": "a required field is missing",
    SchemaInvalidValue = "schema-invalid-value": "a value outside what the format allows",
    InvalidName = "invalid-name": "a name is not a DNS-1123 label",
    NameTooLong = "name-too-long": "a name the plan derives is longer than the place it goes allows",
    InvalidRevision = "invalid-revision": "a revision name Istio cannot use",
    InvalidVersion = "invalid-version": "a version that is not a semantic version",
    DuplicateName = "duplicate-name": "a cluster, namespace or gateway defined twice",
    UnknownRevision = "unknown-revision": "a namespace or gateway refers to a revision its cluster does not run",
    GatewayNamespaceMigrated = "gateway-namespace-migrated": "a gateway namespace is also listed as an application namespace",
    GatewayUnsafe = "gateway-unsafe": "a gateway cannot be replaced without risking its traffic or identity",
    TagsUnmovable = "tags-unmovable": "revision tags a Helm release renders cannot be handed over safely",
    InjectionPrecedence = "injection-precedence": "`istio-injection` overrides `istio.io/rev` on the same namespace",
    CatalogInvalid = "catalog-invalid": "the release catalog file is not valid",
    UnknownTarget = "unknown-target": "the target minor is not in the release catalog",
    UnknownSource = "unknown-source": "a cluster runs a minor that is not in the release catalog",
    NewerPatch = "newer-patch": "the target patch is newer than the catalog knows",
    EndOfLife = "end-of-life": "a version on the path is past its end of life (depends on today's date)",
    Downgrade = "downgrade": "the target is older than what a cluster runs",
    AlreadyAtTarget = "already-at-target": "a cluster already runs the target version",
    MultiHop = "multi-hop": "the upgrade is planned as several hops",
    AlphaSkip = "alpha-skip": "a skip that Istio supports only at alpha level",
    InvalidVia = "invalid-via": "an intermediate version given with --via cannot be used",
    SkipNotAllowed = "skip-not-allowed": "a hop skips more minors than its strategy allows",
    KubernetesUnsupported = "kubernetes-unsupported": "a version on the path does not support the cluster's Kubernetes",
    KubernetesUntested = "kubernetes-untested": "a version on the path is tested but not supported on the cluster's Kubernetes",
    OperatorRemoved = "operator-removed": "the in-cluster operator cannot install this version",
    HelmUnsupported = "helm-unsupported": "Istio publishes no usable Helm charts for this version",
    ClusterTooLarge = "cluster-too-large": "one cluster's plan would hold more namespace and workload moves than meshplan allows",
    CompatibilityUnavailable = "compatibility-unavailable": "the target ships no compatibility profile for the requested minor",
    HelmAlpha = "helm-alpha": "Helm installs of this version are alpha",
    RetiredHub = "retired-hub": "the image hub no longer receives this version",
    TopologyUnsupported = "topology-unsupported": "a part of the mesh meshplan cannot plan safely for this install method or version",
    ValuesUnknownKey = "values-unknown-key": "a carried values key the target version's chart or API does not know",
    ValuesInvalid = "values-invalid": "a carried value the target version's chart or API rejects (type, enumeration, duration)",
    ValuesUnchecked = "values-unchecked": "meshplan has no record of what the target version's charts accept",
    Drift = "drift": "the inventory differs from the cluster's saved state",
    LayoutUnsupported = "layout-unsupported": "the output layout cannot carry the cluster's plan, or lacks a setting it needs",
    SailUnsupported = "sail-unsupported": "the cluster's Sail Operator release cannot install, or roll back to, a version of the plan",
}

impl Code {
    /// Whether the finding depends on today's date; such findings go to stderr only, never
    /// into generated files or machine-readable stdout.
    pub fn is_dated(self) -> bool {
        matches!(self, Code::EndOfLife)
    }
}

#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: Code,
    pub message: String,
    /// The file the diagnostic is about (`<command line>` for flags).
    pub file: String,
    pub path: Option<YamlPath>,
    /// Whether the position is the path's key or its value.
    pub anchor: Anchor,
    /// Filled in by [`Diagnostics::locate`].
    pub position: Option<Position>,
    pub help: Vec<String>,
}

impl Diagnostic {
    pub fn new(severity: Severity, code: Code, message: impl Into<String>) -> Self {
        Self {
            severity,
            code,
            message: message.into(),
            file: String::new(),
            path: None,
            anchor: Anchor::Value,
            position: None,
            help: Vec::new(),
        }
    }

    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, message)
    }

    pub fn warning(code: Code, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, message)
    }

    pub fn note(code: Code, message: impl Into<String>) -> Self {
        Self::new(Severity::Note, code, message)
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help.push(help.into());
        self
    }

    /// Places the diagnostic at the value of `path` in `src` (its line and column are found
    /// later, for all diagnostics at once, by [`Diagnostics::locate`]).
    pub fn at(mut self, src: &Source, path: &YamlPath) -> Self {
        self.file.clone_from(&src.name);
        self.path = Some(path.clone());
        self.anchor = Anchor::Value;
        self
    }

    /// Places the diagnostic at the key of `path` (for fields that should not be there).
    pub fn at_key(mut self, src: &Source, path: &YamlPath) -> Self {
        self.file.clone_from(&src.name);
        self.path = Some(path.clone());
        self.anchor = Anchor::Key;
        self
    }

    /// A diagnostic about a command-line flag rather than a file.
    pub fn on_flag(mut self, flag: &str) -> Self {
        self.file = format!("<command line: {flag}>");
        self
    }

    fn sort_key(&self) -> impl Ord + '_ {
        (
            self.file.as_str(),
            self.position
                .map_or((usize::MAX, usize::MAX), |p| (p.line, p.col)),
            self.severity,
            self.code,
            self.message.as_str(),
        )
    }
}

/// The diagnostics of one run, in the order they were found until [`Diagnostics::sorted`].
#[derive(Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// Finds the line and column of every diagnostic about `src` that has a path, in one walk.
    pub fn locate(&mut self, src: &Source) {
        let wanted: Vec<(YamlPath, Anchor)> = self
            .0
            .iter()
            .filter(|d| d.position.is_none() && d.file == src.name)
            .filter_map(|d| d.path.clone().map(|p| (p, d.anchor)))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let found = src.locate(&wanted);
        for d in &mut self.0 {
            if d.position.is_none()
                && d.file == src.name
                && let Some(p) = &d.path
            {
                d.position = found.get(&(p.clone(), d.anchor)).copied();
            }
        }
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sorted by file, line, column, severity, code and message, without exact duplicates, so
    /// that the order never depends on the order checks happened to run in.
    pub fn sorted(mut self) -> Self {
        self.0.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        self.0.dedup_by(|a, b| a.sort_key() == b.sort_key());
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
}

/// How many diagnostics are shown; the summary line counts the rest.
pub const MAX_SHOWN: usize = 200;

/// Renders diagnostics as plain text, with the source line and a caret where the position is
/// known. `src` is the inventory the positions refer to, when there is one. At most
/// [`MAX_SHOWN`] are shown; the summary says how many more there are.
pub fn render(diags: &Diagnostics, src: Option<&Source>) -> String {
    render_styled(diags, src, false)
}

/// ANSI styles of the parts of a diagnostic, as rustc colours them; empty without colour.
struct Style {
    severity: &'static str,
    bold: &'static str,
    accent: &'static str,
    reset: &'static str,
}

impl Style {
    fn new(color: bool, severity: Severity) -> Self {
        if !color {
            return Style {
                severity: "",
                bold: "",
                accent: "",
                reset: "",
            };
        }
        Style {
            severity: match severity {
                Severity::Error => "\x1b[1;31m",
                Severity::Warning => "\x1b[1;33m",
                Severity::Note => "\x1b[1;36m",
            },
            bold: "\x1b[1m",
            accent: "\x1b[1;34m",
            reset: "\x1b[0m",
        }
    }
}

/// [`render`], coloured with ANSI escapes when `color` (a terminal, `--color always`).
pub fn render_styled(diags: &Diagnostics, src: Option<&Source>, color: bool) -> String {
    let mut out = String::new();
    for (i, d) in diags.iter().take(MAX_SHOWN).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render_one(&mut out, d, src, &Style::new(color, d.severity));
    }
    if diags.0.len() > MAX_SHOWN {
        let _ = write!(
            out,
            "\n... and {} more, not shown (the first {MAX_SHOWN} are above; fix those and run again)\n",
            diags.0.len() - MAX_SHOWN
        );
    }
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    if errors > 0 {
        out.push('\n');
        let _ = writeln!(
            out,
            "{errors} error{}{}",
            plural(errors),
            if warnings > 0 {
                format!(", {warnings} warning{}", plural(warnings))
            } else {
                String::new()
            }
        );
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn render_one(out: &mut String, d: &Diagnostic, src: Option<&Source>, st: &Style) {
    let _ = writeln!(
        out,
        "{}{}[{}]{}{}: {}{}",
        st.severity,
        d.severity.label(),
        d.code.name(),
        st.reset,
        st.bold,
        d.message,
        st.reset
    );
    let path = d
        .path
        .as_ref()
        .map(|p| format!(" ({p})"))
        .unwrap_or_default();
    match d.position {
        Some(p) => {
            let num = p.line.to_string();
            let pad = " ".repeat(num.len());
            let _ = writeln!(
                out,
                "{pad}{}-->{} {}:{}:{}{path}",
                st.accent, st.reset, d.file, p.line, p.col
            );
            let line = src
                .filter(|s| s.name == d.file)
                .and_then(|s| s.line_text(p.line));
            if let Some(line) = line {
                let (shown, col) = window(line.trim_end(), p.col);
                let width = token_width(&shown, col).min(WINDOW);
                let (a, r) = (st.accent, st.reset);
                let _ = writeln!(out, "{pad} {a}|{r}");
                let _ = writeln!(out, "{a}{num} |{r} {shown}");
                let _ = writeln!(
                    out,
                    "{pad} {a}|{r} {}{}{}{}",
                    " ".repeat(col.saturating_sub(1)),
                    st.severity,
                    "^".repeat(width),
                    r
                );
            }
        }
        None if !d.file.is_empty() => {
            let _ = writeln!(out, " {}-->{} {}{path}", st.accent, st.reset, d.file);
        }
        None => {}
    }
    let pad = " ".repeat(d.position.map_or(1, |p| p.line.to_string().len()));
    for h in &d.help {
        let _ = writeln!(
            out,
            "{pad} {}={} {}help{}: {h}",
            st.accent, st.reset, st.bold, st.reset
        );
    }
}

/// How many characters of a source line a diagnostic quotes.
const WINDOW: usize = 120;

/// At most [`WINDOW`] characters of `line` around column `col` (1-based, in characters), with
/// `…` where it was cut, and the column in what is shown.
fn window(line: &str, col: usize) -> (String, usize) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= WINDOW {
        return (line.to_string(), col);
    }
    let start = col
        .saturating_sub(1)
        .saturating_sub(WINDOW / 3)
        .min(chars.len());
    let end = (start + WINDOW).min(chars.len());
    let mut shown: String = chars[start..end].iter().collect();
    let mut col = col - start;
    if start > 0 {
        shown.insert(0, '…');
        col += 1;
    }
    if end < chars.len() {
        shown.push('…');
    }
    (shown, col)
}

/// How many characters from `col` (1-based) make up the token there.
fn token_width(line: &str, col: usize) -> usize {
    let rest: Vec<char> = line
        .chars()
        .skip(col.saturating_sub(1))
        .take(WINDOW)
        .collect();
    let Some(&first) = rest.first() else { return 1 };
    let width = if first == '"' || first == '\'' {
        rest.iter()
            .skip(1)
            .position(|&c| c == first)
            .map_or(rest.len(), |i| i + 2)
    } else {
        rest.iter()
            .position(|&c| matches!(c, ',' | '}' | ']' | '#') || (c == ':' && first != '-'))
            .unwrap_or(rest.len())
    };
    let trimmed: String = rest.iter().take(width).collect();
    trimmed.trim_end().chars().count().max(1)
}

/// JSON form of a diagnostic, for `--output json`.
#[derive(Serialize)]
pub struct JsonDiagnostic<'a> {
    pub severity: Severity,
    pub code: &'static str,
    pub message: &'a str,
    pub file: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub help: &'a [String],
}

impl<'a> From<&'a Diagnostic> for JsonDiagnostic<'a> {
    fn from(d: &'a Diagnostic) -> Self {
        Self {
            severity: d.severity,
            code: d.code.name(),
            message: &d.message,
            file: &d.file,
            path: d.path.as_ref().map(ToString::to_string),
            line: d.position.map(|p| p.line),
            column: d.position.map(|p| p.col),
            help: &d.help,
        }
    }
}

/// A YAML syntax error at `position`, with what the parser's message leaves out: a tab is
/// shown where it is (parsers report the token before it), and an indentation mistake says
/// which columns disagree.
pub fn yaml_syntax(src: &Source, message: &str, position: Option<Position>) -> Diagnostic {
    let mut d = Diagnostic::error(Code::YamlSyntax, format!("invalid YAML: {message}"));
    d.file.clone_from(&src.name);
    d.position = position;
    let Some(p) = position else {
        return d;
    };
    let lower = message.to_ascii_lowercase();
    if lower.contains("tab") {
        // The first tab at or after the reported line (within a few lines).
        let found = (p.line..p.line + 3).find_map(|line| {
            let text = src.line_text(line)?;
            text.find('\t').map(|i| Position {
                line,
                col: text[..i].chars().count() + 1,
            })
        });
        if let Some(tab) = found {
            d.position = Some(tab);
        }
        return d.help("YAML does not allow tabs for indentation: indent with spaces");
    }
    let indentation_error = [
        "did not find expected key",
        "mapping values are not allowed",
        "did not find expected '-'",
        "expected <block end>",
        "could not find expected ':'",
    ]
    .iter()
    .any(|m| lower.contains(m));
    if indentation_error && let Some(text) = src.line_text(p.line) {
        let indent = |t: &str| t.chars().take_while(|c| *c == ' ').count();
        let here = indent(text);
        let before = (1..p.line).rev().find_map(|l| {
            let t = src.line_text(l)?;
            let trimmed = t.trim_start();
            (!trimmed.is_empty() && !trimmed.starts_with('#')).then(|| (l, indent(t)))
        });
        d = match before {
            Some((l, there)) if there != here => d.help(format!(
                "this line starts in column {}, line {l} in column {}: keys of one mapping must start in the same column, and a nested mapping further right than its key",
                here + 1,
                there + 1
            )),
            _ => d.help("check the indentation of this line and the lines before it: keys of one mapping start in the same column"),
        };
    }
    d
}

/// Levenshtein distance, for "did you mean" suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min()
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn codes_are_unique_and_kebab_case() {
        let names: BTreeSet<_> = Code::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Code::ALL.len());
        for n in names {
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{n}");
        }
    }

    #[test]
    fn suggests_close_words_only() {
        let known = ["installMethod", "hub", "revisionFormat"];
        assert_eq!(suggest("instalMethod", known), Some("installMethod"));
        assert_eq!(suggest("revisonFormat", known), Some("revisionFormat"));
        assert_eq!(suggest("zzzzzz", known), None);
    }

    #[test]
    fn renders_caret_under_the_value() {
        let src = Source::new("inv.yaml", "a:\n  version: 1.2.x\n");
        let path = YamlPath::root().key("a").key("version");
        let mut diags = Diagnostics::default();
        diags.push(
            Diagnostic::error(Code::InvalidVersion, "bad version `1.2.x`")
                .at(&src, &path)
                .help("use x.y.z"),
        );
        diags.locate(&src);
        let text = render(&diags.sorted(), Some(&src));
        assert_eq!(
            text,
            "error[invalid-version]: bad version `1.2.x`\n --> inv.yaml:2:12 (a.version)\n  |\n2 |   version: 1.2.x\n  |            ^^^^^\n  = help: use x.y.z\n\n1 error\n"
        );
    }
}
