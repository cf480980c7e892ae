//! [`Loader`]: starts the workers and hands their batches to the consumer,
//! in order, through one bounded channel per worker.

use std::path::Path;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use glommio::{CpuSet, ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use super::io_backend::{IoBackend, resolve_backend};

use super::batch::Batch;
use super::config::LoaderBuilder;
use super::metrics::{Metrics, MetricsSnapshot};
use super::plan::{EpochPlan, Unit, units};
use super::pool::BufferPool;
use super::resources::{IoMode, io_memory, resolve_io};
use super::state::LoaderState;
use super::stream::LoaderStream;
use super::worker::{self, WorkerSpec};
use crate::{Error, Result};

/// Streams batches of a pack dataset, epoch after epoch.
///
/// One pinned glommio executor per core reads with io_uring (direct or
/// buffered I/O; where io_uring is unavailable, one pinned thread per core
/// with blocking reads, see [`IoBackend`]), checks every record's CRC32C
/// and assembles whole batches; the consumer receives them in a fixed
/// order through bounded channels, as
/// a blocking [`Iterator`], with [`next_async`](Loader::next_async), or as a
/// [`Stream`](futures_lite::Stream) via [`into_stream`](Loader::into_stream)
/// from any async runtime. Batch `b` of epoch `e` holds the same records
/// whatever the number of cores.
///
/// Dropping the loader stops and joins every worker, which blocks the
/// dropping thread until they finish what they are reading (and the image
/// they are decoding); [`LoaderBuilder::build`] blocks while it opens the
/// dataset and starts the worker threads. Async callers use
/// [`LoaderBuilder::build_async`] and [`close`](Loader::close), which do
/// both on threads of their own.
///
/// A `Loader` is [`Send`] and [`Sync`]: move it to another thread, or
/// share `&Loader` (its queries such as [`state`](Loader::state),
/// [`metrics`](Loader::metrics) and [`classes`](Loader::classes) take
/// `&self`); taking batches takes `&mut self`. So a future that holds a
/// loader (or `&Loader`) across an `.await` is `Send` too.
///
/// ```
/// fn send_sync<T: Send + Sync>() {}
/// send_sync::<ringfeed::Loader>();
/// send_sync::<ringfeed::LoaderStream>();
/// ```
///
/// ```no_run
/// # fn main() -> ringfeed::Result<()> {
/// let mut loader = ringfeed::Loader::builder("/data/imagenet.rf").batch_size(256).seed(7).epochs(90).build()?;
/// while let Some(batch) = loader.next() {
///     let batch = batch?;
///     for (payload, label) in batch.records().zip(&batch.labels) { /* train */ }
///     let checkpoint = loader.state().to_json(); // resume point after this batch
/// }
/// # Ok(())
/// # }
/// ```
pub struct Loader {
    receivers: Vec<flume::Receiver<Result<Batch>>>,
    workers: Vec<WorkerThread>,
    units: Box<dyn Iterator<Item = Unit> + Send + Sync>,
    /// Units handed out so far; the next unit comes from worker `seq % cores`.
    seq: usize,
    /// Worker and batches left of the unit being received.
    current: Option<(usize, u64)>,
    state: LoaderState,
    batches_per_epoch: u64,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    finished: bool,
    io_mode: IoMode,
    backend: IoBackend,
    started: Instant,
    first_batch: Option<std::time::Duration>,
    /// The CPUs each worker found itself allowed on, once it started.
    placed: Arc<Vec<OnceLock<Vec<usize>>>>,
    /// The dataset's class names.
    classes: Vec<String>,
    /// The store of a dataset in object storage.
    remote: Option<Arc<dyn ringfeed_pack::RemoteStore>>,
}

// `Loader` is `Send` and `Sync` (documented on the type); a field that
// would take either away fails the build here instead of in a user's crate.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Loader>();
};

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("state", &self.state)
            .field("cores", &self.receivers.len())
            .field("io_mode", &self.io_mode)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Loader {
    /// Requests, bytes and cache hits of the object store the dataset is
    /// read from (`s3://` datasets); `None` for a local one.
    pub fn remote_counters(&self) -> Option<ringfeed_pack::RemoteCounters> {
        self.remote.as_ref().map(|r| r.counters())
    }

    /// Starts configuring a loader over the pack dataset in `dataset` (a
    /// directory, or with the `s3` feature an `s3://bucket/prefix` URL).
    pub fn builder(dataset: impl AsRef<Path>) -> LoaderBuilder {
        LoaderBuilder::new(dataset)
    }

    pub(crate) fn start(cfg: LoaderBuilder) -> Result<Loader> {
        let started = Instant::now();
        // Before the dataset opens its shards: it sizes its cap of open
        // files from the descriptor limit, raised to the hard one.
        let backend = resolve_backend(cfg.io_backend)?;
        let dataset = Arc::new(super::remote::open_with(&cfg.dataset, cfg.object_options.as_ref())?);
        if cfg.images.is_some() {
            super::config::check_image_dataset(&dataset)?;
        }
        let n = dataset.len();
        // Resolved by `build` (setters, environment, resumed state).
        let ddp = cfg.ddp.unwrap_or_default();
        if let Some(st) = cfg.resume
            && st.records != n
        {
            return Err(Error::Config(format!(
                "the saved state is for a dataset of {} records; {} has {n}",
                st.records,
                cfg.dataset.display()
            )));
        }
        let placements = placements(cfg.cpus.as_deref(), cfg.cores)?;
        let cores = placements.len();
        let placed: Arc<Vec<OnceLock<Vec<usize>>>> = Arc::new((0..cores).map(|_| OnceLock::new()).collect());
        let plan = EpochPlan::new(n, cfg.shuffle, cfg.seed, cfg.start_epoch, ddp, cfg.batch_size)?;
        let batches_per_epoch = plan.batches();
        if cfg.start_batch > batches_per_epoch {
            return Err(Error::Config(format!(
                "cannot start at batch {} of an epoch of {batches_per_epoch} batches",
                cfg.start_batch
            )));
        }
        let reads = worker::reads_in_flight(cores, cfg.images.is_some());
        // Block mode's units are bounded by the prefetch depth, not the window.
        let (unit_len, prefetch) =
            super::plan::read_ahead(cfg.shuffle, cfg.batch_size, cfg.prefetch, cores, reads);
        let end_epoch = cfg.end_epoch;
        let probe = dataset.shards().first().map(|s| s.path().to_path_buf());
        let remote = dataset.remote_store().is_some();
        let (io, align, io_mem) = match backend {
            // Object storage: reads land in heap buffers from the store's
            // runtime; there is no file to align to.
            _ if remote => (IoMode::Buffered, 1, super::resources::DEFAULT_IO_MEMORY),
            // Blocking reads go through the page cache and need neither
            // alignment nor locked memory.
            IoBackend::Blocking => {
                if cfg.io_mode == IoMode::Direct {
                    log::warn!(
                        "direct I/O needs io_uring here; the blocking reads go through the page cache"
                    );
                }
                (IoMode::Buffered, 1, super::resources::DEFAULT_IO_MEMORY)
            }
            _ => {
                let (io, align) = resolve_io(cfg.io_mode, dataset.manifest().bytes, probe.as_deref())?;
                (io, align, io_memory(cores, cfg.io_memory)?)
            }
        };
        let open_shards = ringfeed_pack::sys::limits::worker_open_shards(cores);
        let metrics = Arc::new(Metrics::default());
        let stop = Arc::new(AtomicBool::new(false));
        // `prefetch` counts every batch ahead of the consumer: queued in a
        // channel or still being read.
        let reading = reads * unit_len as usize;
        let per_worker = prefetch.div_ceil(cores).saturating_sub(reading).max(1);
        let pool = BufferPool::new(cores * (per_worker + reading) + 2, metrics.clone());
        let mut receivers = Vec::with_capacity(cores);
        let mut workers = Vec::with_capacity(cores);
        let mut first_batch = if let Some(images) = &cfg.images {
            super::first_batch::channels(cores, first_batch_layout(images, &plan, &cfg, end_epoch, unit_len)?)
        } else {
            (0..cores).map(|_| None).collect()
        };
        // Read the topology (sysfs) once, not once per worker.
        let fence = match placements.first() {
            Some(Place::Fenced(share)) if backend != IoBackend::Blocking => Some(
                CpuSet::online()
                    .map_err(|e| Error::Config(format!("cannot read the CPU topology: {e}")))?
                    .filter(|l| share.contains(&l.cpu)),
            ),
            _ => None,
        };
        for (id, place) in placements.into_iter().enumerate() {
            let (tx, rx) = flume::bounded(per_worker);
            receivers.push(rx);
            let spec = WorkerSpec {
                id,
                cores,
                dataset: dataset.clone(),
                shuffle: cfg.shuffle,
                seed: cfg.seed,
                ddp,
                batch: cfg.batch_size,
                unit_len,
                start_epoch: cfg.start_epoch,
                start_batch: cfg.start_batch,
                end_epoch,
                batches_per_epoch,
                io,
                backend,
                open_shards,
                max_reads: (open_shards / reads).max(1),
                align,
                max_merge: cfg.max_merge,
                max_gap: cfg.max_gap,
                io_budget: (io_mem as u64 * 3 / 4) / reads as u64,
                policy: cfg.on_error,
                tx,
                metrics: metrics.clone(),
                stop: stop.clone(),
                pool: pool.clone(),
                images: cfg.images,
                batch_memory: cfg.batch_memory,
                sample_transform: cfg.sample_transform.clone(),
                first_batch: first_batch[id].take(),
                placed: placed.clone(),
            };
            let started = if backend == IoBackend::Blocking {
                start_blocking(id, place, spec)
            } else {
                let placement = match (place, &fence) {
                    (Place::Fixed(cpu), _) => Placement::Fixed(cpu),
                    (Place::Fenced(_), Some(fence)) => Placement::Fenced(fence.clone()),
                    (Place::Fenced(_), None) => Placement::Unbound,
                };
                LocalExecutorBuilder::new(placement)
                    .name(&format!("ringfeed-{id}"))
                    .io_memory(io_mem)
                    // How often a decoding worker stops to reap completions
                    // and issue its next reads: glommio's default (100 ms)
                    // is a whole batch of decoding, so the next unit's reads
                    // would mostly wait for it. Safe only with the
                    // scheduler patch in vendor/glommio/PATCHED.md.
                    .preempt_timer(std::time::Duration::from_millis(5))
                    .spawn(move || worker::run(spec))
                    .map(WorkerThread::Uring)
                    .map_err(|e| e.to_string())
            };
            workers.push(started.map_err(|e| Error::Shutdown(format!("cannot start worker {id}: {e}")))?);
        }
        let state = LoaderState {
            seed: cfg.seed,
            epoch: cfg.start_epoch,
            next_batch: cfg.start_batch,
            batch_size: cfg.batch_size,
            rank: ddp.rank,
            world_size: ddp.world_size,
            drop_last: ddp.drop_last,
            shuffle: cfg.shuffle,
            records: n,
            images: cfg.images,
            version: LoaderState::VERSION,
        };
        Ok(Loader {
            remote: dataset.remote_store().cloned(),
            receivers,
            workers,
            units: Box::new(units(cfg.start_epoch, cfg.start_batch, end_epoch, batches_per_epoch, unit_len)),
            seq: 0,
            current: None,
            state,
            batches_per_epoch,
            metrics,
            stop,
            finished: false,
            io_mode: io,
            backend,
            started,
            first_batch: None,
            placed,
            classes: dataset.manifest().classes.clone(),
        })
    }

    /// Where a resumed loader would start: after the last batch delivered.
    pub fn state(&self) -> LoaderState {
        self.state
    }

    /// The dataset's class names: label `i` is `classes()[i]`. Empty when
    /// the labels are plain integers (see
    /// [`Manifest::classes`](crate::Manifest::classes)).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Batches per epoch for this rank.
    pub fn batches_per_epoch(&self) -> u64 {
        self.batches_per_epoch
    }

    /// The I/O mode in use (`Auto` resolved).
    pub fn io_mode(&self) -> IoMode {
        self.io_mode
    }

    /// What runs the workers and issues their reads (`Auto` resolved):
    /// [`IoBackend::Blocking`] where io_uring is unavailable.
    pub fn io_backend(&self) -> IoBackend {
        self.backend
    }

    /// Number of worker cores.
    pub fn cores(&self) -> usize {
        self.receivers.len()
    }

    /// The CPUs each worker thread may run on, as the thread itself read
    /// them from the kernel (`sched_getaffinity`) when it started; `None`
    /// for a worker that has not started yet. See
    /// [`LoaderBuilder::cores`] for how they are chosen.
    pub fn worker_cpus(&self) -> Vec<Option<Vec<usize>>> {
        self.placed.iter().map(|cpus| cpus.get().cloned()).collect()
    }

    /// Time from [`LoaderBuilder::build`] to the first batch delivered.
    pub fn time_to_first_batch(&self) -> Option<std::time::Duration> {
        self.first_batch
    }

    /// The loader's counters now.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Which worker sends the next batch; `None` when the run is over.
    ///
    /// Only looks: the batch counts as taken when it arrives
    /// ([`received`](Self::received)), so a receive that is abandoned (a
    /// cancelled [`next_async`](Self::next_async)) asks the same worker
    /// again next time and no batch is skipped or reordered.
    fn next_source(&mut self) -> Option<usize> {
        if self.finished {
            return None;
        }
        if self.current.is_none_or(|(_, left)| left == 0) {
            let Some(unit) = self.units.next() else {
                self.finished = true;
                return None;
            };
            self.current = Some((self.seq % self.receivers.len(), unit.count));
            self.seq += 1;
        }
        let queued: usize = self.receivers.iter().map(|r| r.len()).sum();
        self.metrics.queue_depth_max.fetch_max(queued as u64, Ordering::Relaxed);
        self.current.map(|(worker, _)| worker)
    }

    fn received(
        &mut self,
        worker: usize,
        waited: std::time::Duration,
        got: std::result::Result<Result<Batch>, flume::RecvError>,
    ) -> Result<Batch> {
        self.metrics.wait_ns.fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
        if let Some((_, left)) = &mut self.current {
            *left = left.saturating_sub(1);
        }
        let result = match got {
            Ok(r) => r,
            Err(flume::RecvError::Disconnected) => Err(Error::Shutdown(format!(
                "worker {worker} stopped before epoch {} batch {}",
                self.state.epoch, self.state.next_batch
            ))),
        };
        match &result {
            Ok(batch) if (batch.epoch, batch.index) != (self.state.epoch, self.state.next_batch) => {
                // Cannot happen while batches are taken in order; if it
                // ever did, the stream must stop rather than hand out a
                // batch other than the one `state()` promises.
                self.finished = true;
                return Err(Error::Shutdown(format!(
                    "worker {worker} sent epoch {} batch {} where epoch {} batch {} was due",
                    batch.epoch, batch.index, self.state.epoch, self.state.next_batch
                )));
            }
            Ok(_) => {
                self.state.advance(self.batches_per_epoch);
                self.metrics.batches.fetch_add(1, Ordering::Relaxed);
                self.first_batch.get_or_insert_with(|| self.started.elapsed());
            }
            Err(_) => self.finished = true,
        }
        result
    }

    /// The next batch, waiting without blocking the thread: usable from
    /// any async runtime (tokio included), no glommio needed.
    ///
    /// Cancellation-safe: dropping the future before it completes (in a
    /// `select!`, under a timeout) loses no batch and changes neither the
    /// order nor [`state`](Self::state); the next call returns the batch
    /// the dropped one would have.
    pub async fn next_async(&mut self) -> Option<Result<Batch>> {
        let worker = self.next_source()?;
        let began = Instant::now();
        // flume's receive future takes a message only when it completes.
        let got = self.receivers[worker].recv_async().await;
        Some(self.received(worker, began.elapsed(), got))
    }

    /// Shuts the loader down without blocking the caller's thread: the
    /// workers are stopped and joined on a thread of their own (what
    /// dropping the loader does in place, which blocks for as long as the
    /// workers take to finish their reads in flight, milliseconds to a
    /// decoded image's time). The future completes once every worker
    /// thread has exited and every descriptor is closed; dropping it
    /// early still shuts the loader down, in the background.
    pub fn close(self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (tx, rx) = flume::bounded::<()>(1);
        let spawned = std::thread::Builder::new().name("ringfeed-close".into()).spawn(move || {
            drop(self);
            let _ = tx.send(());
        });
        async move {
            if spawned.is_ok() {
                // Disconnected also means done: the thread ended.
                let _ = rx.recv_async().await;
            }
        }
    }

    /// The batches as an async [`Stream`](futures_lite::Stream) that
    /// still answers [`state`](LoaderStream::state),
    /// [`metrics`](LoaderStream::metrics) and the rest of the loader's
    /// queries (through [`loader`](LoaderStream::loader)), so an async
    /// service can checkpoint between items.
    pub fn into_stream(self) -> LoaderStream {
        LoaderStream::new(self)
    }

    /// Starts receiving the next batch as an owned future: `None` when
    /// the run is over. The batch counts as taken only once the future's
    /// output is handed to [`finish_receive`](Self::finish_receive).
    pub(crate) fn begin_receive(&mut self) -> Option<Receiving> {
        let worker = self.next_source()?;
        Some(Receiving {
            worker,
            began: Instant::now(),
            recv: self.receivers[worker].clone().into_recv_async(),
        })
    }

    /// Takes the batch a [`Receiving`] got, as [`next_async`] would.
    pub(crate) fn finish_receive(
        &mut self,
        receiving: &Receiving,
        got: std::result::Result<Result<Batch>, flume::RecvError>,
    ) -> Result<Batch> {
        self.received(receiving.worker, receiving.began.elapsed(), got)
    }
}

