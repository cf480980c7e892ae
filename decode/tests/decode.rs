//! Decoding every supported flavour, hostile inputs, and agreement with
//! Pillow's resize for the same crop boxes.

use std::path::PathBuf;

use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::SeedableRng;
use ringfeed_decode::{
    Decoder, Error, Layout, Limits, Output, OutputMut, Pipeline, Pixels, Scale, Transform,
};

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn decode(name: &str, scale: Scale, gray: bool) -> Pixels {
    let mut d = Decoder::new(Limits::default()).unwrap();
    let mut px = Pixels::default();
    d.decode_into(&fixture(name), scale, gray, &mut px).unwrap();
    px
}

fn mean(px: &Pixels) -> f64 {
    px.data.iter().map(|&v| f64::from(v)).sum::<f64>() / px.data.len() as f64
}

#[test]
fn every_flavour_decodes_to_rgb_of_the_right_size() {
    let reference = decode("rgb.png", Scale::FULL, false);
    for name in [
        "rgb.jpg",
        "progressive.jpg",
        "gray.jpg",
        "cmyk.jpg",
        "rgb.png",
        "rgba.png",
        "gray_alpha.png",
        "palette.png",
        "gray16.png",
    ] {
        let px = decode(name, Scale::FULL, false);
        assert_eq!((px.width, px.height, px.channels), (480, 360, 3), "{name}");
        assert_eq!(px.data.len(), 480 * 360 * 3);
        // Same scene everywhere: lossy and gray versions stay close on average.
        let diff = (mean(&px) - mean(&reference)).abs();
        assert!(diff < 12.0, "{name}: mean differs by {diff}");
    }
    // Lossless versions agree exactly where the content is the same.
    assert_eq!(decode("rgba.png", Scale::FULL, false).data, reference.data, "alpha is dropped, not blended");
}

#[test]
fn grayscale_output_and_gray_sources() {
    let px = decode("rgb.jpg", Scale::FULL, true);
    assert_eq!((px.channels, px.data.len()), (1, 480 * 360));
    let g = decode("gray.jpg", Scale::FULL, false);
    assert!(
        g.data.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]),
        "gray JPEG expands to equal channels"
    );
}

#[test]
fn dct_scaling_decodes_fewer_pixels_of_the_same_picture() {
    let full = decode("big.jpg", Scale::FULL, false);
    for denom in [2, 4, 8] {
        let px = decode("big.jpg", Scale { denom }, false);
        assert_eq!((px.width, px.height), (1280 / denom, 960 / denom));
        assert!((mean(&px) - mean(&full)).abs() < 2.0, "1/{denom} changes the picture");
    }
    // PNG has no DCT: the scale is ignored and reported as full.
    let mut d = Decoder::new(Limits::default()).unwrap();
    let mut px = Pixels::default();
    assert_eq!(d.decode_into(&fixture("rgb.png"), Scale { denom: 4 }, false, &mut px).unwrap(), Scale::FULL);
}

#[test]
fn hostile_inputs_are_errors_by_fault() {
    let mut d = Decoder::new(Limits::default()).unwrap();
    let mut px = Pixels::default();
    let mut dec = |bytes: &[u8]| d.decode_into(bytes, Scale::FULL, false, &mut px);
    // Wrong magic, empty input.
    assert!(matches!(dec(b"GIF89a....."), Err(Error::Corrupt(_))));
    assert!(matches!(dec(b""), Err(Error::Corrupt(_))));
    // Truncated JPEG and PNG.
    assert!(dec(&fixture("truncated.jpg")).is_err());
    let png = fixture("rgb.png");
    assert!(matches!(dec(&png[..png.len() / 2]), Err(Error::Corrupt(_))));
    assert!(matches!(dec(&png[..20]), Err(Error::Corrupt(_))));
    // Garbage after a valid JPEG marker.
    let mut junk = vec![0xFF, 0xD8, 0xFF, 0xE0];
    junk.extend(std::iter::repeat_n(0x5A, 500));
    assert!(dec(&junk).unwrap_err().is_bad_input());
    // Found by fuzzing: a palette of 166 bytes (not whole RGB triples) made
    // the png crate panic; it is refused as corrupt, in decode and header.
    let bad_palette = fixture("bad_palette.png");
    assert!(matches!(dec(&bad_palette), Err(Error::Corrupt(m)) if m.contains("palette")));
    assert!(matches!(Decoder::new(Limits::default()).unwrap().info(&bad_palette), Err(Error::Corrupt(_))));
    let mut p = ringfeed_decode::Pipeline::train(32).unwrap();
    let mut out = vec![0f32; p.output_len()];
    let mut rng =
        <rand_xoshiro::Xoshiro256PlusPlus as rand_xoshiro::rand_core::SeedableRng>::seed_from_u64(1);
    assert!(p.run(&bad_palette, &mut rng, ringfeed_decode::OutputMut::F32(&mut out)).is_err());
}

