//! `ringfeed bench`: streams epochs and reports throughput, latency and
//! memory, plus a digest of every batch for comparing runs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use ringfeed::{Digest, ErrorPolicy, ImagePipeline, IoMode, Loader};

use crate::order_args::OrderArgs;
use crate::output::{Out, escaped, outln};
use serde_json::json;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Dataset directory; with --block-size, any token corpus (a token
    /// dataset, a nanoGPT .bin, a Megatron prefix, a datatrove .ds file).
    dataset: PathBuf,
    /// Token-window batches of a token corpus: tokens per window's input.
    #[arg(long)]
    block_size: Option<u64>,
    #[command(flatten)]
    window: crate::cmd_windows::WindowArgs,
    /// Token corpora: threads reading ahead [default: 16].
    #[arg(long)]
    threads: Option<usize>,
    /// Token corpora: stop after this many batches.
    #[arg(long)]
    steps: Option<u64>,
    #[command(flatten)]
    order: OrderArgs,
    /// Epochs to stream.
    #[arg(long, default_value_t = 1)]
    epochs: u64,
    /// Worker cores [default: all CPUs].
    #[arg(long)]
    cores: Option<usize>,
    /// I/O mode.
    #[arg(long, default_value = "auto", value_parser = ["direct", "buffered", "auto"])]
    io: String,
    /// Batches ahead of the consumer, counting those being read; bounds memory whatever the
    /// window (1..=1024) [default: 8; block shuffle: enough to read whole windows, at most 64].
    #[arg(long)]
    prefetch: Option<usize>,
    /// What to do with corrupt records (failed checksum or undecodable
    /// image): stop with an error, leave them out, or put a
    /// deterministically chosen other record in their place.
    #[arg(long, default_value = "fail", value_parser = ["fail", "skip", "replace"])]
    on_corrupt: String,
    /// io_uring buffer memory per core (suffixes K, M, G) [default: 16M, less under a low memlock limit].
    #[arg(long, value_parser = crate::units::parse_size)]
    io_memory: Option<u64>,
    /// Largest read made by merging neighbouring records (suffixes K, M, G).
    #[arg(long, default_value = "1M", value_parser = crate::units::parse_size)]
    max_merge: u64,
    /// Largest gap between records still read with one request (0 merges only touching reads).
    #[arg(long, default_value = "32K", value_parser = crate::units::parse_size_or_zero)]
    max_gap: u64,
    /// Decode and augment images on the worker cores: raw records only,
    /// or the train (RandomResizedCrop + flip) / val (Resize + CenterCrop) pipeline.
    #[arg(long, default_value = "raw", value_parser = ["raw", "train", "val"])]
    pipeline: String,
    /// Output side of the image pipeline (val resizes the shorter side to size × 8/7 first).
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// Image element type: ImageNet-normalized f32 (what the library's
    /// `ImagePipeline::train/val` give) or raw u8 pixels.
    #[arg(long, default_value = "f32", value_parser = ["f32", "u8"])]
    dtype: String,
    /// Skip the digest (a CRC of every record and image, which costs the
    /// consumer about 3 GB/epoch of hashing with f32 images), to measure
    /// delivery alone, as a training loop sees it.
    #[arg(long)]
    no_digest: bool,
    /// Check that every epoch delivered exactly this rank's records (the
    /// epoch plan's multiset of indices); exit 1 naming the first epoch
    /// that did not.
    #[arg(long)]
    check_coverage: bool,
    /// Decode each batch's images into a libtorch tensor and hand it over
    /// with `Batch::into_tensors`, as a tch training loop does (needs a
    /// build with `--features tch`).
    #[arg(long)]
    tensors: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[cfg(feature = "tch")]
fn tensor_memory(builder: ringfeed::LoaderBuilder) -> Result<ringfeed::LoaderBuilder> {
    Ok(builder.batch_memory(ringfeed::BatchMemory::Tensor))
}

#[cfg(not(feature = "tch"))]
fn tensor_memory(_: ringfeed::LoaderBuilder) -> Result<ringfeed::LoaderBuilder> {
    anyhow::bail!(
        "--tensors needs a ringfeed built with the tch feature (cargo build -p ringfeed-cli --features tch)"
    )
}

/// The batch as the `(images, labels)` tensors a training step takes.
#[cfg(feature = "tch")]
fn hand_over(batch: ringfeed::Batch) -> Result<()> {
    let (images, labels) = batch.into_tensors()?;
    anyhow::ensure!(images.size().first() == labels.size().first(), "images and labels disagree");
    Ok(())
}

#[cfg(not(feature = "tch"))]
fn hand_over(_: ringfeed::Batch) -> Result<()> {
    Ok(())
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

/// A memory figure of this process from /proc/self/status, in MB
/// (`VmHWM:` peak resident set, `VmRSS:` current).
pub(crate) fn status_mb(field: &str) -> f64 {
    let kb = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix(field))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
    });
    kb.map_or(0.0, |kb| kb as f64 * 1024.0 / 1e6)
}

