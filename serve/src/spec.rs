//! [`Spec`]: what a model expects of its input, checked once at `build()`
//! so that nothing about the configuration can fail per request.

use ringfeed_decode::{IMAGENET_MEAN, IMAGENET_STD, Limits, MAX_OUTPUT_SIDE};

use crate::error::{Error, Result};

/// The geometric part of a [`Spec`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Geometry {
    /// torchvision's `Resize(resize)` (shorter side) then
    /// `CenterCrop(crop)`: ringfeed-decode's val pipeline, pixel for pixel.
    CenterCrop {
        /// Shorter side after resizing.
        resize: u32,
        /// Output side.
        crop: u32,
    },
    /// The whole image resized to `side`×`side`, aspect ratio not kept
    /// (torchvision's `Resize((side, side))`).
    Square {
        /// Output side.
        side: u32,
    },
    /// The whole image resized to fit `width`×`height` keeping its aspect
    /// ratio, centred, the rest filled with `pad` (YOLO-style letterbox).
    Letterbox {
        /// Output width.
        width: u32,
        /// Output height.
        height: u32,
        /// RGB fill of the border, before normalization.
        pad: [u8; 3],
    },
}

impl Geometry {
    /// Output `(width, height)`.
    pub fn output_size(&self) -> (u32, u32) {
        match *self {
            Geometry::CenterCrop { crop, .. } => (crop, crop),
            Geometry::Square { side } => (side, side),
            Geometry::Letterbox { width, height, .. } => (width, height),
        }
    }
}

/// Element type and scaling of the output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Normalize {
    /// Raw `u8` pixels, 0..=255 (normalize on the GPU).
    None,
    /// `f32`, `(pixel / 255 - mean) / std` per RGB channel.
    MeanStd {
        /// Per-channel mean on the 0..1 scale.
        mean: [f32; 3],
        /// Per-channel standard deviation.
        std: [f32; 3],
    },
}

impl Normalize {
    /// ImageNet's mean and standard deviation, as torchvision's recipes use.
    pub const IMAGENET: Normalize = Normalize::MeanStd { mean: IMAGENET_MEAN, std: IMAGENET_STD };
}

/// Memory layout of one row (one image) of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[C, H, W]` per image, `[N, C, H, W]` per batch (PyTorch).
    Nchw,
    /// `[H, W, C]` per image, `[N, H, W, C]` per batch (TensorFlow, ONNX
    /// exports of TF models).
    Nhwc,
}

/// A validated preprocessing specification; make one with
/// [`Spec::builder`]. Cheap to copy: every pool thread builds its own
/// [`Preprocessor`](crate::Preprocessor) from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    pub(crate) geometry: Geometry,
    pub(crate) normalize: Normalize,
    pub(crate) layout: Layout,
    pub(crate) limits: Limits,
}

impl Spec {
    /// A builder, starting from torchvision's ImageNet evaluation recipe:
    /// Resize(256) + CenterCrop(224), ImageNet normalization, NCHW `f32`.
    pub fn builder() -> SpecBuilder {
        SpecBuilder {
            spec: Spec {
                geometry: Geometry::CenterCrop { resize: 256, crop: 224 },
                normalize: Normalize::IMAGENET,
                layout: Layout::Nchw,
                limits: Limits::default(),
            },
        }
    }

    /// The geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The normalization (and so the element type).
    pub fn normalize(&self) -> Normalize {
        self.normalize
    }

    /// The row layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The limits every request's image is checked against before any
    /// pixel memory is allocated.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Shape of one row: `[3, H, W]` or `[H, W, 3]`.
    pub fn row_shape(&self) -> [usize; 3] {
        let (w, h) = self.geometry.output_size();
        let (w, h) = (w as usize, h as usize);
        match self.layout {
            Layout::Nchw => [3, h, w],
            Layout::Nhwc => [h, w, 3],
        }
    }

    /// Elements in one row.
    pub fn row_len(&self) -> usize {
        self.row_shape().iter().product()
    }

    /// Bytes of one row (elements × 1 for `u8`, × 4 for `f32`).
    pub fn row_bytes(&self) -> usize {
        self.row_len() * if self.normalize == Normalize::None { 1 } else { 4 }
    }
}

/// Consuming builder of a [`Spec`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SpecBuilder {
    spec: Spec,
}

impl SpecBuilder {
    /// Resize the shorter side to `resize`, then center-crop `crop`×`crop`
    /// (torchvision val). Default: `center_crop(256, 224)`.
    pub fn center_crop(mut self, resize: u32, crop: u32) -> Self {
        self.spec.geometry = Geometry::CenterCrop { resize, crop };
        self
    }

    /// Resize the whole image to `side`×`side`, ignoring its aspect ratio.
    /// Default: center crop (see [`center_crop`](Self::center_crop)).
    pub fn square(mut self, side: u32) -> Self {
        self.spec.geometry = Geometry::Square { side };
        self
    }

    /// Fit the whole image into `width`×`height` keeping its aspect ratio,
    /// the border filled with `pad`. Default: center crop (see
    /// [`center_crop`](Self::center_crop)).
    pub fn letterbox(mut self, width: u32, height: u32, pad: [u8; 3]) -> Self {
        self.spec.geometry = Geometry::Letterbox { width, height, pad };
        self
    }

    /// `f32` output, `(pixel / 255 - mean) / std`. Default: ImageNet's.
    pub fn mean_std(mut self, mean: [f32; 3], std: [f32; 3]) -> Self {
        self.spec.normalize = Normalize::MeanStd { mean, std };
        self
    }

    /// Raw `u8` output instead of normalized `f32`. Default: ImageNet
    /// normalized `f32`.
    pub fn raw_u8(mut self) -> Self {
        self.spec.normalize = Normalize::None;
        self
    }

    /// Row layout. Default: [`Layout::Nchw`].
    pub fn layout(mut self, layout: Layout) -> Self {
        self.spec.layout = layout;
        self
    }

    /// Limits on every request's image (dimensions, pixels, decoder
    /// memory), checked against its header before allocating. Default:
    /// [`Limits::default`] (16384² at most, 100 Mpixel, 512 MiB).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.spec.limits = limits;
        self
    }

    /// Checks the combination: output sides in `1..=`[`MAX_OUTPUT_SIDE`],
    /// a crop no larger than its resize, finite means and positive finite
    /// standard deviations. Fails with [`Error::Config`].
    pub fn build(self) -> Result<Spec> {
        let spec = self.spec;
        let (w, h) = spec.geometry.output_size();
        for side in [w, h] {
            if side == 0 || side > MAX_OUTPUT_SIDE {
                return Err(Error::Config(format!("output side {side} must be in 1..={MAX_OUTPUT_SIDE}")));
            }
        }
        if let Geometry::CenterCrop { resize, crop } = spec.geometry
            && crop > resize
        {
            return Err(Error::Config(format!("center crop {crop} is larger than the resize {resize}")));
        }
        if let Normalize::MeanStd { mean, std } = spec.normalize
            && !(mean.iter().all(|m| m.is_finite()) && std.iter().all(|s| s.is_finite() && *s > 0.0))
        {
            return Err(Error::Config(format!(
                "mean {mean:?} must be finite and std {std:?} finite and positive"
            )));
        }
        Ok(spec)
    }
}
