//! The commands `check`, `compile` and `versions`: what they print and how `compile` drives
//! plan, render and write for one cluster at a time.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::json;

use crate::catalog::{self, Catalog, Date};
use crate::cli::{self, OutputFormat, PathArgs};
use crate::diagnostic::{self, Code, Diagnostics, JsonDiagnostic, Severity};
use crate::path::MeshPath;
use crate::validate::Mesh;
use crate::version::{self, Minor};
use crate::{Checked, Io, exit, load, output, plan, render, write};

fn print_diagnostics(io: &mut Io<'_>, checked: &Checked, only_dated: bool) {
    let shown = Diagnostics(
        checked
            .diagnostics
            .iter()
            .filter(|d| !only_dated || d.code.is_dated())
            .cloned()
            .collect(),
    );
    if !shown.is_empty() {
        let _ = io.stderr.write_all(
            diagnostic::render_styled(&shown, checked.source.as_ref(), io.color).as_bytes(),
        );
    }
}

/// The long explanation of a diagnostic code (`src/data/explain.yaml`).
#[derive(serde::Deserialize)]
struct Explanation {
    text: String,
    #[serde(default)]
    docs: Vec<String>,
}

fn explanations() -> BTreeMap<String, Explanation> {
    serde_yaml::from_str(include_str!("data/explain.yaml")).expect("src/data/explain.yaml is valid")
}

pub(crate) fn explain(args: &cli::ExplainArgs, io: &mut Io<'_>) -> i32 {
    if args.list {
        for c in Code::ALL {
            let _ = writeln!(io.stdout, "{:<28} {}", c.name(), c.description());
        }
        return exit::OK;
    }
    let name = args.code.as_deref().unwrap_or_default();
    let Some(code) = Code::ALL.iter().find(|c| c.name() == name) else {
        let hint = diagnostic::suggest(name, Code::ALL.iter().map(|c| c.name()))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        let _ = writeln!(
            io.stderr,
            "error: no diagnostic code `{name}`{hint}; `meshplan explain --list` lists them"
        );
        return exit::USAGE;
    };
    let all = explanations();
    let e = &all[code.name()];
    let _ = writeln!(io.stdout, "{}: {}\n", code.name(), code.description());
    let _ = write!(io.stdout, "{}", e.text.trim_end());
    let _ = writeln!(io.stdout);
    if !e.docs.is_empty() {
        let _ = writeln!(io.stdout, "\nSee:");
        for d in &e.docs {
            let _ = writeln!(io.stdout, "  {d}");
        }
    }
    exit::OK
}

/// A GitHub Actions workflow command: an annotation at the diagnostic's position.
fn github_annotation(d: &diagnostic::Diagnostic) -> String {
    fn data(s: &str) -> String {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    }
    fn property(s: &str) -> String {
        data(s).replace(':', "%3A").replace(',', "%2C")
    }
    let level = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "notice",
    };
    let mut props = Vec::new();
    if !d.file.is_empty() && !d.file.starts_with('<') {
        props.push(format!("file={}", property(&d.file)));
        if let Some(p) = d.position {
            props.push(format!("line={}", p.line));
            props.push(format!("col={}", p.col));
        }
    }
    props.push(format!("title={}", property(d.code.name())));
    let mut message = d.message.clone();
    for h in &d.help {
        message.push_str("\nhelp: ");
        message.push_str(h);
    }
    format!("::{level} {}::{}", props.join(","), data(&message))
}

