//! Token corpora read in place: a ringfeed token dataset, a nanoGPT
//! `train.bin`, a Megatron-LM indexed dataset (its `.idx` built here byte
//! by byte after Megatron's `_IndexWriter`) and datatrove's `.ds` files
//! all give the same tokens and documents; damaged or hostile files are
//! errors naming the file and offset.

mod common;

use common::scratch;
use ringfeed_pack::{
    Dataset, Error, PackWriter, Payload, Schema, TokenCorpus, TokenCorpusOptions, TokenDtype, TokenFormat,
    write_megatron_index,
};

const EOT: u32 = 50_256;

/// Documents of varied lengths (ids below GPT-2's vocabulary, no EOT
/// inside), each followed by EOT in the corpus.
fn documents() -> Vec<Vec<u32>> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..60)
        .map(|d| {
            let len = [0usize, 1, 7, 300, 1025, 5000][d % 6] + d;
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 50_000) as u32
                })
                .collect()
        })
        .collect()
}

fn corpus(docs: &[Vec<u32>]) -> (Vec<u32>, Vec<u64>) {
    let mut all = Vec::new();
    let mut starts = vec![0];
    for d in docs {
        all.extend_from_slice(d);
        all.push(EOT);
        starts.push(all.len() as u64);
    }
    (all, starts)
}

fn le(ids: &[u32], dtype: TokenDtype) -> Vec<u8> {
    match dtype {
        TokenDtype::U16 => ids.iter().flat_map(|&t| (t as u16).to_le_bytes()).collect(),
        TokenDtype::U32 => ids.iter().flat_map(|&t| t.to_le_bytes()).collect(),
    }
}

/// Opens `path` through the page cache and with direct I/O; both agree
/// with `all` and `starts`.
fn check_both(path: &std::path::Path, options: TokenCorpusOptions, all: &[u32], starts: &[u64]) {
    for direct_io in [false, true] {
        let c = TokenCorpus::open(path, &TokenCorpusOptions { direct_io, ..options.clone() }).unwrap();
        // Scratch directories are on ext4 (target/), which has O_DIRECT.
        assert_eq!(c.direct_io(), direct_io);
        check(&c, all, starts);
    }
}

/// Every read of a few hundred ranges, and the documents, agree.
fn check(c: &TokenCorpus, all: &[u32], starts: &[u64]) {
    assert_eq!(c.len(), all.len() as u64);
    assert_eq!(c.documents().unwrap(), starts);
    let mut whole = vec![0u32; all.len()];
    c.read(0, &mut whole).unwrap();
    assert_eq!(whole, all);
    for k in 0..300u64 {
        let start = (k * 7919) % all.len() as u64;
        let n = ((k * 104_729) % 3000).min(all.len() as u64 - start) as usize;
        let mut out = vec![0u32; n];
        c.read(start, &mut out).unwrap();
        assert_eq!(out, all[start as usize..start as usize + n], "{start}+{n}");
    }
    let mut past = vec![0u32; 2];
    assert!(c.read(all.len() as u64 - 1, &mut past).is_err());
}

