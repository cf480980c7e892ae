//! `ringfeed tokenize` from every kind of text source into a token dataset,
//! and `ringfeed tokens --doc`: each document's ids are the tokenizer's,
//! then end-of-text, in source order; long documents span records and come
//! back whole; bad input is an error (exit 2) that leaves no dataset.

use std::path::Path;
use std::process::{Command, Output};

use ringfeed_tokenize::Tokenizer;

fn ringfeed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringfeed")).args(args).output().expect("run ringfeed")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn docs() -> Vec<String> {
    (0..40)
        .map(|i| {
            format!(
                "Document {i}: don't panic,  it's only {} words.\n\nÜber 東京 🦀 {}",
                i * 7,
                "x ".repeat(i)
            )
        })
        .collect()
}

/// Each document's ids through `ringfeed tokens --doc`.
fn doc_ids(ds: &Path, doc: usize) -> Vec<u32> {
    let o = ringfeed(&["tokens", s(ds), "--doc", &doc.to_string(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["doc"], doc);
    serde_json::from_value(v["tokens"].clone()).unwrap()
}

fn expect(text: &str) -> Vec<u32> {
    let mut ids = Tokenizer::gpt2().unwrap().encode(text).unwrap();
    ids.push(50256);
    ids
}

fn tokenize_ok(src: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["tokenize", s(src), s(out), "--json", "--threads", "3"];
    args.extend_from_slice(extra);
    let o = ringfeed(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A TFRecord file of `tf.train.Example`s with a bytes feature `text`.
fn tfrecord(path: &Path, texts: &[String]) {
    fn field(n: u8, v: &[u8]) -> Vec<u8> {
        let mut out = vec![n << 3 | 2];
        let mut len = v.len();
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            out.push(if len > 0 { b | 0x80 } else { b });
            if len == 0 {
                break;
            }
        }
        out.extend_from_slice(v);
        out
    }
    let masked = |crc: u32| (crc.rotate_right(15)).wrapping_add(0xa282_ead8);
    let mut out = Vec::new();
    for t in texts {
        let feature = field(1, &field(1, t.as_bytes()));
        let example = field(1, &field(1, &[field(1, b"text"), field(2, &feature)].concat()));
        let len = (example.len() as u64).to_le_bytes();
        out.extend_from_slice(&len);
        out.extend_from_slice(&masked(crc32c::crc32c(&len)).to_le_bytes());
        out.extend_from_slice(&example);
        out.extend_from_slice(&masked(crc32c::crc32c(&example)).to_le_bytes());
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn every_text_source_tokenizes_to_the_same_documents() {
    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let texts = docs();
    // JSON lines.
    let jsonl = d.path().join("corpus.jsonl");
    let lines: Vec<String> =
        texts.iter().map(|t| serde_json::json!({"id": 1, "text": t}).to_string()).collect();
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    // A directory of files (sorted by name: zero-padded).
    let files = d.path().join("files");
    std::fs::create_dir(&files).unwrap();
    for (i, t) in texts.iter().enumerate() {
        std::fs::write(files.join(format!("doc_{i:03}.txt")), t).unwrap();
    }
    // WebDataset tar: one txt member per sample.
    let tar = d.path().join("corpus.tar");
    let st = Command::new("tar")
        .arg("cf")
        .arg(&tar)
        .arg("-C")
        .arg(&files)
        .args((0..texts.len()).map(|i| format!("doc_{i:03}.txt")))
        .status()
        .unwrap();
    assert!(st.success());
    // TFRecord of Examples.
    let tfr = d.path().join("corpus.tfrecord");
    tfrecord(&tfr, &texts);

    for (name, src) in [("jsonl", &jsonl), ("files", &files), ("tar", &tar), ("tfrecord", &tfr)] {
        let out = d.path().join(format!("tokens-{name}"));
        let v = tokenize_ok(src, &out, &[]);
        let want: Vec<Vec<u32>> = texts.iter().map(|t| expect(t)).collect();
        assert_eq!(v["documents"], texts.len(), "{name}");
        assert_eq!(v["tokens"], want.iter().map(Vec::len).sum::<usize>(), "{name}");
        for (i, w) in want.iter().enumerate() {
            assert_eq!(&doc_ids(&out, i), w, "{name}, document {i}");
        }
        let o = ringfeed(&["tokens", s(&out), "--doc", "40"]);
        assert_eq!(o.status.code(), Some(2), "{name}: past the last document");
        assert!(String::from_utf8_lossy(&o.stderr).contains("has 40 documents"));
        let o = ringfeed(&["verify", s(&out)]);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stdout));
        let o = ringfeed(&["inspect", s(&out)]);
        assert!(String::from_utf8_lossy(&o.stdout).contains("tokens(U16, gpt2)"), "{name}");
    }
}

#[test]
fn a_long_document_spans_records_and_comes_back_whole() {
    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let long = "word ".repeat(70_000); // > 65,536 tokens
    let texts = ["short one".to_owned(), long.clone(), "after".to_owned()];
    let jsonl = d.path().join("c.jsonl");
    let lines: Vec<String> = texts.iter().map(|t| serde_json::json!({"text": t}).to_string()).collect();
    std::fs::write(&jsonl, lines.join("\n")).unwrap();
    let out = d.path().join("tokens");
    tokenize_ok(&jsonl, &out, &["--dtype", "u32"]);
    let ds = ringfeed::Dataset::open(&out).unwrap();
    assert_eq!(ds.len(), 4, "the long document takes two records");
    for (i, t) in texts.iter().enumerate() {
        assert_eq!(doc_ids(&out, i), expect(t), "document {i}");
    }
}

#[test]
fn bad_input_is_an_error_and_leaves_no_dataset() {
    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let files = d.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("a.txt"), "fine").unwrap();
    std::fs::write(files.join("b.bin"), b"\xff\xfe not UTF-8").unwrap();
    let out = d.path().join("tokens");
    let o = ringfeed(&["tokenize", s(&files), s(&out)]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("document 1") && err.contains("not UTF-8"), "{err}");
    assert!(ringfeed::Dataset::open(&out).is_err(), "nothing that opens");

    let jsonl = d.path().join("c.jsonl");
    std::fs::write(&jsonl, "{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n").unwrap();
    let o = ringfeed(&["tokenize", s(&jsonl), s(&out)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no field \"text\""));
    let o = ringfeed(&["tokenize", s(&jsonl), s(&out), "--field", "body"]);
    assert_eq!(o.status.code(), Some(2), "the first line has no body");

    let o = ringfeed(&["tokenize", s(&files), s(&out), "--tokenizer", "nonesuch"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown tokenizer"));
    let o = ringfeed(&["tokens", s(&files), "--doc", "0"]);
    assert_eq!(o.status.code(), Some(2), "not a dataset");
}

#[test]
fn windows_cover_an_epoch_once_across_ranks_and_bench_digests_agree() {
    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // nanoGPT's train.bin: raw u16 ids.
    let bin = d.path().join("train.bin");
    let ids: Vec<u8> = (0..40_000u32).flat_map(|i| ((i * 31 % 50_000) as u16).to_le_bytes()).collect();
    std::fs::write(&bin, ids).unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut per_rank = Vec::new();
    for rank in 0..3 {
        let o = ringfeed(&[
            "windows",
            s(&bin),
            "--seed",
            "5",
            "--epoch",
            "2",
            "--rank",
            &rank.to_string(),
            "--world",
            "3",
            "--batch",
            "4",
            "--block-size",
            "100",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let lines: Vec<serde_json::Value> =
            String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        per_rank.push(lines.len());
        for l in &lines {
            assert_eq!(l["epoch"], 2);
            for off in l["offsets"].as_array().unwrap() {
                let off = off.as_u64().unwrap();
                assert_eq!(off % 100, 0);
                assert!(seen.insert(off), "window {off} twice");
            }
        }
    }
    assert_eq!(per_rank, [33, 33, 33], "399 windows: 33 batches of 4 per rank");
    // Bench: the same digest with one or three reader threads, and from a
    // token dataset holding the same ids.
    let bench = |path: &Path, threads: &str, io: &str| -> serde_json::Value {
        let o = ringfeed(&[
            "bench",
            s(path),
            "--block-size",
            "100",
            "--batch",
            "4",
            "--seed",
            "5",
            "--epochs",
            "2",
            "--threads",
            threads,
            "--token-io",
            io,
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let a = bench(&bin, "1", "buffered");
    let b = bench(&bin, "3", "direct");
    assert_eq!(a["digest"], b["digest"]);
    assert_eq!(a["tokens"], 2 * 99 * 4 * 100, "two epochs of 99 batches of 4 × 100 tokens");
    assert_eq!(a["corpus_format"], "nanogpt");
    let o =
        ringfeed(&["bench", s(&bin), "--block-size", "100", "--batch", "4", "--mode", "random", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = ringfeed(&["bench", s(&bin), "--block-size", "100000", "--json"]);
    assert_eq!(o.status.code(), Some(2), "a corpus too short for one batch");

    // Packed windows from a token dataset's documents: pieces of at most
    // T + 1 tokens, T positions a window at most.
    let texts = docs();
    let jsonl = d.path().join("c.jsonl");
    let lines: Vec<String> = texts.iter().map(|t| serde_json::json!({"text": t}).to_string()).collect();
    std::fs::write(&jsonl, lines.join("\n")).unwrap();
    let ds = d.path().join("tokens");
    tokenize_ok(&jsonl, &ds, &[]);
    let o = ringfeed(&["windows", s(&ds), "--mode", "packed", "--block-size", "32", "--batch", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = String::from_utf8(o.stdout).unwrap();
    assert!(!lines.is_empty());
    for l in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        for w in v["segments"].as_array().unwrap() {
            let used: u64 = w.as_array().unwrap().iter().map(|s| s[1].as_u64().unwrap() - 1).sum();
            assert!(used <= 32, "{l}");
        }
    }
    let o = ringfeed(&["bench", s(&ds), "--block-size", "32", "--batch", "2", "--mode", "packed", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
