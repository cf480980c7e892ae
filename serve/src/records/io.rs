//! The I/O seam of [`Records`](super::Records): one trait, three backends
//! (`ring.rs`, our own io_uring ring, the default; `uring.rs`, tokio-uring's
//! runtime on a thread; `blocking.rs`, threads doing `pread`).
//!
//! Everything above this file (lookups, coalescing, checksums, the
//! bytes-in-flight budget) is backend-agnostic; everything below it is a
//! way to read `len` bytes at `offset` of a shard file without blocking a
//! tokio worker. tokio-uring's upstream has been quiet for years and the
//! `io-uring` crate could change too, so both live behind this trait:
//! replacing one (with another io_uring crate, or glommio's reactor on a
//! thread) touches its file only, never the public API.

use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

/// Memory alignment of direct-I/O buffers: a page, which covers every
/// logical block size Linux file systems report.
pub(crate) const BUFFER_ALIGN: usize = 4096;

/// One read: exactly `len` bytes at `offset` of `file`'s shard.
#[derive(Debug)]
pub(crate) struct ReadOp {
    /// Index of the shard in the dataset (backends cache per-shard state).
    pub(crate) shard: usize,
    /// The shard file, validated by the dataset (a buffered descriptor).
    pub(crate) file: Arc<File>,
    pub(crate) offset: u64,
    pub(crate) len: usize,
    /// This read's share of the bytes-in-flight budget: released when the
    /// backend is done with the buffer, not when the caller stops
    /// waiting, so an abandoned request still counts until its read ends.
    pub(crate) permit: OwnedSemaphorePermit,
    /// Where the bytes go; a dropped receiver (a cancelled request) is fine.
    pub(crate) reply: oneshot::Sender<io::Result<Bytes>>,
}

/// A way to run [`ReadOp`]s off tokio's worker threads.
pub(crate) trait Backend: Send + Sync + Debug {
    /// Queues `op`; the result arrives on `op.reply`.
    fn submit(&self, op: ReadOp);
}

/// The aligned span `[start, end)` that covers `[offset, offset + len)`
/// for direct I/O with `align`-byte offsets (`align` a power of two).
pub(crate) fn aligned_span(offset: u64, len: usize, align: u64) -> (u64, u64) {
    let start = offset & !(align - 1);
    let end = (offset + len as u64).div_ceil(align) * align;
    (start, end)
}

/// A zeroed buffer of at least `len` bytes and the offset in it where a
/// [`BUFFER_ALIGN`]-aligned region of `len` bytes starts. Zeroed so that
/// every byte the kernel is told about is initialized whatever it writes.
pub(crate) fn aligned_buffer(len: usize) -> (Vec<u8>, usize) {
    let buf = vec![0u8; len + BUFFER_ALIGN];
    let pad = buf.as_ptr().align_offset(BUFFER_ALIGN);
    (buf, pad)
}

/// The error for a read that came back short: the file ends early, which
/// for a validated shard means it was truncated after it was opened.
pub(crate) fn short_read(want: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the file ends before the {want} bytes at this offset (truncated?)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_the_range_on_aligned_bounds() {
        assert_eq!(aligned_span(0, 1, 512), (0, 512));
        assert_eq!(aligned_span(4096, 5000, 512), (4096, 9216));
        assert_eq!(aligned_span(4100, 508, 512), (4096, 4608));
        assert_eq!(aligned_span(4100, 509, 512), (4096, 5120));
        assert_eq!(aligned_span(1023, 2, 512), (512, 1536));
        for (o, l) in [(7u64, 9000usize), (511, 1), (512, 512), (100_000, 3)] {
            let (s, e) = aligned_span(o, l, 4096);
            assert!(s <= o && e >= o + l as u64 && s % 4096 == 0 && e % 4096 == 0);
            assert!(e - s < l as u64 + 2 * 4096);
        }
    }

    #[test]
    fn buffers_have_an_aligned_region_of_the_length() {
        for len in [1, 512, 5000, 1 << 20] {
            let (buf, pad) = aligned_buffer(len);
            assert_eq!((buf.as_ptr() as usize + pad) % BUFFER_ALIGN, 0);
            assert!(pad + len <= buf.len());
        }
    }
}
