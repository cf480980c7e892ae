//! `ringfeed order`: prints the record indices of each batch of one epoch
//! for one rank, as JSON lines, without reading any record.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use ringfeed::{EpochPlan, Manifest};

use crate::order_args::OrderArgs;
use crate::output::{Out, outln};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Dataset directory.
    dataset: PathBuf,
    /// Epoch.
    #[arg(long, default_value_t = 0)]
    epoch: u64,
    #[command(flatten)]
    order: OrderArgs,
}

pub(crate) fn run(a: Args) -> Result<ExitCode> {
    let manifest = if ringfeed::object::is_object_url(&a.dataset.to_string_lossy()) {
        ringfeed::open_dataset(&a.dataset)?.manifest().clone()
    } else {
        Manifest::load(&a.dataset)?
    };
    let o = &a.order;
    let plan = EpochPlan::new(manifest.records, o.shuffle(), o.seed, a.epoch, o.ddp()?, o.batch)?;
    let mut out = Out::new();
    for b in 0..plan.batches() {
        let line = serde_json::json!({ "epoch": a.epoch, "batch": b, "indices": plan.batch_indices(b) });
        outln!(out, "{line}")?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
