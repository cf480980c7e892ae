//! Megatron-LM's indexed dataset (`PREFIX.bin` + `PREFIX.idx`, the
//! `MMapIndexedDataset` layout): the index is `MMIDIDX\0\0`, a u64 version
//! (1), a u8 dtype code, u64 sequence and document counts, then i32
//! sequence lengths (tokens), i64 sequence pointers (bytes into `.bin`),
//! i64 document indices (the first sequence of each document, then the
//! sequence count), and optionally one i8 mode per sequence (multimodal).

use std::path::Path;

use crate::error::{Error, Result};
use crate::manifest::TokenDtype;

const MAGIC: &[u8; 9] = b"MMIDIDX\x00\x00";
/// Magic, version, dtype code, the two counts.
const FIXED: usize = 9 + 8 + 1 + 8 + 8;

/// What an index says about the `.bin` file.
#[derive(Debug)]
pub(crate) struct Index {
    pub(crate) dtype: TokenDtype,
    /// Tokens in the `.bin` file, all sequences back to back.
    pub(crate) tokens: u64,
    /// Token offset of each document's first token, then `tokens`.
    pub(crate) docs: Vec<u64>,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses and checks an index against the `.bin` file's size.
pub(crate) fn parse(idx: &[u8], path: &Path, bin_len: u64) -> Result<Index> {
    let bad = |at: usize, why: String| Error::corrupt(path, at as u64, why);
    if idx.len() < FIXED || &idx[..9] != MAGIC {
        return Err(bad(0, "not a Megatron index (no MMIDIDX header)".into()));
    }
    let version = u64_at(idx, 9);
    if version != 1 {
        return Err(bad(9, format!("index version {version}; only version 1 is known")));
    }
    let (dtype, width) = match idx[17] {
        8 => (TokenDtype::U16, 2u64),
        4 => (TokenDtype::U32, 4),
        code => {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                reason: format!("dtype code {code}: token ids are read as uint16 (8) or int32 (4) only"),
            });
        }
    };
    let n = u64_at(idx, 18);
    let m = u64_at(idx, 26);
    // Sizes checked before anything is allocated for the counts.
    let body = n.checked_mul(12).and_then(|s| m.checked_mul(8).and_then(|d| s.checked_add(d)));
    let expected = body.and_then(|b| b.checked_add(FIXED as u64));
    let rest = idx.len() as u64;
    match expected {
        Some(e) if rest == e || Some(rest) == e.checked_add(n) => {}
        _ => {
            return Err(bad(
                18,
                format!(
                    "{n} sequences and {m} document entries do not fit the {rest}-byte index (truncated?)"
                ),
            ));
        }
    }
    let (n, m) = (n as usize, m as usize);
    let lens_at = FIXED;
    let ptrs_at = lens_at + 4 * n;
    let docs_at = ptrs_at + 8 * n;
    let mut starts = Vec::with_capacity(n + 1);
    let mut at = 0u64;
    for i in 0..n {
        let len = i32::from_le_bytes(idx[lens_at + 4 * i..lens_at + 4 * i + 4].try_into().expect("4 bytes"));
        let ptr = u64_at(idx, ptrs_at + 8 * i);
        if len < 0 {
            return Err(bad(lens_at + 4 * i, format!("sequence {i} has length {len}")));
        }
        if ptr != at * width {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                reason: format!(
                    "sequence {i} starts at byte {ptr}, not right after the previous one (byte {}): only \
                     sequences stored back to back are read",
                    at * width
                ),
            });
        }
        starts.push(at);
        at += len as u64;
    }
    starts.push(at);
    if at * width > bin_len {
        return Err(Error::corrupt(
            path.with_extension("bin"),
            bin_len,
            format!(
                "the index needs {} bytes of tokens, the .bin file has {bin_len} (truncated?)",
                at * width
            ),
        ));
    }
    let mut docs = Vec::with_capacity(m);
    let mut prev = 0u64;
    for d in 0..m {
        let s = u64_at(idx, docs_at + 8 * d);
        let first_or_last_wrong = (d == 0 && s != 0) || (d + 1 == m && s != n as u64);
        if s < prev || s > n as u64 || first_or_last_wrong {
            return Err(bad(
                docs_at + 8 * d,
                format!("document index {d} is sequence {s}: document indices must rise from 0 to {n}"),
            ));
        }
        docs.push(starts[s as usize]);
        prev = s;
    }
    if docs.is_empty() {
        if n > 0 {
            return Err(bad(26, format!("{n} sequences but no document indices")));
        }
        docs.push(0);
    }
    Ok(Index { dtype, tokens: at, docs })
}

/// Writes an index in Megatron's layout (for tests and for converting):
/// one sequence per document.
pub fn write_megatron_index(docs: &[u64], dtype: TokenDtype) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&1u64.to_le_bytes());
    out.push(match dtype {
        TokenDtype::U16 => 8,
        TokenDtype::U32 => 4,
    });
    let n = docs.len() as u64;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&(n + 1).to_le_bytes());
    for &len in docs {
        out.extend_from_slice(&(len as i32).to_le_bytes());
    }
    let mut at = 0u64;
    for &len in docs {
        out.extend_from_slice(&(at * dtype.width() as u64).to_le_bytes());
        at += len;
    }
    for d in 0..=n {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out
}
