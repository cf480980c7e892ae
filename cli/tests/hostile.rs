//! Hostile use of the CLI, one table: each case is a command, its input,
//! and the exit code and message fragment it must give; none may panic,
//! hang or lose a good dataset. (Issue #13; more rows come with its other
//! items.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringfeed")
}

/// Runs the CLI under coreutils' `timeout`: a command that hangs exits
/// 124 after two minutes and fails its case instead of the whole run.
fn ringfeed(args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["120", bin()])
        .args(args)
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An ImageFolder-style tree of small files in two classes.
fn source(root: &Path, files: u32) -> PathBuf {
    let src = root.join("src");
    for i in 0..files {
        let dir = src.join(format!("c{}", i % 2));
        std::fs::create_dir_all(&dir).unwrap();
        let body: Vec<u8> = (0..(i * 53 % 3000 + 10)).map(|b| (b ^ i) as u8).collect();
        std::fs::write(dir.join(format!("{i:04}.bin")), body).unwrap();
    }
    src
}

fn verifies(ds: &Path) -> bool {
    ringfeed(&["verify", s(ds)]).status.success()
}

/// What a case starts from, in a fresh directory: `src/` (a source tree)
/// and `ds/` (a dataset packed from it).
struct Case {
    name: &'static str,
    /// Arguments, with `{src}`, `{ds}` and `{root}` replaced.
    args: &'static [&'static str],
    /// Something to do first; what it returns lives until the command ends.
    before: fn(&Path) -> Option<std::fs::File>,
    code: i32,
    message: &'static str,
}

fn nothing(_: &Path) -> Option<std::fs::File> {
    None
}

/// Holds `ds`'s pack lock as another writer (pid 4242) would.
fn lock_ds(root: &Path) -> Option<std::fs::File> {
    let path = root.join("ds/.ringfeed-pack.lock");
    std::fs::write(&path, "4242").unwrap();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    file.try_lock().unwrap();
    Some(file)
}

/// A foreign `manifest.json` in an otherwise empty output directory.
fn foreign_manifest(root: &Path) -> Option<std::fs::File> {
    std::fs::create_dir_all(root.join("out")).unwrap();
    std::fs::write(root.join("out/manifest.json"), b"{\"my\": \"notes\"}").unwrap();
    None
}

/// A foreign file named like a shard, next to a real dataset.
fn foreign_shard(root: &Path) -> Option<std::fs::File> {
    std::fs::write(root.join("ds/shard-99999.rfp"), b"my own binary notes").unwrap();
    None
}

/// A file that merely starts and ends like a shard name.
fn shard_notes(root: &Path) -> Option<std::fs::File> {
    std::fs::write(root.join("ds/shard-notes.rfp"), b"notes").unwrap();
    None
}

/// A FIFO where the dataset's first shard should be: opening it for
/// reading would wait for a writer forever.
fn fifo_shard(root: &Path) -> Option<std::fs::File> {
    let shard = root.join("ds/shard-00000.rfp");
    std::fs::rename(&shard, root.join("shard.saved")).unwrap();
    assert!(Command::new("mkfifo").arg(&shard).status().unwrap().success());
    None
}

/// A FIFO in place of the manifest.
fn fifo_manifest(root: &Path) -> Option<std::fs::File> {
    let manifest = root.join("ds/manifest.json");
    std::fs::rename(&manifest, root.join("manifest.saved")).unwrap();
    assert!(Command::new("mkfifo").arg(&manifest).status().unwrap().success());
    None
}

