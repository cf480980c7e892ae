//! The dataset manifest: `manifest.json`, written last, so its presence
//! means every shard it lists was complete and durable.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// File name of the manifest inside a dataset directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Value of the manifest's `format` field.
pub(crate) const FORMAT_NAME: &str = "ringfeed-pack";
/// Version of the manifests this build writes: version 1 plus
/// `manifest_crc32c`, a checksum over the rest of the manifest.
pub(crate) const MANIFEST_VERSION: u32 = 2;
/// The first manifest version, which has no checksum; still read.
const UNPROTECTED_VERSION: u32 = 1;
/// Key of the manifest's checksum.
const CHECKSUM_KEY: &str = "manifest_crc32c";
/// A manifest larger than this is not ours (a million shards is ~200 MB of
/// JSON; real datasets have thousands).
pub(crate) const MAX_MANIFEST_LEN: u64 = 256 << 20;

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
    /// Token ids, little-endian, back to back (a token dataset). The
    /// records concatenated in order are the corpus: each document's
    /// tokens followed by `eot`. A document longer than a record may hold
    /// spans several records; a record's label is 1 when it ends a
    /// document, 0 when the document goes on in the next record.
    Tokens {
        /// Width of each id.
        dtype: TokenDtype,
        /// The end-of-text id that follows every document.
        eot: u32,
        /// Ids are below this.
        vocab_size: u32,
        /// The tokenizer that made them (`gpt2`, or a tokenizer.json name).
        tokenizer: String,
    },
}

/// Width of the ids of a token dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenDtype {
    /// 2 bytes (vocabularies of at most 65,536 ids, as GPT-2's).
    U16,
    /// 4 bytes.
    U32,
}

impl TokenDtype {
    /// Bytes per id.
    pub fn width(self) -> usize {
        match self {
            TokenDtype::U16 => 2,
            TokenDtype::U32 => 4,
        }
    }

    /// The narrowest width for ids below `vocab_size`.
    pub fn for_vocab(vocab_size: u64) -> TokenDtype {
        if vocab_size <= 1 << 16 { TokenDtype::U16 } else { TokenDtype::U32 }
    }
}

