//! Test tensors: every dtype the issue names, a scalar, an empty tensor,
//! sizes that straddle the direct-I/O alignment and the read chunk.

#![allow(dead_code, unreachable_pub)]

use ringfeed_ckpt::{Dtype, SaveOptions, TensorRef, save};

pub struct Owned {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    pub bytes: Vec<u8>,
}

impl Owned {
    pub fn as_ref(&self) -> TensorRef<'_> {
        TensorRef::new(&self.name, self.dtype, &self.shape, &self.bytes).unwrap()
    }
}

// Deterministic bytes, scratch directories, a loop-device file system:
// the storage layer's dependency-free test helpers.
#[path = "../../../pack/tests/common/plain.rs"]
mod plain;
pub use plain::*;

/// A model-like set: `scale` multiplies the big tensors' sizes.
pub fn tensors(scale: u64) -> Vec<Owned> {
    let spec: Vec<(&str, Dtype, Vec<u64>)> = vec![
        ("embed.weight", Dtype::F32, vec![1000 * scale, 33]),
        ("layers.0.attn.weight", Dtype::BF16, vec![257, 129]),
        ("layers.0.mlp.weight", Dtype::F16, vec![3 * scale, 4099]),
        ("layers.0.norm", Dtype::F32, vec![129]),
        ("step", Dtype::I64, vec![]),
        ("token_ids", Dtype::I64, vec![3, 7]),
        ("mask", Dtype::U8, vec![4095]),
        ("flags", Dtype::Bool, vec![5]),
        ("empty", Dtype::F32, vec![0, 16]),
        ("head.bias", Dtype::F64, vec![11]),
    ];
    spec.into_iter()
        .enumerate()
        .map(|(i, (name, dtype, shape))| {
            let n: u64 = shape.iter().product();
            let mut b = bytes(i as u64 + 1, dtype.bytes_for(n).unwrap() as usize);
            if dtype == Dtype::Bool {
                b.iter_mut().for_each(|x| *x &= 1);
            }
            Owned { name: name.to_owned(), dtype, shape, bytes: b }
        })
        .collect()
}

pub fn refs(ts: &[Owned]) -> Vec<TensorRef<'_>> {
    ts.iter().map(Owned::as_ref).collect()
}

/// Saves `ts` as two shards in `dir` (the first `split` tensors in the
/// first) and returns their weight map, for an index.
pub fn save_two_shards(
    dir: &std::path::Path,
    ts: &[Owned],
    split: usize,
) -> serde_json::Map<String, serde_json::Value> {
    let shard = |k: usize| format!("model-0000{k}-of-00002.safetensors");
    let (first, second) = ts.split_at(split);
    save(dir.join(shard(1)), &refs(first), &SaveOptions::default()).unwrap();
    save(dir.join(shard(2)), &refs(second), &SaveOptions::default()).unwrap();
    ts.iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), shard(if i < split { 1 } else { 2 }).into()))
        .collect()
}
