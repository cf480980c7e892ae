//! `ringfeed pack`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use ringfeed::{PackOptions, Payload, SourceFormat};

use crate::units::{human_bytes, parse_size};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Source: a directory (ImageFolder or plain files), a .tar/.tfrecord/.ffr/.jsonl file, or a directory of those.
    src: PathBuf,
    /// Output dataset directory (created; an earlier ringfeed dataset there is replaced once the new one is complete).
    out_dir: PathBuf,
    /// Source format; detected from the path when omitted.
    #[arg(long, value_parser = ["imagefolder", "files", "tar", "tfrecord", "ffrecord", "jsonl"])]
    format: Option<String>,
    /// Store payloads as this kind instead of the detected one: `bytes` packs files in any
    /// encoding as they are (e.g. Latin-1 text), `text` checks that every record is UTF-8.
    #[arg(long, value_parser = ["bytes", "text"])]
    payload: Option<String>,
    /// Target shard size in bytes (suffixes K, M, G allowed).
    #[arg(long, default_value = "128M", value_parser = parse_size)]
    shard_size: u64,
    /// Threads reading the source [default: 2 × CPUs, at least 4].
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let format = args.format.as_deref().map(str::parse::<SourceFormat>).transpose()?;
    let started = Instant::now();
    ringfeed::check_pack_paths(&args.src, &args.out_dir)?;
    let source = ringfeed::open_source(&args.src, format)?;
    let mut opts = PackOptions::builder().shard_size(args.shard_size);
    if let Some(t) = args.threads {
        opts = opts.threads(t);
    }
    match args.payload.as_deref() {
        Some("bytes") => opts = opts.payload(Payload::Bytes),
        Some("text") => opts = opts.payload(Payload::Text),
        _ => {}
    }
    let opts = opts.build()?;
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .expect("valid template"),
    );
    let manifest = ringfeed::pack(&source, &args.out_dir, &opts, |p| {
        if bar.length() != Some(p.total_bytes) {
            bar.set_length(p.total_bytes);
        }
        bar.set_position(p.bytes);
        if p.records % 256 == 0 || p.records == p.total_records {
            bar.set_message(format!("{}/{} records", p.records, p.total_records));
        }
    })?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "packed {} records ({}, {}) into {} shard{} ({}) in {:.2} s, {:.0} MB/s -> {}",
        manifest.records,
        source.format(),
        human_bytes(manifest.payload_bytes),
        manifest.shards.len(),
        if manifest.shards.len() == 1 { "" } else { "s" },
        human_bytes(manifest.bytes),
        secs,
        manifest.payload_bytes as f64 / 1e6 / secs.max(1e-9),
        crate::output::escaped_path(&args.out_dir)
    );
    Ok(ExitCode::SUCCESS)
}
