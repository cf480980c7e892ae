//! [`LoaderBuilder`]: every knob of the loader, with defaults and ranges.
//!
//! Every size and count is checked in [`LoaderBuilder::build`], before
//! anything is allocated from it: a value out of range is an
//! [`Error::Config`] that names the range, never an abort on a huge
//! allocation or a silently different setting. The ranges are wide enough
//! for any real job and narrow enough that the largest allowed value still
//! fits in memory (or, for counts of cores, on the CPUs).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::loader::Loader;
use super::plan::Shuffle;
use super::resources::IoMode;
use super::state::LoaderState;
use crate::order::DdpConfig;
use crate::{Error, Result};

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
    pub(crate) io_backend: super::io_backend::IoBackend,
    /// How to reach object storage (`s3://` datasets); the environment's
    /// settings when `None`.
    pub(crate) object_options: Option<super::remote::ObjectOptions>,
    pub(crate) prefetch: Option<usize>,
    pub(crate) on_error: ErrorPolicy,
    /// First epoch of the planned run; after [`build`](Self::build) with
    /// a resume, the epoch of the first batch delivered.
    pub(crate) start_epoch: u64,
    /// Batch of `start_epoch` delivered first (set by a resume).
    pub(crate) start_batch: u64,
    pub(crate) epochs: u64,
    /// The run ends before this epoch (set by [`build`](Self::build)).
    pub(crate) end_epoch: u64,
    /// Which of the settings a resume also records were set on this
    /// builder (by a setter or a preset), so that a disagreement with the
    /// saved state is an error rather than a silent override.
    pub(crate) set: Explicit,
    /// Whether rank and world size come from torchrun's `RANK` and
    /// `WORLD_SIZE` when [`ddp`](Self::ddp) is not set.
    pub(crate) ddp_from_env: bool,
    pub(crate) io_memory: Option<usize>,
    pub(crate) max_merge: u64,
    pub(crate) max_gap: u64,
    pub(crate) resume: Option<LoaderState>,
    pub(crate) images: Option<super::images::ImagePipeline>,
    pub(crate) batch_memory: super::images::BatchMemory,
    pub(crate) sample_transform: Option<super::transform::SampleTransform>,
}

