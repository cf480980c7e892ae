//! ringfeed-decode: image decoding and augmentation for ringfeed, with no
//! runtime and no unsafe code. Bytes in, pixels out.
//!
//! This crate is a skeleton in this release: it fixes the crate's place in
//! the workspace and its error type. Decoding arrives with issue #4.
//!
//! ```
//! let err = ringfeed_decode::Error::Unsupported("webp".into());
//! assert!(err.to_string().contains("webp"));
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod error;

pub use crate::error::{Error, Result};
