//! The image / record loader from Python (`ringfeed.Loader` wraps
//! `_Loader`): the Rust [`ringfeed::Loader`] configured from keyword
//! arguments, one batch per `next()` with the GIL released while waiting,
//! images and labels handed over through DLPack without a copy.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use ringfeed::{DdpConfig, Digest, ErrorPolicy, ImageBuffer, ImageDtype, ImagePipeline, IoMode, LoaderState};

use crate::dlpack::{DlDataType, DlPackBuffer, Export};
use crate::errors::{config_error, loader_error};
use crate::options::choose;

/// A running loader.
#[pyclass(module = "ringfeed._ringfeed", name = "_Loader", frozen)]
pub(crate) struct Loader {
    /// `None` once closed. Locked only with the GIL released, so a thread
    /// waiting for a batch never holds up another that needs the GIL.
    inner: Mutex<Option<Running>>,
    batches_per_epoch: u64,
    classes: Vec<String>,
    cores: usize,
}

struct Running {
    loader: ringfeed::Loader,
    digest: Option<Digest>,
}

/// One batch, converted to Python objects by [`Loader::next_batch`].
struct Delivered {
    epoch: u64,
    index: u64,
    images: Option<Export>,
    labels: Export,
    payloads: Option<Vec<bytes::Bytes>>,
    indices: Vec<u64>,
    skipped: Vec<u64>,
    replaced: Vec<(u64, u64)>,
}

/// A batch as `_Loader.next_batch` returns it: `(epoch, index, images,
/// labels, payloads, indices, skipped, replaced)`.
type BatchTuple<'py> = (
    u64,
    u64,
    Option<DlPackBuffer>,
    DlPackBuffer,
    Option<Bound<'py, PyList>>,
    Vec<u64>,
    Vec<u64>,
    Vec<(u64, u64)>,
);