impl Iterator for Loader {
    type Item = Result<Batch>;

    /// The next batch, blocking until it is ready; `None` after the last
    /// epoch, or after an error was returned.
    fn next(&mut self) -> Option<Result<Batch>> {
        let worker = self.next_source()?;
        let began = Instant::now();
        let got = self.receivers[worker].recv();
        Some(self.received(worker, began.elapsed(), got))
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Closing the channels wakes workers blocked on a full one.
        self.receivers.clear();
        for w in self.workers.drain(..) {
            if let Err(e) = w.join() {
                log::warn!("a loader worker ended with an error: {e}");
            }
        }
    }
}

/// A receive in progress, owning its end of the channel so that it can live
/// beside the loader (in a [`LoaderStream`]). Dropping it takes nothing.
pub(crate) struct Receiving {
    worker: usize,
    began: Instant,
    pub(crate) recv: flume::r#async::RecvFut<'static, Result<Batch>>,
}

/// A running worker's thread.
enum WorkerThread {
    Uring(ExecutorJoinHandle<()>),
    Blocking(std::thread::JoinHandle<()>),
}

impl WorkerThread {
    fn join(self) -> std::result::Result<(), String> {
        match self {
            WorkerThread::Uring(h) => h.join().map_err(|e| e.to_string()),
            WorkerThread::Blocking(h) => h.join().map_err(|_| "the worker thread panicked".to_string()),
        }
    }
}