impl std::fmt::Display for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Payload::Image => f.write_str("image"),
            Payload::Text => f.write_str("text"),
            Payload::Bytes => f.write_str("bytes"),
            Payload::TfExample => f.write_str("tf.train.Example"),
            Payload::Multipart { parts } => write!(f, "multipart({})", parts.join(",")),
            Payload::Tokens { dtype, tokenizer, .. } => write!(f, "tokens({dtype:?}, {tokenizer})"),
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
    /// Manifest version: 2 (protected by a checksum) or 1 (written before
    /// the checksum existed). Shard files have their own version.
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
            version: MANIFEST_VERSION,
            source: source.to_string(),
            schema,
            classes,
            records: shards.iter().map(|s| s.records).sum(),
            payload_bytes: shards.iter().map(|s| s.payload_bytes).sum(),
            bytes: shards.iter().map(|s| s.bytes).sum(),
            shards,
        }
    }

    /// Reads and validates `DIR/manifest.json`: its checksum (version 2),
    /// its structure, and that its totals, shard names and class names are
    /// consistent.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
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
        Self::parse(&text, &path)
    }

    /// [`load`](Self::load)'s checks on a manifest's bytes read from
    /// elsewhere (object storage); `origin` names it in errors.
    pub fn parse(text: &[u8], origin: &Path) -> Result<Self> {
        let path = origin;
        if text.len() as u64 > MAX_MANIFEST_LEN {
            return Err(Error::corrupt(path, 0, format!("manifest is {} bytes; too large", text.len())));
        }
        let invalid = |e: serde_json::Error| {
            Error::corrupt(
                path,
                line_col_offset(text, e.line(), e.column()),
                format!("invalid manifest: {e}"),
            )
        };
        // The checksum is checked on the document as a whole before any
        // field is believed, so a damaged value is named as damage rather
        // than as whatever inconsistency it happens to cause.
        let doc: Canonical = serde_json::from_slice(text).map_err(invalid)?;
        check_checksum(&doc, path)?;
        // Parsed a second time into the typed form, which also refuses a
        // known key given twice.
        let m: Manifest = serde_json::from_slice(text).map_err(invalid)?;
        m.validate(path)?;
        Ok(m)
    }

    /// True when the manifest carries no checksum (version 1), so that a
    /// changed class name, size or count can go unnoticed.
    pub fn is_unprotected(&self) -> bool {
        self.version < MANIFEST_VERSION
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |why: String| Error::corrupt(path, 0, why);
        if self.format != FORMAT_NAME {
            return Err(bad(format!("format is {:?}, expected {FORMAT_NAME:?}", self.format)));
        }
        if !(UNPROTECTED_VERSION..=MANIFEST_VERSION).contains(&self.version) {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                reason: format!(
                    "manifest version {}; this build reads versions {UNPROTECTED_VERSION} to {MANIFEST_VERSION}",
                    self.version
                ),
            });
        }
        let overflow = |what: &str| bad(format!("the shards' {what} overflow a 64-bit count"));
        let (mut records, mut payload_bytes, mut bytes) = (0u64, 0u64, 0u64);
        let mut files = HashSet::with_capacity(self.shards.len());
        for s in &self.shards {
            if s.file.is_empty() || s.file.contains('/') || s.file.contains('\\') || s.file.starts_with('.') {
                return Err(bad(format!("shard file name {:?} is not a plain file name", s.file)));
            }
            if !files.insert(s.file.as_str()) {
                return Err(bad(format!("shard {:?} is listed twice", s.file)));
            }
            records = records.checked_add(s.records).ok_or_else(|| overflow("record counts"))?;
            payload_bytes =
                payload_bytes.checked_add(s.payload_bytes).ok_or_else(|| overflow("payload sizes"))?;
            bytes = bytes.checked_add(s.bytes).ok_or_else(|| overflow("file sizes"))?;
        }
        for (what, total, sum) in [
            ("records", self.records, records),
            ("payload_bytes", self.payload_bytes, payload_bytes),
            ("bytes", self.bytes, bytes),
        ] {
            if total != sum {
                return Err(bad(format!("manifest says {what} {total} but its shards add up to {sum}")));
            }
        }
        if let Some(label_count) = (!self.classes.is_empty()).then_some(self.classes.len())
            && !self.schema.labels
        {
            return Err(bad(format!("{label_count} class names but the schema has no labels")));
        }
        if let Some(name) = duplicate_class(&self.classes) {
            return Err(bad(format!("class name {name:?} is listed twice")));
        }
        Ok(())
    }

    /// The label values records may carry: `0..classes` when classes are
    /// named, any `i32` for plain integer labels, only 0 without labels.
    pub(crate) fn label_allowed(&self, label: i32) -> bool {
        if !self.schema.labels {
            label == 0
        } else if self.classes.is_empty() {
            true
        } else {
            usize::try_from(label).is_ok_and(|l| l < self.classes.len())
        }
    }

    /// Serializes the manifest as it is stored: pretty JSON with a trailing
    /// newline, ending with `manifest_crc32c`, the checksum of everything
    /// else (see `docs/FORMAT.md`). Tools that edit a manifest on purpose
    /// write it back with this.
    pub fn to_bytes(&self) -> Vec<u8> {
        /// The manifest's own fields, then its checksum, in one object.
        #[derive(Serialize)]
        struct Sealed<'a> {
            #[serde(flatten)]
            manifest: &'a Manifest,
            manifest_crc32c: u32,
        }
        // Strings, integers and lists of them: nothing here can fail to
        // serialize, and what was just written parses.
        let compact = serde_json::to_vec(self).expect("a manifest serializes");
        let doc: Canonical = serde_json::from_slice(&compact).expect("a manifest parses");
        let sealed = Sealed { manifest: self, manifest_crc32c: doc.crc() };
        let mut v = serde_json::to_vec_pretty(&sealed).expect("a manifest serializes");
        v.push(b'\n');
        v
    }
}

/// The first class name that appears twice, if any.
fn duplicate_class(classes: &[String]) -> Option<&str> {
    let mut seen = HashSet::with_capacity(classes.len());
    classes.iter().find(|c| !seen.insert(c.as_str())).map(String::as_str)
}

/// Checks the manifest's checksum: required in every version but 1,
/// checked whenever present. A document whose checksum matches but whose
/// version is unknown is a newer format (refused as unsupported by
/// `validate`); one whose checksum does not match, or that lacks one
/// without saying version 1, is damaged, whatever its version says.
fn check_checksum(doc: &Canonical, path: &Path) -> Result<()> {
    let bad = |why: String| Error::corrupt(path, 0, why);
    let version = doc.field("version").and_then(|v| v.parse::<u64>().ok());
    match doc.field(CHECKSUM_KEY) {
        Some(stored) => {
            let stored = stored
                .parse::<u32>()
                .map_err(|_| bad(format!("{CHECKSUM_KEY} is {stored}, not a 32-bit checksum")))?;
            let computed = doc.crc();
            if stored != computed {
                return Err(bad(format!(
                    "manifest checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): \
                     the manifest was damaged or edited after it was written"
                )));
            }
            Ok(())
        }
        None => match version {
            Some(v) if v == u64::from(UNPROTECTED_VERSION) => Ok(()),
            // Every version after 1 carries the checksum, newer ones
            // included, so this is damage, not a format from the future.
            Some(v) => Err(bad(format!(
                "manifest version {v} without its {CHECKSUM_KEY} (only version {UNPROTECTED_VERSION} has none)"
            ))),
            // No usable version: the typed parse names what is wrong.
            None => Ok(()),
        },
    }
}

