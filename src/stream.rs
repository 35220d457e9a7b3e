//! A streaming YAML loader for inventories: saphyr-parser's events become JSON values (YAML 1.2
//! core schema, as serde_yaml resolves them), and every element of the top-level `clusters` list
//! is handed to a callback as soon as it is complete, so that a large inventory is never held
//! as one value. serde_yaml buffers a whole document's events first (330 MB for a 21 MB
//! inventory), which is why inventories do not go through it.

use std::collections::BTreeMap;

use saphyr_parser::{Event, Parser, ScalarStyle};
use serde_json::{Map, Number, Value};

use crate::source::Position;

/// A YAML syntax error with its position.
#[derive(Debug)]
pub struct SyntaxError {
    pub message: String,
    pub position: Option<Position>,
}

enum Frame {
    Map {
        map: Map<String, Value>,
        key: Option<(String, Position)>,
        anchor: usize,
        start: Position,
        nodes: usize,
    },
    Seq {
        items: Vec<Value>,
        anchor: usize,
        start: Position,
        nodes: usize,
    },
}

/// How deep mappings and sequences may nest: far more than any inventory needs, far less than
/// what would exhaust the stack of a later stage.
pub const MAX_DEPTH: usize = 100;

/// How many nodes aliases may add to a document, all aliases together: enough for anchors that
/// share values between gateways or clusters, too few for "billion laughs" expansion.
pub const MAX_ALIAS_NODES: usize = 250_000;

fn tag_allowed(tag: Option<&saphyr_parser::Tag>) -> bool {
    tag.is_none_or(|t| t.handle.ends_with("yaml.org,2002:") && t.suffix == "str")
}

fn tag_name(t: &saphyr_parser::Tag) -> String {
    if t.handle.ends_with("yaml.org,2002:") {
        format!("!!{}", t.suffix)
    } else {
        format!("{}{}", t.handle, t.suffix)
    }
}

fn tag_error(t: &saphyr_parser::Tag, pos: Position) -> SyntaxError {
    SyntaxError {
        message: format!(
            "the YAML tag `{}` is not allowed: meshplan reads plain YAML values, and a tag would change what one means (only `!!str` is accepted)",
            tag_name(t)
        ),
        position: Some(pos),
    }
}

