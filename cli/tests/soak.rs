//! Long runs: 20 epochs per rank, for world sizes 1, 2 and 3 run as
//! separate processes. Every epoch must deliver exactly the rank's records
//! (`bench --check-coverage`), and resident memory and open file
//! descriptors must stay flat across epochs.

use std::path::Path;
use std::process::{Child, Command, Stdio};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringfeed")
}

/// 3,000 small files in three classes, packed into several shards.
fn dataset(root: &Path) -> std::path::PathBuf {
    let src = root.join("src");
    for i in 0..3000u32 {
        let dir = src.join(format!("c{}", i % 3));
        std::fs::create_dir_all(&dir).unwrap();
        let body: Vec<u8> = (0..(500 + i * 131 % 3500)).map(|b| (b ^ i) as u8).collect();
        std::fs::write(dir.join(format!("{i:05}.bin")), body).unwrap();
    }
    let ds = root.join("ds");
    let o =
        Command::new(bin()).args(["pack", "-q", "--shard-size", "1M"]).arg(&src).arg(&ds).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ds
}

fn spawn(ds: &Path, rank: u64, world: u64) -> Child {
    let cores = if world == 1 { "2" } else { "1" };
    // Under `timeout`: a stalled rank fails its test (exit 124) instead of
    // hanging the run.
    Command::new("timeout")
        .args([
            "300",
            bin(),
            "bench",
            ds.to_str().unwrap(),
            "--json",
            "--check-coverage",
            "--epochs",
            "20",
            "--batch",
            "32",
        ])
        .args(["--cores", cores, "--rank", &rank.to_string(), "--world", &world.to_string()])
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("LOCAL_RANK")
        .env_remove("LOCAL_WORLD_SIZE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn twenty_epochs_cover_every_record_with_flat_memory_and_descriptors() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ds = dataset(dir.path());
    for world in 1..=3u64 {
        let children: Vec<Child> = (0..world).map(|rank| spawn(&ds, rank, world)).collect();
        let mut total = 0;
        for (rank, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "world {world} rank {rank}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(j["coverage_checked"], true);
            let samples = j["samples"].as_u64().unwrap();
            total += samples;
            let fds: Vec<u64> =
                j["epoch_fds"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            assert_eq!(fds.len(), 20);
            // Flat while streaming (the last sample comes after the workers
            // finished). Once the loader is dropped every descriptor it
            // opened is closed: shards, io_uring rings and eventfds.
            assert!(fds[..19].iter().all(|&f| f == fds[0]), "world {world} rank {rank}: descriptors {fds:?}");
            let (before, after) = (j["fds_before"].as_u64().unwrap(), j["fds_after"].as_u64().unwrap());
            assert_eq!(after, before, "world {world} rank {rank}: descriptors before and after the loader");
            let rss: Vec<f64> =
                j["epoch_rss_mb"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            // After the first epoch (buffers and pools warming up), every
            // epoch boundary's resident memory is within 5% of the median
            // (the last sample, after the workers finished, is lower).
            let mut settled = rss[1..19].to_vec();
            settled.sort_by(f64::total_cmp);
            let median = settled[settled.len() / 2];
            assert!(
                rss[1..19].iter().all(|r| (r - median).abs() <= 0.05 * median),
                "world {world} rank {rank}: RSS {rss:?} MB"
            );
        }
        // DistributedSampler pads to equal shares: 3,000 rounded up to the world.
        assert_eq!(total, 20 * 3000u64.div_ceil(world) * world, "world {world}");
    }
}

/// Regression test for the scheduler patch in the vendored glommio
/// (`vendor/glommio/PATCHED.md`): with ringfeed's 5 ms preemption timer the
/// unpatched executor could park with runnable tasks, and a worker stalled
/// forever once its consumer had taken the batch it waited on. The
/// workload that showed it is the 3-rank run above (three single-core
/// ranks on two CPUs, consumers on other threads), which the old code
/// stalled in about 40% of rounds: eight rounds catch it with probability
/// ~0.98, and `timeout` turns a stall into exit 124.
#[test]
fn three_ranks_on_two_cpus_never_stall() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ds = dataset(dir.path());
    for round in 0..8 {
        let children: Vec<Child> = (0..3).map(|rank| spawn(&ds, rank, 3)).collect();
        for (rank, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}, rank {rank}: exit {:?} (124: stalled): {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
