//! WebDataset tar source: fixtures written by `webdataset.TarWriter` and
//! compared with what `webdataset.WebDataset` yields (see
//! scripts/fixtures/make_fixtures.py), packing them, grouping corner cases
//! and damaged shards.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::assert_corrupt;
use ringfeed_pack::{Dataset, Error, MAX_RECORD_LEN, PackOptions, Payload, Source, TarSource, split_parts};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tar")
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// One sample as the reference reader saw it.
#[derive(Debug)]
struct Want {
    key: String,
    label: i64,
    /// (extension, len, crc32), sorted by extension.
    members: Vec<(String, u64, u32)>,
}

fn expected(set: &str) -> Vec<Want> {
    let v: Value =
        serde_json::from_str(&fs::read_to_string(fixture_dir().join("expected.json")).unwrap()).unwrap();
    v[set]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let mut members: Vec<(String, u64, u32)> = s["members"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(ext, m)| {
                    (ext.clone(), m["len"].as_u64().unwrap(), m["crc32"].as_u64().unwrap() as u32)
                })
                .collect();
            members.sort();
            Want { key: s["key"].as_str().unwrap().into(), label: s["label"].as_i64().unwrap(), members }
        })
        .collect()
}

/// Checks every sample of `src` against the reference, returning payloads.
fn check_against_reference(src: &TarSource, want: &[Want]) -> Vec<Vec<u8>> {
    assert_eq!(src.len(), want.len());
    let mut payloads = Vec::new();
    for (i, w) in want.iter().enumerate() {
        let item = src.item(i);
        assert_eq!(item.key, Some(w.key.as_str()), "sample {i}");
        assert_eq!(item.label, w.label, "sample {i}");
        let payload = src.read(i).unwrap();
        assert_eq!(item.size, payload.len() as u64, "sample {i}");
        let members = if w.members.len() == 1 { vec![&payload[..]] } else { split_parts(&payload).unwrap() };
        let got: Vec<(u64, u32)> = members.iter().map(|m| (m.len() as u64, crc32fast::hash(m))).collect();
        let exp: Vec<(u64, u32)> = w.members.iter().map(|&(_, len, crc)| (len, crc)).collect();
        assert_eq!(got, exp, "sample {i} ({})", w.key);
        payloads.push(payload);
    }
    payloads
}

fn pack_and_compare(src: &TarSource, payloads: &[Vec<u8>]) -> ringfeed_pack::Manifest {
    let out = scratch();
    let m = ringfeed_pack::pack(src, out.path(), &PackOptions::builder().build().unwrap(), |_| {}).unwrap();
    let ds = Dataset::open(out.path()).unwrap();
    assert_eq!(ds.len(), payloads.len() as u64);
    for (i, p) in payloads.iter().enumerate() {
        let rec = ds.record(i as u64).unwrap();
        assert_eq!(&rec.payload, p, "record {i}");
        assert_eq!(Some(rec.key.as_str()), src.item(i).key, "record {i}");
        assert_eq!(rec.label, src.item(i).label, "record {i}");
    }
    m
}

#[test]
fn single_member_shards_match_webdataset() {
    let src = TarSource::open(fixture_dir().join("images")).unwrap();
    assert_eq!(src.format(), "tar");
    let schema = src.schema();
    assert_eq!((schema.payload, schema.labels, schema.keys), (Payload::Image, true, true));
    let payloads = check_against_reference(&src, &expected("images"));
    let m = pack_and_compare(&src, &payloads);
    assert_eq!(m.schema.payload, Payload::Image);
    assert!(m.classes.is_empty());
}

#[test]
fn multi_member_samples_match_webdataset() {
    let src = TarSource::open(fixture_dir().join("multi.tar")).unwrap();
    let want = expected("multi");
    let parts: Vec<String> = want[0].members.iter().map(|m| m.0.clone()).collect();
    assert_eq!(parts, ["jpg", "json", "seg.png"]);
    let schema = src.schema();
    assert_eq!((schema.payload, schema.labels, schema.keys), (Payload::Multipart { parts }, true, true));
    // The third key is longer than a ustar name: it came from a pax header.
    assert!(want[2].key.len() > 100);
    let payloads = check_against_reference(&src, &want);
    pack_and_compare(&src, &payloads);
}

