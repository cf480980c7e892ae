//! Bytes in, pixels out: JPEG through libjpeg-turbo (with DCT-domain
//! downscaling), PNG through the `png` crate. Format is sniffed from the
//! magic bytes, never from a file name.

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::pixels::Pixels;

/// Image container formats this crate decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// JPEG (baseline, progressive, lossless-8-bit, arithmetic; gray, YCbCr,
    /// RGB, CMYK, YCCK).
    Jpeg,
    /// PNG (1–16-bit, gray, palette, RGB, with or without alpha).
    Png,
}

/// What a header says about an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    /// The container format.
    pub format: Format,
    /// Full-resolution width.
    pub width: u32,
    /// Full-resolution height.
    pub height: u32,
}

/// A DCT-domain scale factor `1/denom` applied while decoding a JPEG
/// (1, 2, 4 or 8; always 1 for PNG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// The reduction: the decoded image is `ceil(width / denom)` wide.
    pub denom: u32,
}

impl Scale {
    /// Full resolution.
    pub const FULL: Scale = Scale { denom: 1 };

    /// The largest reduction (up to 1/8) that keeps a `crop_w` × `crop_h`
    /// region at least `min_w` × `min_h` pixels, so resizing the decoded
    /// region never enlarges it. What a RandomResizedCrop needs: decode
    /// only as many pixels as the output can show.
    pub fn for_region(crop_w: f64, crop_h: f64, min_w: u32, min_h: u32) -> Scale {
        let mut denom = 1;
        for d in [2u32, 4, 8] {
            if crop_w / f64::from(d) >= f64::from(min_w) && crop_h / f64::from(d) >= f64::from(min_h) {
                denom = d;
            }
        }
        Scale { denom }
    }

    /// A dimension after scaling (libjpeg rounds up).
    pub fn apply(&self, dim: u32) -> u32 {
        dim.div_ceil(self.denom)
    }
}

fn sniff(bytes: &[u8]) -> Result<Format> {
    match bytes {
        [0xFF, 0xD8, 0xFF, ..] => Ok(Format::Jpeg),
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Ok(Format::Png),
        [] => Err(Error::Corrupt("empty input".into())),
        _ => Err(Error::Corrupt(format!(
            "unknown image format (first bytes {:02x?}); JPEG and PNG are decoded",
            &bytes[..bytes.len().min(8)]
        ))),
    }
}

/// Where a decoded region sits in the (possibly DCT-scaled) image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decoded {
    /// The DCT scale applied.
    pub scale: Scale,
    /// Size of the whole image at that scale.
    pub scaled: (u32, u32),
    /// Top-left corner of the decoded pixels in the scaled image.
    pub origin: (u32, u32),
}

/// A reusable decoder: holds a libjpeg-turbo handle and scratch memory, so
/// decoding many images allocates nothing in steady state. Not `Sync`:
/// use one per thread.
pub struct Decoder {
    limits: Limits,
    jpeg: ringfeed_jpeg::Decompressor,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").field("limits", &self.limits).finish_non_exhaustive()
    }
}

fn tj_error(e: ringfeed_jpeg::JpegError) -> Error {
    let msg = e.message;
    let lower = msg.to_ascii_lowercase();
    if lower.contains("unsupported") || lower.contains("not supported") || lower.contains("precision") {
        Error::Unsupported(format!("JPEG: {msg}"))
    } else {
        Error::Corrupt(format!("JPEG: {msg}"))
    }
}

