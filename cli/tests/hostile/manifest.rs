//! Cases about a manifest that lies or is damaged: a flipped bit, a cut
//! file, a shard listed twice, duplicate class names (the last two with
//! the checksum recomputed, as a deliberate edit would), a newer version.
//! Damage is exit 1, a version this build does not read exit 2. Problems
//! `verify` reports on stdout (shards the manifest does not list, labels
//! outside the classes) and manifests from before the checksum are tested
//! after the table.

use std::path::Path;

use serde_json::Value;

use super::{Case, ringfeed, s, save};
use crate::dataset_files::nothing;

/// Replaces `ds/manifest.json` (saved first) with `edit` of its bytes.
fn replace_manifest(root: &Path, edit: impl FnOnce(Vec<u8>) -> Vec<u8>) {
    let path = root.join("ds/manifest.json");
    let good = std::fs::read(&path).unwrap();
    save(root, "ds/manifest.json");
    std::fs::write(&path, edit(good)).unwrap();
}

/// Edits the manifest as JSON and writes it back with a fresh checksum.
fn reseal(root: &Path, edit: impl FnOnce(&mut Value)) {
    replace_manifest(root, |good| {
        let mut v: Value = serde_json::from_slice(&good).unwrap();
        edit(&mut v);
        serde_json::from_value::<ringfeed::Manifest>(v).unwrap().to_bytes()
    });
}

/// One bit of the first shard's `payload_bytes` flipped (the lowest bit of
/// its first digit: still a number, one the shard does not check).
fn flip_shard_size(root: &Path) -> Option<std::fs::File> {
    replace_manifest(root, |mut b| {
        let key = b"\"payload_bytes\": ";
        let total = b.windows(key.len()).position(|w| w == key).unwrap() + key.len();
        let at = total + b[total..].windows(key.len()).position(|w| w == key).unwrap() + key.len();
        assert!(b[at].is_ascii_digit());
        b[at] ^= 1;
        b
    });
    None
}

fn cut_manifest(root: &Path) -> Option<std::fs::File> {
    replace_manifest(root, |b| b[..b.len() / 2].to_vec());
    None
}

fn shard_listed_twice(root: &Path) -> Option<std::fs::File> {
    reseal(root, |m| {
        let first = m["shards"][0].clone();
        m["shards"].as_array_mut().unwrap().push(first.clone());
        for key in ["records", "payload_bytes", "bytes"] {
            m[key] = (m[key].as_u64().unwrap() + first[key].as_u64().unwrap()).into();
        }
    });
    None
}

fn duplicate_classes(root: &Path) -> Option<std::fs::File> {
    reseal(root, |m| {
        m["schema"]["labels"] = true.into();
        m["classes"] = serde_json::json!(["c0", "c0"]);
    });
    None
}

fn newer_version(root: &Path) -> Option<std::fs::File> {
    reseal(root, |m| m["version"] = 3.into());
    None
}

pub(crate) const CASES: &[Case] = &[
    Case {
        name: "verify a manifest with a bit flipped in a shard size",
        args: &["verify", "{ds}"],
        before: flip_shard_size,
        code: 1,
        shell: "",
        message: "manifest checksum mismatch",
    },
    Case {
        name: "inspect a manifest with a bit flipped in a shard size",
        args: &["inspect", "{ds}"],
        before: flip_shard_size,
        code: 1,
        shell: "",
        message: "manifest checksum mismatch",
    },
    Case {
        name: "order from a manifest with a bit flipped in a shard size",
        args: &["order", "{ds}"],
        before: flip_shard_size,
        code: 1,
        shell: "",
        message: "manifest checksum mismatch",
    },
    Case {
        name: "verify a manifest cut in half",
        args: &["verify", "{ds}"],
        before: cut_manifest,
        code: 1,
        shell: "",
        message: "invalid manifest",
    },
    Case {
        name: "verify a manifest listing a shard twice (checksum recomputed)",
        args: &["verify", "{ds}"],
        before: shard_listed_twice,
        code: 1,
        shell: "",
        message: "\"shard-00000.rfp\" is listed twice",
    },
    Case {
        name: "verify a manifest naming a class twice (checksum recomputed)",
        args: &["verify", "{ds}"],
        before: duplicate_classes,
        code: 1,
        shell: "",
        message: "class name \"c0\" is listed twice",
    },
    Case {
        name: "verify a manifest of a newer version",
        args: &["verify", "{ds}"],
        before: newer_version,
        code: 2,
        shell: "",
        message: "manifest version 3",
    },
    Case {
        name: "verify an untouched dataset",
        args: &["verify", "{ds}"],
        before: nothing,
        code: 0,
        shell: "",
        message: "",
    },
];

