//! The image presets and the per-request decode API as a dependent uses
//! them: `train`/`val` mean normalized f32 in both crates (`.u8()` for raw
//! pixels), an invalid pipeline fails at `build()`, a val decode needs no
//! generator, and a random one takes the generator types ringfeed-decode
//! re-exports (never a clash with the user's own `rand`).

use ringfeed::{Error, ImageDtype, ImagePipeline, Loader};
use ringfeed_decode::rand_core::SeedableRng;
use ringfeed_decode::rand_xoshiro::Xoshiro256PlusPlus;
use ringfeed_decode::{OutputMut, Pipeline};
use ringfeed_user::{image_folder, pack, png};

#[test]
fn presets_mean_normalized_f32_and_u8_is_asked_for() {
    let folder = image_folder(&["a", "b"], 4);
    let (dataset, _) = pack(&folder);
    for (pipeline, dtype) in [
        (ImagePipeline::train(32), ImageDtype::F32),
        (ImagePipeline::val(36, 32), ImageDtype::F32),
        (ImagePipeline::train(32).u8(), ImageDtype::U8),
    ] {
        let mut loader =
            Loader::builder(dataset.path()).batch_size(4).epochs(1).images(pipeline).build().expect("build");
        let batch = loader.next().expect("a batch").expect("no error");
        let images = batch.images.as_ref().expect("images");
        assert_eq!(images.dtype(), dtype, "{pipeline}");
        assert_eq!(images.shape(), [4, 3, 32, 32], "{pipeline}");
        match dtype {
            ImageDtype::F32 => {
                let values = images.as_f32().expect("f32 values");
                assert_eq!(values.len(), 4 * 3 * 32 * 32);
                // Normalized: some values fall below zero, none are raw bytes.
                assert!(values.iter().any(|&v| v < 0.0), "{pipeline}");
            }
            _ => assert!(images.as_f32().is_none(), "{pipeline}"),
        }
    }
}

#[test]
fn an_invalid_pipeline_fails_at_build() {
    let folder = image_folder(&["a"], 2);
    let (dataset, _) = pack(&folder);
    // A centre crop larger than the resize it is cut from.
    match Loader::builder(dataset.path()).images(ImagePipeline::val(32, 64)).build() {
        Err(e @ Error::Config(_)) => {
            let msg = e.to_string();
            assert!(msg.starts_with("invalid configuration:"), "{msg}");
            assert_eq!(msg.matches("invalid configuration").count(), 1, "{msg}");
        }
        other => panic!("expected a configuration error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_request_decodes_without_a_generator_and_random_ones_take_the_reexported_one() {
    let bytes = png(48, 40, 3);
    let mut val = Pipeline::val(36, 32).expect("val pipeline");
    let mut a = vec![0f32; 3 * 32 * 32];
    let mut b = vec![0f32; 3 * 32 * 32];
    val.run_val(&bytes, OutputMut::F32(&mut a)).expect("decode");
    // The same request gives the same pixels (no hidden randomness).
    val.run_val(&bytes, OutputMut::F32(&mut b)).expect("decode");
    assert_eq!(a, b);
    // A random pipeline takes a generator built from the re-exports.
    let mut train = Pipeline::train(32).expect("train pipeline");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    train.run(&bytes, &mut rng, OutputMut::F32(&mut b)).expect("decode");
    // run_val refuses a random pipeline rather than fix its draws.
    assert!(train.run_val(&bytes, OutputMut::F32(&mut b)).is_err());
}
