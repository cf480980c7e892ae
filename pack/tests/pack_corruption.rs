//! Damaged datasets: every flipped bit, truncation, missing shard, foreign
//! magic or version, and hostile index entries give a clear error naming
//! the file and offset, from the reader and from `verify`.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use ringfeed_pack::{Dataset, Error, verify};

fn packed() -> (tempfile::TempDir, Vec<Rec>) {
    let dir = scratch();
    let recs = records(&[3000, 10, 0, 7000, 123, 4096, 5000, 1]);
    pack(dir.path(), &recs, 8000);
    (dir, recs)
}

/// Rewrites the footer and manifest checksums after the test edited a
/// shard's header or index, so that only the edited field is wrong.
fn reseal(dir: &Path, shard: &Path) {
    let mut b = fs::read(shard).unwrap();
    let (count, index_offset, footer_offset) = (le_u64(&b, 16), le_u64(&b, 40), le_u64(&b, 64) as usize);
    let _ = count;
    let header_crc = crc32c::crc32c(&b[..72]);
    b[72..76].copy_from_slice(&header_crc.to_le_bytes());
    let mut crc = crc32c::crc32c(&b[..4096]);
    crc = crc32c::crc32c_append(crc, &b[index_offset as usize..footer_offset]);
    b[footer_offset + 16..footer_offset + 20].copy_from_slice(&crc.to_le_bytes());
    fs::write(shard, &b).unwrap();
    let file_crc = crc32c::crc32c(&b);
    let name = shard.file_name().unwrap().to_str().unwrap();
    let mpath = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&mpath).unwrap()).unwrap();
    for s in m["shards"].as_array_mut().unwrap() {
        if s["file"] == name {
            s["index_crc32c"] = crc.into();
            s["file_crc32c"] = file_crc.into();
            s["bytes"] = (b.len() as u64).into();
        }
    }
    // With a fresh manifest checksum, so that only the shard edit is wrong.
    let m: ringfeed_pack::Manifest = serde_json::from_value(m).unwrap();
    fs::write(&mpath, m.to_bytes()).unwrap();
}

fn open_err(dir: &Path) -> Error {
    Dataset::open(dir).expect_err("damaged dataset must not open")
}

#[test]
fn every_payload_bit_flip_is_caught_by_reader_and_verify() {
    let (dir, recs) = packed();
    let ds = Dataset::open(dir.path()).unwrap();
    // Flip one bit in each non-empty record in turn, check, and undo.
    for i in 0..ds.len() {
        let loc = ds.locate(i).unwrap();
        if loc.len == 0 {
            continue;
        }
        let shard = ds.shards()[loc.shard].path().to_path_buf();
        let at = loc.offset + u64::from(loc.len) / 2;
        flip(&shard, at);
        let err = Dataset::open(dir.path()).unwrap().record(i).unwrap_err();
        assert!(err.is_corruption(), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(shard.to_str().unwrap()) && msg.contains(&loc.offset.to_string()), "{msg}");
        let report = verify(dir.path(), |_| {}).unwrap();
        let rec_problems: Vec<_> = report.problems.iter().filter(|p| p.record.is_some()).collect();
        assert_eq!(rec_problems.len(), 1, "{:?}", report.problems);
        assert_eq!(rec_problems[0].record, Some(loc.index_in_shard));
        assert_eq!(rec_problems[0].offset, loc.offset);
        flip(&shard, at);
    }
    assert_holds(dir.path(), &recs);
}

#[test]
fn bit_flips_in_header_index_and_footer_are_caught_on_open() {
    let (dir, _) = packed();
    let shard = shard_paths(dir.path())[0].clone();
    let b = fs::read(&shard).unwrap();
    let index_offset = le_u64(&b, 40);
    let len = b.len() as u64;
    for at in [
        0,
        9,
        17,
        40,
        70,
        74,
        index_offset,
        index_offset + 13,
        index_offset + 23,
        len - 30,
        len - 15,
        len - 1,
    ] {
        flip(&shard, at);
        let err = open_err(dir.path());
        assert!(err.is_corruption() || matches!(err, Error::Unsupported { .. }), "byte {at}: {err}");
        assert!(err.to_string().contains("shard-00000.rfp"), "{err}");
        let report = verify(dir.path(), |_| {}).unwrap();
        assert!(!report.is_clean(), "verify missed a flip at byte {at}");
        flip(&shard, at);
    }
    assert!(verify(dir.path(), |_| {}).unwrap().is_clean());
}

#[test]
fn truncated_shard_is_reported() {
    let (dir, _) = packed();
    let shard = shard_paths(dir.path())[1].clone();
    let len = fs::metadata(&shard).unwrap().len();
    for new_len in [len - 1, len / 2, 4096, 100, 0] {
        fs::OpenOptions::new().write(true).open(&shard).unwrap().set_len(new_len).unwrap();
        let err = open_err(dir.path());
        assert!(err.is_corruption(), "{err}");
        assert!(err.to_string().contains("shard-00001.rfp"), "{err}");
        let report = verify(dir.path(), |_| {}).unwrap();
        assert_eq!(report.problems.len(), 1);
        assert_eq!(report.problems[0].shard, "shard-00001.rfp");
    }
}

#[test]
fn missing_shard_is_reported() {
    let (dir, _) = packed();
    let shard = shard_paths(dir.path())[2].clone();
    fs::remove_file(&shard).unwrap();
    let err = open_err(dir.path());
    assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("shard-00002.rfp"), "{err}");
    let report = verify(dir.path(), |_| {}).unwrap();
    assert_eq!(report.problems.len(), 1);
    assert!(report.problems[0].reason.contains("missing"), "{:?}", report.problems);
}

