//! [`Pipeline`]: decode + crop/resize + flip + normalize, one image at a
//! time, into a caller-provided output slot, allocating nothing in steady
//! state.

use fast_image_resize::images::{Image as FirImage, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use rand_xoshiro::rand_core::Rng;
use ringfeed_resample::{Image, Kernels, Resampler, Target};

use crate::decoder::{Decoder, Format, ImageInfo, Scale};
use crate::error::{Error, Result};
use crate::geometry::{CropBox, random_resized_crop, resize_center_crop, uniform};
use crate::limits::Limits;
use crate::pixels::Pixels;

/// ImageNet channel means (RGB), as torchvision's reference scripts use.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The geometric part of a pipeline.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Transform {
    /// `RandomResizedCrop(size, scale, ratio)` then
    /// `RandomHorizontalFlip(flip)`, with torchvision's rules.
    Train {
        /// Output side.
        size: u32,
        /// Area fraction range of the crop.
        scale: (f64, f64),
        /// Aspect ratio range of the crop.
        ratio: (f64, f64),
        /// Probability of a horizontal flip.
        flip: f64,
    },
    /// `Resize(resize)` (shorter side) then `CenterCrop(crop)`.
    Val {
        /// Shorter side after resizing.
        resize: u32,
        /// Output side.
        crop: u32,
    },
}

/// Largest output side of any pipeline.
pub const MAX_OUTPUT_SIDE: u32 = 8192;

impl Transform {
    /// The side of the square output: `size` for [`Train`](Self::Train),
    /// `crop` for [`Val`](Self::Val).
    pub fn output_side(&self) -> u32 {
        match *self {
            Transform::Train { size, .. } => size,
            Transform::Val { crop, .. } => crop,
        }
    }

    /// Whether the transform can run: an output side in
    /// `1..=`[`MAX_OUTPUT_SIDE`], a center crop no larger than the resize,
    /// `0 < scale.0 <= scale.1 <= 1`, `0 < ratio.0 <= ratio.1`, a flip
    /// probability in `[0, 1]`. [`Pipeline::new`] checks it; call it to
    /// refuse a configuration before any image is decoded.
    ///
    /// Fails with [`Error::Config`] naming the offending value.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Transform::Train { scale, ratio, flip, .. } => {
                if !(0.0 < scale.0 && scale.0 <= scale.1 && scale.1 <= 1.0) {
                    return Err(Error::Config(format!(
                        "scale range {scale:?} must satisfy 0 < lo <= hi <= 1"
                    )));
                }
                if !(0.0 < ratio.0 && ratio.0 <= ratio.1 && ratio.1.is_finite()) {
                    return Err(Error::Config(format!(
                        "ratio range {ratio:?} must satisfy 0 < lo <= hi < infinity"
                    )));
                }
                if !(0.0..=1.0).contains(&flip) {
                    return Err(Error::Config(format!("flip probability {flip} is not in [0, 1]")));
                }
            }
            Transform::Val { resize, crop } => {
                if crop > resize {
                    return Err(Error::Config(format!(
                        "center crop {crop} is larger than the resize {resize}"
                    )));
                }
            }
        }
        let side = self.output_side();
        if side == 0 || side > MAX_OUTPUT_SIDE {
            return Err(Error::Config(format!("output side {side} must be in 1..={MAX_OUTPUT_SIDE}")));
        }
        Ok(())
    }

    /// Whether the transform draws anything from a generator: `false` for
    /// [`Val`](Self::Val), which [`Pipeline::run_val`] runs without one.
    pub fn is_random(&self) -> bool {
        matches!(self, Transform::Train { .. })
    }
}

/// Memory layout of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Channels, then rows, then columns (PyTorch's `[C, H, W]`).
    Chw,
    /// Rows, then columns, then channels (`[H, W, C]`, as decoded).
    Hwc,
}

/// Element type of the output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Output {
    /// Raw `u8` pixels.
    U8,
    /// `f32`, `(pixel / 255 - mean) / std` per channel.
    F32 {
        /// Per-channel mean (on the 0..1 scale).
        mean: [f32; 3],
        /// Per-channel standard deviation.
        std: [f32; 3],
    },
}

