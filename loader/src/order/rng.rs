//! Per-sample random streams for augmentation.
//!
//! Seeding each sample's generator from `(seed, epoch, global_index)`
//! rather than drawing from a per-worker generator makes augmentations
//! independent of how samples are spread over workers and ranks, and
//! reproducible when a run resumes mid-epoch.

use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::SeedableRng;

use super::{GOLDEN, TAG_SAMPLE, hash_words, mix64};

/// The generator every sample's randomness comes from (see [`sample_rng`]).
pub type SampleRng = Xoshiro256PlusPlus;

/// A generator for sample `global_index` of epoch `epoch` under `seed`.
///
/// The three integers are hashed into one word, which a splitmix64 chain
/// expands into the 256-bit xoshiro state. Deterministic; distinct triples
/// give unrelated streams. Draw from it with the
/// [`rand_core::Rng`](rand_xoshiro::rand_core::Rng) trait.
pub fn sample_rng(seed: u64, epoch: u64, global_index: u64) -> Xoshiro256PlusPlus {
    let mut state = hash_words(TAG_SAMPLE, &[seed, epoch, global_index]);
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_exact_mut(8) {
        state = state.wrapping_add(GOLDEN);
        chunk.copy_from_slice(&mix64(state).to_le_bytes());
    }
    Xoshiro256PlusPlus::from_seed(bytes)
}

#[cfg(test)]
mod tests {
    use rand_xoshiro::rand_core::Rng;

    use super::*;

    #[test]
    fn deterministic() {
        let mut a = sample_rng(1, 2, 3);
        let mut b = sample_rng(1, 2, 3);
        for _ in 0..10 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(sample_rng(1, 2, 3).next_u64(), sample_rng(1, 3, 2).next_u64());
    }
}
