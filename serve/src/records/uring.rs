//! The default backend: one thread running a tokio-uring runtime, fed
//! through an unbounded channel (its length is bounded by the caller's
//! bytes-in-flight budget, which every queued op holds a share of).
//!
//! Each op is a task on that runtime, so many reads are in flight at
//! once in one ring. With direct I/O each shard is reopened once with
//! `O_DIRECT` through `/proc/self/fd/N` of the dataset's validated
//! descriptor: the same inode, never a file that replaced it by name.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::rc::Rc;
use std::thread;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_uring::buf::BoundedBuf;

use super::io::{Backend, ReadOp, aligned_buffer, aligned_span, short_read};

/// Shard files the ring keeps open at once (beyond the dataset's own).
const MAX_OPEN: usize = 64;

#[derive(Debug)]
pub(crate) struct UringBackend {
    tx: mpsc::UnboundedSender<ReadOp>,
}

impl UringBackend {
    /// Starts the ring's thread; an error when io_uring is unavailable
    /// (old kernel, seccomp, `kernel.io_uring_disabled`), so the caller can
    /// fall back. `direct`: the offset alignment for O_DIRECT, or `None`
    /// for buffered reads.
    pub(crate) fn start(direct: Option<u64>, entries: u32) -> io::Result<UringBackend> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        thread::Builder::new().name("rf-serve-uring".into()).spawn(move || {
            let runtime = match tokio_uring::Runtime::new(tokio_uring::builder().entries(entries)) {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            runtime.block_on(serve(rx, direct));
        })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(UringBackend { tx }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::other("the io_uring thread stopped while starting")),
        }
    }
}

impl Backend for UringBackend {
    fn submit(&self, op: ReadOp) {
        // The thread only stops when every sender is gone, and `self` is
        // one; should it have died anyway, the dropped op's reply channel
        // tells the caller.
        let _ = self.tx.send(op);
    }
}

/// A shard file as the ring reads it.
struct RingFile {
    file: tokio_uring::fs::File,
    /// O_DIRECT offset alignment, `None` when reading through the cache.
    align: Option<u64>,
}

/// The ring thread's loop: one task per op; after the last sender is
/// gone, the reads in flight finish before the thread ends.
async fn serve(mut rx: mpsc::UnboundedReceiver<ReadOp>, direct: Option<u64>) {
    let files: RefCell<HashMap<usize, Rc<RingFile>>> = RefCell::new(HashMap::new());
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            op = rx.recv() => {
                let Some(op) = op else { break };
                // Everything queued meanwhile too, in one wake-up.
                let mut next = Some(op);
                while let Some(op) = next {
                    match ring_file(&files, &op, direct) {
                        Ok(file) => {
                            tasks.spawn_local(read(op, file));
                        }
                        Err(e) => {
                            let _ = op.reply.send(Err(e));
                        }
                    }
                    next = rx.try_recv().ok();
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// The shard's file in the ring, opened on first use.
fn ring_file(
    files: &RefCell<HashMap<usize, Rc<RingFile>>>,
    op: &ReadOp,
    direct: Option<u64>,
) -> io::Result<Rc<RingFile>> {
    if let Some(f) = files.borrow().get(&op.shard) {
        return Ok(f.clone());
    }
    let (file, align) = match direct {
        Some(align) => match reopen_direct(&op.file) {
            Ok(f) => (f, Some(align)),
            // This file system refuses O_DIRECT after all: the cache then.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (op.file.try_clone()?, None),
            Err(e) => return Err(e),
        },
        None => (op.file.try_clone()?, None),
    };
    let file = Rc::new(RingFile { file: tokio_uring::fs::File::from_std(file), align });
    let mut files = files.borrow_mut();
    if files.len() >= MAX_OPEN {
        // Any one: a file in use stays open until its reads end (the Rc).
        if let Some(&victim) = files.keys().next() {
            files.remove(&victim);
        }
    }
    files.insert(op.shard, file.clone());
    Ok(file)
}

/// A new descriptor with O_DIRECT for the same open file.
pub(super) fn reopen_direct(file: &File) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

async fn read(op: ReadOp, file: Rc<RingFile>) {
    let ReadOp { offset, len, permit, reply, .. } = op;
    let result = match file.align {
        Some(align) => {
            let (start, end) = aligned_span(offset, len, align);
            let span = (end - start) as usize;
            let (buf, pad) = aligned_buffer(span);
            let (res, slice) = file.file.read_exact_at(buf.slice(pad..pad + span), start).await;
            let skip = pad + (offset - start) as usize;
            res.map(|()| Bytes::from(slice.into_inner()).slice(skip..skip + len))
        }
        None => {
            let (res, buf) = file.file.read_exact_at(vec![0u8; len], offset).await;
            res.map(|()| Bytes::from(buf))
        }
    };
    let result =
        result.map_err(|e| if e.kind() == io::ErrorKind::UnexpectedEof { short_read(len) } else { e });
    drop(permit);
    let _ = reply.send(result);
}
