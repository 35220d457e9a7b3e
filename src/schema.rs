//! YAML text to a JSON value, and JSON Schema validation of that value, with every violation
//! turned into a located diagnostic.

use std::sync::OnceLock;

use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic, Diagnostics, suggest};
use crate::source::{Position, Seg, Source, YamlPath};

pub const INVENTORY_SCHEMA: &str = include_str!("../schemas/inventory.schema.json");
pub const CATALOG_SCHEMA: &str = include_str!("../schemas/catalog.schema.json");

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Inventory,
    Catalog,
}

impl Kind {
    fn text(self) -> &'static str {
        match self {
            Kind::Inventory => INVENTORY_SCHEMA,
            Kind::Catalog => CATALOG_SCHEMA,
        }
    }

    fn schema(self) -> &'static Value {
        static INV: OnceLock<Value> = OnceLock::new();
        static CAT: OnceLock<Value> = OnceLock::new();
        let cell = match self {
            Kind::Inventory => &INV,
            Kind::Catalog => &CAT,
        };
        // The schemas are compiled into the binary and checked by the tests.
        cell.get_or_init(|| serde_json::from_str(self.text()).expect("embedded schema is JSON"))
    }

    fn validator(self) -> &'static jsonschema::Validator {
        static INV: OnceLock<jsonschema::Validator> = OnceLock::new();
        static CAT: OnceLock<jsonschema::Validator> = OnceLock::new();
        let cell = match self {
            Kind::Inventory => &INV,
            Kind::Catalog => &CAT,
        };
        cell.get_or_init(|| {
            jsonschema::validator_for(self.schema()).expect("embedded schema compiles")
        })
    }
}

/// Parses YAML into a JSON value. A syntax error stops here, located by serde_yaml.
pub fn parse_yaml(src: &Source, kind: Kind) -> Result<Value, Diagnostics> {
    let mut diags = Diagnostics::default();
    if let Some(empty) = empty_document(src, kind) {
        return Err(empty);
    }
    match serde_yaml::from_str::<Value>(&src.text) {
        Ok(v) => Ok(v),
        Err(e) => {
            let mut msg = e.to_string();
            // serde_yaml appends " at line L column C"; the location is shown on its own line.
            if let Some(i) = msg.find(" at line ") {
                msg.truncate(i);
            }
            let position = e.location().map(|l| Position {
                line: l.line(),
                col: l.column(),
            });
            diags.push(crate::diagnostic::yaml_syntax(src, &msg, position));
            Err(diags)
        }
    }
}

/// The diagnostic for a file with nothing but blank lines and comments, if it is one.
pub fn empty_document(src: &Source, kind: Kind) -> Option<Diagnostics> {
    if !src
        .text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return None;
    }
    let mut d = Diagnostic::error(Code::YamlSyntax, "the file is empty").help(match kind {
        Kind::Inventory => "an inventory starts with `apiVersion: meshplan.dev/v1alpha1` and `kind: MeshInventory`; see `meshplan schema`",
        Kind::Catalog => "a release catalog starts with `schemaVersion: 1` and lists `releases`; see `meshplan schema --catalog`",
    });
    d.file.clone_from(&src.name);
    let mut diags = Diagnostics::default();
    diags.push(d);
    Some(diags)
}

/// The schema text, as `meshplan schema` prints it.
pub fn text(kind: Kind) -> &'static str {
    kind.text()
}

/// Validates `value` against the schema of `kind`; every violation becomes a diagnostic.
pub fn validate(src: &Source, value: &Value, kind: Kind) -> Diagnostics {
    let schema = kind.schema();
    validate_with(
        src,
        value,
        kind.validator(),
        schema,
        schema,
        &YamlPath::root(),
    )
}

/// The inventory schema split in two: the document with `clusters` checked only as a list,
/// and one cluster (`$defs/cluster`). Large inventories are checked a cluster at a time.
fn inventory_parts() -> &'static (jsonschema::Validator, jsonschema::Validator) {
    static PARTS: OnceLock<(jsonschema::Validator, jsonschema::Validator)> = OnceLock::new();
    PARTS.get_or_init(|| {
        let root = Kind::Inventory.schema();
        let mut top = root.clone();
        top["properties"]["clusters"] = serde_json::json!({"type": "array", "minItems": 1,
            "description": root["properties"]["clusters"]["description"]});
        let mut cluster = root.clone();
        if let Value::Object(m) = &mut cluster {
            for k in [
                "properties",
                "required",
                "additionalProperties",
                "type",
                "title",
                "description",
            ] {
                m.remove(k);
            }
            m.insert("$ref".into(), Value::String("#/$defs/cluster".into()));
        }
        (
            jsonschema::validator_for(&top).expect("embedded schema compiles"),
            jsonschema::validator_for(&cluster).expect("embedded schema compiles"),
        )
    })
}

