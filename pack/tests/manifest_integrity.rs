//! A manifest that lies (issue #13): every single-bit flip of a real
//! manifest, shard entries removed or listed twice, duplicate class names,
//! labels outside the classes, keys that are not UTF-8, shard files the
//! manifest does not list. None may open or verify clean; manifests written
//! before the checksum (version 1) still open and verify, with a note.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use ringfeed_pack::{Dataset, Error, Manifest, PackWriter, Payload, Schema, verify};
use serde_json::Value;

const CLASSES: [&str; 3] = ["cat", "dog", "eel"];

/// 12 records in three classes, with keys, in three shards.
fn packed() -> tempfile::TempDir {
    let dir = scratch();
    let schema = Schema { payload: Payload::Bytes, labels: true, keys: true };
    let mut w = PackWriter::builder(dir.path())
        .shard_size(450)
        .schema(schema)
        .classes(CLASSES.iter().map(|c| c.to_string()).collect())
        .source("api")
        .build()
        .unwrap();
    for i in 0..12u64 {
        w.push(
            &bytes(i, 100 + i as usize),
            (i % 3) as i64,
            Some(&format!("{}/{i:02}.bin", CLASSES[(i % 3) as usize])),
        )
        .unwrap();
    }
    let m = w.finish().unwrap();
    assert_eq!(m.shards.len(), 3, "the test wants several shards");
    dir
}

fn manifest_path(dir: &Path) -> PathBuf {
    dir.join("manifest.json")
}

fn read_json(dir: &Path) -> Value {
    serde_json::from_slice(&fs::read(manifest_path(dir)).unwrap()).unwrap()
}

/// Edits the manifest as JSON and writes it back with a fresh checksum, as
/// a tool that lies on purpose would: only the content checks can notice.
fn edit_sealed(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let mut v = read_json(dir);
    edit(&mut v);
    let m: Manifest = serde_json::from_value(v).unwrap();
    fs::write(manifest_path(dir), m.to_bytes()).unwrap();
}

