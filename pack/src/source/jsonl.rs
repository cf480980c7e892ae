//! JSON lines files (`.jsonl`, `.ndjson`): one record per non-empty line,
//! its payload the line as written (UTF-8 JSON). A token dataset's
//! tokenizer reads each line's `text` field ([`text_field`]).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::containers::Containers;
use super::{Source, SourceItem, read_range};
use crate::error::{Error, Result};
use crate::format::MAX_RECORD_LEN;
use crate::manifest::{Payload, Schema};

/// Extensions of JSON lines files picked from a directory.
const EXTENSIONS: &[&str] = &["jsonl", "ndjson"];

#[derive(Debug, Clone, Copy)]
struct Line {
    file: u32,
    offset: u64,
    len: u32,
}

/// The lines of one JSON lines file or of a directory of them (sorted by
/// name). Opening scans every file once for line ends; a line is not
/// parsed until it is read.
#[derive(Debug)]
pub struct JsonLinesSource {
    c: Containers<Line>,
}

impl JsonLinesSource {
    /// Opens a `.jsonl` file, or every `.jsonl`/`.ndjson` file in
    /// directory `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Ok(JsonLinesSource { c: Containers::open(path.as_ref(), EXTENSIONS, scan)? })
    }
}

fn scan(file: &File, path: &Path, idx: u32, lines: &mut Vec<Line>) -> Result<()> {
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut at = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf).map_err(|e| Error::io_at("read", path, at, e))? as u64;
        if n == 0 {
            return Ok(());
        }
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if !body.iter().all(u8::is_ascii_whitespace) {
            let len = body.len() as u64;
            if len > MAX_RECORD_LEN {
                return Err(Error::Unsupported {
                    path: path.to_path_buf(),
                    reason: format!(
                        "the line at byte {at} is {len} bytes; the pack format's limit is {MAX_RECORD_LEN}"
                    ),
                });
            }
            lines.push(Line { file: idx, offset: at, len: len as u32 });
        }
        at += n;
    }
}

impl Source for JsonLinesSource {
    fn format(&self) -> &'static str {
        "jsonl"
    }

    fn schema(&self) -> Schema {
        Schema { payload: Payload::Text, labels: false, keys: false }
    }

    fn len(&self) -> usize {
        self.c.recs.len()
    }

    fn item(&self, i: usize) -> SourceItem<'_> {
        SourceItem { key: None, label: 0, size: u64::from(self.c.recs[i].len) }
    }

    fn origin(&self, i: usize) -> Option<(&Path, u64)> {
        let line = self.c.recs[i];
        Some((self.c.file(line.file).0, line.offset))
    }

    fn read(&self, i: usize) -> Result<Vec<u8>> {
        let line = self.c.recs[i];
        let (path, file) = self.c.file(line.file);
        read_range(file, path, line.offset, u64::from(line.len))
    }
}

/// The string field `field` of the JSON object `line` (the `text` of a
/// JSON lines corpus); an error naming what is wrong otherwise.
pub fn text_field(line: &[u8], field: &str) -> std::result::Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Any(serde_json::Map<String, serde_json::Value>);
    let Any(obj) = serde_json::from_slice(line).map_err(|e| format!("not a JSON object: {e}"))?;
    match obj.get(field) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("field {field:?} is not a string but {}", kind(other))),
        None => Err(format!("no field {field:?}")),
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_records_and_blank_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        std::fs::write(&path, "{\"text\": \"a\"}\n\n  \n{\"text\": \"b\\nc\"}\r\n{\"text\":\"last\"}")
            .unwrap();
        let src = JsonLinesSource::open(&path).unwrap();
        assert_eq!(src.len(), 3);
        let texts: Vec<String> = (0..3).map(|i| text_field(&src.read(i).unwrap(), "text").unwrap()).collect();
        assert_eq!(texts, ["a", "b\nc", "last"]);
        assert_eq!(src.origin(1).unwrap().1, 18); // 14 + 1 + 3 bytes before it
    }

    #[test]
    fn fields_that_are_not_text_are_named() {
        assert!(text_field(b"[1]", "text").unwrap_err().contains("not a JSON object"));
        assert!(text_field(b"{\"t\": 1}", "text").unwrap_err().contains("no field"));
        assert!(text_field(b"{\"text\": 1}", "text").unwrap_err().contains("a number"));
        assert!(text_field(b"{\"text\": \"x\"", "text").is_err());
    }
}
