//! The CPU pool: a fixed number of plain OS threads that decode and
//! preprocess, so that tokio's worker threads never run blocking work (a
//! 4000×3000 JPEG takes tens of milliseconds). Not `spawn_blocking`: its
//! pool grows to 512 threads under load, and each thread here keeps a
//! [`Preprocessor`] (decoder handles, scratch) warm for its whole life.
//! Jobs go through one shared channel, so an idle thread takes the next
//! image; the channel never holds more than the rows of the in-flight
//! batches, which bounds it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::batch::RowWriter;
use crate::error::{Error, Result};
use crate::preprocess::Preprocessor;
use crate::spec::Spec;

/// One image to preprocess into one row.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) bytes: Bytes,
    pub(crate) writer: RowWriter,
    /// Set when the request's future is dropped: skip the work.
    pub(crate) cancelled: Arc<AtomicBool>,
    pub(crate) done: oneshot::Sender<RowResult>,
}

/// A row's fate: written (how long it took, on which thread), skipped
/// because its request left (`None`), or failed.
pub(crate) type RowResult = Result<Option<RowDone>>;

/// A row written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowDone {
    pub(crate) time: Duration,
    pub(crate) thread: ThreadId,
}

/// The threads and the channel that feeds them. Dropping it closes the
/// channel; the threads finish their current job and exit.
#[derive(Debug)]
pub(crate) struct Pool {
    tx: mpsc::Sender<Job>,
    ids: Vec<ThreadId>,
}

impl Pool {
    /// `threads` threads, each with its own preprocessor for `spec`.
    pub(crate) fn new(spec: Spec, threads: usize) -> Result<Pool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let (ready_tx, ready_rx) = mpsc::channel();
        for i in 0..threads {
            let (rx, ready) = (Arc::clone(&rx), ready_tx.clone());
            std::thread::Builder::new()
                .name(format!("ringfeed-serve-{i}"))
                .spawn(move || match Preprocessor::new(&spec) {
                    Ok(pre) => {
                        let _ = ready.send(Ok(std::thread::current().id()));
                        drop(ready);
                        work(pre, &rx);
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                })
                .map_err(|e| Error::Config(format!("cannot start pool thread: {e}")))?;
        }
        drop(ready_tx);
        let ids = ready_rx.iter().collect::<Result<Vec<_>>>()?;
        Ok(Pool { tx, ids })
    }

    /// Queues a job. If the pool is gone the job is dropped, and its
    /// `done` sender with it, which its batch reads as an internal error.
    pub(crate) fn run(&self, job: Job) {
        let _ = self.tx.send(job);
    }

    /// The pool threads' ids.
    pub(crate) fn thread_ids(&self) -> &[ThreadId] {
        &self.ids
    }
}

fn work(mut pre: Preprocessor, rx: &Mutex<mpsc::Receiver<Job>>) {
    let me = std::thread::current().id();
    loop {
        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let Job { bytes, mut writer, cancelled, done } = job;
        let result = if cancelled.load(Ordering::Acquire) {
            Ok(None)
        } else {
            let started = Instant::now();
            match catch_unwind(AssertUnwindSafe(|| pre.run(&bytes, writer.slot()))) {
                Ok(Ok(())) => Ok(Some(RowDone { time: started.elapsed(), thread: me })),
                Ok(Err(e)) => Err(e),
                Err(_) => {
                    // Its scratch state is suspect: start afresh.
                    if let Ok(fresh) = Preprocessor::new(pre.spec()) {
                        pre = fresh;
                    }
                    Err(Error::Internal("preprocessing panicked".into()))
                }
            }
        };
        // The row must be released before its batch hears it is done.
        drop(writer);
        drop(bytes);
        let _ = done.send(result);
    }
}
