//! ringfeed-decode: image decoding and augmentation for ringfeed, with no
//! runtime and no unsafe code of its own. Bytes in, pixels out.
//!
//! - [`Decoder`]: JPEG (libjpeg-turbo, with DCT-domain downscaling) and PNG
//!   into reusable [`Pixels`], with [`Limits`] checked before allocating.
//! - [`Pipeline`]: decode, RandomResizedCrop or Resize + CenterCrop
//!   (torchvision's rules), horizontal flip, normalization, into a
//!   caller-provided `[C, H, W]` or `[H, W, C]` slot of `u8` or `f32`. The
//!   decoder is asked for the smallest DCT scale that still covers the crop
//!   at output resolution, so large photos cost a fraction of a full decode.
//!   The presets mean what torchvision's reference recipes do, as
//!   `ringfeed::ImagePipeline`'s do: [`Pipeline::train`] and
//!   [`Pipeline::val`] give ImageNet-normalized `f32`, [`Pipeline::u8`] raw
//!   pixels. [`Pipeline::run`] draws every random choice from the caller's
//!   generator (a [`rand_core::Rng`] of the `rand_core` re-exported here);
//!   [`Pipeline::run_val`] runs a val pipeline, which draws nothing,
//!   without one.
//!
//! ```
//! use ringfeed_decode::{Decoder, Limits, Pixels, Scale};
//! # fn main() -> ringfeed_decode::Result<()> {
//! // A 1x1 gray PNG.
//! let png: &[u8] = &[
//!     0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
//!     0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x3A, 0x7E, 0x9B,
//!     0x55, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x60, 0x00, 0x00, 0x00,
//!     0x02, 0x00, 0x01, 0x48, 0xAF, 0xA4, 0x71, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
//!     0x42, 0x60, 0x82,
//! ];
//! let mut decoder = Decoder::new(Limits::default())?;
//! let mut px = Pixels::default();
//! decoder.decode_into(png, Scale::FULL, false, &mut px)?;
//! assert_eq!((px.width, px.height, px.channels), (1, 1, 3));
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod decoder;
mod error;
mod geometry;
mod limits;
mod orientation;
mod pipeline;
mod pixels;

pub use crate::decoder::{Decoded, Decoder, Format, ImageInfo, Scale};
pub use crate::error::{Error, Result};
pub use crate::geometry::{CropBox, random_resized_crop, resize_center_crop};
pub use crate::limits::Limits;
pub use crate::pipeline::{
    Applied, IMAGENET_MEAN, IMAGENET_STD, Layout, MAX_OUTPUT_SIDE, Output, OutputMut, Pipeline, Transform,
};
pub use crate::pixels::Pixels;
/// The generators of the re-exported [`rand_core`], e.g.
/// `Xoshiro256PlusPlus`, the one `ringfeed::sample_rng` returns.
pub use rand_xoshiro;
/// The `rand_core` whose [`Rng`](rand_core::Rng) trait
/// [`Pipeline::run`] and [`random_resized_crop`] take (0.10). A generator
/// of another version (`rand` 0.9 brings `rand_core` 0.9) does not
/// implement it, and the compiler's complaint names `DerefMut`; name the
/// trait through this re-export, and seed a generator from
/// [`rand_xoshiro`] (or `ringfeed::sample_rng`), to get the matching one.
pub use rand_xoshiro::rand_core;
pub use ringfeed_resample::Kernels;
