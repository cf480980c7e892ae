//! Decoding and augmenting images inside the engine: the worker that read
//! a batch's records turns them into a `[B, C, H, W]` image tensor, on the
//! same core, each sample written straight into its slot.

use bytes::Bytes;
pub use ringfeed_decode::{Output as ImageOutput, Transform as ImageTransform};

/// What the loader does with each record's payload besides delivering it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImagePipeline {
    /// Crop / resize rules.
    pub transform: ImageTransform,
    /// `u8` pixels, or normalized `f32`.
    pub output: ImageOutput,
}

impl ImagePipeline {
    /// RandomResizedCrop(`size`) + RandomHorizontalFlip(0.5), `u8` output.
    pub fn train(size: u32) -> Self {
        ImagePipeline {
            transform: ImageTransform::Train {
                size,
                scale: (0.08, 1.0),
                ratio: (3.0 / 4.0, 4.0 / 3.0),
                flip: 0.5,
            },
            output: ImageOutput::U8,
        }
    }

    /// Resize(`resize`) + CenterCrop(`crop`), `u8` output.
    pub fn val(resize: u32, crop: u32) -> Self {
        ImagePipeline { transform: ImageTransform::Val { resize, crop }, output: ImageOutput::U8 }
    }

    /// Normalized `f32` output with ImageNet's mean and std.
    #[must_use]
    pub fn normalized(mut self) -> Self {
        self.output =
            ImageOutput::F32 { mean: ringfeed_decode::IMAGENET_MEAN, std: ringfeed_decode::IMAGENET_STD };
        self
    }

    /// Output side and element type.
    pub(crate) fn side_and_dtype(&self) -> crate::Result<(usize, ImageDtype)> {
        let side = match self.transform {
            ImageTransform::Train { size, .. } => size,
            ImageTransform::Val { crop, .. } => crop,
            _ => return Err(crate::Error::Config("unknown image transform".into())),
        } as usize;
        let dtype = if self.output == ImageOutput::U8 { ImageDtype::U8 } else { ImageDtype::F32 };
        Ok((side, dtype))
    }

    /// Bytes of one sample's `[3, side, side]` output.
    pub(crate) fn sample_bytes(&self) -> crate::Result<usize> {
        let (side, dtype) = self.side_and_dtype()?;
        Ok(3 * side * side * if dtype == ImageDtype::U8 { 1 } else { 4 })
    }

    pub(crate) fn build(&self) -> crate::Result<ringfeed_decode::Pipeline> {
        ringfeed_decode::Pipeline::new(
            self.transform,
            ringfeed_decode::Layout::Chw,
            self.output,
            false,
            ringfeed_decode::Limits::default(),
        )
        .map_err(|e| crate::Error::Config(format!("image pipeline: {e}")))
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

/// Element type of [`Images`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageDtype {
    /// One byte per value.
    U8,
    /// Little-endian `f32`, four bytes per value.
    F32,
}

/// A batch of decoded images: `[B, C, H, W]`, contiguous, row-major,
/// native-endian.
///
/// With [`BatchMemory::Tensor`] (feature `tch`) the values live in a
/// libtorch tensor from the start (workers decode straight into it) and
/// `Batch::into_tensors` hands that tensor over without copying.
#[derive(Debug)]
pub struct Images {
    shape: [usize; 4],
    dtype: ImageDtype,
    storage: Storage,
}

/// Where a batch's image values live.
#[derive(Debug)]
pub(crate) enum Storage {
    /// A recycled buffer of the loader's pool (or, after a clone, the heap).
    Bytes(Bytes),
    /// A libtorch tensor.
    #[cfg(feature = "tch")]
    Tensor(crate::sys::tensor::TensorSlab),
}

impl Images {
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
            Storage::Bytes(_) => BatchMemory::Pooled,
            #[cfg(feature = "tch")]
            Storage::Tensor(_) => BatchMemory::Tensor,
        }
    }

    /// The values' bytes, `B * C * H * W * element size` of them.
    pub fn data(&self) -> &[u8] {
        match &self.storage {
            Storage::Bytes(b) => b,
            #[cfg(feature = "tch")]
            Storage::Tensor(t) => t.bytes(),
        }
    }

    #[cfg(feature = "tch")]
    pub(crate) fn into_parts(self) -> ([usize; 4], ImageDtype, Storage) {
        (self.shape, self.dtype, self.storage)
    }
}

impl Clone for Images {
    /// A copy of the values (tensor-backed images are copied into a plain
    /// buffer: the original tensor keeps its single owner).
    fn clone(&self) -> Self {
        let storage = match &self.storage {
            Storage::Bytes(b) => Storage::Bytes(b.clone()),
            #[cfg(feature = "tch")]
            Storage::Tensor(t) => Storage::Bytes(Bytes::copy_from_slice(t.bytes())),
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
    Tensor(crate::sys::tensor::TensorSlab),
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
            BatchMemory::Tensor => {
                let kind = if dtype == ImageDtype::U8 { tch::Kind::Uint8 } else { tch::Kind::Float };
                crate::sys::tensor::TensorSlab::new(&shape, kind, huge_pages)
                    .map(ImageBuf::Tensor)
                    .map_err(crate::Error::Shutdown)
            }
            BatchMemory::Pooled => {
                let _ = huge_pages;
                let total = shape.iter().product::<usize>() * if dtype == ImageDtype::U8 { 1 } else { 4 };
                s.pool.take(total).map(ImageBuf::Pool).map_err(|e| {
                    crate::Error::Shutdown(format!("cannot map a {total}-byte image buffer: {e}"))
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
        return Err(crate::Error::Shutdown(format!(
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
    // Buffers are page-aligned and slots multiples of 4 bytes.
    bytemuck::try_cast_slice_mut(slot)
        .map(Some)
        .map_err(|e| crate::Error::Shutdown(format!("image buffer is not f32-aligned: {e}")))
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
        ImageBuf::Pool(b) => Storage::Bytes(s.pool.freeze(b).slice(..kept * slot)),
        ImageBuf::Shared(b) => Storage::Bytes(b.freeze().slice(..kept * slot)),
        #[cfg(feature = "tch")]
        ImageBuf::Tensor(mut t) => {
            t.keep_rows(kept).map_err(crate::Error::Shutdown)?;
            Storage::Tensor(t)
        }
    };
    Ok(Some(Images { shape: [kept, 3, side, side], dtype, storage }))
}
