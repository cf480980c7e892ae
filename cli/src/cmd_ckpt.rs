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
    }
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
