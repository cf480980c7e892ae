//! Streams records into shards of a target size, crash-safely.
//!
//! Durability protocol: each shard is written under a hidden temporary
//! name and fsynced; after the last one, all are renamed and the
//! directory is fsynced; the manifest is written the same way, last. A dataset without `manifest.json` does not
//! open, so a crash at any point leaves nothing that passes for a dataset.
//! Output depends only on the records pushed (no timestamps, no thread
//! timing), so packing the same input twice gives identical bytes.
//!
//! Replacing a dataset never loses it: the new shards are written beside
//! the old ones under names the old dataset does not use (another
//! *generation*: `shard-00000.rfp`, then `shard-g1-00000.rfp`, then the
//! plain names again), and renaming the new manifest over the old one is
//! the switch. Until then the old dataset opens and verifies; a writer that
//! fails (or is dropped) removes its own files, and only a finished one
//! removes the old dataset's. The price is room for both on disk meanwhile.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread;

use super::format::{ENTRY_LEN, Entry, Footer, HEADER_LEN, Header, MAX_RECORD_LEN};
use super::manifest::{MANIFEST_FILE, Manifest, Payload, Schema, ShardInfo};
use crate::error::{Error, Result};
use crate::key_index::{KEY_INDEX_FILE, KEY_INDEX_TMP, KeyIndex};
use crate::manifest::TokenDtype;
use crate::reader::Dataset;

/// Default target shard size: 128 MiB (small enough that closing a shard,
/// fsync included, overlaps with writing the next one).
pub const DEFAULT_SHARD_SIZE: u64 = 128 << 20;
/// Records at least this large bypass the write buffer (one copy less);
/// smaller ones are gathered so that small records are not one syscall each.
const WRITE_BUFFER: usize = 64 << 10;
/// Write-back is started every this many bytes, so the fsync that closes a
/// shard waits for the last few megabytes instead of the whole shard.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Name of shard `n` of generation `generation` in a dataset directory:
/// `shard-00000.rfp` for generation 0 (what a fresh directory gets, so
/// packing into a new directory always gives the same names),
/// `shard-g1-00000.rfp` for generation 1.
pub(crate) fn shard_file_name(generation: u32, n: usize) -> String {
    if generation == 0 { format!("shard-{n:05}.rfp") } else { format!("shard-g{generation}-{n:05}.rfp") }
}

/// The generation of a shard name [`shard_file_name`] can give (the
/// temporary `.NAME.tmp` form included), or `None` for any other name.
fn shard_generation(name: &str) -> Option<u32> {
    let name = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")).unwrap_or(name);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let body = name.strip_prefix("shard-")?.strip_suffix(".rfp")?;
    match body.strip_prefix('g').and_then(|b| b.split_once('-')) {
        Some((generation, n)) if digits(generation) && digits(n) => generation.parse().ok(),
        _ if digits(body) => Some(0),
        _ => None,
    }
}

/// The manifest's temporary name while it is written.
fn manifest_tmp_name() -> String {
    format!(".{MANIFEST_FILE}.tmp")
}

/// The lock a writer holds on its output directory for as long as it
/// writes (an exclusive `flock`), holding the writer's pid. It stays in
/// the dataset directory: removing it would let a writer that opened the
/// old file and one that creates a new one both hold "the" lock.
pub(crate) const LOCK_FILE: &str = ".ringfeed-pack.lock";

/// Whether `name` is one a writer gives its files: the manifest, a shard
/// of any generation, the hidden temporary name of either, or the lock.
fn is_pack_name(name: &str) -> bool {
    name == MANIFEST_FILE
        || name == LOCK_FILE
        || name == manifest_tmp_name()
        || shard_generation(name).is_some()
}

