//! Images decoded and augmented inside the engine: shapes, agreement with
//! decoding the same record alone with the same per-sample RNG, the same
//! batches with 1 or 2 cores, and undecodable records under both policies.

mod common;

use common::images::{dataset, loader, standalone};
use ringfeed::{Batch, Digest, ErrorPolicy, ImageDtype, ImagePipeline, Loader};

fn run(
    dir: &std::path::Path,
    pipeline: ImagePipeline,
    cores: usize,
    policy: ErrorPolicy,
) -> Vec<ringfeed::Result<Batch>> {
    loader(dir, pipeline, cores, policy).build().unwrap().collect()
}

#[test]
fn images_match_a_standalone_decode_and_do_not_depend_on_cores() {
    let (dir, recs) = dataset(false);
    for pipeline in [ImagePipeline::train(64).u8(), ImagePipeline::val(73, 64).u8(), ImagePipeline::train(32)]
    {
        let mut digests = Vec::new();
        for cores in [1, 2] {
            let batches: Vec<Batch> =
                run(dir.path(), pipeline, cores, ErrorPolicy::Fail).into_iter().map(Result::unwrap).collect();
            assert_eq!(batches.iter().map(Batch::len).sum::<usize>(), 24);
            let mut d = Digest::default();
            for b in &batches {
                d.update(b);
                let images = b.images.as_ref().expect("images requested");
                let side = if pipeline == ImagePipeline::train(32) { 32 } else { 64 };
                assert_eq!(images.shape(), [b.len(), 3, side, side]);
                let elem = if images.dtype() == ImageDtype::U8 { 1 } else { 4 };
                assert_eq!(images.data().len(), b.len() * 3 * side * side * elem);
                // The same record decoded alone with its per-sample RNG gives
                // the same pixels.
                let slot = 3 * side * side * elem;
                let i = b.len() - 1;
                let want = standalone(pipeline, &recs[b.indices[i] as usize], b.epoch, b.indices[i]);
                assert_eq!(&images.data()[i * slot..(i + 1) * slot], &want[..]);
            }
            digests.push(d.hex());
        }
        assert_eq!(digests[0], digests[1], "{pipeline:?}: cores change the images");
    }
}

#[test]
fn undecodable_records_fail_or_are_skipped() {
    let (dir, recs) = dataset(true);
    let results = run(dir.path(), ImagePipeline::train(32).u8(), 2, ErrorPolicy::Fail);
    let err = results.into_iter().find_map(Result::err).expect("the junk record must surface");
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("record 5"), "{err}");

    let batches: Vec<Batch> = run(dir.path(), ImagePipeline::train(32).u8(), 2, ErrorPolicy::Skip)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let skipped: Vec<u64> = batches.iter().flat_map(|b| b.skipped.clone()).collect();
    assert_eq!(skipped, [5]);
    for b in &batches {
        let images = b.images.as_ref().unwrap();
        assert_eq!(images.shape()[0], b.len(), "image rows follow the kept records");
        assert!(!b.indices.contains(&5));
        // Each row holds its own record's pixels after the compaction.
        let slot = 3 * 32 * 32;
        for (row, &index) in b.indices.iter().enumerate() {
            let want = standalone(ImagePipeline::train(32).u8(), &recs[index as usize], b.epoch, index);
            assert_eq!(&images.data()[row * slot..(row + 1) * slot], &want[..], "record {index}");
        }
    }
}

#[test]
fn undecodable_records_are_replaced_by_a_decodable_one() {
    let (dir, recs) = dataset(true);
    let mut digests = Vec::new();
    for cores in [1, 2] {
        let batches: Vec<Batch> = run(dir.path(), ImagePipeline::train(32).u8(), cores, ErrorPolicy::Replace)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(batches.iter().map(Batch::len).sum::<usize>(), 24, "shapes kept");
        let replaced: Vec<(u64, u64)> = batches.iter().flat_map(|b| b.replaced.clone()).collect();
        assert_eq!(replaced.len(), 1);
        assert_eq!(replaced[0].0, 5);
        let slot = 3 * 32 * 32;
        let mut d = Digest::default();
        for b in &batches {
            d.update(b);
            let images = b.images.as_ref().unwrap();
            assert_eq!(images.shape()[0], b.len());
            assert!(!b.indices.contains(&5));
            // The stand-in's row is its own decode, with its own randomness.
            for (row, &index) in b.indices.iter().enumerate() {
                let want = standalone(ImagePipeline::train(32).u8(), &recs[index as usize], b.epoch, index);
                assert_eq!(&images.data()[row * slot..(row + 1) * slot], &want[..], "record {index}");
            }
        }
        digests.push(d.hex());
    }
    assert_eq!(digests[0], digests[1]);
}

