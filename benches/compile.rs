//! The compile benchmark: `cargo bench --bench compile`.
//!
//! For generated inventories of 1, 10 and 100 clusters with 1,000 namespaces each and three
//! workloads per namespace, it measures (wall time, peak resident memory) of the release binary:
//! a fresh compile into an empty directory; a re-run and `--check` on the unchanged directory
//! (which the local stat cache answers); `--check` without that cache, as a fresh clone in CI
//! runs it; and `--check` after one cluster's inventory changed. On the same machine in the same
//! run: `tar -x` of the same tree and `diff -r` of the tree against that copy. Targets (issue 13):
//! fresh write within 1.5x `tar -x`; unchanged re-run and `--check` within 0.25x `diff -r`; one
//! changed cluster within 0.5x `diff -r`; peak memory under 512 MiB; cost linear in the number
//! of namespaces.
//!
//! `MESHPLAN_BENCH_SIZES=1,10` limits the cluster counts; `MESHPLAN_BENCH_REPS=3` takes the best
//! of three runs of each measurement. Peak memory needs GNU time (`/usr/bin/time`, Debian package
//! `time`); without it the column shows `n/a`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const NAMESPACES: usize = 1000;
const WORKLOADS: usize = 3;
const MEMORY_TARGET_KIB: u64 = 512 * 1024;

struct Sample {
    secs: f64,
    peak_kib: Option<u64>,
}

