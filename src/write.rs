//! Writing the output tree to disk, safely: meshplan owns only the files it wrote (listed in
//! `.meshplan/manifest.json`), writes each file through a temporary file and a rename, writes
//! nothing that did not change, never follows a symlink, and writes the manifest last. In check
//! mode it writes nothing and reports the difference instead.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::output::{OutputTree, check_rel_path};

pub const MANIFEST: &str = ".meshplan/manifest.json";
/// Where the manifest's parts are: one per top-level directory of the plan (a cluster's files,
/// with its files under `rollback/`), so that no manifest file grows with the size of the mesh.
pub const MANIFEST_PARTS: &str = ".meshplan/manifest";
const JOURNAL: &str = ".meshplan/pending";
const LOCK: &str = ".meshplan/lock";
const TMP_PREFIX: &str = ".meshplan-";
const TMP_SUFFIX: &str = ".tmp";
/// A journal line naming the token of a run's temporary files: a later run deletes only
/// temporary files whose token a killed run recorded, never a file merely named like one.
const TOKEN_LINE: &str = "#tmp ";
/// The largest manifest or journal meshplan reads (800,000 paths take about 80 MB).
pub(crate) const MAX_BOOKKEEPING_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Refused(String),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Manifest {
    #[allow(dead_code)]
    generated_by: String,
    /// What wrote the files and from what (the root manifest only).
    #[serde(default)]
    provenance: Option<Provenance>,
    /// The parts (the root manifest only): `.meshplan/manifest/<part>.json` each.
    #[serde(default)]
    parts: Vec<String>,
    /// The files meshplan wrote that this manifest lists, relative to the output directory,
    /// sorted.
    files: Vec<String>,
}

/// What the root manifest records once, instead of every file's header: meshplan's version and
/// a digest of the inputs (the inventory, its name, the options and template overrides).
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provenance {
    pub meshplan: String,
    pub inputs: String,
}

/// The part of the manifest that lists `path`: the top-level directory it is under, looking
/// through `rollback/`; `None` for files at the top and meshplan's own.
fn manifest_part(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("rollback/").unwrap_or(path);
    let (first, _) = rest.split_once('/')?;
    (!first.starts_with('.')).then_some(first)
}

/// Whether `rel` is the manifest or one of its parts (bookkeeping, not a generated file).
pub(crate) fn is_manifest(rel: &str) -> bool {
    rel == MANIFEST
        || rel
            .strip_prefix(MANIFEST_PARTS)
            .is_some_and(|r| r.starts_with('/'))
}

/// The manifest's part files that list some of `files`.
pub(crate) fn manifest_parts(files: &[String]) -> BTreeSet<String> {
    files
        .iter()
        .filter_map(|f| manifest_part(f))
        .map(part_path)
        .collect()
}

fn part_path(part: &str) -> String {
    format!("{MANIFEST_PARTS}/{part}.json")
}

/// A stable digest of a part's file list, to write only the parts that changed.
fn list_digest<'s>(files: impl Iterator<Item = &'s str>) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for f in files {
        h.update(f.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

/// Writes a manifest of `files` (sorted) as pretty JSON, streamed: a large plan's file list is
/// never held twice.
fn write_manifest(
    mut tmp: tempfile::NamedTempFile,
    path: &Path,
    head: &[(&str, Value)],
    files: &[&str],
) -> Result<(), WriteError> {
    {
        let mut w = io::BufWriter::new(tmp.as_file_mut());
        let mut text = String::from("{\n  \"generatedBy\": \"meshplan\",");
        for (key, value) in head {
            text.push_str(&format!(
                "\n  \"{key}\": {},",
                serde_json::to_string_pretty(value)
                    .unwrap_or_default()
                    .replace('\n', "\n  ")
            ));
        }
        text.push_str("\n  \"files\": [");
        for (i, f) in files.iter().enumerate() {
            text.push_str(if i == 0 { "\n    " } else { ",\n    " });
            text.push_str(&Value::String((*f).to_string()).to_string());
            if text.len() > 1 << 16 {
                w.write_all(text.as_bytes()).map_err(io_err(path))?;
                text.clear();
            }
        }
        text.push_str(if files.is_empty() {
            "]\n}\n"
        } else {
            "\n  ]\n}\n"
        });
        w.write_all(text.as_bytes()).map_err(io_err(path))?;
        w.flush().map_err(io_err(path))?;
    }
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    Ok(())
}

/// What a run did (or, in check mode, would do).
#[derive(Debug, Default)]
pub struct WriteReport {
    pub created: usize,
    pub updated: usize,
    pub removed: usize,
    pub unchanged: usize,
    /// Unified diffs of every change (check mode, [`write_tree`] only; [`Writer`] prints them).
    pub diff: String,
    /// Every change, in the order found: what happened (or would) to which file, relative to
    /// the output directory.
    pub changes: Vec<(Change, String)>,
    /// Every file meshplan owns after the run, sorted, when it leaves the directory as it
    /// writes it (a write, or a check that found nothing to change): what the stat cache covers.
    pub files: Vec<String>,
}

/// What a run does to a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Created,
    Updated,
    Removed,
}

impl WriteReport {
    pub fn changed(&self) -> bool {
        self.created + self.updated + self.removed > 0
    }

    pub fn summary(&self) -> String {
        format!(
            "created {}, updated {}, removed {}, unchanged {}",
            self.created, self.updated, self.removed, self.unchanged
        )
    }
}

/// Options of one write.
#[derive(Clone, Copy, Debug)]
pub struct WriteOptions {
    pub check: bool,
    pub force: bool,
}

/// Files larger than this are compared in full but not diffed line by line in check mode.
const MAX_DIFF_BYTES: u64 = 4 << 20;

/// Brings `out` to exactly `tree` (plus whatever files meshplan does not own), or, with
/// `check`, reports how far it is from it.
pub fn write_tree(
    out: &Path,
    tree: &OutputTree,
    opts: WriteOptions,
) -> Result<WriteReport, WriteError> {
    let mut diff = Vec::new();
    let mut report = {
        let mut w = Writer::begin(out, opts, &mut diff)?;
        w.put(tree)?;
        w.finish()?
    };
    report.diff = String::from_utf8_lossy(&diff).into_owned();
    Ok(report)
}

/// A write in progress. Files arrive in chunks ([`Writer::put`]) so that a large plan never
/// has to be in memory at once; before a chunk's files are written, their paths are appended to
/// a journal (`.meshplan/pending`), so that a run killed at any moment leaves every file it may
/// have written owned, and the next run converges. The manifest is written last and the journal
/// then removed.
pub struct Writer<'a> {
    out: PathBuf,
    /// Where check mode prints its unified diffs, as it finds them.
    diff: &'a mut dyn io::Write,
    opts: WriteOptions,
    /// Files owned before this run, sorted: the manifest plus any journal a killed run left.
    owned: Vec<String>,
    /// Whether `owned` is exactly the manifest (no journal of a killed run).
    owned_is_manifest: bool,
    /// The digest of each part of the manifest as the last run left it.
    old_parts: BTreeMap<String, [u8; 32]>,
    old_provenance: Option<Provenance>,
    /// What this run records in the manifest.
    provenance: Option<Provenance>,
    /// Which of `owned` this run generates again (one flag per owned path, so that a re-run
    /// does not hold every path twice).
    seen_owned: Vec<bool>,
    /// Files this run generates that were not owned before.
    seen_new: Vec<String>,
    journal: Option<fs::File>,
    /// This run's token, which names its temporary files (`.meshplan-<token>-*.tmp`).
    token: String,
    /// Tokens of runs killed before they finished: their temporary files may be deleted.
    stale_tokens: Vec<String>,
    /// Held for the whole run, so that two runs never write one directory at once.
    _lock: Option<fs::File>,
    report: WriteReport,
    cleaned: HashSet<PathBuf>,
    /// Directories below `out` already known to be real directories (not symlinks). Hash sets:
    /// internal state only, never iterated on the way to output.
    dirs_ok: HashSet<PathBuf>,
    /// Directories below `out` known not to exist yet.
    dirs_missing: HashSet<PathBuf>,
    /// What check mode's diffs put before each path: `--out` as the user gave it, so that the
    /// paths hold from where they ran the command.
    shown_prefix: String,
}

