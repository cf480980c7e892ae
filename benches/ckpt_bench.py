#!/usr/bin/env python3
"""Checkpoint load and save against fio and the usual tools, cold page cache,
one run of alternating rounds (medians): scripts/make-ckpt.py's 2.47 GB
Llama-3.2-1B-like file (149 tensors: bf16, f32, i64, u8).

usage: benches/ckpt_bench.py [--rounds 3] [--dir ~/.cache/ringfeed-bench/ckpt] [--out FILE.json]
       [--plot docs/ckpt_bench.png] [--plot-only FILE.json]

Load, each after drop_caches:
  fio      sequential read, O_DIRECT, 1 MiB, io_uring, queue depth 4
  ringfeed `ringfeed ckpt bench FILE` (O_DIRECT, 8 MiB reads, 4 in flight)
           on the Python-written file, and on ringfeed's own copy
           (CRC32C per tensor verified)
  py-st    safetensors.torch.load_file (mmap, a copy per tensor), then a
           sum over every tensor's bytes
  rs-st    the Rust safetensors crate over mmap (benches/st-mmap),
           touching every cache line
  torch    torch.load(weights_only=True) of the same dict saved with torch.save
Save (each to a new file, durable: fsync):
  fio      sequential write, O_DIRECT, 1 MiB, queue depth 4, end_fsync
  ringfeed sync save; async save (and the time the caller was blocked,
           against a plain memcpy of the tensors)
  py-st    safetensors.torch.save_file + fsync
  torch    torch.save + fsync
Storm: `ringfeed ckpt bench FILE --procs 4` (cold) against one process.
Needs root (drop_caches), fio, torch and safetensors.
"""
import argparse, json, os, statistics, subprocess, sys
from pathlib import Path

from benchlib import drop_caches

root = Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--dir", default=os.path.join(os.environ.get("BENCH_DATA", os.path.expanduser("~/.cache/ringfeed-bench")), "ckpt"))
ap.add_argument("--out", default=None)
ap.add_argument("--plot", default=str(root / "docs/ckpt_bench.png"))
ap.add_argument("--plot-only", metavar="JSON", help="redo the plot from a previous --out file")
a = ap.parse_args()


