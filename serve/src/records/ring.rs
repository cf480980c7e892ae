//! The default backend: an io_uring instance driven directly (the
//! `io-uring` crate, which tokio-uring is built on). A read is handed to
//! the kernel by the thread that asks for it; one thread of ours waits
//! for completions and answers the callers.
//!
//! Why submit from the caller's thread: with submissions also travelling
//! to our thread through a channel, every read crossed two threads, and
//! on the 2-core VM this project runs on a wake-up of an idle vCPU costs
//! tens of microseconds: of 32 requests in flight only ~20 were in the
//! device at a time, and random 5 KB gets reached ~0.62× fio's IOPS
//! (`cargo bench -p ringfeed-serve --bench records`). Submitting is an
//! `io_uring_enter` that does not wait (a direct read the kernel cannot
//! start at once goes to its own workers), so it is fine on a tokio
//! worker. Why not tokio-uring's runtime (`uring.rs`, still selectable):
//! it hands new reads to the kernel only when its thread is about to
//! sleep, and every read crosses two schedulers.
//!
//! Safety rests on one rule: an op's buffer and file live in its slot
//! from the moment its entry is pushed until its completion is reaped,
//! and the ring and the slots are dropped together, and only when no op
//! is in the kernel (otherwise both are leaked).

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use io_uring::{IoUring, opcode, squeue, types};

use super::io::{Backend, ReadOp, aligned_buffer, aligned_span, short_read};

/// Shard files the ring keeps open with O_DIRECT (beyond the dataset's).
const MAX_OPEN: usize = 64;
/// `user_data` of the no-op that wakes the completion thread at shutdown;
/// ops use their slot index.
const WAKE: u64 = u64::MAX;
/// The longest the completion thread waits before it looks again: an
/// entry a caller pushed but could not hand to the kernel (a transient
/// `io_uring_enter` error) is submitted by the thread within this time.
const TICK: Duration = Duration::from_millis(50);

pub(crate) struct RingBackend {
    shared: Arc<Shared>,
}

/// The ring and everything its entries point at, shared by the callers
/// (who push entries) and the completion thread (who reaps them).
struct Shared {
    /// `None` only while being dropped.
    ring: Option<IoUring>,
    /// The offset alignment for O_DIRECT, `None` for buffered reads.
    direct: Option<u64>,
    /// Held to push entries (only ever one submission queue view at a
    /// time) and to take or give slots.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Per shard: the descriptor the ring reads, and whether it is O_DIRECT.
    files: HashMap<usize, (Arc<File>, bool)>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// Ops whose entry was pushed and whose completion is not reaped.
    in_flight: usize,
    /// Set when the last handle is dropped: the thread ends once nothing
    /// is in flight.
    closing: bool,
    /// Set when the ring itself failed: ops fail at once from then on.
    failed: Option<(io::ErrorKind, String)>,
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

impl fmt::Debug for RingBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingBackend").field("direct", &self.shared.direct).finish_non_exhaustive()
    }
}

impl RingBackend {
    /// Creates the ring (an error when io_uring is unavailable: old
    /// kernel, seccomp, `kernel.io_uring_disabled`) and starts its
    /// completion thread. `direct`: the O_DIRECT offset alignment, or
    /// `None` for buffered reads.
    pub(crate) fn start(direct: Option<u64>, entries: u32) -> io::Result<RingBackend> {
        let ring = IoUring::new(entries)?;
        let shared = Arc::new(Shared { ring: Some(ring), direct, state: Mutex::new(State::default()) });
        let reaper = shared.clone();
        thread::Builder::new().name("rf-serve-ring".into()).spawn(move || reaper.complete())?;
        Ok(RingBackend { shared })
    }
}

impl Backend for RingBackend {
    fn submit(&self, op: ReadOp) {
        let shared = &self.shared;
        let mut state = shared.lock();
        if let Some((kind, msg)) = &state.failed {
            let _ = op.reply.send(Err(io::Error::new(*kind, msg.clone())));
            return;
        }
        let Some((index, entry)) = state.start(op, shared.direct) else { return };
        if let Err(e) = shared.push(&mut state, &entry) {
            // Never reached the queue: the slot is the caller's again.
            if let Some(slot) = state.slots[index].take() {
                state.free.push(index);
                state.in_flight -= 1;
                let _ = slot.op.reply.send(Err(e));
            }
            return;
        }
        drop(state);
        if let Err(e) = shared.ring().submitter().submit() {
            // The entry stays queued; the completion thread submits it.
            log::debug!("io_uring submit from the caller failed ({e}); left to the completion thread");
        }
    }
}

