//! Synchronous reader for pack datasets, used by tools, tests and small
//! jobs. The async direct-I/O engine reads the same structures.
//!
//! Opening a shard reads only its header, index and key table and checks
//! all of them (checksums, bounds, ordering), so that later reads can trust
//! the index; each record read then checks that record's CRC32C.
//!
//! A [`Dataset`] keeps every shard's index in memory but only a bounded
//! number of shard files open (the most recently used, at most 64, fewer
//! under a low descriptor limit), so that a dataset of thousands of shards
//! fits under `ulimit -n`. A closed shard is reopened by path when it is
//! next read, and must still be the file that was validated (same device
//! and inode); a dataset small enough to stay open keeps reading shards
//! that were deleted or renamed after it was opened.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::format::{ENTRY_LEN, Entry, FOOTER_LEN, Footer, HEADER_LEN, Header, MAX_RECORD_LEN, to_usize};
use super::manifest::{Manifest, ShardInfo};
use super::remote::{self, RemoteStore};
use crate::error::{Error, Result};

/// One record as read from a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Global index of the record in the dataset.
    pub index: u64,
    /// Class label (0 when the schema has none).
    pub label: i64,
    /// Key (empty when the schema has none).
    pub key: String,
    /// The payload bytes, checksum verified.
    pub payload: Vec<u8>,
}

/// Where a record lives on disk; what an I/O engine needs to fetch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLocation {
    /// Index of the shard in [`Dataset::shards`].
    pub shard: usize,
    /// Index of the record within its shard.
    pub index_in_shard: u64,
    /// Byte offset of the payload in the shard file.
    pub offset: u64,
    /// Payload length in bytes.
    pub len: u32,
    /// Expected CRC32C of the payload.
    pub crc32c: u32,
    /// Class label (0 when the schema has none).
    pub label: i64,
}

/// A validated shard file.
#[derive(Debug)]
pub struct Shard {
    path: PathBuf,
    backing: Backing,
    header: Header,
    /// Index entries followed by the key table, exactly as on disk.
    meta: Vec<u8>,
}

/// Where a shard's bytes come from.
#[derive(Debug)]
enum Backing {
    Local {
        /// The file while it is open (a dataset closes the least recently
        /// used shards to bound its descriptors).
        file: Mutex<Option<Arc<File>>>,
        /// Device and inode of the validated file, which a reopen must find
        /// again.
        identity: (u64, u64),
    },
    Remote {
        store: Arc<dyn RemoteStore>,
        /// The object's name in the store.
        name: String,
    },
}

impl Shard {
    /// Opens and validates a shard. When `expected` is given (from the
    /// manifest), the record count and index checksum must match it.
    pub fn open(path: impl AsRef<Path>, expected: Option<&ShardInfo>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = crate::sys::open_regular(&path).map_err(|e| Error::io("open", &path, e))?;
        let stat = file.metadata().map_err(|e| Error::io("stat", &path, e))?;
        let (file_len, identity) = (stat.len(), (stat.dev(), stat.ino()));
        let mut head = vec![0u8; to_usize(HEADER_LEN.min(file_len), &path, 0, "header length")?];
        read_exact_at(&file, &mut head, 0, &path)?;
        let header = Header::decode(&head, file_len, &path)?;
        // The header's layout check tied this length to the real file size,
        // so the allocation below is bounded by what is on disk.
        let meta_len = header
            .index_and_keys_len()
            .ok_or_else(|| Error::corrupt(&path, 0, "footer offset precedes the index offset".to_string()))?;
        let mut meta = vec![0u8; to_usize(meta_len, &path, header.index_offset, "index length")?];
        read_exact_at(&file, &mut meta, header.index_offset, &path)?;
        let mut footer = [0u8; FOOTER_LEN as usize];
        read_exact_at(&file, &mut footer, header.footer_offset, &path)?;
        let backing = Backing::Local { file: Mutex::new(Some(Arc::new(file))), identity };
        Self::validated(path, backing, file_len, (&head, header), meta, &footer, expected)
    }

