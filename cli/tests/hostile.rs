//! Hostile use of the CLI, one table: each case is a command, its input,
//! and the exit code and message fragment it must give; none may panic,
//! hang or lose a good dataset. The rows live in `hostile/*.rs`, one file
//! per topic; [`all_cases`] joins them.

#[path = "hostile/dataset_files.rs"]
mod dataset_files;
#[path = "hostile/limits.rs"]
mod limits;
#[path = "hostile/manifest.rs"]
mod manifest;
#[path = "hostile/output.rs"]
mod output;
#[path = "hostile/pack.rs"]
mod pack;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringfeed")
}

/// Runs the CLI under coreutils' `timeout`: a command that hangs exits
/// 124 after two minutes and fails its case instead of the whole run.
fn ringfeed(args: &[&str]) -> Output {
    ringfeed_in_shell("", args)
}

/// As [`ringfeed`], after `shell` (e.g. `ulimit -Sn 256;` or
/// `exec >/dev/full;`) has run in the `sh` that then becomes the CLI.
fn ringfeed_in_shell(shell: &str, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("{shell} exec timeout 120 \"$0\" \"$@\""))
        .arg(bin())
        .args(args)
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("LOCAL_RANK")
        .env_remove("LOCAL_WORLD_SIZE")
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

/// What a case starts from, in a fresh directory `{root}`: `src/` (a
/// source tree of 40 files in classes `c0` and `c1`) and `ds/` (a dataset
/// packed from it).
struct Case {
    name: &'static str,
    /// Arguments, with `{src}`, `{ds}` and `{root}` replaced.
    args: &'static [&'static str],
    /// Something to do first; what it returns lives until the command ends.
    /// A case that damages `ds/` moves the good file away with [`save`]
    /// first; the runner puts it back before checking that nothing was lost.
    before: fn(&Path) -> Option<std::fs::File>,
    /// Shell commands run before the CLI in the same process (limits,
    /// redirections); empty for most cases.
    shell: &'static str,
    code: i32,
    /// A fragment the last line of stderr must contain.
    message: &'static str,
}

/// Moves `root/rel` to `root/saved/rel`, to be restored after the case.
fn save(root: &Path, rel: &str) {
    let to = root.join("saved").join(rel);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::rename(root.join(rel), &to).unwrap();
}

/// Puts back everything [`save`] moved away, replacing what stands there.
fn restore(root: &Path) {
    fn walk(dir: &Path, base: &Path, root: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.map(Result::unwrap) {
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(&path, base, root);
            } else {
                let dest = root.join(path.strip_prefix(base).unwrap());
                let _ = std::fs::remove_file(&dest);
                std::fs::rename(&path, &dest).unwrap();
            }
        }
    }
    walk(&root.join("saved"), &root.join("saved"), root);
}

/// Every row of the table.
fn all_cases() -> Vec<&'static Case> {
    [dataset_files::CASES, pack::CASES, manifest::CASES, limits::CASES, output::CASES]
        .into_iter()
        .flatten()
        .collect()
}

#[test]
fn hostile_commands_fail_clearly_and_lose_nothing() {
    for case in all_cases() {
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
        let o = ringfeed_in_shell(case.shell, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(case.code), "{}: {err}", case.name);
        let last = err.trim_end().lines().last().unwrap_or("");
        assert!(last.contains(case.message), "{}: {err}", case.name);
        assert!(!err.contains("panicked"), "{}: {err}", case.name);
        if case.code != 0 {
            assert_eq!(err.trim_end().lines().count(), 1, "{}: one line: {err}", case.name);
        }
        // Nothing was lost: the dataset, the source and any foreign file
        // are as they were (a case that damaged `ds/` saved the good files).
        restore(root);
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
    for trial in 0..50 {
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
    eprintln!("50 trials: {refused} packs refused (directory in use), {both} ran one after the other");
}
