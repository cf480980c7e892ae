//! Preprocessing throughput per core (ringfeed-decode's offline val
//! pipeline against the serve preprocessor on the same image), and what
//! the batcher adds: throughput through it with a no-op model, and the
//! latency of a lone request. One JSON line per figure.
//!
//! `cargo bench -p ringfeed-serve --bench throughput [-- IMAGE]` (the
//! default image is decode's 1280×960 `big.jpg` fixture).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringfeed_decode::{OutputMut, Pipeline};
use ringfeed_serve::{Batch, Batcher, Preprocessor, Spec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| format!("{}/../decode/tests/fixtures/big.jpg", env!("CARGO_MANIFEST_DIR")));
    let image = std::fs::read(&path)?;
    // `cargo test --all-targets` runs this too, without `--bench`: then
    // only a smoke run.
    let n = if std::env::args().any(|a| a == "--bench") { 400 } else { 4 };
    let spec = Spec::builder().center_crop(256, 224).build()?;

    let mut offline = Pipeline::val(256, 224)?;
    let mut row = vec![0f32; spec.row_len()];
    let offline_rate = rate(n, || {
        offline.run_val(&image, OutputMut::F32(&mut row)).unwrap();
    });
    report("offline_val_pipeline_1_thread", offline_rate, "images/s");
    let mut pre = Preprocessor::new(&spec)?;
    report(
        "serve_preprocessor_center_crop_1_thread",
        rate(n, || pre.run(&image, OutputMut::F32(&mut row)).unwrap()),
        "images/s",
    );
    let lb = Spec::builder().letterbox(640, 640, [114; 3]).build()?;
    let mut pre = Preprocessor::new(&lb)?;
    let mut big = vec![0f32; lb.row_len()];
    report(
        "serve_preprocessor_letterbox640_1_thread",
        rate(n, || pre.run(&image, OutputMut::F32(&mut big)).unwrap()),
        "images/s",
    );

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build()?;
    rt.block_on(async {
        for threads in [1, 2] {
            let batcher = Arc::new(
                Batcher::builder(spec)
                    .threads(threads)
                    .max_batch(32)
                    .max_delay(Duration::from_millis(2))
                    .queue(256)
                    .build(|b: Batch| async move { Ok::<_, std::io::Error>(vec![(); b.len()]) })?,
            );
            let total = 2 * n;
            let started = Instant::now();
            let mut tasks = tokio::task::JoinSet::<ringfeed_serve::Result<()>>::new();
            for _ in 0..total {
                while tasks.len() >= 128 {
                    tasks.join_next().await.unwrap()?.unwrap();
                }
                let b = Arc::clone(&batcher);
                let bytes = bytes::Bytes::from(image.clone());
                tasks.spawn(async move { b.submit(bytes).await.map(|_| ()) });
            }
            while let Some(r) = tasks.join_next().await {
                r?.unwrap();
            }
            let r = total as f64 / started.elapsed().as_secs_f64();
            report(&format!("batcher_{threads}_pool_threads_noop_model"), r, "images/s");
            if threads == 1 {
                report("batcher_1_thread_vs_offline", r / offline_rate, "ratio");
            }
            let m = batcher.metrics();
            report(
                "batcher_mean_batch",
                m.completed as f64 / m.batch_sizes.iter().sum::<u64>() as f64,
                "rows",
            );
            report("batcher_mean_decode", m.decode_latency.mean().as_secs_f64() * 1e6, "us");
        }
        // A lone request: what the batcher adds to preprocessing.
        let batcher = Batcher::builder(spec)
            .threads(1)
            .max_delay(Duration::ZERO)
            .build(|b: Batch| async move { Ok::<_, std::io::Error>(vec![(); b.len()]) })?;
        let mut lat = Vec::new();
        for _ in 0..n / 2 {
            let t = Instant::now();
            let r = batcher.submit(image.clone()).await.unwrap();
            lat.push((t.elapsed(), r.timings.decode));
        }
        lat.sort();
        let (p50, decode) = lat[lat.len() / 2];
        report("lone_request_p50", p50.as_secs_f64() * 1e6, "us");
        report("lone_request_overhead_p50", (p50.saturating_sub(decode)).as_secs_f64() * 1e6, "us");
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

fn rate(n: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn report(name: &str, value: f64, unit: &str) {
    println!("{{\"bench\":\"{name}\",\"value\":{value:.2},\"unit\":\"{unit}\"}}");
}
