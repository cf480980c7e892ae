//! Full-dataset integrity check: the manifest (its checksum, its totals),
//! every shard structure, every record checksum, label and key, every
//! shard's whole-file checksum, and shard files the manifest does not list.
//!
//! Unlike [`Dataset::open`](crate::Dataset::open), which stops at the first
//! problem, verification keeps going and reports each damaged record, so a
//! user can tell one flipped bit from a lost shard.

use std::collections::HashSet;
use std::io::{ErrorKind, Read};
use std::path::Path;

use serde::Serialize;

use super::format::{HEADER_LEN, MAGIC, to_usize};
use super::key_index::{KEY_INDEX_FILE, KeyIndex};
use super::manifest::{MANIFEST_FILE, Manifest, ShardInfo};
use super::reader::{Dataset, Shard};
use crate::error::{Error, Result};

const CHUNK: usize = 8 << 20;
/// Records with a bad label or key reported one by one per shard; the rest
/// are counted in one more problem (a truncated class list would otherwise
/// list every record of the dataset).
const MAX_RECORD_PROBLEMS: usize = 100;

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
    /// Remarks that do not make the dataset unclean, e.g. that its
    /// manifest predates checksums.
    pub notes: Vec<String>,
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
/// Damage (bad checksums, truncated or missing shards, labels outside the
/// classes, keys that are not UTF-8, shard files the manifest does not
/// list) is reported in the returned [`VerifyReport`]; an error is returned
/// when the manifest is damaged or inconsistent (a
/// [corruption](crate::Error::is_corruption) error), or cannot be read, or
/// a shard cannot be read for another reason than its absence
/// (permissions, I/O errors).
pub fn verify(dir: impl AsRef<Path>, mut progress: impl FnMut(u64)) -> Result<VerifyReport> {
    let dir = dir.as_ref();
    let manifest = Manifest::load(dir)?;
    let mut report = VerifyReport {
        shards: u64::try_from(manifest.shards.len()).unwrap_or(u64::MAX),
        ..Default::default()
    };
    if manifest.is_unprotected() {
        report.notes.push(format!(
            "{MANIFEST_FILE} is version {} and has no checksum, so a changed count, size or class \
             name in it may go unnoticed; packing the dataset again protects it",
            manifest.version
        ));
    }
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
        check_index(&shard, info, &manifest, &mut report);
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
    if report.problems.is_empty() {
        check_key_index(dir, &mut report);
    }
    for name in unlisted_shards(dir, &manifest)? {
        report.problems.push(Problem::file(
            name,
            "a shard file the manifest does not list (its entry was removed, or another pack left it)",
        ));
    }
    Ok(report)
}

/// Checks `key-index.rfk`, when there is one: damaged is a problem (key
/// lookups fail until it is rewritten), stale or missing a note (lookups
/// build the index at open). Only run on an otherwise clean dataset, which
/// opens.
fn check_key_index(dir: &Path, report: &mut VerifyReport) {
    if !dir.join(KEY_INDEX_FILE).exists() {
        return;
    }
    let dataset = match Dataset::open(dir) {
        Ok(d) => d,
        Err(e) => return report.problems.push(Problem::file(MANIFEST_FILE, e.to_string())),
    };
    match KeyIndex::load(&dataset) {
        Ok(Some(_)) => {}
        Ok(None) => report.notes.push(format!(
            "{KEY_INDEX_FILE} belongs to an earlier pack of this directory and is ignored (key \
             lookups build the index at open); `ringfeed index-keys` writes a current one"
        )),
        Err(e) => report.problems.push(Problem::file(
            KEY_INDEX_FILE,
            format!("{e}; key lookups fail until it is removed or rewritten (`ringfeed index-keys`)"),
        )),
    }
}

/// Checks what the index holds against the manifest, without reading
/// payloads: every label within the classes (see
/// [`Manifest::label_allowed`]), every key UTF-8 (and absent when the schema
/// has none), and the payload lengths adding up to the shard's
/// `payload_bytes`.
fn check_index(shard: &Shard, info: &ShardInfo, manifest: &Manifest, report: &mut VerifyReport) {
    let mut bad_records = 0usize;
    let mut payload_bytes = 0u64;
    for i in 0..shard.len() {
        let e = match shard.entry(i) {
            Ok(e) => e,
            Err(err) => {
                report.problems.push(Problem::file(&info.file, err.to_string()));
                return;
            }
        };
        payload_bytes = payload_bytes.saturating_add(u64::from(e.len));
        let mut why = Vec::new();
        if !manifest.label_allowed(e.label) {
            why.push(label_problem(e.label, manifest));
        }
        match shard.key(i) {
            Ok(key) if !manifest.schema.keys && !key.is_empty() => {
                why.push("record has a key but the schema has no keys".to_string());
            }
            Ok(_) => {}
            Err(Error::Corrupt { reason, .. }) => why.push(reason),
            Err(err) => why.push(err.to_string()),
        }
        if !why.is_empty() {
            let reason = why.join("; ");
            bad_records += 1;
            if bad_records <= MAX_RECORD_PROBLEMS {
                report.problems.push(Problem {
                    shard: info.file.clone(),
                    record: Some(i),
                    offset: e.offset,
                    reason,
                });
            }
        }
    }
    if bad_records > MAX_RECORD_PROBLEMS {
        report.problems.push(Problem::file(
            &info.file,
            format!(
                "{} more records with a bad label or key (only the first {MAX_RECORD_PROBLEMS} are listed)",
                bad_records - MAX_RECORD_PROBLEMS
            ),
        ));
    }
    if payload_bytes != info.payload_bytes {
        report.problems.push(Problem::file(
            &info.file,
            format!(
                "the records hold {payload_bytes} payload bytes but the manifest lists {} for this shard",
                info.payload_bytes
            ),
        ));
    }
}