impl Drop for RingBackend {
    fn drop(&mut self) {
        // The thread finishes the reads in flight, then ends; the no-op
        // wakes it if nothing is in flight (else `TICK` does).
        let shared = &self.shared;
        let mut state = shared.lock();
        state.closing = true;
        let nop = opcode::Nop::new().build().user_data(WAKE);
        let pushed = state.failed.is_none() && shared.push(&mut state, &nop).is_ok();
        drop(state);
        if pushed {
            let _ = shared.ring().submitter().submit();
        }
    }
}

impl Shared {
    fn ring(&self) -> &IoUring {
        self.ring.as_ref().expect("the ring is only taken in drop")
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under the lock leaves the state half-changed on a panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pushes an entry (the caller holds the state lock), submitting once
    /// to make room when the queue is full.
    fn push(&self, _state: &mut MutexGuard<'_, State>, entry: &squeue::Entry) -> io::Result<()> {
        for _ in 0..2 {
            // Views of the submission queue are made only here, under the
            // state lock (`_state` proves it is held): this is the only one.
            // The entry points at a buffer and a descriptor owned by its slot
            // (or at nothing, for the no-op); a slot is emptied only when its
            // completion is reaped, and `Shared::drop` leaks the ring and
            // every slot while any op is still in the kernel.
            // SAFETY: one queue view at a time; the entry's memory outlives the read.
            let pushed = unsafe { self.ring().submission_shared().push(entry) };
            if pushed.is_ok() {
                return Ok(());
            }
            self.ring().submitter().submit()?;
        }
        Err(io::Error::new(io::ErrorKind::WouldBlock, "the io_uring submission queue stays full"))
    }

    /// The completion thread: reaps, answers, submits what callers could
    /// not, and ends once closed with nothing in flight.
    fn complete(self: Arc<Shared>) {
        let ring = self.ring();
        let timeout = types::Timespec::from(TICK);
        let args = types::SubmitArgs::new().timespec(&timeout);
        let can_time_out = ring.params().is_feature_ext_arg();
        let mut done = Vec::new();
        loop {
            let waited = if can_time_out {
                ring.submitter().submit_with_args(1, &args)
            } else {
                ring.submitter().submit_and_wait(1)
            };
            if let Err(e) = waited
                && !matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN))
            {
                log::error!("io_uring_enter failed: {e}; record reads fail from now on");
                self.fail_all(e);
                return;
            }
            let finished = {
                let mut state = self.lock();
                // SAFETY: only this thread makes completion-queue views, one at a time.
                let completions = unsafe { ring.completion_shared() };
                for c in completions {
                    if c.user_data() != WAKE
                        && let Some(answer) = state.reap(c.user_data() as usize, c.result())
                    {
                        done.push(answer);
                    }
                }
                state.closing && state.in_flight == 0
            };
            // Answer outside the lock: waking a caller takes time.
            for (op, result) in done.drain(..) {
                drop(op.permit);
                let _ = op.reply.send(result);
            }
            if finished {
                return;
            }
        }
    }

    /// After a failure of the ring itself: every op in flight gets the
    /// error, and so does every later one. Buffers the kernel may still
    /// write are leaked (`Shared::drop` leaks the ring too).
    fn fail_all(&self, e: io::Error) {
        let mut state = self.lock();
        state.failed = Some((e.kind(), e.to_string()));
        let slots: Vec<Slot> = state.slots.iter_mut().filter_map(Option::take).collect();
        drop(state);
        for Slot { buf, op, .. } in slots {
            std::mem::forget(buf);
            let _ = op.reply.send(Err(io::Error::new(e.kind(), e.to_string())));
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if state.in_flight > 0 || state.failed.is_some() {
            // The kernel may still write into buffers or read the rings:
            // keep all of it alive for the life of the process.
            std::mem::forget(self.ring.take());
            std::mem::forget(std::mem::take(&mut state.slots));
        }
    }
}

