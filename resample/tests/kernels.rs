//! Every kernel computes the same bytes as the portable one, and the
//! portable one computes what an exact (f64) two-pass bilinear resize with
//! Pillow's weights computes, to within rounding.
//!
//! The SIMD tests say which kernels ran (`cargo test -- --nocapture`), and
//! assert that they are the ones the CPU supports; on a CPU without them
//! they print "skipped: no avx512" / "skipped: no avx2" and return, rather
//! than comparing the portable kernels with themselves.

use std::cell::RefCell;
use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use ringfeed_resample::{Error, Image, Kernels, Resampler, Target};

/// Whether the CPU has exactly what the AVX-512 kernels enable (F, BW,
/// VBMI, VNNI).
fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vbmi")
        && std::is_x86_feature_detected!("avx512vnni");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the CPU has what the AVX2 kernels enable.
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The SIMD kernels `kernels` selects and their name, or `None` (after
/// printing "skipped: ...") when this CPU cannot run them.
fn simd(kernels: Kernels) -> Option<&'static str> {
    let (name, present) = match kernels {
        Kernels::Fastest => ("avx512", has_avx512()),
        Kernels::Avx2 => ("avx2", has_avx2()),
        _ => unreachable!("portable kernels are not SIMD"),
    };
    if !present {
        println!("skipped: no {name}");
        return None;
    }
    assert_eq!(Resampler::with_kernels(kernels).kernels(), name, "{kernels:?} on a CPU with {name}");
    println!("{kernels:?}: {name} kernels selected");
    Some(name)
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

/// A smooth image with some noise: gradients catch misplaced taps,
/// noise catches misplaced channels.
fn picture(w: u32, h: u32, seed: u64) -> Vec<u8> {
    let n = noise((w * h * 3) as usize, seed);
    (0..(w * h * 3) as usize)
        .map(|i| {
            let (p, c) = (i / 3, i % 3);
            let (x, y) = ((p as u32 % w) as usize, (p as u32 / w) as usize);
            ((x * (c + 1) * 3 + y * (3 - c) * 2) % 200) as u8 + n[i] % 56
        })
        .collect()
}

/// One resample: an image, a box in it, an output size, mirrored or not.
#[derive(Clone, Copy)]
struct Case<'a> {
    img: &'a [u8],
    w: u32,
    h: u32,
    crop: [f64; 4],
    out: (u32, u32),
    mirror: bool,
}

impl Case<'_> {
    fn resample_into(&self, kernels: Kernels, target: Target<'_>) {
        let image = Image { data: self.img, width: self.w, height: self.h };
        Resampler::with_kernels(kernels).resample(image, self.crop, self.out, self.mirror, target).unwrap();
    }

    fn values(&self) -> usize {
        3 * (self.out.0 * self.out.1) as usize
    }

    fn bytes(&self, kernels: Kernels) -> Vec<u8> {
        self.bytes_with(kernels).0
    }

    /// The bytes, and which kernels made them.
    fn bytes_with(&self, kernels: Kernels) -> (Vec<u8>, (&'static str, &'static str)) {
        let mut dst = vec![0u8; self.values()];
        let image = Image { data: self.img, width: self.w, height: self.h };
        let mut r = Resampler::with_kernels(kernels);
        r.resample(image, self.crop, self.out, self.mirror, Target::U8(&mut dst)).unwrap();
        (dst, r.last_kernels().unwrap())
    }

    fn floats(&self, kernels: Kernels) -> Vec<f32> {
        let mut dst = vec![0f32; self.values()];
        self.resample_into(kernels, Target::F32 { out: &mut dst, affine: AFFINE });
        dst
    }
}

const AFFINE: [(f32, f32); 3] = [(0.017_124, -2.117_9), (0.017_507, -2.035_7), (0.017_429, -1.804_4)];

/// One random geometry: image size and seed, crop box fractions, output
/// size, mirroring.
type Geometry = (u32, u32, u64, f64, f64, f64, f64, u32, u32, bool);

fn geometry() -> impl Strategy<Value = Geometry> {
    (
        1u32..520,
        1u32..400,
        any::<u64>(),
        0.0f64..1.0,
        0.0f64..1.0,
        0.01f64..1.2,
        0.01f64..1.2,
        1u32..260,
        1u32..260,
        any::<bool>(),
    )
}

