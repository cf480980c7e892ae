//! Decoding and augmenting images inside the engine: the worker that read
//! a batch's records turns them into a `[B, C, H, W]` image tensor, on the
//! same core, each sample written straight into its slot.

use bytes::Bytes;
pub use ringfeed_decode::{Output as ImageOutput, Transform as ImageTransform};

/// What the loader does with each record's payload besides delivering it:
/// a crop / resize rule and an element type.
///
/// The presets mean what torchvision's reference recipes (and
/// `ringfeed_decode::Pipeline::train` / `val`) mean: [`train`](Self::train)
/// and [`val`](Self::val) give ImageNet-normalized `f32`, as
/// `ToTensor() + Normalize(mean, std)` does; [`u8`](Self::u8) asks for raw
/// pixels instead (a quarter of the memory, for normalizing on the GPU).
///
/// `Display` writes it the way torchvision would spell it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImagePipeline {
    /// Crop / resize rules.
    pub transform: ImageTransform,
    /// `u8` pixels, or normalized `f32`.
    pub output: ImageOutput,
}

/// ImageNet-normalized `f32`, the presets' output.
const IMAGENET: ImageOutput =
    ImageOutput::F32 { mean: ringfeed_decode::IMAGENET_MEAN, std: ringfeed_decode::IMAGENET_STD };

impl ImagePipeline {
    /// torchvision's training recipe: RandomResizedCrop(`size`, scale
    /// (0.08, 1), ratio (3/4, 4/3)) + RandomHorizontalFlip(0.5), ImageNet
    /// normalization, `f32` `[3, size, size]`. Add [`u8`](Self::u8) for
    /// raw pixels.
    pub fn train(size: u32) -> Self {
        ImagePipeline {
            transform: ImageTransform::Train {
                size,
                scale: (0.08, 1.0),
                ratio: (3.0 / 4.0, 4.0 / 3.0),
                flip: 0.5,
            },
            output: IMAGENET,
        }
    }

    /// torchvision's evaluation recipe: Resize(`resize`, shorter side) +
    /// CenterCrop(`crop`), ImageNet normalization, `f32` `[3, crop, crop]`
    /// (torchvision's ImageNet scripts use `val(256, 224)`). Add
    /// [`u8`](Self::u8) for raw pixels.
    pub fn val(resize: u32, crop: u32) -> Self {
        ImagePipeline { transform: ImageTransform::Val { resize, crop }, output: IMAGENET }
    }

    /// Raw `u8` pixels (0..=255, not normalized) instead of normalized
    /// `f32`. Default: normalized `f32` ([`normalized`](Self::normalized)).
    #[must_use]
    pub fn u8(mut self) -> Self {
        self.output = ImageOutput::U8;
        self
    }

    /// `f32` output, `(pixel / 255 - mean) / std` per channel with
    /// ImageNet's mean and std: what [`train`](Self::train) and
    /// [`val`](Self::val) give, so this only undoes [`u8`](Self::u8) or
    /// spells the choice out. (For other means, set
    /// [`output`](Self::output) to an [`ImageOutput::F32`].) Default: on.
    #[must_use]
    pub fn normalized(mut self) -> Self {
        self.output = IMAGENET;
        self
    }

    /// Checks the pipeline as the decoder will run it: an output side in
    /// `1..=8192`, a center crop no larger than the resize, valid train
    /// scale / ratio / flip ranges. [`LoaderBuilder::build`] calls it (with
    /// the loader's own limits on the resize and a batch's size), so an
    /// invalid pipeline fails there rather than at the first batch.
    ///
    /// Fails with [`Error::Config`](crate::Error::Config) ("invalid
    /// configuration: image pipeline: ...").
    ///
    /// [`LoaderBuilder::build`]: crate::LoaderBuilder::build
    pub fn validate(&self) -> crate::Result<()> {
        self.transform.validate().map_err(config_error)
    }

    /// Output side and element type.
    pub(crate) fn side_and_dtype(&self) -> crate::Result<(usize, ImageDtype)> {
        let side = self.transform.output_side() as usize;
        let dtype = if self.output == ImageOutput::U8 { ImageDtype::U8 } else { ImageDtype::F32 };
        Ok((side, dtype))
    }

