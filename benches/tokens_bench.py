#!/usr/bin/env python3
"""Token-window batches: ringfeed against nanoGPT's `get_batch` on the same
`train.bin` (GPT-2 ids of the shared text set, 76.6 M tokens), batch 12 x
1024, warm and cold page cache, alternating rounds, medians.

usage: benches/tokens_bench.py [--rounds 3] [--warm-steps 2000] [--cold-steps 300] [--out FILE.json]

  nanoGPT   get_batch as in its train.py on the CPU: a fresh np.memmap per
            batch, torch.randint offsets, data[i:i+T].astype(np.int64),
            torch.from_numpy, torch.stack, for x and y
  ringfeed  `ringfeed bench train.bin --block-size 1024 --batch 12`: random
            offsets (`--mode random`, nanoGPT's sampling) and exact epochs
            (`--mode epoch`, every window once, global shuffle), x and y
            built as int64 [B, T] for every batch; 8 reader threads,
            through the page cache, and random offsets with O_DIRECT
            (`--token-io direct`)
tokens/s counts x's tokens (B x T per batch) after the first batch; the
first batch is timed from the start of the loop (nanoGPT: after its
imports; ringfeed: from the process's start, opening the corpus included). Cold: drop_caches before each run (root). The token dataset and
train.bin are made once with `ringfeed tokenize` (train.bin is its shards'
data sections back to back: the same bytes nanoGPT's prepare.py writes).
"""
import argparse, json, os, statistics, subprocess, sys
from pathlib import Path

from benchlib import drop_caches, shard_data

root = Path(__file__).resolve().parent.parent
bench = Path(os.environ.get("BENCH_DATA", os.path.expanduser("~/.cache/ringfeed-bench")))
ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--warm-steps", type=int, default=2000)
ap.add_argument("--cold-steps", type=int, default=100)
ap.add_argument("--out", default=None)
ap.add_argument("--plot", default=str(root / "docs/tokens_bench.png"))
ap.add_argument("--plot-only", metavar="JSON", help="redo the plot from a previous --out file")
a = ap.parse_args()


def plot(m, path):
    """Tokens/s of each side, warm and cold, the medians of the rounds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    rows = [("nanoGPT get_batch", "nanogpt"), ("ringfeed random", "ringfeed_random"),
            ("ringfeed exact epochs", "ringfeed_epoch"), ("ringfeed random,\nO_DIRECT", "ringfeed_random_direct")]
    for ax, cache in zip(axes, ("warm", "cold")):
        names, vals = [n for n, _ in rows], [m[f"{cache}_{k}_tps"] / 1e6 for _, k in rows]
        colors = ["#ff7f0e" if n.startswith("nano") else "#1f77b4" for n in names]
        ax.barh(names[::-1], vals[::-1], color=colors[::-1])
        for i, v in enumerate(vals[::-1]):
            ax.text(v, i, f" {v:.1f}", va="center", fontsize=8)
        ax.set_title(f"{cache} page cache (M tokens/s)", fontsize=10)
        ax.set_xlim(0, max(vals) * 1.2)
    fig.suptitle("Batches of 12 x 1024 GPT-2 tokens, 76.6 M-token train.bin, 2-core VM (benches/tokens_bench.py, medians)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if a.plot_only:
    plot(json.loads(Path(a.plot_only).read_text())["medians"], a.plot)
    print(a.plot)
    raise SystemExit(0)

subprocess.run(["cargo", "build", "--release", "-q", "-p", "ringfeed-cli", "--bin", "ringfeed"], cwd=root, check=True)
rf = root / "target/release/ringfeed"
ds, binf = bench / "tokens", bench / "train.bin"
if not (ds / "manifest.json").exists():
    subprocess.run([rf, "tokenize", bench / "text", ds, "--quiet"], check=True)
if not binf.exists():
    with open(binf, "wb") as out:
        for data in shard_data(ds):
            out.write(data)
B, T = 12, 1024

NANOGPT = r'''
import json, sys, time
import numpy as np, torch
t0 = time.perf_counter()
path, steps, B, T = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(1337)
first = None
for _ in range(steps):
    data = np.memmap(path, dtype=np.uint16, mode="r")
    ix = torch.randint(len(data) - T, (B,))
    x = torch.stack([torch.from_numpy((data[i:i+T]).astype(np.int64)) for i in ix])
    y = torch.stack([torch.from_numpy((data[i+1:i+1+T]).astype(np.int64)) for i in ix])
    if first is None:
        first = time.perf_counter() - t0
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "first_batch_ms": first * 1e3, "tokens": steps * B * T}))
'''


def nanogpt(steps):
    j = json.loads(subprocess.run([sys.executable, "-c", NANOGPT, binf, str(steps), str(B), str(T)], check=True,
                                  capture_output=True, text=True).stdout)
    return steady(j), j["first_batch_ms"]


def steady(j):
    """Tokens/s after the first batch (startup is the first-batch figure)."""
    return (j["tokens"] - B * T) / (j["seconds"] - j["first_batch_ms"] / 1e3)


def ringfeed(steps, mode, io="buffered"):
    j = json.loads(subprocess.run([rf, "bench", binf, "--block-size", str(T), "--batch", str(B), "--mode", mode,
                                   "--steps", str(steps), "--epochs", "100", "--no-digest", "--json",
                                   "--token-io", io],
                                  check=True, capture_output=True, text=True).stdout)
    return steady(j), j["first_batch_ms"]


sides = {"nanogpt": lambda s: nanogpt(s), "ringfeed_random": lambda s: ringfeed(s, "random"),
         "ringfeed_epoch": lambda s: ringfeed(s, "epoch"),
         "ringfeed_random_direct": lambda s: ringfeed(s, "random", "direct")}
res = {f"{cache}_{side}_{k}": [] for cache in ("warm", "cold") for side in sides for k in ("tps", "first_ms")}
subprocess.run(["cat", str(binf)], stdout=subprocess.DEVNULL, check=True)
for r in range(a.rounds):
    order = list(sides) if r % 2 == 0 else list(reversed(sides))
    for cache, steps in (("warm", a.warm_steps), ("cold", a.cold_steps)):
        for side in order:
            if cache == "cold":
                drop_caches()
            else:
                subprocess.run(["cat", str(binf)], stdout=subprocess.DEVNULL, check=True)
            tps, first = sides[side](steps)
            res[f"{cache}_{side}_tps"].append(tps)
            res[f"{cache}_{side}_first_ms"].append(first)
    print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in res.items() if k.endswith("tps")), flush=True)
m = {k: statistics.median(v) for k, v in res.items()}
goals = {
    "warm: ringfeed random >= 1.5x nanoGPT": m["warm_ringfeed_random_tps"] / m["warm_nanogpt_tps"],
    "cold: ringfeed random >= 3x nanoGPT": m["cold_ringfeed_random_tps"] / m["cold_nanogpt_tps"],
    "warm: exact epochs >= 0.9x random": m["warm_ringfeed_epoch_tps"] / m["warm_ringfeed_random_tps"],
    "cold: exact epochs >= 0.9x random": m["cold_ringfeed_epoch_tps"] / m["cold_ringfeed_random_tps"],
}
want = [1.5, 3.0, 0.9, 0.9]
print(json.dumps({"rounds": res, "medians": m, "goals": goals}, indent=1))
for (k, v), w in zip(goals.items(), want):
    print(f"{'MET' if v >= w else 'MISSED'}: {k}: {v:.2f}")
if a.out:
    Path(a.out).write_text(json.dumps({"rounds": res, "medians": m, "goals": goals}, indent=1))
plot(m, a.plot)
