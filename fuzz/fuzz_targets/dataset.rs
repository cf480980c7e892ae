//! A pack dataset from arbitrary bytes: `[u16 LE manifest length][manifest
//! JSON][shard file]`. Opening, reading every record and verifying must
//! return errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = usize::from(u16::from_le_bytes([data[0], data[1]])).min(data.len() - 2);
    let (manifest, shard) = data[2..].split_at(n);
    common::file("manifest.json", manifest);
    common::file("shard-00000.rfp", shard);
    let dir = common::scratch();
    if let Ok(ds) = ringfeed::Dataset::open(dir) {
        for i in 0..ds.len().min(10_000) {
            let _ = ds.record(i);
        }
    }
    let _ = ringfeed::verify(dir, |_| {});
});
