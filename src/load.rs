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

/// Reads a file, or standard input for `-`.
pub fn read(path: &str, stdin: &mut dyn Read) -> Result<Source, String> {
    if path == "-" {
        let mut text = String::new();
        stdin
            .read_to_string(&mut text)
            .map_err(|e| format!("error: cannot read standard input: {e}\n"))?;
        return Ok(Source::new("<stdin>", text));
    }
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Ok(Source::new(path, text)),
            Err(_) => Err(format!(
                "error: cannot read `{path}`: it is not UTF-8 text\n"
            )),
        },
        Err(e) => Err(format!("error: cannot read `{path}`: {e}\n")),
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
    if let Some(empty) = schema::empty_document(src) {
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
            let mut d = Diagnostic::error(Code::YamlSyntax, format!("invalid YAML: {}", e.message));
            d.file.clone_from(&src.name);
            d.position = e.position;
            diags.push(d);
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
