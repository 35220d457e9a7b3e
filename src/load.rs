//! Reading input: the inventory (or catalog) text, and a templates directory. The only module,
//! with `write`, that touches the file system.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use serde_json::Value;

use crate::inventory::{Cluster, Inventory, InventoryHead};
use crate::render::TEMPLATES;
use crate::schema;
use crate::source::{Source, YamlPath};
use crate::stream;

/// The largest input meshplan reads: an inventory of 100 clusters with 1,000 namespaces each is
/// about 21 MB.
pub const MAX_INPUT_BYTES: u64 = 128 << 20;

/// How long a FIFO may stay silent before meshplan gives up on it.
const FIFO_SILENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Why an input could not be read: an I/O problem (exit 4), or input that is not text
/// meshplan can read (exit 1).
#[derive(Debug)]
pub enum ReadError {
    Io(String),
    Rejected(String),
}

impl ReadError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ReadError::Io(_) => crate::exit::IO,
            ReadError::Rejected(_) => crate::exit::REJECTED,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ReadError::Io(m) | ReadError::Rejected(m) => m,
        }
    }
}

/// Reads a file, or standard input for `-`: at most [`MAX_INPUT_BYTES`], UTF-8. A regular file
/// or a FIFO (process substitution); a device is refused, and so is a FIFO nothing writes to.
pub fn read(path: &str, stdin: &mut dyn Read) -> Result<Source, ReadError> {
    let (name, bytes) = if path == "-" {
        let mut bytes = Vec::new();
        (&mut *stdin)
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ReadError::Io(format!("error: cannot read standard input: {e}\n")))?;
        ("<stdin>", bytes)
    } else {
        (path, read_file(Path::new(path))?)
    };
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(ReadError::Rejected(format!(
            "error: `{name}` is larger than {} MiB; no inventory or catalog is that large\n",
            MAX_INPUT_BYTES >> 20
        )));
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Source::new(name, normalize_line_ends(text))),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let before = &e.as_bytes()[..at];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            let col = at
                - before
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1)
                + 1;
            Err(ReadError::Rejected(format!(
                "error[yaml-syntax]: `{name}` is not UTF-8 text: byte {at} (line {line}, column {col}) is {:#04x}\n  = help: save the file as UTF-8\n",
                e.as_bytes()[at]
            )))
        }
    }
}

/// Lone carriage returns (classic Mac line ends) become line feeds: YAML reads them as line
/// breaks, and every position stays the same byte.
fn normalize_line_ends(text: String) -> String {
    if !text.contains('\r') {
        return text;
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        if c == '\r' && bytes.get(i + 1) != Some(&b'\n') {
            out.push('\n');
        } else {
            out.push(c);
        }
    }
    out
}

