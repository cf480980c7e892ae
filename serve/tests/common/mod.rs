//! Shared helpers: fixtures, generated images, row checksums.
#![allow(dead_code, unreachable_pub)]

use ringfeed_serve::BatchData;

/// A fixture of ringfeed-decode's tests.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../decode/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The photos of the fixtures (JPEG and PNG, several sizes and modes).
pub const PHOTOS: &[&str] = &[
    "rgb.jpg",
    "big.jpg",
    "progressive.jpg",
    "gray.jpg",
    "cmyk.jpg",
    "tiny_64x48.jpg",
    "rgb.png",
    "palette.png",
    "rgba.png",
    "gray16.png",
];

/// An RGB PNG of `w`×`h` pseudo-random pixels from `seed`.
pub fn png(w: u32, h: u32, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let pixels: Vec<u8> = (0..w * h * 3)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    png_from(w, h, &pixels)
}

/// An RGB PNG of the given pixels.
pub fn png_from(w: u32, h: u32, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(pixels).unwrap();
    drop(writer);
    out
}

/// FNV-1a over the values' bits.
pub fn checksum(data: BatchData<'_>) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    match data {
        BatchData::U8(d) => d.iter().for_each(|&b| eat(b)),
        BatchData::F32(d) => d.iter().flat_map(|v| v.to_bits().to_le_bytes()).for_each(&mut eat),
        _ => unreachable!(),
    }
    h
}
