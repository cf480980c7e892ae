//! Full-dataset integrity check: every shard structure, every record
//! checksum and every shard's whole-file checksum.
//!
//! Unlike [`Dataset::open`](crate::Dataset::open), which stops at the first
//! problem, verification keeps going and reports each damaged record, so a
//! user can tell one flipped bit from a lost shard.

use std::io::{ErrorKind, Read};
use std::path::Path;

use serde::Serialize;

use super::format::{HEADER_LEN, to_usize};
use super::manifest::{MANIFEST_FILE, Manifest};
use super::reader::Shard;
use crate::error::{Error, Result};

const CHUNK: usize = 8 << 20;

/// One problem found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Shard file name.
    pub shard: String,
    /// Record index within the shard, when the problem is one record.
    pub record: Option<u64>,
    /// Byte offset in the shard file.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

impl Problem {
    /// A problem with a whole file (`shard`, or the manifest), not one record.
    fn file(shard: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem { shard: shard.into(), record: None, offset: 0, reason: reason.into() }
    }
}

/// Outcome of [`verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Shards listed in the manifest.
    pub shards: u64,
    /// Records checked.
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Everything found wrong; empty for a clean dataset.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every byte of the dataset in `dir`. `progress` is called with
/// the number of bytes read since its previous call.
///
/// Damage (bad checksums, truncated or missing shards) is reported in the
/// returned [`VerifyReport`]; an error is returned only when the manifest
/// cannot be read or a shard cannot be read for another reason than its
/// absence (permissions, I/O errors).
pub fn verify(dir: &Path, mut progress: impl FnMut(u64)) -> Result<VerifyReport> {
    let manifest = Manifest::load(dir)?;
    let mut report = VerifyReport {
        shards: u64::try_from(manifest.shards.len()).unwrap_or(u64::MAX),
        ..Default::default()
    };
    // Records of shards that could not be opened (each already reported).
    let mut unreadable = 0u64;
    for info in &manifest.shards {
        let path = dir.join(&info.file);
        let shard = match Shard::open(&path, Some(info)) {
            Ok(shard) => shard,
            Err(Error::Corrupt { offset, record, reason, .. }) => {
                report.problems.push(Problem { shard: info.file.clone(), record, offset, reason });
                unreadable = unreadable.saturating_add(info.records);
                continue;
            }
            Err(Error::Unsupported { reason, .. }) => {
                report.problems.push(Problem::file(&info.file, reason));
                unreadable = unreadable.saturating_add(info.records);
                continue;
            }
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                report.problems.push(Problem::file(&info.file, "shard file is missing"));
                unreadable = unreadable.saturating_add(info.records);
                continue;
            }
            Err(e) => return Err(e),
        };
        let before = report.records;
        let file_crc = scan_shard(&shard, &info.file, &mut report, &mut progress)?;
        let checked = report.records.saturating_sub(before);
        if checked != info.records {
            report.problems.push(Problem::file(
                &info.file,
                format!("checked {checked} records but the manifest lists {} for this shard", info.records),
            ));
        }
        if file_crc != info.file_crc32c {
            report.problems.push(Problem::file(
                &info.file,
                format!(
                    "file checksum mismatch (manifest {:#010x}, computed {file_crc:#010x})",
                    info.file_crc32c
                ),
            ));
        }
    }
    // A dataset is only clean when every record the manifest promises was
    // read and matched its checksum: the records checked plus those of the
    // shards already reported as unreadable must make up the manifest's count.
    if report.records.saturating_add(unreadable) != manifest.records {
        report.problems.push(Problem::file(
            MANIFEST_FILE,
            format!("checked {} records but the manifest lists {}", report.records, manifest.records),
        ));
    }
    Ok(report)
}

/// Streams a shard once, checking each record's CRC on the way; returns the
/// CRC32C of the whole file.
fn scan_shard(
    shard: &Shard,
    name: &str,
    report: &mut VerifyReport,
    progress: &mut impl FnMut(u64),
) -> Result<u32> {
    let path = shard.path();
    let mut file = crate::sys::open_regular(path).map_err(|e| Error::io("open", path, e))?;
    let file_len = shard.file_len();
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    let mut file_crc = 0u32;
    let mut rec = 0u64;
    let mut rec_crc = 0u32;
    'chunks: while pos < file_len {
        let want = usize::try_from(file_len - pos).map_or(CHUNK, |left| left.min(CHUNK));
        let chunk = &mut buf[..want];
        file.read_exact(chunk).map_err(|e| Error::io_at("read", path, pos, e))?;
        file_crc = crc32c::crc32c_append(file_crc, chunk);
        let chunk_end = pos.saturating_add(want as u64);
        while rec < shard.len() {
            let e = shard.entry(rec)?;
            // Shard::open checked every entry's bounds; stay checked anyway
            // rather than wrap around on an entry that lies.
            let Some(e_end) = e.end() else {
                report.problems.push(Problem {
                    shard: name.to_string(),
                    record: Some(rec),
                    offset: e.offset,
                    reason: format!("record offset {} plus length {} overflows", e.offset, e.len),
                });
                break 'chunks;
            };
            if e.offset > chunk_end || (e.offset == chunk_end && e.len > 0) {
                break;
            }
            let start = e.offset.max(pos);
            let end = e_end.min(chunk_end);
            if start < end {
                let lo = to_usize(start - pos, path, start, "record offset")?;
                let hi = to_usize(end - pos, path, end, "record end")?;
                rec_crc = crc32c::crc32c_append(rec_crc, &chunk[lo..hi]);
            }
            if e_end > chunk_end {
                break;
            }
            if rec_crc != e.crc32c {
                report.problems.push(Problem {
                    shard: name.to_string(),
                    record: Some(rec),
                    offset: e.offset,
                    reason: format!(
                        "record checksum mismatch (stored {:#010x}, computed {rec_crc:#010x})",
                        e.crc32c
                    ),
                });
            }
            rec += 1;
            rec_crc = 0;
        }
        report.bytes = report.bytes.saturating_add(want as u64);
        progress(want as u64);
        pos = chunk_end;
    }
    report.records = report.records.saturating_add(rec);
    debug_assert!(pos >= HEADER_LEN);
    Ok(file_crc)
}
