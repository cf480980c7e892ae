//! A safetensors file from arbitrary bytes: opening (header validation),
//! loading every tensor, reading each into a buffer and verifying must
//! return errors, never panic, hang or allocate past what the header may
//! claim of a file this size.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::file("model.safetensors", data);
    for direct in [false, true] {
        let Ok(ckpt) = ringfeed_ckpt::Checkpoint::builder(&path).direct_io(direct).chunk_bytes(4096).build() else {
            continue;
        };
        if let Ok(all) = ckpt.load() {
            for t in all.iter() {
                let _ = t.to_vec::<u8>();
                let _ = t.as_slice::<f32>();
            }
        }
        for t in ckpt.tensors() {
            let mut buf = vec![0u8; t.len() as usize];
            let _ = ckpt.read_into(&t.name, &mut buf);
        }
        let _ = ckpt.verify();
    }
});
