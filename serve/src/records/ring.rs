//! The default backend: one thread driving an io_uring instance directly
//! (the `io-uring` crate, which tokio-uring is built on).
//!
//! Why not tokio-uring's runtime (`uring.rs`, still selectable): it hands
//! new reads to the kernel only when its thread is about to sleep, and
//! every read crosses two schedulers. Measured on the 2-core VM this
//! project runs on (`cargo bench -p ringfeed-serve --bench records`),
//! ops waited ~150 µs between `submit` and the kernel, and random 5 KB
//! gets reached ~0.55× fio's IOPS at the same queue depth. This loop
//! submits every op as soon as it is taken and sleeps only inside
//! `io_uring_enter`, woken by a completion or by a byte on a pipe that a
//! submitter writes only when the loop said it was going to sleep.
//!
//! Safety rests on one rule: an op's buffer and file live in `slots`
//! from the moment its entry is pushed until its completion is reaped,
//! and the thread does not end (nor drop `slots`) while any op is in the
//! kernel.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use bytes::Bytes;
use io_uring::{IoUring, opcode, squeue, types};
use tokio::sync::mpsc;

use super::io::{Backend, ReadOp, aligned_buffer, aligned_span, short_read};

/// Shard files the ring keeps open with O_DIRECT (beyond the dataset's).
const MAX_OPEN: usize = 64;
/// `user_data` of the wake-up pipe's read; ops use their slot index.
const WAKE: u64 = u64::MAX;

/// What the submitters and the ring thread share.
#[derive(Debug)]
struct Shared {
    /// Set by the ring thread just before it may sleep; a submitter that
    /// clears it writes to the pipe.
    sleeping: AtomicBool,
    waker: Mutex<io::PipeWriter>,
}

#[derive(Debug)]
pub(crate) struct RingBackend {
    /// `None` once dropped: the channel closes before the thread is woken.
    tx: Option<mpsc::UnboundedSender<ReadOp>>,
    shared: Arc<Shared>,
}

impl RingBackend {
    /// Creates the ring (an error when io_uring is unavailable: old
    /// kernel, seccomp, `kernel.io_uring_disabled`) and starts its thread.
    /// `direct`: the O_DIRECT offset alignment, or `None` for buffered reads.
    pub(crate) fn start(direct: Option<u64>, entries: u32) -> io::Result<RingBackend> {
        let ring = IoUring::new(entries)?;
        let (wake_rx, wake_tx) = io::pipe()?;
        let shared = Arc::new(Shared { sleeping: AtomicBool::new(false), waker: Mutex::new(wake_tx) });
        let (tx, rx) = mpsc::unbounded_channel();
        let loop_shared = shared.clone();
        thread::Builder::new()
            .name("rf-serve-ring".into())
            .spawn(move || Ring::new(ring, wake_rx, direct).run(rx, &loop_shared))?;
        Ok(RingBackend { tx: Some(tx), shared })
    }
}

impl Backend for RingBackend {
    fn submit(&self, op: ReadOp) {
        // A failed send (the thread is gone) drops the op, whose reply
        // channel then tells the caller.
        let Some(tx) = &self.tx else { return };
        if tx.send(op).is_ok() && self.shared.sleeping.swap(false, Ordering::SeqCst) {
            self.shared.wake();
        }
    }
}

impl Drop for RingBackend {
    fn drop(&mut self) {
        // Close the channel, then make sure the thread sees it: it
        // finishes the reads in flight and ends.
        drop(self.tx.take());
        self.shared.wake();
    }
}

impl Shared {
    fn wake(&self) {
        // A full pipe (65,536 unread wake-ups) already wakes the ring.
        let _ = self.waker.lock().unwrap_or_else(|e| e.into_inner()).write(&[1]);
    }
}

/// One read in the kernel.
struct Slot {
    /// The destination; its heap block must not move or be freed until
    /// the completion (a `Vec` never moves its block unless resized).
    buf: Vec<u8>,
    /// Keeps the descriptor open until the completion.
    _file: Arc<File>,
    /// The caller's bytes within `buf`.
    skip: usize,
    len: usize,
    /// Bytes the kernel must deliver for the read to be complete.
    want: usize,
    op: ReadOp,
}

struct Ring {
    ring: IoUring,
    wake: io::PipeReader,
    wake_buf: Box<[u8; 64]>,
    wake_armed: bool,
    direct: Option<u64>,
    /// Per shard: the descriptor the ring reads, and whether it is O_DIRECT.
    files: HashMap<usize, (Arc<File>, bool)>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    in_flight: usize,
}

impl Ring {
    fn new(ring: IoUring, wake: io::PipeReader, direct: Option<u64>) -> Ring {
        Ring {
            ring,
            wake,
            wake_buf: Box::new([0; 64]),
            wake_armed: false,
            direct,
            files: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            in_flight: 0,
        }
    }