impl LoaderBuilder {
    pub(crate) fn new(dataset: impl AsRef<Path>) -> Self {
        let dataset = dataset.as_ref().to_path_buf();
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
            io_backend: super::io_backend::IoBackend::Auto,
            object_options: None,
            prefetch: None,
            on_error: ErrorPolicy::Fail,
            start_epoch: 0,
            start_batch: 0,
            epochs: 1,
            end_epoch: 1,
            set: Explicit::default(),
            ddp_from_env: true,
            io_memory: None,
            max_merge: 1 << 20,
            max_gap: 32 << 10,
            resume: None,
            images: None,
            batch_memory: super::images::BatchMemory::Pooled,
            sample_transform: None,
        }
    }

    /// Records per batch, `1..=65536`. Default: 64.
    pub fn batch_size(mut self, n: u64) -> Self {
        self.batch_size = n;
        self.set.batch_size = true;
        self
    }

    /// Seed of every epoch order and per-sample RNG. Default: 0.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self.set.seed = true;
        self
    }

    /// Epoch order. [`Shuffle::Block`] takes any `block_len` and `window`
    /// from 1 up: neither costs memory (see [`prefetch`](Self::prefetch)
    /// for what a window's reads hold). Default: [`Shuffle::Global`].
    pub fn shuffle(mut self, shuffle: Shuffle) -> Self {
        self.shuffle = shuffle;
        self.set.shuffle = true;
        self
    }

    /// Rank, world size and tail policy. Default: from torchrun's `RANK`
    /// and `WORLD_SIZE` environment variables (rank 0 of 1 when unset; not
    /// read after [`for_validation`](Self::for_validation)), padding the
    /// tail.
    pub fn ddp(mut self, ddp: DdpConfig) -> Self {
        self.ddp = Some(ddp);
        self.set.ddp = true;
        self
    }

    /// Drop each epoch's tail (and partial last batch) instead of padding
    /// it with repeated samples; overrides the flag in [`ddp`](Self::ddp).
    /// Default: false.
    pub fn drop_last(mut self, yes: bool) -> Self {
        self.drop_last = Some(yes);
        self
    }

    /// The validation preset: every record once, in dataset order, in one
    /// epoch. Sets [`Shuffle::Sequential`], [`epochs(1)`](Self::epochs) and
    /// [`drop_last(false)`](Self::drop_last) (the partial last batch is
    /// kept), and stops reading rank and world size from torchrun's `RANK`
    /// and `WORLD_SIZE`: the loader reads the whole dataset even in a
    /// distributed job. Call it first; setters called after it change what
    /// they set. To split the pass between ranks anyway, set
    /// [`ddp`](Self::ddp) (e.g. `DdpConfig::from_env()?`); the ranks then
    /// read disjoint parts, except that without `drop_last` the last
    /// batches are padded with records from the start, as PyTorch's
    /// `DistributedSampler` does. Default: not applied (the training
    /// defaults described at each setter).
    ///
    /// ```no_run
    /// # fn main() -> ringfeed::Result<()> {
    /// use ringfeed::{ImagePipeline, Loader};
    /// let val = Loader::builder("data/val.rf")
    ///     .for_validation()
    ///     .batch_size(256)
    ///     .images(ImagePipeline::val(256, 224))
    ///     .build()?;
    /// for batch in val {
    ///     let batch = batch?;
    ///     // evaluate
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn for_validation(mut self) -> Self {
        self = self.shuffle(Shuffle::Sequential).epochs(1).drop_last(false);
        self.ddp_from_env = false;
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
    /// workers run. Range: 1 to 4 per CPU of the affinity mask (more
    /// could never run at once, and each costs its own I/O memory).
    pub fn cores(mut self, n: usize) -> Self {
        self.cores = Some(n);
        self
    }

    /// CPUs to pin the workers to, one each; sets the number of cores and
    /// overrides the choice described at [`cores`](Self::cores). Each must
    /// be in this process's affinity mask, and there may be as many as
    /// [`cores`](Self::cores) allows. Default: none (that choice).
    pub fn cpus(mut self, cpus: Vec<usize>) -> Self {
        self.cpus = Some(cpus);
        self
    }

    /// Direct, buffered or automatic I/O. Default: [`IoMode::Auto`].
    pub fn io_mode(mut self, mode: IoMode) -> Self {
        self.io_mode = mode;
        self
    }

    /// io_uring executors or blocking-read threads; `Auto` picks io_uring
    /// when this process may use it (and honours `RINGFEED_IO`). Default:
    /// [`IoBackend::Auto`](super::io_backend::IoBackend::Auto).
    pub fn io_backend(mut self, backend: super::io_backend::IoBackend) -> Self {
        self.io_backend = backend;
        self
    }

    /// How an `s3://` dataset is reached and cached (endpoint, retry
    /// budget, local chunk cache). Default: `ObjectOptions::from_env()`,
    /// read when the loader is built.
    #[cfg(feature = "s3")]
    pub fn object_options(mut self, options: ringfeed_object::ObjectOptions) -> Self {
        self.object_options = Some(options);
        self
    }

    /// Batches ahead of the consumer, across all workers, counting those
    /// still being read; with the batch size this bounds the loader's
    /// memory, whatever the shuffle. Two units are being read at any time,
    /// plus one per core when images are decoded (its reads overlap the
    /// decoding of the unit before); a unit is one batch, or in block mode
    /// as many batches of a window as fit in `prefetch` with the other
    /// units being read (a whole window coalesces best: give block mode
    /// the depth it needs). Each core queues at least one batch and reads
    /// at least one-batch units, so the loader holds at most
    /// `max(prefetch + 2 × cores, cores × (units per core + 1)) + 2`
    /// batches (each its records' buffer and, with pooled images, its
    /// images' buffer), whatever the window;
    /// [`MetricsSnapshot::batch_buffer_bytes_max`](crate::MetricsSnapshot::batch_buffer_bytes_max)
    /// reports the most it held. Range: `1..=1024`. Default: 8; in block
    /// mode, enough batches to read whole windows (`units being read ×
    /// ceil(window / batch) + cores`), from 8 up to at most 64.
    pub fn prefetch(mut self, batches: usize) -> Self {
        self.prefetch = Some(batches);
        self
    }

    /// Corrupt or unreadable records. Default: [`ErrorPolicy::Fail`].
    pub fn on_error(mut self, policy: ErrorPolicy) -> Self {
        self.on_error = policy;
        self
    }

    /// First epoch of the planned run. With [`resume`](Self::resume) the
    /// run still starts here: the saved state says where inside it to
    /// continue (at or after this epoch). Default: 0.
    pub fn start_epoch(mut self, epoch: u64) -> Self {
        self.start_epoch = epoch;
        self
    }

    /// Epochs of the planned run: epochs `start_epoch..start_epoch + n`,
    /// so `n` is the total the run trains for (counted from epoch 0 unless
    /// [`start_epoch`](Self::start_epoch) says otherwise). A resumed run
    /// keeps the plan: built with the same `epochs(n)` and
    /// [`resume`](Self::resume), it delivers the batches the interrupted
    /// run had left, and stops where the uninterrupted run would have
    /// stopped. `start_epoch + n` must fit in a `u64`. Default: 1.
    ///
    /// ```no_run
    /// # fn main() -> ringfeed::Result<()> {
    /// # let saved = String::new();
    /// use ringfeed::{Loader, LoaderState};
    /// let plan = || Loader::builder("data/train.rf").batch_size(256).seed(7).epochs(90);
    /// // First launch: epochs 0..90.
    /// let loader = plan().build()?;
    /// # drop(loader);
    /// // After a crash in epoch 41: the rest of epoch 41, then 42..90.
    /// let loader = plan().resume(LoaderState::from_json(&saved)?).build()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn epochs(mut self, n: u64) -> Self {
        self.epochs = n;
        self
    }

    /// io_uring buffer memory per core, 64 KiB..=1 GiB (registered with
    /// the kernel, so pinned: more only takes memory from the training
    /// job). Default: 16 MiB, less when the locked-memory limit requires
    /// it.
    pub fn io_memory(mut self, bytes: usize) -> Self {
        self.io_memory = Some(bytes);
        self
    }

    /// Largest read request made by merging neighbouring records, 1 byte
    /// ..= 64 MiB (larger requests only add latency and read
    /// amplification; a single record larger than this is still read
    /// whole). Default: 1 MiB.
    pub fn max_merge(mut self, bytes: u64) -> Self {
        self.max_merge = bytes;
        self
    }

    /// Largest gap between records that are still read with one request
    /// (the gap's bytes are read and discarded), `0..=max_merge`.
    /// Default: 32 KiB.
    pub fn max_gap(mut self, bytes: u64) -> Self {
        self.max_gap = bytes;
        self
    }

    /// Decodes and augments every record as an image on the worker cores,
    /// delivering `[B, C, H, W]` tensors in [`Batch::images`](crate::Batch::images)
    /// next to the raw payloads. The output side (train size, val crop) is
    /// `1..=8192`, the val resize `crop..=16384`, and one batch of images
    /// (`B × 3 × side² ×` 1 or 4 bytes) at most 4 GiB. Default: none (raw
    /// records only).
    pub fn images(mut self, pipeline: super::images::ImagePipeline) -> Self {
        self.images = Some(pipeline);
        self
    }

    /// Where the workers decode each batch's images: the loader's recycled
    /// buffers, or (feature `tch`) a libtorch tensor per batch that
    /// `Batch::into_tensors` hands over
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
    ///     .images(ImagePipeline::train(224).u8())
    ///     .sample_transform(brightness)
    ///     .build()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn sample_transform(mut self, transform: super::transform::SampleTransform) -> Self {
        self.sample_transform = Some(transform);
        self
    }

    /// Continues from a saved [`LoaderState`], so the loader yields exactly
    /// the batches the saved run had not delivered yet, up to the end of
    /// the planned run ([`start_epoch`](Self::start_epoch) +
    /// [`epochs`](Self::epochs), the same as for the saved run).
    ///
    /// What the state records (seed, order, batch size, rank, world size,
    /// `drop_last`, image pipeline) is taken from it where this builder
    /// leaves it unset; set on the builder too (or, for rank and world
    /// size, in torchrun's `RANK` / `WORLD_SIZE`), it must agree, or
    /// [`build`](Self::build) fails with an [`Error::Config`] naming both
    /// values. The image pipeline must always be given again
    /// ([`images`](Self::images)) and equal. A state from another version
    /// of ringfeed's orders ([`LoaderState::VERSION`]), from a dataset
    /// with another number of records, or past the end of the planned run
    /// is refused too. Default: none (a fresh run).
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

    /// Rank, world size and `drop_last`: [`ddp`](Self::ddp), else the
    /// environment (unless turned off), else a single process; then
    /// [`drop_last`](Self::drop_last).
    fn resolve_ddp(&self) -> Result<DdpConfig> {
        let mut ddp = match self.ddp {
            Some(d) => d,
            None if self.ddp_from_env => DdpConfig::from_env()?,
            None => DdpConfig::default(),
        };
        if let Some(d) = self.drop_last {
            ddp.drop_last = d;
        }
        Ok(ddp)
    }

    /// Takes from `st` what it records, refusing every disagreement with
    /// a setting made on this builder, and moves the start to its
    /// position inside the planned run.
    fn apply_resume(&mut self, st: &LoaderState) -> Result<()> {
        st.check_version()?;
        let conflict = |what: &str, here: String, saved: String| {
            Err(Error::Config(format!(
                "resume: {what} is {here} on the builder but {saved} in the saved state; \
                 leave it unset to take the saved value, or start a new run"
            )))
        };
        if self.set.batch_size && self.batch_size != st.batch_size {
            return conflict("the batch size", self.batch_size.to_string(), st.batch_size.to_string());
        }
        if self.set.seed && self.seed != st.seed {
            return conflict("the seed", self.seed.to_string(), st.seed.to_string());
        }
        if self.set.shuffle && self.shuffle != st.shuffle {
            return conflict("the shuffle", format!("{:?}", self.shuffle), format!("{:?}", st.shuffle));
        }
        // Rank and world size were set when given to `ddp` or found in
        // the environment; `drop_last` when given to either setter.
        let ddp = self.ddp.unwrap_or_default();
        let ranks_set = self.set.ddp || (self.ddp_from_env && crate::order::ddp_env_is_set()?);
        if ranks_set && (ddp.rank, ddp.world_size) != (st.rank, st.world_size) {
            let source = if self.set.ddp { "" } else { " (from RANK / WORLD_SIZE)" };
            return conflict(
                "the rank",
                format!("{} of {}{source}", ddp.rank, ddp.world_size),
                format!("{} of {}", st.rank, st.world_size),
            );
        }
        let drop_last_set = self.drop_last.is_some() || self.set.ddp;
        if drop_last_set && ddp.drop_last != st.drop_last {
            return conflict("drop_last", ddp.drop_last.to_string(), st.drop_last.to_string());
        }
        if !super::state::same_pipeline(self.images.as_ref(), st.images.as_ref()) {
            let show = |p: Option<&super::images::ImagePipeline>| match p {
                Some(p) => format!("{p:?}"),
                None => "no image pipeline".to_string(),
            };
            return conflict("the image pipeline", show(self.images.as_ref()), show(st.images.as_ref()));
        }
        if st.epoch < self.start_epoch || (st.epoch, st.next_batch) > (self.end_epoch, 0) {
            return Err(Error::Config(format!(
                "resume: the saved state is at epoch {} batch {}, outside the planned run of epochs {}..{} \
                 (start_epoch {} + epochs {}); raise epochs to continue past its end",
                st.epoch, st.next_batch, self.start_epoch, self.end_epoch, self.start_epoch, self.epochs
            )));
        }
        self.batch_size = st.batch_size;
        self.seed = st.seed;
        self.shuffle = st.shuffle;
        self.ddp = Some(DdpConfig::new(st.rank, st.world_size, st.drop_last)?);
        self.drop_last = Some(st.drop_last);
        self.start_epoch = st.epoch;
        self.start_batch = st.next_batch;
        Ok(())
    }

    /// Every range of the setters' docs, checked before anything is
    /// allocated or started.
    fn check(&self) -> Result<()> {
        check_range("batch size", self.batch_size, 1, MAX_BATCH_SIZE)?;
        if let Some(p) = self.prefetch {
            check_range("prefetch", p as u64, 1, MAX_PREFETCH as u64)?;
        }
        if let Shuffle::Block { block_len, window } = self.shuffle {
            check_range("block_len", block_len, 1, u64::MAX)?;
            check_range("window", window, 1, u64::MAX)?;
        }
        self.check_cores()?;
        if let Some(bytes) = self.io_memory {
            check_bytes("io_memory", bytes as u64, MIN_IO_MEMORY, MAX_IO_MEMORY)?;
        }
        check_bytes("max_merge", self.max_merge, 1, MAX_MERGE)?;
        check_bytes("max_gap", self.max_gap, 0, self.max_merge)?;
        if let Some(images) = &self.images {
            check_images(images, self.batch_size)?;
        }
        if self.sample_transform.is_some() && self.images.is_none() {
            return Err(Error::Config(
                "a sample transform needs an image pipeline (LoaderBuilder::images)".into(),
            ));
        }
        Ok(())
    }

    /// Cores and CPUs against this process's affinity mask.
    fn check_cores(&self) -> Result<()> {
        // Where the mask cannot be read, starting the workers says so.
        let Ok(allowed) = crate::sys::affinity::allowed_cpus() else { return Ok(()) };
        let most = (allowed.len() * MAX_CORES_PER_CPU) as u64;
        let range = |what: &str, n: usize| {
            check_range(what, n as u64, 1, most).map_err(|_| {
                Error::Config(format!(
                    "{what} must be 1..={most} ({MAX_CORES_PER_CPU} per CPU of this process's {} allowed), got {n}",
                    allowed.len()
                ))
            })
        };
        if let Some(cpus) = &self.cpus {
            range("the number of CPUs", cpus.len())?;
            if let Some(cpu) = cpus.iter().find(|c| !allowed.contains(c)) {
                return Err(Error::Config(format!(
                    "CPU {cpu} is not in this process's affinity mask ({})",
                    cpu_list(&allowed)
                )));
            }
        } else if let Some(n) = self.cores {
            range("cores", n)?;
        }
        Ok(())
    }

    /// Opens the dataset, starts the workers and returns the loader. Blocks
    /// the calling thread meanwhile; see [`build_async`](Self::build_async).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a value outside its documented range, a
    /// resume that disagrees with a setting of this builder (naming both
    /// values, see [`resume`](Self::resume)) or is refused, or an image
    /// pipeline on a dataset of other records; errors opening the dataset
    /// or starting the workers as they come.
    pub fn build(mut self) -> Result<Loader> {
        // The plan, before a resume moves the start inside it.
        self.end_epoch = self.start_epoch.checked_add(self.epochs).ok_or_else(|| {
            Error::Config(format!(
                "epochs must be 0..={} from start epoch {}, got {}",
                u64::MAX - self.start_epoch,
                self.start_epoch,
                self.epochs
            ))
        })?;
        self.check()?;
        if let Some(images) = &self.images
            && super::state::describe_pipeline(images).is_none()
        {
            return Err(Error::Config(format!(
                "image pipeline {images:?} cannot be recorded in a loader state"
            )));
        }
        self.ddp = Some(self.resolve_ddp()?);
        if let Some(st) = self.resume {
            self.apply_resume(&st)?;
            self.check()?;
        }
        Loader::start(self)
    }
}