fn crop_of((w, h, _, fl, ft, fw, fh, ..): Geometry) -> [f64; 4] {
    [fl * f64::from(w) - 2.0, ft * f64::from(h) - 1.0, fw * f64::from(w), fh * f64::from(h)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn portable_floats_are_the_affine_map_of_the_bytes(g in geometry()) {
        let (w, h, seed, .., ow, oh, mirror) = g;
        let img = picture(w, h, seed);
        let case = Case { img: &img, w, h, crop: crop_of(g), out: (ow, oh), mirror };
        let portable = case.bytes(Kernels::Portable);
        let floats = case.floats(Kernels::Portable);
        for (i, (&f, &b)) in floats.iter().zip(&portable).enumerate() {
            let (a, c) = AFFINE[i / (ow * oh) as usize];
            prop_assert_eq!(f.to_bits(), (f32::from(b) * a + c).to_bits());
        }
    }
}

/// `kernels` computes the portable kernels' bytes and floats on random
/// geometry; prints which kernels ran how often, and asserts the SIMD
/// ones (`name`) ran both passes.
fn agree_bit_for_bit(kernels: Kernels, name: &str) {
    let ran = RefCell::new(BTreeMap::new());
    let mut runner = TestRunner::new(Config { cases: 300, failure_persistence: None, ..Config::default() });
    runner
        .run(&geometry(), |g| {
            let (w, h, seed, .., ow, oh, mirror) = g;
            let img = picture(w, h, seed);
            let case = Case { img: &img, w, h, crop: crop_of(g), out: (ow, oh), mirror };
            let (bytes, used) = case.bytes_with(kernels);
            *ran.borrow_mut().entry(used).or_insert(0) += 1;
            prop_assert_eq!(&bytes, &case.bytes(Kernels::Portable));
            let floats = case.floats(Kernels::Portable);
            let other = case.floats(kernels);
            prop_assert!(other.iter().zip(&floats).all(|(a, b)| a.to_bits() == b.to_bits()));
            Ok(())
        })
        .unwrap();
    let ran = ran.into_inner();
    println!("{kernels:?}: (vertical, horizontal) kernels run per case: {ran:?}");
    assert!(ran.keys().any(|&(v, _)| v == name), "the {name} vertical kernel never ran");
    assert!(ran.keys().any(|&(_, h)| h == name), "the {name} horizontal kernel never ran");
}

#[test]
fn avx512_kernels_agree_bit_for_bit() {
    if let Some(name) = simd(Kernels::Fastest) {
        agree_bit_for_bit(Kernels::Fastest, name);
    }
}

#[test]
fn avx2_kernels_agree_bit_for_bit() {
    if let Some(name) = simd(Kernels::Avx2) {
        agree_bit_for_bit(Kernels::Avx2, name);
    }
}

#[test]
fn kernel_selection_follows_the_cpu() {
    let fastest = if has_avx512() {
        "avx512"
    } else if has_avx2() {
        "avx2"
    } else {
        "portable"
    };
    println!("this CPU: avx512 (f, bw, vbmi, vnni) {}, avx2 {}", has_avx512(), has_avx2());
    assert_eq!(Resampler::new().kernels(), fastest);
    assert_eq!(
        Resampler::with_kernels(Kernels::Avx2).kernels(),
        if has_avx2() { "avx2" } else { "portable" }
    );
    assert_eq!(Resampler::with_kernels(Kernels::Portable).kernels(), "portable");
    let mut r = Resampler::with_kernels(Kernels::Portable);
    assert_eq!(r.last_kernels(), None);
    let img = picture(64, 64, 1);
    let mut out = vec![0u8; 3 * 32 * 32];
    let image = Image { data: &img, width: 64, height: 64 };
    r.resample(image, [0.0, 0.0, 64.0, 64.0], (32, 32), false, Target::U8(&mut out)).unwrap();
    assert_eq!(r.last_kernels(), Some(("portable", "portable")));
}

/// The typical training shapes (224 output from crops 0.5x to 2.7x of it)
/// on `kernels`, including the widths that leave ragged row ends: all run
/// on the `name` kernels, both passes.
fn typical_crops_agree(kernels: Kernels, name: &str) {
    // 493 wide: a 2.2x downscale, five-tap windows.
    for (w, h, out) in
        [(300, 250, 224), (448, 400, 224), (493, 300, 224), (150, 120, 224), (605, 330, 224), (257, 999, 231)]
    {
        let img = picture(w, h, u64::from(w));
        for mirror in [false, true] {
            let crop = [1.5, 2.25, f64::from(w) - 3.0, f64::from(h) - 4.5];
            let case = Case { img: &img, w, h, crop, out: (out, out), mirror };
            let (bytes, used) = case.bytes_with(kernels);
            assert_eq!(used, (name, name), "{w}x{h}");
            assert_eq!(bytes, case.bytes(Kernels::Portable), "{w}x{h}");
        }
    }
    println!("{kernels:?}: {name} kernels ran every typical crop");
}

#[test]
fn typical_crops_agree_avx512() {
    if let Some(name) = simd(Kernels::Fastest) {
        typical_crops_agree(Kernels::Fastest, name);
    }
}

#[test]
fn typical_crops_agree_avx2() {
    if let Some(name) = simd(Kernels::Avx2) {
        typical_crops_agree(Kernels::Avx2, name);
    }
}

/// Exact separable resize in f64 with Pillow's (unquantized) weights.
fn reference(img: &[u8], w: u32, h: u32, crop: [f64; 4], out: (u32, u32)) -> Vec<f64> {
    fn taps(size: u32, lo: f64, len: f64, out: u32) -> Vec<Vec<(usize, f64)>> {
        let scale = len / f64::from(out);
        let fs = scale.max(1.0);
        (0..out)
            .map(|i| {
                let center = lo + (f64::from(i) + 0.5) * scale;
                let first = ((center - fs + 0.5) as i64).max(0) as usize;
                let end = ((center + fs + 0.5) as i64).min(i64::from(size)) as usize;
                let ws: Vec<(usize, f64)> = (first..end)
                    .map(|x| (x, (1.0 - ((x as f64 - center + 0.5) / fs).abs()).max(0.0)))
                    .collect();
                let total: f64 = ws.iter().map(|p| p.1).sum();
                ws.into_iter().map(|(x, v)| (x, v / total)).collect()
            })
            .collect()
    }
    let tx = taps(w, crop[0], crop[2], out.0);
    let ty = taps(h, crop[1], crop[3], out.1);
    let mut res = vec![0.0; 3 * (out.0 * out.1) as usize];
    let plane = (out.0 * out.1) as usize;
    for (y, ry) in ty.iter().enumerate() {
        for (x, rx) in tx.iter().enumerate() {
            for c in 0..3 {
                let mut v = 0.0;
                for &(sy, wy) in ry {
                    for &(sx, wx) in rx {
                        v += wy * wx * f64::from(img[(sy * w as usize + sx) * 3 + c]);
                    }
                }
                res[c * plane + y * out.0 as usize + x] = v;
            }
        }
    }
    res
}

#[test]
fn matches_an_exact_resize_to_within_rounding() {
    for (w, h, crop, out) in [
        (300, 250, [10.3, 5.7, 270.0, 230.5], (112, 100)),
        (120, 90, [0.0, 0.0, 120.0, 90.0], (224, 224)),
        (640, 480, [100.0, 50.0, 400.0, 380.0], (96, 96)),
    ] {
        let img = picture(w, h, 7);
        let exact = reference(&img, w, h, crop, out);
        let ours = Case { img: &img, w, h, crop, out, mirror: false }.bytes(Kernels::Portable);
        let worst = exact.iter().zip(&ours).map(|(e, &o)| (e - f64::from(o)).abs()).fold(0.0, f64::max);
        let mean =
            exact.iter().zip(&ours).map(|(e, &o)| (e - f64::from(o)).abs()).sum::<f64>() / exact.len() as f64;
        // Two roundings to bytes (after each pass): at most one level.
        assert!(worst <= 1.0 + 1e-9, "{w}x{h} -> {out:?}: worst {worst}");
        assert!(mean < 0.5, "{w}x{h} -> {out:?}: mean {mean}");
    }
}

#[test]
fn mirroring_reverses_each_row() {
    let (w, h) = (333, 211);
    let img = picture(w, h, 3);
    let crop = [7.0, 3.0, 300.0, 200.0];
    let plain = Case { img: &img, w, h, crop, out: (224, 224), mirror: false }.bytes(Kernels::Fastest);
    let mirrored = Case { img: &img, w, h, crop, out: (224, 224), mirror: true }.bytes(Kernels::Fastest);
    for (a, b) in plain.chunks(224).zip(mirrored.chunks(224)) {
        assert!(a.iter().eq(b.iter().rev()));
    }
}

#[test]
fn bad_buffers_and_boxes_are_errors() {
    let img = picture(10, 10, 1);
    let mut r = Resampler::new();
    let mut out = vec![0u8; 3 * 16];
    let image = Image { data: &img, width: 10, height: 10 };
    let short = Image { data: &img[1..], width: 10, height: 10 };
    assert!(matches!(
        r.resample(short, [0.0, 0.0, 10.0, 10.0], (4, 4), false, Target::U8(&mut out)),
        Err(Error::Buffer(_))
    ));
    assert!(matches!(
        r.resample(image, [0.0, 0.0, 10.0, 10.0], (4, 5), false, Target::U8(&mut out)),
        Err(Error::Buffer(_))
    ));
    for crop in [
        [0.0, 0.0, 0.0, 10.0],
        [0.0, 0.0, 10.0, -1.0],
        [f64::NAN, 0.0, 10.0, 10.0],
        [0.0, 0.0, f64::INFINITY, 1.0],
    ] {
        assert!(
            matches!(r.resample(image, crop, (4, 4), false, Target::U8(&mut out)), Err(Error::Geometry(_))),
            "{crop:?}"
        );
    }
    // A box entirely outside the image is clamped onto its edge.
    r.resample(image, [50.0, 50.0, 5.0, 5.0], (4, 4), false, Target::U8(&mut out)).unwrap();
}

/// One resampler reused across images keeps per-geometry layouts; they
/// must follow every change of size, box, output or mirroring (on the
/// `name` kernels).
fn a_reused_resampler_matches_fresh_ones(kernels: Kernels, name: &str) {
    let shapes = [
        (300, 250, [1.5, 2.0, 290.0, 240.0], (224, 224), false),
        (300, 250, [1.5, 2.0, 290.0, 240.0], (224, 224), false),
        (300, 250, [1.5, 2.0, 290.0, 240.0], (224, 224), true),
        (301, 250, [1.5, 2.0, 290.0, 240.0], (224, 224), true),
        (900, 250, [0.0, 2.0, 890.0, 240.0], (224, 224), true),
        // Too wide a downscale for the AVX-512 horizontal kernel: AVX2 runs it.
        (1400, 100, [0.0, 0.0, 1400.0, 100.0], (224, 224), false),
        (300, 250, [1.5, 2.0, 290.0, 240.0], (224, 224), false),
        (300, 250, [1.5, 2.0, 290.0, 240.0], (100, 224), false),
        (120, 90, [0.0, 0.0, 120.0, 90.0], (224, 224), false),
        (120, 90, [0.0, 0.0, 120.0, 90.0], (224, 224), false),
    ];
    let mut reused = Resampler::with_kernels(kernels);
    for (i, &(w, h, crop, out, mirror)) in shapes.iter().enumerate() {
        let img = picture(w, h, i as u64 % 3);
        let mut dst = vec![0u8; 3 * (out.0 * out.1) as usize];
        let image = Image { data: &img, width: w, height: h };
        reused.resample(image, crop, out, mirror, Target::U8(&mut dst)).unwrap();
        assert_eq!(dst, Case { img: &img, w, h, crop, out, mirror }.bytes(Kernels::Portable), "step {i}");
        // A downscale too wide for the AVX-512 horizontal kernel falls
        // back to AVX2.
        let horizontal = if name == "avx512" && i == 5 { "avx2" } else { name };
        assert_eq!(reused.last_kernels(), Some((name, horizontal)), "step {i}");
    }
    println!("{kernels:?}: {name} kernels ran every step");
}

#[test]
fn a_reused_resampler_matches_fresh_ones_avx512() {
    if let Some(name) = simd(Kernels::Fastest) {
        a_reused_resampler_matches_fresh_ones(Kernels::Fastest, name);
    }
}

#[test]
fn a_reused_resampler_matches_fresh_ones_avx2() {
    if let Some(name) = simd(Kernels::Avx2) {
        a_reused_resampler_matches_fresh_ones(Kernels::Avx2, name);
    }
}

#[test]
fn a_reused_resampler_matches_fresh_ones_portable() {
    a_reused_resampler_matches_fresh_ones(Kernels::Portable, "portable");
}
