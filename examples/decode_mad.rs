//! Mean absolute difference between ringfeed-decode's resized crops and
//! reference pixels for the same crop boxes (written by
//! `benches/decode_vs_pil.py` with Pillow). Prints one JSON object.
//!
//! `cargo run --release -p ringfeed-examples --example decode_mad -- CASES.json`
//! where CASES.json is `[{"image": path, "box": [l, t, w, h], "size": n, "reference": raw RGB path}, ...]`.

use anyhow::{Context, Result};
use ringfeed_decode::{Layout, Limits, Output, OutputMut, Pipeline, Transform};

fn main() -> Result<()> {
    let path = std::env::args().nth(1).context("usage: decode_mad CASES.json")?;
    let cases: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&path)?)?;
    let mut mads = Vec::new();
    let mut scaled = Vec::new();
    let mut pipes = std::collections::HashMap::new();
    for case in &cases {
        let size = case["size"].as_u64().context("size")? as u32;
        let pipe = pipes.entry(size).or_insert_with(|| {
            Pipeline::new(
                Transform::Val { resize: size, crop: size },
                Layout::Hwc,
                Output::U8,
                false,
                Limits::default(),
            )
        });
        let pipe = pipe.as_mut().map_err(|e| anyhow::anyhow!("{e}"))?;
        let b: Vec<f64> = case["box"].as_array().context("box")?.iter().filter_map(|v| v.as_f64()).collect();
        let bytes = std::fs::read(case["image"].as_str().context("image")?)?;
        let reference = std::fs::read(case["reference"].as_str().context("reference")?)?;
        let mut out = vec![0u8; pipe.output_len()];
        let applied = pipe.run_box(&bytes, [b[0], b[1], b[2], b[3]], OutputMut::U8(&mut out))?;
        let mad = out.iter().zip(&reference).map(|(&a, &r)| f64::from(a.abs_diff(r))).sum::<f64>()
            / out.len() as f64;
        mads.push(mad);
        if applied.scale.denom > 1 {
            scaled.push(mad);
        }
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        let p99 = v.get((v.len() as f64 * 0.99) as usize).or(v.last()).copied().unwrap_or(0.0);
        serde_json::json!({"n": v.len(), "mean": mean, "p99": p99, "max": v.last().copied().unwrap_or(0.0)})
    };
    println!("{}", serde_json::json!({"all": stats(&mut mads), "dct_scaled": stats(&mut scaled)}));
    Ok(())
}
