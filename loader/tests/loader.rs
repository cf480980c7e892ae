//! The epoch engine end to end: coverage, determinism across cores and I/O
//! modes, DDP, exact resume, corruption policies, shutdown, async use.

mod common;

use std::collections::BTreeSet;

use common::*;
use ringfeed::{Batch, DdpConfig, Digest, ErrorPolicy, IoMode, Loader, LoaderState, Shuffle};

/// 600 records of 0..5000 bytes in several shards.
fn dataset() -> (tempfile::TempDir, Vec<Rec>) {
    let dir = scratch();
    let sizes: Vec<usize> = (0..600).map(|i| (i * 7919) % 5000).collect();
    let recs = records(&sizes);
    pack(dir.path(), &recs, 400_000);
    (dir, recs)
}

fn collect(loader: Loader) -> Vec<Batch> {
    loader.map(|b| b.expect("batch")).collect()
}

fn check_payloads(batches: &[Batch], recs: &[Rec]) {
    for b in batches {
        assert_eq!(b.indices.len(), b.len());
        for (i, payload) in b.records().enumerate() {
            let r = &recs[b.indices[i] as usize];
            assert_eq!(&payload[..], &r.payload[..], "record {}", b.indices[i]);
            assert_eq!(b.labels[i], r.label);
        }
    }
}

fn digest(batches: &[Batch]) -> String {
    let mut d = Digest::default();
    batches.iter().for_each(|b| d.update(b));
    d.hex()
}

#[test]
fn every_epoch_covers_every_record_once_whatever_the_cores_and_io() {
    let (dir, recs) = dataset();
    for shuffle in [Shuffle::Sequential, Shuffle::Global, Shuffle::Block { block_len: 8, window: 64 }] {
        let mut digests = BTreeSet::new();
        for io in [IoMode::Direct, IoMode::Buffered] {
            for cores in [1, 2, 3] {
                let loader = Loader::builder(dir.path())
                    .batch_size(32)
                    .shuffle(shuffle)
                    .seed(11)
                    .epochs(2)
                    .cores(cores)
                    .io_mode(io)
                    .ddp(DdpConfig::default())
                    .build()
                    .unwrap();
                assert_eq!(loader.io_mode(), io);
                let batches = collect(loader);
                assert_eq!(batches.len(), 2 * 600usize.div_ceil(32));
                for epoch in 0..2 {
                    let mut seen: Vec<u64> =
                        batches.iter().filter(|b| b.epoch == epoch).flat_map(|b| b.indices.clone()).collect();
                    seen.sort_unstable();
                    assert_eq!(seen, (0..600).collect::<Vec<u64>>(), "{shuffle:?} {io:?} {cores} cores");
                }
                check_payloads(&batches, &recs);
                digests.insert(digest(&batches));
            }
        }
        assert_eq!(digests.len(), 1, "{shuffle:?}: batches depend on cores or I/O mode");
    }
}

#[test]
fn orders_change_with_epoch_and_seed() {
    let (dir, _) = dataset();
    let order = |seed, epoch| -> Vec<u64> {
        let l = Loader::builder(dir.path())
            .seed(seed)
            .start_epoch(epoch)
            .ddp(DdpConfig::default())
            .build()
            .unwrap();
        collect(l).into_iter().flat_map(|b| b.indices).collect()
    };
    assert_eq!(order(1, 0), order(1, 0));
    assert_ne!(order(1, 0), order(1, 1));
    assert_ne!(order(1, 0), order(2, 0));
}

#[test]
fn ddp_ranks_are_disjoint_equal_and_cover_the_epoch() {
    let (dir, _) = dataset();
    for shuffle in [Shuffle::Global, Shuffle::Block { block_len: 8, window: 64 }] {
        for drop_last in [false, true] {
            let mut all = Vec::new();
            let mut counts = BTreeSet::new();
            for rank in 0..7 {
                let l = Loader::builder(dir.path())
                    .batch_size(16)
                    .shuffle(shuffle)
                    .ddp(DdpConfig::new(rank, 7, drop_last).unwrap())
                    .build()
                    .unwrap();
                let batches = collect(l);
                counts.insert(batches.len());
                all.extend(batches.into_iter().flat_map(|b| b.indices));
            }
            assert_eq!(counts.len(), 1, "ranks got different batch counts");
            let distinct: BTreeSet<u64> = all.iter().copied().collect();
            if drop_last {
                assert_eq!(distinct.len(), all.len(), "ranks overlap");
                // drop_last also drops each rank's partial last batch.
                assert_eq!(all.len(), (600 / 7) / 16 * 16 * 7);
            } else {
                assert_eq!(distinct.len(), 600, "ranks miss records");
                assert_eq!(all.len(), 600usize.div_ceil(7) * 7);
            }
        }
    }
}

