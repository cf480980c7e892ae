//! FFRecord source: the fixture (written by make_fixtures.py's
//! implementation of HFAiLab ffrecord's fileio.py, since the package is not
//! on PyPI), packing it, and damaged copies.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::assert_corrupt;
use ringfeed_pack::{Dataset, Error, FfRecordSource, PackOptions, Payload, Source};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ffrecord")
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// (file name, [(len, crc32)]) per fixture file.
fn expected_files() -> Vec<(String, Vec<(u64, u32)>)> {
    let v: Value =
        serde_json::from_str(&fs::read_to_string(fixture_dir().join("expected.json")).unwrap()).unwrap();
    common::records_by_file(&v)
}

/// The first fixture file (4 samples), as bytes.
fn first_file() -> (String, Vec<u8>) {
    let name = expected_files().remove(0).0;
    let bytes = fs::read(fixture_dir().join(&name)).unwrap();
    (name, bytes)
}

fn write_copy(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = scratch();
    let path = dir.path().join(name);
    fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// A damaged copy of the first file; `fix_checksum` re-seals the header so
/// that only the structural checks can object.
fn damaged(fix_checksum: bool, damage: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, PathBuf) {
    let (name, mut b) = first_file();
    damage(&mut b);
    if fix_checksum {
        let n = u64::from_le_bytes(b[4..12].try_into().unwrap()) as usize;
        let crc = crc32fast::hash(&b[4..12 + 12 * n]);
        b[..4].copy_from_slice(&crc.to_le_bytes());
    }
    write_copy(&name, &b)
}

/// Offset of the field holding sample `i`'s offset in a 4-sample file.
fn offset_field(i: u64) -> u64 {
    12 + 4 * 4 + 8 * i
}

fn sample_offset(b: &[u8], i: usize) -> u64 {
    let at = offset_field(i as u64) as usize;
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn samples_match_the_fixture() {
    let src = FfRecordSource::open(fixture_dir()).unwrap();
    assert_eq!(src.format(), "ffrecord");
    let schema = src.schema();
    assert_eq!((schema.payload, schema.labels, schema.keys), (Payload::Bytes, false, false));
    let want: Vec<(u64, u32)> = expected_files().into_iter().flat_map(|(_, r)| r).collect();
    assert_eq!(src.len(), want.len());
    for (i, &(len, crc)) in want.iter().enumerate() {
        let payload = src.read(i).unwrap();
        assert_eq!(src.item(i).size, len, "sample {i}");
        assert_eq!(payload.len() as u64, len, "sample {i}");
        assert_eq!(crc32fast::hash(&payload), crc, "sample {i}");
    }
}

#[test]
fn packs_and_reads_back() {
    let src = FfRecordSource::open(fixture_dir()).unwrap();
    let out = scratch();
    let m = ringfeed_pack::pack(&src, out.path(), &PackOptions::builder().build().unwrap(), |_| {}).unwrap();
    assert_eq!(m.source, "ffrecord");
    let ds = Dataset::open(out.path()).unwrap();
    assert_eq!(ds.len(), src.len() as u64);
    for i in 0..src.len() {
        assert_eq!(ds.record(i as u64).unwrap().payload, src.read(i).unwrap(), "sample {i}");
    }
}

#[test]
fn zero_samples_is_a_valid_file() {
    let mut b = vec![0u8; 12];
    b[..4].copy_from_slice(&crc32fast::hash(&[0u8; 8]).to_le_bytes());
    let (_d, path) = write_copy("empty.ffr", &b);
    assert_eq!(FfRecordSource::open(&path).unwrap().len(), 0);
}

#[test]
fn bad_header_checksum_is_corrupt() {
    // A sample checksum, an offset, and the stored checksum itself.
    for at in [12 + 5, offset_field(2) as usize + 1, 0] {
        let (_d, path) = damaged(false, |b| b[at] ^= 0x04);
        let err = FfRecordSource::open(&path).unwrap_err();
        assert_corrupt(&err, &path, 0);
        assert!(err.to_string().contains("header checksum"), "{err}");
    }
}

#[test]
fn out_of_order_offsets_are_corrupt_even_with_a_valid_checksum() {
    let (_d, path) = damaged(true, |b| {
        let (o2, o3) = (offset_field(2) as usize, offset_field(3) as usize);
        let third = b[o2..o2 + 8].to_vec();
        b.copy_within(o3..o3 + 8, o2);
        b[o3..o3 + 8].copy_from_slice(&third);
    });
    let err = FfRecordSource::open(&path).unwrap_err();
    assert_corrupt(&err, &path, offset_field(3));
    assert!(err.to_string().contains("(record 3)"), "{err}");
}

#[test]
fn first_offset_inside_the_header_is_corrupt() {
    let (_d, path) = damaged(true, |b| {
        let at = offset_field(0) as usize;
        b[at..at + 8].copy_from_slice(&20u64.to_le_bytes());
    });
    assert_corrupt(&FfRecordSource::open(&path).unwrap_err(), &path, offset_field(0));
}

#[test]
fn huge_sample_count_is_rejected_before_allocating() {
    for n in [1u64 << 40, u64::MAX / 12, u64::MAX] {
        let (_d, path) = damaged(false, |b| b[4..12].copy_from_slice(&n.to_le_bytes()));
        let err = FfRecordSource::open(&path).unwrap_err();
        assert_corrupt(&err, &path, 4);
        assert!(err.to_string().contains(&format!("sample count {n}")), "{err}");
    }
}

#[test]
fn truncation_inside_the_header_is_corrupt() {
    for keep in [0, 7, 12, 40] {
        let (_d, path) = damaged(false, |b| b.truncate(keep));
        let err = FfRecordSource::open(&path).unwrap_err();
        assert_corrupt(&err, &path, if keep < 12 { 0 } else { 4 });
    }
}

#[test]
fn truncation_before_a_sample_names_its_offset() {
    let (name, b) = first_file();
    let last = sample_offset(&b, 3);
    let (_d, path) = write_copy(&name, &b[..last as usize - 1]);
    let err = FfRecordSource::open(&path).unwrap_err();
    assert_corrupt(&err, &path, offset_field(3));
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn truncated_last_sample_fails_its_crc_on_read() {
    let (name, b) = first_file();
    let (_d, path) = write_copy(&name, &b[..b.len() - 1]);
    let src = FfRecordSource::open(&path).unwrap();
    src.read(2).unwrap();
    let err = src.read(3).unwrap_err();
    assert_corrupt(&err, &path, sample_offset(&b, 3));
    assert!(err.to_string().contains("(record 3)"), "{err}");
}

#[test]
fn flipped_sample_byte_fails_on_read_only_for_that_sample() {
    let (name, mut b) = first_file();
    let third = sample_offset(&b, 2);
    b[third as usize + 17] ^= 0x20;
    let (_d, path) = write_copy(&name, &b);
    let src = FfRecordSource::open(&path).unwrap();
    for i in [0, 1, 3] {
        src.read(i).unwrap();
    }
    assert_corrupt(&src.read(2).unwrap_err(), &path, third);
}

#[test]
fn damage_anywhere_never_panics() {
    let (name, b) = first_file();
    let dir = scratch();
    let path = dir.path().join(&name);
    let check = |e: Error| assert!(e.is_corruption(), "{e}");
    for at in (0..b.len()).step_by(7) {
        let mut flipped = b.clone();
        flipped[at] ^= 0x42;
        for bytes in [&flipped[..], &b[..at]] {
            fs::write(&path, bytes).unwrap();
            match FfRecordSource::open(&path) {
                Ok(src) => (0..src.len()).filter_map(|i| src.read(i).err()).for_each(check),
                Err(e) => check(e),
            }
        }
        // A flipped byte is always noticed, at open or on read.
        fs::write(&path, &flipped).unwrap();
        let src = FfRecordSource::open(&path);
        assert!(src.is_err() || (0..4).any(|i| src.as_ref().unwrap().read(i).is_err()), "flip at {at}");
    }
}
