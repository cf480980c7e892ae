//! Datasets in object storage: `s3://` URLs opened through
//! `ringfeed-object` (the `s3` feature), and the worker's reads of their
//! shards, which wait on the store's own runtime rather than on io_uring.

use std::path::Path;
use std::sync::Arc;

use ringfeed_pack::{Dataset, RemoteStore};

use crate::{Error, Result};

/// True when `dataset` names object storage rather than a directory.
pub(crate) fn is_remote(dataset: &Path) -> bool {
    dataset.to_str().is_some_and(|s| s.starts_with("s3://"))
}

/// Opens the dataset in a local directory or, with the `s3` feature, at
/// an `s3://bucket/prefix` URL (reached as `ObjectOptions::from_env()`
/// says: the AWS variables, `RINGFEED_CACHE_DIR`, ...).
pub fn open_dataset(dataset: impl AsRef<Path>) -> Result<Dataset> {
    open_with(dataset.as_ref(), None)
}

/// [`open_dataset`] with explicit object storage options.
pub(crate) fn open_with(dataset: &Path, options: Option<&ObjectOptions>) -> Result<Dataset> {
    if !is_remote(dataset) {
        return Dataset::open(dataset);
    }
    open_remote(dataset.to_str().unwrap_or_default(), options)
}

#[cfg(feature = "s3")]
pub(crate) type ObjectOptions = ringfeed_object::ObjectOptions;

/// Without the `s3` feature there are no options to give.
#[cfg(not(feature = "s3"))]
#[derive(Debug, Clone)]
pub(crate) enum ObjectOptions {}

#[cfg(feature = "s3")]
fn open_remote(url: &str, options: Option<&ObjectOptions>) -> Result<Dataset> {
    let from_env;
    let options = match options {
        Some(o) => o,
        None => {
            from_env = ObjectOptions::from_env()?;
            &from_env
        }
    };
    Ok(ringfeed_object::open(url, options)?)
}

#[cfg(not(feature = "s3"))]
fn open_remote(url: &str, _: Option<&ObjectOptions>) -> Result<Dataset> {
    Err(Error::Config(format!(
        "{url} is in object storage, and this build of ringfeed has no `s3` feature to read it"
    )))
}

/// A shard in object storage, as a worker reads it.
pub(crate) struct RemoteShard {
    store: Arc<dyn RemoteStore>,
    name: String,
}

impl RemoteShard {
    /// Shard `shard` of `dataset` if it lives in object storage.
    pub(crate) fn of(dataset: &Dataset, shard: usize) -> Result<Option<RemoteShard>> {
        let s = dataset
            .shards()
            .get(shard)
            .ok_or_else(|| Error::Config(format!("shard {shard} out of range")))?;
        Ok(s.remote().map(|(store, name)| RemoteShard { store: store.clone(), name: name.to_string() }))
    }

    /// Reads `len` bytes at `pos`: the store's runtime does the work, this
    /// task waits on a channel (whatever executor runs it). Cached bytes
    /// are not checked by the store: the worker checks every record's
    /// CRC32C and, on a mismatch, calls [`reread`](Self::reread).
    pub(crate) async fn read(&self, pos: u64, len: usize) -> std::io::Result<ringfeed_pack::RemoteBuf> {
        self.store.read_checked_by_caller(&self.name, pos, len).await
    }

    /// Drops the store's local copy of these bytes (found damaged) and
    /// reads them again, checked by the store.
    pub(crate) async fn reread(&self, pos: u64, len: usize) -> std::io::Result<ringfeed_pack::RemoteBuf> {
        self.store.invalidate(&self.name, pos, len);
        self.store.read(&self.name, pos, len).await
    }
}
