//! Write → read round trips over record sizes 0 B … 16 MiB and counts
//! 0 … 100k, plus byte-for-byte reproducibility.

mod common;

use common::*;
use proptest::prelude::*;
use ringfeed_pack::{Dataset, verify};

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn any_sizes_round_trip(
        sizes in prop::collection::vec(prop_oneof![
            4 => 0usize..64,
            3 => 0usize..8192,
            1 => 0usize..300_000,
        ], 0..300),
        shard_size in prop_oneof![Just(1u64), 1u64..20_000, Just(256u64 << 20)],
    ) {
        let dir = scratch();
        let recs = records(&sizes);
        let m = pack(dir.path(), &recs, shard_size);
        prop_assert_eq!(m.records, recs.len() as u64);
        prop_assert_eq!(m.payload_bytes, sizes.iter().sum::<usize>() as u64);
        assert_holds(dir.path(), &recs);
        let report = verify(dir.path(), |_| {}).unwrap();
        prop_assert!(report.is_clean(), "{:?}", report.problems);
        prop_assert_eq!(report.records, recs.len() as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, .. ProptestConfig::default() })]

    /// Few records, each anywhere up to 16 MiB (kept apart from the test
    /// above so each case stays small).
    #[test]
    fn records_up_to_16_mib_round_trip(sizes in prop::collection::vec(0usize..=(16 << 20), 1..4)) {
        let dir = scratch();
        let recs = records(&sizes);
        pack(dir.path(), &recs, 20 << 20);
        assert_holds(dir.path(), &recs);
        let clean = verify(dir.path(), |_| {}).unwrap().is_clean();
        prop_assert!(clean);
    }
}

#[test]
fn empty_dataset_round_trips() {
    let dir = scratch();
    let m = pack(dir.path(), &[], 1 << 20);
    assert_eq!(m.records, 0);
    assert!(m.shards.is_empty());
    let ds = Dataset::open(dir.path()).unwrap();
    assert!(ds.is_empty());
    assert!(ds.record(0).is_err());
    assert!(verify(dir.path(), |_| {}).unwrap().is_clean());
}

#[test]
fn hundred_thousand_records_round_trip() {
    let dir = scratch();
    let sizes: Vec<usize> = (0..100_000).map(|i| (i * 7919) % 97).collect();
    let recs = records(&sizes);
    let m = pack(dir.path(), &recs, 1 << 20);
    assert!(m.shards.len() > 1, "small shard size must split the dataset");
    assert_holds(dir.path(), &recs);
    let ds = Dataset::open(dir.path()).unwrap();
    // Random access across shard boundaries.
    for i in [0u64, 1, 4_999, 50_000, 99_999] {
        assert_eq!(ds.record(i).unwrap().payload, recs[i as usize].payload);
    }
}

#[test]
fn sixteen_mib_records_round_trip() {
    let dir = scratch();
    let sizes = [16 << 20, 0, 1, (16 << 20) - 1, 4096];
    let recs = records(&sizes);
    let m = pack(dir.path(), &recs, 8 << 20);
    // A record larger than the target shard size gets a shard of its own.
    assert_eq!(m.shards.len(), 4, "[16M] [0, 1] [16M-1] [4096]");
    assert_holds(dir.path(), &recs);
    assert!(verify(dir.path(), |_| {}).unwrap().is_clean());
}

#[test]
fn output_is_byte_for_byte_reproducible() {
    let recs = records(&[10, 0, 5000, 123_456, 7, 4096, 4097]);
    let (a, b) = (scratch(), scratch());
    pack(a.path(), &recs, 100_000);
    pack(b.path(), &recs, 100_000);
    let names = |d: &std::path::Path| {
        let mut v: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    };
    assert_eq!(names(a.path()), names(b.path()));
    for name in names(a.path()) {
        let (x, y) =
            (std::fs::read(a.path().join(&name)).unwrap(), std::fs::read(b.path().join(&name)).unwrap());
        assert!(x == y, "{name:?} differs between two packs of the same input");
    }
}

#[test]
fn header_and_index_are_4k_aligned() {
    let dir = scratch();
    pack(dir.path(), &records(&[1, 2, 3, 5000]), 1 << 20);
    for shard in shard_paths(dir.path()) {
        let b = std::fs::read(&shard).unwrap();
        assert_eq!(&b[..8], b"RINGFEED");
        let index_offset = le_u64(&b, 40);
        assert_eq!(index_offset % 4096, 0);
        assert_eq!(le_u64(&b, 24), 4096, "records start after the 4 KiB header");
    }
}

#[test]
fn repacking_replaces_an_existing_dataset() {
    let dir = scratch();
    pack(dir.path(), &records(&[100; 50]), 1000);
    let recs = records(&[3, 4]);
    pack(dir.path(), &recs, 1 << 20);
    assert_holds(dir.path(), &recs);
    assert_eq!(shard_paths(dir.path()).len(), 1, "old shards are removed");
}

#[test]
fn refuses_to_overwrite_foreign_files() {
    let dir = scratch();
    std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
    let err = ringfeed_pack::PackWriter::builder(dir.path()).build().unwrap_err();
    assert!(matches!(err, ringfeed_pack::Error::Config(_)), "{err}");
    assert!(err.to_string().contains("precious.txt"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.path().join("precious.txt")).unwrap(), "keep me");
}

#[test]
fn labels_outside_i32_are_rejected_with_the_key() {
    let dir = scratch();
    let mut w = ringfeed_pack::PackWriter::builder(dir.path()).schema(schema()).build().unwrap();
    let err = w.push(b"x", 1 << 40, Some("big/label")).unwrap_err();
    assert!(err.to_string().contains("big/label"), "{err}");
}
