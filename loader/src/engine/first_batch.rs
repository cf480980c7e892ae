//! The run's first batch, decoded by every worker at once.
//!
//! Batches go to workers round-robin, one per worker, so the first batch
//! would wait for one core to decode all of its images while the others
//! decode later batches. Time to the first batch is what a user sees at
//! every start and resume, so that batch is split instead: each worker
//! decodes a contiguous share of its positions (reading those records
//! itself, synchronously; they are few) and sends the pixels to the worker
//! that owns the batch. Without the `tch` feature the batch is one
//! allocation made before the workers start and split into each worker's
//! region, so the shares are joined back without copying (copying 19 MB of
//! f32 pixels and faulting in its pages cost 13-18 ms of the ~110 ms to the
//! first batch); with `tch` the batch is a tensor only its owner writes,
//! and the shares are copied in. Later batches are unaffected. The pixels
//! are the same whoever decodes them: each sample's randomness comes from
//! (seed, epoch, index).

use std::ops::Range;

use bytes::BytesMut;

use super::images::{ImageBuf, decode_one, slot_bytes, spec_shape};
use super::plan::{EpochPlan, Unit};
use super::pool::BatchBuf;
use super::worker::WorkerSpec;
use crate::error::{Error, Result};

/// One worker's share of the first batch.
#[derive(Debug)]
pub(crate) struct Part {
    /// First position of the share.
    start: usize,
    /// The share's decoded samples, back to back.
    samples: Samples,
    /// Positions whose records were undecodable and are skipped.
    skipped: Vec<usize>,
}

/// Where a share's samples were decoded.
#[derive(Debug)]
enum Samples {
    /// The worker's region of the batch's own allocation.
    Region(BytesMut),
    /// A buffer of its own (a pooled, page-aligned one: aligned for `f32`).
    Own(BatchBuf),
}

impl Samples {
    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Samples::Region(b) => b,
            Samples::Own(b) => b,
        }
    }
}

/// How a worker takes part in the first batch.
#[derive(Debug)]
pub(crate) enum FirstBatch {
    /// Decode this worker's share (into `region`, when the batch was
    /// allocated up front) and send it to the owner.
    Help { tx: flume::Sender<Result<Part>>, region: Option<BytesMut> },
    /// Own the batch: receive the other workers' shares.
    Own(Parts),
}

/// The owner's end: its own region of the batch (when allocated up front)
/// and the shares of the other `helpers` workers.
#[derive(Debug)]
pub(crate) struct Parts {
    rx: flume::Receiver<Result<Part>>,
    helpers: usize,
    region: Option<BytesMut>,
}

/// Channel ends for `cores` workers (worker 0 owns the first batch), or
/// nothing when there is no one to share with. `batch` is the first
/// batch's `(samples, bytes per sample)` where it is to be allocated up
/// front and split into the workers' regions.
pub(crate) fn channels(cores: usize, batch: Option<(usize, usize)>) -> Vec<Option<FirstBatch>> {
    if cores < 2 {
        return (0..cores).map(|_| None).collect();
    }
    let mut regions: Vec<Option<BytesMut>> = match batch {
        Some((n, slot)) => {
            // Zeroed memory comes straight from the kernel: the pages are
            // faulted in by the worker that writes them, on its own core.
            let mut whole = BytesMut::zeroed(n * slot);
            (0..cores).map(|id| Some(whole.split_to(share_of(n, cores, id).len() * slot))).collect()
        }
        None => (0..cores).map(|_| None).collect(),
    };
    let (tx, rx) = flume::bounded(cores);
    let mut ends = vec![Some(FirstBatch::Own(Parts { rx, helpers: cores - 1, region: regions[0].take() }))];
    ends.extend((1..cores).map(|id| Some(FirstBatch::Help { tx: tx.clone(), region: regions[id].take() })));
    ends
}

/// Positions of worker `id`'s share of a batch of `n`. (Balancing the
/// shares by payload bytes instead measured no faster: 112 vs 106 ms median
/// to the first batch, 10 alternating runs.)
pub(crate) fn share_of(n: usize, cores: usize, id: usize) -> Range<usize> {
    n * id / cores..n * (id + 1) / cores
}

impl Parts {
    /// Waits for every helper's share and puts it into `images` (slots of
    /// `slot` bytes): joined to it when both are regions of one allocation,
    /// else copied; adds their skipped positions to `skipped`.
    pub(crate) async fn collect(
        self,
        images: &mut ImageBuf,
        slot: usize,
        skipped: &mut Vec<usize>,
    ) -> Result<()> {
        let mut parts = Vec::with_capacity(self.helpers);
        for _ in 0..self.helpers {
            parts.push(self.rx.recv_async().await.map_err(|_| {
                Error::Shutdown("a worker stopped before decoding its share of the first batch".into())
            })??);
        }
        // Regions join only in order.
        parts.sort_by_key(|p| p.start);
        for Part { start, samples, skipped: theirs } in parts {
            let at = start * slot;
            match (&mut *images, samples) {
                #[cfg(not(feature = "tch"))]
                (ImageBuf::Shared(whole), Samples::Region(region)) if whole.len() == at => {
                    // O(1): the region starts where `whole` ends, in the
                    // same allocation.
                    whole.unsplit(region);
                }
                (images, mut samples) => {
                    let bytes = samples.bytes_mut();
                    // A region that could not be joined (the split and
                    // the shares disagreed) is copied: the owner's region
                    // grows to hold it.
                    #[cfg(not(feature = "tch"))]
                    if let ImageBuf::Shared(whole) = images
                        && whole.len() < at + bytes.len()
                    {
                        whole.resize(at + bytes.len(), 0);
                    }
                    let dst = images.bytes_mut().get_mut(at..at + bytes.len()).ok_or_else(|| {
                        Error::Shutdown("a share of the first batch does not fit it".into())
                    })?;
                    dst.copy_from_slice(bytes);
                }
            }
            for pos in theirs {
                if !skipped.contains(&pos) {
                    skipped.push(pos);
                }
            }
        }
        Ok(())
    }
}