/// Edits the manifest as JSON and writes it back as it is (the checksum
/// now stale, unless the edit removed it).
fn edit_raw(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let mut v = read_json(dir);
    edit(&mut v);
    fs::write(manifest_path(dir), serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// Rewrites the manifest as version 1 wrote it: no checksum.
fn downgrade_to_v1(dir: &Path) {
    edit_raw(dir, |m| {
        m.as_object_mut().unwrap().remove("manifest_crc32c").expect("a v2 manifest has a checksum");
        m["version"] = 1.into();
    });
}

/// Removes the last shard entry and corrects the totals, so that the
/// manifest is consistent with itself.
fn drop_last_shard(m: &mut Value) {
    let last = m["shards"].as_array_mut().unwrap().pop().unwrap();
    for key in ["records", "payload_bytes", "bytes"] {
        m[key] = (m[key].as_u64().unwrap() - last[key].as_u64().unwrap()).into();
    }
}

/// Lists shard 0 twice and corrects the totals.
fn list_first_shard_twice(m: &mut Value) {
    let first = m["shards"][0].clone();
    m["shards"].as_array_mut().unwrap().push(first.clone());
    for key in ["records", "payload_bytes", "bytes"] {
        m[key] = (m[key].as_u64().unwrap() + first[key].as_u64().unwrap()).into();
    }
}

/// Whether the dataset passes as clean: it opens and verifies without a
/// problem. An error from `verify` must be a corruption (exit 1), not an
/// unsupported version or an I/O error. (Opening may also fail on a shard
/// the manifest names wrongly, which `verify` reports as missing.)
fn passes(dir: &Path) -> bool {
    let opened = Dataset::open(dir);
    let verified = verify(dir, |_| {});
    if let Err(err) = &verified {
        assert!(err.is_corruption(), "a damaged manifest must be a corruption error: {err}");
    }
    match verified {
        Ok(report) => {
            let clean = report.is_clean();
            assert!(!(clean && opened.is_err()), "verify is clean but open fails: {report:?}");
            clean
        }
        Err(_) => false,
    }
}

/// Flips each bit of the manifest in turn; returns the number of flips and
/// the byte offsets of those that still pass as clean. With `sealed`, each
/// flip must be refused as a damaged manifest, before any shard is opened.
fn flips_that_pass(dir: &Path, sealed: bool) -> (usize, Vec<usize>) {
    let path = manifest_path(dir);
    let good = fs::read(&path).unwrap();
    let mut passed = Vec::new();
    for at in 0..good.len() {
        for bit in 0..8 {
            let mut b = good.clone();
            b[at] ^= 1 << bit;
            fs::write(&path, &b).unwrap();
            if passes(dir) {
                passed.push(at);
            }
            if sealed {
                let err = verify(dir, |_| {}).unwrap_err();
                assert!(err.to_string().contains("manifest.json"), "byte {at} bit {bit}: {err}");
            }
        }
    }
    fs::write(&path, &good).unwrap();
    (good.len() * 8, passed)
}

#[test]
fn no_single_bit_flip_of_a_manifest_passes() {
    let dir = packed();
    assert!(passes(dir.path()), "the untouched dataset is clean");
    let (flips, passed) = flips_that_pass(dir.path(), true);
    eprintln!("version 2: {flips} single-bit flips of manifest.json, {} verify clean", passed.len());
    assert!(passed.is_empty(), "flips at these bytes verify clean: {passed:?}");
    assert!(passes(dir.path()), "the restored dataset is clean again");
}

/// Without a checksum, version 1 catches what the content allows: counts,
/// sizes and checksums that disagree with the shards, names that are not
/// listed. What it cannot catch is a changed name (a class, the source).
#[test]
fn version_1_bit_flips_that_pass_change_only_names() {
    let dir = packed();
    downgrade_to_v1(dir.path());
    let text = fs::read_to_string(manifest_path(dir.path())).unwrap();
    let (flips, passed) = flips_that_pass(dir.path(), false);
    eprintln!("version 1: {flips} single-bit flips of manifest.json, {} verify clean", passed.len());
    // Byte ranges of the class names and the source name (inside quotes).
    let names: Vec<(usize, usize)> = CLASSES
        .iter()
        .chain(&["api"])
        .map(|name| {
            let quoted = format!("\"{name}\"");
            let at = text.find(&quoted).unwrap() + 1;
            (at, at + name.len())
        })
        .collect();
    for at in &passed {
        assert!(
            names.iter().any(|&(lo, hi)| (lo..hi).contains(at)),
            "a flip at byte {at} ({:?}) passes but is not inside a name",
            &text[at.saturating_sub(20)..(at + 20).min(text.len())]
        );
    }
}

#[test]
fn version_1_manifest_opens_and_verifies_with_a_note() {
    let dir = packed();
    downgrade_to_v1(dir.path());
    let ds = Dataset::open(dir.path()).unwrap();
    assert_eq!((ds.manifest().version, ds.len()), (1, 12));
    assert!(ds.manifest().is_unprotected());
    let report = verify(dir.path(), |_| {}).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.notes.len(), 1, "{report:?}");
    assert!(report.notes[0].contains("no checksum"), "{report:?}");

    // A fresh pack writes version 2 and no note.
    let dir = packed();
    assert_eq!(read_json(dir.path())["version"], 2);
    let report = verify(dir.path(), |_| {}).unwrap();
    assert!(report.is_clean() && report.notes.is_empty(), "{report:?}");
}

#[test]
fn a_removed_last_shard_entry_is_caught() {
    // Edited by hand: the checksum no longer matches.
    let dir = packed();
    edit_raw(dir.path(), drop_last_shard);
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(err.is_corruption() && err.to_string().contains("checksum mismatch"), "{err}");

    // Resealed, or in a version 1 manifest: the manifest is consistent, so
    // it opens (as the smaller dataset it describes), but verify finds the
    // shard file it no longer lists.
    for v1 in [false, true] {
        let dir = packed();
        edit_sealed(dir.path(), drop_last_shard);
        if v1 {
            downgrade_to_v1(dir.path());
        }
        assert_eq!(Dataset::open(dir.path()).unwrap().len(), 8);
        let report = verify(dir.path(), |_| {}).unwrap();
        assert!(!report.is_clean(), "{report:?}");
        assert_eq!(report.problems.len(), 1, "{report:?}");
        let p = &report.problems[0];
        assert_eq!(p.shard, "shard-00002.rfp", "{report:?}");
        assert!(p.reason.contains("does not list"), "{report:?}");
    }
}

#[test]
fn files_that_are_not_shards_are_not_orphans() {
    let dir = packed();
    fs::write(dir.path().join("shard-notes.rfp"), b"my notes").unwrap();
    fs::write(dir.path().join("README"), b"RINGFEE").unwrap();
    fs::create_dir(dir.path().join("extra")).unwrap();
    // A hidden file is a writer's temporary or lock, not part of the data.
    fs::copy(&shard_paths(dir.path())[0], dir.path().join(".shard-00007.rfp.tmp")).unwrap();
    let report = verify(dir.path(), |_| {}).unwrap();
    assert!(report.is_clean(), "{report:?}");

    // A copy of a shard under another name is one.
    fs::copy(&shard_paths(dir.path())[0], dir.path().join("backup.bin")).unwrap();
    let report = verify(dir.path(), |_| {}).unwrap();
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert_eq!(report.problems[0].shard, "backup.bin");
}

#[test]
fn a_shard_listed_twice_is_refused() {
    let dir = packed();
    edit_sealed(dir.path(), list_first_shard_twice);
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("\"shard-00000.rfp\" is listed twice"), "{err}");
    assert!(verify(dir.path(), |_| {}).unwrap_err().is_corruption());
}

