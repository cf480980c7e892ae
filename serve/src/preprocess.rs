//! [`Preprocessor`]: one request's bytes into one row, on the calling
//! thread. Center crop and square run ringfeed-decode's [`Pipeline`] (so
//! the pixels are the offline pipeline's, bit for bit); letterbox, whose
//! output is not a resized box of the image, decodes with decode's
//! [`Decoder`] and resizes with the same resampling kernels, then pads.

use ringfeed_decode::{
    Decoder, Layout as DecodeLayout, Output, OutputMut, Pipeline, Pixels, Scale, Transform,
};
use ringfeed_resample::{Image, Resampler, Target};

use crate::error::{Error, Result};
use crate::spec::{Geometry, Layout, Normalize, Spec};

/// Turns image bytes into one row of a batch according to a [`Spec`].
/// Holds decoder handles and scratch memory: make one per thread and
/// reuse it (steady state allocates nothing).
///
/// ```
/// use ringfeed_serve::{Preprocessor, Spec};
/// use ringfeed_decode::OutputMut;
/// # fn main() -> ringfeed_serve::Result<()> {
/// let spec = Spec::builder().center_crop(256, 224).build()?;
/// let mut pre = Preprocessor::new(&spec)?;
/// let mut row = vec![0f32; spec.row_len()];
/// let err = pre.run(b"not an image", OutputMut::F32(&mut row)).unwrap_err();
/// assert_eq!(err.fault(), ringfeed_serve::Fault::Client);
/// # Ok(())
/// # }
/// ```
pub struct Preprocessor {
    spec: Spec,
    /// Center crop and square.
    pipeline: Option<Pipeline>,
    /// Header reads (square) and letterbox decodes.
    decoder: Decoder,
    resampler: Resampler,
    pixels: Pixels,
    /// Letterbox: the resized image as three planes, before padding.
    planes: Vec<u8>,
}

impl std::fmt::Debug for Preprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preprocessor").field("spec", &self.spec).finish_non_exhaustive()
    }
}

impl Preprocessor {
    /// A preprocessor for `spec`.
    pub fn new(spec: &Spec) -> Result<Self> {
        let layout = match spec.layout {
            Layout::Nchw => DecodeLayout::Chw,
            Layout::Nhwc => DecodeLayout::Hwc,
        };
        let output = match spec.normalize {
            Normalize::None => Output::U8,
            Normalize::MeanStd { mean, std } => Output::F32 { mean, std },
        };
        let transform = match spec.geometry {
            Geometry::CenterCrop { resize, crop } => Some(Transform::Val { resize, crop }),
            // A val transform of equal sides only fixes the output side:
            // `run_box` is given the whole image.
            Geometry::Square { side } => Some(Transform::Val { resize: side, crop: side }),
            Geometry::Letterbox { .. } => None,
        };
        let pipeline = transform.map(|t| Pipeline::new(t, layout, output, false, spec.limits)).transpose()?;
        Ok(Preprocessor {
            spec: *spec,
            pipeline,
            decoder: Decoder::new(spec.limits)?,
            resampler: Resampler::new(),
            pixels: Pixels::default(),
            planes: Vec::new(),
        })
    }

    /// The spec this preprocessor applies.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Decodes `bytes` (JPEG or PNG) and writes the preprocessed image into
    /// `out`, which must hold exactly [`Spec::row_len`] elements of the
    /// spec's type (`u8` for [`Normalize::None`], else `f32`). The image's
    /// header is checked against the spec's limits before any pixel memory
    /// is allocated.
    ///
    /// Fails with [`Error::Image`]: corrupt, unsupported or over-limit
    /// input ([`Fault::Client`](crate::Fault::Client)), or an output slot
    /// of the wrong size or type (the caller's bug, a server fault).
    pub fn run(&mut self, bytes: &[u8], out: OutputMut<'_>) -> Result<()> {
        match (self.spec.geometry, self.pipeline.as_mut()) {
            (Geometry::CenterCrop { .. }, Some(p)) => {
                p.run_val(bytes, out)?;
            }
            (Geometry::Square { .. }, Some(p)) => {
                let info = self.decoder.info(bytes)?;
                self.spec.limits.check(u64::from(info.width), u64::from(info.height), 3)?;
                let whole = [0.0, 0.0, f64::from(info.width), f64::from(info.height)];
                p.run_box(bytes, whole, out)?;
            }
            (Geometry::Letterbox { width, height, pad }, _) => {
                self.letterbox(bytes, (width, height), pad, out)?
            }
            _ => return Err(Error::Internal("preprocessor without its pipeline".into())),
        }
        Ok(())
    }