    /// Opens and validates the shards of a dataset in object storage: two
    /// ranged reads per shard (the header, then index, key table and footer
    /// in one), every shard's in flight at once.
    pub(crate) fn open_remote(
        store: &Arc<dyn RemoteStore>,
        infos: &[ShardInfo],
        name_of: impl Fn(&ShardInfo) -> PathBuf,
    ) -> Result<Vec<Self>> {
        let heads: Vec<_> =
            infos.iter().map(|info| store.read(&info.file, 0, HEADER_LEN.min(info.bytes) as usize)).collect();
        let mut headers = Vec::with_capacity(infos.len());
        for (info, read) in infos.iter().zip(heads) {
            let path = name_of(info);
            let head = remote::wait(read).map_err(|e| Error::io_at("read", &path, 0, e))?;
            let header = Header::decode(&head, info.bytes, &path)?;
            headers.push((path, head, header));
        }
        let tails: Vec<_> = infos
            .iter()
            .zip(&headers)
            .map(|(info, (path, _, header))| {
                let len =
                    header.index_and_keys_len().and_then(|l| l.checked_add(FOOTER_LEN)).ok_or_else(|| {
                        Error::corrupt(path, 0, "footer offset precedes the index offset".to_string())
                    })?;
                let len = to_usize(len, path, header.index_offset, "index length")?;
                Ok(store.read(&info.file, header.index_offset, len))
            })
            .collect::<Result<_>>()?;
        let mut shards = Vec::with_capacity(infos.len());
        for ((info, (path, head, header)), read) in infos.iter().zip(headers).zip(tails) {
            let mut meta =
                remote::wait(read).map_err(|e| Error::io_at("read", &path, header.index_offset, e))?.to_vec();
            if meta.len() < FOOTER_LEN as usize {
                return Err(Error::corrupt(
                    &path,
                    header.index_offset,
                    "index read came back short".to_string(),
                ));
            }
            let footer = meta.split_off(meta.len() - FOOTER_LEN as usize);
            let backing = Backing::Remote { store: store.clone(), name: info.file.clone() };
            shards.push(Self::validated(
                path,
                backing,
                info.bytes,
                (&head, header),
                meta,
                &footer,
                Some(info),
            )?);
        }
        Ok(shards)
    }

    /// The checks after a shard's header, index, keys and footer were read
    /// (from a file or from object storage).
    fn validated(
        path: PathBuf,
        backing: Backing,
        file_len: u64,
        (head, header): (&[u8], Header),
        meta: Vec<u8>,
        footer: &[u8],
        expected: Option<&ShardInfo>,
    ) -> Result<Self> {
        let footer = Footer::decode(footer, header.footer_offset, &path)?;
        if footer.record_count != header.record_count {
            return Err(Error::corrupt(
                &path,
                header.footer_offset,
                format!("footer counts {} records, header {}", footer.record_count, header.record_count),
            ));
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(head), &meta);
        if crc != footer.checksum {
            return Err(Error::corrupt(
                &path,
                header.index_offset,
                format!("index checksum mismatch (footer {:#010x}, computed {crc:#010x})", footer.checksum),
            ));
        }
        if let Some(info) = expected
            && (info.records != header.record_count || info.index_crc32c != crc || info.bytes != file_len)
        {
            return Err(Error::corrupt(
                &path,
                0,
                format!(
                    "shard does not match the manifest ({} records, {} bytes, index crc {:#010x}; \
                     manifest says {}, {}, {:#010x})",
                    header.record_count, file_len, crc, info.records, info.bytes, info.index_crc32c
                ),
            ));
        }
        let shard = Shard { path, backing, header, meta };
        shard.check_entries()?;
        Ok(shard)
    }

    /// Every record must lie inside the data section, after the previous
    /// one, below the length limit; key ends must be ordered and in range.
    /// All arithmetic on the entries is checked: an entry is read from disk
    /// and may have been crafted to make `offset + len` wrap around.
    fn check_entries(&self) -> Result<()> {
        let data_end = self
            .header
            .data_offset
            .checked_add(self.header.data_len)
            .ok_or_else(|| Error::corrupt(&self.path, 0, "data section end overflows".to_string()))?;
        let mut prev_end = self.header.data_offset;
        let mut prev_key = 0u32;
        for i in 0..self.len() {
            let e = self.entry(i)?;
            let at = self.entry_offset(i);
            let bad = |why: String| Err(Error::corrupt_record(&self.path, at, i, why));
            if u64::from(e.len) > MAX_RECORD_LEN {
                return bad(format!("record length {} exceeds the limit {MAX_RECORD_LEN}", e.len));
            }
            if e.offset < prev_end {
                return bad(format!(
                    "record at {} overlaps the previous record or the header (which ends at {prev_end})",
                    e.offset
                ));
            }
            let Some(end) = e.end() else {
                return bad(format!(
                    "record offset {} plus length {} overflows (past the data section end {data_end})",
                    e.offset, e.len
                ));
            };
            if end > data_end {
                return bad(format!(
                    "record {}..{end} extends past the data section end {data_end}",
                    e.offset
                ));
            }
            if e.key_end < prev_key || u64::from(e.key_end) > self.header.keys_len {
                return bad(format!("key end {} out of order or past the key table", e.key_end));
            }
            prev_end = end;
            prev_key = e.key_end;
        }
        Ok(())
    }

