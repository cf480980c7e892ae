//! A dataset of 1,100 shards is opened, read, verified and streamed on two
//! cores by a process whose descriptor limit is 256, soft and hard (so
//! raising the soft limit cannot hide descriptors that grow with the shard
//! count), with io_uring and with the blocking-read fallback.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::*;
use ringfeed::{DdpConfig, Loader};

const SHARDS: usize = 1_100;
const LIMIT: u64 = 256;
/// Set in the child: the dataset to read.
const DIR_ENV: &str = "RINGFEED_TEST_MANY_SHARDS_DIR";

fn sizes() -> Vec<usize> {
    (0..SHARDS).map(|i| 1 + (i * 7919) % 300).collect()
}

#[test]
fn a_thousand_shards_stream_under_a_descriptor_limit_of_256() {
    let dir = scratch();
    // A shard size of one byte gives every record a shard of its own.
    let manifest = pack(dir.path(), &records(&sizes()), 1);
    assert_eq!(manifest.shards.len(), SHARDS);
    let exe = std::env::current_exe().unwrap();
    for backend in ["uring", "blocking"] {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {LIMIT} && exec \"$0\" \"$@\""))
            .arg(&exe)
            .args(["--exact", "child_reads_the_dataset", "--nocapture", "--test-threads=1"])
            .env(DIR_ENV, dir.path())
            .env(ringfeed::IO_BACKEND_ENV, backend)
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{backend}: child failed\n{stdout}\n{stderr}");
        assert!(stdout.contains("child done"), "{backend}: the child did not run\n{stdout}\n{stderr}");
        let summary = stdout.lines().find_map(|l| l.split_once("child done: ")).map(|(_, s)| s);
        eprintln!("{backend}: {}", summary.unwrap_or_default());
    }
}

/// The limit the kernel applies to this process, from `/proc/self/limits`.
fn max_open_files() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let v: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    (v[0], v[1])
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Runs only as the child of the test above.
#[test]
fn child_reads_the_dataset() {
    let Some(dir) = std::env::var_os(DIR_ENV) else { return };
    let dir = Path::new(&dir);
    assert_eq!(max_open_files(), (LIMIT, LIMIT), "the child must run under the limit");
    let recs = records(&sizes());
    // What `inspect` and `verify` do.
    let ds = ringfeed::Dataset::open(dir).unwrap();
    assert_eq!(ds.shards().len(), SHARDS);
    for (i, r) in ds.iter().enumerate() {
        assert_eq!(r.unwrap().payload, recs[i].payload, "record {i}");
    }
    let report = ringfeed::verify(dir, |_| {}).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.records, SHARDS as u64);
    drop(ds);
    let mut peak = fds();
    let mut l = Loader::builder(dir)
        .batch_size(50)
        .cores(2)
        .seed(3)
        .epochs(2)
        .ddp(DdpConfig::default())
        .build()
        .unwrap();
    let mut seen = [BTreeSet::new(), BTreeSet::new()];
    for batch in l.by_ref() {
        let batch = batch.unwrap();
        peak = peak.max(fds());
        for (k, payload) in batch.records().enumerate() {
            let i = batch.indices[k];
            assert_eq!(&payload[..], &recs[i as usize].payload[..], "record {i}");
            assert!(seen[batch.epoch as usize].insert(i), "record {i} twice in epoch {}", batch.epoch);
        }
    }
    for (epoch, s) in seen.iter().enumerate() {
        assert_eq!(s.len(), SHARDS, "epoch {epoch}");
    }
    let expected = match std::env::var(ringfeed::IO_BACKEND_ENV).as_deref() {
        Ok("blocking") => ringfeed::IoBackend::Blocking,
        _ => ringfeed::IoBackend::Uring,
    };
    assert_eq!(l.io_backend(), expected);
    println!("child done: backend {:?}, peak {peak} descriptors open", l.io_backend());
}
