//! The error type of `ringfeed-ckpt`, split by who can fix the failure:
//! the environment ([`Error::Io`]), the file ([`Error::Format`],
//! [`Error::Checksum`]), the caller ([`Error::Config`], [`Error::NotFound`])
//! or the machine ([`Error::Memory`]).

use std::io;
use std::path::PathBuf;

/// Result alias of `ringfeed-ckpt`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong loading, saving or verifying a checkpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system refused an operation: a missing file,
    /// permissions, a full disk, a read past the end of a truncated file.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `"open"` or `"write"`.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file is not a valid safetensors file (or sharded set): a
    /// hostile or damaged header, ranges outside the file, overlaps or
    /// gaps, an unknown dtype. Nothing was allocated for its tensors.
    #[error("invalid checkpoint {}{}: {reason}", path.display(), tensor_suffix(tensor.as_deref()))]
    Format {
        /// The file.
        path: PathBuf,
        /// The tensor concerned, when one is.
        tensor: Option<String>,
        /// What is wrong, in words.
        reason: String,
    },
    /// A tensor's bytes do not match the CRC32C ringfeed stored for it
    /// when it saved the file: the file was damaged after it was written.
    #[error("checksum mismatch in {}, tensor {tensor:?}: stored {expected:08x}, computed {actual:08x}", path.display())]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The damaged tensor.
        tensor: String,
        /// The CRC32C in the header.
        expected: u32,
        /// The CRC32C of the bytes read.
        actual: u32,
    },
    /// A tensor the caller asked for is not in the checkpoint.
    #[error("no tensor {name:?} in {}", path.display())]
    NotFound {
        /// The checkpoint (file or index).
        path: PathBuf,
        /// The missing name.
        name: String,
    },
    /// Invalid arguments: a buffer of the wrong size, a bad option, tensors
    /// whose bytes do not match their shape.
    #[error("invalid argument: {0}")]
    Config(String),
    /// Memory for the tensors could not be allocated.
    #[error("cannot allocate {bytes} bytes for {what}")]
    Memory {
        /// What the memory was for.
        what: String,
        /// How much was asked for.
        bytes: u64,
    },
    /// libtorch refused an operation (feature `tch`).
    #[cfg(feature = "tch")]
    #[error("libtorch: {0}")]
    Tensor(#[from] tch::TchError),
}

fn tensor_suffix(tensor: Option<&str>) -> String {
    tensor.map(|t| format!(" (tensor {t:?})")).unwrap_or_default()
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io { op, path: path.into(), source }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, tensor: Option<&str>, reason: impl Into<String>) -> Error {
        Error::Format { path: path.into(), tensor: tensor.map(str::to_owned), reason: reason.into() }
    }

    /// Exit code for command-line tools, as `ringfeed verify` uses them:
    /// 1 the data is damaged, 2 the caller's or environment's fault.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Format { .. } | Error::Checksum { .. } => 1,
            _ => 2,
        }
    }
}
