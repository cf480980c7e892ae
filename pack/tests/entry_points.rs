//! Every public entry point that takes a path accepts the forms a caller
//! holds (`&str`, `String`, `&Path`, `PathBuf`, references to them, a
//! `TempDir`), and `pack` takes the `Box<dyn Source>` that `open_source`
//! returns as it is, as well as references and concrete sources. (The
//! loader's `Loader::builder` is checked the same way in
//! `loader/tests/entry_points.rs`.)
#![expect(
    clippy::needless_borrows_for_generic_args,
    reason = "paths are passed by reference on purpose: callers do, and it must compile"
)]

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::scratch;
use ringfeed_pack::{
    Dataset, FfRecordSource, FilesSource, ImageFolderSource, Manifest, PackOptions, PackWriter, Payload,
    Schema, Shard, Source, SourceFormat, TarSource, TfRecordSource,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A directory of three text files.
fn text_files() -> tempfile::TempDir {
    let dir = scratch();
    for (name, text) in [("a.txt", "first"), ("b.txt", "second"), ("c.txt", "third")] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn options() -> PackOptions {
    PackOptions::builder().threads(2).build().unwrap()
}

/// Keys and payloads of a packed dataset, in order.
fn contents(ds: &Dataset) -> Vec<(String, Vec<u8>)> {
    ds.iter().map(|r| r.map(|r| (r.key, r.payload)).unwrap()).collect()
}

#[test]
fn sources_open_from_every_path_form() {
    let texts = text_files();
    let images = scratch();
    for (class, name) in [("cat", "a.jpg"), ("dog", "b.png")] {
        std::fs::create_dir(images.path().join(class)).unwrap();
        std::fs::write(images.path().join(class).join(name), b"not decoded when listing").unwrap();
    }
    // Container files (detected by extension), and directories of them.
    let tar = fixture("tar/multi.tar");
    let tfrecord = fixture("tfrecord/part-00000.tfrecord");
    let ffrecord = fixture("ffrecord/part-0.ffr");

    let cases: [(&Path, SourceFormat, usize); 5] = [
        (texts.path(), SourceFormat::Files, 3),
        (images.path(), SourceFormat::ImageFolder, 2),
        (&tar, SourceFormat::Tar, TarSource::open(tar.as_path()).unwrap().len()),
        (&tfrecord, SourceFormat::TfRecord, TfRecordSource::open(tfrecord.as_path()).unwrap().len()),
        (&ffrecord, SourceFormat::FfRecord, FfRecordSource::open(ffrecord.as_path()).unwrap().len()),
    ];
    for (path, format, len) in cases {
        assert!(len > 0, "{format:?} fixture is empty");
        each_path_form!(path, |p| {
            assert_eq!(SourceFormat::detect(&p).unwrap(), format);
            assert_eq!(ringfeed_pack::open_source(&p, None).unwrap().len(), len);
            assert_eq!(ringfeed_pack::open_source(p, Some(format)).unwrap().len(), len);
        });
    }
    each_path_form!(texts.path(), |p| assert_eq!(FilesSource::open(p).unwrap().len(), 3));
    let classes = ["cat", "dog"];
    each_path_form!(images.path(), |p| assert_eq!(ImageFolderSource::open(p).unwrap().classes(), classes));
    each_path_form!(&tar, |p| assert!(!TarSource::open(p).unwrap().is_empty()));
    each_path_form!(&fixture("tfrecord"), |p| assert!(!TfRecordSource::open(p).unwrap().is_empty()));
    each_path_form!(&fixture("ffrecord"), |p| assert!(!FfRecordSource::open(p).unwrap().is_empty()));

    // A `TempDir` is a path too, by reference or through `path()`.
    assert_eq!(FilesSource::open(&texts).unwrap().len(), 3);
    assert_eq!(ringfeed_pack::open_source(&texts, None).unwrap().len(), 3);
    assert_eq!(SourceFormat::detect(&images).unwrap(), SourceFormat::ImageFolder);
    assert_eq!(ImageFolderSource::open(images.path()).unwrap().len(), 2);
}

#[test]
fn pack_takes_the_box_open_source_returns() {
    let src_dir = text_files();
    let tmp = scratch();
    let out = tmp.path().join("out");
    let expected = vec![
        ("a.txt".to_owned(), b"first".to_vec()),
        ("b.txt".to_owned(), b"second".to_vec()),
        ("c.txt".to_owned(), b"third".to_vec()),
    ];

    // As a user writes it: the box, by value.
    let src = ringfeed_pack::open_source(src_dir.path(), None).unwrap();
    let manifest = ringfeed_pack::pack(src, &out, &options(), |_| {}).unwrap();
    assert_eq!((manifest.records, manifest.source.as_str()), (3, "files"));
    assert_eq!(contents(&Dataset::open(&out).unwrap()), expected);

    // By reference, to use the source afterwards; re-borrowed; shared.
    let src = ringfeed_pack::open_source(src_dir.path(), None).unwrap();
    assert_eq!(ringfeed_pack::pack(&src, &out, &options(), |_| {}).unwrap().records, 3);
    assert_eq!(ringfeed_pack::pack(&*src, &out, &options(), |_| {}).unwrap().records, 3);
    assert_eq!(src.format(), "files");
    let shared: Arc<dyn Source> = Arc::from(src);
    assert_eq!(ringfeed_pack::pack(Arc::clone(&shared), &out, &options(), |_| {}).unwrap().records, 3);

    // A concrete source, by value and by reference.
    let files = FilesSource::open(src_dir.path()).unwrap();
    assert_eq!(ringfeed_pack::pack(&files, &out, &options(), |_| {}).unwrap().records, 3);
    assert_eq!(ringfeed_pack::pack(files, &out, &options(), |_| {}).unwrap().records, 3);

    // Every path form, for the source, the output and the overlap check.
    each_path_form!(src_dir.path(), |p| {
        ringfeed_pack::check_pack_paths(&p, &out).unwrap();
        let src = ringfeed_pack::open_source(p, None).unwrap();
        ringfeed_pack::pack(src, &out, &options(), |_| {}).unwrap();
    });
    each_path_form!(&out, |p| {
        ringfeed_pack::check_pack_paths(src_dir.path(), &p).unwrap();
        let src = ringfeed_pack::open_source(src_dir.path(), None).unwrap();
        let manifest = ringfeed_pack::pack(src, p, &options(), |_| {}).unwrap();
        assert_eq!(manifest.records, 3);
        assert_eq!(contents(&Dataset::open(&out).unwrap()), expected);
    });
    let into_tempdir = scratch();
    ringfeed_pack::check_pack_paths(&src_dir, &into_tempdir).unwrap();
    let src = ringfeed_pack::open_source(&src_dir, None).unwrap();
    assert_eq!(ringfeed_pack::pack(src, &into_tempdir, &options(), |_| {}).unwrap().records, 3);
    assert_eq!(contents(&Dataset::open(&into_tempdir).unwrap()), expected);
    // The overlap check still refuses packing a source into itself.
    assert!(ringfeed_pack::check_pack_paths(&src_dir, src_dir.path().join("out")).is_err());
}

#[test]
fn datasets_write_and_read_from_every_path_form() {
    let tmp = scratch();
    let dir = tmp.path().join("ds");
    let schema = Schema { payload: Payload::Bytes, labels: false, keys: true };
    let write = |to: &mut PackWriter| {
        to.push(b"zero", 0, Some("k0")).unwrap();
        to.push(b"one", 0, Some("k1")).unwrap();
    };

    each_path_form!(&dir, |p| {
        let mut writer = PackWriter::builder(p).schema(schema.clone()).build().unwrap();
        write(&mut writer);
        assert_eq!(writer.finish().unwrap().records, 2);
    });
    each_path_form!(&dir, |p| {
        let ds = Dataset::open(&p).unwrap();
        assert_eq!(ds.record(1).unwrap().payload, b"one");
        assert_eq!(Manifest::load(&p).unwrap().records, 2);
        assert!(ringfeed_pack::verify(&p, |_| {}).unwrap().is_clean());
    });
    let info = Manifest::load(&dir).unwrap().shards[0].clone();
    each_path_form!(&dir.join(&info.file), |p| {
        let shard = Shard::open(p, Some(&info)).unwrap();
        assert_eq!((shard.len(), shard.key(0).unwrap()), (2, "k0"));
    });

    // A `TempDir` as the dataset directory.
    let out = scratch();
    let mut writer = PackWriter::builder(&out).schema(schema).build().unwrap();
    write(&mut writer);
    writer.finish().unwrap();
    assert_eq!(Dataset::open(&out).unwrap().len(), 2);
    assert_eq!(Manifest::load(&out).unwrap().records, 2);
    assert!(ringfeed_pack::verify(&out, |_| {}).unwrap().is_clean());
}