/// The output slot a [`Pipeline::run`] writes into.
#[derive(Debug)]
pub enum OutputMut<'a> {
    /// For [`Output::U8`].
    U8(&'a mut [u8]),
    /// For [`Output::F32`].
    F32(&'a mut [f32]),
}

/// What a run did to one image (for logs, tests and debugging).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Applied {
    /// Source format.
    pub format: Format,
    /// Full-resolution source size.
    pub source: (u32, u32),
    /// The crop box in full-resolution pixels.
    pub crop: CropBox,
    /// The DCT scale the decoder used.
    pub scale: Scale,
    /// The full-resolution region that was decoded (the crop widened by
    /// the resampling filter's reach), as `[left, top, width, height]`.
    pub region: [f64; 4],
    /// Whether the output was flipped horizontally.
    pub flipped: bool,
    /// Time spent decoding (the rest of the run is cropping, resizing and
    /// converting), for per-stage accounting.
    pub decode_time: std::time::Duration,
}

/// A configured decode-and-augment pipeline. One per thread; reuse it for
/// every image.
///
/// ```no_run
/// use ringfeed_decode::rand_core::SeedableRng;
/// use ringfeed_decode::rand_xoshiro::Xoshiro256PlusPlus;
/// use ringfeed_decode::{OutputMut, Pipeline};
/// # fn main() -> ringfeed_decode::Result<()> {
/// let mut p = Pipeline::train(224)?;
/// let mut out = vec![0f32; p.output_len()];            // [3, 224, 224]
/// let jpeg = std::fs::read("cat.jpg").unwrap();
/// let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);   // per sample, e.g. ringfeed::sample_rng
/// p.run(&jpeg, &mut rng, OutputMut::F32(&mut out))?;
/// # Ok(())
/// # }
/// ```
pub struct Pipeline {
    transform: Transform,
    layout: Layout,
    output: Output,
    gray: bool,
    decoder: Decoder,
    pixels: Pixels,
    resized: Vec<u8>,
    /// Grayscale resizes.
    resizer: Resizer,
    /// RGB crop + resize + conversion.
    resampler: Resampler,
    /// Per channel `(a, b)`: normalized = `value * a + b`.
    affine: [(f32, f32); 3],
    /// Apply EXIF orientation before cropping (off by default, like
    /// torchvision).
    exif: bool,
    /// Upright copy of the decoded pixels, for EXIF-rotated images.
    oriented: Pixels,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("transform", &self.transform)
            .field("layout", &self.layout)
            .field("output", &self.output)
            .field("gray", &self.gray)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline; see [`train`](Self::train) and [`val`](Self::val) for
    /// the usual presets.
    pub fn new(
        transform: Transform,
        layout: Layout,
        output: Output,
        gray: bool,
        limits: Limits,
    ) -> Result<Self> {
        transform.validate()?;
        let side = transform.output_side();
        let resized = vec![0; side as usize * side as usize * if gray { 1 } else { 3 }];
        Ok(Pipeline {
            transform,
            layout,
            output,
            gray,
            decoder: Decoder::new(limits)?,
            pixels: Pixels::default(),
            resized,
            resizer: Resizer::new(),
            resampler: Resampler::new(),
            affine: normalization(output),
            exif: false,
            oriented: Pixels::default(),
        })
    }

    /// Turns JPEGs upright according to their EXIF orientation before
    /// cropping, as `PIL.ImageOps.exif_transpose` does. Default: off, like
    /// torchvision, which ignores EXIF orientation.
    #[must_use]
    pub fn with_exif_orientation(mut self, yes: bool) -> Self {
        self.exif = yes;
        self
    }

    /// Limits the SIMD kernels of the crop-and-resize step (for speed
    /// comparisons; every choice gives the same output, bit for bit).
    /// Default: [`Kernels::Fastest`].
    #[must_use]
    pub fn with_kernels(mut self, kernels: Kernels) -> Self {
        self.resampler = Resampler::with_kernels(kernels);
        self
    }

