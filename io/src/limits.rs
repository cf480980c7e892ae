//! Resource limits: reading and raising `RLIMIT_NOFILE` and
//! `RLIMIT_MEMLOCK`, and how many shard files each holder may keep open
//! under the descriptor limit.
//!
//! A dataset can have thousands of shards; the readers keep a bounded
//! number of them open (least recently used closed first) so that the
//! descriptors used do not grow with the shard count. The caps are a share
//! of the soft limit, raised to the hard one first, with half the limit
//! left to the rest of the process (io_uring rings, eventfds, the training
//! job's own files and sockets).

use std::io;

/// Most shard files any one holder (the dataset, a worker) keeps open.
pub const MAX_OPEN_SHARDS: usize = 64;
/// Fewest: below this a unit spread over many shards would reopen them
/// for nearly every read.
const MIN_OPEN_SHARDS: usize = 2;

/// A resource of `getrlimit`/`setrlimit`, as libc types it.
#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

/// The limits of `resource` as `(soft, hard)`.
fn limits(resource: Resource) -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid out-parameter for the duration of the call.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Raises the soft limit of `resource` to its hard limit; returns the new
/// `(soft, hard)`.
fn raise_to_hard(resource: Resource) -> io::Result<(u64, u64)> {
    let (soft, hard) = limits(resource)?;
    if soft < hard {
        let lim = libc::rlimit { rlim_cur: hard, rlim_max: hard };
        // SAFETY: `lim` is a valid, initialised struct read by the call.
        if unsafe { libc::setrlimit(resource, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    limits(resource)
}

/// The `RLIMIT_NOFILE` limits as `(soft, hard)`.
pub fn nofile_limits() -> io::Result<(u64, u64)> {
    limits(libc::RLIMIT_NOFILE)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new
/// `(soft, hard)`.
pub fn raise_nofile() -> io::Result<(u64, u64)> {
    raise_to_hard(libc::RLIMIT_NOFILE)
}

/// The `RLIMIT_MEMLOCK` limits as `(soft, hard)` in bytes.
pub fn memlock_limits() -> io::Result<(u64, u64)> {
    limits(libc::RLIMIT_MEMLOCK)
}

/// Raises the soft `RLIMIT_MEMLOCK` to the hard limit; returns the new
/// `(soft, hard)`.
pub fn raise_memlock() -> io::Result<(u64, u64)> {
    raise_to_hard(libc::RLIMIT_MEMLOCK)
}

/// The soft descriptor limit after trying to raise it; a failure to raise
/// is logged, not fatal (the caps below shrink to fit instead).
fn soft_nofile() -> u64 {
    match raise_nofile() {
        Ok((soft, _)) => soft,
        Err(e) => {
            log::warn!("cannot raise the open-file limit: {e}");
            nofile_limits().map(|(soft, _)| soft).unwrap_or(1024)
        }
    }
}

/// Shard files a `ringfeed_pack::Dataset` keeps open: an eighth of the
/// descriptor limit, at most [`MAX_OPEN_SHARDS`].
pub fn dataset_open_shards() -> usize {
    cap(soft_nofile() / 8)
}

/// Shard files each of `workers` loader workers keeps open, and reads it
/// keeps in flight: what is left of half the descriptor limit once the
/// dataset has its share, split between the workers, a third each. A
/// worker holds at most this many idle files, plus one per read in flight
/// (a file the cap closed while a read used it stays open until the read
/// ends) and, while it opens a file, the dataset's descriptor of it.
pub fn worker_open_shards(workers: usize) -> usize {
    let soft = soft_nofile();
    cap((soft / 2).saturating_sub(soft / 8) / (3 * workers.max(1) as u64))
}

fn cap(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX).clamp(MIN_OPEN_SHARDS, MAX_OPEN_SHARDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (soft, hard) = raise_nofile().unwrap();
        assert_eq!(soft, hard);
        assert!((MIN_OPEN_SHARDS..=MAX_OPEN_SHARDS).contains(&dataset_open_shards()));
        assert!((MIN_OPEN_SHARDS..=MAX_OPEN_SHARDS).contains(&worker_open_shards(0)));
        assert_eq!(cap(u64::MAX), MAX_OPEN_SHARDS);
        assert_eq!(cap(0), MIN_OPEN_SHARDS);
    }
}