/// A manifest document in canonical form: its top-level members, each as
/// its key and the canonical text of its value, sorted by key.
///
/// The canonical form of a JSON value has object keys sorted by code point
/// at every level, no whitespace, strings escaped only where JSON requires
/// (`\"`, `\\`, control characters), numbers as `serde_json` writes them:
/// for the integers and strings a manifest holds, Python's
/// `json.dumps(doc, sort_keys=True, separators=(",", ":"),
/// ensure_ascii=False)`. The checksum is the CRC32C of the document's
/// canonical form without the checksum member, so it covers every key,
/// known or not, and survives reformatting (pretty or compact, any key
/// order).
///
/// It is built straight from the parser's events, not from a
/// `serde_json::Value` (whose objects cost some 16 times the text they come
/// from, and whose key order depends on a Cargo feature any crate in a
/// build may turn on): the memory it takes is about the size of the file.
#[derive(Debug)]
struct Canonical(Vec<(String, Vec<u8>)>);

impl Canonical {
    /// Canonical text of the top-level member `key`, if present.
    fn field(&self, key: &str) -> Option<&str> {
        let at = self.0.binary_search_by(|(k, _)| k.as_str().cmp(key)).ok()?;
        self.0.get(at).and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// CRC32C of the canonical text without the checksum member.
    fn crc(&self) -> u32 {
        let members = self.0.iter().filter(|(k, _)| k != CHECKSUM_KEY);
        crc32c::crc32c(&object(members.map(|(k, v)| (k.as_str(), v.as_slice()))))
    }
}

impl<'de> Deserialize<'de> for Canonical {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Canonical;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Canonical, A::Error> {
                sorted_members(map).map(Canonical)
            }
        }
        d.deserialize_map(Members)
    }
}

/// Canonical text of any JSON value (see [`Canonical`]).
struct CanonicalValue(Vec<u8>);

impl<'de> Deserialize<'de> for CanonicalValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(ValueText)
    }
}

/// Writes each JSON value it is shown as canonical text.
struct ValueText;

impl<'de> Visitor<'de> for ValueText {
    type Value = CanonicalValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<CanonicalValue, E> {
        Ok(CanonicalValue(if v { b"true".to_vec() } else { b"false".to_vec() }))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<CanonicalValue, E> {
        Ok(CanonicalValue(v.to_string().into_bytes()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<CanonicalValue, E> {
        Ok(CanonicalValue(v.to_string().into_bytes()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<CanonicalValue, E> {
        serde_json::to_vec(&v).map(CanonicalValue).map_err(E::custom)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<CanonicalValue, E> {
        serde_json::to_vec(v).map(CanonicalValue).map_err(E::custom)
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<CanonicalValue, E> {
        Ok(CanonicalValue(b"null".to_vec()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<CanonicalValue, A::Error> {
        let mut out = vec![b'['];
        while let Some(CanonicalValue(item)) = seq.next_element()? {
            if out.len() > 1 {
                out.push(b',');
            }
            out.extend_from_slice(&item);
        }
        out.push(b']');
        Ok(CanonicalValue(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<CanonicalValue, A::Error> {
        let members = sorted_members(map)?;
        Ok(CanonicalValue(object(members.iter().map(|(k, v)| (k.as_str(), v.as_slice())))))
    }
}

/// An object's members, each value in canonical text, sorted by key; an
/// error when a key appears twice.
fn sorted_members<'de, A: MapAccess<'de>>(
    mut map: A,
) -> std::result::Result<Vec<(String, Vec<u8>)>, A::Error> {
    let mut members = Vec::new();
    while let Some(key) = map.next_key::<String>()? {
        let CanonicalValue(value) = map.next_value()?;
        members.push((key, value));
    }
    members.sort_by(|a, b| a.0.cmp(&b.0));
    // A key given twice has no one meaning (readers differ on which wins).
    if let Some(pair) = members.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(de::Error::custom(format_args!("key {:?} is given twice", pair[0].0)));
    }
    Ok(members)
}

/// The canonical text of an object with these (sorted) members.
fn object<'a>(members: impl Iterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let mut out = vec![b'{'];
    for (key, value) in members {
        if out.len() > 1 {
            out.push(b',');
        }
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, key);
        out.push(b':');
        out.extend_from_slice(value);
    }
    out.push(b'}');
    out
}

fn line_col_offset(text: &[u8], line: usize, col: usize) -> u64 {
    let line_start: usize =
        text.split(|&b| b == b'\n').take(line.saturating_sub(1)).map(|l| l.len() + 1).sum();
    (line_start + col.saturating_sub(1)) as u64
}
