//! [`TokenLoader`]: batches of token windows read ahead by a few threads,
//! delivered in plan order, resumable from a [`TokenState`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use super::plan::{WindowMode, WindowPlan};
use crate::{Error, Result, TokenCorpus};

/// One batch: `B` windows of `T` positions, as inputs `x` and targets `y`
/// (`x` shifted by one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    /// The epoch it belongs to.
    pub epoch: u64,
    /// Its index in the epoch (for this rank).
    pub index: u64,
    /// Where each window starts in the corpus (a packed window: its first
    /// segment).
    pub offsets: Vec<u64>,
    /// Inputs, `[B, T]` row-major.
    pub x_tokens: Vec<u32>,
    /// Targets, `[B, T]`.
    pub y_tokens: Vec<u32>,
    /// The block size `T`.
    pub block_size: usize,
    /// Packed windows ([`WindowMode::Packed`]): what a variable-length
    /// attention needs.
    pub packing: Option<Packing>,
}

/// The document structure of a batch of packed windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packing {
    /// The pieces of documents each window holds.
    pub segments: Vec<Vec<super::Segment>>,
    /// `[B, T]`: each position's index within its document piece (0 at
    /// the start of every piece and of the padding).
    pub position_ids: Vec<i64>,
    /// `[B, T]`: 1 where `y` is a target to learn, 0 on padding.
    pub loss_mask: Vec<u8>,
    /// Boundaries of every piece and padding run in the flattened batch
    /// (`B × T` positions), starting at 0 and ending at `B × T`, as
    /// variable-length attention kernels take them.
    pub cu_seqlens: Vec<i32>,
}

impl TokenBatch {
    /// Windows in the batch.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether it has no windows.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The inputs `x`, `[B, T]` row-major, as int64.
    pub fn x(&self) -> Vec<i64> {
        self.x_tokens.iter().map(|&v| i64::from(v)).collect()
    }

    /// The targets `y`, `[B, T]`, as int64.
    pub fn y(&self) -> Vec<i64> {
        self.y_tokens.iter().map(|&v| i64::from(v)).collect()
    }

    /// `(x, y)` as `[B, T]` int64 tensors (feature `tch`).
    ///
    /// # Errors
    ///
    /// [`Error::Tensor`] when libtorch refuses.
    #[cfg(feature = "tch")]
    pub fn into_tensors(self) -> Result<(tch::Tensor, tch::Tensor)> {
        let dims = [self.len() as i64, self.block_size as i64];
        let make = |v: Vec<i64>| {
            tch::Tensor::f_from_slice(&v)
                .and_then(|t| t.f_view(dims))
                .map_err(|e| Error::Tensor(format!("cannot build the token tensor: {e}")))
        };
        Ok((make(self.x())?, make(self.y())?))
    }
}

/// Where a token loader stands: a few integers (and what they mean). Its
/// JSON form is what a checkpoint stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenState {
    /// The epoch of the next batch.
    pub epoch: u64,
    /// The next batch within that epoch.
    pub batch: u64,
    /// The run's seed.
    pub seed: u64,
    /// Tokens in the corpus (a different corpus does not resume).
    pub tokens: u64,
    /// Block size.
    pub block_size: u64,
    /// Windows per batch.
    pub batch_size: u64,
    /// Window mode.
    pub mode: WindowMode,
    /// This rank.
    pub rank: u64,
    /// Ranks.
    pub world: u64,
}

impl TokenState {
    /// The state as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a state serialises")
    }

    /// A state from [`to_json`](Self::to_json)'s output.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for anything else.
    pub fn from_json(s: &str) -> Result<TokenState> {
        serde_json::from_str(s).map_err(|e| Error::Config(format!("not a token loader state: {e}")))
    }
}

/// Options of a [`TokenLoader`]; see [`TokenLoader::builder`].
#[derive(Debug, Clone)]
pub struct TokenLoaderBuilder {
    corpus: Arc<TokenCorpus>,
    block_size: u64,
    batch: u64,
    mode: WindowMode,
    seed: u64,
    epochs: u64,
    rank: u64,
    world: u64,
    threads: usize,
    prefetch: usize,
    resume: Option<TokenState>,
}

impl TokenLoaderBuilder {
    /// Tokens per window's `x` (`T`). Default: 1024.
    pub fn block_size(mut self, t: u64) -> Self {
        self.block_size = t;
        self
    }

    /// Windows per batch (`B`). Default: 12 (nanoGPT's).
    pub fn batch_size(mut self, b: u64) -> Self {
        self.batch = b;
        self
    }

    /// How windows are drawn. Default: exact epochs, globally shuffled.
    pub fn mode(mut self, mode: WindowMode) -> Self {
        self.mode = mode;
        self
    }

