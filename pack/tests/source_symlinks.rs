//! Directory walks: symlinked directories are followed (with loop
//! detection), entries that cannot be packed are errors naming them, and
//! files over the record limit are refused from their size at the walk.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use ringfeed_pack::{Dataset, Error, MAX_RECORD_LEN, PackOptions, SourceFormat, open_source};

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, bytes).unwrap();
}

fn keys(src: &Path, format: SourceFormat) -> Vec<String> {
    let source = open_source(src, Some(format)).unwrap();
    let out = scratch();
    ringfeed_pack::pack(&*source, out.path(), &PackOptions::builder().build().unwrap(), |_| {}).unwrap();
    Dataset::open(out.path()).unwrap().iter().map(|r| r.unwrap().key).collect()
}

#[test]
fn symlinked_directories_and_classes_are_followed_like_torchvision() {
    let tmp = scratch();
    let (src, elsewhere) = (tmp.path().join("src"), tmp.path().join("elsewhere"));
    write(&src, "cat/a.jpg", b"a");
    write(&elsewhere, "more/b.jpg", b"b");
    write(&elsewhere, "dogs/d.png", b"d");
    symlink(elsewhere.join("more"), src.join("cat/linked")).unwrap();
    symlink(elsewhere.join("dogs"), src.join("dog")).unwrap();
    assert_eq!(keys(&src, SourceFormat::ImageFolder), ["cat/a.jpg", "cat/linked/b.jpg", "dog/d.png"]);
    assert_eq!(keys(&src, SourceFormat::Files), ["cat/a.jpg", "cat/linked/b.jpg", "dog/d.png"]);
}

#[test]
fn a_symlink_loop_is_an_error_naming_it() {
    let src = scratch();
    write(src.path(), "cat/a.jpg", b"a");
    symlink(src.path().join("cat"), src.path().join("cat/again")).unwrap();
    for format in [SourceFormat::ImageFolder, SourceFormat::Files] {
        let err = open_source(src.path(), Some(format)).unwrap_err().to_string();
        assert!(err.contains("cat/again") && err.contains("symlink loop"), "{err}");
    }
    // A link to the root, two levels down.
    let src = scratch();
    write(src.path(), "cat/x/a.jpg", b"a");
    symlink(src.path(), src.path().join("cat/x/up")).unwrap();
    let err = open_source(src.path(), Some(SourceFormat::Files)).unwrap_err().to_string();
    assert!(err.contains("cat/x/up") && err.contains("symlink loop"), "{err}");
}

#[test]
fn the_same_directory_linked_twice_is_not_a_loop() {
    let tmp = scratch();
    let src = tmp.path().join("src");
    write(tmp.path(), "shared/s.jpg", b"s");
    write(&src, "cat/a.jpg", b"a");
    symlink(tmp.path().join("shared"), src.join("cat/one")).unwrap();
    symlink(tmp.path().join("shared"), src.join("cat/two")).unwrap();
    assert_eq!(keys(&src, SourceFormat::ImageFolder), ["cat/a.jpg", "cat/one/s.jpg", "cat/two/s.jpg"]);
}

#[test]
fn entries_that_cannot_be_packed_are_errors_naming_them() {
    // A dangling link with an image's name: the source would pack it.
    let src = scratch();
    write(src.path(), "cat/a.jpg", b"a");
    symlink(src.path().join("gone.jpg"), src.path().join("cat/b.jpg")).unwrap();
    let err = open_source(src.path(), Some(SourceFormat::ImageFolder)).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("cat/b.jpg"), "{err}");
    // A dangling link ImageFolder would skip for its name is skipped...
    let src = scratch();
    write(src.path(), "cat/a.jpg", b"a");
    symlink(src.path().join("gone"), src.path().join("cat/notes.txt")).unwrap();
    assert_eq!(keys(src.path(), SourceFormat::ImageFolder), ["cat/a.jpg"]);
    // ...but a files source packs every name, so there it is an error.
    let err = open_source(src.path(), Some(SourceFormat::Files)).unwrap_err().to_string();
    assert!(err.contains("cat/notes.txt"), "{err}");
    // A FIFO with an image's name would hang a reader: refused, not read.
    let src = scratch();
    write(src.path(), "cat/a.jpg", b"a");
    let fifo = src.path().join("cat/pipe.jpg");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let err = open_source(src.path(), Some(SourceFormat::ImageFolder)).unwrap_err().to_string();
    assert!(err.contains("pipe.jpg") && err.contains("FIFO"), "{err}");
}

#[test]
fn a_file_over_the_record_limit_is_refused_at_the_walk_without_being_read() {
    let src = scratch();
    write(src.path(), "cat/a.jpg", b"a");
    // 5 GB, sparse: reading it would take seconds and 5 GB of memory.
    let huge = fs::File::create(src.path().join("cat/huge.jpg")).unwrap();
    huge.set_len(5 << 30).unwrap();
    for format in [SourceFormat::ImageFolder, SourceFormat::Files] {
        let started = Instant::now();
        let err = open_source(src.path(), Some(format)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "refused in {:?}", started.elapsed());
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("huge.jpg") && msg.contains(&MAX_RECORD_LEN.to_string()), "{msg}");
    }
}

#[test]
fn a_file_that_grows_after_the_walk_is_an_error_not_an_unbounded_read() {
    let src = scratch();
    write(src.path(), "cat/a.jpg", b"small");
    let source = open_source(src.path(), Some(SourceFormat::ImageFolder)).unwrap();
    write(src.path(), "cat/a.jpg", &[7u8; 100_000]);
    let err = source.read(0).unwrap_err().to_string();
    assert!(err.contains("a.jpg") && err.contains("changed size"), "{err}");
    let out = scratch();
    let err = ringfeed_pack::pack(&*source, out.path(), &PackOptions::builder().build().unwrap(), |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("changed size"), "{err}");
}

#[test]
fn container_directories_follow_the_same_rule() {
    let src = scratch();
    write(src.path(), "a.tfrecord", b"");
    symlink(src.path().join("gone.tfrecord"), src.path().join("b.tfrecord")).unwrap();
    let err = open_source(src.path(), Some(SourceFormat::TfRecord)).unwrap_err().to_string();
    assert!(err.contains("b.tfrecord") && err.contains("follow symlink"), "{err}");
    let src = scratch();
    assert!(std::process::Command::new("mkfifo").arg(src.path().join("x.tar")).status().unwrap().success());
    let err = open_source(src.path(), Some(SourceFormat::Tar)).unwrap_err().to_string();
    assert!(err.contains("x.tar") && err.contains("FIFO"), "{err}");
    // A link to a good container is followed.
    let src = scratch();
    let real = scratch();
    write(real.path(), "r.tfrecord", b"");
    symlink(real.path().join("r.tfrecord"), src.path().join("l.tfrecord")).unwrap();
    assert_eq!(open_source(src.path(), Some(SourceFormat::TfRecord)).unwrap().len(), 0);
}
