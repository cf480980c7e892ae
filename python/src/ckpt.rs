//! Checkpoints from Python: safetensors files (and Hugging Face sharded
//! sets) loaded with ringfeed-ckpt's direct reads and checksums, each
//! tensor handed to torch through DLPack without a copy; saves written
//! crash-safe (temporary file, fsync, rename).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use ringfeed_ckpt::{Checkpoint, Dtype, SaveOptions, ShardedCheckpoint, TensorRef, TensorRegion};

use crate::dlpack::{DlDataType, DlPackBuffer, Export};
use crate::errors::{ckpt_error, config_error};

/// `(name, dtype name, shape, bytes)`: the bytes as a flat uint8 DLPack
/// buffer that the Python side views as `dtype` and reshapes (torch does
/// that without a copy, for every safetensors dtype torch has).
type Loaded = (String, String, Vec<u64>, DlPackBuffer);

/// A tensor read, before it crosses to Python: name, dtype, shape, bytes.
type Read = (String, Dtype, Vec<u64>, Export);

/// Reads the checkpoint at `path`: one `.safetensors` file, or a sharded
/// set's `*.index.json` (or its directory). `names`: only these tensors
/// (each must exist).
#[pyfunction]
#[pyo3(signature = (path, names=None, direct_io=true, verify=true))]
pub(crate) fn load_checkpoint(
    py: Python<'_>,
    path: PathBuf,
    names: Option<Vec<String>>,
    direct_io: bool,
    verify: bool,
) -> PyResult<Vec<Loaded>> {
    let exports = py.detach(|| load(&path, names.as_deref(), direct_io, verify)).map_err(ckpt_error)?;
    Ok(exports
        .into_iter()
        .map(|(name, dtype, shape, export)| (name, dtype.name().to_owned(), shape, DlPackBuffer::new(export)))
        .collect())
}

fn load(
    path: &Path,
    names: Option<&[String]>,
    direct_io: bool,
    verify: bool,
) -> ringfeed_ckpt::Result<Vec<Read>> {
    let configure = |b: ringfeed_ckpt::CheckpointBuilder| b.direct_io(direct_io).verify_checksums(verify);
    let is_index = path.is_dir() || path.to_string_lossy().ends_with(".json");
    let (sharded, single);
    let files: &[Checkpoint] = if is_index {
        sharded = ShardedCheckpoint::open_with(path, configure)?;
        sharded.shards()
    } else {
        single = [configure(Checkpoint::builder(path)).build()?];
        &single
    };
    if let Some(names) = names {
        for n in names {
            if !files.iter().any(|f| f.tensor(n).is_some()) {
                return Err(ringfeed_ckpt::Error::NotFound { path: path.to_path_buf(), name: n.clone() });
            }
        }
    }
    let keep = |name: &str| names.is_none_or(|ns| ns.iter().any(|n| n == name));
    let mut out = Vec::new();
    for file in files {
        if file.tensors().iter().any(|t| keep(&t.name)) {
            out.extend(region_exports(file.load_region(keep)?));
        }
    }
    Ok(out)
}

/// One export per tensor of `region`, all sharing it: the region is freed
/// when the last consumer's tensor is.
fn region_exports(mut region: TensorRegion) -> Vec<Read> {
    let base = region.as_mut_bytes().as_mut_ptr();
    let entries = region.tensors().to_vec();
    let region = Arc::new(region);
    entries
        .into_iter()
        .map(|(info, at)| {
            let len = info.len() as usize;
            let elem = (info.dtype.bits() as usize).div_ceil(8).max(1);
            let export = if (base as usize + at).is_multiple_of(elem.min(8)) {
                // SAFETY: `[at, at + len)` lies inside the region's buffer
                // (the layout placed it there) and no other tensor's range
                // overlaps it; `base` was taken from `&mut` (writable) and
                // the buffer does not move when the region moves into the
                // `Arc`, which each export keeps alive; nothing reads the
                // region through a reference afterwards.
                unsafe { Export::from_shared(region.clone(), base.add(at), len) }
            } else {
                // Misaligned for its element type (the format allows any
                // offset): a copy into memory aligned for 8-byte elements.
                let mut words = vec![0u64; len.div_ceil(8)];
                bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..len]
                    .copy_from_slice(&region.as_bytes()[at..at + len]);
                Export::from_owner(
                    words,
                    move |w| &mut bytemuck::cast_slice_mut::<u64, u8>(w)[..len],
                    &[len],
                    DlDataType::U8,
                )
                .expect("a u64 vector holds its bytes, aligned")
            };
            (info.name, info.dtype, info.shape, export)
        })
        .collect()
}

/// Writes `tensors` (`(name, dtype name, shape, bytes)`, bytes in native
/// order) to `path` crash-safe: a temporary file with direct I/O, fsync,
/// rename, directory fsync. Returns the bytes written.
#[pyfunction]
#[pyo3(signature = (path, tensors, metadata=None, checksums=true, direct_io=true))]
pub(crate) fn save_checkpoint(
    py: Python<'_>,
    path: PathBuf,
    tensors: Vec<(String, String, Vec<u64>, Bound<'_, PyBytes>)>,
    metadata: Option<Vec<(String, String)>>,
    checksums: bool,
    direct_io: bool,
) -> PyResult<u64> {
    let mut options = SaveOptions::default().checksums(checksums).direct_io(direct_io);
    for (k, v) in metadata.unwrap_or_default() {
        options = options.metadata(k, v);
    }
    // `bytes` objects are immutable: borrowing them while the GIL is
    // released is safe, and they outlive the save (`tensors` holds them).
    let parsed: Vec<(String, Dtype, Vec<u64>, &[u8])> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            let dtype = dtype.parse::<Dtype>().map_err(|e| config_error(format!("tensor {name:?}: {e}")))?;
            Ok((name.clone(), dtype, shape.clone(), bytes.as_bytes()))
        })
        .collect::<PyResult<_>>()?;
    let saved = py
        .detach(|| {
            let refs = parsed
                .iter()
                .map(|(name, dtype, shape, bytes)| TensorRef::new(name, *dtype, shape, bytes))
                .collect::<ringfeed_ckpt::Result<Vec<_>>>()?;
            ringfeed_ckpt::save(&path, &refs, &options)
        })
        .map_err(ckpt_error)?;
    Ok(saved.bytes)
}