/// Starts a worker on a plain thread placed like a glommio executor would
/// be, driving the same worker future with blocking reads.
fn start_blocking(id: usize, place: Place, spec: WorkerSpec) -> std::result::Result<WorkerThread, String> {
    std::thread::Builder::new()
        .name(format!("ringfeed-{id}"))
        .spawn(move || {
            let cpus = match place {
                Place::Fixed(cpu) => vec![cpu],
                Place::Fenced(share) => share,
            };
            if let Err(e) = crate::sys::pin_thread(&cpus) {
                log::warn!("worker {id} cannot be placed on CPUs {cpus:?}: {e}; it runs unpinned");
            }
            futures_lite::future::block_on(worker::run(spec));
        })
        .map(WorkerThread::Blocking)
        .map_err(|e| e.to_string())
}

/// Where a worker runs: pinned to one CPU, or fenced to a set of them.
enum Place {
    Fixed(usize),
    Fenced(Vec<usize>),
}

/// Where each worker runs. Explicit CPUs are taken as given. Otherwise the
/// CPUs are this process's share of its affinity mask: the whole mask, or
/// under torchrun (`LOCAL_RANK` of `LOCAL_WORLD_SIZE` processes on this
/// node) the `LOCAL_RANK`-th of `LOCAL_WORLD_SIZE` contiguous parts, so
/// that the loaders of a node's processes get disjoint cores. One worker
/// per CPU of the share by default, each pinned to its CPU; more workers
/// than CPUs are fenced to the share instead of pinned.
fn placements(cpus: Option<&[usize]>, cores: Option<usize>) -> Result<Vec<Place>> {
    if let Some(cpus) = cpus {
        return Ok(cpus.iter().map(|&c| Place::Fixed(c)).collect());
    }
    let allowed = crate::sys::affinity::allowed_cpus()
        .map_err(|e| Error::Config(format!("cannot read this process's CPU affinity: {e}")))?;
    let local_world = crate::order::env_u64("LOCAL_WORLD_SIZE", 1)?;
    let local_rank = crate::order::env_u64("LOCAL_RANK", 0)?;
    if local_rank >= local_world.max(1) {
        return Err(Error::Config(format!(
            "LOCAL_RANK={local_rank} is not below LOCAL_WORLD_SIZE={local_world}"
        )));
    }
    let share = crate::sys::affinity::local_share(&allowed, local_rank as usize, local_world as usize);
    let cores = cores.unwrap_or(share.len());
    if cores <= share.len() {
        return Ok(share[..cores].iter().map(|&c| Place::Fixed(c)).collect());
    }
    Ok((0..cores).map(|_| Place::Fenced(share.clone())).collect())
}

/// `(samples, bytes per sample)` of the run's first batch, for allocating
/// it up front and splitting it between the workers; `None` with the `tch`
/// feature (the batch is a tensor its owner allocates) or an empty run.
fn first_batch_layout(
    images: &super::images::ImagePipeline,
    plan: &EpochPlan,
    cfg: &LoaderBuilder,
    end_epoch: u64,
    unit_len: u64,
) -> Result<Option<(usize, usize)>> {
    if cfg.batch_memory != super::images::BatchMemory::Pooled {
        return Ok(None);
    }
    let Some(first) = units(cfg.start_epoch, cfg.start_batch, end_epoch, plan.batches(), unit_len).next()
    else {
        return Ok(None);
    };
    // A batch's size depends only on its position in the epoch, not on the
    // epoch's order.
    let samples = plan.batch_indices(first.first).len();
    Ok(Some((samples, images.sample_bytes()?)))
}
