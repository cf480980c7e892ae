//! The loader's resumable state: a few integers.

use serde::{Deserialize, Serialize};

use super::plan::Shuffle;
use crate::error::{Error, Result};

/// Everything needed to continue a run exactly where it stopped: feed it
/// to [`LoaderBuilder::resume`](crate::LoaderBuilder::resume) and the
/// loader yields exactly the batches the stopped run had not delivered.
///
/// Serialize it with serde (e.g. JSON) next to the model checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderState {
    /// Base seed of all orders and per-sample RNGs.
    pub seed: u64,
    /// Epoch of the next batch.
    pub epoch: u64,
    /// Index (within `epoch`, for this rank) of the next batch.
    pub next_batch: u64,
    /// Records per batch.
    pub batch_size: u64,
    /// This process's rank.
    pub rank: u64,
    /// Number of ranks.
    pub world_size: u64,
    /// Whether the tail of each epoch is dropped rather than padded.
    pub drop_last: bool,
    /// The order.
    pub shuffle: Shuffle,
    /// Records in the dataset, to refuse resuming on a different one.
    pub records: u64,
}

impl LoaderState {
    /// Parses a state saved with `serde_json` (as `ringfeed` writes it).
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Config(format!("invalid loader state: {e}")))
    }

    /// The state as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("state serializes")
    }

    /// Moves past one delivered batch of an epoch with `batches_per_epoch`.
    pub(crate) fn advance(&mut self, batches_per_epoch: u64) {
        self.next_batch += 1;
        if self.next_batch >= batches_per_epoch {
            self.epoch += 1;
            self.next_batch = 0;
        }
    }
}
