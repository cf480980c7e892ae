//! One worker per core: a glommio executor (a plain thread where io_uring
//! is unavailable, see `io_backend`) that reads the units assigned to
//! it (every `cores`-th unit of the run), assembles their batches and sends
//! them, in order, into its bounded channel.
//!
//! Within a worker, one or two units are read at once (one more when it
//! decodes images: the next unit's reads are in flight while the current
//! one is decoded), each unit's records coalesced into few aligned requests
//! that are all in flight together; a record is copied once, from the I/O
//! buffer into its slot of the batch buffer, and its CRC32C checked on the
//! way.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;

use super::batch::Batch;
use super::coalesce::{Run, Want, coalesce};
use super::config::ErrorPolicy;
use super::io_backend::{IoBackend, ReadBuf, ShardFiles, Task, spawn};
use super::metrics::Metrics;
use super::plan::{EpochPlan, Shuffle, Unit, units};
use super::pool::{BatchBuf, BufferPool};
use super::resources::IoMode;
use crate::order::DdpConfig;
use crate::{Error, Result};
use ringfeed_pack::Dataset;

/// Units being read at once across all workers: two keep the device busy
/// while a finished unit is handed over; more only holds memory (measured:
/// one per worker on two cores is as fast as two per worker).
pub(crate) fn units_in_flight(cores: usize) -> usize {
    2usize.div_ceil(cores)
}

/// Everything a worker needs; moved into its executor thread.
pub(crate) struct WorkerSpec {
    pub(crate) id: usize,
    pub(crate) cores: usize,
    pub(crate) dataset: Arc<Dataset>,
    pub(crate) shuffle: Shuffle,
    pub(crate) seed: u64,
    pub(crate) ddp: DdpConfig,
    pub(crate) batch: u64,
    pub(crate) unit_len: u64,
    pub(crate) start_epoch: u64,
    pub(crate) start_batch: u64,
    pub(crate) end_epoch: u64,
    pub(crate) batches_per_epoch: u64,
    pub(crate) io: IoMode,
    /// What drives this worker and issues its reads.
    pub(crate) backend: IoBackend,
    /// Most shard files this worker keeps open while idle.
    pub(crate) open_shards: usize,
    /// Most reads a unit keeps in flight (each may hold a shard file open).
    pub(crate) max_reads: usize,
    pub(crate) align: u64,
    pub(crate) max_merge: u64,
    pub(crate) max_gap: u64,
    /// Bytes of reads a unit keeps in flight (its share of I/O memory).
    pub(crate) io_budget: u64,
    pub(crate) policy: ErrorPolicy,
    pub(crate) tx: flume::Sender<Result<Batch>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) pool: Arc<BufferPool>,
    pub(crate) images: Option<super::images::ImagePipeline>,
    pub(crate) batch_memory: super::images::BatchMemory,
    pub(crate) sample_transform: Option<super::transform::SampleTransform>,
    /// This worker's part in decoding the run's first batch.
    pub(crate) first_batch: Option<super::first_batch::FirstBatch>,
    /// Where each worker reports the CPUs it found itself allowed on.
    pub(crate) placed: Arc<Vec<std::sync::OnceLock<Vec<usize>>>>,
}

/// What a worker shares with its in-flight unit tasks.
struct Ctx {
    spec: WorkerSpec,
    files: ShardFiles,
    /// This core's image pipeline, when the loader decodes images.
    pipeline: Option<std::cell::RefCell<ringfeed_decode::Pipeline>>,
    /// The other workers' shares of the run's first batch, taken by the
    /// first unit this worker reads.
    first_parts: std::cell::RefCell<Option<Result<super::first_batch::Started>>>,
}