    /// The seed of every order and draw. Default: 0.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Epochs to deliver. Default: 1.
    pub fn epochs(mut self, n: u64) -> Self {
        self.epochs = n;
        self
    }

    /// This process's rank and the number of ranks. Default: torchrun's
    /// `RANK` and `WORLD_SIZE`, else 0 of 1.
    pub fn rank(mut self, rank: u64, world: u64) -> Self {
        self.rank = rank;
        self.world = world;
        self
    }

    /// Threads reading ahead (each has one read in flight: more threads,
    /// more reads in flight on cold storage; 8 gave 40 M tokens/s of
    /// random 1 KiB windows from a cold disk here, 32 gave 55 M). Default: 16.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// Batches read ahead of the consumer (memory: this many batches).
    /// Default: 32.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = n;
        self
    }

    /// Continue from `state` (from [`TokenLoader::state`]); its seed,
    /// corpus, sizes, mode and rank must be this loader's.
    pub fn resume(mut self, state: TokenState) -> Self {
        self.resume = Some(state);
        self
    }

    /// Checks the options and starts reading.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for bad options, a state from another run, or a
    /// corpus too short for one batch per rank.
    pub fn build(self) -> Result<TokenLoader> {
        if self.threads == 0 || self.threads > 256 || self.prefetch == 0 || self.prefetch > 4096 {
            return Err(Error::Config("threads must be 1..=256 and prefetch 1..=4096".into()));
        }
        if self.block_size > 1 << 24 || self.batch > 1 << 16 {
            return Err(Error::Config("block size at most 2^24 tokens, batch at most 65,536 windows".into()));
        }
        let mut state = TokenState {
            epoch: 0,
            batch: 0,
            seed: self.seed,
            tokens: self.corpus.len(),
            block_size: self.block_size,
            batch_size: self.batch,
            mode: self.mode,
            rank: self.rank,
            world: self.world,
        };
        // Checks the sizes against the corpus.
        let plans = Arc::new(Plans::new(&self.corpus, state.clone())?);
        let plan = plans.get(0)?;
        if let Some(r) = &self.resume {
            let same = TokenState { epoch: r.epoch, batch: r.batch, ..state.clone() };
            if *r != same {
                return Err(Error::Config(format!(
                    "the state is another run's: {} against this loader's {}",
                    r.to_json(),
                    same.to_json()
                )));
            }
            if r.batch > plan.batches() {
                return Err(Error::Config(format!(
                    "the state's batch {} is past the epoch's {}",
                    r.batch,
                    plan.batches()
                )));
            }
            state = r.clone();
        }
        TokenLoader::start(self, state, plan.batches(), plans)
    }
}

/// One batch to read: its sequence number in the run, epoch and index.
type Job = (u64, u64, u64);

/// Batches of token windows from a [`TokenCorpus`], read ahead by a few
/// threads and delivered in plan order. Batches depend only on the seed,
/// epoch, rank, world and sizes; [`state`](Self::state) after any batch
/// resumes exactly there ([`TokenLoaderBuilder::resume`]).
///
/// ```
/// use std::sync::Arc;
/// use ringfeed::{TokenCorpus, TokenCorpusOptions, TokenLoader};
///
/// # fn main() -> ringfeed::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("train.bin"); // nanoGPT's raw u16 ids
/// let ids: Vec<u8> = (0..10_000u16).flat_map(|t| t.to_le_bytes()).collect();
/// std::fs::write(&path, ids).unwrap();
/// let corpus = Arc::new(TokenCorpus::open(&path, &TokenCorpusOptions::default())?);
/// let mut loader = TokenLoader::builder(corpus.clone()).block_size(64).batch_size(4).seed(1).build()?;
/// let first = loader.next().unwrap()?;
/// assert_eq!(first.x().len(), 4 * 64);
/// assert_eq!(first.y()[0], first.x()[1]); // shifted by one
/// let state = loader.state(); // a few integers
/// let second = loader.next().unwrap()?;
/// let mut again = TokenLoader::builder(corpus).block_size(64).batch_size(4).seed(1).resume(state).build()?;
/// assert_eq!(again.next().unwrap()?, second);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct TokenLoader {
    state: TokenState,
    batches_per_epoch: u64,
    end_epoch: u64,
    done_rx: flume::Receiver<(u64, Result<TokenBatch>)>,
    ticket_tx: Option<flume::Sender<()>>,
    waiting: BTreeMap<u64, Result<TokenBatch>>,
    next_seq: u64,
    total: u64,
    failed: bool,
    threads: Vec<JoinHandle<()>>,
}

