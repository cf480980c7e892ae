//! [`tokenize`]: text documents from any pack source into a token dataset
//! (a pack whose records are token ids; see `Payload::Tokens`), on many
//! threads, written in document order, crash-safe like every pack.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use ringfeed_pack::{Manifest, PackWriter, Payload, Schema, Source, TokenDtype};

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// Documents handed to a worker at a time.
const CHUNK_DOCS: usize = 64;

/// How [`tokenize`] works. Built with [`TokenizeOptions::builder`].
#[derive(Debug, Clone)]
pub struct TokenizeOptions {
    threads: usize,
    dtype: Option<TokenDtype>,
    shard_size: u64,
    max_record_tokens: usize,
    field: String,
}

/// Builder of [`TokenizeOptions`].
#[derive(Debug, Clone)]
pub struct TokenizeOptionsBuilder {
    o: TokenizeOptions,
}

impl TokenizeOptions {
    /// The defaults, to change.
    pub fn builder() -> TokenizeOptionsBuilder {
        TokenizeOptionsBuilder {
            o: TokenizeOptions {
                threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
                dtype: None,
                shard_size: ringfeed_pack::DEFAULT_SHARD_SIZE,
                max_record_tokens: 1 << 16,
                field: "text".to_owned(),
            },
        }
    }
}

impl TokenizeOptionsBuilder {
    /// Threads encoding. Default: the CPUs this process may use.
    pub fn threads(mut self, n: usize) -> Self {
        self.o.threads = n;
        self
    }

    /// Width of the stored ids. Default: u16 when the vocabulary has at
    /// most 65,536 ids, else u32.
    pub fn dtype(mut self, dtype: TokenDtype) -> Self {
        self.o.dtype = Some(dtype);
        self
    }

    /// Bytes per shard file. Default: the pack default (1 GiB).
    pub fn shard_size(mut self, bytes: u64) -> Self {
        self.o.shard_size = bytes;
        self
    }

    /// Longest record, in tokens: a longer document spans several records,
    /// so that a read of a window never covers more than this much beyond
    /// it. Default: 65,536.
    pub fn max_record_tokens(mut self, n: usize) -> Self {
        self.o.max_record_tokens = n;
        self
    }

    /// The field holding the text in JSON lines. Default: `text`.
    pub fn field(mut self, name: impl Into<String>) -> Self {
        self.o.field = name.into();
        self
    }

    /// Checks the options.
    pub fn build(self) -> Result<TokenizeOptions> {
        let o = &self.o;
        if o.threads == 0 || o.threads > 1024 {
            return Err(Error::Config(format!("threads must be between 1 and 1024, not {}", o.threads)));
        }
        if o.max_record_tokens < 16 || o.max_record_tokens > 1 << 26 {
            return Err(Error::Config(format!(
                "max_record_tokens must be between 16 and 2^26, not {}",
                o.max_record_tokens
            )));
        }
        Ok(self.o)
    }
}

/// How far [`tokenize`] has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenizeProgress {
    /// Documents written.
    pub docs: u64,
    /// Documents in the source.
    pub total_docs: u64,
    /// Source bytes of the documents written.
    pub bytes: u64,
    /// Tokens written (end-of-text tokens included).
    pub tokens: u64,
}

/// One worker's output for a chunk of documents: the ids as stored bytes,
/// and each record's end and whether it ends a document.
#[derive(Debug, Default)]
struct Chunk {
    bytes: Vec<u8>,
    records: Vec<(usize, bool)>,
    source_bytes: u64,
    tokens: u64,
}