/// Which settings that a [`LoaderState`] records were set on the builder.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Explicit {
    batch_size: bool,
    seed: bool,
    shuffle: bool,
    ddp: bool,
}

/// Most records per batch.
pub(crate) const MAX_BATCH_SIZE: u64 = 1 << 16;
/// Most batches of [`LoaderBuilder::prefetch`].
pub(crate) const MAX_PREFETCH: usize = 1024;
/// Most workers per CPU the process may run on.
pub(crate) const MAX_CORES_PER_CPU: usize = 4;
/// Range of [`LoaderBuilder::io_memory`]: glommio's smallest workable pool,
/// and a cap far above what keeps a device busy (16 MiB does).
pub(crate) const MIN_IO_MEMORY: u64 = 64 << 10;
pub(crate) const MAX_IO_MEMORY: u64 = 1 << 30;
/// Most bytes of [`LoaderBuilder::max_merge`].
pub(crate) const MAX_MERGE: u64 = 64 << 20;
/// Largest output side of an image pipeline (the decoder's own limit) and
/// largest val resize.
const MAX_IMAGE_SIDE: u64 = 8192;
const MAX_IMAGE_RESIZE: u64 = 16384;
/// Most bytes of one batch of decoded images.
const MAX_IMAGE_BATCH_BYTES: u64 = 4 << 30;

