//! Inputs the packer reads: ImageFolder trees, plain directories of files,
//! WebDataset tar shards, TFRecord and FFRecord files, JSON lines files.
//!
//! A source is opened in two steps: `open` enumerates its records (paths,
//! offsets, labels, keys) without reading payloads, then the packer calls
//! [`Source::read`] for each record, from several threads at once, and
//! writes the results in index order. Every source validates its own
//! framing (TFRecord length CRCs, FFRecord header checksum, tar headers) and
//! reports damage as [`Error::Corrupt`](crate::Error::Corrupt) naming file
//! and offset. What the payload must be (UTF-8 for a text schema) is the
//! packer's check, since the caller may choose another payload kind.

mod containers;
mod detect;
mod ffrecord;
mod files;
mod imagefolder;
mod jsonl;
mod tar;
mod tfrecord;
mod walk;

use std::path::Path;

pub use self::detect::{SourceFormat, open_source};
pub use self::ffrecord::FfRecordSource;
pub use self::files::FilesSource;
pub use self::imagefolder::ImageFolderSource;
pub use self::jsonl::{JsonLinesSource, text_field};
pub use self::tar::TarSource;
pub use self::tfrecord::TfRecordSource;
use crate::error::Result;
use crate::manifest::Schema;

/// Metadata of one source record, known before its payload is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceItem<'a> {
    /// Key stored with the record (relative path, WebDataset key), if any.
    pub key: Option<&'a str>,
    /// Class label (ignored when the schema has no labels).
    pub label: i64,
    /// Exact payload size in bytes, as [`Source::read`] will return it.
    pub size: u64,
}

/// A collection of records to pack.
pub trait Source: Send + Sync + std::fmt::Debug {
    /// Short name of the format, stored in the manifest (`"imagefolder"`).
    fn format(&self) -> &'static str;
    /// What the records hold.
    fn schema(&self) -> Schema;
    /// Class names for labels; empty when labels are plain integers.
    fn classes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Number of records.
    fn len(&self) -> usize;
    /// True when there are no records.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Metadata of record `i` (`i < len()`).
    fn item(&self, i: usize) -> SourceItem<'_>;
    /// Reads the payload of record `i`, validating the source's own
    /// checksums. Called concurrently from several threads.
    fn read(&self, i: usize) -> Result<Vec<u8>>;
    /// Reads the payload of record `i` into `out`, which is exactly
    /// `item(i).size` bytes long. Sources override this to avoid a copy.
    fn read_into(&self, i: usize, out: &mut [u8]) -> Result<()> {
        let payload = self.read(i)?;
        if payload.len() != out.len() {
            return Err(crate::Error::Config(format!(
                "source record {i} changed size while packing ({} bytes listed, {} read)",
                out.len(),
                payload.len()
            )));
        }
        out.copy_from_slice(&payload);
        Ok(())
    }
    /// Where record `i`'s payload lies: the file, and the byte offset of
    /// the payload in it (of its first member, for a multipart record), so
    /// that a problem found in the payload (text that is not UTF-8) can
    /// be reported where the user can look. Default: unknown (problems
    /// then name the record by index and key).
    fn origin(&self, i: usize) -> Option<(&Path, u64)> {
        let _ = i;
        None
    }
}

/// Implements [`Source`] for a pointer to a source by forwarding every
/// method (the provided ones too, since the pointee may override them).
macro_rules! forward_source {
    ($($pointer:ty),*) => {$(
        impl<S: Source + ?Sized> Source for $pointer {
            fn format(&self) -> &'static str {
                (**self).format()
            }
            fn schema(&self) -> Schema {
                (**self).schema()
            }
            fn classes(&self) -> Vec<String> {
                (**self).classes()
            }
            fn len(&self) -> usize {
                (**self).len()
            }
            fn is_empty(&self) -> bool {
                (**self).is_empty()
            }
            fn item(&self, i: usize) -> SourceItem<'_> {
                (**self).item(i)
            }
            fn read(&self, i: usize) -> Result<Vec<u8>> {
                (**self).read(i)
            }
            fn read_into(&self, i: usize, out: &mut [u8]) -> Result<()> {
                (**self).read_into(i, out)
            }
            fn origin(&self, i: usize) -> Option<(&Path, u64)> {
                (**self).origin(i)
            }
        }
    )*};
}

// `pack` takes any source by value: the `Box<dyn Source>` that
// `open_source` returns, a concrete source, a shared one, or a reference.
forward_source!(&S, Box<S>, std::sync::Arc<S>);

/// Reads `len` bytes at `offset` of `file`, mapping a short read to a
/// corruption error (the source's framing promised those bytes).
pub(crate) fn read_range(file: &std::fs::File, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            crate::Error::corrupt(path, offset, format!("file ends inside a {len}-byte record"))
        } else {
            crate::Error::io_at("read", path, offset, e)
        }
    })?;
    Ok(buf)
}
