//! [`Batcher`]: dynamic batching of requests on a tokio runtime.
//!
//! Requests pass through three owners. `submit` admits one at once or
//! refuses it ([`Error::Overloaded`], [`Error::TooLarge`]) and parks it in
//! a bounded queue; one collector task takes requests in arrival order
//! into the open batch, each given the next row of the batch buffer and
//! sent to the CPU pool at once, so decoding overlaps the wait for more
//! requests; the batch closes at `max_batch` rows or `max_delay` after its
//! first, and a task per batch awaits its rows, packs the good ones to the
//! front and calls the model function once. Only the collector and the
//! per-batch tasks run on tokio, and neither does more than move handles.
//!
//! A request that leaves (its future dropped) marks itself cancelled: in
//! the queue it frees its place and its bytes at once; on the pool its
//! decode is skipped; in a batch its row is dropped before the model runs.
//! Memory is bounded by configuration: `queue × max_request_bytes` of
//! request bodies plus `in_flight × max_batch` rows of batch memory.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::batch::{Batch, FreeList};
use crate::collector::{Ctx, collect};
use crate::error::{Error, ModelError, Result};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::pool::Pool;
use crate::spec::Spec;

/// What a request gets back: its own row's model output and where its
/// time went.
#[derive(Debug)]
#[non_exhaustive]
pub struct Response<O> {
    /// The model's output for this request's row.
    pub output: O,
    /// Per-stage timings.
    pub timings: Timings,
}

/// Where one request's time went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timings {
    /// From `submit` to being given a row of a batch.
    pub queue: Duration,
    /// Decoding and preprocessing on the pool.
    pub decode: Duration,
    /// The model call of its batch.
    pub model: Duration,
    /// Rows in its batch.
    pub batch_size: usize,
    /// The pool thread that decoded it (for diagnostics and tests).
    pub decoded_on: ThreadId,
}

/// The settings of a [`Batcher`]; see [`BatcherBuilder`] for each.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatcherConfig {
    /// Rows per batch at most.
    pub max_batch: usize,
    /// How long a batch stays open after its first request.
    pub max_delay: Duration,
    /// Requests waiting for a batch at most.
    pub queue: usize,
    /// Batches being decoded or in the model at once, at most.
    pub in_flight: usize,
    /// CPU pool threads.
    pub threads: usize,
    /// Largest request body accepted.
    pub max_request_bytes: usize,
    /// Refuse new requests while the oldest waiting one has waited longer.
    pub max_queue_wait: Option<Duration>,
    /// Batch buffers are libtorch tensors ([`Batch::tensor`] without a copy).
    #[cfg(feature = "tch")]
    pub tensor_storage: bool,
}

pub(crate) type BoxedModel<O> =
    Arc<dyn Fn(Batch) -> Pin<Box<dyn Future<Output = Result<Vec<O>, ModelError>> + Send>> + Send + Sync>;

/// Consuming builder of a [`Batcher`].
#[derive(Debug, Clone)]
#[must_use]
pub struct BatcherBuilder {
    spec: Spec,
    config: BatcherConfig,
}

impl BatcherBuilder {
    /// Rows per batch at most, `1..=65536`. Default: 32.
    pub fn max_batch(mut self, n: usize) -> Self {
        self.config.max_batch = n;
        self
    }