/// The diagnostics as a SARIF 2.1.0 log, for code-scanning tools.
fn sarif(diags: &[&diagnostic::Diagnostic]) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = Code::ALL
        .iter()
        .map(|c| json!({"id": c.name(), "shortDescription": {"text": c.description()}}))
        .collect();
    let results: Vec<serde_json::Value> = diags
        .iter()
        .map(|d| {
            let mut text = d.message.clone();
            for h in &d.help {
                text.push_str("\nhelp: ");
                text.push_str(h);
            }
            let mut r = json!({
                "ruleId": d.code.name(),
                "level": match d.severity { Severity::Error => "error", Severity::Warning => "warning", Severity::Note => "note" },
                "message": {"text": text},
            });
            if !d.file.is_empty() && !d.file.starts_with('<') {
                let mut loc = json!({"physicalLocation": {"artifactLocation": {"uri": d.file}}});
                if let Some(p) = d.position {
                    loc["physicalLocation"]["region"] = json!({"startLine": p.line, "startColumn": p.col});
                }
                r["locations"] = json!([loc]);
            }
            r
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "meshplan",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

pub(crate) fn check(args: &PathArgs, format: cli::CheckFormat, io: &mut Io<'_>) -> i32 {
    let checked = match crate::check(args, io.stdin, io.today, false) {
        Ok(c) => c,
        Err((text, code)) => {
            let _ = io.stderr.write_all(text.as_bytes());
            return code;
        }
    };
    let ok = !checked.diagnostics.has_errors();
    match format {
        cli::CheckFormat::Github | cli::CheckFormat::Sarif => {
            // People read stderr; the machine-readable form goes to stdout without dated findings.
            print_diagnostics(io, &checked, false);
            let stable: Vec<&diagnostic::Diagnostic> = checked
                .diagnostics
                .iter()
                .filter(|d| !d.code.is_dated())
                .collect();
            if format == cli::CheckFormat::Github {
                for d in &stable {
                    let _ = writeln!(io.stdout, "{}", github_annotation(d));
                }
            } else {
                let _ = writeln!(
                    io.stdout,
                    "{}",
                    serde_json::to_string_pretty(&sarif(&stable)).unwrap_or_default()
                );
            }
        }
        cli::CheckFormat::Text => {
            print_diagnostics(io, &checked, false);
            if let (Some(paths), Some(catalog)) = (&checked.paths, &checked.catalog) {
                let _ = io.stdout.write_all(check_report(paths, catalog).as_bytes());
                if let Some(mesh) = checked
                    .mesh
                    .as_ref()
                    .filter(|m| plan::order::interleaved(m))
                {
                    let _ = writeln!(io.stdout, "\norder across clusters:");
                    for (i, s) in plan::order::mesh_order(mesh, paths).iter().enumerate() {
                        let phases = if s.phases.len() == plan::Phase::ALL.len() {
                            "whole hop".to_string()
                        } else {
                            let dir = |p: Option<&plan::Phase>| p.map_or("", |p| p.dir());
                            format!("{} to {}", dir(s.phases.first()), dir(s.phases.last()))
                        };
                        let _ = writeln!(
                            io.stdout,
                            "  {}. {} hop {}: {phases} ({})",
                            i + 1,
                            s.cluster,
                            s.hop,
                            s.why
                        );
                    }
                }
            }
        }
        cli::CheckFormat::Json => {
            // Dated findings (end of life) go to stderr only; stdout stays reproducible.
            print_diagnostics(io, &checked, true);
            let diags: Vec<JsonDiagnostic> = checked
                .diagnostics
                .iter()
                .filter(|d| !d.code.is_dated())
                .map(JsonDiagnostic::from)
                .collect();
            let clusters = checked.paths.as_ref().map(|p| {
                p.clusters
                    .iter()
                    .map(|c| {
                        let notes = checked.catalog.as_ref().map(|cat| upgrade_notes(cat, c.from.minor(), c.to.minor()));
                        json!({"name": c.cluster, "from": c.from.to_string(), "to": c.to.to_string(),
                               "hops": c.hops, "reason": c.reason, "upgradeNotes": notes})
                    })
                    .collect::<Vec<_>>()
            });
            let out = json!({
                "ok": ok,
                "target": checked.paths.as_ref().map(|p| p.target.to_string()).unwrap_or_else(|| args.to.clone()),
                "clusters": clusters.unwrap_or_default(),
                "diagnostics": diags,
            });
            let _ = writeln!(
                io.stdout,
                "{}",
                serde_json::to_string_pretty(&out).unwrap_or_default()
            );
        }
    }
    if ok { exit::OK } else { exit::REJECTED }
}

fn upgrade_notes(catalog: &Catalog, from: Minor, to: Minor) -> BTreeMap<String, Vec<String>> {
    catalog
        .releases
        .values()
        .filter(|r| r.minor > from && r.minor <= to && !r.notes.is_empty())
        .map(|r| (r.minor.to_string(), r.notes.clone()))
        .collect()
}

/// The human-readable path report of `meshplan check`.
fn check_report(paths: &MeshPath, catalog: &Catalog) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "upgrade to {}: every cluster has a supported path",
        paths.target
    );
    for c in &paths.clusters {
        out.push('\n');
        let _ = writeln!(out, "cluster {}: {} -> {}", c.cluster, c.from, c.to);
        if c.hops.is_empty() {
            let _ = writeln!(out, "  already at {}; nothing to do", c.to);
        }
        for (i, h) in c.hops.iter().enumerate() {
            let _ = writeln!(
                out,
                "  hop {}: {} -> {}  {} (revision {} -> {}){}",
                i + 1,
                h.from,
                h.to,
                h.strategy.name(),
                h.from_label(),
                h.to_label(),
                if h.alpha { "  [alpha-level skip]" } else { "" }
            );
        }
        if let Some(r) = &c.reason {
            let _ = writeln!(out, "  why {} hops: {r}", c.hops.len());
        }
        for (minor, notes) in upgrade_notes(catalog, c.from.minor(), c.to.minor()) {
            let _ = writeln!(out, "  upgrade notes {minor}:");
            for n in notes {
                let _ = writeln!(out, "    - {n}");
            }
        }
    }
    out
}

/// The checks `compile` and `advance` run before planning, their diagnostics printed.
fn checked_for_plan(args: &cli::PathArgs, io: &mut Io<'_>) -> Result<crate::Checked, i32> {
    let checked = match crate::check(args, io.stdin, io.today, true) {
        Ok(c) => c,
        Err((text, code)) => {
            let _ = io.stderr.write_all(text.as_bytes());
            return Err(code);
        }
    };
    print_diagnostics(io, &checked, false);
    Ok(checked)
}

