//! `Loader::builder` accepts every form of path a caller holds (`&str`,
//! `String`, `&Path`, `PathBuf`, references to them, a `TempDir`), like
//! the storage layer's entry points (`pack/tests/entry_points.rs`).

#[macro_use]
mod common;

use std::path::{Path, PathBuf};

use common::scratch;
use ringfeed::{Loader, PackWriter, Payload, Schema};

/// Writes two records into `to`.
fn write_two(to: impl AsRef<Path>) {
    let schema = Schema { payload: Payload::Bytes, labels: false, keys: true };
    let mut writer = PackWriter::builder(to).schema(schema).build().unwrap();
    writer.push(b"zero", 0, Some("k0")).unwrap();
    writer.push(b"one", 0, Some("k1")).unwrap();
    writer.finish().unwrap();
}

#[test]
fn loaders_build_from_every_path_form() {
    let tmp = scratch();
    let dir = tmp.path().join("ds");
    write_two(&dir);
    each_path_form!(&dir, |p| {
        let loader = Loader::builder(p).batch_size(1).cores(1).build().unwrap();
        assert_eq!(loader.map(|b| b.unwrap().indices.len()).sum::<usize>(), 2);
    });

    // A `TempDir` as the dataset directory.
    let out = scratch();
    write_two(out.path());
    let loader = Loader::builder(&out).batch_size(2).cores(1).build().unwrap();
    assert_eq!(loader.count(), 1);
}