/// Validates an inventory document whose clusters have been taken out (null placeholders).
pub fn validate_inventory_top(src: &Source, top: &Value) -> Diagnostics {
    let schema = Kind::Inventory.schema();
    validate_with(
        src,
        top,
        &inventory_parts().0,
        schema,
        schema,
        &YamlPath::root(),
    )
}

/// Validates the `index`-th cluster of an inventory.
pub fn validate_inventory_cluster(src: &Source, index: usize, cluster: &Value) -> Diagnostics {
    let schema = Kind::Inventory.schema();
    let start = resolve(schema, &schema["$defs"]["cluster"]).unwrap_or(schema);
    let prefix = YamlPath::root().key("clusters").index(index);
    validate_with(src, cluster, &inventory_parts().1, schema, start, &prefix)
}

fn validate_with(
    src: &Source,
    value: &Value,
    validator: &jsonschema::Validator,
    schema: &Value,
    start: &Value,
    prefix: &YamlPath,
) -> Diagnostics {
    let mut diags = Diagnostics::default();
    for err in validator.iter_errors(value) {
        let is_seq = |p: &YamlPath| matches!(lookup_value(value, p), Some(Value::Array(_)));
        let rel = YamlPath::from_pointer(&err.instance_path().to_string(), is_seq);
        let node = subschema(schema, start, &rel);
        let mut path = prefix.clone();
        path.0.extend(rel.0.iter().cloned());
        let value_here = lookup_value(value, &rel);
        let found = describe(value_here);
        use jsonschema::error::ValidationErrorKind as K;
        match err.kind() {
            K::AdditionalProperties { unexpected } => {
                let known = known_fields(node);
                for field in unexpected {
                    let mut d = Diagnostic::error(
                        Code::SchemaUnknownField,
                        format!("unknown field `{field}` in {}", where_(&path)),
                    )
                    .at_key(src, &path.key(field));
                    if let Some(s) = suggest(field, known.iter().map(String::as_str)) {
                        d = d.help(format!("did you mean `{s}`?"));
                    }
                    if !known.is_empty() {
                        d = d.help(format!("valid fields here: {}", known.join(", ")));
                    }
                    diags.push(d);
                }
            }
            K::Required { property } => {
                let field = property.as_str().unwrap_or_default().to_string();
                let mut d = Diagnostic::error(
                    Code::SchemaMissingField,
                    format!("missing required field `{field}` in {}", where_(&path)),
                )
                .at_key(src, &path);
                if let Some(desc) = node
                    .and_then(|n| n.get("properties"))
                    .and_then(|p| subschema_desc(p.get(&field)))
                {
                    d = d.help(format!("`{field}`: {desc}"));
                }
                diags.push(d);
            }
            K::Type { .. } => {
                let expected = expected_type(node);
                let mut d = Diagnostic::error(
                    Code::SchemaType,
                    format!("`{path}` must be {expected}, found {found}"),
                )
                .at(src, &path);
                if expected.contains("string") && matches!(value_here, Some(Value::Number(_))) {
                    let raw = src
                        .value_position(&path)
                        .and_then(|p| src.line_text(p.line).map(|l| (p, l)))
                        .map(|(p, l)| {
                            l.chars()
                                .skip(p.col - 1)
                                .take_while(|c| !c.is_whitespace() && *c != ',' && *c != '}')
                                .collect::<String>()
                        })
                        .unwrap_or_default();
                    let revision = matches!(path.0.last(), Some(crate::source::Seg::Key(k)) if k == "revision");
                    d = if revision && raw.contains('.') {
                        // Quoting would only lead to the next error: revisions have no dots.
                        d.help(format!(
                            "a revision cannot contain dots (it becomes part of object names): write {}",
                            raw.replace('.', "-")
                        ))
                    } else {
                        d.help(format!(
                            "write it in quotes, \"{raw}\": unquoted, YAML reads it as a number (1.30 becomes 1.3)"
                        ))
                    };
                }
                if let Some(desc) = subschema_desc(node) {
                    d = d.help(desc);
                }
                diags.push(d);
            }
            K::Enum { options } => {
                let opts: Vec<String> = options
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut d = Diagnostic::error(
                    Code::SchemaInvalidValue,
                    format!("`{path}` is {found}, expected one of: {}", opts.join(", ")),
                )
                .at(src, &path);
                if let Some(s) = value_here
                    .and_then(Value::as_str)
                    .and_then(|w| suggest(w, opts.iter().map(String::as_str)))
                {
                    d = d.help(format!("did you mean `{s}`?"));
                }
                diags.push(d);
            }
            K::Constant { expected_value } => {
                diags.push(
                    Diagnostic::error(
                        Code::SchemaInvalidValue,
                        format!("`{path}` is {found}, expected {expected_value}"),
                    )
                    .at(src, &path),
                );
            }
            _ => {
                let mut d = Diagnostic::error(
                    Code::SchemaInvalidValue,
                    format!("`{path}` is {found}: {}", short_reason(&err.to_string())),
                )
                .at(src, &path);
                if let Some(desc) = subschema_desc(node) {
                    d = d.help(desc);
                }
                diags.push(d);
            }
        }
    }
    diags
}

