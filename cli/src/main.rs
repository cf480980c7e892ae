//! The `ringfeed` command: pack datasets, inspect them, verify them.
//!
//! Exit codes: 0 success; 1 corruption found (`verify`, or damaged data met
//! by any command); 2 usage, configuration or I/O errors.

mod cmd_bench;
mod cmd_inspect;
mod cmd_order;
mod cmd_pack;
mod cmd_verify;
mod logger;
mod order_args;
mod units;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Data loading for deep learning: pack files, direct I/O, seeded epochs.
#[derive(Debug, Parser)]
#[command(name = "ringfeed", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pack a source (ImageFolder, files, WebDataset tar, TFRecord, FFRecord) into a dataset.
    Pack(cmd_pack::Args),
    /// Print what a dataset holds.
    Inspect {
        /// Dataset directory.
        dataset: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stream epochs of a dataset and report samples/s, MB/s, latency and memory.
    Bench(cmd_bench::Args),
    /// Print each batch's record indices for one epoch and rank (JSON lines).
    Order(cmd_order::Args),
    /// Check every checksum of a dataset; exit 1 when anything is corrupt.
    Verify {
        /// Dataset directory.
        dataset: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // A bug must still end in one line and exit code 2, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error (please report it): {info}");
        std::process::exit(2);
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    logger::init();
    let result = match cli.command {
        Command::Pack(args) => cmd_pack::run(args),
        Command::Bench(args) => cmd_bench::run(args),
        Command::Order(args) => cmd_order::run(args),
        Command::Inspect { dataset, json } => cmd_inspect::run(&dataset, json),
        Command::Verify { dataset, json } => cmd_verify::run(&dataset, json),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            let corrupt = err.downcast_ref::<ringfeed::Error>().is_some_and(ringfeed::Error::is_corruption);
            ExitCode::from(if corrupt { 1 } else { 2 })
        }
    }
}
