//! The training examples' checkpoints through `ringfeed-ckpt`: model
//! parameters, optimizer state (tensors by name, under a prefix each) and
//! the loader's resume state (its JSON) in one safetensors file per save, written in the background by an
//! [`AsyncSaver`] (training goes on as soon as the tensors are copied),
//! the last two kept by a [`CheckpointDir`].

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use ringfeed::tch::{Device, Tensor};
use ringfeed_ckpt::{AsyncSaver, CheckpointDir, SaveHandle, SaveOptions, TensorRef};

/// Metadata keys of the loader state and the step.
const LOADER_KEY: &str = "ringfeed.loader_state";
const STEP_KEY: &str = "train.step";

/// Saves checkpoints in the background, one at a time.
pub(crate) struct Saver {
    dir: CheckpointDir,
    saver: AsyncSaver,
    pending: Option<SaveHandle>,
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

    /// Starts saving the tensor sets (each `(prefix, tensors by name)`,
    /// e.g. `("model.", params)`) and the loader state's JSON at `step`;
    /// returns once they are copied. The previous save's error, if any, is
    /// this call's.
    pub(crate) fn save(
        &mut self,
        sets: &[(&str, &[(String, Tensor)])],
        loader: &str,
        step: u64,
    ) -> Result<()> {
        self.wait()?;
        let names: Vec<(String, &Tensor)> = sets
            .iter()
            .copied()
            .flat_map(|(prefix, set)| set.iter().map(move |(name, t)| (format!("{prefix}{name}"), t)))
            .collect();
        // Copied once, by the saver, from libtorch's memory (a CUDA tensor
        // comes down piece by piece) into its staging buffers.
        let refs: Vec<TensorRef<'_>> =
            names.iter().map(|(n, t)| TensorRef::from_tch(n, t)).collect::<ringfeed_ckpt::Result<_>>()?;
        let options =
            SaveOptions::default().metadata(LOADER_KEY, loader).metadata(STEP_KEY, step.to_string());
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
    /// The loader state's JSON.
    pub(crate) loader: String,
    pub(crate) tensors: BTreeMap<String, Tensor>,
}

/// The newest complete checkpoint in `dir` (checksums verified).
pub(crate) fn restore(dir: &Path) -> Result<Restored> {
    let ckpts = CheckpointDir::new(dir, 2)?;
    let (step, ckpt) = ckpts.latest()?.with_context(|| format!("no checkpoint in {}", dir.display()))?;
    let loader = ckpt.metadata().get(LOADER_KEY).context("no loader state in the checkpoint")?.clone();
    // Read with direct I/O straight into libtorch memory (pinned when CUDA
    // is available), checksums checked.
    let tensors = ckpt.load_tch(Device::Cpu)?.into_iter().collect();
    Ok(Restored { step, loader, tensors })
}
