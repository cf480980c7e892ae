//! Prints how well each epoch order mixes the records, next to what a
//! uniform random permutation would give.
//!
//! `cargo run --release -p ringfeed-examples --example shuffle_quality -- [N]`

use anyhow::Result;
use ringfeed::{BlockShuffle, Permutation, ShuffleQuality, shuffle_quality};

/// Batch size and region size of the locality measure.
const BATCH: u64 = 64;

/// Mean number of distinct dataset regions (runs of 64 neighbouring
/// records) that a batch of 64 draws from: 64 means every record comes from
/// elsewhere in the dataset, 1 means a batch is one contiguous run.
fn regions_per_batch(order: &dyn Fn(u64) -> u64, n: u64) -> f64 {
    let batches = n / BATCH;
    let total: usize = (0..batches)
        .map(|b| {
            let mut regions: Vec<u64> = (b * BATCH..(b + 1) * BATCH).map(|p| order(p) / BATCH).collect();
            regions.sort_unstable();
            regions.dedup();
            regions.len()
        })
        .sum();
    total as f64 / batches as f64
}

fn main() -> Result<()> {
    let n: u64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(100_000);
    let row = |name: &str, q: ShuffleQuality, regions: f64| {
        println!("| {name} | {:.4} | {:.2e} | {regions:.1} |", q.mean_displacement, q.adjacency);
    };
    println!("N = {n}\n");
    println!("| order | mean displacement / N | adjacent pairs kept | regions per batch of {BATCH} |");
    println!("|---|---|---|---|");
    let uniform_regions = (n / BATCH) as f64 * (1.0 - (1.0 - 1.0 / (n / BATCH) as f64).powi(BATCH as i32));
    row("uniform random (expected)", ShuffleQuality::uniform(n), uniform_regions);
    let global = Permutation::new(n, 42, 0);
    let g = |p| global.get(p);
    row("global (Feistel permutation)", shuffle_quality(g, n), regions_per_batch(&g, n));
    for (block_len, window) in [(64, 1024), (256, 4096), (64, 64)] {
        let b = BlockShuffle::new(n, block_len, window, 42, 0)?;
        let order: Vec<u64> = b.iter_range(0..n).collect();
        let o = |p: u64| order[p as usize];
        row(&format!("block {block_len}, window {window}"), shuffle_quality(o, n), regions_per_batch(&o, n));
    }
    row("sequential", shuffle_quality(|p| p, n), regions_per_batch(&|p| p, n));
    Ok(())
}