/// A PNG header (with valid CRC) claiming `w` x `h` pixels and no data.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut v = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
    v.extend(&ihdr);
    v.extend(crc32(&ihdr).to_be_bytes());
    v
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn decompression_bombs_and_empty_images_hit_limits_before_allocation() {
    let mut d = Decoder::new(Limits::default()).unwrap();
    let mut px = Pixels::default();
    let err = d.decode_into(&png_header(100_000, 100_000), Scale::FULL, false, &mut px).unwrap_err();
    assert!(matches!(err, Error::Limits(_)), "{err}");
    assert!(px.data.capacity() == 0, "nothing was allocated for the bomb");
    let err = d.decode_into(&png_header(0, 10), Scale::FULL, false, &mut px).unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    let mut small = Decoder::new(Limits { max_pixels: 1000, ..Limits::default() }).unwrap();
    let err = small.decode_into(&fixture("rgb.jpg"), Scale::FULL, false, &mut px).unwrap_err();
    assert!(matches!(err, Error::Limits(_)), "{err}");
}

/// Mean absolute difference between our resize of a box and Pillow's.
fn mad_against_pillow(image: &str, box_: [f64; 4], reference: &str) -> f64 {
    let mut d = Decoder::new(Limits::default()).unwrap();
    let mut ref_px = Pixels::default();
    d.decode_into(&fixture(reference), Scale::FULL, false, &mut ref_px).unwrap();
    let t = Transform::Val { resize: 224, crop: 224 };
    let mut p = Pipeline::new(t, Layout::Hwc, Output::U8, false, Limits::default()).unwrap();
    let mut out = vec![0u8; p.output_len()];
    p.run_box(&fixture(image), box_, OutputMut::U8(&mut out)).unwrap();
    out.iter().zip(&ref_px.data).map(|(&a, &b)| f64::from(a.abs_diff(b))).sum::<f64>() / out.len() as f64
}

#[test]
fn resized_crops_match_pillow_within_two_levels() {
    let refs: serde_json::Value = serde_json::from_slice(&fixture("references.json")).unwrap();
    for case in refs["cases"].as_array().unwrap() {
        let b: Vec<f64> = case["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let mad = mad_against_pillow(
            case["image"].as_str().unwrap(),
            [b[0], b[1], b[2], b[3]],
            case["reference"].as_str().unwrap(),
        );
        assert!(mad <= 2.0, "{case}: mean absolute difference {mad:.3}");
    }
}

#[test]
fn same_bytes_and_seed_give_the_same_output_and_draws_vary() {
    let bytes = fixture("big.jpg");
    let mut p = Pipeline::train(224).unwrap();
    let mut run = |seed| {
        let mut out = vec![0f32; p.output_len()];
        let applied =
            p.run(&bytes, &mut Xoshiro256PlusPlus::seed_from_u64(seed), OutputMut::F32(&mut out)).unwrap();
        (out, applied)
    };
    let (a, applied) = run(5);
    let (b, _) = run(5);
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    let (c, _) = run(6);
    assert_ne!(a, c);
    assert_eq!(applied.source, (1280, 960));
    // A crop much larger than 224 is decoded at a reduced DCT scale.
    let scales: Vec<u32> = (0..40).map(|s| run(s).1.scale.denom).collect();
    assert!(scales.iter().any(|&d| d > 1), "{scales:?}");
    // Normalized ImageNet values stay in their possible range.
    assert!(a.iter().all(|v| (-2.2..=2.7).contains(v)));
}