/// A dataset of 40 records labelled 0 and 1 in classes `c0` and `c1`,
/// in several shards, in `root/ds`.
fn packed(root: &Path) -> std::path::PathBuf {
    let ds = root.join("ds");
    let schema = ringfeed::Schema { payload: ringfeed::Payload::Bytes, labels: true, keys: true };
    let mut w = ringfeed::PackWriter::builder(&ds)
        .shard_size(16 << 10)
        .schema(schema)
        .classes(vec!["c0".into(), "c1".into()])
        .build()
        .unwrap();
    for i in 0..40u32 {
        let body: Vec<u8> = (0..(i * 53 % 3000 + 10)).map(|b| (b ^ i) as u8).collect();
        w.push(&body, i64::from(i % 2), Some(&format!("c{}/{i:04}.bin", i % 2))).unwrap();
    }
    w.finish().unwrap();
    ds
}

fn verify_json(ds: &Path) -> (Option<i32>, Value) {
    let o = ringfeed(&["verify", "--json", s(ds)]);
    (o.status.code(), serde_json::from_slice(&o.stdout).unwrap())
}

/// What `verify` reports about one dataset, without an error: exit 1 and
/// each problem in the JSON.
#[test]
fn verify_reports_unlisted_shards_and_labels_outside_the_classes() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ds = packed(dir.path());
    let (code, good) = verify_json(&ds);
    assert_eq!(code, Some(0), "{good}");
    let shards = good["shards"].as_u64().unwrap();
    assert!(shards >= 3, "{good}");
    let last = format!("shard-{:05}.rfp", shards - 1);

    // The last shard's entry removed, the checksum recomputed: the manifest
    // is consistent, but the shard file is still there.
    reseal(dir.path(), |m| {
        let last = m["shards"].as_array_mut().unwrap().pop().unwrap();
        for key in ["records", "payload_bytes", "bytes"] {
            m[key] = (m[key].as_u64().unwrap() - last[key].as_u64().unwrap()).into();
        }
    });
    let (code, report) = verify_json(&ds);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["problems"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["problems"][0]["shard"], last.as_str(), "{report}");
    assert!(report["problems"][0]["reason"].as_str().unwrap().contains("does not list"), "{report}");
    super::restore(dir.path());

    // One class name fewer: every record labelled 1 is outside the classes.
    reseal(dir.path(), |m| {
        m["classes"].as_array_mut().unwrap().pop();
    });
    let (code, report) = verify_json(&ds);
    assert_eq!(code, Some(1), "{report}");
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 20, "{report}");
    assert!(
        problems.iter().all(|p| p["reason"] == "label 1 names no class (the manifest lists 1)"),
        "{report}"
    );
    super::restore(dir.path());
    assert_eq!(verify_json(&ds).0, Some(0));
}

/// A manifest written before the checksum existed (version 1) still
/// verifies, with a note saying it is unprotected.
#[test]
fn verify_accepts_a_version_1_manifest_with_a_note() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ds = packed(dir.path());
    replace_manifest(dir.path(), |good| {
        let mut v: Value = serde_json::from_slice(&good).unwrap();
        v.as_object_mut().unwrap().remove("manifest_crc32c").unwrap();
        v["version"] = 1.into();
        serde_json::to_vec_pretty(&v).unwrap()
    });
    let (code, report) = verify_json(&ds);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["clean"], true, "{report}");
    assert!(report["notes"][0].as_str().unwrap().contains("no checksum"), "{report}");
    let o = ringfeed(&["verify", s(&ds)]);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.lines().any(|l| l.starts_with("note: ") && l.contains("no checksum")), "{out}");
}
