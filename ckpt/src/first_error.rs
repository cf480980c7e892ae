//! [`FirstError`]: the first error of several threads working on one task.

use std::sync::Mutex;

use crate::error::{Error, Result};

/// Keeps the first error any thread reports; later ones are dropped (the
/// task has failed already, and the first is the cause).
#[derive(Debug, Default)]
pub(crate) struct FirstError(Mutex<Option<Error>>);

impl FirstError {
    pub(crate) fn set(&self, e: Error) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// `Err` with the first error, or `Ok(ok)`.
    pub(crate) fn into_result<T>(self, ok: T) -> Result<T> {
        match self.0.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(ok),
        }
    }
}
