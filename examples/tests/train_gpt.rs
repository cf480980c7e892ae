//! The GPT example end to end on a small token corpus: the loss falls, and
//! a run stopped at a checkpoint and resumed sees exactly the batches (and,
//! on one thread, the losses) of an uninterrupted run.
#![cfg(feature = "tch")]

use std::path::Path;

use clap::Parser;

#[path = "../train_gpt.rs"]
#[allow(dead_code)]
mod example;

/// A nanoGPT-style train.bin: ids below 256 with a pattern to learn
/// (each id follows from the previous one), end-of-text every ~100.
fn corpus(path: &Path) {
    let mut ids: Vec<u16> = Vec::new();
    let mut x = 7u16;
    for i in 0..60_000u32 {
        x = if i % 97 == 96 { 255 } else { (x * 5 + 3) % 250 };
        ids.push(x);
    }
    std::fs::write(path, ids.iter().flat_map(|t| t.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
}

fn train(data: &Path, extra: &[&str]) -> (Vec<(String, f64)>, serde_json::Value) {
    let mut argv = vec!["train_gpt", "--data", data.to_str().unwrap(), "--batch", "4", "--block", "32"];
    argv.extend([
        "--layers",
        "1",
        "--heads",
        "2",
        "--width",
        "32",
        "--vocab",
        "256",
        "--threads",
        "1",
        "--seed",
        "3",
    ]);
    argv.extend(extra);
    let args = example::Args::try_parse_from(argv).unwrap();
    // libtorch's seed and thread count are process-wide: one run at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut steps = Vec::new();
    let summary = example::train(&args, |s| steps.push((s.batch.clone(), s.loss))).unwrap();
    (steps, summary)
}

#[test]
fn the_loss_falls_and_a_resumed_run_continues_exactly() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = dir.path().join("train.bin");
    corpus(&data);
    let (straight, summary) = train(&data, &["--steps", "60"]);
    assert_eq!(straight.len(), 60);
    let first: f64 = straight[..5].iter().map(|s| s.1).sum::<f64>() / 5.0;
    let last: f64 = straight[55..].iter().map(|s| s.1).sum::<f64>() / 5.0;
    assert!(last < first * 0.7, "the loss falls: {first} -> {last}");
    assert!(summary["tokens_per_sec"].as_f64().unwrap() > 0.0);
    assert!(summary["data_wait_share"].as_f64().unwrap() < 1.0);

    let ckpt = dir.path().join("ckpt");
    let ckpt = ckpt.to_str().unwrap();
    let (part, _) = train(&data, &["--steps", "25", "--checkpoint", ckpt]);
    assert_eq!(part, straight[..25]);
    let (rest, _) = train(&data, &["--steps", "60", "--checkpoint", ckpt, "--resume"]);
    assert_eq!(rest.len(), 35);
    for (k, (a, b)) in rest.iter().zip(&straight[25..]).enumerate() {
        assert_eq!(a.0, b.0, "step {}: the same batch", 26 + k);
        assert!((a.1 - b.1).abs() < 1e-4, "step {}: loss {} vs {}", 26 + k, a.1, b.1);
    }
}
