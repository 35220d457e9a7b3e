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
//! Only `load` (reading) and `write` (writing) touch the file system; [`run`] and the commands
//! module do the command-line IO around them. Input problems are [`diagnostic::Diagnostic`]s, collected and
//! reported together; operational failures are errors with their own exit codes.

pub mod cache;
pub mod catalog;
pub mod chart_facts;
pub mod cli;
mod commands;
pub mod diagnostic;
pub mod gitops;
pub mod import;
pub mod inventory;
pub mod load;
pub mod model;
pub mod output;
pub mod path;
pub mod plan;
pub mod render;
pub mod sail;
pub mod schema;
pub mod source;
pub mod stream;
#[doc(hidden)]
pub mod synthetic;
pub mod validate;
pub mod values;
pub mod version;
pub mod write;
pub mod yaml;

use std::ffi::OsString;
use std::io::{Read, Write};

use crate::catalog::{Catalog, Date};
use crate::cli::{Cli, Command, PathArgs};
use crate::diagnostic::{Code, Diagnostic, Diagnostics};
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
    /// Standard error is a terminal: diagnostics may be coloured and progress shown.
    pub stderr_is_terminal: bool,
    /// `NO_COLOR` is set to something (no-color.org): no colour unless `--color always`.
    pub no_color: bool,
    /// Set by [`run`] from `--color` and the two above.
    pub color: bool,
}

/// Runs meshplan with `args` (the first is the program name) and returns the exit code.
/// `meshplan --version`: the version, the commit it was built from, and the release catalog
/// it embeds.
pub fn version_text() -> String {
    let catalog = Catalog::embedded();
    let minors: Vec<Minor> = catalog.minors().collect();
    let newest = minors.last().and_then(|m| catalog.get(*m));
    format!(
        "{} (commit {}; release catalog: Istio {} to {}, newest {} released {})",
        env!("CARGO_PKG_VERSION"),
        env!("MESHPLAN_COMMIT"),
        minors.first().map(ToString::to_string).unwrap_or_default(),
        minors.last().map(ToString::to_string).unwrap_or_default(),
        newest
            .map(|r| r.latest_patch.to_string())
            .unwrap_or_default(),
        newest.map(|r| r.ga.to_string()).unwrap_or_default(),
    )
}

/// The command line's definition, with [`version_text`] as its version.
fn command() -> clap::Command {
    use clap::CommandFactory as _;
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    Cli::command().version(VERSION.get_or_init(version_text).as_str())
}

