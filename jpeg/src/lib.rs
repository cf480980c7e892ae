//! ringfeed-jpeg: the one place where ringfeed talks to libjpeg-turbo.
//!
//! A small safe wrapper over TurboJPEG 3's decompressor exposing what image
//! pipelines need and the `turbojpeg` crate does not: decoding only a
//! *region* of the image (`tj3SetCroppingRegion`: rows below the region
//! are never decoded, columns outside it skip the inverse DCT and colour
//! conversion) combined with DCT-domain downscaling. `ringfeed-decode`
//! forbids unsafe code; this crate holds the FFI calls, each with its
//! safety argument.
//!
//! A decode starts with [`Decompressor::header`], which returns the
//! header together with a borrow of the bytes it was parsed from
//! ([`Parsed`]); [`Decompressor::decompress`] takes that and nothing else,
//! so the bytes libjpeg-turbo decodes are always the ones whose header
//! sized the output buffer.
//!
//! ```
//! let mut d = ringfeed_jpeg::Decompressor::new().unwrap();
//! assert!(d.header(b"not a jpeg").is_err());
//! ```
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::ffi::CStr;
use std::fmt;

use turbojpeg_sys as tj;

/// iMCU width per TurboJPEG subsampling code (4:4:4, 4:2:2, 4:2:0, gray,
/// 4:4:0, 4:1:1, 4:4:1): `turbojpeg.h`'s `tjMCUWidth`, which is a header
/// constant, not a linkable symbol.
const MCU_WIDTH: [u32; 7] = [8, 16, 16, 8, 8, 32, 8];

/// An error reported by libjpeg-turbo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JpegError {
    /// libjpeg-turbo's message.
    pub message: String,
}

impl fmt::Display for JpegError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JpegError {}

/// Colour space of the JPEG data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colorspace {
    /// YCbCr or RGB (decoded to RGB directly).
    Color,
    /// Grayscale.
    Gray,
    /// CMYK or YCCK (decoded to CMYK, converted by the caller).
    Cmyk,
}

/// What the header of a JPEG says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Full-resolution width.
    pub width: u32,
    /// Full-resolution height.
    pub height: u32,
    /// Colour space.
    pub colorspace: Colorspace,
    /// Width of the iMCU at full resolution (8 to 32 pixels), or 0 when the
    /// chroma subsampling is unusual and cropping is not possible.
    mcu_width: u32,
}

impl Header {
    /// Whether regions can be decoded (the subsampling is a standard one).
    pub fn can_crop(&self) -> bool {
        self.mcu_width > 0
    }

    /// The alignment a region's left edge needs at scale `1/denom`.
    pub fn crop_alignment(&self, denom: u32) -> u32 {
        self.mcu_width.div_ceil(denom).max(1)
    }

    /// A dimension at scale `1/denom` (libjpeg-turbo rounds up).
    pub fn scaled(dim: u32, denom: u32) -> u32 {
        dim.div_ceil(denom)
    }
}

/// Pixel layout of the decoded output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// 3 bytes per pixel.
    Rgb,
    /// 1 byte per pixel.
    Gray,
    /// 4 bytes per pixel, as libjpeg emits CMYK (Adobe-inverted).
    Cmyk,
    /// 4 bytes per pixel: RGB plus a padding byte (255).
    Rgbx,
}

impl PixelFormat {
    /// Bytes per pixel.
    pub fn bytes(self) -> usize {
        match self {
            PixelFormat::Rgb => 3,
            PixelFormat::Gray => 1,
            PixelFormat::Cmyk | PixelFormat::Rgbx => 4,
        }
    }

    fn raw(self) -> libc::c_int {
        match self {
            PixelFormat::Rgb => tj::TJPF_TJPF_RGB,
            PixelFormat::Gray => tj::TJPF_TJPF_GRAY,
            PixelFormat::Cmyk => tj::TJPF_TJPF_CMYK,
            PixelFormat::Rgbx => tj::TJPF_TJPF_RGBX,
        }
    }
}

/// A region of the scaled image: `x` must be a multiple of
/// [`Header::crop_alignment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// Walks the marker segments from SOI to the first scan and reports
/// whether a frame header (SOF0–SOF15, except DHT, JPG and DAC) was seen.
fn has_frame_header(jpeg: &[u8]) -> bool {
    let mut pos = 2;
    while let (Some(&0xFF), Some(&marker)) = (jpeg.get(pos), jpeg.get(pos + 1)) {
        match marker {
            0xFF => pos += 1, // fill byte
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => return true,
            0xD8 | 0x01 | 0xD0..=0xD7 => pos += 2,
            0xDA | 0xD9 => return false,
            _ => {
                let Some(len) =
                    jpeg.get(pos + 2..pos + 4).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                else {
                    return false;
                };
                pos += 2 + len;
            }
        }
    }
    false
}

