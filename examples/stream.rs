//! Streams every record of a packed dataset in order, checking checksums,
//! and reports throughput: the simplest consumer of a pack dataset.
//!
//! `cargo run --release -p ringfeed-examples --example stream -- DATASET`

use std::time::Instant;

use anyhow::{Context, Result};
use ringfeed::Dataset;

fn main() -> Result<()> {
    let path = std::env::args().nth(1).context("usage: stream DATASET")?;
    let started = Instant::now();
    let ds = Dataset::open(&path)?;
    let opened = started.elapsed();
    let mut bytes = 0u64;
    let mut per_label = vec![0u64; ds.manifest().classes.len().max(1)];
    for record in ds.iter() {
        let record = record?;
        bytes += record.payload.len() as u64;
        if let Some(n) = usize::try_from(record.label).ok().and_then(|l| per_label.get_mut(l)) {
            *n += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "streamed {} records, {:.1} MB in {:.2} s ({:.0} records/s, {:.0} MB/s; open took {:.1} ms)",
        ds.len(),
        bytes as f64 / 1e6,
        secs,
        ds.len() as f64 / secs,
        bytes as f64 / 1e6 / secs,
        opened.as_secs_f64() * 1e3
    );
    if !ds.manifest().classes.is_empty() {
        println!("records per class: {per_label:?}");
    }
    Ok(())
}