pub fn run(args: impl IntoIterator<Item = OsString>, io: &mut Io<'_>) -> i32 {
    use clap::FromArgMatches as _;
    let parsed = command()
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
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
    io.color = match cli.color {
        cli::ColorChoice::Always => true,
        cli::ColorChoice::Never => false,
        cli::ColorChoice::Auto => io.stderr_is_terminal && !io.no_color,
    };
    match cli.command {
        Command::Check(args) => commands::check(&args.path, args.output, io),
        Command::Explain(args) => commands::explain(&args, io),
        Command::Completions(args) => {
            clap_complete::generate(args.shell, &mut command(), "meshplan", io.stdout);
            exit::OK
        }
        Command::Man => {
            match clap_mangen::Man::new(command()).render(io.stdout) {
                Ok(()) => exit::OK,
                // The reader went away (`meshplan man | head`).
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
                Err(e) => {
                    let _ = writeln!(io.stderr, "error: cannot write the manual page: {e}");
                    exit::IO
                }
            }
        }
        Command::Compile(args) => commands::compile(&args, io),
        Command::Import(args) => commands::import(&args, io),
        Command::Drift(args) => commands::drift(&args, io),
        Command::Advance(args) => commands::advance(&args, io),
        Command::Versions(args) => commands::versions(args.catalog.as_deref(), args.output, io),
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

impl Checked {
    /// Everything planning needs, when every check got that far.
    pub fn plannable(&self) -> Option<(&Source, &Mesh, &MeshPath, &Catalog)> {
        Some((
            self.source.as_ref()?,
            self.mesh.as_ref()?,
            self.paths.as_ref()?,
            self.catalog.as_ref()?,
        ))
    }
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
    let allowed = allowed_codes(&args.allow)?;
    if args.inventory == "-" && args.catalog.as_deref() == Some(std::path::Path::new("-")) {
        return Err((
            "error: standard input can feed the inventory or --catalog, not both; give the catalog as a file\n".to_string(),
            exit::USAGE,
        ));
    }
    let catalog = match &args.catalog {
        None => Some(Catalog::embedded()),
        Some(p) => {
            let src = load::read(&p.to_string_lossy(), stdin)
                .map_err(|e| (e.message().to_string(), e.exit_code()))?;
            match Catalog::from_source(&src) {
                Ok(c) => Some(c),
                Err(d) => {
                    let text = diagnostic::render(&d.sorted(), Some(&src));
                    return Err((text, exit::REJECTED));
                }
            }
        }
    };
    let source =
        load::read(&args.inventory, stdin).map_err(|e| (e.message().to_string(), e.exit_code()))?;
    let target = parse_target(args, catalog.as_ref(), &mut diags, today, artifacts);
    let (inventory, loaded) = load::inventory(&source);
    diags.extend(loaded);
    let mut mesh = inventory.and_then(|inv| validate::validate(&inv, &source, &mut diags));
    if let Some(m) = &mut mesh {
        if let Some(l) = args.layout {
            m.gitops.layout = l;
        }
        gitops::check(m, &source, args.layout.is_some(), &mut diags);
    }
    let mut paths = match (&mesh, &target, &catalog) {
        (Some(m), Some(t), Some(c)) if !diags.has_errors() => {
            path::plan_paths(m, t, c, &source, &mut diags)
        }
        _ => None,
    };
    if let (Some(m), Some(p)) = (&mesh, &paths) {
        values::check(m, p, &source, &mut diags);
        if diags.has_errors() {
            paths = None;
        }
    }
    // Warnings and notes a team accepts on purpose; errors always stay.
    diags
        .0
        .retain(|d| d.severity == diagnostic::Severity::Error || !allowed.contains(&d.code));
    diags.locate(&source);
    Ok(Checked {
        source: Some(source),
        catalog,
        mesh,
        paths,
        diagnostics: diags.sorted(),
    })
}

/// The codes `--allow` names; an unknown one is a usage error.
fn allowed_codes(names: &[String]) -> Result<Vec<Code>, (String, i32)> {
    let mut out = Vec::new();
    for n in names {
        match Code::ALL.iter().find(|c| c.name() == n.as_str()) {
            Some(c) => out.push(*c),
            None => {
                let hint = diagnostic::suggest(n, Code::ALL.iter().map(|c| c.name()))
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return Err((
                    format!(
                        "error: --allow {n}: no such diagnostic code{hint}; `meshplan explain --list` lists them\n"
                    ),
                    exit::USAGE,
                ));
            }
        }
    }
    Ok(out)
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

/// Today's date from `MESHPLAN_TODAY` or the system clock.
/// Today's date: `MESHPLAN_TODAY` (YYYY-MM-DD) if set, else the clock. A `MESHPLAN_TODAY`
/// that is not a date is an error, not silently the clock's date.
pub fn today_from_env() -> Result<Option<Date>, String> {
    match std::env::var("MESHPLAN_TODAY") {
        Ok(s) => Date::parse(&s).map(Some).ok_or_else(|| {
            format!("error: MESHPLAN_TODAY is `{s}`, not a date of the form YYYY-MM-DD (a real day); unset it to use today's date")
        }),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err("error: MESHPLAN_TODAY is not UTF-8 text; give a date of the form YYYY-MM-DD".into())
        }
        Err(std::env::VarError::NotPresent) => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            Ok(i64::try_from(secs / 86_400).ok().map(Date::from_days))
        }
    }
}
