//! Datasets in a real S3-compatible server (moto) on loopback, read
//! through a proxy that injects faults: every record arrives intact or the
//! read fails with a clear error after the retry budget; the cache serves
//! a second pass without requests and survives damage; an interrupted
//! upload leaves nothing that opens.

mod support;

use std::path::Path;
use std::time::Duration;

use ringfeed_object::{open, upload};
use ringfeed_pack::{Dataset, PackWriter};
use support::{Fault, FaultProxy, Plan, S3Server};

/// 240 records of 100 B..30 KB in shards of ~256 KB, labels and keys.
fn pack(dir: &Path) {
    let mut w = PackWriter::builder(dir).shard_size(256 << 10).build().unwrap();
    for i in 0..240u32 {
        let len = 100 + (i as usize * 7919) % 30_000;
        let payload: Vec<u8> = (0..len).map(|j| (j as u32 ^ i.wrapping_mul(2_654_435_761)) as u8).collect();
        w.push(&payload, i64::from(i % 5), Some(&format!("rec-{i:04}"))).unwrap();
    }
    w.finish().unwrap();
}

fn same_records(remote: &Dataset, local: &Dataset) {
    assert_eq!(remote.len(), local.len());
    assert_eq!(remote.manifest(), local.manifest());
    for (r, l) in remote.iter().zip(local.iter()) {
        assert_eq!(r.unwrap(), l.unwrap());
    }
}

/// A server with one dataset uploaded (directly) to `s3://data/set`.
fn server_with_dataset() -> (S3Server, tempfile::TempDir) {
    let server = S3Server::start();
    server.create_bucket("data");
    let local = tempfile::tempdir().unwrap();
    pack(local.path());
    let opts = S3Server::options(&server.endpoint).build().unwrap();
    let report = upload(local.path(), "s3://data/set", &opts).unwrap();
    assert!(report.shards > 3, "{report:?}");
    (server, local)
}

#[test]
fn every_record_arrives_intact_through_injected_faults() {
    let (server, local) = server_with_dataset();
    let local = Dataset::open(local.path()).unwrap();
    use Fault::*;
    let mut faults = vec![Pass, Unavailable, Pass, Truncate, Pass, Cut, Delay(30), Pass];
    faults.extend([Pass, Unavailable, Pass, Truncate, Pass, Cut, Pass, Pass, Hang, Pass]);
    let proxy = FaultProxy::start(&server.endpoint, Plan::CycleGets(faults));
    let opts = S3Server::options(&proxy.endpoint)
        .retries(8)
        .backoff(Duration::from_millis(2))
        .timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let remote = open("s3://data/set", &opts).unwrap();
    same_records(&remote, &local);
    let (requests, injected, failed) = proxy.counts();
    let c = remote.remote_store().unwrap().counters();
    assert!(injected > 20, "{injected} faults in {requests} requests");
    assert_eq!(c.retries, failed, "{c}: every failed request cost a retry, and nothing else did");
    assert_eq!(c.cache_hits + c.cache_misses, 0, "no cache: {c}");
}

#[test]
fn the_cache_serves_a_second_pass_without_requests_and_refetches_damage() {
    let (server, local) = server_with_dataset();
    let local = Dataset::open(local.path()).unwrap();
    let proxy = FaultProxy::start(&server.endpoint, Plan::CycleGets(vec![]));
    let cache = tempfile::tempdir().unwrap();
    let opts =
        S3Server::options(&proxy.endpoint).cache_dir(cache.path()).chunk_size(64 << 10).build().unwrap();
    let cold = open("s3://data/set", &opts).unwrap();
    same_records(&cold, &local);
    let cold_counts = cold.remote_store().unwrap().counters();
    drop(cold);
    let before = proxy.counts().0;
    // Reopened (as after a restart): only the manifest is requested.
    let warm = open("s3://data/set", &opts).unwrap();
    same_records(&warm, &local);
    let after = proxy.counts().0;
    let c = warm.remote_store().unwrap().counters();
    assert_eq!(after - before, 1, "warm pass: only the manifest; {c}; cold was {cold_counts}");
    assert!(c.cache_hits > 240 && c.cache_misses == 0, "{c}");
    // A flipped byte in a cached chunk is caught and fetched again.
    drop(warm);
    let chunk = support::files_under(cache.path())
        .into_iter()
        .find(|p| p.to_string_lossy().contains("shard"))
        .unwrap();
    let mut bytes = std::fs::read(&chunk).unwrap();
    bytes[10] ^= 0x40;
    std::fs::write(&chunk, &bytes).unwrap();
    let again = open("s3://data/set", &opts).unwrap();
    same_records(&again, &local);
    let c = again.remote_store().unwrap().counters();
    assert_eq!(c.cache_damaged, 1, "{c}");
    assert!(c.requests >= 2, "{c}");
}