#[test]
fn a_ringfeed_token_dataset_with_documents_across_records() {
    let docs = documents();
    let (all, starts) = corpus(&docs);
    let d = scratch();
    let dir = d.path().join("ds");
    let payload =
        Payload::Tokens { dtype: TokenDtype::U16, eot: EOT, vocab_size: 50_257, tokenizer: "gpt2".into() };
    let mut w = PackWriter::builder(&dir)
        .schema(Schema { payload, labels: true, keys: false })
        .shard_size(20_000)
        .build()
        .unwrap();
    for doc in &docs {
        let mut ids = doc.clone();
        ids.push(EOT);
        // Records of at most 1,000 tokens: long documents span several.
        let pieces: Vec<&[u32]> = ids.chunks(1000).collect();
        for (k, p) in pieces.iter().enumerate() {
            w.push(&le(p, TokenDtype::U16), i64::from(k + 1 == pieces.len()), None).unwrap();
        }
    }
    w.finish().unwrap();
    assert!(Dataset::open(&dir).unwrap().shards().len() > 3, "several shards");
    let c = TokenCorpus::open(&dir, &TokenCorpusOptions::default()).unwrap();
    assert_eq!((c.format(), c.dtype(), c.eot()), (TokenFormat::Ringfeed, TokenDtype::U16, EOT));
    // A smaller vocabulary than the dataset's: its ids past it are errors.
    let small =
        TokenCorpus::open(&dir, &TokenCorpusOptions { vocab_size: Some(100), ..Default::default() }).unwrap();
    let mut few = vec![0u32; 500];
    assert!(small.read(0, &mut few).unwrap_err().to_string().contains("past the vocabulary of 100"));
    check_both(&dir, TokenCorpusOptions::default(), &all, &starts);

    // A flipped byte inside a record: reads covering it fail, naming it.
    let ds = Dataset::open(&dir).unwrap();
    let loc = ds.locate(5).unwrap();
    let path = ds.shards()[loc.shard].path().to_path_buf();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[loc.offset as usize + 1] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let c = TokenCorpus::open(&dir, &TokenCorpusOptions::default()).unwrap();
    let mut out = vec![0u32; all.len()];
    let e = c.read(0, &mut out).unwrap_err();
    assert!(e.is_corruption(), "{e}");

    // The writer refuses what is not a token record.
    let mut w = PackWriter::builder(d.path().join("bad"))
        .schema(Schema {
            payload: Payload::Tokens {
                dtype: TokenDtype::U16,
                eot: EOT,
                vocab_size: 50_257,
                tokenizer: "x".into(),
            },
            labels: true,
            keys: false,
        })
        .build()
        .unwrap();
    assert!(w.push(&[1, 2, 3], 1, None).is_err(), "odd bytes for u16 ids");
    assert!(w.push(&[1, 2], 2, None).is_err(), "labels say whether a document ends");
    let e = w.push(&le(&[5, 50_257], TokenDtype::U16), 1, None).unwrap_err().to_string();
    assert!(e.contains("id 50257 is past the vocabulary"), "{e}");
    assert!(
        PackWriter::builder(d.path().join("bad2"))
            .schema(Schema {
                payload: Payload::Tokens {
                    dtype: TokenDtype::U16,
                    eot: 70_000,
                    vocab_size: 70_001,
                    tokenizer: "x".into()
                },
                labels: true,
                keys: false,
            })
            .build()
            .is_err(),
        "a vocabulary past u16"
    );
}

#[test]
fn a_nanogpt_bin_in_either_width() {
    let docs = documents();
    let (all, starts) = corpus(&docs);
    let d = scratch();
    for dtype in [TokenDtype::U16, TokenDtype::U32] {
        let path = d.path().join(format!("train-{dtype:?}.bin"));
        std::fs::write(&path, le(&all, dtype)).unwrap();
        let options = TokenCorpusOptions { dtype: Some(dtype), ..Default::default() };
        let c = TokenCorpus::open(&path, &options).unwrap();
        assert_eq!(c.format(), TokenFormat::NanoGpt);
        check_both(&path, options, &all, &starts);
    }
    // Ids past the vocabulary the caller names are errors at their offset.
    let path = d.path().join("big-ids.bin");
    std::fs::write(&path, le(&[1, 2, 60_000, 3], TokenDtype::U16)).unwrap();
    let c = TokenCorpus::open(&path, &TokenCorpusOptions { vocab_size: Some(50_257), ..Default::default() })
        .unwrap();
    let mut out = vec![0u32; 4];
    let e = c.read(0, &mut out).unwrap_err();
    assert!(e.is_corruption() && e.to_string().contains("byte 4") && e.to_string().contains("60000"), "{e}");
    c.read(0, &mut out[..2]).unwrap();
    // Half an id at the end.
    let path = d.path().join("odd.bin");
    std::fs::write(&path, [1u8, 2, 3]).unwrap();
    let e = TokenCorpus::open(&path, &TokenCorpusOptions::default()).unwrap_err().to_string();
    assert!(e.contains("odd.bin") && e.contains("whole number"), "{e}");
}