impl<'a> Writer<'a> {
    pub fn begin(
        out: &Path,
        opts: WriteOptions,
        diff: &'a mut dyn io::Write,
    ) -> Result<Self, WriteError> {
        // Absolute once, so that temporary files need no working-directory lookups.
        let abs = std::path::absolute(out).map_err(io_err(out))?;
        let out = abs.as_path();
        let exists = match fs::symlink_metadata(out) {
            Ok(m) if m.is_dir() || (m.file_type().is_symlink() && out.is_dir()) => true,
            Ok(_) => {
                return Err(WriteError::Refused(format!(
                    "`{}` exists and is not a directory; choose another --out",
                    out.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err(out)(e)),
        };
        if exists
            && !opts.force
            && !opts.check
            && read_manifest(out, &out.join(MANIFEST))?.is_none()
            && read_journal(out)?.is_none()
            && !is_empty_dir(out)?
        {
            return Err(WriteError::Refused(format!(
                "refusing to write into `{}`: it is not empty and meshplan did not create it (no {MANIFEST}); choose an empty or new directory, or pass --force to write there anyway (meshplan then owns only the files it writes)",
                out.display()
            )));
        }
        // Lock before reading what earlier runs left: another run may be writing right now.
        // (A check creates nothing: it takes the lock only when the directory has one.)
        let lock = if !opts.check {
            Some(lock_dir(out, false)?)
        } else if fs::symlink_metadata(out.join(LOCK)).is_ok() {
            Some(lock_dir(out, true)?)
        } else {
            None
        };
        let old = if exists { read_recorded(out)? } else { None };
        let pending = if exists { read_journal(out)? } else { None };
        let (pending_files, stale_tokens) = match pending {
            Some(j) => (Some(j.files), j.tokens),
            None => (None, Vec::new()),
        };
        let owned_is_manifest = old.is_some() && pending_files.is_none();
        let (old_parts, old_provenance) = old
            .as_ref()
            .map(|m| (m.parts.clone(), m.provenance.clone()))
            .unwrap_or_default();
        let mut owned: Vec<String> = old.map(|m| m.files).unwrap_or_default();
        owned.extend(pending_files.unwrap_or_default());
        owned.sort_unstable();
        owned.dedup();
        Ok(Self {
            out: out.to_path_buf(),
            diff,
            opts,
            seen_owned: vec![false; owned.len()],
            owned,
            owned_is_manifest,
            old_parts,
            old_provenance,
            provenance: None,
            seen_new: Vec::new(),
            journal: None,
            token: run_token(),
            stale_tokens,
            _lock: lock,
            report: WriteReport::default(),
            cleaned: HashSet::new(),
            dirs_ok: HashSet::new(),
            dirs_missing: HashSet::new(),
            shown_prefix: String::new(),
        })
    }

    /// Diffs name files as `<prefix><path>` (for example `plan/` and `--out plan`).
    pub fn show_paths_under(&mut self, prefix: &str) {
        self.shown_prefix = prefix.to_string();
    }

    fn shown(&self, path: &str) -> String {
        format!("{}{path}", self.shown_prefix)
    }

    /// `out/rel` for a file, checking (once per directory) that no directory on the way is a
    /// symlink, and whether its directory exists at all (if not, neither does the file).
    fn joined(&mut self, rel: &str) -> Result<(PathBuf, bool), WriteError> {
        let full = self.out.join(rel);
        let parent = full
            .parent()
            .map_or_else(|| self.out.clone(), Path::to_path_buf);
        if self.dirs_ok.contains(&parent) {
            safe_last(&full)?;
            return Ok((full, true));
        }
        if self.dirs_missing.contains(&parent) {
            return Ok((full, false));
        }
        let mut cur = self.out.clone();
        let rel_parent = parent
            .strip_prefix(&self.out)
            .unwrap_or(Path::new(""))
            .to_path_buf();
        let mut missing = false;
        for part in rel_parent.components() {
            cur.push(part);
            if missing {
                self.dirs_missing.insert(cur.clone());
                continue;
            }
            if self.dirs_ok.contains(&cur) {
                continue;
            }
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(WriteError::Refused(format!(
                        "refusing to follow the symlink `{}` inside the output directory",
                        cur.display()
                    )));
                }
                Ok(m) if m.is_dir() => {
                    self.dirs_ok.insert(cur.clone());
                }
                Ok(_) => {
                    return Err(WriteError::Refused(format!(
                        "`{}` is in the way: meshplan needs a directory there",
                        cur.display()
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    missing = true;
                    self.dirs_missing.insert(cur.clone());
                }
                Err(e) => return Err(io_err(&cur)(e)),
            }
        }
        if missing {
            return Ok((full, false));
        }
        safe_last(&full)?;
        Ok((full, true))
    }

    fn ensure_dir(&mut self, dir: &Path) -> Result<(), WriteError> {
        if self.dirs_ok.contains(dir) {
            return Ok(());
        }
        create_dirs(&self.out, dir)?;
        let mut d = dir.to_path_buf();
        while d.starts_with(&self.out) && d != self.out {
            self.dirs_missing.remove(&d);
            self.dirs_ok.insert(d.clone());
            if !d.pop() {
                break;
            }
        }
        Ok(())
    }

    /// Records that this run owns `paths`, before any of them is written.
    fn claim<'p>(&mut self, paths: impl Iterator<Item = &'p String>) -> Result<(), WriteError> {
        if self.opts.check {
            return Ok(());
        }
        let new: Vec<&String> = paths.filter(|p| !self.owns(p)).collect();
        if new.is_empty() {
            return Ok(());
        }
        self.open_journal()?;
        let mut text = String::new();
        for p in new {
            text.push_str(p);
            text.push('\n');
        }
        let path = self.out.join(JOURNAL);
        if let Some(j) = self.journal.as_mut() {
            j.write_all(text.as_bytes()).map_err(io_err(&path))?;
        }
        Ok(())
    }

    /// Opens the journal (once), recording this run's token first, so that the temporary files
    /// it is about to create are known to be meshplan's if it is killed.
    fn open_journal(&mut self) -> Result<(), WriteError> {
        if self.journal.is_some() {
            return Ok(());
        }
        let dir = self.out.join(".meshplan");
        create_dirs(&self.out, &dir)?;
        let path = safe_join(&self.out, JOURNAL)?;
        if let Ok(m) = fs::symlink_metadata(&path)
            && !m.is_file()
        {
            return Err(WriteError::Refused(format!(
                "`{}` is not a regular file; meshplan refuses to use it as its journal",
                path.display()
            )));
        }
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        f.write_all(format!("{TOKEN_LINE}{}\n", self.token).as_bytes())
            .map_err(io_err(&path))?;
        self.journal = Some(f);
        Ok(())
    }

    /// A temporary file of this run in `dir`.
    fn temp(&mut self, dir: &Path) -> Result<tempfile::NamedTempFile, WriteError> {
        self.open_journal()?;
        temp_in(dir, &self.token)
    }

    /// Writes through a temporary file in the same directory, then renames it into place.
    fn write_atomic(&mut self, path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = self.temp(dir)?;
        tmp.write_all(bytes).map_err(io_err(path))?;
        // No fsync: the rename makes each file appear whole or not at all to any later run,
        // which is what a killed run needs; surviving power loss is the file system's job.
        tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
        Ok(())
    }

    /// Keeps, unread and unwritten, every file owned before under one of `prefixes` (a cluster
    /// whose inputs did not change and whose files the stat cache vouches for): they count as
    /// generated again and unchanged. Returns how many.
    pub fn keep(&mut self, prefixes: &[String]) -> usize {
        let mut kept = 0;
        for prefix in prefixes {
            let start = self.owned.partition_point(|p| p.as_str() < prefix.as_str());
            for i in start..self.owned.len() {
                if !self.owned[i].starts_with(prefix.as_str()) {
                    break;
                }
                if !self.seen_owned[i] {
                    self.seen_owned[i] = true;
                    kept += 1;
                }
            }
        }
        self.report.unchanged += kept;
        kept
    }

    /// Writes (or, in check mode, compares) one chunk of files.
    pub fn put(&mut self, tree: &OutputTree) -> Result<(), WriteError> {
        for path in tree.0.keys() {
            check_rel_path(path).map_err(WriteError::Refused)?;
            self.mark_seen(path)?;
        }
        // Refuse before writing anything of the chunk.
        let mut actions = Vec::new();
        for (path, text) in &tree.0 {
            let (full, dir_exists) = self.joined(path)?;
            let current = if dir_exists {
                read_if_file(&full)?
            } else {
                None
            };
            match current {
                Some(current) if current == *text => {
                    self.report.unchanged += 1;
                    continue;
                }
                Some(current) => {
                    if !self.owns(path) && !self.opts.force {
                        return Err(WriteError::Refused(format!(
                            "refusing to overwrite `{}`: meshplan did not write it; move it away, or pass --force",
                            full.display()
                        )));
                    }
                    if self.opts.check {
                        self.emit_diff(&unified(&self.shown(path), &current, text))?;
                    }
                    self.report.updated += 1;
                    self.report
                        .changes
                        .push((Change::Updated, path.to_string()));
                }
                None => {
                    if self.opts.check {
                        self.emit_diff(&unified(&self.shown(path), "", text))?;
                    }
                    self.report.created += 1;
                    self.report
                        .changes
                        .push((Change::Created, path.to_string()));
                    actions.push((path, full, true));
                    continue;
                }
            }
            actions.push((path, full, false));
        }
        if self.opts.check || actions.is_empty() {
            return Ok(());
        }
        self.claim(actions.iter().map(|(p, _, _)| *p))?;
        for (path, full, new) in actions {
            if let Some(parent) = full.parent() {
                self.ensure_dir(parent)?;
                self.clean_stray_temp_files(parent)?;
            }
            if new {
                self.write_new(&full, tree.0[path].as_bytes())?;
            } else {
                self.write_atomic(&full, tree.0[path].as_bytes())?;
            }
        }
        Ok(())
    }

    /// Creates a file that did not exist, in place: `O_EXCL` refuses anything already there
    /// (a symlink included), and the journal already lists it, so a run killed while writing it
    /// leaves a file the next run owns and rewrites. One open and one write, where a replacement
    /// needs a temporary file and a rename.
    fn write_new(&mut self, path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
        let mut f = match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(WriteError::Refused(format!(
                    "`{}` appeared while meshplan was writing; another program writes this directory",
                    path.display()
                )));
            }
            Err(e) => return Err(io_err(path)(e)),
        };
        f.write_all(bytes).map_err(io_err(path))
    }

    /// Writes (or compares) one large file produced in pieces by `produce`, without holding it
    /// in memory: it goes to a temporary file that replaces the old one only if they differ.
    pub fn put_streamed(
        &mut self,
        path: &str,
        produce: &mut dyn FnMut(&mut dyn io::Write) -> io::Result<()>,
    ) -> Result<(), WriteError> {
        check_rel_path(path).map_err(WriteError::Refused)?;
        self.mark_seen(path)?;
        let full = safe_join(&self.out, path)?;
        let existing = match fs::symlink_metadata(&full) {
            Ok(m) if m.is_file() => Some(m.len()),
            Ok(_) => {
                return Err(WriteError::Refused(format!(
                    "`{}` is in the way: it is not a regular file",
                    full.display()
                )));
            }
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::NotADirectory =>
            {
                None
            }
            Err(e) => return Err(io_err(&full)(e)),
        };
        if existing.is_some() && !self.owns(path) && !self.opts.force && !self.opts.check {
            return Err(WriteError::Refused(format!(
                "refusing to overwrite `{}`: meshplan did not write it; move it away, or pass --force",
                full.display()
            )));
        }
        // Produce into a temporary file: in the output directory when writing, elsewhere when
        // only checking (check mode writes nothing into the output directory).
        let parent = full.parent().unwrap_or(&self.out).to_path_buf();
        let tmp_dir = if self.opts.check || !parent.exists() {
            std::env::temp_dir()
        } else {
            parent.clone()
        };
        if !self.opts.check {
            self.claim(std::iter::once(&path.to_string()))?;
            create_dirs(&self.out, &parent)?;
        }
        let mut tmp = if self.opts.check {
            temp_in(&tmp_dir, &self.token)?
        } else {
            self.temp(&parent)?
        };
        {
            let mut buf = io::BufWriter::new(tmp.as_file_mut());
            produce(&mut buf).map_err(io_err(&full))?;
            buf.flush().map_err(io_err(&full))?;
        }
        let same = match existing {
            Some(len) => {
                let new_len = tmp.as_file().metadata().map_err(io_err(&full))?.len();
                len == new_len && files_equal(&full, tmp.path()).map_err(io_err(&full))?
            }
            None => false,
        };
        if same {
            self.report.unchanged += 1;
            return Ok(());
        }
        if existing.is_some() {
            self.report.updated += 1;
            self.report
                .changes
                .push((Change::Updated, path.to_string()));
        } else {
            self.report.created += 1;
            self.report
                .changes
                .push((Change::Created, path.to_string()));
        }
        if self.opts.check {
            let old = existing.map(|_| fs::read_to_string(&full).unwrap_or_default());
            let new_len = tmp.as_file().metadata().map_err(io_err(&full))?.len();
            if existing.unwrap_or(0) <= MAX_DIFF_BYTES && new_len <= MAX_DIFF_BYTES {
                let new = fs::read_to_string(tmp.path()).map_err(io_err(&full))?;
                let shown = self.shown(path);
                self.emit_diff(&unified(&shown, old.as_deref().unwrap_or(""), &new))?;
            } else {
                let shown = self.shown(path);
                self.emit_diff(&format!(
                    "--- a/{shown}\n+++ b/{shown}\n@@ large file differs: {} bytes now, {new_len} bytes generated @@\n",
                    existing.unwrap_or(0)
                ))?;
            }
            return Ok(());
        }
        tmp.persist(&full).map_err(|e| io_err(&full)(e.error))?;
        Ok(())
    }

    fn owns(&self, path: &str) -> bool {
        self.owned
            .binary_search_by(|p| p.as_str().cmp(path))
            .is_ok()
    }

    fn mark_seen(&mut self, path: &str) -> Result<(), WriteError> {
        match self.owned.binary_search_by(|p| p.as_str().cmp(path)) {
            Ok(i) if self.seen_owned[i] => {
                Err(WriteError::Refused(format!("`{path}` was generated twice")))
            }
            Ok(i) => {
                self.seen_owned[i] = true;
                Ok(())
            }
            Err(_) => {
                self.seen_new.push(path.to_string());
                Ok(())
            }
        }
    }

    /// Removes what this run no longer generates, then writes the manifest.
    pub fn finish(mut self) -> Result<WriteReport, WriteError> {
        let mut new = std::mem::take(&mut self.seen_new);
        new.sort_unstable();
        if let Some(w) = new.windows(2).find(|w| w[0] == w[1]) {
            return Err(WriteError::Refused(format!(
                "`{}` was generated twice",
                w[0]
            )));
        }
        let owned = std::mem::take(&mut self.owned);
        let seen_owned = std::mem::take(&mut self.seen_owned);
        for (path, _) in owned.iter().zip(&seen_owned).filter(|(_, seen)| !**seen) {
            if check_rel_path(path).is_err() {
                continue;
            }
            let full = safe_join(&self.out, path)?;
            if let Some(current) = read_if_file(&full)? {
                if self.opts.check {
                    self.emit_diff(&unified(&self.shown(path), &current, ""))?;
                } else {
                    fs::remove_file(&full).map_err(io_err(&full))?;
                    remove_empty_parents(&self.out, &full);
                }
                self.report.removed += 1;
                self.report
                    .changes
                    .push((Change::Removed, path.to_string()));
            }
        }
        let unchanged = self.owned_is_manifest
            && new.is_empty()
            && seen_owned.iter().all(|s| *s)
            && (self.provenance.is_none() || self.provenance == self.old_provenance);
        if self.opts.check {
            if unchanged && !self.report.changed() {
                self.report.files = owned;
            }
            return Ok(self.report);
        }
        if !unchanged {
            // The new manifest: the owned files seen again, merged with the new ones, sorted.
            let kept = owned
                .into_iter()
                .zip(seen_owned)
                .filter(|(_, seen)| *seen)
                .map(|(p, _)| p);
            let mut files: Vec<String> = Vec::with_capacity(new.len());
            let mut new_iter = new.into_iter().peekable();
            for p in kept {
                while let Some(n) = new_iter.next_if(|n| *n < p) {
                    files.push(n);
                }
                files.push(p);
            }
            files.extend(new_iter);
            self.write_manifests(&files)?;
            self.report.files = files;
        } else {
            self.report.files = owned;
        }
        drop(self.journal.take());
        let journal = self.out.join(JOURNAL);
        if journal.exists() {
            fs::remove_file(&journal).map_err(io_err(&journal))?;
        }
        Ok(self.report)
    }

    /// Records `files` (sorted): each part that changed, then the root that lists the parts,
    /// then removes parts no longer listed. A run killed in between leaves its journal, and the
    /// next run owns the union of what every manifest file and the journal list.
    fn write_manifests(&mut self, files: &[String]) -> Result<(), WriteError> {
        let mut parts: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut top = Vec::new();
        for f in files {
            match manifest_part(f) {
                Some(p) => parts.entry(p).or_default().push(f),
                None => top.push(f.as_str()),
            }
        }
        let meta = self.out.join(".meshplan");
        let parts_dir = self.out.join(MANIFEST_PARTS);
        for (part, list) in &parts {
            if self.old_parts.get(*part) == Some(&list_digest(list.iter().copied())) {
                continue;
            }
            create_dirs(&self.out, &parts_dir)?;
            let rel = part_path(part);
            let path = safe_join(&self.out, &rel)?;
            let tmp = self.temp(&parts_dir)?;
            write_manifest(tmp, &path, &[], list)?;
        }
        create_dirs(&self.out, &meta)?;
        let tmp = self.temp(&meta)?;
        let mut head = Vec::new();
        if let Some(p) = &self.provenance {
            head.push(("provenance", serde_json::to_value(p).unwrap_or(Value::Null)));
        }
        head.push((
            "parts",
            Value::from(parts.keys().copied().collect::<Vec<_>>()),
        ));
        write_manifest(tmp, &self.out.join(MANIFEST), &head, &top)?;
        // Parts of clusters that are gone, or that a killed run wrote before its root.
        let parts_dir = safe_join(&self.out, MANIFEST_PARTS)?;
        if let Ok(entries) = fs::read_dir(&parts_dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let listed = name
                    .strip_suffix(".json")
                    .is_some_and(|p| parts.contains_key(p));
                let file = e.file_type().is_ok_and(|t| t.is_file());
                if file && !listed && name.ends_with(".json") {
                    let path = parts_dir.join(&name);
                    safe_last(&path)?;
                    fs::remove_file(&path).map_err(io_err(&path))?;
                }
            }
        }
        Ok(())
    }