#[test]
fn a_store_that_stays_down_fails_with_a_clear_error_in_bounded_time() {
    let (server, _local) = server_with_dataset();
    let proxy = FaultProxy::start(&server.endpoint, Plan::All(Fault::Unavailable));
    let fast = |p: &FaultProxy| {
        S3Server::options(&p.endpoint)
            .retries(2)
            .backoff(Duration::from_millis(1))
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap()
    };
    let e = open("s3://data/set", &fast(&proxy)).unwrap_err().to_string();
    assert!(e.contains("gave up after 3 attempts") && e.contains("503"), "{e}");
    assert!(e.contains("s3://data/set/manifest.json"), "{e}");
    assert_eq!(proxy.counts().0, 3);
    // A server that never answers: the timeout fires, then the budget ends.
    proxy.set(Plan::All(Fault::Hang));
    let e = open("s3://data/set", &fast(&proxy)).unwrap_err().to_string();
    assert!(e.contains("gave up after 3 attempts"), "{e}");
    // Mid-read: records' reads fail with the same story, not a hang.
    proxy.set(Plan::CycleGets(vec![]));
    let ds = open("s3://data/set", &fast(&proxy)).unwrap();
    proxy.set(Plan::All(Fault::Cut));
    let e = ds.record(3).unwrap_err().to_string();
    assert!(e.contains("gave up after 3 attempts") && e.contains("shard-"), "{e}");
    // A missing dataset is named as such, at once (no retries on 404).
    proxy.set(Plan::CycleGets(vec![]));
    let before = proxy.counts().0;
    let e = open("s3://data/nothing-here", &fast(&proxy)).unwrap_err().to_string();
    assert!(e.contains("not a ringfeed dataset, or packing did not finish"), "{e}");
    assert_eq!(proxy.counts().0 - before, 1);
}

#[test]
fn an_interrupted_upload_leaves_nothing_that_opens() {
    let (server, local) = server_with_dataset();
    let direct = S3Server::options(&server.endpoint).build().unwrap();
    assert!(open("s3://data/set", &direct).is_ok());
    // Uploading again over it, the store fails part-way.
    let proxy = FaultProxy::start(&server.endpoint, Plan::FailAfter(4));
    let opts =
        S3Server::options(&proxy.endpoint).retries(1).backoff(Duration::from_millis(1)).build().unwrap();
    let e = upload(local.path(), "s3://data/set", &opts).unwrap_err().to_string();
    assert!(e.contains("s3://data/set/"), "{e}");
    let e = open("s3://data/set", &direct).unwrap_err().to_string();
    assert!(e.contains("not a ringfeed dataset, or packing did not finish"), "{e}");
    // Finished, it opens again.
    upload(local.path(), "s3://data/set", &direct).unwrap();
    same_records(&open("s3://data/set", &direct).unwrap(), &Dataset::open(local.path()).unwrap());
}

#[test]
fn concurrent_reads_of_the_same_chunks_all_arrive_with_a_cold_cache() {
    let (server, local) = server_with_dataset();
    let local = Dataset::open(local.path()).unwrap();
    for round in 0..3 {
        let cache = tempfile::tempdir().unwrap();
        let opts =
            S3Server::options(&server.endpoint).cache_dir(cache.path()).chunk_size(64 << 10).build().unwrap();
        let remote = open("s3://data/set", &opts).unwrap();
        // Eight readers over the same records in different orders: most
        // chunks are wanted by several reads at once, fetched by one.
        std::thread::scope(|scope| {
            for t in 0..8u64 {
                let (remote, local) = (&remote, &local);
                scope.spawn(move || {
                    for k in 0..remote.len() {
                        let i = (k * (2 * t + 1) + t * 31) % remote.len();
                        let got =
                            remote.record(i).unwrap_or_else(|e| panic!("round {round}, record {i}: {e}"));
                        assert_eq!(got, local.record(i).unwrap());
                    }
                });
            }
        });
        let c = remote.remote_store().unwrap().counters();
        assert_eq!(c.cache_damaged, 0, "{c}");
    }
}
