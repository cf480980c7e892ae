//! Synchronous reader for pack datasets, used by tools, tests and small
//! jobs. The async direct-I/O engine reads the same structures.
//!
//! Opening a shard reads only its header, index and key table and checks
//! all of them (checksums, bounds, ordering), so that later reads can trust
//! the index; each record read then checks that record's CRC32C.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{ENTRY_LEN, Entry, FOOTER_LEN, Footer, HEADER_LEN, Header, MAX_RECORD_LEN, to_usize};
use super::manifest::{Manifest, ShardInfo};
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

/// An open, validated shard file.
#[derive(Debug)]
pub struct Shard {
    path: PathBuf,
    file: File,
    header: Header,
    /// Index entries followed by the key table, exactly as on disk.
    meta: Vec<u8>,
}

impl Shard {
    /// Opens and validates a shard. When `expected` is given (from the
    /// manifest), the record count and index checksum must match it.
    pub fn open(path: impl Into<PathBuf>, expected: Option<&ShardInfo>) -> Result<Self> {
        let path = path.into();
        let file = crate::sys::open_regular(&path).map_err(|e| Error::io("open", &path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io("stat", &path, e))?.len();
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
        let footer = Footer::decode(&footer, header.footer_offset, &path)?;
        if footer.record_count != header.record_count {
            return Err(Error::corrupt(
                &path,
                header.footer_offset,
                format!("footer counts {} records, header {}", footer.record_count, header.record_count),
            ));
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(&head), &meta);
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
        let shard = Shard { path, file, header, meta };
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

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
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
        let mut buf = vec![0u8; len];
        read_exact_at(&self.file, &mut buf, e.offset, &self.path)?;
        check_crc(&buf, e.crc32c, &self.path, e.offset, i)?;
        Ok(buf)
    }
}

/// Checks a payload against its stored CRC32C.
pub(crate) fn check_crc(payload: &[u8], expected: u32, path: &Path, offset: u64, record: u64) -> Result<()> {
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

/// An open pack dataset: the manifest plus every shard, validated.
///
/// ```
/// # fn main() -> ringfeed::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let mut w = ringfeed::PackWriter::builder(dir.path()).build()?;
/// # w.push(b"abc", 0, None)?;
/// # w.finish()?;
/// let ds = ringfeed::Dataset::open(dir.path())?;
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
}

impl Dataset {
    /// Opens the dataset in `dir`: reads the manifest, then opens and
    /// validates every shard against it.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let manifest = Manifest::load(&dir)?;
        let mut shards = Vec::with_capacity(manifest.shards.len());
        let mut starts = Vec::with_capacity(manifest.shards.len());
        let mut next = 0u64;
        for info in &manifest.shards {
            shards.push(Shard::open(dir.join(&info.file), Some(info))?);
            starts.push(next);
            next = next.checked_add(info.records).ok_or_else(|| {
                Error::corrupt(
                    dir.join(super::manifest::MANIFEST_FILE),
                    0,
                    "record count overflows".to_string(),
                )
            })?;
        }
        Ok(Dataset { dir, manifest, shards, starts })
    }

    /// The dataset directory.
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

    /// Reads record `index`, checking its checksum.
    pub fn record(&self, index: u64) -> Result<Record> {
        let loc = self.locate(index)?;
        let shard = &self.shards[loc.shard];
        Ok(Record {
            index,
            label: loc.label,
            key: shard.key(loc.index_in_shard)?.to_string(),
            payload: shard.read(loc.index_in_shard)?,
        })
    }

    /// Iterates over all records in order.
    pub fn iter(&self) -> impl Iterator<Item = Result<Record>> + '_ {
        (0..self.len()).map(|i| self.record(i))
    }
}
