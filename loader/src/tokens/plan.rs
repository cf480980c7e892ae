//! [`WindowPlan`]: which token windows make each batch of an epoch, for a
//! rank. Pure arithmetic on `(corpus length, block size, batch size, mode,
//! seed, epoch, rank, world)`, like [`EpochPlan`] for records.

use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::packed::{Packer, Segment};
use crate::engine::plan::{EpochPlan, Shuffle};
use crate::order::DdpConfig;
use crate::{Error, Result};

/// How windows are drawn from the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum WindowMode {
    /// Exact epochs: the corpus is cut into windows at `0, T, 2T, ...`
    /// (each reads `T + 1` tokens: `x` and `y` shifted by one), and every
    /// window is read once per epoch, in the order `shuffle` gives
    /// (block shuffle reads runs of neighbouring windows together).
    /// Windows are split between ranks in full batches of equal count: the
    /// fewer than `world × batch` left over are skipped that epoch (other
    /// ones each epoch, as the order changes).
    Epoch {
        /// Order of the windows in each epoch.
        shuffle: Shuffle,
    },
    /// nanoGPT's `get_batch`: each window starts at a uniform random
    /// offset in `[0, tokens - T)`, drawn from `(seed, epoch, rank,
    /// batch)`, so a run is reproducible and resumable. An "epoch" is as
    /// many batches as [`WindowMode::Epoch`] gives, for accounting.
    Random,
    /// Document-aware packing: windows assembled from whole documents
    /// (see [`Segment`]), each with position ids that restart at every
    /// document, `cu_seqlens` and a loss mask. Documents are ordered by
    /// `shuffle` (sequential or global; block is refused), windows split
    /// between ranks in full batches of equal count.
    Packed {
        /// Order of the documents in each epoch.
        shuffle: Shuffle,
    },
}

/// The batches of one epoch for one rank.
#[derive(Debug)]
pub struct WindowPlan {
    block: u64,
    batch: u64,
    windows: u64,
    batches: u64,
    /// Random draws: the room for a window's start.
    span: u64,
    key: u64,
    epoch_plan: Option<EpochPlan>,
    packer: Option<Packer>,
}

