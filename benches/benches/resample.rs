//! The pipeline's crop + resize + normalize + `[3, 224, 224]` write, on
//! real decoded pixels (the decode crate's 1280x960 fixture): ringfeed's
//! fused resampler with each kernel set, against what the pipeline did
//! before it, fast_image_resize on RGBX pixels (its fastest 8-bit path)
//! followed by a separate normalize-and-split pass. Crops as the train
//! transform produces them: a downscale of about 2x, one of about 1.3x,
//! and an upscale.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fast_image_resize::images::{Image as FirImage, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use ringfeed_decode::{Decoder, Limits, Pixels, Scale};
use ringfeed_resample::{Image, Kernels, Resampler, Target};

const SIDE: u32 = 224;
const AFFINE: [(f32, f32); 3] = [(0.017_124, -2.117_9), (0.017_507, -2.035_7), (0.017_429, -1.804_4)];

/// fast_image_resize into RGBX, then the planes: the pipeline's former
/// path, kept here as the baseline.
fn fir_then_write(
    fir: &mut Resizer,
    rgbx: &[u8],
    w: u32,
    h: u32,
    crop: [f64; 4],
    rgba: &mut [u8],
    out: &mut [f32],
) {
    let src = ImageRef::new(w, h, rgbx, PixelType::U8x4).expect("source");
    let mut dst = FirImage::from_slice_u8(SIDE, SIDE, rgba, PixelType::U8x4).expect("destination");
    let opts = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
        .use_alpha(false)
        .crop(crop[0], crop[1], crop[2], crop[3]);
    fir.resize(&src, &mut dst, &opts).expect("resize");
    let hw = (SIDE * SIDE) as usize;
    let (r, rest) = out.split_at_mut(hw);
    let (g, b) = rest.split_at_mut(hw);
    for (i, px) in rgba.chunks_exact(4).enumerate() {
        r[i] = f32::from(px[0]) * AFFINE[0].0 + AFFINE[0].1;
        g[i] = f32::from(px[1]) * AFFINE[1].0 + AFFINE[1].1;
        b[i] = f32::from(px[2]) * AFFINE[2].0 + AFFINE[2].1;
    }
}

fn bench(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../decode/tests/fixtures");
    let jpeg = std::fs::read(dir.join("big.jpg")).expect("fixture");
    let mut px = Pixels::default();
    Decoder::new(Limits::default()).unwrap().decode_into(&jpeg, Scale::FULL, false, &mut px).unwrap();
    let rgbx: Vec<u8> = px.data.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect();
    let image = Image { data: &px.data, width: px.width, height: px.height };
    let mut out = vec![0f32; 3 * (SIDE * SIDE) as usize];
    let mut rgba = vec![0u8; 4 * (SIDE * SIDE) as usize];
    for (name, crop) in [
        ("down_2x", [101.3, 57.8, 448.6, 401.2]),
        ("down_1.3x", [640.0, 300.5, 300.2, 250.9]),
        ("up_1.6x", [900.7, 700.2, 150.4, 120.3]),
    ] {
        let mut g = c.benchmark_group(format!("crop_resize_normalize_{name}"));
        for (label, kernels) in [
            ("ringfeed_fastest", Kernels::Fastest),
            ("ringfeed_avx2", Kernels::Avx2),
            ("ringfeed_portable", Kernels::Portable),
        ] {
            let mut r = Resampler::with_kernels(kernels);
            let mut mirror = false;
            g.bench_function(label, |b| {
                b.iter(|| {
                    // Alternate the flip so that the per-geometry layouts
                    // are rebuilt every time, as they are for random crops.
                    mirror = !mirror;
                    let target = Target::F32 { out: &mut out, affine: AFFINE };
                    r.resample(image, black_box(crop), (SIDE, SIDE), mirror, target).unwrap()
                })
            });
        }
        let mut fir = Resizer::new();
        g.bench_function("fast_image_resize_then_write", |b| {
            b.iter(|| {
                fir_then_write(&mut fir, &rgbx, px.width, px.height, black_box(crop), &mut rgba, &mut out)
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
