//! `ringfeed ckpt inspect|verify`: safetensors files and sharded sets.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Subcommand;
use ringfeed_ckpt::{Checkpoint, ShardedCheckpoint, TensorInfo};
use serde_json::json;

use crate::output::{Out, escaped, escaped_path, outln};
use crate::units::human_bytes;

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Validate a checkpoint's header(s) and list its tensors.
    Inspect {
        /// A .safetensors file, a model.safetensors.index.json, or a
        /// directory holding one.
        path: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Load a checkpoint (or save a copy of it) and report GB/s; with
    /// --procs N, N processes load it at once, sharing one read.
    Bench(BenchArgs),
    /// Read every tensor and check every stored CRC32C; exit 1 when the
    /// checkpoint is damaged.
    Verify {
        /// A .safetensors file, a model.safetensors.index.json, or a
        /// directory holding one.
        path: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// A .safetensors file.
    path: PathBuf,
    /// Processes loading at once (startup storm): they share one read
    /// through shared memory (--shm).
    #[arg(long, default_value_t = 1)]
    procs: usize,
    /// I/O mode of the load.
    #[arg(long, default_value = "direct", value_parser = ["direct", "buffered"])]
    io: String,
    /// Reads in flight.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Size of each read (suffixes K, M, G).
    #[arg(long, default_value = "8M", value_parser = crate::units::parse_size)]
    chunk: u64,
    /// Check stored CRC32Cs while loading.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    verify: bool,
    /// Drop the page cache first (root only): a cold read.
    #[arg(long)]
    drop_caches: bool,
    /// Lock directory of --procs (a fresh one under /dev/shm by default).
    #[arg(long)]
    shm: Option<PathBuf>,
    /// Instead of loading, save the loaded tensors to this path (sync, or
    /// --async: also reports how long the caller was blocked, against a
    /// plain copy of the tensors).
    #[arg(long)]
    save_to: Option<PathBuf>,
    /// Load into libtorch tensors (`Checkpoint::load_tch`, on the CPU,
    /// pinned when CUDA is available; needs a build with `--features tch`).
    #[arg(long)]
    tensors: bool,
    /// With --save-to: writes in flight (threads writing).
    #[arg(long, default_value_t = 2)]
    save_threads: usize,
    /// With --save-to: save with AsyncSaver.
    #[arg(long = "async")]
    asynchronous: bool,
    /// Internal: one process of --procs.
    #[arg(long, hide = true)]
    child: bool,
}

/// One file or a sharded set.
enum Opened {
    File(Checkpoint),
    Set(ShardedCheckpoint),
}

impl Opened {
    fn open(path: &Path) -> Result<Opened, ringfeed_ckpt::Error> {
        let is_index =
            path.is_dir() || path.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".index.json"));
        Ok(if is_index {
            Opened::Set(ShardedCheckpoint::open(path)?)
        } else {
            Opened::File(Checkpoint::open(path)?)
        })
    }

    fn files(&self) -> Vec<&Checkpoint> {
        match self {
            Opened::File(c) => vec![c],
            Opened::Set(s) => s.shards().iter().collect(),
        }
    }
}

pub(crate) fn run(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Inspect { path, json } => inspect(&path, json),
        Command::Verify { path, json } => verify(&path, json),
        Command::Bench(args) => bench(&args),
    }
}

fn drop_caches() -> Result<()> {
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .map_err(|e| anyhow::anyhow!("--drop-caches: cannot write /proc/sys/vm/drop_caches (root only): {e}"))
}

/// Loads into libtorch tensors: bytes and tensors loaded.
#[cfg(feature = "tch")]
fn load_tensors(ckpt: &Checkpoint) -> Result<(u64, usize)> {
    let named = ckpt.load_tch(ringfeed::tch::Device::Cpu)?;
    let bytes = named.iter().map(|(_, t)| t.numel() as u64 * t.kind().elt_size_in_bytes() as u64).sum();
    Ok((bytes, named.len()))
}

#[cfg(not(feature = "tch"))]
fn load_tensors(_: &Checkpoint) -> Result<(u64, usize)> {
    anyhow::bail!(
        "--tensors needs a ringfeed built with the tch feature (cargo build -p ringfeed-cli --features tch)"
    )
}

