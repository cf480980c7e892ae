//! The one error type of `ringfeed-serve`, sorted by who is at fault, so a
//! server can answer 4xx, 503 or 5xx without looking inside.

use std::sync::Arc;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A model function's error, shared by every request of its batch.
pub type ModelError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Who is to blame for an [`Error`], and so what a server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request itself: bad, unsupported or oversized image (HTTP 4xx).
    Client,
    /// Too much load right now: retry later (HTTP 503 + Retry-After).
    Overloaded,
    /// The server: model failure, shutdown, internal bug (HTTP 5xx).
    Server,
}

/// What can go wrong preprocessing or serving one request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The queue is full: the request was refused at once, before any work.
    #[error("overloaded: {queued} requests already queued")]
    Overloaded {
        /// The queue's capacity.
        queued: usize,
    },
    /// The request body is larger than the configured maximum; refused
    /// before it was queued.
    #[error("request of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Body length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The image could not be decoded or preprocessed: corrupt, unsupported
    /// or over the [`Limits`](ringfeed_decode::Limits) (the client's fault,
    /// see [`Error::fault`]), or a configuration mistake (the server's).
    #[error(transparent)]
    Image(#[from] ringfeed_decode::Error),
    /// A configuration that cannot work, refused by a `build()`.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The model function failed (or panicked, or returned the wrong
    /// number of outputs) for the batch this request was in.
    #[error("model failed: {0}")]
    Model(ModelError),
    /// The batcher is shutting down (or its runtime is gone).
    #[error("batcher is shut down")]
    Shutdown,
    /// No record has the key, or the index is past the end (HTTP 404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The dataset of a [`Records`](crate::Records) could not be opened or
    /// read: I/O errors, and stored bytes that fail their checksums (whose
    /// error names the file, offset and record).
    #[error(transparent)]
    Storage(#[from] ringfeed_pack::Error),
    /// A bug or a crashed worker thread: nothing the client did.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Who is to blame: the request ([`Fault::Client`]), the load
    /// ([`Fault::Overloaded`]) or the server ([`Fault::Server`]).
    pub fn fault(&self) -> Fault {
        match self {
            Error::TooLarge { .. } | Error::NotFound(_) => Fault::Client,
            Error::Image(e) if e.is_bad_input() => Fault::Client,
            Error::Overloaded { .. } => Fault::Overloaded,
            _ => Fault::Server,
        }
    }

    /// The HTTP status a server would answer: 400 (bad image), 404 (no
    /// such record), 413 (too large), 422 (valid but unsupported or over
    /// the limits), 503 (overloaded or shutting down), 500 otherwise.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::TooLarge { .. } => 413,
            Error::NotFound(_) => 404,
            Error::Image(ringfeed_decode::Error::Corrupt(_)) => 400,
            Error::Image(e) if e.is_bad_input() => 422,
            Error::Overloaded { .. } | Error::Shutdown => 503,
            _ => 500,
        }
    }
}
