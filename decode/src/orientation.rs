//! EXIF orientation: read from a JPEG's APP1 segment and applied to decoded
//! pixels, for callers who ask for it (torchvision and this crate ignore it
//! by default).

use crate::pixels::Pixels;

/// The EXIF orientation (1–8) of a JPEG, 1 when absent or unreadable.
pub(crate) fn jpeg_orientation(jpeg: &[u8]) -> u8 {
    let mut pos = 2;
    while let (Some(&0xFF), Some(&marker)) = (jpeg.get(pos), jpeg.get(pos + 1)) {
        if matches!(marker, 0xDA | 0xD9)
            || (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
        {
            return 1; // EXIF comes before the frame header
        }
        let Some(len) = jpeg.get(pos + 2..pos + 4).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            return 1;
        };
        let segment = jpeg.get(pos + 4..pos + 2 + len).unwrap_or(&[]);
        if marker == 0xE1
            && let Some(tiff) = segment.strip_prefix(b"Exif\0\0")
        {
            return tiff_orientation(tiff).unwrap_or(1);
        }
        pos += 2 + len;
    }
    1
}

/// Tag 0x0112 of IFD0 of a TIFF structure, bounds-checked throughout.
fn tiff_orientation(tiff: &[u8]) -> Option<u8> {
    let big = match tiff.get(..2)? {
        b"MM" => true,
        b"II" => false,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b = tiff.get(at..at + 2)?;
        Some(if big { u16::from_be_bytes([b[0], b[1]]) } else { u16::from_le_bytes([b[0], b[1]]) })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b = tiff.get(at..at + 4)?;
        let a = [b[0], b[1], b[2], b[3]];
        Some(if big { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    };
    let ifd = usize::try_from(u32_at(4)?).ok()?;
    let count = usize::from(u16_at(ifd)?);
    (0..count)
        .find_map(|i| {
            let entry = ifd + 2 + 12 * i;
            (u16_at(entry)? == 0x0112).then(|| u16_at(entry + 8)).flatten()
        })
        .and_then(|v| u8::try_from(v).ok())
        .filter(|v| (1..=8).contains(v))
}

/// Whether orientation `o` swaps width and height.
pub(crate) fn swaps_axes(o: u8) -> bool {
    o >= 5
}

/// Writes `src` turned upright according to orientation `o` into `dst`.
pub(crate) fn apply(src: &Pixels, o: u8, dst: &mut Pixels) {
    let (w, h) = (src.width as usize, src.height as usize);
    let (dw, dh) = if swaps_axes(o) { (h, w) } else { (w, h) };
    dst.reshape(dw as u32, dh as u32, src.channels);
    let c = src.channels as usize;
    for y in 0..dh {
        for x in 0..dw {
            let (sx, sy) = match o {
                2 => (w - 1 - x, y),
                3 => (w - 1 - x, h - 1 - y),
                4 => (x, h - 1 - y),
                5 => (y, x),
                6 => (y, h - 1 - x),
                7 => (w - 1 - y, h - 1 - x),
                8 => (w - 1 - y, x),
                _ => (x, y),
            };
            let (d, s) = ((y * dw + x) * c, (sy * w + sx) * c);
            dst.data[d..d + c].copy_from_slice(&src.data[s..s + c]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(o: u8) -> Pixels {
        // 3x2 gray image 0 1 2 / 3 4 5, oriented.
        let src = Pixels { width: 3, height: 2, channels: 1, data: vec![0, 1, 2, 3, 4, 5] };
        let mut dst = Pixels::default();
        apply(&src, o, &mut dst);
        dst
    }

    #[test]
    fn orientations_match_their_definitions() {
        assert_eq!(tiny(1).data, [0, 1, 2, 3, 4, 5]);
        assert_eq!(tiny(2).data, [2, 1, 0, 5, 4, 3]);
        assert_eq!(tiny(3).data, [5, 4, 3, 2, 1, 0]);
        assert_eq!(tiny(4).data, [3, 4, 5, 0, 1, 2]);
        // 90° clockwise: the left column, bottom up, becomes the top row.
        let r = tiny(6);
        assert_eq!((r.width, r.height, r.data), (2, 3, vec![3, 0, 4, 1, 5, 2]));
        assert_eq!(tiny(8).data, [2, 5, 1, 4, 0, 3]);
        assert_eq!(tiny(5).data, [0, 3, 1, 4, 2, 5]);
        assert_eq!(tiny(7).data, [5, 2, 4, 1, 3, 0]);
    }

    #[test]
    fn exif_parsing_is_bounds_checked() {
        assert_eq!(jpeg_orientation(b""), 1);
        assert_eq!(jpeg_orientation(&[0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x40, b'E', b'x']), 1);
        let mut exif = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x22];
        exif.extend(b"Exif\0\0II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0\0\0\0\0");
        assert_eq!(jpeg_orientation(&exif), 6);
    }
}
