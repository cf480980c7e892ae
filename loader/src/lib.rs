//! ringfeed: an embedded data-loading runtime for deep learning.
//!
//! - **Pack format**: a dataset is a directory of shard files, each holding
//!   records back to back plus a 4 KiB-aligned index with a CRC32C per
//!   record, and a `manifest.json` written last ([`PackWriter`],
//!   [`Dataset`], [`verify`]; byte layout in `docs/FORMAT.md`), packed from
//!   ImageFolder trees, plain directories, WebDataset tar shards, TFRecord
//!   and FFRecord files ([`open_source`], [`pack`]).
//! - **Loader**: one glommio executor per core reads shards with io_uring
//!   (O_DIRECT or buffered), checks every record's CRC, and optionally
//!   decodes and augments images on the same core ([`ImagePipeline`], your
//!   own [`SampleTransform`]); batches arrive in order through a bounded
//!   queue ([`Loader`], configured by [`LoaderBuilder`]; as an async
//!   [`LoaderStream`] that still reports its state; a validation preset,
//!   [`LoaderBuilder::for_validation`]).
//! - **Seeded epochs**: a global shuffle with O(1) memory, split across DDP
//!   ranks like PyTorch's `DistributedSampler` ([`EpochPlan`],
//!   [`DdpConfig`]); batch contents and every random augmentation depend
//!   only on (seed, epoch, sample index) ([`sample_rng`]), and a run resumes
//!   exactly from a [`LoaderState`] of a few integers, with the builder of
//!   the planned run, which must agree with what the state records.
//! - **Bad data**: a corrupt or undecodable record fails the run, is
//!   skipped or is replaced ([`ErrorPolicy`]); errors name the file, record
//!   and offset ([`Error`]).
//! - **tch** (cargo feature `tch`): batches as libtorch tensors without a
//!   copy (`Batch::into_tensors`) for loaders built with
//!   `.batch_memory(BatchMemory::Tensor)`; the feature changes nothing for
//!   other loaders.
//!
//! The storage layer (pack format, reader, writer, verify, sources,
//! packer, the [`Error`] enum) is the crate `ringfeed-pack`, which needs no
//! runtime; every public item of it is re-exported here under the same
//! name, so tools and servers that only read or write packs can depend on
//! it alone.
//!
//! # Example
//!
//! Pack a directory of text files, read it back, and stream it. Every
//! path argument is any `AsRef<Path>` (`&str`, `String`, `&Path`,
//! `PathBuf`), and [`pack`] takes the source [`open_source`] returns as it
//! is:
//!
//! ```
//! use ringfeed::{Dataset, Loader, PackOptions, SourceFormat};
//! # fn main() -> ringfeed::Result<()> {
//! let src = tempfile::tempdir().unwrap();
//! std::fs::write(src.path().join("a.txt"), "first document").unwrap();
//! std::fs::write(src.path().join("b.txt"), "second document").unwrap();
//! let out = tempfile::tempdir().unwrap();
//!
//! let source = ringfeed::open_source(src.path(), Some(SourceFormat::Files))?;
//! let manifest = ringfeed::pack(source, out.path(), &PackOptions::builder().build()?, |_| {})?;
//! assert_eq!(manifest.records, 2);
//!
//! let ds = Dataset::open(out.path())?;
//! let rec = ds.record(1)?;
//! assert_eq!(rec.key, "b.txt");
//! assert_eq!(rec.payload, b"second document");
//! assert!(ringfeed::verify(out.path(), |_| {})?.is_clean());
//!
//! // Two epochs in batches of one, shuffled, on one core.
//! let loader = Loader::builder(out.path()).batch_size(1).seed(7).epochs(2).cores(1).build()?;
//! let mut seen = Vec::new();
//! for batch in loader {
//!     let batch = batch?;
//!     seen.push((batch.epoch, batch.indices[0]));
//! }
//! assert_eq!(seen.len(), 4);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod engine;
mod order;
#[expect(unsafe_code, reason = "system calls std does not wrap; see the module docs")]
mod sys;
mod tokens;

pub use crate::engine::batch::{Batch, Digest};
pub use crate::engine::config::{ErrorPolicy, LoaderBuilder};
pub use crate::engine::images::{
    BatchMemory, ImageBuffer, ImageDtype, ImageOutput, ImagePipeline, ImageTransform, Images,
};
pub use crate::engine::io_backend::{IO_BACKEND_ENV, IoBackend};
pub use crate::engine::loader::Loader;
pub use crate::engine::metrics::MetricsSnapshot;
pub use crate::engine::plan::{EpochPlan, Shuffle};
pub use crate::engine::remote::open_dataset;
pub use crate::engine::resources::IoMode;
pub use crate::engine::state::LoaderState;
pub use crate::engine::stream::LoaderStream;
pub use crate::engine::transform::{Sample, SamplePixels, SampleTransform};
pub use crate::order::{
    BlockIter, BlockShuffle, DdpConfig, Permutation, SampleRng, ShuffleQuality, sample_rng, shuffle_quality,
};
pub use crate::tokens::{
    Packing, Segment, TokenBatch, TokenLoader, TokenLoaderBuilder, TokenState, WindowMode, WindowPlan,
};
/// The random-number crate of [`SampleRng`], so callers draw from it
/// with the same `rand_core` version.
pub use rand_xoshiro;
/// Object storage (`s3://` datasets): options, uploads, the store.
#[cfg(feature = "s3")]
pub use ringfeed_object as object;
pub use ringfeed_pack::{
    DEFAULT_SHARD_SIZE, Dataset, Error, FORMAT_VERSION, FfRecordSource, FilesSource, ImageFolderSource,
    JsonLinesSource, KEY_INDEX_BYTES_PER_RECORD, KEY_INDEX_FILE, KeyIndex, KeyIndexOrigin, MANIFEST_FILE,
    MAX_RECORD_LEN, Manifest, PackOptions, PackOptionsBuilder, PackProgress, PackWriter, PackWriterBuilder,
    Payload, Problem, Record, RecordLocation, RemoteCounters, RemoteStore, Result, Schema, Shard, ShardInfo,
    Source, SourceFormat, SourceItem, TarSource, TfRecordSource, TokenCorpus, TokenCorpusOptions, TokenDtype,
    TokenFormat, VerifyReport, check_pack_paths, join_parts, open_source, pack, split_parts, text_field,
    verify, verify_remote, write_key_index, write_megatron_index,
};
/// The `tch` crate this build of ringfeed uses, so callers name the same
/// version.
#[cfg(feature = "tch")]
pub use tch;