impl State {
    /// Fills a slot for `op` and returns its entry; errors go straight to
    /// the op's reply.
    fn start(&mut self, op: ReadOp, align: Option<u64>) -> Option<(usize, squeue::Entry)> {
        let (file, direct) = match self.file(&op, align) {
            Ok(f) => f,
            Err(e) => {
                let _ = op.reply.send(Err(e));
                return None;
            }
        };
        let (offset, span, skip) = match (direct, align) {
            (true, Some(align)) => {
                let (start, end) = aligned_span(op.offset, op.len, align);
                (start, (end - start) as usize, (op.offset - start) as usize)
            }
            _ => (op.offset, op.len, 0),
        };
        let Ok(span32) = u32::try_from(span) else {
            let _ = op.reply.send(Err(io::Error::new(io::ErrorKind::InvalidInput, "read larger than 4 GiB")));
            return None;
        };
        let (mut buf, pad) = if direct { aligned_buffer(span) } else { (vec![0u8; span], 0) };
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
        Some((index, entry))
    }

    /// Empties the slot of a reaped completion: its op and result.
    fn reap(&mut self, index: usize, res: i32) -> Option<(ReadOp, io::Result<Bytes>)> {
        let slot = self.slots.get_mut(index).and_then(Option::take)?;
        self.free.push(index);
        self.in_flight -= 1;
        let Slot { buf, skip, len, want, op, .. } = slot;
        let result = match res {
            n if n >= 0 && n as usize >= want => Ok(Bytes::from(buf).slice(skip..skip + len)),
            n if n >= 0 => Err(short_read(len)),
            n => Err(io::Error::from_raw_os_error(-n)),
        };
        Some((op, result))
    }

    /// The shard's descriptor for the ring: O_DIRECT when configured and
    /// the file system accepts it, opened once per shard.
    fn file(&mut self, op: &ReadOp, align: Option<u64>) -> io::Result<(Arc<File>, bool)> {
        if align.is_none() {
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
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tokio::sync::{Semaphore, oneshot};

    use super::*;

    /// A ring of two entries fed by four threads at once: the submission
    /// queue fills (callers submit to make room) and completions overflow
    /// the completion queue, yet every read returns its own bytes, and the
    /// ring's thread ends once the backend is gone.
    #[test]
    fn a_tiny_ring_under_many_submitters_returns_every_read() {
        let mut tmp = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        tmp.write_all(&data).unwrap();
        let file = Arc::new(tmp);
        let budget = Arc::new(Semaphore::new(1 << 30));
        let backend = Arc::new(RingBackend::start(None, 2).unwrap());
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let (backend, file, budget) = (backend.clone(), file.clone(), budget.clone());
                thread::spawn(move || {
                    let mut pending = Vec::new();
                    for i in 0..200u64 {
                        let offset = (t * 200 + i) * 1_237 % 990_000;
                        let len = 1 + (i as usize * 31) % 9_000;
                        let (reply, rx) = oneshot::channel();
                        let permit = budget.clone().try_acquire_many_owned(len as u32).unwrap();
                        backend.submit(ReadOp { shard: 0, file: file.clone(), offset, len, permit, reply });
                        pending.push((offset as usize, len, rx));
                    }
                    for (offset, len, rx) in pending {
                        let got = rx.blocking_recv().expect("an answer").expect("the read");
                        assert_eq!(got.len(), len);
                        assert!(got[..] == data_at(offset, len), "bytes at {offset}+{len}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(budget.available_permits(), 1 << 30, "every read gave its budget back");
        let shared = Arc::downgrade(&backend.shared);
        drop(backend);
        // The completion thread holds the last reference until it ends.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while shared.strong_count() > 0 {
            assert!(std::time::Instant::now() < deadline, "the completion thread did not end");
            thread::yield_now();
        }
    }

    fn data_at(offset: usize, len: usize) -> Vec<u8> {
        (offset..offset + len).map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8).collect()
    }
}