impl TokenLoader {
    /// A builder for `corpus`.
    pub fn builder(corpus: Arc<TokenCorpus>) -> TokenLoaderBuilder {
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok());
        TokenLoaderBuilder {
            corpus,
            block_size: 1024,
            batch: 12,
            mode: WindowMode::Epoch { shuffle: crate::Shuffle::Global },
            seed: 0,
            epochs: 1,
            rank: env("RANK").unwrap_or(0),
            world: env("WORLD_SIZE").unwrap_or(1),
            threads: 16,
            prefetch: 32,
            resume: None,
        }
    }

    fn start(
        b: TokenLoaderBuilder,
        state: TokenState,
        batches_per_epoch: u64,
        plans: Arc<Plans>,
    ) -> Result<TokenLoader> {
        let end_epoch = b.epochs;
        let first = state.epoch.saturating_mul(batches_per_epoch).saturating_add(state.batch);
        let total = end_epoch.saturating_mul(batches_per_epoch).saturating_sub(first);
        let (done_tx, done_rx) = flume::bounded(b.prefetch);
        // A ticket per batch in flight: the consumer returns one per batch
        // taken, so at most `prefetch` batches are held, in any order.
        let (ticket_tx, ticket_rx) = flume::bounded::<()>(b.prefetch);
        for _ in 0..b.prefetch {
            let _ = ticket_tx.send(());
        }
        let next = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for k in 0..b.threads {
            let (done_tx, ticket_rx, next) = (done_tx.clone(), ticket_rx.clone(), next.clone());
            let (corpus, plans) = (b.corpus.clone(), plans.clone());
            let spawned = std::thread::Builder::new().name(format!("rf-tokens-{k}")).spawn(move || {
                while ticket_rx.recv().is_ok() {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= total {
                        return;
                    }
                    let at = first + seq;
                    let job: Job = (seq, at / batches_per_epoch, at % batches_per_epoch);
                    let batch = read_batch(&corpus, &plans, job);
                    let failed = batch.is_err();
                    if done_tx.send((seq, batch)).is_err() || failed {
                        return;
                    }
                }
            });
            threads.push(
                spawned.map_err(|e| Error::Config(format!("cannot start a token reader thread: {e}")))?,
            );
        }
        Ok(TokenLoader {
            state,
            batches_per_epoch,
            end_epoch,
            done_rx,
            ticket_tx: Some(ticket_tx),
            waiting: BTreeMap::new(),
            next_seq: 0,
            total,
            failed: false,
            threads,
        })
    }

    /// Where the loader stands: the next batch it will deliver.
    pub fn state(&self) -> TokenState {
        self.state.clone()
    }

    /// Batches per epoch for this rank.
    pub fn batches_per_epoch(&self) -> u64 {
        self.batches_per_epoch
    }

    /// The epoch after the last one delivered.
    pub fn end_epoch(&self) -> u64 {
        self.end_epoch
    }
}

/// The plan of the epoch being read, built once for all reader threads
/// (a packed plan takes a pass over the documents).
#[derive(Debug)]
struct Plans {
    st: TokenState,
    /// Each document's start, for packed windows.
    docs: Option<Arc<Vec<u64>>>,
    /// The last two epochs' plans: around an epoch boundary, threads
    /// read batches of both.
    recent: std::sync::Mutex<Vec<(u64, Arc<WindowPlan>)>>,
}

impl Plans {
    fn new(corpus: &TokenCorpus, st: TokenState) -> Result<Plans> {
        let docs = match st.mode {
            WindowMode::Packed { .. } => Some(Arc::new(corpus.documents()?.to_vec())),
            _ => None,
        };
        Ok(Plans { st, docs, recent: std::sync::Mutex::new(Vec::new()) })
    }

    fn get(&self, epoch: u64) -> Result<Arc<WindowPlan>> {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, plan)) = recent.iter().find(|(e, _)| *e == epoch) {
            return Ok(plan.clone());
        }
        let st = &self.st;
        let plan = Arc::new(match (st.mode, &self.docs) {
            (WindowMode::Packed { shuffle }, Some(docs)) => WindowPlan::packed(
                docs.clone(),
                st.block_size,
                st.batch_size,
                shuffle,
                st.seed,
                epoch,
                st.rank,
                st.world,
            )?,
            (mode, _) => WindowPlan::new(
                st.tokens,
                st.block_size,
                st.batch_size,
                mode,
                st.seed,
                epoch,
                st.rank,
                st.world,
            )?,
        });
        if recent.len() == 2 {
            recent.remove(0);
        }
        recent.push((epoch, plan.clone()));
        Ok(plan)
    }
}

