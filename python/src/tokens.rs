//! The token-window loader from Python (`ringfeed.TokenLoader` wraps
//! `_TokenLoader`): [`ringfeed::TokenLoader`] over any corpus
//! [`ringfeed::TokenCorpus`] reads (ringfeed token datasets, nanoGPT
//! `.bin`, Megatron `.bin`+`.idx`, datatrove `.ds`), batches as int64
//! `x` / `y` arrays through DLPack.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use ringfeed::{TokenCorpus, TokenCorpusOptions, TokenDtype, TokenState, WindowMode};

use crate::dlpack::{DlDataType, DlPackBuffer, Export};
use crate::errors::{config_error, loader_error};
use crate::options::choose;

/// A running token loader.
#[pyclass(module = "ringfeed._ringfeed", name = "_TokenLoader", frozen)]
pub(crate) struct TokenLoader {
    /// `None` once closed; locked only with the GIL released.
    inner: Mutex<Option<ringfeed::TokenLoader>>,
    batches_per_epoch: u64,
    tokens: u64,
}

/// `(epoch, index, x, y, offsets, position_ids, loss_mask, cu_seqlens)`;
/// the last three only for packed windows.
type TokenTuple = (
    u64,
    u64,
    DlPackBuffer,
    DlPackBuffer,
    Vec<u64>,
    Option<DlPackBuffer>,
    Option<DlPackBuffer>,
    Option<DlPackBuffer>,
);

#[pymethods]
impl TokenLoader {
    #[new]
    #[pyo3(signature = (path, *, block_size, batch_size, mode, shuffle, seed, epochs, rank, world_size,
                        threads, prefetch, direct_io, vocab_size, dtype, eot, state))]
    #[expect(clippy::too_many_arguments, reason = "Python keyword arguments, checked by the Python wrapper")]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        block_size: u64,
        batch_size: u64,
        mode: &str,
        shuffle: &str,
        seed: u64,
        epochs: u64,
        rank: Option<u64>,
        world_size: Option<u64>,
        threads: Option<usize>,
        prefetch: Option<usize>,
        direct_io: bool,
        vocab_size: Option<u32>,
        dtype: Option<&str>,
        eot: Option<u32>,
        state: Option<&str>,
    ) -> PyResult<Self> {
        let shuffle = crate::options::shuffle(shuffle)?;
        let mode = choose(
            "mode",
            mode,
            &[
                ("epoch", WindowMode::Epoch { shuffle }),
                ("random", WindowMode::Random),
                ("packed", WindowMode::Packed { shuffle }),
            ],
        )?;
        let dtype = match dtype {
            None => None,
            Some("uint16") => Some(TokenDtype::U16),
            Some("uint32") => Some(TokenDtype::U32),
            Some(other) => {
                return Err(config_error(format!("dtype {other:?}: expected \"uint16\" or \"uint32\"")));
            }
        };
        let options = TokenCorpusOptions { dtype, eot, direct_io, vocab_size };
        let state = state.map(TokenState::from_json).transpose().map_err(loader_error)?;
        let loader = py
            .detach(|| {
                let corpus = Arc::new(TokenCorpus::open(&path, &options)?);
                let mut b = ringfeed::TokenLoader::builder(corpus)
                    .block_size(block_size)
                    .batch_size(batch_size)
                    .mode(mode)
                    .seed(seed)
                    .epochs(epochs);
                match (rank, world_size) {
                    (Some(r), Some(w)) => b = b.rank(r, w),
                    (None, None) => {}
                    _ => return Err(ringfeed::Error::Config("rank and world_size go together".into())),
                }
                if let Some(n) = threads {
                    b = b.threads(n);
                }
                if let Some(n) = prefetch {
                    b = b.prefetch(n);
                }
                if let Some(s) = state {
                    b = b.resume(s);
                }
                b.build()
            })
            .map_err(loader_error)?;
        Ok(TokenLoader {
            batches_per_epoch: loader.batches_per_epoch(),
            tokens: loader.state().tokens,
            inner: Mutex::new(Some(loader)),
        })
    }

    /// The next batch, or `None` after the last; the GIL is released while
    /// waiting.
    fn next_batch(&self, py: Python<'_>) -> PyResult<Option<TokenTuple>> {
        let got = py.detach(|| {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.as_mut().and_then(Iterator::next).transpose()
        });
        let Some(batch) = got.map_err(loader_error)? else { return Ok(None) };
        let shape = [batch.len(), batch.block_size];
        let x = DlPackBuffer::new(Export::from_vec(batch.x(), &shape, DlDataType::I64));
        let y = DlPackBuffer::new(Export::from_vec(batch.y(), &shape, DlDataType::I64));
        let (pos, mask, cu) = match batch.packing {
            Some(p) => {
                let cu_len = p.cu_seqlens.len();
                (
                    Some(DlPackBuffer::new(Export::from_vec(p.position_ids, &shape, DlDataType::I64))),
                    Some(DlPackBuffer::new(Export::from_vec(p.loss_mask, &shape, DlDataType::U8))),
                    Some(DlPackBuffer::new(Export::from_vec(
                        p.cu_seqlens,
                        &[cu_len],
                        DlDataType::new(0, 32),
                    ))),
                )
            }
            None => (None, None, None),
        };
        Ok(Some((batch.epoch, batch.index, x, y, batch.offsets, pos, mask, cu)))
    }

    /// The `TokenState` JSON after the last batch delivered.
    fn state(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| {
            self.inner.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|l| l.state().to_json())
        })
        .ok_or_else(|| config_error("the token loader is closed"))
    }

    /// Stops the reader threads. Idempotent.
    fn close(&self, py: Python<'_>) {
        py.detach(|| drop(self.inner.lock().unwrap_or_else(|e| e.into_inner()).take()));
    }

    #[getter]
    fn batches_per_epoch(&self) -> u64 {
        self.batches_per_epoch
    }

    #[getter]
    fn tokens(&self) -> u64 {
        self.tokens
    }
}
