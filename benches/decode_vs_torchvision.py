#!/usr/bin/env python3
"""Single-core decode and augmentation throughput: ringfeed-decode against
PIL and torchvision on the same photos, all bytes in RAM, in one run.

usage: benches/decode_vs_torchvision.py [--limit N] [--rounds R] [--cpu C]

Each side runs pinned to one CPU (taskset), torch.set_num_threads(1).
Python side (installs torch 2.13.0, torchvision 0.28.0, pillow if missing):
  PIL full decode; torchvision.io.decode_jpeg;
  train  = RandomResizedCrop(224) + RandomHorizontalFlip + to float + Normalize,
           with PIL + torchvision (v1, ToTensor) and with decode_jpeg + transforms v2 on uint8 tensors;
  val    = Resize(256) + CenterCrop(224) + to float + Normalize, PIL and v2.
ringfeed side: examples/decode_bench (full decode, train and val pipelines,
decode of the region at the DCT scale each pipeline chose; the pipelines
again with AVX2-only resize kernels when the CPU has AVX-512). Rounds alternate the two
sides; the table shows medians and ratios. Writes target/bench/decode_vs_torchvision.json.
"""
import argparse, json, os, statistics, subprocess, sys, time
from pathlib import Path

root = Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--limit", type=int, default=5000)
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--cpu", type=int, default=1)
ap.add_argument("--src", default=os.path.join(os.environ.get("BENCH_DATA", os.path.expanduser("~/.cache/ringfeed-bench")), "imagefolder/train"))
ap.add_argument("--python-side", action="store_true", help=argparse.SUPPRESS)
a = ap.parse_args()

def files():
    out = []
    for d, _, names in sorted(os.walk(a.src)):
        for n in sorted(names):
            if n.lower().endswith((".jpg", ".jpeg")):
                out.append(os.path.join(d, n))
    return out[: a.limit]

if a.python_side:
    import io
    import torch, torchvision
    from PIL import Image
    from torchvision import transforms as v1
    from torchvision.transforms import v2
    from torchvision.io import decode_jpeg
    torch.set_num_threads(1)
    torch.manual_seed(0)
    blobs = [open(p, "rb").read() for p in files()]
    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    pil_train = v1.Compose([v1.RandomResizedCrop(224), v1.RandomHorizontalFlip(), v1.ToTensor(), v1.Normalize(mean, std)])
    pil_val = v1.Compose([v1.Resize(256), v1.CenterCrop(224), v1.ToTensor(), v1.Normalize(mean, std)])
    v2_train = v2.Compose([v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    v2_val = v2.Compose([v2.Resize(256, antialias=True), v2.CenterCrop(224), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    def pil(b):
        im = Image.open(io.BytesIO(b)); return im.convert("RGB")
    def dec(t):
        return decode_jpeg(t, mode=torchvision.io.ImageReadMode.RGB)
    cases = {
        "pil_full_decode": lambda i: pil(blobs[i]).load(),
        "tv_decode_jpeg": lambda i: dec(tensors[i]),
        "pil_train": lambda i: pil_train(pil(blobs[i])),
        "v2_train": lambda i: v2_train(dec(tensors[i])),
        "pil_val": lambda i: pil_val(pil(blobs[i])),
        "v2_val": lambda i: v2_val(dec(tensors[i])),
    }
    res = {}
    for name, f in cases.items():
        t = time.perf_counter()
        for i in range(len(blobs)):
            f(i)
        res[name] = len(blobs) / (time.perf_counter() - t)
    res["versions"] = {"torch": torch.__version__, "torchvision": torchvision.__version__, "pillow": Image.__version__}
    print(json.dumps(res))
    sys.exit(0)

try:
    import torch, torchvision, PIL  # noqa: F401
except ImportError:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "torch==2.13.0", "torchvision==0.28.0", "pillow"], check=True)
subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "ringfeed-examples", "--example", "decode_bench"], cwd=root, check=True)
ours_bin = str(root / "target/release/examples/decode_bench")
pin = ["taskset", "-c", str(a.cpu)]
rounds = []
for _ in range(a.rounds):
    ours = json.loads(subprocess.run(pin + [ours_bin, a.src, str(a.limit)], check=True, capture_output=True, text=True).stdout)
    py = json.loads(subprocess.run(pin + [sys.executable, __file__, "--python-side", "--limit", str(a.limit), "--src", a.src],
                                   check=True, capture_output=True, text=True).stdout)
    rounds.append({"ringfeed": ours, "python": py})

med = lambda f: statistics.median(f(r) for r in rounds)
rows = [
    ("full decode", med(lambda r: r["ringfeed"]["full_decode"]), "PIL", med(lambda r: r["python"]["pil_full_decode"]), "decode_jpeg", med(lambda r: r["python"]["tv_decode_jpeg"])),
    ("train pipeline", med(lambda r: r["ringfeed"]["train"]["pipeline"]), "PIL+tv", med(lambda r: r["python"]["pil_train"]), "v2 uint8", med(lambda r: r["python"]["v2_train"])),
    ("val pipeline", med(lambda r: r["ringfeed"]["val"]["pipeline"]), "PIL+tv", med(lambda r: r["python"]["pil_val"]), "v2 uint8", med(lambda r: r["python"]["v2_val"])),
]
print(f"{a.limit} photos, one core, {a.rounds} rounds (medians, img/s)\n")
print("| stage | ringfeed | PIL (+torchvision) | torchvision v2 / decode_jpeg | ringfeed / v2 |\n|---|---|---|---|---|")
for name, ours, _, pil_v, _, tv_v in rows:
    print(f"| {name} | {ours:.0f} | {pil_v:.0f} | {tv_v:.0f} | {ours / tv_v:.2f}x |")
for p in ("train", "val", "train_avx2", "val_avx2"):
    if p not in rounds[0]["ringfeed"]:
        continue
    print(f"\n{p} ({rounds[0]['ringfeed'][p]['kernels']} resize kernels): decode of the same regions at the same DCT scales {med(lambda r: r['ringfeed'][p]['decode_same_region_and_scale']):.0f} img/s; "
          f"pipeline overhead over it {100 * med(lambda r: r['ringfeed'][p]['overhead']):.1f}%; "
          f"{rounds[0]['ringfeed'][p]['images_dct_scaled']} of {rounds[0]['ringfeed']['images']} images DCT-scaled")
out = root / "target/bench"
out.mkdir(parents=True, exist_ok=True)
(out / "decode_vs_torchvision.json").write_text(json.dumps(rounds, indent=2))