/// A Megatron index as its `_IndexWriter` writes one, for `lengths`
/// (one sequence per document unless `doc_idx` says otherwise).
fn megatron_idx(code: u8, lengths: &[i32], pointers: &[i64], doc_idx: &[i64]) -> Vec<u8> {
    let mut out = b"MMIDIDX\x00\x00".to_vec();
    out.extend_from_slice(&1u64.to_le_bytes());
    out.push(code);
    out.extend_from_slice(&(lengths.len() as u64).to_le_bytes());
    out.extend_from_slice(&(doc_idx.len() as u64).to_le_bytes());
    lengths.iter().for_each(|l| out.extend_from_slice(&l.to_le_bytes()));
    pointers.iter().for_each(|p| out.extend_from_slice(&p.to_le_bytes()));
    doc_idx.iter().for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
    out
}

#[test]
fn a_megatron_indexed_dataset_and_hostile_indexes() {
    let docs = documents();
    let (all, starts) = corpus(&docs);
    let d = scratch();
    let prefix = d.path().join("owt_text_document");
    // Two sequences per document (the text, then its EOT), as sentence
    // splitting makes; document indices group them.
    let mut lengths = Vec::new();
    for doc in &docs {
        lengths.extend([doc.len() as i32, 1]);
    }
    let mut pointers = Vec::new();
    let mut at = 0i64;
    for &l in &lengths {
        pointers.push(at * 2);
        at += i64::from(l);
    }
    let doc_idx: Vec<i64> = (0..=docs.len() as i64).map(|d| 2 * d).collect();
    let good = megatron_idx(8, &lengths, &pointers, &doc_idx);
    std::fs::write(prefix.with_extension("bin"), le(&all, TokenDtype::U16)).unwrap();
    std::fs::write(prefix.with_extension("idx"), &good).unwrap();
    for p in [prefix.clone(), prefix.with_extension("bin"), prefix.with_extension("idx")] {
        let c = TokenCorpus::open(&p, &TokenCorpusOptions::default()).unwrap();
        assert_eq!((c.format(), c.dtype()), (TokenFormat::Megatron, TokenDtype::U16));
        check_both(&p, TokenCorpusOptions::default(), &all, &starts);
    }
    // ringfeed's writer (one sequence per document) agrees.
    let ours =
        write_megatron_index(&starts.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>(), TokenDtype::U16);
    std::fs::write(prefix.with_extension("idx"), &ours).unwrap();
    check(&TokenCorpus::open(&prefix, &TokenCorpusOptions::default()).unwrap(), &all, &starts);

    let open = |idx: &[u8]| {
        std::fs::write(prefix.with_extension("idx"), idx).unwrap();
        TokenCorpus::open(&prefix, &TokenCorpusOptions::default()).unwrap_err()
    };
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert!(open(&bad_magic).to_string().contains("MMIDIDX"));
    let mut version = good.clone();
    version[9] = 2;
    assert!(open(&version).to_string().contains("version 2"));
    let floats = megatron_idx(6, &lengths, &pointers, &doc_idx);
    assert!(matches!(open(&floats), Error::Unsupported { .. }));
    assert!(open(&good[..good.len() - 3]).to_string().contains("truncated"));
    let mut huge = good.clone();
    huge[18..26].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(open(&huge).is_corruption(), "a count past the file is refused before allocating");
    let mut falling = doc_idx.clone();
    falling.swap(3, 4);
    let e = open(&megatron_idx(8, &lengths, &pointers, &falling));
    assert!(e.to_string().contains("document index 4"), "{e}"); // the first that falls
    let mut negative = lengths.clone();
    negative[2] = -5;
    assert!(open(&megatron_idx(8, &negative, &pointers, &doc_idx)).to_string().contains("length -5"));
    let mut gap = pointers.clone();
    gap[3] += 2;
    assert!(matches!(open(&megatron_idx(8, &lengths, &gap, &doc_idx)), Error::Unsupported { .. }));
    std::fs::write(prefix.with_extension("idx"), &good).unwrap();
    std::fs::write(prefix.with_extension("bin"), &le(&all, TokenDtype::U16)[..100]).unwrap();
    let e = TokenCorpus::open(&prefix, &TokenCorpusOptions::default()).unwrap_err().to_string();
    assert!(e.contains(".bin") && e.contains("truncated"), "{e}");
}

