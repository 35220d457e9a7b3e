//! Input text, YAML paths, and where each path sits in the text.
//!
//! serde_yaml reports a location only for syntax errors. Schema and semantic errors are found
//! on the parsed value, so this module keeps a second, positioned view of the document: every
//! mapping key and every node is indexed by its [`YamlPath`] with its line and column, built from
//! saphyr-parser's spanned events. Diagnostics look their path up here.

use std::collections::BTreeMap;
use std::fmt;

use saphyr_parser::{Event, Parser};

/// One segment of a path into a YAML document.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path into a YAML document, shown as `clusters[1].istio.version`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YamlPath(pub Vec<Seg>);

impl YamlPath {
    pub fn root() -> Self {
        Self(Vec::new())
    }

    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_string()));
        Self(segs)
    }

    pub fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        Self(segs)
    }

    /// The path without its last segment.
    pub fn parent(&self) -> Option<Self> {
        if self.0.is_empty() {
            return None;
        }
        Some(Self(self.0[..self.0.len() - 1].to_vec()))
    }

    /// Builds a path from a JSON pointer (`/clusters/0/name`), as the schema validator reports it.
    /// A segment of digits whose parent is a sequence becomes an index; the caller passes a
    /// predicate telling whether a given path is a sequence.
    pub fn from_pointer(pointer: &str, is_seq: impl Fn(&YamlPath) -> bool) -> Self {
        let mut path = YamlPath::root();
        for raw in pointer.split('/').skip(1) {
            let seg = raw.replace("~1", "/").replace("~0", "~");
            path = match seg.parse::<usize>() {
                Ok(i) if is_seq(&path) => path.index(i),
                _ => path.key(&seg),
            };
        }
        path
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let plain = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if plain {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub col: usize,
}

/// Where a path's key and its value start in the text.
#[derive(Clone, Copy, Debug, Default)]
struct Place {
    key: Option<Position>,
    value: Option<Position>,
}

/// A document's text and the name it is shown under. Positions are found by walking the
/// document's events, for a batch of paths at a time ([`Source::locate`]): a large valid
/// inventory never pays for an index of every path. Line starts are indexed once, when a
/// diagnostic first quotes a line.
#[derive(Debug)]
pub struct Source {
    /// The name shown in diagnostics: the path as the user gave it, or `<stdin>`.
    pub name: String,
    pub text: String,
    lines: std::sync::OnceLock<Vec<usize>>,
}

/// The position of a path, for a value or for its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Anchor {
    Value,
    Key,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
            lines: std::sync::OnceLock::new(),
        }
    }

    /// The positions of `wanted` paths in one walk; a path that is not in the document gets its
    /// nearest present ancestor's position.
    pub fn locate(&self, wanted: &[(YamlPath, Anchor)]) -> BTreeMap<(YamlPath, Anchor), Position> {
        let mut interesting: std::collections::BTreeSet<YamlPath> =
            std::collections::BTreeSet::new();
        for (p, _) in wanted {
            let mut cur = Some(p.clone());
            while let Some(c) = cur {
                if !interesting.insert(c.clone()) {
                    break;
                }
                cur = c.parent();
            }
        }
        let places = index_positions(&self.text, &interesting);
        let mut out = BTreeMap::new();
        for (p, anchor) in wanted {
            let pick = |pl: &Place| match anchor {
                Anchor::Value => pl.value.or(pl.key),
                Anchor::Key => pl.key.or(pl.value),
            };
            let mut cur = Some(p.clone());
            while let Some(c) = cur {
                if let Some(pos) = places.get(&c).and_then(pick) {
                    out.insert((p.clone(), *anchor), pos);
                    break;
                }
                cur = c.parent();
            }
        }
        out
    }

    /// The position of one path's value (or of its nearest ancestor).
    pub fn value_position(&self, path: &YamlPath) -> Option<Position> {
        self.locate(&[(path.clone(), Anchor::Value)])
            .into_values()
            .next()
    }

    /// The position of one path's key (for an unknown field, the key is what is wrong).
    pub fn key_position(&self, path: &YamlPath) -> Option<Position> {
        self.locate(&[(path.clone(), Anchor::Key)])
            .into_values()
            .next()
    }

    /// The text of a 1-based line, without its line ending.
    pub fn line_text(&self, line: usize) -> Option<&str> {
        let starts = self.lines.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        });
        let start = *starts.get(line.checked_sub(1)?)?;
        if start > self.text.len() || (start == self.text.len() && line > 1) {
            return None;
        }
        let end = starts.get(line).map_or(self.text.len(), |e| e - 1);
        Some(self.text[start..end].trim_end_matches('\r'))
    }
}

