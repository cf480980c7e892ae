//! A keyed pseudo-random permutation of `[0, n)` with O(1) random access.
//!
//! The core is a Feistel network over the smallest power-of-two domain
//! `2^b >= n`: the `b` bits are split into a left half of `b / 2` bits and
//! a right half of `ceil(b / 2)` bits, and each round XORs one half with a
//! keyed hash of the other, alternating halves (an unbalanced Feistel
//! network when `b` is odd). Every round is invertible whatever the round
//! function, so the network is a bijection of the domain. Using all
//! bit widths rather than only even ones keeps the domain below `2n`, so
//! cycle walking — re-encrypting until the value falls inside `[0, n)` —
//! takes fewer than 2 steps on average. [`ROUNDS`] = 8 rounds (4 per half)
//! is twice the Luby–Rackoff minimum; the round function is the splitmix64
//! finaliser of `half ^ round_key`, with round keys hashed from
//! `(seed, epoch)`.

use super::{GOLDEN, TAG_PERMUTATION, hash_words, mix64};

/// Feistel rounds (half-updates) per encryption.
const ROUNDS: usize = 8;

/// A pseudo-random permutation of `[0, n)`, a pure function of
/// `(n, seed, epoch)`: position → index in O(1) time and memory.
///
/// ```
/// let p = ringfeed::Permutation::new(10, 42, 0);
/// let mut order: Vec<u64> = (0..10).map(|i| p.get(i)).collect();
/// order.sort_unstable();
/// assert_eq!(order, (0..10).collect::<Vec<_>>());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permutation {
    n: u64,
    right_bits: u32,
    left_mask: u64,
    right_mask: u64,
    keys: [u64; ROUNDS],
}

impl Permutation {
    /// The order of epoch `epoch` of a dataset of `n` records under `seed`.
    /// Different `(seed, epoch)` pairs give unrelated orders.
    pub fn new(n: u64, seed: u64, epoch: u64) -> Self {
        Self::from_key(n, hash_words(TAG_PERMUTATION, &[seed, epoch]))
    }

    /// A permutation of `[0, n)` from an already-derived 64-bit key.
    pub(crate) fn from_key(n: u64, key: u64) -> Self {
        // Domain 2^bits is the smallest power of two >= n.
        let bits = if n <= 1 { 0 } else { u64::BITS - (n - 1).leading_zeros() };
        let right_bits = bits.div_ceil(2);
        let left_bits = bits - right_bits;
        let mut keys = [0; ROUNDS];
        for (i, k) in keys.iter_mut().enumerate() {
            *k = mix64(key ^ (i as u64 + 1).wrapping_mul(GOLDEN));
        }
        Permutation {
            n,
            right_bits,
            left_mask: (1 << left_bits) - 1,
            right_mask: (1 << right_bits) - 1,
            keys,
        }
    }

    /// Number of elements permuted.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// True when `n == 0`.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The index at `position` of the order.
    ///
    /// # Panics
    ///
    /// If `position >= self.len()`.
    #[inline]
    pub fn get(&self, position: u64) -> u64 {
        assert!(position < self.n, "position {position} out of range for a permutation of {}", self.n);
        let mut x = position;
        loop {
            x = self.encrypt(x);
            if x < self.n {
                return x;
            }
        }
    }

    /// The position at which `index` appears: the inverse of
    /// [`get`](Self::get), so `p.position_of(p.get(i)) == i`.
    ///
    /// # Panics
    ///
    /// If `index >= self.len()`.
    pub fn position_of(&self, index: u64) -> u64 {
        assert!(index < self.n, "index {index} out of range for a permutation of {}", self.n);
        let mut x = index;
        loop {
            x = self.decrypt(x);
            if x < self.n {
                return x;
            }
        }
    }

    #[inline]
    fn encrypt(&self, x: u64) -> u64 {
        let mut l = x >> self.right_bits;
        let mut r = x & self.right_mask;
        for (i, &k) in self.keys.iter().enumerate() {
            if i % 2 == 0 {
                r ^= mix64(l ^ k) & self.right_mask;
            } else {
                l ^= mix64(r ^ k) & self.left_mask;
            }
        }
        (l << self.right_bits) | r
    }

    fn decrypt(&self, x: u64) -> u64 {
        let mut l = x >> self.right_bits;
        let mut r = x & self.right_mask;
        for (i, &k) in self.keys.iter().enumerate().rev() {
            if i % 2 == 0 {
                r ^= mix64(l ^ k) & self.right_mask;
            } else {
                l ^= mix64(r ^ k) & self.left_mask;
            }
        }
        (l << self.right_bits) | r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_round_trips() {
        for n in [1, 2, 3, 5, 16, 17, 1000, 4097] {
            let p = Permutation::new(n, 7, 3);
            for i in 0..n {
                assert_eq!(p.position_of(p.get(i)), i, "n = {n}");
            }
        }
    }

    #[test]
    fn domain_is_below_twice_n() {
        for n in [2u64, 3, 4, 5, 1000, 1 << 20, (1 << 20) + 1] {
            let p = Permutation::new(n, 0, 0);
            let domain = (p.left_mask + 1) * (p.right_mask + 1);
            assert!(domain >= n && domain < 2 * n, "n = {n}, domain = {domain}");
        }
    }

    #[test]
    fn huge_n_works() {
        let p = Permutation::new(u64::MAX, 1, 2);
        for i in [0, 1, u64::MAX / 2, u64::MAX - 1] {
            assert_eq!(p.position_of(p.get(i)), i);
        }
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn out_of_range_panics() {
        Permutation::new(5, 0, 0).get(5);
    }
}
