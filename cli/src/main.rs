//! The `ringfeed` command: pack datasets, inspect them, verify them;
//! inspect and verify checkpoints (`ringfeed ckpt`).
//!
//! Exit codes, the same for every command (a condition gives the same code
//! whichever command meets it):
//!
//! | code | meaning | e.g. |
//! |---|---|---|
//! | 0 | success | `verify` found nothing wrong; `--help` |
//! | 1 | a data problem: the dataset (or the source being packed) is damaged or incomplete | a checksum mismatch, a truncated or malformed shard or manifest, a shard the manifest lists that is missing, an undecodable image under `--on-corrupt fail`, a corrupt TFRecord/tar/FFRecord input, `bench --check-coverage` finding a record missing |
//! | 2 | usage, environment or I/O | a bad option or a value out of its range, a path that is not a dataset, an image pipeline on a dataset that is not of images, permission denied, disk full, stdout that cannot be written (a closed pipe exits 2 without a message), a dataset locked by another pack, memlock or io_uring limits, an internal error |
//!
//! Every failure prints one line on stderr, `error: ...`, with control
//! characters escaped.

mod cmd_bench;
mod cmd_ckpt;
mod cmd_inspect;
mod cmd_order;
mod cmd_pack;
mod cmd_tokenize;
mod cmd_verify;
mod cmd_windows;
mod logger;
mod order_args;
mod output;
mod units;

use std::io::ErrorKind;
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
    /// Tokenize text documents (files, JSON lines, tar, TFRecord, FFRecord) into a token dataset.
    Tokenize(cmd_tokenize::Args),
    /// Print one document of a token dataset (its ids).
    Tokens(cmd_tokenize::TokensArgs),
    /// Print the corpus offset of every window of every batch of one epoch and rank (JSON lines).
    Windows(cmd_windows::Args),
    /// Print what a dataset holds.
    Inspect {
        /// Dataset directory.
        dataset: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stream epochs of a dataset and report samples/s, MB/s, latency and memory.
    Bench(Box<cmd_bench::Args>),
    /// Print each batch's record indices for one epoch and rank (JSON lines).
    Order(cmd_order::Args),
    /// Write a dataset's key index (key-index.rfk) for fast key lookups;
    /// `pack` writes it already, this is for older packs.
    IndexKeys {
        /// Dataset directory.
        dataset: PathBuf,
    },
    /// Checkpoints (safetensors files, sharded sets): inspect, verify.
    #[command(subcommand)]
    Ckpt(cmd_ckpt::Command),
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
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str));
        // `println!` panics on a full or closed stdout; every command of
        // ours writes through `output::Out`, this covers the rest.
        match payload.and_then(|p| p.strip_prefix("failed printing to stdout: ")) {
            // A closed pipe, as below: no message.
            Some(reason) if reason.starts_with("Broken pipe") => {}
            Some(reason) => eprintln!("error: cannot write to stdout: {}", output::escaped(reason)),
            None => eprintln!("error: internal error (please report it): {}", one_line(&info.to_string())),
        }
        std::process::exit(2);
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            if e.kind() == clap::error::ErrorKind::ValueValidation {
                // Ours (sizes): the first line names the option, the value
                // and what is wrong; the rest is a tip.
                let text = e.to_string();
                eprintln!("{}", one_line(text.lines().next().unwrap_or("error: invalid value")));
            } else {
                let _ = e.print();
            }
            return ExitCode::from(code);
        }
    };
    logger::init();
    let result = match cli.command {
        Command::Pack(args) => cmd_pack::run(args),
        Command::Tokenize(args) => cmd_tokenize::run(args),
        Command::Tokens(args) => cmd_tokenize::tokens(args),
        Command::Windows(args) => cmd_windows::windows(args),
        Command::Bench(args) => cmd_bench::run(*args),
        Command::Order(args) => cmd_order::run(args),
        Command::Inspect { dataset, json } => cmd_inspect::run(&dataset, json),
        Command::Verify { dataset, json } => cmd_verify::run(&dataset, json),
        Command::IndexKeys { dataset } => index_keys(&dataset),
        Command::Ckpt(cmd) => cmd_ckpt::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            let closed_pipe = err
                .downcast_ref::<output::StdoutError>()
                .is_some_and(|e| e.0.kind() == ErrorKind::BrokenPipe);
            // Whoever closed the pipe stopped reading on purpose (`| head`):
            // fail as a program killed by SIGPIPE would, without a message.
            if !closed_pipe {
                eprintln!("error: {}", one_line(&err.to_string()));
            }
            ExitCode::from(exit_code(&err))
        }
    }
}

/// `ringfeed index-keys`.
fn index_keys(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let path = ringfeed::write_key_index(dir)?;
    let records = ringfeed::Dataset::open(dir)?.len();
    let mut out = output::Out::new();
    output::outln!(
        out,
        "wrote {} ({records} keys, {} bytes in memory per record)",
        output::escaped_path(&path),
        ringfeed::KEY_INDEX_BYTES_PER_RECORD
    )?;
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// A finding about the data that is not a [`ringfeed::Error`] (e.g.
/// `bench --check-coverage`); exit code 1.
#[derive(Debug)]
pub(crate) struct DataProblem(pub(crate) String);

impl std::fmt::Display for DataProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DataProblem {}

/// The exit code of a failed command; see the table in the crate docs.
fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<DataProblem>().is_some() {
        return 1;
    }
    if let Some(e) = err.downcast_ref::<ringfeed_ckpt::Error>() {
        return e.exit_code() as u8;
    }
    match err.downcast_ref::<ringfeed::Error>() {
        Some(e) if e.is_corruption() || is_missing_shard(e) => 1,
        _ => 2,
    }
}

/// A file of a dataset that its manifest lists is gone: the dataset is
/// incomplete, a data problem like a truncated shard (and what `verify`
/// reports as a problem), not a usage error.
fn is_missing_shard(e: &ringfeed::Error) -> bool {
    match e {
        ringfeed::Error::Io { source, path, .. } => {
            source.kind() == ErrorKind::NotFound
                && path.file_name().is_some_and(|name| name != ringfeed::MANIFEST_FILE)
                && path.parent().is_some_and(|dir| dir.join(ringfeed::MANIFEST_FILE).is_file())
        }
        _ => false,
    }
}

/// `message` on one line: control characters (a newline in a file name)
/// escaped.
fn one_line(message: &str) -> String {
    output::escaped(message).into_owned()
}
