//! Coalescing for `get_many`: records of one shard that lie close
//! together on disk are fetched by one read, the bytes between them read
//! and dropped. On a disk, one 40 KB read costs about what one 4 KB read
//! does; on a loaded server it is also one op instead of ten.

use ringfeed_pack::RecordLocation;

/// One record of a run: where its bytes sit in the run's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    /// Position in the caller's list of indices.
    pub(crate) pos: usize,
    /// Global record index.
    pub(crate) index: u64,
    /// Index within its shard (what a corruption error names).
    pub(crate) in_shard: u64,
    /// Offset of the payload from the start of the run.
    pub(crate) at: usize,
    pub(crate) len: usize,
    pub(crate) crc32c: u32,
    pub(crate) label: i64,
}

/// One read covering one or more records of one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) shard: usize,
    pub(crate) offset: u64,
    pub(crate) len: usize,
    pub(crate) members: Vec<Member>,
}

/// Groups `wanted` (`(position, index, location)`) into runs: sorted by
/// shard and offset, a record joins the previous run when it starts at
/// most `max_gap` bytes after that run ends and the run stays within
/// `max_run` bytes. A record larger than `max_run` is a run of its own.
pub(crate) fn plan(mut wanted: Vec<(usize, u64, RecordLocation)>, max_gap: u64, max_run: u64) -> Vec<Run> {
    wanted.sort_by_key(|&(pos, _, loc)| (loc.shard, loc.offset, pos));
    let mut runs: Vec<Run> = Vec::new();
    for (pos, index, loc) in wanted {
        let len = loc.len as usize;
        if let Some(run) = runs.last_mut() {
            let end = run.offset + run.len as u64;
            let new_end = end.max(loc.offset + len as u64);
            // `loc.offset >= run.offset` by the sort, so no underflow.
            if run.shard == loc.shard
                && loc.offset <= end.saturating_add(max_gap)
                && new_end - run.offset <= max_run
            {
                run.members.push(Member {
                    pos,
                    index,
                    in_shard: loc.index_in_shard,
                    at: (loc.offset - run.offset) as usize,
                    len,
                    crc32c: loc.crc32c,
                    label: loc.label,
                });
                run.len = (new_end - run.offset) as usize;
                continue;
            }
        }
        runs.push(Run {
            shard: loc.shard,
            offset: loc.offset,
            len,
            members: vec![Member {
                pos,
                index,
                in_shard: loc.index_in_shard,
                at: 0,
                len,
                crc32c: loc.crc32c,
                label: loc.label,
            }],
        });
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(shard: usize, offset: u64, len: u32) -> RecordLocation {
        RecordLocation { shard, index_in_shard: 0, offset, len, crc32c: offset as u32, label: 0 }
    }

    #[test]
    fn neighbours_merge_and_strangers_do_not() {
        let wanted = vec![
            (0, 10, loc(0, 10_000, 100)),
            (1, 11, loc(0, 10_100, 50)),  // adjacent
            (2, 20, loc(0, 20_000, 10)),  // 9,850 bytes after: within a 10 KB gap
            (3, 30, loc(1, 10_150, 10)),  // other shard
            (4, 40, loc(0, 500_000, 10)), // far
            (5, 11, loc(0, 10_100, 50)),  // the same record again
        ];
        let runs = plan(wanted, 10_000, 1 << 20);
        assert_eq!(runs.len(), 3, "{runs:#?}");
        assert_eq!((runs[0].shard, runs[0].offset, runs[0].len), (0, 10_000, 10_010));
        let pos: Vec<usize> = runs[0].members.iter().map(|m| m.pos).collect();
        assert_eq!(pos, [0, 1, 5, 2]);
        assert_eq!(runs[0].members[3].at, 10_000);
        assert_eq!((runs[1].offset, runs[1].len), (500_000, 10));
        assert_eq!((runs[2].shard, runs[2].members[0].index), (1, 30));
    }

    #[test]
    fn runs_stop_at_the_size_cap_and_every_record_is_in_exactly_one() {
        let wanted: Vec<_> = (0..100).map(|i| (i, i as u64, loc(0, i as u64 * 1000, 1000))).collect();
        let runs = plan(wanted, 0, 10_000);
        assert_eq!(runs.len(), 10);
        assert!(runs.iter().all(|r| r.len == 10_000 && r.members.len() == 10));
        let mut seen: Vec<usize> = runs.iter().flat_map(|r| r.members.iter().map(|m| m.pos)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        // Larger than the cap: alone.
        let big = plan(vec![(0, 0, loc(0, 0, 50_000)), (1, 1, loc(0, 50_000, 1))], 0, 10_000);
        assert_eq!(big.len(), 2);
        assert_eq!(big[0].len, 50_000);
    }
}
