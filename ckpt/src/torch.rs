//! libtorch tensors (feature `tch`): checkpoints read straight into
//! tensors, and tensors saved without a copy of their own.
//!
//! A load reads the chosen tensors into one block of memory that becomes a
//! libtorch byte tensor (ringfeed's own aligned memory handed over with a
//! deleter, or, when CUDA is available, a pinned [`TensorSlab`]), checks
//! their checksums there, copies that whole region to the device in one
//! transfer when a device is asked for, and returns a typed view of it per
//! tensor. The views share one storage: memory is freed when the last of
//! them is dropped.

use std::path::Path;
use std::sync::Arc;

use ringfeed_tensor::TensorSlab;
use tch::{Device, Kind, Tensor};

use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::load::{Checkpoint, Layout};
use crate::sharded::ShardedCheckpoint;

impl Dtype {
    /// The libtorch kind of this dtype; `None` for those tch 0.26 has no
    /// kind for (`U16`, `U32`, `U64`, `F4`, `F6_*`, `F8_E8M0`).
    pub fn kind(self) -> Option<Kind> {
        Some(match self {
            Dtype::Bool => Kind::Bool,
            Dtype::U8 => Kind::Uint8,
            Dtype::I8 => Kind::Int8,
            Dtype::I16 => Kind::Int16,
            Dtype::I32 => Kind::Int,
            Dtype::I64 => Kind::Int64,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::F32 => Kind::Float,
            Dtype::F64 => Kind::Double,
            Dtype::C64 => Kind::ComplexFloat,
            Dtype::F8E5M2 => Kind::Float8e5m2,
            Dtype::F8E4M3 => Kind::Float8e4m3fn,
            _ => return None,
        })
    }

    /// The dtype of a libtorch kind; `None` for kinds safetensors has no
    /// name for (quantized, complex half and double, the `fnuz` floats).
    pub fn from_kind(kind: Kind) -> Option<Dtype> {
        Some(match kind {
            Kind::Bool => Dtype::Bool,
            Kind::Uint8 => Dtype::U8,
            Kind::Int8 => Dtype::I8,
            Kind::Int16 => Dtype::I16,
            Kind::Int => Dtype::I32,
            Kind::Int64 => Dtype::I64,
            Kind::Half => Dtype::F16,
            Kind::BFloat16 => Dtype::BF16,
            Kind::Float => Dtype::F32,
            Kind::Double => Dtype::F64,
            Kind::ComplexFloat => Dtype::C64,
            Kind::Float8e5m2 => Dtype::F8E5M2,
            Kind::Float8e4m3fn => Dtype::F8E4M3,
            _ => return None,
        })
    }
}

/// Named tensors, in file order (as tch's own `read_safetensors` returns them).
pub type NamedTensors = Vec<(String, Tensor)>;

impl Checkpoint {
    /// Reads every tensor into libtorch tensors on `device` (see
    /// [`load_tch_filtered`](Self::load_tch_filtered)).
    pub fn load_tch(&self, device: Device) -> Result<NamedTensors> {
        self.load_tch_filtered(device, |_| true)
    }

