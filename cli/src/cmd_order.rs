//! `ringfeed order`: prints the record indices of each batch of one epoch
//! for one rank, as JSON lines, without reading any record.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use ringfeed::{EpochPlan, Manifest};

use crate::cmd_bench::{ddp_of, shuffle_of};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Dataset directory.
    dataset: PathBuf,
    /// Seed of the epoch order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Epoch.
    #[arg(long, default_value_t = 0)]
    epoch: u64,
    /// Records per batch.
    #[arg(long, default_value_t = 64)]
    batch: u64,
    /// This process's rank [default: $RANK or 0].
    #[arg(long)]
    rank: Option<u64>,
    /// Number of ranks [default: $WORLD_SIZE or 1].
    #[arg(long)]
    world: Option<u64>,
    /// Drop each epoch's tail instead of padding it.
    #[arg(long)]
    drop_last: bool,
    /// Epoch order.
    #[arg(long, default_value = "global", value_parser = ["global", "block", "sequential"])]
    shuffle: String,
    /// Records per block (block shuffle).
    #[arg(long, default_value_t = 64)]
    block_len: u64,
    /// Records shuffled together (block shuffle).
    #[arg(long, default_value_t = 1024)]
    window: u64,
}

pub(crate) fn run(a: Args) -> Result<ExitCode> {
    let manifest = Manifest::load(&a.dataset)?;
    let ddp = ddp_of(a.rank, a.world, a.drop_last)?;
    let shuffle = shuffle_of(&a.shuffle, a.block_len, a.window);
    let plan = EpochPlan::new(manifest.records, shuffle, a.seed, a.epoch, ddp, a.batch)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for b in 0..plan.batches() {
        let line = serde_json::json!({ "epoch": a.epoch, "batch": b, "indices": plan.batch_indices(b) });
        if writeln!(out, "{line}").is_err() {
            break; // stdout closed (e.g. piped into head)
        }
    }
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}