    /// The crop-and-resize kernels in use: `"avx512"`, `"avx2"` or
    /// `"portable"`.
    pub fn kernels(&self) -> &'static str {
        self.resampler.kernels()
    }

    /// Training preset, torchvision's reference recipe:
    /// RandomResizedCrop(`size`, scale (0.08, 1), ratio (3/4, 4/3)),
    /// RandomHorizontalFlip(0.5), ImageNet normalization, `f32`
    /// `[3, size, size]`. Add [`u8`](Self::u8) for raw pixels.
    ///
    /// The same meaning as `ringfeed::ImagePipeline::train`.
    pub fn train(size: u32) -> Result<Self> {
        let t = Transform::Train { size, scale: (0.08, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0), flip: 0.5 };
        Self::new(
            t,
            Layout::Chw,
            Output::F32 { mean: IMAGENET_MEAN, std: IMAGENET_STD },
            false,
            Limits::default(),
        )
    }

    /// Validation preset, torchvision's reference recipe:
    /// Resize(`resize`) + CenterCrop(`crop`), ImageNet normalization, `f32`
    /// `[3, crop, crop]`. It draws nothing at random:
    /// [`run_val`](Self::run_val) runs it without a generator. Add
    /// [`u8`](Self::u8) for raw pixels.
    ///
    /// The same meaning as `ringfeed::ImagePipeline::val`.
    pub fn val(resize: u32, crop: u32) -> Result<Self> {
        Self::new(
            Transform::Val { resize, crop },
            Layout::Chw,
            Output::F32 { mean: IMAGENET_MEAN, std: IMAGENET_STD },
            false,
            Limits::default(),
        )
    }

    /// Raw `u8` pixels (0..=255, not normalized) instead of the presets'
    /// normalized `f32`: a quarter of the memory, for normalizing on the
    /// GPU. Default: the output given to [`new`](Self::new) (normalized
    /// `f32` for [`train`](Self::train) and [`val`](Self::val)).
    #[must_use]
    pub fn u8(mut self) -> Self {
        self.output = Output::U8;
        self.affine = normalization(Output::U8);
        self
    }

    fn side(&self) -> u32 {
        self.transform.output_side()
    }

    fn channels(&self) -> usize {
        if self.gray { 1 } else { 3 }
    }

    /// Output shape: `[C, H, W]` or `[H, W, C]`.
    pub fn output_shape(&self) -> [usize; 3] {
        let (s, c) = (self.side() as usize, self.channels());
        match self.layout {
            Layout::Chw => [c, s, s],
            Layout::Hwc => [s, s, c],
        }
    }

    /// Elements in one output.
    pub fn output_len(&self) -> usize {
        self.output_shape().iter().product()
    }

    /// The output element type.
    pub fn output(&self) -> Output {
        self.output
    }

    /// Decodes `bytes`, crops, resizes, maybe flips, converts, and writes
    /// the result into `out` (which must hold exactly
    /// [`output_len`](Self::output_len) elements of the configured type).
    /// All randomness comes from `rng`, so the same bytes and RNG state give
    /// the same output, bit for bit, on any thread.
    ///
    /// `rng` implements [`rand_core::Rng`](crate::rand_core::Rng) of the
    /// `rand_core` this crate re-exports (0.10): a generator of another
    /// `rand` / `rand_core` version (`rand` 0.9 uses `rand_core` 0.9) does
    /// not, and the compiler says so through the trait's blanket impl for
    /// `DerefMut`. Seed one of [`crate::rand_xoshiro`]'s generators, or use
    /// [`run_val`](Self::run_val) for a pipeline that draws nothing.
    pub fn run(&mut self, bytes: &[u8], rng: &mut impl Rng, out: OutputMut<'_>) -> Result<Applied> {
        self.check_slot(&out)?;
        let (info, orientation) = self.oriented_info(bytes)?;
        let (crop, flip_p) = match self.transform {
            Transform::Train { scale, ratio, flip, .. } => {
                (random_resized_crop(info.width, info.height, scale, ratio, rng), flip)
            }
            Transform::Val { resize, crop } => {
                (resize_center_crop(info.width, info.height, resize, crop), 0.0)
            }
        };
        self.crop_resize_write(bytes, &info, orientation, crop, out, || {
            flip_p > 0.0 && uniform(rng, 0.0, 1.0) < flip_p
        })
    }

    /// [`run`](Self::run) without a generator, for a pipeline that draws
    /// nothing: a [`Transform::Val`] (Resize + CenterCrop), as validation
    /// and inference use. The output is the same as `run`'s with any
    /// generator.
    ///
    /// Fails with [`Error::Config`] for a [`Transform::Train`] pipeline,
    /// whose crop and flip are random.
    ///
    /// ```no_run
    /// use ringfeed_decode::{OutputMut, Pipeline};
    /// # fn main() -> ringfeed_decode::Result<()> {
    /// let mut p = Pipeline::val(256, 224)?;
    /// let mut out = vec![0f32; p.output_len()]; // [3, 224, 224], normalized
    /// let jpeg = std::fs::read("cat.jpg").unwrap();
    /// p.run_val(&jpeg, OutputMut::F32(&mut out))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn run_val(&mut self, bytes: &[u8], out: OutputMut<'_>) -> Result<Applied> {
        let Transform::Val { resize, crop } = self.transform else {
            return Err(Error::Config(
                "run_val needs a val transform (Resize + CenterCrop); a train transform draws its crop \
                 and flip from a generator: use run"
                    .into(),
            ));
        };
        self.check_slot(&out)?;
        let (info, orientation) = self.oriented_info(bytes)?;
        let crop = resize_center_crop(info.width, info.height, resize, crop);
        self.crop_resize_write(bytes, &info, orientation, crop, out, || false)
    }

    /// Decodes `bytes` and resizes the full-resolution box `[left, top,
    /// width, height]` to the output size, without randomness: the
    /// geometric core of every transform, exposed for comparisons against
    /// other libraries given the same box.
    pub fn run_box(&mut self, bytes: &[u8], bounds: [f64; 4], out: OutputMut<'_>) -> Result<Applied> {
        self.check_slot(&out)?;
        let (info, orientation) = self.oriented_info(bytes)?;
        let crop = CropBox { left: bounds[0], top: bounds[1], width: bounds[2], height: bounds[3] };
        self.crop_resize_write(bytes, &info, orientation, crop, out, || false)
    }

    /// The shared tail of [`run`](Self::run) and [`run_box`](Self::run_box):
    /// decode and resize `crop`, decide the flip (after the crop's draws, so
    /// the RNG order is fixed), write the output.
    fn crop_resize_write(
        &mut self,
        bytes: &[u8],
        info: &ImageInfo,
        orientation: u8,
        crop: CropBox,
        out: OutputMut<'_>,
        flip: impl FnOnce() -> bool,
    ) -> Result<Applied> {
        // The flip is drawn after the crop's draws, whatever happens to
        // the image, so the RNG order is fixed.
        let flipped = flip();
        let (scale, region, decode_time, bounds) = if orientation == 1 {
            self.decode_crop(bytes, info, crop)?
        } else {
            self.decode_oriented(bytes, info, orientation, crop)?
        };
        self.resize_write(orientation != 1, bounds, flipped, out)?;
        Ok(Applied {
            format: info.format,
            source: (info.width, info.height),
            crop,
            scale,
            region,
            flipped,
            decode_time,
        })
    }

    /// The output slot must match the configured element type and size.
    fn check_slot(&self, out: &OutputMut<'_>) -> Result<()> {
        let len = self.output_len();
        let fits = match out {
            OutputMut::U8(o) => o.len() == len && self.output == Output::U8,
            OutputMut::F32(o) => o.len() == len && self.output != Output::U8,
        };
        if fits {
            Ok(())
        } else {
            Err(Error::Config(format!("output slot must be {len} elements of {:?}", self.output)))
        }
    }

    /// The header, with width and height as the image will be shown
    /// (swapped for EXIF rotations when orientation is applied), and the
    /// EXIF orientation to apply (1: none).
    fn oriented_info(&mut self, bytes: &[u8]) -> Result<(ImageInfo, u8)> {
        let mut info = self.decoder.info(bytes)?;
        let orientation = if self.exif && info.format == Format::Jpeg {
            crate::orientation::jpeg_orientation(bytes)
        } else {
            1
        };
        if crate::orientation::swaps_axes(orientation) {
            (info.width, info.height) = (info.height, info.width);
        }
        Ok((info, orientation))
    }

    /// Decodes just enough of the image for `crop` (the smallest DCT scale
    /// that keeps it at output resolution, and only the region around it)
    /// into `self.pixels`. Returns the scale, the region decoded and the
    /// crop box in the decoded pixels.
    fn decode_crop(&mut self, bytes: &[u8], info: &ImageInfo, crop: CropBox) -> Result<DecodedCrop> {
        let side = f64::from(self.side());
        let scale = Scale::for_region(crop.width, crop.height, self.side(), self.side());
        // Widen the decoded region by the filter's reach (plus rounding), so
        // pixels at the crop's border see the same neighbours as they would
        // in a fully decoded image.
        let sx = f64::from(scale.apply(info.width)) / f64::from(info.width);
        let sy = f64::from(scale.apply(info.height)) / f64::from(info.height);
        let mx = ((crop.width * sx / side).max(1.0) + 2.0) / sx;
        let my = ((crop.height * sy / side).max(1.0) + 2.0) / sy;
        let region = [crop.left - mx, crop.top - my, crop.width + 2.0 * mx, crop.height + 2.0 * my];
        let started = std::time::Instant::now();
        let decoded =
            self.decoder.decode_region_into(bytes, scale, Some(region), self.gray, &mut self.pixels)?;
        let decode_time = started.elapsed();
        let fx = f64::from(decoded.scaled.0) / f64::from(info.width);
        let fy = f64::from(decoded.scaled.1) / f64::from(info.height);
        let (left, top) =
            (crop.left * fx - f64::from(decoded.origin.0), crop.top * fy - f64::from(decoded.origin.1));
        Ok((decoded.scale, region, decode_time, [left, top, crop.width * fx, crop.height * fy]))
    }

    /// The EXIF-rotated path: decode the whole image (at the DCT scale the
    /// crop allows) and turn it upright into `self.oriented`.
    fn decode_oriented(
        &mut self,
        bytes: &[u8],
        info: &ImageInfo,
        orientation: u8,
        crop: CropBox,
    ) -> Result<DecodedCrop> {
        let scale = Scale::for_region(crop.width, crop.height, self.side(), self.side());
        let started = std::time::Instant::now();
        let scale = self.decoder.decode_into(bytes, scale, self.gray, &mut self.pixels)?;
        let decode_time = started.elapsed();
        crate::orientation::apply(&self.pixels, orientation, &mut self.oriented);
        let o = &self.oriented;
        let (fx, fy) =
            (f64::from(o.width) / f64::from(info.width), f64::from(o.height) / f64::from(info.height));
        let bounds = [crop.left * fx, crop.top * fy, crop.width * fx, crop.height * fy];
        Ok((scale, [0.0, 0.0, f64::from(info.width), f64::from(info.height)], decode_time, bounds))
    }

    /// Resizes `bounds` of the decoded pixels (`self.oriented` if
    /// `oriented`) to the output side, mirrored if `flipped`, and writes
    /// the output slot. RGB goes through [`Resampler`], which writes
    /// planes directly (converted and mirrored as it goes); grayscale
    /// through fast_image_resize and [`scatter`](Self::scatter).
    fn resize_write(
        &mut self,
        oriented: bool,
        bounds: [f64; 4],
        flipped: bool,
        out: OutputMut<'_>,
    ) -> Result<()> {
        let src = if oriented { &self.oriented } else { &self.pixels };
        let side = self.side();
        if self.gray {
            resize_box(&mut self.resizer, src, bounds, side, &mut self.resized)?;
            self.scatter_into(out, flipped);
            return Ok(());
        }
        let image = Image { data: &src.data, width: src.width, height: src.height };
        let out_side = (side, side);
        match (self.layout, out) {
            (Layout::Chw, OutputMut::U8(o)) => {
                self.resampler.resample(image, bounds, out_side, flipped, Target::U8(o))?;
            }
            (Layout::Chw, OutputMut::F32(o)) => {
                let target = Target::F32 { out: o, affine: self.affine };
                self.resampler.resample(image, bounds, out_side, flipped, target)?;
            }
            (Layout::Hwc, out) => {
                // Planes first (already mirrored), then interleaved.
                self.resampler.resample(image, bounds, out_side, flipped, Target::U8(&mut self.resized))?;
                self.scatter_into(out, false);
            }
        }
        Ok(())
    }

    /// [`scatter`](Self::scatter) with the configured conversion.
    fn scatter_into(&self, out: OutputMut<'_>, flipped: bool) {
        match out {
            OutputMut::U8(o) => self.scatter(o, flipped, |_, v| v),
            OutputMut::F32(o) => {
                let affine = self.affine;
                self.scatter(o, flipped, |ch, v| f32::from(v) * affine[ch].0 + affine[ch].1);
            }
        }
    }

    /// Writes every value of `self.resized` (planar, or one gray plane)
    /// through `convert(channel, value)` into `out` in the configured
    /// layout, mirrored when `flipped`.
    fn scatter<T>(&self, out: &mut [T], flipped: bool, convert: impl Fn(usize, u8) -> T) {
        let c = self.channels();
        let side = self.side() as usize;
        let hw = side * side;
        for (ch, plane) in self.resized.chunks_exact(hw).take(c).enumerate() {
            for (y, row) in plane.chunks_exact(side).enumerate() {
                for x in 0..side {
                    let v = row[if flipped { side - 1 - x } else { x }];
                    let at = match self.layout {
                        Layout::Hwc => (y * side + x) * c + ch,
                        Layout::Chw => ch * hw + y * side + x,
                    };
                    out[at] = convert(ch, v);
                }
            }
        }
    }
}

