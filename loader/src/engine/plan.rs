//! Which records make up each batch: the epoch order, split between ranks
//! and cut into batches. Pure arithmetic on `(dataset size, seed, epoch,
//! rank, world, batch size)`, shared by the workers, the consumer and
//! `ringfeed order`; nothing here depends on how many cores read.

use serde::{Deserialize, Serialize};

use super::config::{MAX_BATCH_SIZE, check_range};
use crate::Result;
use crate::order::{BlockShuffle, DdpConfig, Permutation};

/// How each epoch orders the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum Shuffle {
    /// Records in dataset order, every epoch (evaluation, debugging).
    Sequential,
    /// A uniform-looking permutation of all records per epoch
    /// ([`Permutation`]); every read is a random read.
    Global,
    /// Runs of `block_len` neighbouring records are permuted, then records
    /// are shuffled within windows of `window` records ([`BlockShuffle`]):
    /// few large reads, weaker mixing. For small records.
    Block {
        /// Records per run read together.
        block_len: u64,
        /// Records shuffled together.
        window: u64,
    },
}

impl Shuffle {
    /// Block shuffle with the defaults used by `ringfeed bench`: blocks of
    /// 64 records, windows of 1024.
    pub fn block() -> Self {
        Shuffle::Block { block_len: 64, window: 1024 }
    }
}

enum Order {
    Sequential,
    Global(Permutation),
    Block(BlockShuffle),
}

/// The batches of one epoch for one rank.
///
/// Global (and sequential) order splits the epoch between ranks like
/// PyTorch's `DistributedSampler` (rank `r` takes positions `r, r + world,
/// ...`). Block order gives each rank a contiguous range of positions
/// instead, so that a rank's reads stay within few blocks and coalesce;
/// the per-rank counts, padding and `drop_last` rules are the same.
pub struct EpochPlan {
    n: u64,
    batch: u64,
    ddp: DdpConfig,
    samples: u64,
    batches: u64,
    order: Order,
}

impl std::fmt::Debug for EpochPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochPlan")
            .field("records", &self.n)
            .field("batch", &self.batch)
            .field("ddp", &self.ddp)
            .field("batches", &self.batches)
            .finish()
    }
}

impl EpochPlan {
    /// Plans epoch `epoch` of a dataset of `n` records.
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) when `batch` is outside
    /// `1..=65536` or a block size is 0.
    pub fn new(n: u64, shuffle: Shuffle, seed: u64, epoch: u64, ddp: DdpConfig, batch: u64) -> Result<Self> {
        check_range("batch size", batch, 1, MAX_BATCH_SIZE)?;
        let order = match shuffle {
            Shuffle::Sequential => Order::Sequential,
            Shuffle::Global => Order::Global(Permutation::new(n, seed, epoch)),
            Shuffle::Block { block_len, window } => {
                Order::Block(BlockShuffle::new(n, block_len, window, seed, epoch)?)
            }
        };
        let samples = ddp.samples_per_rank(n);
        let batches = ddp.batches_per_rank(n, batch);
        Ok(EpochPlan { n, batch, ddp, samples, batches, order })
    }

    /// Batches this rank gets in the epoch (equal on every rank).
    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// Samples this rank gets in the epoch.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Position in the epoch order of this rank's `local`-th sample.
    fn position(&self, local: u64) -> u64 {
        match self.order {
            Order::Block(_) => (self.ddp.rank * self.samples + local) % self.n,
            _ => self.ddp.global_position(self.n, local),
        }
    }

    /// Record indices of batch `b` (`b < batches()`), in batch order.
    pub fn batch_indices(&self, b: u64) -> Vec<u64> {
        assert!(b < self.batches, "batch {b} out of range ({} batches)", self.batches);
        let start = b * self.batch;
        let end = (start + self.batch).min(self.samples);
        match &self.order {
            Order::Sequential => (start..end).map(|i| self.position(i)).collect(),
            Order::Global(p) => (start..end).map(|i| p.get(self.position(i))).collect(),
            Order::Block(bs) => {
                // Positions are contiguous except where padding wraps to the
                // start; walk each contiguous run with the cached iterator.
                let mut out = Vec::with_capacity((end - start) as usize);
                let mut i = start;
                while i < end {
                    let first = self.position(i);
                    let run = (end - i).min(self.n - first);
                    out.extend(bs.iter_range(first..first + run));
                    i += run;
                }
                out
            }
        }
    }
}

/// A run of consecutive batches of one epoch that one worker reads
/// together (in block mode, about a window's worth, so its reads coalesce).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unit {
    pub(crate) epoch: u64,
    pub(crate) first: u64,
    pub(crate) count: u64,
}

/// Prefetch depth when none is set.
pub(crate) const DEFAULT_PREFETCH: usize = 8;
/// The most the default depth grows to in block mode, so that a unit can
/// cover a whole window (its reads coalesce best) without the window
/// deciding the memory.
pub(crate) const MAX_DEFAULT_BLOCK_PREFETCH: usize = 64;