/// Why `label` is not allowed by the manifest.
fn label_problem(label: i32, manifest: &Manifest) -> String {
    if manifest.schema.labels {
        format!("label {label} names no class (the manifest lists {})", manifest.classes.len())
    } else {
        format!("label {label} but the schema has no labels (must be 0)")
    }
}

/// Refuses a shard holding a label the manifest does not allow, naming the
/// first such record: an out-of-range class index would otherwise reach a
/// training loop (an out-of-bounds index in its loss).
pub(crate) fn check_labels(shard: &Shard, manifest: &Manifest) -> Result<()> {
    if manifest.schema.labels && manifest.classes.is_empty() {
        return Ok(()); // plain integer labels: any value is one
    }
    for i in 0..shard.len() {
        let e = shard.entry(i)?;
        if !manifest.label_allowed(e.label) {
            return Err(Error::corrupt_record(shard.path(), e.offset, i, label_problem(e.label, manifest)));
        }
    }
    Ok(())
}

/// Names of the shard files in `dir` that the manifest does not list: the
/// visible regular files that start with the shard magic (decided by
/// content, so a user's own `shard-notes.rfp` is not one). Hidden files
/// (a writer's temporaries, its lock) are not part of the dataset.
fn unlisted_shards(dir: &Path, manifest: &Manifest) -> Result<Vec<String>> {
    let listed: HashSet<&str> = manifest.shards.iter().map(|s| s.file.as_str()).collect();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let os_name = entry.file_name();
        // A name that is not UTF-8 cannot be in the manifest, whatever it
        // looks like once made printable.
        let listed_here = os_name.to_str().is_some_and(|n| n == MANIFEST_FILE || listed.contains(n));
        let name = os_name.to_string_lossy();
        if name.starts_with('.') || listed_here {
            continue;
        }
        // Anything that cannot be opened as a regular file (a directory, a
        // FIFO, no permission) cannot be judged, and is not ours to report.
        let Ok(file) = crate::sys::open_regular(&entry.path()) else { continue };
        let mut head = [0u8; MAGIC.len()];
        if file.take(MAGIC.len() as u64).read_exact(&mut head).is_ok() && head == MAGIC {
            found.push(name.into_owned());
        }
    }
    found.sort_unstable();
    Ok(found)
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

/// Reads in flight per shard while verifying a remote dataset.
const REMOTE_READS: usize = 4;
/// Size of those reads.
const REMOTE_READ_LEN: u64 = 8 << 20;

/// [`verify`] for a dataset in object storage (opened by
/// [`Dataset::open_remote`](crate::Dataset::open_remote), which already
/// checked every shard's header and index): every shard is read whole, in
/// ranged reads of 8 MiB with several in flight, its CRC32C compared with
/// the manifest's, and every record's checked. A shard is held in memory
/// while it is checked (a shard's size: 128 MiB by default).
pub fn verify_remote(ds: &crate::Dataset, mut progress: impl FnMut(u64)) -> Result<VerifyReport> {
    let manifest = ds.manifest();
    let mut report = VerifyReport {
        shards: u64::try_from(manifest.shards.len()).unwrap_or(u64::MAX),
        ..Default::default()
    };
    for (shard, info) in ds.shards().iter().zip(&manifest.shards) {
        let Some((store, name)) = shard.remote() else {
            return Err(Error::Config(format!("{} is not in object storage", shard.path().display())));
        };
        let len = info.bytes;
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        let mut pending = std::collections::VecDeque::new();
        let mut next = 0u64;
        let mut failed = None;
        while next < len || !pending.is_empty() {
            while next < len && pending.len() < REMOTE_READS {
                let n = REMOTE_READ_LEN.min(len - next);
                pending.push_back((next, store.read(name, next, n as usize)));
                next += n;
            }
            let Some((at, read)) = pending.pop_front() else { break };
            match crate::remote::wait(read) {
                Ok(part) => {
                    progress(part.len() as u64);
                    bytes.extend_from_slice(&part);
                }
                Err(e) => {
                    failed = Some((at, e));
                    break;
                }
            }
        }
        report.bytes += bytes.len() as u64;
        if let Some((at, e)) = failed {
            report.problems.push(Problem {
                shard: info.file.clone(),
                record: None,
                offset: at,
                reason: e.to_string(),
            });
            continue;
        }
        let crc = crc32c::crc32c(&bytes);
        if crc != info.file_crc32c {
            report.problems.push(Problem::file(
                &info.file,
                format!("file checksum mismatch (manifest {:#010x}, computed {crc:#010x})", info.file_crc32c),
            ));
        }
        for i in 0..shard.len() {
            let loc = shard.location(0, i);
            let payload =
                usize::try_from(loc.offset).ok().and_then(|o| bytes.get(o..o.checked_add(loc.len as usize)?));
            let ok = payload.is_some_and(|p| crc32c::crc32c(p) == loc.crc32c);
            if !ok {
                report.problems.push(Problem {
                    shard: info.file.clone(),
                    record: Some(i),
                    offset: loc.offset,
                    reason: "record checksum mismatch".to_string(),
                });
            }
            report.records += 1;
        }
    }
    Ok(report)
}
