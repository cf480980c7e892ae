//! Dropping a loader at any point stops every worker thread and closes
//! every file descriptor it opened within a second: before the first batch,
//! mid-epoch, with workers blocked on a full queue, in the middle of
//! decoding images. Alone in its own test binary, so that no other test's
//! threads or descriptors blur the counts.

mod common;

use common::*;
use ringfeed::{DdpConfig, ImagePipeline, Loader, LoaderBuilder};

fn dataset() -> tempfile::TempDir {
    let dir = scratch();
    let sizes: Vec<usize> = (0..600).map(|i| (i * 7919) % 5000).collect();
    pack(dir.path(), &records(&sizes), 400_000);
    dir
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Builds a loader, takes `taken` batches, drops it and checks that its
/// threads and descriptors are gone within a second.
fn drop_after(builder: LoaderBuilder, taken: usize, what: &str) {
    let (threads_before, fds_before) = (threads(), fds());
    let mut l = builder.build().unwrap();
    assert!(threads() > threads_before, "workers are threads of this process");
    for _ in 0..taken {
        l.next().unwrap().unwrap();
    }
    let dropped = std::time::Instant::now();
    drop(l);
    // The executors are joined by drop; glommio's per-executor helper
    // thread (its blocking-syscall pool, which holds the executor's eventfd)
    // exits right after, on its own. The requirement is that everything is
    // gone within a second.
    while (threads() > threads_before || fds() > fds_before)
        && dropped.elapsed() < std::time::Duration::from_secs(1)
    {
        std::thread::yield_now();
    }
    assert_eq!(threads(), threads_before, "threads left 1 s after dropping {what} after {taken} batches");
    if fds() != fds_before {
        for e in std::fs::read_dir("/proc/self/fd").unwrap() {
            let e = e.unwrap();
            eprintln!("{:?} -> {:?}", e.file_name(), std::fs::read_link(e.path()));
        }
    }
    assert_eq!(fds(), fds_before, "descriptors left 1 s after dropping {what} after {taken} batches");
}

#[test]
fn dropping_a_loader_anywhere_joins_its_threads_and_closes_its_descriptors() {
    let dir = dataset();
    for taken in [0, 1, 5] {
        for cores in [1, 2] {
            // Prefetch 1: the workers are soon blocked on a full queue.
            let raw =
                Loader::builder(dir.path()).batch_size(4).prefetch(1).cores(cores).ddp(DdpConfig::default());
            drop_after(raw, taken, &format!("a raw loader on {cores} cores"));
        }
    }
    let (images, _) = common::images::dataset(false);
    for taken in [0, 1, 3] {
        let decoding = Loader::builder(images.path())
            .batch_size(4)
            .prefetch(2)
            .cores(2)
            .images(ImagePipeline::train(64))
            .ddp(DdpConfig::default());
        drop_after(decoding, taken, "an image loader");
    }
}