/// Runs a command, best of `reps`, measuring wall time and (with GNU time) peak RSS.
fn measure(reps: usize, program: &str, args: &[&str], dir: &Path, before: &dyn Fn()) -> Sample {
    let gnu_time = Path::new("/usr/bin/time").exists();
    let mut best: Option<Sample> = None;
    for _ in 0..reps {
        before();
        let report = dir.join(".bench-time");
        let mut cmd = if gnu_time {
            let mut c = Command::new("/usr/bin/time");
            c.arg("-f").arg("%M").arg("-o").arg(&report).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let start = Instant::now();
        let status = cmd.status().expect("the command runs");
        let secs = start.elapsed().as_secs_f64();
        assert!(
            status.success() || program.ends_with("diff") || args.contains(&"--check"),
            "{program} {args:?} failed: {status}"
        );
        let peak_kib = std::fs::read_to_string(&report)
            .ok()
            .and_then(|t| t.lines().last()?.trim().parse().ok());
        let _ = std::fs::remove_file(&report);
        if best.as_ref().is_none_or(|b| secs < b.secs) {
            best = Some(Sample { secs, peak_kib });
        }
    }
    best.expect("at least one run")
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "n/a".to_string(),
        |k| format!("{:.0} MiB", k as f64 / 1024.0),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let sizes: Vec<usize> = std::env::var("MESHPLAN_BENCH_SIZES")
        .unwrap_or_else(|_| "1,10,100".to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let reps: usize = std::env::var("MESHPLAN_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let bin = env!("CARGO_BIN_EXE_meshplan");
    let root: PathBuf = std::env::temp_dir().join(format!("meshplan-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();

    println!(
        "meshplan compile benchmark: {NAMESPACES} namespaces x {WORKLOADS} workloads per cluster, best of {reps}\n"
    );
    println!(
        "| clusters | files | fresh write | tar -x | ratio | diff -r | re-run | --check | ratios | --check, no cache | ratio | one cluster changed | ratio | peak memory | per namespace (fresh) |"
    );
    println!(
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    let mut verdicts = Vec::new();
    let mut per_ns = Vec::new();
    for &clusters in &sizes {
        let dir = root.join(format!("c{clusters}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("inventory.yaml"),
            meshplan::synthetic::inventory(clusters, NAMESPACES, WORKLOADS),
        )
        .unwrap();
        let compile = [
            "compile",
            "inventory.yaml",
            "--to",
            "1.20.2",
            "--out",
            "plan",
            "--quiet",
        ];
        let fresh = measure(reps, bin, &compile, &dir, &|| {
            let _ = std::fs::remove_dir_all(dir.join("plan"));
        });
        let rerun = measure(reps, bin, &compile, &dir, &|| {});
        let mut check_args = compile.to_vec();
        check_args.push("--check");
        let check = measure(reps, bin, &check_args, &dir, &|| {});
        // A fresh clone has no stat cache: --check renders and compares everything.
        let cold = measure(reps, bin, &check_args, &dir, &|| {
            let _ = std::fs::remove_file(dir.join("plan/.meshplan/cache"));
        });
        // One cluster's inventory changed (its istiod values), the other clusters' not.
        let inventory = std::fs::read_to_string(dir.join("inventory.yaml")).unwrap();
        let changed = inventory.replacen("autoscaleMin: 2", "autoscaleMin: 3", 1);
        std::fs::write(dir.join("inventory.yaml"), &changed).unwrap();
        let one = measure(reps, bin, &check_args, &dir, &|| {});
        std::fs::write(dir.join("inventory.yaml"), &inventory).unwrap();
        let files = meshplan::write::list_files(&dir.join("plan"))
            .map(|f| f.len())
            .unwrap_or(0);

        let tar_file = dir.join("plan.tar");
        let ok = Command::new("tar")
            .arg("-cf")
            .arg(&tar_file)
            .arg("-C")
            .arg(dir.join("plan"))
            .arg(".")
            .status()
            .unwrap();
        assert!(ok.success());
        let tar = measure(
            reps,
            "tar",
            &["-xf", "plan.tar", "-C", "copy"],
            &dir,
            &|| {
                let _ = std::fs::remove_dir_all(dir.join("copy"));
                std::fs::create_dir_all(dir.join("copy")).unwrap();
            },
        );
        let diff = measure(reps, "diff", &["-r", "plan", "copy"], &dir, &|| {});

        let write_ratio = fresh.secs / tar.secs;
        let rerun_ratio = rerun.secs / diff.secs;
        let check_ratio = check.secs / diff.secs;
        let cold_ratio = cold.secs / diff.secs;
        let one_ratio = one.secs / diff.secs;
        let peak = [
            fresh.peak_kib,
            rerun.peak_kib,
            check.peak_kib,
            cold.peak_kib,
            one.peak_kib,
        ]
        .into_iter()
        .flatten()
        .max();
        let namespaces = clusters * NAMESPACES;
        let us_per_ns = fresh.secs * 1e6 / namespaces as f64;
        per_ns.push((clusters, us_per_ns));
        println!(
            "| {clusters} | {files} | {:.2} s | {:.2} s | {write_ratio:.2}x | {:.2} s | {:.2} s | {:.2} s | {rerun_ratio:.2}x / {check_ratio:.2}x | {:.2} s | {cold_ratio:.2}x | {:.2} s | {one_ratio:.2}x | {} | {us_per_ns:.0} µs |",
            fresh.secs,
            tar.secs,
            diff.secs,
            rerun.secs,
            check.secs,
            cold.secs,
            one.secs,
            mib(peak)
        );
        verdicts.push((
            format!("{clusters} clusters: fresh write within 1.5x tar -x"),
            write_ratio <= 1.5,
        ));
        verdicts.push((
            format!("{clusters} clusters: unchanged re-run within 0.25x diff -r"),
            rerun_ratio <= 0.25,
        ));
        verdicts.push((
            format!("{clusters} clusters: unchanged --check within 0.25x diff -r"),
            check_ratio <= 0.25,
        ));
        verdicts.push((
            format!("{clusters} clusters: one changed cluster (--check) within 0.5x diff -r"),
            one_ratio <= 0.5,
        ));
        if let Some(p) = peak {
            verdicts.push((
                format!("{clusters} clusters: peak memory under 512 MiB"),
                p < MEMORY_TARGET_KIB,
            ));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let (Some(first), Some(last)) = (per_ns.first(), per_ns.last())
        && per_ns.len() > 1
    {
        // Linear: the cost per namespace of the largest case stays within 2x of the smallest's.
        verdicts.push((
            format!(
                "cost per namespace grows at most 2x from {} to {} clusters (linear)",
                first.0, last.0
            ),
            last.1 <= first.1 * 2.0,
        ));
    }
    println!();
    for (what, ok) in &verdicts {
        println!("{} {what}", if *ok { "met:    " } else { "NOT MET:" });
    }
    let _ = std::fs::remove_dir_all(&root);
}
