//! The local stat cache that lets a re-run with unchanged inputs skip planning, rendering and
//! comparing, without ever trusting a file blindly.
//!
//! After a run that leaves the output directory exactly as `compile` would write it (a compile,
//! or a `--check` that found nothing to change), `.meshplan/cache` records a digest of
//! everything the output depends on (meshplan's build, the catalog, the templates, the
//! inventory's text and name, the options that shape the plan) and the `stat` of every file
//! and directory meshplan owns: size, modification and change time (nanoseconds), inode. A
//! later run with the same digest whose files all still have the recorded `stat` is unchanged:
//! any write to a file changes its change time, which no user tool can set back, so a
//! hand-edited generated file always falls back to the full run, which finds it.
//!
//! The cache also keeps, per cluster, a digest of what that cluster's files depend on and their
//! `stat`: when only some clusters changed, the others' files are kept without being rendered
//! or read ([`clean_clusters`]).
//!
//! The cache is local: `.meshplan/.gitignore` keeps it out of commits, and a fresh clone (a CI
//! job) has none, so it runs in full. A cache copied from elsewhere cannot match: inodes and
//! change times belong to the files of one checkout.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::write::{self, WriteError};

const CACHE: &str = ".meshplan/cache";
const GITIGNORE: &str = ".meshplan/.gitignore";
const HEADER: &str = "meshplan-cache 2";

/// A digest of a run's inputs, fed part by part.
pub struct Inputs(Sha256);

impl Default for Inputs {
    fn default() -> Self {
        Self::new()
    }
}

impl Inputs {
    pub fn new() -> Self {
        Inputs(Sha256::new())
    }

