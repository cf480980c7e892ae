//! Re-packing into a directory that holds a dataset: the old dataset stays
//! whole until the new one is complete, a failed re-pack leaves it (and
//! nothing of its own) behind, and a finished one leaves no old shard.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use ringfeed_pack::{Dataset, PackOptions, PackWriter, open_source, verify};

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

/// Every file of `dir` with its bytes.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    names(dir).into_iter().map(|n| (n.clone(), fs::read(dir.join(n)).unwrap())).collect()
}

fn assert_verifies(dir: &Path) {
    let report = verify(dir, |_| {}).expect("verify runs");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn a_label_too_large_midway_keeps_the_old_dataset_and_removes_the_new_shards() {
    let dir = scratch();
    let old = records(&[700; 12]);
    pack(dir.path(), &old, 2000);
    let before = contents(dir.path());
    let mut w = PackWriter::builder(dir.path()).shard_size(2000).schema(schema()).build().unwrap();
    // Enough records for several new shards to be written and renamed.
    for r in &records(&[900; 9]) {
        w.push(&r.payload, r.label, Some(&r.key)).unwrap();
    }
    let err = w.push(b"x", 1 << 40, Some("too/big")).unwrap_err();
    assert!(err.to_string().contains("too/big"), "{err}");
    drop(w);
    assert_eq!(contents(dir.path()), before, "the directory is exactly as before, lock included");
    assert_holds(dir.path(), &old);
    assert_verifies(dir.path());
}

#[test]
fn a_non_utf8_file_midway_keeps_the_old_dataset() {
    let src = scratch();
    // More files than one read batch holds, so shards are written before
    // the bad file (the last) is read.
    for i in 0..4200 {
        fs::write(src.path().join(format!("f{i:04}.txt")), format!("line {i}\n")).unwrap();
    }
    let out = scratch();
    let opts = PackOptions::builder().shard_size(4096).build().unwrap();
    let good =
        ringfeed_pack::pack(&*open_source(src.path(), None).unwrap(), out.path(), &opts, |_| {}).unwrap();
    let before = contents(out.path());
    fs::write(src.path().join("f9999.txt"), b"caf\xe9\n").unwrap();
    let source = open_source(src.path(), None).unwrap();
    let mut written = 0;
    let err = ringfeed_pack::pack(&*source, out.path(), &opts, |p| written = p.records).unwrap_err();
    assert!(written > 4000, "the failure came after {written} records were written");
    let msg = err.to_string();
    assert!(msg.contains("f9999.txt") && msg.contains("at byte 3"), "{msg}");
    assert!(msg.contains("--payload bytes"), "{msg}");
    assert_eq!(contents(out.path()), before, "the old dataset's files are untouched, the new ones gone");
    assert_eq!(Dataset::open(out.path()).unwrap().len(), good.records);
    assert_verifies(out.path());
}

#[test]
fn a_finished_repack_leaves_no_old_shard_and_alternates_names() {
    let dir = scratch();
    let first = pack(dir.path(), &records(&[500; 10]), 2000);
    assert!(first.shards.iter().all(|s| s.file.starts_with("shard-0")), "{:?}", first.shards);
    let second_recs = records(&[300; 20]);
    let second = pack(dir.path(), &second_recs, 2000);
    assert!(second.shards.iter().all(|s| s.file.starts_with("shard-g1-")), "{:?}", second.shards);
    let mut want: Vec<String> = second.shards.iter().map(|s| s.file.clone()).collect();
    want.extend([".ringfeed-pack.lock".into(), "key-index.rfk".into(), "manifest.json".into()]);
    want.sort();
    assert_eq!(names(dir.path()), want);
    assert_holds(dir.path(), &second_recs);
    // The next generation may reuse the first names: nothing holds them.
    let third = pack(dir.path(), &records(&[1]), 2000);
    assert_eq!(third.shards[0].file, "shard-00000.rfp");
    assert_eq!(
        names(dir.path()),
        [".ringfeed-pack.lock", "key-index.rfk", "manifest.json", "shard-00000.rfp"]
    );
}

#[test]
fn leftovers_of_a_crash_beside_a_dataset_are_cleared_and_never_overwrite_it() {
    let dir = scratch();
    let old = records(&[500; 10]);
    pack(dir.path(), &old, 2000);
    // What a killed re-pack leaves: a finished shard of the next
    // generation that no manifest lists, and a temporary one.
    fs::copy(dir.path().join("shard-00000.rfp"), dir.path().join("shard-g1-00000.rfp")).unwrap();
    fs::write(dir.path().join(".shard-g1-00001.rfp.tmp"), vec![0u8; 4096]).unwrap();
    fs::write(dir.path().join(".manifest.json.tmp"), b"").unwrap();
    assert_holds(dir.path(), &old);
    let new = records(&[800; 6]);
    let m = pack(dir.path(), &new, 2000);
    assert_holds(dir.path(), &new);
    let mut want: Vec<String> = m.shards.iter().map(|s| s.file.clone()).collect();
    want.extend([".ringfeed-pack.lock".into(), "key-index.rfk".into(), "manifest.json".into()]);
    want.sort();
    assert_eq!(names(dir.path()), want);
}

#[test]
fn an_unreadable_manifest_keeps_every_shard_until_the_switch() {
    let dir = scratch();
    pack(dir.path(), &records(&[500; 10]), 2000);
    // A manifest of a future version: ours, but its shard list unknown.
    fs::write(dir.path().join("manifest.json"), "{\"format\": \"ringfeed-pack\", \"version\": 99}\n")
        .unwrap();
    assert!(Dataset::open(dir.path()).is_err());
    let before = contents(dir.path());
    // A failed re-pack touches none of it (which shards a version-99
    // manifest needs cannot be told).
    let mut w = PackWriter::builder(dir.path()).shard_size(2000).schema(schema()).build().unwrap();
    w.push(b"x", 1 << 40, None).unwrap_err();
    drop(w);
    assert_eq!(contents(dir.path()), before);
    // A finished one replaces all of it.
    let new = records(&[10; 3]);
    pack(dir.path(), &new, 1 << 20);
    assert_holds(dir.path(), &new);
    assert_eq!(shard_paths(dir.path()).len(), 1);
}
