//! Token corpora: `ringfeed windows` (the corpus offset of every window of
//! every batch of an epoch, as JSON lines) and `ringfeed bench CORPUS
//! --block-size T` (token-window batches: tokens/s, first batch, memory,
//! digest).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use ringfeed::{Shuffle, TokenCorpus, TokenCorpusOptions, TokenDtype, TokenLoader, WindowMode, WindowPlan};
use serde_json::json;

use crate::output::{Out, outln};

/// How to read a corpus and cut it into windows; shared by `windows` and
/// `bench --block-size`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WindowArgs {
    /// Window mode: every window once per epoch (`epoch`), nanoGPT's
    /// random offsets (`random`), or windows packed from whole documents
    /// (`packed`: position ids, cu_seqlens, loss mask).
    #[arg(long, default_value = "epoch", value_parser = ["epoch", "random", "packed"])]
    pub(crate) mode: String,
    /// Id width of a raw (nanoGPT) file.
    #[arg(long, default_value = "u16", value_parser = ["u16", "u32"])]
    pub(crate) token_dtype: String,
    /// End-of-text id of files that do not record it [default: GPT-2's 50256].
    #[arg(long)]
    pub(crate) eot: Option<u32>,
    /// Ids at or above this are an error [default: a token dataset's
    /// vocabulary; none for other files].
    #[arg(long)]
    pub(crate) vocab_size: Option<u32>,
    /// Token corpora: read through the page cache or with O_DIRECT.
    #[arg(long, default_value = "buffered", value_parser = ["buffered", "direct"])]
    pub(crate) token_io: String,
}

impl WindowArgs {
    pub(crate) fn mode(&self, shuffle: Shuffle) -> WindowMode {
        match self.mode.as_str() {
            "random" => WindowMode::Random,
            "packed" => WindowMode::Packed { shuffle },
            _ => WindowMode::Epoch { shuffle },
        }
    }

    pub(crate) fn open(&self, path: &Path) -> Result<TokenCorpus> {
        let dtype = if self.token_dtype == "u32" { TokenDtype::U32 } else { TokenDtype::U16 };
        let direct_io = self.token_io == "direct";
        let options =
            TokenCorpusOptions { dtype: Some(dtype), eot: self.eot, direct_io, vocab_size: self.vocab_size };
        Ok(TokenCorpus::open(path, &options)?)
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A token dataset, a nanoGPT .bin file, a Megatron prefix, or a datatrove .ds file.
    corpus: PathBuf,
    #[command(flatten)]
    order: crate::order_args::OrderArgs,
    #[command(flatten)]
    window: WindowArgs,
    /// Tokens per window's input (the window reads one more, for the targets).
    #[arg(long, default_value_t = 1024)]
    block_size: u64,
    /// The epoch.
    #[arg(long, default_value_t = 0)]
    epoch: u64,
}

pub(crate) fn windows(a: Args) -> Result<ExitCode> {
    let corpus = a.window.open(&a.corpus)?;
    let ddp = a.order.ddp()?;
    let (seed, batch, block) = (a.order.seed, a.order.batch, a.block_size);
    let plan = match a.window.mode(a.order.shuffle()) {
        WindowMode::Packed { shuffle } => {
            let docs = Arc::new(corpus.documents()?.to_vec());
            WindowPlan::packed(docs, block, batch, shuffle, seed, a.epoch, ddp.rank, ddp.world_size)?
        }
        mode => WindowPlan::new(corpus.len(), block, batch, mode, seed, a.epoch, ddp.rank, ddp.world_size)?,
    };
    let mut out = Out::new();
    for b in 0..plan.batches() {
        let line = if plan.is_packed() {
            // Each window: its pieces of documents, [start, tokens].
            let windows: Vec<Vec<[u64; 2]>> =
                plan.batch_segments(b).iter().map(|w| w.iter().map(|s| [s.start, s.len]).collect()).collect();
            json!({"epoch": a.epoch, "batch": b, "segments": windows})
        } else {
            json!({"epoch": a.epoch, "batch": b, "offsets": plan.batch_offsets(b)})
        };
        outln!(out, "{line}")?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// `ringfeed bench CORPUS --block-size T`.
pub(crate) struct BenchSpec<'a> {
    pub(crate) corpus: &'a Path,
    pub(crate) order: &'a crate::order_args::OrderArgs,
    pub(crate) window: &'a WindowArgs,
    pub(crate) block_size: u64,
    pub(crate) epochs: u64,
    pub(crate) prefetch: Option<usize>,
    pub(crate) threads: Option<usize>,
    pub(crate) steps: Option<u64>,
    pub(crate) digest: bool,
    pub(crate) json: bool,
}

pub(crate) fn bench(s: BenchSpec<'_>) -> Result<ExitCode> {
    let started = Instant::now();
    let corpus = Arc::new(s.window.open(s.corpus)?);
    let ddp = s.order.ddp()?;
    let mut b = TokenLoader::builder(corpus.clone())
        .block_size(s.block_size)
        .batch_size(s.order.batch)
        .mode(s.window.mode(s.order.shuffle()))
        .seed(s.order.seed)
        .epochs(s.epochs)
        .rank(ddp.rank, ddp.world_size);
    if let Some(p) = s.prefetch {
        b = b.prefetch(p);
    }
    if let Some(t) = s.threads {
        b = b.threads(t);
    }
    let loader = b.build()?;
    let mut first = None;
    let (mut batches, mut tokens) = (0u64, 0u64);
    let mut crc = 0u32;
    for batch in loader.take(usize::try_from(s.steps.unwrap_or(u64::MAX)).unwrap_or(usize::MAX)) {
        let batch = batch?;
        first.get_or_insert_with(|| started.elapsed().as_secs_f64() * 1e3);
        batches += 1;
        tokens += (batch.len() * batch.block_size) as u64;
        // What a training step takes: x and y as int64, [B, T] each.
        std::hint::black_box((batch.x(), batch.y()));
        if s.digest {
            for t in batch.x_tokens.iter().chain(&batch.y_tokens) {
                crc = crc32c::crc32c_append(crc, &t.to_le_bytes());
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let rss = crate::cmd_bench::status_mb("VmHWM:");
    let mut out = Out::new();
    let format = format!("{:?}", corpus.format()).to_lowercase();
    if s.json {
        let obj = json!({"corpus_format": format, "corpus_tokens": corpus.len(), "batches": batches,
            "tokens": tokens, "seconds": secs, "tokens_per_sec": tokens as f64 / secs,
            "first_batch_ms": first.unwrap_or(0.0), "peak_rss_mb": rss, "mode": s.window.mode,
            "digest": s.digest.then(|| format!("{crc:08x}"))});
        outln!(out, "{}", serde_json::to_string_pretty(&obj)?)?;
    } else {
        outln!(
            out,
            "{batches} batches, {tokens} tokens in {secs:.2} s: {:.2} M tokens/s, first batch {:.1} ms, peak RSS {rss:.0} MB ({format})",
            tokens as f64 / 1e6 / secs,
            first.unwrap_or(0.0)
        )?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
