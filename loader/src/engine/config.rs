//! [`LoaderBuilder`]: every knob of the loader, with defaults.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::loader::Loader;
use super::plan::Shuffle;
use super::resources::IoMode;
use super::state::LoaderState;
use crate::error::{Error, Result};
use crate::order::DdpConfig;

/// What the loader does with a record that fails its checksum or cannot be
/// read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorPolicy {
    /// Deliver the error (naming shard, record and offset) and end the
    /// stream.
    #[default]
    Fail,
    /// Leave the record out of its batch, count it
    /// ([`MetricsSnapshot::skipped`](crate::MetricsSnapshot::skipped)) and
    /// go on; the batch lists it in [`Batch::skipped`](crate::Batch::skipped).
    Skip,
    /// Put another record in its place, chosen deterministically from
    /// (seed, epoch, index) among records that read and decode cleanly, so
    /// batch shapes and the digest stay reproducible; count it
    /// ([`MetricsSnapshot::replaced`](crate::MetricsSnapshot::replaced)).
    /// The batch lists `(corrupt, substitute)` pairs in
    /// [`Batch::replaced`](crate::Batch::replaced).
    Replace,
}

/// Configures a [`Loader`]; obtained from [`Loader::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct LoaderBuilder {
    pub(crate) dataset: PathBuf,
    pub(crate) batch_size: u64,
    pub(crate) seed: u64,
    pub(crate) shuffle: Shuffle,
    pub(crate) ddp: Option<DdpConfig>,
    pub(crate) drop_last: Option<bool>,
    pub(crate) cores: Option<usize>,
    pub(crate) cpus: Option<Vec<usize>>,
    pub(crate) io_mode: IoMode,
    pub(crate) prefetch: usize,
    pub(crate) on_error: ErrorPolicy,
    pub(crate) start_epoch: u64,
    pub(crate) start_batch: u64,
    pub(crate) epochs: u64,
    pub(crate) io_memory: Option<usize>,
    pub(crate) max_merge: u64,
    pub(crate) max_gap: u64,
    pub(crate) resume: Option<LoaderState>,
    pub(crate) images: Option<super::images::ImagePipeline>,
    pub(crate) batch_memory: super::images::BatchMemory,
    pub(crate) sample_transform: Option<super::transform::SampleTransform>,
}

impl LoaderBuilder {
    pub(crate) fn new(dataset: PathBuf) -> Self {
        LoaderBuilder {
            dataset,
            batch_size: 64,
            seed: 0,
            shuffle: Shuffle::Global,
            ddp: None,
            drop_last: None,
            cores: None,
            cpus: None,
            io_mode: IoMode::Auto,
            prefetch: 8,
            on_error: ErrorPolicy::Fail,
            start_epoch: 0,
            start_batch: 0,
            epochs: 1,
            io_memory: None,
            max_merge: 1 << 20,
            max_gap: 32 << 10,
            resume: None,
            images: None,
            batch_memory: super::images::BatchMemory::Pooled,
            sample_transform: None,
        }
    }

    /// Records per batch. Default: 64.
    pub fn batch_size(mut self, n: u64) -> Self {
        self.batch_size = n;
        self
    }

    /// Seed of every epoch order and per-sample RNG. Default: 0.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Epoch order. Default: [`Shuffle::Global`].
    pub fn shuffle(mut self, shuffle: Shuffle) -> Self {
        self.shuffle = shuffle;
        self
    }

    /// Rank, world size and tail policy. Default: from torchrun's `RANK`
    /// and `WORLD_SIZE` environment variables (rank 0 of 1 when unset),
    /// padding the tail.
    pub fn ddp(mut self, ddp: DdpConfig) -> Self {
        self.ddp = Some(ddp);
        self
    }

    /// Drop each epoch's tail (and partial last batch) instead of padding
    /// it with repeated samples; overrides the flag in [`ddp`](Self::ddp).
    /// Default: false.
    pub fn drop_last(mut self, yes: bool) -> Self {
        self.drop_last = Some(yes);
        self
    }

