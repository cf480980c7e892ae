//! Start-up decisions that depend on the machine: locked-memory budget for
//! io_uring buffers, and whether to read with direct or buffered I/O.
//!
//! glommio registers a fixed pool of I/O buffers with io_uring (pinned,
//! counted against `RLIMIT_MEMLOCK` unless the process holds
//! `CAP_IPC_LOCK`) and refuses to start below 512 KiB of memlock. We raise
//! the soft limit to the hard one, size the pool to fit, and when it cannot
//! be registered we say so and run on unregistered buffers (a few percent
//! slower, still correct).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};
use ringfeed_pack::sys::{self, DirectIo};

/// glommio's own floor: below this soft memlock limit an executor will not
/// start.
const GLOMMIO_MIN_MEMLOCK: u64 = 512 << 10;
/// I/O buffer pool per executor when memory can be locked freely.
/// Large enough for the two units each worker reads at once (2 × 64
/// records of ~110 KB) to come from registered memory.
pub(crate) const DEFAULT_IO_MEMORY: usize = 16 << 20;
/// Each executor registers its pool with three rings (main, latency, poll),
/// and the rings take locked memory of their own: measured here (2 cores,
/// 8 MiB limit), a pool of a quarter of the per-executor share registers
/// cleanly and a third does not.
const RINGS: u64 = 4;
/// Locked memory the rings themselves may take, per executor.
const RING_OVERHEAD: u64 = 512 << 10;
/// Auto mode reads through the page cache when the dataset is at most this
/// fraction of RAM (1/4).
const AUTO_BUFFERED_DIVISOR: u64 = 4;

/// How shard files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IoMode {
    /// O_DIRECT through io_uring: no page cache, no double buffering, no
    /// eviction of the training job's own memory; throughput is the
    /// device's. Best for datasets larger than RAM, or read once.
    Direct,
    /// Through the page cache: the first epoch reads from the device, later
    /// epochs from RAM, much faster, at the price of the cache's memory.
    /// Best for datasets that fit comfortably in RAM.
    Buffered,
    /// Buffered when the dataset is at most a quarter of RAM, direct
    /// otherwise (or when the file system has no O_DIRECT).
    #[default]
    Auto,
}

/// Whether the process holds `CAP_IPC_LOCK` (locks memory without limit).
pub(crate) fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim().to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Decides each executor's io_uring buffer pool size. Raises the soft
/// memlock limit; fails only where glommio could not start at all.
pub(crate) fn io_memory(cores: usize, requested: Option<usize>) -> Result<usize> {
    let want = requested.unwrap_or(DEFAULT_IO_MEMORY);
    let (soft, hard) = match ringfeed_pack::sys::limits::raise_memlock() {
        Ok(limits) => limits,
        Err(e) => {
            log::warn!("cannot raise the memlock limit: {e}");
            ringfeed_pack::sys::limits::memlock_limits().unwrap_or((u64::MAX, u64::MAX))
        }
    };
    if soft < GLOMMIO_MIN_MEMLOCK {
        return Err(Error::Config(format!(
            "the locked-memory limit is {} KiB (hard limit {} KiB); io_uring needs at least {} KiB: \
             raise it (ulimit -l, or memlock in /etc/security/limits.conf) or grant CAP_IPC_LOCK",
            soft >> 10,
            hard >> 10,
            GLOMMIO_MIN_MEMLOCK >> 10
        )));
    }
    if has_cap_ipc_lock() || soft == libc::RLIM_INFINITY {
        return Ok(want);
    }
    let cores = cores as u64;
    let budget = soft.saturating_sub(cores * RING_OVERHEAD) / (cores * RINGS);
    if budget >= want as u64 {
        return Ok(want);
    }
    if budget >= 64 << 10 {
        log::warn!(
            "memlock limit {} KiB without CAP_IPC_LOCK: registering {} KiB of io_uring buffers per core \
             instead of {} KiB",
            soft >> 10,
            budget >> 10,
            want >> 10
        );
        return Ok(budget as usize);
    }
    log::warn!(
        "memlock limit {} KiB without CAP_IPC_LOCK is too small to register io_uring buffers; \
         reads use unregistered buffers",
        soft >> 10
    );
    Ok(64 << 10)
}

/// Total RAM in bytes, from `/proc/meminfo`.
fn mem_total() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Resolves the I/O mode for a dataset of `bytes` whose first shard is
/// `probe`; returns the mode and the offset alignment direct reads must
/// respect (from `statx`).
pub(crate) fn resolve_io(mode: IoMode, bytes: u64, probe: Option<&Path>) -> Result<(IoMode, u64)> {
    let align = match probe {
        Some(p) => match sys::dio_alignment(p).map_err(|e| Error::io("statx", p, e))? {
            DirectIo::Aligned(a) => Some(a),
            DirectIo::Unsupported => None,
            // No kernel support to ask: 4 KiB is a multiple of every common
            // logical block size.
            DirectIo::Unknown => Some(4096),
        },
        None => Some(4096),
    };
    let resolved = match mode {
        IoMode::Auto => match mem_total() {
            Some(ram) if bytes <= ram / AUTO_BUFFERED_DIVISOR => IoMode::Buffered,
            _ => IoMode::Direct,
        },
        m => m,
    };
    Ok(match (resolved, align) {
        (IoMode::Direct, Some(a)) => (IoMode::Direct, a),
        (IoMode::Direct, None) => {
            log::warn!("the file system does not support O_DIRECT here; reading through the page cache");
            (IoMode::Buffered, 1)
        }
        (m, _) => (m, 1),
    })
}