#[pymethods]
impl Loader {
    #[new]
    #[pyo3(signature = (path, *, batch_size, seed, epochs, start_epoch, pipeline, size, resize, dtype,
                        shuffle, on_corrupt, cores, prefetch, drop_last, rank, world_size, io, state, digest))]
    #[expect(clippy::too_many_arguments, reason = "Python keyword arguments, checked by the Python wrapper")]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        batch_size: u64,
        seed: u64,
        epochs: u64,
        start_epoch: u64,
        pipeline: &str,
        size: u32,
        resize: Option<u32>,
        dtype: &str,
        shuffle: Option<&str>,
        on_corrupt: &str,
        cores: Option<usize>,
        prefetch: Option<usize>,
        drop_last: Option<bool>,
        rank: Option<u64>,
        world_size: Option<u64>,
        io: &str,
        state: Option<&str>,
        digest: bool,
    ) -> PyResult<Self> {
        let mut b = ringfeed::Loader::builder(&path);
        let images = match pipeline {
            "raw" => None,
            "train" => Some(ImagePipeline::train(size)),
            "val" => {
                b = b.for_validation();
                // torchvision's 256 for 224: ceil(size × 8 / 7), as `ringfeed bench`.
                let resize = resize
                    .unwrap_or_else(|| u32::try_from((u64::from(size) * 8).div_ceil(7)).unwrap_or(u32::MAX));
                Some(ImagePipeline::val(resize, size))
            }
            other => {
                return Err(config_error(format!(
                    "pipeline {other:?}: expected \"raw\", \"train\" or \"val\""
                )));
            }
        };
        let images = match (images, dtype) {
            (Some(p), "float32") => Some(p),
            (Some(p), "uint8") => Some(p.u8()),
            (None, _) => None,
            (_, other) => {
                return Err(config_error(format!("dtype {other:?}: expected \"float32\" or \"uint8\"")));
            }
        };
        if let Some(p) = images {
            b = b.images(p);
        }
        b = b.batch_size(batch_size).seed(seed).start_epoch(start_epoch).epochs(epochs);
        if let Some(s) = shuffle {
            b = b.shuffle(crate::options::shuffle(s)?);
        }
        b = b.on_error(choose(
            "on_corrupt",
            on_corrupt,
            &[("fail", ErrorPolicy::Fail), ("skip", ErrorPolicy::Skip), ("replace", ErrorPolicy::Replace)],
        )?);
        b = b.io_mode(choose(
            "io",
            io,
            &[("auto", IoMode::Auto), ("direct", IoMode::Direct), ("buffered", IoMode::Buffered)],
        )?);
        if let Some(n) = cores {
            b = b.cores(n);
        }
        if let Some(n) = prefetch {
            b = b.prefetch(n);
        }
        if let Some(d) = drop_last {
            b = b.drop_last(d);
        }
        match (rank, world_size) {
            (None, None) => {}
            (Some(r), Some(w)) => {
                b = b.ddp(DdpConfig::new(r, w, drop_last.unwrap_or(false)).map_err(loader_error)?)
            }
            _ => {
                return Err(config_error(
                    "rank and world_size go together: give both, or neither (torchrun's RANK and WORLD_SIZE are read then)",
                ));
            }
        }
        if let Some(s) = state {
            b = b.resume(LoaderState::from_json(s).map_err(loader_error)?);
        }
        let loader = py.detach(|| b.build()).map_err(loader_error)?;
        Ok(Loader {
            batches_per_epoch: loader.batches_per_epoch(),
            classes: loader.classes().to_vec(),
            cores: loader.cores(),
            inner: Mutex::new(Some(Running { loader, digest: digest.then(Digest::default) })),
        })
    }

    /// The next batch, or `None` after the last one; the GIL is released
    /// while waiting for it.
    fn next_batch<'py>(&self, py: Python<'py>) -> PyResult<Option<BatchTuple<'py>>> {
        let got = py.detach(|| {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let Some(running) = inner.as_mut() else { return Ok(None) };
            let Some(batch) = running.loader.next() else { return Ok(None) };
            let mut batch = batch?;
            if let Some(d) = running.digest.as_mut() {
                d.update(&batch);
            }
            let n = batch.len();
            let images = match batch.images.take() {
                Some(images) => Some(image_export(images.into_buffer())?),
                None => None,
            };
            let payloads = if images.is_none() { Some(batch.records().collect()) } else { None };
            let labels = Export::from_vec(std::mem::take(&mut batch.labels), &[n], DlDataType::I64);
            Ok(Some(Delivered {
                epoch: batch.epoch,
                index: batch.index,
                images,
                labels,
                payloads,
                indices: std::mem::take(&mut batch.indices),
                skipped: std::mem::take(&mut batch.skipped),
                replaced: std::mem::take(&mut batch.replaced),
            }))
        });
        let Some(d) = got.map_err(loader_error)? else { return Ok(None) };
        let payloads = match d.payloads {
            Some(p) => Some(PyList::new(py, p.iter().map(|b| PyBytes::new(py, b)))?),
            None => None,
        };
        Ok(Some((
            d.epoch,
            d.index,
            d.images.map(DlPackBuffer::new),
            DlPackBuffer::new(d.labels),
            payloads,
            d.indices,
            d.skipped,
            d.replaced,
        )))
    }

    /// Where the run stands after the last batch delivered: the
    /// `LoaderState` JSON a resume takes.
    fn state(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.as_ref().map(|r| r.loader.state().to_json())
        })
        .ok_or_else(|| config_error("the loader is closed"))
    }

    /// The digest of the batches delivered so far (16 hex digits), as
    /// `ringfeed bench` prints it; `None` unless built with `digest=True`.
    fn digest(&self, py: Python<'_>) -> Option<String> {
        py.detach(|| {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.as_ref().and_then(|r| r.digest.map(|d| d.hex()))
        })
    }

    /// The loader's counters as JSON (`MetricsSnapshot`).
    fn metrics_json(&self, py: Python<'_>) -> String {
        py.detach(|| {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.as_ref().map(|r| format!("{:?}", r.loader.metrics())).unwrap_or_default()
        })
    }

    /// Stops the workers and frees the loader's memory (batches already
    /// handed out stay valid). Idempotent.
    fn close(&self, py: Python<'_>) {
        let running = py.detach(|| self.inner.lock().unwrap_or_else(|e| e.into_inner()).take());
        // Joining the workers waits for them: without the GIL.
        py.detach(move || drop(running));
    }

    #[getter]
    fn batches_per_epoch(&self) -> u64 {
        self.batches_per_epoch
    }

    #[getter]
    fn classes(&self) -> Vec<String> {
        self.classes.clone()
    }

    #[getter]
    fn cores(&self) -> usize {
        self.cores
    }
}

/// A batch's images as a DLPack export of their own memory.
fn image_export(buf: ImageBuffer) -> ringfeed::Result<Export> {
    let shape = buf.shape();
    let dtype = match buf.dtype() {
        ImageDtype::U8 => DlDataType::U8,
        ImageDtype::F32 => DlDataType::F32,
    };
    Export::from_owner(buf, ImageBuffer::as_mut_bytes, &shape, dtype)
        .ok_or_else(|| ringfeed::Error::Internal(format!("image memory does not fit {shape:?} {dtype:?}")))
}
