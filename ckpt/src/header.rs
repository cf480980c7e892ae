//! The safetensors header: read, validated and written.
//!
//! Layout of a file: 8 bytes little-endian `N`, `N` bytes of JSON (an
//! object: tensor name → `{"dtype", "shape", "data_offsets"}`, plus an
//! optional `"__metadata__"` map of strings; trailing spaces allowed),
//! then the data: every tensor's bytes, in `data_offsets` order, with no
//! gaps. Everything a hostile file could lie about is checked here,
//! before anything is allocated for its tensors.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::dtype::Dtype;
use crate::error::{Error, Result};

/// The largest header read, as in the reference implementation (100 MB).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Where ringfeed puts a tensor's CRC32C in `__metadata__`: this prefix
/// and the tensor's name, the value 8 lowercase hex digits.
pub const CRC_KEY_PREFIX: &str = "ringfeed.crc32c.";
/// Data starts at a multiple of this in files ringfeed writes, so direct
/// reads of the data need no bounce buffer for its start.
pub const DATA_ALIGN: u64 = 4096;

/// One tensor's entry in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions (empty: a scalar).
    pub shape: Vec<u64>,
    /// Byte range within the data section: `[begin, end)`.
    pub data_offsets: (u64, u64),
    /// The CRC32C ringfeed stored for it, if the file has one.
    pub crc32c: Option<u32>,
}

impl TensorInfo {
    /// Bytes of the tensor's data.
    pub fn len(&self) -> u64 {
        self.data_offsets.1 - self.data_offsets.0
    }