/// Whether the file at `path` (named as [`is_pack_name`] accepts) is one a
/// writer made, judged by its first bytes: a shard starts with the format's
/// magic (a temporary one may still have its zeroed placeholder header), a
/// manifest names the format; an empty file is what a crash right after
/// creating it leaves. A foreign file under one of our names is not
/// ours, and is never deleted.
fn is_pack_file(path: &Path, name: &str) -> bool {
    use std::io::Read;
    if name == LOCK_FILE {
        return true;
    }
    let mut head = Vec::with_capacity(512);
    let Ok(file) = File::open(path) else { return false };
    if file.take(512).read_to_end(&mut head).is_err() {
        return false;
    }
    if head.is_empty() {
        return true;
    }
    if name.contains(MANIFEST_FILE) {
        let text = String::from_utf8_lossy(&head);
        text.trim_start().starts_with('{') && text.contains(&format!("\"{}\"", super::manifest::FORMAT_NAME))
    } else if name.ends_with(".tmp") {
        // A shard being written starts with a zeroed header, filled in
        // when the shard is finished.
        let header = &head[..head.len().min(HEADER_LEN as usize)];
        head.starts_with(&super::format::MAGIC) || header.iter().all(|&b| b == 0)
    } else {
        head.starts_with(&super::format::MAGIC)
    }
}

/// Configures a [`PackWriter`]; obtained from [`PackWriter::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct PackWriterBuilder {
    dir: PathBuf,
    shard_size: u64,
    schema: Schema,
    classes: Vec<String>,
    source: String,
    overwrite: bool,
}

impl PackWriterBuilder {
    /// Target size of each shard's record data; a shard is closed before a
    /// record would take it past this size (a record larger than the target
    /// gets a shard of its own). Default: 128 MiB.
    pub fn shard_size(mut self, bytes: u64) -> Self {
        self.shard_size = bytes;
        self
    }

    /// What records hold. Default: opaque bytes, no labels, no keys.
    pub fn schema(mut self, schema: Schema) -> Self {
        self.schema = schema;
        self
    }

    /// Class names, label `i` naming `classes[i]`. Default: none.
    pub fn classes(mut self, classes: Vec<String>) -> Self {
        self.classes = classes;
        self
    }

    /// Name of the source format, stored in the manifest. Default: `"api"`.
    pub fn source(mut self, name: impl Into<String>) -> Self {
        self.source = name.into();
        self
    }

    /// Replace a previous (complete or partial) ringfeed dataset in the
    /// output directory; a complete one is kept until the new one is
    /// finished. Directories holding anything else are never touched.
    /// Default: true.
    pub fn overwrite(mut self, yes: bool) -> Self {
        self.overwrite = yes;
        self
    }

    /// Prepares the output directory and returns the writer.
    pub fn build(self) -> Result<PackWriter> {
        if self.shard_size == 0 {
            return Err(Error::Config("shard size must be at least 1 byte".into()));
        }
        if !self.classes.is_empty() && !self.schema.labels {
            return Err(Error::Config("class names given but the schema has no labels".into()));
        }
        // A reader refuses a manifest naming a class twice: refuse it here,
        // before anything is written, rather than write what cannot open.
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = self.classes.iter().find(|c| !seen.insert(c.as_str())) {
            return Err(Error::Config(format!("class name {dup:?} is given twice")));
        }
        if let Payload::Multipart { parts } = &self.schema.payload
            && parts.is_empty()
        {
            return Err(Error::Config("a multipart schema needs at least one part".into()));
        }
        if let Payload::Tokens { dtype, eot, vocab_size, .. } = &self.schema.payload {
            if !self.schema.labels || !self.classes.is_empty() {
                return Err(Error::Config("a token schema has labels (document ends) and no classes".into()));
            }
            if eot >= vocab_size || u64::from(*vocab_size) > 1 << (8 * dtype.width()) {
                return Err(Error::Config(format!(
                    "token schema: eot {eot} and vocabulary {vocab_size} do not fit {dtype:?} ids"
                )));
            }
        }
        let lock = lock_dir(&self.dir)?;
        let Prepared { generation, old } = prepare_dir(&self.dir, self.overwrite)?;
        Ok(PackWriter {
            cfg: self,
            generation,
            old,
            started: 0,
            finished: false,
            current: None,
            closing: None,
            shards: Vec::new(),
            _lock: lock,
        })
    }
}

