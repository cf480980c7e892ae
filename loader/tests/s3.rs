//! The loader over a dataset in a real S3-compatible server (moto on
//! loopback) behind a fault-injecting proxy: every epoch delivers exactly
//! the local dataset's batches, with the cache cold and warm, for block and
//! global shuffles; a store that goes down mid-epoch ends the epoch with a
//! clear error (or the skip policy's holes), never a hang.
#![cfg(feature = "s3")]

#[path = "../../object/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use ringfeed::{DdpConfig, ErrorPolicy, Loader, PackWriter, Shuffle};
use support::{Fault, FaultProxy, Plan, S3Server};

/// 400 records of 1–9 KB in ~128 KB shards.
fn pack(dir: &Path) {
    let mut w = PackWriter::builder(dir).shard_size(128 << 10).build().unwrap();
    for i in 0..400u32 {
        let len = 1000 + (i as usize * 611) % 8000;
        w.push(&vec![(i % 251) as u8; len], i64::from(i % 7), None).unwrap();
    }
    w.finish().unwrap();
}

/// A batch as delivered: epoch, indices, labels, payloads.
type Delivered = (u64, Vec<u64>, Vec<i64>, Vec<Vec<u8>>);

/// Every batch of two epochs.
fn epochs(path: &str, shuffle: Shuffle, opts: Option<ringfeed_object::ObjectOptions>) -> Vec<Delivered> {
    let mut b = Loader::builder(path).batch_size(32).seed(9).shuffle(shuffle).epochs(2).cores(2);
    b = b.ddp(DdpConfig::default());
    if let Some(o) = opts {
        b = b.object_options(o);
    }
    b.build()
        .unwrap()
        .map(|batch| {
            let batch = batch.unwrap();
            let payloads = batch.records().map(|r| r.to_vec()).collect();
            (batch.epoch, batch.indices.clone(), batch.labels.clone(), payloads)
        })
        .collect()
}

/// A server holding the dataset of [`pack`] at `s3://data/set`, and the
/// local copy.
fn uploaded() -> (S3Server, tempfile::TempDir) {
    let server = S3Server::start();
    server.create_bucket("data");
    let local = tempfile::tempdir().unwrap();
    pack(local.path());
    let direct = S3Server::options(&server.endpoint).build().unwrap();
    ringfeed_object::upload(local.path(), "s3://data/set", &direct).unwrap();
    (server, local)
}

#[test]
fn epochs_from_object_storage_equal_the_local_ones() {
    let (server, local) = uploaded();
    use Fault::*;
    let proxy = FaultProxy::start(
        &server.endpoint,
        Plan::CycleGets(vec![Pass, Unavailable, Pass, Pass, Truncate, Pass, Cut, Pass, Delay(20), Pass]),
    );
    let faulty = || {
        S3Server::options(&proxy.endpoint)
            .retries(10)
            .backoff(Duration::from_millis(2))
            .timeout(Duration::from_secs(5))
    };
    let cache = tempfile::tempdir().unwrap();
    for shuffle in [Shuffle::Block { block_len: 16, window: 64 }, Shuffle::Global] {
        let want = epochs(local.path().to_str().unwrap(), shuffle, None);
        assert_eq!(want.len(), 2 * 400usize.div_ceil(32));
        let no_cache = epochs("s3://data/set", shuffle, Some(faulty().build().unwrap()));
        assert!(no_cache == want, "{shuffle:?}, no cache");
        let cached = || faulty().cache_dir(cache.path()).chunk_size(64 << 10).build().unwrap();
        assert!(epochs("s3://data/set", shuffle, Some(cached())) == want, "{shuffle:?}, cache");
        // Requests answered (not failed by the proxy) in the warm pass.
        let answered = || {
            let (requests, _, failed) = proxy.counts();
            requests - failed
        };
        let before = answered();
        assert!(epochs("s3://data/set", shuffle, Some(cached())) == want, "{shuffle:?}, warm cache");
        assert_eq!(answered() - before, 1, "warm: the manifest only");
    }
    assert!(proxy.counts().1 > 30, "{:?}", proxy.counts());
    // A damaged byte in a cached chunk: the worker's record check catches
    // it (the store does not check cached bytes for the loader), the run is
    // read again from the store, and the epochs stay exact.
    let chunk = support::files_under(cache.path())
        .into_iter()
        .find(|p| p.to_string_lossy().contains("shard-00001"))
        .unwrap();
    let mut bytes = std::fs::read(&chunk).unwrap();
    bytes[20_000] ^= 0x10;
    std::fs::write(&chunk, &bytes).unwrap();
    let want = epochs(local.path().to_str().unwrap(), Shuffle::Sequential, None);
    let mut loader = Loader::builder("s3://data/set")
        .batch_size(32)
        .seed(9)
        .shuffle(Shuffle::Sequential)
        .epochs(2)
        .cores(2)
        .ddp(DdpConfig::default())
        .object_options(faulty().cache_dir(cache.path()).chunk_size(64 << 10).build().unwrap())
        .build()
        .unwrap();
    let got: Vec<Delivered> = loader
        .by_ref()
        .map(|b| {
            let b = b.unwrap();
            (b.epoch, b.indices.clone(), b.labels.clone(), b.records().map(|r| r.to_vec()).collect())
        })
        .collect();
    assert!(got == want, "a damaged cached chunk changed the batches");
    let c = loader.remote_counters().unwrap();
    assert!(c.cache_damaged >= 1, "{c}");
    assert_eq!(loader.metrics().skipped, 0);
}

#[test]
fn a_store_that_goes_down_mid_epoch_ends_it_with_an_error_not_a_hang() {
    let (server, _local) = uploaded();
    let proxy = FaultProxy::start(&server.endpoint, Plan::CycleGets(vec![]));
    let opts = || {
        S3Server::options(&proxy.endpoint)
            .retries(2)
            .backoff(Duration::from_millis(1))
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap()
    };
    let start = |policy| {
        Loader::builder("s3://data/set")
            .batch_size(32)
            .shuffle(Shuffle::Sequential)
            .cores(1)
            .prefetch(1)
            .ddp(DdpConfig::default())
            .on_error(policy)
            .object_options(opts())
            .build()
            .unwrap()
    };
    // Fail: the first batch arrives, then the store goes down; the error
    // names the object and the retries.
    let mut l = start(ErrorPolicy::Fail);
    assert_eq!(l.next().unwrap().unwrap().indices.len(), 32);
    proxy.set(Plan::All(Fault::Unavailable));
    let err = l.find_map(Result::err).expect("an error, not the end of the epoch").to_string();
    assert!(err.contains("gave up after 3 attempts") && err.contains("s3://data/set/shard-"), "{err}");
    drop(l);
    // Skip: batches keep coming, short by the records that could not be
    // read; every record delivered is intact.
    proxy.set(Plan::CycleGets(vec![]));
    let mut l = start(ErrorPolicy::Skip);
    let first = l.next().unwrap().unwrap();
    assert_eq!(first.indices.len(), 32);
    proxy.set(Plan::All(Fault::Unavailable));
    let mut delivered = 32;
    for batch in l {
        let batch = batch.unwrap();
        for (i, r) in batch.indices.iter().zip(batch.records()) {
            assert!(r.iter().all(|&b| b == (*i % 251) as u8));
        }
        delivered += batch.indices.len();
    }
    assert!(delivered < 400, "the store was down: {delivered} records delivered");
}
