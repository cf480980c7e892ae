//! The crate's only `unsafe` code: thin wrappers over Linux system calls
//! that std does not expose. Each wrapper is safe to call. The byte view of
//! the libtorch tensors that workers decode into (feature `tch`) is
//! `ringfeed-tensor`'s.
//! The storage layer's system calls (opening regular files only, `statx`
//! alignment, write-back, resource limits) are in `ringfeed-pack`'s
//! `sys` module.

use std::io;

pub(crate) mod affinity;
pub(crate) mod uring_probe;

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
    // pid 0 is the calling thread.
    // SAFETY: the size passed is `set`'s, and the kernel only reads `set`.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
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
