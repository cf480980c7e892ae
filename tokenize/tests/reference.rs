//! The reference tokenizers themselves, in Python: tiktoken's `gpt2`
//! encoding (its `Encoding` built from the `r50k_base.tiktoken` file that
//! the tiktoken-rs crate ships, as nothing may be downloaded) and Hugging
//! Face's GPT-2 tokenizer (built by the `tokenizers` package from GPT-2's
//! `encoder.json` and `vocab.bpe`, shipped in the same crate, and saved as
//! a tokenizer.json). On generated documents, four encoders must agree id
//! for id: tiktoken, Hugging Face in Python, ringfeed's GPT-2, and
//! ringfeed reading that tokenizer.json.
//!
//! Needs `python3 -m pip install tiktoken tokenizers` (`.ci/run` does it).

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::PARTS;
use ringfeed_tokenize::Tokenizer;

/// The directory of tiktoken-rs's shipped vocabulary files.
fn tiktoken_assets() -> PathBuf {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pkg = meta["packages"].as_array().unwrap().iter().find(|p| p["name"] == "tiktoken-rs").unwrap();
    Path::new(pkg["manifest_path"].as_str().unwrap()).parent().unwrap().join("assets")
}

const PYTHON: &str = r#"
import json, sys
import tiktoken
from tiktoken.load import load_tiktoken_bpe
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
assets, docs_path, tok_json = sys.argv[1:4]
enc = tiktoken.Encoding(
    "gpt2",
    pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
    mergeable_ranks=load_tiktoken_bpe(f"{assets}/r50k_base.tiktoken"),
    special_tokens={"<|endoftext|>": 50256},
    explicit_n_vocab=50257,
)
hf = Tokenizer(models.BPE.from_file(f"{assets}/encoder.json", f"{assets}/vocab.bpe"))
hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
hf.decoder = decoders.ByteLevel()
hf.add_special_tokens(["<|endoftext|>"])
hf.save(tok_json)
docs = [json.loads(l)["text"] for l in open(docs_path, encoding="utf-8")]
for d in docs:
    print(json.dumps({"tiktoken": enc.encode_ordinary(d), "hf": hf.encode(d, add_special_tokens=False).ids}))
"#;

/// Half the documents write `<|endoftext|>` as text (see the test).
fn document(seed: u64) -> String {
    let parts = if seed.is_multiple_of(2) { &PARTS[..PARTS.len() - 1] } else { &PARTS[..] };
    common::document(seed, 20 + (seed as usize * 37) % 300, parts)
}

#[test]
fn python_tiktoken_and_hugging_face_give_the_same_ids() {
    let dir = tempfile::tempdir().unwrap();
    let docs: Vec<String> = (0..200).map(document).collect();
    let docs_path = dir.path().join("docs.jsonl");
    let lines: Vec<String> = docs.iter().map(|d| serde_json::json!({ "text": d }).to_string()).collect();
    std::fs::write(&docs_path, lines.join("\n")).unwrap();
    let tok_json = dir.path().join("tokenizer.json");
    let out = Command::new("python3")
        .arg("-c")
        .arg(PYTHON)
        .arg(tiktoken_assets())
        .arg(&docs_path)
        .arg(&tok_json)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the reference tokenizers failed (python3 -m pip install tiktoken tokenizers): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refs: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(refs.len(), docs.len());
    let gpt2 = Tokenizer::gpt2().unwrap();
    let hf = Tokenizer::from_file(&tok_json).unwrap();
    assert_eq!(hf.eot(), Some(50256));
    assert_eq!(hf.vocab_size(), 50257);
    let ours = gpt2.encode_batch(&docs.iter().map(String::as_str).collect::<Vec<_>>(), 2).unwrap();
    for ((d, r), mine) in docs.iter().zip(&refs).zip(&ours) {
        let tiktoken: Vec<u32> = serde_json::from_value(r["tiktoken"].clone()).unwrap();
        let hugging: Vec<u32> = serde_json::from_value(r["hf"].clone()).unwrap();
        assert_eq!(mine, &tiktoken, "tiktoken, {d:?}");
        // The tokenizer.json through ringfeed is what Hugging Face gives.
        let through_file = hf.encode(d).unwrap();
        assert_eq!(through_file, hugging, "the tokenizer.json through ringfeed, {d:?}");
        assert_eq!(hf.decode(&through_file).unwrap(), d.as_bytes());
        // Hugging Face matches its added tokens in the text itself, where
        // tiktoken's `encode_ordinary` reads `<|endoftext|>` as text; apart
        // from that, the same ids.
        if d.contains("<|endoftext|>") {
            assert!(hugging.contains(&50256) && !mine.contains(&50256));
        } else {
            assert_eq!(mine, &hugging, "Hugging Face, {d:?}");
        }
    }
}

#[test]
fn unknown_names_and_bad_files_are_clear_errors() {
    let e = Tokenizer::from_name("gpt5").unwrap_err().to_string();
    assert!(e.contains("unknown tokenizer \"gpt5\""), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("tokenizer.json");
    std::fs::write(&bad, "{\"not\": \"a tokenizer\"}").unwrap();
    let e = Tokenizer::from_name(bad.to_str().unwrap()).unwrap_err().to_string();
    assert!(e.contains("not a tokenizer.json"), "{e}");
    let e = Tokenizer::from_file(dir.path().join("missing.json")).unwrap_err().to_string();
    assert!(e.contains("missing.json"), "{e}");
}
