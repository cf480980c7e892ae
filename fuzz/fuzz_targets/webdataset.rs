//! A webdataset file from arbitrary bytes: opening it and reading every record
//! must return errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::file("shard.tar", data);
    common::drain(ringfeed::TarSource::open(&path));
});