/// The run's first batch is decoded by every worker (each its share of
/// the positions); its rows must still be each record's own pixels, and
/// an undecodable record in a helper's share must follow the policy.
#[test]
fn the_shared_first_batch_holds_each_records_pixels() {
    use ringfeed::Shuffle;
    let first_of = |dir: &std::path::Path, cores: usize, policy: ErrorPolicy, batch: u64| {
        Loader::builder(dir)
            .batch_size(batch)
            .shuffle(Shuffle::Sequential)
            .seed(3)
            .cores(cores)
            .on_error(policy)
            .images(ImagePipeline::train(32).u8())
            .build()
            .unwrap()
            .next()
            .unwrap()
    };
    let first = |dir: &std::path::Path, cores: usize, policy: ErrorPolicy| first_of(dir, cores, policy, 8);
    let check_rows = |b: &Batch, recs: &[Vec<u8>]| {
        let images = b.images.as_ref().unwrap();
        let slot = 3 * 32 * 32;
        for (row, &index) in b.indices.iter().enumerate() {
            let want = standalone(ImagePipeline::train(32).u8(), &recs[index as usize], b.epoch, index);
            assert_eq!(&images.data()[row * slot..(row + 1) * slot], &want[..], "record {index}");
        }
    };
    let (dir, recs) = dataset(false);
    for cores in [2, 3] {
        let b = first(dir.path(), cores, ErrorPolicy::Fail).unwrap();
        assert_eq!(b.indices, (0..8).collect::<Vec<u64>>());
        check_rows(&b, &recs);
    }
    // Record 5 sits in the second worker's share (positions 4..8).
    let (dir, recs) = dataset(true);
    let b = first(dir.path(), 2, ErrorPolicy::Skip).unwrap();
    assert_eq!(b.skipped, [5]);
    assert_eq!(b.indices, [0, 1, 2, 3, 4, 6, 7]);
    check_rows(&b, &recs);
    let err = first(dir.path(), 2, ErrorPolicy::Fail).unwrap_err();
    assert!(err.to_string().contains("record 5"), "{err}");
    // With batches of 12, record 5 is in the owner's share (positions 0..6).
    let b = first_of(dir.path(), 2, ErrorPolicy::Skip, 12).unwrap();
    assert_eq!(b.skipped, [5]);
    check_rows(&b, &recs);
    let err = first_of(dir.path(), 2, ErrorPolicy::Fail, 12).unwrap_err();
    assert!(err.to_string().contains("record 5"), "{err}");
}

/// A resumed image loader (two cores: its first batch is decoded in shares
/// into one split allocation) continues with exactly the images the
/// uninterrupted run had, from mid-epoch and from an epoch's end.
#[test]
fn a_resumed_image_loader_yields_the_same_images() {
    let (dir, _) = dataset(false);
    let pipeline = ImagePipeline::train(24);
    let full: Vec<Batch> = loader(dir.path(), pipeline, 2, ErrorPolicy::Fail)
        .epochs(2)
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(full.len(), 10, "24 records in batches of 5, two epochs");
    for stop in [1, 3, 5, 6] {
        let mut first = loader(dir.path(), pipeline, 2, ErrorPolicy::Fail).epochs(2).build().unwrap();
        for _ in 0..stop {
            first.next().unwrap().unwrap();
        }
        let state = first.state();
        drop(first);
        let rest: Vec<Batch> = loader(dir.path(), pipeline, 2, ErrorPolicy::Fail)
            .resume(state)
            .epochs(2)
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rest.len(), full.len() - stop, "resumed after {stop} batches");
        for (got, want) in rest.iter().zip(&full[stop..]) {
            assert_eq!((got.epoch, got.index, &got.indices), (want.epoch, want.index, &want.indices));
            assert_eq!(got.images, want.images, "images of epoch {} batch {}", got.epoch, got.index);
        }
    }
}

#[test]
fn image_buffers_are_writable_and_go_back_to_the_pool() {
    let (dir, _) = dataset(false);
    let pipeline = ImagePipeline::train(32);
    let plan = || loader(dir.path(), pipeline, 2, ErrorPolicy::Fail).epochs(8).prefetch(2);
    let expected: Vec<Batch> = plan().build().unwrap().map(Result::unwrap).collect();
    let mut loader = plan().build().unwrap();
    let mut seen = 0;
    for batch in loader.by_ref() {
        let mut batch = batch.unwrap();
        let images = batch.images.take().expect("images requested");
        let want = expected[seen].images.as_ref().unwrap();
        assert_eq!((expected[seen].epoch, expected[seen].index), (batch.epoch, batch.index));
        let shape = images.shape();
        let mut buf = images.into_buffer();
        assert_eq!((buf.shape(), buf.dtype()), (shape, ImageDtype::F32));
        assert!(buf.as_bytes() == want.data(), "batch {}/{} differs", batch.epoch, batch.index);
        assert_eq!(buf.as_bytes().as_ptr().align_offset(4), 0);
        // The memory is the holder's: writes stick.
        buf.as_mut_bytes().fill(7);
        assert!(buf.as_bytes().iter().all(|&b| b == 7));
        seen += 1;
    }
    assert_eq!(seen, expected.len());
    // Every buffer went back to the pool when dropped: 8 epochs of batches
    // never needed more than the bounded pool holds.
    let m = loader.metrics();
    let one = expected.iter().map(|b| b.images.as_ref().unwrap().data().len() as u64).max().unwrap();
    assert!(m.batch_buffer_bytes_max < 24 * one.next_multiple_of(256 << 10), "{m:?}");

    // A clone shares nothing: its buffer is a copy, and the original's
    // bytes are untouched by writes to it.
    let b = &expected[0];
    let mut copy = b.images.clone().unwrap().into_buffer();
    copy.as_mut_bytes().fill(0);
    assert_ne!(b.images.as_ref().unwrap().data(), copy.as_bytes());
}
