//! Rust errors as the Python exceptions of `ringfeed/errors.py`, one class
//! per kind of error, all under `ringfeed.RingfeedError`.
//!
//! Who is at fault decides the class, as in the Rust error enums: the
//! data (`CorruptDataError`, `UnsupportedDataError`, `DecodeError`), the
//! caller (`ConfigError`, also a `ValueError`), the system (`IoError`,
//! also an `OSError` with the errno), user code (`TransformError`), or
//! ringfeed itself (`InternalError`). The message is the Rust error's.
//! The classes are Python classes (multiple inheritance from the builtin
//! exceptions), looked up when an error is raised.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// The Python exception for a loader or pack error.
pub(crate) fn loader_error(e: ringfeed::Error) -> PyErr {
    use ringfeed::Error as E;
    let class = match &e {
        E::Io { source, .. } => return io_error(e.to_string(), source.raw_os_error()),
        E::Corrupt { .. } => "CorruptDataError",
        E::Unsupported { .. } => "UnsupportedDataError",
        E::Config(_) => "ConfigError",
        E::Decode { .. } => "DecodeError",
        E::Transform { .. } => "TransformError",
        E::Shutdown(_) => "ShutdownError",
        E::Memory { .. } => "OutOfMemoryError",
        _ => "InternalError",
    };
    raise(class, None, e.to_string())
}

/// The Python exception for a checkpoint error.
pub(crate) fn ckpt_error(e: ringfeed_ckpt::Error) -> PyErr {
    use ringfeed_ckpt::Error as E;
    let class = match &e {
        E::Io { source, .. } => return io_error(e.to_string(), source.raw_os_error()),
        E::Format { .. } | E::Checksum { .. } => "CorruptDataError",
        E::NotFound { .. } | E::Config(_) => "ConfigError",
        E::Memory { .. } => "OutOfMemoryError",
        _ => "InternalError",
    };
    raise(class, None, e.to_string())
}

/// A `ConfigError` for an argument the binding itself checks.
pub(crate) fn config_error(msg: impl Into<String>) -> PyErr {
    raise("ConfigError", None, msg.into())
}

/// An `IoError`: `OSError(errno, message)` when the system gave an errno.
fn io_error(msg: String, errno: Option<i32>) -> PyErr {
    raise("IoError", errno, msg)
}

/// `ringfeed.errors.<class>(message)`, or `(errno, message)`, as a `PyErr`.
fn raise(class: &str, errno: Option<i32>, msg: String) -> PyErr {
    Python::attach(|py| {
        let made = py.import("ringfeed.errors").and_then(|m| m.getattr(class)).and_then(|ty| match errno {
            Some(n) => ty.call1((n, msg)),
            None => ty.call1((msg,)),
        });
        match made {
            Ok(value) => PyErr::from_value(value),
            Err(e) => PyRuntimeError::new_err(format!("ringfeed.errors.{class}: {e}")),
        }
    })
}
