//! Block shuffling for datasets of small records.
//!
//! Reading one small record at a time at random wastes most of every I/O.
//! Here `[0, n)` is cut into blocks of `block_len` neighbouring records
//! (the last one may be shorter) and the blocks are put in the order of a
//! [`Permutation`]; this *block stream* is then cut into windows of
//! `window` records, and each window is put in the order of a
//! [`Permutation`] keyed by `(seed, epoch, window number)`. A window
//! consists of about `window / block_len` whole blocks, so a loader can
//! fetch it with that many large sequential reads, while the records still
//! come out in random order. The price is weaker mixing than a global
//! [`Permutation`]: records stay close to the other records of their
//! window.
//!
//! Everything is a pure function of `(n, block_len, window, seed, epoch)`,
//! in O(1) time and memory per position whatever the window: a window's
//! order is a keyed permutation rather than a shuffled array of its
//! indices, which cost 8 bytes per record of the window and O(`window`)
//! work for every batch drawn from it (a window of 10^12 records could not
//! even be allocated). How many records a loader reads at once is its own
//! business, bounded by its prefetch depth, not by the window.

use std::ops::Range;

use super::{Permutation, TAG_BLOCKS, TAG_WINDOW, hash_words};
use crate::{Error, Result};

/// The block-and-window order of one epoch; see the module docs.
///
/// ```
/// let s = ringfeed::BlockShuffle::new(1000, 16, 64, 42, 0)?;
/// let mut order: Vec<u64> = s.iter_range(0..s.len()).collect();
/// assert_eq!(s.get(10), order[10]);
/// order.sort_unstable();
/// assert_eq!(order, (0..1000).collect::<Vec<_>>());
/// # Ok::<(), ringfeed::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockShuffle {
    n: u64,
    block_len: u64,
    window: u64,
    blocks: Permutation,
    /// Records in the short last block, 0 when all blocks are full.
    tail: u64,
    /// Position in the block stream of the short block's first record;
    /// `n` when there is no short block.
    short_start: u64,
    window_key: u64,
}

impl BlockShuffle {
    /// The order of epoch `epoch` of `n` records under `seed`, permuting
    /// blocks of `block_len` records and shuffling windows of `window`
    /// records. Any `block_len` and `window` from 1 up are valid (values
    /// above `n` act as `n`); neither costs memory.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `block_len` or `window` is 0.
    pub fn new(n: u64, block_len: u64, window: u64, seed: u64, epoch: u64) -> Result<Self> {
        if block_len == 0 {
            return Err(Error::Config(format!("block_len must be 1..={}, got 0", u64::MAX)));
        }
        if window == 0 {
            return Err(Error::Config(format!("window must be 1..={}, got 0", u64::MAX)));
        }
        let num_blocks = n.div_ceil(block_len);
        let blocks = Permutation::from_key(num_blocks, hash_words(TAG_BLOCKS, &[seed, epoch]));
        let tail = n % block_len;
        let short_start = if tail == 0 { n } else { blocks.position_of(num_blocks - 1) * block_len };
        let window_key = hash_words(TAG_WINDOW, &[seed, epoch]);
        Ok(BlockShuffle { n, block_len, window, blocks, tail, short_start, window_key })
    }

    /// Number of records ordered.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// True when there are no records.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Records per block.
    pub fn block_len(&self) -> u64 {
        self.block_len
    }

    /// Records per shuffled window (the last window may be shorter).
    pub fn window(&self) -> u64 {
        self.window
    }

    /// The record at `position` of the order, in O(1) time and memory.
    ///
    /// # Panics
    ///
    /// If `position >= self.len()`.
    pub fn get(&self, position: u64) -> u64 {
        assert!(position < self.n, "position {position} out of range for {} records", self.n);
        let w = position / self.window;
        let start = w * self.window;
        self.stream_record(start + self.window_order(w).get(position - start))
    }

    /// The records at positions `range` of the order, in order.
    ///
    /// # Panics
    ///
    /// If the range is decreasing or ends past `self.len()`.
    pub fn iter_range(&self, range: Range<u64>) -> BlockIter<'_> {
        assert!(
            range.start <= range.end && range.end <= self.n,
            "range {range:?} out of bounds for {} records",
            self.n
        );
        BlockIter { shuffle: self, pos: range.start, end: range.end, window: None }
    }

    /// The order of window `w`: offsets of its records in the block
    /// stream, relative to the window's start.
    fn window_order(&self, w: u64) -> Permutation {
        let start = w * self.window;
        let len = self.window.min(self.n - start);
        Permutation::from_key(len, hash_words(self.window_key, &[w]))
    }

    /// The record at position `s` of the block stream.
    fn stream_record(&self, s: u64) -> u64 {
        let l = self.block_len;
        let (slot, offset) = if s < self.short_start {
            (s / l, s % l)
        } else if s < self.short_start + self.tail {
            (self.short_start / l, s - self.short_start)
        } else {
            // Past the short block: every later slot starts `l - tail` early.
            let t = s - self.tail + l;
            (t / l, t % l)
        };
        self.blocks.get(slot) * l + offset
    }
}

/// Iterator over a range of a [`BlockShuffle`] order; created by
/// [`BlockShuffle::iter_range`].
#[derive(Debug, Clone)]
pub struct BlockIter<'a> {
    shuffle: &'a BlockShuffle,
    pos: u64,
    end: u64,
    /// The current window's number and order.
    window: Option<(u64, Permutation)>,
}

impl Iterator for BlockIter<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.pos >= self.end {
            return None;
        }
        let s = self.shuffle;
        let w = self.pos / s.window;
        let start = w * s.window;
        let order = match &self.window {
            Some((current, order)) if *current == w => order,
            _ => &self.window.insert((w, s.window_order(w))).1,
        };
        let record = s.stream_record(start + order.get(self.pos - start));
        self.pos += 1;
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.end - self.pos).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

impl ExactSizeIterator for BlockIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_a_bijection_of_blocks() {
        // With window 1 the order is the block stream itself: whole blocks
        // in order, the short block included.
        let s = BlockShuffle::new(103, 10, 1, 5, 1).unwrap();
        let order: Vec<u64> = s.iter_range(0..103).collect();
        let mut runs = 0;
        for (i, &r) in order.iter().enumerate() {
            if r % 10 == 0 {
                runs += 1;
            } else {
                assert_eq!(order[i - 1] + 1, r);
            }
        }
        assert_eq!(runs, 11);
    }

    #[test]
    fn huge_windows_cost_nothing() {
        // A window far larger than the dataset is one window: a permutation
        // of whole blocks, computed without allocating per record.
        let s = BlockShuffle::new(1000, 10, u64::MAX, 3, 0).unwrap();
        let mut order: Vec<u64> = s.iter_range(0..1000).collect();
        assert_eq!(s.get(999), order[999]);
        order.sort_unstable();
        assert_eq!(order, (0..1000).collect::<Vec<_>>());
        let big = BlockShuffle::new(1 << 40, 64, 1 << 39, 1, 2).unwrap();
        assert!(big.get((1 << 40) - 1) < 1 << 40);
    }

    #[test]
    fn zero_sizes_are_config_errors() {
        assert!(matches!(BlockShuffle::new(10, 0, 4, 0, 0), Err(Error::Config(_))));
        assert!(matches!(BlockShuffle::new(10, 4, 0, 0, 0), Err(Error::Config(_))));
    }
}
