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
    /// Output dataset directory (created; an earlier ringfeed dataset there is replaced once the new one is complete),
    /// or an `s3://bucket/prefix` URL: packed into a local staging directory, then uploaded (multipart, the manifest
    /// last, so that an interrupted upload leaves nothing that opens).
    out_dir: PathBuf,
    /// Staging directory for a pack to object storage [default: a temporary directory next to the system's others];
    /// it needs room for the whole packed dataset, and is deleted after the upload.
    #[arg(long)]
    staging: Option<PathBuf>,
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

pub(crate) fn run(mut args: Args) -> Result<ExitCode> {
    let url = args.out_dir.to_str().filter(|s| ringfeed::object::is_object_url(s)).map(str::to_string);
    let Some(url) = url else { return pack_local(args) };
    // Checked before packing: a bad URL or option is found in a second,
    // not after the pack.
    let opts = ringfeed::object::ObjectOptions::from_env()?;
    let staging = match &args.staging {
        Some(dir) => tempfile_in(dir)?,
        None => tempfile_in(&std::env::temp_dir())?,
    };
    args.out_dir = staging.join("dataset");
    let quiet = args.quiet;
    pack_local(args)?;
    let report = ringfeed::object::upload(&staging.join("dataset"), &url, &opts);
    let _ = std::fs::remove_dir_all(&staging);
    let report = report?;
    if !quiet {
        println!(
            "uploaded {} shards ({}) in {:.2} s, {:.0} MB/s -> {url}",
            report.shards,
            human_bytes(report.bytes),
            report.seconds,
            report.bytes as f64 / 1e6 / report.seconds.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A new empty directory under `parent`, named after this process.
fn tempfile_in(parent: &std::path::Path) -> Result<PathBuf> {
    let dir = parent.join(format!("ringfeed-staging-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn pack_local(args: Args) -> Result<ExitCode> {
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