#[test]
fn a_datatrove_ds_file_and_its_index() {
    let docs = documents();
    let (all, starts) = corpus(&docs);
    let d = scratch();
    let ends: Vec<u8> = starts[1..].iter().flat_map(|e| e.to_le_bytes()).collect();
    for dtype in [TokenDtype::U16, TokenDtype::U32] {
        let path = d.path().join(format!("000_{dtype:?}.ds"));
        std::fs::write(&path, le(&all, dtype)).unwrap();
        std::fs::write(d.path().join(format!("000_{dtype:?}.ds.index")), &ends).unwrap();
        let c = TokenCorpus::open(&path, &TokenCorpusOptions::default()).unwrap();
        assert_eq!((c.format(), c.dtype()), (TokenFormat::Datatrove, dtype));
        check_both(&path, TokenCorpusOptions::default(), &all, &starts);
    }
    let path = d.path().join("bad.ds");
    std::fs::write(&path, vec![0u8; 3 * all.len()]).unwrap();
    std::fs::write(d.path().join("bad.ds.index"), &ends).unwrap();
    assert!(
        TokenCorpus::open(&path, &TokenCorpusOptions::default())
            .unwrap_err()
            .to_string()
            .contains("neither 2 nor 4")
    );
    std::fs::write(d.path().join("bad.ds.index"), &ends[..ends.len() - 3]).unwrap();
    assert!(TokenCorpus::open(&path, &TokenCorpusOptions::default()).is_err());
}

/// 2,000 mutations of a Megatron index and of a datatrove index (flipped
/// bits, overwritten bytes, cut lengths): each opens or fails with an
/// error, never a panic, and a corpus that opens reads whole or fails
/// with an error.
#[test]
fn mutated_indexes_are_errors_never_panics() {
    let docs = documents();
    let (all, starts) = corpus(&docs[..12]);
    let d = scratch();
    let prefix = d.path().join("m");
    std::fs::write(prefix.with_extension("bin"), le(&all, TokenDtype::U16)).unwrap();
    let lens: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    let idx = write_megatron_index(&lens, TokenDtype::U16);
    let ds = d.path().join("t.ds");
    std::fs::write(&ds, le(&all, TokenDtype::U16)).unwrap();
    let ends: Vec<u8> = starts[1..].iter().flat_map(|e| e.to_le_bytes()).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut opened, mut read) = (0, 0);
    for round in 0..2_000 {
        let (clean, file, open_at): (&[u8], std::path::PathBuf, std::path::PathBuf) = if round % 2 == 0 {
            (&idx, prefix.with_extension("idx"), prefix.clone())
        } else {
            (&ends, d.path().join("t.ds.index"), ds.clone())
        };
        let mut bytes = clean.to_vec();
        match next() % 4 {
            0 => bytes.truncate((next() as usize) % (bytes.len() + 1)),
            1 => {
                let at = (next() as usize) % bytes.len();
                bytes[at] ^= 1 << (next() % 8);
            }
            _ => {
                for _ in 0..1 + next() % 3 {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] = next() as u8;
                }
            }
        }
        std::fs::write(&file, &bytes).unwrap();
        let Ok(c) = TokenCorpus::open(&open_at, &TokenCorpusOptions::default()) else { continue };
        opened += 1;
        let _ = c.documents();
        let mut out = vec![0u32; c.len().min(1 << 20) as usize];
        if c.read(0, &mut out).is_ok() {
            read += 1;
        }
    }
    println!("{opened} of 2,000 mutated indexes opened, {read} read whole");
    assert!(opened > 0, "some mutations (of values the index does not check) still open");
}
