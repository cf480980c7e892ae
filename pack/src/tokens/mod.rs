//! Token corpora read in place: ringfeed token datasets (made by
//! `ringfeed tokenize`), nanoGPT's `train.bin`, Megatron-LM's indexed
//! datasets and datatrove's `.ds` files, all seen as one sequence of
//! token ids with document boundaries ([`TokenCorpus`]).

mod megatron;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use self::megatron::write_megatron_index;
use crate::error::{Error, Result};
use crate::manifest::{Payload, TokenDtype};
use crate::reader::Dataset;

/// GPT-2's end-of-text id, which nanoGPT's `prepare.py` puts after every
/// document.
const GPT2_EOT: u32 = 50_256;

/// The on-disk layout of a token corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenFormat {
    /// A ringfeed token dataset: documents + end-of-text as checksummed
    /// records (every read is verified).
    Ringfeed,
    /// nanoGPT's `train.bin`/`val.bin`: raw little-endian ids (u16 unless
    /// told otherwise), documents separated by end-of-text.
    NanoGpt,
    /// Megatron-LM's `PREFIX.bin` + `PREFIX.idx`.
    Megatron,
    /// datatrove's `NAME.ds` + `NAME.ds.index` (u64 end position of each
    /// document; the id width follows from the sizes).
    Datatrove,
}

/// How to read files that do not say everything about themselves.
#[derive(Debug, Clone, Default)]
pub struct TokenCorpusOptions {
    /// Id width of a raw (nanoGPT) file. Default: u16.
    pub dtype: Option<TokenDtype>,
    /// End-of-text id where the files do not record it. Default: GPT-2's
    /// 50256 (nanoGPT, Megatron and datatrove files built with GPT-2).
    pub eot: Option<u32>,
    /// Read with O_DIRECT where the file system supports it (alignment
    /// from `statx`): for corpora colder or larger than the page cache,
    /// which reads then neither fill nor evict. Default: `false`.
    pub direct_io: bool,
    /// Ids at or above this are an error on read (a model's embedding
    /// would fail on them). Default: a token dataset's own vocabulary;
    /// none for other files.
    pub vocab_size: Option<u32>,
}

/// A sequence of token ids with document boundaries, from any
/// [`TokenFormat`], read with positioned reads (any thread).
#[derive(Debug)]
pub struct TokenCorpus {
    format: TokenFormat,
    path: PathBuf,
    dtype: TokenDtype,
    eot: u32,
    tokens: u64,
    /// Ids must be below this, when known.
    vocab: Option<u32>,
    backing: Backing,
    /// Token offset where each document starts, then the token count:
    /// known at open (indexed formats) or found on first use (nanoGPT).
    docs: OnceLock<std::result::Result<Vec<u64>, String>>,
}

#[derive(Debug)]
enum Backing {
    /// One raw file of ids (nanoGPT, Megatron's `.bin`, datatrove's `.ds`).
    Raw(Reader),
    /// A ringfeed dataset: record `r` holds tokens `starts[r]..starts[r+1]`;
    /// one reader per shard.
    Pack { ds: Box<Dataset>, starts: Vec<u64>, shards: Vec<Reader> },
}

/// Positioned reads of one file, through the page cache or with O_DIRECT.
#[derive(Debug)]
struct Reader {
    path: PathBuf,
    file: File,
    /// The same file opened with O_DIRECT, and its alignment.
    direct: Option<(File, u64)>,
}

impl Reader {
    fn new(path: &Path, file: File, direct_io: bool) -> Reader {
        let direct = direct_io.then(|| open_direct(path, &file)).flatten();
        Reader { path: path.to_path_buf(), file, direct }
    }

    /// Reads `out.len()` bytes at `at`.
    fn read_at(&self, at: u64, out: &mut [u8]) -> Result<()> {
        let Some((direct, align)) = &self.direct else {
            return self.file.read_exact_at(out, at).map_err(|e| Error::io_at("read", &self.path, at, e));
        };
        // The covering aligned span; the file's end need not be aligned.
        let start = at / align * align;
        let end = (at + out.len() as u64).div_ceil(*align) * align;
        let len = usize::try_from(end - start).map_err(|_| Error::Config("read too large".into()))?;
        let mut buf = ringfeed_io::AlignedBuf::zeroed(len, *align as usize).ok_or_else(|| {
            Error::Config(format!("cannot allocate {len} bytes to read {}", self.path.display()))
        })?;
        let mut got = 0;
        while got < len {
            match direct.read_at(&mut buf[got..], start + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io_at("read", &self.path, start + got as u64, e)),
            }
        }
        let from = (at - start) as usize;
        if got < from + out.len() {
            return Err(Error::corrupt(
                &self.path,
                start + got as u64,
                "the file ends inside the tokens asked for",
            ));
        }
        out.copy_from_slice(&buf[from..from + out.len()]);
        Ok(())
    }
}