    /// Adds one named part (names keep `a|bc` and `ab|c` apart).
    pub fn add(&mut self, name: &str, bytes: &[u8]) -> &mut Self {
        self.0.update((name.len() as u64).to_le_bytes());
        self.0.update(name.as_bytes());
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    pub fn finish(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// What the cache records of a file or directory.
fn stat(path: &Path) -> io::Result<Option<String>> {
    let m = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let kind = if m.is_file() {
        'f'
    } else if m.is_dir() {
        'd'
    } else {
        // A symlink, FIFO or device where meshplan keeps a file: never a match.
        return Ok(None);
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(Some(format!(
            "{kind} {} {}.{} {}.{} {} {}",
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            m.ino(),
            m.dev()
        )))
    }
    #[cfg(not(unix))]
    {
        let _ = (kind, m);
        Ok(None)
    }
}

/// Calls `each` with every path the cache covers: the manifest, every directory on the way to a
/// generated file, every generated file. Not `.meshplan` itself: the lock and this cache change
/// it on every run.
fn covered(
    out: &Path,
    files: &[String],
    each: &mut dyn FnMut(&str) -> io::Result<()>,
) -> Result<bool, WriteError> {
    if files.is_empty() {
        return Ok(false);
    }
    let io = |e: io::Error| write::io_err(&out.join(CACHE))(e);
    each(write::MANIFEST).map_err(io)?;
    for part in write::manifest_parts(files) {
        each(&part).map_err(io)?;
    }
    let mut dirs = std::collections::BTreeSet::new();
    for f in files {
        let mut p = f.as_str();
        while let Some(i) = p.rfind('/') {
            p = &p[..i];
            if !dirs.insert(p) {
                break;
            }
        }
    }
    for d in dirs {
        each(d).map_err(io)?;
    }
    for f in files {
        each(f).map_err(io)?;
    }
    Ok(true)
}

/// The cache, opened for reading line by line (it may list 800,000 files: never held whole),
/// after its header and digest; `None` when there is none to trust.
fn open(out: &Path) -> Option<(String, io::Lines<io::BufReader<fs::File>>)> {
    let path = out.join(CACHE);
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() && m.len() <= write::MAX_BOOKKEEPING_BYTES => {}
        _ => return None,
    }
    if write::has_journal(out)
        || !fs::symlink_metadata(out.join(".meshplan")).is_ok_and(|m| m.is_dir())
    {
        return None;
    }
    let mut lines = io::BufRead::lines(io::BufReader::new(fs::File::open(&path).ok()?));
    if lines.next()?.ok()? != HEADER {
        return None;
    }
    let digest = lines.next()?.ok()?;
    Some((digest, lines))
}

/// One line of the cache: a cluster (`@dir`, digest) or a path and its recorded `stat`.
enum Line {
    Cluster(String, String),
    Entry(String, String),
}

fn parse(line: io::Result<String>) -> Option<Line> {
    let line = line.ok()?;
    let (a, b) = line.split_once('\t')?;
    match a.strip_prefix('@') {
        Some(dir) => Some(Line::Cluster(dir.to_string(), b.to_string())),
        None if output_path_is_bad(a) => None,
        None => Some(Line::Entry(a.to_string(), b.to_string())),
    }
}

/// Whether the output directory is exactly what the last full run left for these inputs: the
/// number of generated files if so. Any doubt (no cache, another digest, a file touched, a run
/// that did not finish) is `None`, and the caller runs in full.
pub fn unchanged(out: &Path, digest: &str) -> Result<Option<usize>, WriteError> {
    let Some((recorded, lines)) = open(out) else {
        return Ok(None);
    };
    if recorded != digest {
        return Ok(None);
    }
    let mut files: usize = 0;
    for line in lines {
        match parse(line) {
            Some(Line::Cluster(..)) => {}
            Some(Line::Entry(rel, was)) => match stat(&out.join(&rel)) {
                Ok(Some(now)) if now == was => {
                    files += usize::from(now.starts_with('f') && !write::is_manifest(&rel));
                }
                _ => return Ok(None),
            },
            None => return Ok(None),
        }
    }
    Ok(Some(files))
}

/// For each cluster (its directory and the digest of what its files depend on), whether its
/// files are exactly what the last full run wrote for that digest.
pub fn clean_clusters(out: &Path, clusters: &[(String, String)]) -> Vec<bool> {
    let mut clean = vec![false; clusters.len()];
    let Some((_, lines)) = open(out) else {
        return clean;
    };
    let mut seen = vec![false; clusters.len()];
    let by_dir = index(clusters);
    for line in lines {
        match parse(line) {
            Some(Line::Cluster(dir, d)) => {
                if let Some(&i) = by_dir.get(dir.as_str())
                    && clusters[i].1 == d
                {
                    clean[i] = true;
                }
            }
            Some(Line::Entry(rel, was)) => {
                let Some(i) = owner(&rel, &by_dir) else {
                    continue;
                };
                seen[i] = true;
                if clean[i] && !matches!(stat(&out.join(&rel)), Ok(Some(now)) if now == was) {
                    clean[i] = false;
                }
            }
            None => return vec![false; clusters.len()],
        }
    }
    // A cluster with no recorded file proves nothing.
    for (c, s) in clean.iter_mut().zip(seen) {
        *c &= s;
    }
    clean
}

fn output_path_is_bad(rel: &str) -> bool {
    rel.is_empty()
        || rel.starts_with('/')
        || rel
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
}

/// Records the output directory as the full run for `digest` left it (`files`: every file it
/// owns, from the run's report), with each cluster's directory and digest. Best effort: a cache
/// that cannot be written only makes the next run a full one.
pub fn record(out: &Path, digest: &str, clusters: &[(String, String)], files: &[String]) {
    if try_record(out, digest, clusters, files).is_err() {
        let _ = fs::remove_file(out.join(CACHE));
    }
}

/// Clusters by directory. A hash map: looked up for every cached line, never iterated.
fn index(clusters: &[(String, String)]) -> std::collections::HashMap<&str, usize> {
    clusters
        .iter()
        .enumerate()
        .map(|(i, (d, _))| (d.as_str(), i))
        .collect()
}

/// The cluster whose files `rel` is among: under its directory, or under `rollback/` and its
/// directory.
fn owner(rel: &str, by_dir: &std::collections::HashMap<&str, usize>) -> Option<usize> {
    let rel = rel.strip_prefix("rollback/").unwrap_or(rel);
    by_dir.get(rel.split('/').next()?).copied()
}

fn try_record(
    out: &Path,
    digest: &str,
    clusters: &[(String, String)],
    files: &[String],
) -> Result<(), WriteError> {
    let dir = out.join(".meshplan");
    let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(write::io_err(&dir))?;
    let mut w = io::BufWriter::new(tmp);
    let io = |e: io::Error| write::io_err(&dir)(e);
    writeln!(w, "{HEADER}\n{digest}").map_err(io)?;
    for (d, g) in clusters {
        writeln!(w, "@{d}\t{g}").map_err(io)?;
    }
    let written = covered(out, files, &mut |rel| {
        // A file that cannot be read now: leave no cache, the next run is a full one.
        let s = stat(&out.join(rel))?
            .ok_or_else(|| io::Error::other(format!("{rel} is not a regular file")))?;
        writeln!(w, "{rel}\t{s}")
    })?;
    if !written {
        return Ok(());
    }
    let tmp = w.into_inner().map_err(|e| io(e.into_error()))?;
    tmp.persist(out.join(CACHE))
        .map_err(|e| write::io_err(&out.join(CACHE))(e.error))?;
    let ignore = out.join(GITIGNORE);
    if fs::symlink_metadata(&ignore).is_err() {
        let _ = fs::write(
            &ignore,
            "# meshplan's local stat cache: never committed\ncache\n",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::OutputTree;
    use crate::write::{WriteOptions, write_tree};

    fn tree() -> OutputTree {
        let mut t = OutputTree::default();
        t.0.insert("a/x.yaml".into(), "1\n".into());
        t.0.insert("b/c/y.yaml".into(), "2\n".into());
        t
    }

    fn files(out: &Path) -> Vec<String> {
        write::manifest_files(out).unwrap().unwrap()
    }

    const W: WriteOptions = WriteOptions {
        check: false,
        force: false,
    };

    #[test]
    fn digests_keep_parts_apart() {
        let d = |parts: &[(&str, &str)]| {
            let mut i = Inputs::new();
            for (n, b) in parts {
                i.add(n, b.as_bytes());
            }
            i.finish()
        };
        assert_ne!(d(&[("a", "bc")]), d(&[("ab", "c")]));
        assert_eq!(d(&[("a", "b")]), d(&[("a", "b")]));
        assert_eq!(d(&[("a", "b")]).len(), 64);
    }

    #[test]
    fn a_touched_file_is_never_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plan");
        write_tree(&out, &tree(), W).unwrap();
        assert_eq!(unchanged(&out, "d1").unwrap(), None, "no cache yet");
        record(&out, "d1", &[], &files(&out));
        assert_eq!(unchanged(&out, "d1").unwrap(), Some(2));
        assert_eq!(unchanged(&out, "d2").unwrap(), None, "other inputs");
        // Rewriting a file with the same bytes still changes its change time.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(out.join("a/x.yaml"), "1\n").unwrap();
        assert_eq!(unchanged(&out, "d1").unwrap(), None);
        record(&out, "d1", &[], &files(&out));
        assert_eq!(unchanged(&out, "d1").unwrap(), Some(2));
        // A removed file, or a directory replaced by a symlink to a copy.
        fs::remove_file(out.join("b/c/y.yaml")).unwrap();
        assert_eq!(unchanged(&out, "d1").unwrap(), None);
        let ignore = fs::read_to_string(out.join(GITIGNORE)).unwrap();
        assert!(ignore.lines().any(|l| l == "cache"));
    }

    #[test]
    fn clusters_are_kept_only_when_their_digest_and_files_match() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plan");
        let mut t = OutputTree::default();
        for f in [
            "01-a/x.yaml",
            "rollback/01-a/y.yaml",
            "02-b/x.yaml",
            "PLAN.md",
        ] {
            t.0.insert(f.into(), "1\n".into());
        }
        write_tree(&out, &t, W).unwrap();
        let clusters = vec![
            ("01-a".to_string(), "da".to_string()),
            ("02-b".to_string(), "db".to_string()),
        ];
        record(&out, "g", &clusters, &files(&out));
        assert_eq!(clean_clusters(&out, &clusters), vec![true, true]);
        // Another digest for one cluster, a touched file in the other's rollback.
        let changed = vec![
            ("01-a".to_string(), "da2".to_string()),
            ("02-b".to_string(), "db".to_string()),
        ];
        assert_eq!(clean_clusters(&out, &changed), vec![false, true]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(out.join("rollback/01-a/y.yaml"), "1\n").unwrap();
        assert_eq!(clean_clusters(&out, &clusters), vec![false, true]);
        assert_eq!(unchanged(&out, "g").unwrap(), None);
    }

    #[test]
    fn a_moved_directory_behind_a_symlink_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plan");
        write_tree(&out, &tree(), W).unwrap();
        record(&out, "d", &[], &files(&out));
        fs::rename(out.join("a"), dir.path().join("elsewhere")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), out.join("a")).unwrap();
        assert_eq!(unchanged(&out, "d").unwrap(), None);
    }
}
