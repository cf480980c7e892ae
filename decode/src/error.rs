//! The one error type of `ringfeed-decode`, by who is at fault.

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong turning bytes into pixels.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is not a valid image: truncated, corrupt, wrong magic
    /// (the data's fault).
    #[error("corrupt image: {0}")]
    Corrupt(String),
    /// The input is valid but uses a feature this crate does not decode
    /// (the format's fault, e.g. arithmetic-coded or 12-bit JPEG).
    #[error("unsupported image: {0}")]
    Unsupported(String),
    /// The image exceeds the configured [`Limits`](crate::Limits) or has no
    /// pixels (the caller decides whether to raise them).
    #[error("image exceeds limits: {0}")]
    Limits(String),
    /// Invalid parameters: an output slice of the wrong size, an empty
    /// scale range (the caller's fault).
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// True when the input bytes are to blame (corrupt or unsupported).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Error::Corrupt(_) | Error::Unsupported(_) | Error::Limits(_))
    }
}

impl From<ringfeed_resample::Error> for Error {
    /// The resampler refuses only bad buffers or boxes: the pipeline's
    /// own mistake, reported as a configuration error.
    fn from(e: ringfeed_resample::Error) -> Self {
        Error::Config(e.to_string())
    }
}