/// Parses `text`. Each element of the top-level `clusters` sequence goes to `on_cluster` with its
/// index, and a `null` stands in its place in the returned document.
pub fn load(text: &str, mut on_cluster: impl FnMut(usize, Value)) -> Result<Value, SyntaxError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: BTreeMap<usize, (Value, usize)> = BTreeMap::new();
    let mut root: Option<Value> = None;
    let mut docs = 0;
    let mut alias_nodes = 0usize;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| SyntaxError {
            // The parser's own guard against deep flow collections ([[[[...).
            message: if e.info() == "recursion limit exceeded" {
                format!(
                    "mappings and sequences nest deeper than {MAX_DEPTH} levels here; no inventory needs that many"
                )
            } else {
                e.info().to_string()
            },
            position: Some(Position {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            }),
        })?;
        let pos = Position {
            line: span.start.line(),
            col: span.start.col() + 1,
        };
        // The finished value, where it starts, and how many nodes it holds.
        let (value, start, nodes) = match event {
            Event::DocumentStart(_) => {
                docs += 1;
                if docs > 1 {
                    return Err(SyntaxError {
                        message: "the file holds more than one YAML document; an inventory is one document".to_string(),
                        position: Some(pos),
                    });
                }
                continue;
            }
            Event::MappingStart(anchor, tag) | Event::SequenceStart(anchor, tag)
                if !tag_allowed(tag.as_deref()) || stack.len() >= MAX_DEPTH =>
            {
                let _ = anchor;
                return Err(match tag {
                    Some(t) if !tag_allowed(Some(&t)) => tag_error(&t, pos),
                    _ => SyntaxError {
                        message: format!(
                            "mappings and sequences nest deeper than {MAX_DEPTH} levels here; no inventory needs that many"
                        ),
                        position: Some(pos),
                    },
                });
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map {
                    map: Map::new(),
                    key: None,
                    anchor,
                    start: pos,
                    nodes: 1,
                });
                continue;
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq {
                    items: Vec::new(),
                    anchor,
                    start: pos,
                    nodes: 1,
                });
                continue;
            }
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    map,
                    anchor,
                    start,
                    nodes,
                    ..
                }) => (
                    remember(&mut anchors, anchor, Value::Object(map), nodes),
                    start,
                    nodes,
                ),
                _ => continue,
            },
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq {
                    items,
                    anchor,
                    start,
                    nodes,
                }) => (
                    remember(&mut anchors, anchor, Value::Array(items), nodes),
                    start,
                    nodes,
                ),
                _ => continue,
            },
            Event::Scalar(text, style, anchor, tag) => {
                if let Some(t) = &tag
                    && !tag_allowed(Some(t))
                {
                    return Err(tag_error(t, pos));
                }
                let is_str_tag = tag.is_some();
                let v = if style == ScalarStyle::Plain && !is_str_tag {
                    resolve(&text)
                } else {
                    Value::String(text.into_owned())
                };
                (remember(&mut anchors, anchor, v, 1), pos, 1)
            }
            Event::Alias(id) => {
                let (v, n) = anchors.get(&id).cloned().unwrap_or((Value::Null, 1));
                alias_nodes += n;
                if alias_nodes > MAX_ALIAS_NODES {
                    return Err(SyntaxError {
                        message: format!(
                            "aliases expand to more than {MAX_ALIAS_NODES} values in this document; anchors may share values, not multiply them"
                        ),
                        position: Some(pos),
                    });
                }
                (v, pos, n)
            }
            _ => continue,
        };
        // Attach the finished value to its parent.
        // The clusters list is the sequence at depth 2, under the top-level key `clusters`.
        let in_clusters = stack.len() == 2
            && matches!(&stack[0], Frame::Map { key: Some((k, _)), .. } if k == "clusters");
        match stack.last_mut() {
            None => root = Some(value),
            Some(Frame::Seq {
                items, nodes: n, ..
            }) => {
                *n += nodes;
                if in_clusters {
                    on_cluster(items.len(), value);
                    items.push(Value::Null);
                } else {
                    items.push(value);
                }
            }
            Some(Frame::Map {
                map, key, nodes: n, ..
            }) => match key.take() {
                None => {
                    *n += nodes;
                    // Keys are strings, as Helm and Kubernetes read them (a plain `1:` is "1").
                    let k = match value {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Null => {
                            return Err(SyntaxError {
                                message: "a key is null (`~`, `null` or nothing before `:`); keys are names".to_string(),
                                position: Some(start),
                            });
                        }
                        Value::Array(_) | Value::Object(_) => {
                            return Err(SyntaxError {
                                message:
                                    "a key is a sequence or a mapping (`? ...`); keys are names"
                                        .to_string(),
                                position: Some(start),
                            });
                        }
                    };
                    if map.contains_key(&k) {
                        return Err(SyntaxError {
                            message: format!("duplicate key `{k}`"),
                            position: Some(start),
                        });
                    }
                    *key = Some((k, start));
                }
                Some((k, _)) => {
                    *n += nodes;
                    map.insert(k, value);
                }
            },
        }
    }
    Ok(root.unwrap_or(Value::Null))
}

fn remember(
    anchors: &mut BTreeMap<usize, (Value, usize)>,
    anchor: usize,
    v: Value,
    nodes: usize,
) -> Value {
    if anchor > 0 {
        anchors.insert(anchor, (v.clone(), nodes));
    }
    v
}

/// The YAML 1.2 core schema's reading of a plain scalar.
pub fn resolve(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => {
            // JSON has no infinities or NaN; keep the text.
            return Value::String(s.to_string());
        }
        _ => {}
    }
    let digits = |t: &str, radix: u32| !t.is_empty() && t.chars().all(|c| c.is_digit(radix));
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits(unsigned, 10) {
        if let Ok(i) = s.parse::<i64>() {
            return Value::Number(i.into());
        }
        if let Ok(u) = s.parse::<u64>() {
            return Value::Number(u.into());
        }
    }
    if let Some(h) = s.strip_prefix("0x")
        && digits(h, 16)
        && let Ok(i) = i64::from_str_radix(h, 16)
    {
        return Value::Number(i.into());
    }
    if let Some(o) = s.strip_prefix("0o")
        && digits(o, 8)
        && let Ok(i) = i64::from_str_radix(o, 8)
    {
        return Value::Number(i.into());
    }
    if is_float(unsigned)
        && let Ok(f) = s.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(s.to_string())
}

