//! ringfeed: an embedded data-loading runtime for deep learning.
//!
//! This release provides the storage layer every later part reads:
//!
//! - the **pack format**: a dataset is a directory of shard files, each
//!   holding records back to back plus a 4 KiB-aligned index with a CRC32C
//!   per record, and a `manifest.json` written last
//!   ([`PackWriter`], [`Dataset`], [`verify`]; byte layout in
//!   `docs/FORMAT.md`);
//! - **sources** that the packer reads: ImageFolder trees, plain
//!   directories, WebDataset tar shards, TFRecord and FFRecord files
//!   ([`open_source`], [`pack`]).
//!
//! # Example
//!
//! Pack a directory of text files and read it back:
//!
//! ```
//! use ringfeed::{Dataset, PackOptions, SourceFormat};
//! # fn main() -> ringfeed::Result<()> {
//! let src = tempfile::tempdir().unwrap();
//! std::fs::write(src.path().join("a.txt"), "first document").unwrap();
//! std::fs::write(src.path().join("b.txt"), "second document").unwrap();
//! let out = tempfile::tempdir().unwrap();
//!
//! let source = ringfeed::open_source(src.path(), Some(SourceFormat::Files))?;
//! let manifest = ringfeed::pack(&*source, out.path(), &PackOptions::builder().build()?, |_| {})?;
//! assert_eq!(manifest.records, 2);
//!
//! let ds = Dataset::open(out.path())?;
//! let rec = ds.record(1)?;
//! assert_eq!(rec.key, "b.txt");
//! assert_eq!(rec.payload, b"second document");
//! assert!(ringfeed::verify(out.path(), |_| {})?.is_clean());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod engine;
mod error;
mod order;
mod pack;
mod packer;
mod source;
#[expect(unsafe_code, reason = "system calls std does not wrap; see the module docs")]
mod sys;

pub use crate::engine::batch::{Batch, Digest};
pub use crate::engine::config::{ErrorPolicy, LoaderBuilder};
pub use crate::engine::images::{ImageDtype, ImageOutput, ImagePipeline, ImageTransform, Images};
pub use crate::engine::loader::Loader;
pub use crate::engine::metrics::MetricsSnapshot;
pub use crate::engine::plan::{EpochPlan, Shuffle};
pub use crate::engine::resources::IoMode;
pub use crate::engine::state::LoaderState;
pub use crate::engine::transform::{Sample, SamplePixels, SampleTransform};
pub use crate::error::{Error, Result};
pub use crate::order::{
    BlockIter, BlockShuffle, DdpConfig, Permutation, SampleRng, ShuffleQuality, sample_rng, shuffle_quality,
};
pub use crate::pack::format::{FORMAT_VERSION, MAX_RECORD_LEN};
pub use crate::pack::manifest::{MANIFEST_FILE, Manifest, Payload, Schema, ShardInfo};
pub use crate::pack::parts::{join_parts, split_parts};
pub use crate::pack::reader::{Dataset, Record, RecordLocation, Shard};
pub use crate::pack::verify::{Problem, VerifyReport, verify};
pub use crate::pack::writer::{DEFAULT_SHARD_SIZE, PackWriter, PackWriterBuilder};
pub use crate::packer::{PackOptions, PackOptionsBuilder, PackProgress, pack};
/// The random-number crate of [`SampleRng`], so callers draw from it
/// with the same `rand_core` version.
pub use rand_xoshiro;
/// The `tch` crate this build of ringfeed uses, so callers name the same
/// version.
#[cfg(feature = "tch")]
pub use tch;

pub use crate::source::{
    FfRecordSource, FilesSource, ImageFolderSource, Source, SourceFormat, SourceItem, TarSource,
    TfRecordSource, open_source,
};