pub(crate) fn compile(args: &cli::CompileArgs, io: &mut Io<'_>) -> i32 {
    let checked = match checked_for_plan(&args.path, io) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some((source, mesh, paths, catalog)) = checked.plannable() else {
        let _ = writeln!(io.stderr, "nothing written: fix the errors above first");
        return exit::REJECTED;
    };
    let overrides = match &args.templates {
        Some(dir) => match load::template_overrides(dir) {
            Ok(o) => o,
            Err(e) => {
                let _ = writeln!(io.stderr, "error: {e}");
                return exit::IO;
            }
        },
        None => BTreeMap::new(),
    };
    let inventory_name = display_name(&source.name);
    let warnings: Vec<String> = checked
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning && !d.code.is_dated())
        .map(|d| format!("{} ({})", d.message, d.code.name()))
        .collect();
    let opts = write::WriteOptions {
        check: args.check,
        force: args.force,
    };
    let started = std::time::Instant::now();
    let terminal = io.stderr_is_terminal && !args.quiet && args.output == OutputFormat::Text;
    // Everything the output depends on: with the same digest, an output directory whose files
    // still have the stat the last full run recorded is already what this run would write.
    // What every file depends on besides the inventory: meshplan's build, the catalog, the
    // templates, the options that shape the plan.
    let common = |d: &mut crate::cache::Inputs| {
        d.add("meshplan", crate::version_text().as_bytes())
            .add("catalog", format!("{catalog:?}").as_bytes())
            .add("inventory-name", inventory_name.as_bytes())
            .add("to", args.path.to.as_bytes())
            .add("via", args.path.via.join(",").as_bytes())
            .add("one-minor", &[u8::from(args.path.one_minor_at_a_time)])
            .add("gitops", format!("{:?}", mesh.gitops).as_bytes());
        let mut allow = args.path.allow.clone();
        allow.sort();
        d.add("allow", allow.join(",").as_bytes());
        for (name, text) in render::TEMPLATES {
            d.add(name, text.as_bytes());
        }
        for (name, text) in &overrides {
            d.add(&format!("override/{name}"), text.as_bytes());
        }
    };
    let digest = {
        let mut d = crate::cache::Inputs::new();
        common(&mut d);
        d.add("inventory", source.text.as_bytes());
        d.finish()
    };
    // What the manifest records once: the release of meshplan (not its build, so that
    // committed plans do not change with every commit of meshplan), and the user's inputs.
    let provenance = {
        let mut d = crate::cache::Inputs::new();
        d.add("inventory", source.text.as_bytes())
            .add("inventory-name", inventory_name.as_bytes())
            .add("to", args.path.to.as_bytes())
            .add("via", args.path.via.join(",").as_bytes())
            .add("one-minor", &[u8::from(args.path.one_minor_at_a_time)]);
        if let Some(l) = args.path.layout {
            d.add("layout", l.name().as_bytes());
        }
        let mut allow = args.path.allow.clone();
        allow.sort();
        d.add("allow", allow.join(",").as_bytes());
        for (name, text) in &overrides {
            d.add(&format!("override/{name}"), text.as_bytes());
        }
        write::Provenance {
            meshplan: env!("CARGO_PKG_VERSION").to_string(),
            inputs: format!("sha256:{}", d.finish()),
        }
    };
    // Per cluster: what its own files depend on (its validated spec and path, its position).
    let cluster_digests: Vec<(String, String)> = mesh
        .clusters
        .iter()
        .zip(&paths.clusters)
        .enumerate()
        .map(|(i, (c, p))| {
            let mut d = crate::cache::Inputs::new();
            common(&mut d);
            d.add("index", &i.to_le_bytes())
                .add("cluster", format!("{c:?}").as_bytes())
                .add("path", format!("{p:?}").as_bytes());
            (plan::cluster_dir(i, &c.name), d.finish())
        })
        .collect();
    let fast = crate::write::lock_existing(&args.out, args.check).and_then(|lock| {
        let n = crate::cache::unchanged(&args.out, &digest)?;
        drop(lock);
        Ok(n)
    });
    if let Ok(Some(unchanged)) = fast {
        let report = write::WriteReport {
            unchanged,
            ..Default::default()
        };
        return finish_compile(args, io, &report, terminal, started);
    }
    // Clusters whose inputs and files are as the last full run left them: their files are kept
    // as they are, neither rendered nor read.
    let clean = crate::cache::clean_clusters(&args.out, &cluster_digests);
    // With --output json, stdout holds the JSON report only (no diff).
    let mut sink = std::io::sink();
    let diff_out: &mut dyn Write = if args.output == OutputFormat::Json {
        &mut sink
    } else {
        &mut *io.stdout
    };
    let result = render::environment(&overrides)
        .map_err(CompileError::Render)
        .and_then(|env| {
            emit(
                mesh,
                paths,
                catalog,
                &inventory_name,
                &warnings,
                &env,
                &args.out,
                opts,
                diff_out,
                &mut Progress::new(terminal.then_some(&mut *io.stderr), mesh.clusters.len()),
                &clean,
                provenance,
            )
        });
    match result {
        Ok(report) => {
            if !args.check || !report.changed() {
                crate::cache::record(&args.out, &digest, &cluster_digests, &report.files);
            }
            finish_compile(args, io, &report, terminal, started)
        }
        Err(CompileError::Render(e)) => {
            let _ = writeln!(
                io.stderr,
                "error[internal]: {e}\nno file was changed that a rerun would not restore (re-run after fixing the template)"
            );
            exit::INTERNAL
        }
        Err(CompileError::Model(f)) => {
            let _ = writeln!(
                io.stderr,
                "error[internal]: {f}\nnothing was written. This is a bug in meshplan: please report it with the inventory (or a reduced one that fails the same way)"
            );
            exit::INTERNAL
        }
        Err(CompileError::Write(e)) => {
            let _ = writeln!(
                io.stderr,
                "error: {e}\nnothing was changed outside files meshplan owns"
            );
            exit::IO
        }
    }
}