/// How a run is read by `cores` workers that each read `reads` units at
/// once: batches per unit and the prefetch depth (`prefetch`, or the
/// default). A unit is one batch, or in block mode the batches of a window
/// as far as the depth allows: all the units being read fit in `prefetch`
/// batches (one batch each at least), so memory follows the prefetch
/// depth, never the window.
pub(crate) fn read_ahead(
    shuffle: Shuffle,
    batch: u64,
    prefetch: Option<usize>,
    cores: usize,
    reads: usize,
) -> (u64, usize) {
    let reading = cores.saturating_mul(reads).max(1);
    let (window_batches, prefetch) = match shuffle {
        Shuffle::Block { window, .. } => {
            let window_batches = window.div_ceil(batch.max(1)).max(1);
            // By default, deep enough to read whole windows (plus a queued
            // batch per core), within a fixed cap.
            let whole = usize::try_from(window_batches)
                .unwrap_or(usize::MAX)
                .saturating_mul(reading)
                .saturating_add(cores);
            (window_batches, prefetch.unwrap_or(whole.clamp(DEFAULT_PREFETCH, MAX_DEFAULT_BLOCK_PREFETCH)))
        }
        _ => (1, prefetch.unwrap_or(DEFAULT_PREFETCH)),
    };
    let fits = u64::try_from(prefetch / reading).unwrap_or(u64::MAX).max(1);
    (window_batches.min(fits), prefetch)
}

/// The units of a run, in delivery order: from batch `start_batch` of
/// `start_epoch` up to the end of epoch `end_epoch - 1`.
pub(crate) fn units(
    start_epoch: u64,
    start_batch: u64,
    end_epoch: u64,
    batches_per_epoch: u64,
    unit_len: u64,
) -> impl Iterator<Item = Unit> {
    (start_epoch..end_epoch).flat_map(move |epoch| {
        let first = if epoch == start_epoch { start_batch } else { 0 };
        (first..batches_per_epoch).step_by(unit_len as usize).map(move |b| Unit {
            epoch,
            first: b,
            count: unit_len.min(batches_per_epoch - b),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(plan: &EpochPlan) -> Vec<u64> {
        (0..plan.batches()).flat_map(|b| plan.batch_indices(b)).collect()
    }

    #[test]
    fn ranks_partition_the_epoch_in_every_mode() {
        for shuffle in [Shuffle::Sequential, Shuffle::Global, Shuffle::Block { block_len: 4, window: 16 }] {
            for world in 1..=3 {
                let mut seen = Vec::new();
                for rank in 0..world {
                    let ddp = DdpConfig::new(rank, world, true).unwrap();
                    let plan = EpochPlan::new(101, shuffle, 7, 3, ddp, 8).unwrap();
                    seen.extend(all(&plan));
                }
                let mut sorted = seen.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), seen.len(), "{shuffle:?} world {world}: ranks overlap");
            }
        }
    }

    #[test]
    fn padding_covers_every_record() {
        for shuffle in [Shuffle::Global, Shuffle::Block { block_len: 3, window: 7 }] {
            let mut seen = std::collections::BTreeSet::new();
            for rank in 0..4 {
                let plan =
                    EpochPlan::new(10, shuffle, 1, 0, DdpConfig::new(rank, 4, false).unwrap(), 2).unwrap();
                assert_eq!(plan.samples(), 3);
                seen.extend(all(&plan));
            }
            assert_eq!(seen.len(), 10);
        }
    }

    #[test]
    fn units_follow_the_prefetch_depth_not_the_window() {
        let block = |window| Shuffle::Block { block_len: 64, window };
        // Defaults: a whole window per unit while it fits in 64 batches.
        assert_eq!(read_ahead(block(1024), 64, None, 2, 1), (16, 34));
        assert_eq!(read_ahead(block(1 << 40), 64, None, 2, 1), (32, 64));
        assert_eq!(read_ahead(Shuffle::Global, 64, None, 2, 1), (1, 8));
        // An explicit depth bounds the unit whatever the window.
        for window in [1024, 8192, 65536, u64::MAX] {
            assert_eq!(read_ahead(block(window), 64, Some(1), 2, 1), (1, 1));
            assert_eq!(read_ahead(block(window), 64, Some(8), 2, 2), (2, 8));
        }
        assert_eq!(read_ahead(block(100), 64, Some(1000), 1, 2), (2, 1000));
    }

    #[test]
    fn batch_sizes_outside_the_range_are_refused() {
        let ddp = DdpConfig::default();
        for batch in [0, MAX_BATCH_SIZE + 1, u64::MAX] {
            let err = EpochPlan::new(10, Shuffle::Global, 0, 0, ddp, batch).unwrap_err();
            assert!(err.to_string().contains("batch size must be 1..=65536"), "{err}");
        }
        assert!(EpochPlan::new(10, Shuffle::Global, 0, 0, ddp, MAX_BATCH_SIZE).is_ok());
    }

    #[test]
    fn units_cover_the_run_in_order() {
        let us: Vec<Unit> = units(2, 3, 4, 5, 2).collect();
        let flat: Vec<(u64, u64)> =
            us.iter().flat_map(|u| (u.first..u.first + u.count).map(|b| (u.epoch, b))).collect();
        assert_eq!(flat, [(2, 3), (2, 4), (3, 0), (3, 1), (3, 2), (3, 3), (3, 4)]);
        assert_eq!(units(0, 0, 3, 0, 1).count(), 0);
    }
}
