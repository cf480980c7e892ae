//! ringfeed-pack: the storage layer of ringfeed, without a runtime.
//!
//! A dataset is a directory of shard files, each holding records back to
//! back plus a 4 KiB-aligned index with a CRC32C per record, and a
//! `manifest.json` written last (byte layout in `docs/FORMAT.md`). This
//! crate writes ([`PackWriter`]), reads ([`Dataset`], [`Shard`]) and
//! checks ([`verify`]) such datasets, and packs them from ImageFolder
//! trees, plain directories, WebDataset tar shards, TFRecord and FFRecord
//! files ([`open_source`], [`pack`]). Everything here is synchronous std
//! I/O: no glommio, no tokio, no libtorch, so that data tools and
//! inference servers can use packs without the loader.
//!
//! The `ringfeed` crate (the glommio epoch engine) re-exports every public
//! item of this crate under the same name, so `ringfeed::Dataset` and
//! `ringfeed_pack::Dataset` are one type. Its [`Error`] is this crate's:
//! the enum also holds the loader's variants (`Decode`, `Transform`,
//! `Shutdown`, `Tensor`, `Memory`), which nothing here returns, so that
//! the loader and its users match one error type.
//!
//! `sys` (hidden from the docs) re-exports `ringfeed-io`, the system calls
//! the storage layer shares with the loader, the server and the checkpoint
//! crates; this crate itself has no `unsafe` code.
//!
//! # Example
//!
//! Pack a directory of text files and read a record back:
//!
//! ```
//! use ringfeed_pack::{Dataset, PackOptions, SourceFormat};
//! # fn main() -> ringfeed_pack::Result<()> {
//! let src = tempfile::tempdir().unwrap();
//! std::fs::write(src.path().join("a.txt"), "first document").unwrap();
//! std::fs::write(src.path().join("b.txt"), "second document").unwrap();
//! let out = tempfile::tempdir().unwrap();
//!
//! let source = ringfeed_pack::open_source(src.path(), Some(SourceFormat::Files))?;
//! let manifest = ringfeed_pack::pack(source, out.path(), &PackOptions::builder().build()?, |_| {})?;
//! assert_eq!(manifest.records, 2);
//!
//! let ds = Dataset::open(out.path())?;
//! let rec = ds.record(1)?;
//! assert_eq!(rec.key, "b.txt");
//! assert_eq!(rec.payload, b"second document");
//! assert!(ringfeed_pack::verify(out.path(), |_| {})?.is_clean());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod error;
mod format;
mod key_index;
mod manifest;
mod packer;
mod parts;
mod reader;
mod remote;
mod source;
#[doc(hidden)]
pub use ringfeed_io as sys;
mod tokens;
mod verify;
mod writer;

pub use crate::error::{Error, Result};
pub use crate::format::{FORMAT_VERSION, MAX_RECORD_LEN};
pub use crate::key_index::{
    KEY_INDEX_BYTES_PER_RECORD, KEY_INDEX_FILE, KeyIndex, KeyIndexOrigin, write_key_index,
};
pub use crate::manifest::{MANIFEST_FILE, Manifest, Payload, Schema, ShardInfo, TokenDtype};
pub use crate::packer::{PackOptions, PackOptionsBuilder, PackProgress, check_pack_paths, pack};
pub use crate::parts::{join_parts, split_parts};
#[doc(hidden)]
pub use crate::reader::check_crc;
pub use crate::reader::{Dataset, Record, RecordLocation, Shard};
pub use crate::remote::{RemoteBuf, RemoteCounters, RemoteRead, RemoteStore};
pub use crate::source::{
    FfRecordSource, FilesSource, ImageFolderSource, JsonLinesSource, Source, SourceFormat, SourceItem,
    TarSource, TfRecordSource, open_source, text_field,
};
pub use crate::tokens::{TokenCorpus, TokenCorpusOptions, TokenFormat, write_megatron_index};
pub use crate::verify::{Problem, VerifyReport, verify, verify_remote};
pub use crate::writer::{DEFAULT_SHARD_SIZE, PackWriter, PackWriterBuilder};
