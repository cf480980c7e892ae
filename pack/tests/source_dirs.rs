//! ImageFolder and plain-file sources, format detection, and packing them.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use ringfeed_pack::{Dataset, PackOptions, Payload, SourceFormat, open_source};

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes).unwrap();
}

fn pack_source(src: &Path, format: Option<SourceFormat>) -> (tempfile::TempDir, ringfeed_pack::Manifest) {
    let out = scratch();
    let source = open_source(src, format).unwrap();
    let opts = PackOptions::builder().threads(3).shard_size(64).build().unwrap();
    let m = ringfeed_pack::pack(&*source, out.path(), &opts, |_| {}).unwrap();
    (out, m)
}

#[test]
fn imagefolder_labels_follow_sorted_classes_and_files() {
    let src = scratch();
    let root = src.path();
    write(root, "zebra/b.JPG", b"z-b");
    write(root, "zebra/a.png", b"z-a");
    write(root, "ant/nested/x.jpeg", b"a-x");
    write(root, "ant/c.jpg", b"a-c");
    write(root, "ant/notes.txt", b"skipped");
    write(root, "ant/.hidden.jpg", b"skipped");
    write(root, "Bee/1.webp", b"B-1");
    assert_eq!(SourceFormat::detect(root).unwrap(), SourceFormat::ImageFolder);
    let (out, m) = pack_source(root, None);
    // Byte order: upper case sorts before lower case, as in Python's sorted().
    assert_eq!(m.classes, ["Bee", "ant", "zebra"]);
    assert_eq!(m.schema.payload, Payload::Image);
    assert_eq!(m.source, "imagefolder");
    let ds = Dataset::open(out.path()).unwrap();
    let got: Vec<(String, i64, Vec<u8>)> =
        ds.iter().map(|r| r.unwrap()).map(|r| (r.key, r.label, r.payload)).collect();
    let want = [
        ("Bee/1.webp", 0, "B-1"),
        ("ant/c.jpg", 1, "a-c"),
        ("ant/nested/x.jpeg", 1, "a-x"),
        ("zebra/a.png", 2, "z-a"),
        ("zebra/b.JPG", 2, "z-b"),
    ];
    assert_eq!(got.len(), want.len());
    for ((k, l, p), (wk, wl, wp)) in got.iter().zip(want) {
        assert_eq!((k.as_str(), *l, p.as_slice()), (wk, wl, wp.as_bytes()));
    }
}

#[test]
fn imagefolder_errors_are_clear() {
    let src = scratch();
    write(src.path(), "cat/readme.txt", b"no images");
    let err = open_source(src.path(), Some(SourceFormat::ImageFolder)).unwrap_err();
    assert!(err.to_string().contains("holds no images"), "{err}");
    let empty = scratch();
    let err = open_source(empty.path(), Some(SourceFormat::ImageFolder)).unwrap_err();
    assert!(err.to_string().contains("no class directories"), "{err}");
    let err = open_source(empty.path().join("missing"), None).unwrap_err();
    assert!(matches!(err, ringfeed_pack::Error::Io { .. }) && err.to_string().contains("missing"), "{err}");
}

#[test]
fn files_source_keys_are_relative_paths_and_text_is_detected() {
    let src = scratch();
    write(src.path(), "b.txt", "second ✓".as_bytes());
    write(src.path(), "a/z.md", b"first");
    write(src.path(), "c.json", b"{}");
    assert_eq!(SourceFormat::detect(src.path()).unwrap(), SourceFormat::Files);
    let (out, m) = pack_source(src.path(), None);
    assert_eq!(m.schema.payload, Payload::Text);
    assert!(m.schema.keys && !m.schema.labels);
    let ds = Dataset::open(out.path()).unwrap();
    let keys: Vec<String> = ds.iter().map(|r| r.unwrap().key).collect();
    assert_eq!(keys, ["a/z.md", "b.txt", "c.json"]);
    assert_eq!(ds.record(1).unwrap().payload, "second ✓".as_bytes());
}

#[test]
fn binary_files_are_bytes_and_bad_utf8_text_is_corrupt() {
    let src = scratch();
    write(src.path(), "x.bin", &[0, 255, 1]);
    write(src.path(), "y.txt", b"ok");
    let (_, m) = pack_source(src.path(), None);
    assert_eq!(m.schema.payload, Payload::Bytes);

    let src = scratch();
    write(src.path(), "good.txt", b"fine");
    write(src.path(), "bad.txt", &[b'o', b'k', 0xff, 0xfe]);
    let source = open_source(src.path(), None).unwrap();
    let out = scratch();
    let err = ringfeed_pack::pack(&*source, out.path(), &PackOptions::builder().build().unwrap(), |_| {})
        .unwrap_err();
    assert!(err.is_corruption(), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("bad.txt") && msg.contains("at byte 2"), "{msg}");
    assert!(Dataset::open(out.path()).is_err(), "a failed pack leaves no dataset");
}

#[test]
fn pack_output_does_not_depend_on_thread_count() {
    let src = scratch();
    for i in 0..200 {
        write(src.path(), &format!("c{}/{i:03}.jpg", i % 3), &bytes(i, (i as usize * 37) % 3000));
    }
    let source = open_source(src.path(), None).unwrap();
    let mut outputs = Vec::new();
    for threads in [1, 2, 7] {
        let out = scratch();
        let opts = PackOptions::builder().threads(threads).shard_size(50_000).build().unwrap();
        ringfeed_pack::pack(&*source, out.path(), &opts, |_| {}).unwrap();
        let files: Vec<Vec<u8>> = shard_paths(out.path()).iter().map(|p| fs::read(p).unwrap()).collect();
        outputs.push((files, fs::read(out.path().join("manifest.json")).unwrap()));
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn unknown_format_names_are_rejected() {
    let err = "parquet".parse::<SourceFormat>().unwrap_err();
    assert!(err.to_string().contains("parquet"), "{err}");
}