    /// How long a batch waits for more requests after its first arrived
    /// (it closes earlier when full). Default: 5 ms.
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.config.max_delay = d;
        self
    }

    /// Requests admitted but not yet in a batch, at most; `submit` fails
    /// with [`Error::Overloaded`] beyond. Default: 4 × `max_batch`.
    pub fn queue(mut self, n: usize) -> Self {
        self.config.queue = n;
        self
    }

    /// Batches in flight (decoding or in the model) at most, each holding
    /// one buffer of `max_batch` rows: with 2, one batch fills while the
    /// model runs the other. The buffers are allocated (and made resident)
    /// by `build()`, so a server's memory is at its bound from the start.
    /// Default: 2.
    pub fn in_flight(mut self, n: usize) -> Self {
        self.config.in_flight = n;
        self
    }

    /// CPU pool threads for decoding and preprocessing. Default: the
    /// available parallelism.
    pub fn threads(mut self, n: usize) -> Self {
        self.config.threads = n;
        self
    }

    /// Largest request body accepted; larger ones fail with
    /// [`Error::TooLarge`] before being queued. Default: 16 MiB.
    pub fn max_request_bytes(mut self, n: usize) -> Self {
        self.config.max_request_bytes = n;
        self
    }

    /// Latency-targeted admission: while the oldest request still waiting
    /// for a batch has waited longer than `d`, `submit` refuses new ones at
    /// once with [`Error::Overloaded`] (its queue is then long enough to
    /// keep the model busy, and one more request would only wait longer).
    /// Under overload the queue settles where the wait is about `d`,
    /// instead of filling [`queue`](Self::queue) places that each add to
    /// every later request's latency. Default: `None` (only the place
    /// count limits the queue).
    pub fn max_queue_wait(mut self, d: Duration) -> Self {
        self.config.max_queue_wait = Some(d);
        self
    }

    /// Whether batch buffers are libtorch tensors, which the pool decodes
    /// straight into and [`Batch::tensor`] returns without a copy (a view
    /// of the filled rows); otherwise they are plain Rust memory and
    /// `Batch::tensor` copies. Plain buffers are recycled; a tensor is
    /// never reused once a batch has handed it to the model (the model may
    /// keep it), so each batch gets a fresh zero-filled tensor (an
    /// allocation and a memset per batch, a few percent of decoding it).
    /// Default: false.
    #[cfg(feature = "tch")]
    pub fn tensor_storage(mut self, on: bool) -> Self {
        self.config.tensor_storage = on;
        self
    }

    /// Starts the batcher on the current tokio runtime (its collector is a
    /// task; decoding runs on its own threads), calling `model` once per
    /// batch. `model` must return one output per row of the [`Batch`], in
    /// order; an error fails every request of that batch.
    ///
    /// Fails with [`Error::Config`] for a value out of range, outside a
    /// tokio runtime, or when the pool cannot start.
    pub fn build<O, F, Fut, E>(self, model: F) -> Result<Batcher<O>>
    where
        O: Send + 'static,
        F: Fn(Batch) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Vec<O>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        let c = &self.config;
        if !(1..=65536).contains(&c.max_batch) {
            return Err(Error::Config(format!("max_batch {} must be in 1..=65536", c.max_batch)));
        }
        for (name, v) in [("queue", c.queue), ("in_flight", c.in_flight), ("threads", c.threads)] {
            if v == 0 || v > 1 << 20 {
                return Err(Error::Config(format!("{name} {v} must be in 1..={}", 1 << 20)));
            }
        }
        if c.max_request_bytes == 0 {
            return Err(Error::Config("max_request_bytes must be positive".into()));
        }
        if c.max_batch.checked_mul(self.spec.row_bytes()).is_none_or(|b| b > isize::MAX as usize / 2) {
            return Err(Error::Config(format!("a batch of {} rows does not fit in memory", c.max_batch)));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Config("a Batcher must be built inside a tokio runtime".into()))?;
        let pool = Arc::new(Pool::new(self.spec, c.threads)?);
        let model: BoxedModel<O> = Arc::new(move |batch| {
            let fut = model(batch);
            Box::pin(async move { fut.await.map_err(|e| ModelError::from(e.into())) })
        });
        let metrics = Arc::new(Metrics::new(c.max_batch));
        let free = FreeList::default();
        let f32 = self.spec.normalize != crate::spec::Normalize::None;
        // Tensors: one now, so that a libtorch that cannot allocate fails
        // `build`, not the first request (the rest are made per batch).
        // Plain buffers: all `in_flight` of them now, resident, so memory
        // is at its configured bound from the start and stays flat.
        #[cfg(feature = "tch")]
        let tensors = c.tensor_storage;
        #[cfg(not(feature = "tch"))]
        let tensors = false;
        #[cfg(feature = "tch")]
        if tensors {
            let mem = crate::batch::TensorMem::new(f32, c.max_batch, self.spec.row_shape())?;
            free.lock().unwrap_or_else(|e| e.into_inner()).push(crate::batch::Storage::Tensor(mem));
        }
        if !tensors {
            let mut list = free.lock().unwrap_or_else(|e| e.into_inner());
            for _ in 0..c.in_flight {
                list.push(crate::batch::Storage::resident(f32, c.max_batch * self.spec.row_len()));
            }
        }
        let (tx, rx) = mpsc::channel(c.queue.saturating_mul(2));
        let arrivals = Arc::new(Arrivals::new(c.queue.saturating_mul(4)));
        let ctx = Arc::new(Ctx {
            arrivals: Arc::clone(&arrivals),
            spec: self.spec,
            config: self.config.clone(),
            pool: Arc::clone(&pool),
            metrics: Arc::clone(&metrics),
            in_flight: Arc::new(Semaphore::new(c.in_flight)),
            free,
            model,
        });
        runtime.spawn(collect(rx, ctx));
        Ok(Batcher {
            tx,
            arrivals: Arc::clone(&arrivals),
            places: Arc::new(Semaphore::new(self.config.queue)),
            metrics,
            pool,
            spec: self.spec,
            config: self.config,
        })
    }
}

