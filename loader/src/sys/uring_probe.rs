//! Whether this process may use io_uring at all.
//!
//! Docker's default seccomp profile refuses the io_uring system calls
//! (`ENOSYS`), `kernel.io_uring_disabled` refuses them to everyone or to
//! unprivileged users (`EPERM`), and gVisor-like sandboxes may lack them.
//! glommio panics deep inside a worker thread when it cannot set up a ring,
//! (or ask which operations the kernel supports), so the loader asks
//! first, with a one-entry ring it probes the same way and closes at once.

use std::io;

/// Sets up a one-entry io_uring, asks it for the supported operations as
/// glommio does (`IORING_REGISTER_PROBE`), and closes it; the error is the
/// kernel's reason when either fails.
pub(crate) fn uring_available() -> io::Result<()> {
    const IORING_REGISTER_PROBE: libc::c_long = 8;
    const PROBE_OPS: usize = 256;
    // `struct io_uring_params` is 120 bytes of integers; all zeroes asks
    // for a default ring. The kernel writes the ring's geometry back.
    let mut params = [0u64; 15];
    // SAFETY: io_uring_setup reads and writes at most
    // sizeof(struct io_uring_params) = 120 bytes at the pointer, which
    // `params` provides, exclusively borrowed for the call; the other
    // argument is a plain integer.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // `struct io_uring_probe`: a 16-byte header, then `PROBE_OPS` 8-byte
    // entries.
    let mut probe = [0u64; 2 + PROBE_OPS];
    // SAFETY: the kernel writes at most 16 + 8 * PROBE_OPS bytes at the
    // pointer, the size of `probe`, exclusively borrowed for the call; `fd`
    // is the ring just set up.
    let rc = unsafe {
        libc::syscall(libc::SYS_io_uring_register, fd, IORING_REGISTER_PROBE, probe.as_mut_ptr(), PROBE_OPS)
    };
    let probed = if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) };
    // SAFETY: `fd` is the descriptor the kernel just returned to us, owned
    // by nothing else; closing it releases the ring.
    unsafe { libc::close(fd as libc::c_int) };
    probed
}

/// Test support: refuses io_uring to the calling process from now on, as
/// Docker's default seccomp profile does (`ENOSYS` for `io_uring_setup`,
/// `io_uring_enter` and `io_uring_register`), for every thread. Irreversible:
/// call it only in a child process made for it.
#[cfg(test)]
pub(crate) fn deny_uring_for_this_process() -> io::Result<()> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    // Offsets in `struct seccomp_data`: nr, then arch.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xc000_003e;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xc000_00b7;
    let nr = |n: libc::c_long| n as u32;
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let filter = [
        ins(LD_W_ABS, 0, 0, ARCH),
        // Another ABI (x32, i386 compat): allow, the test does not use it.
        ins(JEQ_K, 0, 5, AUDIT_ARCH),
        ins(LD_W_ABS, 0, 0, NR),
        ins(JEQ_K, 2, 0, nr(libc::SYS_io_uring_setup)),
        ins(JEQ_K, 1, 0, nr(libc::SYS_io_uring_enter)),
        ins(JEQ_K, 0, 1, nr(libc::SYS_io_uring_register)),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integers only; it is what
    // lets an unprivileged process install a filter.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `prog` points at `filter`, both alive for the call; the
    // kernel copies the program and keeps no pointer into our memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_probe_answers() {
        // Either answer is fine; the probe must return, not panic, and
        // leave no descriptor behind.
        let before = std::fs::read_dir("/proc/self/fd").unwrap().count();
        let _ = super::uring_available();
        let _ = super::uring_available();
        assert!(std::fs::read_dir("/proc/self/fd").unwrap().count() <= before + 1);
    }
}
