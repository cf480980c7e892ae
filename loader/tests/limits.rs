//! Every size and count of the loader is checked before anything is
//! allocated from it, and block shuffle's memory follows the prefetch
//! depth, not the window.

mod common;

use common::*;
use ringfeed::{Error, ImagePipeline, Loader, LoaderBuilder, Shuffle};

/// The configuration error `builder` gives, which must come before the
/// dataset is even opened (the path does not exist).
fn refused(builder: LoaderBuilder) -> String {
    match builder.build() {
        Err(Error::Config(message)) => message,
        Err(other) => panic!("expected a configuration error, got {other}"),
        Ok(_) => panic!("accepted"),
    }
}

fn nowhere() -> LoaderBuilder {
    Loader::builder("/nonexistent/ringfeed-limits")
}

#[test]
fn out_of_range_settings_name_their_range() {
    let cases: Vec<(LoaderBuilder, &str)> = vec![
        (nowhere().batch_size(0), "batch size must be 1..=65536, got 0"),
        (nowhere().batch_size(1 << 40), "batch size must be 1..=65536, got 1099511627776"),
        (nowhere().prefetch(0), "prefetch must be 1..=1024, got 0"),
        (nowhere().prefetch(usize::MAX), "prefetch must be 1..=1024, got 18446744073709551615"),
        (nowhere().shuffle(Shuffle::Block { block_len: 64, window: 0 }), "window must be 1..="),
        (nowhere().shuffle(Shuffle::Block { block_len: 0, window: 64 }), "block_len must be 1..="),
        (nowhere().io_memory(64 << 30), "io_memory must be 64 KiB..=1 GiB bytes, got 68719476736 (64 GiB)"),
        (nowhere().io_memory(4096), "io_memory must be 64 KiB..=1 GiB bytes, got 4096 (4 KiB)"),
        (
            nowhere().max_merge(100 << 40),
            "max_merge must be 1 B..=64 MiB bytes, got 109951162777600 (100 TiB)",
        ),
        (nowhere().max_merge(0), "max_merge must be 1 B..=64 MiB bytes, got 0"),
        (
            nowhere().max_merge(1 << 20).max_gap(2 << 20),
            "max_gap must be 0 B..=1 MiB bytes, got 2097152 (2 MiB)",
        ),
        (nowhere().start_epoch(u64::MAX).epochs(2), "epochs must be 0..=0 from start epoch"),
        (nowhere().cores(0), "cores must be 1..="),
        (nowhere().cores(3000), "per CPU of this process's"),
        (nowhere().cpus(vec![]), "the number of CPUs must be 1..="),
        (nowhere().cpus(vec![100_000]), "CPU 100000 is not in this process's affinity mask"),
        (nowhere().images(ImagePipeline::train(100_000)), "image side must be 1..=8192, got 100000"),
        (nowhere().images(ImagePipeline::train(0)), "image side must be 1..=8192, got 0"),
        (nowhere().images(ImagePipeline::val(100_000, 224)), "val resize must be 224..=16384, got 100000"),
        (nowhere().images(ImagePipeline::val(100, 224)), "val resize must be 224..=16384, got 100"),
        (
            nowhere().batch_size(64).images(ImagePipeline::train(8192).normalized()),
            "a batch of 64 images of [3, 8192, 8192] F32 takes 48 GiB; at most 4 GiB",
        ),
    ];
    for (builder, want) in cases {
        let message = refused(builder);
        assert!(message.contains(want), "{message:?} does not contain {want:?}");
        assert!(!message.contains('\n'), "one line: {message:?}");
    }
    // The largest values of each range pass the checks (and fail only on
    // the missing dataset).
    let edge = nowhere()
        .batch_size(65536)
        .prefetch(1024)
        .io_memory(1 << 30)
        .max_merge(64 << 20)
        .max_gap(64 << 20)
        .shuffle(Shuffle::Block { block_len: u64::MAX, window: u64::MAX })
        .start_epoch(u64::MAX - 3)
        .epochs(3)
        .cores(1);
    assert!(matches!(edge.build(), Err(Error::Io { .. })));
}

/// 4096 records of 8 KiB: a batch of 32 fills exactly one 256 KiB buffer
/// granule, so buffer bytes count batches.
fn uniform_dataset() -> tempfile::TempDir {
    let dir = scratch();
    pack(dir.path(), &records(&[8192; 4096]), 8 << 20);
    dir
}

const BATCH: u64 = 32;
const BATCH_BYTES: u64 = 256 << 10;

/// Streams two epochs and returns the most batch-buffer bytes held,
/// checking that each epoch delivered every record once.
fn peak_buffer_bytes(dir: &std::path::Path, window: u64, prefetch: Option<usize>) -> u64 {
    let mut builder = Loader::builder(dir)
        .batch_size(BATCH)
        .cores(2)
        .epochs(2)
        .shuffle(Shuffle::Block { block_len: 64, window });
    if let Some(p) = prefetch {
        builder = builder.prefetch(p);
    }
    let mut loader = builder.build().expect("loader");
    let mut seen = vec![0u32; 4096];
    for batch in loader.by_ref() {
        for &i in &batch.expect("batch").indices {
            seen[i as usize] += 1;
        }
    }
    assert!(seen.iter().all(|&n| n == 2), "window {window}: every record once per epoch");
    loader.metrics().batch_buffer_bytes_max
}

/// The documented bound, `max(prefetch + 2 × cores, cores × (units per
/// core + 1)) + 2` batches, for 2 cores reading one unit each.
fn bound(prefetch: u64) -> u64 {
    ((prefetch + 4).max(4) + 2) * BATCH_BYTES
}

#[test]
fn block_shuffle_memory_follows_prefetch_not_the_window() {
    let dir = uniform_dataset();
    for window in [1024, 8192, 65536, u64::MAX] {
        for prefetch in [1, 8] {
            let peak = peak_buffer_bytes(dir.path(), window, Some(prefetch));
            eprintln!("window {window} prefetch {prefetch}: {} KiB of batch buffers", peak >> 10);
            assert!(
                peak <= bound(prefetch as u64),
                "window {window} prefetch {prefetch}: {peak} bytes held, bound {}",
                bound(prefetch as u64)
            );
        }
        // The default depth grows with the window only up to 64 batches.
        let peak = peak_buffer_bytes(dir.path(), window, None);
        assert!(peak <= bound(64), "window {window} default prefetch: {peak} bytes held");
    }
}

#[test]
fn image_pipelines_need_a_dataset_of_images() {
    let dir = scratch();
    pack(dir.path(), &records(&[100; 10]), 1 << 20);
    let message = refused(Loader::builder(dir.path()).images(ImagePipeline::train(32)));
    assert!(message.contains("an image pipeline needs a dataset of images"), "{message}");
    assert!(message.contains("holds bytes records"), "{message}");
}
