//! The command line: clap definitions only. `lib.rs` turns them into work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  meshplan check examples/prod-mesh.yaml --to 1.21.0
  meshplan check examples/prod-mesh.yaml --to 1.22.8 --output github   # CI annotations
  meshplan check examples/prod-mesh.yaml --to 1.22.8 --output json
  meshplan compile examples/prod-mesh.yaml --to 1.20.2 --out plan/
  meshplan compile examples/prod-mesh.yaml --to 1.20.2 --out plan/ --check
  cat inventory.yaml | meshplan check - --to 1.20.2
  meshplan versions
  meshplan schema > inventory.schema.json
  meshplan explain values-invalid
  meshplan completions bash > /etc/bash_completion.d/meshplan

Exit codes: 0 ok, 1 inventory or upgrade rejected, 2 usage error,
3 --check found the output directory out of date (drift: the inventory
is stale), 4 I/O error or output
directory refused, 70 internal error.";

/// Compiles a mesh inventory and a target Istio version into an ordered,
/// reviewable directory of zero-downtime canary upgrade artifacts.
#[derive(Debug, Parser)]
#[command(name = "meshplan", version, about, after_help = EXAMPLES, propagate_version = true)]
pub struct Cli {
    /// When to colour diagnostics: on a terminal (auto, unless NO_COLOR is set), always, never
    #[arg(
        long,
        value_enum,
        global = true,
        default_value = "auto",
        value_name = "WHEN"
    )]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the inventory and the upgrade path of every cluster, writing nothing (to verify a
    /// committed plan directory instead, use `compile --check`)
    #[command(
        after_help = "Examples:\n  meshplan check inventory.yaml --to 1.21.0\n  meshplan check inventory.yaml --to 1.22.8 --via 1.20.8\n  meshplan check - --to 1.20.2 --output json < inventory.yaml\n  meshplan check inventory.yaml --to 1.22.8 --output sarif > meshplan.sarif\n\n`check` validates the inventory and the path; `compile --check` verifies that a plan\ndirectory is what `compile` would write now."
    )]
    Check(CheckArgs),
    /// Check, then write the ordered directory of upgrade artifacts (with --check: verify it is
    /// up to date, writing nothing)
    #[command(
        after_help = "Examples:\n  meshplan compile inventory.yaml --to 1.20.2 --out plan/\n  meshplan compile inventory.yaml --to 1.20.2 --out plan/ --check   # CI: is the committed plan current?\n  meshplan compile inventory.yaml --to 1.20.2 --out plan/ --check --output json\n  meshplan compile inventory.yaml --to 1.22.8 --templates my-templates/"
    )]
    Compile(CompileArgs),
    /// Write an inventory from saved cluster state (the files the commands that
    /// `--print-commands` prints save), or print those commands
    #[command(
        after_help = "Examples:\n  meshplan import --print-commands --context east --context west > save-state.sh\n  sh save-state.sh                       # read-only kubectl and helm commands, into state/\n  meshplan import state/ --out inventory.yaml\n  meshplan check inventory.yaml --to 1.30.5\n\nThe state directory holds one directory per cluster, named after it (and after its\nkubeconfig context): version.json, objects.json, gateways.json (optional),\nhelm-releases.json and helm-values/<namespace>.<release>.json."
    )]
    Import(ImportArgs),
    /// Report every difference between an inventory and its clusters' saved state, at the
    /// inventory's line and column (exit 3 when they differ)
    #[command(
        after_help = "Examples:\n  sh save-state.sh                       # from meshplan import --print-commands\n  meshplan drift inventory.yaml state/   # CI: refuse to plan from a stale inventory"
    )]
    Drift(DriftArgs),
    /// Rewrite the inventory to the state the plan to --to leaves behind (versions,
    /// revisions, releases, labels), keeping its comments and formatting
    #[command(
        after_help = "Examples:\n  meshplan advance inventory.yaml --to 1.30.5            # print the advanced inventory\n  meshplan advance inventory.yaml --to 1.30.5 --in-place # once the plan is applied\n\nRun it with the same --to (and --via) as the compile whose plan was applied."
    )]
    Advance(AdvanceArgs),
    /// Print the Istio release catalog
    Versions(VersionsArgs),
    /// Print the JSON Schema of the inventory format (or of the catalog)
    Schema(SchemaArgs),
    /// Explain a diagnostic code: what it means, what to do, where Istio documents it
    #[command(
        after_help = "Examples:\n  meshplan explain values-invalid\n  meshplan explain --list"
    )]
    Explain(ExplainArgs),
    /// Print a shell completion script
    #[command(
        after_help = "Examples:\n  meshplan completions bash > ~/.local/share/bash-completion/completions/meshplan\n  meshplan completions zsh > ~/.zfunc/_meshplan\n  meshplan completions fish > ~/.config/fish/completions/meshplan.fish"
    )]
    Completions(CompletionsArgs),
    /// Print the manual page (roff)
    #[command(after_help = "Examples:\n  meshplan man > meshplan.1 && man ./meshplan.1")]
    Man,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The code, as diagnostics show it (`values-invalid`)
    #[arg(value_name = "CODE", required_unless_present = "list")]
    pub code: Option<String>,
    /// List every code with its one-line meaning
    #[arg(long)]
    pub list: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct PathArgs {
    /// The inventory file (`-` reads standard input)
    #[arg(value_name = "INVENTORY")]
    pub inventory: String,
    /// The Istio version to upgrade to, e.g. 1.20.2 (a minor such as 1.20 means its newest known patch)
    #[arg(long, value_name = "VERSION")]
    pub to: String,
    /// Intermediate versions to go through, comma-separated, e.g. 1.19.10,1.21.6
    #[arg(long, value_name = "VERSIONS", value_delimiter = ',')]
    pub via: Vec<String>,
    /// One minor per hop even for canary upgrades (a policy some vendors require)
    #[arg(long)]
    pub one_minor_at_a_time: bool,
    /// A release catalog to use instead of the built-in one
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Silence a warning or note code on purpose (repeatable, or comma-separated), e.g.
    /// --allow end-of-life; errors cannot be silenced
    #[arg(long, value_name = "CODE", value_delimiter = ',')]
    pub allow: Vec<String>,
    /// The output layout, instead of the inventory's gitops.layout: plain (helm and kubectl
    /// commands), kustomize, flux or argocd (stages a controller applies)
    #[arg(long, value_enum, value_name = "LAYOUT")]
    pub layout: Option<crate::inventory::Layout>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// What `check` prints on standard output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// The report for people
    Text,
    /// The report and the diagnostics as JSON (schemas/check-output.schema.json)
    Json,
    /// GitHub Actions workflow commands: an annotation at each diagnostic's file:line:col
    Github,
    /// SARIF 2.1.0, for code-scanning tools
    Sarif,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub path: PathArgs,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub output: CheckFormat,
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    #[command(flatten)]
    pub path: PathArgs,
    /// The output directory
    #[arg(long, value_name = "DIR", default_value = "plan")]
    pub out: PathBuf,
    /// Write nothing; print a diff of what would change and exit 3 if anything would
    #[arg(long)]
    pub check: bool,
    /// Write into a non-empty directory that meshplan did not create
    #[arg(long)]
    pub force: bool,
    /// Do not print the summary of created, updated and removed files
    #[arg(long, short)]
    pub quiet: bool,
    /// A directory of templates that replace the built-in ones of the same name
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// How to report what was (or, with --check, would be) written: a summary for people, or
    /// JSON listing every created, updated and removed file (schemas/compile-output.schema.json)
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct AdvanceArgs {
    #[command(flatten)]
    pub path: PathArgs,
    /// Replace INVENTORY with the advanced inventory (atomically) instead of printing it
    #[arg(long)]
    pub in_place: bool,
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    /// The inventory (`-` for standard input)
    #[arg(value_name = "INVENTORY")]
    pub inventory: String,
    /// The directory of saved state: one directory per cluster
    #[arg(value_name = "STATE_DIR")]
    pub state: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The directory of saved state: one directory per cluster
    #[arg(value_name = "STATE_DIR", required_unless_present = "print_commands")]
    pub state: Option<PathBuf>,
    /// Where to write the inventory (default: standard output)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Overwrite --out if it exists
    #[arg(long)]
    pub force: bool,
    /// The mesh's name in the inventory (default: the state directory's name)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Print the read-only commands that save each --context's state into STATE_DIR (default
    /// state), instead of importing
    #[arg(long)]
    pub print_commands: bool,
    /// A kubeconfig context to save (with --print-commands; repeat for several clusters)
    #[arg(long, value_name = "CONTEXT", requires = "print_commands")]
    pub context: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VersionsArgs {
    /// A release catalog to use instead of the built-in one
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Print the schema of the release catalog instead of the inventory's
    #[arg(long)]
    pub catalog: bool,
}