/// `Err(Config)` naming `what`, its range and the value, unless `lo <=
/// value <= hi`.
pub(crate) fn check_range(what: &str, value: u64, lo: u64, hi: u64) -> Result<()> {
    if (lo..=hi).contains(&value) {
        return Ok(());
    }
    Err(Error::Config(format!("{what} must be {lo}..={hi}, got {value}")))
}

/// [`check_range`] for byte sizes, which it also prints with binary units.
fn check_bytes(what: &str, value: u64, lo: u64, hi: u64) -> Result<()> {
    if (lo..=hi).contains(&value) {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{what} must be {}..={} bytes, got {value} ({})",
        binary(lo),
        binary(hi),
        binary(value)
    )))
}

/// `64 KiB`, `1 GiB`, `1000 B`: the largest binary unit that divides
/// evenly or keeps one decimal.
fn binary(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut unit = 0;
    while unit + 1 < UNITS.len() && bytes >> (10 * (unit + 1)) >= 1 {
        unit += 1;
    }
    let scale = 1u64 << (10 * unit);
    if bytes.is_multiple_of(scale) {
        format!("{} {}", bytes / scale, UNITS[unit])
    } else {
        format!("{:.1} {}", bytes as f64 / scale as f64, UNITS[unit])
    }
}

/// A CPU list as `taskset` prints it: `0-3,6`.
fn cpu_list(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { cpus[i].to_string() } else { format!("{}-{}", cpus[i], cpus[j]) });
        i = j + 1;
    }
    parts.join(",")
}

