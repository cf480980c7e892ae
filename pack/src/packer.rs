//! Packing a [`Source`] into a dataset.
//!
//! A reader thread fills a batch buffer (up to 64 MiB of records) with a
//! pool of worker threads, each reading records straight into their slot of
//! the buffer and checksumming them; meanwhile the caller's thread writes
//! the previous batch. Two buffers circulate, so memory is bounded and no
//! page is faulted in twice. Records are written strictly in source order,
//! so the output does not depend on the number of threads.
//!
//! The packer, not the source, checks what the payload kind promises: a
//! text payload is validated as UTF-8 by the worker that read it, and for
//! an image payload each header is checked against the image decoder's
//! limits, so images a loader would skip as undecodable are named (one
//! warning) when packing, not discovered epochs later.

use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread;

use crate::error::{Error, Result};
use crate::manifest::{Manifest, Payload};
use crate::source::Source;
use crate::writer::{DEFAULT_SHARD_SIZE, PackWriter};

/// Payload bytes per batch; a larger record gets a batch of its own. Small
/// enough that filling the pipeline at the start and draining it at the end
/// cost little, large enough to keep every reader busy.
const BATCH_BYTES: u64 = 16 << 20;
/// Records per batch at most, so small files still overlap reads and writes.
const BATCH_RECORDS: usize = 4096;
/// Batch buffers in circulation: one being read, one being written.
const BUFFERS: usize = 2;
/// Images named in the pack-time warning about undecodable images; the
/// rest are counted.
const IMAGE_EXAMPLES: usize = 3;

/// Options of [`pack`]. Build with [`PackOptions::builder`].
#[derive(Debug, Clone)]
pub struct PackOptions {
    shard_size: u64,
    threads: usize,
    payload: Option<Payload>,
}

/// Consuming builder of [`PackOptions`].
#[derive(Debug, Clone)]
#[must_use]
pub struct PackOptionsBuilder {
    opts: PackOptions,
}

impl PackOptions {
    /// Starts from the defaults.
    pub fn builder() -> PackOptionsBuilder {
        let cpus = thread::available_parallelism().map_or(2, |n| n.get());
        PackOptionsBuilder {
            opts: PackOptions { shard_size: DEFAULT_SHARD_SIZE, threads: (cpus * 2).max(4), payload: None },
        }
    }
}

impl PackOptionsBuilder {
    /// Target shard size in bytes. Default: 128 MiB.
    pub fn shard_size(mut self, bytes: u64) -> Self {
        self.opts.shard_size = bytes;
        self
    }

    /// Threads that read source records. Default: twice the number of
    /// CPUs, at least 4 (reads wait on storage more than on CPU).
    pub fn threads(mut self, n: usize) -> Self {
        self.opts.threads = n;
        self
    }

    /// Stores every payload as this kind instead of the one the source
    /// detected: [`Payload::Bytes`] (nothing checked: text in Latin-1 or
    /// any other encoding, files that merely look like text) or
    /// [`Payload::Text`] (each record checked to be UTF-8). Default: the
    /// source's own kind.
    pub fn payload(mut self, payload: Payload) -> Self {
        self.opts.payload = Some(payload);
        self
    }

    /// Validates the options.
    pub fn build(self) -> Result<PackOptions> {
        if let Some(p) = &self.opts.payload
            && !matches!(p, Payload::Bytes | Payload::Text)
        {
            return Err(Error::Config(format!("the payload kind can be chosen as bytes or text, not {p}")));
        }
        if self.opts.threads == 0 {
            return Err(Error::Config("threads must be at least 1".into()));
        }
        if self.opts.shard_size == 0 {
            return Err(Error::Config("shard size must be at least 1 byte".into()));
        }
        Ok(self.opts)
    }
}

/// Progress reported by [`pack`] after each record is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackProgress {
    /// Records written so far.
    pub records: u64,
    /// Payload bytes written so far.
    pub bytes: u64,
    /// Records in the source.
    pub total_records: u64,
    /// Payload bytes in the source.
    pub total_bytes: u64,
}

/// A batch of consecutive records read into one buffer (which may be
/// longer than the records it holds).
struct Batch {
    range: Range<usize>,
    buf: Vec<u8>,
    /// Per record: (start in `buf`, CRC32C).
    spans: Vec<(usize, u32)>,
    /// Records (by position in the batch, in order) the image decoder
    /// would refuse, and why.
    refused_images: Vec<(usize, String)>,
}

/// What the reader threads check in each record besides its size.
#[derive(Debug, Clone, Copy)]
struct Check {
    /// The record must be UTF-8.
    text: bool,
    /// The record's image header is checked against the decoder's limits.
    images: bool,
}

