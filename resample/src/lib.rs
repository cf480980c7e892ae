//! ringfeed-resample: crop a box out of an RGB image and resize it with
//! Pillow's antialiased bilinear filter, writing three planes (`[3, H, W]`)
//! of bytes or of normalized floats, mirrored on request — the whole tail
//! of a RandomResizedCrop / Resize + CenterCrop pipeline in two passes.
//!
//! Why its own crate: a general resizer (fast_image_resize, Pillow) makes
//! an interleaved image that then needs a third pass to split the channels
//! and normalize. Here the vertical pass runs first (on the crop's columns
//! only) and the horizontal pass writes its results straight into the
//! planes, converted and mirrored: no full-size intermediate image and no
//! separate conversion pass. Weights are Pillow's (`precompute_coeffs`),
//! in 14-bit fixed point with Pillow's rounding after each pass.
//!
//! The AVX-512 and AVX2 kernels and the portable ones compute the same
//! integers, so the output is the same on every CPU, bit for bit. All
//! unsafe code (the SIMD kernels, `unsafe fn`s whose callers assert their
//! bounds) lives in one module, `x86`.
//!
//! ```
//! use ringfeed_resample::{Image, Resampler, Target};
//! // A 4x2 image: left half black, right half white.
//! let rgb: Vec<u8> = (0..8).flat_map(|i| if i % 4 < 2 { [0; 3] } else { [255; 3] }).collect();
//! let image = Image { data: &rgb, width: 4, height: 2 };
//! let mut r = Resampler::new();
//! let mut out = [0u8; 3 * 2 * 2]; // [3, 2, 2]
//! r.resample(image, [0.0, 0.0, 4.0, 2.0], (2, 2), false, Target::U8(&mut out)).unwrap();
//! // Antialiased: each output pixel blends three or four source columns.
//! assert_eq!(&out[..4], &[36, 219, 36, 219]);
//! r.resample(image, [0.0, 0.0, 4.0, 2.0], (2, 2), true, Target::U8(&mut out)).unwrap();
//! assert_eq!(&out[..4], &[219, 36, 219, 36]);
//! ```
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
mod scalar;
mod target;
mod weights;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use crate::error::Error;
pub use crate::target::Target;

use crate::target::Planes;
use crate::weights::Taps;

/// An RGB image: `height` rows of `width` pixels, 3 bytes each, rows back
/// to back.
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    /// The pixel bytes, `width * height * 3` long.
    pub data: &'a [u8],
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Which kernels a [`Resampler`] may use. All compute the same output;
/// the choice only matters for speed comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Kernels {
    /// The fastest the CPU supports (AVX-512, else AVX2, else portable).
    #[default]
    Fastest,
    /// AVX2 if the CPU has it, else portable.
    Avx2,
    /// Portable code only.
    Portable,
}

/// Crop-and-resize with reusable buffers: one per thread, reused for every
/// image, it allocates only when an image needs more room than any before.
#[derive(Default)]
pub struct Resampler {
    horizontal: Taps,
    vertical: Taps,
    /// The vertical pass's output: one row per output row, covering the
    /// source columns the horizontal pass reads.
    between: Vec<u8>,
    acc: Vec<i32>,
    #[cfg(target_arch = "x86_64")]
    pairs: Vec<i16>,
    #[cfg(target_arch = "x86_64")]
    plan512: x86::HorizontalPlan,
    /// Whether `pairs` / `plan512` match the current horizontal taps and
    /// row length (`Some(false)`: AVX-512 cannot run them).
    #[cfg(target_arch = "x86_64")]
    planned: Option<(usize, bool)>,
    allowed: Kernels,
    /// What the last resample ran: (vertical, horizontal).
    last: Option<(&'static str, &'static str)>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The buffers are scratch: not worth printing.
        f.debug_struct("Resampler").field("allowed", &self.allowed).field("kernels", &self.kernels()).finish()
    }
}

/// The kernels detected, within what a [`Resampler`] allows.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    #[cfg(target_arch = "x86_64")]
    avx512: Option<x86::Avx512>,
    #[cfg(target_arch = "x86_64")]
    avx2: Option<x86::Avx2>,
}

impl Resampler {
    /// A resampler using the fastest kernels the CPU supports.
    pub fn new() -> Resampler {
        Resampler::default()
    }

    /// A resampler limited to `kernels` (for comparisons: the output is
    /// the same with any of them).
    pub fn with_kernels(kernels: Kernels) -> Resampler {
        Resampler { allowed: kernels, ..Resampler::default() }
    }

