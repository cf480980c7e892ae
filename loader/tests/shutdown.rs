//! Dropping a loader at any point stops every worker thread within a
//! second. Alone in its own test binary, so that no other test's threads
//! blur the count.

mod common;

use common::*;
use ringfeed::{DdpConfig, Loader};

fn dataset() -> tempfile::TempDir {
    let dir = scratch();
    let sizes: Vec<usize> = (0..600).map(|i| (i * 7919) % 5000).collect();
    pack(dir.path(), &records(&sizes), 400_000);
    dir
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn dropping_mid_epoch_joins_every_worker() {
    let dir = dataset();
    let before = threads();
    for taken in [0, 1, 5] {
        let mut l = Loader::builder(dir.path())
            .batch_size(4)
            .prefetch(1)
            .cores(2)
            .ddp(DdpConfig::default())
            .build()
            .unwrap();
        assert!(threads() > before, "workers are threads of this process");
        for _ in 0..taken {
            l.next().unwrap().unwrap();
        }
        let dropped = std::time::Instant::now();
        drop(l);
        // The executors are joined by drop; glommio's per-executor helper
        // thread (its blocking-syscall pool) exits right after, on its own.
        // The requirement is that everything is gone within a second.
        while threads() > before && dropped.elapsed() < std::time::Duration::from_secs(1) {
            std::thread::yield_now();
        }
        assert_eq!(threads(), before, "threads left 1 s after dropping a loader that gave {taken} batches");
    }
}