#[test]
fn layouts_and_dtypes_agree() {
    let bytes = fixture("rgb.jpg");
    let t = Transform::Val { resize: 256, crop: 224 };
    let mut hwc = Pipeline::new(t, Layout::Hwc, Output::U8, false, Limits::default()).unwrap();
    let mut chw = Pipeline::new(t, Layout::Chw, Output::U8, false, Limits::default()).unwrap();
    let mut f = Pipeline::val(256, 224).unwrap();
    assert_eq!(hwc.output_shape(), [224, 224, 3]);
    assert_eq!(chw.output_shape(), [3, 224, 224]);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let (mut a, mut b, mut c) = (vec![0u8; 150_528], vec![0u8; 150_528], vec![0f32; 150_528]);
    hwc.run(&bytes, &mut rng, OutputMut::U8(&mut a)).unwrap();
    chw.run(&bytes, &mut rng, OutputMut::U8(&mut b)).unwrap();
    f.run(&bytes, &mut rng, OutputMut::F32(&mut c)).unwrap();
    for (i, px) in a.chunks_exact(3).enumerate() {
        for ch in 0..3 {
            assert_eq!(px[ch], b[ch * 50_176 + i]);
            let expect = (f32::from(px[ch]) / 255.0 - ringfeed_decode::IMAGENET_MEAN[ch])
                / ringfeed_decode::IMAGENET_STD[ch];
            assert!((c[ch * 50_176 + i] - expect).abs() < 1e-5);
        }
    }
    // Wrong output slots are configuration errors, not panics.
    assert!(matches!(hwc.run(&bytes, &mut rng, OutputMut::U8(&mut [0u8; 10])), Err(Error::Config(_))));
    assert!(matches!(hwc.run(&bytes, &mut rng, OutputMut::F32(&mut c)), Err(Error::Config(_))));
}

#[test]
fn flips_mirror_the_unflipped_output() {
    let bytes = fixture("rgb.jpg");
    let t =
        |flip| Transform::Train { size: 64, scale: (1.0, 1.0), ratio: (480.0 / 360.0, 480.0 / 360.0), flip };
    let mut never = Pipeline::new(t(0.0), Layout::Hwc, Output::U8, false, Limits::default()).unwrap();
    let mut always = Pipeline::new(t(1.0), Layout::Hwc, Output::U8, false, Limits::default()).unwrap();
    let (mut a, mut b) = (vec![0u8; 64 * 64 * 3], vec![0u8; 64 * 64 * 3]);
    assert!(
        !never.run(&bytes, &mut Xoshiro256PlusPlus::seed_from_u64(1), OutputMut::U8(&mut a)).unwrap().flipped
    );
    assert!(
        always.run(&bytes, &mut Xoshiro256PlusPlus::seed_from_u64(1), OutputMut::U8(&mut b)).unwrap().flipped
    );
    for y in 0..64 {
        for x in 0..64 {
            let (p, q) = ((y * 64 + x) * 3, (y * 64 + 63 - x) * 3);
            assert_eq!(a[p..p + 3], b[q..q + 3]);
        }
    }
}

#[test]
fn bad_pipeline_configurations_are_rejected() {
    let bad = [
        Transform::Train { size: 0, scale: (0.08, 1.0), ratio: (0.75, 1.33), flip: 0.5 },
        Transform::Train { size: 224, scale: (0.5, 0.1), ratio: (0.75, 1.33), flip: 0.5 },
        Transform::Train { size: 224, scale: (0.08, 1.0), ratio: (0.75, 1.33), flip: 2.0 },
        Transform::Val { resize: 200, crop: 224 },
    ];
    for t in bad {
        assert!(
            matches!(
                Pipeline::new(t, Layout::Chw, Output::U8, false, Limits::default()),
                Err(Error::Config(_))
            ),
            "{t:?}"
        );
    }
}

#[test]
fn exif_orientation_is_ignored_by_default_and_applied_on_request() {
    let refs: serde_json::Value = serde_json::from_slice(&fixture("references.json")).unwrap();
    let case = &refs["exif"];
    let b: Vec<f64> = case["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let bytes = fixture("exif_rotated.jpg");
    let t = Transform::Val { resize: 224, crop: 224 };
    let mut upright = Pipeline::new(t, Layout::Hwc, Output::U8, false, Limits::default())
        .unwrap()
        .with_exif_orientation(true);
    let mut out = vec![0u8; upright.output_len()];
    let applied = upright.run_box(&bytes, [b[0], b[1], b[2], b[3]], OutputMut::U8(&mut out)).unwrap();
    assert_eq!(applied.source, (360, 480), "width and height swap for a 90-degree rotation");
    let mut d = Decoder::new(Limits::default()).unwrap();
    let mut reference = Pixels::default();
    d.decode_into(&fixture(case["reference"].as_str().unwrap()), Scale::FULL, false, &mut reference).unwrap();
    let mad = out.iter().zip(&reference.data).map(|(&a, &r)| f64::from(a.abs_diff(r))).sum::<f64>()
        / out.len() as f64;
    assert!(mad <= 2.0, "EXIF-rotated output differs from PIL's exif_transpose by {mad:.3}");
    // Default: stored orientation, like torchvision.
    let mut plain = Pipeline::new(t, Layout::Hwc, Output::U8, false, Limits::default()).unwrap();
    let applied = plain.run_box(&bytes, [0.0, 0.0, 100.0, 100.0], OutputMut::U8(&mut out)).unwrap();
    assert_eq!(applied.source, (480, 360));
}
