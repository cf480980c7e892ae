//! GPT-2: the same ids as tiktoken's own encoder (tiktoken-rs's
//! `CoreBPE::encode_ordinary`, the fancy-regex pattern with its lookahead)
//! on chosen hard cases, random Unicode text, and a corpus of generated
//! documents; decoding gives the text back.

mod common;

use common::{PARTS, document};
use proptest::prelude::*;
use ringfeed_tokenize::Tokenizer;

fn reference(text: &str) -> Vec<u32> {
    tiktoken_rs::r50k_base_singleton().encode_ordinary(text)
}

fn check(text: &str) {
    let gpt2 = Tokenizer::gpt2().unwrap();
    let ids = gpt2.encode(text).unwrap();
    assert_eq!(ids, reference(text), "{text:?}");
    assert_eq!(gpt2.decode(&ids).unwrap(), text.as_bytes(), "{text:?}");
}

#[test]
fn hard_cases_match_tiktoken() {
    for text in [
        "",
        " ",
        "  ",
        "hello world",
        "hello  world",
        "hello   world",
        "hello \tworld",
        " \t\n word",
        "trailing spaces   ",
        "trailing newline\n",
        "\n\n\nparagraphs\n\n\nmore\n",
        "don't I'll we've they're she'd it's I'm DON'T",
        "'s at start, 'x and ''quoted''",
        "\"'s",
        "numbers 12345 6789.01 1,000,000 ½ ² ٣",
        "punctuation!!! ??? ... --- ;;; (x) [y] {z}",
        "mixed ünïcödé Ελληνικά Русский 中文字符 日本語 한국어 العربية",
        "emoji 🦀🚀 and ZWJ 👨‍👩‍👧 family",
        "tabs\tand\u{a0}nbsp\u{2003}em space\u{3000}ideographic",
        "<|endoftext|> is ordinary text here",
        "a\u{0301} combining, \u{200b}zero width",
        "   leading spaces",
        "x\r\ny\r\n",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "fn main() {\n    println!(\"{}\", x);\n}\n",
    ] {
        check(text);
    }
}

#[test]
fn known_ids() {
    let gpt2 = Tokenizer::gpt2().unwrap();
    assert_eq!(gpt2.encode("hello world").unwrap(), [31373, 995]);
    assert_eq!(gpt2.vocab_size(), 50257);
    assert_eq!(gpt2.eot(), Some(50256));
    assert_eq!(gpt2.decode(&[50256]).unwrap(), b"<|endoftext|>");
    assert!(gpt2.decode(&[50257]).is_err());
}

#[test]
fn generated_documents_match_tiktoken_one_by_one_and_in_batches() {
    let docs: Vec<String> = (0..300).map(|i| document(i, 50 + (i as usize * 37) % 400, &PARTS)).collect();
    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let gpt2 = Tokenizer::gpt2().unwrap();
    // One encoder for all: its cache must never change an answer.
    let mut enc = gpt2.encoder();
    for d in &docs {
        let mut ids = Vec::new();
        enc.encode(d, &mut ids).unwrap();
        assert_eq!(ids, reference(d));
    }
    for threads in [1, 2, 3] {
        let batch = gpt2.encode_batch(&refs, threads).unwrap();
        assert_eq!(batch.len(), docs.len());
        for (ids, d) in batch.iter().zip(&docs) {
            assert_eq!(ids, &reference(d), "threads {threads}");
        }
    }
    assert!(gpt2.encode_batch(&[], 2).unwrap().is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_unicode_matches_tiktoken(text in "\\PC{0,60}") {
        check(&text);
    }

    #[test]
    fn random_whitespace_heavy_text_matches_tiktoken(text in "[ \t\n\r\u{a0}\u{3000}a-zA-Z0-9'.,!é東🦀]{0,80}") {
        check(&text);
    }
}

/// Prints single-thread encode speed of ours and of tiktoken-rs's own
/// encoder on the shared text set (`$BENCH_DATA/text`, or
/// `~/.cache/ringfeed-bench/text`). Run:
/// `cargo test --release -p ringfeed-tokenize --test gpt2 speed -- --ignored --nocapture`.
#[test]
#[ignore = "prints timings; needs the shared text set"]
fn speed_against_tiktoken_rs() {
    let dir = std::env::var("BENCH_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/ringfeed-bench")
        })
        .join("text");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let docs: Vec<String> = files.iter().take(10_000).map(|p| std::fs::read_to_string(p).unwrap()).collect();
    let bytes: usize = docs.iter().map(String::len).sum();
    let gpt2 = Tokenizer::gpt2().unwrap();
    let reference = tiktoken_rs::r50k_base_singleton();
    for round in 0..2 {
        let t = std::time::Instant::now();
        let mut enc = gpt2.encoder();
        let mut n = 0;
        let mut ids = Vec::new();
        for d in &docs {
            ids.clear();
            enc.encode(d, &mut ids).unwrap();
            n += ids.len();
        }
        let ours = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let m: usize = docs.iter().map(|d| reference.encode_ordinary(d).len()).sum();
        let theirs = t.elapsed().as_secs_f64();
        assert_eq!(n, m);
        println!(
            "round {round}: {bytes} bytes, {n} tokens: ringfeed {:.2} M tokens/s, tiktoken-rs {:.2} M tokens/s ({:.2}x)",
            n as f64 / ours / 1e6,
            m as f64 / theirs / 1e6,
            theirs / ours
        );
    }
}
