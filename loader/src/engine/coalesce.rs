//! Turning a unit's record reads into few, aligned requests.
//!
//! Records are sorted by (shard, offset); neighbours whose aligned spans
//! touch, overlap or lie within `max_gap` of each other are read with one
//! request, up to `max_merge` bytes. With direct I/O every request must
//! start and end on the file system's alignment (from `statx`), so two
//! records sharing a sector are one request by necessity; merging further
//! trades a little read amplification for far fewer requests, which is what
//! small records (text, tokens) need.

/// A record to read: where it is and which slot it fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Want {
    pub(crate) slot: usize,
    pub(crate) shard: usize,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// One read request and the records it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) shard: usize,
    /// Aligned start of the request.
    pub(crate) start: u64,
    /// Aligned end (exclusive).
    pub(crate) end: u64,
    pub(crate) members: Vec<Want>,
}

impl Run {
    pub(crate) fn len(&self) -> u64 {
        self.end - self.start
    }
}

fn down(x: u64, a: u64) -> u64 {
    x - x % a
}

fn up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// Groups `wants` into runs. `align(shard)` is the offset alignment of a
/// shard's reads (1 for buffered I/O).
pub(crate) fn coalesce(
    mut wants: Vec<Want>,
    align: impl Fn(usize) -> u64,
    max_merge: u64,
    max_gap: u64,
) -> Vec<Run> {
    wants.sort_by_key(|w| (w.shard, w.offset, w.slot));
    let mut runs: Vec<Run> = Vec::new();
    for w in wants {
        let a = align(w.shard).max(1);
        let (start, end) = (down(w.offset, a), up(w.offset + w.len, a).max(down(w.offset, a)));
        if let Some(run) = runs.last_mut()
            && run.shard == w.shard
            && start <= run.end + max_gap
            && end.max(run.end) - run.start <= max_merge
        {
            run.end = run.end.max(end);
            run.members.push(w);
            continue;
        }
        runs.push(Run { shard: w.shard, start, end, members: vec![w] });
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(slot: usize, shard: usize, offset: u64, len: u64) -> Want {
        Want { slot, shard, offset, len }
    }

    #[test]
    fn neighbours_merge_and_strangers_do_not() {
        let runs = coalesce(
            vec![want(0, 0, 5000, 100), want(1, 0, 4096, 900), want(2, 1, 4096, 10), want(3, 0, 900_000, 10)],
            |_| 512,
            1 << 20,
            0,
        );
        assert_eq!(runs.len(), 3);
        assert_eq!((runs[0].start, runs[0].end), (4096, 5120));
        assert_eq!(runs[0].members.iter().map(|m| m.slot).collect::<Vec<_>>(), [1, 0]);
        assert_eq!((runs[1].shard, runs[1].start, runs[1].end), (0, 899_584, 900_096));
        assert_eq!(runs[2].shard, 1);
    }

    #[test]
    fn merge_size_and_gap_are_bounded() {
        let wants: Vec<Want> = (0..10).map(|i| want(i, 0, 4096 + i as u64 * 1000, 1000)).collect();
        let runs = coalesce(wants.clone(), |_| 512, 4096, 0);
        assert!(runs.iter().all(|r| r.len() <= 4096 || r.members.len() == 1));
        assert_eq!(runs.iter().map(|r| r.members.len()).sum::<usize>(), 10);
        let spaced: Vec<Want> = (0..4).map(|i| want(i, 0, i as u64 * 10_000, 100)).collect();
        assert_eq!(coalesce(spaced.clone(), |_| 512, 1 << 20, 0).len(), 4);
        assert_eq!(coalesce(spaced, |_| 512, 1 << 20, 10_000).len(), 1);
    }

    #[test]
    fn every_member_lies_inside_its_aligned_run() {
        let wants: Vec<Want> = (0..200)
            .map(|i| want(i, i % 3, (i as u64 * 7919) % 100_000 + 4096, (i as u64 * 31) % 3000))
            .collect();
        for align in [1, 512, 4096] {
            let runs = coalesce(wants.clone(), |_| align, 64 << 10, 8192);
            assert_eq!(runs.iter().map(|r| r.members.len()).sum::<usize>(), 200);
            for r in &runs {
                assert_eq!(r.start % align, 0);
                assert_eq!(r.end % align, 0);
                for m in &r.members {
                    assert_eq!(m.shard, r.shard);
                    assert!(m.offset >= r.start && m.offset + m.len <= r.end, "{m:?} outside {r:?}");
                }
            }
        }
    }
}
