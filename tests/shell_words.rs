//! Every command of every golden plan means to `sh` what its operation means: each rendered
//! command runs under `sh -c` with stub `kubectl`, `helm` and `istioctl` programs that record
//! their arguments, and the recorded argv must be exactly the operation's.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use meshplan::render::shell::{Cmd, Shell};

/// A stub that appends its name and arguments (separated by \x01, one line per call, in one
/// write so that the programs of a pipeline do not interleave) to $LOG, and answers the queries
/// of the pod-deletion loop: one pod, already all ready.
const STUB: &str = r#"#!/bin/sh
sep=$(printf '\001')
line=$(basename "$0")
for a in "$@"; do line="$line$sep$a"; done
printf '%s\n' "$line" >> "$LOG"
case "$*" in
  *"get pods"*) echo pod-a ;;
  *jsonpath=*) echo 1 ;;
esac
exit 0
"#;

fn plans() -> Vec<(
    String,
    meshplan::validate::ClusterSpec,
    meshplan::plan::ClusterOut,
)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
    let mut out = Vec::new();
    let mut dirs: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("ok-"))
        .collect();
    dirs.sort();
    for dir in dirs {
        let case: serde_yaml::Value =
            serde_yaml::from_str(&fs::read_to_string(dir.join("case.yaml")).unwrap()).unwrap();
        let args: Vec<String> = serde_yaml::from_value(case["args"].clone()).unwrap();
        if args[0] != "compile" {
            continue;
        }
        let to = &args[args.iter().position(|a| a == "--to").unwrap() + 1];
        let text = fs::read_to_string(dir.join("inventory.yaml")).unwrap();
        let src = meshplan::source::Source::new("inventory.yaml", text);
        let inv = meshplan::load::inventory(&src).0.unwrap();
        let mut diags = meshplan::diagnostic::Diagnostics::default();
        let mesh = meshplan::validate::validate(&inv, &src, &mut diags).unwrap();
        let catalog = meshplan::catalog::Catalog::embedded();
        let target = meshplan::path::Target {
            version: to.parse().unwrap(),
            via: vec![],
            one_minor: false,
            today: None,
            artifacts: true,
        };
        let paths = meshplan::path::plan_paths(&mesh, &target, &catalog, &src, &mut diags).unwrap();
        for (i, (c, p)) in mesh.clusters.iter().zip(&paths.clusters).enumerate() {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            out.push((
                name,
                c.clone(),
                meshplan::plan::build_cluster(i, c, p, &catalog, Default::default()),
            ));
        }
    }
    out
}

fn run(stubs: &Path, log: &Path, text: &str) -> Vec<Vec<String>> {
    let _ = fs::remove_file(log);
    let status = Command::new("sh")
        .arg("-c")
        .arg(text)
        .env("PATH", format!("{}:/usr/bin:/bin", stubs.display()))
        .env("LOG", log)
        .status()
        .expect("sh runs");
    assert!(status.success(), "`{text}` failed under sh");
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('\x01').map(str::to_string).collect())
        .collect()
}

#[test]
fn every_command_is_the_argv_of_its_operation() {
    let stubs = tempfile::tempdir().unwrap();
    for tool in ["kubectl", "helm", "istioctl", "sleep"] {
        let p = stubs.path().join(tool);
        fs::write(&p, STUB).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let log = stubs.path().join("log");
    let mut checked = 0;
    for (case, c, out) in plans() {
        let sh = Shell {
            context: c.context.as_deref(),
        };
        for (k, step) in out.steps.iter().enumerate() {
            let rollback = meshplan::plan::rollback::ops(&out.steps, k);
            let mut cmds: Vec<Cmd> = Vec::new();
            for op in step.ops.iter().chain(&step.undo).chain(&rollback) {
                cmds.extend(sh.op(op));
            }
            cmds.extend(step.waits.iter().map(|w| sh.wait(w)));
            for cmd in cmds {
                let mut got = run(stubs.path(), &log, &cmd.text());
                got.retain(|argv| argv[0] != "sleep");
                match &cmd {
                    Cmd::Pipeline(p) => {
                        // The programs of a pipeline run at the same time: compare as a set.
                        let mut want = p.clone();
                        want.sort();
                        got.sort();
                        assert_eq!(got, want, "{case} {}: `{}`", step.id, cmd.text());
                    }
                    Cmd::Script { programs, .. } => {
                        // One pod: the listing, its deletion, then the two readiness queries.
                        let mut want = programs.clone();
                        for argv in &mut want {
                            for w in argv.iter_mut() {
                                if w == "<pod>" {
                                    *w = "pod-a".into();
                                }
                            }
                        }
                        assert_eq!(got, want, "{case} {}: `{}`", step.id, cmd.text());
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "only {checked} commands checked");
}
