//! Regression test for the scheduler patch in the vendored glommio
//! (`vendor/glommio/PATCHED.md`): with ringfeed's 5 ms preemption timer,
//! the unpatched executor could park with runnable tasks, and a worker
//! stalled forever once its consumer had taken the batch it waited on.
//! The workload that showed it: three single-core ranks sharing two CPUs,
//! 20 epochs each, whose consumer takes batches from another thread. The
//! old code stalled in about one such round in three, so eight rounds
//! catch it with probability ~0.96; every process runs under `timeout`,
//! so a stall fails the test instead of hanging CI.

use std::path::Path;
use std::process::{Child, Command, Stdio};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringfeed")
}

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

fn rank(ds: &Path, rank: u64) -> Child {
    Command::new("timeout")
        .args(["120", bin(), "bench", ds.to_str().unwrap(), "--json", "--check-coverage"])
        .args(["--epochs", "20", "--batch", "32", "--cores", "1", "--world", "3", "--rank"])
        .arg(rank.to_string())
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("LOCAL_RANK")
        .env_remove("LOCAL_WORLD_SIZE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn three_ranks_on_two_cpus_never_stall() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ds = dataset(dir.path());
    for round in 0..8 {
        let children: Vec<Child> = (0..3).map(|r| rank(&ds, r)).collect();
        for (r, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}, rank {r}: exit {:?} (124: stalled for 120 s): {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
