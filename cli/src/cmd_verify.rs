//! `ringfeed verify`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use indicatif::ProgressBar;
use serde_json::json;

use crate::output::{Out, escaped, outln};
use crate::units::human_bytes;

pub(crate) fn run(dir: &Path, as_json: bool) -> Result<ExitCode> {
    let started = Instant::now();
    let bar = if as_json { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    let mut seen = 0u64;
    let mut tick = |n| {
        seen += n;
        bar.set_message(format!("{} checked", human_bytes(seen)));
        bar.tick();
    };
    let report = if ringfeed::object::is_object_url(&dir.to_string_lossy()) {
        ringfeed::verify_remote(&ringfeed::open_dataset(dir)?, tick)?
    } else {
        ringfeed::verify(dir, &mut tick)?
    };
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let mut out = Out::new();
    if as_json {
        let obj = json!({
            "clean": report.is_clean(),
            "shards": report.shards,
            "records": report.records,
            "bytes": report.bytes,
            "seconds": secs,
            "problems": report.problems,
            "notes": report.notes,
        });
        outln!(out, "{}", serde_json::to_string_pretty(&obj)?)?;
    } else {
        for p in &report.problems {
            let (shard, reason) = (escaped(&p.shard), escaped(&p.reason));
            match p.record {
                Some(r) => outln!(out, "CORRUPT {shard} record {r} at byte {}: {reason}", p.offset)?,
                None => outln!(out, "CORRUPT {shard} at byte {}: {reason}", p.offset)?,
            }
        }
        for note in &report.notes {
            outln!(out, "note: {}", escaped(&note.to_string()))?;
        }
        outln!(
            out,
            "{}: {} shards, {} records, {} checked in {:.2} s, {} problem{}",
            if report.is_clean() { "ok" } else { "CORRUPT" },
            report.shards,
            report.records,
            human_bytes(report.bytes),
            secs,
            report.problems.len(),
            if report.problems.len() == 1 { "" } else { "s" }
        )?;
    }
    out.finish()?;
    if report.is_clean() {
        return Ok(ExitCode::SUCCESS);
    }
    // Every failing command says why on stderr, in one line.
    let n = report.problems.len();
    eprintln!(
        "error: {} is corrupt: {n} problem{} (listed on stdout)",
        crate::output::escaped_path(dir),
        if n == 1 { "" } else { "s" }
    );
    Ok(ExitCode::from(1))
}
