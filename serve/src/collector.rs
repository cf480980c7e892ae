//! The collector task and the per-batch tasks: the tokio side of the
//! [`Batcher`](crate::Batcher). The collector forms one batch at a time
//! (a buffer first, then rows as requests arrive, until `max_batch` or
//! `max_delay`); each batch's own task awaits its rows, packs the good
//! ones to the front and calls the model, so batches overlap up to
//! `in_flight`. Neither does more than move handles: decoding runs on the
//! [pool](crate::pool).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::batch::{Batch, FreeList, RowBuffer, Storage, compact};
use crate::batcher::{BatcherConfig, BoxedModel, Entry, Response, Timings, Waiting};
use crate::error::{Error, ModelError, Result};
use crate::metrics::Metrics;
use crate::pool::{Job, Pool, RowResult};
use crate::spec::{Normalize, Spec};

/// What the collector and the batch tasks share.
pub(crate) struct Ctx<O> {
    pub(crate) arrivals: Arc<crate::batcher::Arrivals>,
    pub(crate) spec: Spec,
    pub(crate) config: BatcherConfig,
    pub(crate) pool: Arc<Pool>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) free: FreeList,
    pub(crate) model: BoxedModel<O>,
}

/// A request with a row.
struct Row<O> {
    reply: oneshot::Sender<Result<Response<O>>>,
    done: oneshot::Receiver<RowResult>,
    queued: Duration,
}

impl<O: Send + 'static> Ctx<O> {
    /// The request, unless it was withdrawn.
    fn take(&self, entry: &Entry<O>) -> Option<Waiting<O>> {
        self.arrivals.leave(entry.seq);
        let w = entry.waiting.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
        Some(w)
    }

    /// Gives the request the next row and sends it to the pool.
    fn assign(&self, buffer: &Arc<RowBuffer>, entry: &Entry<O>, w: Waiting<O>, rows: &mut Vec<Row<O>>) {
        let Waiting { bytes, reply, place, submitted } = w;
        drop(place);
        let queued = submitted.elapsed();
        self.metrics.queue.record(queued);
        let (done, rx) = oneshot::channel();
        let Some(writer) = buffer.writer() else {
            let _ = reply.send(Err(Error::Internal("batch buffer overfilled".into())));
            return;
        };
        self.pool.run(Job { bytes, writer, cancelled: Arc::clone(&entry.cancelled), done });
        rows.push(Row { reply, done: rx, queued });
    }

    /// A recycled buffer, or a new one.
    fn storage(&self) -> Result<Storage> {
        if let Some(s) = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(s);
        }
        let f32 = self.spec.normalize != Normalize::None;
        #[cfg(feature = "tch")]
        if self.config.tensor_storage {
            let mem = crate::batch::TensorMem::new(f32, self.config.max_batch, self.spec.row_shape())?;
            return Ok(Storage::Tensor(mem));
        }
        Ok(Storage::new(f32, self.spec.row_len() * self.config.max_batch))
    }
}

/// The collector's side of the queue: the channel, plus the requests
/// taken off it while no buffer was free. Draining it meanwhile is what
/// lets withdrawn requests leave the channel at once, so that they never
/// crowd out live ones; `pending` holds at most `2 × queue` requests.
struct Inbox<O> {
    rx: mpsc::Receiver<Arc<Entry<O>>>,
    pending: VecDeque<Arc<Entry<O>>>,
    closed: bool,
    cap: usize,
}

impl<O> Inbox<O> {
    /// The next request (maybe withdrawn since), or `None` once the
    /// batcher is dropped and nothing is left.
    async fn next(&mut self) -> Option<Arc<Entry<O>>> {
        if let Some(e) = self.pending.pop_front() {
            return Some(e);
        }
        if self.closed {
            return None;
        }
        let e = self.rx.recv().await;
        self.closed = e.is_none();
        e
    }

    /// Runs `wait`, meanwhile keeping the live requests that arrive and
    /// dropping the withdrawn ones.
    async fn hold_until<T>(&mut self, wait: impl Future<Output = T>) -> T {
        let mut wait = std::pin::pin!(wait);
        loop {
            tokio::select! {
                biased;
                t = &mut wait => return t,
                e = self.rx.recv(), if !self.closed => match e {
                    Some(e) if e.is_live() => {
                        self.pending.push_back(e);
                        if self.pending.len() >= self.cap {
                            self.pending.retain(|e| e.is_live());
                        }
                    }
                    Some(_) => {}
                    None => self.closed = true,
                },
            }
        }
    }
}