    /// Reads the tensors whose name `keep` accepts into libtorch tensors on
    /// `device`, with the same direct reads and checksum checks as
    /// [`load_filtered`](Self::load_filtered). On the CPU they live in
    /// pinned host memory when CUDA is available; for a CUDA device the
    /// bytes are copied there in one transfer after the checks. A tensor
    /// whose offset in the file is not a multiple of its element size (the
    /// format allows it) is copied once to an aligned place. Dtypes tch has
    /// no kind for ([`Dtype::kind`]) are an [`Error::Config`], before
    /// anything is read.
    ///
    /// ```
    /// use ringfeed_ckpt::{Checkpoint, Dtype, TensorRef, save};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("m.safetensors");
    /// let w = tch::Tensor::arange(6, (tch::Kind::Float, tch::Device::Cpu)).reshape([2, 3]);
    /// save(&path, &[TensorRef::from_tch("w", &w)?], &Default::default())?;
    ///
    /// let loaded = Checkpoint::open(&path)?.load_tch(tch::Device::Cpu)?;
    /// assert_eq!(loaded[0].0, "w");
    /// assert!(loaded[0].1.equal(&w));
    /// # Ok(())
    /// # }
    /// ```
    pub fn load_tch_filtered(&self, device: Device, keep: impl Fn(&str) -> bool) -> Result<NamedTensors> {
        check_device(device)?;
        let layout = self.layout(&keep)?;
        let kinds = layout
            .chosen
            .iter()
            .map(|t| {
                t.dtype.kind().ok_or_else(|| {
                    Error::Config(format!(
                        "{}: tensor {:?} is {}, which tch has no libtorch kind for",
                        self.path().display(),
                        t.name,
                        t.dtype
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let host =
            if ringfeed_tensor::pinned() { self.read_pinned(&layout)? } else { self.read_owned(&layout)? };
        let region = match device {
            Device::Cpu => host,
            _ => host.f_to_device_(device, Kind::Uint8, false, false)?,
        };
        let mut out = Vec::with_capacity(layout.chosen.len());
        for ((t, &at), kind) in layout.chosen.iter().zip(&layout.placed).zip(kinds) {
            let flat = region.f_narrow(0, at as i64, t.len() as i64)?;
            let typed = match flat.f_view_dtype(kind) {
                Ok(v) => v,
                // Misaligned for its element size: a copy starts at 0.
                Err(_) => flat.f_to_device_(flat.device(), Kind::Uint8, false, true)?.f_view_dtype(kind)?,
            };
            let dims: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
            out.push((t.name.clone(), typed.f_reshape(dims)?));
        }
        Ok(out)
    }

    /// [`load_tch_filtered`](Self::load_tch_filtered) for async code, on a
    /// thread of ringfeed's own (as [`load_async`](Self::load_async)).
    pub fn load_tch_async(
        self: &Arc<Self>,
        device: Device,
        keep: impl Fn(&str) -> bool + Send + 'static,
    ) -> impl std::future::Future<Output = Result<NamedTensors>> + Send + 'static {
        let me = Arc::clone(self);
        crate::load::on_thread(self.path(), move || me.load_tch_filtered(device, keep))
    }
}

impl ShardedCheckpoint {
    /// Reads every tensor of every shard into libtorch tensors on `device`.
    pub fn load_tch(&self, device: Device) -> Result<NamedTensors> {
        self.load_tch_filtered(device, |_| true)
    }

    /// Reads the tensors whose name `keep` accepts, shard by shard
    /// ([`Checkpoint::load_tch_filtered`]).
    pub fn load_tch_filtered(&self, device: Device, keep: impl Fn(&str) -> bool) -> Result<NamedTensors> {
        let mut all = Vec::new();
        for shard in self.shards() {
            if shard.tensors().iter().any(|t| keep(&t.name)) {
                all.extend(shard.load_tch_filtered(device, &keep)?);
            }
        }
        Ok(all)
    }
}

impl Checkpoint {
    /// Reads `layout` into ordinary memory of ringfeed's own (calloc's
    /// fresh pages, faulted in by the reads), then hands it to libtorch:
    /// no copy, no zeroing pass.
    fn read_owned(&self, layout: &Layout<'_>) -> Result<Tensor> {
        let mut buf =
            ringfeed_io::AlignedBuf::zeroed(layout.total, Layout::ALIGN).ok_or_else(|| Error::Memory {
                what: format!("the tensors of {}", self.path().display()),
                bytes: layout.total as u64,
            })?;
        self.read_layout(layout, &mut buf)?;
        ringfeed_tensor::tensor_from_aligned(buf)
            .map_err(|e| Error::Tensor(tch::TchError::Torch(e.to_string())))
    }

    /// Reads `layout` into pinned host memory libtorch allocates (it is
    /// zeroed once before the reads: the price of viewing it as bytes).
    fn read_pinned(&self, layout: &Layout<'_>) -> Result<Tensor> {
        // Room to start the region at the alignment whatever address
        // libtorch returns.
        let len = layout.total + Layout::ALIGN;
        let mut slab = TensorSlab::new(&[len], Kind::Uint8, false).map_err(|e| match e {
            ringfeed_tensor::Error::Allocate { .. } => Error::Memory {
                what: format!("the tensors of {} ({e})", self.path().display()),
                bytes: len as u64,
            },
            e => Error::Tensor(tch::TchError::Torch(e.to_string())),
        })?;
        let bytes = slab.bytes_mut();
        let pad = (Layout::ALIGN - bytes.as_ptr() as usize % Layout::ALIGN) % Layout::ALIGN;
        self.read_layout(layout, &mut bytes[pad..pad + layout.total])?;
        Ok(slab.into_tensor().f_narrow(0, pad as i64, layout.total as i64)?)
    }
}

/// A clear error for a device this process cannot use.
fn check_device(device: Device) -> Result<()> {
    match device {
        Device::Cpu => Ok(()),
        Device::Cuda(i) if tch::Cuda::is_available() && i < tch::Cuda::device_count() as usize => Ok(()),
        other => Err(Error::Config(format!("device {other:?} is not available to this process"))),
    }
}

/// Copies bytes `[from, from + dst.len())` of `tensor` (contiguous, any
/// device) into `dst`.
pub(crate) fn copy_bytes(tensor: &Tensor, from: u64, dst: &mut [u8], path: &Path) -> Result<()> {
    let piece = tensor
        .f_reshape([-1])
        .and_then(|t| t.f_view_dtype(Kind::Uint8))
        .and_then(|t| t.f_narrow(0, from as i64, dst.len() as i64))
        .and_then(|t| t.f_copy_data_u8(dst, dst.len()));
    piece.map_err(|e| Error::Config(format!("cannot copy a tensor for {}: {e}", path.display())))
}

/// A tensor's dtype and shape for saving, checked: contiguous, a dtype
/// safetensors names.
pub(crate) fn describe(name: &str, tensor: &Tensor) -> Result<(Dtype, Vec<u64>, u64)> {
    let kind = tensor.f_kind()?;
    let dtype = Dtype::from_kind(kind)
        .ok_or_else(|| Error::Config(format!("tensor {name:?}: kind {kind:?} has no safetensors dtype")))?;
    if !tensor.is_contiguous() {
        return Err(Error::Config(format!(
            "tensor {name:?} is not contiguous: save `tensor.contiguous()` (the file holds its elements in order)"
        )));
    }
    let shape: Vec<u64> = tensor.size().iter().map(|&d| d as u64).collect();
    let bytes = tensor.numel() as u64 * kind.elt_size_in_bytes() as u64;
    Ok((dtype, shape, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::save::{SaveOptions, TensorRef, save};

    /// Both ways to host memory give the same bytes (on a machine without
    /// CUDA the slab is ordinary memory, so both run everywhere).
    #[test]
    fn owned_and_slab_memory_read_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let a: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let b: Vec<u8> = (0..3u8).collect();
        let ts = [
            TensorRef::new("a", Dtype::U8, &[10_000], &a).unwrap(),
            TensorRef::new("b", Dtype::U8, &[3], &b).unwrap(),
            TensorRef::new("c", Dtype::U8, &[10_000], &a).unwrap(),
        ];
        save(&path, &ts, &SaveOptions::default()).unwrap();
        let ckpt = Checkpoint::open(&path).unwrap();
        for keep in [&(|_: &str| true) as &dyn Fn(&str) -> bool, &|n: &str| n != "b"] {
            let layout = ckpt.layout(keep).unwrap();
            let owned = ckpt.read_owned(&layout).unwrap();
            let slab = ckpt.read_pinned(&layout).unwrap();
            assert_eq!(owned.size(), [layout.total as i64]);
            assert!(owned.equal(&slab));
            for (t, &at) in layout.chosen.iter().zip(&layout.placed) {
                let want = if t.name == "b" { &b } else { &a };
                let got = owned.narrow(0, at as i64, t.len() as i64);
                assert!(got.equal(&Tensor::from_slice(want)), "{}", t.name);
            }
        }
    }
}
