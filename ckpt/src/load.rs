//! Loading: [`Checkpoint`] (one safetensors file) and the tensors it reads
//! into owned, aligned memory ([`Tensors`]) or into the caller's buffers.

use crate::first_error::FirstError;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ringfeed_io::{AlignedBuf, Mapping};

use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::header::{Header, TensorInfo};
use crate::source::Source;

/// How a checkpoint is read. Built with [`Checkpoint::builder`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    direct_io: bool,
    threads: usize,
    chunk_bytes: usize,
    verify: bool,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions { direct_io: true, threads: 4, chunk_bytes: 8 << 20, verify: true }
    }
}

/// Options of [`Checkpoint::open_with`], consuming builder style.
#[derive(Debug, Clone)]
pub struct CheckpointBuilder {
    path: PathBuf,
    options: LoadOptions,
}

impl CheckpointBuilder {
    /// Read with O_DIRECT where the file system supports it (alignment
    /// from `statx`), bypassing the page cache. Default: `true`. Where
    /// O_DIRECT is refused, reads go through the page cache.
    pub fn direct_io(mut self, on: bool) -> Self {
        self.options.direct_io = on;
        self
    }

    /// Reads in flight at once (threads issuing them). Default: 4.
    pub fn threads(mut self, n: usize) -> Self {
        self.options.threads = n;
        self
    }

    /// Size of each read. Default: 8 MiB (at least 4 KiB; rounded down to
    /// the direct-I/O alignment).
    pub fn chunk_bytes(mut self, n: usize) -> Self {
        self.options.chunk_bytes = n;
        self
    }

    /// Check each tensor against the CRC32C ringfeed stored when it saved
    /// the file (files without checksums load unchecked). Default: `true`.
    pub fn verify_checksums(mut self, on: bool) -> Self {
        self.options.verify = on;
        self
    }

    /// Opens the file and validates its header (nothing is allocated for
    /// tensors before the header is known to be consistent).
    pub fn build(self) -> Result<Checkpoint> {
        let o = &self.options;
        if o.threads == 0 || o.threads > 64 {
            return Err(Error::Config(format!("threads must be between 1 and 64, not {}", o.threads)));
        }
        if o.chunk_bytes < 4096 || o.chunk_bytes > 1 << 30 {
            return Err(Error::Config(format!(
                "chunk_bytes must be between 4 KiB and 1 GiB, not {}",
                o.chunk_bytes
            )));
        }
        let source = Source::open(&self.path, o.direct_io)?;
        let path = &self.path;
        let mut prefix = [0u8; 8];
        (&source.file).read_exact(&mut prefix).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                Error::format(path, None, format!("{} bytes: too short for a safetensors file", source.len))
            }
            _ => Error::io("read", path, e),
        })?;
        let json_len = Header::json_len(path, prefix, source.len)?;
        let mut json = vec![0u8; json_len];
        (&source.file).read_exact(&mut json).map_err(|e| Error::io("read", path, e))?;
        let header = Header::parse(path, &json, source.len)?;
        Ok(Checkpoint { source, header, options: self.options })
    }
}

/// One safetensors file, its header validated: what it holds, and ways to
/// read it.
///
/// ```
/// use ringfeed_ckpt::{Checkpoint, Dtype, TensorRef, save};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("model.safetensors");
/// let weights: Vec<f32> = (0..6).map(|i| i as f32).collect();
/// save(&path, &[TensorRef::new("w", Dtype::F32, &[2, 3], bytemuck::cast_slice(&weights))?], &Default::default())?;
///
/// let ckpt = Checkpoint::open(&path)?;
/// assert_eq!(ckpt.tensor("w").unwrap().shape, [2, 3]);
/// let tensors = ckpt.load()?; // checksums verified
/// assert_eq!(tensors.get("w").unwrap().as_slice::<f32>()?, &weights[..]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Checkpoint {
    source: Source,
    header: Header,
    options: LoadOptions,
}

impl Checkpoint {
    /// Options for opening `path`.
    pub fn builder(path: impl AsRef<Path>) -> CheckpointBuilder {
        CheckpointBuilder { path: path.as_ref().to_path_buf(), options: LoadOptions::default() }
    }

