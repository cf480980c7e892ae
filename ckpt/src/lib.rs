//! Checkpoints for ringfeed: [safetensors] files and Hugging Face sharded
//! sets (`model.safetensors.index.json`), loaded at disk speed and saved
//! so that a crash never costs the previous checkpoint.
//!
//! - **Load** ([`Checkpoint`], [`ShardedCheckpoint`]): O_DIRECT reads of
//!   8 MiB, four in flight, straight into one aligned buffer per file
//!   (alignment from `statx`; only a run's unaligned head and tail go
//!   through a bounce buffer; the page cache where O_DIRECT is refused).
//!   Typed views without a copy ([`TensorView::as_slice`]), the caller's
//!   own buffers ([`Checkpoint::read_into`]), a name filter, and an async
//!   load for any executor ([`Checkpoint::load_async`]).
//! - **Validation before allocation**: header length (100 MB, as the
//!   reference implementation), JSON shape (duplicate names and unknown
//!   fields refused), known dtypes, shape × dtype = byte range, ranges
//!   inside the file, no overlaps, no gaps, no trailing bytes. Errors name
//!   the file and the tensor ([`Error::Format`]).
//! - **Checksums**: ringfeed stores a CRC32C per tensor in `__metadata__`
//!   (`ringfeed.crc32c.NAME`, 8 hex digits; other readers ignore it) and
//!   checks it on load ([`Error::Checksum`]).
//! - **Save** ([`save`], [`CheckpointDir`]): data starts at a multiple of
//!   4 KiB (header padded with spaces, as the format allows), so direct
//!   reads need no bounce buffer at its start; temporary file, data and
//!   header written with direct I/O, `fsync`, rename, directory `fsync`;
//!   the last K checkpoints kept.
//!
//! - **Startup storms** ([`Checkpoint::load_shared`]): processes of one
//!   node loading the same file at once read it from storage once, into a
//!   sealed memfd the others map read-only (one copy in memory).
//!
//! Files round-trip bit-exactly with the Python `safetensors` package and
//! the Rust `safetensors` crate, both ways.
//!
//! ```
//! use ringfeed_ckpt::{Checkpoint, CheckpointDir, Dtype, SaveOptions, TensorRef};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let ckpts = CheckpointDir::new(dir.path(), 2)?;
//! let weights = vec![0.5f32; 1024];
//! let step = 7u64.to_le_bytes();
//! for n in 1..=3 {
//!     let tensors = [
//!         TensorRef::new("layer.weight", Dtype::F32, &[32, 32], bytemuck::cast_slice(&weights))?,
//!         TensorRef::new("step", Dtype::U64, &[], &step)?,
//!     ];
//!     ckpts.save(n, &tensors, &SaveOptions::default().metadata("format", "pt"))?;
//! }
//! assert_eq!(ckpts.steps()?, [2, 3]); // the last two kept
//!
//! let (latest, ckpt) = ckpts.latest()?.expect("a checkpoint");
//! assert_eq!(latest, 3);
//! let loaded = ckpt.load()?; // direct I/O where possible, CRCs checked
//! let w = loaded.get("layer.weight").unwrap();
//! assert_eq!((w.dtype(), w.shape()), (Dtype::F32, &[32u64, 32][..]));
//! assert_eq!(w.as_slice::<f32>()?, &weights[..]);
//! # Ok(())
//! # }
//! ```
//!
//! [safetensors]: https://github.com/huggingface/safetensors

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod async_save;
mod dir;
mod dtype;
mod error;
mod first_error;
mod header;
mod load;
mod region;
mod save;
mod sharded;
mod shared;
mod source;
#[cfg(feature = "tch")]
mod torch;

pub use crate::async_save::{AsyncSaver, SaveHandle};
pub use crate::dir::CheckpointDir;
pub use crate::dtype::Dtype;
pub use crate::error::{Error, Result};
pub use crate::header::{CRC_KEY_PREFIX, DATA_ALIGN, MAX_HEADER_BYTES, TensorInfo};
pub use crate::load::{Checkpoint, CheckpointBuilder, Element, LoadOptions, TensorView, Tensors};
pub use crate::region::TensorRegion;
pub use crate::save::{SaveOptions, Saved, TensorRef, save};
pub use crate::sharded::ShardedCheckpoint;
pub use crate::shared::LoadedFrom;
#[cfg(feature = "tch")]
pub use crate::torch::NamedTensors;