/// Collects requests into batches, preprocesses each on a CPU pool
/// straight into its row, and runs a model function once per batch.
/// `Send + Sync`: share it (e.g. in an `Arc`) between request handlers.
/// Dropping it stops admitting; batches already formed still finish.
///
/// ```
/// # fn main() -> ringfeed_serve::Result<()> {
/// # let rt = tokio::runtime::Builder::new_multi_thread().enable_time().build().unwrap();
/// # rt.block_on(async {
/// use ringfeed_serve::{Batch, Batcher, Spec};
/// let spec = Spec::builder().square(32).raw_u8().build()?;
/// let batcher = Batcher::builder(spec).max_batch(8).build(|batch: Batch| async move {
///     Ok::<_, std::io::Error>(vec![batch.shape()[0]; batch.len()]) // a dummy model
/// })?;
/// let err = batcher.submit(&b"not an image"[..]).await.unwrap_err();
/// assert_eq!(err.http_status(), 400);
/// # Ok(())
/// # })
/// # }
/// ```
#[derive(Debug)]
pub struct Batcher<O> {
    arrivals: Arc<Arrivals>,
    tx: mpsc::Sender<Arc<Entry<O>>>,
    /// One permit per queue place.
    places: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    pool: Arc<Pool>,
    spec: Spec,
    config: BatcherConfig,
}

impl Batcher<()> {
    /// A builder for batchers that preprocess requests according to `spec`.
    pub fn builder(spec: Spec) -> BatcherBuilder {
        let max_batch = 32;
        BatcherBuilder {
            spec,
            config: BatcherConfig {
                max_batch,
                max_delay: Duration::from_millis(5),
                queue: 4 * max_batch,
                in_flight: 2,
                threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
                max_request_bytes: 16 << 20,
                max_queue_wait: None,
                #[cfg(feature = "tch")]
                tensor_storage: false,
            },
        }
    }
}

impl<O: Send + 'static> Batcher<O> {
    /// Admits `image` (JPEG or PNG bytes) now, or refuses it now: the
    /// returned future is then already resolved to [`Error::Overloaded`]
    /// (queue full), [`Error::TooLarge`] or [`Error::Shutdown`]. Otherwise
    /// it resolves to this request's row of its batch's model output, or to
    /// the error that befell this request alone (a bad image:
    /// [`Fault::Client`](crate::Fault::Client)) or its batch (the model
    /// failed). Dropping the future at any point withdraws the request.
    pub fn submit(
        &self,
        image: impl Into<Bytes>,
    ) -> impl Future<Output = Result<Response<O>>> + Send + 'static {
        let admitted = self.admit(image.into());
        async move {
            let (reply, guard) = admitted?;
            let result = reply.await;
            drop(guard);
            result.unwrap_or(Err(Error::Shutdown))
        }
    }

    fn admit(&self, bytes: Bytes) -> Result<Admitted<O>> {
        let m = &self.metrics;
        let max = self.config.max_request_bytes;
        if bytes.len() > max {
            let e = Error::TooLarge { len: bytes.len(), max };
            m.failed(&e);
            return Err(e);
        }
        let overloaded = || {
            m.rejected.fetch_add(1, Ordering::Relaxed);
            Error::Overloaded { queued: self.config.queue }
        };
        // Only while someone waits: an estimate can err long (withdrawn
        // requests ahead), and must never shut the door on an empty queue.
        if let Some(limit) = self.config.max_queue_wait
            && m.queue_depth.load(Ordering::Relaxed) > 0
            && self.arrivals.oldest_wait() > limit
        {
            return Err(overloaded());
        }
        let place = Arc::clone(&self.places).try_acquire_owned().map_err(|_| overloaded())?;
        let (reply, rx) = oneshot::channel();
        let entry = Arc::new(Entry {
            seq: self.arrivals.arrive(),
            waiting: Mutex::new(Some(Waiting { bytes, reply, place, submitted: Instant::now() })),
            cancelled: Arc::new(AtomicBool::new(false)),
        });
        m.queue_depth.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.tx.try_send(Arc::clone(&entry)) {
            m.queue_depth.fetch_sub(1, Ordering::Relaxed);
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => overloaded(),
                mpsc::error::TrySendError::Closed(_) => Error::Shutdown,
            });
        }
        m.submitted.fetch_add(1, Ordering::Relaxed);
        Ok((rx, CancelGuard { entry, metrics: Arc::clone(&self.metrics) }))
    }

    /// The counters now.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// The preprocessing spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The settings.
    pub fn config(&self) -> &BatcherConfig {
        &self.config
    }

    /// The most memory requests and batches can hold, in bytes: `queue ×
    /// max_request_bytes` of queued bodies plus `in_flight × max_batch`
    /// rows of batch buffers (besides each pool thread's decoder scratch,
    /// bounded by the spec's [`Limits`](crate::Limits)).
    pub fn memory_bound(&self) -> usize {
        let c = &self.config;
        c.queue.saturating_mul(c.max_request_bytes)
            + c.in_flight.saturating_mul(c.max_batch).saturating_mul(self.spec.row_bytes())
    }

    /// The ids of the CPU pool's threads (named `ringfeed-serve-N`).
    pub fn pool_thread_ids(&self) -> &[ThreadId] {
        self.pool.thread_ids()
    }
}