impl Decoder {
    /// A decoder that enforces `limits`.
    pub fn new(limits: Limits) -> Result<Self> {
        let jpeg = ringfeed_jpeg::Decompressor::new()
            .map_err(|e| Error::Unsupported(format!("cannot initialise libjpeg-turbo: {e}")))?;
        Ok(Decoder { limits, jpeg, scratch: Vec::new() })
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Reads the header: format and full-resolution size.
    pub fn info(&mut self, bytes: &[u8]) -> Result<ImageInfo> {
        match sniff(bytes)? {
            Format::Jpeg => {
                let h = self.jpeg.header(bytes).map_err(tj_error)?.header();
                Ok(ImageInfo { format: Format::Jpeg, width: h.width, height: h.height })
            }
            Format::Png => {
                check_png_palette(bytes)?;
                let reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().map_err(png_error)?;
                let i = reader.info();
                Ok(ImageInfo { format: Format::Png, width: i.width, height: i.height })
            }
        }
    }

    /// Decodes `bytes` into `out` as RGB (or grayscale when `gray`),
    /// reduced by `scale` in the DCT domain when the image is a JPEG.
    /// Returns the scale actually applied (PNG is always full size).
    pub fn decode_into(&mut self, bytes: &[u8], scale: Scale, gray: bool, out: &mut Pixels) -> Result<Scale> {
        Ok(self.decode_region_into(bytes, scale, None, gray, out)?.scale)
    }

    /// Like [`decode_into`](Self::decode_into), but decodes only the part
    /// of the image covering `region` (full-resolution pixels `[left, top,
    /// width, height]`), widened to what the JPEG's block structure
    /// allows: rows below it are never decoded and columns outside it skip
    /// the inverse DCT. PNG decodes whole. Returns where the decoded pixels
    /// sit in the scaled image.
    pub fn decode_region_into(
        &mut self,
        bytes: &[u8],
        scale: Scale,
        region: Option<[f64; 4]>,
        gray: bool,
        out: &mut Pixels,
    ) -> Result<Decoded> {
        let channels = if gray { 1 } else { 3 };
        match sniff(bytes)? {
            Format::Jpeg => self.decode_jpeg(bytes, scale, region, channels, out),
            Format::Png => {
                self.decode_png(bytes, channels, out)?;
                Ok(Decoded { scale: Scale::FULL, scaled: (out.width, out.height), origin: (0, 0) })
            }
        }
    }

    fn decode_jpeg(
        &mut self,
        bytes: &[u8],
        scale: Scale,
        region: Option<[f64; 4]>,
        channels: u8,
        out: &mut Pixels,
    ) -> Result<Decoded> {
        // Parsed here, every time (a few microseconds): the output is sized
        // from this header, and `decompress` decodes exactly these bytes.
        let parsed = self.jpeg.header(bytes).map_err(tj_error)?;
        let header = parsed.header();
        self.limits.check(u64::from(header.width), u64::from(header.height), 4)?;
        let d = scale.denom;
        let (sw, sh) = (scale.apply(header.width), scale.apply(header.height));
        let crop = region.filter(|_| header.can_crop()).map(|[l, t, w, h]| {
            // Full-resolution box to scaled pixels, widened to the iMCU grid
            // on the left and clamped to the image.
            let (fx, fy) =
                (f64::from(sw) / f64::from(header.width), f64::from(sh) / f64::from(header.height));
            let align = header.crop_alignment(d);
            let x0 = ((l * fx).floor().max(0.0) as u32).min(sw - 1) / align * align;
            let y0 = ((t * fy).floor().max(0.0) as u32).min(sh - 1);
            let x1 = (((l + w) * fx).ceil() as u32).clamp(x0 + 1, sw);
            let y1 = (((t + h) * fy).ceil() as u32).clamp(y0 + 1, sh);
            ringfeed_jpeg::Region { x: x0, y: y0, width: x1 - x0, height: y1 - y0 }
        });
        let (w, h, origin) = match crop {
            Some(r) => (r.width, r.height, (r.x, r.y)),
            None => (sw, sh, (0, 0)),
        };
        out.reshape(w, h, channels);
        if header.colorspace == ringfeed_jpeg::Colorspace::Cmyk {
            // libjpeg-turbo does not convert CMYK to RGB; decode to CMYK and
            // convert (Adobe-style inverted CMYK, as libjpeg emits it).
            self.scratch.resize(w as usize * h as usize * 4, 0);
            self.jpeg
                .decompress(&parsed, d, crop, ringfeed_jpeg::PixelFormat::Cmyk, &mut self.scratch)
                .map_err(tj_error)?;
            cmyk_to(&self.scratch, channels, &mut out.data);
        } else {
            let format = match channels {
                1 => ringfeed_jpeg::PixelFormat::Gray,
                _ => ringfeed_jpeg::PixelFormat::Rgb,
            };
            self.jpeg.decompress(&parsed, d, crop, format, &mut out.data).map_err(tj_error)?;
        }
        Ok(Decoded { scale, scaled: (sw, sh), origin })
    }

    fn decode_png(&mut self, bytes: &[u8], channels: u8, out: &mut Pixels) -> Result<()> {
        check_png_palette(bytes)?;
        // Check the header's claim before the png crate reads further.
        if let Some((w, h)) = png_dims(bytes) {
            self.limits.check(u64::from(w), u64::from(h), 4)?;
        }
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder
            .set_limits(png::Limits { bytes: usize::try_from(self.limits.max_alloc).unwrap_or(usize::MAX) });
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().map_err(png_error)?;
        let (w, h) = (reader.info().width, reader.info().height);
        self.limits.check(u64::from(w), u64::from(h), 4)?;
        let size =
            reader.output_buffer_size().ok_or_else(|| Error::Limits("PNG frame size overflows".into()))?;
        self.scratch.resize(size, 0);
        let frame = reader.next_frame(&mut self.scratch).map_err(png_error)?;
        let src = &self.scratch[..frame.buffer_size()];
        out.reshape(w, h, channels);
        let from = match frame.color_type {
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            png::ColorType::Indexed => return Err(Error::Unsupported("palette PNG was not expanded".into())),
        };
        convert_channels(src, from, channels, &mut out.data);
        Ok(())
    }
}

/// Refuses a palette (`PLTE`) chunk that is not 1 to 256 RGB triples, as
/// the PNG specification requires: the `png` crate (0.18.1) panics while
/// expanding a palette whose length is not a multiple of 3 (found by
/// fuzzing). Walks the chunks before the image data; anything else
/// malformed is left to the decoder.
fn check_png_palette(bytes: &[u8]) -> Result<()> {
    let mut at = 8;
    while let Some(head) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        match &head[4..8] {
            b"PLTE" if len == 0 || !len.is_multiple_of(3) || len > 768 => {
                return Err(Error::Corrupt(format!(
                    "PNG palette of {len} bytes is not 1 to 256 RGB entries"
                )));
            }
            b"IDAT" | b"IEND" => break,
            _ => {}
        }
        at = at.saturating_add(12).saturating_add(len);
    }
    Ok(())
}