    /// Worker cores (one glommio executor each, pinned to a CPU of its
    /// own while there are enough). Default: as many as this process's
    /// share of CPUs: its affinity mask (`sched_getaffinity`, so `taskset`
    /// and cgroup cpusets are honoured), split under torchrun into
    /// `LOCAL_WORLD_SIZE` contiguous parts of which the loader takes part
    /// `LOCAL_RANK`, so the processes on a node get disjoint cores. More
    /// cores than the share has are fenced to the share, not pinned.
    /// [`Loader::worker_cpus`](crate::Loader::worker_cpus) tells where the
    /// workers run.
    pub fn cores(mut self, n: usize) -> Self {
        self.cores = Some(n);
        self
    }

    /// CPUs to pin the workers to, one each; sets the number of cores and
    /// overrides the choice described at [`cores`](Self::cores). Default:
    /// none (that choice).
    pub fn cpus(mut self, cpus: Vec<usize>) -> Self {
        self.cpus = Some(cpus);
        self
    }

    /// Direct, buffered or automatic I/O. Default: [`IoMode::Auto`].
    pub fn io_mode(mut self, mode: IoMode) -> Self {
        self.io_mode = mode;
        self
    }

    /// Batches ahead of the consumer, across all workers, counting those
    /// still being read; with the batch size this bounds the loader's
    /// memory. Two units are being read at any time (a unit is one batch,
    /// or a window's worth in block mode), plus one per core when images
    /// are decoded (its reads overlap the decoding of the unit before),
    /// and each core queues at least one batch, so that is the smallest
    /// effective depth.
    /// Default: 8.
    pub fn prefetch(mut self, batches: usize) -> Self {
        self.prefetch = batches;
        self
    }

    /// Corrupt or unreadable records. Default: [`ErrorPolicy::Fail`].
    pub fn on_error(mut self, policy: ErrorPolicy) -> Self {
        self.on_error = policy;
        self
    }

    /// First epoch to run. Default: 0.
    pub fn start_epoch(mut self, epoch: u64) -> Self {
        self.start_epoch = epoch;
        self
    }

    /// Epochs to run, counting the first (partial, when resuming) one.
    /// Default: 1.
    pub fn epochs(mut self, n: u64) -> Self {
        self.epochs = n;
        self
    }

    /// io_uring buffer memory per core. Default: 16 MiB, less when the
    /// locked-memory limit requires it.
    pub fn io_memory(mut self, bytes: usize) -> Self {
        self.io_memory = Some(bytes);
        self
    }

    /// Largest read request made by merging neighbouring records.
    /// Default: 1 MiB.
    pub fn max_merge(mut self, bytes: u64) -> Self {
        self.max_merge = bytes;
        self
    }

    /// Largest gap between records that are still read with one request
    /// (the gap's bytes are read and discarded). Default: 32 KiB.
    pub fn max_gap(mut self, bytes: u64) -> Self {
        self.max_gap = bytes;
        self
    }

    /// Decodes and augments every record as an image on the worker cores,
    /// delivering `[B, C, H, W]` tensors in [`Batch::images`](crate::Batch::images)
    /// next to the raw payloads. Default: none (raw records only).
    pub fn images(mut self, pipeline: super::images::ImagePipeline) -> Self {
        self.images = Some(pipeline);
        self
    }

    /// Where the workers decode each batch's images: the loader's recycled
    /// buffers, or (feature `tch`) a libtorch tensor per batch that
    /// [`Batch::into_tensors`](crate::Batch::into_tensors) hands over
    /// without a copy. Only this loader is affected. Default:
    /// [`BatchMemory::Pooled`](super::images::BatchMemory::Pooled).
    pub fn batch_memory(mut self, memory: super::images::BatchMemory) -> Self {
        self.batch_memory = memory;
        self
    }

