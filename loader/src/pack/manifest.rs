//! The dataset manifest: `manifest.json`, written last, so its presence
//! means every shard it lists was complete and durable.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::format::FORMAT_VERSION;
use crate::error::{Error, Result};

/// File name of the manifest inside a dataset directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Value of the manifest's `format` field.
pub(crate) const FORMAT_NAME: &str = "ringfeed-pack";
/// A manifest larger than this is not ours (a million shards is ~200 MB of
/// JSON; real datasets have thousands).
const MAX_MANIFEST_LEN: u64 = 256 << 20;

/// What the payload of every record holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum Payload {
    /// An encoded image (JPEG, PNG, ...), as found in the source.
    Image,
    /// UTF-8 text (validated when packing).
    Text,
    /// Opaque bytes.
    Bytes,
    /// A serialized `tf.train.Example` protocol buffer, as stored in a
    /// TFRecord file.
    TfExample,
    /// Several members per record (a WebDataset sample), in the order given
    /// by `parts`; see [`split_parts`](crate::split_parts) for the encoding.
    Multipart {
        /// Member extensions, e.g. `["jpg", "json"]`.
        parts: Vec<String>,
    },
}

impl std::fmt::Display for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Payload::Image => f.write_str("image"),
            Payload::Text => f.write_str("text"),
            Payload::Bytes => f.write_str("bytes"),
            Payload::TfExample => f.write_str("tf.train.Example"),
            Payload::Multipart { parts } => write!(f, "multipart({})", parts.join(",")),
        }
    }
}

/// What a record holds: its payload and whether it carries a label and a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// What the payload bytes are.
    pub payload: Payload,
    /// Whether records carry a class label (an index into `classes`, or a
    /// plain integer when `classes` is empty).
    pub labels: bool,
    /// Whether records carry a key (source path or WebDataset key).
    pub keys: bool,
}

/// One shard as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// File name, relative to the dataset directory.
    pub file: String,
    /// Number of records in the shard.
    pub records: u64,
    /// Size of the shard file in bytes.
    pub bytes: u64,
    /// Sum of the record payload lengths.
    pub payload_bytes: u64,
    /// CRC32C over header, index and key table; equal to the shard footer's
    /// checksum, so a shard swapped for another is noticed on open.
    pub index_crc32c: u32,
    /// CRC32C over the whole shard file.
    pub file_crc32c: u32,
}

/// Contents of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `"ringfeed-pack"`.
    pub format: String,
    /// Pack format version.
    pub version: u32,
    /// Which source format the dataset was packed from.
    pub source: String,
    /// What records hold.
    pub schema: Schema,
    /// Class names; label `i` is `classes[i]`. Empty when labels are plain
    /// integers or absent.
    pub classes: Vec<String>,
    /// Total number of records.
    pub records: u64,
    /// Sum of all record payload lengths.
    pub payload_bytes: u64,
    /// Sum of all shard file sizes.
    pub bytes: u64,
    /// The shards, in record order.
    pub shards: Vec<ShardInfo>,
}

impl Manifest {
    pub(crate) fn new(source: &str, schema: Schema, classes: Vec<String>, shards: Vec<ShardInfo>) -> Self {
        Manifest {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            source: source.to_string(),
            schema,
            classes,
            records: shards.iter().map(|s| s.records).sum(),
            payload_bytes: shards.iter().map(|s| s.payload_bytes).sum(),
            bytes: shards.iter().map(|s| s.bytes).sum(),
            shards,
        }
    }

    /// Reads and validates `DIR/manifest.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let meta = fs::metadata(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound && dir.is_dir() {
                Error::io("open manifest (not a ringfeed dataset, or packing did not finish)", &path, e)
            } else {
                Error::io("open", &path, e)
            }
        })?;
        if meta.len() > MAX_MANIFEST_LEN {
            return Err(Error::corrupt(&path, 0, format!("manifest is {} bytes; too large", meta.len())));
        }
        let mut text = Vec::new();
        crate::sys::open_regular(&path)
            .and_then(|f| {
                std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_MANIFEST_LEN + 1), &mut text)
            })
            .map_err(|e| Error::io("read", &path, e))?;
        let m: Manifest = serde_json::from_slice(&text).map_err(|e| {
            Error::corrupt(
                &path,
                line_col_offset(&text, e.line(), e.column()),
                format!("invalid manifest: {e}"),
            )
        })?;
        m.validate(&path)?;
        Ok(m)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |why: String| Error::corrupt(path, 0, why);
        if self.format != FORMAT_NAME {
            return Err(bad(format!("format is {:?}, expected {FORMAT_NAME:?}", self.format)));
        }
        if self.version != FORMAT_VERSION {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                reason: format!(
                    "pack format version {}; this build reads version {FORMAT_VERSION}",
                    self.version
                ),
            });
        }
        let mut records = 0u64;
        for s in &self.shards {
            if s.file.is_empty() || s.file.contains('/') || s.file.contains('\\') || s.file.starts_with('.') {
                return Err(bad(format!("shard file name {:?} is not a plain file name", s.file)));
            }
            records = records.checked_add(s.records).ok_or_else(|| bad("record count overflows".into()))?;
        }
        if records != self.records {
            return Err(bad(format!(
                "manifest says {} records but its shards add up to {records}",
                self.records
            )));
        }
        if let Some(label_count) = (!self.classes.is_empty()).then_some(self.classes.len())
            && !self.schema.labels
        {
            return Err(bad(format!("{label_count} class names but the schema has no labels")));
        }
        Ok(())
    }

    /// Serializes the manifest as it is stored (pretty JSON, trailing newline).
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }
}

fn line_col_offset(text: &[u8], line: usize, col: usize) -> u64 {
    let line_start: usize =
        text.split(|&b| b == b'\n').take(line.saturating_sub(1)).map(|l| l.len() + 1).sum();
    (line_start + col.saturating_sub(1)) as u64
}
