//! The run's first batch, decoded by every worker at once.
//!
//! Batches go to workers round-robin, one per worker, so the first batch
//! would wait for one core to decode all of its images while the others
//! decode later batches. Time to the first batch is what a user sees at
//! every start and resume, so that batch is split instead: each worker
//! decodes a contiguous share of its positions (reading those records
//! itself, synchronously; they are few) and sends the pixels to the worker
//! that owns the batch. With pooled batch memory the batch is one
//! allocation made before the workers start and split into each worker's
//! region, so the shares are joined back without copying (copying 19 MB of
//! f32 pixels and faulting in its pages cost 13-18 ms of the ~110 ms to the
//! first batch); with tensor batch memory the batch is a tensor only its
//! owner writes, and the shares are copied in. Later batches are unaffected. The pixels
//! are the same whoever decodes them: each sample's randomness comes from
//! (seed, epoch, index).

use std::ops::Range;

use bytes::BytesMut;

use super::images::{ImageBuf, decode_one, slot_bytes, spec_shape};
use super::plan::{EpochPlan, Unit};
use super::pool::BatchBuf;
use super::worker::WorkerSpec;
use crate::{Error, Result};

/// One worker's share of the first batch.
#[derive(Debug)]
pub(crate) struct Part {
    /// First position of the share.
    start: usize,
    /// The share's decoded samples, back to back.
    samples: Samples,
    /// Positions whose records were undecodable and are skipped.
    skipped: Vec<usize>,
    /// Positions whose records this worker could not read: their slots
    /// are unwritten, and the owner decodes them from its own read.
    unread: Vec<usize>,
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
    /// else copied; adds their skipped positions to `skipped` and the
    /// positions they could not read to `unread`.
    pub(crate) async fn collect(
        self,
        images: &mut ImageBuf,
        slot: usize,
        skipped: &mut Vec<usize>,
        unread: &mut Vec<usize>,
    ) -> Result<()> {
        let mut parts = Vec::with_capacity(self.helpers);
        for _ in 0..self.helpers {
            parts.push(self.rx.recv_async().await.map_err(|_| {
                Error::Shutdown("a worker stopped before decoding its share of the first batch".into())
            })??);
        }
        // Regions join only in order.
        parts.sort_by_key(|p| p.start);
        for Part { start, samples, skipped: theirs, unread: not_read } in parts {
            unread.extend(not_read);
            let at = start * slot;
            match (&mut *images, samples) {
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

/// What decoding a share left to others: positions skipped as
/// undecodable, and positions whose records could not be read here.
#[derive(Debug, Default)]
pub(crate) struct Leftovers {
    pub(crate) skipped: Vec<usize>,
    pub(crate) unread: Vec<usize>,
}

/// Decodes the records at positions `share` of `indices` into `dst` (their
/// slots back to back), reading them synchronously. A record that cannot
/// be read here leaves its slot unwritten and is listed as unread: the
/// owner reads the whole batch anyway, and decodes it from that read or
/// applies the error policy to it if that read fails too.
async fn decode_share(
    s: &WorkerSpec,
    pipe: &std::cell::RefCell<ringfeed_decode::Pipeline>,
    epoch: u64,
    indices: &[u64],
    share: Range<usize>,
    dst: &mut [u8],
) -> Result<Leftovers> {
    let slot = slot_bytes(&pipe.borrow());
    let mut left = Leftovers::default();
    for (k, pos) in share.enumerate() {
        if super::worker::stopping(s) {
            return Err(Error::Shutdown("the loader was dropped".into()));
        }
        let Ok(record) = read_record(s, indices[pos]) else {
            left.unread.push(pos);
            continue;
        };
        if !decode_one(s, pipe, epoch, indices[pos], &record.payload, &mut dst[k * slot..(k + 1) * slot])? {
            left.skipped.push(pos);
        }
        glommio::yield_if_needed().await;
    }
    Ok(left)
}

/// A record of a first-batch share, read synchronously.
fn read_record(s: &WorkerSpec, index: u64) -> Result<ringfeed_pack::Record> {
    #[cfg(test)]
    if tests::unreadable(s.dataset.dir(), index) {
        return Err(Error::Shutdown(format!("record {index} made unreadable by a test")));
    }
    s.dataset.record(index)
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
        let left = decode_share(s, pipe, unit.epoch, &indices, share.clone(), samples.bytes_mut()).await?;
        Ok(Part { start: share.start, samples, skipped: left.skipped, unread: left.unread })
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
    /// What the owner's own share left: undecodable and unread positions.
    pub(crate) left: Leftovers,
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
        Some(region) if share.start == 0 && region.len() == share.len() * slot => ImageBuf::Shared(region),
        // Small pages: huge ones cost this batch more at first touch than
        // they save (measured: 180 vs 148 ms median to the first batch).
        _ => ImageBuf::new(s, [indices.len(), 3, side, side], dtype, false)?,
    };
    let dst = &mut images.bytes_mut()[share.start * slot..share.end * slot];
    let left = decode_share(s, pipe, unit.epoch, &indices, share, dst).await?;
    Ok(Started { images, left, parts })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use crate::{DdpConfig, ErrorPolicy, ImagePipeline, Loader, PackWriter, Payload, Schema};

    /// Records whose synchronous first-batch read fails, by dataset.
    static UNREADABLE: Mutex<Vec<(PathBuf, u64)>> = Mutex::new(Vec::new());

    pub(super) fn unreadable(dir: &Path, index: u64) -> bool {
        UNREADABLE.lock().unwrap().iter().any(|(d, i)| d == dir && *i == index)
    }

    fn fixture(name: &str) -> Vec<u8> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../decode/tests/fixtures");
        std::fs::read(dir.join(name)).unwrap()
    }

    /// Every slot of the first batch is written even when a worker cannot
    /// read a record of its share that the owner's read gets: once in the
    /// owner's share (position 0) and once in the helper's (position 3).
    #[test]
    fn records_a_share_could_not_read_are_decoded_by_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["rgb.jpg", "progressive.jpg", "gray.jpg", "rgb.png", "cmyk.jpg"];
        let recs: Vec<Vec<u8>> = (0..10).map(|i| fixture(names[i % names.len()])).collect();
        let schema = Schema { payload: Payload::Image, labels: true, keys: false };
        let mut w = PackWriter::builder(dir.path()).schema(schema).build().unwrap();
        for r in &recs {
            w.push(r, 0, None).unwrap();
        }
        w.finish().unwrap();
        let pipeline = ImagePipeline::train(24).u8();
        let build = |policy| {
            Loader::builder(dir.path())
                .batch_size(5)
                .seed(3)
                .cores(2)
                .on_error(policy)
                .images(pipeline)
                .ddp(DdpConfig::default())
                .build()
                .unwrap()
        };
        let first = build(ErrorPolicy::Fail).next().unwrap().unwrap();
        let canonical = crate::Dataset::open(dir.path()).unwrap().dir().to_path_buf();
        for pos in [0, 3] {
            UNREADABLE.lock().unwrap().push((canonical.clone(), first.indices[pos]));
        }
        for policy in [ErrorPolicy::Fail, ErrorPolicy::Skip, ErrorPolicy::Replace] {
            let batch = build(policy).next().unwrap().unwrap();
            assert_eq!(batch.indices, first.indices, "{policy:?}");
            assert!(batch.skipped.is_empty() && batch.replaced.is_empty(), "{policy:?}");
            let images = batch.images.as_ref().unwrap();
            let slot = images.data().len() / batch.len();
            for (pos, &index) in batch.indices.iter().enumerate() {
                let mut p = pipeline.build().unwrap();
                let mut want = vec![0u8; p.output_len()];
                let mut rng = crate::sample_rng(3, 0, index);
                p.run(&recs[index as usize], &mut rng, ringfeed_decode::OutputMut::U8(&mut want)).unwrap();
                assert_eq!(
                    &images.data()[pos * slot..(pos + 1) * slot],
                    &want[..],
                    "{policy:?} position {pos}"
                );
            }
        }
        UNREADABLE.lock().unwrap().clear();
    }
}
