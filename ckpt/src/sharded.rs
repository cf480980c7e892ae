//! Hugging Face sharded checkpoints: `model.safetensors.index.json`
//! (`{"metadata": {...}, "weight_map": {tensor: file}}`) next to the
//! shard files it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::load::{Checkpoint, CheckpointBuilder, Tensors};

/// The largest index file read (a model with millions of tensors stays
/// far below).
const MAX_INDEX_BYTES: u64 = 100_000_000;

#[derive(Deserialize)]
struct RawIndex {
    #[serde(default)]
    metadata: BTreeMap<String, serde_json::Value>,
    weight_map: BTreeMap<String, String>,
}

/// A sharded checkpoint: every shard's header validated, and every tensor
/// of the index found in the shard it names (and no shard holding a
/// tensor the index does not list).
#[derive(Debug)]
pub struct ShardedCheckpoint {
    index: PathBuf,
    shards: Vec<Checkpoint>,
    metadata: BTreeMap<String, serde_json::Value>,
}

impl ShardedCheckpoint {
    /// Opens the index at `path` (or `path/model.safetensors.index.json`
    /// when `path` is a directory) and its shards with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<ShardedCheckpoint> {
        ShardedCheckpoint::open_with(path, |b| b)
    }

    /// As [`open`](Self::open), each shard opened with the options
    /// `configure` sets on its builder.
    pub fn open_with(
        path: impl AsRef<Path>,
        configure: impl Fn(CheckpointBuilder) -> CheckpointBuilder,
    ) -> Result<ShardedCheckpoint> {
        let mut index = path.as_ref().to_path_buf();
        if index.is_dir() {
            index = index.join("model.safetensors.index.json");
        }
        let bad = |why: String| Error::format(&index, None, why);
        let file = ringfeed_io::open_regular(&index).map_err(|e| Error::io("open", &index, e))?;
        let len = file.metadata().map_err(|e| Error::io("stat", &index, e))?.len();
        if len > MAX_INDEX_BYTES {
            return Err(bad(format!("index of {len} bytes (limit {MAX_INDEX_BYTES})")));
        }
        let raw: RawIndex = serde_json::from_reader(std::io::BufReader::new(file))
            .map_err(|e| bad(format!("not a safetensors index: {e}")))?;
        let dir = index.parent().map(Path::to_path_buf).unwrap_or_default();
        let files: BTreeSet<&str> = raw.weight_map.values().map(String::as_str).collect();
        let mut shards = Vec::with_capacity(files.len());
        for name in &files {
            // Only plain file names next to the index: a hostile index
            // must not make us read `../../etc/shadow`.
            if name.is_empty() || name.contains('/') || name.contains('\0') || *name == "." || *name == ".." {
                return Err(bad(format!("shard name {name:?} is not a file name in the index's directory")));
            }
            let shard = configure(Checkpoint::builder(dir.join(name))).build()?;
            for t in shard.tensors() {
                if raw.weight_map.get(&t.name).map(String::as_str) != Some(*name) {
                    return Err(Error::format(
                        shard.path(),
                        Some(&t.name),
                        "the shard holds a tensor the index does not place in it",
                    ));
                }
            }
            shards.push(shard);
        }
        for (tensor, file) in &raw.weight_map {
            let shard = shards.iter().find(|s| s.path().file_name().and_then(|n| n.to_str()) == Some(file));
            if shard.and_then(|s| s.tensor(tensor)).is_none() {
                return Err(Error::format(
                    &index,
                    Some(tensor),
                    format!("the index places it in {file:?}, which lacks it"),
                ));
            }
        }
        Ok(ShardedCheckpoint { index, shards, metadata: raw.metadata })
    }

    /// The index file.
    pub fn path(&self) -> &Path {
        &self.index
    }

    /// The shards, in file-name order.
    pub fn shards(&self) -> &[Checkpoint] {
        &self.shards
    }

    /// The index's `metadata` (e.g. `total_size`).
    pub fn metadata(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.metadata
    }

    /// Bytes of tensor data in all shards.
    pub fn data_bytes(&self) -> u64 {
        self.shards.iter().map(Checkpoint::data_bytes).sum()
    }

    /// Reads every tensor of every shard.
    pub fn load(&self) -> Result<Tensors> {
        self.load_filtered(|_| true)
    }

    /// Reads the tensors whose name `keep` accepts (shards without any
    /// are not read).
    pub fn load_filtered(&self, keep: impl Fn(&str) -> bool) -> Result<Tensors> {
        let mut all = Tensors::default();
        for shard in &self.shards {
            if shard.tensors().iter().any(|t| keep(&t.name)) {
                let part = shard.load_filtered(&keep)?;
                all.merge(part)
                    .map_err(|name| Error::format(&self.index, Some(&name), "the tensor is in two shards"))?;
            }
        }
        Ok(all)
    }

    /// Verifies every shard ([`Checkpoint::verify`]); tensors checked.
    pub fn verify(&self) -> Result<usize> {
        self.shards.iter().map(Checkpoint::verify).sum()
    }
}
