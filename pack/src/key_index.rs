//! Key → record lookups: a sorted table of 64-bit key hashes, persisted
//! beside the shards at pack time (`key-index.rfk`, see docs/FORMAT.md) or
//! built from the shards' key tables at open.
//!
//! The table only narrows the search: every candidate is confirmed against
//! the key stored in its shard (whose key table the [`Dataset`] already
//! holds in memory, checked by the shard's footer checksum), so a hash
//! collision or a damaged index can never return the wrong record; at
//! worst a damaged index answers "not found", and a damaged file is
//! refused by its own checksum before that.
//!
//! The file is bound to its dataset by a checksum over the shards' index
//! checksums and the record count: an index left from a previous pack
//! into the same directory is stale and ignored, and [`KeyIndex::load_or_build`] builds
//! the table from the shards instead.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::reader::Dataset;

/// The key index's file name in a dataset directory.
pub const KEY_INDEX_FILE: &str = "key-index.rfk";

/// Where [`KeyIndex::write`] puts the file before renaming it.
pub(crate) const KEY_INDEX_TMP: &str = ".key-index.rfk.tmp";

const MAGIC: &[u8; 8] = b"RFKEYIDX";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 32;
const ENTRY_LEN: usize = 16;

/// Memory of a loaded or built key index, per record: a 64-bit hash and a
/// 64-bit record index (the keys themselves stay in the shards' key
/// tables, which an open [`Dataset`] holds anyway).
pub const KEY_INDEX_BYTES_PER_RECORD: usize = ENTRY_LEN;

/// Where a [`KeyIndex`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyIndexOrigin {
    /// Read from the dataset's `key-index.rfk`.
    File,
    /// Built from the shards' key tables: the dataset has no index file,
    /// or it belongs to another pack of the directory (stale).
    Built,
}

/// Sorted `(hash, record index)` pairs of every key of a dataset.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use ringfeed_pack::{Dataset, KeyIndex, PackWriter, Payload, Schema};
/// let dir = tempfile::tempdir()?;
/// let schema = Schema { payload: Payload::Text, labels: false, keys: true };
/// let mut writer = PackWriter::builder(dir.path()).schema(schema).build()?;
/// writer.push(b"first", 0, Some("a.txt"))?;
/// writer.push(b"second", 0, Some("b.txt"))?;
/// writer.finish()?; // also writes key-index.rfk
///
/// let dataset = Dataset::open(dir.path())?;
/// let (index, _origin) = KeyIndex::load_or_build(&dataset)?;
/// assert_eq!(index.find(&dataset, "b.txt")?, Some(1));
/// assert_eq!(index.find(&dataset, "c.txt")?, None);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIndex {
    /// Sorted by hash, then by record index.
    entries: Vec<(u64, u64)>,
}

impl KeyIndex {
    /// Builds the index from the shards' key tables (in memory already):
    /// one hash per record, then a sort.
    pub fn build(dataset: &Dataset) -> Result<KeyIndex> {
        let total = usize::try_from(dataset.len())
            .map_err(|_| Error::Config("too many records for a key index on this platform".into()))?;
        let mut entries = Vec::new();
        entries.try_reserve_exact(total).map_err(|e| Error::Memory {
            what: format!("a key index of {total} records"),
            source: std::io::Error::other(e),
        })?;
        let mut global = 0u64;
        for shard in dataset.shards() {
            for i in 0..shard.len() {
                entries.push((key_hash(shard.key(i)?.as_bytes()), global));
                global += 1;
            }
        }
        entries.sort_unstable();
        Ok(KeyIndex { entries })
    }

    /// The index of `dataset`'s `key-index.rfk` when it is intact and
    /// belongs to this dataset; otherwise one [built](Self::build) from the
    /// shards. A file that claims to be this dataset's index (its binding
    /// matches) but fails its checksum is an [`Error::Corrupt`].
    pub fn load_or_build(dataset: &Dataset) -> Result<(KeyIndex, KeyIndexOrigin)> {
        match Self::load(dataset)? {
            Some(index) => Ok((index, KeyIndexOrigin::File)),
            None => Ok((Self::build(dataset)?, KeyIndexOrigin::Built)),
        }
    }

