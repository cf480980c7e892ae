//! The Rust `safetensors` crate the way its docs load a file: map it,
//! `SafeTensors::deserialize` the mapping, then touch every byte of every
//! tensor (a sum, so nothing is optimized away). `benches/ckpt_bench.py`
//! runs it cold against ringfeed's direct-I/O load.
//!
//! `st-mmap FILE` prints one JSON line: seconds, bytes, tensors.

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: st-mmap FILE"))?;
    let started = Instant::now();
    let file = std::fs::File::open(&path)?;
    // A concurrent truncation would be a SIGBUS, not a data race.
    // SAFETY: the benchmark's own file, which nothing writes or truncates while mapped.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let st = safetensors::SafeTensors::deserialize(&map)?;
    let (mut bytes, mut sum) = (0u64, 0u64);
    for (_, t) in st.tensors() {
        let data = t.data();
        bytes += data.len() as u64;
        // One byte per 64: every cache line, so every page, is read.
        sum = data.iter().step_by(64).fold(sum, |s, &b| s.wrapping_add(u64::from(b)));
    }
    println!(
        "{{\"seconds\":{},\"bytes\":{bytes},\"tensors\":{},\"checksum\":{sum}}}",
        started.elapsed().as_secs_f64(),
        st.len()
    );
    Ok(())
}