    /// Byte offset of index entry `i` in the file (for error messages).
    fn entry_offset(&self, i: u64) -> u64 {
        i.checked_mul(ENTRY_LEN)
            .and_then(|o| o.checked_add(self.header.index_offset))
            .unwrap_or(self.header.index_offset)
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.header.record_count
    }

    /// True when the shard holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Path of the shard file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shard's file: the open one, or, when it was closed, the file
    /// reopened by path (and not kept open), provided it is still the file
    /// that was validated. An error for a shard in object storage.
    pub fn file(&self) -> Result<Arc<File>> {
        if let Some(file) = lock(self.slot()?).as_ref() {
            return Ok(file.clone());
        }
        self.reopen().map(Arc::new)
    }

    /// The open-file slot of a local shard.
    fn slot(&self) -> Result<&Mutex<Option<Arc<File>>>> {
        match &self.backing {
            Backing::Local { file, .. } => Ok(file),
            Backing::Remote { .. } => Err(Error::Config(format!(
                "{} is in object storage: it has no local file",
                self.path.display()
            ))),
        }
    }

    /// The store and object name of a shard in object storage; `None` for
    /// a local file. Public for the `ringfeed` loader's reads; not a
    /// stable API.
    #[doc(hidden)]
    pub fn remote(&self) -> Option<(&Arc<dyn RemoteStore>, &str)> {
        match &self.backing {
            Backing::Remote { store, name } => Some((store, name)),
            Backing::Local { .. } => None,
        }
    }

    /// Opens the shard's path again, checking that it is the same file.
    fn reopen(&self) -> Result<File> {
        let Backing::Local { identity, .. } = &self.backing else {
            return Err(self.slot().err().unwrap_or_else(|| Error::Config("not a local shard".into())));
        };
        let file = crate::sys::open_regular(&self.path).map_err(|e| Error::io("open", &self.path, e))?;
        let stat = file.metadata().map_err(|e| Error::io("stat", &self.path, e))?;
        if (stat.dev(), stat.ino()) != *identity {
            return Err(Error::corrupt(
                &self.path,
                0,
                "the shard was replaced after the dataset was opened (another file has its name now); \
                 open the dataset again",
            ));
        }
        Ok(file)
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.header.file_len()
    }

    /// Offset and length of the data section.
    pub fn data_range(&self) -> (u64, u64) {
        (self.header.data_offset, self.header.data_len)
    }

    /// Index entry `i`; an error when `i` is not below [`Shard::len`].
    pub(crate) fn entry(&self, i: u64) -> Result<Entry> {
        if i >= self.len() {
            return Err(Error::Config(format!(
                "record {i} out of range for {}, which holds {} records",
                self.path.display(),
                self.len()
            )));
        }
        Entry::decode(&self.meta, i).ok_or_else(|| {
            Error::corrupt_record(&self.path, self.entry_offset(i), i, "index entry lies past the index")
        })
    }

    /// Location of record `i` (panics if `i >= len()`).
    pub fn location(&self, shard: usize, i: u64) -> RecordLocation {
        assert!(i < self.len(), "record {i} out of range for a shard of {}", self.len());
        let e = Entry::decode(&self.meta, i).expect("the index was sized by the record count on open");
        RecordLocation {
            shard,
            index_in_shard: i,
            offset: e.offset,
            len: e.len,
            crc32c: e.crc32c,
            label: i64::from(e.label),
        }
    }

    /// Key of record `i`; empty when the shard has no keys.
    pub fn key(&self, i: u64) -> Result<&str> {
        let end = self.entry(i)?.key_end;
        let start = match i.checked_sub(1) {
            Some(prev) => self.entry(prev)?.key_end,
            None => 0,
        };
        let key_at = self.header.keys_offset.checked_add(u64::from(start)).unwrap_or(self.header.keys_offset);
        let bad = |why: &str| Error::corrupt_record(&self.path, key_at, i, why.to_string());
        let index_len = self.len().checked_mul(ENTRY_LEN).ok_or_else(|| bad("index length overflows"))?;
        let index_len = to_usize(index_len, &self.path, self.header.index_offset, "index length")?;
        let (start, end) = (
            usize::try_from(start).map_err(|_| bad("key offset does not fit in memory"))?,
            usize::try_from(end).map_err(|_| bad("key end does not fit in memory"))?,
        );
        let key = self
            .meta
            .get(index_len..)
            .and_then(|keys| keys.get(start..end))
            .ok_or_else(|| bad("key lies outside the key table"))?;
        std::str::from_utf8(key).map_err(|_| bad("key is not UTF-8"))
    }

