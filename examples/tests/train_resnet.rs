//! The training example end to end on a tiny packed set: the loss falls,
//! and a run stopped at a checkpoint and resumed sees exactly the batches
//! (and, on one thread, the losses) of an uninterrupted run.
#![cfg(feature = "tch")]

use std::path::Path;

use clap::Parser;
use ringfeed::{PackWriter, Payload, Schema};

#[path = "../train_resnet.rs"]
#[allow(dead_code)]
mod example;

/// 24 images of the decode crate's fixtures, labels `i % 3`.
fn dataset(dir: &Path) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../decode/tests/fixtures");
    let names = ["rgb.jpg", "progressive.jpg", "gray.jpg", "rgb.png", "palette.png", "big.jpg"];
    let schema = Schema { payload: Payload::Image, labels: true, keys: false };
    let mut w = PackWriter::builder(dir).schema(schema).build().unwrap();
    for i in 0..24 {
        let bytes = std::fs::read(fixtures.join(names[i % names.len()])).unwrap();
        w.push(&bytes, (i % 3) as i64, None).unwrap();
    }
    w.finish().unwrap();
}

/// Runs the example's training loop; returns its per-step `(batch
/// digest, loss)`.
fn train(data: &Path, extra: &[&str]) -> Vec<(String, f64)> {
    let mut argv = vec!["train_resnet", "--data", data.to_str().unwrap(), "--batch", "4", "--size", "32"];
    argv.extend(["--classes", "3", "--cores", "1", "--threads", "1", "--seed", "5"]);
    argv.extend(extra);
    let args = example::Args::try_parse_from(argv).unwrap();
    // libtorch's seed and thread count are process-wide: one run at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut steps = Vec::new();
    example::train(&args, |s| steps.push((s.batch.clone(), s.loss))).unwrap();
    steps
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

#[test]
fn resuming_from_a_checkpoint_continues_with_the_same_batches() {
    let dir = scratch();
    let data = dir.path().join("data");
    dataset(&data);
    let straight = train(&data, &["--steps", "10"]);
    assert_eq!(straight.len(), 10);
    let ckpt = dir.path().join("ckpt");
    let ckpt = ckpt.to_str().unwrap();
    let first = train(&data, &["--steps", "4", "--checkpoint", ckpt]);
    // One safetensors file per save (here only the last), checksummed, with
    // model, momentum and the loader's state.
    let saved = dir.path().join("ckpt/step-000000000004.safetensors");
    let file = ringfeed_ckpt::Checkpoint::open(&saved).unwrap();
    assert_eq!(file.verify().unwrap(), file.tensors().len());
    assert!(file.tensors().iter().any(|t| t.name.starts_with("model.")));
    assert!(file.tensors().iter().any(|t| t.name.starts_with("optim.momentum.")));
    assert!(file.metadata().contains_key("ringfeed.loader_state"));
    let rest = train(&data, &["--steps", "10", "--checkpoint", ckpt, "--resume"]);
    assert_eq!(first.len() + rest.len(), 10);
    let resumed: Vec<_> = first.iter().chain(&rest).collect();
    for (step, (a, b)) in straight.iter().zip(resumed).enumerate() {
        assert_eq!(a.0, b.0, "step {}: a different batch after resuming", step + 1);
        // Model, momentum and data are restored exactly; one thread keeps
        // libtorch's arithmetic in the same order.
        assert!((a.1 - b.1).abs() <= 1e-4 * a.1.abs(), "step {}: loss {} vs {}", step + 1, a.1, b.1);
    }
}

#[test]
fn the_loss_falls() {
    let dir = scratch();
    let data = dir.path().join("data");
    dataset(&data);
    let losses: Vec<f64> = train(&data, &["--steps", "60"]).into_iter().map(|(_, l)| l).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (first, last) = (mean(&losses[..10]), mean(&losses[50..]));
    assert!(last < 0.8 * first, "loss {first:.3} -> {last:.3}");
}
