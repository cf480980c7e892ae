//! Byte layout of a pack shard (format v1), shared by the writer and the
//! readers. `docs/FORMAT.md` is the normative description; this file is its
//! executable form.
//!
//! Every decode function here takes bytes that came from disk and is
//! therefore strict: it never panics and never trusts a length it has not
//! checked against the file size.

use std::path::Path;

use crate::error::{Error, Result};

/// First eight bytes of every shard.
pub(crate) const MAGIC: [u8; 8] = *b"RINGFEED";
/// First eight bytes of every shard footer.
pub(crate) const FOOTER_MAGIC: [u8; 8] = *b"RFFOOTER";
/// The only format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Header and index alignment, so both can be read with O_DIRECT on any
/// common file system and mapped into memory.
pub(crate) const BLOCK: u64 = 4096;
/// Size of the header block; records start right after it.
pub(crate) const HEADER_LEN: u64 = BLOCK;
/// Bytes of the header that carry fields (the rest of the block is zero).
const HEADER_FIELDS_LEN: usize = 76;
/// Bytes per index entry.
pub(crate) const ENTRY_LEN: u64 = 24;
const ENTRY_LEN_USIZE: usize = 24;
/// Bytes of the footer at the very end of the shard.
pub(crate) const FOOTER_LEN: u64 = 32;
/// Largest record the format allows (the index stores lengths as `u32`; we
/// stay well below that so that a corrupt length cannot ask for 4 GiB).
pub const MAX_RECORD_LEN: u64 = 1 << 30;

/// Header flag: the shard has a key table.
pub(crate) const FLAG_KEYS: u32 = 1;
const KNOWN_FLAGS: u32 = FLAG_KEYS;

/// Rounds `n` up to the next multiple of [`BLOCK`].
pub(crate) fn align_up(n: u64) -> u64 {
    n.div_ceil(BLOCK) * BLOCK
}

/// The fixed header at offset 0 of a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) flags: u32,
    pub(crate) record_count: u64,
    pub(crate) data_offset: u64,
    pub(crate) data_len: u64,
    pub(crate) index_offset: u64,
    pub(crate) keys_offset: u64,
    pub(crate) keys_len: u64,
    pub(crate) footer_offset: u64,
}

impl Header {
    /// Lays out a shard from what the writer knows once all records are in.
    pub(crate) fn layout(record_count: u64, data_len: u64, keys_len: u64, has_keys: bool) -> Self {
        let data_offset = HEADER_LEN;
        let index_offset = align_up(data_offset + data_len);
        let keys_offset = index_offset + record_count * ENTRY_LEN;
        Header {
            flags: if has_keys { FLAG_KEYS } else { 0 },
            record_count,
            data_offset,
            data_len,
            index_offset,
            keys_offset,
            keys_len,
            footer_offset: keys_offset + keys_len,
        }
    }

    pub(crate) fn has_keys(&self) -> bool {
        self.flags & FLAG_KEYS != 0
    }

    /// Total file length this header promises. [`Header::decode`] checked
    /// that this is the real file length, so it does not overflow.
    pub(crate) fn file_len(&self) -> u64 {
        self.footer_offset.saturating_add(FOOTER_LEN)
    }