/// A JPEG whose header [`Decompressor::header`] parsed: the header and
/// the very bytes it came from, borrowed (so they cannot change while this
/// exists). Only `header` makes one (the fields are private), which is
/// what lets [`Decompressor::decompress`] size its output from `header`
/// and hand `bytes` to libjpeg-turbo.
#[derive(Debug, Clone, Copy)]
pub struct Parsed<'a> {
    header: Header,
    bytes: &'a [u8],
}

impl<'a> Parsed<'a> {
    /// What the header says.
    pub fn header(&self) -> Header {
        self.header
    }

    /// The JPEG bytes the header was parsed from.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// A TurboJPEG decompressor. Reuse one per thread; it is `Send` but not
/// `Sync` (libjpeg-turbo handles are not thread-safe). It keeps no state
/// between calls that its safety depends on: each decode is given the
/// [`Parsed`] header it relies on.
pub struct Decompressor {
    handle: tj::tjhandle,
}

// SAFETY: a TurboJPEG handle has no thread affinity; it may move between
// threads as long as it is used by one at a time, which `&mut self` on
// every method guarantees (and the type is not `Sync`).
unsafe impl Send for Decompressor {}

impl fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decompressor").finish_non_exhaustive()
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: `handle` came from tj3Init, is non-null, and is destroyed
        // exactly once, here.
        unsafe { tj::tj3Destroy(self.handle) }
    }
}