    /// Bytes of one sample's `[3, side, side]` output.
    pub(crate) fn sample_bytes(&self) -> crate::Result<usize> {
        let (side, dtype) = self.side_and_dtype()?;
        Ok(3 * side * side * dtype.size())
    }

    pub(crate) fn build(&self) -> crate::Result<ringfeed_decode::Pipeline> {
        ringfeed_decode::Pipeline::new(
            self.transform,
            ringfeed_decode::Layout::Chw,
            self.output,
            false,
            ringfeed_decode::Limits::default(),
        )
        .map_err(config_error)
    }
}

/// A decoder error about the pipeline as a loader configuration error,
/// with the one "invalid configuration:" prefix (the decoder's own
/// `Config` message carries it too).
fn config_error(e: ringfeed_decode::Error) -> crate::Error {
    let reason = match e {
        ringfeed_decode::Error::Config(reason) => reason,
        other => other.to_string(),
    };
    crate::Error::Config(format!("image pipeline: {reason}"))
}

impl std::fmt::Display for ImagePipeline {
    /// torchvision's spelling, e.g. `Resize(256) + CenterCrop(224),
    /// normalized f32 (mean [0.485, 0.456, 0.406], std [0.229, 0.224,
    /// 0.225])`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.transform {
            ImageTransform::Train { size, scale, ratio, flip } => write!(
                f,
                "RandomResizedCrop({size}, scale=({}, {}), ratio=({}, {})) + RandomHorizontalFlip({flip})",
                scale.0, scale.1, ratio.0, ratio.1
            )?,
            ImageTransform::Val { resize, crop } => write!(f, "Resize({resize}) + CenterCrop({crop})")?,
            other => write!(f, "{other:?}")?,
        }
        match self.output {
            ImageOutput::U8 => f.write_str(", u8"),
            ImageOutput::F32 { mean, std } => write!(f, ", normalized f32 (mean {mean:?}, std {std:?})"),
        }
    }
}

/// Where a loader's workers decode each batch's images: chosen per loader,
/// at run time, so enabling the `tch` feature somewhere in a program does
/// not change how any other loader allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BatchMemory {
    /// Buffers of the loader's own pool, recycled once the consumer drops a
    /// batch (page faults stop after the first batches).
    #[default]
    Pooled,
    /// A fresh libtorch tensor per batch (pinned host memory when CUDA is
    /// available, the process's `LOCAL_RANK` device), which
    /// [`Batch::into_tensors`](crate::Batch::into_tensors) hands over
    /// without copying. Needs the `tch` feature.
    #[cfg(feature = "tch")]
    Tensor,
}

/// Element type of [`Images`] (byte order: see [`Images`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageDtype {
    /// One byte per value.
    U8,
    /// `f32`, four bytes per value.
    F32,
}

impl ImageDtype {
    /// Bytes per value: 1 or 4.
    pub fn size(self) -> usize {
        match self {
            ImageDtype::U8 => 1,
            ImageDtype::F32 => 4,
        }
    }
}

/// A batch of decoded images: `[B, C, H, W]`, contiguous, row-major.
///
/// `f32` values are in the machine's native byte order (little-endian on
/// the x86-64 and aarch64 Linux machines ringfeed runs on), as a tensor
/// library expects them in memory: [`as_f32`](Self::as_f32) reads them
/// without conversion; [`data`](Self::data) gives their bytes, to read with
/// `f32::from_ne_bytes`.
///
/// With `BatchMemory::Tensor` (feature `tch`) the values live in a
/// libtorch tensor from the start (workers decode straight into it) and
/// `Batch::into_tensors` hands that tensor over without copying.
#[derive(Debug)]
pub struct Images {
    shape: [usize; 4],
    dtype: ImageDtype,
    /// Invariant: `shape`'s product × `dtype.size()` bytes, and for `F32`
    /// aligned for `f32` (see [`Images::new`]).
    storage: Storage,
}

/// Where a batch's image values live.
#[derive(Debug)]
pub(crate) enum Storage {
    /// A recycled buffer of the loader's pool, which the consumer owns
    /// alone (writable: [`Images::into_buffer`]).
    Pool(super::pool::Pooled),
    /// Shared bytes: the run's first batch, a clone, a realigned copy.
    Bytes(Bytes),
    /// A libtorch tensor.
    #[cfg(feature = "tch")]
    Tensor(ringfeed_tensor::TensorSlab),
}

