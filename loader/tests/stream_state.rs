//! `into_stream()` keeps the loader's queries: under tokio, the stream's
//! `state()` after `n` items equals a blocking loader's after `n` batches
//! (also when `next()` futures are dropped before they complete), a
//! checkpoint taken from it resumes exactly, and `metrics()` and
//! `classes()` answer.

mod common;

use std::time::Duration;

use common::*;
use futures_lite::StreamExt;
use futures_lite::future::poll_once;
use ringfeed::{DdpConfig, Digest, Loader, LoaderBuilder, LoaderState, PackWriter, Shuffle};

const CLASSES: [&str; 7] = ["a", "b", "c", "d", "e", "f", "g"];

/// 300 records labelled with the 7 classes, in several shards.
fn dataset() -> tempfile::TempDir {
    let dir = scratch();
    let classes = CLASSES.iter().map(|c| c.to_string()).collect();
    let mut w = PackWriter::builder(dir.path())
        .shard_size(64 << 10)
        .schema(schema())
        .classes(classes)
        .build()
        .unwrap();
    let sizes: Vec<usize> = (0..300).map(|i| 1 + (i * 31) % 900).collect();
    for r in records(&sizes) {
        w.push(&r.payload, r.label, Some(&r.key)).unwrap();
    }
    w.finish().unwrap();
    dir
}

fn plan(dir: &std::path::Path) -> LoaderBuilder {
    Loader::builder(dir)
        .batch_size(16)
        .seed(9)
        .shuffle(Shuffle::Block { block_len: 8, window: 64 })
        .epochs(3)
        .ddp(DdpConfig::default())
        .cores(2)
        .prefetch(2)
}

/// The blocking loader's state before the first batch and after each.
fn blocking(dir: &std::path::Path) -> (Vec<LoaderState>, String) {
    let mut l = plan(dir).build().unwrap();
    let (mut states, mut digest) = (vec![l.state()], Digest::default());
    while let Some(b) = l.next() {
        digest.update(&b.unwrap());
        states.push(l.state());
    }
    (states, digest.hex())
}

#[test]
fn the_stream_answers_state_metrics_and_classes_exactly() {
    let dir = dataset();
    let (want, want_digest) = blocking(dir.path());
    assert_eq!(want.len(), 1 + 3 * 19, "300 records in batches of 16: 19 per epoch");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    rt.block_on(async {
        let mut stream = plan(dir.path()).build_async().await.unwrap().into_stream();
        assert_eq!(stream.classes(), CLASSES);
        assert_eq!(stream.loader().classes(), CLASSES);
        let (mut states, mut digest) = (vec![stream.state()], Digest::default());
        let mut record = |item: Option<ringfeed::Result<ringfeed::Batch>>,
                          stream: &ringfeed::LoaderStream| {
            let Some(item) = item else { return false };
            digest.update(&item.unwrap());
            states.push(stream.state());
            assert_eq!(stream.metrics().batches, states.len() as u64 - 1);
            true
        };
        let mut n = 0u32;
        loop {
            n += 1;
            // Every other item, first poll a `next()` once and drop it if it
            // is not ready, every third give it 50 µs: a dropped one must
            // take nothing, a completed one is a real item.
            if n.is_multiple_of(2) {
                let before = stream.state();
                match poll_once(stream.next()).await {
                    Some(item) => {
                        if !record(item, &stream) {
                            break;
                        }
                    }
                    None => assert_eq!(stream.state(), before),
                }
            }
            if n.is_multiple_of(3) {
                let before = stream.state();
                match tokio::time::timeout(Duration::from_micros(50), stream.next()).await {
                    Ok(item) => {
                        if !record(item, &stream) {
                            break;
                        }
                    }
                    Err(_) => assert_eq!(stream.state(), before),
                }
            }
            let item = stream.next().await;
            if !record(item, &stream) {
                break;
            }
        }
        assert_eq!(states, want);
        assert_eq!(digest.hex(), want_digest);
        assert!(stream.next().await.is_none(), "stays finished");
        stream.close().await;
    });
}

#[test]
fn a_checkpoint_from_the_stream_resumes_exactly() {
    let dir = dataset();
    let full: Vec<(u64, u64, Vec<u64>)> = plan(dir.path())
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .map(|b| (b.epoch, b.index, b.indices))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    for stop in [1, 19, 30] {
        let got = rt.block_on(async {
            let mut stream = plan(dir.path()).build().unwrap().into_stream();
            let mut got = Vec::new();
            for _ in 0..stop {
                let b = stream.next().await.unwrap().unwrap();
                got.push((b.epoch, b.index, b.indices));
            }
            // A receive in flight when the service checkpoints and stops.
            if let Some(item) = poll_once(stream.next()).await {
                let b = item.unwrap().unwrap();
                got.push((b.epoch, b.index, b.indices));
            }
            let checkpoint = stream.state().to_json();
            stream.close().await;
            let resumed = plan(dir.path()).resume(LoaderState::from_json(&checkpoint).unwrap());
            let mut rest = resumed.build_async().await.unwrap().into_stream();
            while let Some(b) = rest.next().await {
                let b = b.unwrap();
                got.push((b.epoch, b.index, b.indices));
            }
            got
        });
        assert_eq!(got, full, "stopped after {stop} items");
    }
}

/// A stream dropped while a receive is registered (its `next()` polled
/// and pending) still stops and joins the loader's workers, even with
/// their channels full.
#[test]
fn dropping_a_stream_with_a_receive_in_flight_stops_the_loader() {
    let dir = dataset();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut pending = 0;
        for _ in 0..20 {
            let mut stream = plan(dir.path()).prefetch(1).build().unwrap().into_stream();
            // Right after the build the first batch is usually not ready.
            pending += usize::from(futures_lite::future::block_on(poll_once(stream.next())).is_none());
            drop(stream);
        }
        done.send(pending).unwrap();
    });
    let pending = finished.recv_timeout(Duration::from_secs(60)).expect("dropping the streams hung");
    assert!(pending > 0, "no receive was ever in flight when a stream was dropped");
}