    /// Reads record `i` and checks its CRC32C.
    pub fn read(&self, i: u64) -> Result<Vec<u8>> {
        self.read_from(None, i)
    }

    /// Reads record `i` from `file`, this shard's file already open, or
    /// when `None` from the shard's own source (its file, reopened if it
    /// was closed; or the store), checking its CRC32C.
    fn read_from(&self, file: Option<&File>, i: u64) -> Result<Vec<u8>> {
        let e = self.entry(i)?;
        if u64::from(e.len) > MAX_RECORD_LEN {
            return Err(Error::corrupt_record(
                &self.path,
                self.entry_offset(i),
                i,
                format!("record length {} exceeds the limit {MAX_RECORD_LEN}", e.len),
            ));
        }
        let len = to_usize(u64::from(e.len), &self.path, self.entry_offset(i), "record length")?;
        let buf = match &self.backing {
            Backing::Local { .. } => {
                let reopened;
                let file = match file {
                    Some(f) => f,
                    None => {
                        reopened = self.file()?;
                        &*reopened
                    }
                };
                let mut buf = vec![0u8; len];
                read_exact_at(file, &mut buf, e.offset, &self.path)?;
                buf
            }
            Backing::Remote { store, name } => {
                let buf = remote::wait(store.read(name, e.offset, len))
                    .map_err(|err| Error::io_at("read", &self.path, e.offset, err))?
                    .to_vec();
                if buf.len() != len {
                    return Err(Error::corrupt_record(&self.path, e.offset, i, "short read from the store"));
                }
                buf
            }
        };
        check_crc(&buf, e.crc32c, &self.path, e.offset, i)?;
        Ok(buf)
    }
}

/// Checks a payload against its stored CRC32C.
///
/// Public (hidden from the docs) for the `ringfeed` loader, which checks
/// the records it reads itself with the same error; not a stable API.
pub fn check_crc(payload: &[u8], expected: u32, path: &Path, offset: u64, record: u64) -> Result<()> {
    let crc = crc32c::crc32c(payload);
    if crc != expected {
        return Err(Error::corrupt_record(
            path,
            offset,
            record,
            format!("record checksum mismatch (stored {expected:#010x}, computed {crc:#010x})"),
        ));
    }
    Ok(())
}

/// A poisoned lock only means another thread panicked while holding it;
/// the guarded state (an open file or none, an order of shards) is valid
/// at every point, so carry on with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64, path: &Path) -> Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::corrupt(
                path,
                offset,
                format!("file ends before {} bytes at this offset (truncated?)", buf.len()),
            )
        } else {
            Error::io_at("read", path, offset, e)
        }
    })
}

/// An open pack dataset: the manifest plus every shard, validated, with
/// a bounded number of shard files open at a time (see the module docs).
///
/// ```
/// # fn main() -> ringfeed_pack::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let mut w = ringfeed_pack::PackWriter::builder(dir.path()).build()?;
/// # w.push(b"abc", 0, None)?;
/// # w.finish()?;
/// let ds = ringfeed_pack::Dataset::open(dir.path())?;
/// for record in ds.iter() {
///     let record = record?;
///     println!("{} {} bytes", record.index, record.payload.len());
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
    shards: Vec<Shard>,
    /// `starts[s]` is the global index of shard `s`'s first record.
    starts: Vec<u64>,
    /// The shards whose files are open, least recently used first.
    open: Mutex<VecDeque<usize>>,
    /// Most shard files open at once.
    max_open: usize,
    /// Where the shards are when they are not local files.
    remote: Option<Arc<dyn RemoteStore>>,
}

