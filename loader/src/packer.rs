//! Packing a [`Source`] into a dataset: payloads are read by a pool of
//! threads, a batch of records at a time, while the previous batch is being
//! written; records are written strictly in source order, so the output
//! does not depend on the number of threads.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

use crate::error::{Error, Result};
use crate::pack::manifest::Manifest;
use crate::pack::writer::{DEFAULT_SHARD_SIZE, PackWriter};
use crate::source::Source;

/// Bytes of payload read ahead of the writer (per batch; two batches are
/// in memory at most: one being written, one being read).
const BATCH_BYTES: u64 = 64 << 20;
/// Records per batch at most, so small files still overlap reads and writes.
const BATCH_RECORDS: usize = 4096;

/// Options of [`pack`]. Build with [`PackOptions::builder`].
#[derive(Debug, Clone)]
pub struct PackOptions {
    shard_size: u64,
    threads: usize,
}

/// Consuming builder of [`PackOptions`].
#[derive(Debug, Clone)]
#[must_use]
pub struct PackOptionsBuilder {
    opts: PackOptions,
}

impl PackOptions {
    /// Starts from the defaults.
    pub fn builder() -> PackOptionsBuilder {
        let threads = thread::available_parallelism().map_or(2, |n| n.get());
        PackOptionsBuilder {
            opts: PackOptions { shard_size: DEFAULT_SHARD_SIZE, threads: (threads * 2).max(4) },
        }
    }
}

impl PackOptionsBuilder {
    /// Target shard size in bytes. Default: 256 MiB.
    pub fn shard_size(mut self, bytes: u64) -> Self {
        self.opts.shard_size = bytes;
        self
    }

    /// Threads that read source records. Default: twice the number of
    /// CPUs, at least 4 (reads wait on storage more than on CPU).
    pub fn threads(mut self, n: usize) -> Self {
        self.opts.threads = n;
        self
    }

    /// Validates the options.
    pub fn build(self) -> Result<PackOptions> {
        if self.opts.threads == 0 {
            return Err(Error::Config("threads must be at least 1".into()));
        }
        if self.opts.shard_size == 0 {
            return Err(Error::Config("shard size must be at least 1 byte".into()));
        }
        Ok(self.opts)
    }
}

/// Progress reported by [`pack`] after each record is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackProgress {
    /// Records written so far.
    pub records: u64,
    /// Payload bytes written so far.
    pub bytes: u64,
    /// Records in the source.
    pub total_records: u64,
    /// Payload bytes in the source, as listed before reading.
    pub total_bytes: u64,
}

/// Packs every record of `source` into a new dataset in `out_dir`.
///
/// `out_dir` must be missing, empty, or hold an earlier ringfeed dataset
/// (which is replaced). On error nothing in `out_dir` opens as a dataset.
pub fn pack(
    source: &dyn Source,
    out_dir: &Path,
    options: &PackOptions,
    mut progress: impl FnMut(PackProgress),
) -> Result<Manifest> {
    let mut writer = PackWriter::builder(out_dir)
        .shard_size(options.shard_size)
        .schema(source.schema())
        .classes(source.classes())
        .source(source.format())
        .build()?;
    let n = source.len();
    let mut p = PackProgress {
        records: 0,
        bytes: 0,
        total_records: n as u64,
        total_bytes: (0..n).map(|i| source.item(i).size).sum(),
    };
    let batches = plan_batches(source);
    let mut next = 0usize;
    thread::scope(|scope| -> Result<()> {
        // One batch in the channel, one being read: reading overlaps writing.
        let (tx, rx) = mpsc::sync_channel::<Vec<Result<Vec<u8>>>>(1);
        let reader = scope.spawn(move || {
            for range in batches {
                let payloads = read_batch(source, range, options.threads);
                let failed = payloads.iter().any(Result::is_err);
                if tx.send(payloads).is_err() || failed {
                    break;
                }
            }
        });
        let result = (|| {
            for payloads in rx.iter() {
                for payload in payloads {
                    let payload = payload?;
                    let item = source.item(next);
                    writer.push(&payload, item.label, item.key)?;
                    next += 1;
                    p.records += 1;
                    p.bytes += payload.len() as u64;
                    progress(p);
                }
            }
            Ok(())
        })();
        drop(rx);
        reader.join().map_err(|_| Error::Config("a source reader thread panicked".into()))?;
        result
    })?;
    if next != n {
        return Err(Error::Config(format!("source yielded {next} of {n} records")));
    }
    writer.finish()
}

/// Splits `0..len` into consecutive batches bounded in bytes and records.
fn plan_batches(source: &dyn Source) -> Vec<std::ops::Range<usize>> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for i in 0..source.len() {
        bytes += source.item(i).size;
        if bytes >= BATCH_BYTES || i + 1 - start >= BATCH_RECORDS {
            batches.push(start..i + 1);
            start = i + 1;
            bytes = 0;
        }
    }
    if start < source.len() {
        batches.push(start..source.len());
    }
    batches
}

/// Reads a batch with `threads` workers taking records in turn; results are
/// returned in index order.
fn read_batch(source: &dyn Source, range: std::ops::Range<usize>, threads: usize) -> Vec<Result<Vec<u8>>> {
    let len = range.len();
    let next = AtomicUsize::new(0);
    let workers = threads.min(len).max(1);
    let mut slots: Vec<Option<Result<Vec<u8>>>> = (0..len).map(|_| None).collect();
    let results: Vec<Vec<(usize, Result<Vec<u8>>)>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= len {
                            break;
                        }
                        done.push((k, source.read(range.start + k)));
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Vec::new())).collect()
    });
    for (k, r) in results.into_iter().flatten() {
        slots[k] = Some(r);
    }
    slots
        .into_iter()
        .enumerate()
        .map(|(k, s)| {
            s.unwrap_or_else(|| {
                Err(Error::Config(format!("reading source record {} panicked", range.start + k)))
            })
        })
        .collect()
}
