//! The presets' meaning (normalized f32 unless `.u8()`), the RNG-free val
//! call, the re-exported RNG crate, and configuration checks.

use std::path::PathBuf;

// Only the re-exports: a caller needs no `rand_core` / `rand_xoshiro`
// dependency of its own, so no version can clash.
use ringfeed_decode::rand_core::{Rng, SeedableRng};
use ringfeed_decode::rand_xoshiro::Xoshiro256PlusPlus;
use ringfeed_decode::{
    Error, IMAGENET_MEAN, IMAGENET_STD, Layout, Limits, MAX_OUTPUT_SIDE, Output, OutputMut, Pipeline,
    Transform,
};

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Compiles only if the trait named through the re-export is the one
/// `Pipeline::run` takes.
fn run_with<R: Rng>(p: &mut Pipeline, bytes: &[u8], rng: &mut R) -> Vec<f32> {
    let mut out = vec![0f32; p.output_len()];
    p.run(bytes, rng, OutputMut::F32(&mut out)).unwrap();
    out
}

#[test]
fn presets_are_normalized_f32_and_u8_is_raw() {
    let imagenet = Output::F32 { mean: IMAGENET_MEAN, std: IMAGENET_STD };
    assert_eq!(Pipeline::train(32).unwrap().output(), imagenet);
    assert_eq!(Pipeline::val(36, 32).unwrap().output(), imagenet);
    assert_eq!(Pipeline::train(32).unwrap().u8().output(), Output::U8);
    assert_eq!(Pipeline::val(36, 32).unwrap().u8().output(), Output::U8);

    // `.u8()` gives the pixels that normalization maps to the f32 values.
    let jpeg = fixture("rgb.jpg");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let f = run_with(&mut Pipeline::train(32).unwrap(), &jpeg, &mut rng);
    let mut bytes = vec![0u8; 3 * 32 * 32];
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    Pipeline::train(32).unwrap().u8().run(&jpeg, &mut rng, OutputMut::U8(&mut bytes)).unwrap();
    for (i, (&v, &b)) in f.iter().zip(&bytes).enumerate() {
        let c = i / (32 * 32);
        let want = (f32::from(b) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        assert!((v - want).abs() < 1e-5, "value {i}: {v} vs {want}");
    }
    // A u8 pipeline refuses an f32 slot (and the other way round).
    let mut p = Pipeline::val(36, 32).unwrap().u8();
    let err = p.run_val(&jpeg, OutputMut::F32(&mut vec![0f32; p.output_len()])).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[test]
fn run_val_needs_no_generator_and_matches_run() {
    for name in ["rgb.jpg", "rgb.png", "gray.jpg", "tiny_64x48.jpg"] {
        let bytes = fixture(name);
        let mut p = Pipeline::val(40, 32).unwrap();
        let mut plain = vec![0f32; p.output_len()];
        let applied = p.run_val(&bytes, OutputMut::F32(&mut plain)).unwrap();
        assert!(!applied.flipped);
        for seed in [0, 1, 99] {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            assert_eq!(run_with(&mut p, &bytes, &mut rng), plain, "{name}, seed {seed}");
        }
        let mut raw = Pipeline::val(40, 32).unwrap().u8();
        let mut out = vec![0u8; raw.output_len()];
        raw.run_val(&bytes, OutputMut::U8(&mut out)).unwrap();
    }
    // A train pipeline's crop and flip are random: it needs `run`.
    let mut train = Pipeline::train(32).unwrap();
    let err =
        train.run_val(&fixture("rgb.jpg"), OutputMut::F32(&mut vec![0f32; train.output_len()])).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(err.to_string().contains("use run"), "{err}");
    assert!(!Transform::Val { resize: 40, crop: 32 }.is_random());
    assert!(Transform::Train { size: 32, scale: (0.08, 1.0), ratio: (0.75, 1.25), flip: 0.5 }.is_random());
}

#[test]
fn invalid_transforms_are_refused_by_validate_and_new() {
    let train = |size, scale, ratio, flip| Transform::Train { size, scale, ratio, flip };
    let ok = (0.08, 1.0);
    let ratio = (0.75, 4.0 / 3.0);
    let cases = [
        (Transform::Val { resize: 200, crop: 224 }, "center crop 224 is larger than the resize 200"),
        (Transform::Val { resize: 0, crop: 0 }, "output side 0 must be in 1..=8192"),
        (train(0, ok, ratio, 0.5), "output side 0 must be in 1..=8192"),
        (train(MAX_OUTPUT_SIDE + 1, ok, ratio, 0.5), "output side 8193 must be in 1..=8192"),
        (train(32, (0.0, 1.0), ratio, 0.5), "scale range"),
        (train(32, (0.5, 0.2), ratio, 0.5), "scale range"),
        (train(32, (0.5, 1.5), ratio, 0.5), "scale range"),
        (train(32, (f64::NAN, 1.0), ratio, 0.5), "scale range"),
        (train(32, ok, (0.0, 1.0), 0.5), "ratio range"),
        (train(32, ok, (1.0, f64::INFINITY), 0.5), "ratio range"),
        (train(32, ok, ratio, 1.5), "flip probability 1.5"),
        (train(32, ok, ratio, f64::NAN), "flip probability"),
    ];
    for (t, want) in cases {
        let err = t.validate().unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{t:?}: {err}");
        let message = err.to_string();
        assert!(message.starts_with("invalid configuration: ") && message.contains(want), "{t:?}: {message}");
        let err = Pipeline::new(t, Layout::Chw, Output::U8, false, Limits::default()).unwrap_err();
        assert_eq!(err.to_string(), message, "new checks what validate checks");
    }
    // The edges of each range pass.
    let val = Transform::Val { resize: 224, crop: 224 };
    val.validate().unwrap();
    assert_eq!(val.output_side(), 224);
    let largest = train(MAX_OUTPUT_SIDE, (1.0, 1.0), (1.0, 1.0), 0.0);
    largest.validate().unwrap();
    assert_eq!(largest.output_side(), MAX_OUTPUT_SIDE);
}