    /// Opens `path` with the default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Checkpoint> {
        Checkpoint::builder(path).build()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.source.path
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.header.find(name)
    }

    /// `__metadata__` (ringfeed's checksum entries left out).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.header.metadata
    }

    /// Bytes of tensor data.
    pub fn data_bytes(&self) -> u64 {
        self.header.data_len
    }

    /// Whether every tensor has a stored CRC32C (a file ringfeed saved).
    pub fn has_checksums(&self) -> bool {
        self.header.tensors.iter().all(|t| t.crc32c.is_some())
    }

    /// The O_DIRECT alignment when reads bypass the page cache.
    pub fn direct_io(&self) -> Option<u64> {
        self.source.direct_align()
    }

    pub(crate) fn source_len(&self) -> u64 {
        self.source.len
    }

    pub(crate) fn verifies(&self) -> bool {
        self.options.verify
    }

    /// Reads the whole file (header included) into `dst`, its exact size.
    pub(crate) fn read_whole(&self, dst: &mut [u8]) -> Result<()> {
        let o = &self.options;
        self.source.read_into(0, dst, o.threads, o.chunk_bytes)
    }

    /// The tensors of a mapping of the whole file (header included).
    pub(crate) fn tensors_in(&self, map: Mapping) -> Tensors {
        let mut out = Tensors::default();
        for t in &self.header.tensors {
            out.index.insert(t.name.clone(), out.entries.len());
            let at = (self.header.data_start + t.data_offsets.0) as usize;
            out.entries.push(Entry { info: t.clone(), buffer: 0, at });
        }
        out.buffers.push(Backing::Mapped(map));
        out
    }

    /// Checks every tensor of `tensors` against its stored checksum.
    pub(crate) fn check_tensors(&self, tensors: &Tensors) -> Result<usize> {
        let views: Vec<TensorView<'_>> = tensors.iter().collect();
        let items: Vec<(&TensorInfo, &[u8])> = views.iter().map(|v| (v.info, v.bytes)).collect();
        self.check_all(&items)
    }

    pub(crate) fn source_metadata(&self) -> Result<std::fs::Metadata> {
        self.source.file.metadata().map_err(|e| Error::io("stat", self.path(), e))
    }

    /// The file's first bytes up to its data: length prefix and header.
    pub(crate) fn header_bytes(&self) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut head = vec![0u8; self.header.data_start as usize];
        self.source.file.read_exact_at(&mut head, 0)?;
        Ok(head)
    }

    /// Reads every tensor into one aligned buffer.
    pub fn load(&self) -> Result<Tensors> {
        self.load_filtered(|_| true)
    }

    /// Reads the tensors whose name `keep` accepts; only their bytes are
    /// read (neighbours in the file in one read).
    pub fn load_filtered(&self, keep: impl Fn(&str) -> bool) -> Result<Tensors> {
        let mut out = Tensors::default();
        self.load_into_set(&keep, &mut out)?;
        Ok(out)
    }

    /// [`load_filtered`](Self::load_filtered) for async code: the reads and
    /// checks run on threads of ringfeed's own, and the returned future only
    /// waits for them, so it never blocks the executor that polls it (tokio,
    /// glommio or any other; no runtime is required).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use ringfeed_ckpt::{Checkpoint, Dtype, TensorRef, save};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("m.safetensors");
    /// # save(&path, &[TensorRef::new("w", Dtype::U8, &[3], &[1, 2, 3])?], &Default::default())?;
    /// let ckpt = Arc::new(Checkpoint::open(&path)?);
    /// let tensors = futures_lite::future::block_on(ckpt.load_async(|_| true))?;
    /// assert_eq!(tensors.get("w").unwrap().bytes(), [1, 2, 3]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn load_async(
        self: &std::sync::Arc<Self>,
        keep: impl Fn(&str) -> bool + Send + 'static,
    ) -> impl std::future::Future<Output = Result<Tensors>> + Send + 'static {
        let me = std::sync::Arc::clone(self);
        on_thread(self.path(), move || me.load_filtered(keep))
    }

    /// Reads the tensors called `names`; [`Error::NotFound`] names the
    /// first that is missing.
    pub fn load_names(&self, names: &[&str]) -> Result<Tensors> {
        if let Some(missing) = names.iter().find(|n| self.tensor(n).is_none()) {
            return Err(Error::NotFound { path: self.path().to_path_buf(), name: (*missing).to_owned() });
        }
        self.load_filtered(|n| names.contains(&n))
    }

    /// Reads tensor `name` into `dst`, which must be exactly its size;
    /// verified against its checksum when it has one and verification is on.
    pub fn read_into(&self, name: &str, dst: &mut [u8]) -> Result<()> {
        let t = self
            .tensor(name)
            .ok_or_else(|| Error::NotFound { path: self.path().to_path_buf(), name: name.to_owned() })?;
        if dst.len() as u64 != t.len() {
            return Err(Error::Config(format!(
                "tensor {name:?} is {} bytes, the buffer {}",
                t.len(),
                dst.len()
            )));
        }
        let o = &self.options;
        self.source.read_into(self.header.data_start + t.data_offsets.0, dst, o.threads, o.chunk_bytes)?;
        if o.verify {
            self.check(t, || crc32c::crc32c(dst))?;
        }
        Ok(())
    }

    /// Reads everything and checks every stored checksum, whatever the
    /// `verify_checksums` option; the number of tensors checked (0 for a
    /// file without checksums, which is only validated structurally).
    /// Memory stays at one window of `threads × chunk_bytes` (32 MiB by
    /// default) whatever the file's size.
    pub fn verify(&self) -> Result<usize> {
        let o = &self.options;
        let window = (o.threads * o.chunk_bytes) as u64;
        let mut buf = AlignedBuf::zeroed(window as usize, 4096)
            .ok_or_else(|| Error::Memory { what: "the verify window".into(), bytes: window })?;
        let tensors = &self.header.tensors;
        let mut crcs = vec![0u32; tensors.len()];
        let mut first = 0; // first tensor not wholly before the window
        let mut at = 0u64;
        while at < self.header.data_len {
            let len = window.min(self.header.data_len - at);
            let part = &mut buf[..len as usize];
            self.source.read_into(self.header.data_start + at, part, o.threads, o.chunk_bytes)?;
            // Tensors are sorted and back to back: each window's bytes
            // extend the CRCs of the tensors it overlaps, in order.
            for (i, t) in tensors.iter().enumerate().skip(first) {
                let (b, e) = t.data_offsets;
                if b >= at + len {
                    break;
                }
                let (from, to) = (b.max(at), e.min(at + len));
                if from < to {
                    crcs[i] = crc32c::crc32c_append(crcs[i], &part[(from - at) as usize..(to - at) as usize]);
                }
                if e <= at + len {
                    first = i + 1;
                }
            }
            at += len;
        }
        let mut checked = 0;
        for (t, &actual) in tensors.iter().zip(&crcs) {
            checked += usize::from(self.check(t, || actual)?);
        }
        Ok(checked)
    }

    fn load_into_set(&self, keep: &dyn Fn(&str) -> bool, out: &mut Tensors) -> Result<usize> {
        let layout = self.layout(keep)?;
        let total = layout.total;
        let mut buf = AlignedBuf::zeroed(total, Layout::ALIGN).ok_or_else(|| Error::Memory {
            what: format!("the tensors of {}", self.path().display()),
            bytes: total as u64,
        })?;
        let checked = self.read_layout(&layout, &mut buf)?;
        let b = out.buffers.len();
        for (t, p) in layout.chosen.into_iter().zip(layout.placed) {
            out.index.insert(t.name.clone(), out.entries.len());
            out.entries.push(Entry { info: t.clone(), buffer: b, at: p });
        }
        out.buffers.push(Backing::Owned(buf));
        Ok(checked)
    }

    /// Where the tensors `keep` accepts go in one buffer: runs of
    /// neighbours, each placed at a position congruent to its file offset
    /// modulo the alignment, so direct reads land in place (only a run's
    /// unaligned head and tail bounce).
    pub(crate) fn layout(&self, keep: &dyn Fn(&str) -> bool) -> Result<Layout<'_>> {
        const ALIGN: u64 = Layout::ALIGN as u64;
        let chosen: Vec<&TensorInfo> = self.header.tensors.iter().filter(|t| keep(&t.name)).collect();
        let data_start = self.header.data_start;
        let mut runs: Vec<(u64, u64, u64)> = Vec::new(); // (file offset, len, buffer position)
        let mut at = 0u64;
        let mut placed = Vec::with_capacity(chosen.len());
        for t in &chosen {
            let file_off = data_start + t.data_offsets.0;
            match runs.last_mut() {
                Some((off, len, pos)) if *off + *len == file_off => {
                    placed.push(*pos + *len);
                    *len += t.len();
                }
                _ => {
                    let pos = at.div_ceil(ALIGN) * ALIGN + file_off % ALIGN;
                    runs.push((file_off, t.len(), pos));
                    placed.push(pos);
                }
            }
            if let Some((_, len, pos)) = runs.last() {
                at = pos + len;
            }
        }
        let too_big = || Error::Memory { what: "tensors".into(), bytes: at };
        let total = usize::try_from(at).map_err(|_| too_big())?;
        // Positions are below `total`, which fits.
        let placed = placed.into_iter().map(|p| p as usize).collect();
        Ok(Layout { chosen, runs, placed, total })
    }

    /// Reads `layout`'s runs into `buf` (`layout.total` bytes, its start
    /// aligned to [`Layout::ALIGN`]) and checks the checksums if
    /// verification is on; how many were checked.
    pub(crate) fn read_layout(&self, layout: &Layout<'_>, buf: &mut [u8]) -> Result<usize> {
        let o = &self.options;
        for &(off, len, pos) in &layout.runs {
            let (pos, len) = (pos as usize, len as usize);
            self.source.read_into(off, &mut buf[pos..pos + len], o.threads, o.chunk_bytes)?;
        }
        if !o.verify {
            return Ok(0);
        }
        let items: Vec<(&TensorInfo, &[u8])> = layout
            .chosen
            .iter()
            .zip(&layout.placed)
            .map(|(t, &p)| (*t, &buf[p..p + t.len() as usize]))
            .collect();
        self.check_all(&items)
    }

    /// Compares `t`'s stored CRC32C (if any) with `actual()`; whether it
    /// had one.
    fn check(&self, t: &TensorInfo, actual: impl FnOnce() -> u32) -> Result<bool> {
        let Some(expected) = t.crc32c else { return Ok(false) };
        let actual = actual();
        if actual != expected {
            return Err(Error::Checksum {
                path: self.path().to_path_buf(),
                tensor: t.name.clone(),
                expected,
                actual,
            });
        }
        Ok(true)
    }

    /// Checks tensors on `threads` threads (CRC32C runs at several GB/s
    /// per core; big checkpoints have many tensors). Returns how many had
    /// a checksum.
    fn check_all(&self, items: &[(&TensorInfo, &[u8])]) -> Result<usize> {
        let next = AtomicUsize::new(0);
        let failed = FirstError::default();
        let threads = self.options.threads.min(items.len()).max(1);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((t, bytes)) = items.get(i) else { return };
                        if let Err(e) = self.check(t, || crc32c::crc32c(bytes)) {
                            failed.set(e);
                            next.store(items.len(), Ordering::Relaxed);
                            return;
                        }
                    }
                });
            }
        });
        failed.into_result(items.iter().filter(|(t, _)| t.crc32c.is_some()).count())
    }
}