    /// Whether the tensor holds no bytes (a dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// A validated header.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    /// Sorted by data offset.
    pub(crate) tensors: Vec<TensorInfo>,
    /// `__metadata__` less ringfeed's checksum entries.
    pub(crate) metadata: BTreeMap<String, String>,
    /// File offset of the data section.
    pub(crate) data_start: u64,
    /// Bytes of the data section.
    pub(crate) data_len: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTensor {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// The header's top level, with duplicate names refused (serde's maps
/// keep the last silently; the format forbids duplicates).
struct RawHeader {
    tensors: Vec<(String, RawTensor)>,
    metadata: Option<BTreeMap<String, String>>,
}

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHeader;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of tensors")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<RawHeader, A::Error> {
                let mut seen = HashSet::new();
                let mut out = RawHeader { tensors: Vec::new(), metadata: None };
                while let Some(name) = map.next_key::<String>()? {
                    if !seen.insert(name.clone()) {
                        return Err(de::Error::custom(format!("the name {name:?} appears twice")));
                    }
                    if name == "__metadata__" {
                        out.metadata = Some(map.next_value()?);
                    } else {
                        let t: RawTensor = map
                            .next_value()
                            .map_err(|e| de::Error::custom(format!("tensor {name:?}: {e}")))?;
                        out.tensors.push((name, t));
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

impl Header {
    /// Validates the header's JSON (`json`, as read after the 8-byte
    /// length) for a file of `file_len` bytes.
    pub(crate) fn parse(path: &Path, json: &[u8], file_len: u64) -> Result<Header> {
        let bad = |tensor: Option<&str>, why: String| Error::format(path, tensor, why);
        if json.first() != Some(&b'{') {
            return Err(bad(None, "the header does not start with '{'".into()));
        }
        let text =
            std::str::from_utf8(json).map_err(|e| bad(None, format!("the header is not UTF-8: {e}")))?;
        let raw: RawHeader = serde_json::from_str(text.trim_end_matches(' '))
            .map_err(|e| bad(None, format!("the header is not valid JSON of the format: {e}")))?;
        let data_start = 8 + json.len() as u64;
        let data_len = file_len
            .checked_sub(data_start)
            .ok_or_else(|| bad(None, format!("the file ({file_len} bytes) ends inside its header")))?;
        let mut metadata = raw.metadata.unwrap_or_default();
        let mut crcs: BTreeMap<String, u32> = BTreeMap::new();
        metadata.retain(|k, v| match k.strip_prefix(CRC_KEY_PREFIX) {
            Some(name) => {
                if let Ok(crc) = u32::from_str_radix(v, 16) {
                    crcs.insert(name.to_owned(), crc);
                }
                false
            }
            None => true,
        });
        let mut tensors = Vec::with_capacity(raw.tensors.len());
        for (name, t) in raw.tensors {
            let dtype: Dtype = t.dtype.parse().map_err(|e| bad(Some(&name), e))?;
            let (begin, end) = t.data_offsets;
            if begin > end {
                return Err(bad(Some(&name), format!("data_offsets [{begin}, {end}] run backwards")));
            }
            let elements = t
                .shape
                .iter()
                .try_fold(1u64, |n, &d| n.checked_mul(d))
                .ok_or_else(|| bad(Some(&name), format!("shape {:?} overflows", t.shape)))?;
            let bytes = dtype.bytes_for(elements).ok_or_else(|| {
                bad(
                    Some(&name),
                    format!("{elements} elements of {dtype} do not fill whole bytes (or overflow)"),
                )
            })?;
            if bytes != end - begin {
                return Err(bad(
                    Some(&name),
                    format!(
                        "shape {:?} of {dtype} is {bytes} bytes but data_offsets [{begin}, {end}] hold {}",
                        t.shape,
                        end - begin
                    ),
                ));
            }
            if end > data_len {
                return Err(bad(
                    Some(&name),
                    format!(
                        "data_offsets [{begin}, {end}] end past the data ({data_len} bytes; truncated file?)"
                    ),
                ));
            }
            let crc32c = crcs.remove(&name);
            tensors.push(TensorInfo { name, dtype, shape: t.shape, data_offsets: (begin, end), crc32c });
        }
        if let Some(name) = crcs.keys().next() {
            return Err(bad(Some(name), "a checksum is stored for a tensor the header does not have".into()));
        }
        // Entirely indexed, no overlaps, no holes: no byte of the data is
        // outside a tensor or in two (a polyglot file or a lying header).
        tensors.sort_by_key(|t| (t.data_offsets.0, t.data_offsets.1));
        let mut at = 0u64;
        for t in &tensors {
            let (begin, end) = t.data_offsets;
            if begin != at {
                let what =
                    if begin < at { "overlaps the tensor before it" } else { "leaves a gap before it" };
                return Err(bad(Some(&t.name), format!("data_offsets [{begin}, {end}] {what} (at {at})")));
            }
            at = end;
        }
        if at != data_len {
            return Err(bad(
                None,
                format!("the tensors cover {at} bytes of the data's {data_len}: trailing bytes"),
            ));
        }
        Ok(Header { tensors, metadata, data_start, data_len })
    }

    /// Reads the 8-byte length prefix; the JSON length, checked against
    /// the limit and the file's size.
    pub(crate) fn json_len(path: &Path, prefix: [u8; 8], file_len: u64) -> Result<usize> {
        let n = u64::from_le_bytes(prefix);
        if n > MAX_HEADER_BYTES {
            return Err(Error::format(
                path,
                None,
                format!("header of {n} bytes (the limit is {MAX_HEADER_BYTES})"),
            ));
        }
        if n + 8 > file_len {
            return Err(Error::format(
                path,
                None,
                format!("header of {n} bytes but the file has {file_len} (truncated?)"),
            ));
        }
        if n < 2 {
            return Err(Error::format(path, None, format!("header of {n} bytes is too short")));
        }
        Ok(n as usize)
    }

    pub(crate) fn find(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// A tensor as the header encoder takes it: name, dtype, shape, bytes, CRC32C.
pub(crate) type HeaderEntry<'a> = (&'a str, Dtype, &'a [u64], u64, Option<u32>);

/// Writes a header for tensors laid out back to back in the given order:
/// returns the 8-byte prefix + JSON (padded with spaces so that the data
/// starts at a multiple of [`DATA_ALIGN`]) and each tensor's offset.
pub(crate) fn encode(
    tensors: &[HeaderEntry<'_>],
    metadata: &BTreeMap<String, String>,
) -> Result<(Vec<u8>, Vec<u64>)> {
    let mut map = serde_json::Map::new();
    let mut meta: BTreeMap<String, String> = metadata.clone();
    let mut offsets = Vec::with_capacity(tensors.len());
    let mut at = 0u64;
    let mut seen = HashSet::new();
    for &(name, dtype, shape, len, crc) in tensors {
        if name == "__metadata__" || !seen.insert(name) {
            return Err(Error::Config(format!("tensor name {name:?} is reserved or given twice")));
        }
        let end = at + len;
        map.insert(
            name.to_owned(),
            serde_json::json!({ "dtype": dtype.name(), "shape": shape, "data_offsets": [at, end] }),
        );
        if let Some(crc) = crc {
            meta.insert(format!("{CRC_KEY_PREFIX}{name}"), format!("{crc:08x}"));
        }
        offsets.push(at);
        at = end;
    }
    if !meta.is_empty() {
        map.insert(
            "__metadata__".into(),
            serde_json::to_value(&meta).map_err(|e| Error::Config(e.to_string()))?,
        );
    }
    let mut json = serde_json::to_vec(&map).map_err(|e| Error::Config(e.to_string()))?;
    let padded = (8 + json.len() as u64).div_ceil(DATA_ALIGN) * DATA_ALIGN - 8;
    json.resize(padded as usize, b' ');
    if json.len() as u64 > MAX_HEADER_BYTES {
        return Err(Error::Config(format!(
            "the header would be {} bytes (limit {MAX_HEADER_BYTES})",
            json.len()
        )));
    }
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    Ok((out, offsets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str, data_len: u64) -> Result<Header> {
        Header::parse(Path::new("t.safetensors"), json.as_bytes(), 8 + json.len() as u64 + data_len)
    }

    #[test]
    fn a_valid_header_is_sorted_and_keeps_metadata() {
        let h = parse(
            r#"{"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},"__metadata__":{"format":"pt"},"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"e":{"dtype":"F16","shape":[0,3],"data_offsets":[12,12]}}   "#,
            12,
        )
        .unwrap();
        let names: Vec<&str> = h.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "e"]);
        assert_eq!(h.metadata.get("format").map(String::as_str), Some("pt"));
        assert_eq!(h.data_len, 12);
    }

    #[test]
    fn every_lie_is_refused_with_its_reason() {
        let cases: &[(&str, u64, &str)] = &[
            (r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, 4, "8 bytes but data_offsets"),
            (r#"{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}"#, 4, "unknown dtype"),
            (r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, 2, "end past the data"),
            (
                r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#,
                6,
                "overlaps",
            ),
            (
                r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[6,10]}}"#,
                10,
                "gap",
            ),
            (r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#, 8, "trailing bytes"),
            (
                r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}"#,
                8,
                "twice",
            ),
            (r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[4,0]}}"#, 4, "backwards"),
            (r#"{"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#, 4, "overflows"),
            (r#"{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}}"#, 1, "whole bytes"),
            (r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4],"extra":1}}"#, 4, "unknown field"),
            (r#"{"a":{"dtype":"U8","shape":[4]}}"#, 4, "missing field"),
            (r#"{"__metadata__":{"x":1}}"#, 0, "not valid JSON"),
            (r#"["a"]"#, 0, "start with"),
            (
                r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"__metadata__":{"ringfeed.crc32c.b":"00000000"}}"#,
                1,
                "does not have",
            ),
        ];
        for (json, data, want) in cases {
            let e = parse(json, *data).unwrap_err().to_string();
            assert!(e.contains(want), "{json}: {e}");
        }
    }

    #[test]
    fn the_length_prefix_is_bounded() {
        let p = Path::new("t");
        assert!(Header::json_len(p, (MAX_HEADER_BYTES + 1).to_le_bytes(), u64::MAX).is_err());
        assert!(Header::json_len(p, 100u64.to_le_bytes(), 50).unwrap_err().to_string().contains("truncated"));
        assert_eq!(Header::json_len(p, 100u64.to_le_bytes(), 108).unwrap(), 100);
    }

    #[test]
    fn encoded_headers_align_the_data_and_parse_back() {
        let shape = [2u64, 3];
        let (bytes, offsets) = encode(
            &[("w", Dtype::F32, &shape, 24, Some(0xdead_beef)), ("b", Dtype::BF16, &[3], 6, None)],
            &BTreeMap::from([("format".to_owned(), "pt".to_owned())]),
        )
        .unwrap();
        assert_eq!(bytes.len() as u64 % DATA_ALIGN, 0);
        assert_eq!(offsets, [0, 24]);
        let h = Header::parse(Path::new("t"), &bytes[8..], bytes.len() as u64 + 30).unwrap();
        assert_eq!(h.data_start, bytes.len() as u64);
        assert_eq!(h.find("w").unwrap().crc32c, Some(0xdead_beef));
        assert_eq!(h.find("b").unwrap().crc32c, None);
        assert_eq!(h.metadata.len(), 1, "checksums are not user metadata");
        assert!(
            encode(&[("x", Dtype::U8, &[1], 1, None), ("x", Dtype::U8, &[1], 1, None)], &BTreeMap::new())
                .is_err()
        );
    }
}
