//! The one error type of the `ringfeed` crates: the storage layer's here
//! and the loader's (`ringfeed::Error` is this type, re-exported).
//!
//! The loader's variants ([`Error::Decode`], [`Error::Transform`],
//! [`Error::Shutdown`], [`Error::Tensor`], [`Error::Memory`]) live here
//! too, so that `ringfeed` has one error enum that matches every failure
//! (and `ringfeed::Error` stays exactly what it was before the split); the
//! storage layer itself never returns them. `Decode` is why this crate
//! depends on `ringfeed-decode`, which the packer also uses to check image
//! headers against the loader's decoding limits.
//!
//! Variants are split by what the caller can do about them: fix the
//! environment ([`Error::Io`]), replace or re-pack damaged data
//! ([`Error::Corrupt`]), upgrade the reader ([`Error::Unsupported`]), fix
//! the arguments ([`Error::Config`]), give the process more memory
//! ([`Error::Memory`]) or libtorch what it needs ([`Error::Tensor`]).

use std::io;
use std::path::PathBuf;

/// Result alias used throughout `ringfeed` and `ringfeed-pack`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `ringfeed` and `ringfeed-pack`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system refused an operation: missing file, permissions,
    /// disk full, a read past the end of a truncated file.
    #[error("{op} {}{}: {source}", path.display(), at(*offset))]
    Io {
        /// What was being done, e.g. `"open"` or `"read"`.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// Byte offset in the file, where it matters.
        offset: Option<u64>,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Stored bytes do not match what their checksums or structure promise.
    /// Re-pack the dataset or restore the file named here.
    #[error("corrupt data in {}{}{}: {reason}", path.display(), at(Some(*offset)), record_suffix(*record))]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damaged structure in that file.
        offset: u64,
        /// Index of the damaged record within its file, when one is known.
        record: Option<u64>,
        /// What is wrong, in words.
        reason: String,
    },
    /// The file is well formed but uses a version or feature this build
    /// does not read.
    #[error("unsupported data in {}: {reason}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is not supported.
        reason: String,
    },
    /// Invalid arguments or options supplied by the caller.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A record's payload is not an image the pipeline can decode (or it
    /// exceeds the decoder's limits).
    #[error("record {index} is not a usable image: {source}")]
    Decode {
        /// Dataset index of the record.
        index: u64,
        /// What the decoder said.
        #[source]
        source: ringfeed_decode::Error,
    },
    /// The caller's `SampleTransform` (a `ringfeed` loader stage) panicked
    /// on a record (or, under `ErrorPolicy::Fail`, rejected it). A bug in the caller's code, reported with the record
    /// it happened on; the stream ends here.
    #[error("the sample transform {} on record {index}: {message}", if *panicked { "panicked" } else { "failed" })]
    Transform {
        /// Dataset index of the record.
        index: u64,
        /// The panic message or the transform's error.
        message: String,
        /// Whether it panicked (rather than returned an error).
        panicked: bool,
    },
    /// The loader's worker threads stopped before the stream ended (a
    /// worker could not start, or stopped unexpectedly).
    #[error("loader shut down: {0}")]
    Shutdown(String),
    /// libtorch could not allocate or build a tensor (feature `tch`): a
    /// batch's images or labels as a tensor, in pinned memory when CUDA is
    /// available. Usually memory (lower the batch size or image side) or
    /// the libtorch / CUDA set-up; the message is libtorch's.
    #[error("tensor conversion failed: {0}")]
    Tensor(String),
    /// The operating system refused memory for a batch's buffer. Lower the
    /// batch size, image side or prefetch, or raise the process's memory
    /// limit.
    #[error("cannot allocate {what}: {source}")]
    Memory {
        /// What was being allocated, with its size.
        what: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// A check of ringfeed's own invariants failed: a bug in ringfeed,
    /// worth a report with the message.
    #[error("internal error (a bug in ringfeed): {0}")]
    Internal(String),
}

fn at(offset: Option<u64>) -> String {
    offset.map(|o| format!(" at byte {o}")).unwrap_or_default()
}

fn record_suffix(record: Option<u64>) -> String {
    record.map(|r| format!(" (record {r})")).unwrap_or_default()
}

impl Error {
    // The constructors below are public (hidden from the docs) for the
    // `ringfeed` loader, which reports the same errors; not a stable API.

    #[doc(hidden)]
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { op, path: path.into(), offset: None, source }
    }

    #[doc(hidden)]
    pub fn io_at(op: &'static str, path: impl Into<PathBuf>, offset: u64, source: io::Error) -> Self {
        Error::Io { op, path: path.into(), offset: Some(offset), source }
    }

    #[doc(hidden)]
    pub fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt { path: path.into(), offset, record: None, reason: reason.into() }
    }

    #[doc(hidden)]
    pub fn corrupt_record(
        path: impl Into<PathBuf>,
        offset: u64,
        record: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt { path: path.into(), offset, record: Some(record), reason: reason.into() }
    }

    /// True when the error means stored data is damaged (as opposed to the
    /// environment or the arguments being wrong).
    pub fn is_corruption(&self) -> bool {
        match self {
            Error::Corrupt { .. } => true,
            Error::Decode { source, .. } => source.is_bad_input(),
            _ => false,
        }
    }
}