fn where_(path: &YamlPath) -> String {
    if path.0.is_empty() {
        "the top level".to_string()
    } else {
        format!("`{path}`")
    }
}

/// The validator's own message, without the instance it repeats at the front.
fn short_reason(msg: &str) -> String {
    for marker in [
        " is not ",
        " has ",
        " is longer",
        " is shorter",
        " does not ",
        " is less",
        " is greater",
    ] {
        if let Some(i) = msg.find(marker) {
            return msg[i + 1..].to_string();
        }
    }
    msg.to_string()
}

/// A short description of a value for messages: `"1.3"`, the number 1.3, a list.
fn describe(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "nothing (null)".to_string(),
        Some(Value::Bool(b)) => format!("the boolean {b}"),
        Some(Value::Number(n)) => format!("the number {n}"),
        Some(Value::String(s)) if s.is_empty() => "an empty string".to_string(),
        Some(Value::String(s)) => {
            // Control characters (a newline in a name) are shown escaped, on one line.
            let mut shown: String = s
                .chars()
                .take(40)
                .flat_map(|c| {
                    if c.is_control() {
                        c.escape_default().collect::<Vec<_>>()
                    } else {
                        vec![c]
                    }
                })
                .collect();
            if s.chars().count() > 40 {
                shown.push('…');
            }
            format!("`{shown}`")
        }
        Some(Value::Array(_)) => "a list".to_string(),
        Some(Value::Object(_)) => "a mapping".to_string(),
    }
}

pub fn lookup_value<'a>(mut v: &'a Value, path: &YamlPath) -> Option<&'a Value> {
    for seg in &path.0 {
        v = match seg {
            Seg::Key(k) => v.get(k)?,
            Seg::Index(i) => v.get(*i)?,
        };
    }
    Some(v)
}

/// Follows `path` through the schema (properties, items, additionalProperties, local `$ref`s)
/// to the subschema that describes it.
fn subschema<'a>(root: &'a Value, start: &'a Value, path: &YamlPath) -> Option<&'a Value> {
    let mut node = resolve(root, start)?;
    for seg in &path.0 {
        let next = match seg {
            Seg::Key(k) => node
                .get("properties")
                .and_then(|p| p.get(k))
                .or_else(|| node.get("additionalProperties").filter(|a| a.is_object())),
            Seg::Index(_) => node.get("items"),
        }?;
        node = resolve(root, next)?;
    }
    Some(node)
}

fn resolve<'a>(root: &'a Value, mut node: &'a Value) -> Option<&'a Value> {
    for _ in 0..16 {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => node = root.pointer(r.strip_prefix('#')?)?,
            None => return Some(node),
        }
    }
    None
}

fn known_fields(node: Option<&Value>) -> Vec<String> {
    node.and_then(|n| n.get("properties"))
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn subschema_desc(node: Option<&Value>) -> Option<String> {
    node?.get("description")?.as_str().map(str::to_string)
}

fn expected_type(node: Option<&Value>) -> String {
    let Some(t) = node.and_then(|n| n.get("type")) else {
        return "of another type".to_string();
    };
    let name = |s: &str| match s {
        "object" => "a mapping".to_string(),
        "array" => "a list".to_string(),
        "integer" => "a whole number".to_string(),
        "boolean" => "true or false".to_string(),
        other => format!("a {other}"),
    };
    match t {
        Value::String(s) => name(s),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(name)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "of another type".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schemas_compile() {
        let _ = Kind::Inventory.validator();
        let _ = Kind::Catalog.validator();
    }

    #[test]
    fn syntax_errors_are_located() {
        let src = Source::new("bad.yaml", "a: [1, 2\nb: 3\n");
        let err = parse_yaml(&src, Kind::Catalog).unwrap_err();
        let d = &err.0[0];
        assert_eq!(d.code, Code::YamlSyntax);
        assert!(d.position.is_some());
    }
}
