//! Epoch orders: bijections, determinism, uniformity, block mode, DDP split
//! and per-sample RNG.

use std::collections::HashSet;
use std::time::Instant;

use rand_xoshiro::rand_core::Rng;
use ringfeed::{BlockShuffle, DdpConfig, Error, Permutation, ShuffleQuality, sample_rng, shuffle_quality};

/// Asserts `order` maps `0..n` onto `0..n`, using a bitmap.
fn assert_bijection(n: u64, order: impl Iterator<Item = u64>) {
    let mut seen = vec![0u64; n.div_ceil(64) as usize];
    let mut count = 0u64;
    for i in order {
        assert!(i < n, "index {i} out of range for n = {n}");
        let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
        assert!(seen[word] & bit == 0, "index {i} repeated for n = {n}");
        seen[word] |= bit;
        count += 1;
    }
    assert_eq!(count, n);
}

#[test]
fn permutation_is_a_bijection() {
    for n in [0u64, 1, 2, 3, 7, 97, 1000, 65535, 65536, 65537, (1 << 20) - 1, (1 << 20) + 1] {
        let p = Permutation::new(n, 0xdead_beef, 3);
        assert_eq!(p.len(), n);
        assert_eq!(p.is_empty(), n == 0);
        assert_bijection(n, (0..n).map(|i| p.get(i)));
    }
}

#[test]
fn permutation_of_ten_million_is_a_bijection() {
    let n = 10_000_000;
    let p = Permutation::new(n, 12345, 0);
    let start = Instant::now();
    assert_bijection(n, (0..n).map(|i| p.get(i)));
    eprintln!("bijection check of 10^7 took {:?}", start.elapsed());
}

#[test]
fn permutation_is_deterministic_and_keyed() {
    let n = 1000;
    let order = |seed, epoch| -> Vec<u64> {
        let p = Permutation::new(n, seed, epoch);
        (0..n).map(|i| p.get(i)).collect()
    };
    assert_eq!(order(1, 2), order(1, 2));
    let mut distinct = HashSet::new();
    for seed in 0..4 {
        for epoch in 0..4 {
            assert!(distinct.insert(order(seed, epoch)), "seed {seed} epoch {epoch} repeats an order");
        }
    }
    assert_ne!(order(0, 1), order(1, 0));
}

#[test]
fn first_position_is_uniform_over_epochs() {
    let (n, epochs) = (10u64, 2000u64);
    let mut hist = [0u64; 10];
    for epoch in 0..epochs {
        hist[Permutation::new(n, 7, epoch).get(0) as usize] += 1;
    }
    let expected = epochs as f64 / n as f64;
    let chi2: f64 = hist.iter().map(|&h| (h as f64 - expected).powi(2) / expected).sum();
    // 9 degrees of freedom: the 99.9th percentile is 27.9.
    assert!(chi2 < 30.0, "chi-square {chi2} too large, histogram {hist:?}");
}

#[test]
fn permutation_quality_matches_uniform() {
    let n = 100_000;
    let p = Permutation::new(n, 99, 1);
    let q = shuffle_quality(|i| p.get(i), n);
    let u = ShuffleQuality::uniform(n);
    eprintln!("global: {q:?} (uniform: {u:?})");
    assert!((q.mean_displacement - 1.0 / 3.0).abs() < 0.02, "{q:?}");
    assert!(q.adjacency < 10.0 * u.adjacency, "{q:?}");
}

#[test]
fn block_shuffle_is_a_bijection() {
    let cases = [
        (0, 4, 8),
        (1, 1, 1),
        (1000, 1, 1),
        (1000, 1, 64),
        (1000, 7, 1),
        (1000, 16, 64),
        (1000, 16, 50),
        (1000, 5000, 3),
        (1001, 64, 1024),
        (4099, 10, 25),
        (100_000, 64, 1024),
    ];
    for (n, block_len, window) in cases {
        let s = BlockShuffle::new(n, block_len, window, 3, 4).unwrap();
        assert_eq!(s.len(), n);
        let order: Vec<u64> = s.iter_range(0..n).collect();
        assert_bijection(n, order.iter().copied());
        // Random access agrees with iteration, and subranges with the whole.
        for pos in (0..n).step_by(97) {
            assert_eq!(s.get(pos), order[pos as usize], "n {n} block {block_len} window {window}");
        }
        let (a, b) = (n / 3, n / 2);
        assert!(s.iter_range(a..b).eq(order[a as usize..b as usize].iter().copied()));
        assert_eq!(s.iter_range(a..b).len() as u64, b - a);
    }
}

#[test]
fn block_shuffle_is_deterministic_and_keyed() {
    let order = |seed, epoch| -> Vec<u64> {
        let s = BlockShuffle::new(5000, 16, 100, seed, epoch).unwrap();
        s.iter_range(0..5000).collect()
    };
    assert_eq!(order(1, 1), order(1, 1));
    assert_ne!(order(1, 1), order(1, 2));
    assert_ne!(order(1, 1), order(2, 1));
}