/// Runs `work` on a new thread of its own; the future waits for its result
/// without blocking the executor that polls it (any runtime, or none).
pub(crate) fn on_thread<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> impl std::future::Future<Output = Result<T>> + Send + 'static {
    let (tx, rx) = flume::bounded(1);
    let started = std::thread::Builder::new().name("rf-ckpt-load".into()).spawn(move || {
        let _ = tx.send(work());
    });
    let path = path.to_path_buf();
    async move {
        if let Err(e) = started {
            return Err(Error::io("start a loader thread for", path, e));
        }
        rx.recv_async()
            .await
            .unwrap_or_else(|_| Err(Error::Config("the loader thread ended without a result".into())))
    }
}

/// The tensors a load reads and where they go in its buffer.
#[derive(Debug)]
pub(crate) struct Layout<'c> {
    /// The tensors, in file order.
    pub(crate) chosen: Vec<&'c TensorInfo>,
    /// (file offset, length, buffer position) of each run of neighbours.
    runs: Vec<(u64, u64, u64)>,
    /// Each chosen tensor's position in the buffer.
    pub(crate) placed: Vec<usize>,
    /// The buffer's length.
    pub(crate) total: usize,
}

impl Layout<'_> {
    /// Alignment of the buffer's start (and of each run's position modulo
    /// it): the largest direct-I/O alignment file systems ask for.
    pub(crate) const ALIGN: usize = 4096;
}

