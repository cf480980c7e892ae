//! The seam to datasets that are not on a local file system: a
//! [`RemoteStore`] reads byte ranges of named objects, and
//! [`Dataset::open_remote`](crate::Dataset::open_remote) opens a pack
//! dataset through one. The S3 implementation lives in `ringfeed-object`,
//! so that this crate (and whoever reads only local packs) compiles no
//! HTTP client and no async runtime.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

/// A read in flight: it started when [`RemoteStore::read`] returned, so
/// that many can be in flight from one thread, and resolves to exactly the
/// bytes asked for (fewer is an error of the store's).
pub type RemoteRead = Pin<Box<dyn Future<Output = io::Result<RemoteBuf>> + Send>>;

/// Most buffers a thread keeps for reuse, and the largest kept.
const POOL_BUFFERS: usize = 16;
const POOL_MAX_BYTES: usize = 64 << 20;

thread_local! {
    static POOL: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The bytes of a remote read. Its memory goes back to a small pool of
/// the thread that drops it and is reused by the next read made there:
/// a fresh megabyte per read costs more in page faults than the read
/// itself (measured: a third of a warm-cache epoch).
#[derive(Debug, Default)]
pub struct RemoteBuf {
    data: Vec<u8>,
}

impl RemoteBuf {
    /// A buffer of `len` bytes for a read to fill, from this thread's pool
    /// when it has one large enough. Its bytes are unspecified (zeros, or
    /// an earlier read's): whoever returns it must have written all of it.
    pub fn for_read(len: usize) -> Self {
        let reused = POOL.with(|p| {
            let mut p = p.borrow_mut();
            let at = p.iter().position(|v| v.capacity() >= len)?;
            Some(p.swap_remove(at))
        });
        let mut data = reused.unwrap_or_default();
        // Shrinking keeps the old bytes (overwritten by the read); growing
        // zeroes only the new part.
        data.resize(len, 0);
        RemoteBuf { data }
    }

    /// The bytes as a mutable slice, for the read to fill.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

impl From<Vec<u8>> for RemoteBuf {
    fn from(data: Vec<u8>) -> Self {
        RemoteBuf { data }
    }
}

impl std::ops::Deref for RemoteBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for RemoteBuf {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        if data.capacity() == 0 || data.capacity() > POOL_MAX_BYTES {
            return;
        }
        // `try_with`: a thread being torn down drops its buffers.
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_BUFFERS {
                p.push(data);
            }
        });
    }
}

/// Objects a dataset lives in, addressed by the names its manifest uses
/// (`manifest.json`, `shard-00000.rfp`, ...).
///
/// Implementations retry transient failures themselves; an error returned
/// here is final for that read (the loader then applies its error policy
/// to the records the read served).
pub trait RemoteStore: Send + Sync + fmt::Debug {
    /// Where the dataset lives, for messages (`s3://bucket/prefix`).
    fn location(&self) -> &str;

    /// All of object `name` (the manifest), at most `limit` bytes: a
    /// larger object is an error.
    fn read_all(&self, name: &str, limit: u64) -> io::Result<Vec<u8>>;

    /// Starts reading `len` bytes at `offset` of object `name`.
    fn read(&self, name: &str, offset: u64, len: usize) -> RemoteRead;

    /// [`read`](Self::read) for a caller that checks every byte it gets
    /// itself (each record's CRC32C) and, on a mismatch, calls
    /// [`invalidate`](Self::invalidate) and reads again with `read`: the
    /// store may then skip its own checks of bytes it keeps locally, so
    /// that they are checked once, not twice. Default: `read`.
    fn read_checked_by_caller(&self, name: &str, offset: u64, len: usize) -> RemoteRead {
        self.read(name, offset, len)
    }

    /// Forgets any local copy of these bytes (the caller found them
    /// damaged): the next read fetches them from the store. Default:
    /// nothing (a store without a local copy).
    fn invalidate(&self, name: &str, offset: u64, len: usize) {
        let _ = (name, offset, len);
    }

    /// What the store has done so far.
    fn counters(&self) -> RemoteCounters;
}

/// Requests and bytes of a [`RemoteStore`] since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RemoteCounters {
    /// Requests sent to the store (ranged GETs and HEADs), retries
    /// included.
    pub requests: u64,
    /// Requests that were retries of a failed one.
    pub retries: u64,
    /// Bytes received from the store.
    pub bytes: u64,
    /// Reads served from the local cache without a request.
    pub cache_hits: u64,
    /// Reads that needed at least one request.
    pub cache_misses: u64,
    /// Cached chunks found damaged (checksum, length) and fetched again.
    pub cache_damaged: u64,
}

impl fmt::Display for RemoteCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests ({} retries), {:.1} MB received, cache {} hits / {} misses / {} damaged",
            self.requests,
            self.retries,
            self.bytes as f64 / 1e6,
            self.cache_hits,
            self.cache_misses,
            self.cache_damaged
        )
    }
}

/// Waits for `future` on the calling thread (the remote reads of the
/// synchronous reader: the store's own runtime does the work, this thread
/// only sleeps until it is done).
pub(crate) fn wait<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            // A wake-up before the park makes the park return at once.
            Poll::Pending => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_by_the_thread_that_dropped_them() {
        let mut a = RemoteBuf::for_read(1 << 20);
        a.as_mut_slice().fill(7);
        let ptr = a.as_ptr();
        drop(a);
        let b = RemoteBuf::for_read(1000);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 1000));
        // Another size that fits reuses it too; a larger one does not.
        drop(b);
        let c = RemoteBuf::for_read(2 << 20);
        assert_eq!(c.len(), 2 << 20);
        assert_ne!(c.as_ptr(), ptr);
    }

    #[test]
    fn wait_returns_what_another_thread_completes() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let done = Arc::new(std::sync::Mutex::new(None::<Waker>));
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (d, r) = (done.clone(), ready.clone());
        let helper = std::thread::spawn(move || {
            rx.recv().unwrap();
            r.store(true, std::sync::atomic::Ordering::SeqCst);
            if let Some(w) = d.lock().unwrap().take() {
                w.wake();
            }
        });
        let mut tx = Some(tx);
        let got = wait(std::future::poll_fn(|cx| {
            if ready.load(std::sync::atomic::Ordering::SeqCst) {
                return Poll::Ready(7);
            }
            *done.lock().unwrap() = Some(cx.waker().clone());
            if let Some(tx) = tx.take() {
                tx.send(()).unwrap();
            }
            Poll::Pending
        }));
        assert_eq!(got, 7);
        helper.join().unwrap();
    }
}
