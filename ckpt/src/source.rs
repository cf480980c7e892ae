//! Reading a checkpoint file: direct I/O where the file system allows it,
//! large aligned reads, several in flight.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ringfeed_io::{AlignedBuf, DirectIo};

use crate::error::{Error, Result};
use crate::first_error::FirstError;

/// An open checkpoint file.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) path: PathBuf,
    /// Buffered descriptor: the header, and reads direct I/O cannot do.
    pub(crate) file: File,
    /// The same file opened with O_DIRECT, and its offset alignment.
    direct: Option<(File, u64)>,
    pub(crate) len: u64,
}

impl Source {
    /// Opens `path` (a regular file), with a second O_DIRECT descriptor of
    /// the same inode when `direct` and the file system supports it.
    pub(crate) fn open(path: &Path, direct: bool) -> Result<Source> {
        let file = ringfeed_io::open_regular(path).map_err(|e| Error::io("open", path, e))?;
        let len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
        let direct = if direct { open_direct(&file) } else { None };
        Ok(Source { path: path.to_path_buf(), file, direct, len })
    }

    /// The O_DIRECT alignment when reads bypass the page cache.
    pub(crate) fn direct_align(&self) -> Option<u64> {
        self.direct.as_ref().map(|(_, a)| *a)
    }

    /// Fills `dst` with the file's bytes at `offset`, `threads` reads of
    /// at most `chunk` bytes in flight. Pieces whose file offset, length
    /// and memory address are aligned go straight into `dst` with direct
    /// I/O; the others (a piece at an unaligned start, the file's tail)
    /// through a bounce buffer, or the page cache without direct I/O.
    pub(crate) fn read_into(&self, offset: u64, dst: &mut [u8], threads: usize, chunk: usize) -> Result<()> {
        if dst.is_empty() {
            return Ok(());
        }
        let align = self.direct_align().unwrap_or(4096) as usize;
        let chunk = chunk.max(align) / align * align;
        // Pieces end on multiples of `chunk` in file offsets, so every
        // inner boundary is aligned whatever `offset` is.
        let mut pieces = Vec::new();
        let mut rest = dst;
        let mut at = offset;
        while !rest.is_empty() {
            let next = ((at / chunk as u64) + 1) * chunk as u64;
            let n = ((next - at) as usize).min(rest.len());
            let (piece, tail) = rest.split_at_mut(n);
            pieces.push((at, piece));
            rest = tail;
            at += n as u64;
        }
        // Taken from the back: reversed, so reads go through the file in
        // order (a device reads ahead; backwards it cannot).
        pieces.reverse();
        let queue = Mutex::new(pieces);
        let first_error = FirstError::default();
        let workers = threads.clamp(1, 64).min(queue.lock().map_or(1, |q| q.len()));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    let mut bounce: Option<AlignedBuf> = None;
                    loop {
                        let Some((at, piece)) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
                            return;
                        };
                        if let Err(e) = self.read_piece(at, piece, align, chunk, &mut bounce) {
                            first_error.set(e);
                            queue.lock().unwrap_or_else(|e| e.into_inner()).clear();
                            return;
                        }
                    }
                });
            }
        });
        first_error.into_result(())
    }

    fn read_piece(
        &self,
        at: u64,
        piece: &mut [u8],
        align: usize,
        chunk: usize,
        bounce: &mut Option<AlignedBuf>,
    ) -> Result<()> {
        let err = |e: io::Error| Error::io("read", &self.path, e);
        let Some((direct, _)) = &self.direct else {
            return self.file.read_exact_at(piece, at).map_err(err);
        };
        let aligned = at.is_multiple_of(align as u64)
            && piece.len().is_multiple_of(align)
            && (piece.as_ptr() as usize).is_multiple_of(align);
        if aligned {
            return read_full(direct, piece, at).map_err(err);
        }
        // Unaligned: read the covering aligned span into the bounce buffer.
        let start = at / align as u64 * align as u64;
        let end = (at + piece.len() as u64).div_ceil(align as u64) * align as u64;
        let span = (end - start) as usize;
        if bounce.as_ref().is_none_or(|b| b.len() < span) {
            *bounce = Some(AlignedBuf::zeroed(span.max(chunk + align), align).ok_or_else(|| {
                Error::Memory { what: "a direct-I/O bounce buffer".into(), bytes: span as u64 }
            })?);
        }
        let buf = bounce
            .as_mut()
            .map(|b| &mut b[..span])
            .ok_or_else(|| Error::Config("no bounce buffer".into()))?;
        let got = read_upto(direct, buf, start).map_err(err)?;
        let skip = (at - start) as usize;
        if got < skip + piece.len() {
            return Err(err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ended early (truncated while read?)",
            )));
        }
        piece.copy_from_slice(&buf[skip..skip + piece.len()]);
        Ok(())
    }
}

/// A second descriptor of `file`'s inode with O_DIRECT, and its
/// alignment; `None` where direct I/O is unsupported or unknown.
fn open_direct(file: &File) -> Option<(File, u64)> {
    let align = match ringfeed_io::dio_alignment_of(file) {
        Ok(DirectIo::Aligned(a)) if a.is_power_of_two() && a <= 4096 => a,
        _ => return None,
    };
    // Through /proc/self/fd: the same inode, never a file that replaced
    // the path since it was opened.
    let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
    let direct = OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(proc).ok()?;
    Some((direct, align))
}

/// `read_exact_at` for direct I/O (where EOF inside the range is an error).
fn read_full(file: &File, buf: &mut [u8], at: u64) -> io::Result<()> {
    let got = read_upto(file, buf, at)?;
    if got < buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file ended early (truncated while read?)",
        ));
    }
    Ok(())
}

/// Reads until `buf` is full or the file ends; the bytes read.
fn read_upto(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], at + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
