//! What the commands print: names with control characters come out
//! escaped, on one line, and a reader that goes away ends the command
//! quietly with exit code 2 (as SIGPIPE would) instead of a panic.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringfeed")
}

fn ringfeed(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run ringfeed")
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const EVIL_CLASS: &str = "red\u{1b}[31m\nclass";

#[test]
fn class_names_with_control_characters_print_escaped() {
    let dir = scratch();
    let src = dir.path().join("src");
    let jpg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../decode/tests/fixtures/rgb.jpg");
    for class in [EVIL_CLASS, "plain"] {
        fs::create_dir_all(src.join(class)).unwrap();
        fs::copy(&jpg, src.join(class).join("a.jpg")).unwrap();
    }
    let ds = dir.path().join("ds");
    let packed = ringfeed(&["pack", "-q", "--format", "imagefolder", s(&src), s(&ds)]);
    assert!(packed.status.success(), "{}", String::from_utf8_lossy(&packed.stderr));

    let text = ringfeed(&["inspect", s(&ds)]);
    assert!(text.status.success());
    let out = String::from_utf8(text.stdout).unwrap();
    assert!(!out.contains('\u{1b}'), "a raw escape sequence reached the terminal: {out:?}");
    let classes = out.lines().find(|l| l.starts_with("classes")).unwrap();
    assert_eq!(classes, "classes   2 (plain, red\\u{1b}[31m\\nclass)");

    let json = ringfeed(&["inspect", "--json", s(&ds)]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["classes"][1], EVIL_CLASS, "JSON keeps the name exact (escaped by JSON itself)");
    assert!(!json.stdout.contains(&0x1b));
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let dir = scratch();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    // 3,000 records: `order --batch 1` prints ~120 KB, more than a pipe holds.
    for i in 0..3000 {
        fs::write(src.join(format!("{i:04}.bin")), [i as u8]).unwrap();
    }
    let ds = dir.path().join("ds");
    assert!(ringfeed(&["pack", "-q", "--format", "files", s(&src), s(&ds)]).status.success());
    let mut child = Command::new(bin())
        .args(["order", s(&ds), "--batch", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one byte, then close the pipe, as `| head -c 1` does.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&o.stderr), "", "no message for a reader that left");
}
