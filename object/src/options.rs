//! What a store connection and its cache are configured with: a consuming
//! builder whose defaults come from the environment, so that a job
//! launched with the usual variables needs no code.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Environment variable: directory of the local chunk cache (no cache
/// when unset).
pub const CACHE_DIR_ENV: &str = "RINGFEED_CACHE_DIR";
/// Environment variable: the cache's size bound, in bytes (suffixes
/// `K`, `M`, `G`, `T`: powers of 1024).
pub const CACHE_BYTES_ENV: &str = "RINGFEED_CACHE_BYTES";
/// Environment variable: attempts after the first for a failed request.
pub const RETRIES_ENV: &str = "RINGFEED_S3_RETRIES";
/// Environment variable: one request's time limit, in milliseconds.
pub const TIMEOUT_ENV: &str = "RINGFEED_S3_TIMEOUT_MS";

/// How to reach the store and whether to cache what is read from it.
/// Credentials, region and endpoint come from the standard AWS variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AWS_REGION`, `AWS_ENDPOINT_URL`, ...), read when the store is opened.
///
/// ```
/// let opts = ringfeed_object::ObjectOptions::builder()
///     .cache_dir("/tmp/ringfeed-cache")
///     .cache_bytes(8 << 30)
///     .retries(5)
///     .build()?;
/// assert_eq!(opts.cache_bytes(), 8 << 30);
/// # Ok::<(), ringfeed_object::Error>(())
/// ```
#[derive(Clone)]
pub struct ObjectOptions {
    pub(crate) endpoint: Option<String>,
    pub(crate) credentials: Option<(String, String)>,
    pub(crate) retries: u32,
    pub(crate) timeout: Duration,
    pub(crate) backoff: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) cache_dir: Option<PathBuf>,
    pub(crate) cache_bytes: u64,
    pub(crate) chunk_size: u64,
    pub(crate) part_size: usize,
}

impl ObjectOptions {
    /// A builder whose defaults are read from the environment now.
    pub fn builder() -> ObjectOptionsBuilder {
        ObjectOptionsBuilder { opts: Ok(ObjectOptions::defaults()), env: true }
    }

    /// The defaults (environment included), checked.
    pub fn from_env() -> Result<Self> {
        Self::builder().build()
    }

    fn defaults() -> Self {
        ObjectOptions {
            endpoint: None,
            credentials: None,
            retries: 8,
            timeout: Duration::from_secs(30),
            backoff: Duration::from_millis(50),
            max_in_flight: 64,
            cache_dir: None,
            cache_bytes: 64 << 30,
            chunk_size: 1 << 20,
            part_size: 16 << 20,
        }
    }

    /// The cache directory, if any.
    pub fn cache_dir(&self) -> Option<&std::path::Path> {
        self.cache_dir.as_deref()
    }

    /// The cache's size bound in bytes.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_bytes
    }

    /// Attempts after the first.
    pub fn retries(&self) -> u32 {
        self.retries
    }
}

impl std::fmt::Debug for ObjectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("ObjectOptions")
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials.as_ref().map(|(k, _)| (k, "<secret>")))
            .field("retries", &self.retries)
            .field("timeout", &self.timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("cache_dir", &self.cache_dir)
            .field("cache_bytes", &self.cache_bytes)
            .field("chunk_size", &self.chunk_size)
            .finish_non_exhaustive()
    }
}

/// Builds [`ObjectOptions`]; each setter overrides the environment.
#[derive(Debug)]
#[must_use]
pub struct ObjectOptionsBuilder {
    opts: Result<ObjectOptions>,
    /// Whether `build` still reads the environment for what was not set.
    env: bool,
}

impl ObjectOptionsBuilder {
    fn with(mut self, f: impl FnOnce(&mut ObjectOptions)) -> Self {
        if let Ok(o) = &mut self.opts {
            f(o);
        }
        self
    }

    /// Ignores the `RINGFEED_*` variables (the AWS ones still apply):
    /// for tests and for programs that take every option explicitly.
    pub fn ignore_env(mut self) -> Self {
        self.env = false;
        self
    }

    /// The store's endpoint URL, e.g. `http://127.0.0.1:9000` for a local
    /// S3-compatible server. Default: `AWS_ENDPOINT_URL`, else AWS itself.
    /// `http://` endpoints are allowed (loopback tests, in-cluster stores).
    pub fn endpoint(self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.with(|o| o.endpoint = Some(url))
    }

