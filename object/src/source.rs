//! [`S3Store`]: a dataset's objects as ringfeed-pack's `RemoteStore`, read
//! through the local chunk cache when there is one.
//!
//! Without a cache a read is one ranged GET of exactly the bytes asked for
//! (the loader asks for coalesced runs of records). With one, a read is
//! served from cached chunks; the chunks it misses are fetched as GETs of
//! whole aligned chunks (adjacent missing chunks in one GET, at most
//! [`MAX_CHUNKS_PER_GET`]), stored, and a chunk already being fetched for
//! another read is waited for rather than fetched twice.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use ringfeed_pack::{MANIFEST_FILE, Manifest, RemoteBuf, RemoteCounters, RemoteRead, RemoteStore};

use crate::cache::Cache;
use crate::client::{Client, Runtime, bump};
use crate::error::Result;
use crate::options::ObjectOptions;

/// Most chunks one miss fetches in a single GET.
pub(crate) const MAX_CHUNKS_PER_GET: u64 = 8;

/// A dataset in S3-compatible storage, as the pack reader and the loader
/// read it. Made by [`open`](crate::open); see the crate docs.
#[derive(Debug, Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
    /// Dropped after `inner` (fields drop in order), by the store's users
    /// only, never inside one of the runtime's tasks.
    _runtime: Arc<Runtime>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    location: String,
    /// The manifest's bytes, read once when the store was opened.
    manifest: Vec<u8>,
    /// Object sizes from the manifest (reads past them are refused before
    /// any request).
    sizes: HashMap<String, u64>,
    cache: Option<CacheUse>,
    /// Chunks being fetched, with the reads waiting for them.
    fetching: Mutex<HashMap<String, Vec<flume::Sender<io::Result<Bytes>>>>>,
}

#[derive(Debug)]
struct CacheUse {
    cache: Arc<Cache>,
    /// This dataset's directory in the cache: its URL and the manifest's
    /// checksum, so that a dataset packed again under the same URL never
    /// reads the old one's chunks.
    namespace: String,
    chunk: u64,
}

impl S3Store {
    /// Connects to the dataset at `url` and reads its manifest (the
    /// shards are opened by `Dataset::open_remote`).
    pub(crate) fn connect(url: &str, opts: &ObjectOptions) -> Result<Self> {
        let (client, runtime) = Client::new(url, opts)?;
        let location = client.url.display();
        let manifest_path = std::path::PathBuf::from(client.describe(MANIFEST_FILE));
        let manifest = client
            .block_on(client.get(MANIFEST_FILE, None, 256 << 20))
            .map_err(|e| {
                let op = if e.kind() == io::ErrorKind::NotFound {
                    "open manifest (not a ringfeed dataset, or packing did not finish)"
                } else {
                    "read"
                };
                ringfeed_pack::Error::Io { op, path: manifest_path.clone(), offset: None, source: e }
            })?
            .to_vec();
        let parsed = Manifest::parse(&manifest, &manifest_path)?;
        let sizes = parsed.shards.iter().map(|s| (s.file.clone(), s.bytes)).collect();
        let cache = match &opts.cache_dir {
            None => None,
            Some(dir) => Some(CacheUse {
                cache: Cache::open(dir, opts.cache_bytes)?,
                namespace: format!(
                    "{}-{:08x}",
                    location.trim_start_matches("s3://").replace(['/', '.'], "_"),
                    crc32c::crc32c(&manifest)
                ),
                chunk: opts.chunk_size,
            }),
        };
        let inner = Inner { client, location, manifest, sizes, cache, fetching: Mutex::new(HashMap::new()) };
        Ok(S3Store { inner: Arc::new(inner), _runtime: Arc::new(runtime) })
    }

    /// Bytes the local cache holds now (0 without a cache).
    pub fn cache_bytes(&self) -> u64 {
        self.inner.cache.as_ref().map_or(0, |c| c.cache.bytes())
    }
}

impl RemoteStore for S3Store {
    fn location(&self) -> &str {
        &self.inner.location
    }

    fn read_all(&self, name: &str, limit: u64) -> io::Result<Vec<u8>> {
        if name == MANIFEST_FILE {
            return Ok(self.inner.manifest.clone());
        }
        let c = &self.inner.client;
        c.block_on(c.get(name, None, limit)).map(|b| b.to_vec())
    }

    fn read(&self, name: &str, offset: u64, len: usize) -> RemoteRead {
        self.read_with(name, offset, len, true)
    }

    fn read_checked_by_caller(&self, name: &str, offset: u64, len: usize) -> RemoteRead {
        self.read_with(name, offset, len, false)
    }

    fn invalidate(&self, name: &str, offset: u64, len: usize) {
        let Some(cu) = &self.inner.cache else { return };
        let end = offset.saturating_add(len as u64).max(offset + 1);
        for c in offset / cu.chunk..=(end - 1) / cu.chunk {
            let key = Inner::key(cu, name, c);
            log::warn!("cache chunk {key}: the reader found damaged bytes; fetching it again");
            cu.cache.remove(&key);
            bump(&self.inner.client.counters.cache_damaged, 1);
        }
    }

