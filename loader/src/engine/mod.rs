//! The epoch engine: turns a pack dataset into a stream of batches with one
//! glommio executor per core. See [`Loader`](crate::Loader).

pub(crate) mod batch;
pub(crate) mod coalesce;
pub(crate) mod config;
pub(crate) mod first_batch;
pub(crate) mod images;
pub(crate) mod io_backend;
pub(crate) mod loader;
pub(crate) mod metrics;
pub(crate) mod plan;
pub(crate) mod pool;
pub(crate) mod remote;
pub(crate) mod replace;
pub(crate) mod resources;
pub(crate) mod state;
pub(crate) mod stream;
#[cfg(feature = "tch")]
pub(crate) mod tensors;
pub(crate) mod transform;
pub(crate) mod worker;
