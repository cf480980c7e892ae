//! Packs records written from code, then reads one back by index.
//!
//! `cargo run -p ringfeed-examples --example pack_and_read -- OUT_DIR`

use anyhow::{Context, Result};
use ringfeed::{Dataset, PackWriter, Payload, Schema};

fn main() -> Result<()> {
    let out = std::env::args().nth(1).context("usage: pack_and_read OUT_DIR")?;
    let schema = Schema { payload: Payload::Text, labels: true, keys: true };
    let mut writer = PackWriter::builder(&out)
        .schema(schema)
        .classes(vec!["short".into(), "long".into()])
        .shard_size(64 << 10)
        .build()?;
    for i in 0..1000u32 {
        let text = "lorem ipsum ".repeat(1 + (i as usize % 40));
        let label = i64::from(text.len() > 240);
        writer.push(text.as_bytes(), label, Some(&format!("doc/{i:04}")))?;
    }
    let manifest = writer.finish()?;
    println!("wrote {} records in {} shards to {out}", manifest.records, manifest.shards.len());

    let ds = Dataset::open(&out)?;
    let rec = ds.record(737)?;
    println!(
        "record 737: key {}, class {}, {} bytes",
        rec.key,
        ds.manifest().classes[rec.label as usize],
        rec.payload.len()
    );
    Ok(())
}