impl Images {
    /// Images over `storage`, which holds `shape`'s values of `dtype`.
    /// Establishes the alignment [`as_f32`](Self::as_f32) relies on:
    /// the loader's buffers are page-aligned maps (its pool), libtorch
    /// tensors (64-byte aligned) or, for the first batch, one heap block
    /// (the global allocator aligns those to 16 bytes), and slots are
    /// multiples of 4 bytes, so `f32` values are aligned as they come; a
    /// buffer that is not (an allocator that aligns less) is copied into
    /// one that is.
    pub(crate) fn new(shape: [usize; 4], dtype: ImageDtype, storage: Storage) -> crate::Result<Self> {
        let mut images = Images { shape, dtype, storage };
        let len = shape.iter().product::<usize>() * dtype.size();
        if images.data().len() != len {
            return Err(crate::Error::Internal(format!(
                "{} image bytes for {shape:?} {dtype:?} values",
                images.data().len()
            )));
        }
        if dtype == ImageDtype::F32 && bytemuck::try_cast_slice::<u8, f32>(images.data()).is_err() {
            images.storage = Storage::Bytes(aligned_copy(images.data()));
        }
        Ok(images)
    }

    /// Shape `[B, C, H, W]`.
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// Element type.
    pub fn dtype(&self) -> ImageDtype {
        self.dtype
    }

    /// Where the values live: [`BatchMemory::Pooled`] (also for a clone of
    /// tensor-backed images) or `BatchMemory::Tensor`.
    pub fn memory(&self) -> BatchMemory {
        match &self.storage {
            Storage::Pool(_) | Storage::Bytes(_) => BatchMemory::Pooled,
            #[cfg(feature = "tch")]
            Storage::Tensor(_) => BatchMemory::Tensor,
        }
    }

    /// The values' bytes, `B * C * H * W * element size` of them, in native
    /// byte order.
    pub fn data(&self) -> &[u8] {
        match &self.storage {
            Storage::Pool(b) => b.as_ref(),
            Storage::Bytes(b) => b,
            #[cfg(feature = "tch")]
            Storage::Tensor(t) => t.bytes(),
        }
    }

    /// The values' memory, owned and writable, for handing to another
    /// library without a copy (the Python package gives it to torch
    /// through DLPack). A pooled buffer returns to the loader's pool when
    /// the [`ImageBuffer`] is dropped; images that share their bytes (the
    /// run's first batch while a clone lives, a clone) or live in a
    /// libtorch tensor are copied into a buffer of their own.
    pub fn into_buffer(self) -> ImageBuffer {
        let inner = match self.storage {
            Storage::Pool(p) => BufferInner::Pool(p),
            Storage::Bytes(b) => match b.try_into_mut() {
                // Unique: its memory becomes writable as it is (the first
                // batch's one allocation, already aligned for `f32`).
                Ok(m) if self.dtype == ImageDtype::U8 || m.as_ptr().align_offset(4) == 0 => {
                    BufferInner::Mut(m)
                }
                Ok(m) => BufferInner::F32(f32_copy(&m)),
                Err(b) if self.dtype == ImageDtype::F32 => BufferInner::F32(f32_copy(&b)),
                Err(b) => BufferInner::Mut(bytes::BytesMut::from(&b[..])),
            },
            #[cfg(feature = "tch")]
            Storage::Tensor(t) => match self.dtype {
                ImageDtype::F32 => BufferInner::F32(f32_copy(t.bytes())),
                ImageDtype::U8 => BufferInner::Mut(bytes::BytesMut::from(t.bytes())),
            },
        };
        ImageBuffer { shape: self.shape, dtype: self.dtype, inner }
    }

