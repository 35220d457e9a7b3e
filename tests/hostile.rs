//! Input an attacker would write, each case run through the real binary with a memory ceiling
//! and a deadline: it must end with the right exit code and a located, bounded message, and
//! never hang, grow without bound, panic or write anything.
//!
//! The ceiling is on address space (`ulimit -v`), which also counts reserved but untouched
//! memory, so it sits above the 512 MiB resident target; each of these inputs once took
//! 1.5 to 15 GB or never ended.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{TODAY, bin};

const ADDRESS_SPACE_KIB: u64 = 1 << 20;
const DEADLINE: Duration = Duration::from_secs(90);

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

/// Runs meshplan in `dir` under the ceiling and the deadline, with `stdout` as its standard
/// output (a pipe when `None`) and extra environment variables.
fn run_limited(dir: &Path, args: &[&str], stdout: Option<fs::File>, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(bin())
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("MESHPLAN_TODAY", TODAY)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    match stdout {
        Some(f) => cmd.stdout(f),
        None => cmd.stdout(Stdio::piped()),
    };
    let mut child = cmd.spawn().expect("sh runs");
    // Read both pipes on threads, so that a chatty child never blocks on a full pipe.
    let take = |p: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = p {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = take(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let err = take(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("meshplan {args:?} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        // Killed by a signal (out of memory, stack overflow): no code.
        status: status.code().unwrap_or(-1),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// An inventory of one cluster with `body` as its namespaces (or anything else at that place).
fn with_values(values: &str) -> String {
    format!(
        "apiVersion: meshplan.dev/v1alpha1\nkind: MeshInventory\nname: hostile\nclusters:\n  - name: east\n    kubernetesVersion: \"1.28\"\n    istio:\n      version: 1.19.6\n      revision: 1-19\n      values:\n{values}\n    namespaces:\n      - name: app\n        revision: 1-19\n"
    )
}

fn contract() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prod-mesh.yaml"))
        .unwrap()
}

#[track_caller]
fn expect(run: &Run, status: i32, needles: &[&str]) {
    assert_eq!(run.status, status, "stderr:\n{}", cut(&run.stderr));
    for n in needles {
        assert!(
            run.stderr.contains(n),
            "stderr lacks {n:?}:\n{}",
            cut(&run.stderr)
        );
    }
    assert!(
        run.stderr.len() < 256 << 10,
        "stderr is {} bytes: messages must stay bounded (200 diagnostics at most)",
        run.stderr.len()
    );
    assert!(!run.stderr.contains("panicked"), "{}", cut(&run.stderr));
}

fn cut(s: &str) -> String {
    s.chars().take(3000).collect()
}

#[test]
fn yaml_that_would_expand_nest_or_retype() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Eight levels of ten-way aliases: 10^8 values.
    let mut bomb = String::from("        a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        bomb.push_str(&format!(
            "        a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 10].join(", ")
        ));
    }
    let deep_flow = format!("        x: {}{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases = [
        (with_values(&bomb), "aliases expand to more than"),
        (with_values(&deep_flow), "nest deeper than 100 levels"),
        (
            format!("{}x\n", "- ".repeat(10_000)),
            "nest deeper than 100 levels",
        ),
        (
            with_values("        meshConfig:\n          accessLogFile: !!binary L2Rldi9zdGRvdXQ="),
            "the YAML tag `!!binary` is not allowed",
        ),
        (with_values("        x: !!int \"1.28\""), "is not allowed"),
        (with_values("        x: !custom y"), "is not allowed"),
        (with_values("        ~: y"), "a key is null"),
        (
            with_values("        ? [a, b]\n        : z"),
            "a key is a sequence or a mapping",
        ),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let file = format!("case-{i}.yaml");
        fs::write(d.join(&file), text).unwrap();
        for cmd in [&["check"][..], &["compile", "--out", "out"][..]] {
            let args = [cmd, &[file.as_str(), "--to", "1.20.2"][..]].concat();
            let run = run_limited(d, &args, None, &[]);
            expect(&run, 1, &[needle, &format!("{file}:")]);
            assert!(!d.join("out").exists(), "case {i}: {cmd:?} wrote output");
        }
    }
}

#[test]
fn many_errors_and_long_lines_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut text = with_values("        x: 1").replace(
        "    namespaces:\n      - name: app\n        revision: 1-19\n",
        "    namespaces:\n",
    );
    for i in 0..30_000 {
        text.push_str(&format!("      - name: Bad_{i}\n        revision: 1-19\n"));
    }
    fs::write(d.join("errors.yaml"), &text).unwrap();
    let run = run_limited(d, &["check", "errors.yaml", "--to", "1.20.2"], None, &[]);
    expect(&run, 1, &["more", "errors.yaml:"]);

    // A 20 MB scalar is quoted around the problem, not whole.
    let long = with_values(&format!("        x: 1\n    kind: {}", "y".repeat(20 << 20)));
    fs::write(d.join("long.yaml"), long).unwrap();
    let run = run_limited(d, &["check", "long.yaml", "--to", "1.20.2"], None, &[]);
    expect(&run, 1, &["long.yaml:"]);
}