enum Frame {
    Map {
        path: YamlPath,
        pending_key: Option<(String, Position)>,
    },
    Seq {
        path: YamlPath,
        next: usize,
    },
}

/// Walks the positioned event stream once and records where the key and value of each
/// `interesting` path start. Only the first document is indexed. A document the positioned
/// parser cannot read yields a partial index: locations then fall back to the nearest indexed
/// ancestor.
fn index_positions(
    text: &str,
    interesting: &std::collections::BTreeSet<YamlPath>,
) -> BTreeMap<YamlPath, Place> {
    let mut places: BTreeMap<YamlPath, Place> = BTreeMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut docs = 0;
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        let pos = Position {
            line: span.start.line(),
            col: span.start.col() + 1,
        };
        match event {
            Event::DocumentStart(_) => {
                docs += 1;
                if docs > 1 {
                    break;
                }
            }
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { pending_key, path }) = stack.last_mut()
                    && pending_key.is_none()
                {
                    let key_path = path.key(&value);
                    if interesting.contains(&key_path) {
                        places.entry(key_path).or_default().key = Some(pos);
                    }
                    *pending_key = Some((value.into_owned(), pos));
                    continue;
                }
                let child = child_path(&mut stack).unwrap_or_default();
                if interesting.contains(&child) {
                    places.entry(child).or_default().value = Some(pos);
                }
            }
            Event::Alias(_) => {
                if let Some(child) = child_path(&mut stack)
                    && interesting.contains(&child)
                {
                    places.entry(child).or_default().value = Some(pos);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(event, Event::MappingStart(..));
                let path = child_path(&mut stack).unwrap_or_default();
                places
                    .entry(path.clone())
                    .or_default()
                    .value
                    .get_or_insert(pos);
                stack.push(if is_map {
                    Frame::Map {
                        path,
                        pending_key: None,
                    }
                } else {
                    Frame::Seq { path, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    places
}

/// The path of the node that comes next inside the innermost open collection, consuming the
/// pending key or sequence slot.
fn child_path(stack: &mut [Frame]) -> Option<YamlPath> {
    match stack.last_mut()? {
        Frame::Map { path, pending_key } => {
            let (key, _) = pending_key.take()?;
            Some(path.key(&key))
        }
        Frame::Seq { path, next } => {
            let p = path.index(*next);
            *next += 1;
            Some(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(src: &Source, path: &YamlPath) -> (usize, usize) {
        let p = src.value_position(path).expect("indexed");
        (p.line, p.col)
    }

    #[test]
    fn indexes_nested_paths() {
        let src = Source::new(
            "x.yaml",
            "a: 1\nlist:\n  - name: one\n    port: 80\n  - {name: two, port: 81}\n",
        );
        let root = YamlPath::root();
        assert_eq!(pos(&src, &root.key("a")), (1, 4));
        assert_eq!(pos(&src, &root.key("list").index(0).key("port")), (4, 11));
        assert_eq!(pos(&src, &root.key("list").index(1).key("port")), (5, 23));
        let k = src
            .key_position(&root.key("list").index(1).key("name"))
            .unwrap();
        assert_eq!((k.line, k.col), (5, 6));
        // Unknown paths fall back to their nearest ancestor.
        assert_eq!(pos(&src, &root.key("list").index(1).key("nope")), (5, 5));
    }

    #[test]
    fn displays_paths() {
        let p = YamlPath::root()
            .key("clusters")
            .index(1)
            .key("istio")
            .key("version");
        assert_eq!(p.to_string(), "clusters[1].istio.version");
        assert_eq!(YamlPath::root().key("a b").to_string(), "\"a b\"");
    }

    #[test]
    fn converts_json_pointers() {
        let p = YamlPath::from_pointer("/clusters/0/values/1", |p| p.0.len() == 1);
        assert_eq!(p.to_string(), "clusters[0].values.1");
    }
}