impl Decompressor {
    /// A new decompressor.
    pub fn new() -> Result<Self, JpegError> {
        // SAFETY: tj3Init has no preconditions; a null result is handled.
        let handle = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as libc::c_int) };
        if handle.is_null() {
            return Err(JpegError { message: "libjpeg-turbo could not allocate a decompressor".into() });
        }
        Ok(Decompressor { handle })
    }

    fn error(&self) -> JpegError {
        // SAFETY: the handle is valid; tj3GetErrorStr returns a pointer to a
        // NUL-terminated string owned by the handle (or a static one), which
        // is copied before any other call can change it.
        let msg = unsafe { CStr::from_ptr(tj::tj3GetErrorStr(self.handle)) };
        JpegError { message: msg.to_string_lossy().into_owned() }
    }

    fn get(&self, param: tj::TJPARAM) -> libc::c_int {
        // SAFETY: valid handle; tj3Get only reads the handle's state.
        unsafe { tj::tj3Get(self.handle, param as libc::c_int) }
    }

    /// Parses the header of `jpeg`, returning it bound to `jpeg` for
    /// [`decompress`](Self::decompress).
    pub fn header<'a>(&mut self, jpeg: &'a [u8]) -> Result<Parsed<'a>, JpegError> {
        // libjpeg-turbo accepts a stream without a frame header (a
        // "tables-only" stream) and leaves the previous image's size in
        // place, both here and when decompressing; refuse such streams
        // before asking it, so that the size read below is `jpeg`'s own.
        if !has_frame_header(jpeg) {
            return Err(JpegError {
                message: "no frame header (SOF) before the scan data: not an image".into(),
            });
        }
        // SAFETY: valid handle; the pointer and length describe `jpeg`,
        // which outlives the call; libjpeg-turbo only reads it.
        let rc = unsafe { tj::tj3DecompressHeader(self.handle, jpeg.as_ptr(), jpeg.len() as tj::size_t) };
        if rc != 0 {
            return Err(self.error());
        }
        let (w, h) = (self.get(tj::TJPARAM_TJPARAM_JPEGWIDTH), self.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT));
        let subsamp = self.get(tj::TJPARAM_TJPARAM_SUBSAMP);
        let colorspace = match self.get(tj::TJPARAM_TJPARAM_COLORSPACE) as tj::TJCS {
            tj::TJCS_TJCS_GRAY => Colorspace::Gray,
            tj::TJCS_TJCS_CMYK | tj::TJCS_TJCS_YCCK => Colorspace::Cmyk,
            _ => Colorspace::Color,
        };
        let mcu_width = usize::try_from(subsamp).ok().and_then(|i| MCU_WIDTH.get(i).copied()).unwrap_or(0);
        let header = Header {
            width: u32::try_from(w).unwrap_or(0),
            height: u32::try_from(h).unwrap_or(0),
            colorspace,
            mcu_width,
        };
        Ok(Parsed { header, bytes: jpeg })
    }

    /// Decodes the JPEG `parsed` holds at scale `1/denom` (1, 2, 4 or 8),
    /// the whole image or only `region` of the scaled image, into `out`,
    /// which must hold exactly the region's (or the scaled image's) pixels
    /// in `format`, rows packed. `parsed` may come from any decompressor.
    ///
    /// A warning that the data ended early is an error (the rest would be
    /// gray); other warnings (extraneous bytes, …) are not.
    ///
    /// There is no way to pass other bytes than those parsed: neither raw
    /// bytes,
    ///
    /// ```compile_fail,E0308
    /// # use ringfeed_jpeg::{Decompressor, PixelFormat};
    /// # let mut d = Decompressor::new().unwrap();
    /// let mut out = vec![0; 16 * 16 * 3];
    /// d.decompress(b"\xFF\xD8\xFF", 1, None, PixelFormat::Rgb, &mut out);
    /// ```
    ///
    /// nor a header paired with other bytes:
    ///
    /// ```compile_fail,E0451
    /// # use ringfeed_jpeg::{Decompressor, Parsed};
    /// # let mut d = Decompressor::new().unwrap();
    /// # let small: &[u8] = b"";
    /// let parsed = d.header(small).unwrap();
    /// let forged = Parsed { header: parsed.header(), bytes: b"\xFF\xD8\xFF" };
    /// ```
    pub fn decompress(
        &mut self,
        parsed: &Parsed<'_>,
        denom: u32,
        region: Option<Region>,
        format: PixelFormat,
        out: &mut [u8],
    ) -> Result<(), JpegError> {
        let bad = |m: String| Err(JpegError { message: m });
        let Parsed { header, bytes: jpeg } = *parsed;
        if ![1, 2, 4, 8].contains(&denom) {
            return bad(format!("unsupported scale 1/{denom}"));
        }
        let (sw, sh) = (Header::scaled(header.width, denom), Header::scaled(header.height, denom));
        let r = region.unwrap_or(Region { x: 0, y: 0, width: sw, height: sh });
        let aligned =
            region.is_none() || (header.can_crop() && r.x.is_multiple_of(header.crop_alignment(denom)));
        // In u64: `x + width` must not wrap past the check.
        let inside = |at: u32, len: u32, dim: u32| u64::from(at) + u64::from(len) <= u64::from(dim);
        if !aligned
            || r.width == 0
            || r.height == 0
            || !inside(r.x, r.width, sw)
            || !inside(r.y, r.height, sh)
        {
            return bad(format!("invalid region {r:?} of a {sw}x{sh} image"));
        }
        let pitch = r.width as usize * format.bytes();
        if out.len() != pitch * r.height as usize {
            return bad(format!(
                "output holds {} bytes, the region needs {}",
                out.len(),
                pitch * r.height as usize
            ));
        }
        let factor = tj::tjscalingfactor { num: 1, denom: denom as libc::c_int };
        // SAFETY: valid handle; the scaling factor is one libjpeg-turbo
        // supports (checked above).
        if unsafe { tj::tj3SetScalingFactor(self.handle, factor) } != 0 {
            return Err(self.error());
        }
        // An all-zero region means "uncropped", which also clears the
        // previous image's region.
        let crop = match region {
            Some(r) => tj::tjregion { x: r.x as _, y: r.y as _, w: r.width as _, h: r.height as _ },
            None => tj::tjregion { x: 0, y: 0, w: 0, h: 0 },
        };
        // SAFETY: valid handle; the region lies inside the scaled image and
        // is iMCU-aligned (checked above against `header`, which is
        // `jpeg`'s: see below).
        if unsafe { tj::tj3SetCroppingRegion(self.handle, crop) } != 0 {
            return Err(self.error());
        }
        // SAFETY: valid handle; `jpeg` is readable for its length and only
        // read. libjpeg-turbo parses the header of `jpeg` again and writes
        // the region (or whole scaled image) of *that* header: `height`
        // rows `pitch` apart, each `width * format.bytes()` long. `header`
        // is the one `Decompressor::header` parsed from these same bytes
        // (a `Parsed` is made nowhere else, and its shared borrow keeps the
        // bytes unchanged since), and that function refused streams without
        // a frame header, the one case where libjpeg-turbo would keep a
        // size from an earlier image; so both parses give the same size,
        // the region was checked against it, and `out` is exactly `pitch *
        // height` bytes (checked above): every write lands inside `out`.
        let rc = unsafe {
            tj::tj3Decompress8(
                self.handle,
                jpeg.as_ptr(),
                jpeg.len() as tj::size_t,
                out.as_mut_ptr(),
                pitch as libc::c_int,
                format.raw(),
            )
        };
        if rc != 0 {
            let err = self.error();
            // SAFETY: valid handle.
            let warning =
                unsafe { tj::tj3GetErrorCode(self.handle) } == tj::TJERR_TJERR_WARNING as libc::c_int;
            if !warning || err.message.contains("Premature end") {
                return Err(err);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers_are_found_and_tables_only_streams_refused() {
        // SOI, APP0 (length 4), SOF0 ...
        assert!(has_frame_header(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0, 0, 0xFF, 0xC0, 0x00, 0x0B]));
        // SOI, DHT (not a frame), then SOS: no frame header.
        assert!(!has_frame_header(&[0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x02, 0xFF, 0xDA]));
        // A segment length running off the end.
        assert!(!has_frame_header(&[0xFF, 0xD8, 0xFF, 0xE0, 0x5A, 0x5A, 0x5A]));
        assert!(!has_frame_header(b""));
    }

    #[test]
    fn bare_markers_and_tables_only_streams_are_not_images() {
        let mut d = Decompressor::new().unwrap();
        assert!(d.header(b"\xFF\xD8\xFF\xD9").is_err());
        let tables_only = [0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x02, 0xFF, 0xD9];
        let err = d.header(&tables_only).unwrap_err();
        assert!(err.message.contains("no frame header"), "{err}");
    }
}
