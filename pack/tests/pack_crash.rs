//! A writer that stops before `finish` (a crash, simulated by dropping it)
//! never leaves anything that opens or verifies as a dataset, and packing
//! again into the same directory succeeds.

mod common;

use common::*;
use ringfeed_pack::{Dataset, PackWriter, verify};

fn partial_pack(dir: &std::path::Path, recs: &[Rec], stop_after: usize) {
    let mut w = PackWriter::builder(dir).shard_size(2000).schema(schema()).build().unwrap();
    for r in &recs[..stop_after] {
        w.push(&r.payload, r.label, Some(&r.key)).unwrap();
    }
    drop(w); // crash: no finish(), no manifest
}

#[test]
fn crash_at_every_point_leaves_no_dataset() {
    let recs = records(&[700; 12]);
    for stop_after in 0..=recs.len() {
        let dir = scratch();
        partial_pack(dir.path(), &recs, stop_after);
        assert!(Dataset::open(dir.path()).is_err(), "stopped after {stop_after} records but opens");
        assert!(verify(dir.path(), |_| {}).is_err());
        // Rerunning the same pack succeeds and holds everything.
        pack(dir.path(), &recs, 2000);
        assert_holds(dir.path(), &recs);
    }
}

#[test]
fn a_replacement_stopped_midway_keeps_the_old_dataset() {
    let dir = scratch();
    let old = records(&[500; 10]);
    pack(dir.path(), &old, 2000);
    assert_holds(dir.path(), &old);
    let new = records(&[900; 10]);
    partial_pack(dir.path(), &new, 7);
    // The new shards were written beside the old ones and the manifest
    // never switched: the old dataset is still the dataset.
    assert_holds(dir.path(), &old);
    pack(dir.path(), &new, 2000);
    assert_holds(dir.path(), &new);
}

#[test]
fn temporary_files_are_cleaned_by_the_next_pack() {
    let dir = scratch();
    partial_pack(dir.path(), &records(&[3000; 5]), 5);
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(leftovers > 0, "a partial pack leaves its files behind");
    pack(dir.path(), &records(&[1]), 2000);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}