/// Resizes the box `[left, top, width, height]` of grayscale `src` (in its
/// pixels) to `side`², Pillow-style antialiased bilinear, into `dst`.
fn resize_box(
    resizer: &mut Resizer,
    src: &Pixels,
    bounds: [f64; 4],
    side: u32,
    dst: &mut [u8],
) -> Result<()> {
    let pixel_type = match src.channels {
        1 => PixelType::U8,
        3 => PixelType::U8x3,
        _ => PixelType::U8x4,
    };
    let image = ImageRef::new(src.width, src.height, &src.data, pixel_type)
        .map_err(|e| Error::Config(format!("decoded buffer: {e}")))?;
    let mut out = FirImage::from_slice_u8(side, side, dst, pixel_type)
        .map_err(|e| Error::Config(format!("resize buffer: {e}")))?;
    let opts = fir_crop(src, bounds[0], bounds[1], bounds[2], bounds[3]);
    resizer.resize(&image, &mut out, &opts).map_err(|e| Error::Config(format!("resize: {e}")))
}

/// Resize options for a crop box of `src`, clamped into it: scaling a box
/// that ends exactly at the image edge can overshoot it by a rounding
/// error, which the resizer rightly refuses.
fn fir_crop(src: &Pixels, left: f64, top: f64, width: f64, height: f64) -> ResizeOptions {
    let (w, h) = (f64::from(src.width), f64::from(src.height));
    let (left, top) = (left.clamp(0.0, w), top.clamp(0.0, h));
    // The fourth byte is padding, not alpha: no premultiplying.
    ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)).use_alpha(false).crop(
        left,
        top,
        width.min(w - left).max(f64::MIN_POSITIVE),
        height.min(h - top).max(f64::MIN_POSITIVE),
    )
}

