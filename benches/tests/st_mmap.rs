//! The st-mmap comparison binary maps a real file and reads every tensor.

use ringfeed_ckpt::{Dtype, SaveOptions, TensorRef, save};

#[test]
fn st_mmap_reads_every_tensor_of_a_file() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("m.safetensors");
    let a = vec![7u8; 100_000];
    let b = [1u8; 12];
    save(
        &path,
        &[
            TensorRef::new("a", Dtype::U8, &[100_000], &a).unwrap(),
            TensorRef::new("b", Dtype::F32, &[3], &b).unwrap(),
        ],
        &SaveOptions::default(),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_st-mmap")).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["bytes"].as_u64(), v["tensors"].as_u64()), (Some(100_012), Some(2)));
    // One byte in 64 of each tensor: 1,563 sevens and one 1.
    assert_eq!(v["checksum"].as_u64(), Some(1_563 * 7 + 1));
}