/// The worker's main loop; returns when the run is done, the consumer went
/// away, or a fatal error was sent.
pub(crate) async fn run(mut spec: WorkerSpec) {
    if let (Ok(cpus), Some(slot)) = (crate::sys::affinity::allowed_cpus(), spec.placed.get(spec.id)) {
        let _ = slot.set(cpus);
    }
    let pipeline = match spec.images.as_ref().map(|p| p.build()).transpose() {
        Ok(p) => p.map(std::cell::RefCell::new),
        Err(e) => {
            let _ = spec.tx.send_async(Err(e)).await;
            return;
        }
    };
    let all =
        |s: &WorkerSpec| units(s.start_epoch, s.start_batch, s.end_epoch, s.batches_per_epoch, s.unit_len);
    let first_parts = match spec.first_batch.take() {
        Some(super::first_batch::FirstBatch::Own(parts)) => match (&pipeline, all(&spec).next()) {
            // The owner's share, too, before the shards are opened.
            (Some(pipe), Some(first)) => Some(super::first_batch::start(&spec, pipe, first, parts).await),
            _ => None,
        },
        Some(super::first_batch::FirstBatch::Help { tx, region }) => {
            // Before opening the shards: the share is read synchronously,
            // and the first batch waits for it.
            if let (Some(pipe), Some(first)) = (&pipeline, all(&spec).next()) {
                super::first_batch::help(&spec, pipe, first, tx, region).await;
            }
            None
        }
        None => None,
    };
    // Shards are opened when first read (concurrently, as the first
    // unit's reads are issued), at most `open_shards` at a time, so that
    // descriptors do not grow with the shard count.
    let files = ShardFiles::new(spec.backend, spec.io, spec.dataset.clone(), spec.open_shards);
    let ctx = Rc::new(Ctx { spec, files, pipeline, first_parts: std::cell::RefCell::new(first_parts) });
    let s = &ctx.spec;
    let (cores, id) = (s.cores, s.id);
    let mine = all(s).enumerate().filter(move |(seq, _)| seq % cores == id).map(|(_, u)| u);
    drive(&ctx, mine).await;
    ctx.files.close_all().await;
}