/// The collector: forms batches, one at a time, while earlier ones run.
pub(crate) async fn collect<O: Send + 'static>(rx: mpsc::Receiver<Arc<Entry<O>>>, ctx: Arc<Ctx<O>>) {
    let max_batch = ctx.config.max_batch;
    let mut inbox = Inbox { rx, pending: VecDeque::new(), closed: false, cap: 2 * ctx.config.queue };
    loop {
        // A buffer first: while every one is in flight, requests wait in
        // the bounded queue and the excess is refused.
        let Ok(permit) = inbox.hold_until(Arc::clone(&ctx.in_flight).acquire_owned()).await else { return };
        let (first, w) = loop {
            let Some(entry) = inbox.next().await else { return };
            if let Some(w) = ctx.take(&entry) {
                break (entry, w);
            }
        };
        let deadline = tokio::time::Instant::now() + ctx.config.max_delay;
        let storage = match ctx.storage() {
            Ok(s) => s,
            Err(e) => {
                // No memory for a batch: this request fails, the next tries again.
                ctx.metrics.failed(&e);
                let _ = w.reply.send(Err(e));
                continue;
            }
        };
        let buffer = RowBuffer::new(storage, ctx.spec.row_len(), max_batch);
        let mut rows = Vec::with_capacity(max_batch);
        ctx.assign(&buffer, &first, w, &mut rows);
        let mut closed = false;
        while rows.len() < max_batch {
            match tokio::time::timeout_at(deadline, inbox.next()).await {
                Ok(Some(entry)) => {
                    if let Some(w) = ctx.take(&entry) {
                        ctx.assign(&buffer, &entry, w, &mut rows);
                    }
                }
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        ctx.metrics.batches_in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(finish(Arc::clone(&ctx), buffer, rows, permit));
        if closed {
            return;
        }
    }
}

/// A model failure described by the batcher.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ModelFault(String);

/// Waits for a batch's rows, runs the model on the good ones, answers
/// every request.
async fn finish<O: Send + 'static>(
    ctx: Arc<Ctx<O>>,
    buffer: Arc<RowBuffer>,
    mut rows: Vec<Row<O>>,
    permit: OwnedSemaphorePermit,
) {
    let m = &ctx.metrics;
    let mut outcomes = Vec::with_capacity(rows.len());
    for row in &mut rows {
        let r = (&mut row.done).await;
        outcomes.push(r.unwrap_or_else(|_| Err(Error::Internal("a pool thread was lost".into()))));
    }
    let Ok(buffer) = Arc::try_unwrap(buffer) else {
        // Unreachable: every job drops its row writer before answering.
        for row in rows {
            let e = Error::Internal("batch buffer still shared".into());
            m.failed(&e);
            let _ = row.reply.send(Err(e));
        }
        m.batches_in_flight.fetch_sub(1, Ordering::Relaxed);
        return;
    };
    let mut storage = buffer.into_storage();
    let (mut keep, mut good) = (Vec::new(), Vec::new());
    for (i, (row, outcome)) in rows.into_iter().zip(outcomes).enumerate() {
        match outcome {
            _ if row.reply.is_closed() => {
                m.cancelled.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(done)) => {
                m.decode.record(done.time);
                keep.push(i);
                good.push((row, done));
            }
            Ok(None) => {
                m.cancelled.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                m.failed(&e);
                let _ = row.reply.send(Err(e));
            }
        }
    }
    if good.is_empty() {
        ctx.free.lock().unwrap_or_else(|e| e.into_inner()).push(storage);
        m.batches_in_flight.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    compact(&mut storage, &keep, ctx.spec.row_len());
    let n = good.len();
    m.batch(n);
    let batch = Batch::new(storage, n, ctx.spec.row_shape(), ctx.spec.layout, Arc::clone(&ctx.free), permit);
    let started = Instant::now();
    // Its own task, so that a panicking model fails this batch only.
    let result = tokio::spawn((ctx.model)(batch)).await;
    let model = started.elapsed();
    m.model.record(model);
    m.batches_in_flight.fetch_sub(1, Ordering::Relaxed);
    let error: ModelError = match result {
        Ok(Ok(outputs)) if outputs.len() == n => {
            for ((row, done), output) in good.into_iter().zip(outputs) {
                let timings = Timings {
                    queue: row.queued,
                    decode: done.time,
                    model,
                    batch_size: n,
                    decoded_on: done.thread,
                };
                // Counted before the answer, so a caller that has it sees it
                // counted; taken back if the caller has left.
                m.completed.fetch_add(1, Ordering::Relaxed);
                if row.reply.send(Ok(Response { output, timings })).is_err() {
                    m.completed.fetch_sub(1, Ordering::Relaxed);
                    m.cancelled.fetch_add(1, Ordering::Relaxed);
                }
            }
            return;
        }
        Ok(Ok(outputs)) => Arc::new(ModelFault(format!("returned {} outputs for {n} rows", outputs.len()))),
        Ok(Err(e)) => e,
        Err(e) if e.is_panic() => Arc::new(ModelFault("the model function panicked".into())),
        Err(_) => Arc::new(ModelFault("the model task was cancelled".into())),
    };
    for (row, _) in good {
        let e = Error::Model(Arc::clone(&error));
        m.failed(&e);
        let _ = row.reply.send(Err(e));
    }
}