/// An admitted request: where its answer comes, and what withdraws it.
type Admitted<O> = (oneshot::Receiver<Result<Response<O>>>, CancelGuard<O>);

/// A queued request, shared by its future (which may withdraw it) and
/// the collector (which may take it).
#[derive(Debug)]
pub(crate) struct Entry<O> {
    /// Arrival number ([`Arrivals`]).
    pub(crate) seq: u64,
    pub(crate) waiting: Mutex<Option<Waiting<O>>>,
    pub(crate) cancelled: Arc<AtomicBool>,
}

/// Arrival times of admitted requests, by arrival number, and how far
/// batches have got: enough to tell how long the oldest request still
/// waiting has waited, without locking the queue. Requests get rows in
/// arrival order; one withdrawn meanwhile only makes the estimate err on
/// the long side until a later request gets a row.
#[derive(Debug)]
pub(crate) struct Arrivals {
    start: Instant,
    /// Arrival `n`'s time (µs after `start`) at `n % len`.
    times: Box<[AtomicU64]>,
    next: AtomicU64,
    /// Arrivals before this one have their rows (or were withdrawn).
    head: AtomicU64,
}

impl Arrivals {
    pub(crate) fn new(len: usize) -> Arrivals {
        Arrivals {
            start: Instant::now(),
            times: (0..len.max(1)).map(|_| AtomicU64::new(0)).collect(),
            next: AtomicU64::new(0),
            head: AtomicU64::new(0),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Records an arrival; its number.
    pub(crate) fn arrive(&self) -> u64 {
        let n = self.next.fetch_add(1, Ordering::AcqRel);
        self.times[(n % self.times.len() as u64) as usize].store(self.now_us(), Ordering::Release);
        n
    }

    /// Arrival `seq` got its row (or left).
    pub(crate) fn leave(&self, seq: u64) {
        self.head.fetch_max(seq + 1, Ordering::AcqRel);
    }

    /// How long the oldest request still waiting has waited (zero when
    /// none waits).
    pub(crate) fn oldest_wait(&self) -> Duration {
        let (head, next) = (self.head.load(Ordering::Acquire), self.next.load(Ordering::Acquire));
        if head >= next {
            return Duration::ZERO;
        }
        if next - head > self.times.len() as u64 {
            // More waiting than the ring remembers: many withdrawn
            // requests ahead; their slots were reused, so use the newest
            // of the remembered ones (a lower bound).
            let newest = self.times[((next - 1) % self.times.len() as u64) as usize].load(Ordering::Acquire);
            return Duration::from_micros(self.now_us().saturating_sub(newest));
        }
        let at = self.times[(head % self.times.len() as u64) as usize].load(Ordering::Acquire);
        Duration::from_micros(self.now_us().saturating_sub(at))
    }
}

impl<O> Entry<O> {
    /// Not withdrawn and not yet taken into a batch.
    pub(crate) fn is_live(&self) -> bool {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

#[derive(Debug)]
pub(crate) struct Waiting<O> {
    pub(crate) bytes: Bytes,
    pub(crate) reply: oneshot::Sender<Result<Response<O>>>,
    /// The queue place, given back when the request leaves the queue.
    pub(crate) place: OwnedSemaphorePermit,
    pub(crate) submitted: Instant,
}

/// Withdraws its request when the submit future is dropped.
#[derive(Debug)]
struct CancelGuard<O> {
    entry: Arc<Entry<O>>,
    metrics: Arc<Metrics>,
}

impl<O> Drop for CancelGuard<O> {
    fn drop(&mut self) {
        self.entry.cancelled.store(true, Ordering::Release);
        let withdrawn = self.entry.waiting.lock().unwrap_or_else(|e| e.into_inner()).take();
        if withdrawn.is_some() {
            self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            self.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}