/// `path` opened again with O_DIRECT, and its alignment; `None` where the
/// file system has no direct I/O.
fn open_direct(path: &Path, file: &File) -> Option<(File, u64)> {
    let align = match ringfeed_io::dio_alignment_of(file) {
        Ok(ringfeed_io::DirectIo::Aligned(a)) => a,
        _ => return None,
    };
    use std::os::unix::fs::OpenOptionsExt;
    let direct =
        std::fs::OpenOptions::new().read(true).custom_flags(ringfeed_io::O_DIRECT).open(path).ok()?;
    Some((direct, align.max(512)))
}

impl TokenCorpus {
    /// Opens `path`: a ringfeed token dataset directory, a Megatron prefix
    /// (or its `.bin`/`.idx`), a datatrove `.ds` file, or any other file as
    /// nanoGPT raw ids. Indexes are validated against the data's size.
    pub fn open(path: impl AsRef<Path>, options: &TokenCorpusOptions) -> Result<TokenCorpus> {
        let path = path.as_ref();
        if path.is_dir() {
            return Self::open_pack(path, options);
        }
        let with = |ext: &str| PathBuf::from(format!("{}{ext}", path.display()));
        let stem = path.with_extension("");
        if path.extension().is_some_and(|e| e == "idx" || e == "bin") && stem.with_extension("idx").is_file()
        {
            return Self::open_megatron(&stem, options);
        }
        if with(".idx").is_file() && with(".bin").is_file() {
            return Self::open_megatron(path, options);
        }
        if with(".index").is_file() {
            return Self::open_datatrove(path, options);
        }
        let file = crate::sys::open_regular(path).map_err(|e| Error::io("open", path, e))?;
        let len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
        let dtype = options.dtype.unwrap_or(TokenDtype::U16);
        let width = dtype.width() as u64;
        if !len.is_multiple_of(width) {
            return Err(Error::corrupt(
                path,
                len,
                format!("{len} bytes is not a whole number of {dtype:?} ids"),
            ));
        }
        Ok(TokenCorpus {
            format: TokenFormat::NanoGpt,
            path: path.to_path_buf(),
            dtype,
            eot: options.eot.unwrap_or(GPT2_EOT),
            tokens: len / width,
            vocab: options.vocab_size,
            backing: Backing::Raw(Reader::new(path, file, options.direct_io)),
            docs: OnceLock::new(),
        })
    }

    fn open_pack(dir: &Path, options: &TokenCorpusOptions) -> Result<TokenCorpus> {
        let direct_io = options.direct_io;
        let ds = Dataset::open(dir)?;
        let Payload::Tokens { dtype, eot, vocab_size, .. } = ds.manifest().schema.payload else {
            return Err(Error::Config(format!(
                "{} is not a token dataset (made by `ringfeed tokenize`)",
                dir.display()
            )));
        };
        let width = dtype.width() as u64;
        let mut starts = Vec::with_capacity(ds.len() as usize + 1);
        let mut docs = vec![0];
        let mut at = 0u64;
        for r in 0..ds.len() {
            let loc = ds.locate(r)?;
            starts.push(at);
            at += u64::from(loc.len) / width;
            if loc.label == 1 {
                docs.push(at);
            }
        }
        starts.push(at);
        if *docs.last().expect("not empty") != at {
            docs.push(at); // a last document without its end mark
        }
        let docs = OnceLock::from(Ok(docs));
        let shards = (0..ds.shards().len())
            .map(|k| {
                let path = ds.shards()[k].path();
                let file = crate::sys::open_regular(path).map_err(|e| Error::io("open", path, e))?;
                Ok(Reader::new(path, file, direct_io))
            })
            .collect::<Result<_>>()?;
        Ok(TokenCorpus {
            format: TokenFormat::Ringfeed,
            path: dir.to_path_buf(),
            dtype,
            eot,
            tokens: at,
            vocab: Some(options.vocab_size.map_or(vocab_size, |v| v.min(vocab_size))),
            backing: Backing::Pack { ds: Box::new(ds), starts, shards },
            docs,
        })
    }

