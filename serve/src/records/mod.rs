//! Records: an async handle on a pack dataset for servers (document
//! stores, feature lookups, the prompts of an evaluation set).
//!
//! Reads never block tokio's workers: the caller's task looks the record
//! up in memory, hands the read to an io_uring instance without waiting
//! (where io_uring is unavailable, to a few blocking threads), and checks
//! the CRC32C of what a completion thread of ours hands back. Every read holds a share of a byte
//! budget until the read itself is over, so memory in flight is bounded
//! by [`RecordsBuilder::max_bytes_in_flight`] however many requests wait
//! and however many of them are abandoned.

mod blocking;
mod io;
mod plan;
// The module's unsafe code: pushing entries to an io_uring from several
// threads, and reaping its completions.
#[expect(unsafe_code, reason = "io_uring entries point at buffers the kernel writes later")]
mod ring;
mod uring;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use ringfeed_pack::{Dataset, KeyIndex, KeyIndexOrigin, RecordLocation};
use tokio::sync::{Semaphore, oneshot};

use self::io::{Backend, ReadOp};
use self::plan::{Run, plan};
use crate::error::{Error, Result};

/// Checksums of reads up to this size are computed on the caller's task
/// (about 20 µs); larger ones on tokio's blocking pool.
const INLINE_CRC_BYTES: usize = 256 << 10;

/// Submission queue entries of the ring (callers submit after each push,
/// so it fills only with many pushing at once; then a caller submits to
/// make room). In-flight reads are bounded by the byte budget.
const RING_ENTRIES: u32 = 256;

/// Which thread(s) read for a [`Records`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordIo {
    /// [`Uring`](Self::Uring) when the kernel allows it, blocking reads
    /// otherwise (with a warning in the log).
    Auto,
    /// io_uring on a thread of its own, driven directly: each read goes
    /// to the kernel as soon as it is taken. An error at `build()` when
    /// io_uring is unavailable.
    Uring,
    /// io_uring through tokio-uring's runtime on a thread of its own:
    /// reads reach the kernel when that thread is about to sleep, so
    /// under load they wait longer than with [`Uring`](Self::Uring)
    /// (docs/BENCHMARKS.md has the figures).
    TokioUring,
    /// Positioned reads through the page cache on a few plain threads.
    Blocking,
}

/// Settings of a [`Records`], from [`Records::builder`].
#[derive(Debug, Clone)]
pub struct RecordsBuilder {
    dir: PathBuf,
    io: RecordIo,
    direct: bool,
    max_bytes_in_flight: usize,
    coalesce_gap: u64,
    blocking_threads: usize,
}

impl RecordsBuilder {
    /// Which backend reads. Default: [`RecordIo::Auto`].
    pub fn io(mut self, io: RecordIo) -> Self {
        self.io = io;
        self
    }

    /// Read with O_DIRECT (no page cache, no double copy), aligned as the
    /// file system reports through `statx`, when it supports it and the
    /// backend is io_uring. Default: `true`. Off, reads go through the
    /// page cache: better when the same hot records are read again and
    /// again and fit in memory.
    pub fn direct_io(mut self, yes: bool) -> Self {
        self.direct = yes;
        self
    }

    /// Most payload bytes being read at once (reads wait for room beyond
    /// it; a record larger than the whole budget is read alone). Default:
    /// 64 MiB; at most 4 GiB - 1.
    pub fn max_bytes_in_flight(mut self, bytes: usize) -> Self {
        self.max_bytes_in_flight = bytes;
        self
    }

    /// `get_many` reads records of one shard that are at most this many
    /// bytes apart with one read. Default: 64 KiB; 0 merges only adjacent
    /// records.
    pub fn coalesce_gap(mut self, bytes: u64) -> Self {
        self.coalesce_gap = bytes;
        self
    }

    /// Threads of the blocking backend, its queue depth. Default: 16.
    pub fn blocking_threads(mut self, n: usize) -> Self {
        self.blocking_threads = n;
        self
    }

