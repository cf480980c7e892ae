//! Corrupt records under each policy: every flipped record is caught by its
//! checksum, skipped or replaced as configured, and replacement keeps batch
//! shapes and the digest reproducible.

mod common;

use std::collections::BTreeSet;

use common::*;
use ringfeed::{Batch, DdpConfig, Digest, ErrorPolicy, Loader};

/// 600 records, 1% of them (6) with one bit flipped in their payload.
fn damaged() -> (tempfile::TempDir, Vec<Rec>, BTreeSet<u64>) {
    let (dir, recs) = intact();
    let ds = ringfeed::Dataset::open(dir.path()).unwrap();
    let victims: BTreeSet<u64> = (0..6).map(|k| 17 + k * 97).collect();
    for &v in &victims {
        let loc = ds.locate(v).unwrap();
        flip(ds.shards()[loc.shard].path(), loc.offset + 100);
    }
    (dir, recs, victims)
}

fn run(dir: &std::path::Path, policy: ErrorPolicy, cores: usize) -> (Vec<Batch>, ringfeed::MetricsSnapshot) {
    let mut l = Loader::builder(dir)
        .batch_size(32)
        .seed(11)
        .cores(cores)
        .on_error(policy)
        .ddp(DdpConfig::default())
        .build()
        .unwrap();
    let batches: Vec<Batch> = l.by_ref().map(Result::unwrap).collect();
    (batches, l.metrics())
}

/// Every payload is the record its index names.
fn check_payloads(batches: &[Batch], recs: &[Rec]) {
    for b in batches {
        for (i, payload) in b.records().enumerate() {
            let r = &recs[b.indices[i] as usize];
            assert_eq!(&payload[..], &r.payload[..], "record {}", b.indices[i]);
            assert_eq!(b.labels[i], r.label);
        }
    }
}

#[test]
fn every_flipped_record_is_caught_and_skipped() {
    let (dir, recs, victims) = damaged();
    let (batches, m) = run(dir.path(), ErrorPolicy::Skip, 2);
    let skipped: BTreeSet<u64> = batches.iter().flat_map(|b| b.skipped.clone()).collect();
    assert_eq!(skipped, victims);
    assert_eq!(batches.iter().map(Batch::len).sum::<usize>(), 600 - victims.len());
    assert_eq!((m.skipped, m.corrupt, m.replaced), (6, 6, 0));
    assert_eq!(m.corrupt_locations.len(), 6);
    assert!(m.corrupt_locations.iter().all(|l| l.contains("checksum") || l.contains("CRC")), "{m:?}");
    check_payloads(&batches, &recs);
}

#[test]
fn replaced_records_keep_batch_shapes_and_the_digest() {
    let (dir, recs, victims) = damaged();
    let mut digests = Vec::new();
    for cores in [1, 2] {
        let (batches, m) = run(dir.path(), ErrorPolicy::Replace, cores);
        assert_eq!(batches.iter().map(Batch::len).sum::<usize>(), 600, "every slot filled");
        assert!(batches.iter().all(|b| b.len() == 32 || b.index == 18), "shapes kept");
        let replaced: BTreeSet<u64> = batches.iter().flat_map(|b| b.replaced.iter().map(|r| r.0)).collect();
        assert_eq!(replaced, victims);
        for b in &batches {
            assert!(b.indices.iter().all(|i| !victims.contains(i)), "a corrupt record was delivered");
            for &(_, substitute) in &b.replaced {
                assert!(b.indices.contains(&substitute));
            }
        }
        assert_eq!((m.replaced, m.skipped), (6, 0));
        assert!(m.corrupt >= 6);
        check_payloads(&batches, &recs);
        let mut d = Digest::default();
        batches.iter().for_each(|b| d.update(b));
        digests.push(d.hex());
    }
    assert_eq!(digests[0], digests[1], "replacement depends on the core count");
}

/// A loader over the undamaged set, workers started (shards open).
fn started(dir: &std::path::Path, io: ringfeed::IoMode, policy: ErrorPolicy) -> Loader {
    Loader::builder(dir)
        .batch_size(32)
        .seed(11)
        .cores(2)
        .prefetch(2)
        .io_mode(io)
        .on_error(policy)
        .ddp(DdpConfig::default())
        .build()
        .unwrap()
}

/// 600 records of 200..5200 bytes in several shards.
fn intact() -> (tempfile::TempDir, Vec<Rec>) {
    let dir = scratch();
    let sizes: Vec<usize> = (0..600).map(|i| 200 + (i * 7919) % 5000).collect();
    let recs = records(&sizes);
    pack(dir.path(), &recs, 400_000);
    (dir, recs)
}

/// A running loader whose first shard loses two thirds of its bytes after
/// the first batch was delivered; returns it with that batch.
struct Truncated {
    _dir: tempfile::TempDir,
    recs: Vec<Rec>,
    shard: std::path::PathBuf,
    loader: Loader,
    first: Batch,
}

fn truncated_underneath(io: ringfeed::IoMode, policy: ErrorPolicy) -> Truncated {
    let (dir, recs) = intact();
    let shard = shard_paths(dir.path())[0].clone();
    let mut loader = started(dir.path(), io, policy);
    let first = loader.next().unwrap().unwrap();
    let len = std::fs::metadata(&shard).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&shard).unwrap().set_len(len / 3).unwrap();
    Truncated { _dir: dir, recs, shard, loader, first }
}

#[test]
fn a_shard_truncated_underneath_is_reported_never_a_wrong_batch() {
    for io in [ringfeed::IoMode::Direct, ringfeed::IoMode::Buffered] {
        let Truncated { recs, shard, loader: l, first, .. } = truncated_underneath(io, ErrorPolicy::Fail);
        let rest: Vec<_> = l.collect();
        let err = rest.iter().find_map(|r| r.as_ref().err()).expect("the truncation must surface");
        assert!(err.is_corruption() || matches!(err, ringfeed::Error::Io { .. }), "{err}");
        assert!(err.to_string().contains(shard.to_str().unwrap()), "{err}");
        let ok: Vec<Batch> = std::iter::once(first).chain(rest.into_iter().map_while(Result::ok)).collect();
        check_payloads(&ok, &recs);

        // Under skip, the lost records are left out and the rest delivered.
        let Truncated { recs, loader: mut l, first, .. } = truncated_underneath(io, ErrorPolicy::Skip);
        let mut batches = vec![first];
        batches.extend(l.by_ref().map(Result::unwrap));
        let skipped: usize = batches.iter().map(|b| b.skipped.len()).sum();
        assert!(skipped > 0, "{io:?}: nothing was lost?");
        assert_eq!(batches.iter().map(Batch::len).sum::<usize>() + skipped, 600);
        assert_eq!(l.metrics().skipped as usize, skipped);
        check_payloads(&batches, &recs);
    }
}

#[test]
fn a_shard_deleted_after_open_is_still_read_in_full() {
    let (dir, recs) = intact();
    let mut l = started(dir.path(), ringfeed::IoMode::Direct, ErrorPolicy::Fail);
    for shard in shard_paths(dir.path()) {
        std::fs::remove_file(shard).unwrap();
    }
    let batches: Vec<Batch> = l.by_ref().map(Result::unwrap).collect();
    let seen: BTreeSet<u64> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(seen.len(), 600);
    check_payloads(&batches, &recs);
}
