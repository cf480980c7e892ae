//! The local chunk cache: aligned chunks of shards kept as files on local
//! disk, bounded in bytes (least recently used deleted first), reused
//! after a restart, and checked on every read.
//!
//! A chunk file is the chunk's bytes, a CRC32C per 32 KiB block, and a
//! trailer (magic, the table's own CRC, the length). A read checks the
//! blocks it touches, so a 5 KB record costs at most two block checks,
//! not a whole chunk's. A chunk is written to a temporary name and renamed:
//! a crash leaves a whole chunk or none (leftover temporaries are deleted
//! on open). A file that fails a check is deleted and fetched again.
//!
//! One process per directory (an exclusive lock on `DIR/.lock`); within a
//! process, datasets opened with the same directory share one cache.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::error::{Error, Result};

/// Checksummed unit within a chunk.
const BLOCK: u64 = 32 << 10;
const MAGIC: &[u8; 4] = b"RFC1";
const TRAILER: u64 = 16;
/// Chunk files kept open at once.
const MAX_OPEN: usize = 256;

/// Caches open in this process, by directory.
static OPEN: Mutex<Vec<(PathBuf, Weak<Cache>)>> = Mutex::new(Vec::new());

/// A chunk cache directory.
#[derive(Debug)]
pub(crate) struct Cache {
    root: PathBuf,
    budget: u64,
    state: Mutex<State>,
    /// Holds the directory's lock for as long as the cache lives.
    _lock: File,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Use order: tick → key.
    order: BTreeMap<u64, String>,
    tick: u64,
    bytes: u64,
    /// Keys whose file is open, least recently opened first.
    open: VecDeque<String>,
    temp: u64,
}

#[derive(Debug)]
struct Entry {
    size: u64,
    tick: u64,
    file: Option<Arc<ChunkFile>>,
}

/// An open, validated chunk file.
#[derive(Debug)]
pub(crate) struct ChunkFile {
    file: File,
    len: u64,
    crcs: Vec<u32>,
}

/// A cached chunk failed its checks.
#[derive(Debug)]
pub(crate) struct Damaged;