/// Reports what a compile did (or, with --check, would do), and its exit code.
fn finish_compile(
    args: &cli::CompileArgs,
    io: &mut Io<'_>,
    report: &write::WriteReport,
    terminal: bool,
    started: std::time::Instant,
) -> i32 {
    if args.output == OutputFormat::Json {
        let prefix = shown_prefix(&args.out);
        let changes: Vec<serde_json::Value> = report
            .changes
            .iter()
            .map(|(c, p)| json!({"change": c, "path": format!("{prefix}{p}")}))
            .collect();
        let out = json!({
            "out": args.out.display().to_string(),
            "check": args.check,
            "upToDate": !report.changed(),
            "created": report.created,
            "updated": report.updated,
            "removed": report.removed,
            "unchanged": report.unchanged,
            "changes": changes,
        });
        let _ = writeln!(
            io.stdout,
            "{}",
            serde_json::to_string_pretty(&out).unwrap_or_default()
        );
        return if args.check && report.changed() {
            exit::DRIFT
        } else {
            exit::OK
        };
    }
    if args.check {
        if report.changed() {
            let _ = writeln!(
                io.stderr,
                "`{}` is out of date ({}); run the same command without --check to update it",
                args.out.display(),
                report
                    .summary()
                    .replace("created", "to create")
                    .replace("updated", "to update")
                    .replace("removed", "to remove")
            );
            return exit::DRIFT;
        }
        return exit::OK;
    }
    if !args.quiet {
        // The time only on a terminal: logs and tests compare this line.
        let took = if terminal {
            format!(" in {:.2} s", started.elapsed().as_secs_f64())
        } else {
            String::new()
        };
        let _ = writeln!(
            io.stdout,
            "{}: {}{took}",
            args.out.display(),
            report.summary()
        );
    }
    exit::OK
}

/// `--out` as the user gave it, as a prefix of the paths below it (`plan/`).
fn shown_prefix(out: &std::path::Path) -> String {
    let s = out.to_string_lossy();
    if s.is_empty() || s == "." {
        String::new()
    } else if s.ends_with('/') {
        s.into_owned()
    } else {
        format!("{s}/")
    }
}

/// Progress of a long compile on a terminal: one line, rewritten in place at most ten times a
/// second, cleared when the run ends. Silent when standard error is not a terminal.
pub(crate) struct Progress<'a> {
    out: Option<&'a mut dyn Write>,
    clusters: usize,
    done: usize,
    files: usize,
    shown: Option<std::time::Instant>,
}

impl<'a> Progress<'a> {
    fn new(out: Option<&'a mut dyn Write>, clusters: usize) -> Self {
        Progress {
            out,
            clusters,
            done: 0,
            files: 0,
            shown: None,
        }
    }

    fn files(&mut self, n: usize) {
        self.files += n;
        self.show(false);
    }

    fn cluster_done(&mut self) {
        self.done += 1;
        self.show(true);
    }

    fn show(&mut self, force: bool) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let now = std::time::Instant::now();
        if !force
            && self
                .shown
                .is_some_and(|t| now.duration_since(t).as_millis() < 100)
        {
            return;
        }
        self.shown = Some(now);
        let _ = write!(
            out,
            "\r\x1b[2Kcompiling: {}/{} clusters, {} files",
            self.done, self.clusters, self.files
        );
        let _ = out.flush();
    }
}

impl Drop for Progress<'_> {
    /// The line is cleared however the run ends.
    fn drop(&mut self) {
        if self.shown.is_some()
            && let Some(out) = self.out.as_mut()
        {
            let _ = write!(out, "\r\x1b[2K");
            let _ = out.flush();
        }
    }
}

/// What a worker sends for a cluster: its files in chunks (or, for a cluster whose files are
/// known to be current, its directory to keep), then the rest.
enum Rendered {
    Files(output::OutputTree),
    Keep(String),
    Done {
        /// The cluster's `plan.yaml` and `PLAN.md`, in scratch files (a large cluster never
        /// holds them in memory); `None` for a kept cluster.
        texts: Option<(std::fs::File, std::fs::File)>,
        summary: Box<plan::ClusterPlan>,
    },
}

/// How many files a worker renders before handing them to the writer.
const FILES_PER_CHUNK: usize = 512;

#[derive(Debug, thiserror::Error)]
enum CompileError {
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error("{0}")]
    Model(crate::model::Failure),
    #[error(transparent)]
    Write(#[from] write::WriteError),
}

fn scratch_io(e: std::io::Error) -> CompileError {
    CompileError::Write(write::WriteError::Io {
        path: std::env::temp_dir(),
        source: e,
    })
}

