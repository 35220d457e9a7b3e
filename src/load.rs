//! Reading input: the inventory (or catalog) text, and a templates directory. The only module,
//! with `write`, that touches the file system.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::inventory::Inventory;
use crate::render::TEMPLATES;
use crate::schema::{self, Kind};
use crate::source::{Source, YamlPath};

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

/// Parses and schema-checks an inventory. Every schema violation is reported.
pub fn inventory(src: &Source) -> Result<Inventory, Diagnostics> {
    let value = schema::parse_yaml(src)?;
    let diags = schema::validate(src, &value, Kind::Inventory);
    if diags.has_errors() {
        return Err(diags);
    }
    serde_json::from_value::<Inventory>(value).map_err(|e| {
        let mut d = Diagnostics::default();
        d.push(
            Diagnostic::error(
                Code::SchemaType,
                format!("the inventory does not match the format: {e}"),
            )
            .at(src, &YamlPath::root()),
        );
        d
    })
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
