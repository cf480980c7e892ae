//! The persisted key index (`key-index.rfk`): written at pack time, found
//! again at open, refused when damaged, ignored when stale, rebuilt when
//! missing, and never the cause of a wrong record.

mod common;

use std::fs;

use common::*;
use ringfeed_pack::{
    Dataset, KEY_INDEX_FILE, KeyIndex, KeyIndexOrigin, PackWriter, Payload, Schema, write_key_index,
};

fn sizes(n: usize) -> Vec<usize> {
    (0..n).map(|i| 1 + (i * 37) % 300).collect()
}

#[track_caller]
fn assert_finds_every_key(dir: &std::path::Path, recs: &[Rec], want: KeyIndexOrigin) {
    let ds = Dataset::open(dir).unwrap();
    let (index, origin) = KeyIndex::load_or_build(&ds).unwrap();
    assert_eq!(origin, want);
    assert_eq!(index.len(), recs.len());
    assert_eq!(index.memory(), recs.len() * ringfeed_pack::KEY_INDEX_BYTES_PER_RECORD);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(index.find(&ds, &r.key).unwrap(), Some(i as u64), "key {}", r.key);
    }
    for missing in ["", "k/", "k/0000000", "k/999999", "K/000001"] {
        assert_eq!(index.find(&ds, missing).unwrap(), None, "{missing:?}");
    }
}

#[test]
fn pack_writes_the_index_and_lookups_use_it() {
    let dir = scratch();
    let recs = records(&sizes(2_000));
    pack(dir.path(), &recs, 64 << 10); // several shards
    assert!(dir.path().join(KEY_INDEX_FILE).is_file());
    assert_finds_every_key(dir.path(), &recs, KeyIndexOrigin::File);
}

#[test]
fn a_missing_index_is_built_at_open_and_can_be_written_again() {
    let dir = scratch();
    let recs = records(&sizes(500));
    pack(dir.path(), &recs, 16 << 10);
    let path = dir.path().join(KEY_INDEX_FILE);
    let written = fs::read(&path).unwrap();
    fs::remove_file(&path).unwrap();
    assert_finds_every_key(dir.path(), &recs, KeyIndexOrigin::Built);
    assert_eq!(write_key_index(dir.path()).unwrap(), path);
    // The same bytes as the packer's: the file is a function of the data.
    assert_eq!(fs::read(&path).unwrap(), written);
    assert_finds_every_key(dir.path(), &recs, KeyIndexOrigin::File);
}

#[test]
fn an_index_from_an_earlier_pack_is_stale_and_ignored() {
    let dir = scratch();
    let first = records(&sizes(300));
    pack(dir.path(), &first, 1 << 20);
    let old = fs::read(dir.path().join(KEY_INDEX_FILE)).unwrap();

    // A re-pack with the same count but other keys, then the old index
    // put back (a restore from a backup, a partial copy).
    let mut second = records(&sizes(300));
    second.reverse();
    let mut w = PackWriter::builder(dir.path()).overwrite(true).schema(schema()).build().unwrap();
    for r in &second {
        w.push(&r.payload, r.label, Some(&r.key)).unwrap();
    }
    w.finish().unwrap();
    fs::write(dir.path().join(KEY_INDEX_FILE), &old).unwrap();

    let ds = Dataset::open(dir.path()).unwrap();
    assert!(KeyIndex::load(&ds).unwrap().is_none(), "stale index taken as current");
    assert_finds_every_key(dir.path(), &second, KeyIndexOrigin::Built);
}

#[test]
fn a_damaged_index_is_refused_with_its_file_and_offset() {
    let dir = scratch();
    let recs = records(&sizes(200));
    pack(dir.path(), &recs, 1 << 20);
    let path = dir.path().join(KEY_INDEX_FILE);
    let good = fs::read(&path).unwrap();

    // Every entry byte: the checksum over the entries catches each flip.
    for at in (32..good.len()).step_by(7) {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        fs::write(&path, &bad).unwrap();
        let ds = Dataset::open(dir.path()).unwrap();
        let err = KeyIndex::load_or_build(&ds).unwrap_err();
        assert_corrupt(&err, &path, 32);
    }
    // Truncated: refused by its length, before reading the entries.
    fs::write(&path, &good[..good.len() - 16]).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    assert_corrupt(&KeyIndex::load(&ds).unwrap_err(), &path, 0);
    // Not an index at all.
    fs::write(&path, b"hello").unwrap();
    assert_corrupt(&KeyIndex::load(&ds).unwrap_err(), &path, 0);
    fs::write(&path, [0u8; 64]).unwrap();
    assert_corrupt(&KeyIndex::load(&ds).unwrap_err(), &path, 0);
}

#[test]
fn packs_without_keys_have_no_index_and_remove_an_old_one() {
    let dir = scratch();
    pack(dir.path(), &records(&sizes(50)), 1 << 20);
    assert!(dir.path().join(KEY_INDEX_FILE).exists());
    let mut w = PackWriter::builder(dir.path())
        .overwrite(true)
        .schema(Schema { payload: Payload::Bytes, labels: false, keys: false })
        .build()
        .unwrap();
    w.push(b"x", 0, None).unwrap();
    w.finish().unwrap();
    assert!(!dir.path().join(KEY_INDEX_FILE).exists());
    // Keys are all empty: the index still answers, it just finds "".
    let ds = Dataset::open(dir.path()).unwrap();
    let (index, origin) = KeyIndex::load_or_build(&ds).unwrap();
    assert_eq!(origin, KeyIndexOrigin::Built);
    assert_eq!(index.find(&ds, "").unwrap(), Some(0));
    assert_eq!(index.find(&ds, "k/000000").unwrap(), None);
}

#[test]
fn the_dataset_still_verifies_with_an_index_beside_it() {
    let dir = scratch();
    pack(dir.path(), &records(&sizes(100)), 1 << 20);
    let report = ringfeed_pack::verify(dir.path(), |_| {}).unwrap();
    assert!(report.is_clean() && report.notes.is_empty(), "{report:?}");

    // Damaged: a problem naming the file; stale: a note only.
    let path = dir.path().join(KEY_INDEX_FILE);
    let good = fs::read(&path).unwrap();
    flip(&path, 40);
    let report = ringfeed_pack::verify(dir.path(), |_| {}).unwrap();
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert_eq!(report.problems[0].shard, KEY_INDEX_FILE);
    assert!(report.problems[0].reason.contains("checksum"), "{report:?}");
    let mut stale = good;
    stale[24] ^= 1; // the binding to the shards
    fs::write(&path, stale).unwrap();
    let report = ringfeed_pack::verify(dir.path(), |_| {}).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(report.notes.iter().any(|n| n.contains("earlier pack")), "{report:?}");
}
