#!/usr/bin/env python3
"""Cold page cache against warm, for the image training pipeline, in one run.

usage: benches/cold_vs_warm.py [--rounds N] [--data DIR] [--baseline PATH]

A worker keeps the reads of its next unit in flight while it decodes the
current one, so a cold cache (every record read from the disk) should cost
the training pipeline next to nothing against a warm one (every record in
the page cache). This alternates, round by round, cold and warm runs of
`ringfeed bench --pipeline train --dtype f32 --io auto` on the shared
5,000 photos (packed into target/bench/images.rf if needed) at 1 and at 2
cores, and reports the median img/s of each and the cold/warm ratio.
Cold: `sync; echo 3 > /proc/sys/vm/drop_caches` (root) before the run;
warm: the shard files read once just before. Writes
target/bench/cold_vs_warm.json. `--baseline PATH` runs another `ringfeed`
binary (e.g. an older build) the same way, alternating with this one.
"""
import argparse, json, os, statistics, subprocess, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--data", default=os.environ.get("BENCH_DATA", os.path.expanduser("~/.cache/ringfeed-bench")))
ap.add_argument("--baseline", help="another ringfeed binary to measure the same way")
a = ap.parse_args()

out = root / "target/bench"
out.mkdir(parents=True, exist_ok=True)
subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "ringfeed-cli"], cwd=root, check=True)
rf = str(root / "target/release/ringfeed")
ds = out / "images.rf"
if not (ds / "manifest.json").exists():
    src = Path(a.data) / "imagefolder/train"
    if not src.is_dir():
        sys.exit(f"{src} missing: run ../shared/datasets/make.sh first")
    subprocess.run([rf, "pack", "-q", str(src), str(ds)], check=True)
shards = sorted(str(p) for p in ds.glob("*.rfp"))

bins = {"this build": rf}
if a.baseline:
    bins["baseline"] = a.baseline

def run(binary, cores, cache):
    if cache == "cold":
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    else:
        subprocess.run(["cat"] + shards, stdout=subprocess.DEVNULL, check=True)
    o = subprocess.run([binary, "bench", str(ds), "--json", "--no-digest", "--pipeline", "train", "--dtype", "f32",
                        "--io", "auto", "--cores", str(cores)], capture_output=True, text=True, check=True)
    return json.loads(o.stdout)["images_per_sec"]

results = {}
for r in range(a.rounds):
    for cores in (1, 2):
        for name, binary in (bins.items() if r % 2 == 0 else reversed(bins.items())):
            for cache in (("cold", "warm") if r % 2 == 0 else ("warm", "cold")):
                v = run(binary, cores, cache)
                results.setdefault(f"{name}:{cores}:{cache}", []).append(v)
                print(f"round {r} {name:10} cores {cores} {cache:4} {v:7.0f} img/s", flush=True)
summary = {}
print("\n| build | cores | cold img/s | warm img/s | cold / warm |\n|---|---|---|---|---|")
for name in bins:
    for cores in (1, 2):
        c, w = results[f"{name}:{cores}:cold"], results[f"{name}:{cores}:warm"]
        cold, warm = statistics.median(c), statistics.median(w)
        ratios = [x / y for x, y in zip(c, w)]
        summary[f"{name}:{cores}"] = {"cold": cold, "warm": warm, "ratio_of_medians": cold / warm, "round_ratios": ratios}
        print(f"| {name} | {cores} | {cold:.0f} | {warm:.0f} | {cold / warm:.3f} (rounds {', '.join(f'{x:.2f}' for x in ratios)}) |")
(out / "cold_vs_warm.json").write_text(json.dumps({"runs": results, "summary": summary}, indent=2))
