//! End-to-end runs of the `ringfeed` binary: pack → inspect → verify, exit
//! codes, and one-line errors.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn ringfeed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringfeed")).args(args).output().expect("run ringfeed")
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn make_imagefolder(root: &Path) {
    for class in ["cat", "dog"] {
        fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..20 {
            let body: Vec<u8> = (0..(i * 300 + 1)).map(|b| (b * 31 + i) as u8).collect();
            fs::write(root.join(class).join(format!("{i:02}.jpg")), body).unwrap();
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn pack_inspect_verify_round_trip() {
    let (src, out) = (scratch(), scratch());
    make_imagefolder(src.path());
    let ds = out.path().join("ds");
    let o = ringfeed(&["pack", s(src.path()), s(&ds), "--shard-size", "20K"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = stdout(&o);
    assert!(summary.contains("packed 40 records (imagefolder"), "{summary}");
    assert!(summary.contains("MB/s"), "{summary}");

    let o = ringfeed(&["inspect", s(&ds), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["records"], 40);
    assert!(j["shards"].as_u64().unwrap() > 1);
    let shard_bytes: u64 = fs::read_dir(&ds)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rfp"))
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(j["bytes"], shard_bytes);
    assert_eq!(j["classes"], serde_json::json!(["cat", "dog"]));
    assert_eq!(j["schema"]["payload"]["kind"], "image");

    let o = ringfeed(&["inspect", s(&ds)]);
    assert!(stdout(&o).contains("records   40"), "{}", stdout(&o));

    let o = ringfeed(&["verify", s(&ds), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["clean"], true);
    assert_eq!(j["records"], 40);
}

#[test]
fn verify_reports_each_bad_record_and_exits_1() {
    let (src, out) = (scratch(), scratch());
    make_imagefolder(src.path());
    let ds = out.path().join("ds");
    assert!(ringfeed(&["pack", "-q", s(src.path()), s(&ds)]).status.success());
    let shard = ds.join("shard-00000.rfp");
    let mut b = fs::read(&shard).unwrap();
    // Records start at 4096; the first record is 1 byte, the second 301.
    b[4096] ^= 1;
    b[4096 + 1 + 100] ^= 1;
    fs::write(&shard, b).unwrap();
    let o = ringfeed(&["verify", s(&ds)]);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(text.contains("CORRUPT shard-00000.rfp record 0 at byte 4096"), "{text}");
    assert!(text.contains("CORRUPT shard-00000.rfp record 1 at byte 4097"), "{text}");
    let o = ringfeed(&["verify", s(&ds), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    // Two bad records, and the shard's whole-file checksum.
    assert_eq!(j["problems"].as_array().unwrap().len(), 3, "{j}");
    assert_eq!(j["problems"][0]["record"], 0);
}

#[test]
fn errors_are_one_line_with_exit_code_2() {
    let dir = scratch();
    let missing = dir.path().join("no-such-dataset");
    for args in
        [vec!["verify", s(&missing)], vec!["inspect", s(&missing)], vec!["pack", s(&missing), s(dir.path())]]
    {
        let o = ringfeed(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains("no-such-dataset"), "{err}");
        assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    }
    let o = ringfeed(&["pack", s(dir.path()), s(&dir.path().join("o")), "--shard-size", "0"]);
    assert_eq!(o.status.code(), Some(2));
    let o = ringfeed(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn corrupt_dataset_in_inspect_exits_1() {
    let (src, out) = (scratch(), scratch());
    make_imagefolder(src.path());
    let ds = out.path().join("ds");
    assert!(ringfeed(&["pack", "-q", s(src.path()), s(&ds)]).status.success());
    fs::write(ds.join("manifest.json"), "{ not json").unwrap();
    let o = ringfeed(&["inspect", s(&ds)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("manifest.json"), "{}", stderr(&o));
}

#[test]
fn index_keys_writes_the_key_index_and_verify_checks_it() {
    let (src, out) = (scratch(), scratch());
    make_imagefolder(src.path());
    let ds = out.path().join("ds");
    assert!(ringfeed(&["pack", s(src.path()), s(&ds)]).status.success());
    let index = ds.join("key-index.rfk");
    let packed = fs::read(&index).expect("pack writes the key index");
    fs::remove_file(&index).unwrap();

    let o = ringfeed(&["index-keys", s(&ds)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("40 keys"), "{}", stdout(&o));
    assert_eq!(fs::read(&index).unwrap(), packed, "the same bytes as the packer's");

    // A damaged index: verify exits 1 naming it.
    let mut bad = packed.clone();
    bad[40] ^= 1;
    fs::write(&index, bad).unwrap();
    let o = ringfeed(&["verify", s(&ds)]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("key-index.rfk"), "{}", stdout(&o));
    // Not a dataset: exit 2, one line.
    let o = ringfeed(&["index-keys", s(src.path())]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}
