//! The connection to the store: an `object_store` S3 client on a small
//! runtime of its own, ranged GETs with this crate's retry loop (5xx,
//! timeouts, cut connections and truncated bodies are retried with
//! backoff; 4xx are final), and the counters the benchmarks report.
//!
//! `object_store` is the one place that knows S3 (signing, XML, multipart
//! calls): swapping it for another client touches this file and
//! `upload.rs` only.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, RetryConfig};
use ringfeed_pack::RemoteCounters;

use crate::error::{Error, Result};
use crate::options::ObjectOptions;
use crate::url::ObjectUrl;

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A store connection. It runs on a [`Runtime`] of its own, owned apart
/// from it: tasks hold the client, only the store's users hold the
/// runtime, so the runtime never ends inside one of its own tasks.
pub(crate) struct Client {
    handle: tokio::runtime::Handle,
    /// For reads: no retries of its own (this file's loop counts and
    /// bounds them).
    reads: Arc<dyn ObjectStore>,
    /// For uploads: `object_store`'s own retries (multipart calls are
    /// not this crate's to replay).
    pub(crate) writes: Arc<dyn ObjectStore>,
    pub(crate) url: ObjectUrl,
    pub(crate) opts: ObjectOptions,
    limit: Arc<tokio::sync::Semaphore>,
    pub(crate) counters: Counters,
    /// Cache writes still running on the blocking pool.
    pub(crate) writing: Arc<Writing>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("url", &self.url.display()).finish_non_exhaustive()
    }
}

/// The client's runtime: two threads that wait on sockets. Dropping it
/// waits for cache writes in progress (so that a store dropped after its
/// last read leaves every chunk it fetched cached), then stops the
/// runtime without waiting for anything else (also allowed inside another
/// runtime, where waiting would panic).
#[derive(Debug)]
pub(crate) struct Runtime {
    rt: Option<tokio::runtime::Runtime>,
    writing: Arc<Writing>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.writing.wait_idle(Duration::from_secs(30));
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A count of writes in progress, and a way to wait for none.
#[derive(Debug, Default)]
pub(crate) struct Writing {
    count: std::sync::Mutex<usize>,
    idle: std::sync::Condvar,
}

impl Writing {
    /// Counts a write until the guard drops.
    pub(crate) fn start(self: &Arc<Self>) -> WriteGuard {
        *self.count.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        WriteGuard(self.clone())
    }

    fn wait_idle(&self, limit: Duration) {
        let count = self.count.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = self.idle.wait_timeout_while(count, limit, |n| *n > 0);
    }
}

/// One write in progress.
pub(crate) struct WriteGuard(Arc<Writing>);

impl Drop for WriteGuard {
    fn drop(&mut self) {
        let mut n = self.0.count.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *n -= 1;
        if *n == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// What the client did, shared with the cache.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) cache_misses: AtomicU64,
    pub(crate) cache_damaged: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> RemoteCounters {
        let mut c = RemoteCounters::default();
        c.requests = self.requests.load(Ordering::Relaxed);
        c.retries = self.retries.load(Ordering::Relaxed);
        c.bytes = self.bytes.load(Ordering::Relaxed);
        c.cache_hits = self.cache_hits.load(Ordering::Relaxed);
        c.cache_misses = self.cache_misses.load(Ordering::Relaxed);
        c.cache_damaged = self.cache_damaged.load(Ordering::Relaxed);
        c
    }
}

pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Client {
    pub(crate) fn new(url: &str, opts: &ObjectOptions) -> Result<(Self, Runtime)> {
        let url = ObjectUrl::parse(url)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ringfeed-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::io("start the object store runtime", "", e))?;
        let build = |retry: RetryConfig| -> Result<Arc<dyn ObjectStore>> {
            let mut client =
                ClientOptions::new().with_timeout(opts.timeout).with_connect_timeout(opts.timeout);
            let mut b = AmazonS3Builder::from_env().with_bucket_name(&url.bucket).with_retry(retry);
            if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
                b = b.with_region("us-east-1");
            }
            if let Some((key, secret)) = &opts.credentials {
                b = b.with_access_key_id(key).with_secret_access_key(secret);
            }
            if let Some(e) = &opts.endpoint {
                b = b.with_endpoint(e);
                if e.starts_with("http://") {
                    client = client.with_allow_http(true);
                }
            }
            let store = b
                .with_client_options(client)
                .build()
                .map_err(|e| Error::Config(format!("{}: {e}", url.display())))?;
            Ok(Arc::new(store))
        };
        let backoff =
            object_store::BackoffConfig { init_backoff: opts.backoff, max_backoff: MAX_BACKOFF, base: 2.0 };
        let reads =
            build(RetryConfig { backoff: backoff.clone(), max_retries: 0, retry_timeout: opts.timeout })?;
        let writes = build(RetryConfig {
            backoff,
            max_retries: opts.retries as usize,
            retry_timeout: opts.timeout * (opts.retries + 1),
        })?;
        let writing = Arc::new(Writing::default());
        let client = Client {
            handle: runtime.handle().clone(),
            reads,
            writes,
            limit: Arc::new(tokio::sync::Semaphore::new(opts.max_in_flight)),
            url,
            opts: opts.clone(),
            counters: Counters::default(),
            writing: writing.clone(),
        };
        Ok((client, Runtime { rt: Some(runtime), writing }))
    }

