//! The blocking-read fallback (for where io_uring is refused) delivers the
//! very batches io_uring does: same order, same bytes, same labels, the
//! same records skipped, decoded images included. That io_uring really
//! being refused is detected is tested in the crate (`io_backend`), in a
//! child process under a seccomp filter.

mod common;

use common::*;
use ringfeed::{
    Batch, DdpConfig, ErrorPolicy, ImagePipeline, IoBackend, IoMode, Loader, LoaderBuilder, Shuffle,
};

fn run(builder: LoaderBuilder, backend: IoBackend) -> Vec<Batch> {
    let mut l = builder.io_backend(backend).build().unwrap();
    assert_eq!(l.io_backend(), backend);
    if backend == IoBackend::Blocking {
        assert_eq!(l.io_mode(), IoMode::Buffered, "blocking reads go through the page cache");
    }
    l.by_ref().map(Result::unwrap).collect()
}

fn assert_same(a: &[Batch], b: &[Batch], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: batch count");
    for (x, y) in a.iter().zip(b) {
        let at = format!("{what}: epoch {} batch {}", x.epoch, x.index);
        assert_eq!((x.epoch, x.index), (y.epoch, y.index), "{at}");
        assert_eq!(x.indices, y.indices, "{at}");
        assert_eq!(x.labels, y.labels, "{at}");
        assert_eq!(x.data(), y.data(), "{at}");
        assert_eq!(x.skipped, y.skipped, "{at}");
        let pixels = |b: &Batch| b.images.as_ref().map(|i| (i.shape(), i.data().to_vec()));
        assert_eq!(pixels(x), pixels(y), "{at}");
    }
}

/// Whether io_uring can be compared with here.
fn uring_available(builder: LoaderBuilder) -> bool {
    match builder.io_backend(IoBackend::Uring).build() {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipped: {e}");
            false
        }
    }
}

#[test]
fn raw_batches_are_the_same_with_blocking_reads() {
    let dir = scratch();
    let sizes: Vec<usize> = (0..700).map(|i| (i * 7919) % 6000).collect();
    pack(dir.path(), &records(&sizes), 300_000);
    let base = || Loader::builder(dir.path()).batch_size(32).seed(5).epochs(2).ddp(DdpConfig::default());
    if !uring_available(base()) {
        return;
    }
    for cores in [1, 2] {
        for (shuffle, io) in [
            (Shuffle::Global, IoMode::Direct),
            (Shuffle::Global, IoMode::Buffered),
            (Shuffle::Block { block_len: 16, window: 128 }, IoMode::Direct),
            (Shuffle::Sequential, IoMode::Auto),
        ] {
            let b = || base().cores(cores).shuffle(shuffle).io_mode(io);
            let (uring, blocking) = (run(b(), IoBackend::Uring), run(b(), IoBackend::Blocking));
            assert_eq!(blocking.iter().map(Batch::len).sum::<usize>(), 1400);
            assert_same(&uring, &blocking, &format!("{cores} cores, {shuffle:?}, {io:?}"));
        }
    }
}

#[test]
fn corrupt_records_are_handled_alike() {
    let dir = scratch();
    let sizes: Vec<usize> = (0..300).map(|i| 200 + (i * 31) % 900).collect();
    pack(dir.path(), &records(&sizes), 100_000);
    let ds = ringfeed::Dataset::open(dir.path()).unwrap();
    for index in [3, 150, 299] {
        let loc = ds.locate(index).unwrap();
        flip(ds.shards()[loc.shard].path(), loc.offset + 10);
    }
    drop(ds);
    let b = || {
        Loader::builder(dir.path())
            .batch_size(16)
            .seed(1)
            .cores(2)
            .on_error(ErrorPolicy::Skip)
            .ddp(DdpConfig::default())
    };
    if !uring_available(b()) {
        return;
    }
    let (uring, blocking) = (run(b(), IoBackend::Uring), run(b(), IoBackend::Blocking));
    assert_eq!(blocking.iter().map(|b| b.skipped.len()).sum::<usize>(), 3);
    assert_same(&uring, &blocking, "skip policy");
    // Under the fail policy the fallback stops with the corruption error.
    let mut l = b().on_error(ErrorPolicy::Fail).io_backend(IoBackend::Blocking).build().unwrap();
    let err = l.by_ref().find_map(Result::err).expect("an error");
    assert!(err.is_corruption(), "{err}");
}

#[test]
fn decoded_images_are_the_same_with_blocking_reads() {
    let (dir, _) = images::dataset(true);
    let b = || images::loader(dir.path(), ImagePipeline::train(48), 2, ErrorPolicy::Skip).epochs(2);
    if !uring_available(b()) {
        return;
    }
    let (uring, blocking) = (run(b(), IoBackend::Uring), run(b(), IoBackend::Blocking));
    assert!(blocking.iter().all(|b| b.images.is_some()));
    assert_same(&uring, &blocking, "train pipeline");
}
