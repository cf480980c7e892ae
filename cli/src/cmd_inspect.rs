//! `ringfeed inspect`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use crate::output::{Out, escaped, escaped_path, outln};
use crate::units::human_bytes;

pub(crate) fn run(dir: &Path, as_json: bool) -> Result<ExitCode> {
    // Opening validates every shard's header and index, so inspect also
    // tells whether the dataset is structurally sound.
    let ds = ringfeed::open_dataset(dir)?;
    let m = ds.manifest();
    let mut out = Out::new();
    if as_json {
        let obj = json!({
            // A path need not be UTF-8; JSON text must be.
            "path": escaped_path(dir),
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
        outln!(out, "{}", serde_json::to_string_pretty(&obj)?)?;
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(out, "dataset   {}", escaped_path(dir))?;
    outln!(out, "format    ringfeed pack (manifest v{}, packed from {})", m.version, escaped(&m.source))?;
    outln!(out, "records   {}", m.records)?;
    outln!(
        out,
        "shards    {} ({} on disk, {} payload)",
        m.shards.len(),
        human_bytes(m.bytes),
        human_bytes(m.payload_bytes)
    )?;
    let mut schema = m.schema.payload.to_string();
    if m.schema.labels {
        schema.push_str(" + i64 label");
    }
    if m.schema.keys {
        schema.push_str(" + key");
    }
    outln!(out, "schema    {}", escaped(&schema))?;
    if !m.classes.is_empty() {
        const SHOWN: usize = 20;
        let mut names = m.classes.iter().take(SHOWN).map(|c| escaped(c)).collect::<Vec<_>>().join(", ");
        if m.classes.len() > SHOWN {
            names.push_str(&format!(", ... ({} more)", m.classes.len() - SHOWN));
        }
        outln!(out, "classes   {} ({names})", m.classes.len())?;
    }
    if let Some(mean) = m.payload_bytes.checked_div(m.records) {
        outln!(out, "mean      {} per record", human_bytes(mean))?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