#[test]
fn swapped_shards_do_not_match_the_manifest() {
    let (dir, _) = packed();
    let s = shard_paths(dir.path());
    let tmp = dir.path().join("swap");
    fs::rename(&s[0], &tmp).unwrap();
    fs::rename(&s[1], &s[0]).unwrap();
    fs::rename(&tmp, &s[1]).unwrap();
    let err = open_err(dir.path());
    assert!(err.to_string().contains("does not match the manifest"), "{err}");
}

#[test]
fn wrong_magic_and_version_are_named() {
    let (dir, _) = packed();
    let shard = shard_paths(dir.path())[0].clone();
    let orig = fs::read(&shard).unwrap();
    let mut b = orig.clone();
    b[..8].copy_from_slice(b"NOTOURS!");
    fs::write(&shard, &b).unwrap();
    reseal(dir.path(), &shard);
    let err = open_err(dir.path());
    assert!(err.to_string().contains("bad magic"), "{err}");

    let mut b = orig.clone();
    b[8..12].copy_from_slice(&2u32.to_le_bytes());
    fs::write(&shard, &b).unwrap();
    reseal(dir.path(), &shard);
    let err = open_err(dir.path());
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("version 2"), "{err}");

    // An unknown manifest version is refused as well.
    fs::write(&shard, &orig).unwrap();
    reseal(dir.path(), &shard);
    let mpath = dir.path().join("manifest.json");
    let mut m: ringfeed_pack::Manifest = serde_json::from_slice(&fs::read(&mpath).unwrap()).unwrap();
    m.version = 9;
    fs::write(&mpath, m.to_bytes()).unwrap();
    let err = open_err(dir.path());
    assert!(matches!(err, Error::Unsupported { .. }) && err.to_string().contains("version 9"), "{err}");
}

/// Edits index entry `i` of shard 0 with `edit(entry_bytes)` and reseals.
fn with_edited_entry(edit: impl Fn(&mut [u8], &[u8])) -> Error {
    let (dir, _) = packed();
    let shard = shard_paths(dir.path())[0].clone();
    let mut b = fs::read(&shard).unwrap();
    let index_offset = le_u64(&b, 40) as usize;
    let snapshot = b.clone();
    edit(&mut b[index_offset..], &snapshot);
    fs::write(&shard, &b).unwrap();
    reseal(dir.path(), &shard);
    let err = open_err(dir.path());
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("shard-00000.rfp"), "{err}");
    err
}

#[test]
fn index_pointing_past_the_data_is_refused() {
    let err = with_edited_entry(|idx, _| idx[0..8].copy_from_slice(&(1u64 << 40).to_le_bytes()));
    assert!(err.to_string().contains("past the data section"), "{err}");
}

#[test]
fn overlapping_records_are_refused() {
    // Point record 1 at record 0's start.
    let err = with_edited_entry(|idx, _| {
        let first: [u8; 8] = idx[0..8].try_into().unwrap();
        idx[24..32].copy_from_slice(&first);
    });
    assert!(err.to_string().contains("overlaps"), "{err}");
}

#[test]
fn absurd_lengths_are_refused_without_allocating() {
    let err = with_edited_entry(|idx, _| idx[8..12].copy_from_slice(&u32::MAX.to_le_bytes()));
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
}

#[test]
fn huge_record_count_is_refused_without_allocating() {
    let (dir, _) = packed();
    let shard = shard_paths(dir.path())[0].clone();
    let mut b = fs::read(&shard).unwrap();
    b[16..24].copy_from_slice(&(u64::MAX / 3).to_le_bytes());
    fs::write(&shard, &b).unwrap();
    reseal(dir.path(), &shard);
    let err = open_err(dir.path());
    assert!(err.is_corruption(), "{err}");
}

#[test]
fn garbage_manifest_is_a_clear_error() {
    let (dir, _) = packed();
    let mpath = dir.path().join("manifest.json");
    fs::write(&mpath, b"{\"format\": \"ringfeed-pack\", \"version\": 1, \"shards\": [").unwrap();
    let err = open_err(dir.path());
    assert!(err.is_corruption() && err.to_string().contains("manifest.json"), "{err}");
    fs::write(&mpath, vec![0xffu8; 100]).unwrap();
    assert!(open_err(dir.path()).is_corruption());
}

#[test]
fn wrong_paths_are_io_errors() {
    let dir = scratch();
    let err = open_err(&dir.path().join("nope"));
    assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("nope"), "{err}");
    let err = open_err(dir.path());
    assert!(err.to_string().contains("not a ringfeed dataset"), "{err}");
}

mod arbitrary_shards {
    use proptest::prelude::*;

    use super::common::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

        /// Random bytes, or a real shard with random bytes overwritten,
        /// open as an error or a valid shard, never a panic; every record
        /// of a shard that opens reads or errors.
        #[test]
        fn arbitrary_shards_never_panic(
            garbage in prop::collection::vec(any::<u8>(), 0..10_000),
            real in any::<bool>(),
            patches in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        ) {
            let dir = scratch();
            let path = dir.path().join("x.rfp");
            let mut bytes = if real {
                pack(dir.path(), &records(&[10, 3000, 0, 7000]), 1 << 20);
                std::fs::read(shard_paths(dir.path())[0].clone()).unwrap()
            } else {
                let mut b = b"RINGFEED".to_vec();
                b.extend(garbage);
                b
            };
            for (at, v) in patches {
                let i = at.index(bytes.len());
                bytes[i] ^= v;
            }
            std::fs::write(&path, &bytes).unwrap();
            if let Ok(shard) = ringfeed_pack::Shard::open(&path, None) {
                for i in 0..shard.len() {
                    let _ = shard.read(i);
                    let _ = shard.key(i);
                }
            }
        }
    }
}
