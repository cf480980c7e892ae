//! Tensors read into one buffer that the caller owns and may write: for
//! handing a checkpoint to another library without a copy (the Python
//! package gives each tensor to torch through DLPack).

use ringfeed_io::AlignedBuf;

use crate::header::TensorInfo;
use crate::load::{Checkpoint, Layout};
use crate::{Error, Result};

/// The tensors of one load in one aligned, writable buffer, with where
/// each one starts: what [`Checkpoint::load_region`] returns.
///
/// ```
/// use ringfeed_ckpt::{Checkpoint, Dtype, TensorRef, save};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("m.safetensors");
/// let w = [1.0f32, 2.0, 3.0];
/// save(&path, &[TensorRef::new("w", Dtype::F32, &[3], bytemuck::cast_slice(&w))?], &Default::default())?;
///
/// let mut region = Checkpoint::open(&path)?.load_region(|_| true)?;
/// let (info, at) = region.tensors()[0].clone();
/// assert_eq!((info.name.as_str(), info.shape.as_slice()), ("w", &[3u64][..]));
/// let bytes = &mut region.as_mut_bytes()[at..at + 12];
/// assert_eq!(bytemuck::cast_slice::<u8, f32>(bytes), &w);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct TensorRegion {
    buf: AlignedBuf,
    tensors: Vec<(TensorInfo, usize)>,
}

impl TensorRegion {
    /// Each tensor and the position of its first byte in the buffer, in
    /// file order. A tensor's bytes are `info.len()` from there; a
    /// position is not necessarily a multiple of the element size (the
    /// format allows any offset): check before viewing it typed.
    pub fn tensors(&self) -> &[(TensorInfo, usize)] {
        &self.tensors
    }

    /// The whole buffer (its start aligned to 4 KiB).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The whole buffer, writable.
    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

impl Checkpoint {
    /// Reads the tensors `keep` accepts into a [`TensorRegion`], with the
    /// same direct reads and checksum checks as
    /// [`load_filtered`](Self::load_filtered) (which it equals in speed:
    /// both read into one aligned buffer).
    pub fn load_region(&self, keep: impl Fn(&str) -> bool) -> Result<TensorRegion> {
        let layout = self.layout(&keep)?;
        let mut buf =
            AlignedBuf::zeroed(layout.total.max(1), Layout::ALIGN).ok_or_else(|| Error::Memory {
                what: format!("the tensors of {}", self.path().display()),
                bytes: layout.total as u64,
            })?;
        self.read_layout(&layout, &mut buf[..layout.total])?;
        let tensors = layout.chosen.iter().zip(&layout.placed).map(|(t, &at)| ((*t).clone(), at)).collect();
        Ok(TensorRegion { buf, tensors })
    }
}