    /// The widest kernels in use: `"avx512"`, `"avx2"` or `"portable"`
    /// (AVX-512 covers downscales up to about 4x; beyond that, AVX2 runs
    /// the horizontal pass).
    pub fn kernels(&self) -> &'static str {
        let cpu = self.cpu();
        #[cfg(target_arch = "x86_64")]
        if cpu.avx512.is_some() {
            return "avx512";
        } else if cpu.avx2.is_some() {
            return "avx2";
        }
        let _ = cpu;
        "portable"
    }

    /// The kernels the last [`resample`](Self::resample) ran, as
    /// `(vertical pass, horizontal pass)`, each `"avx512"`, `"avx2"` or
    /// `"portable"` (`None` before the first). Which run depends on the
    /// CPU, on what the resampler [allows](Kernels), on the row length
    /// (the vertical SIMD kernels need rows of 64 or 32 bytes) and on the
    /// downscale (AVX-512's horizontal kernel covers up to about 4x). The
    /// SIMD kernels leave the pixels past their last whole vector to the
    /// portable code.
    pub fn last_kernels(&self) -> Option<(&'static str, &'static str)> {
        self.last
    }

    fn cpu(&self) -> Cpu {
        #[cfg(target_arch = "x86_64")]
        return Cpu {
            avx512: (self.allowed == Kernels::Fastest).then(x86::Avx512::detect).flatten(),
            avx2: (self.allowed != Kernels::Portable).then(x86::Avx2::detect).flatten(),
        };
        #[cfg(not(target_arch = "x86_64"))]
        Cpu::default()
    }

    /// Resizes the box `crop = [left, top, width, height]` of `image` (in
    /// its pixels; fractional boxes are exact, and a box reaching past the
    /// image is clamped into it) to `out = (width, height)` with Pillow's
    /// antialiased bilinear filter, mirrored left-right when `mirror`,
    /// into `target`'s three planes.
    pub fn resample(
        &mut self,
        image: Image<'_>,
        crop: [f64; 4],
        out: (u32, u32),
        mirror: bool,
        target: Target<'_>,
    ) -> Result<(), Error> {
        self.last = None;
        let (w, h) = (image.width, image.height);
        let stride = w as usize * 3;
        if w == 0 || h == 0 || Some(image.data.len()) != stride.checked_mul(h as usize) {
            return Err(Error::Buffer(format!("{} bytes for a {w}x{h} RGB image", image.data.len())));
        }
        let (ow, oh) = (out.0 as usize, out.1 as usize);
        if ow == 0 || oh == 0 || Some(target.len()) != ow.checked_mul(oh).and_then(|n| n.checked_mul(3)) {
            return Err(Error::Buffer(format!("{} output values for 3 planes of {ow}x{oh}", target.len())));
        }
        if !crop.iter().all(|v| v.is_finite()) || crop[2] <= 0.0 || crop[3] <= 0.0 {
            return Err(Error::Geometry(format!("crop box {crop:?} is empty or not finite")));
        }
        let (fw, fh) = (f64::from(w), f64::from(h));
        let (left, top) = (crop[0].clamp(0.0, fw), crop[1].clamp(0.0, fh));
        let width = crop[2].min(fw - left).max(f64::MIN_POSITIVE);
        let height = crop[3].min(fh - top).max(f64::MIN_POSITIVE);
        let retapped = self.horizontal.set(w, left, width, out.0, mirror, 4);
        self.vertical.set(h, top, height, out.1, false, 2);
        let cpu = self.cpu();

        // Vertical pass over the columns the horizontal pass reads. Each
        // row keeps slack after them for the horizontal kernels' 16- and
        // 64-byte loads and zero-weight padding taps.
        let (first, end) = self.horizontal.span();
        let from = first as usize * 3;
        let used = (end - first) as usize * 3;
        let row_len = used + 3 * self.horizontal.window + 64;
        if self.between.len() < row_len * oh {
            self.between.resize(row_len * oh, 0);
        }
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut vertical_kernel = "portable";
        for (y, row) in self.between.chunks_exact_mut(row_len).take(oh).enumerate() {
            let row = &mut row[..used];
            let vertical = &self.vertical;
            #[cfg(target_arch = "x86_64")]
            {
                if let Some(k) = cpu.avx512
                    && k.vertical_row(image.data, stride, h as usize, vertical, y, from, row)
                {
                    vertical_kernel = "avx512";
                    continue;
                }
                if let Some(k) = cpu.avx2
                    && k.vertical_row(image.data, stride, h as usize, vertical, y, from, row)
                {
                    vertical_kernel = "avx2";
                    continue;
                }
            }
            scalar::vertical_row(image.data, stride, vertical, y, from, &mut self.acc, row);
        }

        let mut planes = Planes { target, width: ow, plane: ow * oh };
        let rows = self.between.chunks_exact(row_len).take(oh).enumerate();
        #[cfg(target_arch = "x86_64")]
        {
            // The per-image layouts depend only on the taps and the row
            // length: kept while those stay the same.
            if retapped || self.planned.is_none_or(|(len, _)| len != row_len) {
                let wide = cpu
                    .avx512
                    .is_some_and(|k| k.horizontal_plan(&self.horizontal, first, row_len, &mut self.plan512));
                if !wide && cpu.avx2.is_some() {
                    x86::pair_weights(&self.horizontal, &mut self.pairs);
                }
                self.planned = Some((row_len, wide));
            }
            if self.planned.is_some_and(|(_, wide)| wide) {
                for (y, row) in rows {
                    self.plan512.row(row, first, &self.horizontal, y, &mut planes);
                }
                self.last = Some((vertical_kernel, "avx512"));
                return Ok(());
            }
            if let Some(k) = cpu.avx2 {
                let plan = k.horizontal_plan(&self.horizontal, first, row_len, &self.pairs);
                for (y, row) in rows {
                    plan.row(row, y, &mut planes);
                }
                self.last = Some((vertical_kernel, "avx2"));
                return Ok(());
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (retapped, cpu);
        for (y, row) in rows {
            scalar::horizontal_pixels(row, first, &self.horizontal, 0..ow, y, &mut planes);
        }
        self.last = Some((vertical_kernel, "portable"));
        Ok(())
    }
}
