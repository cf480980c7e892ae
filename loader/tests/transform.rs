//! Caller-supplied sample transforms: applied to every sample on the
//! worker cores, reproducibly; a rejected sample follows the error policy;
//! a panic becomes an error naming the record instead of a dead worker.

mod common;

use common::images::{dataset, loader, standalone_with_rng};
use ringfeed::rand_xoshiro::rand_core::Rng;
use ringfeed::{Batch, Digest, Error, ErrorPolicy, ImagePipeline, Loader, SamplePixels, SampleTransform};

/// Inverts (u8) or negates (f32) every value and overwrites the first one
/// with a draw from the sample's generator.
fn invert_and_draw() -> SampleTransform {
    SampleTransform::new(|sample, rng| {
        let draw = rng.next_u32();
        match sample.pixels {
            SamplePixels::U8(v) => {
                v.iter_mut().for_each(|x| *x = 255 - *x);
                v[0] = draw as u8;
            }
            SamplePixels::F32(v) => {
                v.iter_mut().for_each(|x| *x = -*x);
                v[0] = draw as f32;
            }
            _ => return Err("unexpected pixel type".into()),
        }
        Ok(())
    })
}

/// What `invert_and_draw` makes of `record` at (epoch, index).
fn expected(pipeline: ImagePipeline, record: &[u8], epoch: u64, index: u64) -> Vec<u8> {
    // The draw continues the sample's generator after the pipeline's own
    // draws, which a standalone run repeats.
    let (plain, mut rng) = standalone_with_rng(pipeline, record, epoch, index);
    let draw = rng.next_u32();
    if pipeline.output == ringfeed::ImageOutput::U8 {
        let mut v: Vec<u8> = plain.iter().map(|x| 255 - x).collect();
        v[0] = draw as u8;
        v
    } else {
        let mut v: Vec<f32> =
            plain.chunks_exact(4).map(|c| -f32::from_ne_bytes(c.try_into().unwrap())).collect();
        v[0] = draw as f32;
        v.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }
}

#[test]
fn a_transform_changes_every_sample_reproducibly() {
    let (dir, recs) = dataset(false);
    for pipeline in [ImagePipeline::train(48).u8(), ImagePipeline::train(32)] {
        let mut digests = Vec::new();
        // Two cores share the first batch between them: both paths run it.
        for cores in [1, 2] {
            let batches: Vec<Batch> = loader(dir.path(), pipeline, cores, ErrorPolicy::Fail)
                .sample_transform(invert_and_draw())
                .build()
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(batches.iter().map(Batch::len).sum::<usize>(), 24);
            let mut d = Digest::default();
            for b in &batches {
                d.update(b);
                let images = b.images.as_ref().unwrap();
                let slot = images.data().len() / b.len();
                for (i, &index) in b.indices.iter().enumerate() {
                    let want = expected(pipeline, &recs[index as usize], b.epoch, index);
                    assert_eq!(&images.data()[i * slot..(i + 1) * slot], &want[..], "record {index}");
                }
            }
            digests.push(d.hex());
        }
        assert_eq!(digests[0], digests[1], "{pipeline:?}: cores change the transformed images");
    }
}

/// The position of `index` in the run's delivery order (batch, slot), with
/// 2 cores and batches of 5.
fn batch_of(dir: &std::path::Path, index: u64) -> usize {
    let order: Vec<Batch> = loader(dir, ImagePipeline::train(16).u8(), 1, ErrorPolicy::Fail)
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    order.iter().position(|b| b.indices.contains(&index)).unwrap()
}

#[test]
fn a_panicking_transform_ends_the_stream_with_an_error_naming_the_record() {
    let (dir, _) = dataset(false);
    // One record in the first batch (decoded in shares by both cores) and
    // one in a later batch.
    let first: Vec<Batch> = loader(dir.path(), ImagePipeline::train(16).u8(), 1, ErrorPolicy::Fail)
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for target in [first[0].indices[4], first[3].indices[2]] {
        for cores in [1, 2] {
            for policy in [ErrorPolicy::Fail, ErrorPolicy::Skip, ErrorPolicy::Replace] {
                let transform = SampleTransform::new(move |sample, _| {
                    assert_ne!(sample.index, target, "this record upsets the transform");
                    Ok(())
                });
                let results: Vec<_> = loader(dir.path(), ImagePipeline::train(16).u8(), cores, policy)
                    .sample_transform(transform)
                    .build()
                    .unwrap()
                    .collect();
                let (last, delivered) = results.split_last().unwrap();
                match last {
                    Err(Error::Transform { index, message, panicked: true }) => {
                        assert_eq!(*index, target);
                        assert!(message.contains("this record upsets the transform"), "{message}");
                    }
                    other => panic!("{cores} cores, {policy:?}: expected a transform panic, got {other:?}"),
                }
                // Every batch before the error is whole and does not hold it;
                // nothing after it.
                assert_eq!(delivered.len(), batch_of(dir.path(), target), "{cores} cores, {policy:?}");
                for b in delivered {
                    let b = b.as_ref().unwrap();
                    assert_eq!(b.len(), 5);
                    assert!(!b.indices.contains(&target));
                }
            }
        }
    }
}

#[test]
fn a_rejected_sample_follows_the_error_policy() {
    let (dir, _) = dataset(false);
    let target = 11;
    let reject =
        || {
            SampleTransform::new(move |sample, _| {
                if sample.index == target { Err("cannot use this one".into()) } else { Ok(()) }
            })
        };
    for cores in [1, 2] {
        let run = |policy| -> (Vec<ringfeed::Result<Batch>>, ringfeed::MetricsSnapshot) {
            let mut l = loader(dir.path(), ImagePipeline::train(16).u8(), cores, policy)
                .sample_transform(reject())
                .build()
                .unwrap();
            let results = (&mut l).collect();
            (results, l.metrics())
        };
        let (fail, _) = run(ErrorPolicy::Fail);
        match fail.last().unwrap() {
            Err(Error::Transform { index: 11, message, panicked: false }) => {
                assert_eq!(message, "cannot use this one");
            }
            other => panic!("expected a transform error, got {other:?}"),
        }

        let (skip, metrics) = run(ErrorPolicy::Skip);
        let skip: Vec<Batch> = skip.into_iter().map(Result::unwrap).collect();
        let indices: Vec<u64> = skip.iter().flat_map(|b| b.indices.clone()).collect();
        assert_eq!(indices.len(), 23);
        assert!(!indices.contains(&target));
        assert_eq!((metrics.skipped, metrics.corrupt), (1, 1));
        assert!(
            metrics.corrupt_locations[0].contains("cannot use this one"),
            "{:?}",
            metrics.corrupt_locations
        );

        let (replace, metrics) = run(ErrorPolicy::Replace);
        let replace: Vec<Batch> = replace.into_iter().map(Result::unwrap).collect();
        assert_eq!(replace.iter().map(Batch::len).sum::<usize>(), 24);
        let pairs: Vec<(u64, u64)> = replace.iter().flat_map(|b| b.replaced.clone()).collect();
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].0, target);
        assert_ne!(pairs[0].1, target);
        assert_eq!(metrics.replaced, 1);
    }
}

#[test]
fn a_transform_needs_an_image_pipeline() {
    let (dir, _) = dataset(false);
    let err = Loader::builder(dir.path()).sample_transform(invert_and_draw()).build().unwrap_err();
    assert!(matches!(err, Error::Config(ref m) if m.contains("image pipeline")), "{err}");
}