#[test]
fn duplicate_class_names_are_refused() {
    let dir = packed();
    edit_sealed(dir.path(), |m| m["classes"][2] = "cat".into());
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(err.is_corruption() && err.to_string().contains("class name \"cat\" is listed twice"), "{err}");
    assert!(verify(dir.path(), |_| {}).unwrap_err().is_corruption());
}

#[test]
fn totals_that_disagree_with_the_shards_are_refused() {
    for key in ["records", "payload_bytes", "bytes"] {
        let dir = packed();
        edit_sealed(dir.path(), |m| m[key] = (m[key].as_u64().unwrap() + 1).into());
        let err = Dataset::open(dir.path()).unwrap_err();
        assert!(err.is_corruption() && err.to_string().contains(&format!("manifest says {key}")), "{err}");
    }
    // A shard's payload size is not known until its index is read.
    let dir = packed();
    edit_sealed(dir.path(), |m| {
        m["shards"][1]["payload_bytes"] = (m["shards"][1]["payload_bytes"].as_u64().unwrap() + 1).into();
        m["payload_bytes"] = (m["payload_bytes"].as_u64().unwrap() + 1).into();
    });
    let report = verify(dir.path(), |_| {}).unwrap();
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert_eq!(report.problems[0].shard, "shard-00001.rfp");
    assert!(report.problems[0].reason.contains("payload bytes"), "{report:?}");
}

#[test]
fn labels_outside_the_classes_are_refused() {
    // Labels 0..3 are stored; the manifest now names two classes.
    let dir = packed();
    edit_sealed(dir.path(), |m| {
        m["classes"].as_array_mut().unwrap().pop();
    });
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(
        matches!(err, Error::Corrupt { record: Some(2), .. })
            && err.to_string().contains("label 2 names no class (the manifest lists 2)"),
        "{err}"
    );
    let report = verify(dir.path(), |_| {}).unwrap();
    // Records 2, 5, 8, 11 carry label 2; shards hold 4 records each.
    let bad: Vec<(String, Option<u64>)> =
        report.problems.iter().map(|p| (p.shard.clone(), p.record)).collect();
    assert_eq!(
        bad,
        [("shard-00000.rfp", 2), ("shard-00001.rfp", 1), ("shard-00002.rfp", 0), ("shard-00002.rfp", 3)]
            .map(|(s, r)| (s.to_string(), Some(r))),
        "{report:?}"
    );

    // Without labels in the schema, every stored label must be 0.
    let dir = packed();
    edit_sealed(dir.path(), |m| {
        m["classes"] = Value::Array(vec![]);
        m["schema"]["labels"] = false.into();
    });
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("label 1 but the schema has no labels"), "{err}");
    assert_eq!(verify(dir.path(), |_| {}).unwrap().problems.len(), 8);

    // Plain integer labels (no class names) may be any i32.
    let dir = packed();
    edit_sealed(dir.path(), |m| m["classes"] = Value::Array(vec![]));
    assert!(passes(dir.path()));
}