/// Creates `dir` if missing and takes the exclusive lock that keeps a
/// second writer (every rank running the same pack command, say) from
/// interleaving its shards with this one's: the second fails at once,
/// naming the first's pid, before it deletes or writes anything.
fn lock_dir(dir: &Path) -> Result<File> {
    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            let who = if holder.is_empty() { "another process".to_owned() } else { format!("pid {holder}") };
            return Err(Error::Config(format!(
                "output directory {} is in use by {who}, which is packing into it; \
                 wait for it or choose another directory",
                dir.display()
            )));
        }
        Err(fs::TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
    }
    let pid = std::process::id().to_string();
    file.set_len(0)
        .and_then(|()| file.write_all_at(pid.as_bytes(), 0))
        .map_err(|e| Error::io("write", &path, e))?;
    Ok(file)
}

/// What [`prepare_dir`] found: the generation the new shards get and the
/// files of the dataset being replaced.
#[derive(Debug)]
struct Prepared {
    generation: u32,
    /// Removed once the new manifest is in place.
    old: Vec<PathBuf>,
}

/// Checks `dir` (creating it if missing) and clears what no dataset needs,
/// refusing to touch anything that is not ours. A previous dataset stays:
/// its manifest and the shards it lists are kept until the new manifest
/// replaces it. Temporary files, and shards no readable manifest lists
/// (what a crash leaves), are removed now. When the manifest cannot be
/// read (damaged, a newer version), every shard is kept until the switch,
/// since which ones it needs cannot be told.
fn prepare_dir(dir: &Path, overwrite: bool) -> Result<Prepared> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
            return Ok(Prepared { generation: 0, old: Vec::new() });
        }
        Err(e) => return Err(Error::io("open directory", dir, e)),
    };
    let mut ours = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        match name.to_str() {
            Some(LOCK_FILE) => {}
            // Replaced (or removed) when the new dataset is complete; until
            // then it still serves the old one.
            Some(KEY_INDEX_FILE) => {}
            Some(n) if n == KEY_INDEX_TMP => {
                let path = entry.path();
                fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
            }
            Some(n) if is_pack_name(n) && entry.file_type().is_ok_and(|t| t.is_file()) => {
                if !is_pack_file(&entry.path(), n) {
                    return Err(Error::Config(format!(
                        "output directory {} holds {n:?}, which has a ringfeed file's name but \
                         not its contents; it is left alone: choose an empty or new directory",
                        dir.display()
                    )));
                }
                ours.push(n.to_owned());
            }
            _ => {
                return Err(Error::Config(format!(
                    "output directory {} holds {:?}, which is not part of a ringfeed dataset; \
                     choose an empty or new directory",
                    dir.display(),
                    name
                )));
            }
        }
    }
    if ours.is_empty() {
        return Ok(Prepared { generation: 0, old: Vec::new() });
    }
    if !overwrite {
        return Err(Error::Config(format!("output directory {} already holds a dataset", dir.display())));
    }
    // `None`: keep every shard (no manifest we can read says which matter).
    let listed: Option<HashSet<String>> = if ours.iter().any(|n| n == MANIFEST_FILE) {
        Manifest::load(dir).ok().map(|m| m.shards.into_iter().map(|s| s.file).collect())
    } else {
        Some(HashSet::new())
    };
    let mut kept = Vec::new();
    for name in ours {
        let stale = name.ends_with(".tmp")
            || (name != MANIFEST_FILE && listed.as_ref().is_some_and(|l| !l.contains(&name)));
        if stale {
            let path = dir.join(&name);
            fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
        } else {
            kept.push(name);
        }
    }
    // The first generation none of the kept files uses, so no new name
    // can land on an old file.
    let used: Vec<u32> = kept.iter().filter_map(|n| shard_generation(n)).collect();
    let mut generation = 0;
    while used.contains(&generation) {
        generation += 1;
    }
    // The manifest itself is replaced by the rename, not removed.
    let old = kept.iter().filter(|n| *n != MANIFEST_FILE).map(|n| dir.join(n)).collect();
    Ok(Prepared { generation, old })
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("fsync directory", dir, e))
}

