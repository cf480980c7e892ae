//! Document-aware packing: windows assembled from whole documents.
//!
//! Each document (its tokens and end-of-text) becomes segments of at most
//! `T + 1` tokens (a longer one is cut at `T, 2T, ...`, the pieces
//! overlapping by one token as exact windows do); a segment of `n` tokens
//! fills `n - 1` positions of a window (`x` its first `n - 1` tokens, `y`
//! its last `n - 1`), so no target crosses a document. Segments go into
//! windows of `T` positions greedily, in the epoch's document order; a
//! segment that does not fit closes the window, whose rest is padding
//! (loss mask 0).
//!
//! Memory stays small whatever the corpus: documents are packed in groups
//! of [`GROUP`] (in epoch order; no window spans two groups), the epoch's
//! plan keeps only each group's window count, and a window is found by
//! packing its group again (the last group packed is cached by the
//! caller's plan).

use std::sync::{Arc, Mutex};

use crate::order::Permutation;

/// Documents packed together.
pub(crate) const GROUP: u64 = 4096;

/// A piece of a document: `len` tokens from corpus offset `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Corpus offset of its first token.
    pub start: u64,
    /// Tokens (at least 2).
    pub len: u64,
}

#[derive(Debug)]
pub(crate) struct Packer {
    docs: Arc<Vec<u64>>,
    block: u64,
    order: Option<Permutation>,
    /// Windows before each group, then the total.
    before: Vec<u64>,
    cache: Mutex<Option<(u64, Vec<Vec<Segment>>)>>,
}

impl Packer {
    /// `docs`: each document's start offset, then the corpus length.
    pub(crate) fn new(docs: Arc<Vec<u64>>, block: u64, shuffled: bool, seed: u64, epoch: u64) -> Packer {
        let n = docs.len().saturating_sub(1) as u64;
        let order = shuffled.then(|| Permutation::new(n, seed, epoch));
        let mut p = Packer { docs, block, order, before: vec![0], cache: Mutex::new(None) };
        let mut total = 0;
        for g in 0..n.div_ceil(GROUP) {
            total += p.pack_group(g).len() as u64;
            p.before.push(total);
        }
        p
    }

    pub(crate) fn windows(&self) -> u64 {
        *self.before.last().expect("not empty")
    }

    /// Fewest windows any document order packs into: every target
    /// position, `T` to a window. Epochs plan this many, so that every
    /// epoch has the same number of batches whatever its order (the few
    /// windows past it are left out of that epoch).
    pub(crate) fn windows_at_least(docs: &[u64], block: u64) -> u64 {
        docs.windows(2).map(|w| (w[1] - w[0]).saturating_sub(1)).sum::<u64>().div_ceil(block.max(1))
    }

    /// The segments of window `w` (`w < windows()`).
    pub(crate) fn window(&self, w: u64) -> Vec<Segment> {
        let g = self.before.partition_point(|&b| b <= w) as u64 - 1;
        let local = (w - self.before[g as usize]) as usize;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.as_ref().is_none_or(|(cg, _)| *cg != g) {
            *cache = Some((g, self.pack_group(g)));
        }
        cache.as_ref().expect("set above").1[local].clone()
    }

    /// The windows of group `g`, packed greedily.
    fn pack_group(&self, g: u64) -> Vec<Vec<Segment>> {
        let n = self.docs.len() as u64 - 1;
        let t = self.block;
        let mut windows: Vec<Vec<Segment>> = Vec::new();
        let mut current: Vec<Segment> = Vec::new();
        let mut used = 0u64;
        for pos in g * GROUP..((g + 1) * GROUP).min(n) {
            let d = self.order.as_ref().map_or(pos, |p| p.get(pos)) as usize;
            let (start, end) = (self.docs[d], self.docs[d + 1]);
            let mut at = start;
            // Pieces of at most T + 1 tokens, overlapping by one.
            while end - at >= 2 {
                let len = (end - at).min(t + 1);
                if used + len - 1 > t {
                    windows.push(std::mem::take(&mut current));
                    used = 0;
                }
                current.push(Segment { start: at, len });
                used += len - 1;
                at += len - 1;
            }
        }
        if !current.is_empty() {
            windows.push(current);
        }
        windows
    }
}
