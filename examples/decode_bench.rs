//! Single-core decode and pipeline throughput on a folder of images, all
//! bytes in RAM: full decode, the train and val pipelines, and raw decode of
//! the same regions at the same DCT scales those pipelines chose (to
//! isolate the pipeline's own cost: crop geometry, resize, flip,
//! normalize), with the fastest crop-and-resize kernels and with AVX2 only. `benches/decode_vs_torchvision.py` runs it beside PIL and
//! torchvision. Prints one JSON object.
//!
//! `cargo run --release -p ringfeed-examples --example decode_bench -- DIR [LIMIT]`

use std::time::Instant;

use anyhow::{Context, Result};
use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::SeedableRng;
use ringfeed_decode::{Decoder, Kernels, Limits, OutputMut, Pipeline, Pixels, Scale};

fn load(dir: &std::path::Path, out: &mut Vec<Vec<u8>>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            load(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "jpg" || x == "jpeg" || x == "png") {
            out.push(std::fs::read(&p)?);
        }
    }
    Ok(())
}

/// Images per second of `f` over all images.
fn rate(images: &[Vec<u8>], mut f: impl FnMut(usize, &[u8]) -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    for (i, bytes) in images.iter().enumerate() {
        f(i, bytes)?;
    }
    Ok(images.len() as f64 / t.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let dir = std::env::args().nth(1).context("usage: decode_bench DIR [LIMIT]")?;
    let limit: usize = std::env::args().nth(2).map(|s| s.parse()).transpose()?.unwrap_or(usize::MAX);
    let mut images = Vec::new();
    load(std::path::Path::new(&dir), &mut images)?;
    images.truncate(limit);
    let mut decoder = Decoder::new(Limits::default())?;
    let mut px = Pixels::default();
    let full = rate(&images, |_, b| Ok(decoder.decode_into(b, Scale::FULL, false, &mut px).map(drop)?))?;

    let mut results = serde_json::Map::new();
    results.insert("images".into(), images.len().into());
    results.insert("full_decode".into(), full.into());
    let runs = [
        ("train", Pipeline::train(224)?),
        ("val", Pipeline::val(256, 224)?),
        // The same with the crop-and-resize limited to AVX2 (what CPUs
        // without AVX-512 run), when this one has more.
        ("train_avx2", Pipeline::train(224)?.with_kernels(Kernels::Avx2)),
        ("val_avx2", Pipeline::val(256, 224)?.with_kernels(Kernels::Avx2)),
    ];
    for (name, mut pipe) in runs {
        if name.ends_with("_avx2") && Pipeline::train(224)?.kernels() != "avx512" {
            continue;
        }
        let mut out = vec![0f32; pipe.output_len()];
        // Pipeline and plain decode at the scale it chose, alternating image
        // by image, so that machine speed drifts hit both alike.
        let (mut t_pipe, mut t_dec, mut t_inner, mut reduced) = (0f64, 0f64, 0f64, 0usize);
        for (i, b) in images.iter().enumerate() {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(i as u64);
            let t = Instant::now();
            let applied = pipe.run(b, &mut rng, OutputMut::F32(&mut out))?;
            t_pipe += t.elapsed().as_secs_f64();
            t_inner += applied.decode_time.as_secs_f64();
            let t = Instant::now();
            decoder.decode_region_into(b, applied.scale, Some(applied.region), false, &mut px)?;
            t_dec += t.elapsed().as_secs_f64();
            reduced += usize::from(applied.scale.denom > 1);
        }
        let n = images.len() as f64;
        results.insert(
            name.into(),
            serde_json::json!({
                "pipeline": n / t_pipe,
                "decode_same_region_and_scale": n / t_dec,
                "overhead": t_pipe / t_dec - 1.0,
                // Where the overhead goes, in µs per image: the pipeline's
                // own decode call vs everything else it does.
                "us_decode_same_region": t_dec / n * 1e6,
                "us_pipeline_decode": t_inner / n * 1e6,
                "us_pipeline_rest": (t_pipe - t_inner) / n * 1e6,
                "images_dct_scaled": reduced,
                "kernels": pipe.kernels(),
            }),
        );
    }
    println!("{}", serde_json::Value::Object(results));
    Ok(())
}