    /// The values as `f32`, `B * C * H * W` of them, for
    /// [`ImageDtype::F32`] images (`None` for `u8`; read those with
    /// [`data`](Self::data)). No copy: every `Images` keeps `f32` values
    /// aligned (see the type's docs), so this never fails for `F32`.
    ///
    /// ```no_run
    /// use ringfeed::{ImagePipeline, Loader};
    /// # fn main() -> ringfeed::Result<()> {
    /// let loader = Loader::builder("data/val.rf").images(ImagePipeline::val(256, 224)).build()?;
    /// for batch in loader {
    ///     let batch = batch?;
    ///     let images = batch.images.as_ref().expect("an image loader");
    ///     let values: &[f32] = images.as_f32().expect("val gives normalized f32");
    ///     assert_eq!(values.len(), images.shape().iter().product::<usize>());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn as_f32(&self) -> Option<&[f32]> {
        if self.dtype != ImageDtype::F32 {
            return None;
        }
        bytemuck::try_cast_slice(self.data()).ok()
    }

    #[cfg(feature = "tch")]
    pub(crate) fn into_parts(self) -> ([usize; 4], ImageDtype, Storage) {
        (self.shape, self.dtype, self.storage)
    }
}

/// `bytes` (a whole number of `f32`s) copied into a buffer aligned for
/// `f32`: a `Vec<f32>`'s, which a `Bytes` then owns.
fn aligned_copy(bytes: &[u8]) -> Bytes {
    /// A `Vec<f32>` seen as bytes.
    struct F32Buf(Vec<f32>);
    impl AsRef<[u8]> for F32Buf {
        fn as_ref(&self) -> &[u8] {
            bytemuck::cast_slice(&self.0)
        }
    }
    let n = bytes.len() / 4;
    let mut values = vec![0f32; n];
    bytemuck::cast_slice_mut::<f32, u8>(&mut values).copy_from_slice(&bytes[..n * 4]);
    Bytes::from_owner(F32Buf(values))
}

/// `bytes` (a whole number of `f32`s) copied into a `Vec<f32>`.
fn f32_copy(bytes: &[u8]) -> Vec<f32> {
    let n = bytes.len() / 4;
    let mut values = vec![0f32; n];
    bytemuck::cast_slice_mut::<f32, u8>(&mut values).copy_from_slice(&bytes[..n * 4]);
    values
}

/// A batch's image values in memory that the holder owns alone and may
/// write: what [`Images::into_buffer`] returns. Dropping it returns a
/// pooled buffer to its loader's pool (or frees it once the loader is
/// gone).
#[derive(Debug)]
pub struct ImageBuffer {
    shape: [usize; 4],
    dtype: ImageDtype,
    inner: BufferInner,
}

#[derive(Debug)]
enum BufferInner {
    Pool(super::pool::Pooled),
    Mut(bytes::BytesMut),
    F32(Vec<f32>),
}

impl ImageBuffer {
    /// Shape `[B, C, H, W]`.
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// Element type.
    pub fn dtype(&self) -> ImageDtype {
        self.dtype
    }

    /// The values' bytes (native byte order), `shape`'s product × element
    /// size of them; `f32` values are aligned for `f32`.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.inner {
            BufferInner::Pool(p) => p.as_ref(),
            BufferInner::Mut(m) => m,
            BufferInner::F32(v) => bytemuck::cast_slice(v),
        }
    }

    /// The values' bytes, writable.
    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        match &mut self.inner {
            BufferInner::Pool(p) => p.as_mut_slice(),
            BufferInner::Mut(m) => m,
            BufferInner::F32(v) => bytemuck::cast_slice_mut(v),
        }
    }
}

impl Clone for Images {
    /// A copy of the values (tensor-backed images are copied into a plain
    /// buffer, aligned for `f32`: the original tensor keeps its single
    /// owner).
    fn clone(&self) -> Self {
        let storage = match &self.storage {
            Storage::Pool(p) => Storage::Bytes(match self.dtype {
                ImageDtype::F32 => aligned_copy(p.as_ref()),
                ImageDtype::U8 => Bytes::copy_from_slice(p.as_ref()),
            }),
            Storage::Bytes(b) => Storage::Bytes(b.clone()),
            #[cfg(feature = "tch")]
            Storage::Tensor(t) => Storage::Bytes(match self.dtype {
                ImageDtype::F32 => aligned_copy(t.bytes()),
                ImageDtype::U8 => Bytes::copy_from_slice(t.bytes()),
            }),
        };
        Images { shape: self.shape, dtype: self.dtype, storage }
    }
}

