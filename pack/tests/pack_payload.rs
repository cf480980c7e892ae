//! Choosing the payload kind when packing: bytes for text in other
//! encodings, text (validated) for files whose names do not say so.

mod common;

use std::fs;

use common::*;
use ringfeed_pack::{Dataset, PackOptions, Payload, open_source};

#[test]
fn latin1_text_packs_as_bytes_when_asked_and_fails_clearly_otherwise() {
    let src = scratch();
    fs::write(src.path().join("a.txt"), "plain\n").unwrap();
    fs::write(src.path().join("b.txt"), b"caf\xe9 cr\xe8me\n").unwrap();
    let source = open_source(src.path(), None).unwrap();
    let out = scratch();
    let err = ringfeed_pack::pack(&*source, out.path(), &PackOptions::builder().build().unwrap(), |_| {})
        .unwrap_err();
    assert!(err.is_corruption(), "{err}");
    let msg = err.to_string();
    let path = src.path().join("b.txt");
    assert!(msg.contains(&path.display().to_string()) && msg.contains("at byte 3"), "{msg}");
    assert!(msg.contains("--payload bytes"), "{msg}");

    let opts = PackOptions::builder().payload(Payload::Bytes).build().unwrap();
    let m = ringfeed_pack::pack(&*source, out.path(), &opts, |_| {}).unwrap();
    assert_eq!(m.schema.payload, Payload::Bytes);
    let ds = Dataset::open(out.path()).unwrap();
    assert_eq!(ds.record(1).unwrap().payload, b"caf\xe9 cr\xe8me\n");
}

#[test]
fn text_can_be_chosen_for_files_without_text_names_and_is_validated() {
    let src = scratch();
    fs::write(src.path().join("a.dat"), "ünïcode\n").unwrap();
    let source = open_source(src.path(), None).unwrap();
    assert_eq!(source.schema().payload, Payload::Bytes);
    let opts = PackOptions::builder().payload(Payload::Text).build().unwrap();
    let out = scratch();
    assert_eq!(
        ringfeed_pack::pack(&*source, out.path(), &opts, |_| {}).unwrap().schema.payload,
        Payload::Text
    );
    fs::write(src.path().join("b.dat"), [0xffu8]).unwrap();
    let source = open_source(src.path(), None).unwrap();
    let err = ringfeed_pack::pack(&*source, out.path(), &opts, |_| {}).unwrap_err().to_string();
    assert!(err.contains("b.dat") && err.contains("not valid UTF-8"), "{err}");
}

#[test]
fn only_bytes_or_text_can_be_chosen() {
    let err = PackOptions::builder().payload(Payload::Image).build().unwrap_err().to_string();
    assert!(err.contains("bytes or text"), "{err}");
}