/// Writes a pack dataset record by record.
///
/// ```
/// use ringfeed_pack::{Dataset, PackWriter, Payload, Schema};
/// # fn main() -> ringfeed_pack::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let schema = Schema { payload: Payload::Text, labels: true, keys: false };
/// let mut w = PackWriter::builder(dir.path()).schema(schema).build()?;
/// w.push(b"hello", 1, None)?;
/// w.push(b"world", 0, None)?;
/// let manifest = w.finish()?;
/// assert_eq!(manifest.records, 2);
/// let ds = Dataset::open(dir.path())?;
/// assert_eq!(ds.record(1)?.payload, b"world");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct PackWriter {
    cfg: PackWriterBuilder,
    current: Option<ShardWriter>,
    /// The previous shard, being finished (index, fsync) on its
    /// own thread while the next one fills; at most one at a time.
    closing: Option<(u64, thread::JoinHandle<Result<ShardInfo>>)>,
    shards: Vec<ShardInfo>,
    /// Generation of this writer's shard names (see the module docs).
    generation: u32,
    /// Files of the dataset being replaced, removed after the switch.
    old: Vec<PathBuf>,
    /// Shards created so far (finished or not): the files to remove if
    /// the writer is dropped unfinished.
    started: usize,
    /// The manifest is in place: the new dataset is the dataset.
    finished: bool,
    /// The output directory's lock, released when the writer is dropped.
    _lock: File,
}

impl PackWriter {
    /// Starts configuring a writer into directory `dir` (created if
    /// missing).
    pub fn builder(dir: impl AsRef<Path>) -> PackWriterBuilder {
        PackWriterBuilder {
            dir: dir.as_ref().to_path_buf(),
            shard_size: DEFAULT_SHARD_SIZE,
            schema: Schema { payload: Payload::Bytes, labels: false, keys: false },
            classes: Vec::new(),
            source: "api".into(),
            overwrite: true,
        }
    }

    /// Appends one record. `label` is ignored unless the schema has labels
    /// and must fit in an `i32`; `key` is stored when the schema has keys.
    pub fn push(&mut self, payload: &[u8], label: i64, key: Option<&str>) -> Result<()> {
        self.push_checksummed(payload, crc32c::crc32c(payload), label, key)
    }