fn bench(a: &BenchArgs) -> Result<ExitCode> {
    anyhow::ensure!((1..=64).contains(&a.procs), "--procs must be between 1 and 64");
    if a.drop_caches {
        drop_caches()?;
    }
    let open = || {
        Checkpoint::builder(&a.path)
            .direct_io(a.io == "direct")
            .threads(a.threads)
            .chunk_bytes(a.chunk as usize)
            .verify_checksums(a.verify)
            .build()
    };
    let mut out = Out::new();
    if a.child {
        let started = Instant::now();
        let ckpt = open()?;
        let (tensors, from) = ckpt.load_shared(a.shm.as_deref())?;
        let seconds = started.elapsed().as_secs_f64();
        // Loaded: say so at once (the parent times the storm by these
        // lines), then the digest that shows every process has the same bytes.
        let line = json!({"seconds": seconds, "from": format!("{from:?}"), "bytes": tensors.bytes()});
        outln!(out, "{line}")?;
        out.flush()?;
        let crc = tensors.iter().fold(0, |c, t| crc32c::crc32c_append(c, t.bytes()));
        outln!(out, "{}", json!({"crc32c": format!("{crc:08x}")}))?;
        out.finish()?;
        // Hold the tensors (a publisher's copy lives as long as they do)
        // until the parent has heard from every process.
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(target) = &a.save_to {
        return bench_save(a, target, out);
    }
    let obj = if a.procs == 1 {
        let started = Instant::now();
        let ckpt = open()?;
        let (bytes, count) =
            if a.tensors { load_tensors(&ckpt)? } else { ckpt.load().map(|t| (t.bytes(), t.len()))? };
        let secs = started.elapsed().as_secs_f64();
        json!({"procs": 1, "seconds": secs, "bytes": bytes, "gb_per_s": bytes as f64 / secs / 1e9,
               "direct_io": ckpt.direct_io().is_some(), "checksums_verified": a.verify && ckpt.has_checksums(),
               "tensors": count, "into": if a.tensors { "libtorch" } else { "aligned buffer" }})
    } else {
        anyhow::ensure!(!a.tensors, "--tensors loads in one process (no --procs)");
        let shm_tmp;
        let shm = match &a.shm {
            Some(p) => p.clone(),
            None => {
                shm_tmp = std::env::temp_dir().join(format!("rf-ckpt-bench-{}", std::process::id()));
                let base = if Path::new("/dev/shm").is_dir() {
                    Path::new("/dev/shm").join(shm_tmp.file_name().unwrap_or_default())
                } else {
                    shm_tmp
                };
                std::fs::create_dir_all(&base)?;
                base
            }
        };
        let exe = std::env::current_exe()?;
        let started = Instant::now();
        let children: Vec<_> = (0..a.procs)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args(["ckpt", "bench", "--child", "--io", &a.io, "--threads", &a.threads.to_string()])
                    .args(["--chunk", &a.chunk.to_string(), "--verify", &a.verify.to_string()])
                    .arg("--shm")
                    .arg(&shm)
                    .arg(&a.path)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
            })
            .collect::<std::io::Result<_>>()?;
        let mut children: Vec<std::process::Child> = children;
        let mut readers = Vec::new();
        for c in &mut children {
            let stdout = c.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
            readers.push(std::io::BufReader::new(stdout));
        }
        let read_json = |r: &mut std::io::BufReader<std::process::ChildStdout>| -> Result<serde_json::Value> {
            let mut line = String::new();
            std::io::BufRead::read_line(r, &mut line)?;
            anyhow::ensure!(!line.is_empty(), "a bench process failed");
            Ok(serde_json::from_str(&line)?)
        };
        let mut each = Vec::new();
        for r in &mut readers {
            each.push(read_json(r)?);
        }
        let secs = started.elapsed().as_secs_f64();
        for (r, e) in readers.iter_mut().zip(&mut each) {
            e["crc32c"] = read_json(r)?["crc32c"].clone();
        }
        for mut c in children {
            drop(c.stdin.take());
            anyhow::ensure!(c.wait()?.success(), "a bench process failed");
        }
        if a.shm.is_none() {
            let _ = std::fs::remove_dir_all(&shm);
        }
        let storage = each.iter().filter(|v| v["from"] == "Storage").count();
        let same = each.windows(2).all(|w| w[0]["crc32c"] == w[1]["crc32c"]);
        json!({"procs": a.procs, "seconds": secs, "storage_reads": storage, "same_bytes": same, "each": each})
    };
    outln!(out, "{}", serde_json::to_string(&obj)?)?;
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