/// The record indices of `unit`'s first batch and this worker's share of
/// its positions.
fn first_batch(s: &WorkerSpec, unit: Unit) -> Result<(Vec<u64>, Range<usize>)> {
    let plan = EpochPlan::new(s.dataset.len(), s.shuffle, s.seed, unit.epoch, s.ddp, s.batch)?;
    let indices = plan.batch_indices(unit.first);
    let share = share_of(indices.len(), s.cores, s.id);
    Ok((indices, share))
}

/// Decodes the records at positions `share` of `indices` into `dst` (their
/// slots back to back), reading them synchronously. Records that cannot be
/// read are left to the owner, which reads the whole batch and applies the
/// error policy to them. Returns the positions skipped as undecodable.
async fn decode_share(
    s: &WorkerSpec,
    pipe: &std::cell::RefCell<ringfeed_decode::Pipeline>,
    epoch: u64,
    indices: &[u64],
    share: Range<usize>,
    dst: &mut [u8],
) -> Result<Vec<usize>> {
    let slot = slot_bytes(&pipe.borrow());
    let mut skipped = Vec::new();
    for (k, pos) in share.enumerate() {
        if super::worker::stopping(s) {
            return Err(Error::Shutdown("the loader was dropped".into()));
        }
        let Ok(record) = s.dataset.record(indices[pos]) else { continue };
        if !decode_one(s, pipe, epoch, indices[pos], &record.payload, &mut dst[k * slot..(k + 1) * slot])? {
            skipped.push(pos);
        }
        glommio::yield_if_needed().await;
    }
    Ok(skipped)
}

/// Decodes this worker's share of `unit`'s first batch and sends it to the
/// owner.
pub(crate) async fn help(
    s: &WorkerSpec,
    pipe: &std::cell::RefCell<ringfeed_decode::Pipeline>,
    unit: Unit,
    tx: flume::Sender<Result<Part>>,
    region: Option<BytesMut>,
) {
    let part = async {
        let (indices, share) = first_batch(s, unit)?;
        let len = share.len() * slot_bytes(&pipe.borrow());
        let mut samples = match region {
            Some(region) if region.len() == len => Samples::Region(region),
            _ => Samples::Own(s.pool.take(len).map_err(|e| {
                Error::Shutdown(format!("cannot map a {len}-byte buffer for the first batch: {e}"))
            })?),
        };
        let skipped = decode_share(s, pipe, unit.epoch, &indices, share.clone(), samples.bytes_mut()).await?;
        Ok(Part { start: share.start, samples, skipped })
    }
    .await;
    // The owner may be gone (the loader was dropped); nothing to do then.
    let _ = tx.send_async(part).await;
}

/// The owner's start on the first batch: its image buffer with the owner's
/// own share already decoded (before the shards are opened for the
/// asynchronous reads), and the helpers' shares still to come.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) images: ImageBuf,
    /// Positions of the owner's share skipped as undecodable.
    pub(crate) skipped: Vec<usize>,
    pub(crate) parts: Parts,
}

/// Decodes the owner's share of `unit`'s first batch into a new image
/// buffer for the whole batch.
pub(crate) async fn start(
    s: &WorkerSpec,
    pipe: &std::cell::RefCell<ringfeed_decode::Pipeline>,
    unit: Unit,
    parts: Parts,
) -> Result<Started> {
    let (indices, share) = first_batch(s, unit)?;
    let (side, dtype) = spec_shape(s)?;
    let slot = slot_bytes(&pipe.borrow());
    let mut parts = parts;
    let mut images = match parts.region.take() {
        // The owner's region is the front of the batch: the helpers'
        // regions join behind it.
        #[cfg(not(feature = "tch"))]
        Some(region) if share.start == 0 && region.len() == share.len() * slot => ImageBuf::Shared(region),
        // Small pages: huge ones cost this batch more at first touch than
        // they save (measured: 180 vs 148 ms median to the first batch).
        _ => ImageBuf::new(s, [indices.len(), 3, side, side], dtype, false)?,
    };
    let dst = &mut images.bytes_mut()[share.start * slot..share.end * slot];
    let skipped = decode_share(s, pipe, unit.epoch, &indices, share, dst).await?;
    Ok(Started { images, skipped, parts })
}
