//! `ringfeed ckpt inspect|verify` on files and sharded sets: exit 0 for a
//! sound checkpoint, 1 for a damaged one (naming the tensor), 2 for a
//! wrong path.

use std::path::Path;
use std::process::{Command, Output};

use ringfeed_ckpt::{Dtype, SaveOptions, TensorRef, save};

fn ringfeed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringfeed")).args(args).output().expect("run ringfeed")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn inspect_and_verify_files_and_sets_with_the_usual_exit_codes() {
    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let w: Vec<u8> = (0..100_000u32).map(|i| (i * 31) as u8).collect();
    let b = [1u8, 2, 3, 4];
    let t = [
        TensorRef::new("w", Dtype::U8, &[100, 1000], &w).unwrap(),
        TensorRef::new("b", Dtype::F32, &[1], &b).unwrap(),
    ];
    let file = d.path().join("model.safetensors");
    save(&file, &t, &SaveOptions::default().metadata("format", "pt")).unwrap();

    let o = ringfeed(&["ckpt", "inspect", "--json", s(&file)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["tensors"].as_u64(), v["data_bytes"].as_u64(), v["checksums"].as_bool()),
        (Some(2), Some(100_004), Some(true))
    );
    assert_eq!(v["files"][0]["tensors"][0]["shape"], serde_json::json!([100, 1000]));
    let o = ringfeed(&["ckpt", "verify", s(&file)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ok: 1 file, 2 tensors (2 with a checksum)"));

    // A sharded set: the index names the file.
    let index = d.path().join("model.safetensors.index.json");
    std::fs::write(
        &index,
        r#"{"metadata":{},"weight_map":{"w":"model.safetensors","b":"model.safetensors"}}"#,
    )
    .unwrap();
    for target in [d.path(), index.as_path()] {
        let o = ringfeed(&["ckpt", "verify", "--json", s(target)]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!((v["clean"].as_bool(), v["checksummed"].as_u64()), (Some(true), Some(2)));
    }

    // One flipped byte in "w": exit 1, the tensor named on stderr.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() - 50_000;
    bytes[at] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let o = ringfeed(&["ckpt", "verify", s(&file)]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("error: checksum mismatch") && err.contains("\"w\"") && err.lines().count() == 1,
        "{err}"
    );
    // Cut short: the header promises more than the file has.
    std::fs::write(&file, &bytes[..bytes.len() - 10]).unwrap();
    let o = ringfeed(&["ckpt", "inspect", s(&file)]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let o = ringfeed(&["ckpt", "verify", s(&d.path().join("nope.safetensors"))]);
    assert_eq!(o.status.code(), Some(2));
}
