//! Hugging Face `tokenizer.json` files, through the `tokenizers` crate.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// End-of-text tokens of common tokenizers, looked up in this order.
const EOT_NAMES: [&str; 4] = ["<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>"];

#[derive(Debug)]
pub(crate) struct Hf {
    tokenizer: tokenizers::Tokenizer,
    path: PathBuf,
    eot: Option<u32>,
}

impl Hf {
    pub(crate) fn open(path: &Path) -> Result<Hf> {
        let file = |reason: String| Error::File { path: path.to_path_buf(), reason };
        let json = std::fs::read(path).map_err(|e| file(e.to_string()))?;
        let tokenizer: tokenizers::Tokenizer =
            serde_json_from_slice(&json).map_err(|e| file(format!("not a tokenizer.json: {e}")))?;
        let eot = EOT_NAMES.iter().find_map(|n| tokenizer.token_to_id(n));
        Ok(Hf { tokenizer, path: path.to_path_buf(), eot })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn eot(&self) -> Option<u32> {
        self.eot
    }

    pub(crate) fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Appends the ids of `text` (no special tokens added) to `out`.
    pub(crate) fn encode(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let encoding = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(|e| Error::File { path: self.path.clone(), reason: format!("encoding failed: {e}") })?;
        out.extend_from_slice(encoding.get_ids());
        Ok(())
    }

    pub(crate) fn decode(&self, ids: &[u32], out: &mut Vec<u8>) -> Result<()> {
        if let Some(bad) = ids.iter().find(|&&id| self.tokenizer.id_to_token(id).is_none()) {
            return Err(Error::Decode(format!("no token {bad} in {}", self.path.display())));
        }
        let text = self.tokenizer.decode(ids, false).map_err(|e| Error::Decode(e.to_string()))?;
        out.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

/// `tokenizers::Tokenizer::from_bytes`, whose error type is boxed.
fn serde_json_from_slice(json: &[u8]) -> std::result::Result<tokenizers::Tokenizer, String> {
    tokenizers::Tokenizer::from_bytes(json).map_err(|e| e.to_string())
}
