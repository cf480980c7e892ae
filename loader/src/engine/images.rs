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

/// Element type of [`Images`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageDtype {
    /// One byte per value.
    U8,
    /// Little-endian `f32`, four bytes per value.
    F32,
}

/// A batch of decoded images: `[B, C, H, W]`, contiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    /// Shape `[B, C, H, W]`.
    pub shape: [usize; 4],
    /// Element type.
    pub dtype: ImageDtype,
    /// The values, row-major, native-endian.
    pub data: Bytes,
}

/// Decodes every record of a read batch into its slot of a `[B, C, H, W]`
/// buffer, yielding to the executor between images so that I/O completions
/// are not held up. Each sample's randomness comes from
/// `sample_rng(seed, epoch, index)`, so the result does not depend on which
/// core decoded it.
pub(crate) async fn decode_pending(
    s: &super::worker::WorkerSpec,
    pipe: &std::cell::RefCell<ringfeed_decode::Pipeline>,
    epoch: u64,
    p: &mut super::worker::Pending,
) -> crate::Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    let (elems, elem_bytes) = {
        let pipe = pipe.borrow();
        (pipe.output_len(), if pipe.output() == ImageOutput::U8 { 1 } else { 4 })
    };
    let slot_bytes = elems * elem_bytes;
    let total = slot_bytes * p.indices.len();
    let mut images = s
        .pool
        .take(total)
        .map_err(|e| crate::Error::Shutdown(format!("cannot map a {total}-byte image buffer: {e}")))?;
    for i in 0..p.indices.len() {
        if p.bad.contains(&i) {
            continue;
        }
        let index = p.indices[i];
        let start = if i == 0 { 0 } else { p.ends[i - 1] };
        let record = &p.buf[start..p.ends[i]];
        let slot = &mut images[i * slot_bytes..(i + 1) * slot_bytes];
        let out = if elem_bytes == 1 {
            ringfeed_decode::OutputMut::U8(slot)
        } else {
            // Buffers are page-aligned and slots multiples of 4 bytes.
            ringfeed_decode::OutputMut::F32(
                bytemuck::try_cast_slice_mut(slot)
                    .map_err(|e| crate::Error::Shutdown(format!("image buffer is not f32-aligned: {e}")))?,
            )
        };
        let mut rng = crate::order::sample_rng(s.seed, epoch, index);
        let began = std::time::Instant::now();
        let result = pipe.borrow_mut().run(record, &mut rng, out);
        let took = began.elapsed();
        match result {
            Ok(applied) => {
                s.metrics.decode_ns.fetch_add(applied.decode_time.as_nanos() as u64, Relaxed);
                s.metrics
                    .augment_ns
                    .fetch_add(took.saturating_sub(applied.decode_time).as_nanos() as u64, Relaxed);
            }
            Err(source) => {
                let err = crate::Error::Decode { index, source };
                match s.policy {
                    super::config::ErrorPolicy::Fail => return Err(err),
                    super::config::ErrorPolicy::Skip => {
                        if s.metrics.skipped.fetch_add(1, Relaxed) < 8 {
                            log::warn!("skipping record {index}: {err}");
                        }
                        p.bad.push(i);
                    }
                }
            }
        }
        glommio::yield_if_needed().await;
    }
    p.images = Some(images);
    Ok(())
}

/// The images of a finished batch, without the skipped records' slots.
pub(crate) fn finish_images(
    s: &super::worker::WorkerSpec,
    images: Option<super::pool::BatchBuf>,
    records: usize,
    bad: &[usize],
) -> crate::Result<Option<Images>> {
    let (Some(buf), Some(spec)) = (images, &s.images) else { return Ok(None) };
    let side = match spec.transform {
        ImageTransform::Train { size, .. } => size,
        ImageTransform::Val { crop, .. } => crop,
        _ => return Err(crate::Error::Config("unknown image transform".into())),
    } as usize;
    let dtype = if spec.output == ImageOutput::U8 { ImageDtype::U8 } else { ImageDtype::F32 };
    let slot = 3 * side * side * if dtype == ImageDtype::U8 { 1 } else { 4 };
    let kept: Vec<usize> = (0..records).filter(|i| !bad.contains(i)).collect();
    let data = if kept.len() == records {
        s.pool.freeze(buf)
    } else {
        let mut v = Vec::with_capacity(kept.len() * slot);
        for &i in &kept {
            v.extend_from_slice(&buf[i * slot..(i + 1) * slot]);
        }
        Bytes::from(v)
    };
    Ok(Some(Images { shape: [kept.len(), 3, side, side], dtype, data }))
}
