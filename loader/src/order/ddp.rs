//! Splitting an epoch between data-parallel ranks.
//!
//! Follows PyTorch's `DistributedSampler` exactly, so a job that switches
//! loaders sees the same per-rank sample sets:
//!
//! - `drop_last = true`: every rank gets `floor(n / world)` samples; the
//!   last `n % world` positions of the epoch order are dropped.
//! - `drop_last = false`: every rank gets `ceil(n / world)` samples; the
//!   order is padded to `ceil(n / world) * world` positions by repeating it
//!   from its start (position `k >= n` reads position `k % n`).
//! - Rank `r` takes padded positions `r, r + world, r + 2 * world, ...`
//!   (strided, not contiguous).
//!
//! Batching per rank applies the same flag: with `drop_last` a rank yields
//! `floor(samples / batch)` full batches; without it, `ceil(samples /
//! batch)` batches, the last possibly partial. Since every rank has the
//! same number of samples, every rank has the same number of batches and
//! collective operations never wait on a rank that ran out.

use crate::{Error, Result};

/// Which part of each epoch this process reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DdpConfig {
    /// This process's rank, `0..world_size`.
    pub rank: u64,
    /// Number of data-parallel processes, at least 1.
    pub world_size: u64,
    /// Drop the tail rather than pad with repeated samples (see the module
    /// docs for the semantics).
    pub drop_last: bool,
}

impl Default for DdpConfig {
    /// A single process reading everything: rank 0 of 1, no dropping.
    fn default() -> Self {
        DdpConfig { rank: 0, world_size: 1, drop_last: false }
    }
}

impl DdpConfig {
    /// Rank `rank` of `world_size`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `world_size` is 0 or `rank >= world_size`.
    pub fn new(rank: u64, world_size: u64, drop_last: bool) -> Result<Self> {
        if world_size == 0 {
            return Err(Error::Config("DDP world size must be at least 1".into()));
        }
        if rank >= world_size {
            return Err(Error::Config(format!(
                "DDP rank {rank} is out of range for world size {world_size}"
            )));
        }
        Ok(DdpConfig { rank, world_size, drop_last })
    }

    /// Reads torchrun's `RANK` and `WORLD_SIZE` environment variables
    /// (defaults 0 and 1 when unset), with `drop_last = false`; set the
    /// field afterwards to change that.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when a variable is not a non-negative integer, the
    /// world size is 0 or the rank is not below it.
    pub fn from_env() -> Result<Self> {
        let rank = env_var("RANK")?;
        let world = env_var("WORLD_SIZE")?;
        Self::from_env_values(rank.as_deref(), world.as_deref())
    }

    /// The parsing behind [`from_env`](Self::from_env), given the values of
    /// `RANK` and `WORLD_SIZE` (`None` when unset).
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_env_values(rank: Option<&str>, world_size: Option<&str>) -> Result<Self> {
        let rank = parse_var("RANK", rank, 0)?;
        let world_size = parse_var("WORLD_SIZE", world_size, 1)?;
        Self::new(rank, world_size, false)
    }

    /// Samples each rank reads from an epoch of `n` positions.
    pub fn samples_per_rank(&self, n: u64) -> u64 {
        if self.drop_last { n / self.world_size } else { n.div_ceil(self.world_size) }
    }

    /// Batches of `batch` samples each rank reads from an epoch of `n`
    /// positions; the same on every rank.
    ///
    /// # Panics
    ///
    /// If `batch == 0`.
    pub fn batches_per_rank(&self, n: u64, batch: u64) -> u64 {
        assert!(batch > 0, "batch size must be at least 1");
        let samples = self.samples_per_rank(n);
        if self.drop_last { samples / batch } else { samples.div_ceil(batch) }
    }

    /// The position in the epoch order (an argument to e.g.
    /// [`Permutation::get`](crate::Permutation::get)) of this rank's
    /// `local_index`-th sample, padding wrapped around to the start.
    ///
    /// # Panics
    ///
    /// If `local_index >= self.samples_per_rank(n)`.
    pub fn global_position(&self, n: u64, local_index: u64) -> u64 {
        assert!(
            local_index < self.samples_per_rank(n),
            "local index {local_index} out of range: rank {} has {} samples",
            self.rank,
            self.samples_per_rank(n)
        );
        // < samples_per_rank * world_size, which is < n + world_size.
        let padded = local_index * self.world_size + self.rank;
        if padded < n { padded } else { padded % n }
    }
}

/// An unsigned integer from the environment, `default` when unset.
pub(crate) fn env_u64(name: &str, default: u64) -> Result<u64> {
    parse_var(name, env_var(name)?.as_deref(), default)
}

/// Whether torchrun's `RANK` or `WORLD_SIZE` is set.
pub(crate) fn ddp_env_is_set() -> Result<bool> {
    Ok(env_var("RANK")?.is_some() || env_var("WORLD_SIZE")?.is_some())
}

fn env_var(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => {
            Err(Error::Config(format!("environment variable {name}={v:?} is not valid UTF-8")))
        }
    }
}

fn parse_var(name: &str, value: Option<&str>, default: u64) -> Result<u64> {
    match value {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| {
            Error::Config(format!("environment variable {name}={v:?} is not a non-negative integer"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_example() {
        // DistributedSampler(range(10), num_replicas=3, rank=1, shuffle=False)
        // yields [1, 4, 7, 0]; with drop_last=True, [1, 4, 7].
        let c = DdpConfig::new(1, 3, false).unwrap();
        let got: Vec<u64> = (0..c.samples_per_rank(10)).map(|i| c.global_position(10, i)).collect();
        assert_eq!(got, [1, 4, 7, 0]);
        let c = DdpConfig { drop_last: true, ..c };
        let got: Vec<u64> = (0..c.samples_per_rank(10)).map(|i| c.global_position(10, i)).collect();
        assert_eq!(got, [1, 4, 7]);
    }

    #[test]
    fn tiny_epochs_wrap_repeatedly() {
        let c = DdpConfig::new(4, 5, false).unwrap();
        assert_eq!(c.samples_per_rank(2), 1);
        assert_eq!(c.global_position(2, 0), 0);
        assert_eq!(c.samples_per_rank(0), 0);
    }
}
