//! TFRecord files: a record is a u64 LE length, the masked CRC32C of those
//! 8 bytes, the data, and the masked CRC32C of the data.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::containers::Containers;
use super::{Source, SourceItem, read_range};
use crate::error::{Error, Result};
use crate::format::MAX_RECORD_LEN;
use crate::manifest::{Payload, Schema};

/// Extensions of TFRecord files picked from a directory.
const EXTENSIONS: &[&str] = &["tfrecord", "tfrec", "tfrecords"];
/// Length, its CRC, and (after the data) the data CRC.
const HEADER_LEN: u64 = 12;
const FOOTER_LEN: u64 = 4;

/// TensorFlow's CRC mask: rotate right by 15 and add a constant, so that a
/// CRC over data that itself holds CRCs does not degenerate.
fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One record: where its data lies.
#[derive(Debug, Clone, Copy)]
struct Rec {
    file: u32,
    /// Offset of the data (the record starts `HEADER_LEN` earlier).
    offset: u64,
    /// Data length; at most `MAX_RECORD_LEN`, so it fits.
    len: u32,
}

/// Records of one TFRecord file or a directory of them (`.tfrecord`,
/// `.tfrec`, `.tfrecords`, sorted by name), each payload a serialized
/// `tf.train.Example` passed through unparsed.
///
/// Opening reads only the 12-byte record headers, checking every length
/// CRC and that every record fits in its file; reading a record checks its
/// data CRC. Compressed (GZIP/ZLIB) TFRecord files are not read.
#[derive(Debug)]
pub struct TfRecordSource {
    c: Containers<Rec>,
}

impl TfRecordSource {
    /// Opens a TFRecord file, or every TFRecord file in directory `path`,
    /// and lists their records.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Ok(TfRecordSource { c: Containers::open(path, EXTENSIONS, scan)? })
    }
}

/// Walks the record headers of one file, seeking over the data.
fn scan(file: &File, path: &Path, idx: u32, recs: &mut Vec<Rec>) -> Result<()> {
    let file_len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
    // Small records are the common case: buffer so a header is not a syscall.
    let mut r = BufReader::with_capacity(64 << 10, file);
    let mut pos = 0u64;
    let mut n = 0u64;
    while pos < file_len {
        let bad = |why: String| Error::corrupt_record(path, pos, n, why);
        if file_len - pos < HEADER_LEN {
            return Err(bad(format!(
                "{} trailing bytes, shorter than a record header (truncated file?)",
                file_len - pos
            )));
        }
        let mut head = [0u8; HEADER_LEN as usize];
        r.read_exact(&mut head).map_err(|e| read_err(path, pos, e))?;
        let len_bytes: [u8; 8] = head[..8].try_into().expect("8 bytes");
        let len = u64::from_le_bytes(len_bytes);
        let stored = u32::from_le_bytes(head[8..].try_into().expect("4 bytes"));
        if masked_crc32c(&len_bytes) != stored {
            return Err(bad("record length fails its CRC".into()));
        }
        let end = pos.checked_add(HEADER_LEN + FOOTER_LEN).and_then(|p| p.checked_add(len));
        if end.is_none_or(|end| end > file_len) {
            return Err(bad(format!(
                "{len}-byte record runs past the end of the {file_len}-byte file (truncated file?)"
            )));
        }
        if len > MAX_RECORD_LEN {
            // The CRC vouches for the length: a real record, just too big.
            return Err(Error::Unsupported {
                path: path.to_path_buf(),
                reason: format!(
                    "record {n} at byte {pos} is {len} bytes; the pack format's limit is {MAX_RECORD_LEN}"
                ),
            });
        }
        recs.push(Rec { file: idx, offset: pos + HEADER_LEN, len: len as u32 });
        r.seek_relative((len + FOOTER_LEN) as i64).map_err(|e| Error::io_at("seek", path, pos, e))?;
        pos += HEADER_LEN + len + FOOTER_LEN;
        n += 1;
    }
    Ok(())
}

fn read_err(path: &Path, offset: u64, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        // The file shrank after we measured it.
        Error::corrupt(path, offset, "file ends inside a record header")
    } else {
        Error::io_at("read", path, offset, e)
    }
}

impl Source for TfRecordSource {
    fn format(&self) -> &'static str {
        "tfrecord"
    }

    fn schema(&self) -> Schema {
        Schema { payload: Payload::TfExample, labels: false, keys: false }
    }

    fn len(&self) -> usize {
        self.c.recs.len()
    }

    fn item(&self, i: usize) -> SourceItem<'_> {
        SourceItem { key: None, label: 0, size: u64::from(self.c.recs[i].len) }
    }

    fn origin(&self, i: usize) -> Option<(&Path, u64)> {
        let rec = self.c.recs[i];
        Some((self.c.file(rec.file).0, rec.offset))
    }

    fn read(&self, i: usize) -> Result<Vec<u8>> {
        let rec = self.c.recs[i];
        let (path, file) = self.c.file(rec.file);
        let len = u64::from(rec.len);
        let mut buf = read_range(file, path, rec.offset, len + FOOTER_LEN)?;
        let stored = u32::from_le_bytes(buf[rec.len as usize..].try_into().expect("4 bytes"));
        buf.truncate(rec.len as usize);
        if masked_crc32c(&buf) != stored {
            let in_file = self.c.index_in_file(i, rec.file);
            return Err(Error::corrupt_record(
                path,
                rec.offset - HEADER_LEN,
                in_file,
                "record data fails its CRC",
            ));
        }
        Ok(buf)
    }
}