fn bench_save(a: &BenchArgs, target: &Path, mut out: Out) -> Result<ExitCode> {
    use ringfeed_ckpt::{AsyncSaver, SaveOptions, TensorRef};
    let tensors = Checkpoint::builder(&a.path).direct_io(a.io == "direct").build()?.load()?;
    let views: Vec<_> = tensors.iter().collect();
    let refs: Vec<TensorRef<'_>> = views
        .iter()
        .map(|t| TensorRef::new(t.name(), t.dtype(), t.shape(), t.bytes()))
        .collect::<Result<_, _>>()?;
    let chunk = usize::try_from(a.chunk).map_err(|_| anyhow::anyhow!("--chunk is too large"))?;
    let options = SaveOptions::default()
        .direct_io(a.io == "direct")
        .threads(a.save_threads)
        .chunk_bytes(chunk)
        .metadata("format", "pt");
    // A plain copy of every tensor into memory already touched: what the
    // caller of an async save is compared against.
    let mut copy: Vec<Vec<u8>> = views.iter().map(|t| vec![1u8; t.bytes().len()]).collect();
    let started = Instant::now();
    for (dst, t) in copy.iter_mut().zip(&views) {
        dst.copy_from_slice(t.bytes());
    }
    let memcpy = started.elapsed().as_secs_f64();
    drop(copy);
    let obj = if a.asynchronous {
        let saver = AsyncSaver::new(tensors.bytes() as usize + (8 << 20), options)?;
        let started = Instant::now();
        let handle = saver.save(target, &refs)?;
        let blocked = started.elapsed().as_secs_f64();
        let saved = handle.wait()?;
        let total = started.elapsed().as_secs_f64();
        json!({"mode": "async", "blocked_seconds": blocked, "memcpy_seconds": memcpy, "blocked_vs_memcpy": blocked / memcpy,
               "seconds": total, "bytes": saved.bytes, "gb_per_s": saved.bytes as f64 / total / 1e9, "direct_io": saved.direct_io})
    } else {
        let started = Instant::now();
        let saved = ringfeed_ckpt::save(target, &refs, &options)?;
        let secs = started.elapsed().as_secs_f64();
        json!({"mode": "sync", "seconds": secs, "bytes": saved.bytes, "gb_per_s": saved.bytes as f64 / secs / 1e9,
               "direct_io": saved.direct_io, "memcpy_seconds": memcpy})
    };
    outln!(out, "{}", serde_json::to_string(&obj)?)?;
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

fn tensor_json(t: &TensorInfo) -> serde_json::Value {
    json!({
        "name": escaped(&t.name),
        "dtype": t.dtype.name(),
        "shape": t.shape,
        "bytes": t.len(),
        "crc32c": t.crc32c.map(|c| format!("{c:08x}")),
    })
}

fn inspect(path: &Path, as_json: bool) -> Result<ExitCode> {
    let opened = Opened::open(path)?;
    let files = opened.files();
    let mut out = Out::new();
    let tensors: usize = files.iter().map(|f| f.tensors().len()).sum();
    let bytes: u64 = files.iter().map(|f| f.data_bytes()).sum();
    let checksummed = files.iter().all(|f| f.has_checksums());
    if as_json {
        let obj = json!({
            "path": escaped_path(path),
            "files": files.iter().map(|f| json!({
                "path": escaped_path(f.path()),
                "data_bytes": f.data_bytes(),
                "metadata": f.metadata(),
                "checksums": f.has_checksums(),
                "tensors": f.tensors().iter().map(tensor_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "tensors": tensors,
            "data_bytes": bytes,
            "checksums": checksummed,
        });
        outln!(out, "{}", serde_json::to_string_pretty(&obj)?)?;
        out.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(out, "checkpoint {}", escaped_path(path))?;
    outln!(out, "files      {}", files.len())?;
    outln!(out, "tensors    {tensors}, {} of data", human_bytes(bytes))?;
    outln!(
        out,
        "checksums  {}",
        if checksummed { "a CRC32C per tensor (ringfeed)" } else { "none (only structure can be verified)" }
    )?;
    for f in &files {
        outln!(out, "")?;
        outln!(out, "{}", escaped_path(f.path()))?;
        for (k, v) in f.metadata() {
            outln!(out, "  metadata {} = {}", escaped(k), escaped(v))?;
        }
        for t in f.tensors() {
            outln!(
                out,
                "  {:<48} {:<8} {:?} {}",
                escaped(&t.name),
                t.dtype.name(),
                t.shape,
                human_bytes(t.len())
            )?;
        }
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

fn verify(path: &Path, as_json: bool) -> Result<ExitCode> {
    let started = Instant::now();
    let opened = Opened::open(path)?;
    let bytes: u64 = opened.files().iter().map(|f| f.data_bytes()).sum();
    let checked = match &opened {
        Opened::File(c) => c.verify()?,
        Opened::Set(s) => s.verify()?,
    };
    let tensors: usize = opened.files().iter().map(|f| f.tensors().len()).sum();
    let secs = started.elapsed().as_secs_f64();
    let mut out = Out::new();
    if as_json {
        let obj = json!({ "clean": true, "files": opened.files().len(), "tensors": tensors, "checksummed": checked, "bytes": bytes, "seconds": secs });
        outln!(out, "{}", serde_json::to_string_pretty(&obj)?)?;
    } else {
        outln!(
            out,
            "ok: {} file{}, {tensors} tensors ({checked} with a checksum), {} read in {secs:.2} s ({}/s)",
            opened.files().len(),
            if opened.files().len() == 1 { "" } else { "s" },
            human_bytes(bytes),
            human_bytes((bytes as f64 / secs.max(1e-9)) as u64),
        )?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
