#!/usr/bin/env python3
"""ringfeed against PyTorch's DataLoader, side by side, in one run.

usage: benches/harness.py [--limit N] [--batch 64] [--caches warm,cold] [--pipelines train,val]

Same photos (the shared ImageFolder set, packed once for ringfeed), same
transforms, same batch size, same number of cores:
  PyTorch DataLoader + PIL + torchvision transforms (v1, ToTensor + Normalize),
  PyTorch DataLoader + torchvision.io.decode_jpeg + transforms v2 on uint8 tensors,
    each with num_workers 0, 1, 2 (and persistent_workers for 1 and 2);
  ringfeed (`ringfeed bench --pipeline ...`) with 1 and 2 cores, normalized f32 output.
Train = RandomResizedCrop(224) + RandomHorizontalFlip; val = Resize(256) + CenterCrop(224).
Warm cache: files read once before; cold: `echo 3 > /proc/sys/vm/drop_caches` before each run (root).
Reports img/s, peak RSS summed over all processes of the run, time to first batch.
Writes target/bench/harness.{json,md,png}. Installs torch 2.13.0, torchvision 0.28.0,
pillow and matplotlib if missing.
"""
import argparse, json, os, subprocess, sys, threading, time
from pathlib import Path

root = Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--limit", type=int, default=5000)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--caches", default="warm,cold")
ap.add_argument("--pipelines", default="train,val")
ap.add_argument("--data", default=os.environ.get("BENCH_DATA", os.path.expanduser("~/.cache/ringfeed-bench")))
ap.add_argument("--torch-side", nargs=4, metavar=("LOADER", "PIPELINE", "WORKERS", "PERSISTENT"), help=argparse.SUPPRESS)
a = ap.parse_args()
src = Path(a.data) / "imagefolder/train"

if a.torch_side:
    # One DataLoader configuration, timed from creation to the last batch.
    import torch, torchvision
    from torch.utils.data import DataLoader, Dataset
    from PIL import Image
    from torchvision import transforms as v1
    from torchvision.transforms import v2
    from torchvision.io import decode_jpeg, ImageReadMode
    loader_kind, pipeline, workers, persistent = a.torch_side[0], a.torch_side[1], int(a.torch_side[2]), a.torch_side[3] == "1"
    torch.set_num_threads(1)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    files = sorted(p for p in src.rglob("*.jpg"))[: a.limit]
    classes = sorted({p.parent.name for p in files})
    if loader_kind == "pil":
        tf = v1.Compose(([v1.RandomResizedCrop(224), v1.RandomHorizontalFlip()] if pipeline == "train" else [v1.Resize(256), v1.CenterCrop(224)]) + [v1.ToTensor(), v1.Normalize(mean, std)])
        load = lambda p: tf(Image.open(p).convert("RGB"))
    else:
        tf = v2.Compose(([v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip()] if pipeline == "train" else [v2.Resize(256, antialias=True), v2.CenterCrop(224)]) + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
        load = lambda p: tf(decode_jpeg(torchvision.io.read_file(str(p)), mode=ImageReadMode.RGB))

    class Folder(Dataset):
        def __len__(self):
            return len(files)
        def __getitem__(self, i):
            return load(files[i]), classes.index(files[i].parent.name)

    started = time.perf_counter()
    dl = DataLoader(Folder(), batch_size=a.batch, shuffle=True, num_workers=workers,
                    persistent_workers=persistent and workers > 0)
    first, n = None, 0
    for images, labels in dl:
        if first is None:
            first = time.perf_counter() - started
        n += images.shape[0]
    print(json.dumps({"images": n, "seconds": time.perf_counter() - started, "first_batch_s": first}))
    sys.exit(0)

def ensure_python_deps():
    try:
        import torch, torchvision, PIL, matplotlib  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "torch==2.13.0", "torchvision==0.28.0", "pillow", "matplotlib"], check=True)

def tree_rss_kb(pid):
    """Resident memory of a process and all its descendants, in KiB."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
            with open(f"/proc/{p}/task/{p}/children") as f:
                stack.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total

def measured(cmd):
    """Runs `cmd`, sampling the RSS of its whole process tree every 20 ms."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_kb(proc.pid))
            time.sleep(0.02)
    t = threading.Thread(target=sample)
    t.start()
    out, err = proc.communicate()
    t.join()
    if proc.returncode != 0:
        sys.exit(f"{cmd}: {err}")
    return json.loads(out), peak[0] / 1024

def drop_caches():
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")

ensure_python_deps()
subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "ringfeed-cli"], cwd=root, check=True)
rf = str(root / "target/release/ringfeed")
packed = root / "target/bench/images.rf"
if not (packed / "manifest.json").exists():
    subprocess.run([rf, "pack", "-q", str(src), str(packed)], check=True)

