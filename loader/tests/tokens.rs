//! Token-window batches: exact epochs cover every window once, split into
//! equal batch counts across ranks, in every shuffle; random offsets are
//! seeded and in range; a loader resumed from its state at any batch, any
//! number of times, delivers what the uninterrupted run delivers.

use std::collections::HashSet;
use std::sync::Arc;

use ringfeed::{Shuffle, TokenCorpus, TokenCorpusOptions, TokenLoader, TokenState, WindowMode, WindowPlan};

/// Ids with an end-of-text (a document end) every 1 to ~300 tokens.
fn corpus(tokens: u32) -> (tempfile::TempDir, Arc<TokenCorpus>, Vec<u32>) {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<u32> = (0..tokens)
        .map(|i| if i.wrapping_mul(2_654_435_761) % 293 == 0 { EOT } else { (i * 7 + i / 13) % 50_000 })
        .collect();
    let path = dir.path().join("train.bin");
    std::fs::write(&path, ids.iter().flat_map(|&t| (t as u16).to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let c = Arc::new(TokenCorpus::open(&path, &TokenCorpusOptions::default()).unwrap());
    (dir, c, ids)
}

const EOT: u32 = 50_256;

const SHUFFLES: [Shuffle; 3] =
    [Shuffle::Sequential, Shuffle::Global, Shuffle::Block { block_len: 4, window: 16 }];

#[test]
fn exact_epochs_cover_every_window_once_with_equal_batches_per_rank() {
    let tokens = 100_003u64;
    let (block, batch) = (64u64, 5u64);
    let windows = (tokens - 1) / block;
    for shuffle in SHUFFLES {
        for world in [1u64, 2, 3, 7] {
            for epoch in [0u64, 1] {
                let mut seen = HashSet::new();
                let mut counts = Vec::new();
                for rank in 0..world {
                    let p = WindowPlan::new(
                        tokens,
                        block,
                        batch,
                        WindowMode::Epoch { shuffle },
                        9,
                        epoch,
                        rank,
                        world,
                    )
                    .unwrap();
                    assert_eq!(p.windows(), windows);
                    counts.push(p.batches());
                    for b in 0..p.batches() {
                        let offs = p.batch_offsets(b);
                        assert_eq!(offs.len() as u64, batch);
                        for o in offs {
                            assert_eq!(o % block, 0);
                            assert!(o + block < tokens, "{o}: a window reads {block} + 1 tokens");
                            assert!(seen.insert(o), "{shuffle:?} world {world}: window {o} twice");
                        }
                    }
                }
                assert!(counts.iter().all(|&c| c == counts[0]), "{counts:?}");
                assert_eq!(counts[0], windows / world / batch);
                // All but fewer than world × batch windows, each once.
                assert!(windows - seen.len() as u64 <= world * batch + world, "{shuffle:?} {world}");
            }
        }
    }
    // Shuffled orders change with the epoch and the seed.
    let order = |seed, epoch| {
        WindowPlan::new(
            tokens,
            block,
            batch,
            WindowMode::Epoch { shuffle: Shuffle::Global },
            seed,
            epoch,
            0,
            1,
        )
        .unwrap()
        .batch_offsets(0)
    };
    assert_ne!(order(1, 0), order(1, 1));
    assert_ne!(order(1, 0), order(2, 0));
    assert_eq!(order(1, 0), order(1, 0));
}

#[test]
fn random_offsets_are_seeded_and_in_range() {
    let tokens = 50_000u64;
    let plan = |seed, epoch, rank| {
        WindowPlan::new(tokens, 128, 12, WindowMode::Random, seed, epoch, rank, 2).unwrap()
    };
    let p = plan(3, 0, 0);
    let mut sum = 0u128;
    let mut n = 0u128;
    for b in 0..p.batches() {
        for o in p.batch_offsets(b) {
            assert!(o < tokens - 128, "{o}");
            sum += u128::from(o);
            n += 1;
        }
    }
    let mean = (sum / n) as f64 / (tokens - 128) as f64;
    assert!((0.4..0.6).contains(&mean), "{mean}");
    assert_eq!(p.batch_offsets(5), plan(3, 0, 0).batch_offsets(5));
    assert_ne!(p.batch_offsets(5), plan(3, 0, 1).batch_offsets(5), "ranks draw differently");
    assert_ne!(p.batch_offsets(5), plan(3, 1, 0).batch_offsets(5), "epochs draw differently");
    assert_ne!(p.batch_offsets(5), p.batch_offsets(6));
    assert!(WindowPlan::new(100, 128, 12, WindowMode::Random, 0, 0, 0, 1).is_err(), "too short");
    assert!(WindowPlan::new(tokens, 0, 12, WindowMode::Random, 0, 0, 0, 1).is_err());
    assert!(
        WindowPlan::new(tokens, 8, 12, WindowMode::Random, 0, 0, 2, 2).is_err(),
        "rank outside the world"
    );
}

fn all_batches(loader: TokenLoader) -> Vec<ringfeed::TokenBatch> {
    loader.map(Result::unwrap).collect()
}

#[test]
fn batches_hold_the_corpus_windows_shifted_by_one() {
    let (_d, c, ids) = corpus(20_000);
    // Sequential and block orders put neighbouring windows in one batch:
    // they are read together, as one run.
    let modes = SHUFFLES.map(|shuffle| WindowMode::Epoch { shuffle });
    for mode in modes.into_iter().chain([WindowMode::Random]) {
        let loader =
            TokenLoader::builder(c.clone()).block_size(32).batch_size(6).mode(mode).seed(4).build().unwrap();
        let per_epoch = loader.batches_per_epoch();
        let batches = all_batches(loader);
        assert_eq!(batches.len() as u64, per_epoch);
        for b in &batches {
            let (x, y) = (b.x(), b.y());
            assert_eq!((x.len(), y.len()), (6 * 32, 6 * 32));
            for (i, &o) in b.offsets.iter().enumerate() {
                let want: Vec<i64> = ids[o as usize..o as usize + 33].iter().map(|&t| i64::from(t)).collect();
                assert_eq!(x[i * 32..(i + 1) * 32], want[..32]);
                assert_eq!(y[i * 32..(i + 1) * 32], want[1..]);
            }
        }
    }
}

#[test]
fn resuming_at_any_batch_any_number_of_times_gives_the_same_run() {
    let (_d, c, _) = corpus(6_000);
    for mode in [
        WindowMode::Epoch { shuffle: Shuffle::Global },
        WindowMode::Epoch { shuffle: Shuffle::Block { block_len: 3, window: 9 } },
        WindowMode::Random,
        WindowMode::Packed { shuffle: Shuffle::Global },
    ] {
        let builder = || {
            TokenLoader::builder(c.clone())
                .block_size(50)
                .batch_size(4)
                .mode(mode)
                .seed(11)
                .epochs(3)
                .rank(1, 2)
        };
        let whole = all_batches(builder().build().unwrap());
        let per_epoch = builder().build().unwrap().batches_per_epoch();
        assert_eq!(whole.len() as u64, 3 * per_epoch, "three epochs");
        // Stop after k batches (every k, across epoch boundaries), resume.
        for k in 0..whole.len() {
            let mut first = builder().build().unwrap();
            for _ in 0..k {
                first.next().unwrap().unwrap();
            }
            let state = first.state();
            drop(first); // threads reading ahead are stopped
            let json = state.to_json();
            let resumed = builder().resume(TokenState::from_json(&json).unwrap()).build().unwrap();
            assert_eq!(all_batches(resumed), whole[k..], "{mode:?}: resumed after {k}");
        }
        // Resumed twice in a row.
        let mut a = builder().build().unwrap();
        a.next();
        let mut b = builder().resume(a.state()).build().unwrap();
        b.next();
        b.next();
        let c2 = builder().resume(b.state()).build().unwrap();
        assert_eq!(all_batches(c2), whole[3..]);
    }
    // Another run's state is refused, naming both.
    let mut l = TokenLoader::builder(c.clone()).block_size(50).batch_size(4).build().unwrap();
    l.next();
    let e =
        TokenLoader::builder(c).block_size(50).batch_size(4).seed(2).resume(l.state()).build().unwrap_err();
    assert!(e.to_string().contains("another run"), "{e}");
}

#[test]
fn a_damaged_token_dataset_is_an_error_then_the_end() {
    use ringfeed::{PackWriter, Payload, Schema, TokenDtype};
    let dir = tempfile::tempdir().unwrap();
    let payload =
        Payload::Tokens { dtype: TokenDtype::U16, eot: 50_256, vocab_size: 50_257, tokenizer: "gpt2".into() };
    let mut w = PackWriter::builder(dir.path())
        .schema(Schema { payload, labels: true, keys: false })
        .build()
        .unwrap();
    for d in 0..50u16 {
        let doc: Vec<u8> = (0..200u16).map(|t| t ^ d).chain([50_256]).flat_map(|t| t.to_le_bytes()).collect();
        w.push(&doc, 1, None).unwrap();
    }
    w.finish().unwrap();
    let ds = ringfeed::Dataset::open(dir.path()).unwrap();
    let loc = ds.locate(20).unwrap();
    let shard = ds.shards()[loc.shard].path().to_path_buf();
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[loc.offset as usize + 10] ^= 1;
    std::fs::write(&shard, bytes).unwrap();
    let c = Arc::new(TokenCorpus::open(dir.path(), &TokenCorpusOptions::default()).unwrap());
    let loader = TokenLoader::builder(c)
        .block_size(100)
        .batch_size(2)
        .mode(WindowMode::Epoch { shuffle: Shuffle::Sequential });
    let items: Vec<_> = loader.build().unwrap().collect();
    let bad = items.iter().position(Result::is_err).expect("the damaged record is read");
    assert_eq!(bad, items.len() - 1, "nothing after the error");
    assert!(items[bad].as_ref().unwrap_err().is_corruption());
}

#[test]
fn packed_windows_hold_whole_documents_with_positions_and_masks() {
    let (_d, c, ids) = corpus(30_000);
    let docs = Arc::new(c.documents().unwrap().to_vec());
    assert!(docs.len() > 100, "{} documents", docs.len());
    let t = 64u64;
    for shuffle in [Shuffle::Sequential, Shuffle::Global] {
        // The epoch's windows (batches take the first ones: as many as
        // any order packs into, the same count every epoch).
        let p = WindowPlan::packed(docs.clone(), t, 1, shuffle, 3, 1, 0, 1).unwrap();
        assert!(
            p.batches() <= p.windows() && p.windows() < p.batches() * 12 / 10,
            "{} {}",
            p.batches(),
            p.windows()
        );
        assert_eq!(p.batch_segments(7)[0], p.packed_window(7).unwrap());
        let mut pieces: Vec<(u64, u64)> = Vec::new();
        for w in 0..p.windows() {
            let w = &p.packed_window(w).unwrap();
            assert!(w.iter().map(|s| s.len - 1).sum::<u64>() <= t, "a window holds at most T positions");
            for s in w {
                assert!(s.len >= 2 && s.len <= t + 1);
                let d = docs.partition_point(|&x| x <= s.start) - 1;
                assert!(s.start + s.len <= docs[d + 1], "a piece stays in its document");
                pieces.push((s.start, s.len));
            }
        }
        // Each document, in pieces overlapping by one token, exactly once.
        pieces.sort_unstable();
        let mut covered = 0u64;
        let mut expected = 0u64;
        for w in docs.windows(2) {
            if w[1] - w[0] >= 2 {
                expected += w[1] - w[0] - 1;
            }
        }
        for (k, &(start, len)) in pieces.iter().enumerate() {
            covered += len - 1;
            if k > 0 && pieces[k - 1].0 + pieces[k - 1].1 > start {
                assert_eq!(pieces[k - 1].0 + pieces[k - 1].1, start + 1, "pieces overlap by one token only");
            }
        }
        assert_eq!(covered, expected, "{shuffle:?}: every target once");
    }
    assert!(WindowPlan::packed(docs.clone(), t, 1, Shuffle::block(), 3, 1, 0, 1).is_err());
    // Equal batch counts across ranks.
    let counts: Vec<u64> = (0..3)
        .map(|r| WindowPlan::packed(docs.clone(), t, 4, Shuffle::Global, 3, 0, r, 3).unwrap().batches())
        .collect();
    assert!(counts.iter().all(|&n| n == counts[0] && n > 0), "{counts:?}");

    // What the loader delivers for them.
    let loader = TokenLoader::builder(c.clone())
        .block_size(t)
        .batch_size(4)
        .mode(WindowMode::Packed { shuffle: Shuffle::Global })
        .seed(3)
        .build()
        .unwrap();
    for batch in loader {
        let batch = batch.unwrap();
        let p = batch.packing.as_ref().expect("packed");
        let (x, y) = (batch.x(), batch.y());
        assert_eq!(*p.cu_seqlens.first().unwrap(), 0);
        assert_eq!(*p.cu_seqlens.last().unwrap() as usize, 4 * t as usize);
        assert!(p.cu_seqlens.windows(2).all(|w| w[0] < w[1]));
        for (row, window) in p.segments.iter().enumerate() {
            let mut at = row * t as usize;
            for s in window {
                let n = s.len as usize - 1;
                let want = &ids[s.start as usize..s.start as usize + n + 1];
                for k in 0..n {
                    assert_eq!(x[at + k], i64::from(want[k]));
                    assert_eq!(y[at + k], i64::from(want[k + 1]));
                    assert_eq!(p.position_ids[at + k], k as i64);
                    assert_eq!(p.loss_mask[at + k], 1);
                }
                at += n;
                assert!(p.cu_seqlens.contains(&(at as i32)));
            }
            assert!(p.loss_mask[at..(row + 1) * t as usize].iter().all(|&m| m == 0), "padding is masked");
        }
    }
}
