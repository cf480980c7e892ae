//! `kill -9` during `ringfeed pack`, at several points: into a fresh
//! directory, what is left never opens, inspects or verifies as a dataset;
//! during a re-pack over a dataset, the old dataset still opens and
//! verifies with its old records. Rerunning the same command succeeds,
//! verifies clean and leaves no old shard.

use std::path::Path;
use std::process::{Command, Stdio};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringfeed")
}

/// `files` incompressible files of 100 KB whose bytes depend on `seed`
/// (240 of them: ~24 shards of 1 MiB).
fn source(root: &Path, name: &str, files: u32, seed: u64) -> std::path::PathBuf {
    let src = root.join(name);
    std::fs::create_dir_all(&src).unwrap();
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ seed;
    for i in 0..files {
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
    let src = source(dir.path(), "src", 240, 0);
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

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

fn verifies(dir: &Path) -> bool {
    Command::new(bin()).arg("verify").arg(dir).output().unwrap().status.success()
}

#[test]
fn kill_9_during_a_repack_keeps_the_old_dataset_and_the_rerun_replaces_it() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let old_src = source(dir.path(), "old", 120, 1);
    let new_src = source(dir.path(), "new", 200, 2);
    let mut killed_mid_pack = 0;
    for (round, new_files) in [1, 5, 12].into_iter().enumerate() {
        let out = dir.path().join(format!("out{round}"));
        assert!(pack_cmd(&old_src, &out).output().unwrap().status.success());
        let old_names = names(&out);
        let first = ringfeed::Dataset::open(&out).unwrap().record(0).unwrap().payload;
        let mut child = pack_cmd(&new_src, &out).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        // Wait until the re-pack has created `new_files` files, then kill it.
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if std::fs::read_dir(&out).map_or(0, Iterator::count) >= old_names.len() + new_files {
                break None;
            }
            std::thread::yield_now();
        };
        if finished.is_none() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            killed_mid_pack += 1;
            let ds = ringfeed::Dataset::open(&out).unwrap();
            assert_eq!(ds.len(), 120, "round {round}: the old dataset is still the dataset");
            assert_eq!(ds.record(0).unwrap().payload, first, "round {round}");
            assert!(verifies(&out), "round {round}: the old dataset no longer verifies");
        }
        let o = pack_cmd(&new_src, &out).output().unwrap();
        assert!(o.status.success(), "round {round}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(verifies(&out), "round {round}");
        let m = ringfeed::Manifest::load(&out).unwrap();
        assert_eq!(m.records, 200);
        let mut want: Vec<String> = m.shards.iter().map(|s| s.file.clone()).collect();
        want.extend([".ringfeed-pack.lock".into(), "manifest.json".into()]);
        if m.schema.keys {
            want.push(ringfeed::KEY_INDEX_FILE.into());
        }
        want.sort();
        assert_eq!(names(&out), want, "round {round}: only the new dataset's files remain");
    }
    assert!(killed_mid_pack >= 2, "the packer finished before most kill points");
}