    /// The runtime's handle: tasks spawned after the runtime stopped are
    /// dropped, which their waiters see as a closed channel.
    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Runs `f` on the client's runtime and waits for it (for callers
    /// outside any runtime: the CLI, dataset opening, uploads).
    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.handle().block_on(f)
    }

    /// The URL of object `name`, for messages.
    pub(crate) fn describe(&self, name: &str) -> String {
        format!("{}/{name}", self.url.display())
    }

    pub(crate) fn path(&self, name: &str) -> ObjectPath {
        ObjectPath::from(self.url.key(name))
    }

    /// Bytes `range` of object `name` (all of it for `None`, refused past
    /// `limit` bytes), retried until the budget is spent.
    pub(crate) async fn get(&self, name: &str, range: Option<Range<u64>>, limit: u64) -> io::Result<Bytes> {
        let path = self.path(name);
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let outcome = {
                let _permit =
                    self.limit.acquire().await.map_err(|_| io::Error::other("the store is closed"))?;
                bump(&self.counters.requests, 1);
                if attempt > 0 {
                    bump(&self.counters.retries, 1);
                }
                let get = async {
                    let opts = GetOptions { range: range.clone().map(GetRange::from), ..Default::default() };
                    self.reads.get_opts(&path, opts).await?.bytes().await
                };
                tokio::time::timeout(self.opts.timeout, get).await
            };
            let why = match outcome {
                Ok(Ok(body)) => {
                    bump(&self.counters.bytes, body.len() as u64);
                    match &range {
                        Some(r) if body.len() as u64 != r.end - r.start => {
                            format!("truncated body: {} of {} bytes", body.len(), r.end - r.start)
                        }
                        None if body.len() as u64 > limit => {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!(
                                    "{} is {} bytes, more than the {limit} allowed",
                                    self.describe(name),
                                    body.len()
                                ),
                            ));
                        }
                        _ => return Ok(body),
                    }
                }
                Ok(Err(e)) => match final_kind(&e) {
                    Some(kind) => {
                        return Err(io::Error::new(kind, format!("GET {}: {e}", self.describe(name))));
                    }
                    None => e.to_string(),
                },
                Err(_) => format!("no complete answer within {:?}", self.opts.timeout),
            };
            if attempt >= self.opts.retries {
                let what = match &range {
                    Some(r) => format!("bytes {}..{} of {}", r.start, r.end, self.describe(name)),
                    None => self.describe(name),
                };
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "GET {what}: gave up after {} attempts in {:.1} s; last error: {why}",
                        attempt + 1,
                        started.elapsed().as_secs_f64()
                    ),
                ));
            }
            log::debug!("GET {} attempt {} failed: {why}", self.describe(name), attempt + 1);
            tokio::time::sleep(backoff(self.opts.backoff, attempt)).await;
            attempt += 1;
        }
    }
}

/// The error kind of a failure that no retry can fix (the object is
/// missing, access is refused, the request is malformed); `None` for one
/// worth retrying.
fn final_kind(e: &object_store::Error) -> Option<io::ErrorKind> {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => Some(io::ErrorKind::NotFound),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => Some(io::ErrorKind::PermissionDenied),
        E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::Precondition { .. } => Some(io::ErrorKind::InvalidInput),
        // A 4xx other than those above comes as Generic with the status in
        // its message; retrying a bad request only delays the error.
        E::Generic { source, .. } if is_client_error(&source.to_string()) => {
            Some(io::ErrorKind::InvalidInput)
        }
        _ => None,
    }
}

fn is_client_error(message: &str) -> bool {
    ["400 Bad Request", "403 Forbidden", "404 Not Found", "405 Method", "416 Range Not Satisfiable"]
        .iter()
        .any(|s| message.contains(s))
}

/// Exponential backoff with jitter (half to all of the nominal wait),
/// the jitter from the clock's nanoseconds: retries of many requests that
/// failed together spread out.
fn backoff(first: Duration, attempt: u32) -> Duration {
    let nominal = first.saturating_mul(1u32 << attempt.min(16)).min(MAX_BACKOFF);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    nominal / 2 + nominal.mul_f64(f64::from(nanos % 1000) / 2000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let first = Duration::from_millis(50);
        let b0 = backoff(first, 0);
        assert!(b0 >= Duration::from_millis(25) && b0 <= first, "{b0:?}");
        let b3 = backoff(first, 3);
        assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400), "{b3:?}");
        assert!(backoff(first, 30) <= MAX_BACKOFF);
    }
}
