//! The crate's only `unsafe` code: thin wrappers over Linux system calls
//! that std does not expose, and (feature `tch`) the byte view of the
//! libtorch tensors that workers decode into. Each wrapper is safe to call.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub(crate) mod affinity;
pub(crate) mod limits;
#[cfg(feature = "tch")]
pub(crate) mod tensor;
pub(crate) mod uring_probe;

/// Opens `path` for reading only if it is a regular file: a FIFO, device
/// or directory where a dataset file should be is an error, not a read
/// that blocks forever (opening a FIFO waits for a writer, hence
/// `O_NONBLOCK`, which changes nothing for a regular file's reads).
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
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

/// Restricts the calling thread to `cpus` (`sched_setaffinity`); the
/// blocking-read workers' equivalent of glommio's placement.
pub(crate) fn pin_thread(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: `cpu_set_t` is a plain bit array; all zeroes is a valid
    // (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("no CPU {cpu} on this system")));
        }
        // SAFETY: `cpu` is below CPU_SETSIZE, the number of bits in `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; the size passed is the size of
    // `set`, which the kernel only reads.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

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

/// What `statx(STATX_DIOALIGN)` says about direct I/O on a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirectIo {
    /// Supported; offsets and lengths must be multiples of this.
    Aligned(u64),
    /// The file system does not support O_DIRECT on this file.
    Unsupported,
    /// The kernel predates `STATX_DIOALIGN` (Linux 6.1) and cannot say.
    Unknown,
}

/// Direct-I/O support and offset alignment of a file, as its file system
/// reports them through `statx(STATX_DIOALIGN)`.
pub(crate) fn dio_alignment(path: &Path) -> io::Result<DirectIo> {
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

/// Asks the kernel to back the whole pages inside the `len` bytes at `addr`
/// with transparent huge pages (`MADV_HUGEPAGE`), so that filling a large
/// fresh buffer takes a few dozen page faults instead of thousands. Only
/// advice: an error (transparent huge pages off, an old kernel, a range
/// that is not mapped) changes nothing else.
///
/// Takes an address, not a slice, so that it can be called on memory that
/// nothing has written yet, before any Rust reference to it may exist (see
/// `tensor.rs`).
#[cfg_attr(not(feature = "tch"), allow(dead_code))]
pub(crate) fn advise_huge_pages(addr: usize, len: usize) -> io::Result<()> {
    const PAGE: usize = 4096;
    let start = addr.checked_next_multiple_of(PAGE).unwrap_or(usize::MAX);
    let end = addr.saturating_add(len) / PAGE * PAGE;
    if end <= start {
        return Ok(());
    }
    // SAFETY: madvise(MADV_HUGEPAGE) neither reads nor writes the range and
    // never changes its contents, only how its pages are backed, so no
    // Rust-visible memory changes whatever the range is: one not (fully)
    // mapped fails with ENOMEM, one that cannot take the advice with
    // EINVAL. Rounding inwards to whole pages keeps the advice off the
    // neighbours of the caller's memory.
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_thread_is_pinned_to_the_cpus_given() {
        let allowed = super::affinity::allowed_cpus().unwrap();
        let last = *allowed.last().unwrap();
        let seen = std::thread::spawn(move || {
            super::pin_thread(&[last]).unwrap();
            super::affinity::allowed_cpus().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, vec![last]);
        let err = super::pin_thread(&[usize::MAX]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}
