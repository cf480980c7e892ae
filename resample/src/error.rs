//! The crate's one error type.

use std::fmt;

/// Why a resample was refused. Both variants are the caller's mistake; no
/// image content can make a resample fail.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A buffer's length does not match the dimensions given with it.
    Buffer(String),
    /// The crop box or output size is empty or not finite.
    Geometry(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Buffer(m) => write!(f, "resample buffer: {m}"),
            Error::Geometry(m) => write!(f, "resample geometry: {m}"),
        }
    }
}

impl std::error::Error for Error {}