fn read_batch(corpus: &TokenCorpus, plans: &Plans, job: Job) -> Result<TokenBatch> {
    let (_, epoch, index) = job;
    let plan = plans.get(epoch)?;
    let t = plans.st.block_size as usize;
    if plan.is_packed() {
        return read_packed(corpus, plan.batch_segments(index), epoch, index, t);
    }
    let offsets = plan.batch_offsets(index);
    let w = t + 1;
    let mut tokens = vec![0u32; offsets.len() * w];
    // Windows that touch or overlap (neighbours in block or sequential
    // order) are read together: one read per run.
    let mut order: Vec<usize> = (0..offsets.len()).collect();
    order.sort_unstable_by_key(|&i| offsets[i]);
    let mut run = Vec::new();
    let mut k = 0;
    while k < order.len() {
        let start = offsets[order[k]];
        let mut end = start + w as u64;
        let mut j = k + 1;
        while j < order.len() && offsets[order[j]] <= end && offsets[order[j]] + w as u64 - start <= 1 << 22 {
            end = end.max(offsets[order[j]] + w as u64);
            j += 1;
        }
        if j == k + 1 {
            corpus.read(start, &mut tokens[order[k] * w..(order[k] + 1) * w])?;
        } else {
            run.resize((end - start) as usize, 0);
            corpus.read(start, &mut run)?;
            for &i in &order[k..j] {
                let at = (offsets[i] - start) as usize;
                tokens[i * w..(i + 1) * w].copy_from_slice(&run[at..at + w]);
            }
        }
        k = j;
    }
    let x_tokens = tokens.chunks_exact(w).flat_map(|win| win[..t].iter().copied()).collect();
    let y_tokens = tokens.chunks_exact(w).flat_map(|win| win[1..].iter().copied()).collect();
    Ok(TokenBatch { epoch, index, offsets, x_tokens, y_tokens, block_size: t, packing: None })
}

/// A batch of packed windows: each segment's tokens, position ids from 0,
/// padding (end-of-text ids, loss mask 0) after the last segment.
fn read_packed(
    corpus: &TokenCorpus,
    segments: Vec<Vec<super::Segment>>,
    epoch: u64,
    index: u64,
    t: usize,
) -> Result<TokenBatch> {
    let b = segments.len();
    let pad = corpus.eot();
    let mut x_tokens = vec![pad; b * t];
    let mut y_tokens = vec![pad; b * t];
    let mut position_ids = vec![0i64; b * t];
    let mut loss_mask = vec![0u8; b * t];
    let mut cu_seqlens = vec![0i32];
    let mut buf = Vec::new();
    for (row, window) in segments.iter().enumerate() {
        let mut at = row * t;
        for s in window {
            buf.resize(s.len as usize, 0);
            corpus.read(s.start, &mut buf)?;
            let n = buf.len() - 1;
            x_tokens[at..at + n].copy_from_slice(&buf[..n]);
            y_tokens[at..at + n].copy_from_slice(&buf[1..]);
            for (k, p) in position_ids[at..at + n].iter_mut().enumerate() {
                *p = k as i64;
            }
            loss_mask[at..at + n].fill(1);
            at += n;
            cu_seqlens.push(at as i32);
        }
        let end = (row + 1) * t;
        if at < end {
            for (k, p) in position_ids[at..end].iter_mut().enumerate() {
                *p = k as i64;
            }
            cu_seqlens.push(end as i32);
        }
    }
    let offsets = segments.iter().map(|w| w.first().map_or(0, |s| s.start)).collect();
    Ok(TokenBatch {
        epoch,
        index,
        offsets,
        x_tokens,
        y_tokens,
        block_size: t,
        packing: Some(Packing { segments, position_ids, loss_mask, cu_seqlens }),
    })
}

impl Iterator for TokenLoader {
    type Item = Result<TokenBatch>;

    fn next(&mut self) -> Option<Result<TokenBatch>> {
        if self.failed || self.next_seq >= self.total {
            return None;
        }
        let item = loop {
            if let Some(item) = self.waiting.remove(&self.next_seq) {
                break item;
            }
            match self.done_rx.recv() {
                Ok((seq, item)) => {
                    self.waiting.insert(seq, item);
                }
                Err(_) => break Err(Error::Config("the token reader threads stopped".into())),
            }
        };
        self.next_seq += 1;
        if let Some(t) = &self.ticket_tx {
            let _ = t.send(());
        }
        match &item {
            Ok(_) => {
                self.state.batch += 1;
                if self.state.batch == self.batches_per_epoch {
                    self.state = TokenState { epoch: self.state.epoch + 1, batch: 0, ..self.state.clone() };
                }
            }
            Err(_) => self.failed = true,
        }
        Some(item)
    }
}

impl Drop for TokenLoader {
    fn drop(&mut self) {
        // Readers waiting for a ticket or to hand over a batch see the
        // channels close and return.
        drop(self.ticket_tx.take());
        let (_, rx) = flume::bounded(1);
        drop(std::mem::replace(&mut self.done_rx, rx));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