/// Recomputes a shard's header CRC and footer checksum after the test
/// edited its key table, and the manifest's record of it.
fn reseal_shard(dir: &Path, shard: &Path, b: &mut [u8]) {
    let (index_offset, footer_offset) = (le_u64(b, 40) as usize, le_u64(b, 64) as usize);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..4096]), &b[index_offset..footer_offset]);
    b[footer_offset + 16..footer_offset + 20].copy_from_slice(&crc.to_le_bytes());
    fs::write(shard, &*b).unwrap();
    let file_crc = crc32c::crc32c(b);
    let name = shard.file_name().unwrap().to_str().unwrap().to_string();
    edit_sealed(dir, |m| {
        for s in m["shards"].as_array_mut().unwrap() {
            if s["file"] == name.as_str() {
                s["index_crc32c"] = crc.into();
                s["file_crc32c"] = file_crc.into();
            }
        }
    });
}

#[test]
fn keys_that_are_not_utf8_are_reported() {
    let dir = packed();
    let shard = shard_paths(dir.path())[1].clone();
    let mut b = fs::read(&shard).unwrap();
    // The key table starts with record 4's key, "dog/04.bin": make its
    // first byte an invalid UTF-8 start byte.
    let keys_offset = le_u64(&b, 48) as usize;
    assert_eq!(&b[keys_offset..keys_offset + 4], b"dog/");
    b[keys_offset] = 0xff;
    reseal_shard(dir.path(), &shard, &mut b);

    let ds = Dataset::open(dir.path()).unwrap();
    let err = ds.record(4).unwrap_err();
    assert!(err.is_corruption() && err.to_string().contains("not UTF-8"), "{err}");
    let report = verify(dir.path(), |_| {}).unwrap();
    assert_eq!(report.problems.len(), 1, "{report:?}");
    let p = &report.problems[0];
    assert_eq!((p.shard.as_str(), p.record), ("shard-00001.rfp", Some(0)), "{report:?}");
    assert!(p.reason.contains("not UTF-8"), "{report:?}");
}

#[test]
fn a_newer_version_is_unsupported_and_a_damaged_one_corrupt() {
    // A version this build does not know, with a valid checksum: newer.
    let dir = packed();
    edit_sealed(dir.path(), |m| m["version"] = 3.into());
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }) && err.to_string().contains("version 3"), "{err}");

    // The same change without the checksum to match: damage.
    let dir = packed();
    edit_raw(dir.path(), |m| m["version"] = 3.into());
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(err.is_corruption() && err.to_string().contains("checksum mismatch"), "{err}");

    // Version 2 without its checksum.
    let dir = packed();
    edit_raw(dir.path(), |m| {
        m.as_object_mut().unwrap().remove("manifest_crc32c");
    });
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(err.is_corruption() && err.to_string().contains("without its manifest_crc32c"), "{err}");

    // A checksum that is not a number.
    let dir = packed();
    edit_raw(dir.path(), |m| m["manifest_crc32c"] = "0x1234".into());
    let err = Dataset::open(dir.path()).unwrap_err();
    assert!(err.is_corruption() && err.to_string().contains("not a 32-bit checksum"), "{err}");
}