    fn open_megatron(prefix: &Path, options: &TokenCorpusOptions) -> Result<TokenCorpus> {
        let idx_path = PathBuf::from(format!("{}.idx", prefix.display()));
        let bin_path = PathBuf::from(format!("{}.bin", prefix.display()));
        let idx = std::fs::read(&idx_path).map_err(|e| Error::io("read", &idx_path, e))?;
        let file = crate::sys::open_regular(&bin_path).map_err(|e| Error::io("open", &bin_path, e))?;
        let bin_len = file.metadata().map_err(|e| Error::io("stat", &bin_path, e))?.len();
        let index = megatron::parse(&idx, &idx_path, bin_len)?;
        Ok(TokenCorpus {
            format: TokenFormat::Megatron,
            path: prefix.to_path_buf(),
            dtype: index.dtype,
            eot: options.eot.unwrap_or(GPT2_EOT),
            tokens: index.tokens,
            vocab: options.vocab_size,
            backing: Backing::Raw(Reader::new(&bin_path, file, options.direct_io)),
            docs: OnceLock::from(Ok(index.docs)),
        })
    }

    fn open_datatrove(path: &Path, options: &TokenCorpusOptions) -> Result<TokenCorpus> {
        let index_path = PathBuf::from(format!("{}.index", path.display()));
        let index = std::fs::read(&index_path).map_err(|e| Error::io("read", &index_path, e))?;
        if !index.len().is_multiple_of(8) {
            return Err(Error::corrupt(&index_path, 0, "not a whole number of u64 document ends"));
        }
        let file = crate::sys::open_regular(path).map_err(|e| Error::io("open", path, e))?;
        let len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
        let mut docs = vec![0u64];
        for (d, b) in index.chunks_exact(8).enumerate() {
            let end = u64::from_le_bytes(b.try_into().expect("8 bytes"));
            if end < *docs.last().expect("not empty") {
                return Err(Error::corrupt(
                    &index_path,
                    8 * d as u64,
                    format!("document {d} ends at {end}, before the previous one"),
                ));
            }
            docs.push(end);
        }
        let tokens = *docs.last().expect("not empty");
        let dtype = match (tokens, len) {
            (0, 0) => options.dtype.unwrap_or(TokenDtype::U16),
            // Checked: a hostile index may name any count.
            (t, l) if t.checked_mul(2) == Some(l) => TokenDtype::U16,
            (t, l) if t.checked_mul(4) == Some(l) => TokenDtype::U32,
            (t, l) => {
                return Err(Error::corrupt(
                    path,
                    l,
                    format!("{l} bytes hold neither 2 nor 4 bytes for each of the index's {t} tokens"),
                ));
            }
        };
        docs.dedup(); // empty documents add nothing
        Ok(TokenCorpus {
            format: TokenFormat::Datatrove,
            path: path.to_path_buf(),
            dtype,
            eot: options.eot.unwrap_or(GPT2_EOT),
            tokens,
            vocab: options.vocab_size,
            backing: Backing::Raw(Reader::new(path, file, options.direct_io)),
            docs: OnceLock::from(Ok(docs)),
        })
    }

    /// The layout it was read from.
    pub fn format(&self) -> TokenFormat {
        self.format
    }

    /// The path opened (a Megatron corpus: its prefix).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Width of the stored ids.
    pub fn dtype(&self) -> TokenDtype {
        self.dtype
    }

    /// Whether reads bypass the page cache (asked for, and supported).
    pub fn direct_io(&self) -> bool {
        match &self.backing {
            Backing::Raw(r) => r.direct.is_some(),
            Backing::Pack { shards, .. } => !shards.is_empty() && shards.iter().all(|r| r.direct.is_some()),
        }
    }

    /// The end-of-text id.
    pub fn eot(&self) -> u32 {
        self.eot
    }

    /// Number of tokens.
    pub fn len(&self) -> u64 {
        self.tokens
    }

