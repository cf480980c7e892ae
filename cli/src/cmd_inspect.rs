//! `ringfeed inspect`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use ringfeed::Dataset;
use serde_json::json;

use crate::units::human_bytes;

pub(crate) fn run(dir: &Path, as_json: bool) -> Result<ExitCode> {
    // Opening validates every shard's header and index, so inspect also
    // tells whether the dataset is structurally sound.
    let ds = Dataset::open(dir)?;
    let m = ds.manifest();
    if as_json {
        let obj = json!({
            "path": dir,
            "version": m.version,
            "source": m.source,
            "records": m.records,
            "shards": m.shards.len(),
            "bytes": m.bytes,
            "payload_bytes": m.payload_bytes,
            "schema": m.schema,
            "classes": m.classes,
            "shard_list": m.shards,
        });
        println!("{}", serde_json::to_string_pretty(&obj)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("dataset   {}", dir.display());
    println!("format    ringfeed pack v{} (packed from {})", m.version, m.source);
    println!("records   {}", m.records);
    println!(
        "shards    {} ({} on disk, {} payload)",
        m.shards.len(),
        human_bytes(m.bytes),
        human_bytes(m.payload_bytes)
    );
    let mut schema = m.schema.payload.to_string();
    if m.schema.labels {
        schema.push_str(" + i64 label");
    }
    if m.schema.keys {
        schema.push_str(" + key");
    }
    println!("schema    {schema}");
    if !m.classes.is_empty() {
        const SHOWN: usize = 20;
        let mut names = m.classes.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
        if m.classes.len() > SHOWN {
            names.push_str(&format!(", ... ({} more)", m.classes.len() - SHOWN));
        }
        println!("classes   {} ({names})", m.classes.len());
    }
    if let Some(mean) = m.payload_bytes.checked_div(m.records) {
        println!("mean      {} per record", human_bytes(mean));
    }
    Ok(ExitCode::SUCCESS)
}
