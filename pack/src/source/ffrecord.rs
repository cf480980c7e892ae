//! FFRecord files (HFAiLab `ffrecord`): a u32 LE header checksum, a u64 LE
//! sample count N, N u32 LE sample CRC32s, N u64 LE absolute sample
//! offsets, then the samples back to back. The header checksum is the zlib
//! CRC32 of bytes `[4, 12 + 12N)`; sample `i` runs to the next sample's
//! offset, the last one to the end of the file.

use std::fs::File;
use std::path::Path;

use super::containers::Containers;
use super::{Source, SourceItem, read_range};
use crate::error::{Error, Result};
use crate::format::MAX_RECORD_LEN;
use crate::manifest::{Payload, Schema};

/// Extensions of FFRecord files picked from a directory.
const EXTENSIONS: &[&str] = &["ffr", "ffrecord"];
/// Checksum and sample count.
const FIXED_LEN: u64 = 12;
/// Per sample: a u32 checksum and a u64 offset.
const PER_SAMPLE: u64 = 12;

/// One sample: where it lies and what its CRC32 must be.
#[derive(Debug, Clone, Copy)]
struct Rec {
    file: u32,
    offset: u64,
    /// At most `MAX_RECORD_LEN`, so it fits.
    len: u32,
    crc32: u32,
}

/// Samples of one FFRecord file or a directory of `.ffr` files (sorted by
/// name, as `ffrecord.FileReader` does), as opaque bytes.
///
/// Opening reads each file's header and checks it completely (checksum,
/// offsets in order and inside the file), so reads can trust it; each read
/// checks the sample's CRC32.
#[derive(Debug)]
pub struct FfRecordSource {
    c: Containers<Rec>,
}

impl FfRecordSource {
    /// Opens an FFRecord file, or every one in directory `path`, and
    /// validates their headers.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Ok(FfRecordSource { c: Containers::open(path, EXTENSIONS, read_header)? })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn read_header(file: &File, path: &Path, idx: u32, recs: &mut Vec<Rec>) -> Result<()> {
    let file_len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
    if file_len < FIXED_LEN {
        return Err(Error::corrupt(
            path,
            0,
            format!("{file_len}-byte file is shorter than the {FIXED_LEN}-byte FFRecord header"),
        ));
    }
    let fixed = read_range(file, path, 0, FIXED_LEN)?;
    let n = u64_at(&fixed, 4);
    // Checked against the real size before anything is allocated for N.
    let header_len = n.checked_mul(PER_SAMPLE).and_then(|b| b.checked_add(FIXED_LEN));
    let header_len = match header_len {
        Some(h) if h <= file_len => h,
        _ => {
            return Err(Error::corrupt(
                path,
                4,
                format!("sample count {n} needs a header larger than the {file_len}-byte file"),
            ));
        }
    };
    let header = read_range(file, path, 0, header_len)?;
    if crc32fast::hash(&header[4..]) != u32_at(&header, 0) {
        return Err(Error::corrupt(path, 0, "header checksum mismatch"));
    }
    let n = n as usize; // header_len <= file_len, so n fits.
    let crc_at = FIXED_LEN as usize;
    let off_at = crc_at + 4 * n;
    let offset = |i: usize| u64_at(&header, off_at + 8 * i);
    // Offsets first: each must lie in the file, after its predecessor.
    let mut prev = header_len;
    for i in 0..n {
        let start = offset(i);
        // Point at the stored offset: that is what is wrong.
        let bad = |why: String| Error::corrupt_record(path, (off_at + 8 * i) as u64, i as u64, why);
        if start < prev {
            return Err(bad(if i == 0 {
                format!("sample 0 starts at byte {start}, inside the {header_len}-byte header")
            } else {
                format!("sample {i} starts at byte {start}, before sample {} at {prev}", i - 1)
            }));
        }
        if start > file_len {
            return Err(bad(format!(
                "sample {i} starts at byte {start}, past the end of the {file_len}-byte file (truncated file?)"
            )));
        }
        prev = start;
    }
    for i in 0..n {
        let start = offset(i);
        let len = if i + 1 < n { offset(i + 1) } else { file_len } - start;
        if len > MAX_RECORD_LEN {
            // The checksummed header vouches for it: real, just too big.
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                reason: format!(
                    "sample {i} at byte {start} is {len} bytes; the pack format's limit is {MAX_RECORD_LEN}"
                ),
            });
        }
        recs.push(Rec { file: idx, offset: start, len: len as u32, crc32: u32_at(&header, crc_at + 4 * i) });
    }
    Ok(())
}

impl Source for FfRecordSource {
    fn format(&self) -> &'static str {
        "ffrecord"
    }

    fn schema(&self) -> Schema {
        Schema { payload: Payload::Bytes, labels: false, keys: false }
    }

    fn len(&self) -> usize {
        self.c.recs.len()
    }

    fn item(&self, i: usize) -> SourceItem<'_> {
        SourceItem { key: None, label: 0, size: u64::from(self.c.recs[i].len) }
    }

    fn origin(&self, i: usize) -> Option<(&Path, u64)> {
        let rec = self.c.recs[i];
        Some((self.c.file(rec.file).0, rec.offset))
    }

    fn read(&self, i: usize) -> Result<Vec<u8>> {
        let rec = self.c.recs[i];
        let (path, file) = self.c.file(rec.file);
        let buf = read_range(file, path, rec.offset, u64::from(rec.len))?;
        if crc32fast::hash(&buf) != rec.crc32 {
            let in_file = self.c.index_in_file(i, rec.file);
            return Err(Error::corrupt_record(path, rec.offset, in_file, "sample fails its CRC32"));
        }
        Ok(buf)
    }
}
