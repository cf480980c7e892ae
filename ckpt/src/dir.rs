//! [`CheckpointDir`]: numbered checkpoints in a directory, the last K kept.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::load::Checkpoint;
use crate::save::{SaveOptions, Saved, TensorRef, save, sync_dir};

/// A directory of checkpoints named `step-NNNNNNNNNNNN.safetensors`; each
/// [`save`](Self::save) is crash-safe and then removes all but the newest
/// `keep`. [`latest`](Self::latest) finds the newest whose header is valid.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    dir: PathBuf,
    keep: usize,
}

impl CheckpointDir {
    /// `dir` (created if missing), keeping the last `keep` (at least 1).
    pub fn new(dir: impl AsRef<Path>, keep: usize) -> Result<CheckpointDir> {
        if keep == 0 {
            return Err(Error::Config("keep must be at least 1".into()));
        }
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create the directory", &dir, e))?;
        Ok(CheckpointDir { dir, keep })
    }

    /// The file of step `step`.
    pub fn path_of(&self, step: u64) -> PathBuf {
        self.dir.join(format!("step-{step:012}.safetensors"))
    }

    /// Saves step `step`, then removes the oldest beyond `keep`.
    pub fn save(&self, step: u64, tensors: &[TensorRef<'_>], options: &SaveOptions) -> Result<Saved> {
        let saved = save(self.path_of(step), tensors, options)?;
        self.prune()?;
        Ok(saved)
    }

    /// Steps present, oldest first.
    pub fn steps(&self) -> Result<Vec<u64>> {
        let mut steps = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| Error::io("list", &self.dir, e))? {
            let entry = entry.map_err(|e| Error::io("list", &self.dir, e))?;
            let name = entry.file_name();
            let step = name
                .to_str()
                .and_then(|n| n.strip_prefix("step-"))
                .and_then(|n| n.strip_suffix(".safetensors"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(step) = step {
                steps.push(step);
            }
        }
        steps.sort_unstable();
        Ok(steps)
    }

    /// The newest step whose file opens (header valid, data complete),
    /// with its checkpoint; `None` when there is none.
    pub fn latest(&self) -> Result<Option<(u64, Checkpoint)>> {
        for step in self.steps()?.into_iter().rev() {
            match Checkpoint::open(self.path_of(step)) {
                Ok(c) => return Ok(Some((step, c))),
                Err(e) => log::warn!("skipping checkpoint step {step}: {e}"),
            }
        }
        Ok(None)
    }

    /// Removes all but the newest `keep` checkpoints ([`save`](Self::save)
    /// does it after each save; call it after saving to
    /// [`path_of`](Self::path_of) another way, e.g. with an [`AsyncSaver`](crate::AsyncSaver)).
    pub fn prune(&self) -> Result<()> {
        let steps = self.steps()?;
        let excess = steps.len().saturating_sub(self.keep);
        for step in &steps[..excess] {
            let p = self.path_of(*step);
            std::fs::remove_file(&p).map_err(|e| Error::io("remove the old checkpoint", &p, e))?;
        }
        if excess > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}