/// Plans, renders and writes one cluster at a time, so that memory stays bounded by the largest
/// cluster; the root `plan.yaml` and `PLAN.md` index the clusters' own.
#[allow(clippy::too_many_arguments)]
fn emit(
    mesh: &Mesh,
    paths: &MeshPath,
    catalog: &Catalog,
    inventory_name: &str,
    warnings: &[String],
    env: &minijinja::Environment<'_>,
    out: &std::path::Path,
    opts: write::WriteOptions,
    diff: &mut dyn Write,
    progress: &mut Progress<'_>,
    clean: &[bool],
    provenance: write::Provenance,
) -> Result<write::WriteReport, CompileError> {
    use std::io::{Seek, SeekFrom};
    let order = if plan::order::interleaved(mesh) {
        plan::order::mesh_order(mesh, paths)
    } else {
        Vec::new()
    };
    if !order.is_empty() {
        crate::model::mesh::check_order(mesh, paths, &order).map_err(CompileError::Model)?;
    }
    let mut summaries = Vec::new();
    // Nothing is written, and the output directory is not even locked, until the first cluster
    // is rendered: a broken template stops the run before the directory is touched.
    let mut diff = Some(diff);
    let mut w: Option<write::Writer> = None;
    // Worker threads plan and render clusters (round-robin) while this one writes them;
    // clusters are taken back in inventory order, so the output does not depend on timing.
    // The same threads first run every cluster's plan on the model (a plan the model rejects
    // never reaches the output directory), then, once all passed, plan and render again.
    // A cluster's plan is held whole while it is checked and rendered, and the memory a thread
    // freed is not reused by another: two threads only when every cluster is small.
    let largest = mesh
        .clusters
        .iter()
        .zip(&paths.clusters)
        .map(|(c, p)| crate::path::moves(c, p))
        .max()
        .unwrap_or(0);
    let workers = if largest > crate::path::MAX_MOVES_PER_CLUSTER / 4 {
        1
    } else {
        2
    };
    let failures: std::sync::Mutex<Vec<(usize, crate::model::Failure)>> = Default::default();
    let checked = std::sync::Barrier::new(workers);
    let result: Result<(), CompileError> = std::thread::scope(|scope| {
        let mut queues = Vec::new();
        for k in 0..workers {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Rendered, CompileError>>(0);
            queues.push(rx);
            let (failures, checked) = (&failures, &checked);
            scope.spawn(move || {
                let mine = || {
                    mesh.clusters
                        .iter()
                        .zip(&paths.clusters)
                        .enumerate()
                        .skip(k)
                        .step_by(workers)
                };
                // A panic must not leave the other worker waiting at the barrier forever.
                let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    for (i, (c, p)) in mine() {
                        // A cluster whose inputs did not change passed this same check when its
                        // files were written; the model is deterministic.
                        if clean.get(i) == Some(&true) {
                            continue;
                        }
                        let opts = plan::Options::for_layout(mesh.gitops.layout);
                        let part = plan::build_cluster(i, c, p, catalog, opts);
                        if let Err(f) = crate::model::check_cluster(c, &part, catalog) {
                            return Some((i, f));
                        }
                    }
                    None
                }));
                match check {
                    Ok(None) => {}
                    Ok(Some(f)) => lock(failures).push(f),
                    Err(_) => lock(failures).push((
                        k,
                        crate::model::Failure {
                            cluster: mesh.clusters[k].name.clone(),
                            step: String::new(),
                            operation: None,
                            during: "the model check".into(),
                            problem: "the model panicked (see above)".into(),
                        },
                    )),
                }
                checked.wait();
                if !lock(failures).is_empty() {
                    return;
                }
                for (i, (c, p)) in mine() {
                    let keep = clean.get(i) == Some(&true);
                    if render_cluster(
                        i,
                        c,
                        p,
                        catalog,
                        &mesh.gitops,
                        inventory_name,
                        env,
                        &tx,
                        keep,
                    )
                    .is_err()
                    {
                        break;
                    }
                }
            });
        }
        for i in 0..mesh.clusters.len() {
            loop {
                let Ok(rendered) = queues[i % workers].recv() else {
                    return Ok(());
                };
                match rendered? {
                    Rendered::Keep(dir) => {
                        if w.is_none() {
                            let mut new = write::Writer::begin(
                                out,
                                opts,
                                diff.take().expect("the writer begins once"),
                            )?;
                            new.show_paths_under(&shown_prefix(out));
                            w = Some(new);
                        }
                        if let Some(w) = w.as_mut() {
                            let n = w.keep(&[format!("{dir}/"), format!("rollback/{dir}/")]);
                            progress.files(n);
                        }
                    }
                    Rendered::Files(tree) => {
                        if w.is_none() {
                            let mut new = write::Writer::begin(
                                out,
                                opts,
                                diff.take().expect("the writer begins once"),
                            )?;
                            new.show_paths_under(&shown_prefix(out));
                            w = Some(new);
                        }
                        if let Some(w) = w.as_mut() {
                            w.put(&tree)?;
                        }
                        progress.files(tree.0.len());
                    }
                    Rendered::Done { texts, summary } => {
                        if let Some((mut yaml, mut md)) = texts {
                            let w = match w.as_mut() {
                                Some(w) => w,
                                None => w.insert({
                                    let mut new = write::Writer::begin(
                                        out,
                                        opts,
                                        diff.take().expect("the writer begins once"),
                                    )?;
                                    new.show_paths_under(&shown_prefix(out));
                                    new
                                }),
                            };
                            for (path, file) in [
                                (render::cluster_plan_yaml(&summary.dir), &mut yaml),
                                (render::cluster_plan_md(&summary.dir), &mut md),
                            ] {
                                w.put_streamed(&path, &mut |dst| {
                                    file.seek(SeekFrom::Start(0))?;
                                    std::io::copy(file, dst)?;
                                    Ok(())
                                })?;
                            }
                        }
                        summaries.push(*summary);
                        progress.cluster_done();
                        break;
                    }
                }
            }
        }
        Ok(())
    });
    if let Some((_, f)) = lock(&failures).drain(..).min_by_key(|(i, _)| *i) {
        return Err(CompileError::Model(f));
    }
    result?;
    let order = plan::order::locate(order, &summaries);
    let head = render::PlanHead {
        mesh: &mesh.name,
        inventory: inventory_name,
        target: &paths.target,
        clusters: &summaries,
        warnings,
        order: &order,
        layout: (mesh.gitops.layout != crate::inventory::Layout::Plain)
            .then(|| mesh.gitops.layout.name()),
    };
    let index_yaml = render::plan_yaml_index(&head, env)?;
    let index_md = render::plan_md_index(&head, env)?;
    let mut w = match w {
        Some(w) => w,
        None => {
            let mut new =
                write::Writer::begin(out, opts, diff.take().expect("the writer begins once"))?;
            new.show_paths_under(&shown_prefix(out));
            new
        }
    };
    let mut index = output::OutputTree::default();
    for (path, text) in [("plan.yaml", index_yaml), ("PLAN.md", index_md)] {
        index.insert(path, text).map_err(|m| render::RenderError {
            template: String::new(),
            file: path.to_string(),
            message: m,
        })?;
    }
    w.put(&index)?;
    w.set_provenance(provenance);
    Ok(w.finish()?)
}

