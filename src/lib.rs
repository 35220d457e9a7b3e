//! meshplan compiles a mesh inventory and a target Istio version into an ordered, reviewable
//! directory of zero-downtime canary upgrade artifacts.
//!
//! The pipeline, one module per stage:
//!
//! | stage | module | in -> out |
//! | --- | --- | --- |
//! | load | [`load`] | file -> [`source::Source`] -> [`inventory::Inventory`] (YAML syntax + JSON Schema) |
//! | validate | [`validate`] | `Inventory` -> [`validate::Mesh`] (semantic rules) |
//! | path | [`path`] | `Mesh` + [`catalog::Catalog`] -> [`path::MeshPath`] (upgrade rules) |
//! | plan | [`plan`] | `MeshPath` -> [`plan::Plan`] (ordered steps, pure data) |
//! | render | [`render`] | `Plan` -> [`output::OutputTree`] (minijinja templates) |
//! | write | [`write`] | `OutputTree` -> files (atomic, deterministic, owned) |
//!
//! Only `load` (reading) and `write` (writing) touch the file system; [`run`] does the
//! command-line IO around them. Input problems are [`diagnostic::Diagnostic`]s, collected and
//! reported together; operational failures are errors with their own exit codes.

pub mod catalog;
pub mod cli;
pub mod diagnostic;
pub mod inventory;
pub mod load;
pub mod output;
pub mod path;
pub mod plan;
pub mod render;
pub mod schema;
pub mod source;
pub mod stream;
#[doc(hidden)]
pub mod synthetic;
pub mod validate;
pub mod version;
pub mod write;
pub mod yaml;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Write};

use clap::Parser as _;
use serde_json::json;

use crate::catalog::{Catalog, Date};
use crate::cli::{Cli, Command, OutputFormat, PathArgs};
use crate::diagnostic::{Code, Diagnostic, Diagnostics, JsonDiagnostic, Severity};
use crate::path::{MeshPath, Target};
use crate::source::Source;
use crate::validate::Mesh;
use crate::version::{IstioVersion, Minor};

/// Exit codes. Documented in README; stable.
pub mod exit {
    /// Success (for `--check`: the directory is up to date).
    pub const OK: i32 = 0;
    /// The inventory or the upgrade was rejected (error diagnostics).
    pub const REJECTED: i32 = 1;
    /// Command-line usage error.
    pub const USAGE: i32 = 2;
    /// `compile --check` found the output directory out of date.
    pub const DRIFT: i32 = 3;
    /// I/O error, or the output directory was refused.
    pub const IO: i32 = 4;
    /// Internal error: a template or the plan failed (a bug, or a broken `--templates` override).
    pub const INTERNAL: i32 = 70;
}

/// Standard input, output and error of one run, and the environment it reads.
pub struct Io<'a> {
    pub stdin: &'a mut dyn Read,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
    /// Today's date for end-of-life warnings: `MESHPLAN_TODAY` (YYYY-MM-DD) or the clock.
    pub today: Option<Date>,
}

/// Runs meshplan with `args` (the first is the program name) and returns the exit code.
pub fn run(args: impl IntoIterator<Item = OsString>, io: &mut Io<'_>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let text = e.render().to_string();
            if e.use_stderr() {
                let _ = io.stderr.write_all(text.as_bytes());
            } else {
                let _ = io.stdout.write_all(text.as_bytes());
            }
            return code;
        }
    };
    match cli.command {
        Command::Check(args) => cmd_check(&args.path, args.output, io),
        Command::Compile(args) => cmd_compile(&args, io),
        Command::Versions(args) => cmd_versions(args.catalog.as_deref(), args.output, io),
        Command::Schema(args) => {
            let kind = if args.catalog {
                schema::Kind::Catalog
            } else {
                schema::Kind::Inventory
            };
            let _ = io.stdout.write_all(schema::text(kind).as_bytes());
            exit::OK
        }
    }
}

/// Everything the checks produced: the diagnostics, and the mesh and paths when valid.
pub struct Checked {
    pub source: Option<Source>,
    pub catalog: Option<Catalog>,
    pub mesh: Option<Mesh>,
    pub paths: Option<MeshPath>,
    pub diagnostics: Diagnostics,
}