const CASES: &[Case] = &[
    Case {
        name: "verify with a FIFO for a shard",
        args: &["verify", "{ds}"],
        before: fifo_shard,
        code: 2,
        message: "not a regular file",
    },
    Case {
        name: "inspect with a FIFO for a shard",
        args: &["inspect", "{ds}"],
        before: fifo_shard,
        code: 2,
        message: "not a regular file",
    },
    Case {
        name: "bench with a FIFO for a shard",
        args: &["bench", "{ds}"],
        before: fifo_shard,
        code: 2,
        message: "not a regular file",
    },
    Case {
        name: "verify with a FIFO for the manifest",
        args: &["verify", "{ds}"],
        before: fifo_manifest,
        code: 2,
        message: "not a regular file",
    },
    Case {
        name: "pack over a foreign manifest.json",
        args: &["pack", "-q", "{src}", "{root}/out"],
        before: foreign_manifest,
        code: 2,
        message: "not its contents",
    },
    Case {
        name: "pack over a dataset next to a foreign shard-named file",
        args: &["pack", "-q", "{src}", "{ds}"],
        before: foreign_shard,
        code: 2,
        message: "not its contents",
    },
    Case {
        name: "pack over a dataset next to shard-notes.rfp",
        args: &["pack", "-q", "{src}", "{ds}"],
        before: shard_notes,
        code: 2,
        message: "not part of a ringfeed dataset",
    },
    Case {
        name: "pack a dataset into itself",
        args: &["pack", "-q", "{ds}", "{ds}"],
        before: nothing,
        code: 2,
        message: "is the source",
    },
    Case {
        name: "pack into a directory inside the source",
        args: &["pack", "-q", "{src}", "{src}/c0/out"],
        before: nothing,
        code: 2,
        message: "lies inside the source",
    },
    Case {
        name: "pack into a directory holding the source",
        args: &["pack", "-q", "{src}/c1", "{root}"],
        before: nothing,
        code: 2,
        message: "holds the source",
    },
    Case {
        name: "pack into the same directory through `..`",
        args: &["pack", "-q", "{ds}", "{src}/../ds"],
        before: nothing,
        code: 2,
        message: "is the source",
    },
    Case {
        name: "pack into a directory another pack is writing",
        args: &["pack", "-q", "{src}", "{ds}"],
        before: lock_ds,
        code: 2,
        message: "in use by pid 4242",
    },
];

#[test]
fn hostile_commands_fail_clearly_and_lose_nothing() {
    for case in CASES {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let root = dir.path();
        let src = source(root, 40);
        let ds = root.join("ds");
        assert!(ringfeed(&["pack", "-q", s(&src), s(&ds)]).status.success());
        let files_before = std::fs::read_dir(&src).unwrap().count();
        let _held = (case.before)(root);
        let foreign: Vec<(PathBuf, Vec<u8>)> =
            ["out/manifest.json", "ds/shard-99999.rfp", "ds/shard-notes.rfp"]
                .iter()
                .map(|f| root.join(f))
                .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
                .collect();
        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| a.replace("{src}", s(&src)).replace("{ds}", s(&ds)).replace("{root}", s(root)))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = ringfeed(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(case.code), "{}: {err}", case.name);
        assert!(err.contains(case.message), "{}: {err}", case.name);
        assert!(!err.contains("panicked"), "{}: {err}", case.name);
        assert_eq!(err.trim_end().lines().count(), 1, "{}: one line: {err}", case.name);
        // Nothing was lost: the dataset, the source and any foreign file
        // are as they were (a FIFO case puts the real file back first).
        for (saved, name) in [("shard.saved", "ds/shard-00000.rfp"), ("manifest.saved", "ds/manifest.json")] {
            if root.join(saved).exists() {
                std::fs::remove_file(root.join(name)).unwrap();
                std::fs::rename(root.join(saved), root.join(name)).unwrap();
            }
        }
        assert!(verifies(&ds), "{}: the dataset no longer verifies", case.name);
        assert_eq!(std::fs::read_dir(&src).unwrap().count(), files_before, "{}", case.name);
        for (path, bytes) in &foreign {
            assert_eq!(
                std::fs::read(path).ok().as_ref(),
                Some(bytes),
                "{}: {} changed",
                case.name,
                path.display()
            );
        }
    }
}

/// Two packs racing into one directory (as when every rank runs the same
/// command): whichever exit 0 leave a dataset that verifies; one that
/// finds the directory in use says so.
#[test]
fn racing_packs_never_leave_a_broken_dataset_behind_an_exit_0() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let src = source(dir.path(), 300);
    let (mut refused, mut both) = (0, 0);
    for trial in 0..20 {
        let out = dir.path().join(format!("out{trial}"));
        let children: Vec<_> = (0..2)
            .map(|_| {
                Command::new(bin())
                    .args(["pack", "-q", "--shard-size", "64K", s(&src), s(&out)])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outputs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        let ok = outputs.iter().filter(|o| o.status.success()).count();
        assert!(ok >= 1, "trial {trial}: neither pack succeeded");
        assert!(verifies(&out), "trial {trial}: a pack exited 0 but the dataset does not verify");
        for o in outputs.iter().filter(|o| !o.status.success()) {
            let err = String::from_utf8_lossy(&o.stderr);
            // "pid N", or "another process" if it had not written its pid yet.
            assert!(err.contains("is in use by"), "trial {trial}: {err}");
            refused += 1;
        }
        both += usize::from(ok == 2);
    }
    eprintln!("20 trials: {refused} packs refused (directory in use), {both} ran one after the other");
}