    /// Length of the index plus key table, which are read together; `None`
    /// when the footer offset precedes the index offset.
    pub(crate) fn index_and_keys_len(&self) -> Option<u64> {
        self.footer_offset.checked_sub(self.index_offset)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN as usize);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&self.flags.to_le_bytes());
        for v in [
            self.record_count,
            self.data_offset,
            self.data_len,
            self.index_offset,
            self.keys_offset,
            self.keys_len,
            self.footer_offset,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        debug_assert_eq!(b.len(), HEADER_FIELDS_LEN - 4);
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b.resize(HEADER_LEN as usize, 0);
        b
    }

    /// Decodes and validates a header against the real file length.
    pub(crate) fn decode(bytes: &[u8], file_len: u64, path: &Path) -> Result<Self> {
        let bad = |offset: u64, why: String| Error::corrupt(path, offset, why);
        if file_len < HEADER_LEN + FOOTER_LEN {
            return Err(bad(
                0,
                format!(
                    "file is {file_len} bytes, shorter than an empty shard ({} bytes)",
                    HEADER_LEN + FOOTER_LEN
                ),
            ));
        }
        let Some(fields) = bytes.get(..HEADER_FIELDS_LEN) else {
            return Err(bad(0, "header is truncated".into()));
        };
        if fields[..8] != MAGIC {
            return Err(bad(0, format!("bad magic {:02x?}: not a ringfeed shard", &fields[..8])));
        }
        let version = le_u32(fields, 8);
        if version != FORMAT_VERSION {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                reason: format!("pack format version {version}; this build reads version {FORMAT_VERSION}"),
            });
        }
        let stored_crc = le_u32(fields, HEADER_FIELDS_LEN - 4);
        let crc = crc32c::crc32c(&fields[..HEADER_FIELDS_LEN - 4]);
        if crc != stored_crc {
            return Err(bad(
                0,
                format!("header checksum mismatch (stored {stored_crc:#010x}, computed {crc:#010x})"),
            ));
        }
        let flags = le_u32(fields, 12);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                reason: format!("unknown header flags {:#x}", flags & !KNOWN_FLAGS),
            });
        }
        let h = Header {
            flags,
            record_count: le_u64(fields, 16),
            data_offset: le_u64(fields, 24),
            data_len: le_u64(fields, 32),
            index_offset: le_u64(fields, 40),
            keys_offset: le_u64(fields, 48),
            keys_len: le_u64(fields, 56),
            footer_offset: le_u64(fields, 64),
        };
        h.check_layout(file_len).map_err(|why| bad(0, why))?;
        Ok(h)
    }

    /// The header's offsets must describe exactly this file: sections in
    /// order, aligned, inside the file, and the index sized by the count.
    fn check_layout(&self, file_len: u64) -> Result<(), String> {
        if self.data_offset != HEADER_LEN {
            return Err(format!("data starts at {}, expected {HEADER_LEN}", self.data_offset));
        }
        let data_end = self.data_offset.checked_add(self.data_len).ok_or("data length overflows")?;
        if !self.index_offset.is_multiple_of(BLOCK) || self.index_offset < data_end {
            return Err(format!(
                "index offset {} is unaligned or inside the data (data ends at {data_end})",
                self.index_offset
            ));
        }
        let index_len = self.record_count.checked_mul(ENTRY_LEN).ok_or("record count overflows")?;
        let keys_offset = self.index_offset.checked_add(index_len).ok_or("index overflows")?;
        if self.keys_offset != keys_offset {
            return Err(format!(
                "key table at {}, but an index of {} records ends at {keys_offset}",
                self.keys_offset, self.record_count
            ));
        }
        if !self.has_keys() && self.keys_len != 0 {
            return Err("key table present but the keys flag is not set".into());
        }
        let footer = self.keys_offset.checked_add(self.keys_len).ok_or("key table overflows")?;
        if self.footer_offset != footer {
            return Err(format!("footer at {}, expected {footer}", self.footer_offset));
        }
        let expected_len = footer.checked_add(FOOTER_LEN).ok_or("footer overflows")?;
        if expected_len != file_len {
            return Err(format!(
                "header describes a {expected_len}-byte file but the file is {file_len} bytes (truncated or appended to)"
            ));
        }
        Ok(())
    }
}

/// The footer: repeats the record count and checksums header + index + keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footer {
    pub(crate) record_count: u64,
    pub(crate) checksum: u32,
}

impl Footer {
    pub(crate) fn encode(&self) -> [u8; FOOTER_LEN as usize] {
        let mut b = [0u8; FOOTER_LEN as usize];
        b[..8].copy_from_slice(&FOOTER_MAGIC);
        b[8..16].copy_from_slice(&self.record_count.to_le_bytes());
        b[16..20].copy_from_slice(&self.checksum.to_le_bytes());
        b[20..24].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[24..32].copy_from_slice(&MAGIC);
        b
    }