rows = []
for cache in a.caches.split(","):
    for pipeline in a.pipelines.split(","):
        configs = [("ringfeed", cores, False) for cores in (1, 2)]
        configs += [(kind, w, p) for kind in ("pil", "v2") for w, p in ((0, False), (1, False), (1, True), (2, False), (2, True))]
        for kind, n, persistent in configs:
            if cache == "cold":
                drop_caches()
            else:  # warm: the files were just read
                subprocess.run(["cat"] + [str(x) for x in sorted(src.rglob("*.jpg"))[: a.limit]], stdout=subprocess.DEVNULL) if kind != "ringfeed" else subprocess.run(["cat"] + [str(x) for x in packed.glob("*.rfp")], stdout=subprocess.DEVNULL)
            if kind == "ringfeed":
                out, rss = measured([rf, "bench", str(packed), "--json", "--pipeline", pipeline, "--dtype", "f32", "--no-digest",
                                     "--batch", str(a.batch), "--cores", str(n), "--io", "buffered" if cache == "warm" else "direct"])
                row = {"loader": f"ringfeed, {n} core{'s' if n > 1 else ''}", "img_s": out["samples_per_sec"],
                       "first_batch_s": out["first_batch_ms"] / 1e3, "peak_rss_mb": rss, "limit": out["limiting_stage"]}
            else:
                # Same image count as ringfeed streams (the packed set holds every photo; --limit caps both).
                out, rss = measured([sys.executable, __file__, "--limit", str(a.limit), "--batch", str(a.batch), "--data", a.data,
                                     "--torch-side", kind, pipeline, str(n), "1" if persistent else "0"])
                name = "DataLoader + PIL + torchvision" if kind == "pil" else "DataLoader + decode_jpeg + v2"
                row = {"loader": f"{name}, num_workers={n}{', persistent' if persistent else ''}",
                       "img_s": out["images"] / out["seconds"], "first_batch_s": out["first_batch_s"], "peak_rss_mb": rss}
            row.update({"cache": cache, "pipeline": pipeline})
            rows.append(row)
            print(f"{cache:4} {pipeline:5} {row['loader']:55} {row['img_s']:7.0f} img/s  first {row['first_batch_s']:.3f} s  RSS {row['peak_rss_mb']:.0f} MB", flush=True)

out_dir = root / "target/bench"
out_dir.mkdir(parents=True, exist_ok=True)
(out_dir / "harness.json").write_text(json.dumps(rows, indent=2))
lines = [f"{a.limit} photos, batch {a.batch}, 2-core machine. Peak RSS summed over all processes of a run.\n",
         "| cache | pipeline | loader | img/s | first batch (s) | peak RSS (MB) |", "|---|---|---|---|---|---|"]
for r in rows:
    lines.append(f"| {r['cache']} | {r['pipeline']} | {r['loader']} | {r['img_s']:.0f} | {r['first_batch_s']:.3f} | {r['peak_rss_mb']:.0f} |")
summary = []
for cache in a.caches.split(","):
    for pipeline in a.pipelines.split(","):
        sel = [r for r in rows if r["cache"] == cache and r["pipeline"] == pipeline]
        best_torch = max((r for r in sel if not r["loader"].startswith("ringfeed")), key=lambda r: r["img_s"])
        best_rf = max((r for r in sel if r["loader"].startswith("ringfeed")), key=lambda r: r["img_s"])
        summary.append(f"- {cache}, {pipeline}: ringfeed {best_rf['img_s']:.0f} img/s vs best DataLoader "
                       f"({best_torch['loader']}) {best_torch['img_s']:.0f} img/s = **{best_rf['img_s'] / best_torch['img_s']:.2f}×**; "
                       f"peak RSS {best_rf['peak_rss_mb']:.0f} vs {best_torch['peak_rss_mb']:.0f} MB; "
                       f"first batch {best_rf['first_batch_s']:.3f} vs {best_torch['first_batch_s']:.3f} s")
(out_dir / "harness.md").write_text("\n".join(lines + [""] + summary) + "\n")
print("\n".join([""] + summary))
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(a.caches.split(",")) * len(a.pipelines.split(",")), figsize=(16, 6), squeeze=False)
    for ax, (cache, pipeline) in zip(axes[0], [(c, p) for c in a.caches.split(",") for p in a.pipelines.split(",")]):
        sel = [r for r in rows if r["cache"] == cache and r["pipeline"] == pipeline]
        ax.barh([r["loader"].replace("DataLoader + ", "DL ") for r in sel], [r["img_s"] for r in sel],
                color=["tab:orange" if r["loader"].startswith("ringfeed") else "tab:blue" for r in sel])
        ax.set_title(f"{pipeline}, {cache} cache")
        ax.set_xlabel("images/s")
    for ax in axes[0][1:]:
        ax.set_yticklabels([])
    fig.tight_layout()
    fig.savefig(out_dir / "harness.png", dpi=80)
except Exception as e:  # the plot is a convenience; the tables are the result
    print(f"plot skipped: {e}")