impl PartialEq for Images {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape && self.dtype == other.dtype && self.data() == other.data()
    }
}

impl Eq for Images {}

/// The memory a worker decodes a batch's images into.
#[derive(Debug)]
pub(crate) enum ImageBuf {
    Pool(super::pool::BatchBuf),
    /// The run's first batch: one allocation whose regions the workers
    /// decode their shares into, joined back without copying.
    Shared(bytes::BytesMut),
    #[cfg(feature = "tch")]
    Tensor(ringfeed_tensor::TensorSlab),
}

/// A libtorch tensor for `shape` values of `dtype`; libtorch's refusal is
/// an [`Error::Tensor`](crate::Error::Tensor).
#[cfg(feature = "tch")]
fn tensor_slab(
    shape: [usize; 4],
    dtype: ImageDtype,
    huge_pages: bool,
) -> crate::Result<ringfeed_tensor::TensorSlab> {
    let kind = if dtype == ImageDtype::U8 { tch::Kind::Uint8 } else { tch::Kind::Float };
    ringfeed_tensor::TensorSlab::new(&shape, kind, huge_pages)
        .map_err(|e| crate::Error::Tensor(e.to_string()))
}

impl ImageBuf {
    /// Memory for `shape` values of `dtype`, as the loader's
    /// [`BatchMemory`] says: a pooled buffer (reused, so page faults stop
    /// after the first batches), or a libtorch tensor (on transparent huge
    /// pages if `huge_pages`).
    pub(crate) fn new(
        s: &super::worker::WorkerSpec,
        shape: [usize; 4],
        dtype: ImageDtype,
        huge_pages: bool,
    ) -> crate::Result<Self> {
        match s.batch_memory {
            #[cfg(feature = "tch")]
            BatchMemory::Tensor => tensor_slab(shape, dtype, huge_pages).map(ImageBuf::Tensor),
            BatchMemory::Pooled => {
                let _ = huge_pages;
                let total = shape.iter().product::<usize>() * dtype.size();
                s.pool.take(total).map(ImageBuf::Pool).map_err(|source| crate::Error::Memory {
                    what: format!("a {total}-byte image buffer"),
                    source,
                })
            }
        }
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            ImageBuf::Pool(b) => b,
            ImageBuf::Shared(b) => b,
            #[cfg(feature = "tch")]
            ImageBuf::Tensor(t) => t.bytes_mut(),
        }
    }
}

/// Decodes every record of a read batch into its slot of a `[B, C, H, W]`
/// buffer, yielding to the executor between images so that I/O completions
/// are not held up. Each sample's randomness comes from
/// `sample_rng(seed, epoch, index)`, so the result does not depend on which
/// core decoded it. With `started` (the run's first batch; see
/// `first_batch`), this worker's share is already decoded and the other
/// workers' shares are joined (or copied) in.
pub(crate) async fn decode_pending(
    s: &super::worker::WorkerSpec,
    pipe: &std::cell::RefCell<ringfeed_decode::Pipeline>,
    epoch: u64,
    p: &mut super::worker::Pending,
    started: Option<super::first_batch::Started>,
) -> crate::Result<()> {
    let slot_bytes = slot_bytes(&pipe.borrow());
    let (side, dtype) = spec_shape(s)?;
    let n = p.indices.len();
    // Positions this worker decodes now: all of them, or for the first
    // batch only those no share could read synchronously.
    let (mut images, mine) = match started {
        Some(mut st) => {
            for pos in st.left.skipped {
                if !p.bad.contains(&pos) {
                    p.bad.push(pos);
                }
            }
            let mut unread = st.left.unread;
            st.parts.collect(&mut st.images, slot_bytes, &mut p.bad, &mut unread).await?;
            unread.sort_unstable();
            (st.images, unread)
        }
        None => (ImageBuf::new(s, [n, 3, side, side], dtype, true)?, (0..n).collect()),
    };
    if images.bytes_mut().len() != slot_bytes * n {
        return Err(crate::Error::Internal(format!(
            "an image buffer of {} bytes for {n} samples of {slot_bytes}",
            images.bytes_mut().len()
        )));
    }
    for i in mine {
        if super::worker::stopping(s) {
            return Err(crate::Error::Shutdown("the loader was dropped".into()));
        }
        if p.bad.contains(&i) {
            continue;
        }
        let start = if i == 0 { 0 } else { p.ends[i - 1] };
        let slot = &mut images.bytes_mut()[i * slot_bytes..(i + 1) * slot_bytes];
        if !decode_one(s, pipe, epoch, p.indices[i], &p.buf[start..p.ends[i]], slot)? {
            p.bad.push(i);
        }
        glommio::yield_if_needed().await;
    }
    p.images = Some(images);
    Ok(())
}

