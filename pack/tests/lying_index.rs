//! Datasets that lie consistently (issue #13): an index entry whose offset
//! or length makes `offset + len` overflow or point outside the file, with
//! every checksum recomputed so that only the bounds checks can notice, and
//! a manifest that claims records the shards do not hold. Neither the
//! reader nor `verify` may panic, wrap around, or call such a dataset clean.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use ringfeed_pack::{Dataset, verify};

const ENTRY_LEN: usize = 24;

/// A 20-record dataset in one shard.
fn packed() -> tempfile::TempDir {
    let dir = scratch();
    let recs = records(&[100; 20]);
    pack(dir.path(), &recs, 1 << 20);
    assert_eq!(shard_paths(dir.path()).len(), 1);
    dir
}

/// Recomputes the header CRC, the footer checksum (header + index + keys)
/// and the manifest's per-shard checksums and size after a test edited the
/// shard, so that the file validates except for what the test changed.
fn reseal(dir: &Path, shard: &Path) {
    let mut b = fs::read(shard).unwrap();
    let (index_offset, footer_offset) = (le_u64(&b, 40) as usize, le_u64(&b, 64) as usize);
    let header_crc = crc32c::crc32c(&b[..72]);
    b[72..76].copy_from_slice(&header_crc.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..4096]), &b[index_offset..footer_offset]);
    b[footer_offset + 16..footer_offset + 20].copy_from_slice(&crc.to_le_bytes());
    fs::write(shard, &b).unwrap();
    let file_crc = crc32c::crc32c(&b);
    let name = shard.file_name().unwrap().to_str().unwrap();
    edit_manifest(dir, |m| {
        for s in m["shards"].as_array_mut().unwrap() {
            if s["file"] == name {
                s["index_crc32c"] = crc.into();
                s["file_crc32c"] = file_crc.into();
                s["bytes"] = (b.len() as u64).into();
            }
        }
    });
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    edit(&mut m);
    // Resealed with the manifest's own checksum, so that only the lie is
    // left to be found.
    let m: ringfeed_pack::Manifest = serde_json::from_value(m).unwrap();
    fs::write(&path, m.to_bytes()).unwrap();
}

/// Rewrites entry `i` of the only shard's index with `offset` and `len`
/// (`None` keeps the stored value), then reseals the dataset.
fn lie(dir: &Path, i: usize, offset: Option<u64>, len: Option<u32>) {
    let shard = &shard_paths(dir)[0];
    let mut b = fs::read(shard).unwrap();
    let at = le_u64(&b, 40) as usize + i * ENTRY_LEN;
    if let Some(offset) = offset {
        b[at..at + 8].copy_from_slice(&offset.to_le_bytes());
    }
    if let Some(len) = len {
        b[at + 8..at + 12].copy_from_slice(&len.to_le_bytes());
    }
    fs::write(shard, &b).unwrap();
    reseal(dir, shard);
}

/// The lie is caught: opening fails with a corruption error naming the
/// shard and the entry, and `verify` reports a problem (never "clean").
#[track_caller]
fn assert_caught(dir: &Path, entry: u64) {
    let shard = shard_paths(dir)[0].clone();
    let err = Dataset::open(dir).expect_err("a lying index must not open");
    assert!(err.is_corruption(), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&shard.display().to_string()), "error does not name the shard: {msg}");
    assert!(
        matches!(err, ringfeed_pack::Error::Corrupt { record: Some(r), .. } if r == entry),
        "error does not name entry {entry}: {msg}"
    );

    let report = verify(dir, |_| {}).expect("verify reports damage, it does not fail");
    assert!(!report.is_clean(), "verify called a lying dataset clean: {report:?}");
    let name = shard.file_name().unwrap().to_str().unwrap();
    assert!(
        report.problems.iter().any(|p| p.shard == name && p.record == Some(entry)),
        "no problem names {name} entry {entry}: {report:?}"
    );
    assert!(report.records < 20, "verify claims to have checked the lying shard: {report:?}");
}

/// `verify` does not claim to have checked the records it could not.
#[track_caller]
fn assert_count_mismatch(report: &ringfeed_pack::VerifyReport, manifest_records: u64) {
    assert!(report.records < manifest_records, "{report:?}");
    assert!(
        report.problems.iter().any(|p| p.reason.contains(&manifest_records.to_string())),
        "no problem mentions the manifest's {manifest_records} records: {report:?}"
    );
}

#[test]
fn offset_u64_max_is_refused() {
    for entry in [0usize, 7, 19] {
        let dir = packed();
        lie(dir.path(), entry, Some(u64::MAX), None);
        assert_caught(dir.path(), entry as u64);
    }
}

#[test]
fn offset_whose_end_wraps_is_refused() {
    // offset + len wraps around to a small number inside the data section.
    for (offset, len) in [(u64::MAX - 49, 100u32), (u64::MAX - 98, 100), (u64::MAX, 1), (1 << 63, 0)] {
        let dir = packed();
        lie(dir.path(), 3, Some(offset), Some(len));
        assert_caught(dir.path(), 3);
    }
}

#[test]
fn len_u32_max_is_refused() {
    let dir = packed();
    lie(dir.path(), 5, None, Some(u32::MAX));
    assert_caught(dir.path(), 5);
}

#[test]
fn offset_past_the_end_of_the_file_is_refused() {
    let dir = packed();
    let file_len = fs::metadata(&shard_paths(dir.path())[0]).unwrap().len();
    lie(dir.path(), 19, Some(file_len + 4096), None);
    assert_caught(dir.path(), 19);
}

#[test]
fn record_of_a_lying_dataset_errors_without_panicking() {
    // Whatever opens, reading every record must give data or an error.
    let dir = packed();
    lie(dir.path(), 0, Some(u64::MAX), None);
    let result = std::panic::catch_unwind(|| match Dataset::open(dir.path()) {
        Ok(ds) => (0..ds.len()).filter(|&i| ds.record(i).is_err()).count(),
        Err(e) => {
            assert!(e.is_corruption(), "{e}");
            1
        }
    });
    assert!(result.expect("reader panicked on a lying index") > 0);
}

#[test]
fn manifest_claiming_more_records_than_the_shards_hold_is_reported() {
    // Per-shard count and total both raised: consistent with each other,
    // not with the shard.
    let dir = packed();
    edit_manifest(dir.path(), |m| {
        m["records"] = 21.into();
        m["shards"][0]["records"] = 21.into();
    });
    let err = Dataset::open(dir.path()).expect_err("manifest lies about the record count");
    assert!(err.is_corruption(), "{err}");
    let report = verify(dir.path(), |_| {}).unwrap();
    assert!(!report.is_clean(), "{report:?}");
    assert_count_mismatch(&report, 21);

    // Only the total raised: the manifest does not add up.
    let dir = packed();
    edit_manifest(dir.path(), |m| m["records"] = 25.into());
    let err = Dataset::open(dir.path()).expect_err("manifest total lies");
    assert!(err.is_corruption(), "{err}");
    match verify(dir.path(), |_| {}) {
        Ok(report) => assert!(!report.is_clean(), "{report:?}"),
        Err(e) => assert!(e.is_corruption(), "{e}"),
    }
}

#[test]
fn verify_counts_every_record_of_an_honest_dataset() {
    let dir = packed();
    let report = verify(dir.path(), |_| {}).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.records, 20);
}