/// Refuses an output directory that is the source, lies inside it, or
/// holds it: packing would delete the source (a dataset packed into
/// itself) or read its own output. Paths are compared after resolving
/// symlinks and `..`; an output that does not exist yet is resolved
/// through its nearest existing ancestor. Call it before [`pack`] with
/// the path the source was opened from (`ringfeed pack` does).
pub fn check_pack_paths(src: impl AsRef<Path>, out_dir: impl AsRef<Path>) -> Result<()> {
    let (src, out_dir) = (src.as_ref(), out_dir.as_ref());
    let src = src.canonicalize().map_err(|e| Error::io("open", src, e))?;
    let mut existing = out_dir.to_path_buf();
    let mut rest = Vec::new();
    let out = loop {
        match existing.canonicalize() {
            Ok(p) => break rest.iter().rev().fold(p, |p: std::path::PathBuf, c| p.join(c)),
            Err(_) => match (existing.file_name().map(ToOwned::to_owned), existing.parent()) {
                (Some(name), Some(parent)) => {
                    rest.push(name);
                    existing = if parent.as_os_str().is_empty() { ".".into() } else { parent.to_path_buf() };
                }
                _ => return Err(Error::Config(format!("cannot resolve output path {}", out_dir.display()))),
            },
        }
    };
    let clash = if out == src {
        Some("is the source")
    } else if out.starts_with(&src) {
        Some("lies inside the source")
    } else if src.starts_with(&out) {
        Some("holds the source")
    } else {
        None
    };
    match clash {
        Some(how) => Err(Error::Config(format!(
            "output directory {} {how} ({}); packing would delete or read its own output: \
             choose a directory outside it",
            out_dir.display(),
            src.display()
        ))),
        None => Ok(()),
    }
}

/// Packs every record of `source` into a new dataset in `out_dir`.
///
/// `source` is any [`Source`]: the `Box<dyn Source>` that
/// [`open_source`](crate::open_source) returns, a concrete source such as
/// [`TarSource`](crate::TarSource), or a reference to either (to keep
/// using it afterwards). `out_dir`, like every path ringfeed takes, is any
/// [`AsRef<Path>`]: `&str`, `String`, `&Path`, `PathBuf`.
///
/// `out_dir` must be missing, empty, or hold an earlier ringfeed dataset
/// (which is replaced), and must not overlap the source's files (see
/// [`check_pack_paths`]). While it writes, it holds an exclusive lock on
/// `out_dir`: a second pack into the same directory fails at once. A
/// dataset being replaced stays intact until the new one is complete; on
/// error the directory holds what it held before (the previous dataset,
/// or nothing that opens). When the payload is images, those the image
/// decoder would refuse (over its size limits, or not JPEG/PNG) are
/// reported in one `log` warning; they are packed all the same.
///
/// ```
/// use ringfeed_pack::{Dataset, PackOptions};
/// # fn main() -> ringfeed_pack::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap();
/// # let src_dir = tmp.path().join("docs");
/// # std::fs::create_dir(&src_dir).unwrap();
/// # std::fs::write(src_dir.join("a.txt"), "first").unwrap();
/// # std::fs::write(src_dir.join("b.txt"), "second").unwrap();
/// # let out_dir = tmp.path().join("packed");
/// let src = ringfeed_pack::open_source(&src_dir, None)?;
/// ringfeed_pack::check_pack_paths(&src_dir, &out_dir)?;
/// let manifest = ringfeed_pack::pack(src, &out_dir, &PackOptions::builder().build()?, |_| {})?;
/// assert_eq!(manifest.records, 2);
/// assert_eq!(Dataset::open(&out_dir)?.record(1)?.payload, b"second");
/// # Ok(())
/// # }
/// ```
pub fn pack(
    source: impl Source,
    out_dir: impl AsRef<Path>,
    options: &PackOptions,
    mut progress: impl FnMut(PackProgress),
) -> Result<Manifest> {
    let source: &dyn Source = &source;
    let mut schema = source.schema();
    if let Some(payload) = &options.payload {
        schema.payload = payload.clone();
    }
    let text = schema.payload == Payload::Text;
    let images = schema.payload == Payload::Image;
    let mut report = ImageReport::default();
    let mut writer = PackWriter::builder(out_dir)
        .shard_size(options.shard_size)
        .schema(schema)
        .classes(source.classes())
        .source(source.format())
        .build()?;
    let n = source.len();
    let mut p = PackProgress {
        records: 0,
        bytes: 0,
        total_records: n as u64,
        total_bytes: (0..n).map(|i| source.item(i).size).sum(),
    };
    let batches = plan_batches(source);
    thread::scope(|scope| -> Result<()> {
        let (full_tx, full_rx) = mpsc::sync_channel::<Result<Batch>>(BUFFERS);
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
        for _ in 0..BUFFERS {
            free_tx.send(Vec::new()).expect("receiver alive");
        }
        let reader = scope.spawn(move || {
            for range in batches {
                let Ok(buf) = free_rx.recv() else { break };
                let check = Check { text, images };
                let batch = read_batch(source, range, buf, options.threads, check);
                let failed = batch.is_err();
                if full_tx.send(batch).is_err() || failed {
                    break;
                }
            }
        });
        let result = (|| {
            for batch in full_rx.iter() {
                let batch = batch?;
                for (k, &(start, crc)) in batch.spans.iter().enumerate() {
                    let i = batch.range.start + k;
                    let item = source.item(i);
                    let payload = &batch.buf[start..start + item.size as usize];
                    writer.push_checksummed(payload, crc, item.label, item.key)?;
                    p.records += 1;
                    p.bytes += item.size;
                    progress(p);
                }
                for (k, why) in &batch.refused_images {
                    report.note(batch.range.start + k, source.item(batch.range.start + k).key, why);
                }
                // The reader may have finished already; then the buffer is
                // simply dropped.
                let _ = free_tx.send(batch.buf);
            }
            Ok(())
        })();
        drop(full_rx);
        drop(free_tx);
        reader.join().map_err(|_| Error::Config("the source reader thread panicked".into()))?;
        result
    })?;
    if p.records != n as u64 {
        return Err(Error::Config(format!("source yielded {} of {n} records", p.records)));
    }
    let manifest = writer.finish()?;
    if let Some(warning) = report.warning(n) {
        log::warn!("{warning}");
    }
    Ok(manifest)
}