/// Bytes of one sample's output.
pub(crate) fn slot_bytes(pipe: &ringfeed_decode::Pipeline) -> usize {
    pipe.output_len() * if pipe.output() == ImageOutput::U8 { 1 } else { 4 }
}

/// Decodes record `index` into `slot` and runs the caller's sample
/// transform on it, counting decode and augment time. Returns `Ok(false)`
/// when the record is bad (undecodable, or rejected by the transform) and
/// the policy tolerates it (counted and logged), the error when the policy
/// fails; a panicking transform is always an error.
pub(crate) fn decode_one(
    s: &super::worker::WorkerSpec,
    pipe: &std::cell::RefCell<ringfeed_decode::Pipeline>,
    epoch: u64,
    index: u64,
    record: &[u8],
    slot: &mut [u8],
) -> crate::Result<bool> {
    use std::sync::atomic::Ordering::Relaxed;
    let f32_output = pipe.borrow().output() != ImageOutput::U8;
    let mut rng = crate::order::sample_rng(s.seed, epoch, index);
    let began = std::time::Instant::now();
    let out = match f32_slot(slot, f32_output)? {
        Some(values) => ringfeed_decode::OutputMut::F32(values),
        None => ringfeed_decode::OutputMut::U8(&mut *slot),
    };
    // A decoder that panics on some input (the png crate once did) must
    // not take the worker down: the record counts as undecodable.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pipe.borrow_mut().run(record, &mut rng, out)
    }));
    let decoded = match decoded {
        Ok(result) => result,
        Err(payload) => {
            // It may have stopped half-way through an image: start afresh.
            if let Some(images) = &s.images {
                *pipe.borrow_mut() = images.build()?;
            }
            let message = super::transform::panic_message(payload.as_ref());
            Err(ringfeed_decode::Error::Corrupt(format!("the decoder panicked: {message}")))
        }
    };
    let decode_time = match decoded {
        Ok(applied) => applied.decode_time,
        Err(source) => return bad_record(s, crate::Error::Decode { index, source }),
    };
    if let Some(transform) = &s.sample_transform {
        let shape = pipe.borrow().output_shape();
        let pixels = match f32_slot(slot, f32_output)? {
            Some(values) => super::transform::SamplePixels::F32(values),
            None => super::transform::SamplePixels::U8(slot),
        };
        let sample = super::transform::Sample { index, shape, pixels };
        match transform.apply(sample, &mut rng) {
            super::transform::Outcome::Done => {}
            super::transform::Outcome::Rejected(message) => {
                return bad_record(s, crate::Error::Transform { index, message, panicked: false });
            }
            super::transform::Outcome::Panicked(message) => {
                return Err(crate::Error::Transform { index, message, panicked: true });
            }
        }
    }
    let took = began.elapsed();
    s.metrics.decode_ns.fetch_add(decode_time.as_nanos() as u64, Relaxed);
    s.metrics.augment_ns.fetch_add(took.saturating_sub(decode_time).as_nanos() as u64, Relaxed);
    Ok(true)
}

/// The slot as `f32` values when the output is `f32` (`None` for `u8`).
fn f32_slot(slot: &mut [u8], f32_output: bool) -> crate::Result<Option<&mut [f32]>> {
    if !f32_output {
        return Ok(None);
    }
    // Buffers are page-aligned maps, libtorch tensors or heap blocks, and
    // slots multiples of 4 bytes (see `Images::new`).
    bytemuck::try_cast_slice_mut(slot)
        .map(Some)
        .map_err(|e| crate::Error::Internal(format!("image buffer is not f32-aligned: {e}")))
}