    /// Opens the dataset (manifest, every shard's index and key table),
    /// loads its key index (or builds it when the dataset has none: 16
    /// bytes per record either way) and starts the backend.
    ///
    /// Blocking: call it before serving, or in `spawn_blocking`.
    pub fn build(self) -> Result<Records> {
        if self.max_bytes_in_flight == 0 || self.max_bytes_in_flight > u32::MAX as usize {
            return Err(Error::Config(format!(
                "max_bytes_in_flight must be between 1 and {}, not {}",
                u32::MAX,
                self.max_bytes_in_flight
            )));
        }
        if self.blocking_threads == 0 || self.blocking_threads > 1024 {
            return Err(Error::Config(format!(
                "blocking_threads must be between 1 and 1024, not {}",
                self.blocking_threads
            )));
        }
        let dataset = Dataset::open(&self.dir)?;
        let (keys, key_origin) = if dataset.manifest().schema.keys {
            let (k, o) = KeyIndex::load_or_build(&dataset)?;
            (Some(k), Some(o))
        } else {
            (None, None)
        };
        let align = match (self.direct, dataset.shards().first()) {
            (true, Some(shard)) => match ringfeed_pack::sys::dio_alignment(shard.path()) {
                Ok(ringfeed_pack::sys::DirectIo::Aligned(a)) if a.is_power_of_two() && a <= 4096 => Some(a),
                _ => None,
            },
            _ => None,
        };
        let dir = &self.dir;
        let blocking = |threads| -> Result<Box<dyn Backend>> {
            let b = blocking::BlockingBackend::start(threads)
                .map_err(|e| ringfeed_pack::Error::io("start the record reader threads for", dir, e))?;
            Ok(Box::new(b))
        };
        let ring = || ring::RingBackend::start(align, RING_ENTRIES);
        let (backend, io, direct): (Box<dyn Backend>, RecordIo, Option<u64>) = match self.io {
            RecordIo::Blocking => (blocking(self.blocking_threads)?, RecordIo::Blocking, None),
            RecordIo::Uring => {
                let b = ring().map_err(|e| ringfeed_pack::Error::io("start io_uring for", dir, e))?;
                (Box::new(b), RecordIo::Uring, align)
            }
            RecordIo::TokioUring => {
                let b = uring::UringBackend::start(align, RING_ENTRIES)
                    .map_err(|e| ringfeed_pack::Error::io("start tokio-uring for", dir, e))?;
                (Box::new(b), RecordIo::TokioUring, align)
            }
            RecordIo::Auto => match ring() {
                Ok(b) => (Box::new(b), RecordIo::Uring, align),
                Err(e) => {
                    log::warn!("io_uring is unavailable ({e}); records are read with blocking threads");
                    (blocking(self.blocking_threads)?, RecordIo::Blocking, None)
                }
            },
        };
        let max = self.max_bytes_in_flight;
        Ok(Records {
            inner: Arc::new(Inner {
                dataset,
                keys,
                key_origin,
                backend,
                io,
                direct,
                budget: Arc::new(Semaphore::new(max)),
                max_bytes: max,
                coalesce_gap: self.coalesce_gap,
            }),
        })
    }
}

/// An async handle on a pack dataset, usable from any tokio runtime:
/// [`get`](Self::get), [`get_many`](Self::get_many) and
/// [`get_by_key`](Self::get_by_key). Cheap to clone (one `Arc`); every
/// payload's CRC32C is checked before it is returned.
///
/// ```
/// use ringfeed_pack::{PackWriter, Payload, Schema};
/// use ringfeed_serve::Records;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let schema = Schema { payload: Payload::Text, labels: false, keys: true };
/// let mut writer = PackWriter::builder(dir.path()).schema(schema).build()?;
/// writer.push(b"the first document", 0, Some("doc-1"))?;
/// writer.push(b"the second document", 0, Some("doc-2"))?;
/// writer.finish()?;
///
/// let records = Records::open(dir.path())?;
/// let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
/// runtime.block_on(async {
///     let doc = records.get_by_key("doc-2").await?;
///     assert_eq!((doc.index(), &doc.payload()[..]), (1, &b"the second document"[..]));
///     let both = records.get_many(&[1, 0]).await?;
///     assert_eq!(both[1].key(), Some("doc-1"));
///     assert_eq!(records.get_by_key("doc-3").await.unwrap_err().http_status(), 404);
///     Ok::<_, ringfeed_serve::Error>(())
/// })?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Records {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dataset: Dataset,
    keys: Option<KeyIndex>,
    key_origin: Option<KeyIndexOrigin>,
    backend: Box<dyn Backend>,
    io: RecordIo,
    direct: Option<u64>,
    /// One permit per payload byte being read.
    budget: Arc<Semaphore>,
    max_bytes: usize,
    coalesce_gap: u64,
}