/// The checksum covers content, not layout: the manifest may be
/// reformatted (compact, keys reordered) and stays valid; the canonical
/// form is the one `docs/FORMAT.md` spells out.
#[test]
fn the_checksum_is_over_the_documented_canonical_form() {
    let dir = packed();
    // Compact, keys in another order (serde_json's map sorts them).
    let v = read_json(dir.path());
    fs::write(manifest_path(dir.path()), serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(passes(dir.path()));

    // The example in docs/FORMAT.md.
    let example = scratch();
    let canonical = r#"{"bytes":0,"classes":[],"format":"ringfeed-pack","payload_bytes":0,"records":0,"schema":{"keys":false,"labels":false,"payload":{"kind":"bytes"}},"shards":[],"source":"api","version":2}"#;
    assert_eq!(crc32c::crc32c(canonical.as_bytes()), 1314763501);
    let mut doc: Value = serde_json::from_str(canonical).unwrap();
    doc["manifest_crc32c"] = 1314763501u32.into();
    fs::write(manifest_path(example.path()), serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    assert!(passes(example.path()));

    // Escapes: only `"`, `\` and control characters; DEL, non-ASCII and
    // U+2028 stay as they are (what Python's json.dumps writes with
    // ensure_ascii=False). The manifest is written by hand, with other
    // escapes, and its checksum computed from the canonical text.
    let empty = scratch();
    let canonical = "{\"bytes\":0,\"classes\":[\"a\\\"b\",\"\\u0001\u{e9}\\\\\u{7f}\u{2028}\"],\
                     \"format\":\"ringfeed-pack\",\"payload_bytes\":0,\"records\":0,\"schema\":{\"keys\":false,\
                     \"labels\":true,\"payload\":{\"kind\":\"bytes\"}},\"shards\":[],\"source\":\"hand\\nmade\",\"version\":2}";
    let crc = crc32c::crc32c(canonical.as_bytes());
    let stored = format!(
        "{{\n \"version\": 2, \"format\": \"ringfeed-pack\", \"source\": \"hand\\nmade\",\n \
         \"schema\": {{\"payload\": {{\"kind\": \"bytes\"}}, \"labels\": true, \"keys\": false}},\n \
         \"classes\": [\"a\\\"b\", \"\\u0001\\u00e9\\\\\\u007f\\u2028\"], \"records\": 0, \"payload_bytes\": 0, \"bytes\": 0,\n \
         \"shards\": [], \"manifest_crc32c\": {crc}\n}}\n"
    );
    fs::write(manifest_path(empty.path()), stored).unwrap();
    let ds = Dataset::open(empty.path()).unwrap();
    assert_eq!(ds.manifest().classes, ["a\"b", "\u{1}\u{e9}\\\u{7f}\u{2028}"]);
    assert!(verify(empty.path(), |_| {}).unwrap().is_clean());
}

/// A key given twice (a second checksum, a second source) has no one
/// meaning: refused, whichever copy a reader would believe.
#[test]
fn a_key_given_twice_is_refused() {
    for extra in ["\"manifest_crc32c\": 0,", "\"source\": \"other\",", "\"source\": \"api\","] {
        let dir = packed();
        let path = manifest_path(dir.path());
        let text = fs::read_to_string(&path).unwrap().replacen('{', &format!("{{{extra}"), 1);
        fs::write(&path, text).unwrap();
        let err = Dataset::open(dir.path()).unwrap_err();
        assert!(err.is_corruption() && err.to_string().contains("is given twice"), "{extra}: {err}");
    }
}

/// Records with bad labels are listed up to 100 per shard, the rest
/// counted: a truncated class list must not print every record.
#[test]
fn bad_records_are_listed_up_to_a_limit() {
    let dir = scratch();
    let schema = Schema { payload: Payload::Bytes, labels: true, keys: false };
    let mut w =
        PackWriter::builder(dir.path()).schema(schema).classes(vec!["a".into(), "b".into()]).build().unwrap();
    for i in 0..250u64 {
        w.push(&bytes(i, 10), (i % 2) as i64, None).unwrap();
    }
    w.finish().unwrap();
    edit_sealed(dir.path(), |m| {
        m["classes"].as_array_mut().unwrap().pop();
    });
    let report = verify(dir.path(), |_| {}).unwrap();
    assert_eq!(report.problems.len(), 101, "{report:?}");
    assert!(report.problems[..100].iter().all(|p| p.record.is_some()), "{report:?}");
    let last = &report.problems[100];
    assert_eq!(last.record, None);
    assert!(last.reason.starts_with("25 more records with a bad label or key"), "{report:?}");
}

/// Keys where the schema has none, and a shard copy whose name is not
/// UTF-8 (it cannot be listed, so it is reported under a printable name).
#[test]
fn stray_keys_and_unlisted_shards_with_odd_names_are_reported() {
    let dir = packed();
    edit_sealed(dir.path(), |m| m["schema"]["keys"] = false.into());
    let report = verify(dir.path(), |_| {}).unwrap();
    assert_eq!(report.problems.len(), 12, "{report:?}");
    assert!(report.problems.iter().all(|p| p.reason == "record has a key but the schema has no keys"));

    let dir = packed();
    use std::os::unix::ffi::OsStrExt;
    let odd = std::ffi::OsStr::from_bytes(b"shard-\xff.rfp");
    fs::copy(&shard_paths(dir.path())[0], dir.path().join(odd)).unwrap();
    let report = verify(dir.path(), |_| {}).unwrap();
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert_eq!(report.problems[0].shard, "shard-\u{fffd}.rfp");
}
