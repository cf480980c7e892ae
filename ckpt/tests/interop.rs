//! Files ringfeed writes load in the Rust `safetensors` crate and the
//! Python `safetensors` package, and theirs load in ringfeed: bit-exact,
//! every dtype, both ways.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::*;
use ringfeed_ckpt::{Checkpoint, Dtype, SaveOptions, save};
use safetensors::tensor::{Dtype as StDtype, TensorView as StView};

fn st_dtype(d: Dtype) -> StDtype {
    match d {
        Dtype::F32 => StDtype::F32,
        Dtype::F16 => StDtype::F16,
        Dtype::BF16 => StDtype::BF16,
        Dtype::F64 => StDtype::F64,
        Dtype::I64 => StDtype::I64,
        Dtype::U8 => StDtype::U8,
        Dtype::Bool => StDtype::BOOL,
        other => panic!("no test mapping for {other}"),
    }
}

#[test]
fn the_rust_crate_reads_ours_and_we_read_its() {
    let ts = tensors(2);
    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ours = d.path().join("ours.safetensors");
    save(&ours, &refs(&ts), &SaveOptions::default().metadata("format", "pt")).unwrap();
    let bytes = std::fs::read(&ours).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("the reference crate accepts our file");
    assert_eq!(st.len(), ts.len());
    for t in &ts {
        let v = st.tensor(&t.name).unwrap();
        let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
        assert_eq!(
            (v.dtype(), v.shape(), v.data()),
            (st_dtype(t.dtype), &shape[..], &t.bytes[..]),
            "{}",
            t.name
        );
    }
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta.get("format").map(String::as_str), Some("pt"));
    assert!(meta.keys().any(|k| k.starts_with("ringfeed.crc32c.")), "our checksums travel as plain metadata");

    // Theirs, read by us.
    let views: Vec<(String, StView<'_>)> = ts
        .iter()
        .map(|t| {
            let shape = t.shape.iter().map(|&d| d as usize).collect();
            (t.name.clone(), StView::new(st_dtype(t.dtype), shape, &t.bytes).unwrap())
        })
        .collect();
    let info = Some(HashMap::from([("source".to_owned(), "safetensors-rs".to_owned())]));
    let theirs = d.path().join("theirs.safetensors");
    std::fs::write(&theirs, safetensors::serialize(views, info).unwrap()).unwrap();
    let ckpt = Checkpoint::open(&theirs).unwrap();
    assert!(!ckpt.has_checksums());
    assert_eq!(ckpt.metadata().get("source").map(String::as_str), Some("safetensors-rs"));
    let loaded = ckpt.load().unwrap();
    for t in &ts {
        let v = loaded.get(&t.name).unwrap();
        assert_eq!((v.dtype(), v.shape(), v.bytes()), (t.dtype, &t.shape[..], &t.bytes[..]), "{}", t.name);
    }
}

/// The Python package: in CI it is installed (`.ci/run`); elsewhere the
/// test says it is skipped when `python3 -c "import safetensors"` fails.
#[test]
fn the_python_package_reads_ours_and_we_read_its() {
    let have = Command::new("python3")
        .args(["-c", "import safetensors.numpy, numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(std::env::var_os("CI").is_none(), "CI installs the Python safetensors package (.ci/run)");
        eprintln!("skipped: python3 with safetensors and numpy is not installed");
        return;
    }
    let ts = tensors(1);
    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ours = d.path().join("ours.safetensors");
    let theirs = d.path().join("theirs.safetensors");
    save(&ours, &refs(&ts), &SaveOptions::default()).unwrap();
    // Python: the package's own parser reads ours (it validates as the
    // reference does) and prints each tensor's dtype, shape and CRC-32 of
    // its bytes; its own writer writes them back (through TensorSpec, the
    // raw path every framework binding uses, so bf16 needs no torch).
    let script = r#"
import json, sys, zlib
import numpy as np
from safetensors import deserialize, serialize_file, TensorSpec
ours, theirs = sys.argv[1], sys.argv[2]
names = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "I64": "int64", "U8": "uint8", "BOOL": "bool"}
out, specs, keep = {}, {}, []
for name, t in deserialize(open(ours, "rb").read()):
    data = bytes(t["data"])
    out[name] = [t["dtype"], list(t["shape"]), zlib.crc32(data)]
    a = np.frombuffer(data, dtype=np.uint8).copy()
    keep.append(a)
    specs[name] = TensorSpec(dtype=names[t["dtype"]], shape=tuple(t["shape"]), data_ptr=a.ctypes.data, data_len=a.nbytes)
serialize_file(specs, theirs, metadata={"writer": "python"})
print(json.dumps(out))
"#;
    let run = Command::new("python3").arg("-c").arg(script).arg(&ours).arg(&theirs).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let seen: HashMap<String, (String, Vec<u64>, u32)> = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(seen.len(), ts.len());
    for t in &ts {
        let got = &seen[&t.name];
        assert_eq!(
            got,
            &(t.dtype.name().to_owned(), t.shape.clone(), crc32fast::hash(&t.bytes)),
            "{}",
            t.name
        );
    }
    let ckpt = Checkpoint::open(&theirs).unwrap();
    assert_eq!(ckpt.metadata().get("writer").map(String::as_str), Some("python"));
    let loaded = ckpt.load().unwrap();
    assert_eq!(loaded.len(), ts.len());
    for t in &ts {
        let v = loaded.get(&t.name).unwrap();
        assert_eq!((v.dtype(), v.shape(), v.bytes()), (t.dtype, &t.shape[..], &t.bytes[..]), "{}", t.name);
    }
}