#[test]
fn block_windows_cover_few_whole_blocks() {
    let (n, block_len, window) = (100_000u64, 64u64, 1024u64);
    let s = BlockShuffle::new(n, block_len, window, 11, 0).unwrap();
    let order: Vec<u64> = s.iter_range(0..n).collect();
    for chunk in order.chunks(window as usize) {
        let mut sorted = chunk.to_vec();
        sorted.sort_unstable();
        let runs = 1 + sorted.windows(2).filter(|w| w[1] != w[0] + 1).count() as u64;
        // 16 blocks per window, plus one more when the window boundary
        // falls inside a block or the short block is in it.
        assert!(runs <= window / block_len + 2, "{runs} runs in one window");
    }
}

#[test]
fn block_quality_mixes_but_keeps_locality() {
    let n = 100_000;
    let s = BlockShuffle::new(n, 64, 1024, 99, 1).unwrap();
    let order: Vec<u64> = s.iter_range(0..n).collect();
    let q = shuffle_quality(|i| order[i as usize], n);
    let u = ShuffleQuality::uniform(n);
    eprintln!("block 64 / window 1024: {q:?}");
    assert!(q.mean_displacement > 0.3, "{q:?}");
    // Within a window of 16 blocks, about 2/1024 of pairs are neighbours:
    // far above the uniform 2/n.
    assert!(q.adjacency > 20.0 * u.adjacency, "{q:?}");

    // With a window no larger than a block, blocks come out almost whole.
    let s = BlockShuffle::new(n, 64, 1, 99, 1).unwrap();
    let order: Vec<u64> = s.iter_range(0..n).collect();
    let q = shuffle_quality(|i| order[i as usize], n);
    eprintln!("block 64 / window 1: {q:?}");
    assert!(q.mean_displacement > 0.3 && q.adjacency > 0.95, "{q:?}");
}

#[test]
fn block_shuffle_rejects_zero_sizes() {
    assert!(matches!(BlockShuffle::new(10, 0, 1, 0, 0), Err(Error::Config(_))));
    assert!(matches!(BlockShuffle::new(10, 1, 0, 0, 0), Err(Error::Config(_))));
}

#[test]
fn ddp_split_is_balanced_and_covers_the_epoch() {
    for world in 1..=5u64 {
        for n in [0u64, 1, 7, 100, 101] {
            for batch in 1..=4u64 {
                for drop_last in [false, true] {
                    let mut all = Vec::new();
                    let mut batch_counts = HashSet::new();
                    let mut sample_counts = HashSet::new();
                    for rank in 0..world {
                        let c = DdpConfig::new(rank, world, drop_last).unwrap();
                        let samples = c.samples_per_rank(n);
                        sample_counts.insert(samples);
                        let batches = c.batches_per_rank(n, batch);
                        batch_counts.insert(batches);
                        if drop_last {
                            assert!(batches * batch <= samples);
                        } else {
                            assert!(
                                batches * batch >= samples
                                    && (batches == 0 || (batches - 1) * batch < samples)
                            );
                        }
                        all.extend((0..samples).map(|i| c.global_position(n, i)));
                    }
                    assert_eq!(batch_counts.len(), 1, "world {world} n {n} batch {batch}");
                    assert_eq!(sample_counts.len(), 1);
                    assert!(all.iter().all(|&p| p < n));
                    let distinct: HashSet<u64> = all.iter().copied().collect();
                    if drop_last {
                        assert_eq!(distinct.len(), all.len(), "ranks overlap: world {world} n {n}");
                        assert_eq!(all.len() as u64, n / world * world);
                    } else {
                        assert_eq!(distinct.len() as u64, n, "epoch not covered: world {world} n {n}");
                        assert_eq!(all.len() as u64, n.div_ceil(world) * world);
                    }
                }
            }
        }
    }
}

#[test]
fn ddp_env_parsing() {
    let c = DdpConfig::from_env_values(None, None).unwrap();
    assert_eq!((c.rank, c.world_size, c.drop_last), (0, 1, false));
    let c = DdpConfig::from_env_values(Some("3"), Some(" 8\n")).unwrap();
    assert_eq!((c.rank, c.world_size), (3, 8));
    for (rank, world) in [
        (Some("x"), Some("2")),
        (Some("-1"), Some("2")),
        (Some("0"), Some("")),
        (Some("0"), Some("0")),
        (Some("2"), Some("2")),
        (Some("1"), None),
    ] {
        let err = DdpConfig::from_env_values(rank, world).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{rank:?} {world:?}: {err}");
        eprintln!("{err}");
    }
    assert!(DdpConfig::new(0, 0, true).is_err());
}

#[test]
fn sample_rng_streams_are_distinct_and_deterministic() {
    let mut firsts = HashSet::new();
    for seed in 0..4u64 {
        for epoch in 0..10u64 {
            for index in 0..100u64 {
                let first = sample_rng(seed, epoch, index).next_u64();
                assert!(firsts.insert(first), "({seed}, {epoch}, {index}) repeats a stream");
                assert_eq!(sample_rng(seed, epoch, index).next_u64(), first);
            }
        }
    }
    assert_eq!(firsts.len(), 4000);
}
