//! libtorch tensors that ringfeed fills in place: [`TensorSlab`] allocates
//! a contiguous CPU tensor (in pinned host memory when CUDA is available,
//! so that it copies to the GPU asynchronously and at full speed), lets
//! its owner write it as bytes, and hands over the same tensor. The image
//! loader decodes batches into slabs; the checkpoint crate reads tensors
//! into them with direct I/O. [`tensor_from_aligned`] instead hands
//! libtorch memory ringfeed allocated and filled itself (an `AlignedBuf`),
//! with a deleter, for CPU tensors that need no pinning. Nothing is copied
//! on the way to torch.
//!
//! Everything is behind the `tch` feature (libtorch 2.13.0, see
//! `scripts/install-libtorch.sh`); without it the crate is empty. The one
//! libtorch call tch lacks, allocating in pinned memory, is a small C++
//! shim compiled by `build.rs`. Not a stable API: it changes with the
//! crates above it.
//!
//! ```
//! # #[cfg(feature = "tch")] {
//! use ringfeed_tensor::TensorSlab;
//! use tch::Kind;
//!
//! let mut slab = TensorSlab::new(&[2, 3], Kind::Uint8, false).unwrap();
//! slab.bytes_mut().copy_from_slice(&[1, 2, 3, 4, 5, 6]);
//! let t = slab.into_tensor();
//! assert_eq!(t.int64_value(&[1, 2]), 6);
//! # }
//! ```

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "tch")]
mod error;
#[cfg(feature = "tch")]
mod owned;
#[cfg(feature = "tch")]
mod slab;

#[cfg(feature = "tch")]
pub use crate::error::Error;
#[cfg(feature = "tch")]
pub use crate::owned::tensor_from_aligned;
#[cfg(feature = "tch")]
pub use crate::slab::{TensorSlab, cuda_device, pinned};
