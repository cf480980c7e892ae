//! TFRecord source: the fixture written by the `tfrecord` Python package
//! (see scripts/fixtures/make_fixtures.py), packing it, and damaged copies.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::assert_corrupt;
use ringfeed_pack::{Dataset, Error, MAX_RECORD_LEN, PackOptions, Payload, Source, TfRecordSource};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tfrecord")
}

fn expected() -> Value {
    serde_json::from_str(&fs::read_to_string(fixture_dir().join("expected.json")).unwrap()).unwrap()
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// (file name, [(len, crc32)]) per fixture file, from the reference reader.
fn expected_files() -> Vec<(String, Vec<(u64, u32)>)> {
    common::records_by_file(&expected())
}

/// Byte offset where each record of a file starts, from the framing.
fn record_starts(lens: &[(u64, u32)]) -> Vec<u64> {
    lens.iter()
        .scan(0u64, |pos, &(len, _)| {
            let start = *pos;
            *pos += 16 + len;
            Some(start)
        })
        .collect()
}

fn masked(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Record starts of the first fixture file, the one `damaged_copy` copies.
fn damaged_starts() -> Vec<u64> {
    record_starts(&expected_files()[0].1)
}

/// A copy of the first fixture file in a scratch dir, with its records.
fn damaged_copy(damage: impl FnOnce(&mut Vec<u8>, &[u64])) -> (tempfile::TempDir, PathBuf) {
    let (name, recs) = expected_files().remove(0);
    let mut bytes = fs::read(fixture_dir().join(&name)).unwrap();
    damage(&mut bytes, &record_starts(&recs));
    let dir = scratch();
    let path = dir.path().join(&name);
    fs::write(&path, bytes).unwrap();
    (dir, path)
}

#[test]
fn records_match_the_reference_reader() {
    let src = TfRecordSource::open(fixture_dir()).unwrap();
    assert_eq!(src.format(), "tfrecord");
    let schema = src.schema();
    assert_eq!((schema.payload, schema.labels, schema.keys), (Payload::TfExample, false, false));
    let want: Vec<(u64, u32)> = expected_files().into_iter().flat_map(|(_, r)| r).collect();
    assert_eq!(src.len(), want.len());
    for (i, &(len, crc)) in want.iter().enumerate() {
        let payload = src.read(i).unwrap();
        assert_eq!(src.item(i).size, len, "record {i}");
        assert_eq!(payload.len() as u64, len, "record {i}");
        assert_eq!(crc32fast::hash(&payload), crc, "record {i}");
        assert_eq!(src.item(i).key, None);
    }
}

#[test]
fn a_single_file_opens_alone() {
    let (name, recs) = expected_files().remove(1);
    let src = TfRecordSource::open(fixture_dir().join(name)).unwrap();
    assert_eq!(src.len(), recs.len());
    assert_eq!(crc32fast::hash(&src.read(1).unwrap()), recs[1].1);
}

#[test]
fn packs_and_reads_back() {
    let src = TfRecordSource::open(fixture_dir()).unwrap();
    let out = scratch();
    let m = ringfeed_pack::pack(&src, out.path(), &PackOptions::builder().build().unwrap(), |_| {}).unwrap();
    assert_eq!(m.source, "tfrecord");
    assert_eq!(m.schema.payload, Payload::TfExample);
    let ds = Dataset::open(out.path()).unwrap();
    assert_eq!(ds.len(), src.len() as u64);
    for i in 0..src.len() {
        assert_eq!(ds.record(i as u64).unwrap().payload, src.read(i).unwrap(), "record {i}");
    }
}

#[test]
fn empty_file_has_no_records_and_empty_dir_is_an_error() {
    let dir = scratch();
    let path = dir.path().join("empty.tfrecord");
    fs::write(&path, b"").unwrap();
    assert_eq!(TfRecordSource::open(&path).unwrap().len(), 0);
    let none = scratch();
    assert!(matches!(TfRecordSource::open(none.path()), Err(Error::Config(_))));
}

#[test]
fn flipped_length_byte_fails_the_length_crc() {
    let (_d, path) = damaged_copy(|b, starts| b[starts[2] as usize] ^= 0x01);
    let err = TfRecordSource::open(&path).unwrap_err();
    assert_corrupt(&err, &path, damaged_starts()[2]);
    assert!(err.to_string().contains("(record 2)"), "{err}");
}

#[test]
fn flipped_length_crc_is_caught() {
    let (_d, path) = damaged_copy(|b, starts| b[starts[1] as usize + 9] ^= 0x80);
    let err = TfRecordSource::open(&path).unwrap_err();
    assert_corrupt(&err, &path, damaged_starts()[1]);
}

#[test]
fn flipped_data_byte_fails_on_read_only_for_that_record() {
    let (_d, path) = damaged_copy(|b, starts| b[starts[3] as usize + 12 + 100] ^= 0xff);
    let src = TfRecordSource::open(&path).unwrap();
    for i in [0, 1, 2, 4] {
        src.read(i).unwrap();
    }
    let err = src.read(3).unwrap_err();
    assert_corrupt(&err, &path, damaged_starts()[3]);
    assert!(err.to_string().contains("(record 3)"), "{err}");
    // Packing stops at the damaged record instead of storing it.
    let out = scratch();
    let err =
        ringfeed_pack::pack(&src, out.path(), &PackOptions::builder().build().unwrap(), |_| {}).unwrap_err();
    assert_corrupt(&err, &path, damaged_starts()[3]);
}

#[test]
fn flipped_data_crc_fails_on_read() {
    let recs = expected_files()[0].1.clone();
    let (_d, path) = damaged_copy(|b, starts| b[(starts[4] + 12 + recs[4].0) as usize] ^= 0x10);
    let src = TfRecordSource::open(&path).unwrap();
    assert_corrupt(&src.read(4).unwrap_err(), &path, damaged_starts()[4]);
}

#[test]
fn truncation_inside_a_record_names_that_record() {
    let (_d, path) = damaged_copy(|b, starts| b.truncate(starts[3] as usize + 40));
    let err = TfRecordSource::open(&path).unwrap_err();
    assert_corrupt(&err, &path, damaged_starts()[3]);
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn truncation_inside_the_last_data_crc_is_caught() {
    let (_d, path) = damaged_copy(|b, _| b.truncate(b.len() - 1));
    let err = TfRecordSource::open(&path).unwrap_err();
    assert_corrupt(&err, &path, damaged_starts()[4]);
}

#[test]
fn trailing_bytes_shorter_than_a_header_are_corrupt() {
    let mut end = 0;
    let (_d, path) = damaged_copy(|b, _| {
        end = b.len() as u64;
        b.extend_from_slice(&[0; 7]);
    });
    let err = TfRecordSource::open(&path).unwrap_err();
    assert_corrupt(&err, &path, end);
    assert!(err.to_string().contains("(record 5)"), "{err}");
}

/// Appends a header whose length CRC is valid, so only the bounds checks
/// can reject it.
fn append_header(b: &mut Vec<u8>, len: u64) -> u64 {
    let at = b.len() as u64;
    let len = len.to_le_bytes();
    b.extend_from_slice(&len);
    b.extend_from_slice(&masked(&len).to_le_bytes());
    at
}

#[test]
fn checksummed_length_past_the_end_is_corrupt() {
    for len in [100, 1 << 40, u64::MAX - 3] {
        let mut at = 0;
        let (_d, path) = damaged_copy(|b, _| {
            at = append_header(b, len);
            b.extend_from_slice(&[0; 50]);
        });
        let err = TfRecordSource::open(&path).unwrap_err();
        assert_corrupt(&err, &path, at);
        assert!(err.to_string().contains("past the end"), "{err}");
    }
}

#[test]
fn checksummed_length_over_the_record_limit_is_unsupported() {
    let mut at = 0;
    let (_d, path) = damaged_copy(|b, _| at = append_header(b, MAX_RECORD_LEN + 1));
    // Sparse: the record "fits" without writing a gigabyte.
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(at + 16 + MAX_RECORD_LEN + 1).unwrap();
    let err = TfRecordSource::open(&path).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains(&format!("at byte {at}")), "{err}");
}

#[test]
fn damage_anywhere_never_panics() {
    let (name, _) = expected_files().remove(0);
    let b = fs::read(fixture_dir().join(&name)).unwrap();
    let dir = scratch();
    let path = dir.path().join(&name);
    let check = |e: Error| assert!(e.is_corruption(), "{e}");
    for at in 0..b.len() {
        let mut flipped = b.clone();
        flipped[at] ^= 0x21;
        for bytes in [&flipped[..], &b[..at]] {
            fs::write(&path, bytes).unwrap();
            match TfRecordSource::open(&path) {
                Ok(src) => (0..src.len()).filter_map(|i| src.read(i).err()).for_each(check),
                Err(e) => check(e),
            }
        }
        // A flipped byte is always noticed, at open or on read.
        fs::write(&path, &flipped).unwrap();
        let src = TfRecordSource::open(&path);
        assert!(src.is_err() || (0..5).any(|i| src.as_ref().unwrap().read(i).is_err()), "flip at {at}");
    }
}
