//! Bounds on untrusted images, checked against the header before any pixel
//! buffer is allocated.

use crate::error::{Error, Result};

/// Largest image accepted. A header claiming more is rejected before
/// decoding, so a 40-byte "decompression bomb" costs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum width in pixels. Default: 16384.
    pub max_width: u32,
    /// Maximum height in pixels. Default: 16384.
    pub max_height: u32,
    /// Maximum number of pixels (width × height). Default: 100 million.
    pub max_pixels: u64,
    /// Maximum bytes the decoder may allocate for one image. Default:
    /// 512 MiB.
    pub max_alloc: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_width: 16384, max_height: 16384, max_pixels: 100_000_000, max_alloc: 512 << 20 }
    }
}

impl Limits {
    /// No limits beyond what addresses allow (trusted data only).
    pub fn none() -> Self {
        Limits { max_width: u32::MAX, max_height: u32::MAX, max_pixels: u64::MAX, max_alloc: u64::MAX }
    }

    /// Checks a header's dimensions and the bytes an image of `channels`
    /// bytes per pixel would take.
    pub fn check(&self, width: u64, height: u64, channels: u64) -> Result<()> {
        if width == 0 || height == 0 {
            return Err(Error::Limits(format!("{width}x{height} image has no pixels")));
        }
        if width > u64::from(self.max_width) || height > u64::from(self.max_height) {
            return Err(Error::Limits(format!(
                "{width}x{height} exceeds the maximum {}x{}",
                self.max_width, self.max_height
            )));
        }
        let pixels = width * height;
        if pixels > self.max_pixels {
            return Err(Error::Limits(format!("{pixels} pixels exceed the maximum {}", self.max_pixels)));
        }
        let bytes = pixels.saturating_mul(channels);
        if bytes > self.max_alloc {
            return Err(Error::Limits(format!(
                "{bytes} bytes of pixels exceed the maximum {}",
                self.max_alloc
            )));
        }
        Ok(())
    }
}
