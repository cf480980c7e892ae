//! [`AsyncSaver`]: a save that blocks the caller only while the tensors
//! are copied into staging memory, and writes in the background.

use std::path::Path;
use std::sync::Mutex;
use std::thread;

use ringfeed_io::AlignedBuf;

use crate::error::{Error, Result};
use crate::first_error::FirstError;
use crate::header::DATA_ALIGN;
use crate::save::{Piece, Plan, SaveOptions, Saved, Target, TensorRef};

/// Saves checkpoints in the background from staging buffers it owns.
///
/// [`save`](Self::save) copies the tensors into the staging buffers and
/// returns a [`SaveHandle`] once the copy is done; the caller may then
/// change its tensors (the next training step) while a thread writes the
/// file with the same crash-safe protocol as [`save`](crate::save) (CRC32C
/// computed by the writer, not the caller). Memory is the staging
/// capacity, fixed at construction and reused by every save: a checkpoint
/// larger than it still saves, the copy then waiting for the writer to
/// free buffers. A second save waits until the first is on disk. The
/// file's space is allocated before the copy, so a full disk is usually
/// `save`'s own error; errors met while writing arrive through the handle.
///
/// ```
/// use ringfeed_ckpt::{AsyncSaver, Checkpoint, Dtype, SaveOptions, TensorRef};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let saver = AsyncSaver::new(64 << 20, SaveOptions::default())?;
/// let mut weights = vec![1.0f32; 1 << 16];
/// let handle = saver.save(dir.path().join("step-1.safetensors"),
///     &[TensorRef::new("w", Dtype::F32, &[1 << 16], bytemuck::cast_slice(&weights))?])?;
/// weights.fill(2.0); // the copy is done: training goes on
/// let saved = handle.wait()?; // durable now
/// let back = Checkpoint::open(&saved.path)?.load()?;
/// assert_eq!(back.get("w").unwrap().as_slice::<f32>()?[0], 1.0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncSaver {
    options: SaveOptions,
    /// Free staging buffers (chunk-sized, aligned, touched once).
    free_tx: flume::Sender<AlignedBuf>,
    free_rx: flume::Receiver<AlignedBuf>,
    staging_bytes: usize,
    /// Done signal of the save in progress.
    busy: Mutex<Option<flume::Receiver<()>>>,
}

/// The result of a background save, to wait for.
#[derive(Debug)]
#[must_use = "a save's errors (a full disk) arrive through its handle"]
pub struct SaveHandle {
    rx: flume::Receiver<Result<Saved>>,
}

impl SaveHandle {
    /// Blocks until the file is durable (or the save failed).
    pub fn wait(self) -> Result<Saved> {
        self.rx
            .recv()
            .unwrap_or_else(|_| Err(Error::Config("the writer thread ended without a result".into())))
    }

    /// Awaits the result, on any async runtime.
    pub async fn wait_async(self) -> Result<Saved> {
        self.rx
            .recv_async()
            .await
            .unwrap_or_else(|_| Err(Error::Config("the writer thread ended without a result".into())))
    }

    /// Whether the save is over (its result is waiting), without waiting.
    pub fn is_done(&self) -> bool {
        !self.rx.is_empty() || self.rx.is_disconnected()
    }
}

enum Job {
    Chunk { from: u64, len: usize, buf: AlignedBuf },
}

impl AsyncSaver {
    /// A saver with `staging_bytes` of staging memory (at least one
    /// chunk; allocated and touched now, so saves copy at memory speed).
    pub fn new(staging_bytes: usize, options: SaveOptions) -> Result<AsyncSaver> {
        options.check()?;
        let chunk = options.chunk_bytes;
        let n = (staging_bytes / chunk).max(1);
        let (free_tx, free_rx) = flume::unbounded();
        for _ in 0..n {
            let mut b = AlignedBuf::zeroed(chunk, DATA_ALIGN as usize).ok_or_else(|| Error::Memory {
                what: "staging buffers".into(),
                bytes: staging_bytes as u64,
            })?;
            // Fault the pages in once, here, not during a save.
            b.fill(0);
            let _ = free_tx.send(b);
        }
        Ok(AsyncSaver { options, free_tx, free_rx, staging_bytes: n * chunk, busy: Mutex::new(None) })
    }

    /// Staging memory held.
    pub fn staging_bytes(&self) -> usize {
        self.staging_bytes
    }

