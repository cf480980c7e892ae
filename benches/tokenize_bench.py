#!/usr/bin/env python3
"""GPT-2 tokenization throughput: `ringfeed tokenize` against tiktoken's
Python batch encode, on the shared text set (50,000 documents, ~250 MB),
2 threads each, warm page cache, alternating rounds, medians; and a check
that both give the same ids, token for token.

usage: benches/tokenize_bench.py [--rounds 3] [--text DIR] [--out FILE.json]

  tiktoken  tiktoken.Encoding("gpt2") built from the r50k_base.tiktoken file
            the tiktoken-rs crate ships (nothing is downloaded), then
            encode_ordinary_batch(docs, num_threads=2) over the documents
            already in memory (reading them is not timed), + one
            end-of-text id per document.
  ringfeed  `ringfeed tokenize TEXT OUT --threads 2`: the whole job, timed
            by the process: reading the files, tokenizing, writing the
            token dataset (checksummed, fsynced).
Identity: every shard's data section of ringfeed's dataset, concatenated,
equals tiktoken's ids + end-of-text per document as little-endian u16.
"""
import argparse, glob, hashlib, json, os, shutil, statistics, subprocess, tempfile, time
from pathlib import Path

from benchlib import shard_data

root = Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--text", default=os.path.join(os.environ.get("BENCH_DATA", os.path.expanduser("~/.cache/ringfeed-bench")), "text"))
ap.add_argument("--out", default=None)
a = ap.parse_args()

import numpy as np
import tiktoken
from tiktoken.load import load_tiktoken_bpe

subprocess.run(["cargo", "build", "--release", "-q", "-p", "ringfeed-cli", "--bin", "ringfeed"], cwd=root, check=True)
rf = root / "target/release/ringfeed"
meta = json.loads(subprocess.run(["cargo", "metadata", "--format-version", "1", "--locked"], cwd=root, check=True,
                                 capture_output=True, text=True).stdout)
assets = Path(next(p["manifest_path"] for p in meta["packages"] if p["name"] == "tiktoken-rs")).parent / "assets"
enc = tiktoken.Encoding(
    "gpt2",
    pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
    mergeable_ranks=load_tiktoken_bpe(str(assets / "r50k_base.tiktoken")),
    special_tokens={"<|endoftext|>": 50256},
    explicit_n_vocab=50257,
)
files = sorted(glob.glob(os.path.join(a.text, "*.txt")))
docs = [open(f, encoding="utf-8").read() for f in files]
source_bytes = sum(os.path.getsize(f) for f in files)
scratch = Path(tempfile.mkdtemp(prefix="rf-tok-"))


def tiktoken_round():
    t = time.perf_counter()
    ids = enc.encode_ordinary_batch(docs, num_threads=2)
    dt = time.perf_counter() - t
    return ids, dt


def ringfeed_round():
    out = scratch / "tokens"
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    j = json.loads(subprocess.run([rf, "tokenize", a.text, out, "--threads", "2", "--json"], check=True,
                                  capture_output=True, text=True).stdout)
    return out, time.perf_counter() - t, j


def dataset_bytes(ds):
    h = hashlib.sha256()
    for data in shard_data(ds):
        h.update(data)
    return h.hexdigest()


res = {"tiktoken_s": [], "ringfeed_s": []}
tokens = None
for r in range(a.rounds):
    for side in (["tiktoken", "ringfeed"] if r % 2 == 0 else ["ringfeed", "tiktoken"]):
        if side == "tiktoken":
            ids, dt = tiktoken_round()
            res["tiktoken_s"].append(dt)
            if r == 0:
                flat = np.concatenate([np.array(x + [50256], dtype=np.uint16) for x in ids])
                want = hashlib.sha256(flat.tobytes()).hexdigest()
                tokens = len(flat)
        else:
            out, dt, j = ringfeed_round()
            res["ringfeed_s"].append(dt)
            if r == 0:
                got = dataset_bytes(out)
    print(f"round {r + 1}: tiktoken {res['tiktoken_s'][-1]:.2f} s, ringfeed {res['ringfeed_s'][-1]:.2f} s", flush=True)
shutil.rmtree(scratch, ignore_errors=True)
m = {k: statistics.median(v) for k, v in res.items()}
summary = {
    "documents": len(docs), "source_bytes": source_bytes, "tokens": tokens, "same_ids": got == want,
    "tiktoken_tokens_per_s": tokens / m["tiktoken_s"], "ringfeed_tokens_per_s": tokens / m["ringfeed_s"],
    "ratio": m["tiktoken_s"] / m["ringfeed_s"], "rounds": res,
}
print(json.dumps(summary, indent=1))
print(f"{'MET' if summary['ratio'] >= 1.5 and summary['same_ids'] else 'MISSED'}: ringfeed >= 1.5x tiktoken "
      f"(2 threads each): {summary['ratio']:.2f}x, ids identical: {summary['same_ids']}")
if a.out:
    Path(a.out).write_text(json.dumps(summary, indent=1))