/// `(a, b)` per channel such that `v * a + b` is `(v / 255 - mean) / std`
/// to within 1e-6: one multiply-add per value, which vectorises (a table
/// lookup does not).
/// What decoding for a crop produced: the DCT scale, the region decoded
/// (full-resolution `[left, top, width, height]`), the time it took, and
/// the crop box in the decoded pixels.
type DecodedCrop = (Scale, [f64; 4], std::time::Duration, [f64; 4]);

fn normalization(output: Output) -> [(f32, f32); 3] {
    match output {
        Output::F32 { mean, std } => std::array::from_fn(|c| (1.0 / (255.0 * std[c]), -mean[c] / std[c])),
        Output::U8 => [(1.0, 0.0); 3],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_matches_torchvisions_formula() {
        let output = Output::F32 { mean: IMAGENET_MEAN, std: IMAGENET_STD };
        let affine = normalization(output);
        for (c, (a, b)) in affine.iter().enumerate() {
            for v in 0..=255u8 {
                let exact = (f32::from(v) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
                let ours = f32::from(v) * a + b;
                assert!((ours - exact).abs() < 1e-6, "channel {c}, value {v}: {ours} vs {exact}");
            }
        }
        assert_eq!(normalization(Output::U8), [(1.0, 0.0); 3]);
    }
}