/// Tokenizes every document of `source` (files, JSON lines' `text`
/// field, tar members, TFRecord `tf.train.Example`s' `text` feature or raw
/// records, FFRecord records) with `tokenizer` and writes a token dataset
/// to `out_dir`: each document's ids then the end-of-text id, in source
/// order, whatever the threads. The directory rules and crash safety are
/// [`ringfeed_pack::pack`]'s (a dataset appears only when complete).
///
/// ```
/// use ringfeed_tokenize::{TokenizeOptions, Tokenizer, tokenize};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("c.jsonl"), "{\"text\": \"hello world\"}\n{\"text\": \"again\"}\n")?;
/// let source = ringfeed_pack::open_source(dir.path().join("c.jsonl"), None)?;
/// let gpt2 = Tokenizer::gpt2()?;
/// let out = dir.path().join("tokens");
/// let manifest = tokenize(&*source, &gpt2, &out, &TokenizeOptions::builder().build()?, |_| {})?;
/// assert_eq!(manifest.records, 2);
/// let doc = ringfeed_pack::Dataset::open(&out)?.record(0)?;
/// let ids: Vec<u16> = doc.payload.chunks(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
/// assert_eq!(ids, [31373, 995, 50256]); // "hello world", end of text
/// # Ok(())
/// # }
/// ```
pub fn tokenize(
    source: &dyn Source,
    tokenizer: &Tokenizer,
    out_dir: impl AsRef<Path>,
    options: &TokenizeOptions,
    mut progress: impl FnMut(TokenizeProgress),
) -> Result<Manifest> {
    let eot = tokenizer.eot().ok_or_else(|| {
        Error::Config(format!(
            "tokenizer {} has no end-of-text token to separate documents",
            tokenizer.name()
        ))
    })?;
    let vocab =
        u32::try_from(tokenizer.vocab_size()).map_err(|_| Error::Config("vocabulary too large".into()))?;
    let dtype = options.dtype.unwrap_or(TokenDtype::for_vocab(u64::from(vocab)));
    let schema = Schema {
        payload: Payload::Tokens { dtype, eot, vocab_size: vocab, tokenizer: tokenizer.name() },
        labels: true,
        keys: false,
    };
    let text_of = TextOf::for_source(source, &options.field)?;
    let mut writer = PackWriter::builder(out_dir)
        .shard_size(options.shard_size)
        .schema(schema)
        .source(source.format())
        .build()?;
    let n = source.len();
    let chunks = n.div_ceil(CHUNK_DOCS);
    let window = 4 * options.threads;
    let next = AtomicUsize::new(0);
    let mut p = TokenizeProgress { total_docs: n as u64, ..TokenizeProgress::default() };
    std::thread::scope(|s| -> Result<()> {
        let (done_tx, done_rx) = flume::bounded::<Result<(usize, Chunk)>>(window);
        // A worker takes a ticket per chunk and the writer returns one per
        // chunk written: at most `window` chunks are out of order in memory.
        let (ticket_tx, ticket_rx) = flume::bounded::<()>(window);
        for _ in 0..window {
            let _ = ticket_tx.send(());
        }
        for _ in 0..options.threads.min(chunks).max(1) {
            let (done_tx, ticket_rx, next, text_of) = (done_tx.clone(), ticket_rx.clone(), &next, &text_of);
            s.spawn(move || {
                let mut enc = tokenizer.encoder();
                let mut ids = Vec::new();
                while ticket_rx.recv().is_ok() {
                    let c = next.fetch_add(1, Ordering::Relaxed);
                    if c >= chunks {
                        return;
                    }
                    let docs = c * CHUNK_DOCS..((c + 1) * CHUNK_DOCS).min(n);
                    let chunk = encode_chunk(source, text_of, &mut enc, &mut ids, docs, eot, dtype, options);
                    let failed = chunk.is_err();
                    if done_tx.send(chunk.map(|ch| (c, ch))).is_err() || failed {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let result = (|| {
            let mut waiting = BTreeMap::new();
            let mut want = 0;
            for done in done_rx.iter() {
                let (c, chunk) = done?;
                waiting.insert(c, chunk);
                while let Some(chunk) = waiting.remove(&want) {
                    let mut start = 0;
                    for &(end, ends_doc) in &chunk.records {
                        writer.push(&chunk.bytes[start..end], i64::from(ends_doc), None)?;
                        start = end;
                        p.docs += u64::from(ends_doc);
                    }
                    p.bytes += chunk.source_bytes;
                    p.tokens += chunk.tokens;
                    progress(p);
                    want += 1;
                    let _ = ticket_tx.send(());
                }
            }
            Ok(())
        })();
        // Unblocks any worker still waiting for a ticket or to hand over.
        drop(ticket_tx);
        drop(done_rx);
        result
    })?;
    if p.docs != n as u64 {
        return Err(Error::Config(format!("the source yielded {} of {n} documents", p.docs)));
    }
    Ok(writer.finish()?)
}

/// Encodes documents `docs` into one chunk.
#[allow(clippy::too_many_arguments)]
fn encode_chunk(
    source: &dyn Source,
    text_of: &TextOf,
    enc: &mut crate::Encoder<'_>,
    ids: &mut Vec<u32>,
    docs: std::ops::Range<usize>,
    eot: u32,
    dtype: TokenDtype,
    options: &TokenizeOptions,
) -> Result<Chunk> {
    let mut chunk = Chunk::default();
    for i in docs {
        let raw = source.read(i)?;
        chunk.source_bytes += raw.len() as u64;
        let text = text_of.text(source, i, &raw)?;
        ids.clear();
        enc.encode(&text, ids)?;
        ids.push(eot);
        chunk.tokens += ids.len() as u64;
        let pieces = ids.chunks(options.max_record_tokens);
        let last = pieces.len() - 1;
        for (k, piece) in pieces.enumerate() {
            for &id in piece {
                match dtype {
                    // The tokenizer's ids are below its vocabulary size,
                    // which the schema check fitted to the width.
                    TokenDtype::U16 => chunk.bytes.extend_from_slice(&(id as u16).to_le_bytes()),
                    TokenDtype::U32 => chunk.bytes.extend_from_slice(&id.to_le_bytes()),
                }
            }
            chunk.records.push((chunk.bytes.len(), k == last));
        }
    }
    Ok(chunk)
}

/// How a source record becomes text.
#[derive(Debug)]
enum TextOf {
    /// The bytes are UTF-8 text.
    Raw,
    /// A JSON object per record: this string field.
    JsonField(String),
    /// A `tf.train.Example`: its bytes feature `text` (raw text if the
    /// record is not an Example with one).
    TfExample(String),
    /// A multipart record: member `k`.
    Member(usize),
}

impl TextOf {
    fn for_source(source: &dyn Source, field: &str) -> Result<TextOf> {
        Ok(match source.schema().payload {
            _ if source.format() == "jsonl" => TextOf::JsonField(field.to_owned()),
            Payload::TfExample => TextOf::TfExample(field.to_owned()),
            Payload::Multipart { parts } => {
                let k = parts.iter().position(|p| p == "txt" || p == "text").ok_or_else(|| {
                    Error::Config(format!(
                        "the source's samples have no txt member (members: {})",
                        parts.join(", ")
                    ))
                })?;
                TextOf::Member(k)
            }
            Payload::Image => return Err(Error::Config("the source holds images, not text".into())),
            _ => TextOf::Raw,
        })
    }

    /// The text of record `i`: borrowed from `raw` where it is there as
    /// is (no copy), owned where it had to be decoded (JSON).
    fn text<'a>(&self, source: &dyn Source, i: usize, raw: &'a [u8]) -> Result<Cow<'a, str>> {
        let bad = |why: String| {
            let at =
                source.origin(i).map(|(p, off)| format!(" ({} byte {off})", p.display())).unwrap_or_default();
            Error::Config(format!("document {i}{at}: {why}"))
        };
        let utf8 = |b: &'a [u8]| {
            std::str::from_utf8(b).map(Cow::Borrowed).map_err(|e| bad(format!("not UTF-8: {e}")))
        };
        match self {
            TextOf::Raw => utf8(raw),
            TextOf::JsonField(f) => ringfeed_pack::text_field(raw, f).map(Cow::Owned).map_err(bad),
            TextOf::TfExample(f) => match crate::example::bytes_feature(raw, f) {
                Some(text) => utf8(text),
                None => utf8(raw),
            },
            TextOf::Member(k) => {
                let parts = ringfeed_pack::split_parts(raw).map_err(|e| bad(e.to_string()))?;
                utf8(parts.get(*k).ok_or_else(|| bad(format!("no member {k}")))?)
            }
        }
    }
}
