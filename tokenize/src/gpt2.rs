//! GPT-2's byte-level BPE (tiktoken's `gpt2` / `r50k_base`), with the same
//! token ids as tiktoken and Hugging Face's GPT-2 tokenizer.
//!
//! tiktoken-rs supplies the vocabulary (shipped inside the crate) and the
//! BPE merge of one piece (`byte_pair_split`, tiktoken's algorithm). What
//! is ringfeed's, for speed:
//!
//! - **Pre-tokenizer**: GPT-2's pattern needs a lookahead (`\s+(?!\S)`),
//!   which only a backtracking engine (fancy-regex) runs. Here the pattern
//!   without it runs on the `regex` crate's DFA, and the lookahead's effect
//!   is applied by hand: a run of two or more whitespace characters
//!   followed by more text gives its last character back to the next
//!   piece. Tests check the ids against tiktoken-rs's own encoder.
//! - **Piece cache**: a piece that is not a single token (a rare word) is
//!   merged once per [`Encoder`], then looked up.

use std::sync::OnceLock;

use regex::Regex;
use rustc_hash::FxHashMap;
use tiktoken_rs::Rank;

use crate::error::{Error, Result};

/// GPT-2's pattern without the lookahead; see the module docs.
const PATTERN: &str = r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

/// Ids below this are ordinary tokens; `<|endoftext|>` is 50256.
const ORDINARY: Rank = 50_256;

/// The end-of-text token.
pub(crate) const EOT: u32 = 50_256;

/// Pieces kept in an encoder's cache before it starts over.
const CACHE_ENTRIES: usize = 1 << 16;

/// The vocabulary and pre-tokenizer, built once per process.
#[derive(Debug)]
pub(crate) struct Gpt2 {
    ranks: FxHashMap<Vec<u8>, Rank>,
    /// Token id → bytes, for decoding.
    bytes: Vec<Vec<u8>>,
    regex: Regex,
}

impl Gpt2 {
    /// The process's GPT-2 tables (built on first use: ~0.1 s).
    pub(crate) fn get() -> Result<&'static Gpt2> {
        static GPT2: OnceLock<std::result::Result<Gpt2, String>> = OnceLock::new();
        GPT2.get_or_init(|| Gpt2::build().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::Internal(e.clone()))
    }

    fn build() -> Result<Gpt2> {
        let core = tiktoken_rs::r50k_base().map_err(|e| Error::Internal(format!("GPT-2 vocabulary: {e}")))?;
        let mut ranks = FxHashMap::default();
        let mut bytes = Vec::with_capacity(ORDINARY as usize + 1);
        for rank in 0..ORDINARY {
            let b = core
                .decode_bytes(&[rank])
                .map_err(|e| Error::Internal(format!("GPT-2 token {rank}: {e:?}")))?;
            ranks.insert(b.clone(), rank);
            bytes.push(b);
        }
        bytes.push(b"<|endoftext|>".to_vec());
        let regex = Regex::new(PATTERN).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Gpt2 { ranks, bytes, regex })
    }

    pub(crate) fn vocab_size(&self) -> usize {
        self.bytes.len()
    }

    /// The bytes of `ids`, concatenated.
    pub(crate) fn decode(&self, ids: &[u32], out: &mut Vec<u8>) -> Result<()> {
        for &id in ids {
            let b =
                self.bytes.get(id as usize).ok_or_else(|| Error::Decode(format!("no GPT-2 token {id}")))?;
            out.extend_from_slice(b);
        }
        Ok(())
    }

    /// Calls `f` with each piece of `text`, in order (see the module docs).
    pub(crate) fn pieces<'a>(&self, text: &'a str, mut f: impl FnMut(&'a str)) {
        let mut at = 0;
        while let Some(m) = self.regex.find_at(text, at) {
            let (start, mut end) = (m.start(), m.end());
            let piece = &text[start..end];
            // A whitespace run (only the last alternative ends in
            // whitespace) that more text follows keeps all but its last
            // character, as `\s+(?!\S)` would.
            if end < text.len()
                && let Some((last, c)) = piece.char_indices().next_back()
                && c.is_whitespace()
                && last > 0
            {
                end = start + last;
            }
            f(&text[start..end]);
            at = end;
        }
    }
}

/// Encodes text with GPT-2's tokenizer, caching the merges of pieces it has
/// seen. One per thread: it is not shared.
#[derive(Debug)]
pub(crate) struct Encoder {
    gpt2: &'static Gpt2,
    cache: FxHashMap<Box<[u8]>, Box<[Rank]>>,
}

impl Encoder {
    pub(crate) fn new(gpt2: &'static Gpt2) -> Encoder {
        Encoder { gpt2, cache: FxHashMap::default() }
    }

    /// Appends the ids of `text` to `out` (special tokens in the text are
    /// ordinary text, as tiktoken's `encode_ordinary`).
    pub(crate) fn encode(&mut self, text: &str, out: &mut Vec<u32>) {
        let Encoder { gpt2, cache } = self;
        gpt2.pieces(text, |piece| {
            let piece = piece.as_bytes();
            if let Some(&rank) = gpt2.ranks.get(piece) {
                out.push(rank);
            } else if let Some(ids) = cache.get(piece) {
                out.extend_from_slice(ids);
            } else {
                let ids: Box<[Rank]> =
                    tiktoken_rs::byte_pair_split(piece, &gpt2.ranks).iter().map(|p| gpt2.ranks[*p]).collect();
                out.extend_from_slice(&ids);
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
                cache.insert(piece.into(), ids);
            }
        });
    }
}
