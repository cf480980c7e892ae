//! The `tch` hand-off: a batch as `(images, labels)` tensors.

use tch::{Kind, Tensor};

use super::batch::Batch;
use super::images::{ImageDtype, Images, Storage};
use crate::{Error, Result};

impl Images {
    /// The images as a `[B, C, H, W]` tensor (`Uint8` or `Float`). Images
    /// the workers decoded are already a libtorch tensor (in pinned memory
    /// when CUDA is available) and move out without a copy; a cloned
    /// `Images` is copied into a new tensor. Fails with [`Error::Tensor`]
    /// when libtorch cannot build it.
    pub fn into_tensor(self) -> Result<Tensor> {
        let (shape, dtype, storage) = self.into_parts();
        match storage {
            Storage::Tensor(t) => Ok(t.into_tensor()),
            Storage::Pool(p) => bytes_tensor(p.as_ref(), shape, dtype),
            Storage::Bytes(b) => bytes_tensor(&b, shape, dtype),
        }
    }
}

/// A new tensor holding a copy of `b`, `shape` values of `dtype`.
fn bytes_tensor(b: &[u8], shape: [usize; 4], dtype: ImageDtype) -> Result<Tensor> {
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let kind = match dtype {
        ImageDtype::U8 => Kind::Uint8,
        ImageDtype::F32 => Kind::Float,
    };
    // `from_data_size` trusts the length; check it first.
    if b.len() != shape.iter().product::<usize>() * kind.elt_size_in_bytes() {
        return Err(Error::Internal(format!("{} image bytes do not fill {shape:?}", b.len())));
    }
    Tensor::f_from_data_size(b, &dims, kind)
        .map_err(|e| Error::Tensor(format!("cannot build the image tensor: {e}")))
}

impl Batch {
    /// The batch as `(images, labels)`: images `[B, C, H, W]` (`Uint8`, or
    /// normalized `Float`) and labels `Int64` `[B]`, for a loader built
    /// with [`LoaderBuilder::images`](crate::LoaderBuilder::images). The
    /// images tensor is the memory the workers decoded into, so nothing is
    /// copied (labels are a few bytes and are).
    ///
    /// Fails with [`Error::Config`] when the loader has no image pipeline,
    /// [`Error::Tensor`] when libtorch cannot build a tensor.
    pub fn into_tensors(mut self) -> Result<(Tensor, Tensor)> {
        let images = self
            .images
            .take()
            .ok_or_else(|| Error::Config("batch has no images: build the loader with .images(...)".into()))?;
        let labels = Tensor::f_from_slice(&self.labels)
            .map_err(|e| Error::Tensor(format!("cannot build the label tensor: {e}")))?;
        Ok((images.into_tensor()?, labels))
    }
}