    /// [`push`](Self::push) for a payload whose CRC32C the caller computed.
    pub(crate) fn push_checksummed(
        &mut self,
        payload: &[u8],
        crc: u32,
        label: i64,
        key: Option<&str>,
    ) -> Result<()> {
        debug_assert_eq!(crc, crc32c::crc32c(payload));
        let len = payload.len() as u64;
        let key = if self.cfg.schema.keys { key.unwrap_or("") } else { "" };
        let what = || key_or_index(key, self.record_count());
        if len > MAX_RECORD_LEN {
            return Err(Error::Config(format!(
                "record {} is {len} bytes; the format's limit is {MAX_RECORD_LEN}",
                what()
            )));
        }
        if let Payload::Tokens { dtype, vocab_size, .. } = &self.cfg.schema.payload {
            if !len.is_multiple_of(dtype.width() as u64) || !(0..=1).contains(&label) {
                return Err(Error::Config(format!(
                    "token record {}: {len} bytes of {dtype:?} ids with label {label} (0 or 1: whether it ends a \
                     document)",
                    what()
                )));
            }
            let id = |b: &[u8]| match dtype {
                TokenDtype::U16 => u32::from(u16::from_le_bytes([b[0], b[1]])),
                TokenDtype::U32 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            };
            if let Some(bad) = payload.chunks_exact(dtype.width()).map(id).find(|&t| t >= *vocab_size) {
                return Err(Error::Config(format!(
                    "token record {}: id {bad} is past the vocabulary of {vocab_size} ids",
                    what()
                )));
            }
        }
        let label = if self.cfg.schema.labels {
            i32::try_from(label).map_err(|_| {
                Error::Config(format!("label {label} of record {} does not fit in 32 bits", what()))
            })?
        } else {
            0
        };
        // With named classes a label indexes them (a reader refuses others).
        let classes = self.cfg.classes.len();
        if classes > 0 && usize::try_from(label).map_or(true, |l| l >= classes) {
            return Err(Error::Config(format!(
                "label {label} of record {} is outside the {classes} classes (0..{classes})",
                what()
            )));
        }
        if let Some(shard) = &self.current
            && shard.record_count() > 0
            && (shard.data_len + len > self.cfg.shard_size
                || shard.keys.len() as u64 + key.len() as u64 > u64::from(u32::MAX))
        {
            self.close_shard()?;
        }
        if self.current.is_none() {
            let name = shard_file_name(self.generation, self.started);
            self.started += 1;
            self.current = Some(ShardWriter::create(&self.cfg.dir, name, self.cfg.schema.keys)?);
        }
        let shard = self.current.as_mut().expect("shard opened above");
        shard.push(payload, crc, label, key)
    }

    fn record_count(&self) -> u64 {
        self.shards.iter().map(|s| s.records).sum::<u64>()
            + self.closing.as_ref().map_or(0, |c| c.0)
            + self.current.as_ref().map_or(0, |s| s.record_count())
    }

    /// Hands the current shard to a closing thread, so that waiting for its
    /// fsync overlaps with writing the next shard.
    fn close_shard(&mut self) -> Result<()> {
        self.join_closing()?;
        if let Some(shard) = self.current.take() {
            let records = shard.record_count();
            self.closing = Some((records, thread::spawn(move || shard.finish())));
        }
        Ok(())
    }

    fn join_closing(&mut self) -> Result<()> {
        if let Some((_, handle)) = self.closing.take() {
            let info =
                handle.join().map_err(|_| Error::Config("the shard closing thread panicked".into()))??;
            self.shards.push(info);
        }
        Ok(())
    }

    /// Closes the last shard and writes the manifest, making the dataset
    /// visible; the dataset it replaces (if any) stays whole until that
    /// moment, and its files are removed after it. Returns the manifest
    /// written.
    pub fn finish(mut self) -> Result<Manifest> {
        self.close_shard()?;
        self.join_closing()?;
        let dir = self.cfg.dir.clone();
        // Shards stay hidden until now, so that a crash (or a `verify` of
        // the old dataset meanwhile) never meets a visible shard no
        // manifest lists, but for the moment these renames take.
        for n in 0..self.started {
            let name = shard_file_name(self.generation, n);
            let (tmp, dst) = (dir.join(format!(".{name}.tmp")), dir.join(&name));
            fs::rename(&tmp, &dst).map_err(|e| Error::io("rename", &dst, e))?;
        }
        sync_dir(&dir)?;
        let manifest = Manifest::new(
            &self.cfg.source,
            self.cfg.schema.clone(),
            std::mem::take(&mut self.cfg.classes),
            std::mem::take(&mut self.shards),
        );
        let tmp = dir.join(manifest_tmp_name());
        let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(&manifest.to_bytes()).map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        let dst = dir.join(MANIFEST_FILE);
        // The switch: from here on the directory holds the new dataset.
        fs::rename(&tmp, &dst).map_err(|e| Error::io("rename", &dst, e))?;
        self.finished = true;
        sync_dir(&dir)?;
        // Best effort: the new dataset is complete whatever happens here,
        // and a leftover old shard (no manifest lists it) is removed by
        // the next pack into this directory.
        for path in std::mem::take(&mut self.old) {
            let _ = fs::remove_file(path);
        }
        let _ = sync_dir(&dir);
        if manifest.schema.keys {
            // Key lookups work without it (the index is then built at open),
            // so a failure here does not undo a complete dataset.
            let indexed = Dataset::open(&dir).and_then(|d| KeyIndex::build(&d)?.write(&d));
            if let Err(e) = indexed {
                log::warn!(
                    "{}: the key index was not written ({e}); readers build it at open",
                    dir.display()
                );
            }
        } else {
            // An index left by an earlier pack with keys: stale, and ignored
            // by readers, but no longer this directory's.
            let _ = fs::remove_file(dir.join(KEY_INDEX_FILE));
        }
        Ok(manifest)
    }
}