    fn letterbox(&mut self, bytes: &[u8], size: (u32, u32), pad: [u8; 3], out: OutputMut<'_>) -> Result<()> {
        let len = self.spec.row_len();
        let fits = match &out {
            OutputMut::U8(o) => o.len() == len && self.spec.normalize == Normalize::None,
            OutputMut::F32(o) => o.len() == len && self.spec.normalize != Normalize::None,
        };
        if !fits {
            return Err(ringfeed_decode::Error::Config(format!(
                "output slot must be {len} elements of {:?}",
                self.spec.normalize
            ))
            .into());
        }
        let info = self.decoder.info(bytes)?;
        self.spec.limits.check(u64::from(info.width), u64::from(info.height), 3)?;
        let (sw, sh) = (f64::from(info.width), f64::from(info.height));
        let r = (f64::from(size.0) / sw).min(f64::from(size.1) / sh);
        let nw = ((sw * r).round() as u32).clamp(1, size.0);
        let nh = ((sh * r).round() as u32).clamp(1, size.1);
        let scale = Scale::for_region(sw, sh, nw, nh);
        self.decoder.decode_into(bytes, scale, false, &mut self.pixels)?;
        let px = &self.pixels;
        self.planes.resize(nw as usize * nh as usize * 3, 0);
        let image = Image { data: &px.data, width: px.width, height: px.height };
        let whole = [0.0, 0.0, f64::from(px.width), f64::from(px.height)];
        self.resampler
            .resample(image, whole, (nw, nh), false, Target::U8(&mut self.planes))
            .map_err(ringfeed_decode::Error::from)?;
        let placed = Placed {
            planes: &self.planes,
            inner: (nw as usize, nh as usize),
            origin: (((size.0 - nw) / 2) as usize, ((size.1 - nh) / 2) as usize),
            outer: (size.0 as usize, size.1 as usize),
            pad,
            layout: self.spec.layout,
        };
        match (out, self.spec.normalize) {
            (OutputMut::U8(o), _) => placed.write(o, |_, v| v),
            (OutputMut::F32(o), Normalize::MeanStd { mean, std }) => {
                // The same multiply-add as ringfeed-decode's normalization.
                let affine: [(f32, f32); 3] =
                    std::array::from_fn(|c| (1.0 / (255.0 * std[c]), -mean[c] / std[c]));
                placed.write(o, |c, v| f32::from(v) * affine[c].0 + affine[c].1);
            }
            (OutputMut::F32(_), Normalize::None) => unreachable!("checked above"),
        }
        Ok(())
    }
}

/// A resized image (three planes) placed at `origin` in an `outer` canvas
/// filled with `pad`.
struct Placed<'a> {
    planes: &'a [u8],
    inner: (usize, usize),
    origin: (usize, usize),
    outer: (usize, usize),
    pad: [u8; 3],
    layout: Layout,
}

impl Placed<'_> {
    fn write<T: Copy>(&self, out: &mut [T], convert: impl Fn(usize, u8) -> T) {
        let (w, h) = self.outer;
        let (iw, ih) = self.inner;
        let (ox, oy) = self.origin;
        for c in 0..3 {
            let plane = &self.planes[c * iw * ih..(c + 1) * iw * ih];
            let pad = convert(c, self.pad[c]);
            for y in 0..h {
                let inside_y = y >= oy && y < oy + ih;
                for x in 0..w {
                    let v = if inside_y && x >= ox && x < ox + iw {
                        convert(c, plane[(y - oy) * iw + (x - ox)])
                    } else {
                        pad
                    };
                    let at = match self.layout {
                        Layout::Nchw => (c * h + y) * w + x,
                        Layout::Nhwc => (y * w + x) * 3 + c,
                    };
                    out[at] = v;
                }
            }
        }
    }
}
