//! ringfeed's system calls that std does not wrap, each behind a safe
//! function (opening only regular files, direct-I/O alignment from
//! `statx`, starting write-back, descriptor and memlock limits), and
//! [`AlignedBuf`], the aligned memory direct I/O reads into, and
//! [`Memfd`]/[`SealedMemfd`], shared memory that is sealed before other
//! processes map it.
//!
//! The bottom of ringfeed's I/O stack, shared by the storage layer
//! (`ringfeed-pack`, which re-exports it as `ringfeed_pack::sys`), the
//! loader, the server crate and the checkpoint crate, so that each of
//! these has one implementation. Only `libc`: nothing else to compile.
//! Not a stable API: it changes with the crates above it.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("f");
//! std::fs::write(&path, [0u8; 4096])?;
//! let file = ringfeed_io::open_regular(&path)?;
//! // Any answer is valid (tmpfs has no O_DIRECT; kernels before 6.1 cannot say).
//! let _ = ringfeed_io::dio_alignment_of(&file)?;
//! # Ok::<(), std::io::Error>(())
//! ```

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

mod aligned;
pub mod limits;
mod shm;

pub use crate::aligned::AlignedBuf;
pub use crate::shm::{Mapping, MappingMut, Memfd, SealedMemfd};

/// `O_DIRECT` for `OpenOptionsExt::custom_flags` (its value differs between
/// architectures), so that crates without `libc` can open files with it.
pub const O_DIRECT: i32 = libc::O_DIRECT;

/// Opens `path` for reading only if it is a regular file: a FIFO, device
/// or directory where a dataset file should be is an error, not a read
/// that blocks forever (opening a FIFO waits for a writer, hence
/// `O_NONBLOCK`, which changes nothing for a regular file's reads).
pub fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, device or directory stands where a dataset file should be)",
        ));
    }
    Ok(file)
}

/// Starts write-back of `len` bytes at `offset` of `file` without waiting
/// for it, so that a later `fsync` finds little left to do. Errors are
/// returned but harmless to ignore: `fsync` still decides durability.
pub fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // The descriptor is borrowed from `file` for the whole call.
    // SAFETY: sync_file_range only reads its integer arguments and the live fd.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Allocates the blocks of `[0, len)` of `file` and extends its size to at
/// least `len` (`fallocate`, mode 0): a full disk fails here, before
/// anything is written, and direct writes into the range then overwrite
/// allocated blocks inside the file's size, which file systems (ext4, XFS)
/// let run concurrently instead of one at a time as extending writes.
/// `Unsupported` where the file system has no `fallocate` (the caller then
/// writes without it).
pub fn preallocate(file: &File, len: u64) -> io::Result<()> {
    let Ok(len) = i64::try_from(len) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    if len == 0 {
        return Ok(());
    }
    // The descriptor is borrowed from `file` for the whole call.
    // SAFETY: fallocate only reads its integer arguments and the live fd.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) => Err(io::Error::new(io::ErrorKind::Unsupported, e)),
        _ => Err(e),
    }
}

/// Asks the kernel to back `[addr, addr + len)` with transparent huge
/// pages (`madvise(MADV_HUGEPAGE)`), rounded inwards to whole 4 KiB pages:
/// a multi-GB buffer then takes a page fault per 2 MiB instead of per
/// 4 KiB. Only advice: an error (no THP, a range not mapped) changes
/// nothing.
pub fn advise_huge_pages(addr: usize, len: usize) -> io::Result<()> {
    const PAGE: usize = 4096;
    let start = addr.checked_next_multiple_of(PAGE).unwrap_or(usize::MAX);
    let end = addr.saturating_add(len) / PAGE * PAGE;
    if end <= start {
        return Ok(());
    }
    // A range not (fully) mapped fails with ENOMEM, one that cannot take
    // the advice with EINVAL; rounding inwards to whole pages keeps the
    // advice off the neighbours of the caller's memory.
    // SAFETY: MADV_HUGEPAGE changes how pages are backed, never their contents.
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// What `statx(STATX_DIOALIGN)` says about direct I/O on a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectIo {
    /// Supported; offsets and lengths must be multiples of this.
    Aligned(u64),
    /// The file system does not support O_DIRECT on this file.
    Unsupported,
    /// The kernel predates `STATX_DIOALIGN` (Linux 6.1) and cannot say.
    Unknown,
}

/// Direct-I/O support and offset alignment of a file, as its file system
/// reports them through `statx(STATX_DIOALIGN)`.
pub fn dio_alignment(path: &Path) -> io::Result<DirectIo> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    statx_dio(libc::AT_FDCWD, &c_path, 0)
}

/// [`dio_alignment`] of an open file: the file itself, whatever its path
/// names now.
pub fn dio_alignment_of(file: &File) -> io::Result<DirectIo> {
    statx_dio(file.as_raw_fd(), c"", libc::AT_EMPTY_PATH)
}

fn statx_dio(dirfd: i32, path: &std::ffi::CStr, flags: i32) -> io::Result<DirectIo> {
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // `dirfd` is AT_FDCWD or a descriptor the caller borrows for the call.
    // SAFETY: a valid C string and an exclusively borrowed out-parameter, alive for the call.
    let rc = unsafe { libc::statx(dirfd, path.as_ptr(), flags, libc::STATX_DIOALIGN, &mut stx) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(if stx.stx_mask & libc::STATX_DIOALIGN == 0 {
        DirectIo::Unknown
    } else if stx.stx_dio_offset_align == 0 {
        DirectIo::Unsupported
    } else {
        DirectIo::Aligned(u64::from(stx.stx_dio_offset_align))
    })
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    #[test]
    fn only_regular_files_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shard");
        std::fs::write(&file, b"data").unwrap();
        assert!(super::open_regular(&file).is_ok());
        assert_eq!(super::open_regular(dir.path()).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(super::open_regular(&dir.path().join("missing")).unwrap_err().kind(), ErrorKind::NotFound);
    }

    #[test]
    fn write_back_and_alignment_answer_for_a_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        assert!(super::start_writeback(&file, 0, 8192).is_ok());
        assert_eq!(super::start_writeback(&file, u64::MAX, 1).unwrap_err().kind(), ErrorKind::InvalidInput);
        // Any answer is fine (tmpfs, old kernels); the call must not fail,
        // and by path or by descriptor it is the same file's.
        assert_eq!(super::dio_alignment(&path).unwrap(), super::dio_alignment_of(&file).unwrap());
    }

    #[test]
    fn preallocation_sizes_the_file_and_keeps_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"head").unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        match super::preallocate(&file, 1 << 20) {
            Ok(()) => {
                let meta = file.metadata().unwrap();
                assert_eq!(meta.len(), 1 << 20);
                use std::os::unix::fs::MetadataExt;
                assert!(meta.blocks() * 512 >= 1 << 20, "blocks allocated");
                let bytes = std::fs::read(&path).unwrap();
                assert_eq!(&bytes[..4], b"head");
                assert!(bytes[4..].iter().all(|&b| b == 0));
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}"),
        }
        // Never shrinks; 0 and lengths past i64 are handled.
        assert!(super::preallocate(&file, 10).is_ok());
        assert!(super::preallocate(&file, 0).is_ok());
        assert_eq!(super::preallocate(&file, u64::MAX).unwrap_err().kind(), ErrorKind::InvalidInput);
        // A read-only descriptor is an error, not a crash.
        let ro = std::fs::File::open(&path).unwrap();
        assert!(super::preallocate(&ro, 1 << 21).is_err());
    }
}