impl Dataset {
    /// Opens the dataset in `dir`: reads the manifest, then opens and
    /// validates every shard against it.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_capped(dir.as_ref(), crate::sys::limits::dataset_open_shards())
    }

    /// [`open`](Self::open), keeping at most `max_open` shard files open.
    fn open_capped(dir: &Path, max_open: usize) -> Result<Self> {
        let dir = dir.to_path_buf();
        let manifest = Manifest::load(&dir)?;
        let mut shards = Vec::with_capacity(manifest.shards.len());
        let mut starts = Vec::with_capacity(manifest.shards.len());
        let mut next = 0u64;
        let max_open = max_open.max(1);
        let mut open = VecDeque::with_capacity(max_open + 1);
        for info in &manifest.shards {
            let shard = Shard::open(dir.join(&info.file), Some(info))?;
            super::verify::check_labels(&shard, &manifest)?;
            shards.push(shard);
            open.push_back(shards.len() - 1);
            if open.len() > max_open
                && let Some(old) = open.pop_front()
                && let Some(shard) = shards.get(old)
            {
                *lock(shard.slot()?) = None;
            }
            starts.push(next);
            next = next.checked_add(info.records).ok_or_else(|| {
                Error::corrupt(
                    dir.join(super::manifest::MANIFEST_FILE),
                    0,
                    "record count overflows".to_string(),
                )
            })?;
        }
        Ok(Dataset { dir, manifest, shards, starts, open: Mutex::new(open), max_open, remote: None })
    }

    /// Opens the dataset in `store` (object storage: see
    /// `ringfeed-object`): reads the manifest, then every shard's header
    /// and index (all shards' reads in flight at once), validated as
    /// [`open`](Self::open) validates files. Records are then read from the
    /// store; [`file`](Self::file) is an error.
    pub fn open_remote(store: Arc<dyn RemoteStore>) -> Result<Self> {
        let location = store.location().trim_end_matches('/').to_string();
        let name_of = |file: &str| PathBuf::from(format!("{location}/{file}"));
        let manifest_path = name_of(super::manifest::MANIFEST_FILE);
        let text = store
            .read_all(super::manifest::MANIFEST_FILE, super::manifest::MAX_MANIFEST_LEN)
            .map_err(|e| {
                let op = if e.kind() == std::io::ErrorKind::NotFound {
                    "open manifest (not a ringfeed dataset, or packing did not finish)"
                } else {
                    "read"
                };
                Error::io(op, &manifest_path, e)
            })?;
        let manifest = Manifest::parse(&text, &manifest_path)?;
        let shards = Shard::open_remote(&store, &manifest.shards, |info| name_of(&info.file))?;
        let mut starts = Vec::with_capacity(shards.len());
        let mut next = 0u64;
        for (shard, info) in shards.iter().zip(&manifest.shards) {
            super::verify::check_labels(shard, &manifest)?;
            starts.push(next);
            next = next
                .checked_add(info.records)
                .ok_or_else(|| Error::corrupt(&manifest_path, 0, "record count overflows".to_string()))?;
        }
        Ok(Dataset {
            dir: PathBuf::from(location),
            manifest,
            shards,
            starts,
            open: Mutex::new(VecDeque::new()),
            max_open: 1,
            remote: Some(store),
        })
    }

    /// The store of a dataset in object storage (`None` for a local one).
    pub fn remote_store(&self) -> Option<&Arc<dyn RemoteStore>> {
        self.remote.as_ref()
    }

    /// Shard `shard`'s file, opened again if it was closed (and checked to
    /// be the validated file); the least recently used shard is closed when
    /// that takes the dataset past its cap. The file stays open for as long
    /// as the returned handle lives, even if the dataset closes it meanwhile.
    ///
    /// Public for the `ringfeed` loader's blocking reads, which share the
    /// dataset's cap on open files; not a stable API.
    #[doc(hidden)]
    pub fn file(&self, shard: usize) -> Result<Arc<File>> {
        let s = self.shards.get(shard).ok_or_else(|| {
            Error::Config(format!("shard {shard} out of range: the dataset has {}", self.shards.len()))
        })?;
        // The order lock is held across the open, so that two threads
        // cannot both open a shard and exceed the cap.
        let mut open = lock(&self.open);
        if let Some(file) = lock(s.slot()?).as_ref() {
            if let Some(at) = open.iter().position(|&o| o == shard) {
                open.remove(at);
            }
            open.push_back(shard);
            return Ok(file.clone());
        }
        let file = Arc::new(s.reopen()?);
        *lock(s.slot()?) = Some(file.clone());
        open.push_back(shard);
        while open.len() > self.max_open {
            if let Some(old) = open.pop_front()
                && let Some(closing) = self.shards.get(old)
                && let Ok(slot) = closing.slot()
            {
                *lock(slot) = None;
            }
        }
        Ok(file)
    }

    /// Shard files open now (for tests of the cap).
    #[cfg(test)]
    pub(crate) fn open_files(&self) -> usize {
        self.shards.iter().filter(|s| s.slot().is_ok_and(|f| lock(f).is_some())).count()
    }

    /// The dataset directory (the URL, for a dataset in object storage).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The shards, in record order.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Total number of records.
    pub fn len(&self) -> u64 {
        self.manifest.records
    }

    /// True when the dataset has no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Location of record `index`, or a config error when out of range.
    pub fn locate(&self, index: u64) -> Result<RecordLocation> {
        if index >= self.len() {
            return Err(Error::Config(format!(
                "record {index} out of range: the dataset has {} records",
                self.len()
            )));
        }
        let shard = self.starts.partition_point(|&s| s <= index) - 1;
        Ok(self.shards[shard].location(shard, index - self.starts[shard]))
    }

    /// Key of record `index` (empty when the schema has no keys), from the
    /// key table held in memory: no I/O.
    pub fn key(&self, index: u64) -> Result<&str> {
        let loc = self.locate(index)?;
        self.shards[loc.shard].key(loc.index_in_shard)
    }

    /// Reads record `index`, checking its checksum.
    pub fn record(&self, index: u64) -> Result<Record> {
        let loc = self.locate(index)?;
        let shard = &self.shards[loc.shard];
        let file = match shard.remote() {
            Some(_) => None,
            None => Some(self.file(loc.shard)?),
        };
        Ok(Record {
            index,
            label: loc.label,
            key: shard.key(loc.index_in_shard)?.to_string(),
            payload: shard.read_from(file.as_deref(), loc.index_in_shard)?,
        })
    }

    /// Iterates over all records in order.
    pub fn iter(&self) -> impl Iterator<Item = Result<Record>> + '_ {
        (0..self.len()).map(|i| self.record(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::PackWriter;

    /// 12 one-record shards, record `i` holding `i` repeated.
    fn twelve_shards() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PackWriter::builder(dir.path()).shard_size(1).build().unwrap();
        for i in 0..12u8 {
            w.push(&[i; 100], 0, None).unwrap();
        }
        assert_eq!(w.finish().unwrap().shards.len(), 12);
        dir
    }

    #[test]
    fn a_dataset_keeps_at_most_its_cap_of_files_open() {
        let dir = twelve_shards();
        let ds = Dataset::open_capped(dir.path(), 3).unwrap();
        assert_eq!(ds.open_files(), 3);
        for round in 0..2 {
            for i in (0..12).rev() {
                assert_eq!(ds.record(i).unwrap().payload, vec![i as u8; 100], "round {round}");
                assert!(ds.open_files() <= 3);
            }
        }
        // A handle outlives its eviction.
        let held = ds.file(0).unwrap();
        for i in 1..12 {
            ds.file(i).unwrap();
        }
        let mut b = [0u8; 1];
        held.read_exact_at(&mut b, 0).unwrap();
        // A closed shard is read through its path too (not kept open).
        assert_eq!(ds.shards()[0].read(0).unwrap(), vec![0u8; 100]);
        assert_eq!(ds.open_files(), 3);
        assert!(ds.file(12).is_err());
    }

    #[test]
    fn a_closed_shard_replaced_on_disk_is_refused() {
        let dir = twelve_shards();
        let ds = Dataset::open_capped(dir.path(), 2).unwrap();
        // Shard 0 is closed by now; put shard 1's file in its place.
        let (a, b) = (ds.shards()[0].path().to_path_buf(), ds.shards()[1].path().to_path_buf());
        std::fs::copy(&b, dir.path().join("copy")).unwrap();
        std::fs::rename(dir.path().join("copy"), &a).unwrap();
        let err = ds.record(0).unwrap_err();
        assert!(err.to_string().contains("replaced after the dataset was opened"), "{err}");
        assert!(err.is_corruption());
    }

    #[test]
    fn a_small_dataset_keeps_every_shard_open() {
        if crate::sys::limits::dataset_open_shards() < 12 {
            eprintln!("skipped: the descriptor limit is too low for 12 open shards");
            return;
        }
        let dir = twelve_shards();
        let ds = Dataset::open(dir.path()).unwrap();
        assert_eq!(ds.open_files(), 12);
        for s in ds.shards() {
            std::fs::remove_file(s.path()).unwrap();
        }
        for i in 0..12 {
            assert_eq!(ds.record(i).unwrap().payload, vec![i as u8; 100]);
        }
    }
}