async fn drive(ctx: &Rc<Ctx>, mut mine: impl Iterator<Item = Unit>) {
    let depth = reads_in_flight(ctx.spec.cores, ctx.pipeline.is_some());
    let mut in_flight = VecDeque::with_capacity(depth);
    loop {
        while in_flight.len() < depth {
            let Some(unit) = mine.next() else { break };
            in_flight.push_back(spawn(ctx.spec.backend, read_unit(ctx.clone(), unit)));
        }
        let Some(task) = in_flight.pop_front() else { return };
        // The units behind this one keep reading while it is decoded.
        let batches = match task.await {
            Ok(read) => finish_unit(ctx, read).await,
            Err(e) => Err(e),
        };
        let failed = batches.is_err();
        let sends: Vec<Result<Batch>> = match batches {
            Ok(bs) => bs.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        for item in sends {
            if ctx.spec.stop.load(Ordering::Relaxed) || ctx.spec.tx.send_async(item).await.is_err() {
                wind_down(in_flight).await;
                return;
            }
        }
        if failed {
            wind_down(in_flight).await;
            return;
        }
    }
}

/// Units a worker reads at once: [`units_in_flight`], plus, when it
/// decodes images, the next unit, whose reads are in flight while the
/// current one is decoded (without it a worker would read its next unit
/// only after decoding, and a cold page cache would cost throughput).
pub(crate) fn reads_in_flight(cores: usize, images: bool) -> usize {
    units_in_flight(cores) + usize::from(images)
}

/// Lets units still being read finish, and drops what they made.
///
/// Not cancelled: a read cancelled in flight keeps its task alive until the
/// kernel confirms the cancellation, which an exiting executor never waits
/// for, and the leaked task then holds the executor's eventfd and the shard
/// descriptors open. Reads end within milliseconds, and decoding stops at
/// the next image once the loader is dropped (`stopping`).
async fn wind_down(tasks: VecDeque<Task<Result<ReadUnit>>>) {
    for task in tasks {
        drop(task.await);
    }
}

/// Whether the loader was dropped: work in progress can stop.
pub(crate) fn stopping(s: &WorkerSpec) -> bool {
    s.stop.load(Ordering::Relaxed)
}

/// Where one record of a unit goes.
struct Slot {
    batch: usize,
    /// Position of the record within its batch.
    pos: usize,
    start: usize,
    len: usize,
    crc: u32,
    index: u64,
    shard: usize,
    index_in_shard: u64,
}

/// A batch being filled.
pub(crate) struct Pending {
    pub(crate) index: u64,
    pub(crate) indices: Vec<u64>,
    pub(crate) labels: Vec<i64>,
    pub(crate) ends: Vec<usize>,
    pub(crate) buf: BatchBuf,
    /// Positions of records left out under the skip policy.
    pub(crate) bad: Vec<usize>,
    /// Decoded images, `[B, C, H, W]`, when the loader has a pipeline.
    pub(crate) images: Option<super::images::ImageBuf>,
    /// Records standing in for corrupt ones under the replace policy.
    pub(crate) substitutes: Vec<super::replace::Substitute>,
}

/// A unit whose records are read and checked, not yet decoded.
struct ReadUnit {
    unit: Unit,
    pending: Vec<Pending>,
    /// The run's first batch as decoded by every worker, for the first unit.
    first_parts: Option<super::first_batch::Started>,
}

/// Reads `unit`'s records into its batches' buffers, checking each CRC.
async fn read_unit(ctx: Rc<Ctx>, unit: Unit) -> Result<ReadUnit> {
    let s = &ctx.spec;
    // Taken before any await, so that the run's first unit gets it.
    let first_parts = ctx.first_parts.borrow_mut().take().transpose()?;
    let plan = EpochPlan::new(s.dataset.len(), s.shuffle, s.seed, unit.epoch, s.ddp, s.batch)?;
    let mut pending = Vec::with_capacity(unit.count as usize);
    let mut slots = Vec::new();
    let mut wants = Vec::new();
    for b in unit.first..unit.first + unit.count {
        let indices = plan.batch_indices(b);
        let (mut labels, mut ends) = (Vec::with_capacity(indices.len()), Vec::with_capacity(indices.len()));
        let mut total = 0usize;
        for &index in &indices {
            let loc = s.dataset.locate(index)?;
            let len = loc.len as usize;
            wants.push(Want { slot: slots.len(), shard: loc.shard, offset: loc.offset, len: len as u64 });
            slots.push(Slot {
                batch: pending.len(),
                pos: ends.len(),
                start: total,
                len,
                crc: loc.crc32c,
                index,
                shard: loc.shard,
                index_in_shard: loc.index_in_shard,
            });
            total += len;
            ends.push(total);
            labels.push(loc.label);
        }
        let buf = s
            .pool
            .take(total)
            .map_err(|e| Error::Shutdown(format!("cannot map a {total}-byte batch buffer: {e}")))?;
        pending.push(Pending {
            index: b,
            indices,
            labels,
            ends,
            buf,
            bad: Vec::new(),
            images: None,
            substitutes: Vec::new(),
        });
    }
    let runs = coalesce(wants, |_| s.align, s.max_merge, s.max_gap);
    let read_started = Instant::now();
    // Requests are issued ahead of the one being awaited, as many as fit in
    // the worker's share of registered I/O memory: more would spill into
    // unregistered heap buffers (slower reads, fragmented memory), and no
    // more than `max_reads`, each of which may hold a shard file open.
    let mut issued = VecDeque::new();
    let mut in_flight = 0u64;
    let mut next = 0;
    loop {
        while let Some(run) = runs.get(next) {
            if !issued.is_empty() && (in_flight + run.len() > s.io_budget || issued.len() >= s.max_reads) {
                break;
            }
            issued.push_back(spawn_read(&ctx, run));
            in_flight += run.len();
            next += 1;
        }
        let Some(task) = issued.pop_front() else { break };
        let run = &runs[next - issued.len() - 1];
        in_flight -= run.len();
        let path = s.dataset.shards()[run.shard].path();
        let mut data = match task {
            None => Ok(None),
            Some(t) => t.await.map(Some),
        };
        let remote = s.dataset.shards()[run.shard].remote().is_some();
        let mut reread = false;
        loop {
            let mut again = false;
            for m in &run.members {
                let slot = &slots[m.slot];
                let outcome = data.as_ref().map_err(clone_err).and_then(|d| {
                    let from = (m.offset - run.start) as usize;
                    let bytes: &[u8] = match d {
                        Some(buf) => buf.get(from..from + slot.len).ok_or_else(|| {
                            Error::corrupt_record(
                                path,
                                m.offset,
                                slot.index_in_shard,
                                "short read: the shard ends before this record (truncated after opening?)",
                            )
                        })?,
                        None => &[],
                    };
                    ringfeed_pack::check_crc(bytes, slot.crc, path, m.offset, slot.index_in_shard)?;
                    Ok(bytes)
                });
                match outcome {
                    Ok(bytes) => {
                        pending[slot.batch].buf[slot.start..slot.start + slot.len].copy_from_slice(bytes);
                    }
                    // From object storage, a record that fails its check may
                    // be a damaged copy in the local cache (whose reads this
                    // check stands for): read the run once more, from the
                    // store, before the error policy hears of it.
                    Err(e) if remote && !reread && matches!(e, Error::Corrupt { .. }) => {
                        again = true;
                        break;
                    }
                    Err(e) => on_bad_record(s, &mut pending[slot.batch], slot, e)?,
                }
            }
            if !again {
                break;
            }
            reread = true;
            data = reread_run(&ctx, run).await.map(Some);
        }
    }
    s.metrics.read_ns.fetch_add(read_started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    Ok(ReadUnit { unit, pending, first_parts })
}

/// Decodes a read unit's images (if the loader has a pipeline), replaces
/// bad records under the replace policy, and turns its batches into
/// [`Batch`]es.
async fn finish_unit(ctx: &Rc<Ctx>, read: ReadUnit) -> Result<Vec<Batch>> {
    let s = &ctx.spec;
    let ReadUnit { unit, mut pending, first_parts } = read;
    if let Some(pipe) = &ctx.pipeline {
        let mut shared = first_parts;
        for p in &mut pending {
            super::images::decode_pending(s, pipe, unit.epoch, p, shared.take()).await?;
        }
    }
    if s.policy == ErrorPolicy::Replace {
        for p in &mut pending {
            super::replace::fill(s, ctx.pipeline.as_ref(), unit.epoch, p)?;
        }
    }
    pending.into_iter().map(|p| finish(s, unit.epoch, p)).collect()
}

/// Starts reading one run (opening its shard if needed); `None` for a run
/// of nothing (empty records).
fn spawn_read(ctx: &Rc<Ctx>, run: &Run) -> Option<Task<Result<ReadBuf>>> {
    let (ctx, shard, start, len) = (ctx.clone(), run.shard, run.start, run.len() as usize);
    (len > 0).then(|| {
        spawn(ctx.spec.backend, async move {
            let file = ctx.files.get(shard).await?;
            let began = Instant::now();
            let res = file.read(start, len).await;
            if let Ok(buf) = &res {
                ctx.spec.metrics.read_done(began.elapsed(), buf.len() as u64);
            }
            drop(file);
            res.map_err(|e| {
                let path = ctx.spec.dataset.shards().get(shard).map(|s| s.path().to_path_buf());
                Error::io_at("read", path.unwrap_or_default(), start, e)
            })
        })
    })
}

/// Reads a run of a shard in object storage again, past the local cache
/// (see `read_unit`).
async fn reread_run(ctx: &Rc<Ctx>, run: &Run) -> Result<ReadBuf> {
    let path =
        || ctx.spec.dataset.shards().get(run.shard).map(|s| s.path().to_path_buf()).unwrap_or_default();
    let file = ctx.files.get(run.shard).await?;
    match file.reread(run.start, run.len() as usize).await {
        Some(res) => res.map_err(|e| Error::io_at("read", path(), run.start, e)),
        None => Err(Error::Shutdown(format!("{} is not in object storage", path().display()))),
    }
}

/// Errors are not `Clone`; a failed read is reported once per record it
/// served, so rebuild it with the same kind and message.
fn clone_err(e: &Error) -> Error {
    match e {
        Error::Io { op, path, offset, source } => Error::Io {
            op,
            path: path.clone(),
            offset: *offset,
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        // A shard replaced underneath (found when reopening it).
        Error::Corrupt { path, offset, record, reason } => {
            Error::Corrupt { path: path.clone(), offset: *offset, record: *record, reason: reason.clone() }
        }
        other => Error::Shutdown(other.to_string()),
    }
}

fn on_bad_record(s: &WorkerSpec, p: &mut Pending, slot: &Slot, e: Error) -> Result<()> {
    if s.policy == ErrorPolicy::Fail {
        return Err(e);
    }
    s.metrics.corrupt(|| format!("record {} (shard {}): {e}", slot.index, slot.shard));
    if s.policy == ErrorPolicy::Skip {
        s.metrics.skipped.fetch_add(1, Ordering::Relaxed);
    }
    p.bad.push(slot.pos);
    Ok(())
}

/// Turns a filled batch into a [`Batch`], dropping skipped records.
fn finish(s: &WorkerSpec, epoch: u64, mut p: Pending) -> Result<Batch> {
    let images = super::images::finish_images(s, p.images.take(), p.indices.len(), &p.bad)?;
    let mut batch = if p.bad.is_empty() && p.substitutes.is_empty() {
        Batch::new(epoch, p.index, p.indices, p.labels, s.pool.freeze(p.buf), p.ends)
    } else {
        let (mut data, mut indices, mut labels, mut ends, mut skipped, mut replaced) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut start = 0;
        for (i, &end) in p.ends.iter().enumerate() {
            if p.bad.contains(&i) {
                skipped.push(p.indices[i]);
            } else if let Some(sub) = p.substitutes.iter().find(|sub| sub.pos == i) {
                data.extend_from_slice(&sub.record.payload);
                indices.push(sub.record.index);
                labels.push(sub.record.label);
                ends.push(data.len());
                replaced.push((p.indices[i], sub.record.index));
            } else {
                data.extend_from_slice(&p.buf[start..end]);
                indices.push(p.indices[i]);
                labels.push(p.labels[i]);
                ends.push(data.len());
            }
            start = end;
        }
        let mut b = Batch::new(epoch, p.index, indices, labels, Bytes::from(data), ends);
        b.skipped = skipped;
        b.replaced = replaced;
        b
    };
    batch.images = images;
    s.metrics.records.fetch_add(batch.len() as u64, Ordering::Relaxed);
    s.metrics.payload_bytes.fetch_add(batch.payload_bytes() as u64, Ordering::Relaxed);
    Ok(batch)
}
