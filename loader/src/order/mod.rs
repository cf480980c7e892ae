//! Epoch orders: which record goes where, as pure functions of
//! `(seed, epoch)`.
//!
//! Nothing here does I/O or keeps state beyond a few words, so every rank,
//! worker and resumed run recomputes the same order independently:
//!
//! - [`Permutation`]: a uniform-looking shuffle of `[0, n)` with O(1) memory
//!   and O(1) random access. A materialised `Vec` of indices costs 8 bytes
//!   per record (80 GB for 10^10 records) and must be rebuilt for every
//!   epoch; a keyed Feistel network is a bijection on a power-of-two domain
//!   by construction, and cycle walking restricts it to `[0, n)` exactly.
//! - [`BlockShuffle`]: for small records, where random reads of single
//!   records waste I/O. Runs of neighbouring records (blocks) are permuted,
//!   then records are shuffled inside windows of the block stream: each
//!   window is a handful of whole blocks (few, large reads) and its records
//!   come out in random order. Mixing is weaker than [`Permutation`] (a
//!   record can only land near the other records of its window), which
//!   [`shuffle_quality`] quantifies.
//! - [`DdpConfig`]: splits an epoch between data-parallel ranks exactly as
//!   PyTorch's `DistributedSampler` does.
//! - [`sample_rng`]: an independent random stream per `(seed, epoch,
//!   sample)` for augmentations, so results do not depend on which worker
//!   handled a sample.

mod blocks;
mod ddp;
mod permutation;
mod rng;

pub use self::blocks::{BlockIter, BlockShuffle};
pub use self::ddp::DdpConfig;
pub(crate) use self::ddp::{ddp_env_is_set, env_u64};
pub use self::permutation::Permutation;
pub use self::rng::{SampleRng, sample_rng};

/// Weyl increment of splitmix64 (2^64 / golden ratio).
pub(crate) const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Domain-separation tags, so that the different derived keys of one
/// `(seed, epoch)` are unrelated.
pub(crate) const TAG_PERMUTATION: u64 = 1;
pub(crate) const TAG_BLOCKS: u64 = 2;
pub(crate) const TAG_WINDOW: u64 = 3;
pub(crate) const TAG_SAMPLE: u64 = 4;
pub(crate) const TAG_REPLACE: u64 = 5;

/// The splitmix64 finaliser: a bijection of `u64` with full avalanche.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a tag and a list of words into one well-mixed word.
pub(crate) fn hash_words(tag: u64, words: &[u64]) -> u64 {
    let mut h = mix64(tag ^ 0x5851_F42D_4C95_7F2D);
    for &w in words {
        h = mix64(h.wrapping_add(GOLDEN) ^ mix64(w.wrapping_add(GOLDEN)));
    }
    h
}

/// Two cheap statistics of an order, for comparing shuffling schemes.
///
/// For a uniformly random permutation of `n` elements the expected values
/// are `mean_displacement = (n² - 1) / (3n²) ≈ 1/3` and `adjacency = 2/n`
/// (see [`ShuffleQuality::uniform`]); the identity order has 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShuffleQuality {
    /// Number of positions measured.
    pub n: u64,
    /// Mean of `|order(i) - i|` over all positions, divided by `n`.
    pub mean_displacement: f64,
    /// Fraction of consecutive output pairs `(order(i), order(i + 1))` that
    /// were neighbours in the input (`|a - b| == 1`).
    pub adjacency: f64,
}

impl ShuffleQuality {
    /// The expected statistics of a uniformly random permutation of `n`.
    pub fn uniform(n: u64) -> Self {
        if n < 2 {
            return ShuffleQuality { n, mean_displacement: 0.0, adjacency: 0.0 };
        }
        let nf = n as f64;
        ShuffleQuality { n, mean_displacement: (nf * nf - 1.0) / (3.0 * nf * nf), adjacency: 2.0 / nf }
    }
}

/// Measures [`ShuffleQuality`] of the order `position -> order(position)`
/// over positions `0..n`, in O(n) time and O(1) memory. Both statistics are
/// 0 when `n < 2`.
pub fn shuffle_quality(order: impl Fn(u64) -> u64, n: u64) -> ShuffleQuality {
    if n < 2 {
        return ShuffleQuality { n, mean_displacement: 0.0, adjacency: 0.0 };
    }
    let mut displacement = 0u128;
    let mut adjacent = 0u64;
    let mut prev = order(0);
    displacement += u128::from(prev);
    for i in 1..n {
        let cur = order(i);
        displacement += u128::from(cur.abs_diff(i));
        adjacent += u64::from(cur.abs_diff(prev) == 1);
        prev = cur;
    }
    let nf = n as f64;
    ShuffleQuality {
        n,
        mean_displacement: displacement as f64 / nf / nf,
        adjacency: adjacent as f64 / (nf - 1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_reverse_quality() {
        let q = shuffle_quality(|i| i, 1000);
        assert_eq!(q.mean_displacement, 0.0);
        assert_eq!(q.adjacency, 1.0);
        let q = shuffle_quality(|i| 999 - i, 1000);
        assert_eq!(q.adjacency, 1.0);
        assert!((q.mean_displacement - 0.5).abs() < 0.01);
        assert_eq!(shuffle_quality(|i| i, 1).adjacency, 0.0);
    }

    #[test]
    fn hash_separates_tags_and_words() {
        assert_ne!(hash_words(1, &[0, 0]), hash_words(2, &[0, 0]));
        assert_ne!(hash_words(1, &[0, 1]), hash_words(1, &[1, 0]));
        assert_ne!(hash_words(1, &[0]), hash_words(1, &[0, 0]));
    }
}