    fn counters(&self) -> RemoteCounters {
        self.inner.client.counters.snapshot()
    }
}

impl S3Store {
    /// A read; `verify`: check cached blocks (false when the caller checks
    /// every byte itself).
    fn read_with(&self, name: &str, offset: u64, len: usize, verify: bool) -> RemoteRead {
        // Cache hits are read here, on the caller's thread, without a hop
        // to the store's runtime: a warm cache costs what a local file read
        // through the page cache does (plus the block checks when
        // `verify`).
        let checked = self.inner.check(name, offset, len);
        let (out, missing) = match checked {
            Err(e) => return Box::pin(std::future::ready(Err(e))),
            Ok(end) if self.inner.cache.is_some() && len > 0 => {
                let (out, missing) = self.inner.cached_part(name, offset, end, len, verify);
                if missing.is_empty() {
                    bump(&self.inner.client.counters.cache_hits, 1);
                    return Box::pin(std::future::ready(Ok(out)));
                }
                (out, missing)
            }
            Ok(_) => (RemoteBuf::default(), Vec::new()),
        };
        let (tx, rx) = flume::bounded(1);
        let inner = self.inner.clone();
        let name = name.to_string();
        self.inner.client.handle().spawn(async move {
            let _ = tx.send(inner.read(&name, offset, len, out, missing).await);
        });
        Box::pin(async move {
            rx.recv_async().await.unwrap_or_else(|_| Err(io::Error::other("the object store shut down")))
        })
    }
}

impl Inner {
    fn fetching(&self) -> MutexGuard<'_, HashMap<String, Vec<flume::Sender<io::Result<Bytes>>>>> {
        self.fetching.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The end of a read of `len` bytes at `offset` of `name`, checked
    /// against the object's size.
    fn check(&self, name: &str, offset: u64, len: usize) -> io::Result<u64> {
        let size = *self.sizes.get(name).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not in the manifest", self.client.describe(name)),
            )
        })?;
        offset.checked_add(len as u64).filter(|&e| e <= size).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "bytes {offset}+{len} lie past the end of {} ({size} bytes)",
                    self.client.describe(name)
                ),
            )
        })
    }

    fn key(cu: &CacheUse, name: &str, chunk: u64) -> String {
        format!("{}/{name}.{}k.{chunk}", cu.namespace, cu.chunk >> 10)
    }

    /// The bytes of the read that are cached, copied into a buffer of
    /// `len`, and the chunks that are not (damaged ones deleted, counted).
    fn cached_part(
        &self,
        name: &str,
        offset: u64,
        end: u64,
        len: usize,
        verify: bool,
    ) -> (RemoteBuf, Vec<u64>) {
        let Some(cu) = &self.cache else { return (RemoteBuf::default(), Vec::new()) };
        let mut out = RemoteBuf::for_read(len);
        let (mut missing, mut damaged) = (Vec::new(), 0);
        for c in offset / cu.chunk..=(end - 1) / cu.chunk {
            let (lo, hi) = ((c * cu.chunk).max(offset), ((c + 1) * cu.chunk).min(end));
            let dst = &mut out.as_mut_slice()[(lo - offset) as usize..(hi - offset) as usize];
            let key = Self::key(cu, name, c);
            let hit = cu.cache.get(&key, &mut damaged);
            let mut read = |f: &crate::cache::ChunkFile| match verify {
                true => f.read_into(lo - c * cu.chunk, dst),
                false => f.read_into_unchecked(lo - c * cu.chunk, dst),
            };
            let ok = hit.is_some_and(|f| match read(&f) {
                Ok(()) => true,
                Err(_) => {
                    damaged += 1;
                    log::warn!("cache chunk {key} failed its checksum; fetching it again");
                    cu.cache.remove(&key);
                    false
                }
            });
            if !ok {
                missing.push(c);
            }
        }
        bump(&self.client.counters.cache_damaged, damaged);
        (out, missing)
    }

    /// A read that missed the cache (`out` holds what was cached, `missing`
    /// the chunks that were not), or any read without a cache.
    async fn read(
        self: &Arc<Self>,
        name: &str,
        offset: u64,
        len: usize,
        mut out: RemoteBuf,
        missing: Vec<u64>,
    ) -> io::Result<RemoteBuf> {
        let end = self.check(name, offset, len)?;
        let size = self.sizes.get(name).copied().unwrap_or(end);
        if len == 0 {
            return Ok(RemoteBuf::default());
        }
        let Some(cu) = &self.cache else {
            return self.client.get(name, Some(offset..end), 0).await.map(|b| Vec::from(b).into());
        };
        let key = |c: u64| Self::key(cu, name, c);
        bump(&self.client.counters.cache_misses, 1);
        // Claim the chunks nobody is fetching; wait for the others.
        let (mut mine, mut waits) = (Vec::new(), Vec::new());
        {
            let mut fetching = self.fetching();
            for &c in &missing {
                match fetching.get_mut(&key(c)) {
                    Some(waiters) => {
                        let (tx, rx) = flume::bounded(1);
                        waiters.push(tx);
                        waits.push((c, rx));
                    }
                    None => {
                        fetching.insert(key(c), Vec::new());
                        mine.push(c);
                    }
                }
            }
        }
        let mut claim = Claim { inner: self, keys: mine.iter().map(|&c| key(c)).collect() };
        // Counted from the claim on: a store dropped while this read still
        // fetches what others wait for waits for it to be cached.
        let writing = self.client.writing.start();
        let mut place = |c: u64, bytes: &Bytes| {
            let (lo, hi) = ((c * cu.chunk).max(offset), ((c + 1) * cu.chunk).min(end));
            let from = (lo - c * cu.chunk) as usize;
            out.as_mut_slice()[(lo - offset) as usize..(hi - offset) as usize]
                .copy_from_slice(&bytes[from..from + (hi - lo) as usize]);
        };
        let mut fetched = Vec::new();
        for run in runs(&mine) {
            let (lo, hi) = (run[0] * cu.chunk, ((run[run.len() - 1] + 1) * cu.chunk).min(size));
            let got = self.client.get(name, Some(lo..hi), 0).await;
            let body = match got {
                Ok(b) => b,
                Err(e) => {
                    claim.fail(&e);
                    return Err(e);
                }
            };
            for &c in run {
                let at = ((c * cu.chunk) - lo) as usize;
                let chunk = body.slice(at..((c + 1) * cu.chunk).min(size) as usize - lo as usize);
                place(c, &chunk);
                let k = key(c);
                claim.done(&k, &chunk);
                fetched.push((k, chunk));
            }
        }
        // Stored before the read returns, so that a store dropped after its
        // last read leaves every chunk cached (a write cut short by the
        // runtime's shutdown would be a chunk lost). A full disk only costs
        // the cache these chunks.
        let cache = cu.cache.clone();
        let stored = fetched.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let _writing = writing;
            for (k, chunk) in stored {
                if let Err(e) = cache.put(&k, &chunk) {
                    log::warn!("cannot cache chunk {k}: {e}");
                }
            }
        })
        .await;
        // Only now, with the chunks in the cache, does a read that finds
        // them missing fetch them again (until then it waits for these).
        for (k, chunk) in &fetched {
            claim.stored(k, chunk);
        }
        drop(claim);
        for (c, rx) in waits {
            let chunk = rx
                .recv_async()
                .await
                .unwrap_or_else(|_| Err(io::Error::other("the read fetching this chunk was dropped")))?;
            place(c, &chunk);
        }
        Ok(out)
    }
}

