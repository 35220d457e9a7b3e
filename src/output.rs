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
    let mut n = Normalizer::new(Vec::with_capacity(text.len() + 1));
    n.push(text.as_bytes());
    let bytes = n.finish().unwrap_or_default();
    String::from_utf8(bytes).expect("normalizing keeps UTF-8 intact")
}

/// [`normalize`] as a stream: canonical bytes go to `out` as they come, so a large file is
/// never held whole. Runs of blank lines (left by conditional template blocks) become one;
/// blank lines at the start and end go.
pub struct Normalizer<W> {
    out: W,
    line: Vec<u8>,
    blank: bool,
    started: bool,
    failed: Option<std::io::Error>,
}

impl<W: std::io::Write> Normalizer<W> {
    pub fn new(out: W) -> Self {
        Normalizer {
            out,
            line: Vec::new(),
            blank: false,
            started: false,
            failed: None,
        }
    }

    fn push(&mut self, mut data: &[u8]) {
        while let Some(i) = data.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&data[..i]);
            self.end_line();
            data = &data[i + 1..];
        }
        self.line.extend_from_slice(data);
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        // White space is trimmed as `str::trim_end` does; invalid UTF-8 is kept as it is.
        let trimmed = match std::str::from_utf8(&line) {
            Ok(s) => s.trim_end().as_bytes(),
            Err(_) => &line[..],
        };
        if trimmed.is_empty() {
            self.blank = self.started;
        } else {
            let mut write = || -> std::io::Result<()> {
                if self.blank {
                    self.out.write_all(b"\n")?;
                }
                self.out.write_all(trimmed)?;
                self.out.write_all(b"\n")
            };
            if let Err(e) = write()
                && self.failed.is_none()
            {
                self.failed = Some(e);
            }
            self.blank = false;
            self.started = true;
        }
        self.line = line;
        self.line.clear();
    }

    /// Ends the text (a text with nothing but white space becomes one newline), reporting
    /// any write to `out` that failed.
    pub fn finish(mut self) -> std::io::Result<W> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if !self.line.is_empty() {
            self.end_line();
        }
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if !self.started {
            self.out.write_all(b"\n")?;
        }
        Ok(self.out)
    }
}

impl<W: std::io::Write> std::io::Write for Normalizer<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.push(data);
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(data.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_bytes() {
        assert_eq!(normalize("a  \r\nb\n\n\n\nc\n\n"), "a\nb\n\nc\n");
        assert_eq!(normalize(""), "\n");
        assert_eq!(normalize(" \n\n \n"), "\n");
        assert_eq!(normalize("\n\n a\n\n\nb"), " a\n\nb\n");
    }

    #[test]
    fn normalizes_streams_cut_anywhere_as_whole_texts() {
        use std::io::Write;
        for text in [
            "a  \r\nb\n\n\n\nc\n\n",
            "\n\nx\t\n \n\ny",
            "é  \n\n\nü\r\n",
            "",
        ] {
            // Cut at every byte, inside characters too.
            for cut in 0..=text.len() {
                let mut n = Normalizer::new(Vec::new());
                n.write_all(&text.as_bytes()[..cut]).unwrap();
                n.write_all(&text.as_bytes()[cut..]).unwrap();
                let out = String::from_utf8(n.finish().unwrap()).unwrap();
                assert_eq!(out, normalize(text), "{text:?} cut at {cut}");
            }
        }
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