    fn run(mut self, mut rx: mpsc::UnboundedReceiver<ReadOp>, shared: &Shared) {
        let mut open = true;
        loop {
            // Take every queued op and hand it to the kernel at once.
            while open {
                match rx.try_recv() {
                    Ok(op) => self.start(op),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
            }
            self.reap();
            if !open && self.in_flight == 0 {
                // The pipe read must not outlive its buffer: complete it.
                while self.wake_armed {
                    shared.wake();
                    if self.ring.submit_and_wait(1).is_err() {
                        // Cannot wait for it: leak the buffer instead.
                        std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new([0; 64])));
                        break;
                    }
                    self.reap();
                }
                break;
            }
            if open {
                // Announce the sleep, then look again: a submitter either
                // sees the flag (and writes the pipe) or its op is seen here.
                shared.sleeping.store(true, Ordering::SeqCst);
                if !rx.is_empty() {
                    shared.sleeping.store(false, Ordering::SeqCst);
                    continue;
                }
                self.arm_wake();
            }
            let waited = self.ring.submit_and_wait(1);
            shared.sleeping.store(false, Ordering::SeqCst);
            if let Err(e) = waited
                && e.raw_os_error() != Some(libc::EINTR)
                && e.raw_os_error() != Some(libc::EBUSY)
            {
                // The ring itself failed: fail what is in flight once it
                // completes, and everything after. Nothing better to do.
                log::error!("io_uring_enter failed: {e}; record reads fail from now on");
                self.fail_all(&mut rx, e);
                return;
            }
        }
    }

    /// Queues `op`'s read; errors go straight to its reply.
    fn start(&mut self, op: ReadOp) {
        let (file, direct) = match self.file(&op) {
            Ok(f) => f,
            Err(e) => {
                let _ = op.reply.send(Err(e));
                return;
            }
        };
        let (offset, span, skip) = match (direct, self.direct) {
            (true, Some(align)) => {
                let (start, end) = aligned_span(op.offset, op.len, align);
                (start, (end - start) as usize, (op.offset - start) as usize)
            }
            _ => (op.offset, op.len, 0),
        };
        let (mut buf, pad) = if direct { aligned_buffer(span) } else { (vec![0u8; span], 0) };
        let Ok(span32) = u32::try_from(span) else {
            let _ = op.reply.send(Err(io::Error::new(io::ErrorKind::InvalidInput, "read larger than 4 GiB")));
            return;
        };
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let entry = opcode::Read::new(types::Fd(file.as_raw_fd()), buf[pad..].as_mut_ptr(), span32)
            .offset(offset)
            .build()
            .user_data(index as u64);
        let len = op.len;
        self.slots[index] = Some(Slot { buf, _file: file, skip: pad + skip, len, want: skip + len, op });
        self.in_flight += 1;
        self.push(&entry);
    }

    /// Pushes an entry, submitting first when the queue is full.
    fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // Every entry pushed here points at memory that stays valid
            // until its completion is reaped: an op's buffer and file are
            // owned by its slot (removed only in `reap`), the wake-up
            // read's buffer and pipe by `self`; `run` does not return while
            // `in_flight` counts an op in the kernel or the wake-up read is
            // armed (it completes it first), and after a failure of the
            // ring `fail_all` leaks what the kernel may still write.
            // SAFETY: so the entry's buffer and descriptor outlive its use.
            let pushed = unsafe { self.ring.submission().push(entry) };
            if pushed.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                log::warn!("io_uring submit failed while the queue is full: {e}");
            }
            self.reap();
        }
    }

    /// Keeps one read pending on the wake-up pipe while the loop sleeps.
    fn arm_wake(&mut self) {
        if self.wake_armed {
            return;
        }
        let entry = opcode::Read::new(types::Fd(self.wake.as_raw_fd()), self.wake_buf.as_mut_ptr(), 64)
            .build()
            .user_data(WAKE);
        self.wake_armed = true;
        self.push(&entry);
    }

    /// Completes every reaped read.
    fn reap(&mut self) {
        let done: Vec<(u64, i32)> = self.ring.completion().map(|c| (c.user_data(), c.result())).collect();
        for (user_data, res) in done {
            if user_data == WAKE {
                self.wake_armed = false;
                continue;
            }
            let index = user_data as usize;
            let Some(slot) = self.slots.get_mut(index).and_then(Option::take) else { continue };
            self.free.push(index);
            self.in_flight -= 1;
            let Slot { buf, skip, len, want, op, .. } = slot;
            let result = match res {
                n if n >= 0 && n as usize >= want => Ok(Bytes::from(buf).slice(skip..skip + len)),
                n if n >= 0 => Err(short_read(len)),
                n => Err(io::Error::from_raw_os_error(-n)),
            };
            drop(op.permit);
            let _ = op.reply.send(result);
        }
    }

    /// The shard's descriptor for the ring: O_DIRECT when configured and
    /// the file system accepts it, opened once per shard.
    fn file(&mut self, op: &ReadOp) -> io::Result<(Arc<File>, bool)> {
        if self.direct.is_none() {
            return Ok((op.file.clone(), false));
        }
        if let Some((f, direct)) = self.files.get(&op.shard) {
            return Ok((f.clone(), *direct));
        }
        let entry = match super::uring::reopen_direct(&op.file) {
            Ok(f) => (Arc::new(f), true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (op.file.clone(), false),
            Err(e) => return Err(e),
        };
        if self.files.len() >= MAX_OPEN
            && let Some(&victim) = self.files.keys().next()
        {
            // In-flight reads hold their own `Arc`: closing waits for them.
            self.files.remove(&victim);
        }
        self.files.insert(op.shard, entry.clone());
        Ok(entry)
    }

    /// After a failure of the ring itself: every op, queued or in flight,
    /// gets the error. In-flight buffers are leaked rather than freed
    /// while the kernel may still write them.
    fn fail_all(&mut self, rx: &mut mpsc::UnboundedReceiver<ReadOp>, e: io::Error) {
        let kind = e.kind();
        for slot in self.slots.drain(..).flatten() {
            let Slot { buf, op, .. } = slot;
            std::mem::forget(buf);
            let _ = op.reply.send(Err(io::Error::new(kind, e.to_string())));
        }
        rx.close();
        while let Ok(op) = rx.try_recv() {
            let _ = op.reply.send(Err(io::Error::new(kind, e.to_string())));
        }
        // The ring, the pipe and the wake-up buffer are leaked too: the
        // kernel may still hold the pipe read.
        std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new([0; 64])));
    }
}
