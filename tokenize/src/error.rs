//! The crate's error.

use std::path::PathBuf;

/// Result alias of `ringfeed-tokenize`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a tokenizer could not be made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tokenizer file that cannot be read or parsed (the caller's file).
    #[error("tokenizer {}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A name that is neither a known tokenizer nor a file.
    #[error("unknown tokenizer {0:?}: use `gpt2` or the path of a Hugging Face tokenizer.json")]
    Unknown(String),
    /// Token ids that the vocabulary does not have.
    #[error("cannot decode: {0}")]
    Decode(String),
    /// Invalid arguments or input (options, a document that is not
    /// text, a tokenizer without an end-of-text token).
    #[error("{0}")]
    Config(String),
    /// Reading the source or writing the dataset failed.
    #[error(transparent)]
    Pack(#[from] ringfeed_pack::Error),
    /// The tokenizer library failed (a bug here or there).
    #[error("tokenizer: {0}")]
    Internal(String),
}