    /// The dataset's `key-index.rfk`: `None` when it is missing or stale
    /// (written for another pack of the directory).
    pub fn load(dataset: &Dataset) -> Result<Option<KeyIndex>> {
        let path = dataset.dir().join(KEY_INDEX_FILE);
        let file = match crate::sys::open_regular(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let mut header = [0u8; HEADER_LEN];
        if file.read_exact_at(&mut header, 0).is_err() {
            return Err(Error::corrupt(&path, 0, "shorter than the key index header"));
        }
        let h =
            Header::decode(&header).ok_or_else(|| Error::corrupt(&path, 0, "not a ringfeed key index"))?;
        if h.version != VERSION {
            return Err(Error::Unsupported {
                path,
                reason: format!("key index version {} (this build reads {VERSION})", h.version),
            });
        }
        if h.records != dataset.len() || h.binding != binding(dataset) {
            return Ok(None); // stale: left by an earlier pack of this directory
        }
        let len = usize::try_from(h.records)
            .ok()
            .and_then(|n| n.checked_mul(ENTRY_LEN))
            .ok_or_else(|| Error::corrupt(&path, 16, "record count overflows"))?;
        let file_len = file.metadata().map_err(|e| Error::io("stat", &path, e))?.len();
        if file_len != (HEADER_LEN + len) as u64 {
            return Err(Error::corrupt(
                &path,
                0,
                format!("{file_len} bytes where {} records need {}", h.records, HEADER_LEN + len),
            ));
        }
        let mut body = Vec::new();
        body.try_reserve_exact(len).map_err(|e| Error::Memory {
            what: format!("a key index of {len} bytes"),
            source: std::io::Error::other(e),
        })?;
        body.resize(len, 0);
        file.read_exact_at(&mut body, HEADER_LEN as u64).map_err(|e| Error::io_at("read", &path, 32, e))?;
        if crc32c::crc32c(&body) != h.entries_crc {
            return Err(Error::corrupt(&path, HEADER_LEN as u64, "key index entries fail their checksum"));
        }
        let entries: Vec<(u64, u64)> =
            body.chunks_exact(ENTRY_LEN).map(|e| (le64(&e[..8]), le64(&e[8..]))).collect();
        if entries.windows(2).any(|w| w[0] > w[1]) || entries.iter().any(|&(_, i)| i >= dataset.len()) {
            return Err(Error::corrupt(&path, HEADER_LEN as u64, "key index entries out of order or range"));
        }
        Ok(Some(KeyIndex { entries }))
    }

    /// Writes `dataset`'s index to `key-index.rfk` in its directory,
    /// crash-safe (a temporary file, synced, renamed): a reader sees the
    /// old file or the new one, never a part.
    pub fn write(&self, dataset: &Dataset) -> Result<PathBuf> {
        let dir = dataset.dir();
        let (tmp, dst) = (dir.join(KEY_INDEX_TMP), dir.join(KEY_INDEX_FILE));
        let mut body = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
        for &(h, i) in &self.entries {
            body.extend_from_slice(&h.to_le_bytes());
            body.extend_from_slice(&i.to_le_bytes());
        }
        let header = Header {
            version: VERSION,
            records: dataset.len(),
            binding: binding(dataset),
            entries_crc: crc32c::crc32c(&body),
        };
        let result = (|| {
            let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
            f.write_all(&header.encode()).map_err(|e| Error::io("write", &tmp, e))?;
            f.write_all(&body).map_err(|e| Error::io("write", &tmp, e))?;
            f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
            fs::rename(&tmp, &dst).map_err(|e| Error::io("rename", &dst, e))?;
            crate::writer::sync_dir(dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| dst)
    }

    /// Number of keys (the dataset's record count).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True for a dataset without records.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes this index holds in memory.
    pub fn memory(&self) -> usize {
        self.entries.capacity() * ENTRY_LEN
    }

    /// The global index of the record whose key is `key` (the lowest one if
    /// several share it), or `None`. `dataset` must be the one the index
    /// was built or loaded for; each candidate is confirmed against the
    /// key stored in its shard.
    pub fn find(&self, dataset: &Dataset, key: &str) -> Result<Option<u64>> {
        let h = key_hash(key.as_bytes());
        for &(eh, index) in &self.entries[lower_bound(&self.entries, h)..] {
            if eh != h {
                break;
            }
            if dataset.key(index)? == key {
                return Ok(Some(index));
            }
        }
        Ok(None)
    }
}

/// The first position in `entries` (sorted by hash) whose hash is not
/// below `h`. Hashes are uniform, so `h`'s share of the hash space is a
/// guess within a few entries of the answer; a window widened from there
/// by doubling steps brackets it, so a lookup touches one or two cache
/// lines instead of the ~16 of a binary search over 50,000 entries (on
/// skewed entries, e.g. a hostile file, it costs at most twice a binary
/// search).
fn lower_bound(entries: &[(u64, u64)], h: u64) -> usize {
    let n = entries.len();
    if n == 0 {
        return 0;
    }
    let guess = ((u128::from(h) * n as u128) >> 64) as usize;
    let (mut lo, mut hi) = (guess, guess + 1);
    let mut step = 1;
    // Everything before `lo` is below `h` once `lo` is 0 or points below it.
    while lo > 0 && entries[lo].0 >= h {
        lo = lo.saturating_sub(step);
        step *= 2;
    }
    step = 1;
    // Everything from `hi` on is at least `h` once `hi - 1` is.
    while hi < n && entries[hi - 1].0 < h {
        hi = (hi + step).min(n);
        step *= 2;
    }
    lo + entries[lo..hi].partition_point(|&(eh, _)| eh < h)
}

/// The 64-bit hash of a key: FNV-1a with a final avalanche (SplitMix64's,
/// so that the high bits the binary search looks at depend on every
/// byte); fixed forever because it is stored in files.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    let mut h = fnv1a(key);
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

fn fnv1a(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// What ties an index file to its dataset: a CRC32C over each shard's
/// record count and index checksum, in order (the index checksum covers
/// the shard's index entries and key table, and is checked against the
/// shard at open). Anything else in the manifest (its version, source,
/// classes, formatting) can change without making the index stale.
fn binding(dataset: &Dataset) -> u32 {
    let mut crc = 0;
    for shard in &dataset.manifest().shards {
        crc = crc32c::crc32c_append(crc, &shard.records.to_le_bytes());
        crc = crc32c::crc32c_append(crc, &shard.index_crc32c.to_le_bytes());
    }
    crc
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("8-byte chunk"))
}

/// The 32-byte header of `key-index.rfk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    version: u32,
    records: u64,
    binding: u32,
    entries_crc: u32,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[16..24].copy_from_slice(&self.records.to_le_bytes());
        b[24..28].copy_from_slice(&self.binding.to_le_bytes());
        b[28..32].copy_from_slice(&self.entries_crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8; HEADER_LEN]) -> Option<Header> {
        if &b[..8] != MAGIC || b[12..16] != [0; 4] {
            return None;
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        Some(Header {
            version: u32_at(8),
            records: le64(&b[16..24]),
            binding: u32_at(24),
            entries_crc: u32_at(28),
        })
    }
}

/// Writes the key index of the dataset in `dir` (packs made before key
/// indexes existed, or whose index was removed). Returns the file's path.
pub fn write_key_index(dir: impl AsRef<Path>) -> Result<PathBuf> {
    let dataset = Dataset::open(dir)?;
    KeyIndex::build(&dataset)?.write(&dataset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fixed() {
        // FNV-1a's published test vectors...
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        // ...and the finished hash pinned: it is stored in files, so a
        // change here would make every existing index stale.
        assert_eq!(key_hash(b""), 0xf52a_15e9_a9b5_e89b);
        assert_eq!(key_hash(b"doc_00001.txt"), 0x727f_1899_1f97_650e);
    }

    #[test]
    fn lower_bound_matches_a_binary_search() {
        // Uniform hashes, clustered ones, duplicates and extremes: the
        // guess is good, bad or out of place, the answer must not change.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let sets: Vec<Vec<u64>> = vec![
            vec![],
            vec![5],
            (0..1000).map(|_| next()).collect(),
            (0..1000).map(|_| next() % 16).collect(),
            (0..1000).map(|_| u64::MAX - next() % 3).collect(),
            (0..1000).map(|i| if i % 2 == 0 { 0 } else { u64::MAX }).collect(),
        ];
        for mut hashes in sets {
            hashes.sort_unstable();
            let entries: Vec<(u64, u64)> = hashes.iter().enumerate().map(|(i, &h)| (h, i as u64)).collect();
            let mut probes: Vec<u64> = hashes.clone();
            probes.extend([0, 1, 15, 16, u64::MAX, u64::MAX - 1, u64::MAX / 2]);
            probes.extend((0..200).map(|_| next()));
            probes.extend(hashes.iter().map(|h| h.wrapping_add(1)));
            for h in probes {
                let want = entries.partition_point(|&(eh, _)| eh < h);
                assert_eq!(lower_bound(&entries, h), want, "hash {h:#x} in {} entries", entries.len());
            }
        }
    }
}