/// Groups sorted chunk numbers into runs of consecutive ones, at most
/// [`MAX_CHUNKS_PER_GET`] long.
fn runs(chunks: &[u64]) -> Vec<&[u64]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=chunks.len() {
        let split =
            i == chunks.len() || chunks[i] != chunks[i - 1] + 1 || (i - start) as u64 >= MAX_CHUNKS_PER_GET;
        if split {
            out.push(&chunks[start..i]);
            start = i;
        }
    }
    out
}

/// Chunks a read has claimed to fetch: each is handed to its waiters when
/// fetched, and to those that came since once it is stored (the claim is
/// then released); whatever is still claimed when the claim drops (an
/// error, a cancelled
/// read) is released with an error, so no waiter waits forever.
struct Claim<'a> {
    inner: &'a Inner,
    keys: Vec<String>,
}

impl Claim<'_> {
    /// The chunk arrived: the reads waiting for it get it; the claim stays
    /// until it is stored.
    fn done(&self, key: &str, chunk: &Bytes) {
        let waiting = self.inner.fetching().get_mut(key).map(std::mem::take).unwrap_or_default();
        for tx in waiting {
            let _ = tx.send(Ok(chunk.clone()));
        }
    }

    /// The chunk is in the cache: the claim on it is released.
    fn stored(&mut self, key: &str, chunk: &Bytes) {
        self.keys.retain(|k| k != key);
        for tx in self.inner.fetching().remove(key).unwrap_or_default() {
            let _ = tx.send(Ok(chunk.clone()));
        }
    }

    /// Releases every chunk still claimed, with `e` for its waiters.
    fn fail(&mut self, e: &io::Error) {
        let mut fetching = self.inner.fetching();
        for k in self.keys.drain(..) {
            for tx in fetching.remove(&k).unwrap_or_default() {
                let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
            }
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let e = io::Error::other("the read fetching this chunk stopped");
        self.fail(&e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_at_gaps_and_at_the_cap() {
        let r = runs(&[1, 2, 3, 7, 8, 20]);
        assert_eq!(r, vec![&[1u64, 2, 3][..], &[7, 8][..], &[20][..]]);
        let long: Vec<u64> = (0..20).collect();
        let r = runs(&long);
        assert_eq!(r.iter().map(|r| r.len()).collect::<Vec<_>>(), vec![8, 8, 4]);
        assert!(runs(&[]).is_empty());
    }
}