impl Cache {
    /// Opens (creating) the cache in `root`, or the one this process has
    /// open there already.
    pub(crate) fn open(root: &Path, budget: u64) -> Result<Arc<Cache>> {
        std::fs::create_dir_all(root).map_err(|e| Error::io("create cache directory", root, e))?;
        let root = root.canonicalize().map_err(|e| Error::io("resolve cache directory", root, e))?;
        let mut open = OPEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.retain(|(_, w)| w.strong_count() > 0);
        if let Some(c) = open.iter().find(|(p, _)| *p == root).and_then(|(_, w)| w.upgrade()) {
            return Ok(c);
        }
        let lock_path = root.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("open", &lock_path, e))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => Error::Config(format!(
                "cache directory {} is in use by another process: give each process its own \
                 (for example one per local rank)",
                root.display()
            )),
            std::fs::TryLockError::Error(e) => Error::io("lock", &lock_path, e),
        })?;
        let cache =
            Arc::new(Cache { state: Mutex::new(scan(&root)?), root: root.clone(), budget, _lock: lock });
        cache.evict(None);
        open.push((root, Arc::downgrade(&cache)));
        Ok(cache)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Bytes of chunk files held now.
    pub(crate) fn bytes(&self) -> u64 {
        self.state().bytes
    }

    /// The chunk `key` (`namespace/name`), opened and validated, if it is
    /// cached; a damaged file is deleted and reported as absent (and
    /// counted in `damaged`).
    pub(crate) fn get(&self, key: &str, damaged: &mut u64) -> Option<Arc<ChunkFile>> {
        {
            let mut s = self.state();
            let s = &mut *s;
            let entry = s.entries.get_mut(key)?;
            s.order.remove(&entry.tick);
            s.tick += 1;
            entry.tick = s.tick;
            s.order.insert(s.tick, key.to_string());
            if let Some(f) = &entry.file {
                return Some(f.clone());
            }
        }
        // Opened without the lock: the first read of a chunk file reads its
        // table from disk.
        match ChunkFile::open(&self.root.join(key)) {
            Ok(file) => {
                let file = Arc::new(file);
                let mut s = self.state();
                if let Some(entry) = s.entries.get_mut(key) {
                    entry.file = Some(file.clone());
                    s.open.push_back(key.to_string());
                    while s.open.len() > MAX_OPEN {
                        if let Some(old) = s.open.pop_front()
                            && let Some(e) = s.entries.get_mut(&old)
                        {
                            e.file = None;
                        }
                    }
                }
                Some(file)
            }
            Err(e) => {
                log::warn!("cache chunk {key} is unusable ({e}); fetching it again");
                *damaged += 1;
                self.remove(key);
                None
            }
        }
    }

    /// Forgets and deletes chunk `key`.
    pub(crate) fn remove(&self, key: &str) {
        let mut s = self.state();
        if let Some(e) = s.entries.remove(key) {
            s.order.remove(&e.tick);
            s.bytes -= e.size;
            let _ = std::fs::remove_file(self.root.join(key));
        }
    }

    /// Stores chunk `key` with `data`, then deletes least recently used
    /// chunks until the cache is within its bound. A failure to write
    /// (a full disk) leaves the cache without the chunk, and is returned.
    pub(crate) fn put(&self, key: &str, data: &[u8]) -> io::Result<()> {
        let path = self.root.join(key);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temp = {
            let mut s = self.state();
            s.temp += 1;
            path.with_extension(format!("tmp{}", s.temp))
        };
        let written = write_chunk(&temp, data).and_then(|size| std::fs::rename(&temp, &path).map(|()| size));
        let size = match written {
            Ok(size) => size,
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                return Err(e);
            }
        };
        {
            let mut s = self.state();
            let s = &mut *s;
            s.tick += 1;
            let tick = s.tick;
            if let Some(old) = s.entries.insert(key.to_string(), Entry { size, tick, file: None }) {
                s.order.remove(&old.tick);
                s.bytes -= old.size;
            }
            s.order.insert(tick, key.to_string());
            s.bytes += size;
        }
        self.evict(Some(key));
        Ok(())
    }

    /// Deletes least recently used chunks (never `keep`) until within the
    /// bound.
    fn evict(&self, keep: Option<&str>) {
        let mut s = self.state();
        while s.bytes > self.budget {
            let victim = s.order.iter().map(|(t, k)| (*t, k.clone())).find(|(_, k)| Some(k.as_str()) != keep);
            let Some((tick, key)) = victim else { break };
            s.order.remove(&tick);
            if let Some(e) = s.entries.remove(&key) {
                s.bytes -= e.size;
            }
            // An open handle keeps reading the unlinked file.
            let _ = std::fs::remove_file(self.root.join(&key));
        }
    }
}

/// Rebuilds the index from the directory: every chunk file, oldest
/// modified first in the use order; temporaries of a crashed writer are
/// deleted.
fn scan(root: &Path) -> Result<State> {
    let mut found = Vec::new();
    let dirs = std::fs::read_dir(root).map_err(|e| Error::io("read cache directory", root, e))?;
    for dir in dirs.flatten() {
        if !dir.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(files) = std::fs::read_dir(dir.path()) else { continue };
        for f in files.flatten() {
            let name = f.file_name();
            let (Some(ns), Some(name)) = (dir.file_name().to_str().map(str::to_string), name.to_str()) else {
                continue;
            };
            if name.contains(".tmp") {
                let _ = std::fs::remove_file(f.path());
                continue;
            }
            let Ok(meta) = f.metadata() else { continue };
            if meta.is_file() {
                found.push((meta.modified().ok(), format!("{ns}/{name}"), meta.len()));
            }
        }
    }
    found.sort();
    let mut s = State::default();
    for (_, key, size) in found {
        s.tick += 1;
        s.order.insert(s.tick, key.clone());
        s.entries.insert(key, Entry { size, tick: s.tick, file: None });
        s.bytes += size;
    }
    Ok(s)
}

