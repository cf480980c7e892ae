//! The one error type of `ringfeed-decode`.

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong turning bytes into pixels, by who is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is not a valid image (the data's fault).
    #[error("corrupt image: {0}")]
    Corrupt(String),
    /// The input is valid but uses a feature this crate does not decode.
    #[error("unsupported image feature: {0}")]
    Unsupported(String),
    /// The image exceeds the configured limits (the caller decides).
    #[error("image exceeds limits: {0}")]
    Limits(String),
}
