//! The crate's error.

use tch::Device;

/// Why a tensor could not be made or reshaped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The shape's byte count overflows (the caller's shape).
    TooLarge {
        /// The shape asked for.
        shape: Vec<usize>,
    },
    /// libtorch refused the allocation (out of memory, no CUDA for pinned
    /// memory, a bad device).
    Allocate {
        /// The shape asked for.
        shape: Vec<usize>,
        /// The CUDA device the memory was to be pinned for, if any.
        pinned_for: Option<Device>,
        /// libtorch's message.
        reason: String,
    },
    /// libtorch returned a tensor other than the one asked for (a bug of
    /// this crate or of libtorch).
    Unexpected {
        /// The shape asked for.
        shape: Vec<usize>,
    },
    /// More rows kept than the tensor has (the caller's count).
    Rows {
        /// Rows asked for.
        rows: usize,
        /// Rows there are.
        total: usize,
    },
    /// Another libtorch error.
    Tch(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::TooLarge { shape } => write!(f, "tensor shape {shape:?} is too large"),
            Error::Allocate { shape, pinned_for: None, reason } => {
                write!(f, "libtorch cannot allocate a {shape:?} tensor: {reason}")
            }
            Error::Allocate { shape, pinned_for: Some(d), reason } => {
                write!(f, "libtorch cannot allocate a {shape:?} tensor in pinned memory for {d:?}: {reason}")
            }
            Error::Unexpected { shape } => write!(f, "libtorch returned an unexpected tensor for {shape:?}"),
            Error::Rows { rows, total } => write!(f, "cannot keep {rows} of {total} rows"),
            Error::Tch(reason) => write!(f, "libtorch: {reason}"),
        }
    }
}

impl std::error::Error for Error {}
