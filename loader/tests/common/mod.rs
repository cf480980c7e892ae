//! Helpers shared by the integration tests (the storage layer's tests
//! have their own, `pack/tests/common/`).
#![allow(dead_code, unreachable_pub)]

pub mod images;

use std::fs;
use std::path::{Path, PathBuf};

use ringfeed::{PackWriter, Payload, Schema};

/// A fresh directory on the real file system (under `target/`), not /tmp,
/// which may be tmpfs.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir")
}

/// One test record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub payload: Vec<u8>,
    pub label: i64,
    pub key: String,
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no RNG crate.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
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
pub fn pack(dir: &Path, recs: &[Rec], shard_size: u64) -> ringfeed::Manifest {
    let mut w = PackWriter::builder(dir).shard_size(shard_size).schema(schema()).build().expect("writer");
    for r in recs {
        w.push(&r.payload, r.label, Some(&r.key)).expect("push");
    }
    w.finish().expect("finish")
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