fn read_file(path: &Path) -> Result<Vec<u8>, ReadError> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| ReadError::Io(format!("error: cannot read `{shown}`: {e}\n")))?;
    let ft = meta.file_type();
    #[cfg(unix)]
    let fifo = std::os::unix::fs::FileTypeExt::is_fifo(&ft);
    #[cfg(not(unix))]
    let fifo = false;
    if !ft.is_file() && !fifo {
        return Err(ReadError::Io(format!(
            "error: `{shown}` is not a regular file (a directory or a device?); give the path of a YAML file\n"
        )));
    }
    if ft.is_file() && meta.len() > MAX_INPUT_BYTES {
        return Err(ReadError::Rejected(format!(
            "error: `{shown}` is {} MiB, larger than {} MiB; no inventory or catalog is that large\n",
            meta.len() >> 20,
            MAX_INPUT_BYTES >> 20
        )));
    }
    let io = |e: std::io::Error| ReadError::Io(format!("error: cannot read `{shown}`: {e}\n"));
    if !fifo {
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .map_err(io)?
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        return Ok(bytes);
    }
    // A FIFO: opened without waiting for a writer, read as data arrives.
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(target_os = "linux")]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut opts, 0o4000); // O_NONBLOCK
    let mut f = opts.open(path).map_err(io)?;
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut last = std::time::Instant::now();
    loop {
        match f.read(&mut buf) {
            Ok(0) if bytes.is_empty() => {
                // No writer yet (or one that wrote nothing): wait for one, a bounded time.
                if last.elapsed() > FIFO_SILENCE {
                    return Err(ReadError::Io(format!(
                        "error: nothing wrote to the FIFO `{shown}` for {} s\n",
                        FIFO_SILENCE.as_secs()
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Ok(0) => return Ok(bytes),
            Ok(n) => {
                bytes.extend_from_slice(&buf[..n]);
                last = std::time::Instant::now();
                if bytes.len() as u64 > MAX_INPUT_BYTES {
                    return Ok(bytes);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if last.elapsed() > FIFO_SILENCE {
                    return Err(ReadError::Io(format!(
                        "error: the FIFO `{shown}` sent nothing for {} s\n",
                        FIFO_SILENCE.as_secs()
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
}

/// Parses and schema-checks an inventory, a cluster at a time (see [`crate::stream`]): each
/// cluster is checked against the schema and converted as soon as it is read, so that memory
/// holds the typed inventory and one cluster's JSON value, never the whole document's. Every
/// schema violation is reported. The inventory comes back, with the clusters that passed the
/// schema, whenever its top level did, so that semantic checks can report their findings in the
/// same run.
pub fn inventory(src: &Source) -> (Option<Inventory>, Diagnostics) {
    match inventory_inner(src) {
        Ok((inv, diags)) => (Some(inv), diags),
        Err(diags) => (None, diags),
    }
}

fn inventory_inner(src: &Source) -> Result<(Inventory, Diagnostics), Diagnostics> {
    let mut diags = Diagnostics::default();
    if let Some(empty) = schema::empty_document(src, schema::Kind::Inventory) {
        return Err(empty);
    }
    let mut clusters: Vec<Option<Cluster>> = Vec::new();
    let mut cluster_diags = Diagnostics::default();
    let streamed = stream::load(&src.text, |i, value| {
        let d = schema::validate_inventory_cluster(src, i, &value);
        let typed = if d.has_errors() {
            None
        } else {
            match serde_json::from_value::<Cluster>(value) {
                Ok(mut c) => {
                    c.index = i;
                    Some(c)
                }
                Err(e) => {
                    cluster_diags.push(
                        Diagnostic::error(
                            Code::SchemaType,
                            format!("cluster does not match the format: {e}"),
                        )
                        .at(src, &YamlPath::root().key("clusters").index(i)),
                    );
                    None
                }
            }
        };
        cluster_diags.extend(d);
        clusters.push(typed);
    });
    let top = match streamed {
        Ok(v) => v,
        Err(e) => {
            diags.push(crate::diagnostic::yaml_syntax(src, &e.message, e.position));
            return Err(diags);
        }
    };
    let top_diags = schema::validate_inventory_top(src, &top);
    let top_ok = !top_diags.has_errors();
    diags.extend(top_diags);
    diags.extend(cluster_diags);
    if !top_ok {
        return Err(diags);
    }
    let mut head = top;
    if let Value::Object(m) = &mut head {
        m.remove("clusters");
    }
    let head: InventoryHead = match serde_json::from_value(head) {
        Ok(h) => h,
        Err(e) => {
            diags.push(
                Diagnostic::error(
                    Code::SchemaType,
                    format!("the inventory does not match the format: {e}"),
                )
                .at(src, &YamlPath::root()),
            );
            return Err(diags);
        }
    };
    let inv = Inventory {
        api_version: head.api_version,
        kind: head.kind,
        name: head.name,
        defaults: head.defaults,
        gitops: head.gitops,
        clusters: clusters.into_iter().flatten().collect(),
    };
    Ok((inv, diags))
}

/// The templates of `--templates DIR` that replace built-in ones. A file whose name is not a
/// built-in template is an error, so that a typo does not silently change nothing.
pub fn template_overrides(dir: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read templates directory `{}`: {e}", dir.display()))?;
    let mut names: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    names.sort();
    for p in names {
        if !p.is_file() {
            continue;
        }
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !TEMPLATES.iter().any(|(t, _)| *t == name) {
            let known: Vec<&str> = TEMPLATES.iter().map(|(t, _)| *t).collect();
            return Err(format!(
                "`{}` does not replace a built-in template; the templates are: {}",
                p.display(),
                known.join(", ")
            ));
        }
        let text = std::fs::read_to_string(&p)
            .map_err(|e| format!("cannot read `{}`: {e}", p.display()))?;
        out.insert(name, text);
    }
    Ok(out)
}