#[test]
fn resume_from_any_point_yields_exactly_the_remaining_batches() {
    let (dir, _) = dataset();
    let build = |shuffle| {
        Loader::builder(dir.path())
            .batch_size(24)
            .shuffle(shuffle)
            .seed(5)
            .epochs(3)
            .ddp(DdpConfig::default())
    };
    for shuffle in [Shuffle::Global, Shuffle::Block { block_len: 8, window: 100 }] {
        let full: Vec<(u64, u64, Vec<u64>)> = collect(build(shuffle).build().unwrap())
            .into_iter()
            .map(|b| (b.epoch, b.index, b.indices))
            .collect();
        // Stop points spread over the run, epoch boundaries included.
        for stop in [0, 1, 7, 24, 25, 26, 40, full.len() - 1, full.len()] {
            let mut first = build(shuffle).cores(2).build().unwrap();
            let mut got: Vec<(u64, u64, Vec<u64>)> = Vec::new();
            for _ in 0..stop {
                let b = first.next().unwrap().unwrap();
                got.push((b.epoch, b.index, b.indices));
            }
            let saved = first.state().to_json();
            drop(first);
            let state = LoaderState::from_json(&saved).unwrap();
            let resumed = Loader::builder(dir.path()).resume(state).epochs(3).cores(1).build().unwrap();
            got.extend(collect(resumed).into_iter().map(|b| (b.epoch, b.index, b.indices)));
            assert_eq!(got, full, "{shuffle:?} stopped after {stop} batches");
        }
    }
}

#[test]
fn resume_refuses_another_dataset() {
    let (dir, _) = dataset();
    let l = Loader::builder(dir.path()).ddp(DdpConfig::default()).build().unwrap();
    let mut state = l.state();
    state.records += 1;
    let err = Loader::builder(dir.path()).resume(state).build().unwrap_err();
    assert!(err.to_string().contains("records"), "{err}");
}

#[test]
fn corrupt_record_fails_with_its_location_or_is_skipped() {
    let (dir, recs) = dataset();
    let ds = ringfeed::Dataset::open(dir.path()).unwrap();
    let victim = (0..600).find(|&i| recs[i as usize].payload.len() > 100).unwrap();
    let loc = ds.locate(victim).unwrap();
    let shard = ds.shards()[loc.shard].path().to_path_buf();
    drop(ds);
    flip(&shard, loc.offset + 10);

    for io in [IoMode::Direct, IoMode::Buffered] {
        let l = Loader::builder(dir.path()).io_mode(io).ddp(DdpConfig::default()).build().unwrap();
        let err = l.into_iter().find_map(Result::err).expect("corruption must surface");
        assert!(err.is_corruption(), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(shard.to_str().unwrap()) && msg.contains(&loc.offset.to_string()), "{msg}");
        assert!(msg.contains(&format!("record {}", loc.index_in_shard)), "{msg}");
    }

    let l =
        Loader::builder(dir.path()).on_error(ErrorPolicy::Skip).ddp(DdpConfig::default()).build().unwrap();
    let mut l = l;
    let batches: Vec<Batch> = l.by_ref().map(Result::unwrap).collect();
    let skipped: Vec<u64> = batches.iter().flat_map(|b| b.skipped.clone()).collect();
    assert_eq!(skipped, [victim]);
    assert_eq!(batches.iter().map(Batch::len).sum::<usize>(), 599);
    assert!(batches.iter().all(|b| !b.indices.contains(&victim)));
    assert_eq!(l.metrics().skipped, 1);
    check_payloads(&batches, &recs);
}

#[test]
fn async_stream_works_from_tokio() {
    let (dir, recs) = dataset();
    let loader = Loader::builder(dir.path()).batch_size(50).ddp(DdpConfig::default()).build().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let batches: Vec<Batch> = rt.block_on(async {
        use futures_lite::StreamExt;
        loader.into_stream().map(|b| b.unwrap()).collect().await
    });
    assert_eq!(batches.len(), 12);
    check_payloads(&batches, &recs);
}

#[test]
fn bad_configurations_are_errors() {
    let (dir, _) = dataset();
    let b = || Loader::builder(dir.path()).ddp(DdpConfig::default());
    assert!(b().batch_size(0).build().is_err());
    assert!(b().cores(0).build().is_err());
    assert!(b().prefetch(0).build().is_err());
    assert!(b().shuffle(Shuffle::Block { block_len: 0, window: 4 }).build().is_err());
    let err = Loader::builder(dir.path().join("missing")).build().unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}