/// Loads, validates and plans the path: every check `check` and `compile` share. Pure but
/// for reading the inventory and catalog files.
/// `artifacts` is set by `compile`: what meshplan cannot write artifacts for is then an error.
pub fn check(
    args: &PathArgs,
    stdin: &mut dyn Read,
    today: Option<Date>,
    artifacts: bool,
) -> Result<Checked, (String, i32)> {
    let mut diags = Diagnostics::default();
    let catalog = match &args.catalog {
        None => Some(Catalog::embedded()),
        Some(p) => {
            let src = load::read(&p.to_string_lossy(), stdin).map_err(|e| (e, exit::IO))?;
            match Catalog::from_source(&src) {
                Ok(c) => Some(c),
                Err(d) => {
                    let text = diagnostic::render(&d.sorted(), Some(&src));
                    return Err((text, exit::REJECTED));
                }
            }
        }
    };
    let source = load::read(&args.inventory, stdin).map_err(|e| (e, exit::IO))?;
    let target = parse_target(args, catalog.as_ref(), &mut diags, today, artifacts);
    let (inventory, loaded) = load::inventory(&source);
    diags.extend(loaded);
    let mesh = inventory.and_then(|inv| validate::validate(&inv, &source, &mut diags));
    let paths = match (&mesh, &target, &catalog) {
        (Some(m), Some(t), Some(c)) if !diags.has_errors() => {
            path::plan_paths(m, t, c, &source, &mut diags)
        }
        _ => None,
    };
    diags.locate(&source);
    Ok(Checked {
        source: Some(source),
        catalog,
        mesh,
        paths,
        diagnostics: diags.sorted(),
    })
}

fn parse_target(
    args: &PathArgs,
    catalog: Option<&Catalog>,
    diags: &mut Diagnostics,
    today: Option<Date>,
    artifacts: bool,
) -> Option<Target> {
    let version = match args.to.parse::<IstioVersion>() {
        Ok(v) => Some(v),
        Err(e) => match (args.to.parse::<Minor>(), catalog) {
            (Ok(m), Some(c)) if c.get(m).is_some() => c.get(m).map(|r| {
                diags.push(
                    Diagnostic::note(
                        Code::NewerPatch,
                        format!("--to {m} means its newest known patch, {}", r.latest_patch),
                    )
                    .on_flag("--to"),
                );
                r.latest_patch.clone()
            }),
            (Ok(m), Some(c)) => {
                diags.push(
                    Diagnostic::error(
                        Code::UnknownTarget,
                        format!("Istio {m} is not in the release catalog"),
                    )
                    .on_flag("--to")
                    .help(format!(
                        "see `meshplan versions`; this catalog is {}",
                        c.origin
                    )),
                );
                None
            }
            _ => {
                diags.push(
                    Diagnostic::error(Code::InvalidVersion, format!("--to: {e}"))
                        .on_flag("--to")
                        .help("give the target as MAJOR.MINOR.PATCH, for example --to 1.20.2"),
                );
                None
            }
        },
    };
    let mut via = Vec::new();
    for v in &args.via {
        match v.parse::<IstioVersion>() {
            Ok(v) => via.push(v),
            Err(e) => diags.push(
                Diagnostic::error(Code::InvalidVia, format!("--via: {e}"))
                    .on_flag("--via")
                    .help("list intermediate versions as MAJOR.MINOR.PATCH, comma-separated: --via 1.19.10,1.21.6"),
            ),
        }
    }
    Some(Target {
        version: version?,
        via,
        one_minor: args.one_minor_at_a_time,
        today,
        artifacts,
    })
}

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
        let _ = io
            .stderr
            .write_all(diagnostic::render(&shown, checked.source.as_ref()).as_bytes());
    }
}