#[derive(Debug)]
struct Entry {
    info: TensorInfo,
    buffer: usize,
    at: usize,
}

/// Tensors read into memory ringfeed owns (one aligned buffer per file
/// read), looked up by name.
#[derive(Debug, Default)]
pub struct Tensors {
    buffers: Vec<Backing>,
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
}

impl Tensors {
    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<TensorView<'_>> {
        self.index.get(name).map(|&i| self.view(i))
    }

    /// Every tensor, in the order read (file order, file by file).
    pub fn iter(&self) -> impl Iterator<Item = TensorView<'_>> {
        (0..self.entries.len()).map(|i| self.view(i))
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of tensor data held.
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.info.len()).sum()
    }

    fn view(&self, i: usize) -> TensorView<'_> {
        let e = &self.entries[i];
        let len = e.info.len() as usize;
        TensorView { info: &e.info, bytes: &self.buffers[e.buffer][e.at..e.at + len] }
    }

    pub(crate) fn merge(&mut self, other: Tensors) -> std::result::Result<(), String> {
        let base = self.buffers.len();
        for e in other.entries {
            if self.index.contains_key(&e.info.name) {
                return Err(e.info.name);
            }
            self.index.insert(e.info.name.clone(), self.entries.len());
            self.entries.push(Entry { buffer: e.buffer + base, ..e });
        }
        self.buffers.extend(other.buffers);
        Ok(())
    }
}

