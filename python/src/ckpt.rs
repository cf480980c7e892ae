//! Checkpoints from Python: safetensors files (and Hugging Face sharded
//! sets) loaded with ringfeed-ckpt's direct reads and checksums, each
//! tensor handed to torch through DLPack without a copy; saves written
//! crash-safe (temporary file, fsync, rename).

use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use ringfeed_ckpt::{Checkpoint, Dtype, SaveOptions, ShardedCheckpoint, TensorInfo, TensorRef, TensorRegion};

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
            out.extend(region_exports(file.load_region(keep)?)?);
        }
    }
    Ok(out)
}

/// One export per tensor of `region`, all sharing its buffer (freed when
/// the last consumer's tensor is); a tensor misaligned for its element type
/// (the format allows any offset) is copied into memory aligned for 8-byte
/// elements instead.
fn region_exports(region: TensorRegion) -> ringfeed_ckpt::Result<Vec<Read>> {
    let entries = region.tensors().to_vec();
    let base = region.as_bytes().as_ptr() as usize;
    let aligned = |info: &TensorInfo, at: usize| {
        (base + at).is_multiple_of((info.dtype.bits() as usize).div_ceil(8).clamp(1, 8))
    };
    let copies: Vec<Option<Export>> = entries
        .iter()
        .map(|(info, at)| {
            (!aligned(info, *at)).then(|| aligned_copy(&region.as_bytes()[*at..*at + info.len() as usize]))
        })
        .collect();
    let ranges: Vec<(usize, usize)> = entries
        .iter()
        .filter(|(info, at)| aligned(info, *at))
        .map(|(info, at)| (*at, info.len() as usize))
        .collect();
    let mut shared = Export::split(region, TensorRegion::as_mut_bytes, &ranges)
        .ok_or_else(|| {
            ringfeed_ckpt::Error::Config("tensor ranges overlap in the load buffer (a bug)".into())
        })?
        .into_iter();
    Ok(entries
        .into_iter()
        .zip(copies)
        .map(|((info, _), copy)| {
            let export = copy.or_else(|| shared.next()).expect("one shared export per aligned tensor");
            (info.name, info.dtype, info.shape, export)
        })
        .collect())
}

/// `bytes` copied into a `u64` vector (aligned for every element type) and
/// exported as flat `uint8`.
fn aligned_copy(bytes: &[u8]) -> Export {
    let len = bytes.len();
    let mut words = vec![0u64; len.div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..len].copy_from_slice(bytes);
    Export::from_owner(
        words,
        move |w| &mut bytemuck::cast_slice_mut::<u64, u8>(w)[..len],
        &[len],
        DlDataType::U8,
    )
    .expect("a u64 vector holds its bytes, aligned")
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