    /// What the manifest records besides the files (set before [`Writer::finish`]).
    pub fn set_provenance(&mut self, p: Provenance) {
        self.provenance = Some(p);
    }

    fn emit_diff(&mut self, text: &str) -> Result<(), WriteError> {
        self.diff
            .write_all(text.as_bytes())
            .map_err(|source| WriteError::Io {
                path: PathBuf::from("<stdout>"),
                source,
            })
    }

    /// Removes temporary files a killed run left in a directory this run writes to: only those
    /// whose token that run's journal recorded.
    fn clean_stray_temp_files(&mut self, dir: &Path) -> Result<(), WriteError> {
        if self.stale_tokens.is_empty() || !self.cleaned.insert(dir.to_path_buf()) {
            return Ok(());
        }
        let Ok(entries) = fs::read_dir(dir) else {
            return Ok(());
        };
        let mut names: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for name in names {
            let name = name.to_string_lossy();
            let ours = self.stale_tokens.iter().any(|t| {
                name.starts_with(&format!("{TMP_PREFIX}{t}-")) && name.ends_with(TMP_SUFFIX)
            });
            if ours {
                let p = dir.join(name.as_ref());
                if fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
                    fs::remove_file(&p).map_err(io_err(&p))?;
                }
            }
        }
        Ok(())
    }
}

