//! Packing a [`Source`] into a dataset.
//!
//! A reader thread fills a batch buffer (up to 64 MiB of records) with a
//! pool of worker threads, each reading records straight into their slot of
//! the buffer and checksumming them; meanwhile the caller's thread writes
//! the previous batch. Two buffers circulate, so memory is bounded and no
//! page is faulted in twice. Records are written strictly in source order,
//! so the output does not depend on the number of threads.

use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread;

use crate::error::{Error, Result};
use crate::pack::manifest::Manifest;
use crate::pack::writer::{DEFAULT_SHARD_SIZE, PackWriter};
use crate::source::Source;

/// Payload bytes per batch; a larger record gets a batch of its own. Small
/// enough that filling the pipeline at the start and draining it at the end
/// cost little, large enough to keep every reader busy.
const BATCH_BYTES: u64 = 16 << 20;
/// Records per batch at most, so small files still overlap reads and writes.
const BATCH_RECORDS: usize = 4096;
/// Batch buffers in circulation: one being read, one being written.
const BUFFERS: usize = 2;

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
        let cpus = thread::available_parallelism().map_or(2, |n| n.get());
        PackOptionsBuilder {
            opts: PackOptions { shard_size: DEFAULT_SHARD_SIZE, threads: (cpus * 2).max(4) },
        }
    }
}

impl PackOptionsBuilder {
    /// Target shard size in bytes. Default: 128 MiB.
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
    /// Payload bytes in the source.
    pub total_bytes: u64,
}

/// A batch of consecutive records read into one buffer (which may be
/// longer than the records it holds).
struct Batch {
    range: Range<usize>,
    buf: Vec<u8>,
    /// Per record: (start in `buf`, CRC32C).
    spans: Vec<(usize, u32)>,
}

/// Refuses an output directory that is the source, lies inside it, or
/// holds it: packing would delete the source (a dataset packed into
/// itself) or read its own output. Paths are compared after resolving
/// symlinks and `..`; an output that does not exist yet is resolved
/// through its nearest existing ancestor. Call it before [`pack`] with
/// the path the source was opened from (`ringfeed pack` does).
pub fn check_pack_paths(src: &Path, out_dir: &Path) -> Result<()> {
    let src = src.canonicalize().map_err(|e| Error::io("open", src, e))?;
    let mut existing = out_dir.to_path_buf();
    let mut rest = Vec::new();
    let out = loop {
        match existing.canonicalize() {
            Ok(p) => break rest.iter().rev().fold(p, |p: std::path::PathBuf, c| p.join(c)),
            Err(_) => match (existing.file_name().map(ToOwned::to_owned), existing.parent()) {
                (Some(name), Some(parent)) => {
                    rest.push(name);
                    existing = if parent.as_os_str().is_empty() { ".".into() } else { parent.to_path_buf() };
                }
                _ => return Err(Error::Config(format!("cannot resolve output path {}", out_dir.display()))),
            },
        }
    };
    let clash = if out == src {
        Some("is the source")
    } else if out.starts_with(&src) {
        Some("lies inside the source")
    } else if src.starts_with(&out) {
        Some("holds the source")
    } else {
        None
    };
    match clash {
        Some(how) => Err(Error::Config(format!(
            "output directory {} {how} ({}); packing would delete or read its own output: \
             choose a directory outside it",
            out_dir.display(),
            src.display()
        ))),
        None => Ok(()),
    }
}

/// Packs every record of `source` into a new dataset in `out_dir`.
///
/// `out_dir` must be missing, empty, or hold an earlier ringfeed dataset
/// (which is replaced), and must not overlap the source's files (see
/// [`check_pack_paths`]). While it writes, it holds an exclusive lock on
/// `out_dir`: a second pack into the same directory fails at once. On
/// error nothing in `out_dir` opens as a dataset.
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
    thread::scope(|scope| -> Result<()> {
        let (full_tx, full_rx) = mpsc::sync_channel::<Result<Batch>>(BUFFERS);
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
        for _ in 0..BUFFERS {
            free_tx.send(Vec::new()).expect("receiver alive");
        }
        let reader = scope.spawn(move || {
            for range in batches {
                let Ok(buf) = free_rx.recv() else { break };
                let batch = read_batch(source, range, buf, options.threads);
                let failed = batch.is_err();
                if full_tx.send(batch).is_err() || failed {
                    break;
                }
            }
        });
        let result = (|| {
            for batch in full_rx.iter() {
                let batch = batch?;
                for (k, &(start, crc)) in batch.spans.iter().enumerate() {
                    let i = batch.range.start + k;
                    let item = source.item(i);
                    let payload = &batch.buf[start..start + item.size as usize];
                    writer.push_checksummed(payload, crc, item.label, item.key)?;
                    p.records += 1;
                    p.bytes += item.size;
                    progress(p);
                }
                // The reader may have finished already; then the buffer is
                // simply dropped.
                let _ = free_tx.send(batch.buf);
            }
            Ok(())
        })();
        drop(full_rx);
        drop(free_tx);
        reader.join().map_err(|_| Error::Config("the source reader thread panicked".into()))?;
        result
    })?;
    if p.records != n as u64 {
        return Err(Error::Config(format!("source yielded {} of {n} records", p.records)));
    }
    writer.finish()
}

/// Splits `0..len` into consecutive batches bounded in bytes and records.
fn plan_batches(source: &dyn Source) -> Vec<Range<usize>> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for i in 0..source.len() {
        let size = source.item(i).size;
        if i > start && (bytes + size > BATCH_BYTES || i - start >= BATCH_RECORDS) {
            batches.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < source.len() {
        batches.push(start..source.len());
    }
    batches
}

/// Reads the records of `range` into `buf` with up to `threads` workers,
/// each taking the next unread record; checksums are computed by the
/// worker that read the record, while it is still in cache.
fn read_batch(source: &dyn Source, range: Range<usize>, mut buf: Vec<u8>, threads: usize) -> Result<Batch> {
    let sizes: Vec<usize> = range
        .clone()
        .map(|i| usize::try_from(source.item(i).size).map_err(|_| Error::Config("record too large".into())))
        .collect::<Result<_>>()?;
    let total: usize = sizes.iter().sum();
    // Every byte up to `total` is overwritten by the reads, so a buffer
    // that is already long enough is reused without clearing.
    if buf.len() < total {
        buf.resize(total, 0);
    }
    // Hand out disjoint slots of the buffer through a shared queue.
    let mut slots = Vec::with_capacity(sizes.len());
    let mut rest = &mut buf[..total];
    for (k, &size) in sizes.iter().enumerate() {
        let (slot, tail) = rest.split_at_mut(size);
        slots.push((k, slot));
        rest = tail;
    }
    slots.reverse();
    let queue = Mutex::new(slots);
    let workers = threads.min(sizes.len()).max(1);
    let crcs: Vec<Result<Vec<(usize, u32)>>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                        let Some((k, slot)) = next else { break };
                        source.read_into(range.start + k, slot)?;
                        done.push((k, crc32c::crc32c(slot)));
                    }
                    Ok(done)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| Err(Error::Config("a source reader thread panicked".into())))
            })
            .collect()
    });
    let mut spans = vec![(0usize, 0u32); sizes.len()];
    let mut start = 0;
    for (k, &size) in sizes.iter().enumerate() {
        spans[k].0 = start;
        start += size;
    }
    for worker in crcs {
        for (k, crc) in worker? {
            spans[k].1 = crc;
        }
    }
    Ok(Batch { range, buf, spans })
}
