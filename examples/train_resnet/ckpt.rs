//! The training example's checkpoints through `ringfeed-ckpt`: model
//! parameters, SGD momentum and the loader's resume state in one
//! safetensors file per save, written in the background by an
//! [`AsyncSaver`] (training goes on as soon as the tensors are copied),
//! the last two kept by a [`CheckpointDir`].

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use ringfeed::LoaderState;
use ringfeed::tch::{Device, Kind, Tensor};
use ringfeed_ckpt::{AsyncSaver, CheckpointDir, Dtype, SaveHandle, SaveOptions, TensorRef};

/// Metadata keys of the loader state and the step.
const LOADER_KEY: &str = "ringfeed.loader_state";
const STEP_KEY: &str = "train.step";

/// Saves checkpoints in the background, one at a time.
pub(crate) struct Saver {
    dir: CheckpointDir,
    saver: AsyncSaver,
    pending: Option<SaveHandle>,
}

/// A tensor's dtype in a safetensors file.
fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::Bool,
        other => bail!("no safetensors dtype for {other:?}"),
    })
}

/// A tensor's bytes on the CPU (a copy: a CUDA tensor comes down first).
fn bytes_of(t: &Tensor) -> Result<Vec<u8>> {
    let t = t.to_device(Device::Cpu).contiguous();
    let mut out = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
    t.f_copy_data_u8(&mut out, t.numel())?;
    Ok(out)
}

impl Saver {
    pub(crate) fn new(dir: &Path) -> Result<Saver> {
        // Staging: 64 MiB covers this example's model and momentum; a
        // bigger checkpoint still saves, the copy then waits for the disk.
        Ok(Saver {
            dir: CheckpointDir::new(dir, 2)?,
            saver: AsyncSaver::new(64 << 20, SaveOptions::default())?,
            pending: None,
        })
    }

    /// Starts saving `params` and `momentum` (by name) and the loader
    /// state at `step`; returns once they are copied. The previous save's
    /// error, if any, is this call's.
    pub(crate) fn save(
        &mut self,
        params: &[(String, Tensor)],
        momentum: &[(String, Tensor)],
        loader: &LoaderState,
        step: u64,
    ) -> Result<()> {
        self.wait()?;
        let mut owned = Vec::new();
        for (prefix, set) in [("model.", params), ("optim.momentum.", momentum)] {
            for (name, t) in set {
                let shape: Vec<u64> = t.size().iter().map(|&d| d as u64).collect();
                owned.push((format!("{prefix}{name}"), dtype_of(t.kind())?, shape, bytes_of(t)?));
            }
        }
        let refs: Vec<TensorRef<'_>> = owned
            .iter()
            .map(|(n, d, s, b)| TensorRef::new(n, *d, s, b))
            .collect::<ringfeed_ckpt::Result<_>>()?;
        let options = SaveOptions::default()
            .metadata(LOADER_KEY, loader.to_json())
            .metadata(STEP_KEY, step.to_string());
        // The metadata differs per save: a saver per call would re-allocate
        // its staging, so the options travel with the save instead.
        self.pending = Some(self.saver.save_with(self.dir.path_of(step), &refs, &options)?);
        self.dir.prune()?;
        Ok(())
    }

    /// Waits for the save in flight.
    pub(crate) fn wait(&mut self) -> Result<()> {
        if let Some(h) = self.pending.take() {
            h.wait().context("saving the checkpoint")?;
        }
        Ok(())
    }
}

/// What a checkpoint restores.
pub(crate) struct Restored {
    pub(crate) step: u64,
    pub(crate) loader: LoaderState,
    pub(crate) tensors: BTreeMap<String, Tensor>,
}

/// The newest complete checkpoint in `dir` (checksums verified).
pub(crate) fn restore(dir: &Path) -> Result<Restored> {
    let ckpts = CheckpointDir::new(dir, 2)?;
    let (step, ckpt) = ckpts.latest()?.with_context(|| format!("no checkpoint in {}", dir.display()))?;
    let loader = LoaderState::from_json(
        ckpt.metadata().get(LOADER_KEY).context("no loader state in the checkpoint")?,
    )?;
    let loaded = ckpt.load()?;
    let mut tensors = BTreeMap::new();
    for t in loaded.iter() {
        let kind = match t.dtype() {
            Dtype::F32 => Kind::Float,
            Dtype::F64 => Kind::Double,
            Dtype::F16 => Kind::Half,
            Dtype::BF16 => Kind::BFloat16,
            Dtype::I64 => Kind::Int64,
            Dtype::I32 => Kind::Int,
            Dtype::U8 => Kind::Uint8,
            Dtype::Bool => Kind::Bool,
            other => bail!("tensor {} has dtype {other}, which this example does not restore", t.name()),
        };
        let shape: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
        tensors.insert(t.name().to_owned(), Tensor::f_from_data_size(t.bytes(), &shape, kind)?);
    }
    Ok(Restored { step, loader, tensors })
}
