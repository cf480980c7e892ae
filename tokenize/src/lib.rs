//! Tokenizers for ringfeed's token datasets.
//!
//! - **GPT-2** ([`Tokenizer::gpt2`]): byte-level BPE with the same ids as
//!   tiktoken's `gpt2` encoding and Hugging Face's GPT-2 tokenizer. The
//!   vocabulary and the merge of one piece come from the `tiktoken-rs`
//!   crate (the vocabulary is shipped inside it: nothing is downloaded);
//!   the pre-tokenizer runs on a DFA instead of a backtracking regex, and
//!   each thread's [`Encoder`] caches the pieces it has merged.
//! - **Hugging Face** ([`Tokenizer::from_file`]): any `tokenizer.json`,
//!   through the `tokenizers` crate.
//!
//! The choice is a value ([`Tokenizer::from_name`]: `gpt2` or a path), not
//! a cargo feature. No runtime, no I/O beyond reading the file.
//!
//! ```
//! use ringfeed_tokenize::Tokenizer;
//!
//! let gpt2 = Tokenizer::gpt2()?;
//! assert_eq!(gpt2.encode("hello world")?, [31373, 995]);
//! assert_eq!(gpt2.eot(), Some(50256));
//! assert_eq!(gpt2.decode(&[31373, 995])?, b"hello world");
//!
//! // Many documents on two threads, one encoder (and cache) per thread.
//! let docs = ["first document", "second one"];
//! let ids = gpt2.encode_batch(&docs, 2)?;
//! assert_eq!(ids[1], gpt2.encode("second one")?);
//! # Ok::<(), ringfeed_tokenize::Error>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod corpus;
mod error;
mod example;
mod gpt2;
mod hf;
mod tokenizer;

pub use crate::corpus::{TokenizeOptions, TokenizeOptionsBuilder, TokenizeProgress, tokenize};
pub use crate::error::{Error, Result};
pub use crate::tokenizer::{Encoder, Tokenizer};
