//! [`Tokenizer`]: GPT-2 or a Hugging Face file, chosen at run time.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};
use crate::gpt2::{self, Gpt2};
use crate::hf::Hf;

/// A tokenizer: GPT-2's BPE ([`Tokenizer::gpt2`]) or a Hugging Face
/// `tokenizer.json` ([`Tokenizer::from_file`]). Shared by threads; each
/// encodes through an [`Encoder`] of its own.
#[derive(Debug)]
pub struct Tokenizer {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Gpt2(&'static Gpt2),
    Hf(Box<Hf>),
}

impl Tokenizer {
    /// GPT-2's tokenizer (tiktoken's `gpt2` / `r50k_base`: 50,257 ids,
    /// `<|endoftext|>` = 50256), from the vocabulary shipped in the
    /// `tiktoken-rs` crate: nothing is downloaded.
    pub fn gpt2() -> Result<Tokenizer> {
        Ok(Tokenizer { kind: Kind::Gpt2(Gpt2::get()?) })
    }

    /// A Hugging Face `tokenizer.json`. Its end-of-text token is the first
    /// of `<|endoftext|>`, `<|end_of_text|>`, `</s>`, `<eos>` it has.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Tokenizer> {
        Ok(Tokenizer { kind: Kind::Hf(Box::new(Hf::open(path.as_ref())?)) })
    }

    /// `gpt2` (or `r50k_base`), or the path of a `tokenizer.json`.
    pub fn from_name(name: &str) -> Result<Tokenizer> {
        match name {
            "gpt2" | "r50k_base" => Tokenizer::gpt2(),
            path if Path::new(path).is_file() => Tokenizer::from_file(path),
            other => Err(Error::Unknown(other.to_owned())),
        }
    }

    /// What it is: `gpt2`, or the file's path.
    pub fn name(&self) -> String {
        match &self.kind {
            Kind::Gpt2(_) => "gpt2".to_owned(),
            Kind::Hf(hf) => hf.path().display().to_string(),
        }
    }

    /// Number of ids, special tokens included.
    pub fn vocab_size(&self) -> usize {
        match &self.kind {
            Kind::Gpt2(g) => g.vocab_size(),
            Kind::Hf(hf) => hf.vocab_size(),
        }
    }

    /// The end-of-text id that separates documents, if it has one.
    pub fn eot(&self) -> Option<u32> {
        match &self.kind {
            Kind::Gpt2(_) => Some(gpt2::EOT),
            Kind::Hf(hf) => hf.eot(),
        }
    }

    /// An encoder for one thread.
    pub fn encoder(&self) -> Encoder<'_> {
        Encoder {
            inner: match &self.kind {
                Kind::Gpt2(g) => Inner::Gpt2(gpt2::Encoder::new(g)),
                Kind::Hf(hf) => Inner::Hf(hf),
            },
        }
    }

    /// The ids of `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        self.encoder().encode(text, &mut out)?;
        Ok(out)
    }

    /// The ids of each text, encoded by `threads` threads (at least one),
    /// each taking the next text as it finishes one.
    pub fn encode_batch(&self, texts: &[&str], threads: usize) -> Result<Vec<Vec<u32>>> {
        let next = AtomicUsize::new(0);
        // (text index, its ids) for the texts one thread encoded.
        type Done = Vec<(usize, Vec<u32>)>;
        let encode_some = || -> Result<Done> {
            let mut enc = self.encoder();
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(text) = texts.get(i) else { return Ok(done) };
                let mut ids = Vec::new();
                enc.encode(text, &mut ids)?;
                done.push((i, ids));
            }
        };
        let parts: Vec<Result<Done>> = std::thread::scope(|s| {
            let handles: Vec<_> =
                (0..threads.clamp(1, texts.len().max(1))).map(|_| s.spawn(encode_some)).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| Err(Error::Internal("an encoder thread panicked".into())))
                })
                .collect()
        });
        let mut out = vec![Vec::new(); texts.len()];
        for part in parts {
            for (i, ids) in part? {
                out[i] = ids;
            }
        }
        Ok(out)
    }

    /// The bytes `ids` stand for (GPT-2 tokens may split a UTF-8
    /// character, so bytes, not text).
    pub fn decode(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        match &self.kind {
            Kind::Gpt2(g) => g.decode(ids, &mut out)?,
            Kind::Hf(hf) => hf.decode(ids, &mut out)?,
        }
        Ok(out)
    }
}

/// Encodes for one thread (GPT-2's keeps a cache of merged pieces).
#[derive(Debug)]
pub struct Encoder<'t> {
    inner: Inner<'t>,
}

#[derive(Debug)]
enum Inner<'t> {
    Gpt2(gpt2::Encoder),
    Hf(&'t Hf),
}

impl Encoder<'_> {
    /// Appends the ids of `text` to `out`. Special tokens written in the
    /// text are encoded as ordinary text (tiktoken's `encode_ordinary`);
    /// documents are separated by [`Tokenizer::eot`], added by the caller.
    pub fn encode(&mut self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        match &mut self.inner {
            Inner::Gpt2(e) => {
                e.encode(text, out);
                Ok(())
            }
            Inner::Hf(hf) => hf.encode(text, out),
        }
    }
}
