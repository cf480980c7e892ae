//! `ImagePipeline` as a user meets it: the presets mean what
//! `ringfeed_decode::Pipeline`'s do (normalized f32 unless `.u8()`), an
//! invalid pipeline is refused by `build()` with one "invalid
//! configuration:" prefix, and f32 batches read as aligned `&[f32]`.

mod common;

use common::images::{dataset, loader, standalone};
use ringfeed::{Batch, Error, ErrorPolicy, ImageDtype, ImageOutput, ImagePipeline, ImageTransform, Loader};

#[test]
fn presets_mean_the_same_in_both_crates() {
    let pairs = [
        (ImagePipeline::train(224), ringfeed_decode::Pipeline::train(224).unwrap()),
        (ImagePipeline::val(256, 224), ringfeed_decode::Pipeline::val(256, 224).unwrap()),
        (ImagePipeline::train(224).u8(), ringfeed_decode::Pipeline::train(224).unwrap().u8()),
        (ImagePipeline::val(256, 224).u8(), ringfeed_decode::Pipeline::val(256, 224).unwrap().u8()),
    ];
    for (ours, theirs) in pairs {
        assert_eq!(ours.output, theirs.output(), "{ours}");
    }
    let imagenet =
        ImageOutput::F32 { mean: ringfeed_decode::IMAGENET_MEAN, std: ringfeed_decode::IMAGENET_STD };
    assert_eq!(ImagePipeline::train(224).output, imagenet);
    assert_eq!(ImagePipeline::train(224).u8().normalized(), ImagePipeline::train(224));
    assert_eq!(
        ImagePipeline::val(256, 224).to_string(),
        "Resize(256) + CenterCrop(224), normalized f32 (mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225])"
    );
    assert_eq!(
        ImagePipeline::train(224).u8().to_string(),
        "RandomResizedCrop(224, scale=(0.08, 1), ratio=(0.75, 1.3333333333333333)) + RandomHorizontalFlip(0.5), u8"
    );
}

/// The error `build()` gives for `pipeline` on a real image dataset.
fn refused(dir: &std::path::Path, pipeline: ImagePipeline) -> String {
    match loader(dir, pipeline, 1, ErrorPolicy::Fail).build() {
        Err(e @ Error::Config(_)) => e.to_string(),
        Err(other) => panic!("{pipeline:?}: expected a configuration error, got {other}"),
        Ok(_) => panic!("{pipeline:?}: accepted"),
    }
}

#[test]
fn invalid_pipelines_fail_at_build_with_one_prefix() {
    let (dir, _) = dataset(false);
    let train = |scale, ratio, flip| ImagePipeline {
        transform: ImageTransform::Train { size: 32, scale, ratio, flip },
        output: ImageOutput::U8,
    };
    let cases = [
        (ImagePipeline::val(100, 224), "val resize must be 224..=16384, got 100"),
        (ImagePipeline::train(0), "image side must be 1..=8192, got 0"),
        (ImagePipeline::val(0, 0), "image side must be 1..=8192, got 0"),
        (train((0.0, 1.0), (0.75, 1.25), 0.5), "image pipeline: scale range (0.0, 1.0)"),
        (train((0.08, 1.0), (2.0, 1.0), 0.5), "image pipeline: ratio range (2.0, 1.0)"),
        (train((0.08, 1.0), (0.75, 1.25), 2.0), "image pipeline: flip probability 2 is not in [0, 1]"),
    ];
    for (pipeline, want) in cases {
        let message = refused(dir.path(), pipeline);
        assert!(message.starts_with("invalid configuration: "), "{message}");
        assert_eq!(message.matches("invalid configuration").count(), 1, "one prefix: {message}");
        assert!(message.contains(want), "{message:?} does not contain {want:?}");
        // `validate` refuses what the decoder would refuse, with the same words.
        if message.contains("image pipeline:") {
            assert_eq!(pipeline.validate().unwrap_err().to_string(), message);
        }
    }
    ImagePipeline::train(224).validate().unwrap();
    ImagePipeline::val(256, 224).u8().validate().unwrap();
}

#[test]
fn f32_images_read_as_aligned_f32_values() {
    let (dir, recs) = dataset(false);
    for cores in [1, 2] {
        // Two cores: the first batch is decoded in shares into one split
        // allocation; later batches come from the pool.
        let batches: Vec<Batch> = loader(dir.path(), ImagePipeline::val(40, 32), cores, ErrorPolicy::Fail)
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for b in &batches {
            let images = b.images.as_ref().unwrap();
            assert_eq!(images.dtype(), ImageDtype::F32);
            for copy in [images, &images.clone()] {
                let values = copy.as_f32().expect("f32 images");
                assert_eq!(values.as_ptr().align_offset(align_of::<f32>()), 0);
                assert_eq!(values.len(), images.shape().iter().product::<usize>());
                // Native byte order: the same values as the bytes read with
                // `from_ne_bytes`, and as a standalone decode.
                let from_bytes: Vec<f32> =
                    copy.data().chunks_exact(4).map(|c| f32::from_ne_bytes(c.try_into().unwrap())).collect();
                assert_eq!(values, &from_bytes[..]);
            }
            let slot = 3 * 32 * 32;
            let values = images.as_f32().unwrap();
            let want =
                standalone(ImagePipeline::val(40, 32), &recs[b.indices[0] as usize], b.epoch, b.indices[0]);
            assert_eq!(bytemuck_bytes(&values[..slot]), want);
        }
    }
    let b = Loader::builder(dir.path())
        .batch_size(4)
        .images(ImagePipeline::val(40, 32).u8())
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let images = b.images.as_ref().unwrap();
    assert_eq!((images.dtype(), images.as_f32()), (ImageDtype::U8, None));
}

fn bytemuck_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}