/// Memory tensors live in: read into this process's own buffer, or a
/// read-only mapping of a sealed copy shared with other processes.
#[derive(Debug)]
enum Backing {
    Owned(AlignedBuf),
    Mapped(Mapping),
}

impl std::ops::Deref for Backing {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Backing::Owned(b) => b,
            Backing::Mapped(m) => m,
        }
    }
}

/// A tensor's bytes and description, borrowed from [`Tensors`].
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    info: &'a TensorInfo,
    bytes: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// Name.
    pub fn name(&self) -> &'a str {
        &self.info.name
    }

    /// Element type.
    pub fn dtype(&self) -> Dtype {
        self.info.dtype
    }

    /// Dimensions.
    pub fn shape(&self) -> &'a [u64] {
        &self.info.shape
    }

    /// The raw little-endian bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The elements as `T` without a copy: `T` must match the dtype
    /// ([`Element`]) and the bytes must be aligned for `T` in memory. They
    /// are when the data section starts aligned (ringfeed's files: at a
    /// multiple of 4096; the Python package's: of 8) and every tensor
    /// before this one has a size that is a multiple of `T`'s; otherwise
    /// this is an error and [`to_vec`](Self::to_vec) copies.
    pub fn as_slice<T: Element>(&self) -> Result<&'a [T]> {
        if !T::DTYPES.contains(&self.info.dtype) {
            return Err(Error::Config(format!(
                "tensor {:?} is {}, not viewable as {}",
                self.info.name,
                self.info.dtype,
                std::any::type_name::<T>()
            )));
        }
        bytemuck::try_cast_slice(self.bytes).map_err(|e| {
            Error::Config(format!(
                "tensor {:?} cannot be viewed as {}: {e:?}",
                self.info.name,
                std::any::type_name::<T>()
            ))
        })
    }

    /// The elements as `T`, copied (works whatever the alignment).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if !T::DTYPES.contains(&self.info.dtype) {
            return Err(Error::Config(format!("tensor {:?} is {}", self.info.name, self.info.dtype)));
        }
        Ok(bytemuck::pod_collect_to_vec(self.bytes))
    }
}

/// A Rust type a tensor's bytes can be viewed as (little-endian hosts).
/// 16-bit floats are their raw bits as `u16`.
pub trait Element: bytemuck::Pod {
    /// The dtypes whose elements are this type.
    const DTYPES: &'static [Dtype];
}

macro_rules! element {
    ($($t:ty => [$($d:ident),+]),+ $(,)?) => {
        $(impl Element for $t { const DTYPES: &'static [Dtype] = &[$(Dtype::$d),+]; })+
    };
}

element! {
    f32 => [F32], f64 => [F64], i64 => [I64], u64 => [U64], i32 => [I32], u32 => [U32],
    i16 => [I16], u16 => [U16, F16, BF16], i8 => [I8], u8 => [U8, Bool, F8E5M2, F8E4M3, F8E8M0],
}
