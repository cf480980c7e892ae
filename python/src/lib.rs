//! The native part of the `ringfeed` Python package (`ringfeed._ringfeed`).
//!
//! Python users import `ringfeed` (python/ringfeed/), whose classes wrap
//! the ones here in Python's idiom (keyword arguments, torch tensors,
//! the `Stateful` protocol). This crate binds the Rust crates with pyo3:
//!
//! - `_Loader`: [`ringfeed::Loader`], batches handed out through DLPack
//!   without a copy ([`dlpack`]); the GIL is released while waiting.
//! - `_TokenLoader`: [`ringfeed::TokenLoader`].
//! - `_Dataset`, `pack`, `verify`: the pack format.
//! - `load_checkpoint`, `save_checkpoint`: [`ringfeed_ckpt`].
//!
//! Errors become the exceptions of `ringfeed/errors.py` ([`errors`]).
//! Built by maturin (`pip install ./python`); tested by pytest
//! (python/tests), so this crate has no Rust tests of its own:
//!
//! ```python
//! import ringfeed
//! ringfeed.pack("photos/train", "train.rf")
//! loader = ringfeed.Loader("train.rf", batch_size=64, pipeline="train", epochs=90)
//! for images, labels in loader:
//!     ...  # images: float32 [64, 3, 224, 224] torch tensor, labels: int64 [64]
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod ckpt;
mod dataset;
#[expect(unsafe_code, reason = "the DLPack C ABI; see the module's SAFETY comments")]
mod dlpack;
mod errors;
mod loader;
mod options;
mod tokens;

use pyo3::prelude::*;

/// The module: its classes and functions (the GIL is not needed:
/// free-threaded CPython runs it without re-enabling the GIL, every class
/// guarding its state with a mutex).
#[pymodule(gil_used = false)]
fn _ringfeed(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<dlpack::DlPackBuffer>()?;
    m.add_class::<dataset::Dataset>()?;
    m.add_class::<loader::Loader>()?;
    m.add_class::<tokens::TokenLoader>()?;
    m.add_function(wrap_pyfunction!(dataset::pack, m)?)?;
    m.add_function(wrap_pyfunction!(dataset::verify, m)?)?;
    m.add_function(wrap_pyfunction!(ckpt::load_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(ckpt::save_checkpoint, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