def plot(m, path):
    """Load and save GB/s of each tool, the medians of the rounds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, title, rows in [
        (axes[0], "load, cold cache (GB/s)", [("fio read", "fio_read"), ("ringfeed", "rf_load"), ("ringfeed + CRC", "rf_load_crc"),
                                             ("Rust safetensors\n(mmap)", "rs_st_mmap"), ("Python\nsafetensors", "py_st_load"), ("torch.load", "torch_load")]),
        (axes[1], "save, durable (GB/s)", [("fio write", "fio_write"), ("ringfeed", "rf_save"), ("ringfeed async", "rf_save_async"),
                                          ("Python\nsafetensors", "py_st_save"), ("torch.save", "torch_save")])]:
        names, vals = [n for n, _ in rows], [m[k] for _, k in rows]
        colors = ["#999999" if n.startswith("fio") else "#1f77b4" if n.startswith("ringfeed") else "#ff7f0e" for n in names]
        ax.barh(names[::-1], vals[::-1], color=colors[::-1])
        for i, v in enumerate(vals[::-1]):
            ax.text(v, i, f" {v:.2f}", va="center", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, max(vals) * 1.2)
    fig.suptitle("2.47 GB safetensors checkpoint, 2-core VM (benches/ckpt_bench.py, medians)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if a.plot_only:
    plot(json.loads(Path(a.plot_only).read_text())["medians"], a.plot)
    print(a.plot)
    raise SystemExit(0)
d = Path(a.dir)
if not (d / "model.safetensors").exists():
    subprocess.run([sys.executable, str(root / "scripts/make-ckpt.py"), "--out", str(d)], check=True)
st, pt = d / "model.safetensors", d / "model.pt"
size = st.stat().st_size
subprocess.run(["cargo", "build", "--release", "-q", "-p", "ringfeed-cli", "-p", "ringfeed-benches", "--bin", "ringfeed", "--bin", "st-mmap"], cwd=root, check=True)
rf, stmmap = root / "target/release/ringfeed", root / "target/release/st-mmap"
ours = d / "ringfeed.safetensors"


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def fio(rw, path, extra=()):
    cmd = ["fio", "--name=ckpt", f"--rw={rw}", "--bs=1M", "--iodepth=4", "--direct=1", "--ioengine=io_uring",
           f"--filename={path}", "--output-format=json", *extra]
    if rw == "read":
        cmd.append("--readonly")
    else:
        cmd += [f"--size={size}", "--end_fsync=1"]
    j = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)["jobs"][0]
    side = j["read"] if rw == "read" else j["write"]
    # bw over the whole job (write: including the final fsync)
    return side["io_bytes"] / (j["job_runtime"] / 1e3) / 1e9


PY_LOAD = r'''
import sys, time, torch
from safetensors.torch import load_file
t = time.perf_counter()
ts = load_file(sys.argv[1])
s = 0
for v in ts.values():
    s += int(v.view(-1).view(torch.uint8).sum()) if v.numel() else 0
print(time.perf_counter() - t)
'''
TORCH_LOAD = r'''
import sys, time, torch
t = time.perf_counter()
ts = torch.load(sys.argv[1], weights_only=True)
s = 0
for v in ts.values():
    s += int(v.view(-1).view(torch.uint8).sum()) if v.numel() else 0
print(time.perf_counter() - t)
'''
PY_SAVE = r'''
import os, sys, time, torch
from safetensors.torch import load_file, save_file
ts = load_file(sys.argv[1])
kind, out = sys.argv[2], sys.argv[3]
t = time.perf_counter()
if kind == "st":
    save_file(ts, out, metadata={"format": "pt"})
else:
    torch.save(ts, out)
fd = os.open(out, os.O_RDONLY); os.fsync(fd); os.close(fd)
print(time.perf_counter() - t)
'''


def py(script, *args):
    return float(subprocess.run([sys.executable, "-c", script, *map(str, args)], check=True, capture_output=True, text=True).stdout.split()[-1])


# ringfeed's own copy (with checksums), made once.
run_json([rf, "ckpt", "bench", st, "--save-to", ours])
res = {k: [] for k in ["fio_read", "rf_load", "rf_load_crc", "py_st_load", "rs_st_mmap", "torch_load", "fio_write",
                       "rf_save", "rf_save_async", "rf_async_blocked_vs_memcpy", "py_st_save", "torch_save", "storm_1", "storm_4"]}
scratch = d / "out"
scratch.mkdir(exist_ok=True)
for r in range(a.rounds):
    order = ["load", "save", "storm"] if r % 2 == 0 else ["storm", "save", "load"]
    for part in order:
        if part == "load":
            drop_caches(); res["fio_read"].append(fio("read", st))
            drop_caches(); res["rf_load"].append(run_json([rf, "ckpt", "bench", st])["gb_per_s"])
            drop_caches(); res["rf_load_crc"].append(run_json([rf, "ckpt", "bench", ours])["gb_per_s"])
            drop_caches(); res["py_st_load"].append(size / py(PY_LOAD, st) / 1e9)
            drop_caches(); res["rs_st_mmap"].append(size / run_json([stmmap, st])["seconds"] / 1e9)
            drop_caches(); res["torch_load"].append(pt.stat().st_size / py(TORCH_LOAD, pt) / 1e9)
        elif part == "save":
            for f in scratch.glob("*"):
                f.unlink()
            drop_caches(); res["fio_write"].append(fio("write", scratch / "fio.bin"))
            drop_caches(); res["rf_save"].append(run_json([rf, "ckpt", "bench", st, "--save-to", scratch / "rf.safetensors"])["gb_per_s"])
            drop_caches(); j = run_json([rf, "ckpt", "bench", st, "--save-to", scratch / "rf-async.safetensors", "--async"])
            res["rf_save_async"].append(j["gb_per_s"]); res["rf_async_blocked_vs_memcpy"].append(j["blocked_vs_memcpy"])
            drop_caches(); res["py_st_save"].append(size / py(PY_SAVE, st, "st", scratch / "py.safetensors") / 1e9)
            drop_caches(); res["torch_save"].append(size / py(PY_SAVE, st, "pt", scratch / "py.pt") / 1e9)
        else:
            drop_caches(); res["storm_1"].append(run_json([rf, "ckpt", "bench", st])["seconds"])
            drop_caches(); j = run_json([rf, "ckpt", "bench", st, "--procs", "4"])
            assert j["storage_reads"] == 1 and j["same_bytes"], j
            res["storm_4"].append(j["seconds"])
    print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in res.items()), flush=True)
for f in scratch.glob("*"):
    f.unlink()
m = {k: statistics.median(v) for k, v in res.items()}
goals = {
    "load >= 0.9x fio read": m["rf_load"] / m["fio_read"],
    "load >= 2x Python safetensors": m["rf_load"] / m["py_st_load"],
    "sync save >= 0.8x fio write": m["rf_save"] / m["fio_write"],
    "sync save >= 1.5x Python safetensors + fsync": m["rf_save"] / m["py_st_save"],
    "save_async blocks <= 1.2x memcpy": m["rf_async_blocked_vs_memcpy"],
    "4 processes <= 1.3x one": m["storm_4"] / m["storm_1"],
}
want = {"load >= 0.9x fio read": 0.9, "load >= 2x Python safetensors": 2.0, "sync save >= 0.8x fio write": 0.8,
        "sync save >= 1.5x Python safetensors + fsync": 1.5}
print(json.dumps({"rounds": res, "medians": m, "size_bytes": size}, indent=1))
for k, v in goals.items():
    ok = v >= want[k] if k in want else v <= (1.2 if "async" in k else 1.3)
    print(f"{'MET' if ok else 'MISSED'}: {k}: {v:.3f}")
if a.out:
    Path(a.out).write_text(json.dumps({"rounds": res, "medians": m, "goals": goals, "size_bytes": size}, indent=1))
plot(m, a.plot)
