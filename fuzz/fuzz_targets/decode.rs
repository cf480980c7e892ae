//! JPEG/PNG decode + augment with parameters taken from the input: the
//! first 8 bytes choose the pipeline (train or val, output side, layout,
//! element type, grayscale, EXIF orientation) and the RNG seed; the rest is
//! the image. Errors are fine; panics, hangs and unbounded allocation are
//! not (limits are lowered so that bombs fail fast).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::SeedableRng;
use ringfeed_decode::{Layout, Limits, Output, OutputMut, Pipeline, Transform};

fuzz_target!(|data: &[u8]| {
    let Some((params, image)) = data.split_first_chunk::<8>() else { return };
    let side = 1 + u32::from(params[0] % 64);
    let transform = if params[1] & 1 == 0 {
        let lo = f64::from(params[2].max(1)) / 255.0;
        let ratio = 0.5 + f64::from(params[3]) / 128.0;
        Transform::Train { size: side, scale: (lo, 1.0), ratio: (ratio.min(1.0), ratio.max(1.0)), flip: 0.5 }
    } else {
        Transform::Val { resize: side + u32::from(params[2] % 32), crop: side }
    };
    let layout = if params[1] & 2 == 0 { Layout::Chw } else { Layout::Hwc };
    let output = if params[1] & 4 == 0 {
        Output::U8
    } else {
        Output::F32 { mean: ringfeed_decode::IMAGENET_MEAN, std: ringfeed_decode::IMAGENET_STD }
    };
    let gray = params[1] & 8 != 0;
    let limits = Limits { max_width: 4096, max_height: 4096, max_pixels: 4 << 20, max_alloc: 64 << 20 };
    let Ok(p) = Pipeline::new(transform, layout, output, gray, limits) else { return };
    let mut p = p.with_exif_orientation(params[1] & 16 != 0);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(u64::from(params[4]) | u64::from(params[5]) << 8);
    match output {
        Output::U8 => {
            let mut out = vec![0u8; p.output_len()];
            let _ = p.run(image, &mut rng, OutputMut::U8(&mut out));
        }
        _ => {
            let mut out = vec![0f32; p.output_len()];
            let _ = p.run(image, &mut rng, OutputMut::F32(&mut out));
        }
    }
});