/// Checks image headers against the limits a loader decodes with (one
/// per reader thread: a decoder is not `Sync`).
struct ImageProbe {
    /// `None` when no decoder could be made: then nothing is checked.
    decoder: Option<ringfeed_decode::Decoder>,
    limits: ringfeed_decode::Limits,
}

impl ImageProbe {
    fn new() -> Self {
        // The limits the loader's image pipeline uses.
        let limits = ringfeed_decode::Limits::default();
        ImageProbe { decoder: ringfeed_decode::Decoder::new(limits).ok(), limits }
    }

    /// Why the decoder would refuse `bytes`, from the header alone (a few
    /// microseconds: no pixel is decoded).
    fn problem(&mut self, bytes: &[u8]) -> Option<String> {
        let decoder = self.decoder.as_mut()?;
        let dims = match png_dims(bytes) {
            Some(dims) => dims,
            None => match decoder.info(bytes) {
                Ok(info) => (info.width, info.height),
                Err(e) => return Some(e.to_string()),
            },
        };
        // Four bytes a pixel: what the decoders check before allocating.
        self.limits.check(u64::from(dims.0), u64::from(dims.1), 4).err().map(|e| e.to_string())
    }
}

/// The images of a pack that will not decode: how many, and the first few.
#[derive(Default)]
struct ImageReport {
    refused: u64,
    examples: Vec<String>,
}

impl ImageReport {
    fn note(&mut self, index: usize, key: Option<&str>, why: &str) {
        self.refused += 1;
        if self.examples.len() < IMAGE_EXAMPLES {
            let name = key.map_or_else(|| format!("record {index}"), |k| format!("{k:?}"));
            self.examples.push(format!("{name} ({why})"));
        }
    }

    /// One line for the whole pack, or `None` when every image is fine.
    fn warning(&self, total: usize) -> Option<String> {
        if self.refused == 0 {
            return None;
        }
        let more = self.refused - self.examples.len() as u64;
        Some(format!(
            "{} of {total} images will not decode with ringfeed's image pipeline (packed as they are; a \
             loader decoding them skips or fails on them): {}{}",
            self.refused,
            self.examples.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        ))
    }
}

/// A PNG's width and height from its IHDR chunk, which must come first:
/// read here rather than by the decoder, which wants more than the header.
fn png_dims(bytes: &[u8]) -> Option<(u32, u32)> {
    let head = bytes.get(..24)?;
    if !head.starts_with(b"\x89PNG\r\n\x1a\n") || head.get(12..16)? != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(head.get(16..20)?.try_into().ok()?);
    let h = u32::from_be_bytes(head.get(20..24)?.try_into().ok()?);
    Some((w, h))
}

/// The error for a text record that is not UTF-8 (`at` bytes into the
/// payload are valid), naming its file and where to look.
fn not_utf8(source: &dyn Source, i: usize, at: usize) -> Error {
    let reason = "text is not valid UTF-8; to pack other encodings as they are, choose the bytes \
                  payload (ringfeed pack --payload bytes)";
    match source.origin(i) {
        Some((path, offset)) => Error::corrupt(path, offset + at as u64, reason),
        None => {
            let name =
                source.item(i).key.map_or_else(|| format!("record {i}"), |k| format!("record {i} ({k:?})"));
            Error::corrupt(name, at as u64, reason)
        }
    }
}

