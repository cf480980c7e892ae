//! ringfeed-serve: request preprocessing with dynamic batching, for
//! inference servers on tokio (axum, hyper, tonic).
//!
//! - [`Spec`] says what the model expects: resize + center crop
//!   (torchvision val, pixel for pixel ringfeed-decode's offline
//!   pipeline), square resize or letterbox; ImageNet-style mean/std `f32`
//!   or raw `u8`; NCHW or NHWC. [`Limits`] on every image are checked
//!   against its header before any pixel memory is allocated.
//! - [`Preprocessor`] applies a spec to one image on the calling thread.
//! - [`Batcher`] admits requests into a bounded queue (full:
//!   [`Error::Overloaded`] at once), groups them into batches of at most
//!   `max_batch` within `max_delay`, decodes each on its own CPU pool
//!   (never on tokio's workers) straight into its row of the [`Batch`],
//!   calls the model function once per batch and hands each request its
//!   own row of the result. A bad image fails its own request only, with
//!   an error whose [`Error::fault`] tells a 4xx from a 5xx; a dropped
//!   request future frees its place. [`MetricsSnapshot`] has queue depth,
//!   batch sizes, per-stage latencies and failure counts.
//!
//! No glommio, and no libtorch unless asked for: this crate depends on
//! ringfeed-decode and tokio only. With the `tch` feature,
//! `BatcherBuilder::tensor_storage(true)` makes batch buffers libtorch
//! tensors that the pool decodes straight into, and `Batch::tensor` hands
//! the filled rows to a model without a copy.
//!
//! ```
//! use ringfeed_serve::{Batch, BatchData, Batcher, Fault, Spec};
//!
//! # fn png(w: u32, h: u32) -> Vec<u8> {
//! #     let mut out = Vec::new();
//! #     let mut enc = png::Encoder::new(&mut out, w, h);
//! #     enc.set_color(png::ColorType::Rgb);
//! #     let mut writer = enc.write_header().unwrap();
//! #     writer.write_image_data(&vec![128; (w * h * 3) as usize]).unwrap();
//! #     drop(writer);
//! #     out
//! # }
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let runtime = tokio::runtime::Builder::new_multi_thread().enable_time().build()?;
//!     runtime.block_on(async {
//!         // ResNet-style input: Resize(256) + CenterCrop(224), ImageNet
//!         // normalization, f32 [N, 3, 224, 224].
//!         let spec = Spec::builder().center_crop(256, 224).build()?;
//!         // A dummy model: the mean of each row.
//!         let model = |batch: Batch| async move {
//!             let BatchData::F32(data) = batch.data() else { unreachable!() };
//!             let row = data.len() / batch.len();
//!             let means = data.chunks(row).map(|r| r.iter().sum::<f32>() / row as f32).collect();
//!             Ok::<Vec<f32>, std::io::Error>(means)
//!         };
//!         let batcher = Batcher::builder(spec)
//!             .max_batch(16)
//!             .max_delay(std::time::Duration::from_millis(2))
//!             .build(model)?;
//!
//!         let image: Vec<u8> = png(320, 240); // a request body: JPEG or PNG bytes
//!         let response = batcher.submit(image).await?;
//!         println!("mean {} after {:?} in the queue", response.output, response.timings.queue);
//!
//!         let bad = batcher.submit(&b"GIF89a..."[..]).await.unwrap_err();
//!         assert_eq!(bad.fault(), Fault::Client); // a 4xx, not the server's fault
//!         assert_eq!(batcher.metrics().completed, 1);
//!         Ok(())
//!     })
//! }
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

// The one unsafe block of the crate: concurrent writes to disjoint rows.
#[expect(unsafe_code, reason = "pool threads write disjoint rows of one batch buffer")]
mod batch;
mod batcher;
mod collector;
mod error;
mod metrics;
mod pool;
mod preprocess;
mod records;
mod spec;

pub use crate::batch::{Batch, BatchData};
pub use crate::batcher::{Batcher, BatcherBuilder, BatcherConfig, Response, Timings};
pub use crate::error::{Error, Fault, ModelError, Result};
pub use crate::metrics::{LatencySnapshot, MetricsSnapshot};
pub use crate::preprocess::Preprocessor;
pub use crate::records::{Record, RecordIo, Records, RecordsBuilder};
pub use crate::spec::{Geometry, Layout, Normalize, Spec, SpecBuilder};
pub use ringfeed_decode::{Limits, OutputMut};
pub use ringfeed_pack::KeyIndexOrigin;
/// The tch crate this one was built with (the `tch` feature), for
/// [`Batch::tensor`]'s type.
#[cfg(feature = "tch")]
pub use tch;