/// Plans, checks and renders cluster `i`, sending its files in chunks and then the rest.
/// An error is sent too; `Err` means: stop (the error was sent, or nobody listens).
#[allow(clippy::too_many_arguments)]
fn render_cluster(
    i: usize,
    c: &crate::validate::ClusterSpec,
    p: &crate::path::ClusterPath,
    catalog: &Catalog,
    gitops: &crate::gitops::GitopsSpec,
    inventory_name: &str,
    env: &minijinja::Environment<'_>,
    tx: &std::sync::mpsc::SyncSender<Result<Rendered, CompileError>>,
    keep: bool,
) -> Result<(), ()> {
    let send = |r: Result<Rendered, CompileError>| {
        let failed = r.is_err();
        match tx.send(r) {
            Ok(()) if !failed => Ok(()),
            _ => Err(()),
        }
    };
    let part = plan::build_cluster(i, c, p, catalog, plan::Options::for_layout(gitops.layout));
    if keep {
        // Its files, its plan.yaml and PLAN.md included, are what this run would write; the
        // index needs only its summary.
        send(Ok(Rendered::Keep(part.summary.dir.clone())))?;
        return send(Ok(Rendered::Done {
            texts: None,
            summary: Box::new(part.summary),
        }));
    }
    let states = match crate::model::check_cluster(c, &part, catalog) {
        Ok(s) => s,
        Err(f) => return send(Err(CompileError::Model(f))),
    };
    for chunk in part.artifacts.chunks(FILES_PER_CHUNK) {
        match render::render_files(chunk, inventory_name, env) {
            Ok(tree) => send(Ok(Rendered::Files(tree)))?,
            Err(e) => return send(Err(CompileError::Render(e))),
        }
    }
    if gitops.layout != crate::inventory::Layout::Plain {
        match crate::gitops::render_cluster(c, &part, gitops, catalog, inventory_name, env) {
            Ok(tree) => send(Ok(Rendered::Files(tree)))?,
            Err(crate::gitops::GitopsError::Render(e)) => {
                return send(Err(CompileError::Render(e)));
            }
            Err(crate::gitops::GitopsError::Model(f)) => return send(Err(CompileError::Model(f))),
        }
    }
    let plan::ClusterOut { summary, steps, .. } = part;
    let texts = (|| -> Result<(std::fs::File, std::fs::File), CompileError> {
        let mut yaml = std::io::BufWriter::new(write::scratch().map_err(scratch_io)?);
        render::plan_yaml_cluster(&summary, &steps, env, &mut yaml)?;
        let mut md = std::io::BufWriter::new(write::scratch().map_err(scratch_io)?);
        render::plan_md_cluster(&summary, std::sync::Arc::new(steps), &states, env, &mut md)?;
        let done = |b: std::io::BufWriter<std::fs::File>| {
            b.into_inner().map_err(|e| scratch_io(e.into_error()))
        };
        Ok((done(yaml)?, done(md)?))
    })();
    match texts {
        Ok(texts) => send(Ok(Rendered::Done {
            texts: Some(texts),
            summary: Box::new(summary),
        })),
        Err(e) => send(Err(e)),
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The inventory's name as generated files show it: its file name only, never a directory.
fn display_name(name: &str) -> String {
    std::path::Path::new(name)
        .file_name()
        .map_or_else(|| name.to_string(), |n| n.to_string_lossy().into_owned())
}

pub(crate) fn versions(
    catalog: Option<&std::path::Path>,
    format: OutputFormat,
    io: &mut Io<'_>,
) -> i32 {
    let catalog = match catalog {
        None => Catalog::embedded(),
        Some(p) => {
            let src = match load::read(&p.to_string_lossy(), io.stdin) {
                Ok(s) => s,
                Err(e) => {
                    let _ = io.stderr.write_all(e.message().as_bytes());
                    return e.exit_code();
                }
            };
            match Catalog::from_source(&src) {
                Ok(c) => c,
                Err(d) => {
                    let _ = io
                        .stderr
                        .write_all(diagnostic::render(&d.sorted(), Some(&src)).as_bytes());
                    return exit::REJECTED;
                }
            }
        }
    };
    match format {
        OutputFormat::Json => {
            let releases: Vec<_> = catalog.releases.values().map(|r| &r.raw).collect();
            let _ = writeln!(
                io.stdout,
                "{}",
                serde_json::to_string_pretty(&json!({"releases": releases})).unwrap_or_default()
            );
        }
        OutputFormat::Text => {
            let _ = io
                .stdout
                .write_all(versions_table(&catalog, io.today).as_bytes());
        }
    }
    exit::OK
}

fn versions_table(catalog: &Catalog, today: Option<Date>) -> String {
    use std::fmt::Write as _;
    let mut rows: Vec<[String; 9]> = vec![[
        "MINOR".into(),
        "GA".into(),
        "EOL".into(),
        "LATEST".into(),
        "KUBERNETES".into(),
        "TESTED".into(),
        "OPERATOR".into(),
        "HELM".into(),
        "UPGRADE FROM".into(),
    ]];
    for r in catalog.releases.values() {
        let eol = match catalog.end_of_life(r.minor) {
            catalog::EndOfLife::Stated(d) => d.to_string(),
            catalog::EndOfLife::Derived(d) => format!("~{d}"),
            catalog::EndOfLife::Unknown => "-".into(),
        };
        let eol = match (today, catalog.end_of_life(r.minor)) {
            (Some(t), catalog::EndOfLife::Stated(d) | catalog::EndOfLife::Derived(d)) if t > d => {
                format!("{eol} (ended)")
            }
            _ => eol,
        };
        let list = |v: &[Minor]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                version::format_ranges(v)
            }
        };
        let mut from: Vec<String> = r.from_in_place.iter().map(|m| format!("{m}")).collect();
        for m in &r.from_canary {
            if !r.from_in_place.contains(m) {
                from.push(format!("{m} (canary)"));
            }
        }
        for m in &r.from_canary_alpha {
            from.push(format!("{m} (canary, alpha)"));
        }
        rows.push([
            r.minor.to_string(),
            r.ga.to_string(),
            eol,
            r.latest_patch.to_string(),
            list(&r.kubernetes),
            list(&r.kubernetes_tested),
            if r.in_cluster_operator {
                "yes".into()
            } else {
                "no".into()
            },
            format!("{:?}", r.helm).to_lowercase(),
            from.join(", "),
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let _ = writeln!(out, "\ncatalog: {}", catalog.origin);
    out
}

pub(crate) fn import(args: &cli::ImportArgs, io: &mut Io<'_>) -> i32 {
    let dir_arg = args
        .state
        .as_deref()
        .unwrap_or_else(|| std::path::Path::new("state"));
    if args.print_commands {
        if args.context.is_empty() {
            let _ = writeln!(
                io.stderr,
                "error: --print-commands needs at least one --context (the kubeconfig context of each cluster)"
            );
            return exit::USAGE;
        }
        let dir = dir_arg.to_string_lossy();
        let _ = writeln!(
            io.stdout,
            "#!/bin/sh\n# Saves the state `meshplan import {dir}` reads. Every command only reads the cluster.\nset -eu"
        );
        for c in &args.context {
            let name: String = c
                .chars()
                .map(|ch| {
                    if ch.is_ascii_alphanumeric() || ch == '-' {
                        ch.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            let _ = write!(
                io.stdout,
                "{}",
                crate::import::state::commands(c, &name, &dir)
            );
        }
        return exit::OK;
    }
    let mesh = args.name.clone().unwrap_or_else(|| {
        std::fs::canonicalize(dir_arg)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "mesh".into())
    });
    let imported = match crate::import::import(dir_arg, &mesh) {
        Ok(i) => i,
        Err(e) => {
            let _ = writeln!(io.stderr, "error: {e}\nnothing was written");
            return exit::REJECTED;
        }
    };
    for f in &imported.findings {
        let _ = writeln!(io.stderr, "warning[import]: {}: {}", f.at, f.message);
    }
    // The inventory must pass the checks `check` runs on it before anyone plans from it.
    let shown = args
        .out
        .as_ref()
        .map_or_else(|| "<imported>".to_string(), |p| p.display().to_string());
    let src = crate::source::Source::new(&shown, &imported.text);
    let (inv, mut diags) = load::inventory(&src);
    if let Some(inv) = inv {
        let _ = crate::validate::validate(&inv, &src, &mut diags);
    }
    let rejected = diags.has_errors();
    diags.locate(&src);
    if !diags.is_empty() {
        let _ = io
            .stderr
            .write_all(diagnostic::render(&diags.sorted(), Some(&src)).as_bytes());
    }
    match &args.out {
        None => {
            let _ = io.stdout.write_all(imported.text.as_bytes());
        }
        Some(path) => {
            if path.exists() && !args.force {
                let _ = writeln!(
                    io.stderr,
                    "error: `{}` exists; pass --force to replace it (nothing was written)",
                    path.display()
                );
                return exit::IO;
            }
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| std::path::Path::new("."));
            let written = tempfile::NamedTempFile::new_in(dir).and_then(|mut t| {
                t.write_all(imported.text.as_bytes())?;
                t.persist(path).map_err(|e| e.error)?;
                Ok(())
            });
            if let Err(e) = written {
                let _ = writeln!(io.stderr, "error: {}: {e}", path.display());
                return exit::IO;
            }
            let _ = writeln!(
                io.stderr,
                "{}: {} cluster(s), {} finding(s) to review",
                path.display(),
                imported.text.matches("\n  - name: ").count(),
                imported.findings.len()
            );
        }
    }
    if rejected { exit::REJECTED } else { exit::OK }
}

pub(crate) fn drift(args: &cli::DriftArgs, io: &mut Io<'_>) -> i32 {
    let src = match load::read(&args.inventory, io.stdin) {
        Ok(s) => s,
        Err(e) => {
            let _ = io.stderr.write_all(e.message().as_bytes());
            return e.exit_code();
        }
    };
    let (inv, diags) = load::inventory(&src);
    let Some(inv) = inv.filter(|_| !diags.has_errors()) else {
        let _ = io
            .stderr
            .write_all(diagnostic::render(&diags.sorted(), Some(&src)).as_bytes());
        return exit::REJECTED;
    };
    let imported = match crate::import::import(&args.state, &inv.name) {
        Ok(i) => i,
        Err(e) => {
            let _ = writeln!(io.stderr, "error: {e}");
            return exit::REJECTED;
        }
    };
    let state_src = crate::source::Source::new("<state>", &imported.text);
    let (state, state_diags) = load::inventory(&state_src);
    let Some(state) = state else {
        let _ = io
            .stderr
            .write_all(diagnostic::render(&state_diags.sorted(), Some(&state_src)).as_bytes());
        return exit::INTERNAL;
    };
    let mut found = diagnostic::Diagnostics::default();
    crate::import::drift::compare(&inv, &src, &state, &mut found);
    if found.is_empty() {
        let _ = writeln!(
            io.stderr,
            "{}: no drift from the saved state of {} cluster(s)",
            src.name,
            state.clusters.len()
        );
        return exit::OK;
    }
    let count = found.0.len();
    found.locate(&src);
    let _ = io
        .stderr
        .write_all(diagnostic::render(&found.sorted(), Some(&src)).as_bytes());
    let _ = writeln!(
        io.stderr,
        "{count} difference(s): the inventory is stale; `meshplan import {}` shows the clusters as they run",
        args.state.display()
    );
    exit::DRIFT
}

pub(crate) fn advance(args: &cli::AdvanceArgs, io: &mut Io<'_>) -> i32 {
    if args.in_place && args.path.inventory == "-" {
        let _ = writeln!(
            io.stderr,
            "error: --in-place needs an inventory file, not standard input"
        );
        return exit::USAGE;
    }
    let checked = match checked_for_plan(&args.path, io) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some((source, mesh, paths, catalog)) = checked.plannable() else {
        return exit::REJECTED;
    };
    if checked.diagnostics.has_errors() {
        return exit::REJECTED;
    }
    let outs: Vec<plan::ClusterOut> = mesh
        .clusters
        .iter()
        .zip(&paths.clusters)
        .enumerate()
        .map(|(i, (c, p))| {
            plan::build_cluster(
                i,
                c,
                p,
                catalog,
                plan::Options::for_layout(mesh.gitops.layout),
            )
        })
        .collect();
    let pairs: Vec<_> = mesh
        .clusters
        .iter()
        .zip(&outs)
        .map(|(c, o)| (c, &o.after))
        .collect();
    let (text, changes) = match crate::import::advance::advance(&source.text, &pairs) {
        Ok(x) => x,
        Err(e) => {
            let _ = writeln!(
                io.stderr,
                "error: {}: {}\nnothing was written; edit those fields by hand",
                source.name, e.0
            );
            return exit::REJECTED;
        }
    };
    // What was written must still be a valid inventory, describing what the plan leaves.
    let out_src = crate::source::Source::new(&source.name, &text);
    let (inv, mut diags) = load::inventory(&out_src);
    if let Some(inv) = &inv {
        let _ = crate::validate::validate(inv, &out_src, &mut diags);
    }
    if diags.has_errors() {
        diags.locate(&out_src);
        let _ = io
            .stderr
            .write_all(diagnostic::render(&diags.sorted(), Some(&out_src)).as_bytes());
        let _ = writeln!(
            io.stderr,
            "error[internal]: the advanced inventory does not validate; nothing was written. This is a bug in meshplan"
        );
        return exit::INTERNAL;
    }
    for c in &changes {
        let _ = writeln!(io.stderr, "advanced: {c}");
    }
    if args.in_place {
        let path = std::path::Path::new(&args.path.inventory);
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| std::path::Path::new("."));
        let written = tempfile::NamedTempFile::new_in(dir).and_then(|mut t| {
            t.write_all(text.as_bytes())?;
            if let Ok(meta) = std::fs::metadata(path) {
                t.as_file().set_permissions(meta.permissions())?;
            }
            t.persist(path).map_err(|e| e.error)?;
            Ok(())
        });
        if let Err(e) = written {
            let _ = writeln!(io.stderr, "error: {}: {e}", path.display());
            return exit::IO;
        }
        let _ = writeln!(
            io.stderr,
            "{}: {} field(s) advanced to {}",
            path.display(),
            changes.len(),
            paths.target
        );
    } else {
        let _ = io.stdout.write_all(text.as_bytes());
    }
    exit::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_one_line_rewritten_then_cleared() {
        let mut buf: Vec<u8> = Vec::new();
        {
            let mut p = Progress::new(Some(&mut buf), 2);
            p.files(10);
            p.cluster_done();
        }
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.contains("\r\x1b[2Kcompiling: 1/2 clusters, 10 files"),
            "{text:?}"
        );
        assert!(text.ends_with("\r\x1b[2K"), "{text:?}");
        assert!(!text.contains('\n'));
        // Without a terminal, nothing.
        let mut p = Progress::new(None, 2);
        p.files(3);
        p.cluster_done();
    }
}