    pub(crate) fn decode(bytes: &[u8], offset: u64, path: &Path) -> Result<Self> {
        let bad = |why: &str| Error::corrupt(path, offset, why.to_string());
        if bytes.len() != FOOTER_LEN as usize {
            return Err(bad("footer is truncated"));
        }
        if bytes[..8] != FOOTER_MAGIC || bytes[24..32] != MAGIC {
            return Err(bad("bad footer magic (file truncated or overwritten?)"));
        }
        if le_u32(bytes, 20) != FORMAT_VERSION {
            return Err(bad("footer version differs from the header's"));
        }
        Ok(Footer { record_count: le_u64(bytes, 8), checksum: le_u32(bytes, 16) })
    }
}

/// Where one record lives and what it must hash to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Absolute byte offset of the payload in the shard.
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) crc32c: u32,
    pub(crate) label: i32,
    /// End of this record's key in the key table (start is the previous
    /// entry's end, or 0).
    pub(crate) key_end: u32,
}

impl Entry {
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.crc32c.to_le_bytes());
        out.extend_from_slice(&self.label.to_le_bytes());
        out.extend_from_slice(&self.key_end.to_le_bytes());
    }

    /// Decodes entry `i` of an index slice, or `None` when the slice does
    /// not hold an entry `i`.
    pub(crate) fn decode(index: &[u8], i: u64) -> Option<Self> {
        let start = usize::try_from(i.checked_mul(ENTRY_LEN)?).ok()?;
        let b = index.get(start..start.checked_add(ENTRY_LEN_USIZE)?)?;
        Some(Entry {
            offset: le_u64(b, 0),
            len: le_u32(b, 8),
            crc32c: le_u32(b, 12),
            label: i32::from_le_bytes(le_u32(b, 16).to_le_bytes()),
            key_end: le_u32(b, 20),
        })
    }

    /// End of the payload (`offset + len`), or `None` when that sum does not
    /// fit in a `u64`: an index entry is read from disk, so it may lie.
    pub(crate) fn end(&self) -> Option<u64> {
        self.offset.checked_add(u64::from(self.len))
    }
}

/// Converts a size or offset that came from a file into `usize`, or says
/// why it cannot be one (only possible on 32-bit targets).
pub(crate) fn to_usize(v: u64, path: &Path, offset: u64, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| {
        Error::corrupt(path, offset, format!("{what} {v} does not fit in memory on this platform"))
    })
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_every_single_byte_change() {
        let h = Header::layout(3, 100, 7, true);
        let bytes = h.encode();
        let path = Path::new("x");
        assert_eq!(Header::decode(&bytes, h.file_len(), path).unwrap(), h);
        for i in 0..HEADER_FIELDS_LEN {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(Header::decode(&b, h.file_len(), path).is_err(), "flip at byte {i} accepted");
        }
    }

    #[test]
    fn header_rejects_wrong_file_length() {
        let h = Header::layout(3, 100, 0, false);
        let err = Header::decode(&h.encode(), h.file_len() - 1, Path::new("s")).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn layout_aligns_index() {
        let h = Header::layout(10, 5000, 0, false);
        assert_eq!(h.index_offset, 12288);
        assert_eq!(h.keys_offset, 12288 + 240);
        assert_eq!(h.file_len(), 12288 + 240 + FOOTER_LEN);
    }

    #[test]
    fn crc32c_is_the_standard_castagnoli_crc() {
        // The check value FORMAT.md quotes, so other implementations agree.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn entry_round_trips() {
        let e = Entry { offset: 1 << 40, len: 77, crc32c: 0xdead_beef, label: -5, key_end: 9 };
        let mut v = Vec::new();
        e.encode_into(&mut v);
        assert_eq!(v.len() as u64, ENTRY_LEN);
        assert_eq!(Entry::decode(&v, 0), Some(e));
        assert_eq!(Entry::decode(&v, 1), None);
        assert_eq!(Entry::decode(&v, u64::MAX), None);
    }

    #[test]
    fn entry_end_does_not_wrap() {
        let e = Entry { offset: u64::MAX - 9, len: 10, crc32c: 0, label: 0, key_end: 0 };
        assert_eq!(e.end(), None);
        assert_eq!(Entry { len: 9, ..e }.end(), Some(u64::MAX));
    }
}
