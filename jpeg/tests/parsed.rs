//! A decode is sized by the header of the bytes it decodes, whatever was
//! parsed in between (issue #12: `header(small)` then `decompress(big)`
//! wrote past the output).

use ringfeed_jpeg::{Decompressor, PixelFormat, Region};

const SMALL: &[u8] = include_bytes!("../../decode/tests/fixtures/tiny_16x16.jpg");
const BIG: &[u8] = include_bytes!("../../decode/tests/fixtures/tiny_64x48.jpg");

fn decode_alone(jpeg: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut d = Decompressor::new().unwrap();
    let parsed = d.header(jpeg).unwrap();
    let h = parsed.header();
    let mut out = vec![0; h.width as usize * h.height as usize * 3];
    d.decompress(&parsed, 1, None, PixelFormat::Rgb, &mut out).unwrap();
    (h.width, h.height, out)
}

#[test]
fn each_parsed_header_decodes_its_own_bytes_whatever_was_parsed_since() {
    let (small, big) = (decode_alone(SMALL), decode_alone(BIG));
    assert_eq!((small.0, small.1, big.0, big.1), (16, 16, 64, 48));

    let mut d = Decompressor::new().unwrap();
    let a = d.header(SMALL).unwrap();
    // The handle's last parse is now the big image: the small one's
    // decode must still be the small one's size and pixels.
    let b = d.header(BIG).unwrap();
    let mut out = vec![0; 16 * 16 * 3];
    d.decompress(&a, 1, None, PixelFormat::Rgb, &mut out).unwrap();
    assert_eq!(out, small.2);
    // And the other way round, on another decompressor too.
    let mut out = vec![0; 64 * 48 * 3];
    Decompressor::new().unwrap().decompress(&b, 1, None, PixelFormat::Rgb, &mut out).unwrap();
    assert_eq!(out, big.2);
    // A buffer sized for the other image is refused before libjpeg runs.
    let mut wrong = vec![0; 16 * 16 * 3];
    let err = d.decompress(&b, 1, None, PixelFormat::Rgb, &mut wrong).unwrap_err();
    assert!(err.message.contains("output holds 768 bytes"), "{err}");
    assert_eq!(a.bytes(), SMALL);
}

#[test]
fn regions_and_scales_are_checked_against_the_parsed_header() {
    let mut d = Decompressor::new().unwrap();
    let small = d.header(SMALL).unwrap();
    let _big = d.header(BIG).unwrap();
    let mut out = vec![0; 32 * 8 * 3];
    // Inside the big image, outside the small one whose bytes are decoded.
    let region = Some(Region { x: 0, y: 0, width: 32, height: 8 });
    let err = d.decompress(&small, 1, region, PixelFormat::Rgb, &mut out).unwrap_err();
    assert!(err.message.contains("invalid region"), "{err}");
    // An edge that wraps around u32 is still outside.
    let wrapping = Some(Region { x: u32::MAX - 15, y: 0, width: 16, height: 8 });
    let mut out16 = vec![0; 16 * 8 * 3];
    let err = d.decompress(&small, 1, wrapping, PixelFormat::Rgb, &mut out16).unwrap_err();
    assert!(err.message.contains("invalid region"), "{err}");
    let wrapping = Some(Region { x: 0, y: u32::MAX - 3, width: 8, height: 8 });
    let mut out8 = vec![0; 8 * 8 * 3];
    let err = d.decompress(&small, 1, wrapping, PixelFormat::Rgb, &mut out8).unwrap_err();
    assert!(err.message.contains("invalid region"), "{err}");
    let err = d.decompress(&small, 3, None, PixelFormat::Rgb, &mut out).unwrap_err();
    assert!(err.message.contains("unsupported scale"), "{err}");
    // Half scale of the small image: 8x8.
    let mut out = vec![0; 8 * 8 * 3];
    d.decompress(&small, 2, None, PixelFormat::Rgb, &mut out).unwrap();
}

/// `Decompressor` is `Send` (an `unsafe impl`): made on one thread, used
/// and dropped on another, with a header parsed on the first.
#[test]
fn a_decompressor_moves_between_threads() {
    let expected = decode_alone(BIG).2;
    let mut d = Decompressor::new().unwrap();
    let parsed = d.header(BIG).unwrap();
    let got = std::thread::scope(|s| {
        s.spawn(move || {
            let mut out = vec![0; 64 * 48 * 3];
            d.decompress(&parsed, 1, None, PixelFormat::Rgb, &mut out).unwrap();
            out
        })
        .join()
        .unwrap()
    });
    assert_eq!(got, expected);
}