pub(crate) fn run(a: Args) -> Result<ExitCode> {
    if let Some(block_size) = a.block_size {
        return crate::cmd_windows::bench(crate::cmd_windows::BenchSpec {
            corpus: &a.dataset,
            order: &a.order,
            window: &a.window,
            block_size,
            epochs: a.epochs,
            prefetch: a.prefetch,
            threads: a.threads,
            steps: a.steps,
            digest: !a.no_digest,
            json: a.json,
        });
    }
    let mut builder = Loader::builder(&a.dataset)
        .batch_size(a.order.batch)
        .seed(a.order.seed)
        .epochs(a.epochs)
        .max_merge(a.max_merge)
        .max_gap(a.max_gap)
        .shuffle(a.order.shuffle())
        .ddp(a.order.ddp()?)
        .io_mode(match a.io.as_str() {
            "direct" => IoMode::Direct,
            "buffered" => IoMode::Buffered,
            _ => IoMode::Auto,
        })
        .on_error(match a.on_corrupt.as_str() {
            "skip" => ErrorPolicy::Skip,
            "replace" => ErrorPolicy::Replace,
            _ => ErrorPolicy::Fail,
        });
    if let Some(c) = a.cores {
        builder = builder.cores(c);
    }
    if let Some(p) = a.prefetch {
        builder = builder.prefetch(p);
    }
    let images = match a.pipeline.as_str() {
        "train" => Some(ImagePipeline::train(a.size)),
        // In u64: a huge --size is refused by the loader, not wrapped here.
        "val" => Some(ImagePipeline::val(
            u32::try_from((u64::from(a.size) * 8).div_ceil(7)).unwrap_or(u32::MAX),
            a.size,
        )),
        _ => None,
    };
    if let Some(p) = images {
        // The library's presets give normalized f32; this command's
        // default is u8.
        builder = builder.images(if a.dtype == "u8" { p.u8() } else { p });
    }
    if let Some(m) = a.io_memory {
        builder = builder.io_memory(usize::try_from(m)?);
    }
    if a.tensors {
        anyhow::ensure!(a.pipeline != "raw", "--tensors needs an image pipeline (--pipeline train or val)");
        builder = tensor_memory(builder)?;
    }
    let (fds_before, threads_before) = (open_fds(), threads());
    let started = Instant::now();
    let mut loader = builder.build()?;
    let loader_records = loader.state().records;
    let mut digest = Digest::default();
    let (mut samples, mut bytes) = (0u64, 0u64);
    let mut epoch_secs = Vec::new();
    let mut epoch_rss = Vec::new();
    let mut epoch_fds = Vec::new();
    let mut epoch_started = Instant::now();
    let mut epoch = loader.state().epoch;
    let mut delivered = Vec::new();
    let check = |epoch: u64, delivered: &mut Vec<u64>| -> Result<()> {
        if a.check_coverage {
            let plan = ringfeed::EpochPlan::new(
                loader_records,
                a.order.shuffle(),
                a.order.seed,
                epoch,
                a.order.ddp()?,
                a.order.batch,
            )?;
            let mut want: Vec<u64> = (0..plan.batches()).flat_map(|b| plan.batch_indices(b)).collect();
            want.sort_unstable();
            delivered.sort_unstable();
            if *delivered != want {
                let problem = format!("epoch {epoch} did not deliver exactly this rank's records");
                return Err(crate::DataProblem(problem).into());
            }
        }
        delivered.clear();
        Ok(())
    };
    for batch in loader.by_ref() {
        let batch = batch?;
        if batch.epoch != epoch {
            epoch_secs.push(epoch_started.elapsed().as_secs_f64());
            epoch_rss.push(status_mb("VmRSS:"));
            epoch_fds.push(open_fds());
            check(epoch, &mut delivered)?;
            epoch_started = Instant::now();
            epoch = batch.epoch;
        }
        if a.check_coverage {
            delivered.extend_from_slice(&batch.indices);
        }
        if !a.no_digest {
            digest.update(&batch);
        }
        samples += batch.len() as u64;
        bytes += batch.payload_bytes() as u64;
        if a.tensors {
            hand_over(batch)?;
        }
    }
    epoch_secs.push(epoch_started.elapsed().as_secs_f64());
    epoch_rss.push(status_mb("VmRSS:"));
    epoch_fds.push(open_fds());
    check(epoch, &mut delivered)?;
    let secs = started.elapsed().as_secs_f64();
    let m = loader.metrics();
    let first_ms = loader.time_to_first_batch().map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let io = format!("{:?}", loader.io_mode()).to_lowercase();
    let cores = loader.cores();
    let worker_cpus = loader.worker_cpus();
    let remote = loader.remote_counters();
    drop(loader);
    // Dropping joins the executors; each one's helper thread (glommio's
    // blocking-call pool, which holds the executor's eventfd) exits right
    // after, on its own. Count descriptors once they are gone (at most 1 s).
    let dropped = Instant::now();
    while threads() > threads_before && dropped.elapsed() < std::time::Duration::from_secs(1) {
        std::thread::yield_now();
    }
    let fds_after = open_fds();
    let rss_mb = status_mb("VmHWM:");
    // Which stage bounds throughput: the workers' busy share of their cores
    // per stage, against the consumer's waiting.
    let core_ms = secs * 1e3 * cores as f64;
    let stages = [
        ("read", m.read_ms / core_ms),
        ("decode", m.decode_ms / core_ms),
        ("augment", m.augment_ms / core_ms),
    ];
    let cpu_share = (m.decode_ms + m.augment_ms) / core_ms;
    let limit = if a.pipeline != "raw" && cpu_share > 0.7 {
        "decode+augment (CPU)"
    } else if m.consumer_wait_ms / (secs * 1e3) < 0.1 {
        "consumer"
    } else {
        "read (I/O)"
    };
    let mut out = Out::new();
    if a.json {
        let obj = json!({
            "samples": samples,
            "batches": m.batches,
            "seconds": secs,
            "samples_per_sec": samples as f64 / secs,
            "mb_per_sec": bytes as f64 / 1e6 / secs,
            "first_batch_ms": first_ms,
            "peak_rss_mb": rss_mb,
            "digest": (!a.no_digest).then(|| digest.hex()),
            "epoch_seconds": epoch_secs,
            "epoch_rss_mb": epoch_rss,
            "epoch_fds": epoch_fds,
            "fds_before": fds_before,
            "fds_after": fds_after,
            "coverage_checked": a.check_coverage,
            "io": io,
            "cores": cores,
            "worker_cpus": worker_cpus,
            "batch_memory": if a.tensors { "tensor" } else { "pooled" },
            "pipeline": a.pipeline,
            "images_per_sec": if a.pipeline == "raw" { 0.0 } else { samples as f64 / secs },
            "stage_share": stages.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "limiting_stage": limit,
            "metrics": m,
            "object_store": remote,
        });
        outln!(out, "{}", serde_json::to_string_pretty(&obj)?)?;
    } else {
        outln!(
            out,
            "{samples} samples in {secs:.2} s: {:.0} samples/s, {:.0} MB/s ({io} I/O, {cores} cores)",
            samples as f64 / secs,
            bytes as f64 / 1e6 / secs
        )?;
        let digest = if a.no_digest { "skipped".to_owned() } else { digest.hex() };
        outln!(out, "first batch {first_ms:.1} ms, peak RSS {rss_mb:.0} MB, digest {digest}")?;
        if let Some(r) = remote {
            outln!(out, "object store: {r}")?;
        }
        if a.pipeline != "raw" {
            outln!(
                out,
                "{} pipeline: {:.0} images/s; core time read {:.0} ms, decode {:.0} ms, augment {:.0} ms; \
                 consumer waited {:.0} ms; limited by {limit}",
                a.pipeline,
                samples as f64 / secs,
                m.read_ms,
                m.decode_ms,
                m.augment_ms,
                m.consumer_wait_ms
            )?;
        }
        outln!(
            out,
            "reads {} ({:.2} records/read), read latency p50 {} µs p99 {} µs, consumer waited {:.0} ms, \
             max queue {} batches",
            m.reads,
            m.records_per_read,
            m.read_latency_us_p50,
            m.read_latency_us_p99,
            m.consumer_wait_ms,
            m.queue_depth_max,
        )?;
        if m.corrupt > 0 {
            outln!(
                out,
                "corrupt records: {} ({} skipped, {} replaced); first:",
                m.corrupt,
                m.skipped,
                m.replaced
            )?;
            for location in &m.corrupt_locations {
                outln!(out, "  {}", escaped(location))?;
            }
        }
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