    /// Runs `transform` on every decoded sample, in place, on the worker
    /// core that decoded it (after the [`images`](Self::images) pipeline,
    /// which it needs). Use it for augmentations of your own: it gets the
    /// sample's generator, so its draws are reproducible too. A transform
    /// that returns an error marks the record corrupt (the
    /// [`on_error`](Self::on_error) policy applies); one that panics ends
    /// the stream with [`Error::Transform`](crate::Error::Transform).
    /// Default: none.
    ///
    /// ```no_run
    /// use ringfeed::{ImagePipeline, Loader, SamplePixels, SampleTransform};
    /// use ringfeed::rand_xoshiro::rand_core::Rng;
    /// # fn main() -> ringfeed::Result<()> {
    /// // Random brightness in [0.8, 1.2] on u8 pixels.
    /// let brightness = SampleTransform::new(|sample, rng| {
    ///     let factor = 0.8 + 0.4 * (rng.next_u32() as f32 / u32::MAX as f32);
    ///     if let SamplePixels::U8(values) = sample.pixels {
    ///         values.iter_mut().for_each(|v| *v = (*v as f32 * factor).min(255.0) as u8);
    ///     }
    ///     Ok(())
    /// });
    /// let loader = Loader::builder("data/train.rf")
    ///     .images(ImagePipeline::train(224))
    ///     .sample_transform(brightness)
    ///     .build()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn sample_transform(mut self, transform: super::transform::SampleTransform) -> Self {
        self.sample_transform = Some(transform);
        self
    }

    /// Continues from a saved [`LoaderState`]: seed, order, batch size,
    /// ranks and position all come from it, so the loader yields exactly
    /// the batches the saved run had not delivered yet. Set
    /// [`epochs`](Self::epochs) to how many epochs to run from there.
    pub fn resume(mut self, state: LoaderState) -> Self {
        self.resume = Some(state);
        self
    }

    /// Like [`build`](Self::build), on a thread of its own, so that an
    /// async runtime's worker thread is not blocked while the dataset is
    /// opened and the worker threads start (a few ms, more on a cold or
    /// remote filesystem). Runtime-agnostic: the returned future only
    /// waits on a channel. Drop the loader with
    /// [`Loader::close`](crate::Loader::close) for the same reason.
    pub fn build_async(self) -> impl std::future::Future<Output = Result<Loader>> + Send + 'static {
        let (tx, rx) = flume::bounded(1);
        let spawned = std::thread::Builder::new().name("ringfeed-build".into()).spawn(move || {
            // A receiver that went away drops the loader here, which
            // stops its workers.
            let _ = tx.send(self.build());
        });
        async move {
            spawned
                .map_err(|e| Error::Shutdown(format!("cannot start a thread to build the loader: {e}")))?;
            rx.recv_async().await.map_err(|_| {
                Error::Shutdown("the thread building the loader ended without a result".into())
            })?
        }
    }

    /// Opens the dataset, starts the workers and returns the loader. Blocks
    /// the calling thread meanwhile; see [`build_async`](Self::build_async).
    pub fn build(mut self) -> Result<Loader> {
        if let Some(st) = self.resume {
            self.seed = st.seed;
            self.shuffle = st.shuffle;
            self.batch_size = st.batch_size;
            self.ddp = Some(DdpConfig::new(st.rank, st.world_size, st.drop_last)?);
            self.drop_last = Some(st.drop_last);
            self.start_epoch = st.epoch;
            self.start_batch = st.next_batch;
        }
        if self.batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        if self.prefetch == 0 {
            return Err(Error::Config("prefetch must be at least 1 batch".into()));
        }
        if matches!(self.cores, Some(0)) || self.cpus.as_ref().is_some_and(Vec::is_empty) {
            return Err(Error::Config("at least one core is needed".into()));
        }
        if self.sample_transform.is_some() && self.images.is_none() {
            return Err(Error::Config(
                "a sample transform needs an image pipeline (LoaderBuilder::images)".into(),
            ));
        }
        if self.max_merge == 0 {
            return Err(Error::Config("max_merge must be at least 1 byte".into()));
        }
        if let Shuffle::Block { block_len, window } = self.shuffle
            && (block_len == 0 || window == 0)
        {
            return Err(Error::Config("block shuffle needs block_len and window of at least 1".into()));
        }
        Loader::start(self)
    }
}