impl Drop for PackWriter {
    /// A writer dropped without [`finish`](PackWriter::finish) (an error, a
    /// panic) still waits for its closing thread, so no file in the
    /// directory changes after the drop returns, and then removes every
    /// file it created: the directory holds what it held before (the
    /// previous dataset, if any, intact).
    fn drop(&mut self) {
        if let Some((_, handle)) = self.closing.take() {
            let _ = handle.join();
        }
        drop(self.current.take());
        if self.finished {
            return;
        }
        let dir = &self.cfg.dir;
        for n in 0..self.started {
            let name = shard_file_name(self.generation, n);
            let _ = fs::remove_file(dir.join(format!(".{name}.tmp")));
            let _ = fs::remove_file(dir.join(name));
        }
        let _ = fs::remove_file(dir.join(manifest_tmp_name()));
    }
}

fn key_or_index(key: &str, index: u64) -> String {
    if key.is_empty() { format!("#{index}") } else { format!("{key:?}") }
}

/// One shard being written.
#[derive(Debug)]
struct ShardWriter {
    tmp: PathBuf,
    name: String,
    out: BufWriter<File>,
    has_keys: bool,
    data_len: u64,
    /// CRC32C of every byte after the header, in file order.
    body_crc: u32,
    /// Bytes written so far, header placeholder included.
    written: u64,
    /// Write-back has been started for bytes before this offset.
    writeback_from: u64,
    index: Vec<u8>,
    keys: Vec<u8>,
}

impl ShardWriter {
    fn create(dir: &Path, name: String, has_keys: bool) -> Result<Self> {
        let tmp = dir.join(format!(".{name}.tmp"));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
        // Placeholder; the real header is written once the layout is known.
        out.write_all(&[0u8; HEADER_LEN as usize]).map_err(|e| Error::io("write", &tmp, e))?;
        Ok(ShardWriter {
            tmp,
            name,
            out,
            has_keys,
            data_len: 0,
            body_crc: 0,
            written: HEADER_LEN,
            writeback_from: 0,
            index: Vec::new(),
            keys: Vec::new(),
        })
    }

    fn record_count(&self) -> u64 {
        self.index.len() as u64 / ENTRY_LEN
    }

    fn push(&mut self, payload: &[u8], crc: u32, label: i32, key: &str) -> Result<()> {
        let offset = HEADER_LEN + self.data_len;
        self.write(payload, offset)?;
        self.keys.extend_from_slice(key.as_bytes());
        let entry =
            Entry { offset, len: payload.len() as u32, crc32c: crc, label, key_end: self.keys.len() as u32 };
        entry.encode_into(&mut self.index);
        self.data_len += payload.len() as u64;
        Ok(())
    }

