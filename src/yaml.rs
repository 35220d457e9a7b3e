//! A small, deterministic YAML emitter for JSON values.
//!
//! serde_yaml leaves `on`, `yes` and `y` unquoted, which YAML 1.1 parsers (Go's yaml.v2, and so
//! Helm and kubectl) read as booleans. Generated files must never change a value's type, so
//! scalars are written plain only when every YAML version reads them back as the same string,
//! and double-quoted (JSON escaping, valid YAML) otherwise. Maps come out in key order.

use serde_json::Value;

/// Words that some YAML version reads as something other than a string.
const RESERVED: &[&str] = &[
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
    "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~", ".inf",
    ".Inf", ".INF", ".nan", ".NaN", ".NAN",
];

/// Whether `s` can be written as a plain scalar and read back as the same string.
pub fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if RESERVED.contains(&s) {
        return false;
    }
    // Anything starting like a number may be read as one (1.20, 0755, 1e3, 1_000, 12:30).
    if first.is_ascii_digit() || matches!(first, '+' | '-' | '.') {
        return false;
    }
    if !(first.is_ascii_alphabetic() || first == '/' || first == '_') {
        return false;
    }
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '@' | '+'))
}

/// A string as a YAML scalar: plain when safe, double-quoted otherwise.
pub fn scalar_str(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_string()
    } else {
        // JSON string syntax is valid YAML double-quoted syntax.
        serde_json::Value::String(s.to_string()).to_string()
    }
}

/// A scalar value (or an empty collection) in flow form.
pub fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar_str(s),
        Value::Array(a) if a.is_empty() => "[]".to_string(),
        Value::Object(o) if o.is_empty() => "{}".to_string(),
        Value::Array(_) | Value::Object(_) => v.to_string(),
    }
}

/// The value as a block YAML document fragment, ending in a newline (or empty for an empty map).
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(o) if !o.is_empty() => emit_map(&mut out, o, 0),
        Value::Array(a) if !a.is_empty() => emit_seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(o) => !o.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn emit_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (k, v) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&scalar_str(k));
        out.push(':');
        emit_value_after_key(out, v, indent);
    }
}

fn emit_value_after_key(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(o) if !o.is_empty() => {
            out.push('\n');
            emit_map(out, o, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            emit_seq(out, a, indent + 2);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn emit_seq(out: &mut String, seq: &[Value], indent: usize) {
    for item in seq {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            Value::Object(o) if !o.is_empty() => {
                // The first key goes on the dash line, the rest align under it.
                let mut first = true;
                for (k, v) in o {
                    if first {
                        out.push(' ');
                        first = false;
                    } else {
                        out.push_str(&" ".repeat(indent + 2));
                    }
                    out.push_str(&scalar_str(k));
                    out.push(':');
                    emit_value_after_key(out, v, indent + 2);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                emit_seq(out, a, indent + 2);
            }
            other => {
                debug_assert!(!is_block(other));
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quotes_everything_that_could_change_type() {
        let v = json!({"a": "on", "b": "1.20", "c": "yes", "d": "0755", "e": "true", "f": "", "g": "1-20",
                       "h": "docker.io/istio", "i": "/dev/stdout", "j": "a: b", "k": "y", "l": 2, "m": true, "n": null});
        assert_eq!(
            to_string(&v),
            "a: \"on\"\nb: \"1.20\"\nc: \"yes\"\nd: \"0755\"\ne: \"true\"\nf: \"\"\ng: \"1-20\"\nh: docker.io/istio\ni: /dev/stdout\nj: \"a: b\"\nk: \"y\"\nl: 2\nm: true\n\"n\": null\n"
        );
    }

    #[test]
    fn emits_nested_blocks() {
        let v = json!({"ports": [{"name": "http2", "port": 80}, {"name": "tls", "port": 443}], "labels": {}, "list": ["a", ["b"]]});
        assert_eq!(
            to_string(&v),
            "labels: {}\nlist:\n  - a\n  -\n    - b\nports:\n  - name: http2\n    port: 80\n  - name: tls\n    port: 443\n"
        );
    }

    #[test]
    fn round_trips_through_a_yaml_parser() {
        let v = json!({"a": ["on", "1.20", {"x": "y", "z": [1, 2.5, "off"]}], "b": {"c": {"d": "e\nf"}}, "k": "-x"});
        let back: Value = serde_yaml::from_str(&to_string(&v)).unwrap();
        assert_eq!(back, v);
    }
}
