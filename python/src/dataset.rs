//! Pack datasets from Python: `pack`, `verify` and random access to
//! records (`ringfeed.Dataset` wraps `_Dataset`).

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{config_error, loader_error};

/// An open pack dataset: record count, classes, records by index.
#[pyclass(module = "ringfeed._ringfeed", name = "_Dataset", frozen)]
pub(crate) struct Dataset {
    inner: ringfeed::Dataset,
}

#[pymethods]
impl Dataset {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| ringfeed::open_dataset(&path)).map_err(loader_error)?;
        Ok(Dataset { inner })
    }

    fn __len__(&self) -> usize {
        self.inner.len() as usize
    }

    /// `(payload, label, key)` of record `index` (CRC checked); negative
    /// indices count from the end.
    fn record<'py>(&self, py: Python<'py>, index: i64) -> PyResult<(Bound<'py, PyBytes>, i64, String)> {
        let n = self.inner.len();
        let i = if index < 0 { index + n as i64 } else { index };
        if i < 0 || i as u64 >= n {
            return Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "record {index} of a dataset of {n} records"
            )));
        }
        let rec = py.detach(|| self.inner.record(i as u64)).map_err(loader_error)?;
        Ok((PyBytes::new(py, &rec.payload), rec.label, rec.key))
    }

    /// The manifest as JSON.
    fn manifest_json(&self) -> String {
        serde_json::to_string(self.inner.manifest()).unwrap_or_default()
    }

    /// The dataset's directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.dir().to_path_buf()
    }
}

/// Packs `src` into a dataset at `out`; returns the manifest as JSON.
#[pyfunction]
#[pyo3(signature = (src, out, format=None, shard_size=None, threads=None))]
pub(crate) fn pack(
    py: Python<'_>,
    src: PathBuf,
    out: PathBuf,
    format: Option<String>,
    shard_size: Option<u64>,
    threads: Option<usize>,
) -> PyResult<String> {
    let format = format.map(|f| f.parse::<ringfeed::SourceFormat>()).transpose().map_err(loader_error)?;
    let mut options = ringfeed::PackOptions::builder();
    if let Some(bytes) = shard_size {
        options = options.shard_size(bytes);
    }
    if let Some(n) = threads {
        options = options.threads(n);
    }
    let options = options.build().map_err(loader_error)?;
    let manifest = py
        .detach(|| {
            ringfeed::check_pack_paths(&src, &out)?;
            let source = ringfeed::open_source(&src, format)?;
            ringfeed::pack(source, &out, &options, |_| {})
        })
        .map_err(loader_error)?;
    serde_json::to_string(&manifest).map_err(|e| config_error(e.to_string()))
}

/// Reads every record of the dataset at `path` and checks it; returns the
/// report as JSON (problems listed, not raised).
#[pyfunction]
pub(crate) fn verify(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    let report = py
        .detach(|| {
            if ringfeed::object::is_object_url(&path.to_string_lossy()) {
                ringfeed::verify_remote(&ringfeed::open_dataset(&path)?, |_| {})
            } else {
                ringfeed::verify(&path, |_| {})
            }
        })
        .map_err(loader_error)?;
    serde_json::to_string(&report).map_err(|e| config_error(e.to_string()))
}