/// Applies the error policy to a bad record: the error under `Fail`, else
/// counted (and logged) and `Ok(false)`.
fn bad_record(s: &super::worker::WorkerSpec, err: crate::Error) -> crate::Result<bool> {
    use std::sync::atomic::Ordering::Relaxed;
    if s.policy == super::config::ErrorPolicy::Fail {
        return Err(err);
    }
    s.metrics.corrupt(|| err.to_string());
    if s.policy == super::config::ErrorPolicy::Skip {
        s.metrics.skipped.fetch_add(1, Relaxed);
    }
    Ok(false)
}

/// Output side and element type of the loader's pipeline.
pub(crate) fn spec_shape(s: &super::worker::WorkerSpec) -> crate::Result<(usize, ImageDtype)> {
    let Some(spec) = &s.images else { return Err(crate::Error::Config("no image pipeline".into())) };
    spec.side_and_dtype()
}

/// The images of a finished batch, without the skipped records' slots:
/// kept slots move to the front in place and the rest is cut off.
pub(crate) fn finish_images(
    s: &super::worker::WorkerSpec,
    images: Option<ImageBuf>,
    records: usize,
    bad: &[usize],
) -> crate::Result<Option<Images>> {
    let Some(mut buf) = images else { return Ok(None) };
    let (side, dtype) = spec_shape(s)?;
    let slot = s.images.as_ref().map_or(Ok(0), ImagePipeline::sample_bytes)?;
    let mut kept = 0;
    for i in (0..records).filter(|i| !bad.contains(i)) {
        if i != kept {
            buf.bytes_mut().copy_within(i * slot..(i + 1) * slot, kept * slot);
        }
        kept += 1;
    }
    let storage = match buf {
        ImageBuf::Pool(b) => Storage::Pool(s.pool.own(b).truncated(kept * slot)),
        ImageBuf::Shared(b) => Storage::Bytes(b.freeze().slice(..kept * slot)),
        #[cfg(feature = "tch")]
        ImageBuf::Tensor(mut t) => {
            t.keep_rows(kept).map_err(|e| crate::Error::Tensor(e.to_string()))?;
            Storage::Tensor(t)
        }
    };
    Images::new([kept, 3, side, side], dtype, storage).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_images_over_a_misaligned_buffer_are_realigned() {
        let values: Vec<f32> = (0..24).map(|v| v as f32 - 0.5).collect();
        let mut raw = vec![0u8; 1];
        raw.extend(values.iter().flat_map(|v| v.to_ne_bytes()));
        let whole = Bytes::from(raw);
        // One of the two starts is misaligned, whatever the allocator did.
        for start in [0, 1] {
            let bytes = whole.slice(start..start + 96);
            let images = Images::new([2, 3, 2, 2], ImageDtype::F32, Storage::Bytes(bytes.clone())).unwrap();
            assert_eq!(images.data(), &bytes[..]);
            if start == 1 {
                assert_eq!(images.as_f32(), Some(&values[..]));
            }
            assert_eq!(images.as_f32().map(<[f32]>::len), Some(24));
        }
        let u8s = Images::new([2, 3, 4, 4], ImageDtype::U8, Storage::Bytes(whole.slice(1..97))).unwrap();
        assert_eq!(u8s.as_f32(), None);
        let wrong =
            Images::new([2, 3, 2, 2], ImageDtype::F32, Storage::Bytes(whole.slice(..95))).unwrap_err();
        assert!(matches!(wrong, crate::Error::Internal(_)), "{wrong}");
    }

    #[test]
    fn aligned_copy_keeps_the_bytes() {
        let bytes: Vec<u8> = (0..64).collect();
        let copy = aligned_copy(&bytes[1..33]);
        assert_eq!(&copy[..], &bytes[1..33]);
        assert_eq!(copy.as_ptr().align_offset(4), 0);
    }

    #[cfg(feature = "tch")]
    #[test]
    fn a_tensor_libtorch_refuses_is_a_tensor_error() {
        let err = tensor_slab([usize::MAX / 2, 3, 2, 2], ImageDtype::F32, false).unwrap_err();
        assert!(matches!(err, crate::Error::Tensor(_)), "{err}");
        assert!(err.to_string().starts_with("tensor conversion failed: "), "{err}");
        // Not corrupt data: the CLI exits with 2 (usage / environment), not 1.
        assert!(!err.is_corruption());
    }
}
