//! The `tch` hand-off: a batch as `(images, labels)` tensors.

use tch::Tensor;

use super::batch::Batch;
use super::images::{ImageDtype, Images, Storage};
use crate::error::{Error, Result};

impl Images {
    /// The images as a `[B, C, H, W]` tensor (`Uint8` or `Float`). Images
    /// the workers decoded are already a libtorch tensor (in pinned memory
    /// when CUDA is available) and move out without a copy; a cloned
    /// `Images` is copied into a new tensor.
    pub fn into_tensor(self) -> Result<Tensor> {
        let (shape, dtype, storage) = self.into_parts();
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        match storage {
            Storage::Tensor(t) => Ok(t.into_tensor()),
            Storage::Bytes(b) => {
                let flat = match dtype {
                    ImageDtype::U8 => Tensor::f_from_slice(&b[..]),
                    ImageDtype::F32 => match bytemuck::try_cast_slice::<u8, f32>(&b) {
                        Ok(values) => Tensor::f_from_slice(values),
                        // Unaligned only if a caller built odd buffers; copy.
                        Err(_) => {
                            let values: Vec<f32> = b
                                .chunks_exact(4)
                                .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                                .collect();
                            Tensor::f_from_slice(&values)
                        }
                    },
                };
                flat.and_then(|t| t.f_view(dims.as_slice()))
                    .map_err(|e| Error::Shutdown(format!("cannot build the image tensor: {e}")))
            }
        }
    }
}

impl Batch {
    /// The batch as `(images, labels)`: images `[B, C, H, W]` (`Uint8`, or
    /// normalized `Float`) and labels `Int64` `[B]`, for a loader built
    /// with [`LoaderBuilder::images`](crate::LoaderBuilder::images). The
    /// images tensor is the memory the workers decoded into, so nothing is
    /// copied (labels are a few bytes and are).
    ///
    /// Fails with [`Error::Config`] when the loader has no image pipeline.
    pub fn into_tensors(mut self) -> Result<(Tensor, Tensor)> {
        let images = self
            .images
            .take()
            .ok_or_else(|| Error::Config("batch has no images: build the loader with .images(...)".into()))?;
        let labels = Tensor::f_from_slice(&self.labels)
            .map_err(|e| Error::Shutdown(format!("cannot build the label tensor: {e}")))?;
        Ok((images.into_tensor()?, labels))
    }
}
