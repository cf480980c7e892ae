//! The crate's error type: who is at fault decides the variant.

/// What went wrong, by who is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A bad URL, option or environment variable: the caller's to fix.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The store refused or failed a request after the retry budget.
    #[error("{op} {location}: {message}")]
    Store {
        /// What was being done (`upload`, `GET`, ...).
        op: &'static str,
        /// The object's URL.
        location: String,
        /// The last error, and how many attempts were made.
        message: String,
    },
    /// A local file (the cache, a dataset being uploaded) failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The dataset itself (its manifest or shards) failed a check.
    #[error(transparent)]
    Pack(#[from] ringfeed_pack::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }
}

/// Into the pack crate's error (what the loader reports), by the same
/// fault: a configuration error stays one, a store failure is an I/O error
/// naming the object.
impl From<Error> for ringfeed_pack::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Pack(e) => e,
            Error::Config(m) => ringfeed_pack::Error::Config(m),
            Error::Store { op, location, message } => {
                ringfeed_pack::Error::io(op, location, std::io::Error::other(message))
            }
            Error::Io { op, path, source } => ringfeed_pack::Error::io(op, path, source),
        }
    }
}