/// Writes a chunk file; returns its size.
fn write_chunk(path: &Path, data: &[u8]) -> io::Result<u64> {
    let mut table = Vec::with_capacity(data.len().div_ceil(BLOCK as usize) * 4);
    for block in data.chunks(BLOCK as usize) {
        table.extend_from_slice(&crc32c::crc32c(block).to_le_bytes());
    }
    let mut trailer = Vec::with_capacity(TRAILER as usize);
    trailer.extend_from_slice(MAGIC);
    trailer.extend_from_slice(&crc32c::crc32c(&table).to_le_bytes());
    trailer.extend_from_slice(&(data.len() as u64).to_le_bytes());
    let mut f = File::create(path)?;
    f.write_all(data)?;
    f.write_all(&table)?;
    f.write_all(&trailer)?;
    Ok((data.len() + table.len() + trailer.len()) as u64)
}

impl ChunkFile {
    fn open(path: &Path) -> io::Result<ChunkFile> {
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        if size < TRAILER {
            return Err(bad("shorter than its trailer"));
        }
        let mut trailer = [0u8; TRAILER as usize];
        file.read_exact_at(&mut trailer, size - TRAILER)?;
        if &trailer[..4] != MAGIC {
            return Err(bad("no chunk trailer"));
        }
        let table_crc = u32::from_le_bytes(trailer[4..8].try_into().unwrap_or_default());
        let len = u64::from_le_bytes(trailer[8..16].try_into().unwrap_or_default());
        let blocks = len.div_ceil(BLOCK);
        if len.checked_add(blocks * 4 + TRAILER) != Some(size) {
            return Err(bad("its length does not match its size"));
        }
        let mut table = vec![0u8; (blocks * 4) as usize];
        file.read_exact_at(&mut table, len)?;
        if crc32c::crc32c(&table) != table_crc {
            return Err(bad("its checksum table is damaged"));
        }
        let crcs = table.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok(ChunkFile { file, len, crcs })
    }

    /// Copies `dst.len()` bytes at `offset` of the chunk into `dst`
    /// without checking them: for a caller that checks every byte itself
    /// (the loader's record CRCs) and invalidates the chunk on a mismatch.
    pub(crate) fn read_into_unchecked(&self, offset: u64, dst: &mut [u8]) -> Result<(), Damaged> {
        offset.checked_add(dst.len() as u64).filter(|&e| e <= self.len).ok_or(Damaged)?;
        self.file.read_exact_at(dst, offset).map_err(|_| Damaged)
    }

