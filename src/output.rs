//! The rendered plan in memory: relative paths to file contents, in sorted order.

use std::collections::BTreeMap;

/// Every generated file, keyed by its `/`-separated path relative to the output directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputTree(pub BTreeMap<String, String>);

impl OutputTree {
    /// Adds a file. A path that is not a clean relative path, or that is already taken, is a bug
    /// in the plan and is refused.
    pub fn insert(&mut self, path: &str, text: String) -> Result<(), String> {
        check_rel_path(path)?;
        if self.0.contains_key(path) {
            return Err(format!("`{path}` would be written twice"));
        }
        self.0.insert(path.to_string(), text);
        Ok(())
    }
}

/// Checks that `path` is relative, `/`-separated, without `.`, `..` or empty components, and made
/// of characters that are safe in file names everywhere.
pub fn check_rel_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.starts_with('/') {
        return Err(format!("`{path}` is not a relative path"));
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!("`{path}` has an empty, `.` or `..` component"));
        }
        if !part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
        {
            return Err(format!(
                "`{path}` has a character that is not safe in a file name"
            ));
        }
    }
    Ok(())
}

/// Canonical bytes: LF line endings, no trailing white space, no blank lines at the end, exactly
/// one final newline.
pub fn normalize(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let mut out = String::with_capacity(text.len() + 1);
    for line in text.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    if out.is_empty() {
        out.push('\n');
    }
    // Collapse runs of blank lines left by conditional template blocks.
    let mut collapsed = String::with_capacity(out.len());
    let mut blank = 0;
    for line in out.split_inclusive('\n') {
        if line == "\n" {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        collapsed.push_str(line);
    }
    if collapsed.starts_with('\n') && collapsed.len() > 1 {
        collapsed.remove(0);
    }
    collapsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_bytes() {
        assert_eq!(normalize("a  \r\nb\n\n\n\nc\n\n"), "a\nb\n\nc\n");
        assert_eq!(normalize(""), "\n");
    }

    #[test]
    fn refuses_unsafe_paths() {
        for bad in ["", "/etc/passwd", "a/../b", "a//b", "./a", "a b", "a\\b"] {
            assert!(check_rel_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_rel_path("01-east/hop-01-1.20.2/plan.yaml").is_ok());
        let mut t = OutputTree::default();
        t.insert("a", "x".into()).unwrap();
        assert!(t.insert("a", "y".into()).is_err());
    }
}
