//! `kill -9` during `ringfeed pack`, at several points: what is left never
//! opens, inspects or verifies as a dataset, and rerunning the same command
//! succeeds and verifies clean.

use std::path::Path;
use std::process::{Command, Stdio};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringfeed")
}

/// 240 incompressible files of 100 KB (24 MB): ~24 shards of 1 MiB.
fn source(root: &Path) -> std::path::PathBuf {
    let src = root.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..240 {
        let body: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(src.join(format!("{i:04}.bin")), body).unwrap();
    }
    src
}

fn pack_cmd(src: &Path, out: &Path) -> Command {
    let mut c = Command::new(bin());
    c.args(["pack", "-q", "--shard-size", "1M"]).arg(src).arg(out);
    c
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, Iterator::count)
}

#[test]
fn kill_9_during_pack_never_leaves_a_dataset_and_the_rerun_succeeds() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let src = source(dir.path());
    let mut killed_mid_pack = 0;
    for (round, files_seen) in [1, 4, 10, 18].into_iter().enumerate() {
        let out = dir.path().join(format!("out{round}"));
        let mut child = pack_cmd(&src, &out).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        // Wait until the packer has written `files_seen` files, then kill it.
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if entries(&out) >= files_seen {
                break None;
            }
            std::thread::yield_now();
        };
        if finished.is_none() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            killed_mid_pack += 1;
            assert!(ringfeed::Dataset::open(&out).is_err(), "round {round}: a killed pack opens");
            for cmd in ["verify", "inspect"] {
                let o = Command::new(bin()).arg(cmd).arg(&out).output().unwrap();
                assert!(!o.status.success(), "round {round}: `{cmd}` accepts a killed pack");
            }
        }
        let o = pack_cmd(&src, &out).output().unwrap();
        assert!(o.status.success(), "round {round}: {}", String::from_utf8_lossy(&o.stderr));
        let o = Command::new(bin()).arg("verify").arg(&out).output().unwrap();
        assert!(o.status.success(), "round {round}: {}", String::from_utf8_lossy(&o.stdout));
        assert_eq!(ringfeed::Dataset::open(&out).unwrap().len(), 240);
    }
    assert!(killed_mid_pack >= 2, "the packer finished before most kill points");
}
