//! The crate's only `unsafe` code: thin wrappers over Linux system calls
//! that std does not expose. Each wrapper is safe to call.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Starts write-back of `len` bytes at `offset` of `file` without waiting
/// for it, so that a later `fsync` finds little left to do. Errors are
/// returned but harmless to ignore: `fsync` still decides durability.
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: sync_file_range only reads its integer arguments; the fd is
    // valid for the duration of the call because `file` is borrowed.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}