/// Width and height from a PNG's IHDR chunk, which must come first.
fn png_dims(bytes: &[u8]) -> Option<(u32, u32)> {
    let ihdr = bytes.get(8..24)?;
    if &ihdr[4..8] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&ihdr[8..12]), be(&ihdr[12..16])))
}

fn png_error(e: png::DecodingError) -> Error {
    match e {
        png::DecodingError::LimitsExceeded => Error::Limits("PNG needs more memory than the limit".into()),
        png::DecodingError::Format(f) => Error::Corrupt(format!("PNG: {f}")),
        png::DecodingError::IoError(e) => Error::Corrupt(format!("PNG truncated or unreadable: {e}")),
        png::DecodingError::Parameter(p) => Error::Unsupported(format!("PNG: {p}")),
    }
}

/// Converts 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channel pixels to
/// RGB (`to` = 3) or gray (1). Alpha is dropped like PIL's `convert("RGB")`; RGB to
/// gray uses PIL's ITU-R 601-2 luma weights.
fn convert_channels(src: &[u8], from: usize, to: u8, dst: &mut [u8]) {
    let px = src.chunks_exact(from);
    match to {
        3 => {
            for (d, s) in dst.chunks_exact_mut(3).zip(px) {
                match from {
                    1 | 2 => d.fill(s[0]),
                    _ => d.copy_from_slice(&s[..3]),
                }
            }
        }
        _ => {
            for (d, s) in dst.iter_mut().zip(px) {
                *d = match from {
                    1 | 2 => s[0],
                    _ => luma(s[0], s[1], s[2]),
                };
            }
        }
    }
}

fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

fn cmyk_to(src: &[u8], to: u8, dst: &mut [u8]) {
    let rgb = src.chunks_exact(4).map(|p| {
        let k = u32::from(p[3]);
        let ch = |c: u8| ((u32::from(c) * k + 127) / 255) as u8;
        (ch(p[0]), ch(p[1]), ch(p[2]))
    });
    if to == 3 {
        for (d, (r, g, b)) in dst.chunks_exact_mut(3).zip(rgb) {
            d.copy_from_slice(&[r, g, b]);
        }
    } else {
        for (d, (r, g, b)) in dst.iter_mut().zip(rgb) {
            *d = luma(r, g, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_keeps_the_region_at_least_output_sized() {
        assert_eq!(Scale::for_region(4000.0, 3000.0, 224, 224).denom, 8);
        assert_eq!(Scale::for_region(500.0, 375.0, 224, 224).denom, 1);
        assert_eq!(Scale::for_region(1000.0, 460.0, 224, 224).denom, 2);
        assert_eq!(Scale { denom: 8 }.apply(4001), 501);
    }

    #[test]
    fn magic_is_checked() {
        assert!(matches!(sniff(b"GIF89a"), Err(Error::Corrupt(_))));
        assert!(matches!(sniff(b""), Err(Error::Corrupt(_))));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]).unwrap(), Format::Jpeg);
    }
}