/// What a killed run left in its journal: the files it may have written, and the tokens of
/// its temporary files.
struct Journal {
    files: BTreeSet<String>,
    tokens: Vec<String>,
}

fn read_journal(out: &Path) -> Result<Option<Journal>, WriteError> {
    let path = safe_join(out, JOURNAL)?;
    let Some(text) = read_bookkeeping(&path)? else {
        return Ok(None);
    };
    let mut j = Journal {
        files: BTreeSet::new(),
        tokens: Vec::new(),
    };
    for l in text.lines().filter(|l| !l.is_empty()) {
        match l.strip_prefix(TOKEN_LINE) {
            Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                j.tokens.push(t.to_string())
            }
            Some(_) => {}
            None => {
                j.files.insert(l.to_string());
            }
        }
    }
    Ok(Some(j))
}

/// Reads meshplan's own bookkeeping file (manifest or journal): a regular file, never a symlink,
/// a FIFO or a device, and of bounded size. `None` when it does not exist.
fn read_bookkeeping(path: &Path) -> Result<Option<String>, WriteError> {
    let before = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    if !before.is_file() {
        return Err(WriteError::Refused(format!(
            "`{}` is not a regular file (a symlink, FIFO or device?); meshplan refuses to read it as its own bookkeeping",
            path.display()
        )));
    }
    let f = fs::File::open(path).map_err(io_err(path))?;
    let meta = f.metadata().map_err(io_err(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.ino() != before.ino() || meta.dev() != before.dev() {
            return Err(WriteError::Refused(format!(
                "`{}` changed while it was opened; meshplan refuses to read it",
                path.display()
            )));
        }
    }
    if !meta.is_file() || meta.len() > MAX_BOOKKEEPING_BYTES {
        return Err(WriteError::Refused(format!(
            "`{}` is {} bytes, more than meshplan ever writes ({} MiB); delete it only if the directory holds nothing you wrote by hand",
            path.display(),
            meta.len(),
            MAX_BOOKKEEPING_BYTES >> 20
        )));
    }
    let mut text = String::new();
    io::Read::read_to_string(&mut io::Read::take(f, MAX_BOOKKEEPING_BYTES + 1), &mut text)
        .map_err(io_err(path))?;
    Ok(Some(text))
}

/// A token for one run's temporary files: process id and clock, in hex.
fn run_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// Takes the output directory's lock (`.meshplan/lock`): exclusive when writing, shared when
/// only checking. Refuses when another run holds it.
fn lock_dir(out: &Path, shared: bool) -> Result<fs::File, WriteError> {
    create_dirs(out, &out.join(".meshplan"))?;
    let path = safe_join(out, LOCK)?;
    if let Ok(m) = fs::symlink_metadata(&path)
        && !m.is_file()
    {
        return Err(WriteError::Refused(format!(
            "`{}` is not a regular file; meshplan refuses to use it as its lock",
            path.display()
        )));
    }
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    let locked = if shared {
        f.try_lock_shared()
    } else {
        f.try_lock()
    };
    match locked {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(WriteError::Refused(format!(
            "another meshplan run is writing `{}` (it holds {LOCK}); wait for it to finish and run again",
            out.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
    }
}

fn files_equal(a: &Path, b: &Path) -> io::Result<bool> {
    let mut fa = io::BufReader::new(fs::File::open(a)?);
    let mut fb = io::BufReader::new(fs::File::open(b)?);
    let mut ba = vec![0u8; 1 << 16];
    let mut bb = vec![0u8; 1 << 16];
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
    fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match r.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    }
}

/// Locks an output directory meshplan wrote before (shared for a check), for a run that only
/// looks at it; `None` when it has no `.meshplan/`.
pub(crate) fn lock_existing(out: &Path, shared: bool) -> Result<Option<fs::File>, WriteError> {
    if !fs::symlink_metadata(out.join(".meshplan")).is_ok_and(|m| m.is_dir()) {
        return Ok(None);
    }
    if shared && fs::symlink_metadata(out.join(LOCK)).is_err() {
        return Ok(None);
    }
    lock_dir(out, shared).map(Some)
}

/// The files the manifest lists, if the output directory has one.
#[cfg(test)]
pub(crate) fn manifest_files(out: &Path) -> Result<Option<Vec<String>>, WriteError> {
    Ok(read_recorded(out)?.map(|m| m.files))
}

/// Whether a run left its journal: it did not finish.
pub(crate) fn has_journal(out: &Path) -> bool {
    fs::symlink_metadata(out.join(JOURNAL)).is_ok()
}

fn read_manifest(out: &Path, path: &Path) -> Result<Option<Manifest>, WriteError> {
    let _ = safe_join(out, MANIFEST)?;
    let Some(text) = read_bookkeeping(path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        WriteError::Refused(format!(
            "`{}` is not a meshplan manifest ({e}); delete it only if the directory holds nothing you wrote by hand",
            path.display()
        ))
    })
}

/// What the last finished run recorded: every file it owns (sorted), and each part's digest.
struct Recorded {
    files: Vec<String>,
    parts: BTreeMap<String, [u8; 32]>,
    provenance: Option<Provenance>,
}

/// Reads the manifest and its parts.
fn read_recorded(out: &Path) -> Result<Option<Recorded>, WriteError> {
    let Some(root) = read_manifest(out, &out.join(MANIFEST))? else {
        return Ok(None);
    };
    let mut files = root.files;
    let mut parts = BTreeMap::new();
    for part in &root.parts {
        let rel = part_path(part);
        check_rel_path(&rel).map_err(WriteError::Refused)?;
        let path = safe_join(out, &rel)?;
        let Some(m) = read_manifest(out, &path)? else {
            return Err(WriteError::Refused(format!(
                "`{}` lists the part `{}`, which is missing; restore it from version control (or delete the output directory's `.meshplan` only if it holds nothing you wrote by hand)",
                out.join(MANIFEST).display(),
                path.display()
            )));
        };
        parts.insert(
            part.clone(),
            list_digest(m.files.iter().map(String::as_str)),
        );
        files.extend(m.files);
    }
    files.sort_unstable();
    files.dedup();
    Ok(Some(Recorded {
        files,
        parts,
        provenance: root.provenance,
    }))
}

/// Whether `dir` holds nothing but, at most, the lock of a run that wrote nothing.
fn is_empty_dir(dir: &Path) -> Result<bool, WriteError> {
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        if e.file_name() != ".meshplan" {
            return Ok(false);
        }
        let inner = dir.join(".meshplan");
        if !fs::symlink_metadata(&inner).is_ok_and(|m| m.is_dir()) {
            return Ok(false);
        }
        for f in fs::read_dir(&inner).map_err(io_err(&inner))? {
            if f.map_err(io_err(&inner))?.file_name() != "lock" {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Refuses a path whose last component is a symlink.
fn safe_last(full: &Path) -> Result<(), WriteError> {
    match fs::symlink_metadata(full) {
        Ok(m) if m.file_type().is_symlink() => Err(WriteError::Refused(format!(
            "refusing to follow the symlink `{}` inside the output directory",
            full.display()
        ))),
        _ => Ok(()),
    }
}

/// `out/rel`, refusing any path whose components below `out` are symlinks, so that no write or
/// delete ever leaves the output directory.
fn safe_join(out: &Path, rel: &str) -> Result<PathBuf, WriteError> {
    let mut cur = out.to_path_buf();
    for part in rel.split('/') {
        cur.push(part);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(WriteError::Refused(format!(
                    "refusing to follow the symlink `{}` inside the output directory",
                    cur.display()
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(io_err(&cur)(e)),
        }
    }
    Ok(out.join(rel))
}

fn read_if_file(path: &Path) -> Result<Option<String>, WriteError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => match fs::read(path) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) => Err(io_err(path)(e)),
        },
        Ok(_) => Err(WriteError::Refused(format!(
            "`{}` is in the way: it is not a regular file",
            path.display()
        ))),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory =>
        {
            Ok(None)
        }
        Err(e) => Err(io_err(path)(e)),
    }
}

fn create_dirs(out: &Path, dir: &Path) -> Result<(), WriteError> {
    if fs::symlink_metadata(out).is_err() {
        fs::create_dir_all(out).map_err(io_err(out))?;
    }
    let rel = dir.strip_prefix(out).unwrap_or(dir);
    let mut cur = out.to_path_buf();
    for part in rel.components() {
        cur.push(part);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(WriteError::Refused(format!(
                    "`{}` is in the way: meshplan needs a directory there",
                    cur.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(io_err(&cur))?
            }
            Err(e) => return Err(io_err(&cur)(e)),
        }
    }
    Ok(())
}

/// A temporary file in `dir`, named after the run's token so that a later run recognises it as
/// a killed run's leftover (and nothing else as one).
fn temp_in(dir: &Path, token: &str) -> Result<tempfile::NamedTempFile, WriteError> {
    let mut builder = tempfile::Builder::new();
    let prefix = format!("{TMP_PREFIX}{token}-");
    builder.prefix(&prefix).suffix(TMP_SUFFIX);
    // Generated files are ordinary repository files (0644 less the umask), not private ones.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    builder.tempfile_in(dir).map_err(io_err(dir))
}

/// Removes the directories above a removed file that are now empty, up to `out`.
fn remove_empty_parents(out: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == out || !d.starts_with(out) {
            break;
        }
        if fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

fn unified(path: &str, old: &str, new: &str) -> String {
    let (a, b) = match (old.is_empty(), new.is_empty()) {
        (true, _) => ("/dev/null".to_string(), format!("b/{path}")),
        (_, true) => (format!("a/{path}"), "/dev/null".to_string()),
        _ => (format!("a/{path}"), format!("b/{path}")),
    };
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&a, &b)
        .to_string()
}

/// An anonymous scratch file outside the output directory, for assembling a large file in parts.
pub fn scratch() -> io::Result<fs::File> {
    tempfile::tempfile()
}

/// The files of a directory tree relative to it, for tests and the benchmark; without the
/// local stat cache, which holds this machine's inodes and times (`crate::cache`).
pub fn list_files(dir: &Path) -> io::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let p = e.path();
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() {
                let rel = p
                    .strip_prefix(dir)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .replace('\\', "/");
                if rel != ".meshplan/cache" {
                    out.insert(rel, fs::read_to_string(&p)?);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> OutputTree {
        let mut t = OutputTree::default();
        for (p, c) in files {
            t.insert(p, (*c).to_string()).unwrap();
        }
        t
    }

    const W: WriteOptions = WriteOptions {
        check: false,
        force: false,
    };
    const C: WriteOptions = WriteOptions {
        check: true,
        force: false,
    };

    #[test]
    fn writes_rewrites_and_prunes_only_its_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plan");
        let r = write_tree(&out, &tree(&[("a/x.yaml", "1\n"), ("b/y.yaml", "2\n")]), W).unwrap();
        assert_eq!((r.created, r.unchanged), (2, 0));
        fs::write(out.join("a/mine.txt"), "hand-written\n").unwrap();
        // Re-run unchanged: nothing written.
        let r = write_tree(&out, &tree(&[("a/x.yaml", "1\n"), ("b/y.yaml", "2\n")]), W).unwrap();
        assert!(!r.changed());
        assert_eq!(r.unchanged, 2);
        // A file dropped from the tree is removed with its now-empty directory; others stay.
        let r = write_tree(&out, &tree(&[("a/x.yaml", "3\n")]), W).unwrap();
        assert_eq!((r.updated, r.removed), (1, 1));
        assert!(!out.join("b").exists());
        assert_eq!(
            fs::read_to_string(out.join("a/mine.txt")).unwrap(),
            "hand-written\n"
        );
        // Check mode: edits and deletions are drift, hand-written files are not.
        fs::write(out.join("a/x.yaml"), "edited\n").unwrap();
        let r = write_tree(&out, &tree(&[("a/x.yaml", "3\n")]), C).unwrap();
        assert_eq!(r.updated, 1);
        assert!(r.diff.contains("-edited\n+3\n"), "{}", r.diff);
        assert_eq!(
            fs::read_to_string(out.join("a/x.yaml")).unwrap(),
            "edited\n"
        );
    }

    #[test]
    fn refuses_foreign_directories_without_force() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notes.txt"), "mine\n").unwrap();
        let err = write_tree(dir.path(), &tree(&[("a.yaml", "1\n")]), W).unwrap_err();
        assert!(matches!(err, WriteError::Refused(_)));
        assert!(!dir.path().join("a.yaml").exists());
        assert!(!dir.path().join(".meshplan").exists());
        write_tree(
            dir.path(),
            &tree(&[("a.yaml", "1\n")]),
            WriteOptions {
                check: false,
                force: true,
            },
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
            "mine\n"
        );
    }

    #[test]
    fn never_follows_symlinks_out() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let out = dir.path().join("plan");
        write_tree(&out, &tree(&[("a/x.yaml", "1\n")]), W).unwrap();
        fs::remove_dir_all(out.join("a")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(outside.path(), out.join("a")).unwrap();
        #[cfg(unix)]
        {
            let err = write_tree(&out, &tree(&[("a/x.yaml", "1\n")]), W).unwrap_err();
            assert!(matches!(err, WriteError::Refused(_)), "{err}");
            assert!(!outside.path().join("x.yaml").exists());
        }
    }

    #[test]
    fn a_journal_left_by_a_killed_first_run_counts_as_owned() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plan");
        // A first run killed after claiming and writing one file: no manifest yet.
        fs::create_dir_all(out.join(".meshplan")).unwrap();
        fs::write(out.join(JOURNAL), "a.yaml\nold.yaml\n").unwrap();
        fs::write(out.join("a.yaml"), "stale\n").unwrap();
        fs::write(out.join("old.yaml"), "gone\n").unwrap();
        let r = write_tree(&out, &tree(&[("a.yaml", "1\n")]), W).unwrap();
        assert_eq!((r.updated, r.removed), (1, 1));
        let files = list_files(&out).unwrap();
        assert_eq!(
            files.keys().cloned().collect::<Vec<_>>(),
            vec![".meshplan/lock", ".meshplan/manifest.json", "a.yaml"]
        );
    }

    #[test]
    fn refuses_a_journal_that_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plan");
        write_tree(&out, &tree(&[("a.yaml", "1\n")]), W).unwrap();
        fs::write(dir.path().join("victim.txt"), "mine\n").unwrap();
        fs::write(dir.path().join("list"), "../victim.txt\n").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("list"), out.join(JOURNAL)).unwrap();
            let err = write_tree(&out, &tree(&[("a.yaml", "2\n")]), W).unwrap_err();
            assert!(matches!(err, WriteError::Refused(_)), "{err}");
            assert!(dir.path().join("victim.txt").exists());
            fs::remove_file(out.join(JOURNAL)).unwrap();
            std::os::unix::fs::symlink("/dev/zero", out.join(JOURNAL)).unwrap();
            let err = write_tree(&out, &tree(&[("a.yaml", "2\n")]), W).unwrap_err();
            assert!(matches!(err, WriteError::Refused(_)), "{err}");
        }
    }

    #[test]
    fn a_second_run_is_refused_while_the_first_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plan");
        let mut sink = Vec::new();
        let first = Writer::begin(&out, W, &mut sink).unwrap();
        let mut sink2 = Vec::new();
        let err = Writer::begin(&out, W, &mut sink2).err().expect("refused");
        assert!(err.to_string().contains("another meshplan run"), "{err}");
        drop(first);
        let mut sink3 = Vec::new();
        assert!(Writer::begin(&out, W, &mut sink3).is_ok());
    }

    #[test]
    fn converges_after_a_crash_between_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plan");
        let t = tree(&[("a.yaml", "1\n"), ("b.yaml", "2\n")]);
        // Simulate a run killed after claiming its files and writing one of them, plus a
        // temporary file left behind.
        fs::create_dir_all(out.join(".meshplan")).unwrap();
        write_manifest(
            temp_in(&out.join(".meshplan"), "t").unwrap(),
            &out.join(MANIFEST),
            &[],
            &t.0.keys().map(String::as_str).collect::<Vec<_>>(),
        )
        .unwrap();
        fs::write(out.join(JOURNAL), format!("{TOKEN_LINE}abc\n")).unwrap();
        fs::write(out.join("a.yaml"), "half").unwrap();
        fs::write(out.join(".meshplan-abc-x1.tmp"), "junk").unwrap();
        // Named like a temporary file, but no journal names its token: hand-written.
        fs::write(out.join(".meshplan-notes.tmp"), "mine").unwrap();
        write_tree(&out, &t, W).unwrap();
        let files = list_files(&out).unwrap();
        assert_eq!(
            files.keys().cloned().collect::<Vec<_>>(),
            vec![
                ".meshplan-notes.tmp",
                ".meshplan/lock",
                ".meshplan/manifest.json",
                "a.yaml",
                "b.yaml"
            ]
        );
        assert_eq!(files["a.yaml"], "1\n");
    }

    #[test]
    fn the_manifest_is_split_by_top_level_directory() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plan");
        let t = tree(&[
            ("PLAN.md", "i\n"),
            ("01-a/x.yaml", "1\n"),
            ("01-a/hop/y.yaml", "2\n"),
            ("rollback/01-a/y.yaml", "3\n"),
            ("02-b/x.yaml", "4\n"),
        ]);
        write_tree(&out, &t, W).unwrap();
        let root = fs::read_to_string(out.join(MANIFEST)).unwrap();
        assert!(root.contains("\"PLAN.md\""), "{root}");
        assert!(!root.contains("01-a/x.yaml"), "{root}");
        let a = fs::read_to_string(out.join(part_path("01-a"))).unwrap();
        assert!(a.contains("rollback/01-a/y.yaml") && a.contains("01-a/hop/y.yaml"));
        assert_eq!(manifest_files(&out).unwrap().unwrap().len(), 5);
        // Only the part that changed is rewritten.
        let b_before = fs::metadata(out.join(part_path("02-b"))).unwrap();
        let mut t2 = t.clone();
        t2.0.insert("01-a/z.yaml".into(), "5\n".into());
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_tree(&out, &t2, W).unwrap();
        let b_after = fs::metadata(out.join(part_path("02-b"))).unwrap();
        assert_eq!(b_before.modified().unwrap(), b_after.modified().unwrap());
        // A cluster that is gone takes its part with it.
        t2.0.remove("02-b/x.yaml");
        write_tree(&out, &t2, W).unwrap();
        assert!(!out.join(part_path("02-b")).exists());
        assert!(!out.join("02-b").exists());
        // A part the root lists but that is missing is refused, never guessed.
        fs::remove_file(out.join(part_path("01-a"))).unwrap();
        let err = write_tree(&out, &t2, W).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn a_run_killed_between_a_part_and_the_root_converges() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plan");
        let t = tree(&[("01-a/x.yaml", "1\n")]);
        write_tree(&out, &t, W).unwrap();
        // A killed run: claimed and wrote 02-b's file and its part, not the root.
        fs::write(out.join(JOURNAL), "02-b/x.yaml\n").unwrap();
        fs::create_dir_all(out.join("02-b")).unwrap();
        fs::write(out.join("02-b/x.yaml"), "2\n").unwrap();
        write_manifest(
            temp_in(&out.join(MANIFEST_PARTS), "t").unwrap(),
            &out.join(part_path("02-b")),
            &[],
            &["02-b/x.yaml"],
        )
        .unwrap();
        // The next run, without 02-b, removes its file and its part.
        write_tree(&out, &t, W).unwrap();
        assert!(!out.join("02-b").exists());
        assert!(!out.join(part_path("02-b")).exists());
        assert_eq!(
            manifest_files(&out).unwrap().unwrap(),
            vec!["01-a/x.yaml".to_string()]
        );
    }
}