    /// Whether it holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens == 0
    }

    /// Where each document starts (token offsets), then the token count.
    /// Indexed formats know it; for a nanoGPT file the first call scans the
    /// whole file for end-of-text ids (a document ends after each).
    pub fn documents(&self) -> Result<&[u64]> {
        let docs = self.docs.get_or_init(|| self.scan_documents().map_err(|e| e.to_string()));
        docs.as_deref().map_err(|e| Error::Config(e.clone()))
    }

    fn scan_documents(&self) -> Result<Vec<u64>> {
        let mut docs = vec![0];
        let mut buf = vec![0u32; 1 << 20];
        let mut at = 0;
        while at < self.tokens {
            let n = (self.tokens - at).min(buf.len() as u64) as usize;
            self.read(at, &mut buf[..n])?;
            let ends = buf[..n].iter().enumerate().filter(|&(_, &t)| t == self.eot);
            docs.extend(ends.map(|(i, _)| at + i as u64 + 1));
            at += n as u64;
        }
        if *docs.last().expect("not empty") != self.tokens {
            docs.push(self.tokens);
        }
        Ok(docs)
    }

    /// Reads tokens `[start, start + out.len())` into `out`; a ringfeed
    /// dataset's records are checked against their CRC32C.
    pub fn read(&self, start: u64, out: &mut [u32]) -> Result<()> {
        let end = start.checked_add(out.len() as u64).filter(|&e| e <= self.tokens).ok_or_else(|| {
            Error::Config(format!(
                "tokens {start}..{} are past the end of {} ({} tokens)",
                start.saturating_add(out.len() as u64),
                self.path.display(),
                self.tokens
            ))
        })?;
        let width = self.dtype.width();
        if out.is_empty() {
            return Ok(());
        }
        match &self.backing {
            Backing::Raw(reader) => {
                let mut bytes = vec![0u8; out.len() * width];
                reader.read_at(start * width as u64, &mut bytes)?;
                widen(self.dtype, &bytes, out);
                self.check_ids(out, &reader.path, start * width as u64)?;
            }
            Backing::Pack { ds, starts, shards } => {
                // The records holding the tokens, one read per shard they
                // span (records are back to back in a shard), each record
                // checked whole against its CRC32C.
                let mut r = starts.partition_point(|&s| s <= start) - 1;
                let last = starts.partition_point(|&s| s < end) - 1;
                let mut bytes = Vec::new();
                while r <= last {
                    let first = ds.locate(r as u64)?;
                    let mut locs = vec![first];
                    while r + locs.len() <= last {
                        let next = ds.locate((r + locs.len()) as u64)?;
                        if next.shard != first.shard {
                            break;
                        }
                        locs.push(next);
                    }
                    let span_end = locs.last().map_or(first.offset, |l| l.offset + u64::from(l.len));
                    bytes.resize((span_end - first.offset) as usize, 0);
                    shards[first.shard].read_at(first.offset, &mut bytes)?;
                    for (k, loc) in locs.iter().enumerate() {
                        let at = (loc.offset - first.offset) as usize;
                        let rec = &bytes[at..at + loc.len as usize];
                        if crc32c::crc32c(rec) != loc.crc32c {
                            let path = ds.shards()[loc.shard].path();
                            return Err(Error::corrupt_record(
                                path,
                                loc.offset,
                                loc.index_in_shard,
                                "token record fails its CRC32C",
                            ));
                        }
                        let (t0, t1) = (starts[r + k], starts[r + k + 1]);
                        let (from, to) = (start.max(t0), end.min(t1));
                        if from < to {
                            let piece = &rec[((from - t0) as usize) * width..((to - t0) as usize) * width];
                            let dst = &mut out[(from - start) as usize..(to - start) as usize];
                            widen(self.dtype, piece, dst);
                            let at = loc.offset + (from - t0) * width as u64;
                            self.check_ids(dst, ds.shards()[loc.shard].path(), at)?;
                        }
                    }
                    r += locs.len();
                }
            }
        }
        Ok(())
    }
}

impl TokenCorpus {
    /// An error naming the first id of `ids` (read from byte `at` of
    /// `path`) at or above the vocabulary size, when one is known.
    fn check_ids(&self, ids: &[u32], path: &Path, at: u64) -> Result<()> {
        let Some(vocab) = self.vocab else { return Ok(()) };
        match ids.iter().position(|&t| t >= vocab) {
            None => Ok(()),
            Some(i) => Err(Error::corrupt(
                path,
                at + (i * self.dtype.width()) as u64,
                format!("token id {} is past the vocabulary of {vocab} ids", ids[i]),
            )),
        }
    }
}

/// Little-endian ids of `dtype` in `bytes` into `out`.
fn widen(dtype: TokenDtype, bytes: &[u8], out: &mut [u32]) {
    match dtype {
        TokenDtype::U16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = u32::from(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        TokenDtype::U32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
    }
}