    /// An access key and secret, instead of the environment's
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`) or the instance's
    /// role. Default: the environment's.
    pub fn credentials(self, key_id: impl Into<String>, secret: impl Into<String>) -> Self {
        let pair = (key_id.into(), secret.into());
        self.with(|o| o.credentials = Some(pair))
    }

    /// Attempts after the first for a request that failed with a 5xx, a
    /// timeout, a cut connection or a truncated body (never for 4xx).
    /// Default 8, or `RINGFEED_S3_RETRIES`.
    pub fn retries(self, n: u32) -> Self {
        self.with(|o| o.retries = n)
    }

    /// Time limit of one request, connection to last byte. Default 30 s,
    /// or `RINGFEED_S3_TIMEOUT_MS`.
    pub fn timeout(self, t: Duration) -> Self {
        self.with(|o| o.timeout = t)
    }

    /// First wait before a retry; each later one doubles, up to 2 s,
    /// with jitter. Default 50 ms.
    pub fn backoff(self, t: Duration) -> Self {
        self.with(|o| o.backoff = t)
    }

    /// Requests in flight at once, per store. Default 64.
    pub fn max_in_flight(self, n: usize) -> Self {
        self.with(|o| o.max_in_flight = n)
    }

    /// Caches what is read in `dir` on local disk (created if missing;
    /// one process at a time per directory). Default: `RINGFEED_CACHE_DIR`,
    /// else no cache.
    pub fn cache_dir(self, dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        self.with(|o| o.cache_dir = Some(dir))
    }

    /// No cache, whatever the environment says.
    pub fn no_cache(self) -> Self {
        self.with(|o| o.cache_dir = None)
    }

    /// The cache's bound on the bytes it keeps; the least recently used
    /// chunks are deleted to stay under it. Default 64 GiB, or
    /// `RINGFEED_CACHE_BYTES`.
    pub fn cache_bytes(self, bytes: u64) -> Self {
        self.with(|o| o.cache_bytes = bytes)
    }

    /// The cache's unit: what a miss fetches (aligned ranges of this many
    /// bytes of a shard). Default 1 MiB; from 64 KiB to 64 MiB.
    pub fn chunk_size(self, bytes: u64) -> Self {
        self.with(|o| o.chunk_size = bytes)
    }

    /// Part size of multipart uploads. Default 16 MiB; S3 needs at least
    /// 5 MiB (except for the last part).
    pub fn part_size(self, bytes: usize) -> Self {
        self.with(|o| o.part_size = bytes)
    }

    /// Checks the options.
    pub fn build(self) -> Result<ObjectOptions> {
        let mut o = self.opts?;
        let set = ObjectOptions::defaults();
        if self.env {
            // An option left at its default takes the environment's value.
            if o.cache_dir.is_none()
                && let Some(dir) = std::env::var_os(CACHE_DIR_ENV).filter(|d| !d.is_empty())
            {
                o.cache_dir = Some(dir.into());
            }
            if o.cache_bytes == set.cache_bytes
                && let Some(v) = env(CACHE_BYTES_ENV)?
            {
                o.cache_bytes = parse_bytes(&v).ok_or_else(|| {
                    Error::Config(format!(
                        "{CACHE_BYTES_ENV}={v:?}: expected a size such as 20G or 500000000"
                    ))
                })?;
            }
            if o.retries == set.retries
                && let Some(v) = env(RETRIES_ENV)?
            {
                o.retries =
                    v.parse().map_err(|_| Error::Config(format!("{RETRIES_ENV}={v:?}: expected a count")))?;
            }
            if o.timeout == set.timeout
                && let Some(v) = env(TIMEOUT_ENV)?
            {
                let ms: u64 = v
                    .parse()
                    .map_err(|_| Error::Config(format!("{TIMEOUT_ENV}={v:?}: expected milliseconds")))?;
                o.timeout = Duration::from_millis(ms);
            }
        }
        if o.endpoint.is_none() {
            o.endpoint = env("AWS_ENDPOINT_URL")?.or(env("AWS_ENDPOINT")?);
        }
        if !(64 << 10..=64 << 20).contains(&o.chunk_size) {
            return Err(Error::Config(format!("chunk size {} is outside 64 KiB..64 MiB", o.chunk_size)));
        }
        if o.cache_dir.is_some() && o.cache_bytes < 16 * o.chunk_size {
            return Err(Error::Config(format!(
                "a cache of {} bytes holds fewer than 16 chunks of {}: make it larger, or use none",
                o.cache_bytes, o.chunk_size
            )));
        }
        if o.part_size < 5 << 20 {
            return Err(Error::Config(format!("part size {} is below S3's minimum of 5 MiB", o.part_size)));
        }
        if o.timeout.is_zero() || o.max_in_flight == 0 {
            return Err(Error::Config("the request timeout and max in flight must be positive".into()));
        }
        if o.retries > 100 {
            return Err(Error::Config(format!("{} retries: at most 100", o.retries)));
        }
        if let Some(e) = &o.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(Error::Config(format!("endpoint {e:?}: expected an http:// or https:// URL")));
        }
        Ok(o)
    }
}

/// A variable's value; unset or empty is `None`, not UTF-8 is an error.
fn env(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v.trim().to_string())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::Config(format!("{name} is not UTF-8"))),
    }
}

/// `20G`, `512M`, `1000`: bytes (binary suffixes).
pub(crate) fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, shift) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 10),
        (i, 'M' | 'm') => (&s[..i], 20),
        (i, 'G' | 'g') => (&s[..i], 30),
        (i, 'T' | 't') => (&s[..i], 40),
        _ => (s, 0),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("20G"), Some(20 << 30));
        assert_eq!(parse_bytes("512 m"), Some(512 << 20));
        assert_eq!(parse_bytes("5x"), None);
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("99999999999T"), None);
        assert_eq!(parse_bytes("G"), None);
    }

    #[test]
    fn bad_options_are_refused_with_a_reason() {
        let b = || ObjectOptions::builder().ignore_env();
        let e = b().chunk_size(1000).build().unwrap_err().to_string();
        assert!(e.contains("outside 64 KiB"), "{e}");
        let e = b().cache_dir("/tmp/x").cache_bytes(1 << 20).build().unwrap_err().to_string();
        assert!(e.contains("fewer than 16 chunks"), "{e}");
        let e = b().endpoint("localhost:9000").build().unwrap_err().to_string();
        assert!(e.contains("expected an http"), "{e}");
        let e = b().part_size(1 << 20).build().unwrap_err().to_string();
        assert!(e.contains("5 MiB"), "{e}");
        assert!(b().endpoint("http://127.0.0.1:1").build().is_ok());
    }
}