    /// Copies `dst.len()` bytes at `offset` of the chunk into `dst`,
    /// checking every block they touch. Whole blocks are read straight
    /// into `dst`; only the partial blocks at either end go through a
    /// block-sized buffer.
    pub(crate) fn read_into(&self, offset: u64, dst: &mut [u8]) -> Result<(), Damaged> {
        let end = offset.checked_add(dst.len() as u64).filter(|&e| e <= self.len).ok_or(Damaged)?;
        let mut at = offset;
        while at < end {
            let block = at / BLOCK;
            let (start, stop) = (block * BLOCK, ((block + 1) * BLOCK).min(self.len));
            let crc = *self.crcs.get(block as usize).ok_or(Damaged)?;
            let out = &mut dst[(at - offset) as usize..];
            if at == start && stop <= end {
                // Whole blocks from here: every block that ends by `end`,
                // in one read.
                let mut whole_end = stop;
                while whole_end < end && (whole_end + BLOCK).min(self.len) <= end {
                    whole_end = (whole_end + BLOCK).min(self.len);
                }
                let n = (whole_end - at) as usize;
                self.file.read_exact_at(&mut out[..n], at).map_err(|_| Damaged)?;
                for (i, piece) in out[..n].chunks(BLOCK as usize).enumerate() {
                    if self.crcs.get(block as usize + i) != Some(&crc32c::crc32c(piece)) {
                        return Err(Damaged);
                    }
                }
                at += n as u64;
                continue;
            }
            let mut buf = vec![0u8; (stop - start) as usize];
            self.file.read_exact_at(&mut buf, start).map_err(|_| Damaged)?;
            if crc32c::crc32c(&buf) != crc {
                return Err(Damaged);
            }
            let take = (stop.min(end) - at) as usize;
            let from = (at - start) as usize;
            out[..take].copy_from_slice(&buf[from..from + take]);
            at += take as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[test]
    fn chunks_round_trip_and_damage_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), 1 << 30).unwrap();
        let d = data(100_000, 1);
        cache.put("ns/a.0", &d).unwrap();
        let mut damaged = 0;
        let f = cache.get("ns/a.0", &mut damaged).unwrap();
        let mut out = vec![0u8; 5000];
        f.read_into(40_000, &mut out).unwrap();
        assert_eq!(out, d[40_000..45_000]);
        assert!(f.read_into(99_000, &mut out).is_err(), "past the end");
        // Every mix of whole and partial blocks at either end.
        let b = BLOCK as usize;
        for start in [0, 1, b - 1, b, b + 1, 2 * b, 3 * b - 5, 99_999, 100_000] {
            for len in [0, 1, 100, b - 1, b, b + 1, 2 * b, 2 * b + 7, 70_000, 100_000] {
                if start + len > d.len() {
                    continue;
                }
                let mut got = vec![0u8; len];
                f.read_into(start as u64, &mut got).unwrap();
                assert!(got == d[start..start + len], "{start}+{len}");
            }
        }
        // A flipped bit in a block: that block's reads fail, others pass.
        let path = dir.path().canonicalize().unwrap().join("ns/a.0");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[70_000] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        drop(f);
        cache.state().entries.get_mut("ns/a.0").unwrap().file = None;
        let f = cache.get("ns/a.0", &mut damaged).unwrap();
        assert!(f.read_into(69_000, &mut out).is_err());
        f.read_into(0, &mut out).unwrap();
        assert_eq!(out, d[..5000]);
        // A damaged table: the file is dropped at open.
        let n = bytes.len();
        bytes[n - 20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        cache.state().entries.get_mut("ns/a.0").unwrap().file = None;
        assert!(cache.get("ns/a.0", &mut damaged).is_none());
        assert_eq!(damaged, 1);
        assert!(!path.exists());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn the_bound_evicts_least_recently_used_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let size = 10_000 + 4 + TRAILER; // one block's CRC
        {
            let cache = Cache::open(dir.path(), 3 * size).unwrap();
            for k in 0..3 {
                cache.put(&format!("ns/c.{k}"), &data(10_000, k)).unwrap();
            }
            let mut damaged = 0;
            assert!(cache.get("ns/c.0", &mut damaged).is_some()); // now most recent
            cache.put("ns/c.3", &data(10_000, 3)).unwrap();
            assert!(cache.get("ns/c.1", &mut damaged).is_none(), "the least recently used went");
            assert!(cache.get("ns/c.0", &mut damaged).is_some());
            assert_eq!(cache.bytes(), 3 * size);
            // A second open in this process shares the cache.
            let again = Cache::open(dir.path(), 3 * size).unwrap();
            assert!(Arc::ptr_eq(&cache, &again));
            // A leftover temporary is deleted by the next open.
            std::fs::write(dir.path().join("ns/c.9.tmp4"), b"x").unwrap();
        }
        let cache = Cache::open(dir.path(), 3 * size).unwrap();
        assert_eq!(cache.bytes(), 3 * size);
        assert!(!dir.path().join("ns/c.9.tmp4").exists());
        let mut damaged = 0;
        let f = cache.get("ns/c.3", &mut damaged).unwrap();
        let mut out = vec![0u8; 10_000];
        f.read_into(0, &mut out).unwrap();
        assert_eq!(out, data(10_000, 3));
        // A smaller bound on reopen evicts down to it.
        drop((f, cache));
        let cache = Cache::open(dir.path(), size).unwrap();
        assert_eq!(cache.bytes(), size);
    }

    #[test]
    fn another_process_cannot_share_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _cache = Cache::open(dir.path(), 1 << 20).unwrap();
        // Another open file description of the lock conflicts as another
        // process's would.
        let other = File::options().write(true).open(dir.path().join(".lock")).unwrap();
        assert!(other.try_lock().is_err());
    }
}
