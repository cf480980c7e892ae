//! Encoding of multipart records (several members per sample, as in a
//! WebDataset tar): a `u32` member count, one `u32` length per member, then
//! the members back to back, all little-endian.

use crate::error::{Error, Result};

/// Joins members into one multipart payload.
pub fn join_parts(parts: &[&[u8]]) -> Vec<u8> {
    let body: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(4 + 4 * parts.len() + body);
    out.extend_from_slice(&(parts.len() as u32).to_le_bytes());
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    }
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// Splits a multipart payload into its members, without copying.
pub fn split_parts(payload: &[u8]) -> Result<Vec<&[u8]>> {
    let bad = |why: &str| Error::Config(format!("not a multipart payload: {why}"));
    let count = payload.get(..4).ok_or_else(|| bad("shorter than its member count"))?;
    let count = u32::from_le_bytes(count.try_into().expect("4 bytes")) as usize;
    let table_end = count
        .checked_mul(4)
        .and_then(|n| n.checked_add(4))
        .filter(|&n| n <= payload.len())
        .ok_or_else(|| bad("member table past the end"))?;
    let mut parts = Vec::with_capacity(count);
    let mut pos = table_end;
    for i in 0..count {
        let at = 4 + 4 * i;
        let len = u32::from_le_bytes(payload[at..at + 4].try_into().expect("4 bytes")) as usize;
        let end =
            pos.checked_add(len).filter(|&e| e <= payload.len()).ok_or_else(|| bad("member past the end"))?;
        parts.push(&payload[pos..end]);
        pos = end;
    }
    if pos != payload.len() {
        return Err(bad("trailing bytes after the last member"));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let p = join_parts(&[b"ab", b"", b"cde"]);
        assert_eq!(split_parts(&p).unwrap(), vec![&b"ab"[..], b"", b"cde"]);
        assert!(split_parts(&p[..p.len() - 1]).is_err());
        assert!(split_parts(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(split_parts(b"").is_err());
    }
}
