//! Which CPUs the workers may run on: the process's affinity mask
//! (`sched_getaffinity`), never CPUs `0..n` of the machine, and under
//! torchrun (`LOCAL_RANK`, `LOCAL_WORLD_SIZE`) this process's own share of
//! that mask, so the loaders of the processes on one node do not pile onto
//! the same cores.

use std::io;

/// The CPUs the calling thread may run on, ascending.
pub(crate) fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: `cpu_set_t` is a plain bit array; all zeroes is a valid
    // (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; the size passed is the size of
    // `set`, which the kernel writes at most.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let cpus = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the number of bits in `set`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect::<Vec<_>>();
    if cpus.is_empty() {
        return Err(io::Error::other("the affinity mask is empty"));
    }
    Ok(cpus)
}

/// Process `local_rank`'s share of `allowed` when `local_world` processes
/// split it: contiguous runs of (nearly) equal length; when there are more
/// processes than CPUs, each gets one CPU, shared round-robin.
pub(crate) fn local_share(allowed: &[usize], local_rank: usize, local_world: usize) -> Vec<usize> {
    let (n, world) = (allowed.len(), local_world.max(1));
    let rank = local_rank % world;
    if n == 0 {
        return Vec::new();
    }
    if n < world {
        return vec![allowed[rank % n]];
    }
    allowed[n * rank / world..n * (rank + 1) / world].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_is_read() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn shares_are_disjoint_and_cover_the_mask() {
        let allowed = [2, 3, 5, 7, 11];
        for world in 1..=5 {
            let shares: Vec<_> = (0..world).map(|r| local_share(&allowed, r, world)).collect();
            let all: Vec<usize> = shares.concat();
            assert_eq!(all, allowed, "world {world}: {shares:?}");
            assert!(shares.iter().all(|s| !s.is_empty()));
        }
        // More processes than CPUs: one each, round-robin.
        assert_eq!(local_share(&[4, 6], 2, 3), vec![4]);
        assert_eq!(local_share(&[4, 6], 1, 3), vec![6]);
    }
}