    fn write(&mut self, bytes: &[u8], offset: u64) -> Result<()> {
        self.body_crc = crc32c::crc32c_append(self.body_crc, bytes);
        self.out.write_all(bytes).map_err(|e| Error::io_at("write", &self.tmp, offset, e))?;
        self.written += bytes.len() as u64;
        if self.written - self.writeback_from >= WRITEBACK_EVERY {
            // Only what left the buffer is in the page cache; a failure here
            // is a missed optimisation, and the closing fsync reports errors.
            let upto = self.written - self.out.buffer().len() as u64;
            let _ = crate::sys::start_writeback(
                self.out.get_ref(),
                self.writeback_from,
                upto - self.writeback_from,
            );
            self.writeback_from = upto;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<ShardInfo> {
        let count = self.record_count();
        let header = Header::layout(count, self.data_len, self.keys.len() as u64, self.has_keys);
        let data_end = header.data_offset + header.data_len;
        let pad = vec![0u8; (header.index_offset - data_end) as usize];
        self.write(&pad, data_end)?;
        let index = std::mem::take(&mut self.index);
        let keys = std::mem::take(&mut self.keys);
        self.write(&index, header.index_offset)?;
        self.write(&keys, header.keys_offset)?;
        let header_bytes = header.encode();
        let mut meta_crc = crc32c::crc32c(&header_bytes);
        meta_crc = crc32c::crc32c_append(meta_crc, &index);
        meta_crc = crc32c::crc32c_append(meta_crc, &keys);
        let footer = Footer { record_count: count, checksum: meta_crc }.encode();
        self.write(&footer, header.footer_offset)?;
        let file = self.out.into_inner().map_err(|e| Error::io("write", &self.tmp, e.into_error()))?;
        file.write_all_at(&header_bytes, 0).map_err(|e| Error::io_at("write", &self.tmp, 0, e))?;
        file.sync_all().map_err(|e| Error::io("fsync", &self.tmp, e))?;
        drop(file);
        let body_len = header.file_len() - HEADER_LEN;
        Ok(ShardInfo {
            file: self.name,
            records: count,
            bytes: header.file_len(),
            payload_bytes: self.data_len,
            index_crc32c: meta_crc,
            file_crc32c: crc32c::crc32c_combine(
                crc32c::crc32c(&header_bytes),
                self.body_crc,
                body_len as usize,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_carry_their_generation() {
        for (generation, n) in [(0, 0), (0, 123_456), (1, 7), (12, 0)] {
            let name = shard_file_name(generation, n);
            assert_eq!(shard_generation(&name), Some(generation), "{name}");
            assert_eq!(shard_generation(&format!(".{name}.tmp")), Some(generation), "{name}");
            assert!(is_pack_name(&name));
        }
        assert_eq!(shard_file_name(0, 3), "shard-00003.rfp");
        assert_eq!(shard_file_name(1, 3), "shard-g1-00003.rfp");
        for name in [
            "shard-notes.rfp",
            "shard-.rfp",
            "shard-g-00000.rfp",
            "shard-g1-.rfp",
            "shard-g1x-0.rfp",
            "shard-00000.rfp.bak",
            "xshard-00000.rfp",
            ".shard-00000.rfp",
            "shard-00000.rfp.tmp",
        ] {
            assert_eq!(shard_generation(name), None, "{name}");
            assert!(!is_pack_name(name), "{name}");
        }
    }

    #[test]
    fn classes_twice_and_labels_outside_them_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Schema { payload: Payload::Bytes, labels: true, keys: false };
        let err = PackWriter::builder(dir.path().join("a"))
            .schema(schema.clone())
            .classes(vec!["cat".into(), "dog".into(), "cat".into()])
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("\"cat\" is given twice"), "{err}");
        let mut w = PackWriter::builder(dir.path().join("b"))
            .schema(schema)
            .classes(vec!["cat".into(), "dog".into()])
            .build()
            .unwrap();
        w.push(b"ok", 1, None).unwrap();
        for bad in [2, -1] {
            let err = w.push(b"x", bad, None).unwrap_err();
            assert!(err.to_string().contains("outside the 2 classes"), "{err}");
        }
        w.finish().unwrap();
        assert_eq!(crate::Dataset::open(dir.path().join("b")).unwrap().len(), 1);
    }
}
