//! The replace policy: a corrupt record's place in its batch goes to
//! another record, so the batch keeps its shape. The stand-in is the first
//! usable one of a sequence of candidates drawn from (seed, epoch, corrupt
//! index, attempt): the same run, on any number of cores, picks the same
//! stand-ins, and the digest stays reproducible.

use std::cell::RefCell;

use super::images::{decode_one, slot_bytes};
use super::worker::{Pending, WorkerSpec};
use crate::order::{TAG_REPLACE, hash_words};
use crate::{Error, Result};
use ringfeed_pack::Record;

/// Candidates tried per corrupt record before giving up.
const ATTEMPTS: u64 = 16;

/// A record standing in for a corrupt one.
#[derive(Debug)]
pub(crate) struct Substitute {
    /// Position in the batch.
    pub(crate) pos: usize,
    /// The stand-in, payload included.
    pub(crate) record: Record,
}

/// Candidate `attempt` to stand in for record `index` of a dataset of
/// `records` (never `index` itself when there is another record).
pub(crate) fn candidate(seed: u64, epoch: u64, index: u64, attempt: u64, records: u64) -> u64 {
    let c = hash_words(TAG_REPLACE, &[seed, epoch, index, attempt]) % records;
    if c == index && records > 1 { (c + 1) % records } else { c }
}

/// Finds stand-ins for the positions in `p.bad` (reading each candidate
/// synchronously, with its checksum checked, and decoding it into the
/// position's image slot with the stand-in's own per-sample randomness when
/// the loader has a pipeline), then clears `p.bad`.
pub(crate) fn fill(
    s: &WorkerSpec,
    pipe: Option<&RefCell<ringfeed_decode::Pipeline>>,
    epoch: u64,
    p: &mut Pending,
) -> Result<()> {
    let records = s.dataset.len();
    for pos in std::mem::take(&mut p.bad) {
        let corrupt = p.indices[pos];
        let mut found = None;
        for attempt in 0..ATTEMPTS {
            let index = candidate(s.seed, epoch, corrupt, attempt, records);
            let record = match s.dataset.record(index) {
                Ok(r) => r,
                Err(e) => {
                    s.metrics.corrupt(|| format!("record {index} (replacing {corrupt}): {e}"));
                    continue;
                }
            };
            if let (Some(pipe), Some(images)) = (pipe, p.images.as_mut()) {
                let slot = slot_bytes(&pipe.borrow());
                let out = &mut images.bytes_mut()[pos * slot..(pos + 1) * slot];
                if !decode_one(s, pipe, epoch, index, &record.payload, out)? {
                    continue;
                }
            }
            found = Some(record);
            break;
        }
        let Some(record) = found else {
            let loc = s.dataset.locate(corrupt)?;
            return Err(Error::corrupt_record(
                s.dataset.shards()[loc.shard].path(),
                loc.offset,
                loc.index_in_shard,
                format!(
                    "record {corrupt} is corrupt and none of {ATTEMPTS} candidates to replace it was usable"
                ),
            ));
        };
        s.metrics.replaced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        p.substitutes.push(Substitute { pos, record });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_deterministic_spread_and_never_the_record_itself() {
        let draws: Vec<u64> = (0..64).map(|a| candidate(7, 2, 10, a, 100)).collect();
        assert_eq!(draws, (0..64).map(|a| candidate(7, 2, 10, a, 100)).collect::<Vec<_>>());
        assert!(draws.iter().all(|&c| c < 100 && c != 10));
        let distinct: std::collections::HashSet<_> = draws.iter().collect();
        assert!(distinct.len() > 32, "{distinct:?}");
        assert_ne!(candidate(7, 2, 10, 0, 100), candidate(7, 3, 10, 0, 100));
        assert_eq!(candidate(7, 2, 0, 0, 1), 0);
    }
}
