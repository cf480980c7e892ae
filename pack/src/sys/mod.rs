//! The crate's only `unsafe` code: thin wrappers over Linux system calls
//! that std does not expose. Each wrapper is safe to call.
//!
//! Public for the `ringfeed` loader, which opens, aligns and caps the same
//! shard files as the [`Dataset`](crate::Dataset) (one implementation of
//! each), and hidden from the docs: not part of the stable API, and free
//! to change with the loader.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub mod limits;

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
    // SAFETY: sync_file_range only reads its integer arguments; the fd is
    // valid for the duration of the call because `file` is borrowed.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
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
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid NUL-terminated string and `stx` a valid,
    // exclusively borrowed out-parameter, both alive for the call.
    let rc = unsafe { libc::statx(libc::AT_FDCWD, c_path.as_ptr(), 0, libc::STATX_DIOALIGN, &mut stx) };
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
        // Any answer is fine (tmpfs, old kernels); the call must not fail.
        super::dio_alignment(&path).unwrap();
    }
}