fn cmd_check(args: &PathArgs, format: OutputFormat, io: &mut Io<'_>) -> i32 {
    let checked = match check(args, io.stdin, io.today, false) {
        Ok(c) => c,
        Err((text, code)) => {
            let _ = io.stderr.write_all(text.as_bytes());
            return code;
        }
    };
    let ok = !checked.diagnostics.has_errors();
    match format {
        OutputFormat::Text => {
            print_diagnostics(io, &checked, false);
            if let (Some(paths), Some(catalog)) = (&checked.paths, &checked.catalog) {
                let _ = io.stdout.write_all(check_report(paths, catalog).as_bytes());
            }
        }
        OutputFormat::Json => {
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

fn cmd_compile(args: &cli::CompileArgs, io: &mut Io<'_>) -> i32 {
    let checked = match check(&args.path, io.stdin, io.today, true) {
        Ok(c) => c,
        Err((text, code)) => {
            let _ = io.stderr.write_all(text.as_bytes());
            return code;
        }
    };
    print_diagnostics(io, &checked, false);
    let (Some(source), Some(mesh), Some(paths), Some(catalog)) = (
        &checked.source,
        &checked.mesh,
        &checked.paths,
        &checked.catalog,
    ) else {
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
                &mut *io.stdout,
            )
        });
    match result {
        Ok(report) => {
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
                let _ = writeln!(io.stdout, "{}: {}", args.out.display(), report.summary());
            }
            exit::OK
        }
        Err(CompileError::Render(e)) => {
            let _ = writeln!(
                io.stderr,
                "error[internal]: {e}\nno file was changed that a rerun would not restore (re-run after fixing the template)"
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

/// One cluster, planned and rendered.
struct Rendered {
    tree: output::OutputTree,
    steps_yaml: String,
    md: String,
    summary: plan::ClusterPlan,
}

#[derive(Debug, thiserror::Error)]
enum CompileError {
    #[error(transparent)]
    Render(#[from] render::RenderError),
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
/// cluster; `plan.yaml` and `PLAN.md` are assembled from per-cluster parts kept in scratch files.
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
) -> Result<write::WriteReport, CompileError> {
    use std::io::{Seek, SeekFrom};
    let mut steps_body = std::io::BufWriter::new(write::scratch().map_err(scratch_io)?);
    let mut md_body = std::io::BufWriter::new(write::scratch().map_err(scratch_io)?);
    let mut summaries = Vec::new();
    // Nothing is written until the first cluster is rendered: a broken template or a refused
    // directory stops the run before the output directory is touched.
    let mut w = write::Writer::begin(out, opts, diff)?;
    // Two worker threads plan and render clusters (round-robin) while this one writes them;
    // clusters are taken back in inventory order, so the output does not depend on timing.
    const WORKERS: usize = 2;
    let result: Result<(), CompileError> = std::thread::scope(|scope| {
        let mut queues = Vec::new();
        for k in 0..WORKERS {
            let (tx, rx) =
                std::sync::mpsc::sync_channel::<Result<Rendered, render::RenderError>>(0);
            queues.push(rx);
            scope.spawn(move || {
                let mine = mesh
                    .clusters
                    .iter()
                    .zip(&paths.clusters)
                    .enumerate()
                    .skip(k)
                    .step_by(WORKERS);
                for (i, (c, p)) in mine {
                    let part = plan::build_cluster(i, c, p, catalog);
                    let rendered = render::render_files(&part.artifacts, inventory_name, env)
                        .and_then(|tree| {
                            Ok(Rendered {
                                tree,
                                steps_yaml: render::plan_yaml_steps(&part.steps)?,
                                md: render::plan_md_cluster(&part.summary, &part.steps, env)?,
                                summary: part.summary,
                            })
                        });
                    let failed = rendered.is_err();
                    if tx.send(rendered).is_err() || failed {
                        break;
                    }
                }
            });
        }
        for i in 0..mesh.clusters.len() {
            let Ok(rendered) = queues[i % WORKERS].recv() else {
                break;
            };
            let r = rendered?;
            steps_body
                .write_all(r.steps_yaml.as_bytes())
                .map_err(scratch_io)?;
            md_body.write_all(r.md.as_bytes()).map_err(scratch_io)?;
            w.put(&r.tree)?;
            summaries.push(r.summary);
        }
        Ok(())
    });
    result?;
    let head = render::PlanHead {
        mesh: &mesh.name,
        inventory: inventory_name,
        target: &paths.target,
        clusters: &summaries,
        warnings,
    };
    let yaml_head = render::plan_yaml_head(&head, env)?;
    let md_head = render::plan_md_head(&head, env)?;
    let mut steps_body = steps_body
        .into_inner()
        .map_err(|e| scratch_io(e.into_error()))?;
    let mut md_body = md_body
        .into_inner()
        .map_err(|e| scratch_io(e.into_error()))?;
    for (path, head, body) in [
        ("plan.yaml", &yaml_head, &mut steps_body),
        ("PLAN.md", &md_head, &mut md_body),
    ] {
        w.put_streamed(path, &mut |dst| {
            dst.write_all(head.as_bytes())?;
            body.seek(SeekFrom::Start(0))?;
            std::io::copy(body, dst)?;
            Ok(())
        })?;
    }
    Ok(w.finish()?)
}

/// The inventory's name as generated files show it: its file name only, never a directory.
fn display_name(name: &str) -> String {
    std::path::Path::new(name)
        .file_name()
        .map_or_else(|| name.to_string(), |n| n.to_string_lossy().into_owned())
}

fn cmd_versions(catalog: Option<&std::path::Path>, format: OutputFormat, io: &mut Io<'_>) -> i32 {
    let catalog = match catalog {
        None => Catalog::embedded(),
        Some(p) => {
            let src = match load::read(&p.to_string_lossy(), io.stdin) {
                Ok(s) => s,
                Err(e) => {
                    let _ = writeln!(io.stderr, "error: {e}");
                    return exit::IO;
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

/// Today's date from `MESHPLAN_TODAY` or the system clock.
pub fn today_from_env() -> Option<Date> {
    if let Ok(s) = std::env::var("MESHPLAN_TODAY") {
        return Date::parse(&s);
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Date::from_days(i64::try_from(secs / 86_400).ok()?))
}