/// The output side, val resize and batch memory of an image pipeline.
fn check_images(images: &super::images::ImagePipeline, batch: u64) -> Result<()> {
    let (side, dtype) = images.side_and_dtype()?;
    check_range("image side", side as u64, 1, MAX_IMAGE_SIDE)?;
    if let super::images::ImageTransform::Val { resize, crop } = images.transform {
        check_range("val resize", u64::from(resize), u64::from(crop), MAX_IMAGE_RESIZE)?;
    }
    let element = if dtype == super::images::ImageDtype::U8 { 1 } else { 4 };
    let bytes = batch.saturating_mul(3 * side as u64 * side as u64 * element);
    if bytes > MAX_IMAGE_BATCH_BYTES {
        return Err(Error::Config(format!(
            "a batch of {batch} images of [3, {side}, {side}] {dtype:?} takes {}; at most {} is allowed: \
             lower the batch size or the image side",
            binary(bytes),
            binary(MAX_IMAGE_BATCH_BYTES)
        )));
    }
    // The decoder's own rules (train scale / ratio / flip ranges).
    images.validate()
}

/// Refuses an image pipeline on a dataset whose records are not images,
/// before anything starts: every record would fail to decode.
pub(crate) fn check_image_dataset(dataset: &ringfeed_pack::Dataset) -> Result<()> {
    let manifest = dataset.manifest();
    let payload = &manifest.schema.payload;
    if *payload != ringfeed_pack::Payload::Image {
        return Err(Error::Config(format!(
            "an image pipeline needs a dataset of images; {} holds {payload} records (packed from {})",
            dataset.dir().display(),
            manifest.source
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(binary(64 << 10), "64 KiB");
        assert_eq!(binary(1 << 30), "1 GiB");
        assert_eq!(binary(1000), "1000 B");
        assert_eq!(binary(3 << 29), "1.5 GiB");
        assert_eq!(binary(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn cpu_lists_are_compact() {
        assert_eq!(cpu_list(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(cpu_list(&[5]), "5");
        assert_eq!(cpu_list(&[]), "");
    }
}