/// A tar built with the `tar` crate from (name, entry type, data).
fn build(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for &(name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn files(entries: &[(&str, &[u8])]) -> Vec<u8> {
    build(&entries.iter().map(|&(n, d)| (n, tar::EntryType::Regular, d)).collect::<Vec<_>>())
}

fn write_tar(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = scratch();
    let path = dir.path().join("shard.tar");
    fs::write(&path, bytes).unwrap();
    (dir, path)
}

#[test]
fn grouping_follows_webdataset() {
    use tar::EntryType::{Directory, Regular, Symlink};
    let tar = build(&[
        ("__meta__", Regular, b"skipped: meta entry"),
        ("__info__/x.txt", Regular, b"skipped: meta directory"),
        ("dir/", Directory, b""),
        ("README", Regular, b"skipped: no extension"),
        ("x/a.TXT", Regular, b"first a"),
        ("x/b.txt", Regular, b"b"),
        ("x/c.txt", Symlink, b""),
        ("x/a.txt", Regular, b"second a: not consecutive, so a new sample"),
        ("v1.0/d.txt", Regular, b"a dot in the directory is not the key's end"),
    ]);
    let (_d, path) = write_tar(&tar);
    let src = TarSource::open(&path).unwrap();
    let schema = src.schema();
    assert_eq!((schema.payload, schema.labels, schema.keys), (Payload::Text, false, true));
    let keys: Vec<_> = (0..src.len()).map(|i| src.item(i).key.unwrap()).collect();
    assert_eq!(keys, ["x/a", "x/b", "x/a", "v1.0/d"]);
    assert_eq!(src.read(0).unwrap(), b"first a");
    assert_eq!(src.read(2).unwrap(), b"second a: not consecutive, so a new sample");
}

#[test]
fn payload_kind_follows_the_single_extension() {
    let (_d, path) = write_tar(&files(&[("a.npy", b"\x93NUMPY"), ("b.npy", b"")]));
    assert_eq!(TarSource::open(&path).unwrap().schema().payload, Payload::Bytes);
    let (_d, path) = write_tar(&files(&[("a.PNG", b"png"), ("a.label", b" -4\n")]));
    let src = TarSource::open(&path).unwrap();
    assert_eq!(src.schema().payload, Payload::Image);
    assert_eq!(src.item(0).label, -4);
    let (_d, path) = write_tar(&files(&[]));
    assert_eq!(TarSource::open(&path).unwrap().len(), 0);
}

#[test]
fn text_member_that_is_not_utf8_fails_the_pack() {
    let (_d, path) = write_tar(&files(&[("a.txt", b"fine"), ("b.txt", b"ab\xffcd")]));
    let src = TarSource::open(&path).unwrap();
    // The packer checks what the text schema promises (a caller may
    // choose the bytes payload instead), naming the tar and the byte:
    // b.txt's data follows a.txt's header and padded data, and its header.
    let out = scratch();
    let err =
        ringfeed_pack::pack(&src, out.path(), &PackOptions::builder().build().unwrap(), |_| {}).unwrap_err();
    assert_corrupt(&err, &path, 3 * 512 + 2);
}

#[test]
fn corrupt_header_is_corrupt() {
    let mut b = fs::read(fixture_dir().join("multi.tar")).unwrap();
    b[1024 + 3] ^= 0x01; // the name of the second member's header
    let (_d, path) = write_tar(&b);
    let err = TarSource::open(&path).unwrap_err();
    assert_corrupt(&err, &path, 1024);
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn truncated_tar_is_corrupt() {
    let b = fs::read(fixture_dir().join("multi.tar")).unwrap();
    // (cut at, offset named): inside member data; inside a header; at a
    // member boundary, where only the missing end-of-archive block tells.
    for (cut, at) in [(1024 + 512 + 100, 1024), (2560 + 100, 2560), (2560, 2560), (0, 0)] {
        let (_d, path) = write_tar(&b[..cut]);
        let err = TarSource::open(&path).unwrap_err();
        assert_corrupt(&err, &path, at);
    }
}

#[test]
fn mixed_member_sets_are_corrupt() {
    let tar = files(&[("a.jpg", b"1"), ("a.json", b"{}"), ("b.jpg", b"2"), ("b.txt", b"x")]);
    let (_d, path) = write_tar(&tar);
    let err = TarSource::open(&path).unwrap_err();
    assert_corrupt(&err, &path, 2048);
    assert!(err.to_string().contains("sample \"b\""), "{err}");
}

#[test]
fn sample_with_only_a_label_is_corrupt() {
    let (_d, path) = write_tar(&files(&[("a.cls", b"1"), ("b.cls", b"2")]));
    let err = TarSource::open(&path).unwrap_err();
    assert_corrupt(&err, &path, 0);
    assert!(err.to_string().contains("sample \"a\" has no members"), "{err}");
}

#[test]
fn labels_on_some_samples_only_are_corrupt() {
    let tar = files(&[("a.cls", b"1"), ("a.jpg", b"1"), ("b.jpg", b"2")]);
    let (_d, path) = write_tar(&tar);
    let err = TarSource::open(&path).unwrap_err();
    assert_corrupt(&err, &path, 2048);
    assert!(err.to_string().contains("\"b\""), "{err}");
}

#[test]
fn unparsable_or_oversized_cls_is_corrupt() {
    let long = [b' '; 300];
    for cls in [&b"seven"[..], b"", b"1.5", b"99999999999999999999", &long] {
        let (_d, path) = write_tar(&files(&[("a.jpg", b"1"), ("a.cls", cls)]));
        let err = TarSource::open(&path).unwrap_err();
        assert_corrupt(&err, &path, 1024);
        assert!(err.to_string().contains("a.cls"), "{err}");
    }
}

#[test]
fn repeated_extension_in_a_sample_is_corrupt() {
    let (_d, path) = write_tar(&files(&[("a.jpg", b"1"), ("a.JPG", b"2")]));
    let err = TarSource::open(&path).unwrap_err();
    assert_corrupt(&err, &path, 1024);
    let (_d, path) = write_tar(&files(&[("a.cls", b"1"), ("a.label", b"2"), ("a.jpg", b"")]));
    assert_corrupt(&TarSource::open(&path).unwrap_err(), &path, 1024);
}

#[test]
fn oversized_sample_is_unsupported() {
    let mut h = tar::Header::new_ustar();
    h.set_path("big.bin").unwrap();
    h.set_size(MAX_RECORD_LEN + 1);
    h.set_mode(0o644);
    h.set_cksum();
    let (_d, path) = write_tar(h.as_bytes());
    // Sparse: the member's data and the end blocks exist without being written.
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(512 + (MAX_RECORD_LEN + 1).next_multiple_of(512) + 1024).unwrap();
    let err = TarSource::open(&path).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("at byte 0"), "{err}");
}

/// Opens `path` and reads every sample; damage must surface as an error
/// about the data, never as a panic or an I/O error.
fn open_and_read_all(path: &Path) {
    let check = |e: Error| assert!(e.is_corruption() || matches!(e, Error::Unsupported { .. }), "{e}");
    match TarSource::open(path) {
        Ok(src) => (0..src.len()).filter_map(|i| src.read(i).err()).for_each(check),
        Err(e) => check(e),
    }
}

#[test]
fn damage_anywhere_never_panics() {
    let b = fs::read(fixture_dir().join("multi.tar")).unwrap();
    let dir = scratch();
    let path = dir.path().join("multi.tar");
    for at in (0..b.len()).step_by(29) {
        let mut flipped = b.clone();
        flipped[at] ^= 0x5a;
        fs::write(&path, &flipped).unwrap();
        open_and_read_all(&path);
        fs::write(&path, &b[..at]).unwrap();
        open_and_read_all(&path);
    }
}
