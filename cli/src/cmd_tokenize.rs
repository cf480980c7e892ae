//! `ringfeed tokenize` (text → token dataset) and `ringfeed tokens` (one
//! document's ids).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use ringfeed::{Payload, SourceFormat, TokenDtype};
use ringfeed_tokenize::{TokenizeOptions, Tokenizer};
use serde_json::json;

use crate::output::{Out, outln};
use crate::units::{human_bytes, parse_size};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Source: a directory of text files, a .jsonl file (its `text` field), a
    /// WebDataset .tar (its txt members), .tfrecord (tf.train.Example `text`
    /// feature, or raw text) or .ffr file, or a directory of those.
    src: PathBuf,
    /// Output token dataset directory (the rules of `ringfeed pack`).
    out_dir: PathBuf,
    /// `gpt2` (tiktoken's GPT-2 ids, vocabulary shipped in the binary) or the path of a
    /// Hugging Face tokenizer.json.
    #[arg(long, default_value = "gpt2")]
    tokenizer: String,
    /// Source format; detected from the path when omitted.
    #[arg(long, value_parser = ["files", "tar", "tfrecord", "ffrecord", "jsonl"])]
    format: Option<String>,
    /// The JSON lines field (or tf.train.Example feature) holding the text.
    #[arg(long, default_value = "text")]
    field: String,
    /// Width of the stored ids [default: u16 when the vocabulary fits, else u32].
    #[arg(long, value_parser = ["u16", "u32"])]
    dtype: Option<String>,
    /// Threads encoding [default: the CPUs this process may use].
    #[arg(long)]
    threads: Option<usize>,
    /// Target shard size in bytes (suffixes K, M, G allowed).
    #[arg(long, default_value = "128M", value_parser = parse_size)]
    shard_size: u64,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// Print one JSON object (figures of the run) instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let format = args.format.as_deref().map(str::parse::<SourceFormat>).transpose()?;
    let started = Instant::now();
    ringfeed::check_pack_paths(&args.src, &args.out_dir)?;
    let tokenizer = Tokenizer::from_name(&args.tokenizer)?;
    let source = ringfeed::open_source(&args.src, format)?;
    let mut opts = TokenizeOptions::builder().shard_size(args.shard_size).field(&args.field);
    if let Some(t) = args.threads {
        opts = opts.threads(t);
    }
    match args.dtype.as_deref() {
        Some("u16") => opts = opts.dtype(TokenDtype::U16),
        Some("u32") => opts = opts.dtype(TokenDtype::U32),
        _ => {}
    }
    let opts = opts.build()?;
    let bar = if args.quiet || args.json { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} documents {msg}")
            .expect("valid template"),
    );
    let mut last = ringfeed_tokenize::TokenizeProgress::default();
    let manifest = ringfeed_tokenize::tokenize(&*source, &tokenizer, &args.out_dir, &opts, |p| {
        bar.set_length(p.total_docs);
        bar.set_position(p.docs);
        bar.set_message(format!("{} tokens", p.tokens));
        last = p;
    })?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let mut out = Out::new();
    if args.json {
        let obj = json!({"documents": last.docs, "tokens": last.tokens, "source_bytes": last.bytes,
            "seconds": secs, "mb_per_s": last.bytes as f64 / 1e6 / secs.max(1e-9),
            "tokens_per_s": last.tokens as f64 / secs.max(1e-9), "tokenizer": tokenizer.name(),
            "shards": manifest.shards.len(), "bytes": manifest.bytes});
        outln!(out, "{obj}")?;
    } else {
        outln!(
            out,
            "tokenized {} documents ({}) into {} tokens with {} in {:.2} s, {:.1} MB/s, {:.2} M tokens/s -> {}",
            last.docs,
            human_bytes(last.bytes),
            last.tokens,
            tokenizer.name(),
            secs,
            last.bytes as f64 / 1e6 / secs.max(1e-9),
            last.tokens as f64 / 1e6 / secs.max(1e-9),
            crate::output::escaped_path(&args.out_dir)
        )?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub(crate) struct TokensArgs {
    /// A token dataset (made by `ringfeed tokenize`).
    dataset: PathBuf,
    /// The document, counted from 0.
    #[arg(long)]
    doc: u64,
    /// Print `{"doc", "tokens": [...]}` instead of the ids on one line.
    #[arg(long)]
    json: bool,
}

pub(crate) fn tokens(args: TokensArgs) -> Result<ExitCode> {
    let ds = ringfeed::Dataset::open(&args.dataset)?;
    let Payload::Tokens { dtype, .. } = ds.manifest().schema.payload else {
        bail!("{} is not a token dataset (made by `ringfeed tokenize`)", args.dataset.display());
    };
    // The document's records, found from the labels (document ends) the
    // index holds in memory; only they are read.
    let mut seen = 0u64;
    let mut records = Vec::new();
    for i in 0..ds.len() {
        let ends = ds.locate(i)?.label == 1;
        if seen == args.doc {
            records.push(i);
            if ends {
                break;
            }
        }
        seen += u64::from(ends);
    }
    if records.is_empty() {
        bail!("{} has {seen} documents; there is no document {}", args.dataset.display(), args.doc);
    }
    let mut ids: Vec<u64> = Vec::new();
    for r in records {
        let w = dtype.width();
        ids.extend(ds.record(r)?.payload.chunks_exact(w).map(|b| match dtype {
            TokenDtype::U16 => u64::from(u16::from_le_bytes([b[0], b[1]])),
            TokenDtype::U32 => u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        }));
    }
    let mut out = Out::new();
    if args.json {
        outln!(out, "{}", json!({"doc": args.doc, "tokens": ids}))?;
    } else {
        let line: Vec<String> = ids.iter().map(u64::to_string).collect();
        outln!(out, "{}", line.join(" "))?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
