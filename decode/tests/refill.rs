//! A decode is sized by the header of the bytes it is given, never by one
//! read earlier (issue #12): the decoder once cached JPEG headers by buffer
//! address and length, so a buffer refilled with another JPEG of the same
//! length was decoded with the old header and libjpeg-turbo wrote past the
//! output.

use std::path::PathBuf;

use ringfeed_decode::{Decoder, Format, Limits, Pixels, Scale};

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `bytes` decoded by a decoder that has seen nothing else.
fn fresh(bytes: &[u8], scale: Scale) -> Pixels {
    let mut px = Pixels::default();
    Decoder::new(Limits::default()).unwrap().decode_into(bytes, scale, false, &mut px).unwrap();
    px
}

#[test]
fn a_buffer_refilled_with_another_jpeg_of_the_same_length_decodes_the_new_one() {
    let (small, big) = (fixture("tiny_16x16.jpg"), fixture("tiny_64x48.jpg"));
    assert!(small.len() < big.len());
    let expected = fresh(&big, Scale::FULL);
    assert_eq!((expected.width, expected.height), (64, 48));

    for scale in [Scale::FULL, Scale { denom: 2 }] {
        // One buffer: the small JPEG padded after its EOI to the big one's
        // length, then overwritten in place (same address, same length).
        let mut buf = small.clone();
        buf.resize(big.len(), 0);
        let mut d = Decoder::new(Limits::default()).unwrap();
        let info = d.info(&buf).unwrap();
        assert_eq!((info.format, info.width, info.height), (Format::Jpeg, 16, 16));
        let before = buf.as_ptr();
        buf.copy_from_slice(&big);
        assert_eq!((buf.as_ptr(), buf.len()), (before, big.len()));

        let mut px = Pixels::default();
        assert_eq!(d.decode_into(&buf, scale, false, &mut px).unwrap(), scale);
        let want = fresh(&big, scale);
        assert_eq!((px.width, px.height), (scale.apply(64), scale.apply(48)));
        assert_eq!(px, want, "1/{}: the refilled buffer decodes as the big JPEG", scale.denom);

        // The same with a region (the crop path) after another `info`.
        buf[..small.len()].copy_from_slice(&small);
        buf[small.len()..].fill(0);
        assert_eq!(d.info(&buf).unwrap().width, 16);
        buf.copy_from_slice(&big);
        let region = Some([8.0, 4.0, 40.0, 40.0]);
        let decoded = d.decode_region_into(&buf, scale, region, false, &mut px).unwrap();
        let mut want = Pixels::default();
        let mut other = Decoder::new(Limits::default()).unwrap();
        assert_eq!(other.decode_region_into(&big, scale, region, false, &mut want).unwrap(), decoded);
        assert_eq!(decoded.scaled, (scale.apply(64), scale.apply(48)));
        assert_eq!(px, want);
    }
}

#[test]
fn decoding_after_info_of_another_image_is_right() {
    let names = ["tiny_16x16.jpg", "tiny_64x48.jpg", "rgb.jpg", "rgb.png", "cmyk.jpg", "gray16.png"];
    let images: Vec<Vec<u8>> = names.iter().map(|n| fixture(n)).collect();
    let expected: Vec<Pixels> = images.iter().map(|b| fresh(b, Scale::FULL)).collect();
    let mut d = Decoder::new(Limits::default()).unwrap();
    let mut px = Pixels::default();
    for (i, seen) in images.iter().enumerate() {
        for (j, decoded) in images.iter().enumerate() {
            d.info(seen).unwrap();
            d.decode_into(decoded, Scale::FULL, false, &mut px).unwrap();
            assert_eq!(px, expected[j], "info({}) then decode({})", names[i], names[j]);
        }
    }
}
