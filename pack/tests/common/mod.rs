//! Helpers shared by the storage layer's integration tests; the loader's
//! tests use them too (`loader/tests/common/` includes this file).
#![allow(dead_code, unreachable_pub, unused_macros)]

use std::fs;
use std::path::{Path, PathBuf};

use ringfeed_pack::{Dataset, Error, PackWriter, Payload, Schema};

#[path = "plain.rs"]
mod plain;
pub use plain::*;

/// One test record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub payload: Vec<u8>,
    pub label: i64,
    pub key: String,
}

pub fn records(sizes: &[usize]) -> Vec<Rec> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| Rec {
            payload: bytes(i as u64 + 1, n),
            label: (i % 7) as i64,
            key: format!("k/{i:06}"),
        })
        .collect()
}

pub fn schema() -> Schema {
    Schema { payload: Payload::Bytes, labels: true, keys: true }
}

/// Packs `recs` into `dir` with the given shard size.
pub fn pack(dir: &Path, recs: &[Rec], shard_size: u64) -> ringfeed_pack::Manifest {
    let mut w = PackWriter::builder(dir).shard_size(shard_size).schema(schema()).build().expect("writer");
    for r in recs {
        w.push(&r.payload, r.label, Some(&r.key)).expect("push");
    }
    w.finish().expect("finish")
}

/// Asserts that the dataset in `dir` holds exactly `recs`, read both by
/// index and by iteration.
pub fn assert_holds(dir: &Path, recs: &[Rec]) {
    let ds = Dataset::open(dir).expect("open");
    assert_eq!(ds.len(), recs.len() as u64);
    for (i, r) in ds.iter().enumerate() {
        let r = r.expect("record");
        assert_eq!(r.index, i as u64);
        assert_eq!(r.payload, recs[i].payload, "payload of record {i}");
        assert_eq!(r.label, recs[i].label);
        assert_eq!(r.key, recs[i].key);
    }
}

pub fn shard_paths(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rfp"))
        .collect();
    v.sort();
    v
}

/// Flips one bit of the file at `offset`.
pub fn flip(path: &Path, offset: u64) {
    let mut b = fs::read(path).unwrap();
    b[offset as usize] ^= 0x04;
    fs::write(path, b).unwrap();
}

pub fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Asserts that `err` is corruption at `offset` and that its message names
/// the file and the offset.
#[track_caller]
pub fn assert_corrupt(err: &Error, path: &Path, offset: u64) {
    assert!(err.is_corruption(), "{err}");
    assert!(matches!(err, Error::Corrupt { offset: o, .. } if *o == offset), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains(&format!("at byte {offset}")), "{msg}");
}

/// `(file name, [(len, crc32)])` per file of a fixture's `expected.json`
/// (as the reference reader saw them).
pub fn records_by_file(v: &serde_json::Value) -> Vec<(String, Vec<(u64, u32)>)> {
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let recs = f["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| (r["len"].as_u64().unwrap(), r["crc32"].as_u64().unwrap() as u32))
                .collect();
            (f["file"].as_str().unwrap().to_string(), recs)
        })
        .collect()
}

/// Runs `$body` once with `$p` bound to `$path` as each form of path a
/// caller may hold, so that every form is checked to compile and to work.
macro_rules! each_path_form {
    ($path:expr, |$p:ident| $body:expr) => {{
        let path: &Path = $path;
        let text: &str = path.to_str().expect("UTF-8 test path");
        {
            let $p: &str = text;
            $body;
        }
        {
            let $p: String = text.to_owned();
            $body;
        }
        {
            let owned = text.to_owned();
            let $p: &String = &owned;
            $body;
        }
        {
            let $p: &Path = path;
            $body;
        }
        {
            let $p: PathBuf = path.to_path_buf();
            $body;
        }
        {
            let owned = path.to_path_buf();
            let $p: &PathBuf = &owned;
            $body;
        }
    }};
}