#[test]
fn files_that_are_not_inventories() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = run_limited(d, &["check", "/dev/zero", "--to", "1.20.2"], None, &[]);
    expect(&run, 4, &["not a regular file"]);
    // A FIFO nothing writes to is given up on, not waited on forever.
    let status = Command::new("mkfifo").arg(d.join("fifo")).status();
    if status.is_ok_and(|s| s.success()) {
        let run = run_limited(d, &["check", "fifo", "--to", "1.20.2"], None, &[]);
        expect(&run, 4, &["nothing wrote to the FIFO"]);
    }
    // Not UTF-8: the byte, line and column.
    fs::write(d.join("latin1.yaml"), b"name: caf\xe9\n").unwrap();
    let run = run_limited(d, &["check", "latin1.yaml", "--to", "1.20.2"], None, &[]);
    expect(&run, 1, &["byte 9 (line 1, column 10)"]);
    // Old Mac line ends (CR only) are line ends, not an empty file.
    fs::write(d.join("cr.yaml"), contract().replace('\n', "\r")).unwrap();
    let run = run_limited(d, &["check", "cr.yaml", "--to", "1.20.2"], None, &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    // A catalog gets a catalog's messages.
    fs::write(d.join("empty.yaml"), "# nothing\n").unwrap();
    let run = run_limited(d, &["versions", "--catalog", "empty.yaml"], None, &[]);
    expect(&run, 1, &["a release catalog starts with"]);
    let run = run_limited(d, &["versions", "--catalog", "/dev/null"], None, &[]);
    expect(&run, 4, &["not a regular file"]);
    assert!(!run.stderr.contains("inventory"), "{}", run.stderr);
}

#[test]
fn templates_that_loop_or_explode() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("inv.yaml"), contract()).unwrap();
    for (i, body) in [
        "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
        "{% for a in range(10000) %}{{ 'x' * 100000 }}{% endfor %}",
    ]
    .iter()
    .enumerate()
    {
        let tpl = d.join(format!("tpl-{i}"));
        fs::create_dir_all(&tpl).unwrap();
        fs::write(tpl.join("namespace.patch.yaml.j2"), body).unwrap();
        let run = run_limited(
            d,
            &[
                "compile",
                "inv.yaml",
                "--to",
                "1.20.2",
                "--out",
                &format!("out-{i}"),
                "--templates",
                &format!("tpl-{i}"),
            ],
            None,
            &[],
        );
        expect(&run, 70, &["namespace.patch.yaml.j2"]);
    }
}

