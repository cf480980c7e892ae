//! ringfeed's pack datasets in S3-compatible object storage (AWS S3,
//! MinIO, Ceph RGW, R2, ...): [`open`] a dataset at an `s3://bucket/prefix`
//! URL as a [`ringfeed_pack::Dataset`] whose records are read with ranged
//! GETs, and [`upload`] a packed directory there.
//!
//! - **Reads.** The loader asks for coalesced runs of records (block
//!   shuffle: long runs; global shuffle: single records), many in flight;
//!   each is one ranged GET. Retries with backoff on 5xx, timeouts, cut
//!   connections and truncated bodies, up to a budget; 4xx are final. A
//!   read that still fails reaches the loader's error policy for the
//!   records it served.
//! - **Cache.** Optional: aligned chunks (1 MiB) of shards kept on local
//!   disk, bounded in bytes (least recently used deleted first), reused
//!   after a restart, checked by CRC32C on every read (a damaged chunk is
//!   fetched again; a caller that checks every record's CRC itself, the
//!   loader, reads unchecked and invalidates on a mismatch). Misses fetch
//!   whole chunks, adjacent ones in one GET.
//! - **Configuration.** Credentials, region and endpoint from the usual
//!   AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//!   `AWS_REGION`, `AWS_ENDPOINT_URL`, ...); the cache and retry budget
//!   from [`ObjectOptions`] or `RINGFEED_CACHE_DIR`, `RINGFEED_CACHE_BYTES`,
//!   `RINGFEED_S3_RETRIES`, `RINGFEED_S3_TIMEOUT_MS`.
//!
//! The S3 client is `object_store` (Apache Arrow's), on a two-thread tokio
//! runtime of this crate's own: the loader's executors only wait on
//! channels, whatever runtime they are. Crates that read only local packs
//! do not compile any of it (the loader's `s3` feature adds it).
//!
//! ```no_run
//! use ringfeed_object::{ObjectOptions, open, upload};
//!
//! let opts = ObjectOptions::builder().cache_dir("/mnt/nvme/ringfeed-cache").build()?;
//! upload("packed/train".as_ref(), "s3://datasets/imagenet/train", &opts)?;
//! let ds = open("s3://datasets/imagenet/train", &opts)?;
//! println!("{} records; first is {} bytes", ds.len(), ds.record(0)?.payload.len());
//! # Ok::<(), ringfeed_object::Error>(())
//! ```

#![deny(missing_docs)]

mod cache;
mod client;
mod error;
mod options;
mod source;
mod upload;
mod url;

pub use crate::error::{Error, Result};
pub use crate::options::{
    CACHE_BYTES_ENV, CACHE_DIR_ENV, ObjectOptions, ObjectOptionsBuilder, RETRIES_ENV, TIMEOUT_ENV,
};
pub use crate::source::S3Store;
pub use crate::upload::{UploadReport, upload};
pub use crate::url::is_object_url;

/// Opens the pack dataset at `url` (`s3://bucket/prefix`): its manifest,
/// then every shard's header and index (all in flight at once), checked as
/// a local dataset's are.
pub fn open(url: &str, opts: &ObjectOptions) -> Result<ringfeed_pack::Dataset> {
    let store = S3Store::connect(url, opts)?;
    Ok(ringfeed_pack::Dataset::open_remote(std::sync::Arc::new(store))?)
}