/// `[0-9]*(\.[0-9]*)?([eE][-+]?[0-9]+)?` with at least one digit before the exponent.
fn is_float(s: &str) -> bool {
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut parts = mantissa.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    let all_digits = |t: &str| t.chars().all(|c| c.is_ascii_digit());
    if !all_digits(int) || !frac.is_none_or(all_digits) {
        return false;
    }
    if int.is_empty() && frac.is_none_or(str::is_empty) {
        return false;
    }
    match exp {
        None => frac.is_some() || !int.is_empty(),
        Some(e) => {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && all_digits(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolves_like_the_yaml_core_schema() {
        let cases: &[(&str, Value)] = &[
            ("1.28", json!(1.28)),
            ("1.30", json!(1.3)),
            ("1.19.6", json!("1.19.6")),
            ("1-19", json!("1-19")),
            ("80", json!(80)),
            ("-3", json!(-3)),
            ("0x1f", json!(31)),
            ("1e3", json!(1000.0)),
            ("on", json!("on")),
            ("yes", json!("yes")),
            ("true", json!(true)),
            ("~", Value::Null),
            ("", Value::Null),
            ("docker.io/istio", json!("docker.io/istio")),
            (".", json!(".")),
        ];
        for (text, want) in cases {
            assert_eq!(&resolve(text), want, "{text}");
        }
    }

    #[test]
    fn agrees_with_serde_yaml_and_streams_clusters() {
        let text = "a: 1\nclusters:\n  - name: x\n    list: [1, '2', \"3\", on]\n  - &c {name: y}\nb: *c\nquoted: '1.20'\n";
        let mut clusters = Vec::new();
        let top = load(text, |i, v| clusters.push((i, v))).unwrap();
        let full: Value = serde_yaml::from_str(text).unwrap();
        assert_eq!(clusters.len(), 2);
        assert_eq!(clusters[0], (0, full["clusters"][0].clone()));
        assert_eq!(clusters[1], (1, full["clusters"][1].clone()));
        assert_eq!(top["clusters"], json!([null, null]));
        assert_eq!(top["b"], full["b"]);
        assert_eq!(top["quoted"], json!("1.20"));
    }

    #[test]
    fn refuses_tags_deep_nesting_alias_bombs_and_odd_keys() {
        let err = load("a: !!binary L2Rldi9zdGRvdXQ=\n", |_, _| {}).unwrap_err();
        assert!(err.message.contains("`!!binary`"), "{}", err.message);
        assert_eq!(err.position.map(|p| (p.line, p.col)), Some((1, 4)));
        for text in ["a: !!int \"1.28\"\n", "a: !custom x\n", "a: !!map {b: 1}\n"] {
            assert!(load(text, |_, _| {}).is_err(), "{text}");
        }
        assert_eq!(
            load("a: !!str 1.28\n", |_, _| {}).unwrap(),
            json!({"a": "1.28"})
        );
        let deep = format!("{}x\n", "- ".repeat(MAX_DEPTH + 5));
        let err = load(&deep, |_, _| {}).unwrap_err();
        assert!(err.message.contains("nest deeper"), "{}", err.message);
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let err = load(&bomb, |_, _| {}).unwrap_err();
        assert!(err.message.contains("aliases expand"), "{}", err.message);
        let err = load("top:\n  x: 1\n  ~: 2\n", |_, _| {}).unwrap_err();
        assert_eq!(err.position.map(|p| p.line), Some(3), "{}", err.message);
        let err = load("top:\n  x: 1\n  ? [a, b]\n  : 2\n", |_, _| {}).unwrap_err();
        assert_eq!(err.position.map(|p| p.line), Some(3), "{}", err.message);
        assert_eq!(
            load("m: {1: a}\n", |_, _| {}).unwrap(),
            json!({"m": {"1": "a"}})
        );
    }

    #[test]
    fn reports_syntax_errors_with_positions() {
        let err = load("a: [1, 2\nb: 3\n", |_, _| {}).unwrap_err();
        assert!(err.position.is_some());
        let err = load("a: 1\na: 2\n", |_, _| {}).unwrap_err();
        assert_eq!(err.message, "duplicate key `a`");
        assert_eq!(err.position.map(|p| p.line), Some(2));
        assert!(load("a: 1\n---\nb: 2\n", |_, _| {}).is_err());
    }
}