impl WindowPlan {
    /// Plans epoch `epoch` of a corpus of `tokens` tokens for rank `rank`
    /// of `world`, windows of `block_size` (+1) tokens, `batch` windows a
    /// batch.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a zero block size, batch or world, a rank
    /// outside the world, or a corpus too short for one batch per rank.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tokens: u64,
        block_size: u64,
        batch: u64,
        mode: WindowMode,
        seed: u64,
        epoch: u64,
        rank: u64,
        world: u64,
    ) -> Result<WindowPlan> {
        let ddp = ranks(block_size, batch, rank, world)?;
        let windows = tokens.saturating_sub(1) / block_size;
        let batches = ddp.batches_per_rank(windows, batch);
        if batches == 0 {
            return Err(Error::Config(format!(
                "{tokens} tokens make {windows} windows of {block_size} + 1: not one batch of {batch} for each of \
                 {world} ranks"
            )));
        }
        let epoch_plan = match mode {
            WindowMode::Epoch { shuffle } => Some(EpochPlan::new(windows, shuffle, seed, epoch, ddp, batch)?),
            WindowMode::Random => None,
            WindowMode::Packed { .. } => {
                return Err(Error::Config("packed windows need the documents: WindowPlan::packed".into()));
            }
        };
        let key = crate::order::mix64(
            seed ^ crate::order::mix64(epoch ^ crate::order::mix64(rank ^ 0x746f_6b65_6e73)),
        );
        let span = tokens - block_size;
        Ok(WindowPlan { block: block_size, batch, windows, batches, span, key, epoch_plan, packer: None })
    }

    /// Plans epoch `epoch` of packed windows ([`WindowMode::Packed`]) over
    /// documents starting at `docs` (each document's first token, then the
    /// corpus length: [`TokenCorpus::documents`](crate::TokenCorpus::documents)).
    /// Takes one pass over the document lengths; memory is a count per
    /// 4,096 documents.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), and for block shuffle.
    #[allow(clippy::too_many_arguments)]
    pub fn packed(
        docs: Arc<Vec<u64>>,
        block_size: u64,
        batch: u64,
        shuffle: Shuffle,
        seed: u64,
        epoch: u64,
        rank: u64,
        world: u64,
    ) -> Result<WindowPlan> {
        let ddp = ranks(block_size, batch, rank, world)?;
        let shuffled = match shuffle {
            Shuffle::Sequential => false,
            Shuffle::Global => true,
            _ => return Err(Error::Config("packed windows order documents sequentially or globally".into())),
        };
        let planned = Packer::windows_at_least(&docs, block_size);
        let packer = Packer::new(docs, block_size, shuffled, seed, epoch);
        let windows = packer.windows();
        let batches = ddp.batches_per_rank(planned, batch);
        if batches == 0 {
            return Err(Error::Config(format!(
                "the documents pack into {windows} windows of {block_size}: not one batch of {batch} for each of \
                 {world} ranks"
            )));
        }
        // The planned windows are the epoch's first ones (it has at least as many).
        let epoch_plan = Some(EpochPlan::new(planned, Shuffle::Sequential, seed, epoch, ddp, batch)?);
        let packer = Some(packer);
        Ok(WindowPlan { block: block_size, batch, windows, batches, span: 0, key: 0, epoch_plan, packer })
    }

    /// Windows in the corpus (all ranks); packed: in this epoch's order.
    pub fn windows(&self) -> u64 {
        self.windows
    }

    /// Batches this rank gets in the epoch (the same on every rank).
    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// Tokens each window reads: the block size + 1.
    pub fn window_tokens(&self) -> u64 {
        self.block + 1
    }

    /// The segments of the epoch's packed window `w` (`w < windows()`),
    /// planned for a batch or not; `None` for unpacked plans.
    pub fn packed_window(&self, w: u64) -> Option<Vec<Segment>> {
        let p = self.packer.as_ref()?;
        (w < p.windows()).then(|| p.window(w))
    }

    /// Whether windows are packed from documents.
    pub fn is_packed(&self) -> bool {
        self.packer.is_some()
    }

    /// The segments each window of batch `b` is made of (`b <
    /// batches()`): one of `T + 1` tokens, or for packed windows the
    /// pieces of documents.
    ///
    /// # Panics
    ///
    /// If `b >= batches()`.
    pub fn batch_segments(&self, b: u64) -> Vec<Vec<Segment>> {
        match (&self.packer, &self.epoch_plan) {
            (Some(p), Some(e)) => {
                assert!(b < self.batches, "batch {b} out of range ({} batches)", self.batches);
                e.batch_indices(b).into_iter().map(|w| p.window(w)).collect()
            }
            _ => self
                .batch_offsets(b)
                .into_iter()
                .map(|start| vec![Segment { start, len: self.block + 1 }])
                .collect(),
        }
    }

    /// The corpus offsets where the windows of batch `b` start (`b <
    /// batches()`), in batch order (a packed window: its first segment's).
    ///
    /// # Panics
    ///
    /// If `b >= batches()`.
    pub fn batch_offsets(&self, b: u64) -> Vec<u64> {
        assert!(b < self.batches, "batch {b} out of range ({} batches)", self.batches);
        if self.packer.is_some() {
            return self.batch_segments(b).iter().map(|w| w.first().map_or(0, |s| s.start)).collect();
        }
        match &self.epoch_plan {
            Some(p) => p.batch_indices(b).into_iter().map(|w| w * self.block).collect(),
            None => {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(self.key ^ crate::order::mix64(b));
                (0..self.batch).map(|_| uniform(&mut rng, self.span)).collect()
            }
        }
    }
}

/// The split between ranks, after checking the sizes: full batches of
/// equal count on every rank (the tail is dropped).
fn ranks(block_size: u64, batch: u64, rank: u64, world: u64) -> Result<DdpConfig> {
    if block_size == 0 || batch == 0 {
        return Err(Error::Config("block size and batch size must be at least 1".into()));
    }
    DdpConfig::new(rank, world, true)
}

/// A uniform draw from `[0, n)` (Lemire's method, without bias).
fn uniform(rng: &mut impl Rng, n: u64) -> u64 {
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(n);
        let low = m as u64;
        if low >= n.wrapping_neg() % n {
            return (m >> 64) as u64;
        }
    }
}