/// One record, its payload checked against its CRC32C.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    index: u64,
    label: Option<i64>,
    key: Option<String>,
    payload: Bytes,
}

impl Record {
    /// Global index of the record in the dataset.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Class label, when the dataset has labels.
    pub fn label(&self) -> Option<i64> {
        self.label
    }

    /// Key, when the dataset has keys.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The payload (a slice of the read's buffer: no copy).
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The payload, by value.
    pub fn into_payload(self) -> Bytes {
        self.payload
    }
}

impl Records {
    /// Settings for the dataset in `dir`.
    pub fn builder(dir: impl AsRef<Path>) -> RecordsBuilder {
        RecordsBuilder {
            dir: dir.as_ref().to_path_buf(),
            io: RecordIo::Auto,
            direct: true,
            max_bytes_in_flight: 64 << 20,
            coalesce_gap: 64 << 10,
            blocking_threads: 16,
        }
    }

    /// [`builder`](Self::builder)`(dir).build()`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Records> {
        Self::builder(dir).build()
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.inner.dataset.len()
    }

    /// True when the dataset holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The backend reading (never [`RecordIo::Auto`]).
    pub fn io(&self) -> RecordIo {
        self.inner.io
    }

    /// The O_DIRECT alignment in use, `None` when reading through the
    /// page cache.
    pub fn direct_io(&self) -> Option<u64> {
        self.inner.direct
    }

    /// Where the key index came from (`None` when the dataset has no keys).
    pub fn key_index(&self) -> Option<KeyIndexOrigin> {
        self.inner.key_origin
    }

    /// Payload bytes being read right now (at most the configured budget).
    pub fn bytes_in_flight(&self) -> usize {
        self.inner.max_bytes - self.inner.budget.available_permits()
    }

    /// The index of the record whose key is `key` (the first, if several
    /// share it), from memory: no I/O.
    pub fn index_of(&self, key: &str) -> Result<Option<u64>> {
        match &self.inner.keys {
            Some(keys) => Ok(keys.find(&self.inner.dataset, key)?),
            None => Ok(None),
        }
    }

    /// Reads record `index`. Past the end: [`Error::NotFound`].
    pub async fn get(&self, index: u64) -> Result<Record> {
        self.get_keyed(index, None).await
    }

    /// [`get`](Self::get), with the record's key when the caller already
    /// looked it up (a lookup by key confirmed it).
    async fn get_keyed(&self, index: u64, key: Option<&str>) -> Result<Record> {
        let loc = self.locate(index)?;
        let Some(run) = plan(vec![(0, index, loc)], 0, u64::MAX).pop() else {
            return Err(Error::Internal("no read planned for one record".into()));
        };
        let rx = self.submit(&run).await?;
        let bytes = self.finish(&run, rx).await?;
        match key {
            Some(key) => {
                Ok(Record { index, label: self.label(loc.label), key: Some(key.to_owned()), payload: bytes })
            }
            None => self.record(index, loc.label, bytes),
        }
    }

    /// Reads the record whose key is `key`; [`Error::NotFound`] when there
    /// is none (or the dataset has no keys).
    pub async fn get_by_key(&self, key: &str) -> Result<Record> {
        match self.index_of(key)? {
            Some(index) => self.get_keyed(index, Some(key)).await,
            None if self.inner.keys.is_none() => {
                Err(Error::NotFound(format!("key {key:?}: the dataset has no keys")))
            }
            None => Err(Error::NotFound(format!("key {key:?}"))),
        }
    }

    /// Reads the records `indices` (in that order, repeats allowed), one
    /// read per run of nearby records of a shard, all in flight at once
    /// within the byte budget. All or nothing: the first failure is the
    /// result.
    pub async fn get_many(&self, indices: &[u64]) -> Result<Vec<Record>> {
        let inner = &self.inner;
        let mut wanted = Vec::with_capacity(indices.len());
        for (pos, &index) in indices.iter().enumerate() {
            wanted.push((pos, index, self.locate(index)?));
        }
        let max_run = (inner.max_bytes as u64 / 4).clamp(64 << 10, 8 << 20);
        let runs = plan(wanted, inner.coalesce_gap, max_run);
        // Submit every run before awaiting any, so they are all in flight
        // together; each waits only for its share of the budget.
        let mut pending = Vec::with_capacity(runs.len());
        for run in runs {
            let rx = self.submit(&run).await?;
            pending.push((run, rx));
        }
        let mut out: Vec<Option<Record>> = vec![None; indices.len()];
        for (run, rx) in pending {
            let bytes = self.finish(&run, rx).await?;
            for m in &run.members {
                out[m.pos] = Some(self.record(m.index, m.label, bytes.slice(m.at..m.at + m.len))?);
            }
        }
        out.into_iter()
            .map(|r| r.ok_or_else(|| Error::Internal("a requested record was not read".into())))
            .collect()
    }

    fn locate(&self, index: u64) -> Result<RecordLocation> {
        let len = self.inner.dataset.len();
        if index >= len {
            return Err(Error::NotFound(format!("record {index}: the dataset has {len} records")));
        }
        Ok(self.inner.dataset.locate(index)?)
    }

    /// Takes the run's share of the budget and hands it to the backend.
    async fn submit(&self, run: &Run) -> Result<oneshot::Receiver<std::io::Result<Bytes>>> {
        let inner = &self.inner;
        let share = run.len.clamp(1, inner.max_bytes) as u32;
        let permit = inner.budget.clone().acquire_many_owned(share).await.map_err(|_| Error::Shutdown)?;
        let file = inner.dataset.file(run.shard)?;
        let (reply, rx) = oneshot::channel();
        inner.backend.submit(ReadOp {
            shard: run.shard,
            file,
            offset: run.offset,
            len: run.len,
            permit,
            reply,
        });
        Ok(rx)
    }

    /// Waits for a run's bytes and checks every member's CRC32C.
    async fn finish(&self, run: &Run, rx: oneshot::Receiver<std::io::Result<Bytes>>) -> Result<Bytes> {
        let path = || self.inner.dataset.shards()[run.shard].path().to_path_buf();
        let bytes = match rx.await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(ringfeed_pack::Error::corrupt(path(), run.offset, e.to_string()).into());
            }
            Ok(Err(e)) => return Err(ringfeed_pack::Error::io_at("read", path(), run.offset, e).into()),
            Err(_) => return Err(Error::Internal("the record reader thread stopped".into())),
        };
        let shard_path = self.inner.dataset.shards()[run.shard].path();
        if run.len <= INLINE_CRC_BYTES {
            check_members(&bytes, &run.members, shard_path, run.offset)?;
        } else {
            let (b, members, path, offset) =
                (bytes.clone(), run.members.clone(), shard_path.to_path_buf(), run.offset);
            tokio::task::spawn_blocking(move || check_members(&b, &members, &path, offset))
                .await
                .map_err(|e| Error::Internal(format!("checksum task failed: {e}")))??;
        }
        Ok(bytes)
    }

    fn record(&self, index: u64, label: i64, payload: Bytes) -> Result<Record> {
        let ds = &self.inner.dataset;
        let schema = &ds.manifest().schema;
        let key = if schema.keys { Some(ds.key(index)?.to_owned()) } else { None };
        Ok(Record { index, label: self.label(label), key, payload })
    }

    fn label(&self, label: i64) -> Option<i64> {
        self.inner.dataset.manifest().schema.labels.then_some(label)
    }
}

/// Checks each member's payload in a run's bytes against its CRC32C.
fn check_members(bytes: &[u8], members: &[plan::Member], path: &Path, offset: u64) -> Result<()> {
    for m in members {
        let payload = &bytes[m.at..m.at + m.len];
        ringfeed_pack::check_crc(payload, m.crc32c, path, offset + m.at as u64, m.in_shard)?;
    }
    Ok(())
}
