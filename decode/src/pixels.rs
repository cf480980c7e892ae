//! Decoded pixel buffers.

/// Decoded pixels: row-major, `channels` bytes per pixel (3 for RGB, 1 for
/// grayscale), rows back to back without padding. Reused between images:
/// decoding into an existing `Pixels` allocates only when the image is
/// larger than any before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pixels {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per pixel: 3 (RGB) or 1 (grayscale).
    pub channels: u8,
    /// The pixel bytes, `width * height * channels` long.
    pub data: Vec<u8>,
}

impl Pixels {
    /// Sets the shape and sizes `data` to match, keeping its allocation.
    pub(crate) fn reshape(&mut self, width: u32, height: u32, channels: u8) {
        self.width = width;
        self.height = height;
        self.channels = channels;
        let len = width as usize * height as usize * channels as usize;
        self.data.resize(len, 0);
    }

    /// Row stride in bytes.
    pub fn stride(&self) -> usize {
        self.width as usize * self.channels as usize
    }
}