/// Splits `0..len` into consecutive batches bounded in bytes and records.
fn plan_batches(source: &dyn Source) -> Vec<Range<usize>> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for i in 0..source.len() {
        let size = source.item(i).size;
        if i > start && (bytes + size > BATCH_BYTES || i - start >= BATCH_RECORDS) {
            batches.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < source.len() {
        batches.push(start..source.len());
    }
    batches
}

/// Reads the records of `range` into `buf` with up to `threads` workers,
/// each taking the next unread record; checksums are computed by the
/// worker that read the record, while it is still in cache.
fn read_batch(
    source: &dyn Source,
    range: Range<usize>,
    mut buf: Vec<u8>,
    threads: usize,
    check: Check,
) -> Result<Batch> {
    let sizes: Vec<usize> = range
        .clone()
        .map(|i| usize::try_from(source.item(i).size).map_err(|_| Error::Config("record too large".into())))
        .collect::<Result<_>>()?;
    let total: usize = sizes.iter().sum();
    // Every byte up to `total` is overwritten by the reads, so a buffer
    // that is already long enough is reused without clearing.
    if buf.len() < total {
        buf.resize(total, 0);
    }
    // Hand out disjoint slots of the buffer through a shared queue.
    let mut slots = Vec::with_capacity(sizes.len());
    let mut rest = &mut buf[..total];
    for (k, &size) in sizes.iter().enumerate() {
        let (slot, tail) = rest.split_at_mut(size);
        slots.push((k, slot));
        rest = tail;
    }
    slots.reverse();
    let queue = Mutex::new(slots);
    let workers = threads.min(sizes.len()).max(1);
    type Done = (Vec<(usize, u32)>, Vec<(usize, String)>);
    let crcs: Vec<Result<Done>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let (mut done, mut refused) = (Vec::new(), Vec::new());
                    let mut probe = check.images.then(ImageProbe::new);
                    loop {
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                        let Some((k, slot)) = next else { break };
                        source.read_into(range.start + k, slot)?;
                        if check.text
                            && let Err(e) = std::str::from_utf8(slot)
                        {
                            return Err(not_utf8(source, range.start + k, e.valid_up_to()));
                        }
                        if let Some(why) = probe.as_mut().and_then(|p| p.problem(slot)) {
                            refused.push((k, why));
                        }
                        done.push((k, crc32c::crc32c(slot)));
                    }
                    Ok((done, refused))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| Err(Error::Config("a source reader thread panicked".into())))
            })
            .collect()
    });
    let mut spans = vec![(0usize, 0u32); sizes.len()];
    let mut start = 0;
    for (k, &size) in sizes.iter().enumerate() {
        spans[k].0 = start;
        start += size;
    }
    let mut refused_images = Vec::new();
    for worker in crcs {
        let (done, refused) = worker?;
        for (k, crc) in done {
            spans[k].1 = crc;
        }
        refused_images.extend(refused);
    }
    // Source order, whichever worker met them.
    refused_images.sort_unstable_by_key(|&(k, _)| k);
    Ok(Batch { range, buf, spans, refused_images })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../decode/tests/fixtures");
        std::fs::read(dir.join(name)).expect("fixture")
    }

    /// A PNG signature and IHDR chunk claiming `w` x `h` pixels.
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        v.extend(w.to_be_bytes());
        v.extend(h.to_be_bytes());
        v.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]);
        v
    }

    #[test]
    fn images_the_decoder_refuses_are_named_in_one_warning() {
        let mut probe = ImageProbe::new();
        for name in ["rgb.jpg", "progressive.jpg", "palette.png"] {
            assert_eq!(probe.problem(&fixture(name)), None, "{name}");
        }
        let mut report = ImageReport::default();
        assert_eq!(report.warning(1), None);
        let refused: [(Vec<u8>, Option<&str>); 4] = [
            (png_header(20_000, 20_000), Some("c0/huge.png")),
            (png_header(12_000, 12_000), None),
            (b"BM not a decodable format".to_vec(), Some("c1/x.bmp")),
            (png_header(0, 5), Some("c1/empty.png")),
        ];
        for (i, (bytes, key)) in refused.iter().enumerate() {
            let why = probe.problem(bytes).expect("refused");
            report.note(i + 1, *key, &why);
        }
        let warning = report.warning(5).expect("a warning");
        assert!(warning.starts_with("4 of 5 images will not decode"), "{warning}");
        assert!(warning.contains("\"c0/huge.png\" (image exceeds limits: 20000x20000 exceeds"), "{warning}");
        assert!(warning.contains("record 2 (image exceeds limits: 144000000 pixels"), "{warning}");
        assert!(warning.contains("\"c1/x.bmp\" (corrupt image: unknown image format"), "{warning}");
        assert!(warning.ends_with(" and 1 more"), "{warning}");
        assert!(!warning.contains('\n'));
    }
}