    /// Copies `tensors` into staging memory and returns; the file at
    /// `path` is written in the background (see the type's docs). Waits
    /// first for a previous save to finish.
    pub fn save(&self, path: impl AsRef<Path>, tensors: &[TensorRef<'_>]) -> Result<SaveHandle> {
        self.save_with(path, tensors, &self.options)
    }

    /// [`save`](Self::save) with other options for this save (metadata
    /// that changes per step, checksums, direct I/O); their `chunk_bytes`
    /// must be the saver's (its staging buffers have that size).
    pub fn save_with(
        &self,
        path: impl AsRef<Path>,
        tensors: &[TensorRef<'_>],
        options: &SaveOptions,
    ) -> Result<SaveHandle> {
        options.check()?;
        if options.chunk_bytes != self.options.chunk_bytes {
            return Err(Error::Config(format!(
                "chunk_bytes {} differs from the saver's {}",
                options.chunk_bytes, self.options.chunk_bytes
            )));
        }
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(previous) = busy.take() {
            let _ = previous.recv(); // Err: the writer is gone, also done
        }
        let plan = Plan::new(tensors, options, path.as_ref())?;
        let target = Target::create(path.as_ref(), options.direct_io, plan.head_len + plan.data_len)?;
        let (jobs_tx, jobs_rx) = flume::unbounded::<Job>();
        let (result_tx, result_rx) = flume::bounded(1);
        let (done_tx, done_rx) = flume::bounded(1);
        let free_tx = self.free_tx.clone();
        let threads = options.threads;
        let plan = std::sync::Arc::new(plan);
        let writer_plan = plan.clone();
        let start_writer = move || {
            thread::Builder::new().name("rf-ckpt-save".into()).spawn(move || {
                let result = write_jobs(&writer_plan, target, &jobs_rx, &free_tx, threads);
                let _ = result_tx.send(result);
                let _ = done_tx.send(());
            })
        };
        // When the staging memory holds the whole checkpoint, the writer
        // starts after the copy: on few cores its CRCs and system calls
        // would otherwise slow the copy the caller waits for. Otherwise it
        // must start first, to free buffers for the rest of the copy.
        let fits = plan.data_len <= self.staging_bytes as u64;
        let mut start_writer = Some(start_writer);
        if !fits && let Some(start) = start_writer.take() {
            start().map_err(|e| Error::io("start the checkpoint writer for", path.as_ref(), e))?;
        }
        *busy = Some(done_rx);
        let chunk = self.options.chunk_bytes as u64;
        let mut from = 0u64;
        let sources = crate::save::Source::all(tensors);
        let mut copied = Ok(());
        while from < plan.data_len {
            let Ok(mut buf) = self.free_rx.recv() else { break };
            let len = match plan.copy_chunk(&sources, from, &mut buf[..chunk as usize]) {
                Ok(len) => len,
                Err(e) => {
                    let _ = self.free_tx.send(buf);
                    copied = Err(e);
                    break;
                }
            };
            if jobs_tx.send(Job::Chunk { from, len, buf }).is_err() {
                break; // the writer failed and left: its result says why
            }
            from += len as u64;
        }
        // With fewer bytes than the plan's the writer abandons the file.
        drop(jobs_tx);
        if let Some(start) = start_writer.take() {
            start().map_err(|e| Error::io("start the checkpoint writer for", path.as_ref(), e))?;
        }
        copied?;
        Ok(SaveHandle { rx: result_rx })
    }
}

/// The writer: `threads` threads write chunks as they arrive (computing
/// their CRCs), then the header goes in and the file is made durable.
fn write_jobs(
    plan: &Plan,
    target: Target,
    jobs: &flume::Receiver<Job>,
    free: &flume::Sender<AlignedBuf>,
    threads: usize,
) -> Result<Saved> {
    let pieces: Mutex<Vec<Piece>> = Mutex::new(Vec::new());
    let failed = FirstError::default();
    let written = std::sync::atomic::AtomicU64::new(0);
    thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut mine = Vec::new();
                // Ends when the caller has sent every chunk (sender dropped).
                while let Ok(Job::Chunk { from, len, mut buf }) = jobs.recv() {
                    if !failed.is_set() {
                        mine.extend(plan.crc_pieces(from, &buf[..len]));
                        match target.write_chunk(&mut buf, len, plan.head_len + from) {
                            Ok(()) => _ = written.fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed),
                            Err(e) => failed.set(e),
                        }
                    }
                    // Back to the pool whatever happened: the caller may be
                    // waiting for a buffer.
                    let _ = free.send(buf);
                }
                pieces.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
            });
        }
    });
    if let Err(e) = failed.into_result(()) {
        target.abandon();
        return Err(e);
    }
    if written.into_inner() != plan.data_len {
        // The caller's copy stopped (a tensor that could not be copied):
        // its error went to the caller; nothing half-written is kept.
        target.abandon();
        return Err(Error::Config("the save was abandoned: not every tensor could be copied".into()));
    }
    target.finish(plan, pieces.into_inner().unwrap_or_else(|e| e.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::Dtype;

    /// A caller whose copy stops early (a libtorch tensor that cannot be
    /// copied) sends fewer bytes than planned: the writer must not finish
    /// that file.
    #[test]
    fn a_writer_given_fewer_bytes_than_planned_abandons_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short.safetensors");
        let data = vec![7u8; 3 * 4096];
        let ts = [TensorRef::new("t", Dtype::U8, &[3 * 4096], &data).unwrap()];
        let options = SaveOptions::default().chunk_bytes(4096);
        let plan = Plan::new(&ts, &options, &path).unwrap();
        let target = Target::create(&path, true, plan.head_len + plan.data_len).unwrap();
        let (jobs_tx, jobs_rx) = flume::unbounded();
        let (free_tx, free_rx) = flume::unbounded();
        let sources = crate::save::Source::all(&ts);
        let mut buf = AlignedBuf::zeroed(4096, 4096).unwrap();
        let len = plan.copy_chunk(&sources, 0, &mut buf).unwrap();
        jobs_tx.send(Job::Chunk { from: 0, len, buf }).unwrap();
        drop(jobs_tx); // two chunks never come
        let e = write_jobs(&plan, target, &jobs_rx, &free_tx, 2).unwrap_err();
        assert!(e.to_string().contains("abandoned"), "{e}");
        assert_eq!(free_rx.len(), 1, "the buffer went back to the pool");
        assert!(!path.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "no temporary file left: {left:?}");
    }
}