#[test]
fn names_versions_and_flags_that_only_fail_later() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let contract = contract();
    let cases: Vec<(String, Vec<&str>, i32, &str)> = vec![
        (
            contract.replacen(
                "      - name: istio-ingressgateway\n",
                "      - name: istio-ingressgateway-with-a-very-long-name-for-teams-x\n",
                1,
            ),
            vec![],
            1,
            "error[name-too-long]",
        ),
        (
            contract.replacen(
                "      revision: 1-19\n      namespace: istio-system\n",
                "      revision: 1-19\n      tags: [prod-stable-channel-for-the-payments-team-xx]\n      namespace: istio-system\n",
                1,
            ),
            vec![],
            1,
            "error[name-too-long]",
        ),
        (contract.clone(), vec!["--to", "1.20.2+meta"], 1, "build metadata"),
        (
            contract.clone(),
            vec!["--to", "1.22.8", "--via", "1.19.2"],
            1,
            "forces no hop",
        ),
        (
            contract.replacen("name: prod-mesh", "name: \"prod\\n# Injected\"", 1),
            vec![],
            1,
            "`prod\\n# Injected`",
        ),
        (
            contract.replacen("hub: docker.io/istio", "hub: \"docker.io/istio --set a=b\"", 1),
            vec![],
            1,
            "defaults.hub",
        ),
        (
            meshplan::synthetic::inventory(1, 8_001, 4),
            vec![],
            1,
            "error[cluster-too-large]",
        ),
    ];
    for (i, (text, extra, status, needle)) in cases.iter().enumerate() {
        let file = format!("case-{i}.yaml");
        fs::write(d.join(&file), text).unwrap();
        let mut args = vec!["compile", file.as_str(), "--out", "out"];
        if extra.is_empty() {
            args.extend(["--to", "1.20.2"]);
        }
        args.extend(extra.iter().copied());
        let run = run_limited(d, &args, None, &[]);
        expect(&run, *status, &[needle]);
        assert!(!d.join("out").exists(), "case {i} wrote output");
    }
    // A catalog that contradicts itself.
    let catalog = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/data/istio-releases.yaml"),
    )
    .unwrap();
    let edited = catalog.replacen(
        "      canary: [\"1.19\", \"1.20\"]",
        "      canary: [\"1.18\", \"1.21\"]",
        1,
    );
    assert_ne!(edited, catalog, "the catalog edit applies");
    fs::write(d.join("catalog.yaml"), edited).unwrap();
    let run = run_limited(d, &["versions", "--catalog", "catalog.yaml"], None, &[]);
    expect(&run, 1, &["3 minors at once", "upgradeFrom.canary[0]"]);
    let noted = catalog.replacen(
        "    notes:\n      - \"",
        "    notes:\n      - \"two\\nlines ",
        1,
    );
    fs::write(d.join("noted.yaml"), noted).unwrap();
    let run = run_limited(d, &["versions", "--catalog", "noted.yaml"], None, &[]);
    expect(&run, 1, &["error[schema-invalid-value]", "notes[0]"]);
}

#[test]
fn environment_and_standard_streams() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("inv.yaml"), contract()).unwrap();
    let run = run_limited(d, &["versions"], None, &[("MESHPLAN_TODAY", "garbage")]);
    expect(&run, 2, &["MESHPLAN_TODAY"]);
    let run = run_limited(
        d,
        &["check", "-", "--catalog", "-", "--to", "1.20.2"],
        None,
        &[],
    );
    expect(&run, 2, &["standard input"]);
    if let Ok(full) = fs::OpenOptions::new().write(true).open("/dev/full") {
        for args in [
            vec!["versions"],
            vec!["check", "inv.yaml", "--to", "1.20.2"],
        ] {
            let run = run_limited(d, &args, Some(full.try_clone().unwrap()), &[]);
            expect(&run, 4, &["cannot write to standard output"]);
        }
    }
    assert!(
        run_limited(d, &["versions"], None, &[])
            .stdout
            .contains("MINOR")
    );
}
