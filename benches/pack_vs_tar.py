#!/usr/bin/env python3
"""Pack the shared 5,000-image set with `ringfeed pack` and with `tar cf`,
same input, same output disk, alternating runs, and report the ratio.

usage: benches/pack_vs_tar.py [--runs N] [--src DIR] [--out DIR]

Both commands start from a deleted output and a warm page cache for the
input. `ringfeed pack` fsyncs every shard (a crash never leaves a dataset
that opens); plain `tar cf` does not, so `tar cf` + `sync -f` is reported
too. Prints a markdown table and writes target/bench/pack_vs_tar.json.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, time
from pathlib import Path

root = Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--runs", type=int, default=7)
ap.add_argument("--shard-size", default="128M")
ap.add_argument("--src", default=os.path.join(os.environ.get("BENCH_DATA", os.path.expanduser("~/.cache/ringfeed-bench")), "imagefolder/train"))
ap.add_argument("--out", default=str(root / "target/bench"))
a = ap.parse_args()

src, out = Path(a.src), Path(a.out)
if not src.is_dir():
    sys.exit(f"{src} missing: run ../shared/datasets/make.sh first")
subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "ringfeed-cli"], cwd=root, check=True)
out.mkdir(parents=True, exist_ok=True)
ds, tarball = out / "pack-ds", out / "pack.tar"
cmds = {
    "ringfeed pack": [str(root / "target/release/ringfeed"), "pack", "-q", "--shard-size", a.shard_size, str(src), str(ds)],
    "tar cf": ["tar", "cf", str(tarball), "-C", str(src.parent), src.name],
    "tar cf + sync": ["sh", "-c", f"tar cf {tarball} -C {src.parent} {src.name} && sync -f {tarball}"],
}

def clean():
    shutil.rmtree(ds, ignore_errors=True)
    tarball.unlink(missing_ok=True)
    subprocess.run(["sync", "-f", str(out)], check=True)

def timed(cmd):
    clean()
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t

for cmd in cmds.values():  # warm the input's page cache and the binaries
    timed(cmd)
times = {k: [] for k in cmds}
for _ in range(a.runs):
    for k, cmd in cmds.items():
        times[k].append(timed(cmd))
nbytes = sum(f.stat().st_size for f in src.rglob("*") if f.is_file())
base = times["tar cf"]
ratios = [r / t for r, t in zip(times["ringfeed pack"], base)]
ratios_sync = [r / t for r, t in zip(times["ringfeed pack"], times["tar cf + sync"])]
result = {
    "input_bytes": nbytes,
    "runs": a.runs,
    "median_s": {k: statistics.median(v) for k, v in times.items()},
    "ratio_vs_tar_median": statistics.median(ratios),
    "ratio_vs_tar_sync_median": statistics.median(ratios_sync),
    "times_s": times,
}
print(f"input: {src} ({nbytes / 1e6:.0f} MB), {a.runs} alternating runs, medians\n")
print("| command | median s | MB/s | ringfeed / this (median of per-run ratios) |\n|---|---|---|---|")
for k, v in times.items():
    m = statistics.median(v)
    rel = {"tar cf": result["ratio_vs_tar_median"], "tar cf + sync": result["ratio_vs_tar_sync_median"]}.get(k)
    print(f"| {k} | {m:.3f} | {nbytes / 1e6 / m:.0f} | {'' if rel is None else f'{rel:.2f}x'} |")
(out / "pack_vs_tar.json").write_text(json.dumps(result, indent=2))
clean()
