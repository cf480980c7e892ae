//! `ringfeed verify`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use indicatif::ProgressBar;
use serde_json::json;

use crate::units::human_bytes;

pub(crate) fn run(dir: &Path, as_json: bool) -> Result<ExitCode> {
    let started = Instant::now();
    let bar = if as_json { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    let mut seen = 0u64;
    let report = ringfeed::verify(dir, |n| {
        seen += n;
        bar.set_message(format!("{} checked", human_bytes(seen)));
        bar.tick();
    })?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if as_json {
        let obj = json!({
            "clean": report.is_clean(),
            "shards": report.shards,
            "records": report.records,
            "bytes": report.bytes,
            "seconds": secs,
            "problems": report.problems,
        });
        println!("{}", serde_json::to_string_pretty(&obj)?);
    } else {
        for p in &report.problems {
            match p.record {
                Some(r) => println!("CORRUPT {} record {r} at byte {}: {}", p.shard, p.offset, p.reason),
                None => println!("CORRUPT {} at byte {}: {}", p.shard, p.offset, p.reason),
            }
        }
        println!(
            "{}: {} shards, {} records, {} checked in {:.2} s, {} problem{}",
            if report.is_clean() { "ok" } else { "CORRUPT" },
            report.shards,
            report.records,
            human_bytes(report.bytes),
            secs,
            report.problems.len(),
            if report.problems.len() == 1 { "" } else { "s" }
        );
    }
    Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
