//! Real I/O errors from a block device: a dataset on an ext4 file system
//! on a loop device whose backing file is then cut short, so that reads of
//! the last shard's final blocks fail in the block layer ("attempt to
//! access beyond end of device") and reach the loader as `EIO`, through
//! io_uring with O_DIRECT and through the page cache. The loader must
//! report them naming the shard, skip the records they cost under
//! `Skip`, and never deliver a wrong batch.
//!
//! Needs root, `losetup`, `mkfs.ext4`, `mount` and `filefrag`, and a kernel
//! with loop devices; where any is missing the test says so and passes
//! without running (device-mapper's error target, the usual tool, is not
//! in this machine's kernel).

mod common;

use std::path::Path;

use common::*;
use ringfeed::{Batch, DdpConfig, Error, ErrorPolicy, IoMode, Loader};

/// Cuts `fs`'s device short at `bytes` and drops the page cache, so that
/// every read past that point fails in the block layer.
fn cut_device(fs: &LoopFs, bytes: u64) {
    std::fs::OpenOptions::new().write(true).open(&fs.image).unwrap().set_len(bytes).unwrap();
    run("losetup", &["-c", &fs.device]).unwrap();
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
}

/// Physical byte ranges of `file` on its device, from `filefrag -v`.
fn extents(file: &Path) -> Vec<(u64, u64)> {
    let out = run("filefrag", &["-v", "-b4096", file.to_str().unwrap()]).unwrap();
    out.lines()
        .filter_map(|l| {
            // " 0:        0..    1023:      34816..     35839:   1024: ..."
            let cols: Vec<&str> = l.split(':').map(str::trim).collect();
            if cols.len() < 4 || cols[0].parse::<u32>().is_err() {
                return None;
            }
            let (start, end) = cols[2].split_once("..")?;
            let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
            Some((start * 4096, (end + 1) * 4096))
        })
        .collect()
}

fn loader(dir: &Path, io: IoMode, policy: ErrorPolicy) -> Loader {
    Loader::builder(dir)
        .batch_size(32)
        .seed(5)
        .cores(2)
        // Little read-ahead, so that most reads happen after the cut.
        .prefetch(1)
        .io_mode(io)
        .on_error(policy)
        .ddp(DdpConfig::default())
        .build()
        .unwrap()
}

fn check_payloads(batches: &[Batch], recs: &[Rec]) {
    for b in batches {
        for (i, payload) in b.records().enumerate() {
            let r = &recs[b.indices[i] as usize];
            assert_eq!(&payload[..], &r.payload[..], "record {}", b.indices[i]);
        }
    }
}

#[test]
fn read_errors_from_the_device_are_reported_never_a_wrong_batch() {
    let is_root = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")));
    if !is_root {
        eprintln!("skipped: needs root for loop devices and mount");
        return;
    }
    let fs = match LoopFs::new(256 << 20) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("skipped: cannot set up a loop device here: {e}");
            return;
        }
    };
    let data = fs.mount.join("ds");
    // 600 records of 20-60 KB (~24 MB) in 4 MB shards.
    let sizes: Vec<usize> = (0..600).map(|i| 20_000 + (i * 7919) % 40_000).collect();
    let recs = records(&sizes);
    pack(&data, &recs, 4 << 20);
    let last = shard_paths(&data).pop().unwrap();
    // The device ends in the middle of the last shard's last extent: its
    // index (at the end of the file) and some records become unreadable.
    let (start, end) = *extents(&last).last().expect("filefrag lists the shard's extents");
    let cut = start + (end - start) / 2 / 4096 * 4096;
    let device_size = std::fs::metadata(&fs.image).unwrap().len();
    assert!(cut > 0 && cut < device_size, "extent {start}..{end} of a {device_size}-byte device");

    // Open first: the loader reads every shard's index when it opens the
    // dataset; the device fails afterwards, as disks do.
    let mut loaders: Vec<(IoMode, ErrorPolicy, Loader)> = Vec::new();
    for io in [IoMode::Direct, IoMode::Buffered] {
        for policy in [ErrorPolicy::Fail, ErrorPolicy::Skip] {
            loaders.push((io, policy, loader(&data, io, policy)));
        }
    }
    cut_device(&fs, cut);

    for (io, policy, l) in loaders {
        let results: Vec<ringfeed::Result<Batch>> = l.collect();
        match policy {
            ErrorPolicy::Fail => {
                let err = results
                    .iter()
                    .find_map(|r| r.as_ref().err())
                    .unwrap_or_else(|| panic!("{io:?}: the device's read errors must surface"));
                match err {
                    Error::Io { path, .. } => {
                        assert_eq!(path, &last, "{io:?}: {err}");
                        assert!(err.to_string().contains("os error 5"), "{io:?}: not EIO: {err}");
                    }
                    other => panic!("{io:?}: expected an I/O error, got {other}"),
                }
                let ok: Vec<Batch> = results.into_iter().map_while(Result::ok).collect();
                check_payloads(&ok, &recs);
            }
            _ => {
                let batches: Vec<Batch> = results.into_iter().map(Result::unwrap).collect();
                let skipped: usize = batches.iter().map(|b| b.skipped.len()).sum();
                assert!(skipped > 0, "{io:?}: records on the lost blocks must be skipped");
                assert_eq!(batches.iter().map(Batch::len).sum::<usize>() + skipped, recs.len());
                check_payloads(&batches, &recs);
            }
        }
    }
}
