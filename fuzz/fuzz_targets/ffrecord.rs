//! A ffrecord file from arbitrary bytes: opening it and reading every record
//! must return errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::file("part.ffr", data);
    common::drain(ringfeed::FfRecordSource::open(&path));
});
